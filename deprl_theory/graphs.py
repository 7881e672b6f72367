"""Gossip graphs and mixing matrices (assumption A4 of THEORY.md).

DePRL's consensus step is ``Phi <- W Phi``.  The theory needs ``W`` symmetric,
nonnegative, doubly stochastic, zero off the graph, and ``rho = ||W - 11^T/n||_2 < 1``
(spectral gap ``1 - rho > 0``).  This module builds ``W`` for the usual topologies
and weight rules, measures its spectral gap, and checks A4 property by property.

Graphs are handled internally as an edge list ``(n, u, v)`` with ``u < v`` so the
sparse path never materialises an ``n x n`` dense matrix.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Union

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import LinearOperator, eigsh, svds

from ._rng import SeedLike, as_generator

__all__ = [
    "TOPOLOGIES",
    "WEIGHT_RULES",
    "MixingMatrixError",
    "MixingReport",
    "DegreeStats",
    "adjacency",
    "graph_adjacency",
    "metropolis_weights",
    "max_degree_weights",
    "uniform_weights",
    "lazy",
    "mixing_matrix",
    "spectral_gap",
    "mixing_rate",
    "check_mixing",
    "mixing_report",
]

TOPOLOGIES: tuple[str, ...] = (
    "ring",
    "path",
    "torus",
    "hypercube",
    "exponential",
    "complete",
    "star",
    "erdos_renyi",
    "random_regular",
    "exact_gap",
)
WEIGHT_RULES: tuple[str, ...] = ("metropolis", "max_degree", "uniform")

# Parameters each topology accepts (all required when listed).
_TOPOLOGY_PARAMS: dict[str, tuple[str, ...]] = {
    "erdos_renyi": ("p",),
    "random_regular": ("degree",),
    "exact_gap": ("gap",),
}
# Random graphs are resampled (same generator) until connected, at most this often.
_MAX_TRIES = 100
# Above this n the spectral norm is computed iteratively (ARPACK) instead of by a full
# dense eigendecomposition; below it a sparse W is densified (cheaper and exact).
_DENSE_MAX = 1024

ArrayOrSparse = Union[np.ndarray, sp.sparray, sp.spmatrix]
_Edges = tuple[int, np.ndarray, np.ndarray]


class MixingMatrixError(ValueError):
    """A matrix fails assumption A4; the message names the first failing property.

    Attributes
    ----------
    property : str
        Key of the first failing check (``"symmetric"``, ``"row_sums"``, ...).
    """

    def __init__(self, message: str, property: str = "") -> None:  # noqa: A002
        super().__init__(message)
        self.property = property


class DegreeStats(NamedTuple):
    """Min, max and mean number of off-diagonal nonzeros per row of ``W``."""

    min: int
    max: int
    mean: float


@dataclass(frozen=True)
class MixingReport:
    """What :func:`check_mixing` measured.

    Attributes
    ----------
    n : int
        Number of workers.
    spectral_gap : float
        ``1 - rho``.
    rho : float
        ``||W - 11^T/n||_2``.
    degrees : DegreeStats
        Off-diagonal support of each row of ``W`` (entries above ``tol``).
    checks : dict of str to bool
        Each A4 property checked, in order; all ``True`` when returned by
        :func:`check_mixing`.  ``zero_pattern`` appears only when an adjacency was given.
    failures : tuple of str
        One message per failing check (empty when all hold).
    """

    n: int
    spectral_gap: float
    rho: float
    degrees: DegreeStats
    checks: dict[str, bool] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """``True`` when every check holds."""
        return all(self.checks.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain-Python view for JSON output."""
        return {
            "n": int(self.n),
            "spectral_gap": float(self.spectral_gap),
            "rho": float(self.rho),
            "degrees": {
                "min": int(self.degrees.min),
                "max": int(self.degrees.max),
                "mean": float(self.degrees.mean),
            },
            "checks": {k: bool(v) for k, v in self.checks.items()},
            "failures": list(self.failures),
            "ok": self.ok,
        }


# --------------------------------------------------------------------------- input checks


def _check_n(n: Any) -> int:
    if isinstance(n, (bool, np.bool_)):
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    try:
        value = operator.index(n)
    except TypeError:
        if isinstance(n, (float, np.floating)) and float(n).is_integer():
            value = int(n)
        else:
            raise ValueError(f"n must be an integer >= 2, got {n!r}") from None
    if value < 2:
        raise ValueError(f"n must be an integer >= 2 (at least two workers), got n={value}")
    return value


