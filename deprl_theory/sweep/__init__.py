"""Run a grid of cells times seeds, caching each finished run so nothing is computed twice.

A *task* is a top-level (picklable) function::

    task(params: dict, seeds: tuple[int, ...], base_seed: int) -> dict[int, dict]

It runs one *cell* of the grid -- ``params`` is a JSON-serialisable dict such
as ``{"N": 8, "K": 1000, "topology": "ring"}`` -- for several seed indices at
once (vectorised over seeds, arrays shaped ``(seeds, workers, ...)``) and
returns, for every requested seed index, a JSON-serialisable result dict such
as ``{"metrics": {...}, "diverged": False, "trace": {...}}``.

Contract
--------
The result for seed index ``j`` depends only on ``(base_seed, params, j)``:
never on which other seeds are in the same call, nor on the executor.  Tasks
get this by drawing seed ``j``'s randomness from
``cell_seed(base_seed, params, j)`` alone.  That is what makes the cache sound
(one file per ``(params, seed)``), lets a re-run compute only missing seeds,
and keeps every number unchanged when an N or a seed is added to the grid.
Bump ``task_version`` whenever the task's code changes its numbers: the cache
key does not look at the code.

A diverging simulation is a result (``"diverged": True``), not an exception;
an exception marks the cell as failed (reported, not cached) and the sweep
goes on with the other cells.

Layers: :mod:`.keys` (seeds and cache keys), :mod:`.cache` (checked cache
entries), :mod:`.executors` (serial, processes, Dask), :mod:`.progress` (the
bar), :mod:`.table` (the tidy table); :func:`run_sweep` ties them together.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..io import to_jsonable
from .cache import Validator, cache_dir, read_entry, write_entry
from .executors import EXECUTORS, choose_executor, execute, import_distributed
from .keys import cache_key, canonical_json, cell_seed, check_index, task_name
from .progress import Progress
from .table import flat_rows, rows_frame, tidy_rows

__all__ = [
    "Task",
    "CacheMiss",
    "CellsFailed",
    "failure_line",
    "SweepOptions",
    "SweepResult",
    "run_sweep",
    "cell_seed",
    "canonical_json",
    "cache_key",
    "choose_executor",
    "tidy_rows",
]

Task = Callable[[dict, tuple, int], Mapping[int, Mapping[str, Any]]]


class CacheMiss(LookupError):
    """A sweep asked to read the cache only found runs missing."""


class CellsFailed(RuntimeError):
    """Every cell of a sweep failed: the message says how many and names the first cause, in one line."""


def failure_line(failures: Sequence[Mapping[str, Any]]) -> str:
    """``"9 cells failed (N = 4, K = 250; ...), all with: BrokenProcessPool: ..."``, or the first of several causes."""
    if not failures:
        return ""
    causes = list(dict.fromkeys(str(f["error"]).splitlines()[0] if f["error"] else "unknown error"
                                for f in failures))
    cells = [_cell_words(f["params"]) for f in failures]
    which = "; ".join(cells[:3]) + ("; ..." if len(cells) > 3 else "")
    head = f"{len(failures)} cell{'s' if len(failures) != 1 else ''} failed ({which})"
    if len(causes) == 1:
        return f"{head}, {'all ' if len(failures) > 1 else ''}with: {causes[0]}"
    return f"{head}; the first cause: {causes[0]} ({len(causes) - 1} other cause{'s' if len(causes) > 2 else ''})"


def _cell_words(params: Mapping[str, Any]) -> str:
    """A cell named by its worker count and rounds where it has them (else its parameters)."""
    if "N" in params and "K" in params:
        graph = f"{params['topology']}, " if "topology" in params else ""
        return f"{graph}N = {params['N']}, K = {params['K']}"
    return ", ".join(f"{k} = {v}" for k, v in sorted(params.items()))


def _seed_words(seeds: Sequence[int]) -> str:
    seeds = sorted(seeds)
    return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 2 and seeds[-1] - seeds[0] == len(seeds) - 1 else \
        ", ".join(map(str, seeds))


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep, independent of what it computes (the CLIs' shared options).

    Attributes
    ----------
    out : path or None
        Results directory; the cache lives in ``out/cache``. None: no cache.
    executor : {"serial", "processes", "dask"}
    jobs : int or None
        Local worker processes (default: every core).
    scheduler : str, distributed.Client or None
        Dask scheduler address or client (with ``executor="dask"``).
    use_cache : bool
        False recomputes every run and overwrites its cache entry.
    progress : bool
        Progress bar on stderr.
    compute : bool
        False reads the cache only and raises :class:`CacheMiss` naming what
        is missing instead of simulating it (re-analysing a finished sweep).
    """

    out: Path | None = None
    executor: str = "processes"
    jobs: int | None = None
    scheduler: Any = None
    use_cache: bool = True
    progress: bool = True
    compute: bool = True

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`run_sweep`."""
        return {"out": self.out, "executor": self.executor, "jobs": self.jobs, "scheduler": self.scheduler,
                "use_cache": self.use_cache, "progress": self.progress, "compute": self.compute}


@dataclass
class SweepResult:
    """Everything a sweep produced.

    Attributes
    ----------
    records : list of dict
        One per successful ``(cell, seed)``, in the order of ``cells`` then
        ``seeds``: ``{"params", "seed", "result", "cached", "seconds"}``.
        ``seconds`` is the wall time of the batched task call divided by the
        number of seeds it ran (the stored value, for cached records).
    n_computed : int
        ``(cell, seed)`` runs computed by this call.
    n_cached : int
        ``(cell, seed)`` runs read from the cache.
    failures : list of dict
        One per failed task call, in grid order: ``{"params", "seeds", "error",
        "traceback"}`` with ``error`` as ``"ExceptionType: message"``.  If a
        worker process dies (segfault, out of memory) the pool breaks and
        every cell not yet finished fails with ``BrokenProcessPool``.
    wall_seconds : float
        Wall time of the whole sweep.
    task : str
        The task's ``module.qualname``.
    base_seed : int
    cache_dir : pathlib.Path or None
        Where the per-run JSON files live (``None`` without ``out``).
    rejected : list of (str, str)
        Cache files that existed but failed a check (path, reason); their runs
        were recomputed.
    executor : str
    """

    records: list[dict[str, Any]]
    n_computed: int
    n_cached: int
    failures: list[dict[str, Any]]
    wall_seconds: float
    task: str
    base_seed: int
    cache_dir: Path | None = None
    rejected: list[tuple[str, str]] = field(default_factory=list)
    executor: str = "serial"

    def __len__(self) -> int:
        return len(self.records)

    def to_frame(self):
        """One row per run as a pandas DataFrame (:func:`~deprl_theory.sweep.table.flat_rows`).

        The cell's parameters, ``seed``, ``cached``, ``seconds`` and every
        scalar of the result, nested keys joined by dots (``averages.G``,
        ``final.subspace``); lists (traces) are left out. pandas is an
        optional dependency: ``pip install 'deprl-theory[frames]'``.
        """
        return rows_frame(flat_rows(self.records))

    @property
    def ok(self) -> bool:
        """True when no task call failed."""
        return not self.failures

    def records_for(self, **params_subset: Any) -> list[dict[str, Any]]:
        """Records whose params contain every given ``name=value``.

        Examples
        --------
        ``result.records_for(N=8, topology="ring")``
        """
        want = {k: to_jsonable(v, nan_to_null=False) for k, v in params_subset.items()}
        return [
            r for r in self.records
            if all(k in r["params"] and r["params"][k] == v for k, v in want.items())
        ]

    def raise_for_failures(self) -> None:
        """Raise :class:`RuntimeError` summarising the failures, if any."""
        if self.failures:
            lines = [f"{f['params']} seeds {list(f['seeds'])}: {f['error']}" for f in self.failures]
            raise RuntimeError(
                f"{len(self.failures)} cell(s) of {self.task} failed:\n  " + "\n  ".join(lines)
            )

    def failure_line(self) -> str:
        """One line for every failed cell: how many failed, which, and the first cause ('' when none failed)."""
        return failure_line(self.failures)

    def require_records(self) -> None:
        """Raise :class:`CellsFailed` (one line: how many, the first cause) when cells failed and none finished."""
        if self.failures and not self.records:
            raise CellsFailed(f"no cell finished: {self.failure_line()}")

    def info(self) -> dict[str, Any]:
        """Counts and timing, for a summary: computed, cached, failures, rejected cache files, executor."""
        return {"computed": self.n_computed, "cached": self.n_cached, "failures": len(self.failures),
                "rejected_cache_files": len(self.rejected), "executor": self.executor,
                "sweep_seconds": self.wall_seconds}


# --------------------------------------------------------------------------- the sweep
def _seed_list(seeds: Sequence[int]) -> list[int]:
    out = [check_index(s, "seed") for s in seeds]
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {out}")
    return out


def _check_arguments(executor: str, jobs: Any, base_seed: Any, seeds: Sequence, n_cells: int
                     ) -> tuple[int, list[list[int]]]:
    """The base seed, and the seed indices of every cell (one list for all, or one list per cell)."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    base = check_index(base_seed, "base_seed")
    seeds = list(seeds)
    if seeds and all(isinstance(s, (list, tuple, range)) for s in seeds):
        if len(seeds) != n_cells:
            raise ValueError(f"got {len(seeds)} seed lists for {n_cells} cells")
        per_cell = [_seed_list(s) for s in seeds]
    else:
        per_cell = [_seed_list(seeds)] * n_cells
    if executor == "dask":
        import_distributed()
    return base, per_cell


