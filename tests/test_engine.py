"""The vectorized engine against a plain per-worker transcription of docs/theory.md, section 2."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deprl_theory.engine import ALGORITHMS, run, step_sizes, theory_step_sizes
from deprl_theory.problems import ACTIVATIONS, make_problem, population_metrics
from deprl_theory.reference import reference_run


def _ring(n: int) -> np.ndarray:
    W = np.eye(n) / 3
    for i in range(n):
        W[i, (i + 1) % n] += 1 / 3
        W[i, (i - 1) % n] += 1 / 3
    return W


@pytest.mark.parametrize("true_rank", [None, 4])
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_engine_matches_reference_loop(kind, algorithm, true_rank):
    """Also for a misspecified model (true_rank 4 > rank 2): the truth's labels have 4 directions, the model 2."""
    N, tau, rounds = 5, 3, 6
    problem = make_problem(kind, N, dim=6, rank=2, true_rank=true_rank, batch=4, n_eval=30, n_seeds=2, seed=11)
    W = _ring(N)
    seeds = [101, 202]
    res = run(problem, W, algorithm=algorithm, rounds=rounds, tau=tau, alpha=0.05, beta=0.1, seed=seeds,
              sampler="direct")
    theta_ref, B_ref = reference_run(problem, W, algorithm, rounds, tau, 0.05, 0.1, seeds)
    np.testing.assert_allclose(res.theta, theta_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.B, B_ref, rtol=0, atol=1e-10)


def test_covariance_inputs_match_reference():
    """Coloured inputs: the engine and the plain loop see the same coloured draws."""
    N = 4
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 5))
    cov = A @ A.T / 5 + 0.5 * np.eye(5)
    problem = make_problem("linear", N, dim=5, rank=2, batch=3, covariance=cov, n_seeds=2, seed=4)
    res = run(problem, _ring(N), rounds=4, tau=2, alpha=0.05, beta=0.05, seed=[9, 10], sampler="direct")
    theta_ref, B_ref = reference_run(problem, _ring(N), "deprl", 4, 2, 0.05, 0.05, [9, 10])
    np.testing.assert_allclose(res.theta, theta_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.B, B_ref, rtol=0, atol=1e-10)
    # and the covariance matters: white inputs give other iterates
    white = run(dataclasses.replace(problem, cov_chol=None), _ring(N), rounds=4, tau=2, alpha=0.05, beta=0.05,
                seed=[9, 10], sampler="direct")
    assert not np.allclose(res.theta, white.theta)


# ---------------------------------------------------------------------------
# Analytic gradients against finite differences.
# ---------------------------------------------------------------------------
def _fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("kind,activation", [("linear", "tanh"), ("nonlinear", "tanh"),
                                             ("nonlinear", "sigmoid"), ("nonlinear", "relu")])