def _check_unit_interval(name: str, value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {name} must be a number in (0, 1], got {value!r}") from None
    if not (0.0 < x <= 1.0):
        raise ValueError(f"{what} {name} must lie in (0, 1], got {name}={value!r}")
    return x


def _topology_name(topology: str) -> str:
    name = str(topology).strip().lower().replace("-", "_")
    if name not in TOPOLOGIES:
        raise ValueError(
            f"unknown topology {topology!r}; valid topologies: {', '.join(TOPOLOGIES)}"
        )
    return name


def _weight_rule(weights: str) -> str:
    rule = str(weights).strip().lower().replace("-", "_")
    if rule not in WEIGHT_RULES:
        raise ValueError(
            f"unknown weights rule {weights!r}; valid rules: {', '.join(WEIGHT_RULES)}"
        )
    return rule


def _check_params(name: str, params: dict[str, Any], required: bool = True) -> dict[str, Any]:
    allowed = _TOPOLOGY_PARAMS.get(name, ())
    extra = sorted(set(params) - set(allowed))
    if extra:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no parameters"
        raise ValueError(f"topology {name!r} {takes}; got {', '.join(extra)}")
    missing = [k for k in allowed if params.get(k) is None]
    if missing and required:
        raise ValueError(f"topology {name!r} needs parameter {missing[0]}")
    return params


# --------------------------------------------------------------------------- edge lists


def _dedup(n: int, u: np.ndarray, v: np.ndarray) -> _Edges:
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    keep = lo != hi
    key = np.unique(lo[keep] * n + hi[keep])
    return n, key // n, key % n


def _is_connected(n: int, u: np.ndarray, v: np.ndarray) -> bool:
    return _n_components(n, u, v) == 1


def _n_components(n: int, u: np.ndarray, v: np.ndarray) -> int:
    graph = sp.csr_array((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


def _offsets_graph(n: int, offsets: list[int]) -> _Edges:
    i = np.arange(n)
    us = [i for _ in offsets]
    vs = [(i + off) % n for off in offsets]
    return _dedup(n, np.concatenate(us), np.concatenate(vs))


def _torus_side(n: int) -> int:
    m = math.isqrt(n)
    if m * m != n:
        raise ValueError(f"torus needs n = m*m (a perfect square), got n={n}")
    if m < 3:
        raise ValueError(f"torus needs side m >= 3 (n >= 9), got n={n} (m={m})")
    return m


def _hypercube_dim(n: int) -> int:
    if n & (n - 1):
        raise ValueError(f"hypercube needs n a power of two, got n={n}")
    return n.bit_length() - 1


def _erdos_renyi(n: int, p: Any, rng: np.random.Generator) -> _Edges:
    p = _check_unit_interval("p", p, "erdos_renyi edge probability")
    iu, ju = np.triu_indices(n, 1)
    for _ in range(_MAX_TRIES):
        keep = rng.random(iu.size) < p
        u, v = iu[keep], ju[keep]
        if _is_connected(n, u, v):
            return n, u.astype(np.int64), v.astype(np.int64)
    raise ValueError(
        f"erdos_renyi graph with n={n}, p={p} came out disconnected in {_MAX_TRIES} draws: "
        f"p is too small (connectivity needs p above log(n)/n = {math.log(n) / n:.3g})"
    )


def _check_degree(n: int, degree: Any) -> int:
    if isinstance(degree, (bool, np.bool_)):
        raise ValueError(f"random_regular degree must be an integer, got {degree!r}")
    try:
        d = operator.index(degree)
    except TypeError:
        if isinstance(degree, (float, np.floating)) and float(degree).is_integer():
            d = int(degree)
        else:
            raise ValueError(f"random_regular degree must be an integer, got {degree!r}") from None
    if not 1 <= d < n:
        raise ValueError(f"random_regular degree must satisfy 1 <= degree < n={n}, got degree={d}")
    if (n * d) % 2:
        raise ValueError(
            f"no {d}-regular graph on n={n} nodes exists: n*degree = {n * d} must be even"
        )
    if d == 1 and n > 2:
        raise ValueError(
            f"degree=1 on n={n} nodes is a perfect matching, which is disconnected; "
            "use degree >= 2"
        )
    return d


def _pairing_once(n: int, d: int, rng: np.random.Generator) -> set[tuple[int, int]] | None:
    """One attempt at a uniformly-ish random simple d-regular graph.

    Pair free stubs at random, keep the pairs that make new simple edges, and
    re-pair the rejected stubs; give up (``None``) when no legal pair remains.
    This avoids the configuration model's rejection rate exp(-(d^2-1)/4).
    """
    edges: set[tuple[int, int]] = set()
    stubs = np.repeat(np.arange(n), d)
    while stubs.size:
        rng.shuffle(stubs)
        leftover: list[int] = []
        for a, b in zip(stubs[0::2].tolist(), stubs[1::2].tolist()):
            e = (a, b) if a < b else (b, a)
            if a != b and e not in edges:
                edges.add(e)
            else:
                leftover += [a, b]
        if not leftover:
            break
        nodes = sorted(set(leftover))
        if not any(
            (a, b) not in edges for i, a in enumerate(nodes) for b in nodes[i + 1 :]
        ):
            return None
        stubs = np.asarray(leftover, dtype=np.int64)
    return edges


def _random_regular(n: int, degree: Any, rng: np.random.Generator) -> _Edges:
    d = _check_degree(n, degree)
    if d == n - 1:
        return _dedup(n, *np.triu_indices(n, 1))
    if d == 2:
        # A connected 2-regular graph is a Hamiltonian cycle: draw one uniformly.
        order = rng.permutation(n)
        return _dedup(n, order, np.roll(order, -1))
    # Dense degrees: build the sparser complement (d >= n/2 forces connectivity).
    complement = d > (n - 1) / 2
    target = n - 1 - d if complement else d
    for _ in range(_MAX_TRIES):
        pairs = _pairing_once(n, target, rng) if target else set()
        if pairs is None:
            continue
        a = np.zeros((n, n), dtype=bool)
        if pairs:
            uv = np.array(sorted(pairs), dtype=np.int64)
            a[uv[:, 0], uv[:, 1]] = True
        if complement:
            a = ~(a | a.T)
            np.fill_diagonal(a, False)
            a = np.triu(a, 1)
        u, v = np.nonzero(a)
        if _is_connected(n, u, v):
            return n, u.astype(np.int64), v.astype(np.int64)
    raise ValueError(
        f"could not draw a connected {d}-regular graph on n={n} nodes in {_MAX_TRIES} tries"
    )


def _topology_edges(name: str, n: int, rng: np.random.Generator, params: dict[str, Any]) -> _Edges:
    if name == "ring":
        return _offsets_graph(n, [1])
    if name == "path":
        i = np.arange(n - 1)
        return _dedup(n, i, i + 1)
    if name == "torus":
        m = _torus_side(n)
        r, c = np.divmod(np.arange(n), m)
        right = r * m + (c + 1) % m
        down = ((r + 1) % m) * m + c
        i = np.arange(n)
        return _dedup(n, np.concatenate([i, i]), np.concatenate([right, down]))
    if name == "hypercube":
        d = _hypercube_dim(n)
        i = np.arange(n)
        return _dedup(n, np.tile(i, d), np.concatenate([i ^ (1 << k) for k in range(d)]))
    if name == "exponential":
        return _offsets_graph(n, [1 << k for k in range((n - 1).bit_length()) if (1 << k) < n])
    if name in ("complete", "exact_gap"):
        return _dedup(n, *np.triu_indices(n, 1))
    if name == "star":
        return _dedup(n, np.zeros(n - 1, dtype=np.int64), np.arange(1, n))
    if name == "erdos_renyi":
        return _erdos_renyi(n, params["p"], rng)
    if name == "random_regular":
        return _random_regular(n, params["degree"], rng)
    raise AssertionError(name)  # pragma: no cover - names are validated first


def _named_edges(
    topology: str, n: Any, seed: SeedLike, params: dict[str, Any], need_gap: bool = True
) -> tuple[str, _Edges]:
    name = _topology_name(topology)
    n = _check_n(n)
    # exact_gap's graph is the complete graph whatever g is: adjacency() needs no gap.
    _check_params(name, params, required=need_gap or name != "exact_gap")
    if name == "exact_gap" and params.get("gap") is not None:
        _check_unit_interval("gap", params["gap"], "exact_gap spectral")
    rng = as_generator(seed)
    return name, _topology_edges(name, n, rng, params)


def _is_networkx(graph: Any) -> bool:
    return hasattr(graph, "nodes") and hasattr(graph, "edges") and hasattr(graph, "is_directed")


def _graph_edges(graph: Any) -> _Edges:
    """Validated edge list of a user graph (numpy/array-like, scipy sparse, networkx)."""
    if _is_networkx(graph):
        if graph.is_directed():
            raise ValueError("graph must be undirected; got a directed networkx graph")
        import networkx as nx

        a = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None, dtype=float)
        a = (a != 0).astype(float)  # multigraph edge counts -> 0/1
        return _graph_edges(a)
    if sp.issparse(graph):
        mat = sp.coo_array(graph)
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise ValueError(f"adjacency must be a square matrix, got shape {mat.shape}")
        n = _check_n(mat.shape[0])
        mat.sum_duplicates()
        data = np.asarray(mat.data)
        nz = data != 0
        if not np.all(data[nz] == 1):
            raise ValueError("adjacency entries must be 0/1 or boolean")
        r, c = mat.row[nz], mat.col[nz]
        forward = set(zip(r.tolist(), c.tolist()))
        if any((j, i) not in forward for i, j in forward):
            raise ValueError("adjacency must be symmetric (undirected graph)")
        return _dedup(n, r, c)
    try:
        a = np.asarray(graph)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"cannot read adjacency from {type(graph).__name__}: {exc}") from None
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {a.shape}")
    n = _check_n(a.shape[0])
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"adjacency must be numeric or boolean, got dtype {a.dtype}")
        bad = ~((a == 0) | (a == 1))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"adjacency entries must be 0/1 or boolean; A[{i}, {j}] = {a[i, j]!r}")
        a = a == 1
    if not np.array_equal(a, a.T):
        i, j = np.argwhere(a != a.T)[0]
        raise ValueError(
            f"adjacency must be symmetric (undirected graph); A[{i}, {j}] != A[{j}, {i}]"
        )
    u, v = np.nonzero(np.triu(a, 1))
    return n, u.astype(np.int64), v.astype(np.int64)


