"""Estimate the constants of the bound template (docs/theory.md, sections 3 and 5) from a problem.

The template needs smoothness constants ``L_theta``, ``L_phi``, ``L_thetaphi``
(A1), gradient-noise variances ``sigma_theta^2``, ``sigma_phi^2`` at the
minibatch size b (A2), the heterogeneity ``delta^2`` (A3) and the initial gap
``Delta = F(start) - F*``.  None of them is a global constant of our
problems (the squared loss of ``x^T B theta`` is not globally smooth in
``(theta, B)`` jointly), so they are *local* estimates: each is evaluated at a
set of points the algorithm visits and the largest value is kept.  The
default points are

* the start (zero heads, shared ``B0``),
* the heads fitted to ``B0`` (where the workers' representation gradients
  first disagree: ``delta^2`` is zero at the start and, for a realizable
  problem, at the solution) and
* the solution (``B*``, the true heads ``w_i*``), which the iterates approach;
  for a misspecified problem (``true_rank > rank``) the truth is not in the
  model class and this point is the best rank-r fit
  (:func:`~deprl_theory.problems.best_rank_fit`), where the workers'
  gradients cancel on average but not one by one: delta^2 > 0 persists there,

and :func:`estimate_constants_along` adds the final iterates of a run.  The
constants are therefore the right size for the trajectory, not certified
upper bounds over the whole space; ``Constants.how`` says how each was got.

Closed forms (linear problem, ``x ~ N(0, Sigma)``, ``v_i = B theta_i - B* w_i*``):

* ``grad_theta F_i = B^T Sigma v_i`` and ``Hess_theta F_i = B^T Sigma B``;
* ``grad_B F_i = Sigma v_i theta_i^T`` and ``Hess_B F_i = (theta_i theta_i^T) kron Sigma``,
  whose norm is ``||theta_i||^2 lambda_max(Sigma)``;
* the mixed block maps ``dB -> dB^T Sigma v_i + B^T Sigma dB theta_i``;
* one-sample gradient variances (Gaussian fourth moments)
  ``Var g_theta = (v^T Sigma v + s^2) tr(B^T Sigma B) + ||B^T Sigma v||^2`` and
  ``Var g_B = ||theta||^2 ((v^T Sigma v + s^2) tr(Sigma) + ||Sigma v||^2)``, divided by b.

The nonlinear problem uses the same definitions with finite-difference
Hessians of the population gradients on the evaluation sample and Monte Carlo
over minibatches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._rng import SeedLike, as_generator
from .problems import Problem, best_rank_fit, labels, optimal_heads, population_loss_and_grads, stochastic_gradients

__all__ = [
    "Constants",
    "CONSTANT_NAMES",
    "estimate_constants",
    "estimate_constants_along",
    "smoothness_closed_form",
    "smoothness_finite_difference",
    "gradient_variance_closed_form",
    "gradient_variance_monte_carlo",
    "heterogeneity",
    "initial_gap",
    "fitted_heads",
]

#: the constants, in the order they are reported
CONSTANT_NAMES = ("L_theta", "L_phi", "L_thetaphi", "sigma_theta2", "sigma_phi2", "delta2", "Delta")


@dataclass(frozen=True)
class Constants:
    """Estimated constants of the bound, per seed and as their maximum over seeds.

    The estimates are stored as measured: the smoothness constants and the
    gap, and the *squared* noise and heterogeneity (``sigma_theta2``,
    ``sigma_phi2``, ``delta2``: variances). The bound is written in the
    paper's symbols, ``sigma_theta``, ``sigma_phi`` and ``delta`` (their
    square roots); :meth:`symbols` gives the values under those names, and
    :func:`~deprl_theory.bound.evaluate` takes this object directly (after the
    table, an example).

    ========================  ==========================  ==========================================
    bound symbol              stored estimate             what
    ========================  ==========================  ==========================================
    ``L_theta``               ``L_theta``                 smoothness in the head theta_i
    ``L_phi``                 ``L_phi``                   smoothness in the representation Phi
    ``L_thetaphi``            ``L_thetaphi``              cross smoothness (theta, Phi)
    ``sigma_theta``           sqrt(``sigma_theta2``)      sd of the stochastic head gradient
    ``sigma_phi``             sqrt(``sigma_phi2``)        sd of the stochastic representation gradient
    ``delta``                 sqrt(``delta2``)            heterogeneity of the workers' Phi-gradients
    ``Delta``                 ``Delta``                   initial gap F(x_0) - F*
    ========================  ==========================  ==========================================

    Example::

        C = estimate_constants(problem)
        evaluate(default_bound(), C, a=1 / 8, alpha=1e-3, beta=1e-2, tau=5, rho=0.5, N=8, K=1000)["total"]

    Attributes
    ----------
    per_seed : dict of str to ndarray (S,)
        Each constant of :data:`CONSTANT_NAMES` for every seed of the problem.
    how : dict of str to str
        One line per constant saying how it was obtained.
    points : tuple of str
        Names of the iterates the constants were evaluated at (max over them).
    extra : dict of str to ndarray (S,)
        Side quantities worth reporting (e.g. the smoothness of the average F).
    """

    per_seed: dict[str, np.ndarray]
    how: dict[str, str]
    points: tuple[str, ...] = ()
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, float]:
        """Max over seeds of every constant (the conservative choice for a bound)."""
        return {k: float(np.max(v)) for k, v in self.per_seed.items()}

    def symbols(self, seed_index: int | None = None) -> dict[str, float]:
        """Values under the names of :data:`deprl_theory.bound.SYMBOLS`.

        The bound is written in ``sigma_theta``, ``sigma_phi`` and ``delta``
        (not their squares); ``seed_index`` picks one seed instead of the max.
        """
        vals = self.values if seed_index is None else {
            k: float(v[seed_index]) for k, v in self.per_seed.items()}
        return {
            "L_theta": vals["L_theta"], "L_phi": vals["L_phi"], "L_thetaphi": vals["L_thetaphi"],
            "sigma_theta": float(np.sqrt(vals["sigma_theta2"])),
            "sigma_phi": float(np.sqrt(vals["sigma_phi2"])),
            "delta": float(np.sqrt(vals["delta2"])), "Delta": vals["Delta"],
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable: max values, per-seed lists, how, points, extras."""
        return {
            "values": self.values,
            "per_seed": {k: np.asarray(v).tolist() for k, v in self.per_seed.items()},
            "how": dict(self.how),
            "points": list(self.points),
            "extra": {k: np.asarray(v).tolist() for k, v in self.extra.items()},
        }


