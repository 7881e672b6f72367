"""Spectral-gap experiment: the lemma's labels, its tightness in rho, the whole-spectrum predictor, the CLI."""
import json

import numpy as np
import pytest

from deprl_theory.experiments.consensus import (
    LINEARIZED_FLOOR,
    ConsensusPoint,
    ConsensusStudy,
    analyse_consensus,
    compare_predictors,
    consensus_slope,
    lemma_check,
    linearized_regime,
    local_slopes,
    run_consensus,
    slope_tightness,
)
from deprl_theory.experiments.laws import SHAPE_WORDS
from deprl_theory.graphs import mixing_matrix, mixing_rate, noise_spectral_sum

CONSTS = dict(L_theta=1.0, L_phi=4.0, L_thetaphi=2.0, sigma_theta=1.0, sigma_phi=3.0, delta=1.0, Delta=1.5)


@pytest.mark.parametrize("planted,word", [(1.7, "loose"), (2.0, "tight"), (2.5, "optimistic")])
def test_consensus_slope_against_the_bounds_2_is_a_statement_about_tightness(planted, word):
    rng = np.random.default_rng(0)
    rho = 1 - np.geomspace(0.5, 0.02, 6)
    x = rho / (1 - rho)
    cbar = 3e-4 * x[:, None] ** planted * np.exp(0.05 * rng.standard_normal((6, 8)))
    fit = consensus_slope(rho, cbar, n_boot=500)
    assert fit.slope == pytest.approx(planted, abs=0.05)
    verdict = slope_tightness(fit)
    assert verdict.word == word and verdict.label == f"{word} in rho"
    assert verdict.exponent == pytest.approx(fit.slope - 2)


def _saturating(gaps, knee, seeds=8, noise=0.03, seed=0):
    """Cbar that follows x^1.7 (x = rho/(1-rho)) up to the knee and grows as x^0.4 beyond it, per seed."""
    rng = np.random.default_rng(seed)
    rho = 1 - np.asarray(gaps)
    x = rho / (1 - rho)
    xk = (1 - knee) / knee
    law = np.where(x <= xk, x ** 1.7, xk ** 1.7 * (x / xk) ** 0.4)
    return rho, 1e-3 * law[:, None] * np.exp(noise * rng.standard_normal((len(gaps), seeds)))


def test_local_slopes_show_where_the_linearized_law_stops():
    """A law of slope 1.7 that saturates (slope 0.4) below g = 0.1: the local slopes show both regimes, the
    break is put between the right pair of gaps, and a law that never saturates has no break."""
    gaps = (0.5, 0.3, 0.18, 0.1, 0.056, 0.032, 0.018)
    rho, cbar = _saturating(gaps, knee=0.1)
    slopes = local_slopes(gaps, rho, cbar, n_boot=500)
    assert [s.gaps for s in slopes] == list(zip(gaps[:-1], gaps[1:]))
    for s in slopes[:3]:
        assert s.slope == pytest.approx(1.7, abs=0.1) and s.ci.contains(s.slope)
    for s in slopes[3:]:
        assert s.slope == pytest.approx(0.4, abs=0.1) and s.ci.high < LINEARIZED_FLOOR
    regime = linearized_regime(slopes)
    assert regime.stops.gaps == (0.1, 0.056) and regime.gaps == (0.5, 0.3, 0.18, 0.1)
    assert "stops applying between g = 0.1 and 0.056" in regime.statement
    # one line through both regimes would say neither: 1.7 above the knee, 0.4 below
    assert 0.6 < consensus_slope(rho, cbar, n_boot=200).slope < 1.4
    never = linearized_regime(local_slopes(gaps, *_saturating(gaps, knee=1e-3), n_boot=500))
    assert never.stops is None and never.gaps == gaps and "whole grid" in never.statement
    # input order does not matter: the slopes run from the largest gap down
    assert [s.gaps for s in local_slopes(gaps[::-1], rho[::-1], cbar[::-1], n_boot=100)] == [s.gaps for s in slopes]


def _planted_records(study, law):
    """Sweep records of ``study`` whose Cbar is ``law(gap, true_rank)`` per seed (every other metric 1)."""
    recs = []
    for params in study.cells():
        rho = 0.0 if params["algorithm"] == "centralized" else (1 - params["gap"] if params["gap"] else 0.5)
        for j in study.seed_list:
            c = law(params["gap"] or 1.0, params.get("true_rank")) * (1 + 0.01 * j)
            recs.append({"params": params, "seed": j, "result": {
                "diverged": False, "rho": rho, "beta": 0.1,
                "averages": {"R": 1.0, "H": 1.0, "C": c if params["algorithm"] == "deprl" else 0.0, "G": 1.0}}})
    return recs


