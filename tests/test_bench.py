"""verification.bench: the benchmark runs end to end and reports every figure (timings are not asserted)."""
import json
import subprocess
import sys

import pytest

from verification.bench import TARGET_SAMPLER, _targets


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "verification.bench", *args], capture_output=True, text=True,
                          timeout=300)


def test_bench_json_tiny_settings_report_every_key():
    out = _bench("--json", "--n", "4", "6", "--rounds", "20", "--reference-rounds", "1", "--repeats", "1",
                 "--seeds", "2", "--scale-n", "16", "--scale-rounds", "5")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert set(s) >= {"definition", "settings", "throughput", "scale", "targets", "provenance"}
    assert s["settings"]["samplers"] == ["direct", "projected"] and s["settings"]["blas_threads"] == 1
    assert set(s["throughput"]) == {"4", "6"}
    for t in s["throughput"].values():
        assert t["reference"] > 0 and t["reference_rounds"] == 1
        assert set(t["samplers"]) == {"direct", "projected"}
        for u in t["samplers"].values():
            assert u["engine"] > 0 and u["engine_rounds"] == 20
            assert u["ratio"] == pytest.approx(u["engine"] / t["reference"])
            assert u["rng_seconds"] > 0 and u["rng_limit"] > 0
            assert u["engine_over_rng"] == pytest.approx(u["engine_seconds"] / u["rng_seconds"])
        assert t["samplers"]["direct"]["normals_per_worker_round"] == 1260
        assert t["samplers"]["projected"]["normals_per_worker_round"] == 240
        # the direct sampler's figures also sit at the top level, as before the samplers
        assert {"engine", "ratio", "engine_rounds"} <= set(t) and t["ratio"] == t["samplers"]["direct"]["ratio"]
        assert t["max_abs_difference"] < 1e-10  # the direct engine and the loop timed the same computation
    assert set(s["scale"]) == {"direct", "projected"}
    for name, sc in s["scale"].items():
        assert sc["sampler"] == name and sc["n_workers"] == 16 and sc["rounds"] == 5 and not sc["diverged"]
        assert sc["seconds"] > 0 and sc["peak_rss_mb"] > 0 and sc["tracemalloc_peak_mb"] > 0
        assert sc["rng_seconds"] > 0 and sc["engine_over_rng"] > 0
    assert s["scale"]["projected"]["normals_per_worker_round"] == 370
    # N = 32 was not measured and the scale run is not the default one: no verdict either way
    for target in s["targets"].values():
        assert target["sampler"] == TARGET_SAMPLER and target["met"] is None


def test_bench_text_output_states_definition_and_targets():
    out = _bench("--n", "4", "--rounds", "10", "--reference-rounds", "1", "--repeats", "1", "--seeds", "1",
                 "--skip-scale", "--samplers", "projected")
    assert out.returncode == 0, out.stderr
    assert "worker-rounds per second = seeds S x workers N x rounds K / wall seconds" in out.stdout
    assert "engine >= 80x the loop at N = 32 (goal 100x): not measured" in out.stdout
    assert "engine within 1.5x of its RNG-only time at N = 32: not measured" in out.stdout
    assert "Scale run skipped" in out.stdout
    assert " direct " not in out.stdout  # only the sampler asked for


def test_targets_verdicts():
    """The verdict logic on made-up figures: met, not met, and the goal apart from the target."""
    def tp(ratio, rng):
        return {32: {"samplers": {TARGET_SAMPLER: {"ratio": ratio, "engine_over_rng": rng}}}}

    def sc(seconds, mb, rng):
        return {TARGET_SAMPLER: {"n_workers": 1024, "rounds": 1000, "seconds": seconds, "peak_rss_mb": mb,
                                 "engine_over_rng": rng}}

    good = _targets(tp(90.0, 1.4), sc(9.0, 150.0, 1.3))
    assert good["engine_over_reference"]["met"] and not good["engine_over_reference"]["goal_met"]
    assert good["scale_seconds"]["met"] and good["scale_memory_mb"]["met"]
    assert good["engine_over_rng"]["met"] and good["engine_over_rng"]["scale_met"]
    bad = _targets(tp(70.0, 1.6), sc(11.0, 250.0, 1.7))
    assert not bad["engine_over_reference"]["met"] and not bad["scale_seconds"]["met"]
    assert not bad["scale_memory_mb"]["met"] and not bad["engine_over_rng"]["met"]
    assert not bad["engine_over_rng"]["scale_met"]


@pytest.mark.parametrize("bad", [["--n", "2"], ["--seeds", "0"], ["--rounds", "0"], ["--seconds", "0"],
                                 ["--samplers", "wishart"], ["--blas-threads", "0"]])
def test_bench_bad_arguments_exit_2_in_one_line(bad):
    out = _bench(*bad, "--skip-scale")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "error" in out.stderr
