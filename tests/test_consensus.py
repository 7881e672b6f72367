"""Spectral-gap experiment: slope fit, transient measure, analysis without simulation, and the CLI."""
import json

import numpy as np
import pytest

from deprl_theory.experiments.consensus import ConsensusStudy, consensus_slope, slope_verdict


def test_consensus_slope_recovers_planted_slope():
    rng = np.random.default_rng(0)
    rho = 1 - np.geomspace(0.5, 0.02, 6)
    x = rho / (1 - rho)
    cbar = 3e-4 * x[:, None] ** 1.7 * np.exp(0.05 * rng.standard_normal((6, 8)))
    fit = consensus_slope(rho, cbar, n_boot=500)
    assert fit.slope == pytest.approx(1.7, abs=0.05)
    assert fit.ci.width < 0.1 and fit.ci.low < fit.slope < fit.ci.high
    assert slope_verdict(fit)[0] == "inconsistent"
    planted2 = 3e-4 * x[:, None] ** 2.0 * np.exp(0.05 * rng.standard_normal((6, 8)))
    assert slope_verdict(consensus_slope(rho, planted2, n_boot=500))[0] == "consistent"


def test_consensus_slope_rejects_rho_outside_unit_interval():
    with pytest.raises(ValueError, match="rho"):
        consensus_slope([0.0, 0.5], np.ones((2, 2)))


def test_cells_cover_gaps_reference_and_topologies():
    study = ConsensusStudy(8, gaps=(0.5, 0.1), topologies=("ring",), rounds=(100, 200))
    cells = study.cells()
    assert len(cells) == 2 * (2 + 1) + 1
    assert sum(c["algorithm"] == "centralized" for c in cells) == 2
    with pytest.raises(ValueError, match="gaps"):
        ConsensusStudy(8, gaps=(1.5,))
    with pytest.raises(ValueError, match="two gaps"):
        ConsensusStudy(8, gaps=(0.5, 1.0))
    with pytest.raises(ValueError, match="torus"):
        ConsensusStudy(8, topologies=("torus",)).check()


def test_cli_quick_json_end_to_end(cli, tmp_path):
    out = cli("spectral", "--quick", "--json", "--n", "8", "--out", "res", "--figures", "figs", "-j", "1",
              "--no-progress")
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
                                  ["--rounds", "abc"], ["--n", "8", "--topologies", "torus"],
                                  ["--n", "12", "--topologies", "hypercube"], ["--factor", "nan"]])
def test_cli_bad_input_one_line_exit_2(cli, tmp_path, args):
    out = cli("spectral", *args, "--out", "res")
    assert out.returncode == 2, out.stdout
    assert len(out.error_lines) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "res").exists()
