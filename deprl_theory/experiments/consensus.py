"""The spectral-gap experiment: how the consensus error depends on the mixing matrix, and whether its bound holds.

Claim checked (docs/theory.md, section 5, reconstructed consensus lemma,
:func:`deprl_theory.bound.consensus_lemma`): at fixed N, K and step size beta

    Cbar <= 6 rho^2 beta^2 (sigma_phi^2 + delta^2) / (1 - rho)^2
    under beta <= (1 - rho) / (sqrt(6) rho L_phi).

Three answers, in the words of :mod:`.boundcheck`:

* **Does the lemma hold?** At every gap and graph: ``out of scope`` where its
  step-size condition fails with the estimated constants and the beta that
  ran, else ``holds`` or ``violated`` (measured seed mean against the bound).
* **Is it tight in rho?** The slope of log Cbar against log(rho / (1 - rho))
  over the exact-gap family, against the lemma's 2: the slope of
  ``measured / bound`` is the measured slope minus 2, read by
  :func:`~deprl_theory.experiments.laws.shape_verdict` (``loose in rho`` when
  the bound grows faster). An upper bound with a slope below the measurement's
  is loose, not contradicted.
* **Which law predicts the consensus error across graphs?** For zero-mean
  i.i.d. gradient noise the stationary disagreement is
  ``beta^2 sigma^2 (1/N) sum_{i>=2} lambda_i^2 / (1 - lambda_i^2)``
  (:func:`deprl_theory.graphs.noise_spectral_sum`): every eigenvalue, not only
  rho. Three predictors ``kappa beta^2 shape(W)`` are compared, each with one
  noise level ``kappa`` calibrated on the exact-gap family (geometric mean),
  then applied to every named topology: the whole spectrum, the gap-only noise
  law ``(N-1)/N rho^2 / (1 - rho^2)`` (what the whole spectrum gives when every
  eigenvalue but the top one is rho: exact on the family) and the template's
  gap-only ``rho^2 / (1 - rho)^2``. The one whose ``log(measured / predicted)``
  scatters least across graphs puts them on one line.

Graphs: the ``exact_gap`` family ``W = (1 - g) I + g 11^T / N`` sweeps the gap
g with everything else fixed; the named topologies run at the largest K.

Where the linearized law stops: every law above describes small disagreements
(gossip linearized around consensus), and each has a local slope of at least 1
against rho/(1-rho) at every gap: rho^2/(1-rho)^2 has 2, the noise law
rho^2/(1-rho^2) = x^2/(1+2x) (x = rho/(1-rho)) has (2+2x)/(1+2x), falling
from 2 to 1, and a sum of the two lies in between. So the slope is read
locally, per pair of adjacent gaps with a bootstrap interval
(:func:`local_slopes`), never as one line through every gap: where a local
slope's interval lies wholly below :data:`LINEARIZED_FLOOR` the consensus error
saturates (the workers' representations drift apart until their bounded size
stops them) and the linearized law has stopped applying
(:func:`linearized_regime`). The slope fit and its tightness verdict use the
gaps before that point only. A misspecified model (``true_rank`` in the cell,
see :func:`~deprl_theory.problems.make_problem`) keeps delta > 0 at its best
fit: its consensus error is larger and saturates at larger gaps, and the study
then also runs the realizable problem's family at the largest K to give the
ratio of the two per gap.

Measured transient: the reference without any consensus error is the
``centralized`` algorithm (exact averaging, identical to ``exact_gap`` with
g = 1) on the same (N, K) cells and seeds; the transient of a gap is the
smallest K of the grid from which on the seed-mean Gbar is within ``factor``
(default 1.25) of the reference's
(:func:`~deprl_theory.experiments.transient.measured_transient`), next to
the template's K0. The law of that transient over N and the gap is
:mod:`.transient_law`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from ..bound import consensus_lemma, evaluate
from ..constants import estimate_constants
from ..graphs import noise_spectral_sum
from ..rates import DEFAULT_MARGIN, ConfidenceInterval, SlopeFit, fit_slope
from ..sweep import SweepOptions, run_sweep
from .boundcheck import bound_label, condition_failures, point_label
from .cells import (
    TASK_VERSION,
    build_mixing,
    cell_cost,
    cell_params,
    cell_problem,
    check_cells,
    simulate_cell,
    validate_result,
)
from .laws import ShapeVerdict, shape_verdict
from .records import InsufficientData, metric_table, seed_mean
from .study_file import write_study
from .transient import measured_transient, template_K0, template_transient

__all__ = ["DEFAULT_GAPS", "NAMED_TOPOLOGIES", "DEFAULT_ROUNDS", "PREDICTED_SLOPE", "PREDICTORS", "LINEARIZED_FLOOR",
           "ConsensusStudy", "ConsensusPoint", "ConsensusPredictor", "ConsensusResult", "LocalSlope",
           "LinearizedRegime", "consensus_slope", "local_slopes", "linearized_regime", "error_ratio", "slope_tightness",
           "compare_predictors", "lemma_check", "run_consensus", "analyse_consensus"]

#: spectral gaps g of the exact-gap family (rho = 1 - g) from 0.5 to 0.02; the middle five are the transient
#: law's default gaps (:mod:`.transient_law`), so both experiments share those cells
DEFAULT_GAPS = (0.5, 0.09, 0.075, 0.062, 0.051, 0.042, 0.02)
#: named topologies placed on the same axes (every named topology without a parameter)
NAMED_TOPOLOGIES = ("ring", "path", "torus", "hypercube", "exponential", "star", "complete")
#: rounds grid for the transient
DEFAULT_ROUNDS = (125, 250, 500, 1000, 2000, 4000)
#: slope of log Cbar against log(rho / (1 - rho)) that the template predicts
PREDICTED_SLOPE = 2.0
#: no linearized law of the consensus error has a local slope below this against rho/(1-rho) (module docstring):
#: a local slope whose interval lies below it says the error saturates
LINEARIZED_FLOOR = 1.0
#: below this the consensus error is exact averaging's rounding: no log, no ratio
_ZERO = 1e-20
_KEY = ("algorithm", "topology", "gap", "K")


def _full_spectrum(rho: float, spectral_sum: float, n: int) -> float:
    return spectral_sum / n


def _gap_noise(rho: float, spectral_sum: float, n: int) -> float:
    return (n - 1) / n * rho ** 2 / (1 - rho ** 2)


def _gap_template(rho: float, spectral_sum: float, n: int) -> float:
    return rho ** 2 / (1 - rho) ** 2


#: the consensus-error predictors: name -> (formula, shape(rho, noise_spectral_sum(W), N)); each is
#: ``kappa beta^2 shape`` with one noise level kappa calibrated on the exact-gap family
PREDICTORS: dict[str, tuple[str, Callable[[float, float, int], float]]] = {
    "full spectrum": ("kappa beta^2 (1/N) sum_{i>=2} lambda_i^2 / (1 - lambda_i^2)", _full_spectrum),
    "gap only, noise": ("kappa beta^2 (N-1)/N rho^2 / (1 - rho^2)", _gap_noise),
    "gap only, template": ("kappa beta^2 rho^2 / (1 - rho)^2", _gap_template),
}


@dataclass(frozen=True)
class ConsensusStudy:
    """What the spectral-gap experiment runs.

    Every gap runs at every K of ``rounds`` (for the transient), the
    centralized reference too; the named topologies run at the largest K
    only (they are points on the consensus plot). With ``true_rank`` in
    ``cell`` (a misspecified model) the realizable problem's family runs at
    the largest K as well, for the ratio of the two consensus errors.
    ``floor`` is the local slope below which the linearized law has stopped
    applying (:func:`linearized_regime`).
    """

    #: the kind under which the study is stored (``consensus.study.json``)
    KIND: ClassVar[str] = "consensus"

    n: int = 16
    gaps: tuple[float, ...] = DEFAULT_GAPS
    topologies: tuple[str, ...] = NAMED_TOPOLOGIES
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    seeds: int = 4
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)
    factor: float = 1.25
    boot: int = 2000
    floor: float = LINEARIZED_FLOOR

    def __post_init__(self) -> None:
        gaps = tuple(float(g) for g in self.gaps)
        bad = [g for g in gaps if not (0 < g <= 1)]
        if bad:
            raise ValueError(f"spectral gaps must lie in (0, 1], got {bad}")
        if len(set(gaps)) != len(gaps):
            raise ValueError(f"gaps must be distinct, got {list(gaps)}")
        if sum(1 for g in gaps if g < 1) < 2:
            raise ValueError("give at least two gaps strictly between 0 and 1 to fit a slope")
        rounds = tuple(sorted({int(k) for k in self.rounds}))
        if not rounds or rounds[0] < 1:
            raise ValueError(f"rounds must be positive integers, got {list(rounds)}")
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < 2:
            raise ValueError(f"n must be an integer >= 2, got {self.n!r}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if not self.factor > 1:
            raise ValueError(f"factor must exceed 1, got {self.factor}")
        if not (math.isfinite(self.floor) and self.floor > 0):
            raise ValueError(f"floor must be a positive slope, got {self.floor}")
        object.__setattr__(self, "gaps", gaps)
        object.__setattr__(self, "rounds", rounds)
        object.__setattr__(self, "topologies", tuple(self.topologies))
        object.__setattr__(self, "cell", dict(self.cell))
        cell_params(**self.cell)
        self.check()  # graphs and problems are built and checked here, with the CLI's checks

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    @property
    def true_rank(self) -> int | None:
        """The truth's rank of a misspecified study; None for a realizable one."""
        return self.cell.get("true_rank")

    def realizable_cell(self) -> dict:
        """The cell overrides without the misspecification."""
        return {k: v for k, v in self.cell.items() if k != "true_rank"}

    def cells(self) -> list[dict]:
        n, extra = int(self.n), self.cell
        cells = []
        for K in self.rounds:
            for g in self.gaps:
                cells.append(cell_params(N=n, K=K, topology="exact_gap", gap=g, **extra))
            cells.append(cell_params(N=n, K=K, algorithm="centralized", topology="complete", **extra))
        for name in self.topologies:
            cells.append(cell_params(N=n, K=self.rounds[-1], topology=name, **extra))
        if self.true_rank is not None:
            cells += [cell_params(N=n, K=self.rounds[-1], topology="exact_gap", gap=g, **self.realizable_cell())
                      for g in self.gaps]
        return cells

    def check(self) -> None:
        """Build and check (A4) the W of every cell's graph at N; ValueError naming the first that fails."""
        check_cells(self.cells(), self.base_seed)

    def settings(self) -> dict[str, Any]:
        p = cell_params(**self.cell)
        return {"n": int(self.n), "gaps": list(self.gaps), "topologies": list(self.topologies),
                "rounds": list(self.rounds), "seeds": self.seed_list, "base_seed": self.base_seed,
                "tau": p["tau"], "c": p["c"], "factor": self.factor, "rank": p["rank"], "true_rank": self.true_rank,
                "linearized_floor": self.floor}