def _edges_to_dense(edges: _Edges) -> np.ndarray:
    n, u, v = edges
    a = np.zeros((n, n), dtype=bool)
    a[u, v] = True
    a[v, u] = True
    return a


# --------------------------------------------------------------------------- public: graphs


def adjacency(topology: str, n: int, *, seed: SeedLike = None, **params: Any) -> np.ndarray:
    """Adjacency matrix of a named topology.

    Parameters
    ----------
    topology : str
        One of :data:`TOPOLOGIES`.  ``"exact_gap"`` has the complete graph's adjacency.
    n : int
        Number of nodes (workers), ``n >= 2``.  ``torus`` needs ``n = m*m`` with
        ``m >= 3``; ``hypercube`` needs ``n`` a power of two.
    seed : None, int or numpy.random.Generator
        Randomness for ``erdos_renyi`` and ``random_regular``.
    **params
        ``p`` (edge probability in (0, 1]) for ``erdos_renyi``; ``degree`` for
        ``random_regular`` (``1 <= degree < n``, ``n*degree`` even); ``gap`` for
        ``exact_gap`` (optional here: its graph is complete for every ``g``).  Random graphs are redrawn from the same generator until
        connected (at most 100 draws, then ValueError).

    Returns
    -------
    numpy.ndarray
        Boolean ``(n, n)`` array, symmetric, zero diagonal.

    Raises
    ------
    ValueError
        For a bad ``n``, an unknown topology or a bad parameter; the message names it.

    Examples
    --------
    >>> a = adjacency("ring", 5)
    >>> a.sum(axis=1).tolist()
    [2, 2, 2, 2, 2]
    >>> adjacency("random_regular", 8, degree=3, seed=0).sum(axis=0).tolist()
    [3, 3, 3, 3, 3, 3, 3, 3]
    """
    _, edges = _named_edges(topology, n, seed, params, need_gap=False)
    return _edges_to_dense(edges)


