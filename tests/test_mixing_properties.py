"""Properties of mixing matrices on connected graphs drawn by hypothesis (assumption A4)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deprl_theory.graphs import (
    MixingMatrixError,
    check_mixing,
    lazy,
    max_degree_weights,
    metropolis_weights,
    mixing_matrix,
    mixing_rate,
    uniform_weights,
)

SETTINGS = settings(max_examples=100, deadline=None)
TOL = 1e-9


@st.composite
def connected_graphs(draw, min_n: int = 2, max_n: int = 12) -> np.ndarray:
    """A connected graph: a random spanning tree (parent choices) plus random extra edges."""
    n = draw(st.integers(min_n, max_n))
    A = np.zeros((n, n), dtype=bool)
    for i in range(1, n):
        parent = draw(st.integers(0, i - 1))
        A[i, parent] = A[parent, i] = True
    iu, ju = np.triu_indices(n, 1)
    extra = np.array(draw(st.lists(st.booleans(), min_size=iu.size, max_size=iu.size)), dtype=bool)
    A[iu[extra], ju[extra]] = True
    A[ju[extra], iu[extra]] = True
    return A


def _vectors(n: int):
    return arrays(np.float64, n, elements=st.floats(-1e3, 1e3, allow_nan=False))


def _disagreement(x: np.ndarray) -> float:
    return float(np.linalg.norm(x - x.mean()))


@SETTINGS
@given(A=connected_graphs(), rule=st.sampled_from([metropolis_weights, max_degree_weights]))
def test_doubly_stochastic_rules_satisfy_a4(A, rule):
    W = rule(A)
    report = check_mixing(W, A)
    assert all(report.checks.values())
    assert 0.0 <= report.rho < 1.0
    assert report.spectral_gap == pytest.approx(1.0 - report.rho)
    assert report.degrees.max == A.sum(axis=1).max()
    assert np.all(np.diag(W) > 0)


@SETTINGS
@given(data=st.data(), A=connected_graphs())
def test_one_gossip_step_contracts_disagreement_by_rho(data, A):
    W = metropolis_weights(A)
    rho = mixing_rate(W)
    x = data.draw(_vectors(A.shape[0]))
    y = W @ x
    assert y.mean() == pytest.approx(x.mean(), abs=1e-9 * (1 + np.abs(x).max()))
    assert _disagreement(y) <= rho * _disagreement(x) + TOL * (1 + np.linalg.norm(x))


@SETTINGS
@given(A=connected_graphs(), rule=st.sampled_from([metropolis_weights, max_degree_weights]))
def test_powers_converge_to_exact_averaging(A, rule):
    W = rule(A)
    n = A.shape[0]
    rho = mixing_rate(W)
    J = np.full((n, n), 1.0 / n)
    P = np.eye(n)
    for k in range(1, 30):
        P = P @ W
        assert np.linalg.norm(P - J, 2) <= rho**k + TOL


@SETTINGS
@given(data=st.data(), A=connected_graphs(min_n=3))
def test_relabelling_nodes_keeps_the_spectrum(data, A):
    n = A.shape[0]
    perm = np.array(data.draw(st.permutations(range(n))))
    B = A[np.ix_(perm, perm)]
    W, V = metropolis_weights(A), metropolis_weights(B)
    # the weight rule is equivariant, so the spectrum and the gap cannot move
    assert np.allclose(V, W[np.ix_(perm, perm)])
    assert np.allclose(np.linalg.eigvalsh(V), np.linalg.eigvalsh(W), atol=TOL)
    assert mixing_rate(V) == pytest.approx(mixing_rate(W), abs=TOL)


@SETTINGS
@given(A=connected_graphs(), a=st.floats(0.01, 1.0))
def test_lazy_transform_maps_eigenvalues(A, a):
    W = metropolis_weights(A)
    lam = np.linalg.eigvalsh(W)
    L = lazy(W, a)
    assert np.allclose(np.linalg.eigvalsh(L), 1 - a + a * lam, atol=TOL)
    check_mixing(L, A)


@SETTINGS
@given(A=connected_graphs(min_n=3))
def test_uniform_weights_on_irregular_graph_break_column_sums(A):
    deg = A.sum(axis=1)
    assume(deg.min() != deg.max())
    U = uniform_weights(A)
    assert np.allclose(U.sum(axis=1), 1.0)  # row-stochastic: what the released code relies on
    with pytest.raises(MixingMatrixError, match="column sums"):
        check_mixing(U, A)


@SETTINGS
@given(A=connected_graphs(min_n=2, max_n=7), B=connected_graphs(min_n=2, max_n=7),
       rule=st.sampled_from(["metropolis", "max_degree"]))
def test_two_components_fail_on_connectivity(A, B, rule):
    n, m = A.shape[0], B.shape[0]
    C = np.zeros((n + m, n + m), dtype=bool)
    C[:n, :n], C[n:, n:] = A, B
    W = mixing_matrix(C, weights=rule)
    with pytest.raises(MixingMatrixError, match="disconnected") as err:
        check_mixing(W, C)
    assert err.value.property == "connected"
    assert "2 components" in str(err.value)
