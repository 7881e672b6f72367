"""The transient law, measured: after how many rounds does linear speedup start, as a function of N and the gap?

Setting: DePRL with the theory's step sizes on the exact-gap family
``W = (1 - g) I + g 11^T / N`` (rho = 1 - g), over a grid of N, gaps and K.
The transient K0 of a cell (N, g) is measured against the centralized run
on the same instances (exact averaging, no consensus error): the first K of
the grid from which the seed-mean Gbar stays within ``factor`` of the
reference's, refined to where the ratio crosses the factor
(:func:`~deprl_theory.experiments.transient.transient_crossing`). Cells whose
transient lies outside the grid are censored and kept out of the fit.

The law ``K0 = C N^a (1 - rho)^(-q)`` is fitted by least squares on the
measured log K0 (:func:`~deprl_theory.experiments.laws.fit_power_law`,
residual t intervals: a law that does not fit widens its own intervals) and
compared with two predictions derived symbolically:

* the template (docs/theory.md, section 5), upper bound: ``K0 ~ N^3 rho^4 / (1 - rho)^4``, a = 3, q = 4;
* the noise-dominated alternative
  (:func:`~deprl_theory.experiments.transient.noise_transient`):
  ``Cbar ~ beta^2 rho^2 / (1 - rho^2)`` gives ``K0 ~ N^3 rho^4 / (1 - rho^2)^2``, a = 3, q = 2.

Both are given as their asymptotic exponents and as the exponents the same
regression finds on their K0 at the fitted points (with the constants
estimated per N), so that measured and predicted are read the same way.

Then the law answers the user's question for named graphs: rounds until
linear speedup for each topology of :data:`TABLE_TOPOLOGIES` at each N of
:data:`TABLE_N`, from the law and the graph's exact gap (the spectral gap of
the matrix the cells run; docs/theory.md, section 3, has the closed forms, the
exponential graph is computed), with a 95% prediction interval; a cell
outside the fitted range of N or of the gap is marked as an extrapolation.
The law was measured on the exact-gap family, whose whole-spectrum noise sum
is the largest for its gap (:mod:`.consensus`): a named graph with the same
gap disagrees less. So the table is also given at each graph's *effective*
gap (:func:`~deprl_theory.graphs.effective_gap`, the exact-gap matrix with the
same noise sum), and named graphs run at every K (``named``) say which of the
two readings the measurement follows.

Held-out check: the law predicts K0 at points not in the fitted grid
(``held_out``), which are run and measured the same way; a point passes when
the measurement lies in the law's 95% prediction interval.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..constants import estimate_constants
from ..graphs import effective_gap, spectral_gap
from ..sweep import SweepOptions, run_sweep
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
from .laws import PowerLawFit, fit_power_law
from .records import metric_table
from .study_file import write_study
from .transient import Crossing, gap_exponent, model_K0, noise_transient, template_transient, transient_crossing

__all__ = ["LAW_N", "LAW_GAPS", "LAW_ROUNDS", "HELD_OUT", "NAMED_CHECKS", "TABLE_TOPOLOGIES", "TABLE_N",
           "TransientLawStudy", "TransientLawResult", "analyse_transient_law", "run_transient_law", "law_table",
           "held_out_check", "named_check", "graph_gaps"]

#: worker counts of the fitted grid
LAW_N = (4, 8, 16)
#: gaps of the fitted grid: where Gbar leaves the factor and comes back within K <= 4000 at factor 1.25
#: (at larger gaps it never leaves it, at smaller ones it comes back beyond the grid)
LAW_GAPS = (0.09, 0.075, 0.062, 0.051, 0.042)
#: rounds grid (the consensus experiment's, so the cells are shared)
LAW_ROUNDS = (125, 250, 500, 1000, 2000, 4000)
#: points outside the fitted grid, run only to check the law: (N, gap)
HELD_OUT = ((32, 0.056),)
#: named graphs run at every K to check which gap the law should be read at: (topology, N)
NAMED_CHECKS = (("ring", 16), ("star", 16), ("path", 16))
#: rows and columns of the rounds-until-speedup table
TABLE_TOPOLOGIES = ("ring", "torus", "hypercube", "exponential", "complete")
TABLE_N = (16, 64, 256, 1024)
_FACTORS = ("N", "1/(1-rho)")


@dataclass(frozen=True)
class TransientLawStudy:
    """The grid of the transient law: every N x gap x K of the exact-gap family, the reference, the held-out points."""

    #: the kind under which the study is stored (``transient_law.study.json``)
    KIND: ClassVar[str] = "transient_law"

    n: tuple[int, ...] = LAW_N
    gaps: tuple[float, ...] = LAW_GAPS
    rounds: tuple[int, ...] = LAW_ROUNDS
    held_out: tuple[tuple[int, float], ...] = HELD_OUT
    named: tuple[tuple[str, int], ...] = NAMED_CHECKS
    seeds: int = 4
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)
    factor: float = 1.25

    def __post_init__(self) -> None:
        n = tuple(int(v) for v in self.n)
        gaps = tuple(float(g) for g in self.gaps)
        rounds = tuple(sorted({int(k) for k in self.rounds}))
        held = tuple((int(a), float(b)) for a, b in self.held_out)
        named = tuple((str(t), int(m)) for t, m in self.named)
        if len(set(n)) < 2 or min(n) < 2:
            raise ValueError(f"the law needs at least two distinct worker counts >= 2, got {list(n)}")
        if len(set(gaps)) < 2 or any(not 0 < g < 1 for g in gaps):
            raise ValueError(f"the law needs at least two distinct gaps in (0, 1), got {list(gaps)}")
        if len(rounds) < 2 or rounds[0] < 1:
            raise ValueError(f"the law needs at least two positive K, got {list(rounds)}")
        for hn, hg in held:
            if hn < 2 or not 0 < hg < 1:
                raise ValueError(f"a held-out point needs N >= 2 and a gap in (0, 1), got ({hn}, {hg})")
            if hn in n and hg in gaps:
                raise ValueError(f"held-out point (N = {hn}, gap = {hg:g}) is in the fitted grid: it checks nothing")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if not self.factor > 1:
            raise ValueError(f"factor must exceed 1, got {self.factor}")
        if "topology" in self.cell or "gap" in self.cell or "algorithm" in self.cell:
            raise ValueError("the transient law runs the exact-gap family and the centralized reference only")
        for name, value in (("n", n), ("gaps", gaps), ("rounds", rounds), ("held_out", held), ("named", named),
                            ("cell", dict(self.cell))):
            object.__setattr__(self, name, value)
        cell_params(**self.cell)
        self.check()  # graphs and problems are built and checked here, with the CLI's checks

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def graphs(self) -> list[tuple[int, float, bool]]:
        """``(N, gap, held_out)`` of every point the study measures."""
        return [(n, g, False) for n in self.n for g in self.gaps] + [(n, g, True) for n, g in self.held_out]

    def cells(self) -> list[dict]:
        graphs = [(n, "exact_gap", g) for n, g, _ in self.graphs()] + [(n, t, None) for t, n in self.named]
        cells, refs = [], []
        for n, topology, g in graphs:
            for K in self.rounds:
                cells.append(cell_params(N=n, K=K, topology=topology, gap=g, **self.cell))
                if (n, K) not in refs:
                    refs.append((n, K))
                    cells.append(cell_params(N=n, K=K, algorithm="centralized", topology="complete", **self.cell))
        return cells

    def check(self) -> None:
        """Build every W and problem before anything runs; ValueError naming the first that fails."""
        check_cells(self.cells(), self.base_seed)

    def settings(self) -> dict[str, Any]:
        p = cell_params(**self.cell)
        return {"n": list(self.n), "gaps": list(self.gaps), "rounds": list(self.rounds),
                "held_out": [list(h) for h in self.held_out], "named": [list(x) for x in self.named],
                "seeds": self.seed_list, "base_seed": self.base_seed,
                "factor": self.factor, "c": p["c"], "tau": p["tau"], "head_rule": p["head_rule"]}


@dataclass(frozen=True, eq=False)
class TransientLawResult:
    """The measured transients, the fitted law, the two models, the held-out check and the table.

    Attributes
    ----------
    points : list of dict
        Per (N, gap): the :class:`~deprl_theory.experiments.transient.Crossing`, whether it is
        held out, and whether it entered the fit.
    fit : PowerLawFit or None
        ``log K0 = b0 + a log N + q log(1/(1-rho))``; None with ``fit_error`` saying why.
    models : list of dict
        Template and noise-dominated: asymptotic (a, q), (a, q) on the fitted points, whether each
        lies in the measured interval, and the geometric mean of measured / predicted K0.
    held_out : list of dict
        Per held-out point: measured, predicted with its prediction interval, ``passed``.
    named : list of dict
        Per named graph of the study: measured K0 against the law at its gap and at its effective gap.
    table : dict
        Rows :data:`TABLE_TOPOLOGIES`, columns :data:`TABLE_N`: K0 from the law at each graph's gap
        (``rows``) and at its effective gap (``rows_effective``).
    """

    study: TransientLawStudy
    points: list[dict]
    fit: PowerLawFit | None
    fit_error: str
    models: list[dict]
    held_out: list[dict]
    named: list[dict]
    table: dict[str, Any]
    sweep: dict[str, Any] = field(default_factory=dict)

    @property
    def a(self) -> float | None:
        return None if self.fit is None else self.fit.exponents.get("N")

    @property
    def q(self) -> float | None:
        return None if self.fit is None else self.fit.exponents.get("1/(1-rho)")

    def as_dict(self) -> dict[str, Any]:
        law = None
        if self.fit is not None:
            law = {"form": "K0 = exp(b0) N^a (1 - rho)^(-q)", "b0": self.fit.intercept,
                   "a": None if self.a is None else {"value": self.a, "ci": self.fit.cis["N"].as_list()},
                   "q": None if self.q is None else {"value": self.q, "ci": self.fit.cis["1/(1-rho)"].as_list()},
                   "fit": self.fit.as_dict()}
        return {"law": law, "fit_error": self.fit_error, "points": self.points, "models": self.models,
                "held_out": self.held_out, "named_checks": self.named, "table": self.table,
                "settings": self.study.settings(),
                "sweep": self.sweep}


def _crossing(study: TransientLawStudy, G: Mapping, n: int, topology: str, gap: float | None) -> Crossing:
    nan_row = np.full(study.seeds, np.nan)
    ref = np.array([G.get(("centralized", "complete", n, None, K), nan_row) for K in study.rounds])
    gm = np.array([G.get(("deprl", topology, n, gap, K), nan_row) for K in study.rounds])
    return transient_crossing(study.rounds, gm, ref, study.factor)


def _crossings(study: TransientLawStudy, G: Mapping) -> list[dict]:
    out = []
    for n, g, held in study.graphs():
        cross = _crossing(study, G, n, "exact_gap", g)
        out.append({"N": n, "gap": g, "rho": 1 - g, "held_out": held, **cross.as_dict(),
                    "in_fit": not held and cross.K0 is not None})
    return out


@lru_cache(maxsize=256)
def _gaps_cached(topology: str, n: int, cell: str) -> tuple[float, float]:
    W = build_mixing(cell_params(N=n, topology=topology, **json.loads(cell)))
    return spectral_gap(W), effective_gap(W)


def graph_gaps(topology: str, n: int, cell: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """``(spectral gap, effective gap)`` of a named graph as the cells build it (cached: up to N = 1024 is dense)."""
    return _gaps_cached(topology, int(n), json.dumps(dict(cell or {}), sort_keys=True))


def _model_rows(fit: PowerLawFit | None, fitted: Sequence[dict], constants: Mapping[int, Mapping[str, float]] | None,
                c: float, tau: int) -> list[dict]:
    """Template and noise-dominated K0: asymptotic exponents, exponents on the fitted points, level."""
    rows = []
    for name, tr in (("template", template_transient()), ("noise-dominated", noise_transient())):
        row: dict[str, Any] = {"model": name, "K0": str(tr.K0), "a_asymptotic": float(tr.N_exponent),
                               "q_asymptotic": float(gap_exponent(tr.K0))}
        if constants and fitted:
            pred = np.array([float(model_K0(tr, constants[p["N"]], p["N"], [p["rho"]], c=c, tau=tau)[0])
                             for p in fitted])
            meas = np.array([p["K0"] for p in fitted])
            row["measured_over_predicted"] = float(np.exp(np.mean(np.log(meas / pred))))
            try:
                on_grid = fit_power_law({"N": [p["N"] for p in fitted], "1/(1-rho)": [1 / p["gap"] for p in fitted]},
                                        pred)
                row["a_on_grid"] = on_grid.exponents.get("N")
                row["q_on_grid"] = on_grid.exponents.get("1/(1-rho)")
            except ValueError:
                pass
        if fit is not None:
            for key, factor in (("a", "N"), ("q", "1/(1-rho)")):
                ci = fit.cis.get(factor)
                row[f"{key}_in_ci"] = None if ci is None else ci.contains(row[f"{key}_asymptotic"])
        rows.append(row)
    return rows


def _against(fit: PowerLawFit, n: int, gap: float, crossing: Mapping[str, Any], rounds: Sequence[int]) -> dict:
    """The law at (n, gap) against a measured crossing: passed when the measurement lies in the 95% PI.

    A censored measurement passes when the interval reaches into the
    censored range (below the smallest K, or beyond the largest).
    """
    pred = fit.predict({"N": n, "1/(1-rho)": 1 / gap})
    lo, hi = pred.pi
    if crossing["censored"] == "below":
        passed = lo <= rounds[0]
    elif crossing["censored"] == "above":
        passed = hi > rounds[-1]
    else:
        passed = bool(lo <= crossing["K0"] <= hi)
    return {"gap": gap, "predicted": pred.as_dict(), "passed": passed,
            "ratio": None if crossing["K0"] is None else crossing["K0"] / pred.value}


def _measured_text(crossing: Mapping[str, Any], rounds: Sequence[int]) -> str:
    return {"below": f"<= {rounds[0]}", "above": f"> {rounds[-1]}"}.get(crossing["censored"]) \
        or f"{crossing['K0']:.4g}"


def held_out_check(fit: PowerLawFit, point: Mapping[str, Any], rounds: Sequence[int]) -> dict[str, Any]:
    """Measured K0 at a held-out point of the exact-gap family against the law's 95% prediction interval."""
    return {"N": point["N"], "measured": _measured_text(point, rounds), "measured_K0": point["K0"],
            "censored": point["censored"], **_against(fit, point["N"], point["gap"], point, rounds)}


