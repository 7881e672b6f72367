"""The spectral-gap experiment: how the consensus error and the transient depend on rho.

Claim checked (THEORY section 5, reconstructed template): at fixed N, K and
step size beta the time-averaged consensus error obeys

    Cbar <= 6 rho^2 beta^2 (sigma_phi^2 + delta^2) / (1 - rho)^2,

so on a log-log plot of Cbar against ``rho / (1 - rho)`` the slope is 2
(prediction), and linear speedup only shows after a transient
``K0 ~ N^3 rho^4 / (1 - rho)^4`` rounds.  The bound is an upper bound: its
``rho^2 / (1 - rho)^2`` is the worst case where the workers' gradient
disagreement is persistent (heterogeneity ``delta``), which accumulates
coherently over ``1 / (1 - rho)`` rounds.  Zero-mean gradient *noise*
accumulates incoherently, giving ``rho^2 / (1 - rho^2)``, slope 2 at large
gaps but slope 1 at small gaps, so a measured slope below 2 at small gaps is a
finding about the template's tightness, not an error.

Graphs: the ``exact_gap`` family ``W = (1 - g) I + g 11^T / N`` sweeps the gap
g over a geometric range with everything else fixed; named topologies (ring,
torus, exponential, hypercube, complete) are placed on the same axes.

Measured transient: the reference without any consensus error is the
``centralized`` algorithm (exact averaging, identical to ``exact_gap`` with
g = 1) on the same (N, K) cells and seeds; the transient of a gap is the
smallest K of the grid from which on (for every larger K of the grid) the
seed-mean Gbar is within ``factor`` (default 1.25) of the reference's.  It
is compared with the template's K0
(:func:`~deprl_theory.experiments.transient.template_K0`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..constants import estimate_constants
from ..rates import SlopeFit, fit_slope
from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, cell_problem, check_cells, simulate_cell, validate_result
from .records import metric_table
from .transient import measured_transient, template_K0, template_transient

__all__ = ["DEFAULT_GAPS", "NAMED_TOPOLOGIES", "DEFAULT_ROUNDS", "PREDICTED_SLOPE", "ConsensusStudy",
           "ConsensusResult", "consensus_slope", "slope_verdict", "run_consensus", "analyse_consensus"]

#: geometric range of spectral gaps g of the exact-gap family (rho = 1 - g)
DEFAULT_GAPS = (0.5, 0.3, 0.15, 0.08, 0.04, 0.02)
#: named topologies placed on the same axes
NAMED_TOPOLOGIES = ("ring", "torus", "exponential", "hypercube", "complete")
#: rounds grid for the transient
DEFAULT_ROUNDS = (250, 500, 1000, 2000, 4000)
#: slope of log Cbar against log(rho / (1 - rho)) that the template predicts
PREDICTED_SLOPE = 2.0
_KEY = ("algorithm", "topology", "gap", "K")


@dataclass(frozen=True)
class ConsensusStudy:
    """What the spectral-gap experiment runs.

    Every gap runs at every K of ``rounds`` (for the transient), the
    centralized reference too; the named topologies run at the largest K
    only (they are points on the consensus plot).
    """

    n: int = 16
    gaps: tuple[float, ...] = DEFAULT_GAPS
    topologies: tuple[str, ...] = NAMED_TOPOLOGIES
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    seeds: int = 4
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)
    factor: float = 1.25
    boot: int = 2000

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
        object.__setattr__(self, "gaps", gaps)
        object.__setattr__(self, "rounds", rounds)
        object.__setattr__(self, "topologies", tuple(self.topologies))
        object.__setattr__(self, "cell", dict(self.cell))
        cell_params(**self.cell)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def cells(self) -> list[dict]:
        n, extra = int(self.n), self.cell
        cells = []
        for K in self.rounds:
            for g in self.gaps:
                cells.append(cell_params(N=n, K=K, topology="exact_gap", gap=g, **extra))
            cells.append(cell_params(N=n, K=K, algorithm="centralized", topology="complete", **extra))
        for name in self.topologies:
            cells.append(cell_params(N=n, K=self.rounds[-1], topology=name, **extra))
        return cells

    def check(self) -> None:
        """Build and check (A4) the W of every cell's graph at N; ValueError naming the first that fails."""
        check_cells(self.cells(), self.base_seed)

    def settings(self) -> dict[str, Any]:
        p = cell_params(**self.cell)
        return {"n": int(self.n), "gaps": list(self.gaps), "topologies": list(self.topologies),
                "rounds": list(self.rounds), "seeds": self.seed_list, "base_seed": self.base_seed,
                "tau": p["tau"], "c": p["c"], "factor": self.factor}


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


