"""verification.bench: the benchmark runs end to end and reports every figure (timings are not asserted)."""
import json
import subprocess
import sys

import pytest



def _bench(*args):
    return subprocess.run([sys.executable, "-m", "verification.bench", *args], capture_output=True, text=True,
                          timeout=300)


def test_bench_json_tiny_settings_report_every_key():
    out = _bench("--json", "--n", "4", "6", "--rounds", "20", "--reference-rounds", "1", "--repeats", "1",
                 "--seeds", "2", "--scale-n", "16", "--scale-rounds", "5")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert set(s) >= {"definition", "settings", "throughput", "scale", "targets", "provenance"}
    assert set(s["throughput"]) == {"4", "6"}
    for t in s["throughput"].values():
        assert {"engine", "reference", "ratio"} <= set(t)
        assert t["engine"] > 0 and t["reference"] > 0
        assert t["ratio"] == pytest.approx(t["engine"] / t["reference"])
        assert t["engine_rounds"] == 20 and t["reference_rounds"] == 1
        assert t["max_abs_difference"] < 1e-10  # the two timed the same computation
    sc = s["scale"]
    assert sc["n_workers"] == 16 and sc["rounds"] == 5 and not sc["diverged"]
    assert sc["seconds"] > 0 and sc["peak_rss_mb"] > 0 and sc["tracemalloc_peak_mb"] > 0
    # N = 32 was not measured and the scale run is not the default one: no verdict either way
    assert s["targets"]["engine_over_reference"]["met"] is None
    assert s["targets"]["scale_seconds"]["met"] is None


def test_bench_text_output_states_definition_and_targets():
    out = _bench("--n", "4", "--rounds", "10", "--reference-rounds", "1", "--repeats", "1", "--seeds", "1",
                 "--skip-scale")
    assert out.returncode == 0, out.stderr
    assert "worker-rounds per second = seeds S x workers N x rounds K / wall seconds" in out.stdout
    assert "Target engine >= 30x the reference at N = 32: not measured" in out.stdout
    assert "Scale run skipped" in out.stdout


@pytest.mark.parametrize("bad", [["--n", "2"], ["--seeds", "0"], ["--rounds", "0"], ["--seconds", "0"]])
def test_bench_bad_arguments_exit_2_in_one_line(bad):
    out = _bench(*bad, "--skip-scale")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "error" in out.stderr