def named_check(fit: PowerLawFit, topology: str, n: int, crossing: Crossing, gaps: tuple[float, float],
                rounds: Sequence[int]) -> dict[str, Any]:
    """Measured K0 of a named graph against the law read at its spectral gap and at its effective gap."""
    c = crossing.as_dict()
    return {"topology": topology, "N": n, "measured": _measured_text(c, rounds), "measured_K0": c["K0"],
            "censored": c["censored"], "ratios": c["ratios"],
            "at_gap": _against(fit, n, gaps[0], c, rounds), "at_effective_gap": _against(fit, n, gaps[1], c, rounds)}


def _law_cell(fit: PowerLawFit, n: int, gap: float, n_range, g_range) -> dict[str, Any]:
    if gap >= 1 - 1e-12:
        return {"gap": gap, "K0": 0.0, "prediction_interval": [0.0, 0.0], "extrapolated": False, "outside": [],
                "note": "exact averaging: no consensus error, no transient"}
    pred = fit.predict({"N": n, "1/(1-rho)": 1 / gap})
    outside = ([f"N = {n} outside [{n_range[0]}, {n_range[1]}]"] if not n_range[0] <= n <= n_range[1] else []) \
        + ([f"gap {gap:.3g} outside [{g_range[0]:.3g}, {g_range[1]:.3g}]"] if not g_range[0] <= gap <= g_range[1]
           else [])
    return {"gap": gap, "K0": pred.value, "prediction_interval": pred.pi.as_list(), "extrapolated": bool(outside),
            "outside": outside}


