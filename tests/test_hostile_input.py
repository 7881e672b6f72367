"""Careless and hostile input: no code execution, no traceback, no wrong verdict, no poisoned cache.

Each category of the hostile-input issue has a section here. A user error
must exit 2 with one line on stderr, no traceback, and write nothing.
"""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from deprl_theory.bound import make_bound, parse
from deprl_theory.expressions import ExpressionError, call_with_time_limit, parse_formula

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


def _sleep_then_return(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


def _swallow_every_exception_for(seconds: float) -> str:
    # as sympy's own `except Exception` blocks do with an exception a signal handler raises
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.01)
        except Exception:  # noqa: BLE001
            pass
    return "finished"


def _fail_inside() -> None:
    raise KeyError("a bug in the library")


@pytest.mark.parametrize("fn", [_sleep_then_return, _swallow_every_exception_for])
def test_the_time_budget_holds_even_when_sigalrm_is_blocked_or_swallowed(fn):
    # CI ran this suite with SIGALRM blocked: a budget built on the signal never fired and the job hung
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
    try:
        start = time.perf_counter()
        with pytest.raises(ExpressionError, match="longer than 0.5 s"):
            call_with_time_limit(0.5, "the test call", fn, 20.0)
        assert time.perf_counter() - start < 5
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def test_the_time_limited_call_returns_the_result_and_keeps_a_bugs_traceback():
    assert call_with_time_limit(10, "the test call", _sleep_then_return, 0.0) == "finished"
    assert call_with_time_limit(None, "the test call", _sleep_then_return, 0.0) == "finished"
    with pytest.raises(KeyError) as info:
        call_with_time_limit(10, "the test call", _fail_inside)
    assert any("_fail_inside" in note for note in info.value.__notes__)


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


