"""The bound check: the numeric bound lies above the measurement; the CLI end to end."""
import json

import numpy as np
import pytest

from deprl_theory.bound import default_bound, evaluate, substitute, theory_step_rule
from deprl_theory.constants import estimate_constants
from deprl_theory.experiments import cell_params, cell_problem, simulate_cell
from deprl_theory.experiments.boundcheck import bound_from_spec, missing_constants, symbolic_analysis


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
    assert "rho**4" in s["K0"] and isinstance(s["holds"], bool)
    assert set(s["tightness"]) == {"min", "median", "max"} and s["tightness"]["min"] >= 1
    assert "\\underbrace" in s["latex"]
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
    assert s["holds"] is False and s["tightness"]["min"] < 1


@pytest.mark.parametrize("content,args", [
    (None, ["--terms", "missing.json"]),
    ("{not json", ["--terms", "bad.json"]),
    ('{"terms": {}}', ["--terms", "bad.json"]),
    ('{"terms": {"T": "1/K"}, "consensus_terms": ["T_cons"]}', ["--terms", "bad.json"]),
    (None, ["--problem", "cubic"]),
    (None, ["--n", "1"]),
    (None, ["--topology", "torus"]),
    (None, ["--topology", "exact_gap"]),
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
