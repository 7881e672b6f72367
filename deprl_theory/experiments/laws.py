"""Power laws fitted to measurements, and what their exponents say about a bound.

Two verifications read a law off the data:

* the *shape* of a bound (:mod:`.boundcheck`, :mod:`.consensus`): fit the
  exponents of ``ratio = measured / bound`` in N, K and the spectral gap. A
  bound whose exponents are right has a flat ratio; :func:`shape_verdict`
  turns the interval of one exponent into a word: ``tight``, ``loose``,
  ``optimistic`` or ``inconclusive``;
* the *transient law* (:mod:`.transient_law`): fit ``K0 ~ N^a (1 - rho)^(-q)``
  to the measured transients and predict K0 where nothing was run.

:func:`fit_power_law` fits ``log y = b0 + sum_f e_f log x_f`` for any number
of factors. With values per seed (P, S) it fits each seed's points separately
and takes a t interval with S - 1 degrees of freedom over the seeds (the
method of :func:`deprl_theory.rates.fit_rate`, which is calibrated there:
seeds are the independent units because each seed is one problem instance
shared by every point). With one value per point (P,) it is ordinary least
squares with a residual t interval (P - k - 1 degrees of freedom), so a law
that does not fit widens its own interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from ..rates import DEFAULT_MARGIN, ConfidenceInterval

__all__ = ["PowerLawFit", "Prediction", "fit_power_law", "ShapeVerdict", "shape_verdict", "SHAPE_WORDS",
           "PER_SEED_METHOD", "OLS_METHOD"]

#: how :func:`fit_power_law` computes intervals from values per seed
PER_SEED_METHOD = "t interval over per-seed fits (t with S-1 df)"
#: how :func:`fit_power_law` computes intervals from one value per point
OLS_METHOD = "least squares on the points, residual t interval (t with P-k-1 df)"
#: the words of :func:`shape_verdict`
SHAPE_WORDS = ("tight", "loose", "optimistic", "inconclusive", "not varied")


@dataclass(frozen=True)
class Prediction:
    """A law's value at a new point: the estimate, the interval of the mean and the prediction interval."""

    value: float
    ci: ConfidenceInterval
    pi: ConfidenceInterval

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci": self.ci.as_list(), "prediction_interval": self.pi.as_list()}


@dataclass(frozen=True, eq=False)
class PowerLawFit:
    """``y = exp(intercept) * prod_f x_f^e_f`` with an interval per exponent.

    Attributes
    ----------
    exponents, cis : dict factor -> float / ConfidenceInterval
        Only the factors that vary independently in the data; the others are
        listed in ``not_identified`` with why.
    intercept : float
    n_points, n_seeds : int
        ``n_seeds`` is 1 for a least-squares fit on one value per point.
    r2, resid_sd, dof : float
        Of the fit of the point means (log scale); ``dof`` of the t interval.
    method : str
    cov : ndarray
        Covariance of ``(intercept, exponents...)``, for predictions.
    """

    exponents: dict[str, float]
    cis: dict[str, ConfidenceInterval]
    intercept: float
    n_points: int
    n_seeds: int
    r2: float
    resid_sd: float
    dof: int
    method: str
    cov: np.ndarray
    not_identified: dict[str, str] = field(default_factory=dict)
    level: float = 0.95

    def predict(self, factors: Mapping[str, float]) -> Prediction:
        """The law at one point; the prediction interval adds the residual scatter (least-squares fits only)."""
        names = list(self.exponents)
        missing = [f for f in names if f not in factors]
        if missing:
            raise ValueError(f"give a value for every factor of the law; missing {missing}")
        x = np.array([1.0] + [math.log(float(factors[f])) for f in names])
        y = float(x @ np.array([self.intercept] + [self.exponents[f] for f in names]))
        t = float(stats.t.ppf(0.5 + self.level / 2, self.dof))
        se_mean = math.sqrt(max(float(x @ self.cov @ x), 0.0))
        extra = self.resid_sd ** 2 if self.n_seeds == 1 else 0.0
        se_pred = math.sqrt(se_mean ** 2 + extra)
        ci = ConfidenceInterval(math.exp(y - t * se_mean), math.exp(y + t * se_mean), self.level, self.method)
        pi = ConfidenceInterval(math.exp(y - t * se_pred), math.exp(y + t * se_pred), self.level,
                                self.method + "; prediction interval adds the residual scatter")
        return Prediction(math.exp(y), ci, pi)

    def as_dict(self) -> dict[str, Any]:
        return {"exponents": {f: {"value": v, "ci": self.cis[f].as_list()} for f, v in self.exponents.items()},
                "intercept": self.intercept, "n_points": self.n_points, "n_seeds": self.n_seeds, "r2": self.r2,
                "resid_sd": self.resid_sd, "dof": self.dof, "ci_level": self.level, "ci_method": self.method,
                "not_identified": dict(self.not_identified)}