def test_population_gradients_match_finite_differences(kind, activation):
    from deprl_theory.problems import population_loss_and_grads

    p = make_problem(kind, 3, dim=4, rank=2, n_eval=50, activation=activation, n_seeds=1, seed=5)
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((1, 3, 2))
    B = rng.standard_normal((1, 3, 4, 2))
    _, g_theta, g_B = population_loss_and_grads(p, theta, B)
    for i in range(3):
        def f_theta(t, i=i):
            th = theta.copy()
            th[0, i] = t
            return population_loss_and_grads(p, th, B)[0][0, i]

        def f_B(b, i=i):
            BB = B.copy()
            BB[0, i] = b
            return population_loss_and_grads(p, theta, BB)[0][0, i]

        np.testing.assert_allclose(g_theta[0, i], _fd(f_theta, theta[0, i]), atol=1e-6)
        np.testing.assert_allclose(g_B[0, i], _fd(f_B, B[0, i]), atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_stochastic_gradients_match_finite_differences(kind):
    from deprl_theory.problems import labels, stochastic_gradients

    p = make_problem(kind, 2, dim=4, rank=2, batch=7, n_seeds=1, seed=6)
    rng = np.random.default_rng(1)
    theta = rng.standard_normal((1, 2, 2))
    B = rng.standard_normal((1, 2, 4, 2))
    X = rng.standard_normal((1, 2, 7, 4))
    y = labels(p, X, rng.standard_normal((1, 2, 7)))
    act = (lambda u: u) if kind == "linear" else ACTIVATIONS["tanh"][0]

    def loss(th, BB, i):
        pred = act(X[0, i] @ BB) @ th
        return 0.5 * np.mean((pred - y[0, i]) ** 2)

    g_theta, g_B = stochastic_gradients(p, theta, B, X, y)
    for i in range(2):
        np.testing.assert_allclose(g_theta[0, i], _fd(lambda t, i=i: loss(t, B[0, i], i), theta[0, i]), atol=1e-6)
        np.testing.assert_allclose(g_B[0, i], _fd(lambda b, i=i: loss(theta[0, i], b, i), B[0, i]), atol=1e-6)


def test_metrics_definitions():
    """G = R + H/N, C = 0 at a consensus point, subspace distance 0 at the truth."""
    p = make_problem("linear", 4, dim=6, rank=2, n_seeds=2, seed=0)
    theta = p.heads_star.copy()
    B = np.broadcast_to(p.B_star[:, None], (2, 4, 6, 2)).copy()
    m = population_metrics(p, theta, B)
    np.testing.assert_allclose(m["C"], 0, atol=1e-24)
    np.testing.assert_allclose(m["R"], 0, atol=1e-24)
    np.testing.assert_allclose(m["subspace"], 0, atol=1e-7)
    np.testing.assert_allclose(m["excess_risk"], 0, atol=1e-24)
    rng = np.random.default_rng(0)
    theta2 = theta + rng.standard_normal(theta.shape)
    B2 = B + 0.1 * rng.standard_normal(B.shape)
    m2 = population_metrics(p, theta2, B2)
    np.testing.assert_allclose(m2["G"], m2["R"] + m2["H"] / 4)
    assert np.all(m2["C"] > 0) and np.all(m2["R"] > 0)


# ---------------------------------------------------------------------------
# A misspecified model (true rank above the model's rank).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("sampler", ["direct", "projected"])
def test_misspecified_problem_shapes_and_finite_runs(kind, sampler):
    """The truth has r_true = 5 columns and heads, the model (B0, the engine's theta and B) keeps r = 3."""
    S, N, d, r, rt = 2, 6, 8, 3, 5
    p = make_problem(kind, N, dim=d, rank=r, true_rank=rt, n_eval=40, n_seeds=S, seed=3)
    assert (p.rank, p.true_rank, p.misspecified) == (r, rt, True)
    assert p.B_star.shape == (S, d, rt) and p.heads_star.shape == (S, N, rt) and p.B0.shape == (S, d, r)
    gram = np.einsum("snr,snq->srq", p.heads_star, p.heads_star) / N
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(rt), gram.shape), atol=1e-12)  # balanced in r_true dims
    res = run(p, _ring(N), rounds=30, tau=2, alpha=0.05, beta=0.1, seed=[1, 2], sampler=sampler)
    assert res.theta.shape == (S, N, r) and res.B.shape == (S, N, d, r)
    assert not res.diverged.any() and np.isfinite(res.theta).all() and np.isfinite(res.B).all()
    for m, v in res.final.items():
        assert np.isfinite(v).all() and np.all(v >= 0), m
    assert np.all(res.final["subspace"] <= 1)
    assert not make_problem(kind, N, dim=d, rank=r, n_eval=40, n_seeds=S, seed=3).misspecified


