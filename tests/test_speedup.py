"""The speedup experiment: analysis on planted records (no simulation), and the CLI end to end."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from deprl_theory.experiments import cell_params
from deprl_theory.experiments.speedup import SpeedupStudy, analyse_speedup, rounds_to_accuracy
from deprl_theory.experiments.transient import PredictedTransient

NS, KS = (4, 8, 16, 32), (500, 1000, 2000, 4000)


def planted_records(e_N=-0.5, e_K=-0.5, *, seeds=6, noise=0.03, transient=None, diverged=(), seed=0):
    """Sweep records whose R, H, G follow A N^e_N K^e_K with log-normal seed noise.

    ``transient`` (factor) multiplies the smallest K of every N; ``diverged``
    lists (N, K, seed) runs marked as diverged.
    """
    rng = np.random.default_rng(seed)
    records = []
    for n in NS:
        for k in KS:
            for s in range(seeds):
                value = 3.0 * n**e_N * k**e_K * np.exp(noise * rng.standard_normal())
                if transient and k == KS[0]:
                    value *= transient
                bad = (n, k, s) in diverged
                avg = {m: float("nan") if bad else value * f for m, f in (("R", 1), ("H", 2), ("G", 1.5), ("C", 0))}
                final = {**avg, "subspace": value, "excess_risk": value}
                records.append({"params": cell_params(N=n, K=k), "seed": s, "result": {
                    "averages": avg, "final": final, "diverged": bad, "diverged_round": 3 if bad else -1,
                    "alpha": 0.01, "beta": 0.02, "step_rule": "rule", "rho": 0.5,
                    "norms": {"theta": 1.0 / n, "phibar": float(n)}}})
    return records


def analyse(records, **study):
    study = SpeedupStudy(n=NS, rounds=KS, seeds=6, **study)
    predicted = {n: PredictedTransient(10.0, "test") for n in NS}
    return analyse_speedup(study, records, rho={n: 0.5 for n in NS}, predicted=predicted)


def test_analysis_recovers_planted_exponents_and_keeps_the_json_keys():
    result = analyse(planted_records())
    fit = result.fits["R"].fit
    assert fit.e_N == pytest.approx(-0.5, abs=0.02) and fit.e_K == pytest.approx(-0.5, abs=0.02)
    assert result.verdict == "linear" and result.headline.metric == "G"
    s = result.as_dict()
    assert {"verdict", "metric", "reason", "exponents", "verdicts", "metrics"} <= set(s)
    for m in ("R", "H", "G"):
        assert set(s["metrics"][m]["speedup"]) == {"value", "ci"}
        assert set(s["metrics"][m]) >= {"N", "K", "speedup", "verdict", "reason"}
    # K_eps comes with the result whether or not figures are drawn
    assert set(s["k_eps"]["G"]["K_eps"]) == {"4", "8", "16", "32"}
    assert s["transient"]["4"]["grid_past_transient"] is True
    assert s["converges"] == {"R": True, "H": True, "G": True}
    assert s["diagnostics"]["32"] == {"K": 4000, "theta": 1 / 32, "phibar": 32.0}
    assert s["ground_truth"]["subspace"]["N"]["value"] == pytest.approx(-0.5, abs=0.02)
    assert s["settings"]["intervals"]["method"].startswith("t interval")


def test_transient_cells_are_trimmed_listed_and_the_untrimmed_fit_shown_beside():
    result = analyse(planted_records(transient=3.0))
    assert {(e["N"], e["K"]) for e in result.excluded} == {(n, 500) for n in NS}
    assert all(k != 500 for _, k in result.fit_cells)
    assert result.fits["R"].fit.e_K == pytest.approx(-0.5, abs=0.03)
    untrimmed = result.fits["R"].untrimmed
    assert untrimmed is not None and untrimmed.fit.e_K < -0.6  # all cells: the transient biases e_K
    assert result.as_dict()["metrics"]["G"]["untrimmed"]["K"]["value"] < -0.6
    kept = analyse(planted_records(transient=3.0), transient_tol=0.0)
    assert kept.excluded == [] and kept.fits["R"].untrimmed is None and kept.fits["R"].fit.e_K < -0.6
    by_factor = analyse(planted_records(), transient_tol=0.0, transient_factor=60.0)
    assert {(e["N"], e["K"]) for e in by_factor.excluded} == {(n, 500) for n in NS}


def test_a_cell_where_any_seed_diverged_is_dropped_whole_and_said():
    diverged = {(4, 500, s) for s in range(6)} | {(8, 1000, 0)}
    result = analyse(planted_records(diverged=diverged), transient_tol=0.0)
    assert result.fits["G"].dropped == ((4, 500), (8, 1000))
    assert "2 cell(s) dropped for divergence" in result.fits["G"].verdict.reason
    assert len(result.diverged) == 7 and result.diverged[0]["round"] == 3
    # the survivors of (8, 1000) are not used: the same cells for every seed
    assert result.fits["G"].fit.n_cells == 14


def test_rounds_to_accuracy_follows_the_power_law():
    table = {(n, k): np.array([1 / np.sqrt(n * k)]) for n in NS for k in KS}
    k_eps = rounds_to_accuracy(table, eps=1 / np.sqrt(32 * 1000))
    assert k_eps.k_eps[32] == pytest.approx(1000, rel=1e-9)
    assert k_eps.speedup()[32] == pytest.approx(8.0, rel=1e-9)
    assert k_eps.extrapolated[4] is True and k_eps.extrapolated[32] is False


def test_study_checks_its_grid():
    with pytest.raises(ValueError, match="three distinct"):
        SpeedupStudy(n=(4, 8))
    with pytest.raises(ValueError, match="unknown cell parameter"):
        SpeedupStudy(cell={"colour": "red"})
    with pytest.raises(ValueError, match="N = 12"):
        SpeedupStudy(n=(4, 8, 12), cell={"topology": "hypercube"}).mixing_rates()
    with pytest.raises(ValueError, match="symmetric"):
        SpeedupStudy(cell={"topology": "star", "weights": "uniform"}).mixing_rates()


# --------------------------------------------------------------------------- the command line
QUICK = ["--n", "4", "8", "16", "--rounds", "200", "400", "800", "--seeds", "4", "--no-progress",
         "--no-until-decisive"]


@pytest.fixture(scope="module")
def deprl_quick(tmp_path_factory):
    from conftest import Cli

    cwd = tmp_path_factory.mktemp("deprl")
    res = Cli(cwd)("speedup", *QUICK, "--out", "out", "--json")
    assert res.returncode == 0, res.stderr
    return cwd / "out", json.loads(res.stdout), Cli(cwd)


@pytest.mark.slow
def test_deprl_shows_linear_speedup_of_the_full_gradient(deprl_quick):
    _, summary, _ = deprl_quick
    assert summary["metric"] == "G" and summary["verdict"] == "linear", summary["metrics"]["G"]
    # heads do not speed up under a = 1/N: Hbar ~ sqrt(N/K), e_N = +1/2; shown, not hidden
    assert summary["verdicts"]["H"] == "none" and summary["metrics"]["H"]["N"]["value"] > 0.3
    assert set(summary["verdicts"]) == {"R", "H", "G"}


@pytest.mark.slow
def test_summary_csv_and_figures_are_written(deprl_quick):
    out, summary, _ = deprl_quick
    for key in ("verdict", "exponents", "seconds", "settings", "provenance", "transient", "excluded_cells", "k_eps"):
        assert key in summary
    for name in ("N", "K", "speedup"):
        value = summary["exponents"][name]
        assert isinstance(value["value"], float) and len(value["ci"]) == 2
    stored = json.loads((out / "summary.json").read_text())
    assert stored["verdict"] == summary["verdict"]
    with open(out / "speedup.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 3 * 4 * 4  # N x K x seeds x metrics (R, H, C, G)
    assert {"N", "K", "seed", "metric", "value", "diverged", "alpha", "beta"} <= set(rows[0])
    figs = {p.split("/")[-1] for p in summary["figures"]}
    for kind in ("rate", "collapse", "speedup"):
        assert f"speedup_{kind}_R.png" in figs and f"speedup_{kind}_R.pdf" in figs
    assert all((out.parent / p).exists() for p in summary["figures"])


@pytest.mark.slow
def test_rerun_reads_the_cache_and_no_figures_keeps_k_eps(deprl_quick):
    out, summary, cli = deprl_quick
    res = cli("speedup", *QUICK, "--out", "out", "--json", "--no-figures")
    again = json.loads(res.stdout)
    assert again["sweep"]["computed"] == 0 and again["sweep"]["cached"] == 3 * 3 * 4
    assert again["exponents"] == summary["exponents"]
    assert again["k_eps"] == summary["k_eps"] and again["figures"] == []


@pytest.mark.slow
@pytest.mark.parametrize("algorithm,verdicts", [
    ("local", {"G": "none", "R": "none"}),  # falsifiable: no communication, no speedup
    ("centralized", {"G": "linear", "H": "none"}),
    ("dpsgd", {"G": "none", "H": "none"}),  # one shared head fits no worker: personalized stationarity stalls
])
def test_each_algorithm_gets_its_verdict_word(cli, algorithm, verdicts):
    res = cli("speedup", *QUICK, "--algorithm", algorithm, "--out", "out", "--json", "--no-figures")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    for metric, word in verdicts.items():
        assert summary["verdicts"][metric] == word, (metric, summary["metrics"][metric]["reason"])
    if algorithm == "local":
        assert summary["converges"]["G"] is False


@pytest.mark.slow
def test_the_design_adds_seeds_at_its_planned_looks_only_and_reports_the_stopping_looks_level(cli):
    args = [*QUICK[:-4], "--looks", "2", "4", "6", "--margin", "0.01", "--no-figures", "--json",
            "--out", "out", "--no-progress", "--companion", "never"]
    res = cli("speedup", *args)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    seq = summary["sequential"]
    assert seq["design"]["looks"] == [2, 4, 6] and seq["design"]["kind"] == "obrien-fleming"
    look = seq["stopped_at_look"]
    assert seq["seeds"] == [2, 4, 6][look - 1] == summary["settings"]["seeds"]
    assert len(seq["verdicts_per_look"]) == look
    assert summary["level"] == pytest.approx(seq["design"]["levels"][look - 1])
    assert ("decisive" in seq["why"]) == (summary["verdict"] != "inconclusive")
    # every look's runs are computed once: the tally adds up to the stopping look's runs
    assert summary["sweep"]["computed"] + summary["sweep"]["cached"] >= 3 * 3 * seq["seeds"]


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
        (["--topology", "star", "--weights", "uniform"], "symmetric"),
        (["--seeds", "1"], "at least 2 seeds"),
        (["--n", "4", "8", "x"], "integer"),
        (["--beta-max", "-1"], "positive"),
        (["--n-eval", "0"], "positive"),
        (["--transient-tol", "nan"], "finite"),
        (["--head-rule", "banana"], "head rule"),
        (["--head-step", "-1"], "positive"),
        (["--margin", "1.5"], "[0, 1)"),
        (["--rank", "5"], "balanced heads need"),
        (["--seeds", "8", "--until-decisive", "--max-seeds", "4"], "below --seeds"),
        (["--looks", "8", "4"], "strictly increasing"),
        (["--looks", "1", "4"], "at least 2 seeds"),
        (["--looks", "8", "16", "--no-until-decisive"], "--looks plans the looks"),
        (["--looks", "8", "16", "--seeds", "10"], "differs from the first look"),
        (["--design", "haybittle"], "unknown design"),
        (["--companion", "sometimes"], "unknown companion rule"),
        (["--beta-rule", "c/K"], "unknown beta rule"),
        (["--heads", "lopsided"], "heads design"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(cli, tmp_path, args, needle):
    res = cli("speedup", *args, "--out", "out")
    assert res.returncode == 2, res.stdout
    assert len(res.error_lines) == 1, res.stderr
    assert needle in res.error_lines[0]
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "figures").exists() and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_three_executors_give_identical_numbers(cli, tmp_path):
    """Serial, local processes and a Dask cluster on loopback: the same numbers, cell by cell."""
    distributed = pytest.importorskip("distributed")
    small = ["--n", "4", "8", "16", "--rounds", "50", "100", "--seeds", "2", "--no-progress",
             "--no-figures", "--json", "--no-until-decisive"]
    serial = cli("speedup", *small, "-j", "1", "--out", "serial")
    procs = cli("speedup", *small, "-j", "2", "--out", "procs")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        dask = cli.subprocess("speedup", *small, "--scheduler", cluster.scheduler_address, "--out", "dask")
    outs = []
    for res in (serial, procs, dask):
        assert res.returncode == 0, res.stderr
        outs.append(json.loads(res.stdout))
    assert [o["sweep"]["executor"] for o in outs] == ["serial", "processes", "dask"]
    tables = []
    for name in ("serial", "procs", "dask"):
        with open(tmp_path / name / "speedup.csv") as fh:
            tables.append(sorted((r["N"], r["K"], r["seed"], r["metric"], r["value"]) for r in csv.DictReader(fh)))
    assert tables[0] == tables[1] == tables[2]
    assert outs[0]["exponents"] == outs[1]["exponents"] == outs[2]["exponents"]


def test_diverging_runs_are_recorded_and_the_sweep_goes_on(cli):
    res = cli("speedup", "--n", "4", "8", "16", "--rounds", "100", "200", "--seeds", "2",
              "--c", "20", "--beta-max", "100", "--head-step", "1.5", "--alpha-max", "10",
              "--no-progress", "--no-figures", "--json", "--out", "out", "-j", "1")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    # the design stops at its first look: with no fit, more seeds cannot decide
    assert summary["sequential"]["stopped_at_look"] == 1 and "more seeds cannot" in summary["sequential"]["why"]
    assert len(summary["diverged"]) == 3 * 2 * 2
    first = summary["diverged"][0]
    assert first["alpha"] == 1.5 and first["beta"] > 1 and first["round"] >= 1
    assert summary["verdict"] == "inconclusive"
    assert "diverged" in summary["reason"]


def test_regime_starts_where_two_local_slopes_sit_within_the_margin():
    from deprl_theory.experiments.speedup import regime_starts

    ks = (250, 500, 1000, 2000, 4000)

    def curve(n, slopes):
        y = np.cumsum([0.0, *[s * np.log(2) for s in slopes]])
        return {(n, k): np.array([np.exp(v)]) for k, v in zip(ks, y)}

    table = {**curve(4, [-0.1, -0.3, -0.45, -0.52]), **curve(8, [-0.5, -0.5, -0.5, -0.5]),
             **curve(16, [-0.05, -0.15, -0.25, -0.33])}
    r = regime_starts(table, margin=0.1)
    assert r[4]["reached"] and r[4]["start"] == 1000
    assert r[8]["reached"] and r[8]["start"] == 250
    assert not r[16]["reached"] and r[16]["start"] == 2000
    assert r[16]["needs"] > 4000  # the trend of the local slopes points beyond the grid
    one = regime_starts({**curve(4, [-0.1, -0.2, -0.3, -0.45])}, margin=0.1)[4]
    assert not one["reached"]  # a single slope inside the margin is a curve passing through


@pytest.mark.slow
def test_rounds_auto_stops_at_once_on_the_linear_problem(cli):
    res = cli("speedup", "--rounds", "auto", "--quick", "--n", "4", "8", "16", "--json", "--no-figures",
              "--no-progress", "--out", "out", "-j", "1")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["stopping"]["why"].startswith("every N reached the asymptotic regime")
    assert all(r["reached"] and r["K"] == [250, 500, 1000] for r in s["regime"].values())
    assert s["verdict"] == "linear"


def test_regime_estimates_where_the_trend_of_local_slopes_meets_the_margin_and_the_rate():
    from deprl_theory.experiments.speedup import regime_starts

    ks = (500, 1000, 2000, 4000, 8000)

    def curve(slopes):
        y = np.cumsum([0.0, *[s * np.log(2) for s in slopes]])
        return {(4, k): np.array([np.exp(v)]) for k, v in zip(ks, y)}

    # the last slope has just entered the margin: one more doubling can confirm the regime
    entering = regime_starts(curve([-0.1, -0.26, -0.37, -0.42]), margin=0.1)[4]
    assert not entering["reached"] and entering["needs"] == 16000
    # slopes at the margin's edge, creeping towards -1/2: the regime test passes, the rate is still ahead
    edge = regime_starts(curve([-0.35, -0.40, -0.41, -0.43]), margin=0.1)[4]
    assert edge["reached"] and edge["to_target"] > 8000
    # slow trend (0.02 per doubling from -0.43 to -0.5): about 3.5 doublings past the middle of the last pair
    assert 8000 * 2**2 < edge["to_target"] < 8000 * 2**5
    # at the rate: no estimate is needed
    at_rate = regime_starts(curve([-0.5, -0.5, -0.49, -0.5]), margin=0.1)[4]
    assert at_rate["to_target"] is None
    # a trend that points away from -1/2 gives no estimate rather than a negative or absurd one
    away = regime_starts(curve([-0.3, -0.25, -0.2, -0.15]), margin=0.1)[4]
    assert away["needs"] is None and away["to_target"] is None


def test_rounds_auto_flags_a_verdict_whose_e_K_interval_is_not_at_the_rate():
    from dataclasses import replace

    from deprl_theory.experiments.speedup import _flag_pre_asymptotic

    flat = analyse(planted_records(e_N=-0.35, e_K=-0.38))
    regime = {n: {**r, "to_target": 7.6e5 if n == 4 else None} for n, r in flat.regime.items()}
    flagged = _flag_pre_asymptotic(replace(flat, regime=regime, stopping={"why": "budget"}))
    assert flagged.headline.verdict.asymptotic is False
    assert "pre-asymptotic" in flagged.headline.verdict.reason and "7.6e+05 (N = 4)" in flagged.headline.verdict.reason
    assert "pre_asymptotic" in flagged.stopping
    assert flagged.verdict == flat.verdict  # the verdict word stays what the data say
    at_rate = analyse(planted_records())
    assert _flag_pre_asymptotic(at_rate) == at_rate


def test_rounds_auto_keeps_growing_while_the_fitted_e_K_is_off_the_rate_and_the_budget_allows():
    import time
    from dataclasses import replace

    from deprl_theory.experiments.speedup import _extend_rounds

    flat = analyse(planted_records(e_N=-0.35, e_K=-0.38))
    study = flat.study
    reached = {n: {**r, "reached": True, "to_target": 1e6 if n in (4, 8) else None} for n, r in flat.regime.items()}
    grown, why = _extend_rounds(study, replace(flat, regime=reached), 256_000, time.monotonic() + 600)
    assert why == "" and grown.rounds_of(4)[-1] == 8000 and grown.rounds_of(16)[-1] == 4000
    _, why = _extend_rounds(study, replace(flat, regime=reached), 256_000, time.monotonic() - 1)
    assert "not within the margin" in why and "time budget" in why and "--" not in why
    at_rate = analyse(planted_records())
    done = {n: {**r, "reached": True, "to_target": 1e6} for n, r in at_rate.regime.items()}
    grown, why = _extend_rounds(at_rate.study, replace(at_rate, regime=done), 256_000, time.monotonic() + 600)
    assert grown is None and why == "every N reached the asymptotic regime"


def test_an_unbounded_interval_is_said_in_a_word_with_its_reason(cli, tmp_path):
    """Local-only training: e_K's CI reaches 0, so s has no finite CI; the table says so instead of [-inf, +inf]."""
    run = cli("speedup", "--n", "4", "8", "16", "--quick", "--algorithm", "local", "--out", str(tmp_path / "o"),
              "--no-figures", "--no-progress", "--jobs", "1")
    assert run.returncode == 0, run.stderr
    assert "inf" not in run.stdout and "nan" not in run.stdout
    assert "unbounded" in run.stdout and "unbounded: the CI of e_K reaches 0" in run.stdout


