"""`python -m verification.speedup` end to end: verdicts, outputs, user errors."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def speedup(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "verification.speedup", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


QUICK = ["--n", "4", "8", "16", "--rounds", "200", "400", "800", "--seeds", "4", "--boot", "500", "--no-progress"]


@pytest.fixture(scope="module")
def deprl_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("deprl")
    proc = speedup(*QUICK, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


@pytest.mark.slow
def test_deprl_shows_linear_speedup_of_the_representation(deprl_quick):
    _, summary = deprl_quick
    assert summary["verdict"] == "linear", summary["metrics"]["R"]
    lo, hi = summary["exponents"]["speedup"]["ci"]
    assert lo <= 1.0 or summary["exponents"]["speedup"]["value"] > 0.8
    # heads do not speed up under a = 1/N (their step shrinks with N): shown, not hidden
    assert summary["verdicts"]["H"] in ("none", "inconclusive")
    assert set(summary["verdicts"]) == {"R", "H", "G"}


@pytest.mark.slow
def test_summary_csv_and_figures_are_written(deprl_quick):
    out, summary = deprl_quick
    for key in ("verdict", "exponents", "seconds", "settings", "provenance", "transient", "excluded_cells"):
        assert key in summary
    for name in ("N", "K", "speedup"):
        value = summary["exponents"][name]
        assert isinstance(value["value"], float) and len(value["ci"]) == 2
    stored = json.loads((out / "summary.json").read_text())
    assert stored["verdict"] == summary["verdict"]
    with open(out / "speedup.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 3 * 4 * 4  # N x K x seeds x metrics (R, H, G, C)
    assert {"N", "K", "seed", "metric", "value", "diverged", "alpha", "beta"} <= set(rows[0])
    figs = {Path(p).name for p in summary["figures"]}
    for kind in ("rate", "collapse", "speedup"):
        assert f"speedup_{kind}_R.png" in figs and f"speedup_{kind}_R.pdf" in figs
    assert all((Path(p)).exists() for p in summary["figures"])


@pytest.mark.slow
def test_rerun_reads_the_cache(deprl_quick):
    out, summary = deprl_quick
    proc = speedup(*QUICK, "--out", str(out), "--json", "--no-figures")
    again = json.loads(proc.stdout)
    assert again["sweep"]["computed"] == 0 and again["sweep"]["cached"] == 3 * 3 * 4
    assert again["exponents"] == summary["exponents"]


@pytest.mark.slow
def test_local_training_gets_none(tmp_path):
    """The verdict is falsifiable: without communication there is no speedup."""
    proc = speedup(*QUICK, "--algorithm", "local", "--out", str(tmp_path), "--json", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["verdict"] == "none", summary["metrics"]["R"]
    assert summary["verdicts"]["G"] == "none"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--n", "1", "4", "8"], ">= 2"),
        (["--n", "8", "8"], "three distinct"),
        (["--n", "4", "8"], "three distinct"),
        (["--rounds", "-5", "100"], "positive"),
        (["--topology", "moebius"], "unknown topology"),
        (["--topology", "hypercube", "--n", "4", "8", "12"], "N = 12"),
        (["--topology", "torus", "--n", "9", "16", "20"], "N = 20"),
        (["--seeds", "1"], "at least 2 seeds"),
        (["--n", "4", "8", "x"], "invalid int"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(tmp_path, args, needle):
    out = tmp_path / "out"
    proc = speedup(*args, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert not (tmp_path / "figures").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_three_executors_give_identical_numbers(tmp_path):
    """Serial, local processes and a Dask cluster on loopback: the same numbers, cell by cell."""
    distributed = pytest.importorskip("distributed")
    small = ["--n", "4", "8", "16", "--rounds", "50", "100", "--seeds", "2", "--boot", "100", "--no-progress",
             "--no-figures", "--json"]
    serial = speedup(*small, "-j", "1", "--out", str(tmp_path / "serial"))
    procs = speedup(*small, "-j", "2", "--out", str(tmp_path / "procs"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        dask = speedup(*small, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "dask"))
    outs = []
    for proc in (serial, procs, dask):
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout))
    assert [o["sweep"]["executor"] for o in outs] == ["serial", "processes", "dask"]
    tables = []
    for name in ("serial", "procs", "dask"):
        with open(tmp_path / name / "speedup.csv") as fh:
            tables.append(sorted((r["N"], r["K"], r["seed"], r["metric"], r["value"]) for r in csv.DictReader(fh)))
    assert tables[0] == tables[1] == tables[2]
    assert outs[0]["exponents"] == outs[1]["exponents"] == outs[2]["exponents"]


def test_diverging_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    proc = speedup("--n", "4", "8", "16", "--rounds", "100", "200", "--seeds", "2", "--boot", "100",
                   "--c", "20", "--beta-max", "100", "--head-step", "1.5", "--alpha-max", "10",
                   "--no-progress", "--no-figures", "--json", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert len(summary["diverged"]) == 3 * 2 * 2
    first = summary["diverged"][0]
    assert first["alpha"] == 1.5 and first["beta"] > 1 and first["round"] >= 1
    assert summary["verdict"] == "inconclusive"
    assert "divergence" in summary["reason"]