def test_misspecified_linear_best_fit_and_its_risk():
    """Balanced heads with mean 0 and Sigma = I: every rank-3 fit inside span(B*) is best, and its excess risk is
    exactly heterogeneity^2 (r_true - r) / 2; the subspace distance is 0 there, any other B fits worse, and the
    best fit is a stationary point of F (R = 0) that the workers' own gradients do not share."""
    from deprl_theory.problems import best_rank_fit, optimal_heads, population_loss_and_grads

    S, N, d, r, rt, h = 2, 8, 10, 3, 5, 1.5
    p = make_problem("linear", N, dim=d, rank=r, true_rank=rt, heterogeneity=h, n_seeds=S, seed=4)
    np.testing.assert_allclose(p.approximation_error, h**2 * (rt - r) / 2, rtol=1e-12)
    theta, B = best_rank_fit(p)
    assert theta.shape == (S, N, r) and B.shape == (S, d, r)
    m = population_metrics(p, theta, np.broadcast_to(B[:, None], (S, N, d, r)).copy())
    np.testing.assert_allclose(m["excess_risk"], p.approximation_error, rtol=1e-12)
    np.testing.assert_allclose(m["subspace"], 0, atol=1e-7)
    np.testing.assert_allclose(m["R"], 0, atol=1e-24)
    rng = np.random.default_rng(0)
    for _ in range(5):
        other = np.linalg.qr(B + 0.2 * rng.standard_normal(B.shape))[0]
        worse, _, _ = population_loss_and_grads(p, optimal_heads(p, other), other, grads=False)
        assert np.all(worse.mean(axis=1) > p.approximation_error)
    # a coloured covariance and a non-zero head mean: still the Eckart-Young minimum
    A = rng.standard_normal((d, d))
    q = make_problem("linear", N, dim=d, rank=r, true_rank=rt, head_mean=0.7, covariance=A @ A.T / d + np.eye(d),
                     n_seeds=S, seed=5)
    theta, B = best_rank_fit(q)
    best, _, _ = population_loss_and_grads(q, theta, B, grads=False)
    np.testing.assert_allclose(best.mean(axis=1), q.approximation_error, rtol=1e-10)
    for _ in range(5):
        other = np.linalg.qr(B + 0.2 * rng.standard_normal(B.shape))[0]
        worse, _, _ = population_loss_and_grads(q, optimal_heads(q, other), other, grads=False)
        assert np.all(worse.mean(axis=1) > q.approximation_error)


@pytest.mark.parametrize("kwargs,match", [(dict(rank=3, true_rank=3), "must exceed rank"),
                                          (dict(rank=3, true_rank=2), "must exceed rank"),
                                          (dict(rank=3, true_rank=21), "cannot exceed dim"),
                                          (dict(rank=2, true_rank=9), "at least the true rank = 9")])
def test_misspecified_problem_rejects_bad_ranks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_problem("linear", 8, dim=20, **kwargs)


# ---------------------------------------------------------------------------
# Consensus and communication.
# ---------------------------------------------------------------------------
def test_consensus_preserves_the_average_representation():
    from deprl_theory.engine import consensus

    rng = np.random.default_rng(0)
    Phi = rng.standard_normal((3, 8, 5, 2))
    W = _ring(8)
    mixed = consensus(W, Phi)
    np.testing.assert_allclose(mixed.mean(axis=1), Phi.mean(axis=1), atol=1e-12)
    dev = lambda A: np.linalg.norm(A - A.mean(axis=1, keepdims=True))  # noqa: E731
    assert dev(mixed) < dev(Phi)
    import scipy.sparse as sp

    np.testing.assert_allclose(consensus(sp.csr_array(W), Phi), mixed, atol=1e-12)


def test_local_never_mixes():
    """Changing worker 1's task leaves worker 0's local trajectory untouched."""
    p = make_problem("linear", 3, dim=5, rank=2, n_seeds=1, seed=2)
    heads = p.heads_star.copy()
    heads[0, 1] *= 5
    q = dataclasses.replace(p, heads_star=heads)
    a = run(p, None, algorithm="local", rounds=20, tau=2, alpha=0.05, beta=0.05, seed=[7])
    b = run(q, None, algorithm="local", rounds=20, tau=2, alpha=0.05, beta=0.05, seed=[7])
    np.testing.assert_array_equal(a.B[0, 0], b.B[0, 0])
    assert not np.allclose(a.B[0, 1], b.B[0, 1])
    deprl = run(q, _ring(3), algorithm="deprl", rounds=20, tau=2, alpha=0.05, beta=0.05, seed=[7])
    assert not np.allclose(a.B[0, 0], deprl.B[0, 0])  # whereas gossip does mix


