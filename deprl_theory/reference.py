"""Plain-loop transcription of DePRL (docs/theory.md, section 2), used to check the engine.

:func:`reference_run` advances one seed, one worker and one sample at a time
with Python loops and 1-D/2-D numpy only: every line reads like the algorithm
in the paper (tau head steps, one representation step, consensus
``Phi_i <- sum_j W_ij Phi_j``). It replays the very minibatches the vectorized
engine draws (the same :class:`~deprl_theory.engine.DrawStream` per seed), so
the tests can require :func:`deprl_theory.engine.run` to match it to 1e-10,
and ``python -m verification.bench`` times both to report the engine's
speedup. It is deliberately slow; do not use it for experiments.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._rng import SeedLike
from .engine import DrawStream, minibatch_generators
from .problems import ACTIVATIONS, Problem

__all__ = ["reference_run"]


def _features(problem: Problem, B: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phi(x; B) and its derivative for one sample x (d,)."""
    u = B.T @ x
    if problem.kind == "linear":
        return u, np.ones_like(u)
    act, dact = ACTIVATIONS[problem.activation]
    return act(u), dact(u)


def _label(problem: Problem, s: int, i: int, x: np.ndarray, e: float) -> float:
    """Label of sample x for worker i of seed s, from its standard-normal noise draw e."""
    if problem.kind == "linear":
        clean = x @ problem.B_star[s] @ problem.heads_star[s, i]
    else:
        act, _ = ACTIVATIONS[problem.activation]
        clean = problem.heads_star[s, i] @ act(problem.B_star[s].T @ x)
    return clean + problem.noise * e


def _grad_theta(problem, s, i, theta, B, X, eps):
    g = np.zeros_like(theta)
    for j in range(X.shape[0]):
        h, _ = _features(problem, B, X[j])
        g += (theta @ h - _label(problem, s, i, X[j], eps[j])) * h
    return g / X.shape[0]


def _grad_B(problem, s, i, theta, B, X, eps):
    g = np.zeros_like(B)
    for j in range(X.shape[0]):
        h, dh = _features(problem, B, X[j])
        g += (theta @ h - _label(problem, s, i, X[j], eps[j])) * np.outer(X[j], theta * dh)
    return g / X.shape[0]


def reference_run(
    problem: Problem,
    W: np.ndarray | None,
    algorithm: str,
    rounds: int,
    tau: int,
    alpha: float,
    beta: float,
    seeds: SeedLike | Sequence[SeedLike],
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``algorithm`` with plain loops; return the final heads (S, N, r) and representations (S, N, d, r).

    Parameters
    ----------
    problem : Problem
    W : ndarray (N, N) or None
        Dense mixing matrix (``deprl``, ``dpsgd``); ignored by ``local`` and
        ``centralized`` (exact average).
    algorithm : {"deprl", "dpsgd", "local", "centralized"}
    rounds, tau : int
        Rounds K and local head steps per round.
    alpha, beta : float
        Constant head and representation steps.
    seeds : seed or one seed per batch entry
        The same minibatch seeds as given to :func:`deprl_theory.engine.run`.
    """
    S, N, d, r = problem.n_seeds, problem.n_workers, problem.dim, problem.rank
    # the engine's chunks of pre-drawn rounds, capped at the run's length as the engine caps them
    stream = DrawStream(minibatch_generators(seeds, S), tau + 1, N, problem.batch, d, problem.cov_chol,
                        rounds=rounds)
    thetas = [[np.zeros(r) for _ in range(N)] for _ in range(S)]
    Bs = [[problem.B0[s].copy() for _ in range(N)] for s in range(S)]
    for _ in range(rounds):
        X, eps = (a.copy() for a in stream.next())
        for s in range(S):
            for i in range(N):
                for t in range(tau):
                    thetas[s][i] = thetas[s][i] - alpha * _grad_theta(
                        problem, s, i, thetas[s][i], Bs[s][i], X[s, t, i], eps[s, t, i]
                    )
                Bs[s][i] = Bs[s][i] - beta * _grad_B(problem, s, i, thetas[s][i], Bs[s][i], X[s, tau, i],
                                                     eps[s, tau, i])
            if algorithm == "local":
                continue
            M = np.full((N, N), 1.0 / N) if algorithm == "centralized" else W
            Bs[s] = [sum(M[i, j] * Bs[s][j] for j in range(N)) for i in range(N)]
            if algorithm == "dpsgd":
                thetas[s] = [sum(M[i, j] * thetas[s][j] for j in range(N)) for i in range(N)]
    return np.array(thetas), np.array(Bs)