def test_analysis_fits_the_linearized_regime_only_and_compares_with_the_realizable_problem():
    """Planted records: a misspecified family 10x the realizable one that saturates below g = 0.1. The slope fit
    uses the gaps above the break only, and the ratio rows carry the planted 10x."""
    gaps = (0.5, 0.3, 0.18, 0.1, 0.05, 0.025)

    def law(g, true_rank):
        x = (1 - g) / g
        xk = 9.0
        c = x ** 1.7 if x <= xk else xk ** 1.7 * (x / xk) ** 0.3
        return 1e-3 * c * (10.0 if true_rank else 1.0)

    study = ConsensusStudy(8, gaps=gaps, topologies=(), rounds=(200,), seeds=3, cell={"true_rank": 5}, boot=200)
    assert sum(c.get("true_rank") is None for c in study.cells()) == len(gaps)  # the realizable family
    result = analyse_consensus(study, _planted_records(study, law))
    assert result.regime.stops.gaps == (0.1, 0.05) and result.regime.gaps == (0.5, 0.3, 0.18, 0.1)
    assert result.slope.slope == pytest.approx(1.7, abs=1e-6)
    assert [r["ratio"] for r in result.realizable] == pytest.approx([10.0] * len(gaps))
    d = result.as_dict()
    assert d["linearized_regime"]["stops_between"] == [0.1, 0.05] and len(d["local_slopes"]) == len(gaps) - 1
    assert d["settings"]["true_rank"] == 5
    assert [r["in_linearized_regime"] for r in d["gaps"]] == [True] * 4 + [False] * 2


def test_misspecified_consensus_error_exceeds_the_realizable_one(tmp_path):
    """On the engine, a small grid (N = 8, K = 300, 3 seeds): a truth of rank 5 under the rank-3 model keeps
    delta > 0 and its consensus error is several times the realizable problem's at every gap."""
    from deprl_theory.sweep import SweepOptions

    study = ConsensusStudy(8, gaps=(0.5, 0.15), topologies=(), rounds=(300,), seeds=3, cell={"true_rank": 5},
                           boot=200)
    result, _ = run_consensus(study, SweepOptions(out=tmp_path, executor="serial", progress=False))
    assert len(result.realizable) == 2
    for row in result.realizable:
        assert row["ratio"] > 2 and row["ratio_ci"][0] > 1, row
    assert result.constants["points"][-1] == "best_rank_fit"


def test_consensus_slope_rejects_rho_outside_unit_interval():
    with pytest.raises(ValueError, match="rho"):
        consensus_slope([0.0, 0.5], np.ones((2, 2)))


def test_lemma_out_of_scope_holds_or_violated():
    # rho = 0.9, L_phi = 4: the lemma needs beta <= 0.1 sqrt(6) / (6 * 0.9 * 4) = 0.0113
    out = lemma_check(CONSTS, n=8, beta=0.05, rho=0.9, measured=[1e-3, 1e-3])
    assert out["label"] == "out of scope" and "beta <=" in out["failing_conditions"][0]
    ok = lemma_check(CONSTS, n=8, beta=0.01, rho=0.9, measured=[1e-3, 1e-3])
    bound = 6 * 0.81 * 1e-4 * (9 + 1) / 0.01
    assert ok["bound"] == pytest.approx(bound) and ok["label"] == "holds"
    assert lemma_check(CONSTS, n=8, beta=0.01, rho=0.9, measured=[bound * 2] * 2)["label"] == "violated"
    # exact averaging: a rounding-level consensus error is not a violation of a zero bound
    assert lemma_check(CONSTS, n=8, beta=0.01, rho=1e-17, measured=[6e-31])["label"] == "holds"


def _points(law, noise=0.0, seed=0):
    """Graphs at N = 16 whose Cbar follows ``law(W, rho)`` times a common noise level."""
    rng = np.random.default_rng(seed)
    graphs = [("exact_gap", g) for g in (0.5, 0.2, 0.08, 0.03)] + [(t, None) for t in
                                                                    ("ring", "path", "torus", "star", "exponential")]
    pts = []
    for topology, gap in graphs:
        W = mixing_matrix(topology, 16, gap=gap) if gap else mixing_matrix(topology, 16)
        rho, s = mixing_rate(W), noise_spectral_sum(W)
        beta = 0.03
        cbar = 1.4 * beta ** 2 * law(s, rho) * np.exp(noise * rng.standard_normal())
        pts.append(ConsensusPoint(topology if gap is None else f"g = {gap}", "exact_gap" if gap else "topology",
                                  16, rho, beta, s, float(cbar)))
    return pts


def test_whole_spectrum_predictor_puts_every_graph_on_one_line():
    preds, best, statement = compare_predictors(_points(lambda s, rho: s / 16, noise=0.05))
    by = {p.name: p for p in preds}
    assert best == "full spectrum" and by["full spectrum"].scatter < 0.1
    assert abs(by["full spectrum"].named_offset) < 0.1 and by["full spectrum"].kappa == pytest.approx(1.4, rel=0.1)
    # the gap-only laws miss the named graphs: a ring of 16 sits far below the exact-gap line
    assert by["gap only, noise"].scatter > 0.5 and by["gap only, noise"].named_offset < -0.5
    assert "full spectrum puts the graphs on one line" in statement


