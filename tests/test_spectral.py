"""Spectral-gap experiment: slope fit, transient measure, and the CLI end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deprl_theory.spectral import (
    consensus_slope,
    measured_transient,
    predicted_transient,
    slope_verdict,
    spectral_cells,
)

ENV = {**os.environ, "MPLBACKEND": "Agg"}


def test_consensus_slope_recovers_planted_slope():
    rng = np.random.default_rng(0)
    rho = 1 - np.geomspace(0.5, 0.02, 6)
    x = rho / (1 - rho)
    cbar = 3e-4 * x[:, None] ** 1.7 * np.exp(0.05 * rng.standard_normal((6, 8)))
    fit = consensus_slope(rho, cbar, n_boot=500)
    assert fit.slope == pytest.approx(1.7, abs=0.05)
    assert fit.ci[0] - 0.02 <= 1.7 <= fit.ci[1] + 0.02 and fit.ci[1] - fit.ci[0] < 0.1
    assert slope_verdict(fit)[0] == "inconsistent"
    planted2 = 3e-4 * x[:, None] ** 2.0 * np.exp(0.05 * rng.standard_normal((6, 8)))
    assert slope_verdict(consensus_slope(rho, planted2, n_boot=500))[0] == "consistent"


def test_consensus_slope_rejects_rho_outside_unit_interval():
    with pytest.raises(ValueError, match="rho"):
        consensus_slope([0.0, 0.5], np.ones((2, 2)))


def test_measured_transient_is_first_K_from_which_ratio_stays_small():
    K = [100, 200, 400, 800]
    ref = np.ones((4, 3))
    g = ref * np.array([2.0, 1.1, 1.5, 1.2])[:, None]  # dips at 200, not settled until 800
    assert measured_transient(K, g, ref, 1.25) == 800
    assert measured_transient(K, ref * 3, ref, 1.25) is None
    assert measured_transient(K, ref, ref, 1.25) == 100


def test_predicted_transient_grows_like_rho4_over_gap4():
    consts = dict(L_theta=1.0, L_phi=2.0, L_thetaphi=1.0, sigma_theta=1.0, sigma_phi=1.0, delta=1.0, Delta=1.0)
    rho = np.array([0.5, 0.9])
    vals = predicted_transient(consts, 16, rho, c=0.5, tau=5)["values"]
    expect = (0.9 / 0.1) ** 4 / (0.5 / 0.5) ** 4
    assert vals[1] / vals[0] == pytest.approx(expect, rel=1e-9)


def test_cells_cover_gaps_reference_and_topologies():
    cells = spectral_cells(8, gaps=[0.5, 0.1], topologies=["ring"], rounds=[100, 200])
    assert len(cells) == 2 * (2 + 1) + 1
    assert sum(c["algorithm"] == "centralized" for c in cells) == 2
    with pytest.raises(ValueError, match="gaps"):
        spectral_cells(8, gaps=[1.5])


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "verification.spectral", *args], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)


def test_cli_quick_json_end_to_end(tmp_path):
    out = _cli(tmp_path, "--quick", "--json", "--n", "8", "--out", "res", "--figures", "figs", "-j", "1")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert set(s["consensus_slope"]) >= {"value", "ci"}
    assert s["verdict"] in ("consistent", "inconsistent") and s["reason"]
    assert {t["topology"] for t in s["topologies"]} == {"ring", "exponential", "complete"}
    assert all("measured_K" in r and "predicted_K0" in r for r in s["transient"]["rows"])
    # the consensus error grows with rho/(1-rho): the slope is clearly positive
    assert s["consensus_slope"]["value"] > 0.5
    for name in ("spectral_consensus", "spectral_gbar_vs_K", "spectral_transient"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "figs" / f"{name}.{ext}").stat().st_size > 0
    assert (tmp_path / "res" / "spectral_runs.csv").read_text().count("\n") > 5
    saved = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert "provenance" in saved and "timings" in saved


@pytest.mark.parametrize("args", [["--gaps", "0.5"], ["--n", "1"], ["--topologies", "moebius"], ["--seeds", "0"],
                                  ["--rounds", "abc"]])
def test_cli_bad_input_one_line_exit_2(tmp_path, args):
    out = _cli(tmp_path, *args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
