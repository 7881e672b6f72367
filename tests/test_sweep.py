"""The sweep layer: same numbers on every executor, a sound cache, survival of Ctrl-C and kill -9."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from deprl_theory.io import (
    provenance,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from deprl_theory.sweep import (
    SweepResult,
    cache_key,
    canonical_json,
    cell_seed,
    run_sweep,
    tidy_rows,
)

LOG_ENV = "DEPRL_TEST_SWEEP_LOG"
SLEEP_ENV = "DEPRL_TEST_SWEEP_SLEEP"  # slows the task without changing its params or numbers
REPO = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- toy tasks
def toy_task(params: dict, seeds: tuple, base_seed: int) -> dict:
    """Draws from each seed's own stream; logs the call when LOG_ENV names a directory."""
    log = os.environ.get(LOG_ENV)
    if log:
        entry = {"params": params, "seeds": list(seeds), "t": time.time_ns(), "pid": os.getpid()}
        Path(log, f"{uuid.uuid4().hex}.json").write_text(json.dumps(entry))
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
    if params.get("crash"):
        os._exit(3)  # a segfault or the OOM killer, as far as the pool can tell
    if params.get("fail"):
        raise ValueError(f"boom at N={params['N']}")
    out = {}
    for s in seeds:
        x = np.random.default_rng(cell_seed(base_seed, params, s)).standard_normal(params["N"])
        out[s] = {
            "metrics": {"mean": float(x.mean()), "norm": np.linalg.norm(x), "inf": float("inf")},
            "diverged": bool(abs(x.mean()) > 1.0),
            "trace": {"k": [0, 1], "x": x[:2]},
        }
    return out


def calls(log_dir: Path) -> list[dict]:
    entries = [json.loads(p.read_text()) for p in log_dir.glob("*.json")]
    return sorted(entries, key=lambda e: e["t"])


def numbers(result: SweepResult) -> dict:
    return {(canonical_json(r["params"]), r["seed"]): r["result"] for r in result.records}


@pytest.fixture
def log_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "calls"
    d.mkdir()
    monkeypatch.setenv(LOG_ENV, str(d))
    return d


CELLS = [{"N": n, "K": 10} for n in (2, 3, 5)]


@pytest.fixture(scope="module")
def reference() -> SweepResult:
    return run_sweep(toy_task, CELLS, [0, 1, 2], base_seed=7, executor="serial", progress=False)


# --------------------------------------------------------------------------- seeds
def test_cell_seed_depends_only_on_base_params_and_index():
    draw = lambda *a: np.random.default_rng(cell_seed(*a)).random()  # noqa: E731
    assert draw(0, {"N": 8, "K": 5}, 1) == draw(0, {"K": 5, "N": np.int64(8)}, 1)
    others = [draw(1, {"N": 8, "K": 5}, 1), draw(0, {"N": 9, "K": 5}, 1), draw(0, {"N": 8, "K": 5}, 2)]
    assert len({draw(0, {"N": 8, "K": 5}, 1), *others}) == 4
    with pytest.raises(ValueError, match="seed_index"):
        cell_seed(0, {"N": 8}, -1)


def test_cache_key_covers_every_part():
    keys = {
        cache_key("t", "1", {"N": 2}, 0, 0),
        cache_key("u", "1", {"N": 2}, 0, 0),
        cache_key("t", "2", {"N": 2}, 0, 0),
        cache_key("t", "1", {"N": 3}, 0, 0),
        cache_key("t", "1", {"N": 2}, 1, 0),
        cache_key("t", "1", {"N": 2}, 0, 1),
    }
    assert len(keys) == 6


# --------------------------------------------------------------------------- executors
def test_serial_result_shape(reference):
    assert len(reference) == 9 and reference.n_computed == 9 and reference.n_cached == 0
    assert [(r["params"]["N"], r["seed"]) for r in reference.records] == [
        (n, s) for n in (2, 3, 5) for s in (0, 1, 2)
    ]
    rec = reference.records_for(N=3)[0]
    assert rec["result"]["metrics"]["inf"] == float("inf")
    assert isinstance(rec["result"]["trace"]["x"], list)  # numpy converted to JSON types
    assert reference.ok and reference.cache_dir is None


