"""Does convergence improve linearly with the number of workers? The speedup experiment.

For each N of a list, a grid of rounds K and S seeds, the algorithm runs with
the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau); the
time-averaged metrics Rbar, Hbar, Gbar are fitted as
``log Mbar = a0 + e_N log N + e_K log K`` (bootstrap over seeds), and the
speedup exponent ``s = e_N / e_K`` gives the verdict (THEORY section 6).

:class:`SpeedupStudy` says what to run; :func:`run_speedup` runs the sweep and
calls :func:`analyse_speedup`, which only reads records and can be tested
without simulating anything. Everything comes back as a :class:`SpeedupResult`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..rates import RateFit, Verdict, fit_rate, speedup_verdict
from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, checked_rho, simulate_cell, validate_result
from .records import diverged_runs, metric_table, step_table
from .transient import PredictedTransient, predict_transient, transient_cells

__all__ = ["FIT_METRICS", "DEFAULT_ROUNDS", "QUICK_ROUNDS", "SpeedupStudy", "MetricFit", "KEps", "SpeedupResult",
           "run_speedup", "analyse_speedup", "rounds_to_accuracy"]

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
        Seeds per cell.
    base_seed : int
    cell : mapping
        Cell parameters shared by every cell (algorithm, topology, problem, ...;
        see :func:`~deprl_theory.experiments.cell_params`).
    metric : {"R", "H", "G"}
        Metric of the headline verdict.
    boot : int
        Bootstrap replicates.
    transient_tol : float
        Measured transient: drop the smallest K of an N while its local slope
        differs from that N's tail slope by more than this (0 keeps every cell).
    transient_factor : float
        Also drop cells with K < factor x the template's predicted K0 (0: report only).
    """

    n: tuple[int, ...] = (4, 8, 16, 32)
    rounds: tuple[int, ...] = DEFAULT_ROUNDS
    seeds: int = 8
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "R"
    boot: int = 2000
    transient_tol: float = 0.15
    transient_factor: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", tuple(sorted({int(n) for n in self.n})))
        object.__setattr__(self, "rounds", tuple(sorted({int(k) for k in self.rounds})))
        object.__setattr__(self, "cell", dict(self.cell))
        if any(n < 2 for n in self.n):
            raise ValueError(f"every worker count must be >= 2, got {min(self.n)}")
        if len(self.n) < 3:
            raise ValueError(f"need at least three distinct worker counts to fit a rate, got {list(self.n)}")
        if any(k < 1 for k in self.rounds):
            raise ValueError(f"every K must be a positive integer, got {min(self.rounds)}")
        if len(self.rounds) < 2:
            raise ValueError("need at least two distinct K to fit the K exponent")
        if self.seeds < 2:
            raise ValueError(f"need at least 2 seeds to bootstrap, got {self.seeds}")
        if self.metric not in FIT_METRICS:
            raise ValueError(f"metric must be one of {', '.join(FIT_METRICS)}, got {self.metric!r}")
        cell_params(**self.cell)  # unknown cell parameters fail here

    def cells(self) -> list[dict]:
        """Every cell of the grid, N-major."""
        return [cell_params(N=n, K=k, **self.cell) for n in self.n for k in self.rounds]

    @property
    def algorithm(self) -> str:
        return cell_params(**self.cell)["algorithm"]

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
        out = {"n": list(self.n), "rounds": list(self.rounds), "seeds": self.seeds, "base_seed": self.base_seed}
        for key in ("problem", "topology", "weights", "gap", "algorithm", "tau", "c", "head_rule", "head_step",
                    "batch", "dim", "rank", "noise", "heterogeneity", "activation"):
            out[key] = p[key]
        out["bootstrap"] = {"replicates": self.boot, "level": 0.95, "over": "seeds"}
        return out


@dataclass(frozen=True)
class MetricFit:
    """The fit of one metric and the verdict read from it; ``fit`` is None when no fit was possible."""

    metric: str
    fit: RateFit | None
    verdict: Verdict
    dropped: tuple[tuple[int, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        if self.fit is None:
            none = {"value": None, "ci": [None, None]}
            out: dict[str, Any] = {"N": dict(none), "K": dict(none), "speedup": dict(none)}
        else:
            out = self.fit.as_dict()
        out.update(self.verdict.as_dict())
        out["cells_dropped_all_diverged"] = [list(k) for k in self.dropped]
        return out


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
            m = np.array([np.nanmean(table[(n, k)]) if np.isfinite(table[(n, k)]).any() else np.nan for k in ks])
            ok = np.isfinite(m) & (m > 0)
            if ok.sum() >= 2:
                b, a = np.polyfit(np.log(ks[ok]), np.log(m[ok]), 1)
                per_n[n] = (a, b, ks[ok].min(), ks[ok].max())
        if eps is None:
            allm = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in table.values()])
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

    @property
    def headline(self) -> MetricFit:
        return self.fits[self.study.metric]

    @property
    def verdict(self) -> str:
        return self.headline.verdict.word

    def as_dict(self) -> dict[str, Any]:
        """The JSON summary (the keys of ``python -m verification.speedup --json``)."""
        metrics = {m: f.as_dict() for m, f in self.fits.items()}
        head = metrics[self.study.metric]
        return {
            "question": "does convergence improve linearly with the number of workers N?",
            "verdict": head["verdict"],
            "metric": self.study.metric,
            "reason": head.get("reason", ""),
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
        }


