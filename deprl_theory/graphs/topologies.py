"""Gossip graph topologies: one registry, edge lists, adjacency matrices.

:data:`TOPOLOGY_INFO` is the one registry of the named topologies: their
names (:data:`TOPOLOGIES`), the parameters each needs, the sizes N each
allows, and a line of description from which every command's ``--help`` is
derived. Graphs are handled as an edge list ``(n, u, v)`` with ``u < v`` so the
sparse path never materialises an ``n x n`` dense matrix.
"""
from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .._rng import SeedLike, as_generator

__all__ = ["Topology", "TOPOLOGY_INFO", "TOPOLOGIES", "Edges", "adjacency", "graph_adjacency", "topology_help",
           "check_n", "check_unit_interval", "topology_name", "named_edges", "graph_edges", "edges_to_dense",
           "n_components", "graph_memory"]


class Topology(NamedTuple):
    """A named topology: the parameters it needs, the N it allows, and what it is."""

    params: tuple[str, ...]
    sizes: str
    description: str


#: the registry: every named topology, in the order the docs list them
TOPOLOGY_INFO: dict[str, Topology] = {
    "ring": Topology((), "N >= 2", "cycle; spectral gap ~ 1/N^2"),
    "path": Topology((), "N >= 2", "a line of workers"),
    "torus": Topology((), "N = m*m, m >= 3", "2-D wrap-around grid"),
    "hypercube": Topology((), "N a power of two", "log2(N)-dimensional cube"),
    "exponential": Topology((), "N >= 2", "links to i + 2^k; gap bounded away from 0"),
    "complete": Topology((), "N >= 2", "every pair linked"),
    "star": Topology((), "N >= 2", "one hub"),
    "erdos_renyi": Topology(("p",), "N >= 2", "random graph, edge probability p, redrawn until connected"),
    "random_regular": Topology(("degree",), "N * degree even", "random degree-regular graph, connected"),
    "exact_gap": Topology(("gap",), "N >= 2", "W = (1 - g) I + g 11^T/N: spectral gap exactly g"),
}
TOPOLOGIES: tuple[str, ...] = tuple(TOPOLOGY_INFO)

# Random graphs are resampled (same generator) until connected, at most this often.
_MAX_TRIES = 100

Edges = tuple[int, np.ndarray, np.ndarray]


def topology_help() -> str:
    """One line per topology (name, parameters, allowed N), for a command's --help."""
    parts = []
    for name, t in TOPOLOGY_INFO.items():
        needs = f" --{', --'.join(t.params)}" if t.params else ""
        parts.append(f"{name}{needs} ({t.sizes})")
    return "; ".join(parts)


# --------------------------------------------------------------------------- input checks


def check_n(n: Any) -> int:
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