# --------------------------------------------------------------------------- iterates


def _as_worker_B(problem: Problem, B: np.ndarray) -> np.ndarray:
    B = np.asarray(B, dtype=float)
    S, N, d, r = problem.n_seeds, problem.n_workers, problem.dim, problem.rank
    if B.shape == (S, d, r):
        B = np.broadcast_to(B[:, None], (S, N, d, r))
    if B.shape != (S, N, d, r):
        raise ValueError(f"B must have shape ({S}, {d}, {r}) or ({S}, {N}, {d}, {r}), got {B.shape}")
    return np.array(B)


def _check_theta(problem: Problem, theta: np.ndarray) -> np.ndarray:
    theta = np.asarray(theta, dtype=float)
    want = (problem.n_seeds, problem.n_workers, problem.rank)
    if theta.shape != want:
        raise ValueError(f"theta must have shape {want}, got {theta.shape}")
    return theta


def _default_points(problem: Problem) -> list[tuple[str, np.ndarray, np.ndarray]]:
    start = ("start", np.zeros((problem.n_seeds, problem.n_workers, problem.rank)), problem.B0)
    if problem.misspecified:  # no exact solution in the model class: its best rank-r fit instead
        solution = ("best_rank_fit",) + best_rank_fit(problem)
    else:
        solution = ("solution", problem.heads_star, problem.B_star)
    return [start, ("fitted_heads", fitted_heads(problem, problem.B0), problem.B0), solution]


def fitted_heads(problem: Problem, B: np.ndarray) -> np.ndarray:
    """Population-optimal heads for a fixed shared representation ``B`` (S, d, r), per worker.

    The heads adapt within the first rounds (tau head steps per round), so
    ``(fitted_heads(B0), B0)`` is a point the algorithm passes early; unlike the
    start (zero heads) and the solution (zero gradients) the workers'
    representation gradients there differ, which is what ``delta^2`` measures.
    (:func:`deprl_theory.problems.optimal_heads`.)
    """
    return optimal_heads(problem, B)