def test_the_run_tally_counts_only_an_earlier_invocations_cache(tmp_path):
    """A fresh folder: everything analysed was computed now; the same call again: everything from the cache."""
    from deprl_theory import SweepOptions
    from deprl_theory.experiments.speedup import run_speedup

    study = SpeedupStudy(n=(4, 8, 16), rounds=(100, 200), seeds=2, looks=(2, 3, 4), companion="always",
                         cell={"dim": 8, "rank": 2})
    options = SweepOptions(out=tmp_path, executor="serial", progress=False)
    first, _ = run_speedup(study, options)
    assert first.sweep["cached"] == 0 and first.sweep["computed"] >= first.sweep["analysed"] > 0
    again, _ = run_speedup(study, options)
    assert again.sweep["computed"] == 0
    assert again.sweep["cached"] == again.sweep["analysed"] == first.sweep["analysed"]


def test_the_header_prints_the_grid_that_ran():
    from verification.speedup import _k_grid

    same = {"rounds": [500, 1000], "rounds_per_n": {"4": [500, 1000], "8": [500, 1000]}}
    assert _k_grid(same) == "K = [500, 1000]"
    grown = {"rounds": [500, 1000], "rounds_per_n": {"4": [500, 1000, 2000, 64000], "8": [500, 1000]}}
    assert "N = 4: [500, 1000, 2000, 64000]" in _k_grid(grown) and "K = [500, 1000]," not in _k_grid(grown)
