"""Does convergence improve linearly with the number of workers? The speedup experiment.

For each N of a list, a grid of rounds K and S seeds, the algorithm runs with
the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau); the
time-averaged metrics Rbar, Hbar, Gbar are fitted as
``log Mbar = a0 + e_N log N + e_K log K`` (t intervals over per-seed fits), and the
speedup exponent ``s = e_N / e_K`` gives the verdict (docs/theory.md, section 6).
Seeds come at the planned looks of a group-sequential design
(:mod:`deprl_theory.inference`), and the headline verdict is read by
:mod:`.decision`, which consults the exact-averaging companion where the grid
may be bent by a transient.

:class:`SpeedupStudy` says what to run; :func:`run_speedup` runs the sweep and
calls :func:`analyse_speedup`, which only reads records and can be tested
without simulating anything. Everything comes back as a :class:`SpeedupResult`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..inference import (
    CI_METHOD,
    CI_METHOD_SKEW,
    DEFAULT_DESIGN,
    DEFAULT_MARGIN,
    FIXED_LEVEL,
    GroupSequentialDesign,
    fit_rate,
    group_sequential_design,
    run_sequential,
)
from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, check_cells, checked_rho, simulate_cell, validate_result
from .decision import COMPANION_RULES, INTERVALS, MetricFit, RateDecision, companion_needed, fit_metric, rate_decision
from .records import diverged_runs, metric_table, run_rows, seed_mean, step_table
from .study_file import write_study
from .transient import PredictedTransient, predict_transient, transient_cells

__all__ = ["FIT_METRICS", "DEFAULT_ROUNDS", "QUICK_ROUNDS", "SpeedupStudy", "MetricFit", "KEps", "SpeedupResult",
           "run_speedup", "analyse_speedup", "rounds_to_accuracy", "regime_starts", "companion_cell", "graph_mixes",
           "with_companion"]

#: the metrics fitted (C, the consensus error, is stored but not fitted: it is 0 on a complete graph)
FIT_METRICS = ("R", "H", "G")
DEFAULT_ROUNDS = (500, 1000, 2000, 4000)
QUICK_ROUNDS = (250, 500, 1000)


@dataclass(frozen=True)
class SpeedupStudy:
    """What the speedup experiment runs and how it is analysed.

    Attributes
    ----------
    n : tuple of int
        Worker counts (at least three distinct, each >= 2).
    rounds : tuple of int
        The K grid (at least two distinct).
    seeds : int
        Seeds per cell of a fixed design (one look at the plain 95 % level).
    base_seed : int
    cell : mapping
        Cell parameters shared by every cell (algorithm, topology, problem, ...;
        see :func:`~deprl_theory.experiments.cell_params`).
    metric : {"G", "R", "H"}
        Metric of the headline verdict; G, the full stationarity the theorem bounds, by default.
    margin : float
        Margin m of the verdict's tests (see :func:`~deprl_theory.inference.speedup_verdict`).
    transient_tol : float
        Measured transient: drop the smallest K of an N while its local slope
        differs from that N's tail slope by more than this (0 keeps every cell).
    transient_factor : float
        Also drop cells with K < factor x the template's predicted K0 (0: report only).
    extra_rounds : mapping N -> tuple of int
        More K for some N (``--rounds auto`` extends each N's grid on its own).
    regime : {"tail", "theory"}
        Which cells count as transient: ``"tail"`` compares each N's local
        log-log slopes with its own tail slope (``transient_tol``);
        ``"theory"`` (``--rounds auto``) keeps, per N, the cells from which
        every local slope of the headline metric is within the margin of the
        theory's -1/2.
    looks : tuple of int
        The planned looks of a group-sequential design (seeds at each look,
        increasing); empty: the fixed design at ``seeds``. :func:`run_speedup`
        analyses look k with ``seeds`` set to ``looks[k]``.
    design : {"obrien-fleming", "pocock"}
        Boundary shape of the group-sequential design.
    interval : {"hall", "fieller"}
        How the interval of s is computed at each look: ``hall`` (default)
        inverts Hall's skewness-corrected t test of the Fieller pivot at
        levels up to 0.999 (Fieller's interval above); ``fieller`` always
        uses Fieller's t interval.
    companion : {"auto", "always", "never"}
        When the exact-averaging companion runs on the same instances and
        seeds: ``auto`` when the graph mixes (rho > 0) and the grid's headline
        verdict is not ``linear`` (the only case where it can change the
        verdict), ``always``, or ``never``.
    """

    #: the kind under which the study is stored (``speedup.study.json``)
    KIND: ClassVar[str] = "speedup"

    n: tuple[int, ...] = (4, 8, 16, 32)
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    seeds: int = 8
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "G"
    margin: float = DEFAULT_MARGIN
    transient_tol: float = 0.15
    transient_factor: float = 0.0
    extra_rounds: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    regime: str = "tail"
    looks: tuple[int, ...] = ()
    design: str = DEFAULT_DESIGN
    companion: str = "auto"
    interval: str = "hall"

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", tuple(int(v) for v in self.looks))
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {self.interval!r}")
        if self.companion not in COMPANION_RULES:
            raise ValueError(f"companion must be one of {', '.join(COMPANION_RULES)}, got {self.companion!r}")
        object.__setattr__(self, "n", tuple(sorted({int(n) for n in self.n})))
        object.__setattr__(self, "rounds", tuple(sorted({int(k) for k in self.rounds})))
        object.__setattr__(self, "cell", dict(self.cell))
        object.__setattr__(self, "extra_rounds", {int(n): tuple(sorted({int(k) for k in ks}))
                                                  for n, ks in dict(self.extra_rounds).items()})
        if self.regime not in ("tail", "theory"):
            raise ValueError(f"regime must be 'tail' or 'theory', got {self.regime!r}")
        if any(n < 2 for n in self.n):
            raise ValueError(f"every worker count must be >= 2, got {min(self.n)}")
        if len(self.n) < 3:
            raise ValueError(f"need at least three distinct worker counts to fit a rate, got {list(self.n)}")
        if any(k < 1 for k in self.rounds):
            raise ValueError(f"every K must be a positive integer, got {min(self.rounds)}")
        if len(self.rounds) < 2:
            raise ValueError("need at least two distinct K to fit the K exponent")
        if self.seeds < 2:
            raise ValueError(f"need at least 2 seeds for an interval, got {self.seeds}")
        if self.looks:
            self.sequential_design()  # bad looks or an unknown design fail here, before anything runs
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must lie in [0, 1), got {self.margin}")
        if self.metric not in FIT_METRICS:
            raise ValueError(f"metric must be one of {', '.join(FIT_METRICS)}, got {self.metric!r}")
        cell_params(**self.cell)  # unknown cell parameters fail here
        self.check()  # graphs and problems are built and checked here, with the CLI's checks

    def sequential_design(self) -> GroupSequentialDesign | None:
        """The group-sequential design of the planned looks (None: the fixed design)."""
        return group_sequential_design(self.looks, self.design) if self.looks else None

    @property
    def max_seeds(self) -> int:
        """Seeds of the last look (the fixed design's seeds without looks)."""
        return self.looks[-1] if self.looks else self.seeds

    def companion_cells(self) -> list[dict]:
        """The exact-averaging companion of every cell (same N, K, problem and seed indices)."""
        return [companion_cell(c) for c in self.cells()]

    def rounds_of(self, n: int) -> tuple[int, ...]:
        """The K grid of worker count n (the shared grid and its own extension)."""
        return tuple(sorted(set(self.rounds) | set(self.extra_rounds.get(n, ()))))

    def cells(self) -> list[dict]:
        """Every cell of the grid, N-major."""
        return [cell_params(N=n, K=k, **self.cell) for n in self.n for k in self.rounds_of(n)]

    @property
    def algorithm(self) -> str:
        return cell_params(**self.cell)["algorithm"]

    def check(self) -> None:
        """Check every cell before anything runs (graphs against A4, problems against their sizes)."""
        check_cells(self.cells(), self.base_seed)

    def mixing_rates(self) -> dict[int, float]:
        """rho per N; builds and checks every graph first, so a W that cannot be built or breaks A4 fails here.

        Raises
        ------
        ValueError
            Naming N and what is wrong with the topology there (a W that breaks
            A4 names the failing property).
        """
        return {n: checked_rho(cell_params(N=n, K=self.rounds[0], **self.cell), self.base_seed) for n in self.n}

    def settings(self) -> dict[str, Any]:
        """The study as JSON: the grid, the seeds and every cell parameter."""
        p = cell_params(**self.cell)
        out = {"n": list(self.n), "rounds": list(self.rounds), "seeds": self.seeds, "base_seed": self.base_seed,
               "rounds_per_n": {str(n): list(self.rounds_of(n)) for n in self.n}, "regime_rule": self.regime}
        for key in ("problem", "topology", "weights", "gap", "algorithm", "tau", "c", "head_rule", "head_step",
                    "batch", "dim", "rank", "noise", "heterogeneity", "heads", "activation"):
            out[key] = p[key]
        for key in ("beta_rule", "head_mean"):  # optional: carried only when set
            if p.get(key):
                out[key] = p[key]
        out["margin"] = self.margin
        out["intervals"] = {"method": CI_METHOD_SKEW if self.interval == "hall" else CI_METHOD, "rule": self.interval,
                            "level": FIXED_LEVEL if not self.looks else "per look (design)"}
        out["design"] = (None if not self.looks else self.sequential_design().as_dict())
        out["companion_rule"] = self.companion
        return out



def companion_cell(params: Mapping[str, Any]) -> dict:
    """Exact averaging (W = 11^T/N) in place of the cell's graph: DePRL's ``centralized``, D-PSGD on the complete graph.

    Metropolis weights on the complete graph are 1/N exactly. The problem
    instance of seed j depends on the problem's parameters and j only, so the
    companion sees the same instances as the graph (common random numbers).
    """
    p = dict(params)
    p.update(topology="complete", weights="metropolis", gap=None, lazy=None)
    for key in ("p", "degree"):
        p.pop(key, None)
    if p.get("algorithm", "deprl") == "deprl":
        p["algorithm"] = "centralized"
    return cell_params(**p)


@dataclass(frozen=True)
class KEps:
    """Rounds K_eps(N) for the seed-mean curve of each N to reach ``eps``, from a power law fitted per N.

    ``extrapolated[N]`` says K_eps lies outside the measured K range of that N.
    """

    eps: float
    k_eps: dict[int, float]
    extrapolated: dict[int, bool]

    def speedup(self) -> dict[int, float]:
        """S(N) = K_eps(N_min) / K_eps(N)."""
        n0 = min(self.k_eps)
        return {n: self.k_eps[n0] / v for n, v in self.k_eps.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "K_eps": {str(n): v for n, v in self.k_eps.items()},
                "extrapolated": {str(n): v for n, v in self.extrapolated.items()}}


def rounds_to_accuracy(table: Mapping[tuple[int, int], np.ndarray], eps: float | None = None) -> KEps:
    """K_eps(N) from a power law ``log m = a_N + b_N log K`` fitted to the seed means of each N.

    ``eps`` defaults to the geometric mean of all cell means, so that every
    K_eps is interpolated where the ranges of the N overlap. A K_eps outside the
    measured K range of its N is flagged as extrapolated; an N whose curve does
    not decrease gets NaN.
    """
    Ns = sorted({n for n, _ in table})
    Ks = sorted({k for _, k in table})
    per_n = {}
    with np.errstate(all="ignore"):
        for n in Ns:
            ks = np.array([k for k in Ks if (n, k) in table], dtype=float)
            m = np.array([seed_mean(table[(n, k)]) if np.isfinite(table[(n, k)]).any() else np.nan for k in ks])
            ok = np.isfinite(m) & (m > 0)
            if ok.sum() >= 2:
                b, a = np.polyfit(np.log(ks[ok]), np.log(m[ok]), 1)
                per_n[n] = (a, b, ks[ok].min(), ks[ok].max())
        if eps is None:
            allm = np.array([seed_mean(v) if np.isfinite(v).any() else np.nan for v in table.values()])
            allm = allm[np.isfinite(allm) & (allm > 0)]
            eps = float(np.exp(np.mean(np.log(allm)))) if allm.size else float("nan")
    k_eps, extrapolated = {}, {}
    for n in Ns:
        if n in per_n and per_n[n][1] < 0:
            a, b, kmin, kmax = per_n[n]
            k_eps[n] = float(np.exp((np.log(eps) - a) / b))
            extrapolated[n] = not (kmin <= k_eps[n] <= kmax)
        else:
            k_eps[n], extrapolated[n] = float("nan"), True
    return KEps(float(eps), k_eps, extrapolated)


@dataclass(frozen=True, eq=False)
class SpeedupResult:
    """Everything the speedup experiment measured, predicted and decided.

    Attributes
    ----------
    study : SpeedupStudy
    fits : dict metric -> MetricFit
        R, H and G side by side; ``fits[study.metric]`` is the headline.
    tables : dict metric -> {(N, K): array over seeds}
        The time averages the fits used (NaN for diverged seeds), for figures.
    k_eps : dict metric -> KEps
    transient : dict N -> dict
        The template's K0 next to the measured transient and the spectral gap.
    excluded : list of dict
        Cells left out of the fit as transient, each with its reason.
    fit_cells : list of (N, K)
    note : str
        Set when too few cells were past the transient to trim.
    diverged : list of dict
    step_sizes : list of dict
    step_rule : str or None
    sweep : dict
        Counts and timing of the sweep.
    records : list of dict
        The sweep records analysed (for the long CSV table).
    diagnostics : dict N -> dict
        Mean final head norm ||theta_i|| and representation norm ||phibar||_F at
        the largest K: the rescaling (Phi, theta) -> (c Phi, theta / c) that
        moves R but not F shows here.
    ground_truth : dict
        Exponents of the final subspace distance and excess risk (scale
        invariant), a cross-check.
    stopping : dict
        With ``--rounds auto``: the grid it reached and why it stopped.
    decision : RateDecision or None
        The verdict on the rate: the grid's headline fit combined with the
        exact-averaging companion when it ran (``decision.verdict`` is the
        headline verdict; ``fits[metric]`` keeps the grid's own).
    sequential : dict
        The group-sequential design, the look where it stopped, its level and
        the verdict at every look (empty for a fixed design).
    companion_records : list of dict
        The companion's sweep records (empty when it did not run).
    level : float
        Level of every interval of this analysis (the stopping look's).
    """

    study: SpeedupStudy
    fits: dict[str, MetricFit]
    tables: dict[str, dict[tuple[int, int], np.ndarray]]
    k_eps: dict[str, KEps]
    transient: dict[int, dict[str, Any]]
    excluded: list[dict]
    fit_cells: list[tuple[int, int]]
    note: str
    diverged: list[dict]
    step_sizes: list[dict]
    step_rule: str | None
    sweep: dict[str, Any]
    records: list = field(default_factory=list, repr=False)
    diagnostics: dict[int, dict[str, float]] = field(default_factory=dict)
    ground_truth: dict[str, Any] = field(default_factory=dict)
    stopping: dict[str, Any] = field(default_factory=dict)
    regime: dict[int, dict[str, Any]] = field(default_factory=dict)
    decision: RateDecision | None = None
    sequential: dict[str, Any] = field(default_factory=dict)
    companion_records: list = field(default_factory=list, repr=False)
    level: float = FIXED_LEVEL

    @property
    def headline(self) -> MetricFit:
        """The grid's own fit of the headline metric."""
        return self.fits[self.study.metric]

    @property
    def rate_verdict(self):
        """The verdict on the rate (the headline): the decision's, which may consult the companion."""
        return self.decision.verdict if self.decision is not None else self.headline.verdict

    @property
    def verdict(self) -> str:
        return self.rate_verdict.word

    def to_frame(self):
        """The runs analysed as a pandas DataFrame: one row per (cell, seed, metric), the rows of ``speedup.csv``.

        pandas is an optional dependency: ``pip install 'deprl-theory[frames]'``.
        """
        from ..sweep.table import rows_frame

        return rows_frame(run_rows(self.records))

    def as_dict(self) -> dict[str, Any]:
        """The JSON summary (the keys of ``python -m verification.speedup --json``)."""
        metrics = {m: f.as_dict() for m, f in self.fits.items()}
        head = metrics[self.study.metric]
        rate = self.rate_verdict
        return {
            "question": "does convergence improve linearly with the number of workers N?",
            "verdict": rate.word,
            "metric": self.study.metric,
            "reason": rate.reason,
            "verdict_on_grid": head["verdict"],
            "level": self.level,
            "exponents": {k: head[k] for k in ("N", "K", "speedup")},
            "verdicts": {m: metrics[m]["verdict"] for m in FIT_METRICS},
            "metrics": metrics,
            "settings": {**self.study.settings(), "step_rule": self.step_rule},
            "step_sizes": self.step_sizes,
            "transient": {str(n): v for n, v in self.transient.items()},
            "excluded_cells": self.excluded,
            "fit_cells": [list(k) for k in self.fit_cells],
            "fit_note": self.note,
            "diverged": self.diverged,
            "sweep": self.sweep,
            "k_eps": {m: k.as_dict() for m, k in self.k_eps.items()},
            "converges": {m: metrics[m]["converges"] for m in FIT_METRICS},
            "diagnostics": {str(n): v for n, v in self.diagnostics.items()},
            "ground_truth": self.ground_truth,
            "stopping": self.stopping,
            "regime": {str(n): v for n, v in self.regime.items()},
            "sequential": self.sequential,
            "companion": self._companion_dict(),
            "cells": self._cells(),
        }

    def _cells(self) -> list[dict[str, Any]]:
        """Per cell and metric: the mean over seeds of the time average, its sd, the seeds, whether it was fitted."""
        fitted = set(self.fit_cells)
        out = []
        for m in FIT_METRICS:
            for (n, k), values in sorted(self.tables.get(m, {}).items()):
                v = np.asarray(values, dtype=float)
                ok = v[np.isfinite(v)]
                out.append({"N": n, "K": k, "metric": m, "mean": float(ok.mean()) if ok.size else None,
                            "sd": float(ok.std(ddof=1)) if ok.size > 1 else None, "seeds": int(ok.size),
                            "diverged_seeds": int(v.size - ok.size), "in_fit": (n, k) in fitted})
        return out

    def _companion_dict(self) -> dict[str, Any] | None:
        d = self.decision
        if d is None or d.companion is None:
            return None
        return {"what": "exact averaging (W = 11^T/N) on the same instances and seed indices",
                "rule": self.study.companion, "fit": d.companion.as_dict(),
                "decomposition": None if d.decomposition is None else d.decomposition.as_dict()}


def regime_starts(table: Mapping[tuple[int, int], np.ndarray], *, margin: float = DEFAULT_MARGIN,
                  target: float = -0.5) -> dict[int, dict[str, Any]]:
    """Per N, where the local log-log slope of the seed means settles within ``margin`` of ``target``.

    Returns ``{N: {"start", "reached", "slopes", "needs"}}``: ``start`` is the
    smallest K from which every local slope (between consecutive K of that N)
    lies within the margin; ``reached`` says the last two do (one slope alone
    could be a curve passing through on its way elsewhere); when it is not
    reached, ``start`` is the second-largest K (the cells nearest the regime) and
    ``needs`` extrapolates, from the trend of the local slopes in log K, the K
    at which the slope would enter the margin (None when the trend does not
    point there; the next doubling when the last slope is already inside).
    ``to_target`` extrapolates the same trend to the target itself (None when
    the trend does not point there): the margin's edge is not the rate, and a
    fit over slopes that sit at the edge has an e_K CI that straddles it.
    """
    out = {}
    for n in sorted({n for n, _ in table}):
        # cells that lost every seed to divergence have no mean and no place on the curve
        ks = sorted(k for m, k in table if m == n and np.isfinite(table[(m, k)]).any())
        if not ks:
            out[n] = {"start": None, "reached": False, "slopes": [], "K": [], "needs": None, "to_target": None}
            continue
        with np.errstate(all="ignore"):
            y = np.array([seed_mean(np.log(table[(n, k)])) for k in ks])
        x = np.log(np.array(ks, dtype=float))
        slopes = np.diff(y) / np.diff(x) if len(ks) > 1 else np.array([])
        within = np.abs(slopes - target) <= margin
        reached = bool(within.size >= 2 and within[-1] and within[-2])
        start = ks[-2] if len(ks) > 1 else ks[-1]
        if reached:
            j = len(within) - 1
            while j > 0 and within[j - 1]:
                j -= 1
            start = ks[j]
        needs = to_target = None
        if not reached and within.size and within[-1]:
            needs = float(2 * ks[-1])  # the last slope is inside: one more doubling can confirm it
        if len(slopes) >= 2:
            mid = (x[1:] + x[:-1]) / 2
            b, a = np.polyfit(mid[-3:], slopes[-3:], 1)

            def trend_reaches(level: float, a=a, b=b, slopes=slopes, ks=ks) -> float | None:
                log_k = (level - a) / b if b != 0 else np.inf
                # only a trend that points at the level, within 1e12 rounds, is an estimate worth stating
                if np.sign(level - slopes[-1]) == np.sign(b) and log_k < np.log(1e12):
                    return float(max(np.exp(log_k), ks[-1]))
                return None

            if not reached and needs is None:
                needs = trend_reaches(target + margin if slopes[-1] > target else target - margin)
            if abs(slopes[-1] - target) > margin / 2:
                to_target = trend_reaches(target)
        out[n] = {"start": int(start), "reached": reached, "slopes": [float(v) for v in slopes],
                  "K": ks, "needs": needs, "to_target": to_target}
    return out


def _excluded_cells(study: SpeedupStudy, tables: Mapping[str, Mapping], keys: Sequence[tuple[int, int]],
                    predicted: Mapping[int, PredictedTransient], regime: Mapping[int, dict]) -> list[dict]:
    """Transient cells: measured from the headline metric, plus K < factor x K0 when asked."""
    excluded = []
    if study.regime == "theory":
        for n, k in keys:
            if regime[n]["start"] is not None and k < regime[n]["start"]:
                excluded.append({"N": n, "K": k, "why": (
                    f"before the asymptotic regime of N = {n}: local slopes of {study.metric} settle within "
                    f"{study.margin:g} of -1/2 from K = {regime[n]['start']}" if regime[n]["reached"] else
                    f"N = {n} never reached the regime on this grid; only its two largest K are fitted")})
    elif study.transient_tol > 0:
        excluded += transient_cells(tables[study.metric], tol=study.transient_tol)
    for n, k in keys:
        k0 = predicted[n].K0
        if (k0 is not None and study.transient_factor > 0 and k < study.transient_factor * k0
                and not any(e["N"] == n and e["K"] == k for e in excluded)):
            excluded.append({"N": n, "K": k,
                             "why": f"K = {k} < {study.transient_factor:g} x predicted K0 = {k0:.3g}"})
    return excluded


def _diagnostics(records: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, float]]:
    """Per N, at its largest K: the mean final ||theta_i|| and ||phibar||_F over finished seeds."""
    out: dict[int, dict[str, float]] = {}
    kmax: dict[int, int] = {}
    for r in records:
        n, k = int(r["params"]["N"]), int(r["params"]["K"])
        kmax[n] = max(kmax.get(n, 0), k)
    for n, k in kmax.items():
        norms = [r["result"]["norms"] for r in records
                 if int(r["params"]["N"]) == n and int(r["params"]["K"]) == k and not r["result"]["diverged"]]
        out[n] = {"K": k, "theta": float(np.mean([x["theta"] for x in norms])) if norms else float("nan"),
                  "phibar": float(np.mean([x["phibar"] for x in norms])) if norms else float("nan")}
    return dict(sorted(out.items()))


def _ground_truth(records: Sequence[Mapping[str, Any]], keys: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Exponents of the scale-invariant ground-truth measures at round K (a cross-check of R, H, G)."""
    out = {}
    for name in ("subspace", "excess_risk"):
        table: dict[tuple, dict[int, float]] = {}
        for r in records:
            res = r["result"]
            value = float("nan") if res["diverged"] else float(res["final"][name])
            table.setdefault((int(r["params"]["N"]), int(r["params"]["K"])), {})[int(r["seed"])] = value
        complete = [k for k in keys if k in table and np.isfinite(list(table[k].values())).all()
                    and min(table[k].values()) > 0]
        try:
            fit = fit_rate([n for n, _ in complete], [k for _, k in complete],
                           np.array([[table[k][j] for j in sorted(table[k])] for k in complete]))
            out[name] = {**fit.as_dict(), "what": f"final {name} at round K"}
        except ValueError as exc:
            out[name] = {"error": str(exc)}
    return out


def analyse_speedup(study: SpeedupStudy, records: Sequence[Mapping[str, Any]], *,
                    rho: Mapping[int, float], predicted: Mapping[int, PredictedTransient] | None = None,
                    sweep: Mapping[str, Any] | None = None, level: float = FIXED_LEVEL,
                    companion_records: Sequence[Mapping[str, Any]] | None = None) -> SpeedupResult:
    """Fits, verdicts, transient trimming and K_eps of a finished speedup sweep (no simulation).

    ``level`` is the level of every interval (a look's level under a
    group-sequential design). With ``companion_records`` (the exact-averaging
    companion on the same seeds), the headline verdict is read by
    :func:`~deprl_theory.experiments.decision.rate_decision`; ``predicted``
    (the template's K0 per N) is optional and only reported.
    """
    if not records:
        raise ValueError("no cell finished; nothing to analyse")
    predicted = dict(predicted or {})
    tables = {m: metric_table(records, m) for m in FIT_METRICS}
    keys = sorted(tables["G"])
    regime = regime_starts(tables[study.metric], margin=study.margin)
    excluded = _excluded_cells(study, tables, keys, predicted, regime)
    fit_keys = [key for key in keys if not any(e["N"] == key[0] and e["K"] == key[1] for e in excluded)]
    note = ""
    if len({n for n, _ in fit_keys}) < 2 or len({k for _, k in fit_keys}) < 2:
        note = ("too few cells past the transient to fit; fitting all cells "
                "(the consensus term may bias the exponents)")
        fit_keys = keys
    fits = {m: fit_metric(m, tables[m], fit_keys, keys, margin=study.margin, level=level, interval=study.interval)
            for m in FIT_METRICS}
    decision = rate_decision(fits[study.metric], tables[study.metric], None, margin=study.margin, level=level,
                             transient_tol=study.transient_tol, interval=study.interval)
    transient = {}
    for n in sorted(rho):
        k0 = predicted[n].K0 if n in predicted else None
        transient[n] = {**(predicted[n].as_dict() if n in predicted else {"K0": None, "how": "not predicted"}),
                        "grid_past_transient": None if k0 is None else bool(min(study.rounds_of(n)) >= k0),
                        "measured_transient_K": [e["K"] for e in excluded if e["N"] == n],
                        "rho": rho[n], "spectral_gap": 1.0 - rho[n]}
    steps = step_table(records)
    result = SpeedupResult(
        study=study, fits=fits, tables=tables, k_eps={m: rounds_to_accuracy(tables[m]) for m in FIT_METRICS},
        transient=transient, excluded=excluded, fit_cells=fit_keys, note=note, diverged=diverged_runs(records),
        step_sizes=[{"N": s[0], "K": s[1], "alpha": s[2], "beta": s[3]} for s in steps],
        step_rule=steps[0][4] if steps else None, sweep=dict(sweep or {}), records=list(records),
        diagnostics=_diagnostics(records), ground_truth=_ground_truth(records, fit_keys), regime=regime,
        decision=decision, level=level,
    )
    return with_companion(result, companion_records) if companion_records else result


def graph_mixes(study: SpeedupStudy, rho: Mapping[int, float]) -> bool:
    """Whether exact averaging can differ from the study's runs: an algorithm that gossips, and rho > 0 at some N."""
    return study.algorithm in ("deprl", "dpsgd") and max(rho.values()) > 1e-12


def with_companion(result: SpeedupResult, companion_records: Sequence[Mapping[str, Any]]) -> SpeedupResult:
    """The result with its headline read against the exact-averaging companion (the grid's fits are kept)."""
    s = result.study
    decision = rate_decision(result.headline, result.tables[s.metric], metric_table(companion_records, s.metric),
                             margin=s.margin, level=result.level, transient_tol=s.transient_tol, interval=s.interval)
    return replace(result, decision=decision, companion_records=list(companion_records))


def _sweep(study: SpeedupStudy, options: SweepOptions, cells: list[dict], label: str = "runs"
           ) -> tuple[Any, dict[str, Any]]:
    start = time.monotonic()
    sweep = run_sweep(simulate_cell, cells, list(range(study.seeds)), base_seed=study.base_seed,
                      task_version=TASK_VERSION, cost=cell_cost, validate=validate_result,
                      label=f"{label}, {study.seeds} seeds", **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    info = {**sweep.info(), "sweep_seconds": time.monotonic() - start,
            "failed_cells": [{"N": f["params"]["N"], "K": f["params"]["K"], "error": f["error"]}
                             for f in sweep.failures]}
    return sweep, info


def _sweep_once(study: SpeedupStudy, options: SweepOptions, rho, predicted, *,
                level: float = FIXED_LEVEL) -> tuple[SpeedupResult, Any]:
    """Sweep the graph at ``study.seeds`` seeds, analyse at ``level``; add the companion when the rule asks."""
    sweep, info = _sweep(study, options, study.cells())
    result = analyse_speedup(study, sweep.records, rho=rho, predicted=predicted, sweep=info, level=level)
    if companion_needed(study.companion, graph_mixes(study, rho), result.headline.verdict) and sweep.records:
        comp, comp_info = _sweep(study, options, study.companion_cells(), "exact averaging")
        info = {**info, "companion": {k: comp_info[k] for k in ("computed", "cached", "sweep_seconds")
                                      if k in comp_info}}
        for key in ("computed", "cached"):
            if key in comp_info and key in info:
                info[key] = info[key] + comp_info[key]
        result = replace(with_companion(result, comp.records), sweep=info)
    return result, sweep


def _extend_rounds(study: SpeedupStudy, result: SpeedupResult, max_rounds: int, deadline: float,
                   workers: int = 1) -> tuple[SpeedupStudy | None, str]:
    """The study with the next K (twice the largest) for every N not yet in the regime, or None and why not.

    When every N's local slopes sit within the margin but the fitted e_K CI
    does not (slopes at the margin's edge, creeping towards -1/2), the N whose
    trend still points at -1/2 beyond the grid keep growing while the budget
    allows: the budget the user granted is spent getting closer to the rate.
    """
    pending = [n for n in study.n if not result.regime[n]["reached"]]
    prefix = ""
    if not pending:
        done = "every N reached the asymptotic regime"
        if _e_K_at_rate(result):
            return None, done
        pending = [n for n in study.n if result.regime[n].get("to_target") is not None]
        if not pending:
            return None, f"{done}; the fitted e_K CI is not within the margin and no trend points further"
        prefix = f"{done}, but the fitted e_K CI is not within the margin; "
    grow = {n: 2 * study.rounds_of(n)[-1] for n in pending if 2 * study.rounds_of(n)[-1] <= max_rounds}
    if not grow:
        return None, f"{prefix}the next K would pass the largest K allowed, {max_rounds}"
    # a cell's cost is linear in K: the next cells cost about twice the largest ones of their N did
    seconds = {(int(r["params"]["N"]), int(r["params"]["K"])): float(r["result"].get("seconds", 0.0))
               for r in result.records}
    cells = [2 * study.seeds * seconds.get((n, study.rounds_of(n)[-1]), 0.0) for n in grow]
    # the cells run side by side on ``workers`` processes: wall time is the larger of the busiest
    # worker's share and the longest single cell (a cell is one task)
    expect = max(sum(cells) / max(1, workers), max(cells))
    if time.monotonic() + expect > deadline:
        return None, f"{prefix}the next K (about {expect:.0f} s of runs) would pass the time budget"
    extra = {n: tuple(study.extra_rounds.get(n, ())) + ((grow[n],) if n in grow else ()) for n in study.n}
    return replace(study, extra_rounds=extra), ""


def _local_workers(options: SweepOptions) -> int:
    """Processes the sweep runs cells on (1 when it is not known: serial, or a Dask cluster)."""
    if options.executor != "processes":
        return 1
    return max(1, int(options.jobs or os.cpu_count() or 1))


def _e_K_at_rate(result: SpeedupResult) -> bool:
    """Whether the headline's e_K CI lies within the margin of -1/2 (True when there is no fit to judge)."""
    fit, m = result.headline.fit, result.study.margin
    return fit is None or (-0.5 - m <= fit.e_K_ci.low and fit.e_K_ci.high <= -0.5 + m)


def _flag_pre_asymptotic(result: SpeedupResult) -> SpeedupResult:
    """With ``--rounds auto``: say so in the headline verdict when the fitted e_K CI is not within the margin of -1/2.

    The regime test accepts local slopes at the margin's edge (-0.4); a fit
    over such cells has an e_K CI that straddles the edge, and its s then
    describes the grid, not the rate. The verdict word is kept (the data say
    what they say); its reason names the CI and the K at which the trend of
    each N's local slopes reaches -1/2 (``regime[N]["to_target"]``).
    """
    if _e_K_at_rate(result):
        return result
    head, m = result.headline, result.study.margin
    lo, hi = head.fit.e_K_ci
    est = {n: r.get("to_target") for n, r in result.regime.items()}
    known = {n: k for n, k in est.items() if k is not None}
    where = ("; the trend of the local slopes reaches -1/2 near K = "
             + ", ".join(f"{k:.2g} (N = {n})" for n, k in sorted(known.items())) if known else
             "; the trend of the local slopes gives no estimate of where it reaches -1/2")
    note = (f"pre-asymptotic: the CI of e_K [{lo:.3f}, {hi:.3f}] is not within {m:g} of -1/2, "
            f"so s describes this grid, not the rate{where}")
    verdict = replace(head.verdict, reason=f"{head.verdict.reason}; {note}", asymptotic=False)
    fits = {**result.fits, result.study.metric: replace(head, verdict=verdict)}
    stopping = {**result.stopping, "pre_asymptotic": note}
    decision = result.decision
    if decision is not None:
        rate = decision.verdict
        decision = replace(decision, grid=fits[result.study.metric],
                           verdict=replace(rate, reason=f"{rate.reason}; {note}", asymptotic=False))
    return replace(result, fits=fits, stopping=stopping, decision=decision)


class _Tally:
    """Runs computed by one call of :func:`run_speedup` across its sweeps (looks, grown grids, companions).

    A sweep of a later look reads the runs of earlier looks back from the
    cache; those were computed by this call, not found from an earlier one.
    ``applied`` sets ``computed`` (runs this call simulated, at any look or
    grid), ``cached`` (the analysed runs an earlier call had left in the cache)
    and ``analysed`` (the runs of the final analysis, from either).
    """

    def __init__(self) -> None:
        self.computed: set[tuple[str, int]] = set()

    @staticmethod
    def _keys(result: SpeedupResult):
        from ..sweep import canonical_json

        for r in [*result.records, *result.companion_records]:
            yield (canonical_json(r["params"]), int(r["seed"])), bool(r.get("cached"))

    def add(self, result: SpeedupResult) -> None:
        self.computed.update(key for key, cached in self._keys(result) if not cached)

    def applied(self, result: SpeedupResult) -> SpeedupResult:
        keys = [key for key, _ in self._keys(result)]
        earlier = sum(key not in self.computed for key in keys)
        return replace(result, sweep={**result.sweep, "computed": len(self.computed), "cached": earlier,
                                      "analysed": len(keys)})


def run_speedup(study: SpeedupStudy, options: SweepOptions = SweepOptions(), *, auto_rounds: bool = False,
                max_rounds: int = 256_000, budget: float = 600.0,
                stopping: Mapping[str, Any] | None = None) -> tuple[SpeedupResult, Any]:
    """Run the sweep of ``study`` (cached) and analyse it; return the result and the raw SweepResult.

    Failed cells are reported in ``result.sweep["failures"]`` and the analysis
    goes on with what finished. With ``study.looks``, a group-sequential
    design adds seeds at the planned looks only, reads every interval at its
    look's level and stops at the first decisive rate verdict
    (``result.sequential`` says where and why); the cache keeps the runs of
    earlier looks. With ``auto_rounds``, the K grid is extended first, at the
    first look's seeds. ``stopping`` is what such a search reached, for a
    study whose grid already holds it (:func:`~deprl_theory.experiments.load`
    passes it): the fit is flagged as the search flagged it, without searching.

    With ``options.out``, the study is recorded in ``out/speedup.study.json``
    when it finishes, so that :func:`~deprl_theory.experiments.load_speedup`
    can re-analyse it from the cache; with ``options.compute`` False nothing
    is simulated (a missing run raises :class:`~deprl_theory.sweep.CacheMiss`).
    """
    rho = study.mixing_rates()
    first = {c["N"]: c for c in reversed(study.cells())}
    predicted = {n: predict_transient(first[n], rho[n], base_seed=study.base_seed) for n in study.n}
    start = time.monotonic()
    design = study.sequential_design()
    if design is not None:
        study = replace(study, seeds=design.looks[0])
    auto_stop: dict[str, Any] = dict(stopping or {})
    tally = _Tally()  # runs computed by this call, apart from those an earlier call left in the cache
    if design is None or auto_rounds:
        result, sweep = _sweep_once(study, options, rho, predicted)
        tally.add(result)
    if auto_rounds:
        workers = _local_workers(options)
        while True:
            grown, why = _extend_rounds(study, result, max_rounds, start + budget, workers)
            if grown is None:
                break
            study = grown
            result, sweep = _sweep_once(study, options, rho, predicted)
            tally.add(result)
        auto_stop = {"rounds": {str(n): list(study.rounds_of(n)) for n in study.n}, "why": why}
    if design is None:
        if auto_stop:
            result = _flag_pre_asymptotic(replace(result, stopping=auto_stop))
        write_study(options, study, {"stopping": auto_stop} if auto_stop else None)
        return tally.applied(result), sweep
    sweeps = {}

    def analyse(seeds: int, level: float) -> SpeedupResult:
        at = replace(study, seeds=seeds)
        res, sweeps[seeds] = _sweep_once(at, options, rho, predicted, level=level)
        tally.add(res)  # every look: runs computed at any look; from the cache, only what an earlier call left
        res = tally.applied(res)
        if auto_stop:  # each look's analysis keeps what --rounds auto found and says
            res = _flag_pre_asymptotic(replace(res, stopping=auto_stop))
        return res

    def futile(res: SpeedupResult) -> str | None:
        if res.headline.fit is None:
            return f"no fit of {study.metric} ({res.headline.verdict.reason}); more seeds cannot give one"
        return None

    outcome = run_sequential(design, analyse, lambda res: res.verdict, futile=futile)
    write_study(options, study, {"stopping": auto_stop} if auto_stop else None)
    return replace(outcome.result, sequential=outcome.as_dict()), sweeps[outcome.seeds]
