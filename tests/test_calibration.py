"""Calibration: the decision procedure on planted data keeps its error rates; the command checks its input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deprl_theory.experiments.calibration import CalibrationCase, calibrate_case, load_scatter, unadjusted_design
from deprl_theory.inference import DEFAULT_LOOKS, group_sequential_design


@pytest.fixture(scope="module")
def ring():
    return load_scatter()["ring"]


def test_the_recorded_scatter_is_real_runs_of_the_tool(ring):
    assert ring.seeds == 64 and len(ring.cells) == 16 and "--record-scatter" in ring.command
    assert 0.003 < ring.sd() < 0.05  # log Gbar scatters by about 1 % per seed on the ring
    g, c = ring.draw("gaussian", 5000, np.random.default_rng(0))
    assert g.shape == (16, 5000)
    assert np.allclose(g.std(axis=1), ring.graph.std(axis=1), rtol=0.1)
    r, _ = ring.draw("resampled", 10, np.random.default_rng(0))
    assert all(any(np.array_equal(r[:, j], ring.graph[:, i]) for i in range(64)) for j in range(10))


def test_rereading_95_percent_intervals_at_every_look_spends_more_than_alpha():
    naive = unadjusted_design(DEFAULT_LOOKS)
    assert naive.spent[-1] > 0.1 and group_sequential_design(DEFAULT_LOOKS).spent[-1] == pytest.approx(0.05)


@pytest.mark.slow
def test_the_planted_ring_transient_is_not_called_sublinear(ring):
    res = calibrate_case(CalibrationCase(1.0, 0.03, "gaussian:ring"), ring, reps=150, looks=DEFAULT_LOOKS)
    assert res.p.get("sublinear", 0.0) <= 0.05
    assert res.p.get("linear after transient", 0.0) >= 0.9 and res.coverage >= 0.9


@pytest.mark.slow
def test_a_clearly_sublinear_rate_is_found_and_linear_is_not_claimed_at_the_margin(ring):
    sub = calibrate_case(CalibrationCase(0.80, 0.0, "gaussian:ring"), ring, reps=80, looks=DEFAULT_LOOKS)
    assert sub.p.get("sublinear", 0.0) >= 0.95
    edge = calibrate_case(CalibrationCase(0.90, 0.0, "gaussian:ring"), ring, reps=200, looks=DEFAULT_LOOKS)
    wrong = edge.p.get("linear", 0.0) + edge.p.get("linear after transient", 0.0)
    assert wrong <= 0.065  # 0.025 by design; 200 data sets leave a Monte Carlo sd of 0.011


def test_a_damaged_scatter_file_is_named(tmp_path):
    bad = tmp_path / "scatter.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_scatter(bad)
    with pytest.raises(ValueError, match="no recorded scatter"):
        load_scatter(tmp_path / "missing.json")


def test_calibrate_json_rows_use_the_words_speedup_prints(cli):
    res = cli("calibrate", "--s", "0.8", "1.0", "--b", "0", "--scatter", "gaussian:default", "--reps", "20",
              "--json", "--no-progress", "-j", "1", "--out", "out")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["s"], r["b"], r["scatter"]) for r in rows] == [(0.8, 0.0, "gaussian:default"),
                                                              (1.0, 0.0, "gaussian:default")]
    for r in rows:
        assert set(r) >= {"s", "b", "scatter", "p", "coverage", "mean_seeds"}
        assert sum(r["p"].values()) == pytest.approx(1.0)
        assert set(r["p"]) <= {"none", "sublinear", "linear", "superlinear", "inconclusive",
                               "sublinear after transient", "linear after transient", "superlinear after transient"}
    assert rows[0]["p"].get("sublinear", 0) > 0.5 and rows[1]["p"].get("linear", 0) > 0.5


def test_a_written_calibration_renders_as_markdown_without_computing(cli, tmp_path):
    res = cli("calibrate", "--s", "1.0", "--b", "0", "--scatter", "gaussian:default", "--reps", "10",
              "--no-progress", "-j", "1", "--out", "out")
    assert res.returncode == 0, res.stderr
    md = cli("calibrate", "--from", "out/calibration.json", "--markdown")
    assert md.returncode == 0 and "| gaussian:default | 0 | 1.00 |" in md.stdout
    bad = cli("calibrate", "--from", "missing.json")
    assert bad.returncode == 2 and len(bad.error_lines) == 1 and "not a calibration.json" in bad.stderr


@pytest.mark.parametrize("args,needle", [
    (["--s", "nan"], "finite"), (["--b", "-1"], ">= 0"), (["--scatter", "lognormal:ring"], "MODEL:RUN"),
    (["--scatter", "gaussian:torus"], "no recorded scatter named 'torus'"), (["--reps", "0"], "positive"),
    (["--looks", "8", "4"], "strictly increasing"), (["--looks", "1", "4"], "at least 2 seeds"),
    (["--procedure", "peeking"], "unknown procedure"), (["--design", "haybittle"], "unknown design"),
    (["--scatter-file", "missing.json"], "no recorded scatter"), (["--margin", "2"], "[0, 1)")])
def test_calibrate_bad_input_is_one_line_and_exit_2(cli, args, needle):
    res = cli("calibrate", *args, "--reps", "5", "--no-progress", "--out", "out") if "--reps" not in args \
        else cli("calibrate", *args, "--no-progress", "--out", "out")
    assert res.returncode == 2, res.stdout
    assert len(res.error_lines) == 1 and needle in res.error_lines[0], res.stderr
