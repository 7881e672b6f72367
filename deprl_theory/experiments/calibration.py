"""Calibration: the whole decision procedure run on planted data whose true s is known.

``verification.speedup`` decides with :func:`~deprl_theory.experiments.decision.decide`
at the looks of a group-sequential design (:func:`~deprl_theory.inference.run_sequential`).
This module feeds the *same two functions* with planted tables and counts
what comes out: the chance of each verdict, the coverage of the CI the verdict
reports, and the seeds used. That is how the tool's stated error rates are
measured instead of assumed (docs/theory.md, section 6).

Planted data. For worker counts N and rounds K of the default grid, exact
averaging follows ``Gbar_c = N^(-s/2) K^(-1/2)`` (speedup exponent s) and the
graph carries a transient on top, ``Gbar = Gbar_c + b N / K`` (asymptotic s
unchanged; the ring's excess over exact averaging has this shape). Each seed
multiplies every cell by ``exp(eps)``, with ``eps`` the scatter of real runs of
the tool, graph and companion jointly (they share instances and seed indices):

* ``gaussian:<run>``: eps ~ N(0, Sigma), Sigma the covariance over seeds of the
  log residuals (log Gbar minus its cell mean) of that run;
* ``resampled:<run>``: eps is a whole seed of that run's residuals, drawn with
  replacement (keeps the skewness and heavy tails of real seeds).

The runs are recorded as data in ``deprl_theory/data/scatter.json`` with the
command that made them (:func:`record_scatter`, ``python -m
verification.calibrate --record-scatter``): ``ring`` (``--topology ring``)
and ``default`` (the exponential graph), each beside its exact-averaging
companion, 64 seeds.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._rng import SeedLike, derive_seed
from ..inference import (
    DEFAULT_DESIGN,
    DEFAULT_LOOKS,
    DEFAULT_MARGIN,
    GroupSequentialDesign,
    crossing_probability,
    group_sequential_design,
    run_sequential,
)
from .decision import RateDecision, decide

__all__ = ["SCATTER_FILE", "SCATTER_RUNS", "SCATTER_MODELS", "PROCEDURES", "Scatter", "load_scatter",
           "record_scatter", "unadjusted_design", "t_process_error", "CalibrationCase", "CaseResult",
           "calibration_cases",
           "calibrate_case", "run_calibration", "DEFAULT_S", "DEFAULT_B", "QUICK_S", "QUICK_B"]

SCATTER_FILE = Path(__file__).resolve().parent.parent / "data" / "scatter.json"
#: the recorded runs: name -> (cell overrides, what it is)
SCATTER_RUNS: dict[str, tuple[dict[str, Any], str]] = {
    "ring": ({"topology": "ring"}, "python -m verification.speedup --topology ring"),
    "default": ({}, "python -m verification.speedup (exponential graph)"),
}
SCATTER_MODELS = ("gaussian", "resampled")
#: ``sequential``: what speedup does by default; ``fixed``: one look at 95 %; ``unadjusted``: the same looks
#: as sequential, each read at 95 % (the rule before the group-sequential design), for comparison
PROCEDURES = ("sequential", "fixed", "unadjusted")
DEFAULT_S = (0.85, 0.88, 0.90, 0.92, 1.0, 1.08, 1.10, 1.12)
DEFAULT_B = (0.0, 0.01, 0.03)
QUICK_S = (0.85, 0.90, 1.0, 1.10)
QUICK_B = (0.0, 0.03)


@dataclass(frozen=True)
class Scatter:
    """The per-seed scatter of one recorded run: log residuals of Gbar, graph and companion, per cell and seed."""

    name: str
    command: str
    cells: tuple[tuple[int, int], ...]
    graph: np.ndarray  # (C, S)
    companion: np.ndarray  # (C, S)

    def __post_init__(self) -> None:
        joint = np.vstack([self.graph, self.companion])  # (2C, S)
        w, v = np.linalg.eigh(np.cov(joint))
        object.__setattr__(self, "_root", v * np.sqrt(np.clip(w, 0.0, None)))

    @property
    def seeds(self) -> int:
        return self.graph.shape[1]

    def draw(self, model: str, seeds: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Residuals (C, seeds) of the graph and of the companion for ``seeds`` planted seeds."""
        C = len(self.cells)
        if model == "gaussian":
            eps = self._root @ rng.standard_normal((2 * C, seeds))
            return eps[:C], eps[C:]
        if model == "resampled":
            j = rng.integers(0, self.seeds, seeds)
            return self.graph[:, j], self.companion[:, j]
        raise ValueError(f"unknown scatter model {model!r}; use one of {', '.join(SCATTER_MODELS)}")

    def sd(self) -> float:
        """Median over cells of the graph's per-seed sd of log Gbar."""
        return float(np.median(self.graph.std(axis=1, ddof=1)))