# --------------------------------------------------------------------------- smoothness


def smoothness_closed_form(problem: Problem, theta: np.ndarray, B: np.ndarray) -> dict[str, np.ndarray]:
    """Exact local smoothness of the linear problem at ``(theta, B)``, per seed.

    Returns ``L_theta = max_i lambda_max(B_i^T Sigma B_i)``,
    ``L_phi = max_i ||theta_i||^2 lambda_max(Sigma)`` (A1 asks every F_i to be
    smooth, so the max over workers), ``L_thetaphi`` = max over workers of
    the operator norm of the mixed Hessian block, and ``L_phi_avg =
    lambda_max(mean_i theta_i theta_i^T) lambda_max(Sigma)``, the smoothness of
    the average F in Phi, which is what the descent step alone needs.
    """
    if problem.kind != "linear":
        raise ValueError("closed-form smoothness exists for the linear problem only")
    theta = _check_theta(problem, theta)
    B = _as_worker_B(problem, B)
    Sigma = problem.covariance
    lam_sigma = float(np.linalg.eigvalsh(Sigma)[-1])
    SB = Sigma @ B  # (S, N, d, r)
    L_theta = np.linalg.eigvalsh(np.swapaxes(B, -1, -2) @ SB)[..., -1].max(axis=1)
    sq = np.einsum("snr,snr->sn", theta, theta)
    L_phi = sq.max(axis=1) * lam_sigma
    outer = np.einsum("snr,snq->srq", theta, theta) / problem.n_workers
    L_phi_avg = np.linalg.eigvalsh(outer)[..., -1] * lam_sigma
    # mixed block as an r x (d r) matrix: d(grad_theta)_k / dB_{j l}
    v = np.einsum("sndr,snr->snd", B, theta) - problem.targets
    Sv = v @ Sigma
    S, N, d, r = B.shape
    eye = np.eye(r)
    M = (eye[None, None, :, None, :] * Sv[:, :, None, :, None]
         + SB[:, :, :, :, None].transpose(0, 1, 3, 2, 4) * theta[:, :, None, None, :])
    M = M.reshape(S, N, r, d * r)
    L_cross = np.linalg.norm(M, ord=2, axis=(-2, -1)).max(axis=1)
    return {"L_theta": L_theta, "L_phi": L_phi, "L_thetaphi": L_cross, "L_phi_avg": L_phi_avg}


def smoothness_finite_difference(
    problem: Problem, theta: np.ndarray, B: np.ndarray, *, h: float = 1e-5
) -> dict[str, np.ndarray]:
    """Local smoothness from a central-difference Hessian of the population gradients.

    Every worker's Hessian in ``(theta_i, vec B_i)`` (size r + d r) is built
    column by column, all seeds and workers at once (worker i's gradient
    depends only on its own parameters), symmetrised, and split into blocks:
    ``L_theta`` / ``L_phi`` are the spectral norms of the diagonal blocks and
    ``L_thetaphi`` that of the off-diagonal block, each maxed over workers.
    ``L_phi_avg`` is the norm of the workers' mean Phi-block (smoothness of F).
    Works for both problems (nonlinear: on the evaluation sample).
    """
    theta = _check_theta(problem, theta)
    B = _as_worker_B(problem, B)
    S, N, d, r = B.shape
    p = r + d * r

    def grad(th: np.ndarray, BB: np.ndarray) -> np.ndarray:
        _, gt, gB = population_loss_and_grads(problem, th, BB)
        return np.concatenate([gt, np.reshape(gB, (S, N, d * r))], axis=-1)

    H = np.empty((S, N, p, p))
    for j in range(p):
        th_p, th_m, B_p, B_m = theta.copy(), theta.copy(), B.copy(), B.copy()
        if j < r:
            th_p[..., j] += h
            th_m[..., j] -= h
        else:
            row, col = divmod(j - r, r)
            B_p[..., row, col] += h
            B_m[..., row, col] -= h
        H[..., j] = (grad(th_p, B_p) - grad(th_m, B_m)) / (2 * h)
    H = 0.5 * (H + np.swapaxes(H, -1, -2))
    Htt, HBB, HtB = H[..., :r, :r], H[..., r:, r:], H[..., :r, r:]
    return {
        "L_theta": np.abs(np.linalg.eigvalsh(Htt)).max(axis=-1).max(axis=1),
        "L_phi": np.abs(np.linalg.eigvalsh(HBB)).max(axis=-1).max(axis=1),
        "L_thetaphi": np.linalg.norm(HtB, ord=2, axis=(-2, -1)).max(axis=1),
        "L_phi_avg": np.abs(np.linalg.eigvalsh(HBB.mean(axis=1))).max(axis=-1),
    }