def _identified(logs: Mapping[str, np.ndarray], n: int) -> tuple[list[str], dict[str, str]]:
    """Factors that add a direction to the design, in the order given; the others with why."""
    cols, keep, dropped = [np.ones(n)], [], {}
    for name, col in logs.items():
        if np.ptp(col) < 1e-12:
            dropped[name] = "does not vary over the points"
            continue
        if np.linalg.matrix_rank(np.column_stack(cols + [col]), tol=1e-9) == len(cols):
            dropped[name] = f"varies only together with {', '.join(keep) or 'the intercept'}"
            continue
        cols.append(col)
        keep.append(name)
    return keep, dropped


def fit_power_law(factors: Mapping[str, Sequence[float]], values: np.ndarray, *, ci: float = 0.95) -> PowerLawFit:
    """Fit ``log values = b0 + sum_f e_f log factors[f]``.

    Parameters
    ----------
    factors : mapping name -> array (P,)
        Positive values of each factor at every point.
    values : array (P,) or (P, S)
        Positive measurements: one per point (least squares, residual t
        interval) or one per point and seed (per-seed fits, t interval over
        seeds); see the module docstring.
    ci : float
        Level of the intervals.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    ValueError
        Non-positive or non-finite input, or too few points or seeds for an
        interval.

    Examples
    --------
    >>> N = np.array([4, 8, 16, 4, 8, 16.]); g = np.array([.1, .1, .1, .05, .05, .05])
    >>> fit = fit_power_law({"N": N, "gap": g}, 3 * N ** 0.0 * g ** -2.0 * np.exp([.01, -.01, 0, 0, .01, -.01]))
    >>> round(fit.exponents["gap"], 2), fit.cis["N"].contains(0.0)
    (-2.0, True)
    """
    logs = {}
    for name, x in factors.items():
        x = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(x) & (x > 0)):
            raise ValueError(f"factor {name!r} must be positive and finite at every point")
        logs[name] = np.log(x)
    y = np.asarray(values, dtype=float)
    per_seed = y.ndim == 2
    Y = y if per_seed else y[:, None]
    P = Y.shape[0]
    if any(len(v) != P for v in logs.values()):
        raise ValueError("every factor needs one value per point")
    if not np.all(np.isfinite(Y) & (Y > 0)):
        raise ValueError("values must be positive and finite to take logarithms")
    names, dropped = _identified(logs, P)
    X = np.column_stack([np.ones(P)] + [logs[f] for f in names])
    k = X.shape[1]
    Y = np.log(Y)
    if per_seed:
        S = Y.shape[1]
        if S < 2 or P < k:
            raise ValueError(f"need at least 2 seeds and {k} points, got {S} seeds and {P} points")
        B = np.linalg.pinv(X) @ Y
        b = B.mean(axis=1)
        cov = np.atleast_2d(np.cov(B)) / S
        dof, method = S - 1, PER_SEED_METHOD
    else:
        S = 1
        if P <= k:
            raise ValueError(f"need more than {k} points for a residual interval, got {P}")
        b = np.linalg.lstsq(X, Y[:, 0], rcond=None)[0]
        resid = Y[:, 0] - X @ b
        dof, method = P - k, OLS_METHOD
        cov = (resid @ resid / dof) * np.linalg.inv(X.T @ X)
    ym = Y.mean(axis=1)
    resid = ym - X @ b
    r2 = 1.0 - resid @ resid / max(((ym - ym.mean()) ** 2).sum(), 1e-300)
    resid_sd = math.sqrt(resid @ resid / max(P - k, 1))
    t = float(stats.t.ppf(0.5 + ci / 2, dof))
    exps, cis = {}, {}
    for i, f in enumerate(names, start=1):
        half = t * math.sqrt(max(cov[i, i], 0.0))
        exps[f] = float(b[i])
        cis[f] = ConfidenceInterval(float(b[i] - half), float(b[i] + half), ci, method)
    return PowerLawFit(exponents=exps, cis=cis, intercept=float(b[0]), n_points=P, n_seeds=S, r2=float(r2),
                       resid_sd=resid_sd, dof=dof, method=method, cov=cov, not_identified=dropped, level=ci)