def graph_adjacency(graph: Any) -> np.ndarray:
    """Boolean adjacency of a user graph.

    Parameters
    ----------
    graph : array_like, scipy.sparse matrix or networkx.Graph
        A square symmetric 0/1 (or boolean) matrix, or an undirected networkx graph
        (nodes taken in ``graph.nodes`` order).  Self-loops are dropped: every mixing
        matrix carries its own diagonal.

    Returns
    -------
    numpy.ndarray
        Boolean ``(n, n)`` array, symmetric, zero diagonal.

    Raises
    ------
    ValueError
        If the matrix is not square, not symmetric, not 0/1, or has fewer than 2 nodes.

    Examples
    --------
    >>> graph_adjacency([[0, 1, 0], [1, 0, 1], [0, 1, 0]]).astype(int).tolist()
    [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    """
    return _edges_to_dense(_graph_edges(graph))


# --------------------------------------------------------------------------- public: weights


def _weights_from_edges(edges: _Edges, rule: str, sparse: bool) -> ArrayOrSparse:
    n, u, v = edges
    deg = np.bincount(u, minlength=n) + np.bincount(v, minlength=n)
    if rule == "uniform":
        # Each closed neighbourhood averaged equally: only row-stochastic when irregular.
        w_uv = 1.0 / (deg[u] + 1.0)
        w_vu = 1.0 / (deg[v] + 1.0)
        diag = 1.0 / (deg + 1.0)
    else:
        if rule == "metropolis":
            w_uv = 1.0 / (1.0 + np.maximum(deg[u], deg[v]))
        else:  # max_degree
            w_uv = np.full(u.shape, 1.0 / (1.0 + (deg.max() if n else 0)))
        w_vu = w_uv
        diag = 1.0 - np.bincount(u, w_uv, minlength=n) - np.bincount(v, w_uv, minlength=n)
    idx = np.arange(n)
    rows = np.concatenate([u, v, idx])
    cols = np.concatenate([v, u, idx])
    data = np.concatenate([w_uv, w_vu, diag])
    if sparse:
        return sp.csr_array((data, (rows, cols)), shape=(n, n))
    w = np.zeros((n, n))
    w[rows, cols] = data
    return w


