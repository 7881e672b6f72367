"""Assumption A4, property by property: nonnegative, symmetric, doubly stochastic, on the graph, connected."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from .spectra import DENSE_MAX, mixing_rate
from .topologies import graph_edges, n_components

__all__ = ["MixingMatrixError", "DegreeStats", "MixingReport", "mixing_report", "check_mixing"]


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


def _as_matrix(W: Any) -> np.ndarray | sp.csr_array:
    """W as a dense float array (sparse only above DENSE_MAX); MixingMatrixError if it cannot be examined."""
    issparse = sp.issparse(W)
    shape = W.shape if issparse else np.shape(W)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        raise MixingMatrixError(f"square and finite: W has shape {tuple(shape)}, not (n, n)", "square_and_finite")
    if issparse and shape[0] <= DENSE_MAX:
        W, issparse = W.toarray(), False
    if issparse:
        w = sp.csr_array(W, dtype=float)
        w.sum_duplicates()
        values = w.data
    else:
        try:
            w = values = np.asarray(W, dtype=float)
        except (TypeError, ValueError):
            raise MixingMatrixError("square and finite: W is not numeric", "square_and_finite") from None
    bad = ~np.isfinite(values)
    if bad.any():
        raise MixingMatrixError(f"square and finite: W has {int(bad.sum())} non-finite entries", "square_and_finite")
    return w


def _entry(w, i: int, j: int) -> float:
    return float(w[[i], [j]][0]) if sp.issparse(w) else float(w[i, j])


def _nonnegative(w, tol: float) -> str | None:
    coo = w.tocoo() if sp.issparse(w) else sp.coo_array(w)
    neg = coo.data < -tol
    if not neg.any():
        return None
    k = int(np.argmin(coo.data))
    return f"W[{coo.row[k]}, {coo.col[k]}] = {_fmt(coo.data[k])} < 0 ({int(neg.sum())} negative entries)"


def _symmetric(w, tol: float) -> str | None:
    diff = (w - w.T)
    diff = diff.tocoo() if sp.issparse(diff) else sp.coo_array(diff)
    mags = np.abs(diff.data)
    if not mags.size or mags.max() <= tol:
        return None
    k = int(np.argmax(mags))
    i, j = int(diff.row[k]), int(diff.col[k])
    return f"W[{i}, {j}] = {_fmt(_entry(w, i, j))} but W[{j}, {i}] = {_fmt(_entry(w, j, i))} " \
           f"(max asymmetry {mags[k]:.1e})"


def _sums(w, tol: float, axis: int, what: str) -> str | None:
    sums = np.asarray(w.sum(axis=axis)).ravel()
    dev = np.abs(sums - 1.0)
    k = int(np.argmax(dev))
    if dev[k] <= tol:
        return None
    return f"{what} {k} sums to {_fmt(sums[k])}, not 1 (max deviation {dev[k]:.1e})"


def _zero_pattern(w, adjacency: Any, tol: float) -> str | None:
    n = w.shape[0]
    m, u, v = graph_edges(adjacency)
    if m != n:
        raise ValueError(f"adjacency has {m} nodes but W is {n} x {n}")
    idx = np.arange(n)
    allowed = sp.csr_array((np.ones(2 * u.size + n), (np.concatenate([u, v, idx]), np.concatenate([v, u, idx]))),
                           shape=(n, n))
    wc = w if sp.issparse(w) else sp.csr_array(w)
    outside = (wc - wc.multiply(allowed)).tocoo()
    big = np.abs(outside.data) > tol
    if not big.any():
        return None
    k = int(np.argmax(np.abs(outside.data)))
    i, j = int(outside.row[k]), int(outside.col[k])
    return (f"W[{i}, {j}] = {_fmt(outside.data[k])} but nodes {i} and {j} are not "
            f"adjacent ({int(big.sum())} entries outside the graph)")


def _support(w, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the off-diagonal entries above ``tol``."""
    sup = (w if sp.issparse(w) else sp.csr_array(w)).tocoo()
    keep = (np.abs(sup.data) > tol) & (sup.row != sup.col)
    return sup.row[keep], sup.col[keep]


def _connected(n: int, rho: float, rows: np.ndarray, cols: np.ndarray, tol: float,
               stochastic: bool = True) -> str | None:
    """The connectivity check; the periodic-W advice only where lazy(W, a) would fix it.

    rho measures mixing only for a doubly stochastic W. When the sums fail,
    a large rho says nothing about the graph (that failure is reported on its
    own), so only the support's connectivity is judged.
    """
    if stochastic and rho < 1.0 - tol:
        return None
    parts = n_components(n, rows, cols)
    if parts > 1:
        return (f"rho = ||W - 11^T/n||_2 = {_fmt(rho)} >= 1 - tol: the graph is disconnected "
                f"({parts} components), so the spectral gap is {max(0.0, 1.0 - rho):.1e}" if stochastic else
                f"the graph of W's off-diagonal support is disconnected ({parts} components)")
    if not stochastic:
        return None
    return (f"rho = ||W - 11^T/n||_2 = {_fmt(rho)} >= 1 - tol although the support is "
            "connected (periodic W, e.g. a bipartite graph with zero diagonal: use lazy(W, a))")


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
    w = _as_matrix(W)
    n = w.shape[0]
    rows, cols = _support(w, tol)
    counts = np.bincount(rows, minlength=n)
    rho = mixing_rate(w)
    found = {"square_and_finite": None, "nonnegative": _nonnegative(w, tol), "symmetric": _symmetric(w, tol),
             "row_sums": _sums(w, tol, 1, "row"), "column_sums": _sums(w, tol, 0, "column")}
    if adjacency is not None:
        found["zero_pattern"] = _zero_pattern(w, adjacency, tol)
    stochastic = found["row_sums"] is None and found["column_sums"] is None
    found["connected"] = _connected(n, rho, rows, cols, tol, stochastic)
    return MixingReport(n=n, spectral_gap=1.0 - rho, rho=rho,
                        degrees=DegreeStats(int(counts.min()), int(counts.max()), float(counts.mean())),
                        checks={k: msg is None for k, msg in found.items()},
                        failures=tuple(f"{_LABELS[k]}: {msg}" for k, msg in found.items() if msg is not None))


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
    >>> check_mixing(uniform_weights(adjacency("star", 4)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deprl_theory.graphs.checks.MixingMatrixError: symmetric: W[0, 1] = 0.25 but W[1, 0] = 0.5 ...
    """
    report = mixing_report(W, adjacency, tol)
    if report.failures:
        first = next(k for k, ok in report.checks.items() if not ok)
        message = report.failures[0]
        if len(report.failures) > 1:
            message += "; also failing: " + "; ".join(report.failures[1:])
        raise MixingMatrixError(message, first)
    return report
