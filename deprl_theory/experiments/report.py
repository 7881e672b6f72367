"""The whole study behind a paper: every experiment, one sweep, one result.

:class:`ReportStudy` gathers the experiments a paper on DePRL's speedup
needs -- DePRL on four topologies, its three baselines, the consensus error
against the spectral gap, the transient law and the bound against
measurement -- and :func:`run_report` runs all their cells in **one** cached
sweep (one progress bar over the whole study, each cell with the seeds of the
experiment that needs the most), then hands each experiment its own records.
With ``compute=False`` it reads the cache only and simulates nothing: the
paper's figures and tables are rebuilt from stored runs in seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Mapping

from ..constants import estimate_constants
from ..sweep import SweepOptions, run_sweep
from .boundcheck import BoundCheckStudy, analyse_boundcheck, default_spec, symbolic_analysis
from .cells import TASK_VERSION, cell_cost, cell_params, cell_problem, check_cells, simulate_cell, validate_result
from .consensus import ConsensusStudy, analyse_consensus
from .decision import companion_needed
from .speedup import QUICK_ROUNDS, SpeedupStudy, analyse_speedup, graph_mixes, with_companion
from .study_file import write_study
from .transient import predict_transient
from .transient_law import TransientLawStudy, analyse_transient_law

__all__ = ["SPEEDUP_RUNS", "ReportStudy", "ReportResult", "run_report"]

#: the speedup experiments of the study: name -> (algorithm, topology, N grid, seeds; quick N grid, quick seeds).
#: The ring gets more seeds: its grid exponent is bent by a transient, and the excess over exact averaging that
#: shows it (run where the verdict needs it) is resolved with more seeds than the exponent itself.
SPEEDUP_RUNS: dict[str, tuple[str, str, tuple[int, ...], int, tuple[int, ...], int]] = {
    "deprl/exponential": ("deprl", "exponential", (4, 8, 16, 32), 8, (4, 8, 16), 4),
    "deprl/ring": ("deprl", "ring", (4, 8, 16, 32), 32, (4, 8, 16), 8),
    "deprl/torus": ("deprl", "torus", (9, 16, 25, 36), 8, (9, 16, 25), 4),
    "deprl/complete": ("deprl", "complete", (4, 8, 16, 32), 8, (4, 8, 16), 4),
    "dpsgd/exponential": ("dpsgd", "exponential", (4, 8, 16, 32), 8, (4, 8, 16), 4),
    "local/exponential": ("local", "exponential", (4, 8, 16, 32), 8, (4, 8, 16), 4),
    "centralized/exponential": ("centralized", "exponential", (4, 8, 16, 32), 8, (4, 8, 16), 4),
}


@dataclass(frozen=True)
class ReportStudy:
    """Everything the paper kit runs. ``quick`` shrinks every grid to a smoke test of about a minute."""

    #: the kind under which the study is stored (``report.study.json``)
    KIND: ClassVar[str] = "report"

    quick: bool = False
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", dict(self.cell))
        self.parts()  # every part is built, and each study checks its own cells when it is built

    def speedup_studies(self) -> dict[str, SpeedupStudy]:
        out = {}
        for name, (algorithm, topology, ns, seeds, quick_ns, quick_seeds) in SPEEDUP_RUNS.items():
            kw = dict(n=quick_ns, rounds=QUICK_ROUNDS, seeds=quick_seeds) if self.quick else dict(n=ns, seeds=seeds)
            out[name] = SpeedupStudy(base_seed=self.base_seed, cell={**self.cell, "algorithm": algorithm,
                                                                     "topology": topology}, **kw)
        return out

    def consensus_study(self) -> ConsensusStudy:
        if self.quick:
            return ConsensusStudy(n=8, gaps=(0.5, 0.1, 0.04), topologies=("ring", "exponential", "complete"),
                                  rounds=(250, 500, 1000, 2000), seeds=3, base_seed=self.base_seed, cell=self.cell)
        return ConsensusStudy(base_seed=self.base_seed, cell=self.cell)

    def law_study(self) -> TransientLawStudy:
        c = self.consensus_study()
        if self.quick:
            return TransientLawStudy(n=(4, 8), gaps=(0.1, 0.075, 0.056), rounds=c.rounds, held_out=((16, 0.065),),
                                     named=(), seeds=c.seeds, base_seed=self.base_seed, cell=self.cell)
        return TransientLawStudy(rounds=c.rounds, seeds=c.seeds, base_seed=self.base_seed, cell=self.cell)

    def bound_study(self) -> BoundCheckStudy:
        if self.quick:
            return BoundCheckStudy(n=(4, 8), rounds=(200, 800), gaps=(1.0, 0.2), seeds=2, base_seed=self.base_seed,
                                   cell=self.cell)
        return BoundCheckStudy(base_seed=self.base_seed, cell=self.cell)

    def parts(self) -> dict[str, Any]:
        """Every experiment of the study by name."""
        return {**{f"speedup:{k}": v for k, v in self.speedup_studies().items()},
                "consensus": self.consensus_study(), "transient_law": self.law_study(), "bound": self.bound_study()}

    def grid(self) -> tuple[list[dict], list[list[int]]]:
        """The union of every experiment's cells, each with the most seeds any experiment asks of it."""
        seeds_of: dict[str, int] = {}
        cells: dict[str, dict] = {}
        from ..sweep import canonical_json

        for study in self.parts().values():
            for params in study.cells():
                key = canonical_json(params)
                cells[key] = params
                seeds_of[key] = max(seeds_of.get(key, 0), int(study.seeds))
        keys = list(cells)
        return [cells[k] for k in keys], [list(range(seeds_of[k])) for k in keys]

    def check(self) -> None:
        cells, _ = self.grid()
        check_cells(cells, self.base_seed)

    def settings(self) -> dict[str, Any]:
        return {"quick": self.quick, "base_seed": self.base_seed, "cell": dict(self.cell),
                "speedup": {k: v.settings() for k, v in self.speedup_studies().items()},
                "consensus": self.consensus_study().settings(), "transient_law": self.law_study().settings(),
                "bound": self.bound_study().settings()}


