"""The verdict on the speedup exponent s, read from the CI of a fit (docs/theory.md, section 6).

Tests with margin m on the CI ``[lo, hi]`` of s, each with one-sided error
alpha / 2 at the CI's level:

=================  ===============================================================
``none``           the metric does not decrease with K, or the whole CI lies below m
``sublinear``      hi < 1 - m (and not ``none``)
``linear``         1 - m <= lo <= 1 + m: non-inferiority, s is at least 1 - m;
                   hi is reported beside it, and when hi <= 1 + m too the CI
                   also shows equivalence to linear within the margin
``superlinear``    lo > 1 + m: faster than the bound predicts
``inconclusive``   anything else: the CI straddles 1 - m, or is unbounded, or
                   contains 0 and reaches past m
=================  ===============================================================

A CI that contains 0 is not evidence of no speedup, and a CI that contains 1
is not evidence of linear speedup: both are ``inconclusive`` unless they lie
wholly on one side of a margin boundary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .fit import RateFit

__all__ = ["Verdict", "speedup_verdict", "VERDICTS", "DEFAULT_MARGIN", "after_transient"]

#: the verdicts, from "no speedup" to "faster than the bound predicts"
VERDICTS = ("none", "sublinear", "linear", "superlinear", "inconclusive")
#: the margin m of the verdict
DEFAULT_MARGIN = 0.1


def after_transient(word: str) -> str:
    """The verdict word when the rate is the exact-averaging companion's and the grid sees a transient."""
    return f"{word} after transient" if word in ("sublinear", "linear", "superlinear") else word


@dataclass(frozen=True)
class Verdict:
    """The verdict on one metric: a word of :data:`VERDICTS`, the one-line reason, and what else was learnt.

    Attributes
    ----------
    word : str
    reason : str
    converges : bool or None
        Whether the metric decreases with K over the grid (None: cannot tell).
        "Does not converge" and "no speedup" are different findings.
    asymptotic : bool or None
        False when the CI of e_K excludes the theory's -1/2 by more than the
        margin: the grid is not in the asymptotic regime, and s describes this
        grid rather than the rate.
    seeds_to_decide : int or None
        For ``inconclusive``: about how many seeds a fixed design would need
        for the CI to decide (CI width shrinks as 1/sqrt(S)).
    margin : float
    equivalent : bool or None
        For ``linear``: whether hi <= 1 + m too (both ends within the margin).
    level : float or None
        Level of the CI the verdict was read from.
    """

    word: str
    reason: str
    converges: bool | None = None
    asymptotic: bool | None = None
    seeds_to_decide: int | None = None
    margin: float = DEFAULT_MARGIN
    equivalent: bool | None = None
    level: float | None = None

    def as_dict(self) -> dict:
        return {"verdict": self.word, "reason": self.reason, "converges": self.converges,
                "asymptotic": self.asymptotic, "seeds_to_decide": self.seeds_to_decide, "margin": self.margin,
                "equivalent": self.equivalent, "level": self.level}


def _seeds_to_decide(fit: RateFit, boundary: float) -> int | None:
    """Seeds that would shrink the CI of s to the distance between s and ``boundary`` (width ~ 1/sqrt(S))."""
    lo, hi = fit.speedup_ci
    gap = abs(fit.speedup - boundary)
    if not (math.isfinite(lo) and math.isfinite(hi)) or gap == 0:
        return None
    half = max(fit.speedup - lo, hi - fit.speedup)
    return int(math.ceil(fit.n_seeds * (half / gap) ** 2))


def _interval(lo: float, hi: float) -> str:
    def f(x: float) -> str:
        return f"{x:.3f}" if abs(x) < 1e3 else f"{x:.3g}"
    return f"[{f(lo)}, {f(hi)}]"


