"""The projected minibatch sampler (issue 13): exact in distribution, robust where the covariance is singular.

What guards what:

* the factor: L L^T equals the covariance of the projections it stands for,
  for both problems, coloured inputs, noise or none, a learned subspace and a
  rank-deficient B (deterministic, to rounding);
* the engine's sufficient-statistic head steps equal the textbook per-sample
  head steps on the same projected draws;
* distribution: one round's head update has the same mean and covariance
  under both samplers (two-sample Hotelling T^2 on its first and second
  moments), and the time-averaged R of a short run has the same distribution
  (two-sample Kolmogorov-Smirnov), for the linear and the nonlinear problem;
  each test uses fixed seeds, and its false-alarm rate, were the seeds drawn
  anew, is ALPHA;
* the same statistics reject deliberately broken factors (the cross term
  between z and the label dropped, or the label's conditional variance
  replaced by its unconditional one), so the tests above can fail;
* the singular case at convergence with no noise: finite draws, labels that
  are exactly the true model's, a zero head gradient at the optimum;
* per-seed independence, reproducibility, round-major projected draws, every
  algorithm on the projected sampler, and the direct sampler's draw buffers
  capped at the run's length (with the reference loop still replaying it).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

import deprl_theory.engine as engine
from deprl_theory import mixing_matrix
from deprl_theory.engine import (
    ALGORITHMS,
    DrawStream,
    ProjectedDrawStream,
    minibatch_generators,
    normals_per_worker_round,
    run,
)
from deprl_theory.problems import (
    ACTIVATIONS,
    Problem,
    head_gradient,
    make_problem,
    minibatch_features,
    projected_minibatch,
    projection_factor,
    projection_width,
)
from deprl_theory.reference import reference_run

#: false-alarm rate of every statistical test below (probability that a correct sampler fails it)
ALPHA = 1e-3
#: a broken factor must be rejected far beyond ALPHA, not by luck
BROKEN_P = 1e-8


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
def _coloured(d: int, seed: int = 7) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((d, d))
    return A @ A.T / d + 0.5 * np.eye(d)


def _joint_covariance(problem: Problem, B: np.ndarray) -> np.ndarray:
    """Covariance of the projections a head step needs, straight from the definition (not the factor's algebra)."""
    Sigma = problem.covariance
    if problem.kind == "linear":
        T = problem.targets[..., None]
    else:
        T = np.broadcast_to(problem.B_star[:, None], B.shape[:-1] + (problem.true_rank,))
    P = np.concatenate((B, T), axis=-1)
    q = projection_width(problem)
    cov = np.zeros(B.shape[:2] + (q, q))
    k = P.shape[-1]
    cov[..., :k, :k] = np.swapaxes(P, -1, -2) @ Sigma @ P
    cov[..., q - 1, q - 1] += problem.noise**2
    return cov


def _moments(x: np.ndarray) -> np.ndarray:
    """Per sample: x and the entries of x x^T on and above the diagonal (equal means of these <=> equal mean
    and covariance of x)."""
    iu = np.triu_indices(x.shape[1])
    return np.concatenate([x, (x[:, :, None] * x[:, None, :])[:, iu[0], iu[1]]], axis=1)


def hotelling_p(a: np.ndarray, b: np.ndarray) -> float:
    """p-value of the two-sample Hotelling T^2 test of equal means of the rows of ``a`` and ``b``.

    Pooled covariance, F reference distribution. The rows here are moments of
    non-Gaussian head updates: the F law holds asymptotically (central limit
    theorem), which with thousands of samples per side is accurate far below
    the 1e-3 level used.
    """
    na, nb, p = len(a), len(b), a.shape[1]
    diff = a.mean(axis=0) - b.mean(axis=0)
    pooled = ((na - 1) * np.cov(a.T) + (nb - 1) * np.cov(b.T)) / (na + nb - 2)
    t2 = na * nb / (na + nb) * diff @ np.linalg.solve(pooled, diff)
    f = (na + nb - p - 1) / (p * (na + nb - 2)) * t2
    return float(stats.f.sf(f, p, na + nb - p - 1))


def _break(how: str):
    """A deliberately wrong version of projection_factor, as a careless implementation might write it."""
    real = projection_factor

    def broken(problem: Problem, B: np.ndarray) -> np.ndarray:
        L = real(problem, B).copy()
        r, w_end = problem.rank, problem.rank + problem.true_rank
        if how == "no_cross_term":  # the label (or w) drawn independently of the features z
            L[..., r:, :r] = 0.0
        elif how == "unconditional_variance":  # the part of the label z explains counted twice
            if problem.kind == "linear":
                L[..., r, r] = np.sqrt(np.square(L[..., r, :]).sum(axis=-1))
            else:  # w taken as a function of z alone: its residual variance lost
                L[..., r:w_end, r:w_end] = 0.0
        else:
            raise ValueError(how)
        return L

    return broken


def _one_task_problem(kind: str, n: int, *, covariance: bool) -> Problem:
    """n workers that share one task (heterogeneity 0), with a fixed representation that has *partly*
    learned the subspace: the features and the clean label are correlated but not collinear, which is
    where the factor's cross term and conditional variance both matter."""
    d, r = 6, 2
    p = make_problem(kind, n, dim=d, rank=r, noise=0.5, batch=5, heterogeneity=0.0, head_mean=np.array([1.0, -0.7]),
                     covariance=_coloured(d) if covariance else None, n_eval=5, n_seeds=1, seed=3)
    B0 = 0.8 * p.B_star + 0.6 * p.B0 @ np.array([[1.0, 0.3], [-0.2, 0.9]])
    return dataclasses.replace(p, B0=B0)


def _misspecified_one_task_problem(kind: str, n: int) -> Problem:
    """As :func:`_one_task_problem`, but the truth has rank 3 and the model rank 2: the model's representation
    holds part of span(B*) and misses one direction of it, so the labels keep a part no feature explains."""
    d, r = 6, 2
    p = make_problem(kind, n, dim=d, rank=r, true_rank=3, noise=0.5, batch=5, heterogeneity=0.0,
                     head_mean=np.array([1.0, -0.7, 0.8]), covariance=_coloured(d) if kind == "linear" else None,
                     n_eval=5, n_seeds=1, seed=3)
    B0 = 0.8 * p.B_star[..., :r] + 0.6 * p.B0 @ np.array([[1.0, 0.3], [-0.2, 0.9]])
    return dataclasses.replace(p, B0=B0)


def _head_updates(problem: Problem, sampler: str, seed: int) -> np.ndarray:
    """One round's head update (tau = 3 steps from theta = 0, B frozen) of every worker: (N, r) samples."""
    res = run(problem, None, algorithm="local", rounds=1, tau=3, alpha=0.3, beta=0.0, seed=seed, sampler=sampler)
    return res.theta[0]


def _seeds(problem: Problem, idx: list[int]) -> Problem:
    """The instances at batch positions ``idx``."""
    pick = lambda a: None if a is None else a[idx]  # noqa: E731
    return dataclasses.replace(problem, B_star=pick(problem.B_star), heads_star=pick(problem.heads_star),
                               B0=pick(problem.B0), X_eval=pick(problem.X_eval))


def _replicated(problem: Problem, n_seeds: int) -> Problem:
    """The same instance n_seeds times: the seeds of a run are then iid draws of one distribution."""
    rep = lambda a: None if a is None else np.repeat(a, n_seeds, axis=0)  # noqa: E731
    return dataclasses.replace(problem, B_star=rep(problem.B_star), heads_star=rep(problem.heads_star),
                               B0=rep(problem.B0), X_eval=rep(problem.X_eval))


def _rbar(kind: str, sampler: str, seed: int, true_rank: int | None = None) -> np.ndarray:
    """Time-averaged R of a short deprl run, one value per seed (300 seeds of one instance)."""
    p = make_problem(kind, 4, dim=6, rank=2, true_rank=true_rank, noise=0.3, batch=5, n_eval=30, n_seeds=1, seed=5)
    p = _replicated(p, 300)
    res = run(p, mixing_matrix("ring", 4), rounds=30, tau=2, alpha=0.2, beta=0.2, seed=seed, sampler=sampler,
              average_every=1)
    assert not res.diverged.any()
    return res.averages["R"]


# ---------------------------------------------------------------------------
# The factor, deterministically.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("noise", [0.4, 0.0])
@pytest.mark.parametrize("coloured", [False, True])
@pytest.mark.parametrize("true_rank", [None, 5])
def test_factor_reproduces_the_projections_covariance(kind, noise, coloured, true_rank):
    d, r, N = 7, 3, 5
    p = make_problem(kind, N, dim=d, rank=r, true_rank=true_rank, noise=noise,
                     covariance=_coloured(d) if coloured else None, n_eval=5, n_seeds=2, seed=1)
    rng = np.random.default_rng(0)
    B = rng.standard_normal((2, N, d, r))
    B[:, 0] = p.B_star[..., :r]  # learned subspace (misspecified: a rank-r part of it), the true basis
    B[:, 1] = p.B_star[..., :r] @ rng.standard_normal((r, r))  # learned subspace, another basis
    B[:, 2, :, 1:] = p.B_star[:, :, :2]  # half learned: the residual covariance is rank-deficient
    L = projection_factor(p, B)
    assert L.shape == (2, N, projection_width(p), projection_width(p))
    assert np.isfinite(L).all()
    cov = _joint_covariance(p, B)
    np.testing.assert_allclose(L @ np.swapaxes(L, -1, -2), cov, rtol=0, atol=1e-12 * np.abs(cov).max())
    if noise == 0 and true_rank is None:  # at the learned subspace the labels are functions of z: the residual
        assert np.abs(L[:, :2, r:, r:]).max() < 1e-13  # block is 0, not 1e-8 (a misspecified model never gets there)


def test_factor_of_a_rank_deficient_or_diverged_representation():
    """Two equal columns (a LAPACK Cholesky fails) give an exact factor anyway; a NaN seed gives NaN, no error;
    and every entry's factor is exactly the one it gets alone (a seed's numbers are its own)."""
    p = make_problem("linear", 3, dim=5, rank=2, noise=0.3, n_seeds=3, seed=2)
    rng = np.random.default_rng(1)
    B = rng.standard_normal((3, 3, 5, 2))
    B[1, 1, :, 1] = B[1, 1, :, 0]
    B[2] = np.nan
    L = projection_factor(p, B)
    assert np.isnan(L[2][..., np.tril_indices(3)[0], np.tril_indices(3)[1]]).all()
    ok = np.isfinite(B).all(axis=(-2, -1))
    cov = _joint_covariance(p, B)
    np.testing.assert_allclose((L @ np.swapaxes(L, -1, -2))[ok], cov[ok], rtol=0, atol=1e-12)
    for s in range(2):
        alone = projection_factor(_seeds(p, [s]), B[s:s + 1])
        np.testing.assert_array_equal(alone[0], L[s])


# ---------------------------------------------------------------------------
# The engine's head steps on projected draws.
# ---------------------------------------------------------------------------
def test_sufficient_statistic_head_steps_equal_the_per_sample_steps():
    S, N, d, r, tau, b, alpha = 2, 4, 8, 3, 4, 6, 0.15
    p = make_problem("linear", N, dim=d, rank=r, batch=b, noise=0.3, covariance=_coloured(d), n_seeds=S, seed=1)
    stream = ProjectedDrawStream(minibatch_generators([1, 2], S), tau, N, b, d, r + 1, rounds=1)
    rnd = engine._ProjectedRound(p, stream, tau, alpha, 0.1)
    rng = np.random.default_rng(0)
    B = rng.standard_normal((S, N, d, r))
    theta = rng.standard_normal((S, N, r))
    H, _, _ = stream.next()
    L = projection_factor(p, B)
    fast = rnd._linear_heads(L, H, theta)
    feats, _, y = projected_minibatch(p, L, H.transpose(0, 2, 1, 3, 4))
    slow = theta
    for t in range(tau):
        slow = slow - alpha * head_gradient(feats[:, t], slow, y[:, t])
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Distributional equivalence (and that broken factors are caught).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind,covariance", [("linear", False), ("linear", True), ("nonlinear", False)])
def test_one_round_head_update_has_the_same_distribution(kind, covariance):
    """Mean and covariance of one round's head update, 3000 workers per sampler: Hotelling T^2 on the
    first and second moments does not reject at ALPHA."""
    p = _one_task_problem(kind, 3000, covariance=covariance)
    direct = _head_updates(p, "direct", seed=11)
    projected = _head_updates(p, "projected", seed=12)
    assert np.abs(direct.mean(axis=0)).min() > 0.05  # a non-trivial update, not noise around 0
    assert hotelling_p(_moments(direct), _moments(projected)) > ALPHA


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_misspecified_head_update_has_the_same_distribution(kind, monkeypatch):
    """A truth of rank 3 under a rank-2 model (nonlinear: r + r_true + 1 = 6 projections per sample): the
    projected head update matches the direct one in mean and covariance, and a broken factor does not."""
    p = _misspecified_one_task_problem(kind, 3000)
    assert projection_width(p) == (3 if kind == "linear" else 6)
    direct = _head_updates(p, "direct", seed=11)
    projected = _head_updates(p, "projected", seed=12)
    assert np.abs(direct.mean(axis=0)).min() > 0.05
    assert hotelling_p(_moments(direct), _moments(projected)) > ALPHA
    monkeypatch.setattr(engine, "projection_factor", _break("unconditional_variance"))
    broken = _head_updates(p, "projected", seed=12)
    assert hotelling_p(_moments(direct), _moments(broken)) < BROKEN_P


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("how", ["no_cross_term", "unconditional_variance"])
def test_broken_factor_fails_the_head_update_test(kind, how, monkeypatch):
    p = _one_task_problem(kind, 3000, covariance=kind == "linear")
    direct = _head_updates(p, "direct", seed=11)
    monkeypatch.setattr(engine, "projection_factor", _break(how))
    broken = _head_updates(p, "projected", seed=12)
    assert hotelling_p(_moments(direct), _moments(broken)) < BROKEN_P


@pytest.mark.parametrize("true_rank", [None, 4])
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_time_averaged_R_has_the_same_distribution(kind, true_rank):
    """Rbar over 30 rounds, 300 iid seeds per sampler: two-sample Kolmogorov-Smirnov does not reject at ALPHA
    (also for a misspecified model, truth of rank 4 under a rank-2 model)."""
    direct = _rbar(kind, "direct", seed=21, true_rank=true_rank)
    projected = _rbar(kind, "projected", seed=22, true_rank=true_rank)
    assert stats.ks_2samp(direct, projected).pvalue > ALPHA


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_broken_factor_fails_the_time_average_test(kind, monkeypatch):
    direct = _rbar(kind, "direct", seed=21)
    monkeypatch.setattr(engine, "projection_factor", _break("no_cross_term"))
    broken = _rbar(kind, "projected", seed=22)
    assert stats.ks_2samp(direct, broken).pvalue < BROKEN_P


# ---------------------------------------------------------------------------
# The linear representation step through its sufficient statistics.
# ---------------------------------------------------------------------------
def _representation_state(p: Problem, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Heads and transposed representations (S, N, r), (S, N, r, d): every worker at one off-optimum point."""
    S, N, d, r = p.n_seeds, p.n_workers, p.dim, p.rank
    rng = np.random.default_rng(seed)
    theta = np.broadcast_to(rng.standard_normal(r), (S, N, r)).copy()
    Bt = np.broadcast_to(np.swapaxes(p.B0, -1, -2)[:, None], (S, N, r, d)).copy()
    return theta, Bt


def _direct_gradient(p: Problem, theta: np.ndarray, Bt: np.ndarray, seed: int) -> np.ndarray:
    """X^T (X (B theta - t) - sigma eps) of every worker from b directly drawn inputs: (N, d) samples of seed 0."""
    S, N, b, d = p.n_seeds, p.n_workers, p.batch, p.dim
    X, eps = DrawStream(minibatch_generators(seed, S), 1, N, b, d, p.cov_chol, rounds=1).next()
    X, eps = X[:, 0], eps[:, 0]
    v = (theta[:, :, None, :] @ Bt)[:, :, 0] - p.targets
    resid = (X @ v[..., None])[..., 0] - p.noise * eps
    return (resid[..., None, :] @ X)[0, :, 0]


def _sufficient_gradient(p: Problem, theta: np.ndarray, Bt: np.ndarray, seed: int, step=None) -> np.ndarray:
    """The same gradient through the engine's 2b + d normals (or ``step``, a stand-in for the engine's)."""
    stream = ProjectedDrawStream(minibatch_generators(seed, p.n_seeds), 1, p.n_workers, p.batch, p.dim,
                                 projection_width(p), p.cov_chol, rounds=1, sufficient=True)
    rnd = engine._ProjectedRound(p, stream, 1, 0.1, 0.1)
    return (step or engine._ProjectedRound._linear_representation)(rnd, theta, Bt)[0]


def _broken_representation(how: str):
    """A wrong version of the engine's sufficient-statistic representation step, as a careless derivation
    might give it."""
    def broken(self, theta, Bt):
        a, eps, n = self.stream.statistics()
        p, C = self.problem, self.problem.cov_chol
        v = (theta[:, :, None, :] @ Bt)[:, :, 0] - p.targets
        w = v if C is None else v @ C
        norm = np.linalg.norm(w, axis=-1)
        u = w / norm[..., None]
        resid = norm[..., None] * a - p.noise * eps
        along = (a * resid).sum(-1)
        size = np.linalg.norm(resid, axis=-1)
        if how == "no_projection":  # the noise direction not projected off u: the along-u part counted twice
            g = size[..., None] * n + along[..., None] * u
        elif how == "independent_residuals":  # the along-u coefficient drawn apart from the residuals
            coefficient = (np.roll(a, 1, -1) * resid).sum(-1)[..., None]
            g = size[..., None] * (n - u * (u * n).sum(-1)[..., None]) + coefficient * u
        elif how == "uncoloured":  # Sigma forgotten in the direction u
            u = v / np.linalg.norm(v, axis=-1)[..., None]
            g = size[..., None] * (n - u * (u * n).sum(-1)[..., None]) + along[..., None] * u
        else:
            raise ValueError(how)
        return g if C is None else g @ C.T

    return broken


@pytest.mark.parametrize("noise", [0.5, 2.0, 0.0])
@pytest.mark.parametrize("coloured", [False, True])
def test_representation_gradient_has_the_direct_distribution(coloured, noise):
    """g = X^T resid of 20000 workers at one point: mean and covariance (Hotelling T^2 on first and second
    moments) agree between b directly drawn inputs and the engine's 2b + d normals."""
    p = make_problem("linear", 20000, dim=5, rank=2, batch=4, noise=noise,
                     covariance=_coloured(5) if coloured else None, n_eval=5, n_seeds=1, seed=3)
    theta, Bt = _representation_state(p)
    direct = _direct_gradient(p, theta, Bt, seed=31)
    sufficient = _sufficient_gradient(p, theta, Bt, seed=32)
    assert np.abs(direct.mean(axis=0)).max() > 0.3  # a non-trivial gradient, not noise around 0
    assert hotelling_p(_moments(direct), _moments(sufficient)) > ALPHA


@pytest.mark.parametrize("how,noise", [("no_projection", 2.0), ("independent_residuals", 0.5), ("uncoloured", 0.5)])
def test_a_broken_representation_step_fails_the_test(how, noise):
    """Each error shows where it matters: the lost projection where noise dominates the residuals, the
    forgotten colouring where the signal does."""
    p = make_problem("linear", 20000, dim=5, rank=2, batch=4, noise=noise, covariance=_coloured(5), n_eval=5,
                     n_seeds=1, seed=3)
    theta, Bt = _representation_state(p)
    direct = _direct_gradient(p, theta, Bt, seed=31)
    broken = _sufficient_gradient(p, theta, Bt, seed=32, step=_broken_representation(how))
    assert hotelling_p(_moments(direct), _moments(broken)) < BROKEN_P


@pytest.mark.parametrize("coloured", [False, True])
def test_representation_step_at_the_optimum(coloured):
    """At B theta = t (no direction u to split along): no noise gives g = 0 exactly; with noise, finite
    draws with the direct distribution, X^T (-sigma eps)."""
    S, N, d, r = 2, 3, 6, 2
    cov = _coloured(d) if coloured else None
    p = make_problem("linear", N, dim=d, rank=r, noise=0.0, batch=5, covariance=cov, n_eval=5, n_seeds=S, seed=4)
    theta = p.heads_star.copy()
    Bt = np.broadcast_to(np.swapaxes(p.B_star, -1, -2)[:, None], (S, N, r, d)).copy()
    scale = np.abs(p.targets).max()
    g = _sufficient_gradient(p, theta, Bt, seed=5)
    assert np.isfinite(g).all() and np.abs(g).max() < 1e-12 * scale
    noisy = make_problem("linear", 3000, dim=d, rank=r, noise=0.5, batch=5, covariance=cov, heterogeneity=0.0,
                         head_mean=np.array([0.6, -0.4]), n_eval=5, n_seeds=1, seed=4)
    theta = np.broadcast_to(noisy.heads_star, (1, 3000, r)).copy()
    Bt = np.broadcast_to(np.swapaxes(noisy.B_star, -1, -2)[:, None], (1, 3000, r, d)).copy()
    direct = _direct_gradient(noisy, theta, Bt, seed=31)
    sufficient = _sufficient_gradient(noisy, theta, Bt, seed=32)
    assert np.isfinite(sufficient).all()
    assert hotelling_p(_moments(direct), _moments(sufficient)) > ALPHA


def test_one_round_representation_update_has_the_same_distribution():
    """The whole round (tau head steps, then the representation step with the updated heads): the change of
    B has the same mean and covariance under both samplers, 3000 workers each."""
    p = _one_task_problem("linear", 3000, covariance=True)

    def change(sampler: str, seed: int) -> np.ndarray:
        res = run(p, None, algorithm="local", rounds=1, tau=3, alpha=0.3, beta=0.3, seed=seed, sampler=sampler)
        return (res.B[0] - p.B0[0]).reshape(p.n_workers, -1)

    direct, projected = change("direct", 11), change("projected", 12)
    assert np.abs(direct.mean(axis=0)).max() > 0.05
    assert hotelling_p(_moments(direct), _moments(projected)) > ALPHA


# ---------------------------------------------------------------------------
# The singular case: a learned subspace, no noise.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("coloured", [False, True])
def test_learned_subspace_without_noise(kind, coloured):
    """B_i = B*, theta_i = w_i*, noise 0: the joint covariance is singular. The projected draws stay finite,
    their labels are exactly the true model's, and the head gradient at the optimum is 0, as with direct draws."""
    S, N, d, r, b, tau = 2, 3, 6, 2, 50, 4
    p = make_problem(kind, N, dim=d, rank=r, noise=0.0, batch=b, covariance=_coloured(d) if coloured else None,
                     n_eval=5, n_seeds=S, seed=4)
    B = np.broadcast_to(p.B_star[:, None], (S, N, d, r)).copy()
    theta = p.heads_star.copy()
    L = projection_factor(p, B)
    assert np.isfinite(L).all()
    stream = ProjectedDrawStream(minibatch_generators([5, 6], S), tau, N, b, d, projection_width(p), p.cov_chol,
                                 rounds=1)
    H, X, eps = stream.next()
    feats, pre, y = projected_minibatch(p, L, H.transpose(0, 2, 1, 3, 4))
    assert np.isfinite(feats).all() and np.isfinite(y).all()
    scale = np.abs(y).max()
    act = (lambda u: u) if kind == "linear" else ACTIVATIONS[p.activation][0]
    model = (feats @ theta[:, None, :, :, None])[..., 0]
    np.testing.assert_allclose(y, model, rtol=0, atol=1e-12 * scale)  # the label is the model's prediction
    if kind == "nonlinear":  # and w = B*^T x coincides with z = B^T x
        np.testing.assert_allclose(act(pre), feats, rtol=0, atol=0)
    for t in range(tau):
        assert np.abs(head_gradient(feats[:, t], theta, y[:, t])).max() < 1e-12 * scale**2
    # the direct sampler's inputs at the same point, for comparison: the same exactness
    f_dir, _, y_dir = minibatch_features(p, B, X[:, None], eps[:, None])
    assert np.abs(head_gradient(f_dir[:, 0], theta, y_dir[:, 0])).max() < 1e-12 * scale**2
    # and the features have the covariance B*^T Sigma B* (a loose check of scale: 2 x 3 x 200 samples)
    z = pre.reshape(-1, r) if kind == "linear" else pre.reshape(-1, r)
    emp = z.T @ z / len(z)
    want = (p.B_star[0].T @ p.covariance @ p.B_star[0] + p.B_star[1].T @ p.covariance @ p.B_star[1]) / 2
    np.testing.assert_allclose(emp, want, atol=0.25 * np.abs(want).max())


@pytest.mark.parametrize("sampler", ["direct", "projected"])
def test_engine_converges_to_the_truth_without_noise(sampler):
    """Started at B* with no noise: with B held there the heads converge to w* to rounding; with B moving too,
    the excess risk still falls towards 0. Every round of both runs draws at a singular covariance."""
    p = make_problem("linear", 4, dim=6, rank=2, noise=0.0, batch=8, covariance=_coloured(6), n_seeds=2, seed=3)
    p = dataclasses.replace(p, B0=p.B_star.copy())
    held = run(p, mixing_matrix("ring", 4), rounds=300, tau=3, alpha=0.2, beta=0.0, seed=1, sampler=sampler)
    assert np.isfinite(held.theta).all()
    np.testing.assert_allclose(held.theta, p.heads_star, rtol=0, atol=1e-13)
    assert np.all(held.final["excess_risk"] < 1e-28)
    moving = run(p, mixing_matrix("ring", 4), rounds=300, tau=3, alpha=0.2, beta=0.05, seed=1, sampler=sampler)
    assert not moving.diverged.any() and np.isfinite(moving.B).all()
    assert np.all(moving.final["excess_risk"] < 1e-6)


# ---------------------------------------------------------------------------
# Seeds and draws.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_projected_seeds_are_independent_and_reproducible(kind):
    kw = dict(dim=5, rank=2, n_eval=20, seed=0)
    p3 = make_problem(kind, 4, n_seeds=3, **kw)
    args = dict(rounds=15, tau=2, alpha=0.05, beta=0.05, sampler="projected")
    a = run(p3, mixing_matrix("ring", 4), seed=5, **args)
    b = run(p3, mixing_matrix("ring", 4), seed=5, **args)
    np.testing.assert_array_equal(a.B, b.B)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.allclose(run(p3, mixing_matrix("ring", 4), seed=6, **args).B, a.B)
    assert not np.allclose(a.B[:, 1], a.B[:, 2])
    # seed j's numbers do not depend on the other seeds of the batch
    p5 = make_problem(kind, 4, n_seeds=5, **kw)
    d = run(p5, mixing_matrix("ring", 4), seed=5, **args)
    np.testing.assert_array_equal(d.B[:3], a.B)
    np.testing.assert_array_equal(d.theta[:3], a.theta)
    one = run(_seeds(p5, [1]), mixing_matrix("ring", 4), seed=[minibatch_generators(5, 5)[1]], **args)
    np.testing.assert_array_equal(one.theta[0], d.theta[1])
    # and a seed that blows up (frozen at NaN from its first round on) leaves the others' numbers alone
    B0 = p5.B0.copy()
    B0[0] *= 1e7
    wild = run(dataclasses.replace(p5, B0=B0), mixing_matrix("ring", 4), seed=5, **args)
    assert wild.diverged.tolist() == [True, False, False, False, False]
    np.testing.assert_array_equal(wild.theta[1:], d.theta[1:])
    np.testing.assert_array_equal(wild.B[1:], d.B[1:])


def test_projected_draws_are_round_major():
    """A projected run's first K rounds are the same whatever its length (its draws come one round at a time)."""
    p = make_problem("linear", 4, dim=5, rank=2, n_seeds=2, seed=0)
    kw = dict(tau=2, alpha=0.05, beta=0.05, seed=3, eval_every=1, sampler="projected")
    short = run(p, mixing_matrix("ring", 4), rounds=5, **kw)
    long = run(p, mixing_matrix("ring", 4), rounds=9, **kw)
    for m in ("R", "H", "C", "excess_risk"):
        np.testing.assert_array_equal(long.trace[m][:, :6], short.trace[m])


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_runs_on_the_projected_sampler(kind, algorithm):
    """What each algorithm mixes is the engine's business, not the sampler's: all run, stay finite, and a
    sparse W gives the same numbers as the dense one."""
    import scipy.sparse as sp

    p = make_problem(kind, 5, dim=6, rank=2, batch=4, n_eval=20, covariance=_coloured(6), n_seeds=2, seed=11)
    kw = dict(algorithm=algorithm, rounds=12, tau=3, alpha=0.05, beta=0.1, seed=[101, 202], sampler="projected")
    res = run(p, mixing_matrix("ring", 5), **kw)
    assert not res.diverged.any() and np.isfinite(res.theta).all() and np.isfinite(res.B).all()
    assert res.B.shape == (2, 5, 6, 2) and res.B.flags.c_contiguous
    assert np.isfinite(res.averages["G"]).all() and np.isfinite(res.final["excess_risk"]).all()
    if algorithm == "centralized":
        assert np.all(res.averages["C"] < 1e-25)
    if algorithm in ("deprl", "dpsgd"):
        sparse = run(p, sp.csr_array(mixing_matrix("ring", 5)), **kw)
        np.testing.assert_allclose(sparse.B, res.B, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_metrics_do_not_depend_on_the_memory_layout(kind):
    """population_metrics (made cheaper for the every-round averages) equals the textbook formulas to 1e-12,
    whichever memory layout B has: C order, transposed (the projected sampler's), worker-major (sparse
    mixing of several seeds), strided; and linear_stationarity on a stack of rounds equals it round by round."""
    from deprl_theory.problems import linear_stationarity, population_loss_and_grads, population_metrics

    S, N, d, r = 3, 5, 6, 2
    p = make_problem(kind, N, dim=d, rank=r, covariance=_coloured(d), n_eval=30, n_seeds=S, seed=2)
    rng = np.random.default_rng(4)
    theta = rng.standard_normal((S, N, r))
    B = np.broadcast_to(p.B0[:, None], (S, N, d, r)) + 1e-3 * rng.standard_normal((S, N, d, r))  # near consensus
    Bbar = B.mean(axis=1)
    dev = (B - Bbar[:, None]).reshape(S, -1)
    want_C = np.einsum("si,si->s", dev, dev) / N
    _, g_theta, g_B = population_loss_and_grads(p, theta, Bbar)
    grad_rep = g_B.mean(axis=1)
    want = {"C": want_C, "R": np.einsum("sdr,sdr->s", grad_rep, grad_rep),
            "H": np.einsum("snr,snr->s", g_theta, g_theta) / N}
    layouts = {
        "C order": B.copy(),
        "transposed": np.swapaxes(np.swapaxes(B, -1, -2).copy(), -1, -2),
        "worker-major": np.moveaxis(np.moveaxis(B, 1, 0).copy(), 0, 1),
        "strided": np.repeat(B, 2, axis=-1)[..., ::2],
    }
    for name, layout in layouts.items():
        got = population_metrics(p, theta, layout)
        for m, v in want.items():
            np.testing.assert_allclose(got[m], v, rtol=1e-12, atol=0, err_msg=f"{m}, {name}")
        np.testing.assert_allclose(got["G"], got["R"] + got["H"] / N, rtol=1e-15)
    if kind == "linear":
        stack_theta = np.stack([theta, 2 * theta])
        stack_B = np.swapaxes(np.stack([np.swapaxes(B, -1, -2), np.swapaxes(B, -1, -2)[:, ::-1]]), -1, -2)
        stacked = linear_stationarity(p, stack_theta, stack_B)
        for t in range(2):
            one = population_metrics(p, stack_theta[t], stack_B[t], ground_truth=False)
            for m in ("R", "H", "C", "G"):
                np.testing.assert_allclose(stacked[m][t], one[m], rtol=1e-12, atol=0)


@pytest.mark.parametrize("sampler", ["direct", "projected"])
@pytest.mark.parametrize("rounds", [40, 150])
def test_a_seeds_time_averages_do_not_depend_on_the_batch(sampler, rounds):
    """The every-round metrics are evaluated in stacks of rounds; a seed's averages are bit for bit the
    same in a batch of 2 or of 7 seeds (the stacking depends on one seed's size only)."""
    p7 = make_problem("linear", 6, dim=5, rank=2, n_seeds=7, seed=0)
    kw = dict(rounds=rounds, tau=2, alpha=0.05, beta=0.05, sampler=sampler)
    big = run(p7, mixing_matrix("ring", 6), seed=list(range(7)), **kw)
    small = run(_seeds(p7, [0, 1]), mixing_matrix("ring", 6), seed=[0, 1], **kw)
    for m in ("R", "H", "C", "G"):
        np.testing.assert_array_equal(big.averages[m][:2], small.averages[m])
        np.testing.assert_array_equal(big.trace[m][:2], small.trace[m])


def test_sampler_is_recorded_and_checked():
    p = make_problem("linear", 3, dim=4, rank=1, n_seeds=1, seed=0)
    assert run(p, None, algorithm="local", rounds=2, alpha=0.1, beta=0.1).settings["sampler"] == "projected"
    res = run(p, None, algorithm="local", rounds=2, alpha=0.1, beta=0.1, sampler="direct")
    assert res.settings["sampler"] == "direct"
    with pytest.raises(ValueError, match="sampler"):
        run(p, None, algorithm="local", rounds=2, alpha=0.1, beta=0.1, sampler="wishart")


def test_normals_per_worker_round():
    """Direct 1260 (d = 20, r = 3) and 3060 (d = 50, r = 5), b = 10, tau = 5; projected: the issue's head
    projections (200 and 300) plus the linear representation step's 2b + d (40 and 70), not b (d + 1)."""
    small = make_problem("linear", 3, dim=20, rank=3, batch=10, seed=0)
    large = make_problem("linear", 5, dim=50, rank=5, batch=10, seed=0)
    assert (normals_per_worker_round(small, 5, "direct"), normals_per_worker_round(small, 5)) == (1260, 240)
    assert (normals_per_worker_round(large, 5, "direct"), normals_per_worker_round(large, 5)) == (3060, 370)
    nonlinear = make_problem("nonlinear", 3, dim=20, rank=3, batch=10, n_eval=5, seed=0)
    assert normals_per_worker_round(nonlinear, 5, "projected") == 5 * 10 * 7 + 10 * 21
    # and that is what the streams draw
    stream = ProjectedDrawStream(minibatch_generators(0, 2), 5, 3, 10, 20, 4, rounds=7, sufficient=True)
    assert stream.per_round == 3 * 240
    stream = ProjectedDrawStream(minibatch_generators(0, 2), 5, 3, 10, 20, 7, rounds=7)
    assert stream.per_round == 3 * (5 * 10 * 7 + 10 * 21)
    with pytest.raises(RuntimeError, match="statistics"):
        ProjectedDrawStream(minibatch_generators(0, 2), 5, 3, 10, 20, 4, sufficient=True).representation()


def test_draw_buffers_are_capped_at_the_run_length():
    """A 5-round run pre-draws 5 rounds, not a whole chunk; the reference loop, capped alike, still replays it."""
    rngs = minibatch_generators(0, 2)
    assert DrawStream(rngs, 6, 4, 10, 20).chunk > 5  # uncapped: this setting's chunk is longer than the run
    capped = DrawStream(rngs, 6, 4, 10, 20, rounds=5)
    capped.next()
    assert capped.chunk == 5 and capped._raw.shape[1] == 5 and capped._eps.shape[1] == 5
    # the projected sampler holds one round, whatever the run's length
    projected = ProjectedDrawStream(rngs, 5, 4, 10, 20, 4, rounds=5)
    H, X, eps = projected.next()
    assert projected.chunk == 1 and (H.shape, X.shape, eps.shape) == ((2, 4, 5, 10, 4), (2, 4, 10, 20), (2, 4, 10))
    # a short run (fewer rounds than the uncapped chunk) still matches the plain loop
    p = make_problem("linear", 4, dim=6, rank=2, batch=4, n_seeds=2, seed=11)
    res = run(p, mixing_matrix("ring", 4), rounds=5, tau=3, alpha=0.05, beta=0.1, seed=[3, 4], sampler="direct")
    theta_ref, B_ref = reference_run(p, mixing_matrix("ring", 4), "deprl", 5, 3, 0.05, 0.1, [3, 4])
    np.testing.assert_allclose(res.theta, theta_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.B, B_ref, rtol=0, atol=1e-10)


def test_the_sampler_is_part_of_every_cache_key(tmp_path):
    """Old direct-sampler results are never mixed with projected ones: the sampler is a cell parameter."""
    from deprl_theory.experiments import TASK_VERSION, cell_params, simulate_cell
    from deprl_theory.sweep import run_sweep

    cells = [cell_params(N=4, K=20, dim=6, rank=2, sampler=s) for s in ("projected", "direct")]
    assert cell_params(N=4, K=20)["sampler"] == "projected"
    sweep = run_sweep(simulate_cell, cells, [0], out=tmp_path, executor="serial", progress=False,
                      task_version=TASK_VERSION)
    assert len(list(sweep.cache_dir.glob("*.json"))) == 2
    g = [r["result"]["averages"]["G"] for r in sweep.records]
    assert g[0] != g[1]
