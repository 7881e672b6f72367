"""The bound check: labels that can fail (holds / violated / out of scope), the shape verdict, the CLI end to end."""
import json

import numpy as np
import pytest

from deprl_theory.bound import default_bound, evaluate, substitute, theory_step_rule, to_strings
from deprl_theory.constants import estimate_constants
from deprl_theory.experiments import cell_params, cell_problem, simulate_cell
from deprl_theory.experiments.boundcheck import (
    BoundCheckStudy,
    analyse_boundcheck,
    bound_from_spec,
    default_spec,
    missing_constants,
    symbolic_analysis,
)
from deprl_theory.experiments.laws import fit_power_law, shape_verdict

CONSTS = dict(L_theta=1.0, L_phi=4.0, L_thetaphi=2.0, sigma_theta=1.0, sigma_phi=3.0, delta=1.0, Delta=1.5)


def _records(points, seeds=3, c=0.5, tau=5):
    """Synthetic sweep records: ``points`` = [(N, K, gap, beta, G per seed)], a = 1/N, rho = 1 - gap."""
    recs = []
    for n, k, gap, beta, values in points:
        alpha = beta / (n * tau)
        for j in range(seeds):
            g = values[j] if isinstance(values, (list, tuple)) else values
            recs.append({"params": cell_params(N=n, K=k, topology="exact_gap", gap=gap, c=c, tau=tau), "seed": j,
                         "result": {"diverged": False, "averages": {"G": g, "R": g / 2, "H": n * g / 2, "C": 0.0},
                                    "rho": 1 - gap, "beta": beta, "alpha": alpha, "capped": []}})
    return recs


@pytest.fixture(scope="module")
def template_analysis():
    return symbolic_analysis(default_bound())


def _check(analysis, spec, points, ns, rounds, gaps):
    study = BoundCheckStudy(n=ns, rounds=rounds, gaps=gaps, seeds=3)
    return analyse_boundcheck(study, spec, analysis, _records(points), {n: CONSTS for n in ns})


def test_a_point_that_breaks_the_step_size_condition_is_out_of_scope(template_analysis):
    # rho = 0.9, L_phi = 4: the condition needs beta <= 0.1 sqrt(6)/(6 * 0.9 * 4) = 0.0113
    res = _check(template_analysis, default_spec(), [(4, 1000, 0.1, 0.05, 1e-3), (4, 1000, 0.5, 0.01, 1e-3)],
                 (4,), (1000,), (0.1, 0.5))
    out, inside = res.points
    assert out.label == "out of scope" and "beta <=" in out.failures[0] and "0.05" in out.failures[0]
    assert inside.label == "holds" and not inside.failures
    # out of scope is never counted as holding
    assert res.scope() == {"points": 2, "in_scope": 1, "holds": 1, "violated": 0, "out_of_scope": 1,
                           "failing_conditions": {"beta <= sqrt(6)*(1 - rho)/(6*L_phi*rho)": 1}}
    assert res.as_dict()["label"] == "holds" and "1 of 2 points out of scope" in res.as_dict()["label_reason"]


def test_only_out_of_scope_points_give_no_verdict(template_analysis):
    res = _check(template_analysis, default_spec(), [(4, 1000, 0.1, 0.05, 1e3)], (4,), (1000,), (0.1,))
    assert res.points[0].label == "out of scope" and res.label == "no point in scope"


def test_conditions_use_the_step_size_that_ran_not_the_rule(template_analysis):
    # c sqrt(N/K) = 0.5 sqrt(4/100) = 0.1 breaks the condition at rho = 0.5 (needs beta <= 0.102 / 4 = 0.0255);
    # the run's beta (capped, here 0.02) satisfies it, and the bound is evaluated with that beta too
    res = _check(template_analysis, default_spec(), [(4, 100, 0.5, 0.02, 1e-3)], (4,), (100,), (0.5,))
    p = res.points[0]
    assert p.label == "holds" and p.beta == 0.02
    assert p.terms["T_opt"] == pytest.approx(2 * CONSTS["Delta"] / (0.02 * 100))