@dataclass(frozen=True)
class ShapeVerdict:
    """Whether a bound's dependence on one variable matches the measurement's.

    ``exponent`` is that of ``measured / bound`` in the variable (growing
    direction: N, K, or ``rho -> 1``); ``word`` one of :data:`SHAPE_WORDS`.
    """

    variable: str
    word: str
    exponent: float | None
    ci: ConfidenceInterval | None
    reason: str
    margin: float = DEFAULT_MARGIN

    @property
    def label(self) -> str:
        return f"{self.word} in {self.variable}"

    def as_dict(self) -> dict[str, Any]:
        return {"variable": self.variable, "word": self.word, "label": self.label, "exponent": self.exponent,
                "ci": None if self.ci is None else self.ci.as_list(), "margin": self.margin, "reason": self.reason}


def shape_verdict(variable: str, exponent: float | None, ci: ConfidenceInterval | None, *, axis: str = "",
                  margin: float = DEFAULT_MARGIN) -> ShapeVerdict:
    """A word for the interval of the exponent of ``measured / bound`` in one variable.

    ``tight``        the interval lies within [-m, m]: the bound has the measurement's exponent;
    ``loose``        the interval lies below 0 (and not within the margin): the bound grows faster
                     (or decays slower) than the measurement, so it over-states more and more;
    ``optimistic``   the interval lies above 0: the measurement outgrows the bound, which would fail
                     further out if it kept this exponent;
    ``inconclusive`` the interval contains 0 but reaches beyond the margin;
    ``not varied``   no interval: the variable did not vary independently over the points.

    ``axis`` names what the exponent was taken against (e.g. ``1/(1-rho)``) for the reason. The
    exponent is the one over the grid: for a bound made of several terms it is that of the terms
    that dominate there, which is why a bound can be ``optimistic`` in K on a grid where its
    fast-decaying consensus term dominates and still hold asymptotically.
    """
    where = f"{variable}" + (f" (against {axis})" if axis else "")
    if ci is None or exponent is None:
        return ShapeVerdict(variable, "not varied", None, None, f"no exponent in {where}: it did not vary on its own",
                            margin)
    lo, hi = ci
    num = f"exponent of measured/bound in {where} = {exponent:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ShapeVerdict(variable, "inconclusive", exponent, ci, f"{num}: unbounded interval", margin)
    if -margin <= lo and hi <= margin:
        word, why = "tight", f"within +-{margin:g} of 0: the bound has the measurement's exponent"
    elif hi < 0:
        word, why = "loose", "below 0: over this grid the bound grows faster than the measurement, its margin widens"
    elif lo > 0:
        word, why = ("optimistic", "above 0: over this grid the measurement outgrows the bound; a bound that kept "
                     "this exponent would fail further out")
    else:
        word, why = "inconclusive", f"contains 0 but reaches beyond +-{margin:g}: more seeds or a wider grid"
    return ShapeVerdict(variable, word, exponent, ci, f"{num}, {why}", margin)
