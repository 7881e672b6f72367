"""The transient, predicted by the template and measured from the data."""
import numpy as np
import pytest

from deprl_theory.experiments import cell_params
from deprl_theory.experiments.transient import (
    gap_exponent,
    measured_transient,
    model_K0,
    noise_transient,
    predict_transient,
    template_K0,
    template_transient,
    transient_cells,
    transient_crossing,
)


def _curve(n, ks, slopes):
    """A table (n, K) -> one-seed value whose local log-log slopes are ``slopes``."""
    y = [0.0]
    for j, s in enumerate(slopes):
        y.append(y[-1] + s * np.log(ks[j + 1] / ks[j]))
    return {(n, k): np.array([np.exp(v)]) for k, v in zip(ks, y)}


def test_transient_cells_drop_the_leading_K_off_the_tail_slope():
    ks = [100, 200, 400, 800, 1600]
    table = {**_curve(4, ks, [-1.2, -0.8, -0.52, -0.5]), **_curve(8, ks, [-0.5, -0.5, -0.5, -0.5])}
    cells = transient_cells(table, tol=0.15)
    assert [(c["N"], c["K"]) for c in cells] == [(4, 100), (4, 200)]
    assert "tail slope -0.50" in cells[0]["why"]
    # the two largest K are always kept, and a lone dip after the tail is reached does not count
    table = _curve(4, ks, [-0.5, -2.0, -0.5, -0.5])
    assert transient_cells(table, tol=0.15) == []
    assert transient_cells(_curve(4, ks, [-3.0, -3.0, -3.0, -0.5]), tol=0.15)[-1]["K"] == 400
    assert transient_cells(table, tol=10.0) == []


def test_measured_transient_is_first_K_from_which_ratio_stays_small():
    K = [100, 200, 400, 800]
    ref = np.ones((4, 3))
    g = ref * np.array([2.0, 1.1, 1.5, 1.2])[:, None]  # dips at 200, not settled until 800
    assert measured_transient(K, g, ref, 1.25) == 800
    assert measured_transient(K, ref * 3, ref, 1.25) is None
    assert measured_transient(K, ref, ref, 1.25) == 100
    with pytest.raises(ValueError, match="factor"):
        measured_transient(K, ref, ref, 1.0)


def test_template_K0_grows_like_rho4_over_gap4():
    consts = dict(L_theta=1.0, L_phi=2.0, L_thetaphi=1.0, sigma_theta=1.0, sigma_phi=1.0, delta=1.0, Delta=1.0)
    vals = template_K0(consts, 16, np.array([0.5, 0.9, 0.0]), c=0.5, tau=5)
    assert vals[1] / vals[0] == pytest.approx((0.9 / 0.1) ** 4, rel=1e-9)
    assert vals[2] == 0.0


def test_predicted_transient_for_each_algorithm():
    params = cell_params(N=8, K=500, dim=6, rank=2)
    pred = predict_transient(params, 0.5)
    assert pred.K0 > 0 and "template" in pred.how and "rho**4" in pred.expr
    assert pred.constants["L_phi"] > 0
    assert predict_transient(params, 0.0).K0 == 0.0
    assert predict_transient({**params, "algorithm": "local"}, 1.0).K0 is None


def test_transient_crossing_interpolates_and_says_when_censored():
    K = [100, 200, 400, 800]
    ref = np.ones((4, 2))
    c = transient_crossing(K, ref * np.array([[1.2], [1.45], [1.05], [1.1]]), ref, 1.25)
    # the ratio rises, then falls: the crossing is the last one, between 200 (1.45) and 400 (1.05)
    assert c.K_grid == 400 and c.censored is None
    assert c.K0 == pytest.approx(np.exp(np.log(200) + 0.5 * np.log(2)))
    assert transient_crossing(K, ref * 1.1, ref, 1.25).censored == "below"
    assert transient_crossing(K, ref * 2.0, ref, 1.25).censored == "above"


def test_noise_dominated_transient_derived_from_a_user_style_term():
    noise, template = noise_transient(), template_transient()
    assert noise.N_exponent == 3 and template.N_exponent == 3
    assert gap_exponent(noise.K0) == 2 and gap_exponent(template.K0) == 4
    assert "rho**2 - 1" in str(noise.K0) or "1 - rho**2" in str(noise.K0)
    consts = dict(L_theta=1.0, L_phi=2.0, L_thetaphi=1.0, sigma_theta=1.0, sigma_phi=1.0, delta=0.0, Delta=1.0)
    # with delta = 0 the consensus terms differ by (1 - rho)^2 / (6 (1 - rho^2)), and K0 goes as its square
    r = np.array([0.5, 0.9])
    ratio = model_K0(noise, consts, 16, r, c=0.5, tau=5) / model_K0(template, consts, 16, r, c=0.5, tau=5)
    assert ratio == pytest.approx(((1 - r) ** 2 / (1 - r ** 2)) ** 2 / 36)
