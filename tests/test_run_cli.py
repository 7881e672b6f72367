"""`python -m verification.run`: one configuration end to end, and the same numbers as a sweep cell."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deprl_theory.experiments import cell_params, simulate_cell


@pytest.mark.parametrize("problem,algorithm,topology", [("linear", "deprl", "ring"), ("nonlinear", "dpsgd", "torus"),
                                                        ("linear", "local", "ring"),
                                                        ("linear", "centralized", "complete")])
def test_run_prints_a_json_summary_and_draws_curves(cli, tmp_path, problem, algorithm, topology):
    n = "9" if topology == "torus" else "8"
    res = cli("run", "--problem", problem, "--algorithm", algorithm, "--topology", topology, "--n", n,
              "--rounds", "60", "--seeds", "2", "--n-eval", "50", "--figures", "figs", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["algorithm"] == algorithm and summary["rounds"] == 60
    for metric in ("G", "R", "H", "C", "subspace", "excess_risk"):
        assert len(summary["final"][metric]) == 2
    assert summary["diverged"] == [False, False]
    assert summary["steps"]["beta"] > 0 and summary["seconds"] > 0
    assert all((tmp_path / p).exists() for p in summary["figures"]) and len(summary["figures"]) == 2


def test_the_same_seed_reproduces_a_sweep_cell(cli):
    res = cli("run", "--n", "4", "--rounds", "40", "--seeds", "2", "--seed", "3", "--topology", "ring",
              "--no-figures", "--json")
    summary = json.loads(res.stdout)
    cell = simulate_cell(cell_params(N=4, K=40, topology="ring"), (0, 1), 3)
    assert summary["averages"]["G"] == [cell[0]["averages"]["G"], cell[1]["averages"]["G"]]


def test_run_text_summary_and_divergence_report(cli):
    res = cli("run", "--n", "4", "--rounds", "30", "--alpha", "5", "--beta", "5", "--no-figures")
    assert res.returncode == 0, res.stderr
    assert "diverged seeds" in res.stdout and "alpha = 5" in res.stdout


@pytest.mark.parametrize("args", [["--n", "1"], ["--topology", "hypercube", "--n", "12"], ["--rounds", "0"],
                                  ["--alpha", "0.1"], ["--topology", "moebius"], ["--tau", "0"],
                                  ["--eval-every", "-5"], ["--c", "inf"],
                                  ["--topology", "star", "--weights", "uniform"],
                                  ["--topology", "erdos_renyi"], ["--topology", "exact_gap"]])
def test_run_user_errors(cli, tmp_path, args):
    res = cli("run", *args, "--figures", "figs")
    assert res.returncode == 2, res.stdout
    assert len(res.error_lines) == 1 and "Traceback" not in res.stderr
    assert not Path(tmp_path / "figs").exists()