def _normalise_cells(cells: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Cells through JSON, so a task sees the same dict fresh or cached; duplicates rejected."""
    out: list[dict] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if not isinstance(cell, Mapping):
            raise ValueError(f"cell {i} must be a dict of parameters, got {type(cell).__name__}")
        blob = canonical_json(cell)
        if blob in seen:
            raise ValueError(f"cell {i} duplicates cell {seen[blob]}: {blob}")
        seen[blob] = i
        out.append(json.loads(blob))
    return out


class _Run:
    """The state of one sweep: what is found, what is missing, and how finished batches are stored."""

    def __init__(self, name: str, version: str, cells: list[dict], seeds: list[list[int]], base_seed: int,
                 directory: Path | None, executor: str, validate: Validator | None):
        self.name, self.version, self.cells, self.seeds = name, version, cells, seeds
        self.base_seed, self.directory, self.executor, self.validate = base_seed, directory, executor, validate
        self.found: list[dict[int, dict[str, Any]]] = [{} for _ in cells]
        self.batches: list[tuple[int, dict, tuple[int, ...]]] = []
        self.failures: list[tuple[int, dict[str, Any]]] = []
        self.rejected: list[tuple[str, str]] = []
        self.n_cached = self.n_computed = 0
        self.host = socket.gethostname()
        self.bar: Progress | None = None
        self.batch_cost: Callable[[dict], float] = lambda params: 1.0

    def path(self, params: dict, seed: int) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{cache_key(self.name, self.version, params, seed, self.base_seed)}.json"

    def _record(self, params: dict, seed: int, result: Any, cached: bool, seconds: float) -> dict[str, Any]:
        return {"params": dict(params), "seed": seed, "result": result, "cached": cached, "seconds": seconds}

    def lookup(self, use_cache: bool) -> None:
        """Fill ``found`` from the cache and queue one batch per cell with its missing seeds."""
        for i, params in enumerate(self.cells):
            missing = []
            for s in self.seeds[i]:
                path = self.path(params, s)
                entry = None
                if path is not None and use_cache:
                    expect = {"task": self.name, "task_version": self.version, "params": params,
                              "seed": s, "base_seed": self.base_seed}
                    entry, why = read_entry(path, expect, self.validate)
                    if why is not None:
                        self.rejected.append((str(path), why))
                if entry is None:
                    missing.append(s)
                    continue
                self.n_cached += 1
                seconds = float(entry.get("provenance", {}).get("seconds", 0.0))
                self.found[i][s] = self._record(params, s, entry["result"], True, seconds)
            if missing:
                self.batches.append((i, params, tuple(missing)))

    def on_done(self, i: int, outcome: dict[str, Any]) -> None:
        """Store a finished batch (cache files first, then the record) or its failure."""
        params = self.cells[i]
        batch_seeds = next(b[2] for b in self.batches if b[0] == i)
        if not outcome["ok"]:
            self.failures.append((i, {"params": dict(params), "seeds": list(batch_seeds),
                                      "error": outcome["error"], "traceback": outcome.get("traceback", "")}))
            self.bar.update(done=1, failed=1, cost=self.cost_of(i))
            return
        per_seed = outcome["seconds"] / len(batch_seeds)
        finished = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for s in batch_seeds:
            result = outcome["results"][s]
            path = self.path(params, s)
            if path is not None:
                provenance = {"seconds": per_seed, "batch_seconds": outcome["seconds"],
                              "batch_seeds": list(batch_seeds), "finished": finished, "hostname": self.host,
                              "executor": self.executor}
                write_entry(path, {"task": self.name, "task_version": self.version, "params": params, "seed": s,
                                   "base_seed": self.base_seed, "result": result, "provenance": provenance})
            self.found[i][s] = self._record(params, s, result, False, per_seed)
            self.n_computed += 1
        self.bar.update(done=1, cost=self.cost_of(i))

    def cost_of(self, i: int) -> float:
        """The work of cell i's batch, for the progress bar's estimate of the time left."""
        batch = next(b for b in self.batches if b[0] == i)
        return self.batch_cost(self.cells[i]) * len(batch[2])


def _warn_stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


def run_sweep(
    task: Task,
    cells: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    base_seed: int = 0,
    out: str | os.PathLike | None = None,
    executor: str = "processes",
    jobs: int | None = None,
    scheduler: Any = None,
    use_cache: bool = True,
    progress: bool = True,
    task_version: str = "1",
    cost: Callable[[dict], float] | None = None,
    validate: Validator | None = None,
    warn: Callable[[str], None] = _warn_stderr,
    compute: bool = True,
    label: str | None = None,
    work_after: float = 0.0,
) -> SweepResult:
    """Run ``task`` on every cell for every seed, reusing and filling the results cache.

    Parameters
    ----------
    task : callable
        ``task(params, seeds, base_seed) -> {seed: result dict}``, a top-level
        function; see the module docstring for the contract.
    cells : sequence of dict
        The grid, one JSON-serialisable parameter dict per cell, no duplicates.
    seeds : sequence of int, or one sequence of int per cell
        Seed indices run in every cell (non-negative, no duplicates), or the
        seed indices of each cell.
    base_seed : int, default 0
        The sweep's base seed, passed to the task (use :func:`cell_seed`).
    out : str or path-like, optional
        Results directory.  Each finished ``(cell, seed)`` is written at once,
        atomically, to ``out/cache/<task>/<key>.json`` (see :func:`cache_key`)
        with params, seed, base seed, result, checksum and provenance.
        ``None``: no cache.
    executor : {"processes", "serial", "dask"}, default "processes"
        ``"serial"`` runs in this process; ``"processes"`` uses a
        :class:`~concurrent.futures.ProcessPoolExecutor` (spawn context);
        ``"dask"`` uses ``distributed.Client(scheduler)``.  The numbers do not
        depend on this choice.
    jobs : int, optional
        Worker processes for ``"processes"`` (and for the local cluster dask
        starts when ``scheduler`` is None); default :func:`os.cpu_count`.
    scheduler : str or distributed.Client or cluster, optional
        Dask scheduler address, a ``Client`` (left open) or a cluster object.
        ``None`` starts (and closes) a local cluster.
    use_cache : bool, default True
        ``False`` recomputes every run and overwrites its cache file.
    progress : bool, default True
        Progress bar on stderr.
    task_version : str, default "1"
        Part of the cache key: bump it when the task's numbers change.
    cost : callable, optional
        ``cost(params) -> float``; cells are submitted most expensive first,
        which shortens the tail of a parallel sweep.
    validate : callable, optional
        The task's schema check of one result (raises ValueError); a cached
        result that fails it is recomputed.
    warn : callable
        Receives one line per rejected cache file (default: stderr).
    compute : bool, default True
        False reads the cache only and raises :class:`CacheMiss` if a run is
        missing (a re-plot that must not simulate anything).
    label : str, optional
        Name on the progress bar (default: the task's name).
    work_after : float, default 0
        Work (in ``cost`` units, times seeds) the caller will run after this
        sweep; the progress bar's time left counts it.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        For a bad argument (unknown executor, negative or duplicate seed,
        duplicate or non-JSON cell, ``jobs < 1``).
    ImportError
        For ``executor="dask"`` without the ``distributed`` package.
    KeyboardInterrupt
        Re-raised after pending work is cancelled and workers are stopped;
        every run finished before it is in the cache.

    Notes
    -----
    A cache file that is unreadable, belongs to another run, fails its
    checksum or the task's schema check is recomputed (and reported through
    ``warn``).  For a cell with some seeds cached, only the missing seeds are
    computed, in one call.  A failing task call is recorded in ``failures``
    (nothing is cached for it) and the other cells go on.
    """
    start = time.monotonic()
    name = task_name(task)
    cell_list = _normalise_cells(cells)
    base_seed, seed_lists = _check_arguments(executor, jobs, base_seed, seeds, len(cell_list))
    directory = None if out is None else cache_dir(out, name)
    if directory is not None and compute:
        directory.mkdir(parents=True, exist_ok=True)
    run = _Run(name, str(task_version), cell_list, seed_lists, base_seed, directory, executor, validate)
    run.lookup(use_cache)
    for path, why in run.rejected:
        warn(f"sweep: recomputing {path}: {why}")
    if not compute and run.batches:
        missing = sum(len(b[2]) for b in run.batches)
        first = run.batches[0]
        where = "no cache (out=None)" if directory is None else f"the cache {directory}"
        raise CacheMiss(f"{missing} run(s) of {len(run.batches)} cell(s) are not in {where} (first: "
                        f"{_cell_words(first[1])}, seed {_seed_words(first[2])}); nothing was simulated "
                        "(reading only)")
    if cost is not None:  # sorted() is stable: equal costs keep the grid order
        run.batches.sort(key=lambda b: -float(cost(dict(b[1]))))
        run.batch_cost = lambda params: float(cost(dict(params)))
    todo = sum(run.batch_cost(b[1]) * len(b[2]) for b in run.batches)
    run.bar = Progress(len(cell_list), len(cell_list) - len(run.batches), progress,
                       label=label or name.rsplit(".", 1)[-1], work=todo,
                       after=float(work_after) if cost is not None else 0.0)
    try:
        execute(run.batches, task, base_seed, executor, jobs, scheduler, run.on_done)
    finally:
        run.bar.close()
    records = [run.found[i][s] for i in range(len(cell_list)) for s in seed_lists[i] if s in run.found[i]]
    return SweepResult(
        records=records, n_computed=run.n_computed, n_cached=run.n_cached,
        failures=[f for _, f in sorted(run.failures, key=lambda item: item[0])],
        wall_seconds=time.monotonic() - start, task=name, base_seed=base_seed, cache_dir=directory,
        rejected=run.rejected, executor=executor,
    )