def consensus_slope(rho: Sequence[float], cbar: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95,
                    seed: int = 0) -> SlopeFit:
    """Slope of log Cbar against log(rho / (1 - rho)), bootstrapping seeds.

    Parameters
    ----------
    rho : sequence (P,)
        Mixing rates, 0 < rho < 1 (rho = 0 has no consensus error and no log).
    cbar : ndarray (P, S)
        Time-averaged consensus error per point and seed, all at the same
        N, K and beta.

    Returns
    -------
    SlopeFit
        The template predicts slope 2 (``Cbar ∝ beta^2 rho^2 / (1 - rho)^2``).
    """
    rho = np.asarray(rho, dtype=float)
    cbar = np.asarray(cbar, dtype=float)
    if np.any((rho <= 0) | (rho >= 1)):
        raise ValueError(f"every rho must lie in (0, 1) for the log-log fit, got {rho.tolist()}")
    if np.any(cbar[np.isfinite(cbar)] <= 0):
        raise ValueError("consensus errors must be positive for a log-log fit")
    x = np.log(rho / (1 - rho))
    return fit_slope(x, np.log(cbar), n_boot=n_boot, ci=ci, seed=seed)


@dataclass(frozen=True)
class LocalSlope:
    """The slope of log Cbar against log(rho / (1 - rho)) between two adjacent gaps of the family.

    ``gaps`` and ``x`` are (larger gap, smaller gap) and their rho / (1 - rho);
    ``ci`` bootstraps the seeds (the same resample at both gaps).
    """

    gaps: tuple[float, float]
    x: tuple[float, float]
    slope: float
    ci: ConfidenceInterval

    def as_dict(self) -> dict[str, Any]:
        return {"gaps": list(self.gaps), "x": list(self.x), "slope": self.slope, "ci": self.ci.as_list(),
                "ci_level": self.ci.level, "ci_method": self.ci.method}


