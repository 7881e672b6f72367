"""What delays the asymptotic regime: the step constant, the time average's early plateau, the floor after it.

Every term of the bound decays as K^(-1/2) or faster, so a local slope of Gbar in
K flatter than -1/2 means the grid is not yet where the theorem describes the
rate. This experiment measures the candidates, each as a plain cached sweep of
the speedup cells (nothing about the metric the theorem bounds changes):

* **The grid** (:class:`RegimeStudy` ``c`` x ``head_rules`` x ``n`` x ``rounds``):
  per cell, Gbar (the theorem's average over all K rounds) and, as a diagnostic
  only, the average of G over the second half of the rounds, read from the
  run's trace. Their local slopes in K, their ratio, and the final scales
  ||theta_i|| and ||phibar|| (the rescaling drift under a = 1/N). A tail average
  far below the full one says the full average still carries the early plateau.
* **The floor** (``floor_betas`` at a fixed flow time ``floor_time`` = beta K):
  a run at a constant step beta, its mean G over t in (T/2, T] against beta.
  With beta = c sqrt(N/K), a floor proportional to beta is the K^(-1/2) of the
  bound; its local exponent p in beta (paired over the same instances, with a
  t interval) says how far the grid's steps are from that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy import stats

from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, check_cells, simulate_cell, validate_result
from .records import seed_mean
from .study_file import write_study

__all__ = ["RegimeStudy", "RegimeResult", "run_regime", "analyse_regime", "tail_average"]


@dataclass(frozen=True)
class RegimeStudy:
    """The cells of both parts; ``cell`` holds the other cell parameters (problem, graph, ...)."""

    #: the kind under which the study is stored (``regime.study.json``)
    KIND: ClassVar[str] = "regime"

    n: tuple[int, ...] = (4, 16)
    rounds: tuple[int, ...] = (500, 1000, 2000, 4000, 8000)
    c: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    head_rules: tuple[str, ...] = ("1/N", "1/sqrt(N)")
    seeds: int = 4
    floor_betas: tuple[float, ...] = (0.09, 0.045, 0.0225, 0.01125)
    floor_time: float = 256.0
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=lambda: {"problem": "nonlinear", "topology": "exponential"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", tuple(sorted({int(n) for n in self.n})))
        object.__setattr__(self, "rounds", tuple(sorted({int(k) for k in self.rounds})))
        object.__setattr__(self, "c", tuple(float(c) for c in self.c))
        object.__setattr__(self, "head_rules", tuple(str(a) for a in self.head_rules))
        object.__setattr__(self, "floor_betas", tuple(sorted({float(b) for b in self.floor_betas}, reverse=True)))
        object.__setattr__(self, "cell", {k: v for k, v in dict(self.cell).items() if k not in ("c", "head_rule")})
        if len(self.rounds) < 2:
            raise ValueError(f"the grid needs at least two K for a local slope, got {list(self.rounds)}")
        if self.seeds < 2:
            raise ValueError(f"need at least 2 seeds for an interval, got {self.seeds}")
        if not (np.isfinite(self.floor_time) and self.floor_time > 0):
            raise ValueError(f"floor_time must be a positive flow time, got {self.floor_time}")
        if any(not (np.isfinite(b) and b > 0) for b in self.floor_betas):
            raise ValueError(f"floor steps must be positive, got {list(self.floor_betas)}")
        if 0 < len(self.floor_betas) < 2:
            raise ValueError("the floor needs at least two steps for an exponent (or none to skip it)")
        for c in self.c:
            if not (np.isfinite(c) and c > 0):
                raise ValueError(f"step constants c must be positive, got {c}")
        self.cells()  # every parameter checked before anything runs
        self.check()  # graphs and problems are built and checked here, with the CLI's checks

    def floor_cell(self, n: int, beta: float, rule: str) -> dict:
        """A constant step ``beta`` for flow time T: K = T / beta rounds, c = beta sqrt(K / N)."""
        k = max(2, int(round(self.floor_time / beta)))
        return cell_params(N=n, K=k, c=beta * float(np.sqrt(k / n)), head_rule=rule, **self.cell)

    def cells(self) -> list[dict]:
        grid = [cell_params(N=n, K=k, c=c, head_rule=rule, **self.cell)
                for c in self.c for rule in self.head_rules for n in self.n for k in self.rounds]
        floor = [self.floor_cell(n, b, rule) for rule in self.head_rules for n in self.n for b in self.floor_betas]
        unique = {tuple(sorted(p.items(), key=lambda kv: kv[0])): p for p in grid + floor}
        return list(unique.values())

    def check(self) -> None:
        check_cells(self.cells(), self.base_seed)

    def settings(self) -> dict[str, Any]:
        return {"n": list(self.n), "rounds": list(self.rounds), "c": list(self.c), "head_rules": list(self.head_rules),
                "seeds": self.seeds, "floor_betas": list(self.floor_betas), "floor_time": self.floor_time,
                "base_seed": self.base_seed, "cell": dict(self.cell)}


@dataclass(frozen=True, eq=False)
class RegimeResult:
    """``grid[(c, rule)][N]`` and ``floor[rule][N]``, each a dict of plain numbers (see :func:`analyse_regime`)."""

    study: RegimeStudy
    grid: dict[tuple[float, str], dict[int, dict[str, Any]]]
    floor: dict[str, dict[int, dict[str, Any]]]
    sweep: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"settings": self.study.settings(),
                "grid": [{"c": c, "head_rule": rule, "by_N": {str(n): v for n, v in by_n.items()}}
                         for (c, rule), by_n in self.grid.items()],
                "floor": [{"head_rule": rule, "by_N": {str(n): v for n, v in by_n.items()}}
                          for rule, by_n in self.floor.items()],
                "sweep": self.sweep}


def tail_average(result: Mapping[str, Any], metric: str = "G", start: float = 0.5) -> float:
    """Mean of ``metric`` over the trace points in the last ``1 - start`` of the rounds (NaN if diverged).

    A diagnostic only: the theorem bounds the average over all rounds.
    """
    if result["diverged"]:
        return float("nan")
    rounds = np.asarray(result["trace"]["round"], dtype=float)
    values = np.asarray(result["trace"][metric], dtype=float)
    last = rounds.max()
    keep = (rounds >= start * last) & np.isfinite(values)
    return float(values[keep].mean()) if keep.any() else float("nan")


def _by_cell(records: Sequence[Mapping[str, Any]], seeds: int) -> dict[tuple, dict[str, np.ndarray]]:
    """(c, head_rule, N, K) -> per seed: full average, tail average, norms (NaN where diverged or missing)."""
    out: dict[tuple, dict[str, np.ndarray]] = {}
    for rec in records:
        p, res, s = rec["params"], rec["result"], int(rec["seed"])
        key = (float(p["c"]), str(p["head_rule"]), int(p["N"]), int(p["K"]))
        row = out.setdefault(key, {m: np.full(seeds, np.nan) for m in ("full", "tail", "theta", "phibar", "beta")})
        if s >= seeds:
            continue
        row["beta"][s] = float(res["beta"])
        if not res["diverged"]:
            row["full"][s] = float(res["averages"]["G"])
            row["tail"][s] = tail_average(res)
            row["theta"][s] = float(res["norms"]["theta"])
            row["phibar"][s] = float(res["norms"]["phibar"])
    return out


def _local_slopes(x: Sequence[float], y: np.ndarray) -> list[float]:
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    with np.errstate(invalid="ignore"):
        return [float(v) for v in np.diff(ly) / np.diff(lx)]


def _paired_exponent(x0: float, x1: float, y0: np.ndarray, y1: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Exponent of y in x between two steps, per seed (same instances), with a t interval."""
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = (np.log(y1) - np.log(y0)) / (np.log(x1) - np.log(x0))
    per_seed = per_seed[np.isfinite(per_seed)]
    if per_seed.size < 2:
        return {"value": float("nan"), "ci": [float("nan"), float("nan")], "seeds": int(per_seed.size)}
    m, se = float(per_seed.mean()), float(per_seed.std(ddof=1) / np.sqrt(per_seed.size))
    t = float(stats.t.ppf((1 + level) / 2, per_seed.size - 1))
    return {"value": m, "ci": [m - t * se, m + t * se], "seeds": int(per_seed.size)}