def load_scatter(path: str | os.PathLike | None = None) -> dict[str, Scatter]:
    """The recorded scatters by run name (``deprl_theory/data/scatter.json`` by default)."""
    path = Path(path) if path is not None else SCATTER_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no recorded scatter at {path}; make it with python -m verification.calibrate "
                         "--record-scatter") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    out = {}
    for name, run in data.get("runs", {}).items():
        cells = tuple((int(n), int(k)) for n, k in run["cells"])
        g, c = np.asarray(run["graph"], float), np.asarray(run["companion"], float)
        if g.shape != c.shape or g.shape[0] != len(cells) or g.shape[1] < 4 or not np.all(np.isfinite(g)):
            raise ValueError(f"{path}: run {name!r} has residuals of shape {g.shape} and {c.shape} "
                             f"for {len(cells)} cells")
        out[name] = Scatter(name, run["command"], cells, g, c)
    if not out:
        raise ValueError(f"{path} records no runs")
    return out


def record_scatter(options, *, seeds: int = 64, base_seed: int = 0, path: str | os.PathLike | None = None,
                   command: str = "python -m verification.calibrate --record-scatter") -> Path:
    """Run every :data:`SCATTER_RUNS` run and its companion at ``seeds`` seeds; write their log residuals."""
    from ..io import write_json_atomic
    from ..sweep import run_sweep
    from .cells import TASK_VERSION, cell_cost, simulate_cell, validate_result
    from .records import metric_table
    from .speedup import SpeedupStudy

    runs = {}
    for name, (cell, what) in SCATTER_RUNS.items():
        study = SpeedupStudy(cell=cell, seeds=seeds, base_seed=base_seed)
        tables = []
        for cells in (study.cells(), study.companion_cells()):
            sweep = run_sweep(simulate_cell, cells, list(range(seeds)), base_seed=base_seed,
                              task_version=TASK_VERSION, cost=cell_cost, validate=validate_result,
                              **options.kwargs())
            sweep.require_records()  # every cell failed: say how many, and the first cause
            tables.append(metric_table(sweep.records, "G"))
        keys = sorted(k for k in tables[0] if k in tables[1])
        logs = [np.log(np.array([t[k] for k in keys])) for t in tables]
        if not all(np.all(np.isfinite(v)) for v in logs):
            raise ValueError(f"run {name!r}: some seed diverged or failed; its scatter cannot be recorded")
        res = [v - v.mean(axis=1, keepdims=True) for v in logs]
        runs[name] = {"what": what, "command": f"{command} --seeds {seeds} --seed {base_seed}",
                      "cells": [list(k) for k in keys], "seeds": seeds, "graph": np.round(res[0], 6).tolist(),
                      "companion": np.round(res[1], 6).tolist()}
    out = Path(path) if path is not None else SCATTER_FILE
    write_json_atomic(out, {"what": "log residuals of Gbar (log Gbar minus its cell mean over seeds), per cell "
                                    "and seed, of a run and of its exact-averaging companion on the same "
                                    "instances and seed indices", "runs": runs})
    return out