def local_slopes(gaps: Sequence[float], rho: Sequence[float], cbar: np.ndarray, *, n_boot: int = 2000,
                 ci: float = 0.95, seed: int = 0) -> tuple[LocalSlope, ...]:
    """The slope between every pair of adjacent gaps, from the largest gap to the smallest.

    Parameters
    ----------
    gaps, rho : sequence (P,)
        The family's gaps and mixing rates, 0 < rho < 1 (any order).
    cbar : ndarray (P, S)
        Time-averaged consensus error per gap and seed, at one N, K and beta.

    Returns
    -------
    tuple of LocalSlope
        P - 1 slopes, each a two-point :func:`consensus_slope`, in order of
        decreasing gap. Unlike one fit through every gap, they show where the
        slope changes.
    """
    rho = np.asarray(rho, dtype=float)
    cbar = np.asarray(cbar, dtype=float)
    if len(gaps) != len(rho) or cbar.shape[0] != len(rho):
        raise ValueError(f"{len(gaps)} gaps, {len(rho)} rates and {cbar.shape[0]} rows of Cbar do not match")
    order = np.argsort(rho)  # increasing rho: decreasing gap
    out = []
    for a, b in zip(order[:-1], order[1:]):
        fit = consensus_slope(rho[[a, b]], cbar[[a, b]], n_boot=n_boot, ci=ci, seed=seed)
        out.append(LocalSlope(gaps=(float(gaps[a]), float(gaps[b])),
                              x=(float(rho[a] / (1 - rho[a])), float(rho[b] / (1 - rho[b]))),
                              slope=fit.slope, ci=fit.ci))
    return tuple(out)


