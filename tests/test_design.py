"""Group-sequential designs: published boundary constants, the error they spend, the loop that uses them."""
import numpy as np
import pytest

from deprl_theory.inference import crossing_probability, geometric_looks, group_sequential_design, run_sequential


@pytest.mark.parametrize("kind,constant", [("pocock", 2.413), ("obrien-fleming", 2.040)])
def test_five_equally_spaced_looks_give_the_published_constants(kind, constant):
    # Jennison and Turnbull, Group Sequential Methods, Tables 2.1 and 2.3 (K = 5, two-sided alpha 0.05)
    d = group_sequential_design([1, 2, 3, 4, 5], kind)
    assert d.constant == pytest.approx(constant, abs=5e-4)
    if kind == "obrien-fleming":
        assert d.boundaries == pytest.approx([constant * np.sqrt(5 / k) for k in range(1, 6)], abs=2e-3)
    else:
        assert d.boundaries == pytest.approx([constant] * 5, abs=5e-4)


@pytest.mark.parametrize("kind", ["pocock", "obrien-fleming"])
def test_the_boundaries_spend_exactly_alpha_on_a_simulated_brownian_motion(kind):
    looks = geometric_looks(8, 64)
    d = group_sequential_design(looks, kind)
    assert d.spent[-1] == pytest.approx(0.05, abs=1e-9)
    assert np.all(np.diff(d.spent) > 0)
    t = np.asarray(looks) / looks[-1]
    rng = np.random.default_rng(0)
    Z = np.cumsum(rng.standard_normal((100_000, len(t))) * np.sqrt(np.diff(np.r_[0.0, t])), axis=1) / np.sqrt(t)
    crossed = (np.abs(Z) >= np.asarray(d.boundaries)).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=0.004)  # Monte Carlo sd 0.0007


def test_one_look_is_the_fixed_design_and_naive_repeated_looks_spend_more():
    assert group_sequential_design([8]).boundaries[0] == pytest.approx(1.959964, abs=1e-5)
    t = np.array([8, 12, 18, 28, 42, 64]) / 64
    naive = crossing_probability(t, np.full(6, 1.959964)).sum()
    assert naive > 0.10  # re-reading a 95 % interval at six looks errs two to three times as often


@pytest.mark.parametrize("looks,kind,match", [
    ([8, 8, 12], "pocock", "strictly increasing"), ([], "pocock", "at least one look"),
    ([8, 16], "haybittle", "unknown design"), ([0, 8], "pocock", "at least 1")])
def test_bad_designs_are_refused_by_name(looks, kind, match):
    with pytest.raises(ValueError, match=match):
        group_sequential_design(looks, kind)


def test_the_loop_stops_at_the_first_decisive_look_with_that_looks_level():
    d = group_sequential_design([4, 8, 16])
    seen = []

    def analyse(seeds, level):
        seen.append((seeds, level))
        return "linear" if seeds >= 8 else "inconclusive"

    out = run_sequential(d, analyse, lambda word: word)
    assert [s for s, _ in seen] == [4, 8] and out.look == 1 and out.seeds == 8
    assert out.level == pytest.approx(d.levels[1]) and out.words == ("inconclusive", "linear")
    last = run_sequential(d, lambda s, lv: "inconclusive", lambda w: w)
    assert last.seeds == 16 and "last planned look" in last.why