@dataclass(frozen=True, eq=False)
class ReportResult:
    """The result of every experiment of the study, and the sweep that ran them."""

    study: ReportStudy
    speedup: dict[str, Any]
    consensus: Any
    law: Any
    bound: Any
    sweep: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"settings": self.study.settings(),
                "speedup": {k: _speedup_digest(v) for k, v in self.speedup.items()},
                "consensus": self.consensus.as_dict(), "transient_law": self.law.as_dict(),
                "bound": self.bound.as_dict(), "sweep": self.sweep}


def _speedup_digest(result) -> dict[str, Any]:
    """A speedup result without its raw records (they stay in the cache and the CSV)."""
    d = result.as_dict()
    d["cells"] = {m: {f"{n},{k}": list(map(float, v)) for (n, k), v in result.tables[m].items()}
                  for m in ("G", "R", "H")}
    return d


def _subset(records: list, study) -> list:
    """The records of one experiment: its cells, its seeds."""
    from ..sweep import canonical_json

    want = {canonical_json(p) for p in study.cells()}
    return [r for r in records if r["seed"] < study.seeds and canonical_json(r["params"]) in want]


def run_report(study: ReportStudy, options: SweepOptions = SweepOptions(), *, compute: bool = True) -> ReportResult:
    """Run (or, with ``compute=False``, only read from the cache) every cell of the study, and analyse each part."""
    start = time.monotonic()
    options = replace(options, compute=compute and options.compute)
    cells, seeds = study.grid()
    # the exact-averaging companions that may run after the main sweep (where a graph mixes and the rule may ask):
    # the progress bar's time left counts their work, so that it estimates the whole report
    studies = study.speedup_studies()
    rhos = {name: s.mixing_rates() for name, s in studies.items()}
    later = sum(cell_cost(c) * s.seeds for name, s in studies.items()
                if s.companion != "never" and graph_mixes(s, rhos[name]) for c in s.companion_cells())
    sweep = run_sweep(simulate_cell, cells, seeds, base_seed=study.base_seed, task_version=TASK_VERSION,
                      cost=cell_cost, validate=validate_result, label="study", work_after=later,
                      **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    records = sweep.records
    constants: dict[int, Any] = {}

    def consts(n: int):
        if n not in constants:  # the same problem in every experiment: estimate its constants once per N
            constants[n] = estimate_constants(cell_problem(cell_params(N=n, **study.cell), range(2), study.base_seed),
                                              seed=study.base_seed)
        return constants[n]

    speedup = {}
    companions = {"computed": 0, "cached": 0}
    for name, s in studies.items():
        rho = rhos[name]
        first = {c["N"]: c for c in reversed(s.cells())}
        predicted = {n: predict_transient(first[n], rho[n], base_seed=s.base_seed) for n in s.n}
        speedup[name] = analyse_speedup(s, _subset(records, s), rho=rho, predicted=predicted)
        if companion_needed(s.companion, graph_mixes(s, rho), speedup[name].headline.verdict):
            # the exact-averaging companion, as speedup runs it: same instances and seeds, only where it can
            # change the verdict (cached like every other run; --replot reads it back)
            comp = run_sweep(simulate_cell, s.companion_cells(), list(range(s.seeds)), base_seed=study.base_seed,
                             task_version=TASK_VERSION, cost=cell_cost, validate=validate_result,
                             label=f"companion of {name}", **options.kwargs())
            comp.require_records()  # every cell failed: say how many, and the first cause
            speedup[name] = with_companion(speedup[name], comp.records)
            companions["computed"] += comp.n_computed
            companions["cached"] += comp.n_cached
    c = study.consensus_study()
    consensus = analyse_consensus(c, _subset(records, c), consts(c.n).symbols(),
                                  constants_report=consts(c.n).as_dict())
    law_study = study.law_study()
    law = analyse_transient_law(law_study, _subset(records, law_study),
                                {n: consts(n).symbols() for n in law_study.n})
    b = study.bound_study()
    spec = default_spec()
    bound = analyse_boundcheck(b, spec, symbolic_analysis(spec.bound), _subset(records, b),
                               {n: consts(n).symbols() for n in b.n}, constants_how=consts(b.n[0]).how)
    info = {**sweep.info(), "wall_seconds": time.monotonic() - start, "cells": len(cells),
            "runs": sum(len(x) for x in seeds), "companion_runs": companions}
    # the tally counts the exact-averaging companions too (run after the main sweep, where the rule asked)
    info["computed"] = info.get("computed", 0) + companions["computed"]
    info["cached"] = info.get("cached", 0) + companions["cached"]
    write_study(options, study)
    return ReportResult(study, speedup, consensus, law, bound, info)