def slope_verdict(fit: SlopeFit, predicted: float = PREDICTED_SLOPE) -> tuple[str, str]:
    """``("consistent" | "inconsistent", reason)``: does the slope's CI contain the prediction?"""
    lo, hi = fit.ci
    if lo <= predicted <= hi:
        return "consistent", f"the {predicted:g} predicted by rho^2/(1-rho)^2 lies in the CI [{lo:.3g}, {hi:.3g}]"
    side = "below" if hi < predicted else "above"
    reason = f"CI [{lo:.3g}, {hi:.3g}] lies {side} the predicted {predicted:g}"
    if hi < predicted and lo > 0.75:
        reason += ("; between the slope 1 that zero-mean gradient noise gives at small gaps "
                   "(Cbar ~ rho^2/(1-rho^2)) and the template's worst case 2 (persistent heterogeneity): "
                   "the bound's rho^2/(1-rho)^2 over-states the growth at small gaps")
    return "inconsistent", reason


@dataclass(frozen=True, eq=False)
class ConsensusResult:
    """What the spectral-gap experiment measured and predicted.

    Attributes
    ----------
    study : ConsensusStudy
    slope : SlopeFit
        log Cbar against log(rho/(1-rho)) over the gaps (at the largest K).
    verdict, reason : str
    gaps, topologies : list of dict
        Per point: rho, x = rho/(1-rho), Cbar (mean and per seed).
    transient : dict
        Reference, factor and, per gap, the measured K, the template's K0 and the ratios.
    gbar : dict gap -> ndarray (len(rounds), S)
        Gbar of each gap per K and seed, and ``gbar_reference`` of the centralized run.
    constants : dict
        The bound's constants estimated on the problem, with how each was had.
    """

    study: ConsensusStudy
    slope: SlopeFit
    verdict: str
    reason: str
    gaps: list[dict]
    topologies: list[dict]
    transient: dict[str, Any]
    gbar: dict[float, np.ndarray]
    gbar_reference: np.ndarray
    constants: dict[str, Any]
    sweep: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "consensus_slope": {**self.slope.as_dict(), "K": self.study.rounds[-1]},
            "predicted_slope": PREDICTED_SLOPE,
            "verdict": self.verdict,
            "reason": self.reason,
            "gaps": self.gaps,
            "topologies": self.topologies,
            "transient": self.transient,
            "settings": self.study.settings(),
            "constants": self.constants,
            "sweep": self.sweep,
        }


def _gap_rows(study: ConsensusStudy, C: Mapping, rhos: Mapping, K_fit: int):
    keys = [("deprl", "exact_gap", g, K_fit) for g in study.gaps]
    rho = np.array([rhos[k[:3]] for k in keys])
    cbar = np.array([C.get(k, np.full(study.seeds, np.nan)) for k in keys])
    mask = (rho > 0) & (rho < 1)
    fit = consensus_slope(rho[mask], cbar[mask], n_boot=study.boot)
    with np.errstate(all="ignore"):
        rows = [{"gap": g, "rho": float(r), "x": float(r / (1 - r)) if r < 1 else None,
                 "Cbar": float(np.nanmean(row)), "Cbar_seeds": row.tolist(), "in_fit": bool(0 < r < 1)}
                for g, r, row in zip(study.gaps, rho, cbar)]
    return rho, fit, rows


