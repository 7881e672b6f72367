"""Power-law fits with intervals, predictions, and the shape words of a bound."""
import numpy as np
import pytest

from deprl_theory.experiments.laws import OLS_METHOD, PER_SEED_METHOD, fit_power_law, shape_verdict
from deprl_theory.rates import ConfidenceInterval

N = np.repeat([4.0, 8.0, 16.0], 4)
X = np.tile([10.0, 14.0, 20.0, 28.0], 3)


@pytest.mark.parametrize("per_seed", [False, True])
def test_intervals_cover_planted_exponents_about_95_percent(per_seed):
    rng = np.random.default_rng(3)
    hits, trials = 0, 300
    for _ in range(trials):
        shape = (12, 4) if per_seed else (12,)
        noise = np.exp(0.2 * rng.standard_normal(shape) + (0.3 * rng.standard_normal(4) if per_seed else 0.0))
        y = (3.0 * N ** 0.5 * X ** 2.0)[(...,) + ((None,) if per_seed else ())] * noise
        fit = fit_power_law({"N": N, "x": X}, y)
        hits += fit.cis["N"].contains(0.5) and fit.cis["x"].contains(2.0)
    assert fit.method == (PER_SEED_METHOD if per_seed else OLS_METHOD)
    assert 0.85 <= hits / trials <= 0.99  # joint coverage of two nominal 95% intervals


def test_prediction_interval_widens_away_from_the_data_and_adds_the_scatter():
    rng = np.random.default_rng(0)
    fit = fit_power_law({"N": N, "x": X}, 3.0 * N ** 0.5 * X ** 2.0 * np.exp(0.1 * rng.standard_normal(12)))
    near, far = fit.predict({"N": 8, "x": 14}), fit.predict({"N": 1024, "x": 14})
    assert near.pi.low < near.ci.low < near.value < near.ci.high < near.pi.high
    assert far.pi.high / far.pi.low > 1.5 * near.pi.high / near.pi.low
    assert near.value == pytest.approx(3 * 8 ** 0.5 * 14 ** 2, rel=0.1)
    with pytest.raises(ValueError, match="missing"):
        fit.predict({"N": 8})


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="positive"):
        fit_power_law({"N": N}, -np.ones(12))
    with pytest.raises(ValueError, match="points"):
        fit_power_law({"N": N[:2], "x": X[:2]}, np.ones(2))


@pytest.mark.parametrize("lo,hi,word", [(-0.05, 0.08, "tight"), (-0.6, -0.2, "loose"), (0.2, 0.4, "optimistic"),
                                        (-0.3, 0.3, "inconclusive"), (-0.05, -0.01, "tight")])
def test_shape_words(lo, hi, word):
    v = shape_verdict("K", (lo + hi) / 2, ConfidenceInterval(lo, hi))
    assert v.word == word and v.label == f"{word} in K" and v.as_dict()["ci"] == [lo, hi]
