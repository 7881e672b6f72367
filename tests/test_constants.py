"""Estimated constants of the bound: closed forms against numerical estimates."""
import numpy as np
import pytest

from deprl_theory.constants import (
    CONSTANT_NAMES,
    estimate_constants,
    estimate_constants_along,
    gradient_variance_closed_form,
    gradient_variance_monte_carlo,
    heterogeneity,
    initial_gap,
    smoothness_closed_form,
    smoothness_finite_difference,
)
from deprl_theory.engine import run, theory_step_sizes
from deprl_theory.graphs import mixing_matrix
from deprl_theory.problems import make_problem


@pytest.fixture(scope="module")
def linear():
    cov = np.diag(np.linspace(0.5, 2.0, 8))
    return make_problem("linear", 5, dim=8, rank=2, n_seeds=3, seed=1, covariance=cov, batch=4)


@pytest.fixture(scope="module")
def iterate(linear):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((3, 5, 2))
    B = linear.B0[:, None] + 0.1 * rng.standard_normal((3, 5, 8, 2))
    return theta, B


def test_closed_form_smoothness_matches_finite_difference_hessian(linear, iterate):
    exact = smoothness_closed_form(linear, *iterate)
    fd = smoothness_finite_difference(linear, *iterate)
    for key in ("L_theta", "L_phi", "L_thetaphi", "L_phi_avg"):
        np.testing.assert_allclose(fd[key], exact[key], rtol=1e-5)
    # the average F is at most as rough as its roughest worker
    assert np.all(exact["L_phi_avg"] <= exact["L_phi"] + 1e-12)


def test_closed_form_variance_agrees_with_monte_carlo_within_error(linear, iterate):
    exact = gradient_variance_closed_form(linear, *iterate)
    n_mc = 3000
    mc = gradient_variance_monte_carlo(linear, *iterate, n_mc=n_mc, seed=0)
    # relative standard error of a sample variance of heavy-ish tailed gradients;
    # 5 standard errors of a kurtosis-10 sum: sqrt(10 / n_mc) * 5 ~ 0.29 is loose,
    # 0.1 is what the worker means achieve comfortably at this n_mc
    for key in ("sigma_theta2_mean", "sigma_phi2_mean"):
        np.testing.assert_allclose(mc[key], exact[key], rtol=0.1)
    for key in ("sigma_theta2", "sigma_phi2"):
        np.testing.assert_allclose(mc[key], exact[key], rtol=0.15)


def test_constants_positive_finite_and_explained(linear):
    c = estimate_constants(linear, seed=0)
    assert set(c.values) == set(CONSTANT_NAMES) == set(c.how)
    for name, v in c.per_seed.items():
        assert v.shape == (3,)
        assert np.all(np.isfinite(v)) and np.all(v > 0), name
    sym = c.symbols()
    assert sym["sigma_phi"] ** 2 == pytest.approx(c.values["sigma_phi2"])
    d = c.as_dict()
    assert d["points"] == ["start", "fitted_heads", "solution"]


def test_closed_form_and_numerical_routes_agree(linear):
    a = estimate_constants(linear, seed=0).values
    b = estimate_constants(linear, method="monte_carlo", n_mc=3000, seed=1).values
    for key in ("L_theta", "L_phi", "L_thetaphi", "delta2", "Delta"):
        assert b[key] == pytest.approx(a[key], rel=1e-5)
    for key in ("sigma_theta2", "sigma_phi2"):
        assert b[key] == pytest.approx(a[key], rel=0.15)


def test_gap_and_heterogeneity_known_values(linear):
    # Delta at zero heads is the mean of t_i^T Sigma t_i / 2
    t = linear.targets
    expect = 0.5 * np.einsum("snd,de,sne->sn", t, linear.covariance, t).mean(axis=1)
    np.testing.assert_allclose(initial_gap(linear), expect)
    # identical tasks have no heterogeneity
    same = make_problem("linear", 4, dim=6, rank=2, n_seeds=2, seed=0, heterogeneity=0.0, head_mean=1.0)
    theta = np.ones((2, 4, 2))
    assert np.allclose(heterogeneity(same, theta, same.B0), 0.0)