def analyse_regime(study: RegimeStudy, records: Sequence[Mapping[str, Any]],
                   sweep: Mapping[str, Any] | None = None) -> RegimeResult:
    """Read the sweep records of :func:`run_regime` (no simulation)."""
    cells = _by_cell(records, study.seeds)
    grid: dict[tuple[float, str], dict[int, dict[str, Any]]] = {}
    for c in study.c:
        for rule in study.head_rules:
            for n in study.n:
                rows = [cells.get((c, rule, n, k)) for k in study.rounds]
                if any(r is None for r in rows):
                    continue
                full = np.array([seed_mean(r["full"]) for r in rows])
                tail = np.array([seed_mean(r["tail"]) for r in rows])
                last = rows[-1]
                grid.setdefault((c, rule), {})[n] = {
                    "K": list(study.rounds), "beta": [float(np.nanmax(r["beta"])) for r in rows],
                    "G_full": full.tolist(), "G_tail": tail.tolist(),
                    "slopes_full": _local_slopes(study.rounds, full), "slopes_tail": _local_slopes(study.rounds, tail),
                    "tail_over_full": (tail / full).tolist(),
                    "diverged": int(sum(int(np.isnan(r["full"]).sum()) for r in rows)),
                    "theta": seed_mean(last["theta"]), "phibar": seed_mean(last["phibar"])}
    floor: dict[str, dict[int, dict[str, Any]]] = {}
    for rule in study.head_rules:
        for n in study.n:
            runs = [study.floor_cell(n, b, rule) for b in study.floor_betas]
            rows = [cells.get((float(p["c"]), rule, n, int(p["K"]))) for p in runs]
            if not runs or any(r is None for r in rows):
                continue
            floor.setdefault(rule, {})[n] = {
                "beta": list(study.floor_betas), "K": [int(p["K"]) for p in runs],
                "G_floor": [seed_mean(r["tail"]) for r in rows],
                "exponents": [_paired_exponent(b0, b1, r0["tail"], r1["tail"]) for b0, b1, r0, r1
                              in zip(study.floor_betas[:-1], study.floor_betas[1:], rows[:-1], rows[1:])]}
    return RegimeResult(study, grid, floor, dict(sweep or {}))


def run_regime(study: RegimeStudy, options: SweepOptions = SweepOptions()) -> tuple[RegimeResult, Any]:
    """Run (or read from the cache) every cell of ``study`` and analyse it."""
    sweep = run_sweep(simulate_cell, study.cells(), list(range(study.seeds)), base_seed=study.base_seed,
                      task_version=TASK_VERSION, cost=cell_cost, validate=validate_result, **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    result = analyse_regime(study, sweep.records, sweep.info())
    write_study(options, study)
    return result, sweep
