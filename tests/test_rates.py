"""Rate fits recover planted exponents, and every verdict can come out."""
from __future__ import annotations

import numpy as np
import pytest

from deprl_theory.rates import ConfidenceInterval, RateFit, fit_rate, fit_slope, speedup_verdict

NS = np.array([4, 8, 16, 32])
KS = np.array([500, 1000, 2000, 4000])


def planted(e_N: float, e_K: float, *, seeds: int = 8, noise: float = 0.05, seed: int = 0):
    """Cells N x K with value A N^e_N K^e_K times log-normal seed noise."""
    rng = np.random.default_rng(seed)
    N, K = np.meshgrid(NS, KS, indexing="ij")
    N, K = N.ravel(), K.ravel()
    base = 3.0 * N**e_N * K**e_K
    vals = base[:, None] * np.exp(noise * rng.standard_normal((len(N), seeds)))
    return N, K, vals


@pytest.mark.parametrize(
    "e_N,e_K,verdict",
    [(-0.5, -0.5, "linear"), (-0.7, -0.5, "linear"), (-0.25, -0.5, "sublinear"), (0.0, -0.5, "none"),
     (0.3, -0.5, "none"), (-0.5, 0.0, "none")],
)
def test_planted_exponents_give_the_expected_verdict(e_N, e_K, verdict):
    N, K, vals = planted(e_N, e_K)
    fit = fit_rate(N, K, vals, n_boot=500, seed=1)
    assert fit.e_N == pytest.approx(e_N, abs=0.03)
    assert fit.e_K == pytest.approx(e_K, abs=0.03)
    v = speedup_verdict(fit)
    assert v.word == verdict, v.reason


def test_noisy_data_is_inconclusive_not_linear():
    N, K, vals = planted(-0.5, -0.5, seeds=3, noise=1.5, seed=4)
    fit = fit_rate(N, K, vals, n_boot=500, seed=1)
    assert speedup_verdict(fit).word == "inconclusive", fit.speedup_ci


def test_diverged_seeds_are_left_out_not_fatal():
    N, K, vals = planted(-0.5, -0.5)
    vals[0, :3] = np.nan
    fit = fit_rate(N, K, vals, n_boot=200)
    assert speedup_verdict(fit).word == "linear"
    vals[0, :] = np.nan
    with pytest.raises(ValueError, match="every seed diverged"):
        fit_rate(N, K, vals, n_boot=200)


def test_bad_inputs():
    N, K, vals = planted(-0.5, -0.5)
    with pytest.raises(ValueError, match="two distinct N"):
        fit_rate(np.full_like(N, 8), K, vals)
    with pytest.raises(ValueError, match="positive"):
        fit_rate(N, K, -vals)
    with pytest.raises(ValueError, match="same cells"):
        fit_rate(N[:-1], K, vals)


@pytest.mark.parametrize(
    "s_ci,e_K_ci,expected",
    [((0.9, 1.1), (-0.6, -0.4), "linear"), ((1.1, 1.4), (-0.6, -0.4), "linear"),
     ((0.3, 0.8), (-0.6, -0.4), "sublinear"), ((-0.2, 0.3), (-0.6, -0.4), "none"),
     ((-0.9, -0.3), (-0.6, -0.4), "none"), ((-0.2, 1.2), (-0.6, -0.4), "inconclusive"),
     ((0.2, 1.6), (-0.6, -0.4), "inconclusive"), ((0.9, 1.1), (-0.1, 0.05), "none"),
     ((float("nan"), 1.0), (-0.6, -0.4), "inconclusive"), ((0.9, 1.1), (-0.8, 0.05), "inconclusive"),
     ((-30.0, 20.0), (0.05, 0.2), "none")],
)
def test_verdict_rules(s_ci, e_K_ci, expected):
    ci = lambda p: ConfidenceInterval(*p)  # noqa: E731
    fit = RateFit(e_N=0.0, e_K=-0.5, intercept=0.0, speedup=0.0, e_N_ci=ci((0, 0)), e_K_ci=ci(e_K_ci),
                  speedup_ci=ci(s_ci), n_cells=16, n_seeds=8, n_boot=100, r2=1.0)
    verdict = speedup_verdict(fit)
    assert verdict.word == expected
    assert verdict.reason


def test_fit_slope_recovers_a_planted_slope():
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 9)
    y = 1.0 + 2.0 * x[:, None] + 0.05 * rng.standard_normal((9, 40))
    fit = fit_slope(x, y, n_boot=500, seed=0)
    assert fit.slope == pytest.approx(2.0, abs=0.05)
    assert fit.ci.low <= 2.0 <= fit.ci.high
    one_d = fit_slope(x, y.mean(axis=1), n_boot=300, seed=0)
    assert one_d.slope == pytest.approx(2.0, abs=0.05)
