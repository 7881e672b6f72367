"""When does linear speedup start? The one home of the consensus transient, predicted and measured.

docs/theory.md, section 5: the consensus term ~ N rho^2 / (K (1 - rho)^2) is of higher
order and falls below the leading (N K)^(-1/2) term after a transient
``K0 ~ N^3 rho^4 / (1 - rho)^4``.

* :func:`template_K0` evaluates K0 of the default bound template
  (:func:`deprl_theory.bound.transient_K0` under ``beta = c sqrt(N/K)``,
  ``a = 1/N``) for given constants; :func:`predict_transient` does so with the
  constants estimated on the very problem instances a sweep runs on. The
  template's absolute constants are worst-case, so this is an upper estimate.
* :func:`transient_cells` finds, per N, the leading K of a grid that are not
  yet on the asymptotic power law, from the measurements alone: a cell is
  transient while the local log-log slope between it and the next K differs
  from the slope of the largest K of that N by more than ``tol``. It compares
  the curve with its own tail, not with the -1/2 the theory predicts, so it
  cannot manufacture agreement with the theory.
* :func:`measured_transient` finds the first K of a grid from which Gbar stays
  within a factor of a reference without consensus error (the centralized run);
  :func:`transient_crossing` adds where, between two grid points, the ratio
  crosses the factor, and says when the transient lies outside the grid.
* :func:`noise_transient` is the alternative to the template in which the
  consensus error is noise-dominated, ``Cbar ~ beta^2 rho^2 / (1 - rho^2)``:
  a user-style consensus term handed to :func:`deprl_theory.bound.make_bound`
  and :func:`deprl_theory.bound.transient_K0`, like any bound file.
  :func:`model_K0` evaluates either, and :func:`gap_exponent` reads the
  exponent q of ``K0 ~ (1 - rho)^(-q)`` off a symbolic K0 as rho -> 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from ..bound import (
    SYMBOLS,
    Transient,
    default_bound,
    evaluate_expr,
    exponents,
    make_bound,
    theory_step_rule,
    to_strings,
    transient_K0,
)
from ..constants import estimate_constants
from ..inference.fit import t_quantile
from .cells import cell_problem
from .records import seed_mean

__all__ = ["PredictedTransient", "template_transient", "template_K0", "predict_transient", "transient_cells",
           "measured_transient", "Crossing", "transient_crossing", "NOISE_CONSENSUS_TERM", "noise_transient",
           "model_K0", "gap_exponent", "COMPANION_FACTOR", "EXCESS_STATES", "ExcessLaw", "TransientDecomposition",
           "negligible_tol", "excess_law", "decompose_transient"]


@dataclass(frozen=True)
class PredictedTransient:
    """The template's K0 at one cell, with how it was obtained.

    ``K0`` is None when there is no transient to speak of (no mixing at all).
    """

    K0: float | None
    how: str
    expr: str | None = None
    constants: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"K0": self.K0, "how": self.how}
        if self.expr is not None:
            out["expr"] = self.expr
        if self.constants:
            out["constants"] = dict(self.constants)
        return out


@lru_cache(maxsize=1)
def template_transient() -> Transient:
    """K0 of the default template under ``beta = c sqrt(N/K)``, ``a = 1/N`` (symbolic, computed once)."""
    return transient_K0(default_bound(), theory_step_rule("1/N"))


#: the consensus term of the noise-dominated alternative, written as a user would write it in a bound file:
#: the template's smoothness factor times zero-mean noise accumulated by gossip, beta^2 sigma^2 rho^2/(1-rho^2)
NOISE_CONSENSUS_TERM = "(2*a*L_thetaphi**2 + L_phi**2) * beta**2 * sigma_phi**2 * rho**2 / (1 - rho**2)"


@lru_cache(maxsize=1)
def noise_transient() -> Transient:
    """K0 when the consensus error is noise-dominated, ``Cbar ~ beta^2 rho^2 / (1 - rho^2)`` (symbolic, once).

    The template with its ``T_cons`` replaced by :data:`NOISE_CONSENSUS_TERM`
    (no heterogeneity: a realizable problem has delta = 0 at its optimum),
    under ``beta = c sqrt(N/K)`` and ``a = 1/N``: K0 ~ N^3 rho^4 / (1 - rho^2)^2,
    so q = 2 as rho -> 1 where the template has 4.
    """
    terms = dict(to_strings(default_bound())["terms"])
    terms["T_cons"] = NOISE_CONSENSUS_TERM
    bound = make_bound(terms, consensus_terms=["T_cons"], quantity="template with a noise-dominated consensus term")
    return transient_K0(bound, theory_step_rule("1/N"))


def model_K0(transient: Transient, constants: Mapping[str, float], n: int | np.ndarray,
             rho: Sequence[float] | float, *, c: float, tau: int) -> np.ndarray:
    """A symbolic K0 evaluated at every ``rho`` (0 where rho = 0: exact averaging has no transient)."""
    rho = np.asarray(rho, dtype=float)
    values = {k: v for k, v in {**dict(constants), "c": c, "tau": tau}.items() if k not in ("rho", "N")}
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = evaluate_expr(transient.K0, values, rho=rho, N=np.asarray(n, dtype=float))
    return np.where(rho == 0, 0.0, vals)


def template_K0(constants: Mapping[str, float], n: int, rho: Sequence[float] | float, *, c: float,
                tau: int) -> np.ndarray:
    """The template's K0 at every ``rho`` (0 where rho = 0: exact averaging has no transient)."""
    return model_K0(template_transient(), constants, n, rho, c=c, tau=tau)