def test_centralized_ignores_W_and_keeps_exact_consensus():
    p = make_problem("linear", 4, dim=5, rank=2, n_seeds=2, seed=2)
    res = run(p, None, algorithm="centralized", rounds=30, tau=2, alpha=0.05, beta=0.05, seed=1)
    assert np.all(res.averages["C"] < 1e-25)


def test_wrong_mixing_matrix_is_rejected():
    p = make_problem("linear", 4, dim=5, rank=2, seed=0)
    W = _ring(4)
    W[0, 0] += 0.1
    with pytest.raises(ValueError, match="row sums|symmetric"):
        run(p, W, rounds=2, alpha=0.1, beta=0.1)
    with pytest.raises(ValueError, match="shape"):
        run(p, _ring(5), rounds=2, alpha=0.1, beta=0.1)
    with pytest.raises(ValueError, match="needs a mixing matrix"):
        run(p, None, algorithm="deprl", rounds=2, alpha=0.1, beta=0.1)


# ---------------------------------------------------------------------------
# Ground truth, reproducibility, divergence.
# ---------------------------------------------------------------------------
def test_deprl_recovers_the_true_subspace():
    N = 8
    p = make_problem("linear", N, dim=10, rank=2, noise=0.1, batch=10, n_seeds=2, seed=0)
    res = run(p, np.full((N, N), 1 / N), rounds=1500, tau=5, alpha=0.05, beta=0.05, seed=1)
    assert np.all(res.final["subspace"] < 0.05), res.final["subspace"]
    assert np.all(res.final["excess_risk"] < 0.05)
    assert not res.diverged.any()


def test_nonlinear_stationarity_drops_tenfold():
    N = 8
    p = make_problem("nonlinear", N, dim=8, rank=2, noise=0.1, n_eval=200, n_seeds=2, seed=0)
    res = run(p, _ring(N), rounds=800, tau=5, alpha=0.05, beta=0.1, seed=1, eval_every=10)
    G = res.trace["G"]
    assert np.all(res.final["G"] * 10 <= G[:, 0]), (G[:, 0], res.final["G"])
    assert not res.diverged.any()


def test_same_seed_same_numbers_and_new_seeds_leave_old_ones_alone():
    p = make_problem("linear", 4, dim=5, rank=2, n_seeds=3, seed=0)
    a = run(p, _ring(4), rounds=15, tau=2, alpha=0.05, beta=0.05, seed=5)
    b = run(p, _ring(4), rounds=15, tau=2, alpha=0.05, beta=0.05, seed=5)
    np.testing.assert_array_equal(a.B, b.B)
    c = run(p, _ring(4), rounds=15, tau=2, alpha=0.05, beta=0.05, seed=6)
    assert not np.allclose(a.B, c.B)
    # seeds are independent: seed 1 and seed 2 of the batch draw different data
    assert not np.allclose(a.B[:, 1], a.B[:, 2])
    # a larger batch reproduces the first seeds exactly (problem and run)
    p5 = make_problem("linear", 4, dim=5, rank=2, n_seeds=5, seed=0)
    d = run(p5, _ring(4), rounds=15, tau=2, alpha=0.05, beta=0.05, seed=5)
    np.testing.assert_array_equal(d.B[:3], a.B)
    # more workers: the first workers' iid head draws do not change (balanced heads are whitened over
    # all N workers, so they move, by design)
    p4 = make_problem("linear", 4, dim=5, rank=2, n_seeds=3, seed=0, heads="iid")
    p8 = make_problem("linear", 8, dim=5, rank=2, n_seeds=3, seed=0, heads="iid")
    np.testing.assert_array_equal(p8.heads_star[:, :4], p4.heads_star)


def test_divergence_is_flagged_per_seed_and_the_run_goes_on():
    p = make_problem("linear", 4, dim=5, rank=2, n_seeds=2, seed=0)
    heads = p.heads_star.copy()
    heads[0] *= 30  # seed 0 gets a steep problem that this step size cannot handle
    q = dataclasses.replace(p, heads_star=heads)
    res = run(q, _ring(4), rounds=300, tau=2, alpha=0.3, beta=0.3, seed=1)
    assert res.diverged.tolist() == [True, False]
    assert res.diverged_round[0] > 0 and res.diverged_round[1] == -1
    assert np.isnan(res.averages["G"][0]) and np.isfinite(res.averages["G"][1])
    assert res.summary()["steps"]["beta"] == 0.3


