"""Spectra of mixing matrices: the mixing rate rho = ||W - 11^T/n||_2, the spectral gap 1 - rho, and the
whole-spectrum sum that sets gossip's stationary disagreement under gradient noise."""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, svds

from .weights import ArrayOrSparse

__all__ = ["DENSE_MAX", "mixing_rate", "spectral_gap", "noise_spectral_sum", "effective_gap"]

#: above this n the spectral norm is computed iteratively (ARPACK) instead of by a full
#: dense eigendecomposition; below it a sparse W is densified (cheaper and exact)
DENSE_MAX = 1024


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
    if asym > 1e-12:
        return float(svds(op, k=1, v0=v0, return_singular_vectors=False, maxiter=20 * n)[0])
    try:
        # Well-connected graphs (large gap) converge in a few hundred Lanczos steps ...
        vals = eigsh(op, k=1, which="LM", v0=v0, return_eigenvectors=False, maxiter=300, tol=1e-12)
        return float(abs(vals[0]))
    except ArpackNoConvergence:
        # ... a ring of 10^4 (gap ~ 1e-7) never does: its extreme eigenvalues are resolved by shift-invert.
        return _rho_shift_invert(sp.csc_array(w), v0)


def _rho_shift_invert(w: sp.csc_array, v0: np.ndarray) -> float:
    """rho of a symmetric doubly stochastic sparse W from the eigenvalues nearest +1 and -1.

    ``W - s I`` with s just outside [-1, 1] is nonsingular, so a sparse LU
    turns the eigenvalues next to the spectrum's ends into the best-separated
    ones (a ring of 10^5 takes a fraction of a second). The top eigenvalue 1
    belongs to the all-ones vector (W 1 = 1): the other one found near +1 is
    lambda_2. The bottom end is needed only when Gershgorin's bound
    lambda_min >= 2 min_i W_ii - 1 does not already put it above -lambda_2.
    """
    shift = 1e-10
    lam2 = float(np.min(eigsh(w, k=2, sigma=1.0 + shift, which="LM", v0=v0, return_eigenvectors=False)))
    if 2.0 * float(w.diagonal().min()) - 1.0 >= -lam2:
        return lam2
    bottom = eigsh(w, k=1, sigma=-1.0 - shift, which="LM", v0=v0, return_eigenvectors=False)
    return float(max(lam2, abs(bottom[0])))


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
        method = "dense" if n <= DENSE_MAX else "sparse"
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


def noise_spectral_sum(W: Any) -> float:
    """``sum_{i>=2} lambda_i^2 / (1 - lambda_i^2)`` over every eigenvalue of a symmetric W but the top one.

    Setting: gossip ``x <- W (x - beta g)`` on ``n`` workers with zero-mean
    noise ``g``, i.i.d. across workers and rounds, variance ``sigma^2`` per
    coordinate. Each eigen-direction ``i >= 2`` of W is an AR(1) process
    ``d <- lambda_i (d - beta g_i)``, whose stationary variance is
    ``beta^2 sigma^2 lambda_i^2 / (1 - lambda_i^2)``, so the stationary
    disagreement ``(1/n) sum_j ||x_j - xbar||^2`` is
    ``beta^2 sigma^2 noise_spectral_sum(W) / n`` per coordinate. It depends on
    every eigenvalue, not on ``rho`` alone: a ring of 16 and the exact-gap
    matrix with the same rho differ by a factor of about 6. Exact for that
    model; a persistent drift between workers adds a ``rho^2 / (1 - rho)^2``
    part that this sum does not describe.

    Parameters
    ----------
    W : numpy.ndarray or scipy.sparse matrix
        Symmetric doubly stochastic mixing matrix (densified: the full
        spectrum is needed).

    Returns
    -------
    float
        ``inf`` when some eigenvalue but the top one has modulus 1 (a
        disconnected or periodic W never forgets the noise).

    Raises
    ------
    ValueError
        If W is not square and finite, not symmetric, or does not have the
        consensus vector as eigenvector (rows not summing to 1).

    Examples
    --------
    >>> round(noise_spectral_sum(mixing_matrix("exact_gap", 4, gap=0.5)), 12)  # 3 * 0.25 / 0.75
    1.0
    >>> noise_spectral_sum(mixing_matrix("complete", 5)) < 1e-20  # exact averaging: no disagreement
    True
    """
    w = _square(W)
    w = w.toarray() if sp.issparse(w) else np.array(w, dtype=float)
    if not np.all(np.isfinite(w)):
        raise ValueError("W has non-finite entries")
    if not np.allclose(w, w.T, rtol=0.0, atol=1e-12):
        raise ValueError("noise_spectral_sum needs a symmetric W (its eigenvalues must be real)")
    if not np.allclose(w.sum(axis=1), 1.0, rtol=0.0, atol=1e-10):
        raise ValueError("noise_spectral_sum needs W 1 = 1 (rows summing to 1)")
    n = w.shape[0]
    # removing 11^T/n sends the consensus eigenvalue 1 to 0 (which adds 0) and keeps every other one
    lam2 = np.linalg.eigvalsh((w + w.T) / 2.0 - 1.0 / n) ** 2
    if np.any(lam2 >= 1.0 - 1e-12):
        return float("inf")
    return float(np.sum(lam2 / (1.0 - lam2)))


def effective_gap(W: Any) -> float:
    """The gap of the exact-gap matrix with the same whole-spectrum noise sum as W.

    The exact-gap family ``(1 - g) I + g 11^T / n`` has every eigenvalue but
    the top one equal to ``rho = 1 - g``, so its :func:`noise_spectral_sum`
    is ``(n - 1) rho^2 / (1 - rho^2)``; solving for rho gives
    ``rho_eff^2 = S / (n - 1 + S)``. A law measured on that family (such as
    the transient law) carries over to W through ``1 - rho_eff`` if what it
    depends on is the noise-driven disagreement. A ring of 16 (gap 0.051)
    has effective gap 0.22.

    Examples
    --------
    >>> round(effective_gap(mixing_matrix("exact_gap", 8, gap=0.3)), 12)
    0.3
    >>> round(effective_gap(mixing_matrix("ring", 16)), 3)
    0.218
    """
    n = _square(W).shape[0]
    s = noise_spectral_sum(W)
    if not math.isfinite(s):
        return 0.0
    return 1.0 - math.sqrt(s / (n - 1 + s))
