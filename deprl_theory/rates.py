"""Rate exponents with confidence intervals, and the verdict read from them.

THEORY section 6: fit ``log Gbar = a0 + e_N log N + e_K log K`` over the
cells (N, K) of a sweep, bootstrap over seeds, and read the speedup exponent
``s = e_N / e_K`` (rounds to reach accuracy eps scale as N^-s).

The fit (:func:`fit_rate`) returns numbers and named intervals; the verdict
(:func:`speedup_verdict`) is a separate function of the fit.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._rng import SeedLike, as_generator

__all__ = ["ConfidenceInterval", "RateFit", "Verdict", "fit_rate", "speedup_verdict", "fit_slope", "SlopeFit",
           "VERDICTS"]

VERDICTS = ("linear", "sublinear", "none", "inconclusive")


@dataclass(frozen=True)
class ConfidenceInterval:
    """A confidence interval ``[low, high]`` at ``level``, and how it was computed.

    Unpacks like a pair: ``low, high = ci``.
    """

    low: float
    high: float
    level: float = 0.95
    method: str = "percentile bootstrap over seeds"

    def __iter__(self):
        return iter((self.low, self.high))

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)

    def as_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True)
class RateFit:
    """Exponents of a power law ``Gbar ~ N^e_N K^e_K`` with their CIs.

    ``e_N``, ``e_K``, ``speedup`` are point estimates from the seed-averaged
    cells; the ``*_ci`` are intervals over seeds.
    """

    e_N: float
    e_K: float
    intercept: float
    speedup: float
    e_N_ci: ConfidenceInterval
    e_K_ci: ConfidenceInterval
    speedup_ci: ConfidenceInterval
    n_cells: int
    n_seeds: int
    n_boot: int
    r2: float

    @property
    def ci_level(self) -> float:
        return self.speedup_ci.level

    def as_dict(self) -> dict:
        return {
            "N": {"value": self.e_N, "ci": self.e_N_ci.as_list()},
            "K": {"value": self.e_K, "ci": self.e_K_ci.as_list()},
            "speedup": {"value": self.speedup, "ci": self.speedup_ci.as_list()},
            "intercept": self.intercept,
            "r2": self.r2,
            "n_cells": self.n_cells,
            "n_seeds": self.n_seeds,
            "n_boot": self.n_boot,
            "ci_level": self.ci_level,
            "ci_method": self.speedup_ci.method,
        }


@dataclass(frozen=True)
class Verdict:
    """The verdict on one metric: a word of :data:`VERDICTS` and the one-line reason."""

    word: str
    reason: str

    def as_dict(self) -> dict:
        return {"verdict": self.word, "reason": self.reason}


def _design(N: np.ndarray, K: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(N)), np.log(N), np.log(K)])


def speedup_verdict(fit: RateFit, *, max_width: float = 1.0, flat: float = -0.1) -> Verdict:
    """Verdict from the CIs of the speedup exponent s and of e_K (THEORY section 6).

    ``linear``       the CI of s contains 1 or lies above it;
    ``sublinear``    it lies strictly between 0 and 1;
    ``none``         it contains 0 or lies below;
    ``inconclusive`` it is too wide (wider than ``max_width``, or contains both
                     0 and 1) or non-finite.

    A metric that does not decrease with K (the CI of e_K reaches 0 and lies
    above ``flat``) gets ``none``: it does not converge over the grid, whatever
    N, so s is meaningless and more workers buy no rounds. A CI of e_K that
    reaches 0 but also reaches below ``flat`` is ``inconclusive``.
    """
    lo, hi = fit.speedup_ci
    k_lo, k_hi = fit.e_K_ci
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Verdict("inconclusive", "the bootstrap interval of s is not finite")
    if not k_hi < 0 and k_lo < flat:
        return Verdict("inconclusive",
                       f"cannot tell whether the metric decreases with K (CI of e_K [{k_lo:.2f}, {k_hi:.2f}])")
    if not k_hi < 0:
        # No convergence in K: an accuracy below the plateau is reached by no N, so more
        # workers do not cut the rounds needed (s = e_N / e_K is meaningless here).
        return Verdict("none", (
            f"the metric does not decrease with K (CI of e_K [{k_lo:.2f}, {k_hi:.2f}] reaches 0): "
            "no convergence over the grid, so no number of workers cuts the rounds to a small eps"))
    if lo <= 0 <= 1 <= hi:
        return Verdict("inconclusive", f"CI of s [{lo:.2f}, {hi:.2f}] contains both 0 and 1")
    if hi - lo > max_width:
        return Verdict("inconclusive", f"CI of s [{lo:.2f}, {hi:.2f}] is wider than {max_width:g}")
    if hi >= 1:
        where = "contains 1" if lo <= 1 else "lies above 1"
        return Verdict("linear", f"CI of s [{lo:.2f}, {hi:.2f}] {where}")
    if lo > 0:
        return Verdict("sublinear", f"CI of s [{lo:.2f}, {hi:.2f}] lies strictly between 0 and 1")
    where = "contains 0" if hi >= 0 else "lies below 0"
    return Verdict("none", f"CI of s [{lo:.2f}, {hi:.2f}] {where}")


def _check_fit_input(N, K, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N = np.asarray(N, dtype=float)
    K = np.asarray(K, dtype=float)
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if not (N.shape == K.shape == values.shape[:1]):
        raise ValueError(f"N {N.shape}, K {K.shape} and values {values.shape} do not describe the same cells")
    if len(np.unique(N)) < 2 or len(np.unique(K)) < 2:
        raise ValueError("need at least two distinct N and two distinct K to fit both exponents")
    if np.any(values <= 0):
        raise ValueError("metric values must be positive to take logarithms")
    return N, K, values


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def fit_rate(
    N: np.ndarray,
    K: np.ndarray,
    values: np.ndarray,
    *,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: SeedLike = 0,
) -> RateFit:
    """Fit ``log value = a0 + e_N log N + e_K log K`` by least squares over all cells and seeds.

    Least squares on every (cell, seed) point is least squares on the cell means
    of ``log value`` (a geometric mean over seeds), which keeps one seed with an
    unusually hard instance from dominating a cell.

    Parameters
    ----------
    N, K : array (C,)
        The cells' worker counts and rounds.
    values : array (C, S)
        The time-averaged metric of each cell and seed; NaN marks a diverged
        seed (left out of that cell's mean).
    n_boot : int
        Bootstrap replicates: seeds are resampled with replacement, jointly for
        all cells (a seed is one problem instance shared by every cell).
    ci : float
        Level of the percentile intervals.
    seed : random seed of the bootstrap.

    Returns
    -------
    RateFit

    Examples
    --------
    >>> N = np.repeat([4, 8, 16], 3); K = np.tile([100, 200, 400], 3)
    >>> vals = (1 / np.sqrt(N * K))[:, None] * np.exp(0.01 * np.arange(4))
    >>> fit = fit_rate(N, K, vals, n_boot=200)
    >>> round(fit.e_N, 3), round(fit.e_K, 3), speedup_verdict(fit).word
    (-0.5, -0.5, 'linear')
    """
    N, K, values = _check_fit_input(N, K, values)
    C, S = values.shape
    X = _design(N, K)
    logs = np.log(values)
    y = _nanmean(logs, axis=1)
    if not np.all(np.isfinite(y)):
        raise ValueError("a cell has no finite value (every seed diverged); drop it before fitting")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    r2 = 1.0 - resid @ resid / max(((y - y.mean()) ** 2).sum(), 1e-300)

    rng = as_generator(seed)
    idx = rng.integers(0, S, size=(n_boot, S))
    bmeans = _nanmean(logs[:, idx], axis=2)  # (C, n_boot)
    ok = np.all(np.isfinite(bmeans), axis=0)
    bcoef = np.linalg.pinv(X) @ bmeans[:, ok]  # (3, n_ok)
    with np.errstate(all="ignore"):
        bs = bcoef[1] / bcoef[2]
    q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]

    def pct(a: np.ndarray) -> ConfidenceInterval:
        a = a[np.isfinite(a)]
        if a.size == 0:
            return ConfidenceInterval(float("nan"), float("nan"), ci)
        lo, hi = np.percentile(a, q)
        return ConfidenceInterval(float(lo), float(hi), ci)

    e_N, e_K = float(coef[1]), float(coef[2])
    return RateFit(
        e_N=e_N, e_K=e_K, intercept=float(coef[0]), speedup=e_N / e_K if e_K != 0 else float("nan"),
        e_N_ci=pct(bcoef[1]), e_K_ci=pct(bcoef[2]), speedup_ci=pct(bs), n_cells=C, n_seeds=S,
        n_boot=int(ok.sum()), r2=float(r2),
    )


@dataclass(frozen=True)
class SlopeFit:
    """Slope of ``y`` against ``x`` with a bootstrap CI."""

    slope: float
    intercept: float
    ci: ConfidenceInterval
    n_points: int

    def as_dict(self) -> dict:
        return {"value": self.slope, "ci": self.ci.as_list(), "intercept": self.intercept,
                "n_points": self.n_points, "ci_method": self.ci.method}


def fit_slope(
    x: np.ndarray, y: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95, seed: SeedLike = 0
) -> SlopeFit:
    """Least-squares slope of ``y`` (P, S) on ``x`` (P,), bootstrapping seeds (columns of y).

    With ``y`` one-dimensional the bootstrap resamples points instead.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x {x.shape} and y {y.shape} do not match")
    if len(np.unique(x)) < 2:
        raise ValueError("need at least two distinct x values to fit a slope")
    rng = as_generator(seed)
    X = np.column_stack([np.ones_like(x), x])
    if y.ndim == 1:
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        slopes = []
        for _ in range(n_boot):
            i = rng.integers(0, len(x), len(x))
            if len(np.unique(x[i])) < 2:
                continue
            slopes.append(np.linalg.lstsq(X[i], y[i], rcond=None)[0][1])
        slopes = np.asarray(slopes)
        method = "percentile bootstrap over points"
    else:
        coef = np.linalg.lstsq(X, _nanmean(y, axis=1), rcond=None)[0]
        idx = rng.integers(0, y.shape[1], size=(n_boot, y.shape[1]))
        ym = _nanmean(y[:, idx], axis=2)  # (P, n_boot)
        slopes = (np.linalg.pinv(X) @ ym)[1]
        method = "percentile bootstrap over seeds"
    slopes = slopes[np.isfinite(slopes)]
    if slopes.size == 0:
        raise ValueError("no bootstrap replicate has a finite slope (too few finite points)")
    lo, hi = np.percentile(slopes, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100])
    return SlopeFit(slope=float(coef[1]), intercept=float(coef[0]),
                    ci=ConfidenceInterval(float(lo), float(hi), ci, method), n_points=len(x))