def unadjusted_design(looks: Sequence[int], alpha: float = 0.05) -> GroupSequentialDesign:
    """The same looks, each read at the plain ``1 - alpha`` level: no adjustment (for comparison only)."""
    from scipy import stats

    looks = tuple(int(v) for v in looks)
    c = float(stats.norm.isf(alpha / 2))
    spent = np.cumsum(crossing_probability(np.asarray(looks) / looks[-1], np.full(len(looks), c)))
    return GroupSequentialDesign(looks, "unadjusted", alpha, c, (c,) * len(looks), tuple(float(v) for v in spent))


def t_process_error(design: GroupSequentialDesign, *, paths: int = 200_000, seed: SeedLike = 0) -> float:
    """One-sided error of ``design`` on Student t statistics, simulated: the check of the nominal-level conversion.

    Seeds contribute iid N(0, 1) values with mean 0; at look k the t
    statistic of the first S_k values is compared with that look's t
    boundary (its nominal level with S_k - 1 degrees of freedom). Returns the
    fraction of paths that ever cross the upper boundary (alpha / 2 = 0.025
    for an exact design); its Monte Carlo sd is sqrt(p (1 - p) / paths).
    """
    from scipy import stats

    rng = np.random.default_rng(derive_seed(seed, "t-process", design.kind, design.looks))
    S = np.asarray(design.looks)
    bounds = np.array([stats.t.ppf(0.5 + lv / 2, s - 1) for s, lv in zip(S, design.levels)])
    crossed = 0
    for start in range(0, paths, 50_000):
        x = rng.standard_normal((min(50_000, paths - start), int(S[-1])))
        s1, s2 = np.cumsum(x, axis=1)[:, S - 1], np.cumsum(x * x, axis=1)[:, S - 1]
        mean = s1 / S
        sd = np.sqrt((s2 - S * mean**2) / (S - 1))
        crossed += int((mean / (sd / np.sqrt(S)) > bounds).any(axis=1).sum())
    return crossed / paths


@dataclass(frozen=True)
class CalibrationCase:
    """One planted case: true s, transient b, scatter model and run, procedure."""

    s: float
    b: float
    scatter: str  # "<model>:<run>"
    procedure: str = "sequential"

    @property
    def model(self) -> str:
        return self.scatter.split(":")[0]

    @property
    def run(self) -> str:
        return self.scatter.split(":")[1]


@dataclass(frozen=True)
class CaseResult:
    """What the procedure said on one case, over ``reps`` planted data sets."""

    case: CalibrationCase
    reps: int
    p: dict[str, float]
    coverage: float
    mean_seeds: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"s": self.case.s, "b": self.case.b, "scatter": self.case.scatter, "procedure": self.case.procedure,
                "p": self.p, "coverage": self.coverage, "mean_seeds": self.mean_seeds, "reps": self.reps,
                "seconds": self.seconds}


def _design_of(procedure: str, looks: Sequence[int], kind: str) -> GroupSequentialDesign:
    if procedure == "sequential":
        return group_sequential_design(looks, kind)
    if procedure == "unadjusted":
        return unadjusted_design(looks)
    if procedure == "fixed":
        return group_sequential_design(looks[:1], kind)
    raise ValueError(f"unknown procedure {procedure!r}; use one of {', '.join(PROCEDURES)}")


def _planted_look(keys: Sequence[tuple[int, int]], graph: np.ndarray, comp: np.ndarray, S: int, level: float, *,
                  margin: float, transient_tol: float, companion: str, interval: str) -> RateDecision:
    """The decision at one look of a planted data set: its first ``S`` seeds, at ``level``."""
    table = {key: graph[i, :S] for i, key in enumerate(keys)}
    return decide("G", table, margin=margin, level=level, transient_tol=transient_tol, companion_rule=companion,
                  mixes=True, companion_table=lambda: {key: comp[i, :S] for i, key in enumerate(keys)},
                  interval=interval)


