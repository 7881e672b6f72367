"""Vectorized DePRL and its baselines: S seeds x N workers advance in one call.

One round k of DePRL (THEORY section 2), for every worker i at once:

1. head: ``tau`` SGD steps on theta_i with Phi_i frozen, step ``alpha``;
2. representation: one SGD step on Phi_i with the new head, step ``beta``;
3. consensus: Phi <- W Phi (rows are workers).

The baselines go through the same code path and differ only in what is
mixed and with which matrix:

=============  =================================  =========================
algorithm      mixed                              matrix
=============  =================================  =========================
``deprl``      representation only                W (the graph's)
``dpsgd``      representation *and* head (one     W
               shared model, no personal head;
               same local steps as deprl)
``local``      nothing                            I (no communication)
``centralized`` representation only               11^T / N (exact average)
=============  =================================  =========================

Randomness: seed j of a batch owns one Generator; its minibatches are drawn
in chunks of rounds (the chunk length depends only on the per-seed shapes), so
seed j's numbers never depend on the other seeds in the batch, and the
per-worker reference loop (:mod:`deprl_theory.reference`) replays the very
same draws. Drawing the minibatches' normals is most of a run's time, so these
streams use numpy's SFC64 bit generator (about 13 % faster normals than the
default PCG64 here; equally reproducible: a seed gives the same numbers on
every platform), see :func:`minibatch_generators`. Problem instances and
graphs keep :func:`numpy.random.default_rng`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ._rng import SeedLike
from .problems import (Problem, head_gradient, minibatch_features, population_metrics, representation_gradient,
                       seed_generators)

__all__ = [
    "ALGORITHMS",
    "METRICS",
    "parse_head_rule",
    "StepSizes",
    "step_sizes",
    "theory_step_sizes",
    "DrawStream",
    "minibatch_generators",
    "RunResult",
    "run",
    "consensus",
]

ALGORITHMS = ("deprl", "dpsgd", "local", "centralized")
METRICS = ("R", "H", "C", "G")

# Chunks of pre-drawn minibatches are capped at this many floats per seed.
_CHUNK_FLOATS = 2_000_000


@dataclass(frozen=True)
class StepSizes:
    """Head step ``alpha`` and representation step ``beta`` of one run, with their rule."""

    alpha: float
    beta: float
    rule: str
    capped: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "rule": self.rule, "capped": list(self.capped)}


def parse_head_rule(head_rule: str | float, n_workers: int) -> float:
    """The ratio a = alpha tau / beta from a rule: "1/N", "1/sqrt(N)", or a positive number.

    Raises
    ------
    ValueError
        For anything else, naming the rule.
    """
    if isinstance(head_rule, str):
        rule = head_rule.strip().replace(" ", "")
        if rule == "1/N":
            return 1.0 / n_workers
        if rule == "1/sqrt(N)":
            return 1.0 / math.sqrt(n_workers)
        try:
            value = float(rule)
        except ValueError:
            raise ValueError(
                f"unknown head rule {head_rule!r}; use '1/N', '1/sqrt(N)' or a number a > 0"
            ) from None
    else:
        value = float(head_rule)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"head rule a must be a positive number, got {head_rule!r}")
    return value


def theory_step_sizes(
    n_workers: int,
    rounds: int,
    tau: int = 1,
    *,
    c: float = 0.5,
    head_rule: str | float = "1/N",
    head_step: float | None = None,
    beta_max: float = 0.5,
    alpha_max: float = 0.5,
) -> StepSizes:
    """Step sizes of the theory (THEORY sections 5-6).

    ``beta = c sqrt(N / K)``; ``alpha = a beta / tau`` with ``a`` from
    ``head_rule`` ("1/N" by default), or a fixed ``head_step`` alpha if given.
    Each step is capped by its stability limit; a binding cap is reported in
    ``StepSizes.capped`` and in the rule string.
    """
    if rounds < 1:
        raise ValueError(f"rounds K must be >= 1, got {rounds}")
    if not c > 0:
        raise ValueError(f"c must be positive, got {c}")
    beta = c * math.sqrt(n_workers / rounds)
    if head_step is not None:
        if not head_step > 0:
            raise ValueError(f"head step must be positive, got {head_step}")
        alpha = float(head_step)
        rule = f"beta = {c:g} sqrt(N/K); alpha = {alpha:g} (fixed)"
    else:
        a = parse_head_rule(head_rule, n_workers)
        alpha = a * beta / tau
        rule = f"beta = {c:g} sqrt(N/K); alpha = a beta / tau with a = {head_rule}"
    capped = []
    if beta > beta_max:
        beta, capped = beta_max, capped + [f"beta capped at {beta_max:g}"]
    if alpha > alpha_max:
        alpha, capped = alpha_max, capped + [f"alpha capped at {alpha_max:g}"]
    if capped:
        rule += " (" + "; ".join(capped) + ")"
    return StepSizes(alpha=float(alpha), beta=float(beta), rule=rule, capped=tuple(capped))


def step_sizes(alpha: float, beta: float) -> StepSizes:
    """Constant step sizes."""
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"step size {name} must be a finite number >= 0, got {value}")
    return StepSizes(alpha=float(alpha), beta=float(beta), rule=f"constant alpha = {alpha:g}, beta = {beta:g}")


#: bit generator of the minibatch streams (see the module docstring)
MINIBATCH_BIT_GENERATOR = np.random.SFC64


def minibatch_generators(seed: SeedLike | Sequence[SeedLike], n_seeds: int) -> list[np.random.Generator]:
    """The minibatch Generators of a run: one per seed, derived as ``(seed, "run", j)``.

    Streams built here use :data:`MINIBATCH_BIT_GENERATOR`; a Generator passed
    in is used as it is (or spawned, for a single Generator).
    """
    return seed_generators(seed, n_seeds, "run", bit_generator=MINIBATCH_BIT_GENERATOR)


class DrawStream:
    """Per-seed minibatch draws, replayable by a reference implementation.

    ``next()`` returns the inputs ``X`` (S, steps, N, b, d) and standard-normal
    label noise ``eps`` (S, steps, N, b) of one round, ``steps = tau + 1``
    (tau head minibatches, then the representation minibatch).
    """

    def __init__(self, rngs: Sequence[np.random.Generator], steps: int, n_workers: int, batch: int, dim: int,
                 cov_chol: np.ndarray | None = None):
        self.rngs = list(rngs)
        self.shape = (steps, n_workers, batch, dim)
        per_round = steps * n_workers * batch * (dim + 1)
        self.chunk = max(1, _CHUNK_FLOATS // per_round)
        self.cov_chol = cov_chol
        self._raw = self._X = self._eps = None
        self._pos = self.chunk

    def _refill(self) -> None:
        if self._raw is None:  # allocate once: fresh pages on every refill cost as much as the draws
            c = self.chunk
            steps, n, b, d = self.shape
            self._raw = np.empty((len(self.rngs), c, steps, n, b, d))
            self._eps = np.empty((len(self.rngs), c, steps, n, b))
        for s, rng in enumerate(self.rngs):  # once per chunk of rounds, not per round
            rng.standard_normal(out=self._raw[s])
            rng.standard_normal(out=self._eps[s])
        self._X = self._raw if self.cov_chol is None else self._raw @ self.cov_chol.T
        self._pos = 0

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pos >= self.chunk:
            self._refill()
        k = self._pos
        self._pos += 1
        return self._X[:, k], self._eps[:, k]


def consensus(W, Phi: np.ndarray) -> np.ndarray:
    """Mix ``Phi`` (S, N, ...) over the worker axis: Phi_i <- sum_j W_ij Phi_j."""
    S, N = Phi.shape[:2]
    if sp.issparse(W):
        flat = np.moveaxis(Phi, 1, 0).reshape(N, -1)
        return np.moveaxis((W @ flat).reshape((N, S) + Phi.shape[2:]), 0, 1)
    flat = Phi.reshape(S, N, -1)
    return (W @ flat).reshape(Phi.shape)


@dataclass
class RunResult:
    """Everything one run measured.

    Attributes
    ----------
    rounds : int
        Rounds K.
    trace : dict
        ``trace["round"]`` (T,) evaluation rounds; ``trace[m]`` (S, T) for every
        metric m of :func:`~deprl_theory.problems.population_metrics`.
    averages : dict
        Time averages (1/K) sum_{k<K} m_k per seed (S,), for m in R, H, C, G,
        over the rounds sampled every ``average_every`` rounds.
    final : dict
        Metrics at round K, per seed (S,).
    diverged : ndarray (S,) bool;  diverged_round : ndarray (S,) int (-1 if not)
    steps : StepSizes
    theta, B : ndarray
        Final heads (S, N, r) and representations (S, N, d, r).
    """

    algorithm: str
    rounds: int
    tau: int
    trace: dict
    averages: dict
    final: dict
    diverged: np.ndarray
    diverged_round: np.ndarray
    steps: StepSizes
    average_every: int
    seconds: float
    theta: np.ndarray | None = None
    B: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """A JSON-serialisable digest: per-seed finals and averages, divergence."""
        return {
            "algorithm": self.algorithm,
            "rounds": self.rounds,
            "tau": self.tau,
            "steps": self.steps.as_dict(),
            "average_every": self.average_every,
            "final": {k: v.tolist() for k, v in self.final.items()},
            "averages": {k: v.tolist() for k, v in self.averages.items()},
            "diverged": self.diverged.tolist(),
            "diverged_round": self.diverged_round.tolist(),
            "seconds": self.seconds,
        }


def _mixing_for(algorithm: str, W, n_workers: int):
    if algorithm == "local":
        return None
    if algorithm == "centralized":
        return "mean"
    if W is None:
        raise ValueError(f"algorithm {algorithm!r} needs a mixing matrix W")
    shape = W.shape
    if shape != (n_workers, n_workers):
        raise ValueError(f"mixing matrix has shape {shape}, but the problem has {n_workers} workers")
    return W if sp.issparse(W) else np.asarray(W, dtype=float)


def run(
    problem: Problem,
    W=None,
    *,
    algorithm: str = "deprl",
    rounds: int,
    tau: int = 1,
    steps: StepSizes | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    eval_every: int | None = None,
    average_every: int | None = None,
    blowup: float = 1e6,
    seed: SeedLike | Sequence[SeedLike] = None,
    validate: bool = True,
) -> RunResult:
    """Run ``algorithm`` for ``rounds`` rounds on every seed and worker of ``problem``.

    Parameters
    ----------
    problem : Problem
        Batch of S instances with N workers (see :func:`make_problem`).
    W : ndarray or scipy.sparse matrix (N, N), optional
        Mixing matrix; needed by ``deprl`` and ``dpsgd``, ignored by ``local``
        (identity) and ``centralized`` (exact averaging). Checked with
        :func:`check_mixing` unless ``validate=False``.
    algorithm : {"deprl", "dpsgd", "local", "centralized"}
    rounds : int
        Number of rounds K.
    tau : int
        Local head steps per round.
    steps : StepSizes, optional
        Step sizes (e.g. from :func:`theory_step_sizes`); or give ``alpha`` and
        ``beta`` as numbers.
    eval_every : int, optional
        Record all metrics every this many rounds (default: about 50 points).
    average_every : int, optional
        Sample the time averages every this many rounds (default 1 for the
        linear problem, whose metrics are exact and cheap; about 200 samples
        for the nonlinear one).
    blowup : float
        A seed whose parameters exceed this norm (or turn non-finite) is
        flagged as diverged, frozen at NaN, and the others go on.
    seed : None, int, Generator, or one seed per batch entry
        Randomness of the minibatches (independent of the problem's seed).

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if isinstance(tau, bool) or int(tau) != tau or tau < 1:
        raise ValueError(f"tau must be a positive integer, got {tau!r}")
    rounds, tau = int(rounds), int(tau)
    if steps is None:
        if alpha is None or beta is None:
            raise ValueError("give step sizes: steps=StepSizes(...) or both alpha and beta")
        steps = step_sizes(alpha, beta)
    S, N, d, r = problem.n_seeds, problem.n_workers, problem.dim, problem.rank
    mix = _mixing_for(algorithm, W, N)
    if validate and mix is not None and not isinstance(mix, str):
        from .graphs import check_mixing

        check_mixing(mix)
    if eval_every is None:
        eval_every = max(1, rounds // 50)
    if average_every is None:
        average_every = 1 if problem.kind == "linear" else max(1, rounds // 200)
    rngs = minibatch_generators(seed, S)
    stream = DrawStream(rngs, tau + 1, N, problem.batch, d, problem.cov_chol)

    theta = np.zeros((S, N, r))
    B = np.broadcast_to(problem.B0[:, None], (S, N, d, r)).copy()
    alpha_, beta_ = steps.alpha, steps.beta
    gossip_heads = algorithm == "dpsgd"

    eval_rounds = sorted(set(range(0, rounds, eval_every)) | {rounds})
    trace: dict[str, list] = {"round": eval_rounds}
    trace_vals: dict[str, np.ndarray] = {}
    sums = {m: np.zeros(S) for m in METRICS}
    n_avg = 0
    diverged = np.zeros(S, dtype=bool)
    diverged_round = np.full(S, -1)
    next_eval = 0

    def record(k: int, vals: dict) -> None:
        for m, v in vals.items():
            if m not in trace_vals:
                trace_vals[m] = np.full((S, len(eval_rounds)), np.nan)
            trace_vals[m][:, next_eval] = v

    with np.errstate(all="ignore"):  # a diverging seed must not stop the others
        for k in range(rounds + 1):
            want_eval = k == eval_rounds[next_eval]
            want_avg = k < rounds and k % average_every == 0
            if want_eval or want_avg:
                vals = population_metrics(problem, theta, B, ground_truth=want_eval)
                if want_avg:
                    for m in METRICS:
                        sums[m] += vals[m]
                    n_avg += 1
                if want_eval:
                    record(k, vals)
                    next_eval += 1
            if k == rounds:
                break
            X, eps = stream.next()
            # B is the same for the whole round (frozen in 1., used as is in 2.):
            # featurize all tau + 1 minibatches in one product
            feats, pre, y = minibatch_features(problem, B, X, eps)
            # 1. head: tau SGD steps with the representation frozen
            for t in range(tau):
                theta = theta - alpha_ * head_gradient(feats[:, t], theta, y[:, t])
            # 2. representation: one SGD step with the new head
            B = B - beta_ * representation_gradient(problem, theta, X[:, tau], feats[:, tau], pre[:, tau], y[:, tau])
            # 3. consensus
            if isinstance(mix, str):
                B = np.broadcast_to(B.mean(axis=1, keepdims=True), B.shape).copy()
            elif mix is not None:
                B = consensus(mix, B)
                if gossip_heads:
                    theta = consensus(mix, theta)
            # divergence: non-finite or blown-up parameters freeze that seed at NaN
            size = np.max(np.abs(B), axis=(1, 2, 3)) + np.max(np.abs(theta), axis=(1, 2))
            bad = ~(size < blowup) & ~diverged
            if bad.any():
                diverged |= bad
                diverged_round[bad] = k + 1
                B[bad] = np.nan
                theta[bad] = np.nan

    averages = {m: sums[m] / max(n_avg, 1) for m in METRICS}
    for m in averages:
        averages[m][diverged] = np.nan
    trace.update(trace_vals)
    final = {m: v[:, -1].copy() for m, v in trace_vals.items()}
    return RunResult(
        algorithm=algorithm, rounds=rounds, tau=tau, trace=trace, averages=averages, final=final,
        diverged=diverged, diverged_round=diverged_round, steps=steps, average_every=average_every,
        seconds=time.perf_counter() - t0, theta=theta, B=B,
        settings={"problem": problem.settings, "n_workers": N, "n_seeds": S},
    )