def test_a_measurement_above_the_bound_in_scope_is_violated(template_analysis):
    res = _check(template_analysis, default_spec(), [(4, 1000, 0.5, 0.01, [50.0, 60.0, 70.0])], (4,), (1000,),
                 (0.5,))
    p = res.points[0]
    assert p.bound < 60 and p.label == "violated" and res.label == "violated"
    # the bound is on an expectation: one seed above it does not violate it
    res = _check(template_analysis, default_spec(), [(4, 1000, 0.5, 0.01, [0.1, 0.1, p.bound * 1.5])], (4,),
                 (1000,), (0.5,))
    assert res.points[0].label == "holds"


@pytest.mark.parametrize("e_N,e_K,e_rho,words", [
    (0.0, 0.0, 0.0, ("tight", "tight", "tight")),
    (-1.0, 0.5, -2.0, ("loose", "optimistic", "loose")),
])
def test_shape_reads_the_exponents_of_measured_over_bound(e_N, e_K, e_rho, words):
    rng = np.random.default_rng(1)
    N = np.repeat([4, 8, 16], 6).astype(float)
    K = np.tile(np.repeat([250, 1000], 3), 3).astype(float)
    x = np.tile([2.0, 5.0, 20.0], 6)  # 1/(1 - rho)
    ratio = (N ** e_N * K ** e_K * x ** e_rho)[:, None] * np.exp(0.02 * rng.standard_normal((18, 4)))
    fit = fit_power_law({"N": N, "K": K, "rho": x}, ratio)
    got = tuple(shape_verdict(v, fit.exponents[v], fit.cis[v]).word for v in ("N", "K", "rho"))
    assert got == words
    assert shape_verdict("K", None, None).word == "not varied"


def test_shape_reports_a_variable_tied_to_another_as_not_identified():
    N = np.array([4, 8, 16, 4, 8, 16.])
    fit = fit_power_law({"N": N, "K": [100, 100, 100, 200, 200, 200], "rho": 2 * N}, np.outer(N, [1, 1.1]))
    assert "rho" in fit.not_identified and "rho" not in fit.exponents


def test_numeric_bound_lies_above_measured_gbar_on_a_small_run():
    seeds = (0, 1)
    sub = substitute(default_bound(), theory_step_rule("1/N"))
    for n, topology in ((4, "ring"), (6, "ring")):
        params = cell_params(N=n, K=300, topology=topology, dim=8, rank=2, tau=2)
        res = simulate_cell(params, seeds, 0)
        consts = estimate_constants(cell_problem(params, seeds, 0), seed=0).symbols()
        rho = res[0]["rho"]
        total = evaluate(sub, {**consts, "c": 0.5, "tau": 2, "rho": rho, "N": n}, K=300.0)["total"]
        measured = max(r["averages"]["G"] for r in res.values())
        assert np.isfinite(total) and total >= measured


def test_symbolic_analysis_of_a_user_bound_names_missing_constants():
    spec = bound_from_spec({"terms": {"T": "Zeta/sqrt(N*K)", "T_cons": "N/K"}, "consensus_terms": ["T_cons"]})
    analysis = symbolic_analysis(spec.bound)
    assert analysis.exponents == {"N": "-1/2", "K": "-1/2"}
    assert analysis.K0_N_exponent == "3"
    assert missing_constants(analysis, spec) == ["Zeta"]
    with pytest.raises(ValueError, match="measured"):
        bound_from_spec({"terms": {"T": "1/K"}, "measured": "Q"})