# --------------------------------------------------------------------------- 2 and 3. settings and paths
@pytest.mark.parametrize("command,args,needle", [
    ("speedup", ["--beta-max", "-1"], "positive"),
    ("speedup", ["--topology", "star", "--weights", "uniform"], "breaks A4"),
    ("speedup", ["--n-eval", "0"], "positive"),
    ("speedup", ["--transient-tol", "nan"], "finite"),
    ("speedup", ["--head-rule", "banana"], "head rule"),
    ("speedup", ["--head-step", "-1"], "positive"),
    ("speedup", ["--c", "inf"], "finite"),
    ("speedup", ["--noise", "-1"], ">= 0"),
    ("speedup", ["--rank", "30"], "rank"),
    ("speedup", ["--topology", "erdos_renyi"], "needs parameter p"),
    ("speedup", ["--topology", "random_regular", "--degree", "3", "--n", "5", "7", "9"], "even"),
    ("speedup", ["--seed", "-1"], ">= 0"),
    ("speedup", ["--heterogeneity", "0"], "every true head is 0"),
    ("speedup", ["--jobs", "0"], "positive"),
    ("speedup", ["--out", "/dev/null"], "/dev"),
    ("speedup", ["--out", "/proc/deprl"], "/proc"),
    ("speedup", ["--scheduler", "notanaddress"], "tcp://HOST:PORT"),
    ("speedup", ["--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", "0.5"], "no Dask scheduler"),
    ("run", ["--eval-every", "-5"], "positive"),
    ("run", ["--c", "inf"], "finite"),
    ("run", ["--tau", "0"], "positive"),
    ("run", ["--batch", "1000000"], "available"),
    ("run", ["--tau", "1000000"], "available"),
    ("run", ["--figures", "/proc/x"], "/proc"),
    ("graphs", ["--topology", "complete", "--n", "100000"], "available"),
    ("graphs", ["--topology", "ring"], "--n is required"),
    ("graphs", ["--topology", "ring", "--n", "8", "--tol", "nan"], "finite"),
    ("spectral", ["--factor", "nan"], "finite"),
    ("spectral", ["--n", "8", "--topologies", "torus"], "torus"),
    ("spectral", ["--n", "12", "--topologies", "hypercube"], "hypercube"),
    ("bound", ["--topology", "torus", "--quick"], "torus"),
    ("bench", ["--seconds", "inf"], "finite"),
    ("bench", ["--n", "100000", "--skip-scale"], "available"),
    ("bench", ["--scale-n", "100000000"], "available"),
    ("bench", ["--seeds", "0"], "positive"),
    ("report", ["--out", "/proc/x"], "/proc"),
    ("design", ["--instances", "2"], "at least 3"),
    ("regime", ["--floor-betas", "0.1"], "two steps"),
    ("regime", ["--c", "nan"], "finite"),
    ("regime", ["--head-rules", "banana"], "head rule"),
    ("regime", ["--out", "/proc/x"], "/proc"),
])
def test_invalid_settings_exit_2_in_one_line_before_anything_is_written(cli, tmp_path, command, args, needle):
    before = set(tmp_path.iterdir())
    res = cli(command, *args)
    assert res.returncode == 2, res.stdout
    assert len(res.error_lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert needle in res.error_lines[0]
    assert set(tmp_path.iterdir()) == before, "files were written"


@pytest.mark.parametrize("content,needle", [
    ("", "holds no numbers"), ("0 1\n1 0\n1 1\n", "square"), ("0 1 0\n0 0 1\n0 1 0\n", "symmetric"),
    ("0 -1\n-1 0\n", "0/1"), ("0 nan\nnan 0\n", "0/1")])
def test_a_bad_adjacency_file_is_one_line_with_no_warning_before_it(cli, tmp_path, content, needle):
    (tmp_path / "A.txt").write_text(content)
    res = cli("graphs", "--adjacency", "A.txt")
    assert res.returncode == 2 and len(res.error_lines) == 1, res.stderr
    assert needle in res.error_lines[0] and "Warning" not in res.stderr


@pytest.mark.parametrize("option", ["--out", "--figures"])
def test_an_existing_file_is_not_an_output_directory(cli, tmp_path, option):
    (tmp_path / "taken").write_text("mine")
    res = cli("speedup", option, "taken")
    assert res.returncode == 2 and "not a directory" in res.stderr
    assert (tmp_path / "taken").read_text() == "mine"


def test_internal_wording_never_reaches_the_user(cli):
    for args in (["--rounds", "0"], ["--n", "4", "8", "16", "--seeds", "1"], ["--heads", "x"]):
        res = cli("speedup", *args)
        assert "JSON" not in res.stderr and "range()" not in res.stderr and res.returncode == 2


def test_a_bug_keeps_its_traceback(cli, monkeypatch):
    """Only a UsageError is a user error: a ValueError raised inside the library is a bug and is not hidden."""
    import deprl_theory.experiments.speedup as speedup

    def broken(*a, **k):
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr(speedup, "analyse_speedup", broken)
    with pytest.raises(ValueError, match="internal inconsistency"):
        cli("speedup", "--quick", "--n", "4", "8", "16", "--rounds", "20", "40", "--seeds", "2", "-j", "1",
            "--no-figures", "--no-progress")


# --------------------------------------------------------------------------- 4. the cache trusts nothing it reads
def _cache_run(out, warnings=None):
    from deprl_theory.experiments import TASK_VERSION, cell_params, simulate_cell, validate_result
    from deprl_theory.sweep import run_sweep

    cells = [cell_params(N=4, K=30, dim=6, rank=2), cell_params(N=6, K=30, dim=6, rank=2)]
    return run_sweep(simulate_cell, cells, [0, 1], out=out, executor="serial", progress=False,
                     task_version=TASK_VERSION, validate=validate_result,
                     warn=(warnings.append if warnings is not None else lambda m: None))


def _tamper(path, edit, *, fix_checksum):
    from deprl_theory.sweep.cache import checksum

    entry = json.loads(path.read_text())
    edit(entry)
    if fix_checksum:
        entry["checksum"] = checksum(entry)
    path.write_text(json.dumps(entry))


TAMPERING = {
    "empty result": lambda e: e.update(result={}),
    "averages missing": lambda e: e["result"].pop("averages"),
    "R as a string": lambda e: e["result"]["averages"].update(R="0.5"),
    "R as null": lambda e: e["result"]["averages"].update(R=None),
    "R times 1000": lambda e: e["result"]["averages"].update(R=e["result"]["averages"]["R"] * 1000),
    "diverged as 'no'": lambda e: e["result"].update(diverged="no"),
    "a NaN average": lambda e: e["result"]["averages"].update(G=float("nan")),
    "trace cut short": lambda e: e["result"]["trace"]["G"].pop(),
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
@pytest.mark.parametrize("fix_checksum", [False, True], ids=["checksum stale", "checksum recomputed"])
def test_a_tampered_cache_entry_is_recomputed_with_one_warning(tmp_path, name, fix_checksum):
    clean = _cache_run(tmp_path / "clean")
    first = _cache_run(tmp_path / "out")
    victim = sorted(first.cache_dir.glob("*.json"))[1]
    _tamper(victim, TAMPERING[name], fix_checksum=fix_checksum)
    warnings: list[str] = []
    again = _cache_run(tmp_path / "out", warnings)
    if fix_checksum and name == "R times 1000":
        # a forged entry with a matching checksum and plausible values cannot be told from a real one
        assert warnings == [] and again.n_computed == 0
        return
    assert again.n_computed == 1 and len(warnings) == 1 and victim.name in warnings[0]
    assert [_numbers(r["result"]) for r in again.records] == [_numbers(r["result"]) for r in clean.records]
    stored = json.loads(victim.read_text())
    assert _numbers(stored["result"]) == next(_numbers(r["result"]) for r in clean.records
                                              if (r["seed"], r["params"]) == (stored["seed"], stored["params"]))


def _numbers(result):
    """A result without its wall time."""
    return {k: v for k, v in result.items() if k != "seconds"}


def test_the_cli_reports_a_rejected_cache_file_in_one_line_and_gives_the_clean_numbers(cli, tmp_path):
    args = ["--n", "4", "8", "16", "--rounds", "20", "40", "--seeds", "2", "-j", "1", "--no-figures", "--json",
            "--no-progress", "--out", "out", "--no-until-decisive", "--companion", "never"]
    clean = json.loads(cli("speedup", *args).stdout)
    victim = sorted((tmp_path / "out" / "cache").rglob("*.json"))[0]
    _tamper(victim, TAMPERING["R times 1000"], fix_checksum=False)
    res = cli("speedup", *args)
    again = json.loads(res.stdout)
    assert again["metrics"] == clean["metrics"] and again["sweep"]["computed"] == 1
    assert res.stderr.count("recomputing") == 1 and victim.name in res.stderr


# --------------------------------------------------------------------------- 5. divergence
def test_a_spectral_sweep_where_every_run_diverges_is_reported_not_a_crash(cli, tmp_path):
    res = cli("spectral", "--gaps", "0.5", "0.1", "--topologies", "ring", "--rounds", "50", "100", "--seeds", "2",
              "--no-law", "--c", "50", "--beta-max", "100", "--out", "out", "--no-figures", "--no-progress", "-j", "1")
    assert res.returncode == 1 and len(res.error_lines) == 1, res.stderr
    assert "cannot analyse" in res.stderr and "diverged" in res.stderr and "Traceback" not in res.stderr
    assert any((tmp_path / "out" / "cache").rglob("*.json"))  # the diverged runs are recorded


def test_seed_means_of_diverged_cells_are_nan_without_a_warning():
    import warnings

    import numpy as np

    from deprl_theory.experiments.records import seed_mean

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(seed_mean([np.nan, np.nan]))
        np.testing.assert_array_equal(seed_mean(np.array([[1.0, 3.0], [np.nan, np.nan]]), axis=1), [2.0, np.nan])


@pytest.mark.parametrize("build", [
    lambda: __import__("deprl_theory.experiments.speedup", fromlist=["x"]).SpeedupStudy(
        n=(4, 9, 16), cell={"topology": "torus"}),
    lambda: __import__("deprl_theory.experiments.design", fromlist=["x"]).DesignStudy(
        n=(4, 9), cell={"topology": "torus"}),
    lambda: __import__("deprl_theory.experiments.regime", fromlist=["x"]).RegimeStudy(
        n=(4, 9), cell={"topology": "torus"}),
    lambda: __import__("deprl_theory.experiments.report", fromlist=["x"]).ReportStudy(
        quick=True, cell={"dim": 2, "rank": 3}),
])
def test_a_study_checks_its_cells_when_it_is_built(build):
    """Library studies fail where they are built, with the CLI's checks (not later, when they run)."""
    with pytest.raises(ValueError, match=r"torus needs side m >= 3|rank"):
        build()


def test_a_homogeneous_problem_with_signal_runs_and_its_mean_is_part_of_the_instance():
    """--head-mean: heterogeneity 0 with a nonzero mean is a problem (one head for all); mean 0 is not carried."""
    from deprl_theory.experiments.cells import cell_params, cell_problem

    assert cell_params(head_mean=0) == cell_params() and "head_mean" not in cell_params(head_mean=0.0)
    cell = cell_params(N=4, heterogeneity=0.0, head_mean=1.0, dim=6, rank=2)
    heads = cell_problem(cell, (0,)).heads_star  # (seeds, workers, r)
    assert np.allclose(heads, heads[:, :1, :]) and np.abs(heads).max() > 0  # one nonzero head for every worker
    with pytest.raises(ValueError, match="every true head is 0"):
        cell_problem(cell_params(N=4, heterogeneity=0.0, dim=6, rank=2), (0,))
    with pytest.raises(ValueError, match="head_mean must be a finite number"):
        cell_params(head_mean=float("nan"))


def test_the_signal_free_message_names_the_flags_on_the_command_line(cli):
    run = cli("speedup", "--n", "4", "8", "16", "--heterogeneity", "0")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "--head-mean" in run.stderr and "head_mean" not in run.stderr.replace("--head-mean", "")
