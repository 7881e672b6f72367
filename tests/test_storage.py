"""Results back from disk: a finished study re-analysed from its folder, in a fresh process, simulating nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from deprl_theory import SweepOptions
from deprl_theory.experiments import STUDY_KINDS, load, load_speedup
from deprl_theory.experiments.design import DesignStudy, run_design
from deprl_theory.experiments.speedup import SpeedupStudy
from deprl_theory.experiments.storage import _kinds, study_as_dict, study_from_dict
from deprl_theory.sweep import CacheMiss

SMALL = dict(n=(4, 8, 16), rounds=(250, 500, 1000), seeds=4, looks=(4, 6))


def _options(out) -> SweepOptions:
    return SweepOptions(out=out, executor="serial", progress=False)


@pytest.fixture
def finished(finished_speedup):
    return finished_speedup


@pytest.mark.parametrize("kind", STUDY_KINDS)
def test_every_study_kind_round_trips_through_json(kind):
    cls, _ = _kinds()[kind]
    study = cls()
    again = study_from_dict(json.loads(json.dumps(study_as_dict(study))))
    assert again == study


def test_a_study_with_extended_rounds_round_trips():
    study = SpeedupStudy(**{**SMALL, "extra_rounds": {4: (400, 800)}})
    assert study_from_dict(json.loads(json.dumps(study_as_dict(study)))) == study


def test_the_researchers_round_trip_in_a_fresh_process(finished):
    """Run and save (above); load, re-analyse and re-plot in a new process: the same CI to the last digit, 0 runs."""
    out, result = finished
    script = (
        "import json, sys\n"
        "from deprl_theory.experiments import load_speedup\n"
        "from deprl_theory.plotting import save_figure, speedup_figures\n"
        "r = load_speedup(sys.argv[1])\n"
        "files = [str(p) for name, fig in speedup_figures(r, 'G').items()\n"
        "         for p in save_figure(fig, sys.argv[1] + '/replot', name)]\n"
        "ci = r.headline.fit.speedup_ci\n"
        "print(json.dumps({'ci': [repr(ci.low), repr(ci.high), repr(ci.level)], 'verdict': r.verdict,\n"
        "                  'computed': r.sweep['computed'], 'stop': r.sequential.get('stopped_at_look'),\n"
        "                  'files': len(files)}))\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    ci = result.headline.fit.speedup_ci
    assert 0 < ci.low < ci.high < 2  # a real interval, so that equality to the last digit means something
    assert got["ci"] == [repr(ci.low), repr(ci.high), repr(ci.level)]
    assert got["verdict"] == result.verdict and got["computed"] == 0 and got["files"] > 0
    assert got["stop"] == result.sequential["stopped_at_look"]


def test_load_is_the_same_result_in_process(finished):
    out, result = finished
    again = load_speedup(out)
    assert again.sweep["computed"] == 0
    assert again.as_dict()["cells"] == result.as_dict()["cells"]
    assert again.sequential == result.sequential
    assert len(again.as_dict()["cells"]) == 3 * len(result.tables["G"])


def test_a_missing_run_is_named_and_not_simulated(finished, tmp_path):
    import shutil

    out, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    files = sorted((copy / "cache").rglob("*.json"))
    victim = json.loads(files[0].read_text())
    files[0].unlink()
    with pytest.raises(CacheMiss) as err:
        load_speedup(copy)
    message = str(err.value)
    assert f"N = {victim['params']['N']}, K = {victim['params']['K']}" in message
    assert "nothing was simulated" in message
    assert len(list((copy / "cache").rglob("*.json"))) == len(files) - 1  # and nothing was written


def test_load_says_what_is_not_there(tmp_path, finished):
    with pytest.raises(FileNotFoundError, match="no results folder"):
        load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no finished study"):
        load(tmp_path / "empty")
    out, _ = finished
    with pytest.raises(FileNotFoundError, match="no finished consensus study.*it holds speedup"):
        load(out, "consensus")
    with pytest.raises(ValueError, match="unknown study kind"):
        load(out, "nonsense")


def test_a_folder_with_two_studies_asks_which(tmp_path):
    run_design(DesignStudy(n=(4, 8), rounds=50, instances=3, cell={"dim": 8, "rank": 2}), _options(tmp_path))
    first = load(tmp_path)
    assert first.sweep["computed"] == 0
    (tmp_path / "speedup.study.json").write_text((tmp_path / "design.study.json").read_text()
                                                 .replace('"design"', '"speedup"', 1))
    with pytest.raises(ValueError, match="several studies .*design, speedup.*kind="):
        load(tmp_path)


def test_a_study_file_with_an_unknown_field_is_refused():
    data = study_as_dict(SpeedupStudy())
    data["fields"]["seedz"] = 3
    with pytest.raises(ValueError, match="unknown field.*seedz"):
        study_from_dict(data)


def test_the_cli_replots_from_the_folder_and_refuses_an_empty_one(cli, finished, tmp_path):
    out, result = finished
    run = cli("speedup", "--replot", "--out", str(out), "--no-figures", "--json")
    assert run.returncode == 0
    summary = json.loads(run.stdout)
    assert summary["sweep"]["computed"] == 0
    ci = result.headline.fit.speedup_ci
    assert summary["metrics"]["G"]["speedup"]["ci"] == [ci.low, ci.high]
    bad = cli("speedup", "--replot", "--out", str(tmp_path / "empty"))
    assert bad.returncode == 2 and "--replot" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