def check_unit_interval(name: str, value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {name} must be a number in (0, 1], got {value!r}") from None
    if not (0.0 < x <= 1.0):
        raise ValueError(f"{what} {name} must lie in (0, 1], got {name}={value!r}")
    return x


def topology_name(topology: str) -> str:
    name = str(topology).strip().lower().replace("-", "_")
    if name not in TOPOLOGIES:
        raise ValueError(
            f"unknown topology {topology!r}; valid topologies: {', '.join(TOPOLOGIES)}"
        )
    return name


def _check_params(name: str, params: dict[str, Any], required: bool = True) -> dict[str, Any]:
    allowed = TOPOLOGY_INFO[name].params
    extra = sorted(set(params) - set(allowed))
    if extra:
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no parameters"
        raise ValueError(f"topology {name!r} {takes}; got {', '.join(extra)}")
    missing = [k for k in allowed if params.get(k) is None]
    if missing and required:
        raise ValueError(f"topology {name!r} needs parameter {missing[0]}")
    return params


# --------------------------------------------------------------------------- edge lists


def _dedup(n: int, u: np.ndarray, v: np.ndarray) -> Edges:
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    keep = lo != hi
    key = np.unique(lo[keep] * n + hi[keep])
    return n, key // n, key % n


def _is_connected(n: int, u: np.ndarray, v: np.ndarray) -> bool:
    return n_components(n, u, v) == 1


def n_components(n: int, u: np.ndarray, v: np.ndarray) -> int:
    graph = sp.csr_array((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


def _offsets_graph(n: int, offsets: list[int]) -> Edges:
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


def _erdos_renyi(n: int, p: Any, rng: np.random.Generator) -> Edges:
    p = check_unit_interval("p", p, "erdos_renyi edge probability")
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


def _random_regular(n: int, degree: Any, rng: np.random.Generator) -> Edges:
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


def _topology_edges(name: str, n: int, rng: np.random.Generator, params: dict[str, Any]) -> Edges:
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


def named_edges(
    topology: str, n: Any, seed: SeedLike, params: dict[str, Any], need_gap: bool = True
) -> tuple[str, Edges]:
    name = topology_name(topology)
    n = check_n(n)
    # exact_gap's graph is the complete graph whatever g is: adjacency() needs no gap.
    _check_params(name, params, required=need_gap or name != "exact_gap")
    if name == "exact_gap" and params.get("gap") is not None:
        check_unit_interval("gap", params["gap"], "exact_gap spectral")
    rng = as_generator(seed)
    return name, _topology_edges(name, n, rng, params)


def _is_networkx(graph: Any) -> bool:
    return hasattr(graph, "nodes") and hasattr(graph, "edges") and hasattr(graph, "is_directed")


def graph_edges(graph: Any) -> Edges:
    """Validated edge list of a user graph (numpy/array-like, scipy sparse, networkx)."""
    if _is_networkx(graph):
        if graph.is_directed():
            raise ValueError("graph must be undirected; got a directed networkx graph")
        import networkx as nx

        a = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None, dtype=float)
        a = (a != 0).astype(float)  # multigraph edge counts -> 0/1
        return graph_edges(a)
    if sp.issparse(graph):
        mat = sp.coo_array(graph)
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise ValueError(f"adjacency must be a square matrix, got shape {mat.shape}")
        n = check_n(mat.shape[0])
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
    n = check_n(a.shape[0])
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"adjacency must be numeric or boolean, got dtype {a.dtype}")
        bad = ~((a == 0) | (a == 1))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"adjacency entries must be 0/1 or boolean; A[{i}, {j}] = {float(a[i, j])!r}")
        a = a == 1
    if not np.array_equal(a, a.T):
        i, j = np.argwhere(a != a.T)[0]
        raise ValueError(
            f"adjacency must be symmetric (undirected graph); A[{i}, {j}] != A[{j}, {i}]"
        )
    u, v = np.nonzero(np.triu(a, 1))
    return n, u.astype(np.int64), v.astype(np.int64)


def edges_to_dense(edges: Edges) -> np.ndarray:
    n, u, v = edges
    a = np.zeros((n, n), dtype=bool)
    a[u, v] = True
    a[v, u] = True
    return a


# --------------------------------------------------------------------------- public: graphs


def adjacency(topology: str, n: int, *, seed: SeedLike = None, sparse: bool = False, **params: Any):
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
        ``exact_gap`` (optional here: its graph is complete for every ``g``).
        Random graphs are redrawn from the same generator until connected (at
        most 100 draws, then ValueError).
    sparse : bool
        Return a ``scipy.sparse.csr_array`` (no dense ``n x n`` step: for large n).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array
        Boolean ``(n, n)``, symmetric, zero diagonal.

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
    _, edges = named_edges(topology, n, seed, params, need_gap=False)
    if sparse:
        m, u, v = edges
        return sp.csr_array((np.ones(2 * u.size, dtype=bool), (np.concatenate([u, v]), np.concatenate([v, u]))),
                            shape=(m, m))
    return edges_to_dense(edges)


def graph_memory(topology: str, n: int) -> int:
    """Rough peak bytes of building a named topology of n nodes (its construction, not only its edges).

    Complete-like and random graphs go through an ``n x n`` (or n^2/2-pair)
    step; the others through a few arrays per edge.
    """
    if topology in ("complete", "exact_gap", "erdos_renyi", "random_regular"):
        return 16 * int(n) ** 2
    return 64 * int(n) * max(1, int(n).bit_length())


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
    return edges_to_dense(graph_edges(graph))