# --------------------------------------------------------------------------- noise


def gradient_variance_closed_form(problem: Problem, theta: np.ndarray, B: np.ndarray) -> dict[str, np.ndarray]:
    """Exact minibatch gradient variances of the linear problem, max over workers, per seed.

    ``sigma_theta2 = E||g_theta - grad_theta F_i||^2`` and
    ``sigma_phi2 = E||g_B - grad_B F_i||_F^2`` at batch size b (formulas in
    the module docstring).  Also returns the worker means (``*_mean``).
    """
    if problem.kind != "linear":
        raise ValueError("closed-form gradient variance exists for the linear problem only")
    theta = _check_theta(problem, theta)
    B = _as_worker_B(problem, B)
    Sigma = problem.covariance
    v = np.einsum("sndr,snr->snd", B, theta) - problem.targets
    Sv = v @ Sigma
    vSv = np.einsum("snd,snd->sn", v, Sv)
    scale = vSv + problem.noise**2
    BtSB_tr = np.einsum("sndr,de,sner->sn", B, Sigma, B)
    BtSv = np.einsum("sndr,snd->snr", B, Sv)
    var_theta = (scale * BtSB_tr + np.einsum("snr,snr->sn", BtSv, BtSv)) / problem.batch
    sq = np.einsum("snr,snr->sn", theta, theta)
    var_B = sq * (scale * np.trace(Sigma) + np.einsum("snd,snd->sn", Sv, Sv)) / problem.batch
    return {"sigma_theta2": var_theta.max(axis=1), "sigma_phi2": var_B.max(axis=1),
            "sigma_theta2_mean": var_theta.mean(axis=1), "sigma_phi2_mean": var_B.mean(axis=1)}


def gradient_variance_monte_carlo(
    problem: Problem, theta: np.ndarray, B: np.ndarray, *, n_mc: int = 400, seed: SeedLike = None
) -> dict[str, np.ndarray]:
    """Minibatch gradient variances by Monte Carlo over ``n_mc`` fresh minibatches of size b.

    The variance is the unbiased sample variance around the Monte Carlo mean
    (the nonlinear problem's population gradient is only known on the
    evaluation sample, so the sample mean is the consistent centre); max over
    workers, per seed, plus worker means (``*_mean``).
    """
    if isinstance(n_mc, bool) or int(n_mc) != n_mc or n_mc < 2:
        raise ValueError(f"n_mc must be an integer >= 2, got {n_mc!r}")
    theta = _check_theta(problem, theta)
    B = _as_worker_B(problem, B)
    rng = as_generator(seed)
    S, N, d, r = B.shape
    b = problem.batch
    gts, gBs = [], []
    for _ in range(int(n_mc)):
        X = rng.standard_normal((S, N, b, d))
        if problem.cov_chol is not None:
            X = X @ problem.cov_chol.T
        y = labels(problem, X, rng.standard_normal((S, N, b)))
        gt, gB = stochastic_gradients(problem, theta, B, X, y)
        gts.append(gt)
        gBs.append(gB.reshape(S, N, d * r))
    gt, gB = np.stack(gts), np.stack(gBs)
    var_theta = np.sum(np.var(gt, axis=0, ddof=1), axis=-1)
    var_B = np.sum(np.var(gB, axis=0, ddof=1), axis=-1)
    return {"sigma_theta2": var_theta.max(axis=1), "sigma_phi2": var_B.max(axis=1),
            "sigma_theta2_mean": var_theta.mean(axis=1), "sigma_phi2_mean": var_B.mean(axis=1)}