def _weights(graph: Any, rule: str) -> ArrayOrSparse:
    return _weights_from_edges(_graph_edges(graph), rule, sparse=sp.issparse(graph))


def metropolis_weights(A: Any) -> ArrayOrSparse:
    """Metropolis-Hastings weights ``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges.

    The diagonal takes the rest of each row, so ``W`` is symmetric and doubly
    stochastic on any graph (A4), with positive diagonal.

    Parameters
    ----------
    A : array_like, scipy.sparse matrix or networkx.Graph
        Adjacency (see :func:`graph_adjacency`).  A sparse ``A`` gives a sparse ``W``.

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array

    Examples
    --------
    >>> W = metropolis_weights(adjacency("star", 4))
    >>> W[0].round(3).tolist(), W[1].round(3).tolist()
    ([0.25, 0.25, 0.25, 0.25], [0.25, 0.75, 0.0, 0.0])
    """
    return _weights(A, "metropolis")


def max_degree_weights(A: Any) -> ArrayOrSparse:
    """Constant edge weight ``1 / (1 + max_degree)``, diagonal takes the rest.

    Symmetric and doubly stochastic on any graph.  On a ``d``-regular graph it equals
    the Metropolis weights (``1/(d+1)`` everywhere on the closed neighbourhood).

    Parameters
    ----------
    A : array_like, scipy.sparse matrix or networkx.Graph
        Adjacency (see :func:`graph_adjacency`).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array

    Examples
    --------
    >>> max_degree_weights(adjacency("path", 3)).round(3).tolist()
    [[0.667, 0.333, 0.0], [0.333, 0.333, 0.333], [0.0, 0.333, 0.667]]
    """
    return _weights(A, "max_degree")


def uniform_weights(A: Any) -> ArrayOrSparse:
    """Uniform closed-neighbourhood averaging ``W_ij = 1 / (deg_i + 1)``.

    This is what DePRL's released code does.  It is row-stochastic only: on an
    irregular graph it is neither symmetric nor column-stochastic and breaks A4
    (:func:`check_mixing` says so).

    Parameters
    ----------
    A : array_like, scipy.sparse matrix or networkx.Graph
        Adjacency (see :func:`graph_adjacency`).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array

    Examples
    --------
    >>> W = uniform_weights(adjacency("path", 3))
    >>> W.sum(axis=1).round(3).tolist(), W.sum(axis=0).round(3).tolist()
    ([1.0, 1.0, 1.0], [0.833, 1.333, 0.833])
    """
    return _weights(A, "uniform")