def test_theory_step_sizes_and_cap():
    st = theory_step_sizes(16, 400, 5, c=0.5)
    assert st.beta == pytest.approx(0.5 * np.sqrt(16 / 400))
    assert st.alpha == pytest.approx(st.beta / (16 * 5))
    capped = theory_step_sizes(64, 4, 1, c=1.0, beta_max=0.5)
    assert capped.beta == 0.5 and "capped" in capped.rule
    fixed = theory_step_sizes(8, 100, 5, head_step=0.05)
    assert fixed.alpha == 0.05
    with pytest.raises(ValueError, match="head rule"):
        theory_step_sizes(8, 100, head_rule="sometimes")
    with pytest.raises(ValueError):
        step_sizes(-1, 0.1)


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"tau": 0}, {"algorithm": "fedavg"}])
def test_bad_run_arguments(bad):
    p = make_problem("linear", 3, dim=4, rank=1, seed=0)
    kwargs = dict(rounds=3, tau=1, alpha=0.1, beta=0.1, algorithm="local")
    kwargs.update(bad)
    with pytest.raises(ValueError):
        run(p, None, **kwargs)


@pytest.mark.parametrize("bad", [dict(rank=5, dim=3), dict(noise=-1), dict(activation="swish"),
                                 dict(kind="cubic"), dict(batch=0)])
def test_bad_problem_arguments(bad):
    kwargs = dict(kind="linear", n_workers=3, dim=4, rank=2)
    kwargs.update(bad)
    with pytest.raises(ValueError):
        make_problem(**kwargs)


def test_the_step_rule_carries_its_tau_and_run_refuses_a_different_one():
    from deprl_theory.engine import theory_step_sizes

    p = make_problem("linear", 4, dim=6, rank=2, n_seeds=1, seed=0)
    steps = theory_step_sizes(4, 50, tau=5)
    assert steps.tau == 5 and steps.as_dict()["tau"] == 5
    W = _ring(4)
    implicit = run(p, W, rounds=50, steps=steps, seed=2)
    explicit = run(p, W, rounds=50, tau=5, steps=steps, seed=2)
    np.testing.assert_array_equal(implicit.averages["G"], explicit.averages["G"])
    with pytest.raises(ValueError, match="computed for tau = 5"):
        run(p, W, rounds=50, tau=1, steps=steps, seed=2)


def test_a_problem_without_signal_is_refused():
    with pytest.raises(ValueError, match="every true head is 0"):
        make_problem("linear", 4, dim=6, rank=2, heterogeneity=0.0, n_seeds=1, seed=0)
    make_problem("linear", 4, dim=6, rank=2, heterogeneity=0.0, head_mean=1.0, n_seeds=1, seed=0)  # signal: fine


@pytest.mark.parametrize("steps_for,rounds,fragment", [
    ((8, 100), 100, "computed for N = 8 but the problem has N = 16"),
    ((16, 1000), 100, "computed for K = 1000 but rounds is K = 100"),
])
def test_a_step_rule_for_another_N_or_K_is_refused(steps_for, rounds, fragment):
    """theory_step_sizes(N, K) carries its N and K: running it elsewhere is an error, not other step sizes."""
    from deprl_theory.graphs import mixing_matrix

    problem, W = make_problem("linear", 16, dim=6, rank=2, n_seeds=1, seed=0), mixing_matrix("ring", 16)
    with pytest.raises(ValueError, match=fragment):
        run(problem, W, rounds=rounds, steps=theory_step_sizes(*steps_for), seed=0)
    run(problem, W, rounds=rounds, steps=theory_step_sizes(16, rounds), seed=0)
    run(problem, W, rounds=rounds, steps=step_sizes(0.01, 0.05), seed=0)  # constant steps: chosen freely