def test_along_a_run_includes_final_iterates():
    p = make_problem("linear", 4, dim=6, rank=2, n_seeds=2, seed=3)
    W = mixing_matrix("ring", 4)
    res = run(p, W, rounds=50, tau=2, steps=theory_step_sizes(4, 50, 2), seed=0)
    c = estimate_constants_along(p, res, seed=0)
    assert "given" in c.points
    base = estimate_constants(p, seed=0)
    for k in CONSTANT_NAMES:
        assert np.all(c.per_seed[k] >= base.per_seed[k] - 1e-12)


def test_nonlinear_constants_finite():
    p = make_problem("nonlinear", 3, dim=5, rank=2, n_seeds=2, seed=0, n_eval=200)
    c = estimate_constants(p, n_mc=200, seed=0)
    assert all(np.isfinite(v) and v > 0 for v in c.values.values())
    assert "evaluation sample" in c.how["L_phi"]


def test_bad_input_raises_value_error(linear):
    with pytest.raises(ValueError, match="theta must have shape"):
        estimate_constants(linear, np.zeros((1, 1, 1)), linear.B0)
    with pytest.raises(ValueError, match="both theta and B"):
        estimate_constants(linear, theta=np.zeros((3, 5, 2)))
    with pytest.raises(ValueError, match="n_mc"):
        gradient_variance_monte_carlo(linear, np.zeros((3, 5, 2)), linear.B0, n_mc=1)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_heterogeneity_persists_at_the_best_fit_of_a_misspecified_model(kind):
    """delta^2 at the solution: 0 for a realizable problem (every worker's gradient vanishes at the truth), > 0
    at the best rank-r fit of a misspecified one (the workers' gradients cancel on average only); the default
    points say which they used, and Delta is measured above the best fit's risk."""
    from deprl_theory.problems import best_rank_fit

    kw = dict(dim=8, rank=2, n_eval=200, n_seeds=2, seed=6)
    real = make_problem(kind, 6, **kw)
    theta, B = best_rank_fit(real)
    np.testing.assert_allclose(heterogeneity(real, theta, B), 0, atol=1e-24)
    mis = make_problem(kind, 6, true_rank=4, **kw)
    theta, B = best_rank_fit(mis)
    delta2 = heterogeneity(mis, theta, B)
    assert np.all(delta2 > 0.05)
    c = estimate_constants(mis, seed=0)
    assert c.points == ("start", "fitted_heads", "best_rank_fit")
    assert np.all(c.per_seed["delta2"] >= delta2) and np.isfinite(list(c.values.values())).all()
    assert estimate_constants(real, seed=0).points == ("start", "fitted_heads", "solution")
    if kind == "linear":  # the linear best fit is exact: a stationary point of F, Delta above its risk
        from deprl_theory.problems import population_metrics

        m = population_metrics(mis, theta, np.broadcast_to(B[:, None], (2, 6, 8, 2)).copy())
        np.testing.assert_allclose(m["R"], 0, atol=1e-24)
        assert np.all(initial_gap(mis) > 0)
        signal = 0.5 * (mis.heads_star ** 2).sum(-1).mean(-1)  # excess at zero heads (Sigma = I, orthonormal B*)
        np.testing.assert_allclose(initial_gap(mis) + mis.approximation_error, signal, rtol=1e-12)


def test_estimated_constants_evaluate_a_bound_in_one_call():
    """The object estimate_constants returns is accepted by evaluate, under the bound's names (sqrt of variances)."""
    from deprl_theory.bound import default_bound, evaluate

    problem = make_problem("linear", 4, dim=8, rank=2, n_seeds=2, seed=0)
    C = estimate_constants(problem, seed=0)
    grid = dict(a=0.25, alpha=1e-3, beta=1e-2, tau=5, rho=0.5, N=np.array([4.0, 8.0]), K=1000)
    direct = evaluate(default_bound(), C, **grid)
    by_name = evaluate(default_bound(), C.symbols(), **grid)
    assert np.array_equal(direct["total"], by_name["total"]) and np.all(direct["total"] > 0)
    assert C.symbols()["sigma_theta"] == pytest.approx(np.sqrt(C.values["sigma_theta2"]))
    with pytest.raises(ValueError, match=r"sigma_theta2.* given instead: the bound is written in .*sigma_theta"):
        evaluate(default_bound(), dict(C.values), **grid)
