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
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

import numpy as np

from ._rng import derive_seed
from .io import to_jsonable, write_text_atomic

__all__ = [
    "Task",
    "SweepResult",
    "run_sweep",
    "cell_seed",
    "canonical_json",
    "cache_key",
    "tidy_rows",
]

Task = Callable[[dict, tuple, int], Mapping[int, Mapping[str, Any]]]

_EXECUTORS = ("serial", "processes", "dask")


# --------------------------------------------------------------------------- seeds and keys
def canonical_json(obj: Any) -> str:
    """The one JSON spelling of ``obj`` used for seeds and cache keys.

    Keys sorted, no whitespace, numpy scalars converted, NaN rejected.  Note
    that ``8`` and ``8.0`` are different cells: give each parameter one type.

    Raises
    ------
    ValueError
        If ``obj`` is not JSON-serialisable or contains a non-finite float.

    Examples
    --------
    >>> canonical_json({"N": np.int64(8), "K": 10})
    '{"K":10,"N":8}'
    """
    try:
        return json.dumps(
            to_jsonable(obj, nan_to_null=False),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameters must be JSON-serialisable and finite: {exc}") from None


def cell_seed(base_seed: int, params: Mapping[str, Any], seed_index: int) -> np.random.SeedSequence:
    """The independent random stream of seed ``seed_index`` of the cell ``params``.

    Built with :func:`deprl_theory._rng.derive_seed` from
    ``(base_seed, "cell", canonical_json(params), seed_index)``, so it does not
    change when other cells or seeds are added to a sweep, and is the same in
    every process and on every machine.

    Parameters
    ----------
    base_seed : int
        The sweep's base seed (``--seed``), non-negative.
    params : mapping
        The cell's parameters.  To share a stream across cells (common random
        numbers, e.g. the same data for every N), pass only the shared subset.
    seed_index : int
        Non-negative seed index.

    Returns
    -------
    numpy.random.SeedSequence
        Use ``numpy.random.default_rng(cell_seed(...))``, or ``.spawn`` it for
        sub-streams.

    Examples
    --------
    >>> a = np.random.default_rng(cell_seed(0, {"N": 8}, 1)).random()
    >>> b = np.random.default_rng(cell_seed(0, {"N": 8}, 1)).random()
    >>> a == b, a == np.random.default_rng(cell_seed(0, {"N": 8}, 2)).random()
    (True, False)
    """
    index = _check_index(seed_index, "seed_index")
    return derive_seed(_check_index(base_seed, "base_seed"), "cell", canonical_json(params), index)


def _check_index(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _task_name(task: Callable) -> str:
    module = getattr(task, "__module__", None)
    qualname = getattr(task, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(
            f"task must be a top-level function (picklable, with a stable name), got {task!r}"
        )
    return f"{module}.{qualname}"


def cache_key(task_name: str, task_version: str, params: Mapping[str, Any], seed: int, base_seed: int) -> str:
    """SHA-256 hex digest naming the cache file of one ``(cell, seed)`` run.

    The digest covers the canonical JSON of ``{task, task_version, params,
    seed, base_seed}``; nothing else (not the code, not the executor).
    """
    blob = canonical_json(
        {
            "task": task_name,
            "task_version": str(task_version),
            "params": params,
            "seed": int(seed),
            "base_seed": int(base_seed),
        }
    )
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- result
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
    """

    records: list[dict[str, Any]]
    n_computed: int
    n_cached: int
    failures: list[dict[str, Any]]
    wall_seconds: float
    task: str
    base_seed: int
    cache_dir: Path | None = None

    def __len__(self) -> int:
        return len(self.records)

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


# --------------------------------------------------------------------------- cache files
def _read_cache(path: Path, expect: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cached entry at ``path``, or None when missing, unreadable or not ours."""
    try:
        with open(path, encoding="utf-8") as fh:
            entry = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("result"), dict):
        return None
    if any(entry.get(k) != v for k, v in expect.items()):
        return None
    return entry


def _dump_entry(entry: Mapping[str, Any]) -> str:
    # NaN/inf are kept as Python's JSON literals so a cached result equals a fresh one.
    return json.dumps(entry, indent=1, allow_nan=True) + "\n"


# --------------------------------------------------------------------------- worker side
def _run_batch(task: Task, params: dict, seeds: tuple[int, ...], base_seed: int) -> dict[str, Any]:
    """Run ``task`` on one cell in the worker; never raises for a task error."""
    start = time.perf_counter()
    try:
        raw = task(dict(params), tuple(seeds), base_seed)
        if not isinstance(raw, Mapping):
            raise TypeError(f"task must return a dict {{seed: result}}, got {type(raw).__name__}")
        results: dict[int, Any] = {}
        for key, value in raw.items():
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                results[int(key)] = value
        missing = [s for s in seeds if s not in results]
        if missing:
            raise KeyError(f"task returned no result for seed(s) {missing}")
        # The JSON round trip makes a fresh result identical to its cached copy.
        out = {}
        for s in seeds:
            if not isinstance(results[s], Mapping):
                raise TypeError(
                    f"result for seed {s} must be a dict, got {type(results[s]).__name__}"
                )
            out[s] = json.loads(json.dumps(to_jsonable(results[s], nan_to_null=False)))
    except Exception as exc:
        return {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - start,
        }
    return {"ok": True, "results": out, "seconds": time.perf_counter() - start}


def _init_worker(parent_pid: int) -> None:
    """Set up a pool worker: ignore Ctrl-C, and exit if the sweep process dies."""
    # Ctrl-C reaches the whole process group; only the parent should react, then
    # it terminates the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # A parent killed with SIGKILL cannot stop its workers, which would then wait
    # on the task queue forever; watching for re-parenting ends them within a second.
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


# --------------------------------------------------------------------------- progress
class _Progress:
    """A text progress bar on stderr: redrawn in place on a TTY, sparse lines otherwise."""

    def __init__(
        self, total: int, cached: int, enabled: bool, label: str = "", stream: TextIO | None = None
    ):
        self.label = f"{label} " if label else ""
        self._width = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.cached, self.done, self.failed = total, cached, cached, 0
        self.start = time.monotonic()
        self._last = -1e9
        self.update(force=True)

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        computed = self.done - self.cached
        remaining = self.total - self.done
        if remaining == 0:
            eta = "0:00"
        else:
            eta = "?" if computed == 0 else _fmt_seconds(elapsed / computed * remaining)
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.label}[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} cells "
            f"({self.cached} cached{failed}) {_fmt_seconds(elapsed)} elapsed, ETA {eta}"
        )

    def update(self, *, done: int = 0, failed: int = 0, force: bool = False) -> None:
        self.done += done
        self.failed += failed
        if not self.enabled:
            return
        now = time.monotonic()
        finished = self.done >= self.total
        if self.tty:
            if force or finished or now - self._last >= 0.1:
                line = self._line()
                # Pad over the previous, possibly longer, line.
                self.stream.write("\r" + line.ljust(self._width))
                self._width = len(line)
                if finished:
                    self.stream.write("\n")
                self.stream.flush()
                self._last = now
        elif finished or now - self._last >= 30.0:
            self.stream.write(self._line() + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        if self.enabled and self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()


def _fmt_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --------------------------------------------------------------------------- executors
def _execute(
    batches: list[tuple[int, dict, tuple[int, ...]]],
    task: Task,
    base_seed: int,
    executor: str,
    jobs: int | None,
    scheduler: Any,
    on_done: Callable[[int, dict[str, Any]], None],
) -> None:
    """Run every batch ``(cell index, params, seeds)`` and call ``on_done`` as each finishes."""
    if not batches:
        return
    if executor == "serial":
        for index, params, seeds in batches:
            on_done(index, _run_batch(task, params, seeds, base_seed))
        return
    if executor == "processes":
        _execute_processes(batches, task, base_seed, jobs, on_done)
        return
    _execute_dask(batches, task, base_seed, jobs, scheduler, on_done)


def _infrastructure_failure(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
        "seconds": 0.0,
    }


def _execute_processes(batches, task, base_seed, jobs, on_done) -> None:
    workers = min(jobs or os.cpu_count() or 1, len(batches))
    # "spawn" everywhere: no fork-after-threads hazards (BLAS, dask, the caller's own
    # threads) and the same behaviour on Linux, macOS and Windows.  The price: tasks
    # must be importable by module name, which dask needs anyway.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )
    futures = {}
    try:
        for index, params, seeds in batches:
            futures[pool.submit(_run_batch, task, params, seeds, base_seed)] = index
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # e.g. a worker died (BrokenProcessPool) or pickling failed
                outcome = _infrastructure_failure(exc)
            on_done(futures[future], outcome)
    except BaseException:
        for future in futures:
            future.cancel()
        # Running cells would otherwise be waited for at interpreter exit.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                process.terminate()
            except Exception:
                pass
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "executor='dask' needs the 'distributed' package: install the 'dask' extra, "
            "pip install 'deprl-theory[dask]'"
        ) from exc
    return distributed