def analyse_consensus(study: ConsensusStudy, records: Sequence[Mapping[str, Any]],
                      constants: Mapping[str, float] | None = None, *,
                      constants_report: Mapping[str, Any] | None = None,
                      sweep: Mapping[str, Any] | None = None) -> ConsensusResult:
    """Slope, verdict and transients of a finished consensus sweep (no simulation)."""
    seeds = study.seed_list
    rounds = list(study.rounds)
    K_fit = rounds[-1]
    C = metric_table(records, "C", _KEY, seeds=seeds)
    G = metric_table(records, "G", _KEY, seeds=seeds)
    rhos = {(r["params"]["algorithm"], r["params"]["topology"], r["params"].get("gap")): float(r["result"]["rho"])
            for r in records}
    rho, fit, gap_rows = _gap_rows(study, C, rhos, K_fit)
    verdict, reason = slope_verdict(fit)
    nan_row = np.full(len(seeds), np.nan)
    topo_rows = []
    for name in study.topologies:
        key = ("deprl", name, None, K_fit)
        row = C.get(key, nan_row)
        r = rhos.get(key[:3], float("nan"))
        with np.errstate(all="ignore"):
            topo_rows.append({"topology": name, "rho": r, "spectral_gap": 1 - r,
                              "x": float(r / (1 - r)) if 0 <= r < 1 else None,
                              "Cbar": float(np.nanmean(row)), "Cbar_seeds": row.tolist(),
                              "predicted_Cbar": float(np.exp(fit.intercept) * (r / (1 - r)) ** fit.slope)
                              if 0 < r < 1 else None})
    ref = np.array([G.get(("centralized", "complete", None, K), nan_row) for K in rounds])
    p = cell_params(**study.cell)
    pred = (template_K0(constants, int(study.n), rho, c=p["c"], tau=p["tau"]) if constants else None)
    rows, gbar = [], {}
    for i, g in enumerate(study.gaps):
        gm = np.array([G.get(("deprl", "exact_gap", g, K), nan_row) for K in rounds])
        gbar[g] = gm
        with np.errstate(all="ignore"):
            ratio = np.nanmean(gm, axis=1) / np.nanmean(ref, axis=1)
        rows.append({"gap": g, "rho": float(rho[i]), "measured_K": measured_transient(rounds, gm, ref, study.factor),
                     "predicted_K0": None if pred is None else float(pred[i]),
                     "ratio_to_reference": {str(K): float(v) for K, v in zip(rounds, ratio)},
                     "Gbar": {str(K): float(np.nanmean(v)) for K, v in zip(rounds, gm)}})
    tr = template_transient()
    with np.errstate(all="ignore"):
        transient = {"reference": "centralized (exact averaging) on the same N, K and seeds",
                     "factor": study.factor, "rounds": rounds,
                     "reference_Gbar": {str(K): float(np.nanmean(v)) for K, v in zip(rounds, ref)},
                     "predicted_K0_expr": None if pred is None else str(tr.K0),
                     "predicted_K0_large_N": None if pred is None else str(tr.K0_large_N),
                     "rows": rows}
    return ConsensusResult(study=study, slope=fit, verdict=verdict, reason=reason, gaps=gap_rows,
                           topologies=topo_rows, transient=transient, gbar=gbar, gbar_reference=ref,
                           constants=dict(constants_report or {}), sweep=dict(sweep or {}))


def run_consensus(study: ConsensusStudy, options: SweepOptions = SweepOptions()) -> tuple[ConsensusResult, Any]:
    """Run the sweep of ``study`` (cached), estimate the bound's constants, and analyse."""
    cells = study.cells()
    sweep = run_sweep(simulate_cell, cells, study.seed_list, base_seed=study.base_seed, task_version=TASK_VERSION,
                      cost=cell_cost, validate=validate_result, **options.kwargs())
    consts = estimate_constants(cell_problem(cells[0], study.seed_list, study.base_seed), seed=study.base_seed)
    result = analyse_consensus(study, sweep.records, consts.symbols(), constants_report=consts.as_dict(),
                               sweep=sweep.info())
    return result, sweep