def _excluded_cells(study: SpeedupStudy, tables: Mapping[str, Mapping], keys: Sequence[tuple[int, int]],
                    predicted: Mapping[int, PredictedTransient]) -> list[dict]:
    """Transient cells: measured from the headline metric, plus K < factor x K0 when asked."""
    excluded = []
    if study.transient_tol > 0:
        excluded += transient_cells(tables[study.metric], tol=study.transient_tol)
    for n, k in keys:
        k0 = predicted[n].K0
        if (k0 is not None and study.transient_factor > 0 and k < study.transient_factor * k0
                and not any(e["N"] == n and e["K"] == k for e in excluded)):
            excluded.append({"N": n, "K": k,
                             "why": f"K = {k} < {study.transient_factor:g} x predicted K0 = {k0:.3g}"})
    return excluded


def _fit_metric(study: SpeedupStudy, metric: str, table: Mapping, fit_keys: Sequence[tuple[int, int]]) -> MetricFit:
    usable = [key for key in fit_keys if np.isfinite(table[key]).any()]
    dropped = tuple(key for key in fit_keys if key not in usable)
    vals = np.array([table[key] for key in usable])
    try:
        fit = fit_rate([n for n, _ in usable], [k for _, k in usable], vals, n_boot=study.boot,
                       seed=study.base_seed)
    except ValueError as exc:
        why = f"fit impossible: {exc}"
        if dropped:
            why += f"; {len(dropped)} of {len(fit_keys)} cells lost every seed to divergence (see 'diverged')"
        return MetricFit(metric, None, Verdict("inconclusive", why), dropped)
    return MetricFit(metric, fit, speedup_verdict(fit), dropped)


def analyse_speedup(study: SpeedupStudy, records: Sequence[Mapping[str, Any]], *,
                    rho: Mapping[int, float], predicted: Mapping[int, PredictedTransient],
                    sweep: Mapping[str, Any] | None = None) -> SpeedupResult:
    """Fits, verdicts, transient trimming and K_eps of a finished speedup sweep (no simulation)."""
    if not records:
        raise ValueError("no cell finished; nothing to analyse")
    tables = {m: metric_table(records, m) for m in FIT_METRICS}
    keys = sorted(tables["G"])
    excluded = _excluded_cells(study, tables, keys, predicted)
    fit_keys = [key for key in keys if not any(e["N"] == key[0] and e["K"] == key[1] for e in excluded)]
    note = ""
    if len({n for n, _ in fit_keys}) < 2 or len({k for _, k in fit_keys}) < 2:
        note = ("too few cells past the transient to fit; fitting all cells "
                "(the consensus term may bias the exponents)")
        fit_keys = keys
    fits = {m: _fit_metric(study, m, tables[m], fit_keys) for m in FIT_METRICS}
    transient = {}
    for n in sorted(predicted):
        k0 = predicted[n].K0
        transient[n] = {**predicted[n].as_dict(),
                        "grid_past_transient": None if k0 is None else bool(min(study.rounds) >= k0),
                        "measured_transient_K": [e["K"] for e in excluded if e["N"] == n],
                        "rho": rho[n], "spectral_gap": 1.0 - rho[n]}
    steps = step_table(records)
    return SpeedupResult(
        study=study, fits=fits, tables=tables, k_eps={m: rounds_to_accuracy(tables[m]) for m in FIT_METRICS},
        transient=transient, excluded=excluded, fit_cells=fit_keys, note=note, diverged=diverged_runs(records),
        step_sizes=[{"N": s[0], "K": s[1], "alpha": s[2], "beta": s[3]} for s in steps],
        step_rule=steps[0][4] if steps else None, sweep=dict(sweep or {}), records=list(records),
    )


def run_speedup(study: SpeedupStudy, options: SweepOptions = SweepOptions()) -> tuple[SpeedupResult, Any]:
    """Run the sweep of ``study`` (cached) and analyse it; return the result and the raw SweepResult.

    Failed cells are reported in ``result.sweep["failures"]`` and the analysis
    goes on with what finished.
    """
    rho = study.mixing_rates()
    first = {c["N"]: c for c in reversed(study.cells())}
    predicted = {n: predict_transient(first[n], rho[n], base_seed=study.base_seed) for n in study.n}
    start = time.monotonic()
    sweep = run_sweep(simulate_cell, study.cells(), list(range(study.seeds)), base_seed=study.base_seed,
                      task_version=TASK_VERSION, cost=cell_cost, validate=validate_result, **options.kwargs())
    info = {**sweep.info(), "sweep_seconds": time.monotonic() - start,
            "failed_cells": [{"N": f["params"]["N"], "K": f["params"]["K"], "error": f["error"]}
                             for f in sweep.failures]}
    return analyse_speedup(study, sweep.records, rho=rho, predicted=predicted, sweep=info), sweep