def lazy(W: ArrayOrSparse, a: float) -> ArrayOrSparse:
    """Lazy mixing matrix ``(1 - a) I + a W``.

    Eigenvalues map as ``lambda -> 1 - a + a * lambda``; for ``a <= 1/2`` every
    eigenvalue of a stochastic ``W`` moves into ``[0, 1]``, which removes the
    eigenvalue ``-1`` of bipartite graphs with empty diagonal.

    Parameters
    ----------
    W : numpy.ndarray or scipy.sparse matrix
        Square mixing matrix.
    a : float
        Laziness, ``0 < a <= 1`` (``a = 1`` returns ``W``).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array
        Same kind as ``W``.

    Examples
    --------
    >>> lazy(np.array([[0.0, 1.0], [1.0, 0.0]]), 0.5).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    a = _check_unit_interval("a", a, "lazy weight")
    if sp.issparse(W):
        n = W.shape[0]
        if W.ndim != 2 or W.shape[1] != n:
            raise ValueError(f"W must be square, got shape {W.shape}")
        return sp.csr_array((1.0 - a) * sp.identity(n, format="csr") + a * sp.csr_array(W))
    w = np.asarray(W, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"W must be square, got shape {w.shape}")
    return (1.0 - a) * np.eye(w.shape[0]) + a * w


def mixing_matrix(
    topology: Any,
    n: int | None = None,
    *,
    weights: str = "metropolis",
    seed: SeedLike = None,
    lazy: float | None = None,
    sparse: bool = False,
    **params: Any,
) -> ArrayOrSparse:
    """Mixing matrix ``W`` of a named topology or a user graph.

    Parameters
    ----------
    topology : str, array_like or networkx.Graph
        A name from :data:`TOPOLOGIES`, or an adjacency (see :func:`graph_adjacency`).
    n : int, optional
        Number of workers; required for a name, optional for a graph (must agree).
    weights : {"metropolis", "max_degree", "uniform"}
        Weight rule (see :data:`WEIGHT_RULES`).  Ignored by ``"exact_gap"``, whose ``W``
        is the closed form ``(1 - g) I + g 11^T/n`` with spectral gap exactly ``g``.
    seed : None, int or numpy.random.Generator
        Randomness for ``erdos_renyi`` and ``random_regular``.
    lazy : float, optional
        If given, return ``(1 - lazy) I + lazy W`` (see :func:`lazy`).
    sparse : bool
        Return a ``scipy.sparse.csr_array`` (built without a dense ``n x n`` step).
    **params
        ``p``, ``degree`` or ``gap`` (see :func:`adjacency`).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array
        ``(n, n)`` mixing matrix.

    Raises
    ------
    ValueError
        For any bad argument; the message names the bad value.

    Examples
    --------
    >>> import math
    >>> W = mixing_matrix("ring", 8)
    >>> round(spectral_gap(W), 6) == round(2 / 3 * (1 - math.cos(2 * math.pi / 8)), 6)
    True
    >>> round(spectral_gap(mixing_matrix("exact_gap", 10, gap=0.25)), 12)
    0.25
    """
    rule = _weight_rule(weights)
    laziness = None if lazy is None else _check_unit_interval("a", lazy, "lazy weight")
    if isinstance(topology, str):
        if n is None:
            raise ValueError(f"n is required for topology {topology!r}")
        name, edges = _named_edges(topology, n, seed, params)
        if name == "exact_gap":
            g = float(params["gap"])
            size = edges[0]
            w: ArrayOrSparse = (1.0 - g) * np.eye(size) + g / size
            if sparse:
                w = sp.csr_array(w)
        else:
            w = _weights_from_edges(edges, rule, sparse)
    else:
        if params:
            raise ValueError(
                f"parameters {', '.join(sorted(params))} apply to named topologies only"
            )
        edges = _graph_edges(topology)
        if n is not None and _check_n(n) != edges[0]:
            raise ValueError(f"n={n} does not match the graph's {edges[0]} nodes")
        w = _weights_from_edges(edges, rule, sparse)
    if laziness is not None:
        w = _lazy_unchecked(w, laziness)
    return w


def _lazy_unchecked(w: ArrayOrSparse, a: float) -> ArrayOrSparse:
    if sp.issparse(w):
        return sp.csr_array((1.0 - a) * sp.identity(w.shape[0], format="csr") + a * w)
    return (1.0 - a) * np.eye(w.shape[0]) + a * w


# --------------------------------------------------------------------------- public: spectra


def _square(W: Any) -> ArrayOrSparse:
    if sp.issparse(W):
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"W must be a square matrix, got shape {W.shape}")
        return sp.csr_array(W, dtype=float)
    w = np.asarray(W, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"W must be a square matrix, got shape {w.shape}")
    return w


def _rho_dense(w: np.ndarray) -> float:
    m = w - 1.0 / w.shape[0]
    if np.allclose(w, w.T, rtol=0.0, atol=1e-12):
        m = (m + m.T) / 2.0
        return float(np.max(np.abs(np.linalg.eigvalsh(m))))
    return float(np.linalg.norm(m, 2))


def _rho_iterative(w: ArrayOrSparse) -> float:
    n = w.shape[0]
    asym = abs(w - w.T).max() if sp.issparse(w) else np.max(np.abs(w - w.T))
    op = LinearOperator(
        (n, n),
        matvec=lambda x: w @ x - x.mean(axis=0),
        rmatvec=lambda x: w.T @ x - x.mean(axis=0),
        dtype=float,
    )
    # A fixed start vector keeps the result deterministic.
    v0 = np.cos(np.arange(n) * 1.2345 + 0.1)
    if asym <= 1e-12:
        vals = eigsh(op, k=1, which="LM", v0=v0, return_eigenvectors=False, maxiter=20 * n)
        return float(abs(vals[0]))
    s = svds(op, k=1, v0=v0, return_singular_vectors=False, maxiter=20 * n)
    return float(s[0])


def mixing_rate(W: Any, *, method: Literal["auto", "dense", "sparse"] = "auto") -> float:
    """Mixing rate ``rho = ||W - 11^T/n||_2``.

    One gossip step shrinks the disagreement ``x - mean(x)`` by at least ``rho``
    when ``W`` is doubly stochastic.

    Parameters
    ----------
    W : numpy.ndarray or scipy.sparse matrix
        Square matrix.
    method : {"auto", "dense", "sparse"}
        ``"dense"``: symmetric eigensolver (``numpy.linalg.eigvalsh``) when ``W`` is
        symmetric, else the matrix 2-norm.  ``"sparse"``: ARPACK (``eigsh``, or
        ``svds`` for nonsymmetric ``W``) on the operator ``x -> W x - mean(x) 1``.
        ``"auto"`` uses dense up to ``n = 1024`` and sparse beyond.

    Returns
    -------
    float

    Examples
    --------
    >>> round(mixing_rate(mixing_matrix("hypercube", 8)), 12)
    0.5
    """
    w = _square(W)
    n = w.shape[0]
    if method not in ("auto", "dense", "sparse"):
        raise ValueError(f"method must be 'auto', 'dense' or 'sparse', got {method!r}")
    if method == "auto":
        method = "dense" if n <= _DENSE_MAX else "sparse"
    if method == "sparse" and n < 3:
        method = "dense"  # ARPACK needs k < n - 1
    if method == "dense":
        dense = w.toarray() if sp.issparse(w) else w
        if not np.all(np.isfinite(dense)):
            raise ValueError("W has non-finite entries")
        return _rho_dense(dense)
    if not np.all(np.isfinite(w.data if sp.issparse(w) else w)):
        raise ValueError("W has non-finite entries")
    return _rho_iterative(w)


def spectral_gap(W: Any, *, method: Literal["auto", "dense", "sparse"] = "auto") -> float:
    """Spectral gap ``1 - ||W - 11^T/n||_2`` (``1 - rho``).

    Parameters
    ----------
    W : numpy.ndarray or scipy.sparse matrix
        Square matrix.
    method : {"auto", "dense", "sparse"}
        See :func:`mixing_rate`.

    Returns
    -------
    float

    Examples
    --------
    >>> round(spectral_gap(mixing_matrix("complete", 6)), 12)
    1.0
    >>> round(spectral_gap(mixing_matrix("star", 5)), 12)
    0.2
    """
    return 1.0 - mixing_rate(W, method=method)


# --------------------------------------------------------------------------- public: A4 checks


_LABELS = {
    "square_and_finite": "square and finite",
    "nonnegative": "nonnegative",
    "symmetric": "symmetric",
    "row_sums": "row sums",
    "column_sums": "column sums",
    "zero_pattern": "zero pattern",
    "connected": "connected",
}


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def mixing_report(W: Any, adjacency: Any = None, tol: float = 1e-10) -> MixingReport:
    """Run every A4 check on ``W`` and report them all; raise only when W cannot be examined at all.

    Unlike :func:`check_mixing`, a failing property does not raise: it is
    recorded in ``report.checks`` and ``report.failures`` (``report.ok`` is
    False).  Arguments as in :func:`check_mixing`.

    Raises
    ------
    MixingMatrixError
        When W is not a square numeric matrix with finite entries.

    Examples
    --------
    >>> r = mixing_report(uniform_weights(adjacency("star", 4)))
    >>> r.ok, [k for k, ok in r.checks.items() if not ok]
    (False, ['symmetric', 'column_sums'])
    """
    tol = float(tol)
    if not (tol >= 0.0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    issparse = sp.issparse(W)
    shape = W.shape if issparse else np.shape(W)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        raise MixingMatrixError(
            f"square and finite: W has shape {tuple(shape)}, not (n, n)", "square_and_finite"
        )
    n = int(shape[0])
    if issparse and n <= _DENSE_MAX:
        W, issparse = W.toarray(), False
    if issparse:
        w = sp.csr_array(W, dtype=float)
        w.sum_duplicates()
        values = w.data
    else:
        try:
            w = np.asarray(W, dtype=float)
        except (TypeError, ValueError):
            raise MixingMatrixError("square and finite: W is not numeric", "square_and_finite") from None
        values = w
    bad = ~np.isfinite(values)
    if bad.any():
        raise MixingMatrixError(
            f"square and finite: W has {int(bad.sum())} non-finite entries", "square_and_finite"
        )
    checks: dict[str, bool] = {"square_and_finite": True}
    failures: list[str] = []

    def record(key: str, message: str | None) -> None:
        checks[key] = message is None
        if message is not None:
            failures.append(f"{_LABELS[key]}: {message}")

    # nonnegative
    if issparse:
        coo = w.tocoo()
        neg = coo.data < -tol
        msg = None
        if neg.any():
            k = int(np.argmin(coo.data))
            msg = (f"W[{coo.row[k]}, {coo.col[k]}] = {_fmt(coo.data[k])} < 0 "
                   f"({int(neg.sum())} negative entries)")
    else:
        neg = w < -tol
        msg = None
        if neg.any():
            i, j = np.unravel_index(int(np.argmin(w)), w.shape)
            msg = f"W[{i}, {j}] = {_fmt(w[i, j])} < 0 ({int(neg.sum())} negative entries)"
    record("nonnegative", msg)

    # symmetric
    diff = (w - w.T)
    if issparse:
        diff = diff.tocoo()
        mags = np.abs(diff.data)
        k = int(np.argmax(mags)) if mags.size else -1
        worst = float(mags[k]) if mags.size else 0.0
        ij = (int(diff.row[k]), int(diff.col[k])) if mags.size else (0, 0)
    else:
        mags = np.abs(diff)
        flat = int(np.argmax(mags))
        ij = tuple(int(x) for x in np.unravel_index(flat, w.shape))
        worst = float(mags.flat[flat])
    msg = None
    if worst > tol:
        i, j = ij
        wij = float(w[i, j]) if not issparse else float(w[[i], [j]][0])
        wji = float(w[j, i]) if not issparse else float(w[[j], [i]][0])
        msg = f"W[{i}, {j}] = {_fmt(wij)} but W[{j}, {i}] = {_fmt(wji)} (max asymmetry {worst:.1e})"
    record("symmetric", msg)

    # row and column sums
    for key, axis, what in (("row_sums", 1, "row"), ("column_sums", 0, "column")):
        sums = np.asarray(w.sum(axis=axis)).ravel()
        dev = np.abs(sums - 1.0)
        k = int(np.argmax(dev))
        msg = None
        if dev[k] > tol:
            msg = f"{what} {k} sums to {_fmt(sums[k])}, not 1 (max deviation {dev[k]:.1e})"
        record(key, msg)

    # zero pattern outside the graph
    if adjacency is not None:
        m, u, v = _graph_edges(adjacency)
        if m != n:
            raise ValueError(f"adjacency has {m} nodes but W is {n} x {n}")
        idx = np.arange(n)
        allowed = sp.csr_array(
            (np.ones(2 * u.size + n), (np.concatenate([u, v, idx]), np.concatenate([v, u, idx]))),
            shape=(n, n),
        )
        wc = sp.csr_array(w) if not issparse else w
        outside = (wc - wc.multiply(allowed)).tocoo()
        big = np.abs(outside.data) > tol
        msg = None
        if big.any():
            k = int(np.argmax(np.abs(outside.data)))
            i, j = int(outside.row[k]), int(outside.col[k])
            msg = (f"W[{i}, {j}] = {_fmt(outside.data[k])} but nodes {i} and {j} are not "
                   f"adjacent ({int(big.sum())} entries outside the graph)")
        record("zero_pattern", msg)

    # degrees of the off-diagonal support, and connectivity
    sup = (w if issparse else sp.csr_array(w)).tocoo()
    keep = (np.abs(sup.data) > tol) & (sup.row != sup.col)
    rows, cols = sup.row[keep], sup.col[keep]
    counts = np.bincount(rows, minlength=n)
    degrees = DegreeStats(int(counts.min()), int(counts.max()), float(counts.mean()))
    rho = mixing_rate(w)
    msg = None
    if not rho < 1.0 - tol:
        parts = _n_components(n, rows, cols)
        if parts > 1:
            msg = (f"rho = ||W - 11^T/n||_2 = {_fmt(rho)} >= 1 - tol: the graph is disconnected "
                   f"({parts} components), so the spectral gap is {max(0.0, 1.0 - rho):.1e}")
        else:
            msg = (f"rho = ||W - 11^T/n||_2 = {_fmt(rho)} >= 1 - tol although the support is "
                   "connected (periodic W, e.g. a bipartite graph with zero diagonal: use lazy(W, a))")
    record("connected", msg)
    return MixingReport(n=n, spectral_gap=1.0 - rho, rho=rho, degrees=degrees,
                        checks=checks, failures=tuple(failures))


def check_mixing(W: Any, adjacency: Any = None, tol: float = 1e-10) -> MixingReport:
    """Check assumption A4 on ``W``; raise naming the first property that fails.

    Properties, in order: square and finite, nonnegative, symmetric, row sums, column
    sums, zero pattern outside the graph (only when ``adjacency`` is given), connected
    (``rho < 1 - tol``).

    Parameters
    ----------
    W : numpy.ndarray or scipy.sparse matrix
        Candidate mixing matrix.
    adjacency : array_like, scipy.sparse matrix or networkx.Graph, optional
        Graph whose non-edges must carry zero weight.
    tol : float
        Absolute tolerance for every comparison.

    Returns
    -------
    MixingReport
        ``n``, ``spectral_gap``, ``rho``, ``degrees`` and ``checks`` (all ``True``).

    Raises
    ------
    MixingMatrixError
        Naming the first failing property (``err.property``) with the numbers that
        fail it; later failures are appended after ``also failing:``.

    Examples
    --------
    >>> report = check_mixing(mixing_matrix("ring", 16), adjacency("ring", 16))
    >>> round(report.rho, 4), report.degrees.max, all(report.checks.values())
    (0.9493, 2, True)
    >>> check_mixing(uniform_weights(adjacency("star", 4)))
    Traceback (most recent call last):
    ...
    deprl_theory.graphs.MixingMatrixError: symmetric: W[0, 1] = 0.25 but W[1, 0] = 0.5 (max asymmetry 2.5e-01); also failing: column sums: column 0 sums to 1.75, not 1 (max deviation 7.5e-01)
    """
    report = mixing_report(W, adjacency, tol)
    if report.failures:
        first = next(k for k, ok in report.checks.items() if not ok)
        message = report.failures[0]
        if len(report.failures) > 1:
            message += "; also failing: " + "; ".join(report.failures[1:])
        raise MixingMatrixError(message, first)
    return report