def gap_exponent(expr: sympy.Expr | str) -> sympy.Expr:
    """q in ``expr ~ (1 - rho)^(-q)`` as rho -> 1 (the exponent in ``x = 1/(1 - rho)`` as x -> oo).

    Examples
    --------
    >>> gap_exponent("rho**4/(1 - rho)**4"), gap_exponent("rho**4/(1 - rho**2)**2")
    (4, 2)
    """
    x = sympy.Symbol("x_inverse_gap", positive=True)
    e = sympy.sympify(expr, locals=dict(SYMBOLS)) if isinstance(expr, str) else expr
    return exponents(e.subs(SYMBOLS["rho"], 1 - 1 / x), x)


def predict_transient(params: Mapping[str, Any], rho: float, *, base_seed: int = 0,
                      n_seeds: int = 2) -> PredictedTransient:
    """K0 of the default template at ``rho`` with constants estimated on the cell's problem.

    Parameters
    ----------
    params : cell parameters (see :func:`deprl_theory.experiments.cell_params`)
    rho : mixing rate of the cell's W (0 for exact averaging, 1 for none)
    base_seed, n_seeds : which problem instances to estimate the constants on
    """
    if params.get("algorithm") == "local" or rho >= 1:
        return PredictedTransient(None, "no mixing (rho = 1): the consensus term never dies, no transient to reach")
    if rho <= 1e-12:
        return PredictedTransient(0.0, "rho = 0 (exact averaging): no consensus term, no transient")
    problem = cell_problem(params, tuple(range(n_seeds)), base_seed)
    constants = estimate_constants(problem, seed=base_seed).symbols()
    K0 = float(template_K0(constants, int(params["N"]), [rho], c=float(params["c"]), tau=int(params["tau"]))[0])
    how = ("K0 of the default template (beta = c sqrt(N/K), a = 1/N) where T_cons meets the leading term, "
           f"constants estimated on {n_seeds} problem instances (max over seeds); the template's absolute "
           "constants are worst-case, so this over-estimates the transient")
    return PredictedTransient(K0, how, str(template_transient().K0), constants)


def transient_cells(table: Mapping[tuple[int, int], np.ndarray], *, tol: float = 0.15) -> list[dict]:
    """Cells whose K is still in the transient, measured from the data.

    Parameters
    ----------
    table : mapping (N, K) -> array over seeds of the time-averaged metric
    tol : float
        Largest allowed difference between a local slope and the tail slope.

    Returns
    -------
    list of ``{"N", "K", "why"}``; per N at least the two largest K are kept.

    Examples
    --------
    >>> import numpy as np
    >>> t = {(4, k): np.array([v]) for k, v in [(100, 8.0), (200, 1.0), (400, 0.7), (800, 0.5)]}
    >>> [c["K"] for c in transient_cells(t)]
    [100]
    """
    out = []
    for n in sorted({n for n, _ in table}):
        ks = sorted(k for m, k in table if m == n)
        if len(ks) < 3:
            continue
        with np.errstate(all="ignore"):
            y = np.array([seed_mean(np.log(table[(n, k)])) for k in ks])
        x = np.log(np.array(ks, dtype=float))
        if not np.all(np.isfinite(y)):
            continue
        slopes = np.diff(y) / np.diff(x)
        tail = slopes[-1]
        for j in range(len(ks) - 2):
            if abs(slopes[j] - tail) > tol:
                out.append({"N": n, "K": ks[j],
                            "why": f"local slope {slopes[j]:+.2f} from K = {ks[j]} to {ks[j + 1]} differs from "
                                   f"the tail slope {tail:+.2f} by more than {tol:g}"})
            else:
                break
    return out


