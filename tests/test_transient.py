"""The transient, predicted by the template and measured from the data."""
import numpy as np
import pytest

from deprl_theory.experiments import cell_params
from deprl_theory.experiments.transient import (measured_transient, predict_transient, template_K0,
                                                transient_cells)


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
