"""`python -m verification.run`: one configuration end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verification.run", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.mark.parametrize("problem,algorithm,topology", [("linear", "deprl", "ring"), ("nonlinear", "dpsgd", "torus"),
                                                        ("linear", "local", "ring"),
                                                        ("linear", "centralized", "complete")])
def test_run_prints_a_json_summary_and_draws_curves(tmp_path, problem, algorithm, topology):
    n = "9" if topology == "torus" else "8"
    proc = run_cli("--problem", problem, "--algorithm", algorithm, "--topology", topology, "--n", n,
                   "--rounds", "60", "--seeds", "2", "--n-eval", "50", "--figures", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["algorithm"] == algorithm and summary["rounds"] == 60
    for metric in ("G", "R", "H", "C", "subspace", "excess_risk"):
        assert len(summary["final"][metric]) == 2
    assert summary["diverged"] == [False, False]
    assert summary["steps"]["beta"] > 0 and summary["seconds"] > 0
    assert all(Path(p).exists() for p in summary["figures"]) and len(summary["figures"]) == 2


def test_run_text_summary_and_divergence_report(tmp_path):
    proc = run_cli("--n", "4", "--rounds", "30", "--alpha", "5", "--beta", "5", "--no-figures")
    assert proc.returncode == 0, proc.stderr
    assert "diverged seeds" in proc.stdout and "alpha = 5" in proc.stdout


@pytest.mark.parametrize("args", [["--n", "1"], ["--topology", "hypercube", "--n", "12"], ["--rounds", "0"],
                                  ["--alpha", "0.1"], ["--topology", "moebius"]])
def test_run_user_errors(tmp_path, args):
    proc = run_cli(*args, "--figures", str(tmp_path / "figs"), cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "figs").exists()