# --------------------------------------------------------------------------- heterogeneity, gap


def heterogeneity(problem: Problem, theta: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``delta^2 = (1/N) sum_i ||grad_Phi F_i - grad_Phi F||^2`` at the network average of B, per seed."""
    theta = _check_theta(problem, theta)
    B = np.asarray(B, dtype=float)
    Bbar = B.mean(axis=1) if B.ndim == 4 else B
    _, _, gB = population_loss_and_grads(problem, theta, Bbar)
    dev = gB - gB.mean(axis=1, keepdims=True)
    return np.einsum("sndr,sndr->s", dev, dev) / problem.n_workers


def initial_gap(problem: Problem) -> np.ndarray:
    """``Delta = F(start) - F*`` per seed: mean excess risk at zero heads and ``B0``.

    ``F*`` is the noise floor ``noise^2 / 2``, reached by the true model (exact
    for the linear problem; the nonlinear excess is measured against the
    noise-free labels of the evaluation sample, so its floor is 0 too). For a
    misspecified problem F* is the best rank-r fit's risk, the noise floor
    plus :attr:`~deprl_theory.problems.Problem.approximation_error` (exact for
    the linear problem); the nonlinear one's is not known, and the noise floor
    stands in for it, which overstates Delta (the conservative side).
    """
    theta0 = np.zeros((problem.n_seeds, problem.n_workers, problem.rank))
    excess, _, _ = population_loss_and_grads(problem, theta0, problem.B0)
    floor = np.nan_to_num(problem.approximation_error, nan=0.0)
    return excess.mean(axis=1) - floor


# --------------------------------------------------------------------------- entry points


def estimate_constants(
    problem: Problem,
    theta: np.ndarray | None = None,
    B: np.ndarray | None = None,
    *,
    n_mc: int = 400,
    seed: SeedLike = None,
    method: str = "auto",
    include_defaults: bool = True,
) -> Constants:
    """Estimate the bound's constants of ``problem``, per seed, as a max over iterates.

    Parameters
    ----------
    problem : Problem
    theta : ndarray (S, N, r), optional
    B : ndarray (S, d, r) or (S, N, d, r), optional
        An extra iterate at which to evaluate (e.g. a run's final iterates).
    n_mc : int
        Minibatches for the Monte Carlo variances (``method="monte_carlo"``
        and the nonlinear problem).
    seed : None, int or Generator
        Randomness of the Monte Carlo minibatches.
    method : {"auto", "closed_form", "monte_carlo"}
        ``auto``: closed forms for the linear problem, finite differences and
        Monte Carlo for the nonlinear one; ``monte_carlo`` forces the
        numerical route (used to test the closed forms).
    include_defaults : bool
        Also evaluate at the start, the heads fitted to B0 and the solution (the best
        rank-r fit for a misspecified problem) (default True).

    Returns
    -------
    Constants

    Examples
    --------
    >>> from deprl_theory.problems import make_problem
    >>> c = estimate_constants(make_problem("linear", 4, dim=6, rank=2, n_seeds=2, seed=0))
    >>> sorted(c.values) == sorted(CONSTANT_NAMES)
    True
    """
    if method not in ("auto", "closed_form", "monte_carlo"):
        raise ValueError(f"method must be 'auto', 'closed_form' or 'monte_carlo', got {method!r}")
    if method == "closed_form" and problem.kind != "linear":
        raise ValueError("closed forms exist for the linear problem only")
    points = _default_points(problem) if include_defaults else []
    if (theta is None) != (B is None):
        raise ValueError("give both theta and B (an iterate), or neither")
    if theta is not None:
        points.append(("given", _check_theta(problem, theta), np.asarray(B, dtype=float)))
    if not points:
        raise ValueError("no iterate to evaluate at: pass theta and B or include_defaults=True")
    closed = problem.kind == "linear" and method != "monte_carlo"
    rng = as_generator(seed)
    acc: dict[str, np.ndarray] = {}
    for _, th, BB in points:
        ok = np.isfinite(th).all(axis=(1, 2)) & np.isfinite(BB).reshape(problem.n_seeds, -1).all(axis=1)
        if closed:
            vals = {**smoothness_closed_form(problem, th, BB), **gradient_variance_closed_form(problem, th, BB)}
        else:
            vals = {**smoothness_finite_difference(problem, th, BB),
                    **gradient_variance_monte_carlo(problem, th, BB, n_mc=n_mc, seed=rng)}
        vals["delta2"] = heterogeneity(problem, th, BB)
        for k, v in vals.items():
            v = np.where(ok, v, -np.inf)  # a diverged seed's final iterate says nothing
            acc[k] = v if k not in acc else np.maximum(acc[k], v)
    acc["Delta"] = initial_gap(problem)
    where = ", ".join(name for name, _, _ in points)
    if closed:
        how = {
            "L_theta": f"max over workers of lambda_max(B_i^T Sigma B_i), exact Hessian; max over iterates ({where})",
            "L_phi": ("max over workers of ||theta_i||^2 lambda_max(Sigma): exact norm of the Phi-Hessian "
                      "(theta_i theta_i^T) kron Sigma of each F_i, as A1 requires of every F_i (the smoothness "
                      f"of the average F, lambda_max(mean theta theta^T) lambda_max(Sigma), is extra L_phi_avg); "
                      f"max over iterates ({where})"),
            "L_thetaphi": ("max over workers of the operator norm of the exact mixed Hessian block; "
                           f"max over iterates ({where})"),
            "sigma_theta2": (f"closed-form Gaussian minibatch variance of the head gradient at batch "
                             f"{problem.batch}, max over workers; max over iterates ({where})"),
            "sigma_phi2": (f"closed-form Gaussian minibatch variance of the representation gradient at batch "
                           f"{problem.batch}, max over workers; max over iterates ({where})"),
        }
    else:
        sample = "on the evaluation sample" if problem.kind == "nonlinear" else "exact gradients"
        how = {
            "L_theta": (f"central-difference Hessian of population gradients ({sample}), theta block norm, "
                        f"max over workers and iterates ({where})"),
            "L_phi": (f"central-difference Hessian ({sample}), Phi block spectral norm, max over workers and "
                      f"iterates ({where})"),
            "L_thetaphi": (f"central-difference Hessian ({sample}), mixed block norm, max over workers and "
                           f"iterates ({where})"),
            "sigma_theta2": (f"Monte Carlo over {n_mc} minibatches of size {problem.batch}, sample variance, "
                             f"max over workers and iterates ({where})"),
            "sigma_phi2": (f"Monte Carlo over {n_mc} minibatches of size {problem.batch}, sample variance, "
                           f"max over workers and iterates ({where})"),
        }
    how["delta2"] = ("(1/N) sum_i ||grad_Phi F_i - grad_Phi F||^2 at the network-average B, exact gradients; "
                     f"max over iterates ({where})")
    how["Delta"] = ("F(start) - F*: mean excess risk at zero heads and B0 above the noise floor"
                    + (" (exact)" if problem.kind == "linear" else " (evaluation sample)"))
    if problem.misspecified:
        how["Delta"] += (" and above the best rank-r fit's approximation error (Eckart-Young, exact)"
                         if problem.kind == "linear" else
                         "; the best rank-r fit's risk is not known, so Delta is overstated by it")
    per_seed = {k: acc[k] for k in CONSTANT_NAMES}
    extra = {k: v for k, v in acc.items() if k not in per_seed}
    return Constants(per_seed=per_seed, how=how, points=tuple(n for n, _, _ in points), extra=extra)


def estimate_constants_along(problem: Problem, run_result: Any, **kwargs: Any) -> Constants:
    """:func:`estimate_constants` at the start, the solution and the final iterates of a run.

    ``run_result`` is an :class:`~deprl_theory.engine.RunResult` of ``problem``
    (its ``theta`` (S, N, r) and ``B`` (S, N, d, r)); diverged seeds' final
    iterates are skipped.
    """
    theta, B = getattr(run_result, "theta", None), getattr(run_result, "B", None)
    if theta is None or B is None:
        raise ValueError("run_result has no final iterates (theta, B)")
    return estimate_constants(problem, theta, B, **kwargs)