def test_cli_quick_json_end_to_end(cli, tmp_path):
    out = cli("bound", "--quick", "--json", "--latex", "--out", "res", "--figures", "figs", "-j", "1",
              "--no-progress")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["exponents"] == {"N": "-1/2", "K": "-1/2"}
    assert "rho**4" in s["K0"]
    assert s["settings"]["gaps"] == [0.5, 0.1] and len(s["points"]) == 2 * 2 * 2
    labels = {(p["N"], p["K"], p["gap"]): p for p in s["points"]}
    # N = 8, K = 200: beta = 0.5 sqrt(8/200) = 0.1 breaks beta <= (1-rho)/(sqrt(6) rho L_phi) at both gaps
    for gap in (0.5, 0.1):
        p = labels[(8, 200, gap)]
        assert p["label"] == "out of scope" and not p["in_scope"] and "beta <=" in p["failing_conditions"][0]
    in_scope = [p for p in s["points"] if p["in_scope"]]
    assert s["scope"]["out_of_scope"] == len(s["points"]) - len(in_scope) >= 2
    assert s["label"] in ("holds", "violated") and in_scope
    assert s["label"] == ("violated" if any(p["measured_mean"] > p["bound"] for p in in_scope) else "holds")
    assert set(s["shape"]) == {"N", "K", "rho"} and all(v["label"].endswith(" in " + k) for k, v in s["shape"].items())
    assert "shape_in_scope" in s and s["shape_in_scope_note"]
    # one conclusion on the shape, its scope stated, first the points in scope
    summary = s["shape_summary"]
    assert summary.startswith(f"shape over the {s['scope']['in_scope']} points in scope: ")
    assert all(v["label"] in summary.split(";")[0] for v in s["shape_in_scope"].values())
    if any(s["shape"][v]["label"] != s["shape_in_scope"][v]["label"] for v in s["shape"]):
        assert f"over all {len(s['points'])} points, including" in summary
    for ext in ("png", "pdf"):
        assert (tmp_path / "figs" / f"bound_vs_measured.{ext}").stat().st_size > 0
    assert (tmp_path / "res" / "bound_points.csv").read_text().count("\n") > 4


def test_cli_user_bound_gets_the_same_analysis(cli, tmp_path):
    spec = {"terms": {"T_main": "Delta/sqrt(N*K)", "T_cons": "rho**2*N/(K*(1-rho)**2)"},
            "conditions": ["rho < 1"], "consensus_terms": ["T_cons"], "constants": {"Delta": 0.001}}
    (tmp_path / "b.json").write_text(json.dumps(spec))
    out = cli("bound", "--terms", "b.json", "--json", "--quick", "--out", "res", "--figures", "figs", "-j", "1",
              "--no-progress")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["exponents"] == {"N": "-1/2", "K": "-1/2"}
    assert "N**3" in s["K0"]
    # a deliberately tiny bound must be reported as failing, not hidden
    assert s["label"] == "violated" and s["tightness"]["in_scope"]["min"] < 1


def test_cli_template_made_100x_too_small_is_violated(cli, tmp_path):
    spec = to_strings(default_bound())
    spec = {"terms": {name: f"({expr})/100" for name, expr in spec["terms"].items()},
            "conditions": spec["conditions"], "consensus_terms": ["T_cons"], "measured": "aH+R"}
    (tmp_path / "small.json").write_text(json.dumps(spec))
    out = cli("bound", "--terms", "small.json", "--json", "--quick", "--out", "res", "--no-figures", "-j", "1",
              "--no-progress")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["label"] == "violated" and s["scope"]["violated"] >= 1
    # the same points hold for the template itself: the factor 100 is what fails
    out = cli("bound", "--json", "--quick", "--out", "res", "--no-figures", "-j", "1", "--no-progress")
    full = json.loads(out.stdout)
    assert full["label"] == "holds" and full["scope"]["in_scope"] == s["scope"]["in_scope"]


@pytest.mark.parametrize("content,args", [
    (None, ["--terms", "missing.json"]),
    ("{not json", ["--terms", "bad.json"]),
    ('{"terms": {}}', ["--terms", "bad.json"]),
    ('{"terms": {"T": "1/K"}, "consensus_terms": ["T_cons"]}', ["--terms", "bad.json"]),
    (None, ["--problem", "cubic"]),
    (None, ["--n", "1"]),
    (None, ["--topology", "torus"]),
    (None, ["--gaps", "0"]),
    (None, ["--gaps", "0.5", "--topology", "ring"]),
])
def test_cli_bad_input_one_line_exit_2(cli, tmp_path, content, args):
    if content is not None:
        (tmp_path / "bad.json").write_text(content)
    out = cli("bound", *args, "--quick", "--out", "res")
    assert out.returncode == 2, out.stdout
    assert len(out.error_lines) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "res").exists()


def test_cli_missing_constant_is_a_usage_error(cli, tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"terms": {"T": "Zeta/sqrt(N*K)"}}))
    out = cli("bound", "--terms", "b.json", "--quick", "--out", "res", "--figures", "figs")
    assert out.returncode == 2
    assert "Zeta" in out.stderr and len(out.error_lines) == 1
