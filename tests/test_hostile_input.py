"""Careless and hostile input: no code execution, no traceback, no wrong verdict, no poisoned cache.

Each category of the hostile-input issue has a section here. A user error
must exit 2 with one line on stderr, no traceback, and write nothing.
"""
from __future__ import annotations

import json
import time

import pytest

from deprl_theory.bound import make_bound, parse
from deprl_theory.expressions import ExpressionError, parse_formula

# --------------------------------------------------------------------------- 1. bound files run no code

#: each would create the file MARKER if the formula were evaluated as Python
INJECTIONS = {
    "attribute chain": ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'catch_warnings']"
                        "[0]()._module.__builtins__['__import__']('os').system('touch MARKER')"),
    "dunder name": "__import__('os').system('touch MARKER')",
    "lambda": "(lambda: __import__('os').system('touch MARKER'))()",
    "comprehension": "[__import__('os').system('touch MARKER') for _ in (1,)]",
    "subscript": "globals()['__builtins__']['exec'](\"open('MARKER', 'w')\")",
    "builtin call": "exec(\"open('MARKER', 'w')\")",
    "attribute on a name": "N.__class__.__init__.__globals__['os'].system('touch MARKER')",
    "walrus": "(x := __import__('os')).system('touch MARKER')",
}


def _bound_file(tmp_path, term: str, where: str = "terms") -> str:
    spec = {"terms": {"T_lead": "A/sqrt(N*K)"}, "constants": {"A": 1.0}}
    if where == "terms":
        spec["terms"]["T_evil"] = term
    else:
        spec["conditions"] = [term]
    (tmp_path / "evil.json").write_text(json.dumps(spec))
    return "evil.json"


@pytest.mark.parametrize("name", sorted(INJECTIONS))
@pytest.mark.parametrize("mode", ["--symbolic-only", "--quick"])
def test_bound_file_injection_runs_nothing_and_exits_2(cli, tmp_path, name, mode):
    marker = tmp_path / "MARKER"
    formula = INJECTIONS[name].replace("MARKER", str(marker))
    path = _bound_file(tmp_path, formula)
    res = cli("bound", "--terms", path, mode, "--out", "res", "--figures", "figs")
    assert not marker.exists(), f"{name}: the formula was executed"
    assert res.returncode == 2, res.stdout
    assert len(res.error_lines) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "res").exists() and not (tmp_path / "figs").exists()


def test_injection_in_a_condition_runs_nothing(cli, tmp_path):
    marker = tmp_path / "MARKER"
    path = _bound_file(tmp_path, "beta <= " + INJECTIONS["dunder name"].replace("MARKER", str(marker)),
                       where="conditions")
    res = cli("bound", "--terms", path, "--symbolic-only")
    assert not marker.exists()
    assert res.returncode == 2 and len(res.error_lines) == 1


def test_injection_end_to_end_in_a_real_process(cli, tmp_path):
    marker = tmp_path / "MARKER"
    path = _bound_file(tmp_path, INJECTIONS["attribute chain"].replace("MARKER", str(marker)))
    res = cli.subprocess("bound", "--terms", path, "--symbolic-only")
    assert not marker.exists()
    assert res.returncode == 2 and len(res.error_lines) == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize("formula,needle", [
    ("9**9**9**9", "exponent"),
    ("(N+K+rho)**200", "exponent"),
    ("+".join(f"x{i}" for i in range(400)), "too large"),
    ("-" * 150 + "N", "nested too deeply"),
    ("(" * 300 + "N" + ")" * 300, "cannot read"),
    ("N" + "*N" * 2000, "too long"),
    ("10**10**10", "exponent"),
    ("N**K", "exponents must be numbers"),
])
def test_oversized_formulas_are_rejected_in_well_under_a_second(formula, needle):
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=needle):
        parse(formula)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("formula", ["1/(N-N)", "log(0)", "(-1)**0.5", "1e400*N"])
def test_undefined_or_infinite_formulas_are_rejected(formula):
    with pytest.raises(ExpressionError, match="zero|finite"):
        parse(formula)


def test_the_whitelist_still_reads_every_formula_of_the_template():
    sym = parse("beta <= (1-rho)/(sqrt(6)*rho*L_phi)")
    assert str(sym) == "beta <= sqrt(6)*(1 - rho)/(6*L_phi*rho)"
    assert str(parse("2*N^3/K")) == "2*N**3/K"  # ^ is power and binds like **
    assert str(parse("K**0.5 + Max(N, K) + exp(-K) + log(N)*pi")).count("sqrt(K)") == 1
    with pytest.raises(ExpressionError, match="comparison"):
        parse_formula("N < K", lambda n: n, relation=False)
    with pytest.raises(ValueError, match="constant"):
        make_bound({"T": "5"})


def test_a_bound_too_complex_for_sympy_hits_the_time_budget(cli, tmp_path):
    # within every size limit, yet sympy's simplification of it runs for minutes
    spec = {"terms": {"T": "A/sqrt(N*K)", "T_cons": "(beta+N+K)**6*(alpha+rho)**6/(1-rho)**6/K**3"},
            "consensus_terms": ["T_cons"], "constants": {"A": 1.0}}
    (tmp_path / "slow.json").write_text(json.dumps(spec))
    start = time.perf_counter()
    res = cli("bound", "--terms", "slow.json", "--symbolic-only", "--symbolic-timeout", "1")
    assert res.returncode == 2 and len(res.error_lines) == 1
    assert "too complex" in res.stderr
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("spec,needle", [
    ({"terms": {"T": 5}}, "constant"),
    ({"terms": {"T": "A/sqrt(N*K)"}, "constants": {"A": 1e400}}, "finite"),
    ({"terms": {"T": "A/sqrt(N*K)"}, "constants": {"A": True}}, "numbers"),
    ({"terms": {"T": "1/(N-N)"}}, "zero"),
    ({"terms": {"T": ["N"]}}, "string"),
])
def test_bad_bound_files_exit_2_with_one_line(cli, tmp_path, spec, needle):
    (tmp_path / "b.json").write_text(json.dumps(spec))
    res = cli("bound", "--terms", "b.json", "--quick", "--out", "res", "--figures", "figs")
    assert res.returncode == 2, res.stdout
    assert len(res.error_lines) == 1 and needle in res.stderr
    assert not (tmp_path / "res").exists()
