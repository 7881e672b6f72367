"""Mixing matrices: closed-form spectra (docs/theory.md, section 3 (closed-form gaps)), A4 checks, errors, CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from deprl_theory.graphs import (
    TOPOLOGIES,
    WEIGHT_RULES,
    MixingMatrixError,
    adjacency,
    check_mixing,
    effective_gap,
    graph_adjacency,
    lazy,
    max_degree_weights,
    metropolis_weights,
    mixing_matrix,
    mixing_rate,
    mixing_report,
    noise_spectral_sum,
    spectral_gap,
    uniform_weights,
)

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10


# ----------------------------------------------------------------- closed-form spectra


@pytest.mark.parametrize("n", [3, 4, 5, 8, 13, 16, 32, 64])
def test_ring_gap_closed_form(n):
    W = mixing_matrix("ring", n)
    assert np.allclose(W[W > 0], 1 / 3)  # Metropolis on a ring is the 1/3 rule
    assert spectral_gap(W) == pytest.approx((2 / 3) * (1 - math.cos(2 * math.pi / n)), abs=TOL)


@pytest.mark.parametrize("m", [3, 4, 5, 6, 8])
def test_torus_gap_closed_form(m):
    W = mixing_matrix("torus", m * m)
    assert np.allclose(W[W > 0], 1 / 5)
    assert spectral_gap(W) == pytest.approx((2 / 5) * (1 - math.cos(2 * math.pi / m)), abs=TOL)


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6, 7])
def test_hypercube_gap_closed_form(d):
    W = mixing_matrix("hypercube", 2**d)
    assert np.allclose(W[W > 0], 1 / (d + 1))
    assert spectral_gap(W) == pytest.approx(2 / (d + 1), abs=TOL)


@pytest.mark.parametrize("n", [2, 3, 7, 20])
def test_complete_gap_is_one(n):
    W = mixing_matrix("complete", n)
    assert np.allclose(W, 1 / n)
    assert spectral_gap(W) == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("n", [3, 4, 6, 11, 25])
def test_star_metropolis_gap_is_one_over_n(n):
    assert spectral_gap(mixing_matrix("star", n)) == pytest.approx(1 / n, abs=TOL)


@pytest.mark.parametrize("n", [2, 5, 17])
@pytest.mark.parametrize("g", [0.01, 0.3, 1.0])
def test_exact_gap_family(n, g):
    W = mixing_matrix("exact_gap", n, gap=g, weights="uniform")  # weights ignored
    assert np.allclose(W, (1 - g) * np.eye(n) + g / n)
    assert spectral_gap(W) == pytest.approx(g, abs=TOL)
    check_mixing(W, adjacency("exact_gap", n, gap=g))
    assert np.array_equal(adjacency("exact_gap", n), adjacency("complete", n))


@pytest.mark.parametrize("topology,n", [("ring", 9), ("hypercube", 16), ("star", 6)])
@pytest.mark.parametrize("a", [0.1, 0.5, 1.0])
def test_lazy_maps_eigenvalues(topology, n, a):
    W = mixing_matrix(topology, n)
    lam = np.linalg.eigvalsh(W)
    assert np.allclose(np.linalg.eigvalsh(lazy(W, a)), 1 - a + a * lam, atol=TOL)
    assert np.allclose(mixing_matrix(topology, n, lazy=a), lazy(W, a))


def test_lazy_fixes_bipartite_periodicity():
    W = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(MixingMatrixError, match="connected") as err:
        check_mixing(W)
    assert "lazy" in str(err.value)  # the support is connected: not called disconnected
    assert check_mixing(lazy(W, 0.5)).spectral_gap == pytest.approx(1.0)


def test_exponential_graph_offsets():
    A = adjacency("exponential", 16)
    expected = {1, 2, 4, 8, 15, 14, 12}
    assert set(np.flatnonzero(A[0]).tolist()) == expected
    assert (A.sum(axis=1) == len(expected)).all()
    # the point of the exponential graph: its gap stays bounded as n grows
    gaps = [spectral_gap(mixing_matrix("exponential", n)) for n in (8, 16, 32, 64)]
    assert min(gaps) > 0.1


@pytest.mark.parametrize("n", [1200, 3000])
def test_sparse_path_matches_closed_form(n):
    W = mixing_matrix("ring", n, sparse=True)
    assert sp.issparse(W)
    assert spectral_gap(W) == pytest.approx((2 / 3) * (1 - math.cos(2 * math.pi / n)), rel=1e-6)


@pytest.mark.parametrize("topology,n,params", [
    ("exponential", 64, {}), ("torus", 49, {}), ("erdos_renyi", 60, {"p": 0.1}),
    ("random_regular", 50, {"degree": 3}), ("star", 30, {}),
])
def test_sparse_path_agrees_with_dense(topology, n, params):
    Ws = mixing_matrix(topology, n, sparse=True, seed=3, **params)
    Wd = mixing_matrix(topology, n, seed=3, **params)
    assert np.allclose(Ws.toarray(), Wd)
    assert spectral_gap(Ws, method="sparse") == pytest.approx(spectral_gap(Wd, method="dense"), abs=1e-8)
    # nonsymmetric W takes the singular-value route
    Us = mixing_matrix(topology, n, sparse=True, seed=3, weights="uniform", **params)
    assert mixing_rate(Us, method="sparse") == pytest.approx(mixing_rate(Us.toarray()), abs=1e-8)
    Ls = mixing_matrix(topology, n, sparse=True, seed=3, lazy=0.4, **params)
    assert sp.issparse(Ls) and np.allclose(Ls.toarray(), lazy(Wd, 0.4))


def test_sparse_check_mixing_large_n():
    report = check_mixing(mixing_matrix("exponential", 2048, sparse=True))
    assert report.n == 2048 and report.degrees.max == 2 * 11 - 1
    assert all(report.checks.values())
    bad = uniform_weights(sp.csr_array(adjacency("star", 1500)))
    with pytest.raises(MixingMatrixError, match="column sums"):
        check_mixing(bad)


# ----------------------------------------------------------------- weight rules and checks


def test_weight_rules_on_irregular_graph():
    A = adjacency("star", 5)
    for rule in ("metropolis", "max_degree"):
        W = mixing_matrix(A, weights=rule)
        report = check_mixing(W, A)
        assert list(report.checks) == ["square_and_finite", "nonnegative", "symmetric",
                                       "row_sums", "column_sums", "zero_pattern", "connected"]
        assert all(report.checks.values())
        assert (report.degrees.min, report.degrees.max, report.degrees.mean) == (1, 4, 1.6)
    U = uniform_weights(A)
    assert np.allclose(U.sum(axis=1), 1)
    with pytest.raises(MixingMatrixError, match="column sums") as err:
        check_mixing(U, A)
    assert err.value.property == "symmetric"
    assert str(err.value).startswith("symmetric:")


def test_uniform_equals_metropolis_on_regular_graphs():
    A = adjacency("hypercube", 8)
    assert np.allclose(uniform_weights(A), metropolis_weights(A))
    assert np.allclose(max_degree_weights(A), metropolis_weights(A))


@pytest.mark.parametrize("W,prop,fragment", [
    (np.ones((2, 3)) / 3, "square_and_finite", "shape (2, 3)"),
    (np.array([[0.5, np.nan], [0.5, 0.5]]), "square_and_finite", "non-finite"),
    (np.array([[1.2, -0.2], [-0.2, 1.2]]), "nonnegative", "W[0, 1] = -0.2"),
    (np.array([[0.5, 0.5], [0.4, 0.6]]), "symmetric", "max asymmetry"),
    (np.array([[0.5, 0.45], [0.45, 0.5]]), "row_sums", "row 0 sums to 0.95, not 1"),
    (np.eye(3), "connected", "disconnected (3 components)"),
])
def test_check_mixing_names_first_failure(W, prop, fragment):
    with pytest.raises(MixingMatrixError) as err:
        check_mixing(W)
    assert err.value.property == prop
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)


def test_row_stochastic_matrix_reports_column_sums():
    # Row-stochastic but not column-stochastic: symmetry is the first property to
    # fail (a symmetric W has column sums equal to its row sums), and the message
    # also names the column sums, which is what breaks the N-fold averaging.
    R = np.array([[0.5, 0.5], [0.0, 1.0]])
    with pytest.raises(MixingMatrixError) as err:
        check_mixing(R)
    assert err.value.property == "symmetric"
    assert "also failing: column sums: column 0 sums to 0.5, not 1" in str(err.value)


def test_check_mixing_zero_pattern():
    W = mixing_matrix("complete", 4)
    with pytest.raises(MixingMatrixError, match=r"zero pattern: W\[0, 2\] = 0.25 but nodes 0 and 2"):
        check_mixing(W, adjacency("ring", 4))
    with pytest.raises(ValueError, match="adjacency has 5 nodes"):
        check_mixing(W, adjacency("ring", 5))


def test_report_as_dict_is_json():
    report = check_mixing(mixing_matrix("ring", 8))
    d = json.loads(json.dumps(report.as_dict()))
    assert d["n"] == 8 and d["ok"] is True
    assert d["spectral_gap"] == pytest.approx(1 - d["rho"])
    assert d["degrees"] == {"min": 2, "max": 2, "mean": 2.0}
    assert "zero_pattern" not in d["checks"]


# ----------------------------------------------------------------- random graphs


@pytest.mark.parametrize("n,p", [(10, 0.5), (40, 0.15), (25, 1.0)])
def test_erdos_renyi_reproducible_and_connected(n, p):
    A = adjacency("erdos_renyi", n, p=p, seed=7)
    assert np.array_equal(A, adjacency("erdos_renyi", n, p=p, seed=7))
    assert np.array_equal(A, A.T) and not A.diagonal().any()
    assert check_mixing(metropolis_weights(A)).rho < 1
    rng = np.random.default_rng(7)
    assert np.array_equal(A, adjacency("erdos_renyi", n, p=p, seed=rng))
    others = [adjacency("erdos_renyi", n, p=p, seed=s) for s in range(3)]
    if p < 1:
        assert any(not np.array_equal(A, B) for B in others)


def test_erdos_renyi_too_sparse_is_a_clear_error():
    with pytest.raises(ValueError, match="disconnected.*p is too small"):
        adjacency("erdos_renyi", 60, p=0.005, seed=0)


@pytest.mark.parametrize("n,d", [(2, 1), (10, 2), (10, 3), (12, 5), (16, 8), (11, 10), (200, 6)])
def test_random_regular_reproducible_connected(n, d):
    A = adjacency("random_regular", n, degree=d, seed=11)
    assert np.array_equal(A, adjacency("random_regular", n, degree=d, seed=11))
    assert (A.sum(axis=1) == d).all()
    assert np.array_equal(A, A.T) and not A.diagonal().any()
    report = check_mixing(mixing_matrix("random_regular", n, degree=d, seed=11), A)
    assert report.rho < 1 and report.degrees.min == report.degrees.max == d


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,fragment", [
    (lambda: mixing_matrix("ring", 1), "n=1"),
    (lambda: mixing_matrix("ring", 0), "n=0"),
    (lambda: mixing_matrix("ring", 2.5), "2.5"),
    (lambda: mixing_matrix("ring"), "n is required"),
    (lambda: mixing_matrix("moebius", 8), "unknown topology 'moebius'; valid topologies: ring, path"),
    (lambda: adjacency("hypercube", 12), "power of two, got n=12"),
    (lambda: adjacency("torus", 10), "perfect square), got n=10"),
    (lambda: adjacency("torus", 4), "m >= 3"),
    (lambda: adjacency("erdos_renyi", 8, p=0), "p=0"),
    (lambda: adjacency("erdos_renyi", 8, p=1.5), "p=1.5"),
    (lambda: adjacency("erdos_renyi", 8), "needs parameter p"),
    (lambda: adjacency("random_regular", 7, degree=3), "n*degree = 21 must be even"),
    (lambda: adjacency("random_regular", 6, degree=6), "degree=6"),
    (lambda: adjacency("random_regular", 6, degree=0), "degree=0"),
    (lambda: adjacency("random_regular", 6, degree=1), "disconnected"),
    (lambda: adjacency("ring", 6, degree=2), "takes no parameters; got degree"),
    (lambda: mixing_matrix("ring", 6, weights="laplacian"), "unknown weights rule 'laplacian'"),
    (lambda: mixing_matrix("ring", 6, lazy=0), "a=0"),
    (lambda: mixing_matrix("ring", 6, lazy=1.5), "a=1.5"),
    (lambda: lazy(np.eye(3), -0.1), "a=-0.1"),
    (lambda: mixing_matrix("exact_gap", 6, gap=0.0), "gap=0.0"),
    (lambda: mixing_matrix("exact_gap", 6, gap=2), "gap=2"),
    (lambda: mixing_matrix("exact_gap", 6), "needs parameter gap"),
    (lambda: adjacency("exact_gap", 6, gap=1.5), "gap=1.5"),
    (lambda: graph_adjacency(np.ones((2, 3))), "square"),
    (lambda: graph_adjacency([[0, 1], [0, 0]]), "symmetric"),
    (lambda: graph_adjacency([[0, 2], [2, 0]]), "0/1"),
    (lambda: mixing_matrix(np.ones((3, 3)) - np.eye(3), 4), "n=4 does not match"),
    (lambda: spectral_gap(np.ones((2, 3))), "square"),
])
def test_bad_input_is_a_value_error_naming_it(call, fragment):
    with pytest.raises(ValueError) as err:
        call()
    assert fragment in str(err.value)


def test_topology_and_rule_names():
    assert TOPOLOGIES == ("ring", "path", "torus", "hypercube", "exponential", "complete",
                          "star", "erdos_renyi", "random_regular", "exact_gap")
    assert WEIGHT_RULES == ("metropolis", "max_degree", "uniform")
    params = {"erdos_renyi": {"p": 0.5}, "random_regular": {"degree": 3},
              "exact_gap": {"gap": 0.5}}
    for name in TOPOLOGIES:
        A = adjacency(name, 16, seed=0, **params.get(name, {}))
        assert A.dtype == bool and np.array_equal(A, A.T) and not A.diagonal().any()
        check_mixing(mixing_matrix(name, 16, seed=0, **params.get(name, {})), A)


# ----------------------------------------------------------------- user graphs


def test_numpy_adjacency_input():
    A = np.array([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]])
    W = mixing_matrix(A)
    assert np.allclose(W, metropolis_weights(A.astype(bool)))
    assert W[0, 1] == pytest.approx(1 / 3) and W[2, 3] == pytest.approx(1 / 4)
    assert np.array_equal(graph_adjacency(A + np.eye(4, dtype=int)), A.astype(bool))  # loops dropped
    check_mixing(W, A)


def test_networkx_graph_input():
    nx = pytest.importorskip("networkx")
    G = nx.cycle_graph(12)
    assert np.array_equal(graph_adjacency(G), adjacency("ring", 12))
    assert np.allclose(mixing_matrix(G, 12), mixing_matrix("ring", 12))
    H = nx.relabel_nodes(nx.path_graph(4), {0: "a", 1: "b", 2: "c", 3: "d"})
    assert np.array_equal(graph_adjacency(H), adjacency("path", 4))
    with pytest.raises(ValueError, match="undirected"):
        graph_adjacency(nx.DiGraph([(0, 1), (1, 2)]))


# ----------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verification.graphs", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_cli_text_report():
    out = _cli("--topology", "ring", "--n", "16")
    assert out.returncode == 0, out.stderr
    gap = (2 / 3) * (1 - math.cos(2 * math.pi / 16))
    assert f"{gap:.6g}" in out.stdout and f"{1 - gap:.6g}" in out.stdout
    for word in ("spectral gap", "rho", "degrees", "min 2, max 2", "symmetric", "connected"):
        assert word in out.stdout


def test_cli_json_and_failing_matrix():
    out = _cli("--topology", "hypercube", "--n", "8", "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert {"spectral_gap", "rho", "checks", "degrees"} <= rep.keys()
    assert rep["spectral_gap"] == pytest.approx(0.5)
    assert all(rep["checks"].values())
    out = _cli("--topology", "star", "--n", "6", "--weights", "uniform", "--json")
    assert out.returncode == 1
    rep = json.loads(out.stdout)
    assert rep["checks"]["column_sums"] is False and rep["ok"] is False


@pytest.mark.parametrize("args", [
    ["--n", "1"],
    ["--topology", "hypercube", "--n", "12"],
    ["--topology", "dodecahedron", "--n", "8"],
    ["--topology", "torus", "--n", "10"],
    ["--topology", "erdos_renyi", "--n", "10", "--p", "0"],
    ["--topology", "random_regular", "--n", "7", "--degree", "3"],
    ["--topology", "ring", "--n", "8", "--lazy", "1.5"],
    ["--n", "eight"],
])
def test_cli_bad_input_one_line_exit_2(args):
    out = _cli(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cli_reads_adjacency_file(tmp_path):
    path = tmp_path / "star.npy"
    np.save(path, adjacency("star", 5).astype(int))
    out = _cli("--adjacency", str(path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spectral_gap"] == pytest.approx(1 / 5)
    out = _cli("--adjacency", str(tmp_path / "missing.npy"))
    assert out.returncode == 2 and "does not exist" in out.stderr


# ----------------------------------------------------------------- the whole spectrum


@pytest.mark.parametrize("n", [4, 9, 16, 33])
@pytest.mark.parametrize("g", [0.04, 0.3, 0.9])
def test_noise_spectral_sum_of_the_exact_gap_family(n, g):
    rho = 1 - g
    assert noise_spectral_sum(mixing_matrix("exact_gap", n, gap=g)) == pytest.approx(
        (n - 1) * rho**2 / (1 - rho**2), rel=1e-10)


@pytest.mark.parametrize("n", [5, 8, 16, 31])
def test_noise_spectral_sum_of_the_ring_closed_form(n):
    lam = (1 + 2 * np.cos(2 * np.pi * np.arange(1, n) / n)) / 3
    assert noise_spectral_sum(mixing_matrix("ring", n)) == pytest.approx(np.sum(lam**2 / (1 - lam**2)), rel=1e-10)


def test_noise_spectral_sum_is_not_a_function_of_rho():
    ring = mixing_matrix("ring", 16)
    same_gap = mixing_matrix("exact_gap", 16, gap=spectral_gap(ring))
    assert noise_spectral_sum(ring) / noise_spectral_sum(same_gap) == pytest.approx(0.1724, abs=1e-3)
    assert noise_spectral_sum(mixing_matrix("complete", 7)) < 1e-20
    assert noise_spectral_sum(np.eye(4)) == float("inf")  # no mixing: the noise is never forgotten
    assert noise_spectral_sum(sp.csr_array(ring)) == pytest.approx(noise_spectral_sum(ring))


def test_noise_spectral_sum_is_the_stationary_disagreement_of_noisy_gossip():
    # x <- W (x - beta g), g iid N(0, 1) per worker and coordinate: (1/n) sum_i ||x_i - xbar||^2 per coordinate
    # settles at beta^2 noise_spectral_sum(W) / n
    rng = np.random.default_rng(0)
    for W in (mixing_matrix("ring", 8), mixing_matrix("star", 8), mixing_matrix("exact_gap", 8, gap=0.2)):
        n, coords, beta = 8, 400, 0.1
        x = np.zeros((n, coords))
        acc = []
        for k in range(600):
            x = W @ (x - beta * rng.standard_normal((n, coords)))
            if k >= 200:
                acc.append(np.mean(np.sum((x - x.mean(axis=0)) ** 2, axis=0)) / n)
        assert np.mean(acc) == pytest.approx(beta**2 * noise_spectral_sum(W) / n, rel=0.05)


@pytest.mark.parametrize("bad,fragment", [(np.array([[0.9, 0.1], [0.3, 0.7]]), "symmetric"),
                                          (np.array([[0.5, 0.2], [0.2, 0.5]]), "rows"),
                                          (np.ones((2, 3)), "square")])
def test_noise_spectral_sum_rejects_what_its_formula_does_not_cover(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        noise_spectral_sum(bad)


def test_effective_gap_is_the_exact_gap_with_the_same_noise_sum():
    for g in (0.05, 0.4):
        assert effective_gap(mixing_matrix("exact_gap", 12, gap=g)) == pytest.approx(g, rel=1e-10)
    ring = mixing_matrix("ring", 16)
    eff = effective_gap(ring)
    assert noise_spectral_sum(mixing_matrix("exact_gap", 16, gap=eff)) == pytest.approx(noise_spectral_sum(ring))
    assert eff > 4 * spectral_gap(ring)  # the ring's spectrum beyond rho mixes far better than its gap says
    assert effective_gap(np.eye(3)) == 0.0 and effective_gap(mixing_matrix("complete", 5)) == pytest.approx(1.0)


def test_check_mixing_advises_lazy_only_where_it_would_fix_the_failure():
    """A W that is not stochastic is not told to go lazy (lazy(W, a) keeps its sums wrong); a periodic one is."""
    W = 2.0 * mixing_matrix("ring", 6)  # connected, rows sum to 2: rho >= 1 because of the sums, not periodicity
    with pytest.raises(MixingMatrixError) as err:
        check_mixing(W)
    assert err.value.property == "row_sums" and "lazy" not in str(err.value)
    assert mixing_report(W).checks["connected"]  # the support is connected; rho means nothing here
    split = np.zeros((4, 4))
    split[:2, :2] = split[2:, 2:] = 1.0  # rows sum to 2 and two components
    assert "disconnected (2 components)" in " ".join(mixing_report(split).failures)
    periodic = np.array([[0.0, 1.0], [1.0, 0.0]])  # doubly stochastic, bipartite, zero diagonal
    with pytest.raises(MixingMatrixError, match=r"periodic W.*lazy\(W, a\)") as err:
        check_mixing(periodic)
    check_mixing(lazy(periodic, 0.5))  # the advice works