def test_processes_give_the_same_numbers(reference):
    got = run_sweep(toy_task, CELLS, [0, 1, 2], base_seed=7, executor="processes", jobs=2,
                    progress=False)
    assert numbers(got) == numbers(reference)
    assert [r["params"] for r in got.records] == [r["params"] for r in reference.records]


def test_dask_gives_the_same_numbers(reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = run_sweep(toy_task, CELLS, [0, 1, 2], base_seed=7, executor="dask",
                        scheduler=client, progress=False)
        assert client.status == "running"  # a caller's client is left open
    assert numbers(got) == numbers(reference)


def test_other_base_seed_gives_other_numbers(reference):
    got = run_sweep(toy_task, CELLS, [0, 1, 2], base_seed=8, executor="serial", progress=False)
    assert all(numbers(got)[k] != v for k, v in numbers(reference).items())


def test_dask_missing_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match="install the 'dask' extra"):
        run_sweep(toy_task, CELLS, [0], executor="dask", progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"executor": "threads"}, "executor"),
        ({"jobs": 0}, "jobs"),
        ({"seeds": [0, 0]}, "distinct"),
        ({"seeds": [-1]}, "seed"),
        ({"cells": [{"N": 2}, {"N": 2}]}, "duplicates"),
        ({"cells": [{"N": float("nan")}]}, "finite"),
        ({"base_seed": -3}, "base_seed"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"cells": CELLS, "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=match):
        run_sweep(toy_task, args.pop("cells"), args.pop("seeds"), progress=False, **args)


def test_task_must_be_top_level():
    with pytest.raises(TypeError, match="top-level"):
        run_sweep(lambda p, s, b: {}, CELLS, [0], executor="serial", progress=False)


# --------------------------------------------------------------------------- cache
def test_growing_the_grid_keeps_numbers_and_computes_only_what_is_new(tmp_path, log_dir, reference):
    small = run_sweep(toy_task, CELLS[:2], [0, 1], base_seed=7, out=tmp_path, executor="serial",
                      progress=False)
    assert small.n_computed == 4 and len(calls(log_dir)) == 2
    files = sorted(small.cache_dir.glob("*.json"))
    assert len(files) == 4
    entry = json.loads(files[0].read_text())
    assert {"params", "seed", "base_seed", "result", "provenance"} <= set(entry)
    assert entry["provenance"]["seconds"] >= 0 and "finished" in entry["provenance"]

    for f in log_dir.iterdir():
        f.unlink()
    big = run_sweep(toy_task, CELLS, [0, 1, 2], base_seed=7, out=tmp_path, executor="serial",
                    progress=False)
    assert (big.n_cached, big.n_computed) == (4, 5)
    # One batched call per cell, each asking only for its missing seeds.
    asked = sorted((c["params"]["N"], c["seeds"]) for c in calls(log_dir))
    assert asked == [(2, [2]), (3, [2]), (5, [0, 1, 2])]
    assert numbers(big) == numbers(reference)
    assert [r["cached"] for r in big.records_for(N=2)] == [True, True, False]

    for f in log_dir.iterdir():
        f.unlink()
    again = run_sweep(toy_task, CELLS, [0, 1, 2], base_seed=7, out=tmp_path, executor="processes",
                      jobs=2, progress=False)
    assert (again.n_cached, again.n_computed) == (9, 0) and calls(log_dir) == []
    assert numbers(again) == numbers(reference)


def test_cache_is_separate_per_base_seed_and_task_version(tmp_path, log_dir):
    kw = dict(out=tmp_path, executor="serial", progress=False)
    run_sweep(toy_task, CELLS[:1], [0], base_seed=1, **kw)
    assert run_sweep(toy_task, CELLS[:1], [0], base_seed=2, **kw).n_computed == 1
    assert run_sweep(toy_task, CELLS[:1], [0], base_seed=1, task_version="2", **kw).n_computed == 1
    assert run_sweep(toy_task, CELLS[:1], [0], base_seed=1, **kw).n_cached == 1


def test_use_cache_false_recomputes_and_overwrites(tmp_path, log_dir):
    kw = dict(base_seed=7, out=tmp_path, executor="serial", progress=False)
    first = run_sweep(toy_task, CELLS, [0], **kw)
    stamps = {p: json.loads(p.read_text())["provenance"]["finished"]
              for p in first.cache_dir.glob("*.json")}
    time.sleep(0.01)
    again = run_sweep(toy_task, CELLS, [0], use_cache=False, **kw)
    assert (again.n_computed, again.n_cached) == (3, 0) and len(calls(log_dir)) == 6
    assert numbers(again) == numbers(first)
    assert all(json.loads(p.read_text())["provenance"]["finished"] != t for p, t in stamps.items())


def test_corrupt_or_foreign_cache_files_are_recomputed(tmp_path, log_dir, reference):
    kw = dict(base_seed=7, out=tmp_path, executor="serial", progress=False)
    first = run_sweep(toy_task, CELLS, [0, 1, 2], **kw)
    files = sorted(first.cache_dir.glob("*.json"))
    files[0].write_text(files[0].read_text()[:40])  # truncated
    files[1].write_text("")  # empty
    doctored = json.loads(files[2].read_text())
    doctored["seed"] += 100  # valid JSON that belongs to another run
    files[2].write_text(json.dumps(doctored))
    (first.cache_dir / f".{files[3].name}.abc123.tmp").write_text("{")  # stray temp file
    again = run_sweep(toy_task, CELLS, [0, 1, 2], **kw)
    assert (again.n_cached, again.n_computed) == (6, 3)
    assert numbers(again) == numbers(reference)
    assert all(json.loads(p.read_text())["seed"] < 3 for p in files)


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_a_failing_cell_is_reported_and_the_others_complete(tmp_path, executor, reference):
    cells = CELLS + [{"N": 4, "K": 10, "fail": True}]
    got = run_sweep(toy_task, cells, [0, 1, 2], base_seed=7, out=tmp_path, executor=executor,
                    jobs=2, progress=False)
    assert numbers(got) == numbers(reference)
    assert len(got.failures) == 1 and not got.ok
    failure = got.failures[0]
    assert failure["params"]["N"] == 4 and failure["seeds"] == [0, 1, 2]
    assert failure["error"] == "ValueError: boom at N=4" and "toy_task" in failure["traceback"]
    with pytest.raises(RuntimeError, match="boom at N=4"):
        got.raise_for_failures()
    # Nothing cached for the failed cell: a re-run tries it again.
    again = run_sweep(toy_task, cells, [0, 1, 2], base_seed=7, out=tmp_path, executor="serial",
                      progress=False)
    assert (again.n_cached, again.n_computed, len(again.failures)) == (9, 0, 1)


def test_a_dying_worker_is_reported_not_a_hang(tmp_path):
    cells = [{"N": 4, "K": 10, "crash": True}] + CELLS
    got = run_sweep(toy_task, cells, [0], executor="processes", jobs=1, progress=False)
    assert got.failures[0]["params"].get("crash") is True  # failures come in grid order
    assert all("BrokenProcessPool" in f["error"] for f in got.failures)
    assert len(got.records) + sum(len(f["seeds"]) for f in got.failures) == 4


def test_cost_puts_expensive_cells_first(log_dir):
    run_sweep(toy_task, CELLS, [0], executor="serial", progress=False, cost=lambda p: p["N"])
    assert [c["params"]["N"] for c in calls(log_dir)] == [5, 3, 2]


# --------------------------------------------------------------------------- interruption
SCRIPT = """
import signal, sys
# Behave like an interactive run even if this test itself runs as a background job
# (SIGINT ignored) or under a runner that blocks the signal (a blocked mask is inherited).
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
sys.path[:0] = [{tests!r}, {repo!r}]
from importlib import import_module
toy_task = import_module({module!r}).toy_task
from deprl_theory.sweep import run_sweep
cells = [{{"N": n, "K": 10}} for n in range(2, 10)]
run_sweep(toy_task, cells, [0, 1], base_seed=3, out={out!r}, executor={executor!r}, jobs=2,
          progress=False)
"""
SLOW_CELLS = [{"N": n, "K": 10} for n in range(2, 10)]


def interrupt_midway(out: Path, executor: str, sig: int, *, whole_group: bool = True,
                     log: Path | None = None) -> tuple[int, bytes]:
    """Start the slow sweep in a subprocess, send ``sig`` once two cells are cached.

    Returns the number of cache entries left and the subprocess's stderr.
    """
    if sys.platform == "win32":
        pytest.skip("process groups and SIGKILL are POSIX")
    script = SCRIPT.format(tests=str(TESTS_DIR), repo=str(REPO), module=toy_task.__module__,
                           out=str(out), executor=executor)
    env = {**os.environ, "PYTHONPATH": str(REPO), SLEEP_ENV: "0.4"}
    env.pop(LOG_ENV, None)
    if log is not None:
        env[LOG_ENV] = str(log)
    # A new session stands for the terminal's foreground job: Ctrl-C reaches every process.
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = out / "cache" / f"{toy_task.__module__}.toy_task"
    deadline = time.monotonic() + 30
    while len(list(cache.glob("*.json"))) < 4:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no cell finished in time: {proc.communicate()[1].decode()}")
        time.sleep(0.02)
    if whole_group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0
    return len(list(cache.glob("*.json"))), err


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for a non-reaping init is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("executor", ["serial", "processes"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_sweep_resumes_without_recomputing(tmp_path, executor, sig):
    out = tmp_path / "results"
    cache = out / "cache" / f"{toy_task.__module__}.toy_task"
    finished, err = interrupt_midway(out, executor, sig)
    if sig == signal.SIGINT:
        assert b"KeyboardInterrupt" in err
    assert 4 <= finished < 16, "the sweep was not interrupted mid-way"

    resumed = run_sweep(toy_task, SLOW_CELLS, [0, 1], base_seed=3, out=out, executor="serial",
                        progress=False)
    assert (resumed.n_cached, resumed.n_computed) == (finished, 16 - finished)
    assert len(resumed) == 16 and resumed.ok
    uninterrupted = run_sweep(toy_task, SLOW_CELLS, [0, 1], base_seed=3, executor="serial",
                              progress=False)
    assert numbers(resumed) == numbers(uninterrupted)
    # Every file in the cache is a complete entry; temp files never look like entries.
    for path in cache.iterdir():
        if path.suffix == ".json":
            assert json.loads(path.read_text())["result"]["metrics"]
        else:
            assert path.name.startswith(".") and path.name.endswith(".tmp")


def test_workers_exit_when_the_sweep_process_is_killed(tmp_path):
    log = tmp_path / "calls"
    log.mkdir()
    interrupt_midway(tmp_path / "results", "processes", signal.SIGKILL, whole_group=False, log=log)
    workers = {c["pid"] for c in calls(log)}
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = [pid for pid in workers if alive(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "pool workers outlived the killed sweep"


# --------------------------------------------------------------------------- progress, tidy
def test_progress_goes_to_stderr_only_when_asked(capsys):
    run_sweep(toy_task, CELLS, [0], executor="serial", progress=True)
    err = capsys.readouterr().err
    assert "3/3 cells" in err and "0 cached" in err
    run_sweep(toy_task, CELLS, [0], executor="serial", progress=False)
    assert capsys.readouterr().err == ""


def test_tidy_rows_one_row_per_run_and_trace_point(reference):
    rows = tidy_rows(reference)
    assert len(rows) == 9 * 2
    assert set(rows[0]) == {"N", "K", "seed", "mean", "norm", "inf", "diverged", "k", "x"}
    assert [r["k"] for r in rows[:2]] == [0, 1]
    clash = {"params": {"mean": 1}, "seed": 0, "result": {"metrics": {"mean": 2.0}}}
    with pytest.raises(ValueError, match="'mean'"):
        tidy_rows([clash])


# --------------------------------------------------------------------------- io
def test_write_json_atomic_round_trips_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    write_json_atomic(target, {"a": np.arange(3), "b": np.float32(0.5), "c": float("nan")})
    assert json.loads(target.read_text()) == {"a": [0, 1, 2], "b": 0.5, "c": None}
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"v": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_readers_never_see_a_half_written_file(tmp_path):
    target = tmp_path / "big.json"
    payloads = [{"i": i, "pad": "x" * 200_000} for i in range(2)]
    write_json_atomic(target, payloads[0])
    stop = threading.Event()
    seen, bad = set(), []

    def reader():
        while not stop.is_set():
            try:
                seen.add(json.loads(target.read_text())["i"])
            except ValueError as exc:  # a torn read
                bad.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for j in range(30):
        write_json_atomic(target, payloads[j % 2], indent=None)
    stop.set()
    thread.join()
    assert not bad and seen <= {0, 1}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_write_csv_atomic_is_a_tidy_table_with_exact_floats(tmp_path):
    rows = [{"N": 4, "err": 0.1 + 0.2, "tag": None}, {"N": 8, "err": float("inf"), "v": [1, 2]}]
    path = write_csv_atomic(tmp_path / "rows.csv", rows)
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == ["N", "err", "tag", "v"]
    assert float(back[0]["err"]) == 0.1 + 0.2 and back[1]["err"] == "inf"
    assert back[0]["tag"] == "" and back[0]["v"] == "" and json.loads(back[1]["v"]) == [1, 2]
    with pytest.raises(ValueError, match="not in fieldnames"):
        write_csv_atomic(tmp_path / "x.csv", rows, fieldnames=["N", "err"])


def test_write_text_atomic_creates_parents(tmp_path):
    path = write_text_atomic(tmp_path / "a" / "b.txt", "hello")
    assert path.read_text() == "hello"


def test_provenance_records_versions_and_command():
    p = provenance(["python", "-m", "verification.speedup", "--out", "my results"])
    assert p["packages"]["numpy"] == np.__version__
    assert p["packages"]["deprl_theory"] is not None
    assert p["command"] == "python -m verification.speedup --out 'my results'"
    assert p["python"] == ".".join(map(str, sys.version_info[:3]))
    assert p["date"].endswith("+00:00") and p["hostname"]
    json.dumps(p)


# --------------------------------------------------------------------------- per-cell seeds, cache-only reads
def test_each_cell_may_have_its_own_seeds_with_the_same_numbers(reference):
    got = run_sweep(toy_task, CELLS, [[0, 1, 2], [1], [0, 2]], base_seed=7, executor="serial", progress=False)
    want = numbers(reference)
    assert [(r["params"]["N"], r["seed"]) for r in got.records] == [(2, 0), (2, 1), (2, 2), (3, 1), (5, 0), (5, 2)]
    assert all(want[k] == v for k, v in numbers(got).items())
    with pytest.raises(ValueError, match="seed lists"):
        run_sweep(toy_task, CELLS, [[0], [1]], executor="serial", progress=False)


def test_a_cache_only_read_simulates_nothing(tmp_path, log_dir):
    from deprl_theory.sweep import CacheMiss

    kw = dict(base_seed=7, out=tmp_path, executor="serial", progress=False)
    with pytest.raises(CacheMiss, match="3 run"):
        run_sweep(toy_task, CELLS, [0], compute=False, **kw)
    assert calls(log_dir) == [] and not (tmp_path / "cache").exists()
    first = run_sweep(toy_task, CELLS, [0], **kw)
    for f in log_dir.iterdir():
        f.unlink()
    again = run_sweep(toy_task, CELLS, [0], compute=False, **kw)
    assert calls(log_dir) == [] and numbers(again) == numbers(first)


def _readme_blocks() -> list[str]:
    import re

    from conftest import ROOT

    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _python(args, tmp_path, **kw):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, **kw)


@pytest.mark.slow
def test_every_readme_python_block_runs_as_a_file_in_order(tmp_path):
    """Each block saved as a file and run in a fresh process, in the README's order, from one empty folder.

    No ``__main__`` guard is added: the first block's sweep starts worker
    processes; the later blocks load its results back from disk.
    """
    blocks = _readme_blocks()
    assert len(blocks) >= 3 and "run_speedup" in blocks[0] and "load_speedup" in blocks[1]
    for i, block in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(block + "\nprint('block ok')\n")
        proc = _python([str(script)], tmp_path)
        assert proc.returncode == 0, f"README python block {i}:\n{proc.stderr[-2000:]}"
        assert "block ok" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_readme_library_block_runs_from_stdin(tmp_path):
    """Piped into ``python -``, with no guard, from an empty directory."""
    text = _readme_blocks()[0] + "\nprint('verdict:', result.verdict)\n"
    proc = _python(["-"], tmp_path, input=text)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verdict:" in proc.stdout and "Traceback" not in proc.stderr


def test_a_sweep_runs_on_worker_processes_from_python_dash_c(tmp_path):
    """``python -c`` has no script to re-run: a sweep of a module's task runs on worker processes."""
    code = ("from deprl_theory.experiments.cells import cell_params, simulate_cell\n"
            "from deprl_theory.sweep import run_sweep\n"
            "cells = [cell_params(N=n, K=20, dim=6, rank=2) for n in (2, 4)]\n"
            "r = run_sweep(simulate_cell, cells, [0, 1], jobs=2, progress=False)\n"
            "print('runs:', len(r.records), r.executor)\n")
    proc = _python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runs: 4 processes" in proc.stdout and "Traceback" not in proc.stderr


def _always_fails(params, seeds, base_seed):
    raise FloatingPointError("the same cause everywhere")


def test_cells_that_fail_for_one_cause_are_said_in_one_line(cli, monkeypatch):
    """Library: CellsFailed names how many and the cause; CLI: that one line on stderr and a non-zero exit."""
    import deprl_theory.experiments.speedup as speedup
    from deprl_theory.experiments.speedup import SpeedupStudy, run_speedup
    from deprl_theory.sweep import CellsFailed, SweepOptions

    monkeypatch.setattr(speedup, "simulate_cell", _always_fails)
    study = SpeedupStudy(n=(4, 8, 16), rounds=(100, 200), seeds=2)
    with pytest.raises(CellsFailed, match=r"^no cell finished: 6 cells failed \(exponential, N = 4, K = 100; .*\), "
                                          r"all with: FloatingPointError: the same cause everywhere$"):
        run_speedup(study, SweepOptions(executor="serial", progress=False))
    run = cli("speedup", "--n", "4", "8", "16", "--rounds", "100", "200", "--seeds", "2", "--no-until-decisive",
              "--jobs", "1", "--no-figures", "--no-progress")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "python -m verification.speedup: no cell finished: 6 cells failed (exponential, N = 4, K = 100; exponential, "
        "N = 4, K = 200; exponential, N = 8, K = 100; ...), all with: FloatingPointError: the same cause everywhere"]


def test_the_time_left_counts_the_work_announced_after_the_sweep():
    """A report's bar also counts the companions it may run next: half the work done with as much to follow."""
    from deprl_theory.sweep.progress import Progress

    bar = Progress(total=4, cached=0, enabled=False, work=100.0, after=100.0)
    bar.start -= 50.0  # 50 s elapsed
    bar.done, bar.work_done = 2, 50.0
    assert bar.eta() == "2:30"  # 50 of 100 units left in the sweep, 100 after it: 150 units at 1 unit/s
    alone = Progress(total=4, cached=0, enabled=False, work=100.0)
    alone.start -= 50.0
    alone.done, alone.work_done = 2, 50.0
    assert alone.eta() == "0:50"


@pytest.mark.slow
def test_a_task_defined_in_an_unguarded_script_fails_saying_why_and_how_out(tmp_path):
    """The one case spawned workers cannot serve: the failure line names the cause and the three ways out."""
    script = tmp_path / "mine.py"
    script.write_text(
        "from deprl_theory.sweep import run_sweep\n\n"
        "def task(params, seeds, base_seed):\n"
        "    return {s: {'x': params['a'] * s} for s in seeds}\n\n"
        "r = run_sweep(task, [{'a': 1}, {'a': 2}], [0, 1], progress=False, jobs=2)\n"
        "print('LINE:', r.failure_line())\n")
    proc = _python([str(script)], tmp_path)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LINE:"))
    assert "2 cells failed" in line and "defined in the script being run" in line
    assert "__main__" in line and "executor='serial'" in line
