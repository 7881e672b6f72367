"""What a user of the ecosystem expects: a license, a citation, console scripts, --version, DataFrames."""
from __future__ import annotations

import importlib
import re

import pytest

from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

TOOLS = ("speedup", "calibrate", "report", "spectral", "bound", "graphs", "run", "design", "regime", "bench")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_the_one_the_metadata_declares():
    meta = _pyproject()["project"]
    assert meta["license"] == "BSD-3-Clause" and meta["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_the_citation_cites_the_toolkit_and_the_paper_it_checks():
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert f"version: {_pyproject()['project']['version']}" in cff
    assert "DePRL" in cff and "AAAI" in cff and "2312.10815" in cff and "year: 2024" in cff


def test_every_console_script_points_at_a_callable_and_covers_every_tool():
    scripts = _pyproject()["project"]["scripts"]
    assert set(scripts) == {"deprl-theory"} | {f"deprl-{t}" for t in TOOLS}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_prints_the_version(cli, tool):
    from deprl_theory import __version__

    res = cli(tool, "--version")
    assert res.returncode == 0 and res.stdout.strip() == f"deprl-theory {__version__}"


def test_the_dispatcher_runs_a_tool_and_refuses_an_unknown_one_in_one_line(capsys):
    from verification import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["graphs", "--topology", "ring", "--n", "8", "--json"])
    assert exc.value.code == 0 and '"connected"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["speedupp"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "unknown tool 'speedupp'" in err[0]


def test_results_come_as_dataframes(tmp_path):
    pytest.importorskip("pandas")
    from deprl_theory.experiments.speedup import SpeedupStudy, run_speedup
    from deprl_theory.sweep import SweepOptions

    result, sweep = run_speedup(SpeedupStudy(n=(4, 8, 16), rounds=(50, 100), seeds=2, companion="never"),
                                SweepOptions(out=tmp_path, progress=False, executor="serial"))
    runs = sweep.to_frame()
    assert len(runs) == 12 and {"N", "K", "seed", "averages.G", "final.subspace"} <= set(runs.columns)
    long = result.to_frame()
    assert len(long) == 12 * 4 and {"metric", "value", "final_subspace", "final_excess_risk"} <= set(long.columns)
    g = long[long.metric == "G"].sort_values(["N", "K", "seed"])["value"].to_numpy()
    assert g == pytest.approx(runs.sort_values(["N", "K", "seed"])["averages.G"].to_numpy())


# --------------------------------------------------------------------------- help that matches what runs
HELP_TOOLS = ("speedup", "calibrate", "report", "spectral", "bound", "graphs", "run", "design", "regime", "bench")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _claimed_defaults(parser):
    """(action, the text after 'default' in its printed help) for every option whose help states a default."""
    import argparse

    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.help or action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction,
                               argparse.BooleanOptionalAction)):
            continue
        text = formatter._expand_help(action)
        for m in re.finditer(r"\(default:? (.*?)(?:\)(?:\s|$|,|;)|;|\)$)", text):
            yield action, m.group(1).strip(), text


def _agrees(default, claim: str) -> bool:
    if isinstance(default, (list, tuple)):
        return claim.startswith(" ".join(map(str, default)))
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        m = _NUMBER.match(claim)
        return bool(m) and float(m.group(0)) == float(default)
    return claim.startswith(str(default))


@pytest.mark.parametrize("tool", HELP_TOOLS)
def test_every_printed_default_is_the_parsers_default(tool):
    """A help line's '(default X)' is the parser's default; a default the command resolves later says from what."""
    parser = importlib.import_module(f"verification.{tool}").build_parser()
    claims = list(_claimed_defaults(parser))
    assert claims
    for action, claim, text in claims:
        if action.default is None:  # resolved when the command runs: from --quick, or a rule in words
            assert not _NUMBER.match(claim) or "--quick" in text, (action.option_strings, text)
        else:
            assert _agrees(action.default, claim), (action.option_strings, action.default, claim)


@pytest.mark.parametrize("quick", [False, True])
def test_defaults_resolved_at_run_time_are_the_ones_printed(quick):
    """For the options whose default depends on --quick, the study the command builds has the printed values."""
    from verification import spectral, speedup

    argv = ["--quick"] if quick else []
    for tool, attrs in ((speedup, {"--rounds": "rounds", "--seeds": "seeds"}),
                        (spectral, {"--n": "n", "--gaps": "gaps", "--rounds": "rounds", "--seeds": "seeds"})):
        parser = tool.build_parser()
        study = tool.study_from(parser.parse_args(argv))
        study = study[0] if isinstance(study, tuple) else study
        for action, claim, text in _claimed_defaults(parser):
            name = next((attrs[o] for o in action.option_strings if o in attrs), None)
            if name is None:
                continue
            if quick:
                claim = re.search(r";\s*(?:with --quick )?([^;)]*?)(?: with --quick)?\)", text).group(1)
            value = getattr(study, name)
            if name == "seeds" and getattr(study, "looks", ()):
                value = study.looks[0]
            assert _agrees(list(value) if isinstance(value, tuple) else value, claim), (tool.PROG, name, claim)


def test_the_shared_option_groups_are_shared_as_the_readme_says():
    from verification._cli import SHARED_GROUP

    readme = (ROOT / "README.md").read_text()
    sweep = re.search(r"The sweep commands \(([^)]*)\) share these options", readme).group(1).split(", ")
    groups = {}
    for tool in sweep:
        parser = importlib.import_module(f"verification.{tool}").build_parser()
        group = next(g for g in parser._action_groups if g.title == SHARED_GROUP)
        groups[tool] = {o for a in group._group_actions for o in a.option_strings}
        options = {o for a in parser._actions for o in a.option_strings}
        for kind, probe in (("problem", "--heterogeneity"), ("step", "--tau")):
            takers = re.search(rf"The {kind} options \(.*?\) are\s+taken by ([a-z ,\n]+?)[;.]", readme, re.S).group(1)
            named = {t.strip() for t in re.split(r",|\band\b", takers) if t.strip()}
            assert (probe in options) == (tool in named), (tool, kind, named)
    everyone = set.intersection(*groups.values())
    for tool, opts in groups.items():
        extra = opts - everyone
        assert extra <= {"--figures"} and (tool == "report") == ("--figures" not in opts), (tool, extra)
