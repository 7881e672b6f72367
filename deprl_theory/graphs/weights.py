"""Mixing matrices: weight rules on a graph, laziness, and W of a named topology.

Metropolis-Hastings and max-degree weights are symmetric and doubly
stochastic on any graph (assumption A4); uniform closed-neighbourhood weights
are only row-stochastic on an irregular graph (kept because DePRL's released
code uses them; :func:`~deprl_theory.graphs.check_mixing` says what breaks).
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import scipy.sparse as sp

from .._rng import SeedLike
from .topologies import Edges, check_n, check_unit_interval, graph_edges, named_edges

__all__ = ["WEIGHT_RULES", "ArrayOrSparse", "metropolis_weights", "max_degree_weights", "uniform_weights", "lazy",
           "mixing_matrix"]

WEIGHT_RULES: tuple[str, ...] = ("metropolis", "max_degree", "uniform")
ArrayOrSparse = Union[np.ndarray, sp.sparray, sp.spmatrix]


def _weight_rule(weights: str) -> str:
    rule = str(weights).strip().lower().replace("-", "_")
    if rule not in WEIGHT_RULES:
        raise ValueError(
            f"unknown weights rule {weights!r}; valid rules: {', '.join(WEIGHT_RULES)}"
        )
    return rule


def _weights_from_edges(edges: Edges, rule: str, sparse: bool) -> ArrayOrSparse:
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
    return _weights_from_edges(graph_edges(graph), rule, sparse=sp.issparse(graph))


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
    a = check_unit_interval("a", a, "lazy weight")
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
    laziness = None if lazy is None else check_unit_interval("a", lazy, "lazy weight")
    if isinstance(topology, str):
        if n is None:
            raise ValueError(f"n is required for topology {topology!r}")
        name, edges = named_edges(topology, n, seed, params)
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
        edges = graph_edges(topology)
        if n is not None and check_n(n) != edges[0]:
            raise ValueError(f"n={n} does not match the graph's {edges[0]} nodes")
        w = _weights_from_edges(edges, rule, sparse)
    if laziness is not None:
        w = _lazy_unchecked(w, laziness)
    return w


def _lazy_unchecked(w: ArrayOrSparse, a: float) -> ArrayOrSparse:
    if sp.issparse(w):
        return sp.csr_array((1.0 - a) * sp.identity(w.shape[0], format="csr") + a * w)
    return (1.0 - a) * np.eye(w.shape[0]) + a * w
