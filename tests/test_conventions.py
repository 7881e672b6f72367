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
