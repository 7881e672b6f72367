"""The regime experiment: tail averages, local slopes and floor exponents on planted records, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deprl_theory.experiments.regime import RegimeStudy, analyse_regime, tail_average


def _result(full, early, late, rounds, beta, diverged=False):
    """A cell result whose trace holds ``early`` over the first half of the rounds and ``late`` over the second."""
    trace_rounds = np.linspace(0, rounds, 41).round().astype(int).tolist()
    g = [early if r < rounds / 2 else late for r in trace_rounds]
    nan = float("nan")
    return {"diverged": diverged, "averages": {"G": nan if diverged else full},
            "trace": {"round": trace_rounds, "G": [nan] * len(g) if diverged else g},
            "norms": {"theta": nan if diverged else 1.5, "phibar": nan if diverged else 2.0}, "beta": beta}


def planted(study: RegimeStudy, *, e_K=-0.4, p=0.7, ratio=0.3, seed=0):
    """Grid cells with Gbar = N^-1/2 K^e_K (tail = ratio x full); floor cells with late G = beta^p."""
    rng = np.random.default_rng(seed)
    records = []
    for c in study.c:
        for rule in study.head_rules:
            for n in study.n:
                for k in study.rounds:
                    for s in range(study.seeds):
                        full = n**-0.5 * k**e_K * np.exp(0.01 * rng.standard_normal())
                        records.append({"params": {"c": c, "head_rule": rule, "N": n, "K": k}, "seed": s,
                                        "result": _result(full, full * (2 - ratio), full * ratio, k, 0.1)})
    for rule in study.head_rules:
        for n in study.n:
            for s in range(study.seeds):
                level = np.exp(0.05 * rng.standard_normal())  # an instance effect, shared by every beta
                for b in study.floor_betas:
                    cell = study.floor_cell(n, b, rule)
                    late = level * b**p * np.exp(0.01 * rng.standard_normal())
                    records.append({"params": {"c": cell["c"], "head_rule": rule, "N": n, "K": cell["K"]}, "seed": s,
                                    "result": _result(1.0, 1.0, late, cell["K"], b)})
    return records


STUDY = RegimeStudy(n=(4, 16), rounds=(500, 1000, 2000), c=(0.5, 1.0), head_rules=("1/N",), seeds=4,
                    floor_betas=(0.08, 0.04, 0.02), floor_time=64.0)


def test_tail_average_reads_the_second_half_of_the_trace_only():
    res = _result(1.0, 5.0, 0.25, 1000, 0.1)
    assert tail_average(res) == pytest.approx(0.25)
    assert np.isnan(tail_average(_result(1.0, 5.0, 0.25, 1000, 0.1, diverged=True)))


def test_analysis_recovers_planted_slopes_ratios_and_floor_exponents():
    result = analyse_regime(STUDY, planted(STUDY, e_K=-0.4, p=0.7, ratio=0.3))
    assert set(result.grid) == {(0.5, "1/N"), (1.0, "1/N")}
    row = result.grid[(0.5, "1/N")][16]
    assert row["slopes_full"] == pytest.approx([-0.4, -0.4], abs=0.03)
    assert row["tail_over_full"] == pytest.approx([0.3] * 3, rel=1e-6)
    assert row["theta"] == pytest.approx(1.5) and row["diverged"] == 0
    for e in result.floor["1/N"][4]["exponents"]:
        assert e["value"] == pytest.approx(0.7, abs=0.05)
        assert e["ci"][0] < 0.7 < e["ci"][1] and e["ci"][1] - e["ci"][0] < 0.2
    s = json.loads(json.dumps(result.as_dict()))  # plain JSON all the way
    assert s["floor"][0]["by_N"]["4"]["beta"] == [0.08, 0.04, 0.02]


def test_a_floor_proportional_to_beta_reads_p_one():
    result = analyse_regime(STUDY, planted(STUDY, p=1.0))
    assert [e["value"] for e in result.floor["1/N"][16]["exponents"]] == pytest.approx([1.0, 1.0], abs=0.05)


def test_study_rejects_what_cannot_be_measured():
    with pytest.raises(ValueError, match="two K"):
        RegimeStudy(rounds=(500,))
    with pytest.raises(ValueError, match="two steps"):
        RegimeStudy(floor_betas=(0.1,))
    with pytest.raises(ValueError, match="positive"):
        RegimeStudy(c=(0.5, -1.0))


def test_regime_cli_end_to_end(cli):
    res = cli("regime", "--n", "4", "--rounds", "100", "200", "--c", "0.5", "--head-rules", "1/N", "--seeds", "2",
              "--floor-betas", "0.2", "0.1", "--floor-time", "20", "--no-progress", "--out", "out", "-j", "1")
    assert res.returncode == 0, res.stderr
    assert "local slopes, full average" in res.stdout and "floor: constant steps" in res.stdout
    again = cli("regime", "--n", "4", "--rounds", "100", "200", "--c", "0.5", "--head-rules", "1/N", "--seeds", "2",
                "--floor-betas", "0.2", "0.1", "--floor-time", "20", "--no-progress", "--out", "out", "-j", "1",
                "--json")
    s = json.loads(again.stdout)
    assert s["sweep"]["computed"] == 0  # everything from the cache
    assert s["grid"][0]["by_N"]["4"]["K"] == [100, 200]


def test_regime_cli_user_errors_exit_2(cli):
    res = cli("regime", "--rounds", "100", "--no-progress", "--out", "out")
    assert res.returncode == 2 and "two K" in res.stderr and "Traceback" not in res.stderr