def speedup_verdict(fit: RateFit, *, margin: float = DEFAULT_MARGIN, flat: float = -0.1,
                    theory_e_K: float = -0.5) -> Verdict:
    """Verdict from the CIs of the speedup exponent s and of e_K (the table of the module docstring).

    Convergence is judged first, from the CI of e_K: one below 0 converges;
    one that reaches 0 or lies above it, and lies above ``flat``, does not
    (``none``: no N reaches a small eps, so s is meaningless); one that
    reaches 0 and below ``flat`` cannot tell (``inconclusive``). When the CI of
    e_K excludes the theory's ``theory_e_K`` by more than the margin, the grid
    is not in the asymptotic regime and the reason says so.

    Examples
    --------
    >>> from deprl_theory.inference.fit import ConfidenceInterval as CI
    >>> def fit(lo, hi):
    ...     return RateFit(-0.5, -0.5, 0.0, 1.0, CI(-0.6, -0.4), CI(-0.52, -0.48), CI(lo, hi), 16, 8, 1.0)
    >>> [speedup_verdict(fit(*ci)).word for ci in [(0.93, 1.4), (0.5, 0.8), (-0.5, 1.2), (-0.3, 0.05), (1.2, 1.3)]]
    ['linear', 'sublinear', 'inconclusive', 'none', 'superlinear']
    """
    lo, hi = fit.speedup_ci
    k_lo, k_hi = fit.e_K_ci
    level = fit.speedup_ci.level
    kci = f"CI of e_K [{k_lo:.2f}, {k_hi:.2f}]"

    def verdict(word: str, reason: str, converges: bool | None, asymptotic: bool | None = None,
                need: int | None = None, equivalent: bool | None = None) -> Verdict:
        return Verdict(word, reason, converges, asymptotic, need, margin, equivalent, level)

    if not k_hi < 0:
        where = "reaches 0" if k_lo < 0 else "lies at or above 0"
        if k_lo >= flat:
            return verdict("none", f"the metric does not decrease with K ({kci} {where}): no convergence over "
                                   "the grid, so no number of workers cuts the rounds to a small eps", False)
        return verdict("inconclusive", f"cannot tell whether the metric decreases with K ({kci})", None)
    asymptotic = not (k_hi < theory_e_K - margin or k_lo > theory_e_K + margin)
    regime = "" if asymptotic else (f"; the grid is not in the asymptotic regime ({kci} excludes {theory_e_K:g} "
                                    f"by more than {margin:g}), so s describes this grid, not the rate")
    sci = f"CI of s {_interval(lo, hi)}"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return verdict("inconclusive", f"the CI of s is unbounded (e_K is not resolved){regime}", True, asymptotic)
    if hi < margin:
        return verdict("none", f"{sci} lies below m = {margin:g}: no speedup{regime}", True, asymptotic)
    if hi < 1 - margin:
        return verdict("sublinear", f"{sci} lies below 1 - m = {1 - margin:g}{regime}", True, asymptotic)
    if 1 - margin <= lo <= 1 + margin:
        equivalent = hi <= 1 + margin
        upper = (f"hi {hi:.3f} <= 1 + m too: equivalent to linear within the margin" if equivalent else
                 f"hi {hi:.3f} > 1 + m: s may also be faster than linear")
        return verdict("linear", f"{sci}: lo >= 1 - m = {1 - margin:g}, at least linear up to the margin "
                                 f"(non-inferiority); {upper}{regime}", True, asymptotic, equivalent=equivalent)
    if lo > 1 + margin:
        return verdict("superlinear", f"{sci} lies above 1 + m = {1 + margin:g}: faster than the bound predicts, "
                                      f"something else is at work{regime}", True, asymptotic)
    need = _seeds_to_decide(fit, 1 - margin)
    more = (f"; a fixed design would need about {need} seeds to decide" if need is not None
            else "; s sits on the boundary, no number of seeds decides")
    what = (f"contains 0 and reaches past m = {margin:g}" if lo <= 0 else f"straddles 1 - m = {1 - margin:g}")
    return verdict("inconclusive", f"{sci} {what}{more}{regime}", True, asymptotic, need)
