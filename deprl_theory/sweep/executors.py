"""Where the cells of a sweep run: in this process, in local processes, or on a Dask cluster.

Every executor runs the same worker-side function, :func:`run_batch`, which
never raises for an error of the task (it returns the error instead), and
calls ``on_done(cell_index, outcome)`` in the sweep's process as each batch
finishes. The numbers do not depend on the executor.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..io import to_jsonable

__all__ = ["EXECUTORS", "Batch", "run_batch", "execute", "choose_executor", "connect_scheduler",
           "SchedulerUnreachable", "import_distributed"]

#: the executors, by name
EXECUTORS = ("serial", "processes", "dask")

#: one unit of work: (cell index in the grid, the cell's params, the seed indices to run)
Batch = tuple[int, dict, tuple[int, ...]]
OnDone = Callable[[int, dict[str, Any]], None]


class SchedulerUnreachable(ConnectionError):
    """No Dask scheduler answered at the given address within the timeout."""


def choose_executor(jobs: int | None, scheduler: Any) -> str:
    """The executor a command line asks for: Dask with a scheduler, serial with one job, else processes."""
    if scheduler is not None:
        return "dask"
    return "serial" if jobs == 1 else "processes"


def run_batch(task: Callable, params: dict, seeds: tuple[int, ...], base_seed: int) -> dict[str, Any]:
    """Run ``task`` on one cell in the worker; never raises for a task error.

    Returns ``{"ok": True, "results": {seed: result}, "seconds"}`` or
    ``{"ok": False, "error", "traceback", "seconds"}``.
    """
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


def _infrastructure_failure(exc: BaseException) -> dict[str, Any]:
    return {
        "ok": False,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
        "seconds": 0.0,
    }


def execute(batches: list[Batch], task: Callable, base_seed: int, executor: str, jobs: int | None,
            scheduler: Any, on_done: OnDone) -> None:
    """Run every batch and call ``on_done(cell index, outcome)`` as each finishes."""
    if not batches:
        return
    if executor == "serial":
        for index, params, seeds in batches:
            on_done(index, run_batch(task, params, seeds, base_seed))
    elif executor == "processes":
        _execute_processes(batches, task, base_seed, jobs, on_done)
    else:
        _execute_dask(batches, task, base_seed, jobs, scheduler, on_done)


# --------------------------------------------------------------------------- local processes
def _init_worker(parent_pid: int, pids) -> None:
    """Set up a pool worker: report its pid, ignore Ctrl-C, and exit if the sweep process dies."""
    # The parent stops running workers itself on Ctrl-C; it learns their pids from this queue.
    pids.put(os.getpid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # A parent killed with SIGKILL cannot stop its workers, which would then wait
    # on the task queue forever; watching for re-parenting ends them within a second.
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


def _terminate(pids) -> None:
    """Stop every worker that reported its pid (a cancelled future does not stop a running cell)."""
    while not pids.empty():
        try:
            os.kill(pids.get(), signal.SIGTERM)
        except (ProcessLookupError, OSError):
            pass


@contextmanager
def _caller_script_not_rerun(task: Callable) -> Iterator[None]:
    """While workers start, hide the caller's script from ``spawn`` when the task does not live in it.

    A spawned worker re-runs the caller's ``__main__`` (by path, or by module
    name under ``python -m``) before it unpickles anything. A task importable
    from a module of its own does not need that, and a script without an
    ``if __name__ == "__main__":`` guard (or one read from stdin) would start
    the sweep again in every worker and fail. A task defined in the script
    itself still needs it, and then nothing is hidden.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(task, "__module__", "__main__") == "__main__":
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _main_script_hint(task: Callable, exc: BaseException) -> str:
    """Why a pool broke when the task lives in the running script, and the ways out ('' otherwise)."""
    from concurrent.futures.process import BrokenProcessPool

    main = sys.modules.get("__main__")
    if not isinstance(exc, BrokenProcessPool) or getattr(task, "__module__", "") != "__main__" \
            or getattr(main, "__file__", None) is None:
        return ""
    return ("the task is defined in the script being run, so each worker runs the script again as it starts; "
            "put the sweep under if __name__ == '__main__':, move the task to a module of its own, "
            "or use executor='serial'")


def _execute_processes(batches: list[Batch], task: Callable, base_seed: int, jobs: int | None,
                       on_done: OnDone) -> None:
    workers = min(jobs or os.cpu_count() or 1, len(batches))
    # "spawn" everywhere: no fork-after-threads hazards (BLAS, dask, the caller's own
    # threads) and the same behaviour on Linux, macOS and Windows.  The price: tasks
    # must be importable by module name, which dask needs anyway.
    context = get_context("spawn")
    pids = context.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(), pids))
    futures = {}
    try:
        with _caller_script_not_rerun(task):  # the workers start at the first submits
            for index, params, seeds in batches:
                futures[pool.submit(run_batch, task, params, seeds, base_seed)] = index
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as exc:  # e.g. a worker died (BrokenProcessPool) or pickling failed
                outcome = _infrastructure_failure(exc)
                hint = _main_script_hint(task, exc)
                if hint:
                    outcome["error"] = f"{outcome['error']} ({hint})"
            on_done(futures[future], outcome)
    except BaseException:
        for future in futures:
            future.cancel()
        _terminate(pids)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# --------------------------------------------------------------------------- dask
def import_distributed():
    """The ``distributed`` module, or ImportError saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "executor='dask' needs the 'distributed' package: install the 'dask' extra, "
            "pip install 'deprl-theory[dask]'"
        ) from exc
    return distributed


def connect_scheduler(address: str, timeout: float = 10.0):
    """A ``distributed.Client`` connected to ``address``, or :class:`SchedulerUnreachable` after ``timeout`` s.

    Raises
    ------
    ValueError
        For an address that is not ``tcp://HOST:PORT`` (or another scheme Dask knows).
    SchedulerUnreachable
        When nothing answers within ``timeout`` seconds.
    """
    distributed = import_distributed()
    if not isinstance(address, str) or "://" not in address or not address.rsplit(":", 1)[-1].isdigit():
        raise ValueError(f"scheduler address must look like tcp://HOST:PORT, got {address!r}")
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(f"no Dask scheduler answered at {address} within {timeout:g} s") from exc


def _execute_dask(batches: list[Batch], task: Callable, base_seed: int, jobs: int | None, scheduler: Any,
                  on_done: OnDone) -> None:
    distributed = import_distributed()
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
        client = distributed.Client(scheduler) if not isinstance(scheduler, str) else connect_scheduler(scheduler)
        owned = [client]
    futures: dict[Any, int] = {}
    try:
        for rank, (index, params, seeds) in enumerate(batches):
            # pure=False: identical cells are distinct work; priority keeps cost order.
            future = client.submit(
                run_batch, task, params, seeds, base_seed,
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