def measured_transient(rounds: Sequence[int], gbar: np.ndarray, gbar_ref: np.ndarray,
                       factor: float = 1.25) -> int | None:
    """Smallest K of the grid from which on Gbar stays within ``factor`` of the reference.

    ``gbar`` and ``gbar_ref`` are (len(rounds), S); the seed means are
    compared.  Returns None if even the largest K is not within the factor
    (the transient lies beyond the grid).
    """
    if not factor > 1:
        raise ValueError(f"factor must exceed 1, got {factor}")
    rounds = np.asarray(rounds)
    with np.errstate(all="ignore"):
        ratio = seed_mean(np.asarray(gbar, float), axis=1) / seed_mean(np.asarray(gbar_ref, float), axis=1)
    ok = ratio <= factor
    for i in range(len(rounds)):
        if ok[i:].all():
            return int(rounds[i])
    return None


@dataclass(frozen=True)
class Crossing:
    """Where Gbar / reference comes within the factor for good, on a grid of K.

    Attributes
    ----------
    K_grid : int or None
        :func:`measured_transient`: the first K of the grid from which the
        ratio stays within the factor (None: not even at the largest K).
    K0 : float or None
        The crossing between the last K above the factor and the next, by
        linear interpolation of the ratio in log K; None when censored.
    censored : {"below", "above"} or None
        ``"below"``: within the factor at every K of the grid (K0 <= the
        smallest K, or no transient at all); ``"above"``: not within it at
        the largest K (K0 beyond the grid).
    ratios : list of float
        Seed-mean Gbar over the reference's, per K.
    """

    K_grid: int | None
    K0: float | None
    censored: str | None
    ratios: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {"K_grid": self.K_grid, "K0": self.K0, "censored": self.censored, "ratios": self.ratios}


def transient_crossing(rounds: Sequence[int], gbar: np.ndarray, gbar_ref: np.ndarray,
                       factor: float = 1.25) -> Crossing:
    """:func:`measured_transient`, refined to where the ratio crosses the factor.

    The ratio of seed means is not monotone in K (it rises while the
    consensus error builds up, then falls), so the crossing is the last one:
    between the last K of the grid above the factor and the next.

    Examples
    --------
    >>> ref = np.ones((4, 2))
    >>> c = transient_crossing([100, 200, 400, 800], ref * np.array([[1.2], [1.5], [1.25], [1.1]]), ref)
    >>> c.K_grid, round(c.K0), c.censored
    (400, 400, None)
    >>> transient_crossing([100, 200], ref[:2] * 2, ref[:2]).censored
    'above'
    """
    K_grid = measured_transient(rounds, gbar, gbar_ref, factor)
    with np.errstate(all="ignore"):
        ratio = seed_mean(np.asarray(gbar, float), axis=1) / seed_mean(np.asarray(gbar_ref, float), axis=1)
    ratios = [float(r) for r in ratio]
    if K_grid is None:
        return Crossing(None, None, "above", ratios)
    i = list(rounds).index(K_grid)
    if i == 0:
        return Crossing(K_grid, None, "below", ratios)
    r0, r1 = ratio[i - 1], ratio[i]
    frac = (r0 - factor) / (r0 - r1)
    K0 = math.exp(math.log(rounds[i - 1]) + frac * (math.log(rounds[i]) - math.log(rounds[i - 1])))
    return Crossing(K_grid, float(K0), None, ratios)


# --- the exact-averaging companion: the graph's excess over W = 11^T/N on the same instances and seeds ---

#: transient factor: the transient of an N ends where Gbar comes within this factor of exact averaging
COMPANION_FACTOR = 1.25
#: the states of one N's excess over the companion
EXCESS_STATES = ("negligible", "indistinct", "transient", "persistent", "unresolved")