def law_table(fit: PowerLawFit, fitted: Sequence[dict], topologies: Sequence[str] = TABLE_TOPOLOGIES,
              ns: Sequence[int] = TABLE_N, cell: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rounds until linear speedup per topology and N from the law, read at two gaps of each graph.

    ``rows`` reads the law at the graph's spectral gap (what the law is a
    function of on the exact-gap family); ``rows_effective`` at its effective
    gap (:func:`~deprl_theory.graphs.effective_gap`: the exact-gap matrix with
    the same whole-spectrum noise sum). A graph with gap 1 (the complete
    graph) averages exactly: no consensus error, no transient (0). Cells with
    N or the gap outside the range of the fitted points are marked
    ``extrapolated`` with what lies outside.
    """
    n_range = (min(p["N"] for p in fitted), max(p["N"] for p in fitted))
    g_range = (min(p["gap"] for p in fitted), max(p["gap"] for p in fitted))
    rows: dict[str, dict] = {}
    rows_eff: dict[str, dict] = {}
    for name in topologies:
        rows[name], rows_eff[name] = {}, {}
        for n in ns:
            gap, eff = graph_gaps(name, n, cell)
            rows[name][str(n)] = _law_cell(fit, n, gap, n_range, g_range)
            rows_eff[name][str(n)] = _law_cell(fit, n, eff, n_range, g_range)
    return {"rows": rows, "rows_effective": rows_eff, "n": list(ns), "fitted_N": list(n_range),
            "fitted_gaps": list(g_range), "law": "K0 = exp(b0) N^a (1 - rho)^(-q), fitted on the exact-gap family"}


def analyse_transient_law(study: TransientLawStudy, records: Sequence[Mapping[str, Any]],
                          constants: Mapping[int, Mapping[str, float]] | None = None, *,
                          sweep: Mapping[str, Any] | None = None) -> TransientLawResult:
    """Measure every transient, fit the law, compare it with the models, check the held-out points, tabulate.

    Reads the records only (and the closed-form gaps of the table's graphs).
    ``constants`` (per N) are needed for the models' levels and on-grid
    exponents, not for the law.
    """
    G = metric_table(records, "G", ("algorithm", "topology", "N", "gap", "K"), seeds=study.seed_list)
    points = _crossings(study, G)
    fitted = [p for p in points if p["in_fit"]]
    fit, error = None, ""
    try:
        fit = fit_power_law({"N": [p["N"] for p in fitted], "1/(1-rho)": [1 / p["gap"] for p in fitted]},
                            np.array([p["K0"] for p in fitted]))
        if set(fit.exponents) != set(_FACTORS):
            raise ValueError(f"the fitted points do not vary both N and the gap ({fit.not_identified})")
    except ValueError as exc:
        fit = None
        censored = sum(1 for p in points if not p["held_out"] and p["censored"])
        error = f"no law: {exc} ({len(fitted)} points in the fit, {censored} censored by the K grid)"
    p = cell_params(**study.cell)
    models = _model_rows(fit, fitted, constants, p["c"], p["tau"])
    held = [] if fit is None else [held_out_check(fit, q, study.rounds) for q in points if q["held_out"]]
    named = [] if fit is None else [named_check(fit, t, n, _crossing(study, G, n, t, None),
                                                graph_gaps(t, n, study.cell), study.rounds) for t, n in study.named]
    table = {} if fit is None else law_table(fit, fitted, cell=study.cell)
    return TransientLawResult(study=study, points=points, fit=fit, fit_error=error, models=models, held_out=held,
                              named=named, table=table, sweep=dict(sweep or {}))


def run_transient_law(study: TransientLawStudy,
                      options: SweepOptions = SweepOptions()) -> tuple[TransientLawResult, Any]:
    """Run the sweep of ``study`` (cached: cells shared with the consensus experiment are not rerun) and analyse."""
    cells = study.cells()
    sweep = run_sweep(simulate_cell, cells, study.seed_list, base_seed=study.base_seed, task_version=TASK_VERSION,
                      cost=cell_cost, validate=validate_result, **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    constants = {n: estimate_constants(cell_problem(cell_params(N=n, **study.cell), study.seed_list, study.base_seed),
                                       seed=study.base_seed).symbols() for n in study.n}
    result = analyse_transient_law(study, sweep.records, constants, sweep=sweep.info())
    write_study(options, study)
    return result, sweep