def calibrate_case(case: CalibrationCase, scatter: Scatter, *, reps: int, looks: Sequence[int],
                   design: str = DEFAULT_DESIGN, margin: float = DEFAULT_MARGIN, transient_tol: float = 0.15,
                   companion: str = "auto", interval: str = "hall", seed: SeedLike = 0) -> CaseResult:
    """Run the decision procedure on ``reps`` planted data sets of one case."""
    start = time.perf_counter()
    gs = _design_of(case.procedure, looks, design)
    # the planted data depend on the case and the seed only, so two intervals or designs see the same data
    rng = np.random.default_rng(derive_seed(seed, "calibrate", case.s, case.b, case.scatter, case.procedure))
    keys = list(scatter.cells)
    N = np.array([n for n, _ in keys], float)
    K = np.array([k for _, k in keys], float)
    log_comp = -case.s / 2 * np.log(N) - 0.5 * np.log(K)
    log_graph = np.log(np.exp(log_comp) + case.b * N / K)
    counts: dict[str, int] = {}
    covered = 0
    seeds_used = 0
    for _ in range(reps):
        g_res, c_res = scatter.draw(case.model, gs.looks[-1], rng)
        graph = np.exp(log_graph[:, None] + g_res)
        comp = np.exp(log_comp[:, None] + c_res)

        out = run_sequential(gs, partial(_planted_look, keys, graph, comp, margin=margin,
                                         transient_tol=transient_tol, companion=companion, interval=interval),
                             lambda d: d.word)
        counts[out.result.word] = counts.get(out.result.word, 0) + 1
        fit = out.result.reported_fit.fit
        covered += int(fit is not None and fit.speedup_ci.contains(case.s))
        seeds_used += out.seeds
    p = {w: c / reps for w, c in sorted(counts.items())}
    return CaseResult(case, reps, p, covered / reps, seeds_used / reps, time.perf_counter() - start)


def calibration_cases(s: Sequence[float] = DEFAULT_S, b: Sequence[float] = DEFAULT_B,
                      scatters: Sequence[str] = ("gaussian:ring", "gaussian:default", "resampled:ring"),
                      procedures: Sequence[str] = ("sequential",)) -> list[CalibrationCase]:
    """Every combination, procedure-major."""
    return [CalibrationCase(float(si), float(bi), sc, pr) for pr in procedures for sc in scatters
            for bi in b for si in s]


def _one(args: tuple) -> CaseResult:
    case, scatter, kw = args
    return calibrate_case(case, scatter, **kw)


def run_calibration(cases: Sequence[CalibrationCase], scatters: Mapping[str, Scatter], *, reps: int,
                    looks: Sequence[int] = DEFAULT_LOOKS, jobs: int | None = None,
                    progress=None, **kw: Any) -> list[CaseResult]:
    """Calibrate every case, in parallel over ``jobs`` processes; ``progress(done, total)`` follows them."""
    for case in cases:
        if case.run not in scatters:
            raise ValueError(f"no recorded scatter named {case.run!r}; recorded: {', '.join(scatters)}")
        if case.model not in SCATTER_MODELS:
            raise ValueError(f"unknown scatter model {case.model!r}; use one of {', '.join(SCATTER_MODELS)}")
        _design_of(case.procedure, looks, kw.get("design", DEFAULT_DESIGN))
    work = [(case, scatters[case.run], {"reps": reps, "looks": tuple(looks), **kw}) for case in cases]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    results: list[CaseResult] = []
    if jobs == 1:
        for i, item in enumerate(work):
            results.append(_one(item))
            if progress:
                progress(i + 1, len(work))
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, res in enumerate(pool.map(_one, work)):
            results.append(res)
            if progress:
                progress(i + 1, len(work))
    return results