@dataclass(frozen=True)
class ExcessLaw:
    """One N's excess of Gbar over the exact-averaging companion, per K, with CIs over seeds.

    Attributes
    ----------
    n : int
    rounds : list of int
    ratio, ratio_ci : per K, the geometric mean over seeds of Gbar / Gbar_companion and its t interval
    excess, excess_ci : per K, the mean over seeds of Gbar - Gbar_companion and its t interval
    exponent, exponent_ci : the K-exponent of the mean excess (log-log least squares; a jackknife
        t interval over seeds); None when the mean excess is not positive at every K
    state : one of :data:`EXCESS_STATES`
        ``negligible``: every ratio CI within [1/(1+tol), 1+tol], too small to move s by half the margin;
        ``indistinct``: not negligible, but no excess is shown either (the ratio's CI at the smallest K
        reaches 1); an excess is *shown* when that CI lies above 1, and then it is
        ``transient``: it decays faster than the leading term by more than the margin;
        ``persistent``: it does not (its exponent's CI lies above ``leading - margin``);
        ``unresolved``: the exponent's CI cannot tell.
    K0, K0_how : the K from which the ratio stays within the transient factor; ``"measured"`` (on the
        grid), ``"at or before the grid"``, ``"extrapolated"`` from the excess law, or None
    """

    n: int
    rounds: list[int]
    ratio: list[float]
    ratio_ci: list[list[float]]
    excess: list[float]
    excess_ci: list[list[float]]
    exponent: float | None
    exponent_ci: list[float] | None
    state: str
    K0: float | None
    K0_how: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"N": self.n, "K": self.rounds, "ratio": self.ratio, "ratio_ci": self.ratio_ci, "excess": self.excess,
                "excess_ci": self.excess_ci, "exponent": self.exponent, "exponent_ci": self.exponent_ci,
                "state": self.state, "K0": self.K0, "K0_how": self.K0_how}


@dataclass(frozen=True)
class TransientDecomposition:
    """Whether the graph's grid exponent is bent by a transient that exact averaging does not have.

    Attributes
    ----------
    per_n : dict N -> ExcessLaw
    companion_e_K : float
        The leading term's K-exponent, from the companion's fit.
    rate_is_companion : bool or None
        True: some N's excess is transient and none is persistent or
        unresolved, so the asymptotic rate is the companion's; False: some
        N's excess persists, so the graph's own exponent is the rate; None:
        neither is shown (an excess whose decay is unresolved, or none
        shown at all). Then only a verdict the grid and the companion agree
        on is decisive.
    reason : str
    level, margin, factor, tol : the settings of the rule
    pooled : dict or None
        ``excess ~ N^x K^q`` fitted by least squares over every N whose
        excess is shown (log of the seed-mean excess), with jackknife t
        intervals over seeds: how the transient grows with N.
    """

    per_n: dict[int, ExcessLaw]
    companion_e_K: float
    rate_is_companion: bool | None
    reason: str
    level: float
    margin: float
    factor: float
    tol: float
    pooled: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"per_N": {str(n): v.as_dict() for n, v in self.per_n.items()}, "companion_e_K": self.companion_e_K,
                "pooled_excess_law": self.pooled,
                "rate_is_companion": self.rate_is_companion, "reason": self.reason, "level": self.level,
                "margin": self.margin, "factor": self.factor, "negligible_tol": self.tol}