@dataclass(frozen=True)
class LinearizedRegime:
    """Where the linearized law of the consensus error applies on the gap grid, and where it stops.

    Attributes
    ----------
    floor : float
        The smallest local slope a linearized law has (:data:`LINEARIZED_FLOOR`).
    gaps : tuple of float
        The gaps before the break, largest first: the slope fit uses these.
    stops : LocalSlope or None
        The first pair, from the largest gap down, whose local slope's interval lies wholly below the floor;
        None when no pair does (the law applies over the whole grid).
    first_below : LocalSlope or None
        The first pair whose point estimate is below the floor (a sign, not yet a decision).
    statement : str
    """

    floor: float
    gaps: tuple[float, ...]
    stops: LocalSlope | None
    first_below: LocalSlope | None
    statement: str

    def as_dict(self) -> dict[str, Any]:
        return {"floor": self.floor, "gaps": list(self.gaps),
                "stops_between": None if self.stops is None else list(self.stops.gaps),
                "stops": None if self.stops is None else self.stops.as_dict(),
                "first_below": None if self.first_below is None else self.first_below.as_dict(),
                "statement": self.statement}


def linearized_regime(slopes: Sequence[LocalSlope], floor: float = LINEARIZED_FLOOR) -> LinearizedRegime:
    """Read the local slopes (largest gap first) for the point where the linearized law stops applying.

    The law stops at the first pair whose slope interval lies wholly below
    ``floor``: the consensus error then grows more slowly than any linearized
    law allows, it saturates. The regime is every gap before that pair's
    smaller gap.
    """
    if not slopes:
        raise ValueError("no local slope: give at least two gaps")
    stop = next((i for i, s in enumerate(slopes) if s.ci.high < floor), None)
    below = next((s for s in slopes if s.slope < floor), None)
    last = len(slopes) if stop is None else stop
    gaps = tuple(s.gaps[0] for s in slopes[:last]) + (slopes[last - 1].gaps[1] if last else slopes[0].gaps[0],)
    level = f"{slopes[0].ci.level:.0%}"
    if stop is None:
        statement = (f"the linearized law applies over the whole grid (gaps {slopes[0].gaps[0]:g} to "
                     f"{slopes[-1].gaps[1]:g}): no local slope's {level} interval lies below {floor:g}")
        if below is not None:
            statement += (f"; the slope dips below {floor:g} between g = {below.gaps[0]:g} and {below.gaps[1]:g} "
                          f"({below.slope:.2f} [{below.ci.low:.2f}, {below.ci.high:.2f}]), not yet decisively")
    else:
        s = slopes[stop]
        statement = (f"the linearized law stops applying between g = {s.gaps[0]:g} and {s.gaps[1]:g}: local slope "
                     f"{s.slope:.2f} [{s.ci.low:.2f}, {s.ci.high:.2f}] ({level}) lies below {floor:g}, the least a "
                     f"linearized law gives; the consensus error saturates at smaller gaps")
    return LinearizedRegime(floor=floor, gaps=gaps, stops=None if stop is None else slopes[stop], first_below=below,
                            statement=statement)


