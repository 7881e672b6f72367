"""Vectorized DePRL and its baselines: S seeds x N workers advance in one call.

One round k of DePRL (docs/theory.md, section 2), for every worker i at once:

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

Minibatches come from one of two samplers (``run(..., sampler=...)``), the
same distribution of every iterate from different random numbers:

* ``"direct"`` draws every input x ~ N(0, Sigma) of
  every step, (tau + 1) b (d + 1) normals per worker and round
  (:class:`DrawStream`); the per-worker reference loop
  (:mod:`deprl_theory.reference`) replays these very draws, so the tests can
  require the engine to match it to 1e-10;
* ``"projected"`` draws, for the head steps, only the projections of x that
  they need (z = Phi_i^T x and the label, q = r + 1 or 2r + 1 numbers per
  sample, see :func:`~deprl_theory.problems.projection_factor`). For the
  representation step the linear problem draws the step's sufficient
  statistics, 2b + d normals (see
  :meth:`_ProjectedRound._linear_representation`); the nonlinear one draws
  the whole x. In all, tau b q + 2b + d normals (linear) or
  tau b q + b (d + 1) (nonlinear) (:class:`ProjectedDrawStream`; 240 instead
  of 1260 at d = 20, r = 3, b = 10, tau = 5). Exact in distribution, not an
  approximation, and the default.

Randomness: seed j of a batch owns one Generator, from which its draws come in
an order that depends only on the per-seed shapes (and, for the direct
sampler's chunks of rounds, on the run's length), so seed j's numbers never
depend on the other seeds in the batch and a seed gives the same numbers on
every run. Drawing the minibatches' normals is most of a run's time, so these
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
from .problems import (
    Problem,
    head_gradient,
    linear_stationarity,
    minibatch_features,
    population_metrics,
    projected_minibatch,
    projection_factor,
    projection_width,
    representation_gradient,
    seed_generators,
)

__all__ = [
    "ALGORITHMS",
    "METRICS",
    "parse_head_rule",
    "StepSizes",
    "step_sizes",
    "theory_step_sizes",
    "SAMPLERS",
    "DrawStream",
    "ProjectedDrawStream",
    "draw_stream",
    "normals_per_worker_round",
    "minibatch_generators",
    "RunResult",
    "run",
    "consensus",
]

ALGORITHMS = ("deprl", "dpsgd", "local", "centralized")
#: minibatch samplers: "direct" draws every input x (replayed by the reference loop), "projected"
#: draws only the projections of the head steps' inputs (exact in distribution, far fewer normals)
SAMPLERS = ("direct", "projected")
METRICS = ("R", "H", "C", "G")

# Chunks of pre-drawn minibatches are capped at this many floats per seed.
_CHUNK_FLOATS = 2_000_000
# The linear problem's per-round metrics are evaluated for stacks of rounds: a stack holds at most
# this many bytes of one seed's states (per seed, so that a seed's time averages, summed stack by
# stack, never depend on the other seeds of the batch), and stacks of fewer than _MIN_METRIC_STACK
# rounds are not worth the copies.
_METRIC_STACK_BYTES_PER_SEED = 512_000
_MIN_METRIC_STACK = 4


@dataclass(frozen=True)
class StepSizes:
    """Head step ``alpha`` and representation step ``beta`` of one run, with their rule."""

    alpha: float
    beta: float
    rule: str
    capped: tuple[str, ...] = ()
    tau: int | None = None  # the local head steps the rule assumed (alpha = a beta / tau); None: no assumption
    n_workers: int | None = None  # the N the rule was computed for (beta = c sqrt(N/K), a = 1/N); None: none
    rounds: int | None = None  # the horizon K the rule was computed for; None: constant steps

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "rule": self.rule, "capped": list(self.capped),
                "tau": self.tau}


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


#: representation step rules: the theorem's beta = c sqrt(N/K), and the N-free c/sqrt(K) (a known sublinear case)
BETA_RULES = ("c*sqrt(N/K)", "c/sqrt(K)")


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
    beta_rule: str = "c*sqrt(N/K)",
) -> StepSizes:
    """Step sizes of the theory (docs/theory.md, sections 5-6).

    ``beta = c sqrt(N / K)`` (``beta_rule="c*sqrt(N/K)"``, the theorem's step),
    or the N-free ``beta = c / sqrt(K)`` (``beta_rule="c/sqrt(K)"``, a known
    sublinear case: the optimisation term then does not shrink with N);
    ``alpha = a beta / tau`` with ``a`` from ``head_rule`` ("1/N" by default),
    or a fixed ``head_step`` alpha if given. Each step is capped by its
    stability limit; a binding cap is reported in ``StepSizes.capped`` and in
    the rule string.
    """
    if rounds < 1:
        raise ValueError(f"rounds K must be >= 1, got {rounds}")
    if not c > 0:
        raise ValueError(f"c must be positive, got {c}")
    if beta_rule not in BETA_RULES:
        raise ValueError(f"unknown beta rule {beta_rule!r}; use one of {', '.join(BETA_RULES)}")
    if beta_rule == "c/sqrt(K)":
        beta, beta_text = c / math.sqrt(rounds), f"beta = {c:g}/sqrt(K)"
    else:
        beta, beta_text = c * math.sqrt(n_workers / rounds), f"beta = {c:g} sqrt(N/K)"
    if head_step is not None:
        if not head_step > 0:
            raise ValueError(f"head step must be positive, got {head_step}")
        alpha = float(head_step)
        rule = f"{beta_text}; alpha = {alpha:g} (fixed)"
    else:
        a = parse_head_rule(head_rule, n_workers)
        alpha = a * beta / tau
        rule = f"{beta_text}; alpha = a beta / tau with a = {head_rule}"
    capped = []
    if beta > beta_max:
        beta, capped = beta_max, capped + [f"beta capped at {beta_max:g}"]
    if alpha > alpha_max:
        alpha, capped = alpha_max, capped + [f"alpha capped at {alpha_max:g}"]
    if capped:
        rule += " (" + "; ".join(capped) + ")"
    return StepSizes(alpha=float(alpha), beta=float(beta), rule=rule, capped=tuple(capped),
                     tau=None if head_step is not None else int(tau), n_workers=int(n_workers), rounds=int(rounds))


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


def _chunk_rounds(per_round: int, rounds: int | None) -> int:
    """Rounds per chunk of pre-drawn minibatches: at most ``_CHUNK_FLOATS`` floats per seed, and never
    more rounds than the run has (``rounds``; None: not known, no cap), so that a short run does not
    allocate and draw a whole chunk it will not use."""
    chunk = max(1, _CHUNK_FLOATS // per_round)
    return chunk if rounds is None else max(1, min(chunk, int(rounds)))


class DrawStream:
    """Per-seed minibatch draws of the direct sampler, replayable by a reference implementation.

    ``next()`` returns the inputs ``X`` (S, steps, N, b, d) and standard-normal
    label noise ``eps`` (S, steps, N, b) of one round, ``steps = tau + 1``
    (tau head minibatches, then the representation minibatch). Per seed and
    chunk of rounds: the inputs' normals of every round of the chunk, then the
    label noise. The chunk length depends only on the per-seed shapes and on
    ``rounds``, the run's length, which caps it (None: no cap).
    """

    def __init__(self, rngs: Sequence[np.random.Generator], steps: int, n_workers: int, batch: int, dim: int,
                 cov_chol: np.ndarray | None = None, *, rounds: int | None = None):
        self.rngs = list(rngs)
        self.shape = (steps, n_workers, batch, dim)
        self.per_round = steps * n_workers * batch * (dim + 1)
        self.chunk = _chunk_rounds(self.per_round, rounds)
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
        """The next round's ``X`` and ``eps``."""
        if self._pos >= self.chunk:
            self._refill()
        k = self._pos
        self._pos += 1
        return self._X[:, k], self._eps[:, k]


class ProjectedDrawStream:
    """Per-seed minibatch draws of the projected sampler, one round at a time.

    A round's draws come in two calls, in this order:

    * :meth:`heads` returns ``H`` (S, N, tau, b, q): standard normals of the
      tau head minibatches, q per sample
      (:func:`~deprl_theory.problems.projection_width`), which
      :func:`~deprl_theory.problems.projection_factor` turns into the
      projections the head steps need; worker-major, so that one worker's
      tau b samples are one matrix;
    * :meth:`representation` returns ``X`` (S, N, b, d), the inputs of the
      representation minibatch (coloured by ``cov_chol``), and ``eps``
      (S, N, b), their standard-normal label noise.

    With ``sufficient=True`` (the linear problem) the representation step is
    drawn through its sufficient statistics instead: :meth:`statistics`
    returns ``a`` (S, N, b), ``eps`` (S, N, b) and ``n`` (S, N, d), 2b + d
    normals in place of the b (d + 1) of X and eps (see
    :meth:`_ProjectedRound._linear_representation`).

    (:meth:`next` makes both calls.) Per seed and round the numbers are drawn
    in that order: H, then X's normals, then eps (or, with ``sufficient``, H,
    then a, eps and n in one call). Drawing round by round, and
    the head normals apart from the representation step's, keeps what a step
    works on in cache (measured faster here than chunks of rounds, and no
    memory to speak of), and makes a run's first K rounds the same whatever
    its length. The buffers are reused: a round's arrays are valid until the
    next call. ``rounds`` is accepted for symmetry with :class:`DrawStream`.
    """

    #: rounds drawn at once (the bench times whole chunks)
    chunk = 1

    def __init__(self, rngs: Sequence[np.random.Generator], tau: int, n_workers: int, batch: int, dim: int,
                 width: int, cov_chol: np.ndarray | None = None, *, rounds: int | None = None,
                 sufficient: bool = False):
        self.rngs = list(rngs)
        S = len(self.rngs)
        self.cov_chol = cov_chol
        self.sufficient = bool(sufficient)
        self.batch = batch
        self._H = np.empty((S, n_workers, tau, batch, width))
        if self.sufficient:
            self._stats = np.empty((S, n_workers, 2 * batch + dim))
            rep = self._stats[0].size
        else:
            self._raw = np.empty((S, n_workers, batch, dim))
            self._X = self._raw if cov_chol is None else np.empty_like(self._raw)
            self._eps = np.empty((S, n_workers, batch))
            rep = self._raw[0].size + self._eps[0].size
        self.per_round = self._H[0].size + rep

    def heads(self) -> np.ndarray:
        """The next round's head normals ``H`` (S, N, tau, b, q)."""
        for s, rng in enumerate(self.rngs):
            rng.standard_normal(out=self._H[s])
        return self._H

    def statistics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The round's representation-step normals with ``sufficient``: ``a``, ``eps`` (S, N, b), ``n`` (S, N, d)."""
        if not self.sufficient:
            raise RuntimeError("this stream draws the representation minibatch's inputs: use representation()")
        for s, rng in enumerate(self.rngs):
            rng.standard_normal(out=self._stats[s])
        b = self.batch
        return self._stats[..., :b], self._stats[..., b:2 * b], self._stats[..., 2 * b:]

    def representation(self) -> tuple[np.ndarray, np.ndarray]:
        """The round's representation minibatch: inputs ``X`` (S, N, b, d) and label noise ``eps`` (S, N, b)."""
        if self.sufficient:
            raise RuntimeError("this stream draws the representation step's sufficient statistics: use statistics()")
        for s, rng in enumerate(self.rngs):
            rng.standard_normal(out=self._raw[s])
            rng.standard_normal(out=self._eps[s])
        if self.cov_chol is not None:
            np.matmul(self._raw, self.cov_chol.T, out=self._X)
        return self._X, self._eps

    def next(self) -> tuple[np.ndarray, ...]:
        """One whole round: ``H``, ``X``, ``eps`` (with ``sufficient``: ``H``, ``a``, ``eps``, ``n``)."""
        H = self.heads()
        return (H, *self.statistics()) if self.sufficient else (H, *self.representation())


def draw_stream(problem: Problem, sampler: str, tau: int, seed: SeedLike | Sequence[SeedLike],
                rounds: int | None) -> DrawStream | ProjectedDrawStream:
    """The minibatch stream a run of ``problem`` with ``sampler`` draws from (the bench times the same)."""
    rngs = minibatch_generators(seed, problem.n_seeds)
    N, b, d = problem.n_workers, problem.batch, problem.dim
    if sampler == "direct":
        return DrawStream(rngs, tau + 1, N, b, d, problem.cov_chol, rounds=rounds)
    if sampler == "projected":
        return ProjectedDrawStream(rngs, tau, N, b, d, projection_width(problem), problem.cov_chol, rounds=rounds,
                                   sufficient=problem.kind == "linear")
    raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")


def normals_per_worker_round(problem: Problem, tau: int, sampler: str = "projected") -> int:
    """Standard normals one worker draws per round: the sampler's whole cost in random numbers.

    ``direct``: (tau + 1) b (d + 1), every minibatch's inputs and noise.
    ``projected``: tau b q, q = projection_width (r + 1 linear, 2r + 1 nonlinear), plus the
    representation step's 2b + d (linear: its sufficient statistics) or b (d + 1) (nonlinear).

    Examples
    --------
    >>> from deprl_theory.problems import make_problem
    >>> p = make_problem("linear", 4, dim=20, rank=3, batch=10, seed=0)
    >>> normals_per_worker_round(p, 5, "direct"), normals_per_worker_round(p, 5, "projected")
    (1260, 240)
    """
    b, d = problem.batch, problem.dim
    if sampler == "direct":
        return (tau + 1) * b * (d + 1)
    if sampler == "projected":
        rep = 2 * b + d if problem.kind == "linear" else b * (d + 1)
        return tau * b * projection_width(problem) + rep
    raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")


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


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _transposed(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _direct_round(problem: Problem, stream: DrawStream, theta: np.ndarray, B: np.ndarray, alpha: float,
                  beta: float, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """Head and representation steps of one round on directly drawn minibatches (the reference loop's)."""
    X, eps = stream.next()
    # B is the same for the whole round (frozen in the head steps, used as is in the
    # representation step): featurize all tau + 1 minibatches in one product
    feats, pre, y = minibatch_features(problem, B, X, eps)
    for t in range(tau):
        theta = theta - alpha * head_gradient(feats[:, t], theta, y[:, t])
    B = B - beta * representation_gradient(problem, theta, X[:, tau], feats[:, tau], pre[:, tau], y[:, tau])
    return theta, B


class _ProjectedRound:
    """Head and representation steps of one round with the projected sampler.

    The head steps see the inputs only through projections (see
    :func:`~deprl_theory.problems.projection_factor`), drawn from q normals
    per sample with one factor per worker and round (B is frozen). The
    linear representation step is drawn through its sufficient statistics
    (:meth:`_linear_representation`); the nonlinear one draws the whole input.

    Works on the representations transposed, ``Bt`` (S, N, r, d): the
    representation step's rank-one update theta g^T then runs along d, and
    numpy's elementwise loops are far faster along a long axis than along r.
    Work buffers are allocated once per run: fresh pages every round would
    cost as much as the arithmetic.
    """

    def __init__(self, problem: Problem, stream: ProjectedDrawStream, tau: int, alpha: float, beta: float):
        self.problem, self.stream, self.alpha, self.beta = problem, stream, alpha, beta
        S, N, b, r = problem.n_seeds, problem.n_workers, problem.batch, problem.rank
        self.linear = problem.kind == "linear"
        if self.linear:
            q = r + 1
            self._Ht = np.empty((S, N, q, tau * b))
            self._Zt = np.empty((S, N, r, tau * b))
            self._ZD = np.empty((S, N, tau * b, q))
            self._K = np.empty((S, N, tau, r, q))
            self._Ksoa = np.empty((tau, r, q, S * N))
            self._phi = np.full((q, S * N), -1.0)  # [theta; -1], see _linear_heads

    def _linear_heads(self, L: np.ndarray, H: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The tau head steps of the linear problem, through q x q sufficient statistics.

        With one step's normals E (b, q) and the factor L, the minibatch is
        [Z y] = E L^T, and the step theta <- theta - (alpha/b) Z^T (Z theta - y)
        is the affine map theta <- theta - K [theta; -1] with
        K = (alpha/b) Z^T [Z, y] = (alpha/b) (L_A E_z^T) (E L^T).
        Both factors come from one product per worker over its tau b samples;
        only K (r x q per step) is formed per step, and the steps themselves
        are r x q matrix-vector products.
        """
        S, N, tau, b, q = H.shape
        r = q - 1
        E = H.reshape(S, N, tau * b, q)
        np.copyto(self._Ht, np.swapaxes(E, -1, -2))  # contiguous (q, tau b): batched matmul is fastest on those
        np.matmul((self.alpha / b) * L[..., :r, :r], self._Ht[..., :r, :], out=self._Zt)  # (alpha/b) Z^T
        np.matmul(E, np.ascontiguousarray(np.swapaxes(L, -1, -2)), out=self._ZD)  # [Z, y]
        np.matmul(self._Zt.reshape(S, N, r, tau, b).transpose(0, 1, 3, 2, 4), self._ZD.reshape(S, N, tau, b, q),
                  out=self._K)
        # The steps in struct-of-arrays layout (worker last): the r x q products per step then run
        # along the long worker axis, several times faster than batched tiny matrix-vector products.
        K = self._Ksoa
        np.copyto(K.reshape(tau, r, q, S, N), self._K.transpose(2, 3, 4, 0, 1))
        phi = self._phi  # [theta; -1]: each step is one matrix-vector product
        phi[:r] = theta.reshape(S * N, r).T
        for t in range(tau):
            phi[:r] -= np.einsum("ijn,jn->in", K[t], phi)
        return np.ascontiguousarray(phi[:r].T).reshape(S, N, r)

    def _linear_representation(self, theta: np.ndarray, Bt: np.ndarray) -> np.ndarray:
        """The linear representation step's g = X^T resid (S, N, d), drawn through 2b + d normals.

        With x = C z, z ~ N(0, I_d) (C = ``cov_chol``, or I), the residuals are
        resid_j = x_j^T v - sigma eps_j with v = B theta - t, and
        g = sum_j x_j resid_j = C sum_j z_j resid_j. Split z_j along the unit
        vector u = C^T v / |C^T v|: z_j = a_j u + P z_j with P = I - u u^T,
        a_j ~ N(0, 1) independent of P z_j ~ N(0, P). Then
        resid_j = |C^T v| a_j - sigma eps_j depends on (a, eps) only, and given
        them sum_j (P z_j) resid_j is N(0, |resid|^2 P), which is
        |resid| P n with n ~ N(0, I_d). So

            g = C (u (a . resid) + |resid| P n),

        exactly the distribution of X^T resid, from a, eps (b each) and n (d)
        instead of the b (d + 1) normals of X and eps. Where C^T v = 0 any
        unit u will do (the residuals do not depend on a); e_1 is used.
        """
        problem = self.problem
        a, eps, n = self.stream.statistics()
        C = problem.cov_chol
        v = (theta[:, :, None, :] @ Bt)[:, :, 0] - problem.targets  # B theta - t, (S, N, d)
        w = v if C is None else v @ C  # C^T v
        norm = np.sqrt(np.einsum("snd,snd->sn", w, w))
        u = np.zeros_like(w)
        np.divide(w, norm[..., None], out=u, where=norm[..., None] > 0)
        u[..., 0] = np.where(norm > 0, u[..., 0], 1.0)
        resid = norm[..., None] * a - problem.noise * eps  # (S, N, b)
        along = np.einsum("snb,snb->sn", a, resid)
        size = np.sqrt(np.einsum("snb,snb->sn", resid, resid))
        g = n - u * np.einsum("snd,snd->sn", u, n)[..., None]  # P n
        g *= size[..., None]
        g += along[..., None] * u
        return g if C is None else g @ C.T

    def __call__(self, theta: np.ndarray, Bt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        problem = self.problem
        H = self.stream.heads()
        B = np.swapaxes(Bt, -1, -2)
        L = projection_factor(problem, B)
        if self.linear:
            theta = self._linear_heads(L, H, theta)
            g = self._linear_representation(theta, Bt)
            step = (self.beta / problem.batch) * theta[..., None] * g[:, :, None, :]
            return theta, np.subtract(Bt, step, out=step)
        feats, _, y = projected_minibatch(problem, L, H.transpose(0, 2, 1, 3, 4))
        for t in range(H.shape[2]):
            theta = theta - self.alpha * head_gradient(feats[:, t], theta, y[:, t])
        X, eps = self.stream.representation()
        feats, pre, y = minibatch_features(problem, B, X[:, None], eps[:, None])
        Bt = Bt - self.beta * np.swapaxes(representation_gradient(problem, theta, X, feats[:, 0], pre[:, 0], y[:, 0]),
                                          -1, -2)
        return theta, Bt


def run(
    problem: Problem,
    W=None,
    *,
    algorithm: str = "deprl",
    rounds: int,
    tau: int | None = None,
    steps: StepSizes | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    eval_every: int | None = None,
    average_every: int | None = None,
    blowup: float = 1e6,
    seed: SeedLike | Sequence[SeedLike] = None,
    validate: bool = True,
    sampler: str = "projected",
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
    tau : int, optional
        Local head steps per round. Default: the tau the step rule was
        computed for (:func:`theory_step_sizes` records it), else 1; a tau
        that disagrees with the step rule's is an error.
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
    sampler : {"direct", "projected"}
        How the minibatches are drawn. ``"direct"`` draws every input x
        (d normals per sample) and is what the reference loop replays.
        ``"projected"`` draws for the head steps only the projections of x
        they need (:func:`~deprl_theory.problems.projection_factor`; r + 1
        normals per sample for the linear problem, 2r + 1 for the nonlinear
        one); for the representation step, the linear problem draws its
        sufficient statistics (2b + d normals) and the nonlinear one the full
        x: the same distribution of every iterate, from far fewer random
        numbers (see :func:`normals_per_worker_round`), but other numbers
        than "direct" for the same seed.

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    rounds, tau, steps = _checked_run_args(algorithm, sampler, rounds, tau, steps, alpha, beta)
    S, N, d, r = problem.n_seeds, problem.n_workers, problem.dim, problem.rank
    _steps_agree(steps, N, rounds)
    mix = _mixing_for(algorithm, W, N)
    if validate and mix is not None and not isinstance(mix, str):
        from .graphs import check_mixing

        check_mixing(mix)
    if eval_every is None:
        eval_every = max(1, rounds // 50)
    if average_every is None:
        average_every = 1 if problem.kind == "linear" else max(1, rounds // 200)
    stream = draw_stream(problem, sampler, tau, seed, rounds)

    theta = np.zeros((S, N, r))
    alpha_, beta_ = steps.alpha, steps.beta
    # The representations live in ``rep``: B itself (S, N, d, r) for the direct sampler; transposed,
    # (S, N, r, d), for the projected one (see _ProjectedRound). Mixing, averaging and the divergence
    # check act on every worker's entries alike, so they work on either layout.
    if sampler == "direct":
        projected = None
        rep = np.broadcast_to(problem.B0[:, None], (S, N, d, r)).copy()
        as_B = _identity
    else:
        projected = _ProjectedRound(problem, stream, tau, alpha_, beta_)
        rep = np.broadcast_to(np.swapaxes(problem.B0, -1, -2)[:, None], (S, N, r, d)).copy()
        as_B = _transposed
    metrics = _Metrics(problem, rounds, eval_every, average_every, as_B, (rep.nbytes + theta.nbytes) // S)
    diverged = np.zeros(S, dtype=bool)
    diverged_round = np.full(S, -1)

    with np.errstate(all="ignore"):  # a diverging seed must not stop the others
        for k in range(rounds):
            metrics.observe(k, theta, rep)
            # 1. head: tau SGD steps with the representation frozen; 2. representation: one SGD step
            if projected is None:
                theta, rep = _direct_round(problem, stream, theta, rep, alpha_, beta_, tau)
            else:
                theta, rep = projected(theta, rep)
            # 3. consensus
            theta, rep = _mix(mix, theta, rep, gossip_heads=algorithm == "dpsgd")
            _freeze_diverged(theta, rep, blowup, diverged, diverged_round, k + 1)
        metrics.observe(rounds, theta, rep)
        metrics.flush()
    trace, averages, final = metrics.results(diverged)
    return RunResult(
        algorithm=algorithm, rounds=rounds, tau=tau, trace=trace, averages=averages, final=final,
        diverged=diverged, diverged_round=diverged_round, steps=steps, average_every=average_every,
        seconds=time.perf_counter() - t0, theta=theta, B=np.ascontiguousarray(as_B(rep)),
        settings={"problem": problem.settings, "n_workers": N, "n_seeds": S, "sampler": sampler},
    )


def _steps_agree(steps: StepSizes, n_workers: int, rounds: int) -> None:
    """A step rule computed for other N or K than the run's is an error (one source of truth per parameter)."""
    for name, theirs, ours, what in (("N", steps.n_workers, n_workers, "the problem has"),
                                     ("K", steps.rounds, rounds, "rounds is")):
        if theirs is not None and theirs != ours:
            raise ValueError(f"the step sizes were computed for {name} = {theirs} but {what} {name} = {ours} "
                             f"({steps.rule}): recompute them with theory_step_sizes for this run, or pass "
                             "constant steps (step_sizes(alpha, beta))")


def _checked_run_args(algorithm: str, sampler: str, rounds, tau, steps: StepSizes | None, alpha, beta
                      ) -> tuple[int, int, StepSizes]:
    """``run``'s arguments checked: rounds and tau as ints, and the step sizes."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    if steps is None:
        if alpha is None or beta is None:
            raise ValueError("give step sizes: steps=StepSizes(...) or both alpha and beta")
        steps = step_sizes(alpha, beta)
    if tau is None:  # one source of truth: the step rule's tau, when it assumed one
        tau = steps.tau if steps.tau is not None else 1
    if isinstance(tau, bool) or int(tau) != tau or tau < 1:
        raise ValueError(f"tau must be a positive integer, got {tau!r}")
    if steps.tau is not None and int(tau) != steps.tau:
        raise ValueError(f"tau = {tau} but the step sizes were computed for tau = {steps.tau} "
                         f"(alpha = a beta / tau): pass tau={steps.tau}, leave tau out, or recompute the steps")
    return int(rounds), int(tau), steps


def _mix(mix, theta: np.ndarray, rep: np.ndarray, *, gossip_heads: bool) -> tuple[np.ndarray, np.ndarray]:
    """The consensus step: exact averaging (``"mean"``), gossip with W, or nothing (None)."""
    if isinstance(mix, str):
        rep = np.broadcast_to(rep.mean(axis=1, keepdims=True), rep.shape).copy()
    elif mix is not None:
        rep = consensus(mix, rep)
        if gossip_heads:
            theta = consensus(mix, theta)
    return theta, rep


def _freeze_diverged(theta: np.ndarray, rep: np.ndarray, blowup: float, diverged: np.ndarray,
                     diverged_round: np.ndarray, k: int) -> None:
    """Flag, in place, the seeds whose parameters turned non-finite or exceed ``blowup`` at round ``k``,
    and freeze them at NaN (the other seeds go on)."""
    S = rep.shape[0]
    # max |B| as max(max B, -min B): the same number without a temporary |B|
    flat = rep.reshape(S, -1)
    size = (np.maximum(np.maximum.reduce(flat, axis=1), -np.minimum.reduce(flat, axis=1))
            + np.maximum.reduce(np.abs(theta).reshape(S, -1), axis=1))
    calm = size < blowup
    if not calm.all():
        bad = ~calm & ~diverged
        if bad.any():
            diverged |= bad
            diverged_round[bad] = k
            rep[bad] = np.nan
            theta[bad] = np.nan


class _Metrics:
    """A run's metrics: the trace at the evaluation rounds and the time averages.

    :meth:`observe` is called before every round k and after the last one
    (k = rounds). The linear problem's time averages sample every round; its
    R, H, C, G are evaluated for stacks of rounds (a few numpy calls per stack
    rather than per round; the same values to rounding).
    """

    def __init__(self, problem: Problem, rounds: int, eval_every: int, average_every: int, as_B,
                 state_bytes_per_seed: int):
        self.problem, self.rounds, self.average_every, self.as_B = problem, rounds, average_every, as_B
        S = problem.n_seeds
        self.eval_rounds = sorted(set(range(0, rounds, eval_every)) | {rounds})
        self.trace_vals: dict[str, np.ndarray] = {}
        self.sums = {m: np.zeros(S) for m in METRICS}
        self.n_avg = 0
        self.next_eval = 0
        stack = min(64, _METRIC_STACK_BYTES_PER_SEED // state_bytes_per_seed, rounds) if problem.kind == "linear" else 0
        self.stack = stack if stack >= _MIN_METRIC_STACK else 0  # 0: one round at a time
        self.stacked: tuple[np.ndarray, np.ndarray] | None = None
        self.n_stacked = 0

    def observe(self, k: int, theta: np.ndarray, rep: np.ndarray) -> None:
        """Sample the averages and record the trace at round ``k``, as the settings ask."""
        want_eval = k == self.eval_rounds[self.next_eval]
        want_avg = k < self.rounds and k % self.average_every == 0
        if want_avg and self.stack and not want_eval:
            if self.stacked is None:
                self.stacked = (np.empty((self.stack,) + theta.shape), np.empty((self.stack,) + rep.shape))
            self.stacked[0][self.n_stacked] = theta
            self.stacked[1][self.n_stacked] = rep
            self.n_stacked += 1
            self.n_avg += 1
            if self.n_stacked == self.stack:
                self.flush()
        elif want_eval or want_avg:
            vals = population_metrics(self.problem, theta, self.as_B(rep), ground_truth=want_eval)
            if want_avg:
                for m in METRICS:
                    self.sums[m] += vals[m]
                self.n_avg += 1
            if want_eval:
                self._record(vals)

    def flush(self) -> None:
        """Evaluate the stacked rounds into the sums."""
        if self.n_stacked:
            thetas, reps = self.stacked
            n = self.n_stacked
            vals = linear_stationarity(self.problem, thetas[:n], self.as_B(reps[:n]))
            for m in METRICS:
                self.sums[m] += vals[m].sum(axis=0)
            self.n_stacked = 0

    def _record(self, vals: dict) -> None:
        for m, v in vals.items():
            if m not in self.trace_vals:
                self.trace_vals[m] = np.full((self.problem.n_seeds, len(self.eval_rounds)), np.nan)
            self.trace_vals[m][:, self.next_eval] = v
        self.next_eval += 1

    def results(self, diverged: np.ndarray) -> tuple[dict, dict, dict]:
        """The trace, the time averages (NaN for diverged seeds) and the final metrics."""
        averages = {m: self.sums[m] / max(self.n_avg, 1) for m in METRICS}
        for m in averages:
            averages[m][diverged] = np.nan
        trace: dict = {"round": self.eval_rounds, **self.trace_vals}
        final = {m: v[:, -1].copy() for m, v in self.trace_vals.items()}
        return trace, averages, final