def negligible_tol(n: Sequence[int], margin: float) -> float:
    """The largest ratio excess 1 + tol that cannot move s by more than half the margin.

    A factor between 1 and 1 + tol spread over the worker counts moves e_N by
    at most log(1 + tol) / log(N_max / N_min); with e_K near -1/2 that moves
    s by twice as much. tol is set so that this is m / 2.
    """
    return float(math.exp(margin / 4 * math.log(max(n) / min(n))) - 1)


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y on x; y may carry leading axes (slopes per row)."""
    xc = x - x.mean()
    b = (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)
    return b, y.mean(axis=-1) - b * x.mean()


def excess_law(n: int, rounds: Sequence[int], graph: np.ndarray, companion: np.ndarray, *, level: float,
               leading_e_K: float, margin: float, tol: float, factor: float = COMPANION_FACTOR) -> ExcessLaw:
    """The excess of one N (``graph`` and ``companion`` are (len(rounds), S), seed j the same instance in both)."""
    g, c = np.asarray(graph, float), np.asarray(companion, float)
    S = g.shape[1]
    t = t_quantile(float(level), S - 1)
    log_ratio = np.log(g / c)
    lr, lr_se = log_ratio.mean(axis=1), log_ratio.std(axis=1, ddof=1) / math.sqrt(S)
    ratio = np.exp(lr)
    with np.errstate(over="ignore"):  # a look with few seeds and a high level may have an unbounded interval
        ratio_ci = np.stack([np.exp(lr - t * lr_se), np.exp(lr + t * lr_se)], axis=1)
    diff = g - c
    ex, ex_se = diff.mean(axis=1), diff.std(axis=1, ddof=1) / math.sqrt(S)
    ex_ci = np.stack([ex - t * ex_se, ex + t * ex_se], axis=1)
    x = np.log(np.asarray(rounds, float))
    exponent = exponent_ci = None
    if np.all(ex > 0) and len(rounds) >= 2:
        exponent = float(_slope(x, np.log(ex))[0])
        # jackknife over seeds: the slope of the log mean excess with seed j left out
        loo = (diff.sum(axis=1, keepdims=True) - diff) / (S - 1)  # (K, S)
        with np.errstate(invalid="ignore", divide="ignore"):
            jack = _slope(x, np.log(loo.T))[0]  # (S,)
        if np.all(np.isfinite(jack)):
            se = math.sqrt((S - 1) / S * float(((jack - jack.mean()) ** 2).sum()))
            exponent_ci = [exponent - t * se, exponent + t * se]
    # an excess is shown when the ratio's CI lies above 1 at the smallest K; only a shown excess can be
    # called a transient or persistent, so noise around a zero excess never opens either gate
    shown = bool(ratio_ci[0, 0] > 1)
    if np.all(ratio_ci[:, 1] <= 1 + tol) and np.all(ratio_ci[:, 0] >= 1 / (1 + tol)):
        state = "negligible"
    elif not shown:
        state = "indistinct"
    elif exponent_ci is not None and exponent_ci[1] < leading_e_K - margin:
        state = "transient"
    elif exponent_ci is not None and exponent_ci[0] > leading_e_K - margin:
        state = "persistent"
    else:
        state = "unresolved"
    cross = transient_crossing(rounds, g, c, factor)
    K0, how = None, None
    if cross.censored == "below":
        K0, how = float(rounds[0]), "at or before the grid"
    elif cross.K0 is not None:
        K0, how = cross.K0, "measured"
    elif exponent is not None:
        # ratio - 1 = excess / companion: both power laws in K, fitted on the seed means
        b_c, a_c = _slope(x, np.log(c.mean(axis=1)))
        b_e, a_e = _slope(x, np.log(ex))
        if b_e < b_c:
            K0, how = float(math.exp((math.log(factor - 1) - a_e + a_c) / (b_e - b_c))), "extrapolated"
    return ExcessLaw(int(n), [int(k) for k in rounds], ratio.tolist(), ratio_ci.tolist(), ex.tolist(),
                     ex_ci.tolist(), exponent, exponent_ci, state, K0, how)


def decompose_transient(graph: Mapping[tuple[int, int], np.ndarray], companion: Mapping[tuple[int, int], np.ndarray],
                        *, leading_e_K: float, level: float = 0.95, margin: float = 0.1,
                        factor: float = COMPANION_FACTOR) -> TransientDecomposition:
    """Is the graph's grid exponent the rate, or a transient over the exact-averaging companion?

    Parameters
    ----------
    graph, companion : mapping (N, K) -> array over seeds
        Gbar of the graph and of exact averaging (W = 11^T/N) on the same
        instances and seed indices. Cells where any seed of either is not
        finite are left out.
    leading_e_K : float
        The K-exponent of the leading term: the companion's fitted e_K.
    level : float
        Level of every interval (a sequential design's look level).
    margin : float
        The excess decays faster than the leading term when its exponent's CI
        lies below ``leading_e_K - margin``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cells = [(n, k) for n in (4, 8, 16, 32) for k in (500, 1000, 2000, 4000)]
    >>> noise = {key: np.exp(0.01 * rng.standard_normal(8)) for key in cells}
    >>> comp = {(n, k): (n * k) ** -0.5 * noise[(n, k)] for n, k in cells}
    >>> ring = {(n, k): comp[(n, k)] + 0.03 * n / k * noise[(n, k)] for n, k in cells}
    >>> d = decompose_transient(ring, comp, leading_e_K=-0.5)
    >>> d.rate_is_companion, d.per_n[32].state, round(d.per_n[32].exponent, 2)
    (True, 'transient', -1.0)
    """
    ns = sorted({n for n, _ in graph})
    tol = negligible_tol(ns, margin)
    per_n = {}
    for n in ns:
        ks = sorted(k for m, k in graph if m == n and (m, k) in companion
                    and np.isfinite(graph[(m, k)]).all() and np.isfinite(companion[(m, k)]).all()
                    and np.all(np.asarray(graph[(m, k)]) > 0) and np.all(np.asarray(companion[(m, k)]) > 0))
        if len(ks) < 2:
            continue
        per_n[n] = excess_law(n, ks, np.array([graph[(n, k)] for k in ks]), np.array([companion[(n, k)] for k in ks]),
                              level=level, leading_e_K=leading_e_K, margin=margin, tol=tol, factor=factor)
    states = {n: law.state for n, law in per_n.items()}

    def which(state: str) -> str:
        return ", ".join(f"N = {n}" for n, s in states.items() if s == state)

    if not per_n:
        verdict, reason = False, "no N has two cells finished by both the graph and exact averaging"
    elif any(s == "persistent" for s in states.values()):
        verdict, reason = False, (f"the excess over exact averaging does not decay faster than the leading term "
                                  f"at {which('persistent')}: the graph's own exponent is the rate")
    elif any(s == "unresolved" for s in states.values()):
        verdict, reason = None, (f"the excess over exact averaging at {which('unresolved')} is there, but whether "
                                 "it decays faster than the leading term is not resolved within the CIs")
    elif any(s == "transient" for s in states.values()):
        rest = " (negligible or not shown elsewhere)" if len(states) > 1 else ""
        verdict, reason = True, (f"the excess over exact averaging decays faster than the leading term at "
                                 f"{which('transient')}{rest}: a transient, so the asymptotic rate is exact "
                                 "averaging's")
    elif any(s == "indistinct" for s in states.values()):
        verdict, reason = None, ("no excess over exact averaging is shown at any N (negligible, or its CI "
                                 "reaches 1), so none is separated from the grid's exponent")
    else:
        verdict, reason = None, (f"the graph is within a factor 1 + {tol:.3f} of exact averaging at every cell: "
                                 "no transient to separate")
    return TransientDecomposition(per_n, float(leading_e_K), verdict, reason, float(level), float(margin),
                                  float(factor), tol, _pooled_excess(graph, companion, per_n, level))


def _pooled_excess(graph: Mapping, companion: Mapping, per_n: Mapping[int, ExcessLaw], level: float
                   ) -> dict[str, Any] | None:
    """``log excess = a + x log N + q log K`` over the N whose excess is shown, with jackknife t intervals."""
    ns = [n for n, law in per_n.items() if law.state in ("transient", "persistent", "unresolved")]
    keys = [(n, k) for n in ns for k in per_n[n].rounds]
    if len(ns) < 2:
        return None
    diff = np.array([np.asarray(graph[key], float) - np.asarray(companion[key], float) for key in keys])  # (C, S)
    mean = diff.mean(axis=1)
    if np.any(mean <= 0):
        return None
    S = diff.shape[1]
    X = np.column_stack([np.ones(len(keys)), np.log([n for n, _ in keys]), np.log([k for _, k in keys])])
    P = np.linalg.pinv(X)
    coef = P @ np.log(mean)
    loo = (diff.sum(axis=1, keepdims=True) - diff) / (S - 1)
    out: dict[str, Any] = {"N": ns, "x": float(coef[1]), "q": float(coef[2]), "x_ci": None, "q_ci": None,
                           "what": "excess ~ N^x K^q over the N whose excess is shown"}
    if np.all(loo > 0):
        jack = P @ np.log(loo)  # (3, S)
        se = np.sqrt((S - 1) / S * ((jack - jack.mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
        t = t_quantile(float(level), S - 1)
        out["x_ci"] = [float(coef[1] - t * se[1]), float(coef[1] + t * se[1])]
        out["q_ci"] = [float(coef[2] - t * se[2]), float(coef[2] + t * se[2])]
    return out