def _execute_dask(batches, task, base_seed, jobs, scheduler, on_done) -> None:
    distributed = _import_distributed()
    owned: list[Any] = []
    if isinstance(scheduler, distributed.Client):
        client = scheduler
    elif scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=min(jobs or os.cpu_count() or 1, len(batches)),
            threads_per_worker=1,
            dashboard_address=None,
        )
        client = distributed.Client(cluster)
        owned = [client, cluster]
    else:
        client = distributed.Client(scheduler)
        owned = [client]
    futures: dict[Any, int] = {}
    try:
        for rank, (index, params, seeds) in enumerate(batches):
            # pure=False: identical cells are distinct work; priority keeps cost order.
            future = client.submit(
                _run_batch, task, params, seeds, base_seed,
                pure=False, priority=len(batches) - rank,
            )
            futures[future] = index
        for future in distributed.as_completed(list(futures)):
            try:
                outcome = future.result()
            except Exception as exc:
                outcome = _infrastructure_failure(exc)
            on_done(futures[future], outcome)
    except BaseException:
        try:
            client.cancel(list(futures))
        except Exception:
            pass
        raise
    finally:
        for obj in owned:
            try:
                obj.close()
            except Exception:
                pass


# --------------------------------------------------------------------------- the sweep
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
) -> SweepResult:
    """Run ``task`` on every cell for every seed, reusing and filling the results cache.

    Parameters
    ----------
    task : callable
        ``task(params, seeds, base_seed) -> {seed: result dict}``, a top-level
        function; see the module docstring for the contract.
    cells : sequence of dict
        The grid, one JSON-serialisable parameter dict per cell, no duplicates.
    seeds : sequence of int
        Seed indices run in every cell (non-negative, no duplicates).
    base_seed : int, default 0
        The sweep's base seed, passed to the task (use :func:`cell_seed`).
    out : str or path-like, optional
        Results directory.  Each finished ``(cell, seed)`` is written at once,
        atomically, to ``out/cache/<task>/<key>.json`` (see :func:`cache_key`)
        with params, seed, base seed, result and provenance.  ``None``: no cache.
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
    A corrupt cache file (e.g. truncated by hand) is treated as missing.  For
    a cell with some seeds cached, only the missing seeds are computed, in
    one call.  A failing task call is recorded in ``failures`` (nothing is
    cached for it) and the other cells go on.
    """
    start = time.monotonic()
    name = _task_name(task)
    if executor not in _EXECUTORS:
        raise ValueError(f"executor must be one of {_EXECUTORS}, got {executor!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    base_seed = _check_index(base_seed, "base_seed")
    seed_list = [_check_index(s, "seed") for s in seeds]
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be distinct, got {seed_list}")
    if executor == "dask":
        _import_distributed()
    task_version = str(task_version)

    # Normalise params through JSON so a task sees the same dict fresh or cached.
    cell_list: list[dict] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if not isinstance(cell, Mapping):
            raise ValueError(f"cell {i} must be a dict of parameters, got {type(cell).__name__}")
        blob = canonical_json(cell)
        if blob in seen:
            raise ValueError(f"cell {i} duplicates cell {seen[blob]}: {blob}")
        seen[blob] = i
        cell_list.append(json.loads(blob))

    cache_dir = None
    if out is not None:
        cache_dir = Path(out) / "cache" / re.sub(r"[^A-Za-z0-9._-]", "_", name)
        cache_dir.mkdir(parents=True, exist_ok=True)

    def path_of(params: dict, seed: int) -> Path | None:
        if cache_dir is None:
            return None
        return cache_dir / f"{cache_key(name, task_version, params, seed, base_seed)}.json"

    # cell index -> seed -> record
    found: list[dict[int, dict[str, Any]]] = [{} for _ in cell_list]
    batches: list[tuple[int, dict, tuple[int, ...]]] = []
    n_cached = 0
    for i, params in enumerate(cell_list):
        missing = []
        for s in seed_list:
            path = path_of(params, s)
            entry = None
            if path is not None and use_cache:
                expect = {"task": name, "task_version": task_version, "params": params,
                          "seed": s, "base_seed": base_seed}
                entry = _read_cache(path, expect)
            if entry is None:
                missing.append(s)
                continue
            n_cached += 1
            found[i][s] = {
                "params": dict(params),
                "seed": s,
                "result": entry["result"],
                "cached": True,
                "seconds": float(entry.get("provenance", {}).get("seconds", 0.0)),
            }
        if missing:
            batches.append((i, params, tuple(missing)))
    if cost is not None:
        # sorted() is stable: equal costs keep the grid order.
        batches.sort(key=lambda b: -float(cost(dict(b[1]))))

    seeds_of = {i: batch_seeds for i, _, batch_seeds in batches}
    n_full_cached = len(cell_list) - len(batches)
    bar = _Progress(len(cell_list), n_full_cached, progress, label=name.rsplit(".", 1)[-1])
    failures: list[tuple[int, dict[str, Any]]] = []
    n_computed = 0
    host = socket.gethostname()

    def on_done(i: int, outcome: dict[str, Any]) -> None:
        nonlocal n_computed
        params = cell_list[i]
        batch_seeds = seeds_of[i]
        if not outcome["ok"]:
            failures.append((i, {
                "params": dict(params),
                "seeds": list(batch_seeds),
                "error": outcome["error"],
                "traceback": outcome.get("traceback", ""),
            }))
            bar.update(done=1, failed=1)
            return
        per_seed = outcome["seconds"] / len(batch_seeds)
        finished = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for s in batch_seeds:
            result = outcome["results"][s]
            path = path_of(params, s)
            if path is not None:
                entry = {
                    "task": name,
                    "task_version": task_version,
                    "params": params,
                    "seed": s,
                    "base_seed": base_seed,
                    "result": result,
                    "provenance": {
                        "seconds": per_seed,
                        "batch_seconds": outcome["seconds"],
                        "batch_seeds": list(batch_seeds),
                        "finished": finished,
                        "hostname": host,
                        "executor": executor,
                    },
                }
                write_text_atomic(path, _dump_entry(entry))
            found[i][s] = {"params": dict(params), "seed": s, "result": result,
                           "cached": False, "seconds": per_seed}
            n_computed += 1
        bar.update(done=1)

    try:
        _execute(batches, task, base_seed, executor, jobs, scheduler, on_done)
    finally:
        bar.close()

    records = [found[i][s] for i in range(len(cell_list)) for s in seed_list if s in found[i]]
    return SweepResult(
        records=records,
        n_computed=n_computed,
        n_cached=n_cached,
        failures=[f for _, f in sorted(failures, key=lambda item: item[0])],
        wall_seconds=time.monotonic() - start,
        task=name,
        base_seed=base_seed,
        cache_dir=cache_dir,
    )


# --------------------------------------------------------------------------- tidy table
def tidy_rows(
    records: SweepResult | Iterable[Mapping[str, Any]], *, trace: str | None = "trace"
) -> list[dict[str, Any]]:
    """Flatten sweep records into a tidy long table (one row per run and evaluation point).

    Each row holds the cell's params, ``seed``, and the result's scalar
    entries, with nested dicts (e.g. ``"metrics"``) merged in by their own
    keys.  If the result has a ``trace`` dict of equal-length lists (e.g.
    ``{"k": [...], "consensus_error": [...]}``) the run gives one row per
    trace point, with the trace's keys as columns; otherwise one row.

    Parameters
    ----------
    records : SweepResult or iterable of records
    trace : str or None, default "trace"
        Result key holding per-evaluation-point lists; ``None`` disables.

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        If two entries would give the same column name, or trace lists differ
        in length.

    Examples
    --------
    >>> rec = {"params": {"N": 4}, "seed": 0,
    ...        "result": {"metrics": {"err": 0.5}, "diverged": False,
    ...                   "trace": {"k": [0, 10], "gap": [1.0, 0.1]}}}
    >>> tidy_rows([rec])
    [{'N': 4, 'seed': 0, 'err': 0.5, 'diverged': False, 'k': 0, 'gap': 1.0}, \
{'N': 4, 'seed': 0, 'err': 0.5, 'diverged': False, 'k': 10, 'gap': 0.1}]
    """
    if isinstance(records, SweepResult):
        records = records.records
    rows: list[dict[str, Any]] = []

    def put(row: dict[str, Any], key: str, value: Any) -> None:
        if key in row:
            raise ValueError(f"column {key!r} appears twice (params, result or trace)")
        row[key] = value

    def merge(row: dict[str, Any], obj: Mapping[str, Any]) -> None:
        for key, value in obj.items():
            if isinstance(value, Mapping):
                merge(row, value)
            else:
                put(row, key, value)

    for rec in records:
        base: dict[str, Any] = {}
        merge(base, rec["params"])
        put(base, "seed", rec["seed"])
        result = dict(rec["result"])
        series = result.pop(trace, None) if trace is not None else None
        merge(base, result)
        if not series:
            rows.append(base)
            continue
        lengths = {k: len(v) for k, v in series.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"trace lists differ in length: {lengths}")
        for t in range(next(iter(lengths.values()))):
            row = dict(base)
            for key, values in series.items():
                put(row, key, values[t])
            rows.append(row)
    return rows
