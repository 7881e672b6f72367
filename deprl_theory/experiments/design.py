"""Why the true heads are balanced by default: the instance scatter of each head design, measured.

With heads drawn iid N(0, I_r), the task diversity of an instance (the
smallest eigenvalue of (1/N) sum_i theta*_i theta*_i^T) depends on N and is
often near 0 at N = 4, r = 3: N is confounded with problem difficulty, and
instance-to-instance scatter swamps the N effect. Balanced heads are whitened
so that this matrix is exactly h^2 I_r for every instance and N.

:func:`run_design` runs the same cells with both designs over many
instances and reports, per design and N, the standard deviation over
instances of log Mbar (the scatter the rate fit has to average away), with a
chi-square confidence interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy import stats

from ..problems import HEAD_DESIGNS
from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, check_cells, simulate_cell, validate_result
from .records import metric_table
from .study_file import write_study

__all__ = ["DesignStudy", "DesignResult", "run_design", "analyse_design"]


@dataclass(frozen=True)
class DesignStudy:
    """Cells (N, K) run with every head design over ``instances`` seeds."""

    #: the kind under which the study is stored (``design.study.json``)
    KIND: ClassVar[str] = "design"

    n: tuple[int, ...] = (4, 32)
    rounds: int = 500
    instances: int = 32
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ("G", "R")

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", tuple(sorted({int(n) for n in self.n})))
        object.__setattr__(self, "cell", dict(self.cell))
        if self.instances < 3:
            raise ValueError(f"need at least 3 instances for a standard deviation, got {self.instances}")
        cell_params(**self.cell)
        self.check()  # graphs and problems are built and checked here, with the CLI's checks

    def cells(self) -> list[dict]:
        return [cell_params(N=n, K=int(self.rounds), **{**self.cell, "heads": h}) for h in HEAD_DESIGNS
                for n in self.n]

    def check(self) -> None:
        check_cells(self.cells(), self.base_seed)


@dataclass(frozen=True, eq=False)
class DesignResult:
    """Per head design, N and metric: the sd over instances of log Mbar with its 95 % CI."""

    study: DesignStudy
    scatter: dict[str, dict[int, dict[str, dict[str, float]]]]
    sweep: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"settings": {"n": list(self.study.n), "rounds": self.study.rounds,
                             "instances": self.study.instances, "base_seed": self.study.base_seed},
                "scatter": {h: {str(n): v for n, v in by_n.items()} for h, by_n in self.scatter.items()},
                "sweep": self.sweep}


def _sd_with_ci(x: np.ndarray, level: float = 0.95) -> dict[str, float]:
    x = x[np.isfinite(x)]
    m = x.size
    sd = float(np.std(x, ddof=1))
    lo_q, hi_q = stats.chi2.ppf([(1 + level) / 2, (1 - level) / 2], m - 1)
    return {"sd": sd, "ci": [sd * float(np.sqrt((m - 1) / lo_q)), sd * float(np.sqrt((m - 1) / hi_q))],
            "instances": int(m)}


def analyse_design(study: DesignStudy, records: Sequence[Mapping[str, Any]],
                   sweep: Mapping[str, Any] | None = None) -> DesignResult:
    scatter: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for metric in study.metrics:
        table = metric_table(records, metric, ("heads", "N"), seeds=range(study.instances))
        for (heads, n), values in table.items():
            scatter.setdefault(heads, {}).setdefault(int(n), {})[metric] = _sd_with_ci(np.log(values))
    return DesignResult(study, scatter, dict(sweep or {}))


def run_design(study: DesignStudy, options: SweepOptions = SweepOptions()) -> tuple[DesignResult, Any]:
    sweep = run_sweep(simulate_cell, study.cells(), list(range(study.instances)), base_seed=study.base_seed,
                      task_version=TASK_VERSION, cost=cell_cost, validate=validate_result, **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    result = analyse_design(study, sweep.records, sweep.info())
    write_study(options, study)
    return result, sweep