def error_ratio(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95,
                seed: int = 0) -> tuple[float, ConfidenceInterval]:
    """Ratio of the seed means of ``a`` and ``b`` (S,), with a percentile bootstrap over each one's seeds.

    The two samples are resampled independently: a misspecified and a
    realizable problem are different instances, so their seeds are not pairs.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0 or not np.mean(b) > 0:
        return float("nan"), ConfidenceInterval(float("nan"), float("nan"), ci, "percentile bootstrap over seeds")
    rng = np.random.default_rng(seed)
    boot = (a[rng.integers(0, a.size, (n_boot, a.size))].mean(axis=1)
            / b[rng.integers(0, b.size, (n_boot, b.size))].mean(axis=1))
    lo, hi = np.percentile(boot, [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100])
    return float(a.mean() / b.mean()), ConfidenceInterval(float(lo), float(hi), ci,
                                                           "percentile bootstrap over each sample's seeds")


def slope_tightness(fit: SlopeFit, predicted: float = PREDICTED_SLOPE, *,
                    margin: float = DEFAULT_MARGIN) -> ShapeVerdict:
    """Is the bound's ``rho^2 / (1 - rho)^2`` tight? The slope of measured/bound is the measured slope minus 2.

    A slope below 2 makes the bound ``loose in rho`` (it grows faster than the
    consensus error as rho -> 1), not wrong; zero-mean gradient noise alone
    gives ``rho^2 / (1 - rho^2)``, slope 2 at large gaps and 1 at small ones.
    """
    lo, hi = fit.ci
    ci = ConfidenceInterval(lo - predicted, hi - predicted, fit.ci.level, fit.ci.method)
    verdict = shape_verdict("rho", fit.slope - predicted, ci, axis="rho/(1-rho)", margin=margin)
    extra = (f"; measured slope {fit.slope:.3g} [{lo:.3g}, {hi:.3g}] against the bound's {predicted:g}")
    if verdict.word == "loose" and lo > 0.75:
        extra += (", between the 1 of zero-mean noise at small gaps (rho^2/(1-rho^2)) and the 2 of a persistent "
                  "drift (the bound's worst case)")
    return ShapeVerdict(verdict.variable, verdict.word, verdict.exponent, verdict.ci, verdict.reason + extra,
                        verdict.margin)


def lemma_check(constants: Mapping[str, float] | None, *, n: int, beta: float, rho: float,
                measured: Sequence[float]) -> dict[str, Any]:
    """The consensus lemma at one graph: its value, the conditions that fail, and the label.

    ``measured`` are the seeds' Cbar; the label compares their mean with the
    bound (``out of scope`` if a condition fails with this beta and rho).
    """
    mean = float(seed_mean(measured)) if len(measured) else float("nan")
    if constants is None:
        return {"bound": None, "label": "not evaluated (no constants)", "failing_conditions": [], "ratio": None}
    lemma = consensus_lemma()
    vals = {**dict(constants), "rho": rho, "beta": beta, "N": n}
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = float(evaluate(lemma, vals)["total"])
    failures = condition_failures(lemma, vals, K=1.0)
    return {"bound": bound, "label": point_label(bound, mean, failures, atol=_ZERO), "failing_conditions": failures,
            "ratio": bound / mean if mean > 0 else None}


@dataclass(frozen=True)
class ConsensusPoint:
    """One graph's measured consensus error with what the predictors need.

    ``kind`` is ``"exact_gap"`` (the calibration family) or ``"topology"``.
    """

    label: str
    kind: str
    n: int
    rho: float
    beta: float
    spectral_sum: float
    cbar: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "N": self.n, "rho": self.rho, "beta": self.beta,
                "spectral_sum": self.spectral_sum, "Cbar": self.cbar}


@dataclass(frozen=True)
class ConsensusPredictor:
    """One predictor of Cbar across graphs: its calibration and how far each graph falls off its line.

    Attributes
    ----------
    kappa : float
        Noise level calibrated on the exact-gap family (geometric mean of measured / (beta^2 shape)).
    scatter : float
        Standard deviation of log(measured / predicted) over every graph with a positive prediction
        (family and named): 0 puts them all on one line.
    family_scatter : float
        The same over the family alone.
    named_offset : float
        Mean log(measured / predicted) of the named topologies: how far they sit off the family's line.
    worst : tuple (str, float)
        The graph with the largest |log(measured / predicted)|.
    rows : list of dict
        Per graph: label, kind, predicted, measured, log_ratio (None where both are exactly 0).
    """

    name: str
    formula: str
    kappa: float
    scatter: float
    family_scatter: float
    named_offset: float
    worst: tuple[str, float]
    rows: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "formula": self.formula, "kappa": self.kappa, "scatter": self.scatter,
                "family_scatter": self.family_scatter, "named_offset": self.named_offset,
                "worst": {"graph": self.worst[0], "log_ratio": self.worst[1]}, "rows": self.rows}


def _predictor(name: str, points: Sequence[ConsensusPoint]) -> ConsensusPredictor:
    formula, shape = PREDICTORS[name]
    base = np.array([p.beta ** 2 * shape(p.rho, p.spectral_sum, p.n) for p in points])
    cbar = np.array([p.cbar for p in points])
    usable = (base > _ZERO) & (cbar > _ZERO) & np.isfinite(base) & np.isfinite(cbar)
    family = usable & np.array([p.kind == "exact_gap" for p in points])
    if not family.any():
        raise ValueError("no exact-gap point with a positive consensus error to calibrate on")
    kappa = float(np.exp(np.mean(np.log(cbar[family] / base[family]))))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.where(usable, np.log(cbar / (kappa * base)), np.nan)
    named = usable & ~family
    rows = [{"label": p.label, "kind": p.kind, "predicted": float(kappa * b), "measured": float(c),
             "log_ratio": float(lr) if u else None}
            for p, b, c, u, lr in zip(points, base, cbar, usable, log_ratio)]
    i = int(np.nanargmax(np.abs(log_ratio)))
    return ConsensusPredictor(
        name=name, formula=formula, kappa=kappa, scatter=float(np.std(log_ratio[usable], ddof=1)),
        family_scatter=float(np.std(log_ratio[family], ddof=1)) if family.sum() > 1 else 0.0,
        named_offset=float(np.mean(log_ratio[named])) if named.any() else float("nan"),
        worst=(points[i].label, float(log_ratio[i])), rows=rows)


def compare_predictors(points: Sequence[ConsensusPoint]) -> tuple[list[ConsensusPredictor], str, str]:
    """Every predictor of :data:`PREDICTORS` on the same graphs; the one with the least scatter, and why.

    Graphs whose measured and predicted errors are both exactly 0 (the
    complete graph: exact averaging) carry no ratio and are left out of the
    scatter.
    """
    preds = [_predictor(name, points) for name in PREDICTORS]
    best = min(preds, key=lambda p: p.scatter)
    others = ", ".join(f"{p.name} {p.scatter:.2f}" for p in preds if p is not best)
    statement = (f"{best.name} puts the graphs on one line: SD of log(measured/predicted) over "
                 f"{sum(r['log_ratio'] is not None for r in best.rows)} graphs {best.scatter:.2f} "
                 f"(a factor {math.exp(best.scatter):.2f}) against {others}; named topologies sit "
                 f"{best.named_offset:+.2f} in log off the exact-gap line")
    return preds, best.name, statement


@dataclass(frozen=True, eq=False)
class ConsensusResult:
    """What the spectral-gap experiment measured and predicted.

    Attributes
    ----------
    study : ConsensusStudy
    slope : SlopeFit
        log Cbar against log(rho/(1-rho)) over the gaps of the linearized regime (at the largest K).
    local_slopes : tuple of LocalSlope
        The slope between each pair of adjacent gaps, largest gap first.
    regime : LinearizedRegime
        Where the linearized law applies and where it stops.
    realizable : list of dict
        Misspecified study only (else empty): per gap, Cbar against the realizable problem's and their
        ratio with its interval.
    tightness : ShapeVerdict
        The slope against the bound's 2, in the words of :func:`~deprl_theory.experiments.laws.shape_verdict`.
    lemma_label, lemma_reason : str
        Does the consensus lemma hold over the graphs where it applies (``holds``, ``violated``,
        ``no point in scope``)?
    gaps, topologies : list of dict
        Per graph: rho, x = rho/(1-rho), Cbar (mean and per seed), the whole-spectrum sum, the
        lemma's bound, label and failing conditions.
    predictors : list of ConsensusPredictor
    best_predictor, predictor_statement : str
    transient : dict
        Reference, factor and, per gap, the measured K, the template's K0 and the ratios.
    gbar : dict gap -> ndarray (len(rounds), S)
        Gbar of each gap per K and seed, and ``gbar_reference`` of the centralized run.
    constants : dict
        The bound's constants estimated on the problem, with how each was had.
    """

    study: ConsensusStudy
    slope: SlopeFit
    tightness: ShapeVerdict
    lemma_label: str
    lemma_reason: str
    gaps: list[dict]
    topologies: list[dict]
    predictors: list[ConsensusPredictor]
    best_predictor: str
    predictor_statement: str
    transient: dict[str, Any]
    gbar: dict[float, np.ndarray]
    gbar_reference: np.ndarray
    constants: dict[str, Any]
    local_slopes: tuple[LocalSlope, ...] = ()
    regime: LinearizedRegime | None = None
    realizable: list[dict] = field(default_factory=list)
    sweep: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "consensus_slope": {**self.slope.as_dict(), "K": self.study.rounds[-1],
                                "gaps": list(self.regime.gaps) if self.regime else None},
            "local_slopes": [s.as_dict() for s in self.local_slopes],
            "linearized_regime": None if self.regime is None else self.regime.as_dict(),
            "realizable": self.realizable,
            "predicted_slope": PREDICTED_SLOPE,
            "tightness": self.tightness.as_dict(),
            "lemma": {"label": self.lemma_label, "reason": self.lemma_reason,
                      "bound": "Cbar <= 6 rho^2 beta^2 (sigma_phi^2 + delta^2) / (1 - rho)^2 "
                               "if beta <= (1 - rho) / (sqrt(6) rho L_phi)"},
            "gaps": self.gaps,
            "topologies": self.topologies,
            "predictors": [p.as_dict() for p in self.predictors],
            "best_predictor": self.best_predictor,
            "predictor_statement": self.predictor_statement,
            "transient": self.transient,
            "settings": self.study.settings(),
            "constants": self.constants,
            "sweep": self.sweep,
        }


def _graph_rows(study: ConsensusStudy, C: Mapping, info: Mapping, constants) -> tuple[list, list, list]:
    """Rows of the family and of the named graphs at the largest K, and their ConsensusPoints."""
    K_fit, n, nan_row = study.rounds[-1], int(study.n), np.full(study.seeds, np.nan)
    graphs = [("exact_gap", g, f"g = {g:g}") for g in study.gaps] + [(t, None, t) for t in study.topologies]
    fam, named, points = [], [], []
    for topology, gap, label in graphs:
        key = ("deprl", topology, gap, K_fit)
        if key not in info:
            continue
        rho, beta = info[key]
        row = C.get(key, nan_row)
        W = build_mixing(cell_params(N=n, topology=topology, gap=gap, **study.cell), study.base_seed)
        ssum = noise_spectral_sum(W)
        with np.errstate(all="ignore"):
            out = {"rho": rho, "spectral_gap": 1 - rho, "x": float(rho / (1 - rho)) if 0 <= rho < 1 else None,
                   "beta": beta, "Cbar": float(seed_mean(row)), "Cbar_seeds": row.tolist(), "spectral_sum": ssum,
                   "lemma": lemma_check(constants, n=n, beta=beta, rho=rho, measured=row)}
        if topology == "exact_gap":  # in_fit: usable in a log-log fit (the regime decides which gaps are fitted)
            fam.append({"gap": gap, "in_fit": bool(0 < rho < 1), **out})
        else:
            named.append({"topology": topology, **out})
        points.append(ConsensusPoint(label, "exact_gap" if topology == "exact_gap" else "topology", n, rho, beta,
                                     ssum, out["Cbar"]))
    return fam, named, points


def _transient(study: ConsensusStudy, G: Mapping, rho: np.ndarray, constants) -> tuple[dict, dict, np.ndarray]:
    rounds, nan_row = list(study.rounds), np.full(study.seeds, np.nan)
    ref = np.array([G.get(("centralized", "complete", None, K), nan_row) for K in rounds])
    p = cell_params(**study.cell)
    pred = (template_K0(constants, int(study.n), rho, c=p["c"], tau=p["tau"]) if constants else None)
    rows, gbar = [], {}
    for i, g in enumerate(study.gaps):
        gm = np.array([G.get(("deprl", "exact_gap", g, K), nan_row) for K in rounds])
        gbar[g] = gm
        with np.errstate(all="ignore"):
            ratio = seed_mean(gm, axis=1) / seed_mean(ref, axis=1)
        rows.append({"gap": g, "rho": float(rho[i]), "measured_K": measured_transient(rounds, gm, ref, study.factor),
                     "predicted_K0": None if pred is None else float(pred[i]),
                     "ratio_to_reference": {str(K): float(v) for K, v in zip(rounds, ratio)},
                     "Gbar": {str(K): float(seed_mean(v)) for K, v in zip(rounds, gm)}})
    tr = template_transient()
    with np.errstate(all="ignore"):
        transient = {"reference": "centralized (exact averaging) on the same N, K and seeds",
                     "factor": study.factor, "rounds": rounds,
                     "reference_Gbar": {str(K): float(seed_mean(v)) for K, v in zip(rounds, ref)},
                     "predicted_K0_expr": None if pred is None else str(tr.K0),
                     "predicted_K0_large_N": None if pred is None else str(tr.K0_large_N),
                     "rows": rows}
    return transient, gbar, ref


def analyse_consensus(study: ConsensusStudy, records: Sequence[Mapping[str, Any]],
                      constants: Mapping[str, float] | None = None, *,
                      constants_report: Mapping[str, Any] | None = None,
                      sweep: Mapping[str, Any] | None = None) -> ConsensusResult:
    """Slope and its tightness, the lemma's labels, the predictors and the transients (no simulation).

    Reads the records; builds each graph's W (cheap, deterministic) for its spectrum.
    """
    seeds = study.seed_list
    every = list(records)
    records = [r for r in every if r["params"].get("true_rank") == study.true_rank]  # the study's own problem
    C = metric_table(records, "C", _KEY, seeds=seeds)
    G = metric_table(records, "G", _KEY, seeds=seeds)
    info = {tuple(r["params"].get(k) for k in _KEY): (float(r["result"]["rho"]), float(r["result"]["beta"]))
            for r in records}
    fam, named, points = _graph_rows(study, C, info, constants)
    rho = np.array([info.get(("deprl", "exact_gap", g, study.rounds[-1]), (np.nan,))[0] for g in study.gaps])
    in_fit = [r for r in fam if r["in_fit"]]
    usable = [r for r in in_fit if np.isfinite(r["Cbar_seeds"]).any()]
    if len(usable) < 2:
        lost = sum(1 for r in records if r["result"]["diverged"] and r["params"]["topology"] == "exact_gap")
        total = sum(1 for r in records if r["params"]["topology"] == "exact_gap")
        raise InsufficientData(
            f"the consensus slope needs at least two gaps with a finished run at K = {study.rounds[-1]}, got "
            f"{len(usable)}: {lost} of {total} exact-gap runs diverged (their step sizes are in the cache)")
    in_fit = usable
    slopes = local_slopes([r["gap"] for r in in_fit], [r["rho"] for r in in_fit],
                          np.array([r["Cbar_seeds"] for r in in_fit]), n_boot=study.boot)
    regime = linearized_regime(slopes, study.floor)
    # one line through the linearized regime only; a break at the first pair leaves that pair's two gaps
    fitted = set(regime.gaps) if len(regime.gaps) >= 2 else set(slopes[0].gaps)
    rows = [r for r in in_fit if r["gap"] in fitted]
    for r in fam:
        r["in_linearized_regime"] = r["gap"] in regime.gaps
    fit = consensus_slope([r["rho"] for r in rows], np.array([r["Cbar_seeds"] for r in rows]), n_boot=study.boot)
    for row in named:
        r = row["rho"]
        row["Cbar_from_slope"] = float(np.exp(fit.intercept) * (r / (1 - r)) ** fit.slope) if 0 < r < 1 else None
    label, reason = bound_label([r["lemma"]["label"] for r in fam + named]) if constants else ("not evaluated", "")
    preds, best, statement = compare_predictors(points)
    transient, gbar, ref = _transient(study, G, rho, constants)
    return ConsensusResult(study=study, slope=fit, tightness=slope_tightness(fit), lemma_label=label,
                           lemma_reason=reason, gaps=fam, topologies=named, predictors=preds, best_predictor=best,
                           predictor_statement=statement, transient=transient, gbar=gbar, gbar_reference=ref,
                           constants=dict(constants_report or {}), local_slopes=slopes, regime=regime,
                           realizable=_realizable_rows(study, fam, every), sweep=dict(sweep or {}))


def _realizable_rows(study: ConsensusStudy, fam: Sequence[Mapping[str, Any]],
                     records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Misspecified study: per gap, its Cbar against the realizable problem's at the largest K, and the ratio."""
    if study.true_rank is None:
        return []
    K = study.rounds[-1]
    C = metric_table(records, "C", _KEY, seeds=study.seed_list, where={"true_rank": None})
    rows = []
    for r in fam:
        real = C.get(("deprl", "exact_gap", r["gap"], K))
        if real is None:
            continue
        ratio, ci = error_ratio(np.array(r["Cbar_seeds"]), real, n_boot=study.boot)
        rows.append({"gap": r["gap"], "rho": r["rho"], "Cbar": r["Cbar"], "Cbar_realizable": float(seed_mean(real)),
                     "Cbar_realizable_seeds": real.tolist(), "ratio": ratio, "ratio_ci": ci.as_list(),
                     "ci_method": ci.method})
    return rows


def run_consensus(study: ConsensusStudy, options: SweepOptions = SweepOptions()) -> tuple[ConsensusResult, Any]:
    """Run the sweep of ``study`` (cached), estimate the bound's constants, and analyse."""
    cells = study.cells()
    sweep = run_sweep(simulate_cell, cells, study.seed_list, base_seed=study.base_seed, task_version=TASK_VERSION,
                      cost=cell_cost, validate=validate_result, **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    consts = estimate_constants(cell_problem(cells[0], study.seed_list, study.base_seed), seed=study.base_seed)
    result = analyse_consensus(study, sweep.records, consts.symbols(), constants_report=consts.as_dict(),
                               sweep=sweep.info())
    write_study(options, study)
    return result, sweep