def test_a_gap_only_world_is_recognised_too():
    preds, best, _ = compare_predictors(_points(lambda s, rho: rho ** 2 / (1 - rho) ** 2))
    assert best == "gap only, template" and {p.name: p for p in preds}["gap only, template"].scatter < 1e-9


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


SMALL = ["--n", "8", "--gaps", "0.5", "0.1", "--rounds", "100", "200", "400", "--seeds", "2", "--topologies", "ring",
         "star", "complete", "--law-n", "4", "8", "--law-gaps", "0.2", "0.1", "0.05", "--held-out", "6:0.1",
         "--named-checks", "ring:8"]


@pytest.mark.slow
def test_cli_json_carries_the_new_labels(cli, tmp_path):
    out = cli("spectral", *SMALL, "--json", "--out", "res", "--figures", "figs", "-j", "1", "--no-progress")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["tightness"]["word"] in SHAPE_WORDS and s["tightness"]["label"].endswith("in rho")
    assert s["lemma"]["label"] in ("holds", "violated", "no point in scope")
    labels = [r["lemma"]["label"] for r in s["gaps"] + s["topologies"]]
    assert set(labels) <= {"holds", "violated", "out of scope"} and "out of scope" in labels
    assert {t["topology"] for t in s["topologies"]} == {"ring", "star", "complete"}
    assert {p["name"] for p in s["predictors"]} == {"full spectrum", "gap only, noise", "gap only, template"}
    assert s["best_predictor"] in {p["name"] for p in s["predictors"]}
    law = s["transient_law"]
    assert len(law["points"]) == 2 * 3 + 1 and law["points"][-1]["held_out"]
    assert law["law"] is not None or law["fit_error"].startswith("no law")
    for name in ("spectral_consensus", "spectral_gbar_vs_K", "spectral_transient", "spectral_predictors"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "figs" / f"{name}.{ext}").stat().st_size > 0
    assert (tmp_path / "res" / "spectral_runs.csv").read_text().count("\n") > 5
    saved = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert "provenance" in saved and "timings" in saved and "transient_law" in saved
    # a fresh folder: the law's runs shared with the consensus sweep were computed now, not found in a cache
    assert s["timings"]["cached"] == 0 and s["timings"]["computed"] > 0
    # a rerun computes nothing: every run comes from the cache of the first invocation
    again = json.loads(cli("spectral", *SMALL, "--json", "--out", "res", "--no-figures", "-j", "1",
                           "--no-progress").stdout)
    assert again["timings"]["computed"] == 0 and again["timings"]["cached"] == s["timings"]["computed"]


def test_cli_true_rank_end_to_end(cli, tmp_path):
    """--true-rank: the local slopes, where the law stops, and the ratio to the realizable problem, printed and in
    the JSON."""
    args = ["--n", "8", "--gaps", "0.5", "0.15", "0.05", "--rounds", "300", "--seeds", "2", "--topologies",
            "--no-law", "--true-rank", "5", "--out", "res", "--no-figures", "-j", "1", "--no-progress"]
    out = cli("spectral", *args, "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["settings"]["true_rank"] == 5 and s["settings"]["rank"] == 3
    assert [ls["gaps"] for ls in s["local_slopes"]] == [[0.5, 0.15], [0.15, 0.05]]
    assert s["linearized_regime"]["statement"].startswith("the linearized law")
    assert [r["gap"] for r in s["realizable"]] == [0.5, 0.15, 0.05] and all(r["ratio"] > 1 for r in s["realizable"])
    text = cli("spectral", *args)
    assert text.returncode == 0 and "misspecified model: rank 3, truth of rank 5" in text.stdout
    assert "local slope" in text.stdout and "against realizable" in text.stdout


@pytest.mark.parametrize("args", [["--gaps", "0.5"], ["--n", "1"], ["--topologies", "moebius"], ["--seeds", "0"],
                                  ["--rounds", "abc"], ["--n", "8", "--topologies", "torus"],
                                  ["--n", "12", "--topologies", "hypercube"], ["--factor", "nan"],
                                  ["--held-out", "16"], ["--held-out", "16:1.5"], ["--law-n", "8"],
                                  ["--law-gaps", "0.1", "0.2", "--held-out", "16:0.1", "--law-n", "8", "16"],
                                  ["--true-rank", "3"], ["--rank", "4", "--true-rank", "2"], ["--true-rank", "0"]])
def test_cli_bad_input_one_line_exit_2(cli, tmp_path, args):
    out = cli("spectral", *args, "--out", "res")
    assert out.returncode == 2, out.stdout
    assert len(out.error_lines) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "res").exists()
