"""Synthetic shared-representation problems with known ground truth.

Every problem is *batched over seeds*: the ground truth has a leading axis of
length S (one independent instance per seed) and the workers' heads a second
axis of length N, so one engine call advances S x N workers at once.

Two problems, one model form ``prediction = head(theta_i, phi(x; B))``:

* ``linear``:     y = x^T B* w_i* + noise,               model x^T B theta_i.
  Population loss and gradients are exact (closed form in the covariance).
* ``nonlinear``:  y = w_i*^T act(B*^T x) + noise,        model theta_i^T act(B^T x).
  Population quantities are computed on a fixed, seeded evaluation sample of
  ``n_eval`` points per worker, against the noise-free target (the noise is
  independent and zero-mean, so it only adds the constant noise floor to the
  loss and nothing to the gradients).

Loss is the squared error ``0.5 (prediction - y)^2``, so the noise floor of the
personalized risk is ``noise**2 / 2``.

Realizable or misspecified: the truth has rank ``true_rank`` (B* is d x r_true,
w_i* in R^r_true), the model rank ``rank`` (the engine's B is d x r, theta_i in
R^r). By default they are equal (realizable: the model holds the truth, every
worker's gradient vanishes there and the heterogeneity delta^2 is 0 at the
solution). With ``true_rank > rank`` no model fits every worker: the workers'
representation gradients disagree even at the best rank-r fit, so delta^2 > 0
persists (:func:`best_rank_fit`, :attr:`Problem.approximation_error`).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np

from ._rng import SeedLike, as_generator, derive_seed

__all__ = [
    "Problem",
    "ACTIVATIONS",
    "HEAD_DESIGNS",
    "whiten",
    "make_problem",
    "seed_generators",
    "labels",
    "minibatch_features",
    "head_gradient",
    "representation_gradient",
    "stochastic_gradients",
    "projection_width",
    "projection_factor",
    "projected_minibatch",
    "population_metrics",
    "best_rank_fit",
    "optimal_heads",
    "linear_stationarity",
    "population_loss_and_grads",
    "subspace_distance",
]


def _tanh_prime(u: np.ndarray) -> np.ndarray:
    t = np.tanh(u)
    return 1.0 - t * t


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # stable form, no overflow in exp


def _sigmoid_prime(u: np.ndarray) -> np.ndarray:
    s = _sigmoid(u)
    return s * (1.0 - s)


def _relu(u: np.ndarray) -> np.ndarray:
    return np.maximum(u, 0.0)


def _relu_prime(u: np.ndarray) -> np.ndarray:
    return (u > 0).astype(u.dtype)


#: activation name -> (function, derivative)
ACTIVATIONS = {
    "tanh": (np.tanh, _tanh_prime),
    "sigmoid": (_sigmoid, _sigmoid_prime),
    "relu": (_relu, _relu_prime),
}


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Problem:
    """A batch of S synthetic instances, each with N workers.

    Attributes
    ----------
    kind : {"linear", "nonlinear"}
    B_star : ndarray, shape (S, d, r_true)
        True representation, orthonormal columns (r_true = r unless the model
        is misspecified, see :func:`make_problem`).
    heads_star : ndarray, shape (S, N, r_true)
        True personal heads w_i*.
    B0 : ndarray, shape (S, d, r)
        Shared starting representation (random orthonormal); heads start at 0.
        Its rank r is the model's (:attr:`rank`).
    noise : float
        Standard deviation of the label noise.
    batch : int
        Minibatch size b of every stochastic gradient.
    cov_chol : ndarray (d, d) or None
        Cholesky factor of the input covariance (None: identity).
    activation : str
        Non-linearity of the nonlinear problem ("identity" for linear).
    X_eval : ndarray, shape (S, N, n_eval, d) or None
        Fixed evaluation sample (nonlinear problem only).
    """

    kind: str
    B_star: np.ndarray
    heads_star: np.ndarray
    B0: np.ndarray
    noise: float
    batch: int
    cov_chol: np.ndarray | None = None
    activation: str = "identity"
    X_eval: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    @property
    def n_seeds(self) -> int:
        return self.B_star.shape[0]

    @property
    def n_workers(self) -> int:
        return self.heads_star.shape[1]

    @property
    def dim(self) -> int:
        return self.B_star.shape[1]

    @property
    def rank(self) -> int:
        """The model's rank r: the shape of every representation (d, r) and head (r,) the engine updates."""
        return self.B0.shape[2]

    @property
    def true_rank(self) -> int:
        """The truth's rank r_true (>= r): the columns of B* and the length of the true heads."""
        return self.B_star.shape[2]

    @property
    def misspecified(self) -> bool:
        """True when the truth's rank exceeds the model's: no model fits every worker exactly."""
        return self.true_rank > self.rank

    # The derived arrays below are cached (the engine reads them every round) and
    # read-only. A Problem is immutable by contract (dataclasses.replace makes a
    # changed copy, with a fresh cache); editing its arrays in place is not supported.
    @cached_property
    def covariance(self) -> np.ndarray:
        d = self.dim
        if self.cov_chol is None:
            return _read_only(np.eye(d))
        return _read_only(self.cov_chol @ self.cov_chol.T)

    @property
    def noise_floor(self) -> float:
        """Population risk of the true model: noise**2 / 2."""
        return 0.5 * self.noise**2

    @cached_property
    def approximation_error(self) -> np.ndarray:
        """Excess risk of the best rank-r model above the noise floor, mean over workers, per seed (S,).

        0 for a realizable problem. Misspecified linear problem: exact, by
        Eckart-Young (see :func:`best_rank_fit`). Misspecified nonlinear
        problem: not known in closed form (the best fit is a non-convex
        problem), so NaN; the risk of :func:`best_rank_fit`'s point is an
        upper bound.
        """
        S = self.n_seeds
        if not self.misspecified:
            return _read_only(np.zeros(S))
        if self.kind != "linear":
            return _read_only(np.full(S, np.nan))
        return _read_only(0.5 * _whitened_target_spectrum(self)[1][:, self.rank:].sum(axis=1) / self.n_workers)

    @cached_property
    def targets(self) -> np.ndarray:
        """Linear problem: B* w_i*, shape (S, N, d)."""
        return _read_only(np.einsum("sdr,snr->snd", self.B_star, self.heads_star))

    @cached_property
    def eval_targets(self) -> np.ndarray:
        """Nonlinear problem: noise-free labels on the evaluation sample, (S, N, n_eval)."""
        act, _ = ACTIVATIONS[self.activation]
        return _read_only(np.einsum("snmr,snr->snm", act(self.X_eval @ self.B_star[:, None]), self.heads_star))


def seed_generators(
    seed: SeedLike | Sequence[SeedLike], n_seeds: int | None, tag: str, *, bit_generator: type | None = None
) -> list[np.random.Generator]:
    """One independent Generator per seed of the batch.

    ``seed`` may be a sequence (one entry per batch seed, used as given) or a
    single seed from which seed j's stream is derived as ``(seed, tag, j)``:
    adding seeds to a batch never changes the numbers of the others.
    ``bit_generator`` (a :class:`numpy.random.BitGenerator` class, PCG64 by
    default as in :func:`numpy.random.default_rng`) drives the streams built
    here from ints, SeedSequences or None; a Generator given by the caller is
    used as it is (or spawned).
    """
    if bit_generator is None:
        make = as_generator
    else:
        def make(s: SeedLike) -> np.random.Generator:
            return s if isinstance(s, np.random.Generator) else np.random.Generator(bit_generator(s))
    if isinstance(seed, (list, tuple)):
        if n_seeds is not None and len(seed) != n_seeds:
            raise ValueError(f"got {len(seed)} seeds for a batch of {n_seeds}")
        return [make(s) for s in seed]
    if n_seeds is None:
        n_seeds = 1
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be at least 1, got {n_seeds}")
    if isinstance(seed, np.random.Generator):
        return list(seed.spawn(n_seeds))
    return [make(derive_seed(seed, tag, j)) for j in range(n_seeds)]


#: designs of the true heads (see :func:`make_problem`)
HEAD_DESIGNS = ("balanced", "iid")


def whiten(z: np.ndarray) -> np.ndarray:
    """Rows ``z`` (m, r) mapped to ``z (z^T z / m)^(-1/2)``: second moment exactly I_r.

    The symmetric inverse square root moves the draws as little as possible.

    Examples
    --------
    >>> z = whiten(np.random.default_rng(0).standard_normal((5, 3)))
    >>> np.allclose(z.T @ z / 5, np.eye(3))
    True
    """
    m, r = z.shape
    if m < r:
        raise ValueError(f"cannot whiten {m} draws in {r} dimensions: need at least {r}")
    vals, vecs = np.linalg.eigh(z.T @ z / m)
    if vals[0] <= 1e-12 * max(vals[-1], 1e-300):
        raise ValueError("the draws to whiten are linearly dependent")
    return z @ (vecs / np.sqrt(vals)) @ vecs.T


def _random_orthonormal(rng: np.random.Generator, d: int, r: int) -> np.ndarray:
    q, upper = np.linalg.qr(rng.standard_normal((d, r)))
    return q * np.sign(np.diag(upper))  # Haar-distributed: fix the QR sign ambiguity


def _check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_problem_args(kind, n_workers, dim, rank, batch, true_rank, noise, heterogeneity, activation, clusters,
                        heads, covariance):
    """Every argument check of :func:`make_problem`, apart from the drawing (ValueError naming the bad value).

    Returns the checked ``n_workers, dim, rank, batch, true_rank, clusters`` and the covariance's Cholesky
    factor (None for the identity).
    """
    if kind not in ("linear", "nonlinear"):
        raise ValueError(f"unknown problem kind {kind!r}; choose 'linear' or 'nonlinear'")
    n_workers = _check_positive_int("n_workers", n_workers)
    dim = _check_positive_int("dim", dim)
    rank = _check_positive_int("rank", rank)
    batch = _check_positive_int("batch", batch)
    if rank > dim:
        raise ValueError(f"rank ({rank}) cannot exceed dim ({dim})")
    if true_rank is None:
        true_rank = rank
    else:
        true_rank = _check_positive_int("true_rank", true_rank)
        if true_rank <= rank:
            raise ValueError(f"true_rank ({true_rank}) must exceed rank ({rank}) (a misspecified model); "
                             "leave it out for a realizable problem")
        if true_rank > dim:
            raise ValueError(f"true_rank ({true_rank}) cannot exceed dim ({dim})")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    if not np.isfinite(heterogeneity) or heterogeneity < 0:
        raise ValueError(f"heterogeneity must be >= 0, got {heterogeneity}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    if clusters is not None:
        clusters = _check_positive_int("clusters", clusters)
    if heads not in HEAD_DESIGNS:
        raise ValueError(f"unknown heads design {heads!r}; choose from {', '.join(HEAD_DESIGNS)}")
    if heads == "balanced":
        groups = n_workers if clusters is None else clusters
        if groups < true_rank:
            what = f"N = {n_workers} workers" if clusters is None else f"{clusters} clusters"
            which = "r" if true_rank == rank else "the true rank"
            raise ValueError(f"balanced heads need at least {which} = {true_rank} draws to whiten, got {what}; "
                             "use heads='iid' or a smaller rank")
    cov_chol = None
    if covariance is not None:
        covariance = np.asarray(covariance, dtype=float)
        if covariance.shape != (dim, dim):
            raise ValueError(f"covariance must have shape ({dim}, {dim}), got {covariance.shape}")
        if not np.allclose(covariance, covariance.T):
            raise ValueError("covariance must be symmetric")
        try:
            cov_chol = np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            raise ValueError("covariance must be positive definite") from None
    return n_workers, dim, rank, batch, true_rank, clusters, cov_chol


def make_problem(
    kind: str = "linear",
    n_workers: int = 8,
    *,
    dim: int = 20,
    rank: int = 3,
    true_rank: int | None = None,
    noise: float = 1.0,
    batch: int = 10,
    heterogeneity: float = 1.0,
    head_mean: float | np.ndarray = 0.0,
    clusters: int | None = None,
    cluster_spread: float = 0.1,
    heads: str = "balanced",
    activation: str = "tanh",
    covariance: np.ndarray | None = None,
    n_eval: int = 500,
    n_seeds: int | None = None,
    seed: SeedLike | Sequence[SeedLike] = None,
) -> Problem:
    """Draw a batch of synthetic shared-representation problems.

    Parameters
    ----------
    kind : {"linear", "nonlinear"}
    n_workers : int
        Number of workers N (>= 1).
    dim, rank : int
        Input dimension d and the model's representation rank r (1 <= r <= d).
    true_rank : int, optional
        Rank r_true of the truth: B* is d x r_true and the true heads lie in
        R^r_true. None (default): r_true = r, a realizable problem.
        ``r < r_true <= d``: a misspecified model, whose workers' representation
        gradients disagree even at the best rank-r fit (delta^2 > 0 there).
        Everything about the heads below (their spread, mean, clusters, the
        balanced design) then lives in r_true dimensions.
    noise : float
        Label-noise standard deviation s (>= 0).
    batch : int
        Minibatch size b.
    heterogeneity : float
        Spread of the true heads: w_i* = head_mean + heterogeneity * z_i,
        z_i ~ N(0, I_r_true). 0 makes every worker's task identical.
    head_mean : float or array (r_true,)
        Common part of the true heads.
    clusters : int, optional
        If given, the heads form this many clusters: each cluster centre is
        ``head_mean + heterogeneity * z``, each worker its centre plus
        ``cluster_spread * z_i``; worker i belongs to cluster ``i % clusters``.
    heads : {"balanced", "iid"}
        How the head draws z are used. ``"iid"``: as drawn. ``"balanced"``:
        whitened so that (1/N) sum_i z_i z_i^T = I_r_true exactly (with clusters:
        the cluster centres' draws, over the clusters), so every instance has
        the same task diversity (1/N) sum_i (w_i* - head_mean)(w_i* - head_mean)^T
        = heterogeneity^2 I_r_true whatever N. Needs N >= r_true (clusters >= r_true).
        With iid heads the smallest eigenvalue of that matrix depends on N
        (near 0 at N = 4, r = 3), which confounds N with problem difficulty.
    activation : {"tanh", "sigmoid", "relu"}
        Non-linearity (nonlinear problem only).
    covariance : ndarray (d, d), optional
        Input covariance (symmetric positive definite); identity by default.
    n_eval : int
        Size of the fixed evaluation sample per worker (nonlinear problem).
    n_seeds : int, optional
        Batch size S; defaults to ``len(seed)`` for a sequence of seeds, else 1.
    seed : None, int, Generator, or a sequence of them (one per batch seed)

    Returns
    -------
    Problem

    Notes
    -----
    Within one seed the draws come in a fixed order: B*, B0, heads. A
    Generator draws normals sequentially, so the heads of the first N workers
    are the same whatever the total number of workers (common random numbers
    across the N of a sweep). A realizable problem draws exactly what it drew
    before ``true_rank`` existed.

    Examples
    --------
    >>> p = make_problem("linear", 4, dim=6, rank=2, n_seeds=3, seed=0)
    >>> p.B_star.shape, p.heads_star.shape
    ((3, 6, 2), (3, 4, 2))
    >>> q = make_problem("linear", 4, dim=6, rank=2, true_rank=4, n_seeds=3, seed=0)
    >>> q.B_star.shape, q.heads_star.shape, q.B0.shape, q.rank, q.true_rank
    ((3, 6, 4), (3, 4, 4), (3, 6, 2), 2, 4)
    """
    n_workers, dim, rank, batch, true_rank, clusters, cov_chol = _check_problem_args(
        kind, n_workers, dim, rank, batch, true_rank, noise, heterogeneity, activation, clusters, heads, covariance)
    mean = np.broadcast_to(np.asarray(head_mean, dtype=float), (true_rank,))
    if heterogeneity == 0 and not np.any(mean) and (clusters is None or cluster_spread == 0):
        raise ValueError("every true head is 0 (heterogeneity 0 and head_mean 0): the labels are pure noise and "
                         "there is nothing to learn; give heterogeneity > 0 or a nonzero head_mean")

    rngs = seed_generators(seed, n_seeds, "problem")
    S = len(rngs)
    B_star = np.empty((S, dim, true_rank))
    B0 = np.empty((S, dim, rank))
    heads_s = np.empty((S, n_workers, true_rank))
    X_eval = None
    if kind == "nonlinear":
        n_eval = _check_positive_int("n_eval", n_eval)
        X_eval = np.empty((S, n_workers, n_eval, dim))
    for s, rng in enumerate(rngs):  # setup only: the hot path never loops over seeds
        B_star[s] = _random_orthonormal(rng, dim, true_rank)
        B0[s] = _random_orthonormal(rng, dim, rank)
        if clusters is None:
            z = rng.standard_normal((n_workers, true_rank))
            heads_s[s] = mean + heterogeneity * (whiten(z) if heads == "balanced" else z)
        else:
            z = rng.standard_normal((clusters, true_rank))
            centres = mean + heterogeneity * (whiten(z) if heads == "balanced" else z)
            heads_s[s] = centres[np.arange(n_workers) % clusters] + cluster_spread * rng.standard_normal(
                (n_workers, true_rank)
            )
        if X_eval is not None:
            X_eval[s] = rng.standard_normal((n_workers, n_eval, dim))
    if X_eval is not None and cov_chol is not None:
        X_eval = X_eval @ cov_chol.T
    settings = dict(
        kind=kind, n_workers=n_workers, dim=dim, rank=rank, noise=float(noise), batch=batch,
        heterogeneity=float(heterogeneity), clusters=clusters, heads=heads,
        activation=activation if kind == "nonlinear" else "identity",
        n_eval=n_eval if kind == "nonlinear" else None,
    )
    if true_rank != rank:  # realizable problems keep the settings they always had
        settings["true_rank"] = true_rank
    return Problem(
        kind=kind, B_star=B_star, heads_star=heads_s, B0=B0, noise=float(noise), batch=batch,
        cov_chol=cov_chol, activation=settings["activation"], X_eval=X_eval, settings=settings,
    )


# --------------------------------------------------------------------------
# Stochastic gradients: one minibatch per worker and seed, all at once.
# --------------------------------------------------------------------------
# Shapes: inputs X are (S, [T,] N, b, d): seeds first, then optionally T
# minibatches per worker (the steps of one round), then workers. Products are
# written as batched matmuls rather than einsum: numpy hands them to BLAS.
def _per_worker(a: np.ndarray, extra: int) -> np.ndarray:
    """View ``a`` (S, N, ...) as (S, 1 x extra, N, ...) to broadcast against inputs with step axes."""
    return a.reshape(a.shape[:1] + (1,) * extra + a.shape[1:])


def labels(problem: Problem, X: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Labels y for inputs X (S, [T,] N, b, d) and standard-normal noise draws eps (S, [T,] N, b)."""
    extra = X.ndim - 4
    if problem.kind == "linear":
        clean = (X @ _per_worker(problem.targets[..., None], extra))[..., 0]
    else:
        act, _ = ACTIVATIONS[problem.activation]
        feats = act(X @ _per_worker(problem.B_star[:, None], extra))
        clean = (feats @ _per_worker(problem.heads_star[..., None], extra))[..., 0]
    return clean + problem.noise * eps


def minibatch_features(
    problem: Problem, B: np.ndarray, X: np.ndarray, eps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, pre-activations and labels of T minibatches that all see the representation ``B``.

    Within a round the representation is frozen during the head steps and the
    representation step is taken at the same ``B``, so every minibatch of the
    round can be featurized at once. One product ``X @ [B | B* w*]`` (linear)
    or ``X @ [B | B*]`` (nonlinear; B* has r_true columns) gives the model's
    pre-activations and the clean labels in a single pass over the inputs.

    Parameters
    ----------
    B : (S, N, d, r) representations;  X : (S, T, N, b, d) inputs;  eps : (S, T, N, b) label noise

    Returns
    -------
    feats : (S, T, N, b, r);  pre : (S, T, N, b, r) pre-activations (the same array as
    ``feats`` for the linear problem);  y : (S, T, N, b) labels
    """
    r = B.shape[-1]
    if problem.kind == "linear":
        Z = X @ np.concatenate((B, problem.targets[..., None]), axis=-1)[:, None]
        pre = feats = Z[..., :r]
        clean = Z[..., r]
    else:
        act, _ = ACTIVATIONS[problem.activation]
        truth = np.broadcast_to(problem.B_star[:, None], B.shape[:-1] + (problem.true_rank,))
        both = np.concatenate((B, truth), axis=-1)
        Z = X @ both[:, None]
        pre = Z[..., :r]
        feats = act(pre)
        clean = (act(Z[..., r:]) @ problem.heads_star[:, None, :, :, None])[..., 0]
    return feats, pre, clean + problem.noise * eps


def head_gradient(feats: np.ndarray, theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Minibatch gradient in the heads, (S, N, r), from features (S, N, b, r) and labels (S, N, b)."""
    resid = feats @ theta[..., None]
    resid -= y[..., None]
    return (np.swapaxes(feats, -1, -2) @ resid)[..., 0] / feats.shape[-2]


def representation_gradient(
    problem: Problem, theta: np.ndarray, X: np.ndarray, feats: np.ndarray, pre: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Minibatch gradient in the representation, (S, N, d, r).

    ``X`` (S, N, b, d) inputs, ``feats`` and ``pre`` (S, N, b, r) their features
    and pre-activations under the current representation, ``y`` (S, N, b) labels.
    """
    b = X.shape[-2]
    resid = (feats @ theta[..., None])[..., 0] - y  # (S, N, b)
    Xt = np.swapaxes(X, -1, -2)
    if problem.kind == "linear":  # rank one per worker: (X^T resid) theta^T
        return (Xt @ resid[..., None]) * (theta[:, :, None, :] / b)
    _, dact = ACTIVATIONS[problem.activation]
    return Xt @ (resid[..., None] * theta[:, :, None, :] * dact(pre)) / b


def stochastic_gradients(
    problem: Problem, theta: np.ndarray, B: np.ndarray, X: np.ndarray, y: np.ndarray,
    *, need_theta: bool = True, need_B: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Minibatch gradients of 0.5 (prediction - y)^2 for every seed and worker.

    Parameters
    ----------
    theta : (S, N, r) heads;  B : (S, N, d, r) representations
    X : (S, N, b, d) inputs;  y : (S, N, b) labels

    Returns
    -------
    g_theta : (S, N, r) or None;  g_B : (S, N, d, r) or None
    """
    pre = X @ B  # (S, N, b, r)
    feats = pre if problem.kind == "linear" else ACTIVATIONS[problem.activation][0](pre)
    g_theta = head_gradient(feats, theta, y) if need_theta else None
    g_B = representation_gradient(problem, theta, X, feats, pre, y) if need_B else None
    return g_theta, g_B


# --------------------------------------------------------------------------
# Projected head-step minibatches (the engine's ``sampler="projected"``).
# --------------------------------------------------------------------------
# During the tau head steps of a round the representation B_i is frozen, and a
# head step sees an input x only through a few projections of it: z = B_i^T x
# and the clean label's projection (x^T t_i for the linear problem, B*^T x for
# the nonlinear one). For x ~ N(0, Sigma) those projections are jointly Gaussian,
# so they can be drawn directly from q standard normals per sample instead of
# drawing x (d normals) and projecting it: exact in distribution.
def projection_width(problem: Problem) -> int:
    """Standard normals per sample of a projected head-step minibatch.

    ``r + 1`` for the linear problem (the features z = B_i^T x and the noisy
    label, whose noise merges into one Gaussian coordinate), ``r + r_true + 1``
    for the nonlinear one (z, the true projections w = B*^T x, r_true of them,
    and the label noise, which is added after the activation and so stays a
    coordinate of its own): ``2 r + 1`` for a realizable problem.
    """
    return problem.rank + 1 if problem.kind == "linear" else problem.rank + problem.true_rank + 1


# A pivot of B^T Sigma B at or below this fraction of its diagonal entry is taken as 0:
# that column of B is then (numerically) a combination of the previous ones, its
# feature a fixed combination of theirs, and the regression below skips it.
_PIVOT_RTOL = 1e-13
# Where noise^2 is below this fraction of the clean label's variance t^T Sigma t, the
# label's conditional variance noise^2 + (t^T Sigma t - c^T A^{-1} c) is taken from the
# regression residual instead of the difference, which rounding would swamp (see below).
_EXACT_RESIDUAL_BELOW = 1e-6


def _cholesky_regress(A: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cholesky factor L_A of A and ``U = L_A^{-1} C``, one matrix of the batch at a time.

    ``A`` (..., r, r) symmetric positive (semi-)definite, ``C`` (..., r, m).
    Returns, in struct-of-arrays layout (matrix indices first, batch last):
    ``lA`` (r, r, ...) lower triangular, ``U`` (r, m, ...) and ``inv``
    (r, ...), the reciprocal pivots (0 for a clipped pivot).

    Loops over the r columns of whole-batch elementwise operations: r is
    small and the batch large, so this beats a LAPACK call per matrix, and no
    matrix of the batch can make another fail (each seed is factored on its
    own). A pivot at or below ``_PIVOT_RTOL`` times its diagonal entry (a
    rank-deficient B) gives a zero column, not a division by zero: that
    feature is then a fixed combination of the previous ones, which is exact.
    """
    r = A.shape[-1]
    batch = A.shape[:-2]
    # both as contiguous (matrix axes first) copies: a[i, j] is entry (i, j) over the batch, and
    # elementwise operations run several times faster on contiguous arrays than on strided views
    a = np.ascontiguousarray(_batch_first(A, 2))
    U = np.ascontiguousarray(_batch_first(C, 2))  # becomes L_A^{-1} C row by row, in place
    lA = np.zeros((r, r) + batch)
    inv = np.zeros((r,) + batch)
    for j in range(r):
        done = lA[j, :j]  # row j left of the diagonal
        pivot = a[j, j] - np.square(done).sum(axis=0) if j else a[j, j]
        ok = pivot > _PIVOT_RTOL * a[j, j]
        lA[j, j] = np.sqrt(np.where(ok, pivot, 0.0))
        np.divide(1.0, lA[j, j], out=inv[j], where=ok)
        if j + 1 < r:
            below = a[j + 1:, j] - (lA[j + 1:, :j] * done).sum(axis=1) if j else a[j + 1:, j]
            np.multiply(below, inv[j], out=lA[j + 1:, j])
        if j:
            U[j] -= (done[:, None] * U[:j]).sum(axis=0)
        U[j] *= inv[j]
    return lA, U, inv


def _back_substitute(lA: np.ndarray, inv: np.ndarray, U: np.ndarray) -> np.ndarray:
    """``beta = L_A^{-T} U`` (r, m, ...) in the layout of :func:`_cholesky_regress`: beta = A^{-1} C."""
    r = lA.shape[0]
    beta = np.empty_like(U)
    for j in range(r - 1, -1, -1):
        rest = U[j] - (lA[j + 1:, j, None] * beta[j + 1:]).sum(axis=0) if j + 1 < r else U[j]
        beta[j] = rest * inv[j]
    return beta


def _batch_last(a: np.ndarray, k: int) -> np.ndarray:
    """View struct-of-arrays ``a`` (k matrix axes first, then the batch) with the matrix axes last."""
    return a.transpose(tuple(range(k, a.ndim)) + tuple(range(k)))


def _batch_first(a: np.ndarray, k: int) -> np.ndarray:
    """View ``a`` (batch, then k matrix axes) in struct-of-arrays layout: the matrix axes first."""
    n = a.ndim - k
    return a.transpose(tuple(range(n, a.ndim)) + tuple(range(n)))


def _psd_sqrt(R: np.ndarray) -> np.ndarray:
    """A square root F (F F^T = R) of symmetric positive semi-definite matrices R (..., m, m).

    Eigenvalues that rounding made slightly negative are clipped at 0, so a
    singular or rank-deficient R (a learned subspace) gives a finite, exact
    factor. Non-finite matrices (a diverged seed) give NaN.
    """
    finite = np.isfinite(R).all(axis=(-2, -1))
    vals, vecs = np.linalg.eigh(np.where(finite[..., None, None], R, 0.0))
    F = vecs * np.sqrt(np.maximum(vals, 0.0))[..., None, :]
    F[~finite] = np.nan
    return F


def projection_factor(problem: Problem, B: np.ndarray) -> np.ndarray:
    """Factor L (S, N, q, q) with which q standard normals become one sample's head-step projections.

    A row e (q,) of standard normals gives ``p = L e``, distributed as the
    projections of one input x ~ N(0, Sigma) that a head step needs under the
    representation ``B`` (S, N, d, r), ``q = projection_width(problem)``:

    * linear: ``p = (z, y)``, z = B_i^T x (r) and the noisy label
      y = t_i^T x + noise * eps, t_i = B* w_i*;
    * nonlinear: ``p = (z, w, noise * eps)``, w = B*^T x (r_true); the label is
      w_i*^T act(w) + noise * eps.

    L L^T is the covariance of p, with blocks A = B^T Sigma B, C = B^T Sigma T
    and T^T Sigma T (T = t_i or B*), plus the noise. It is built in two stages
    that stay exact when that covariance is singular (once span(B_i) contains
    t_i or B*, with no noise): z first, z = L_A e_z with L_A the Cholesky
    factor of A (positive definite while B_i has full rank); then the rest
    given z by regression, T^T x = beta^T z + residual with beta = A^{-1} C,
    so L = [[L_A, 0], [U^T, F]] with U = L_A^{-1} C and F a square root of the
    residual covariance (plus the noise). The residual covariance is the
    difference D - U^T U only where the noise dominates the rounding of that
    difference (linear problem, noise^2 >= 1e-6 t^T Sigma t); elsewhere it is
    formed from the residual vectors Res = T - B beta themselves,
    Res^T Sigma Res, accurate to rounding even where it is exactly 0, and its
    square root clips eigenvalues that rounding made negative: no Cholesky
    that could fail, no loss of accuracy at a learned subspace.

    Examples
    --------
    >>> p = make_problem("linear", 2, dim=5, rank=2, noise=0.5, n_seeds=1, seed=0)
    >>> B = np.broadcast_to(p.B0[:, None], (1, 2, 5, 2))
    >>> L = projection_factor(p, B)
    >>> P = np.concatenate((B, p.targets[..., None]), axis=-1)
    >>> cov = np.swapaxes(P, -1, -2) @ P + np.diag([0, 0, 0.25])
    >>> np.allclose(L @ np.swapaxes(L, -1, -2), cov)
    True
    """
    if problem.cov_chol is not None:  # Sigma = K K^T: Sigma-inner products are plain inner products of K^T B, K^T T
        B = problem.cov_chol.T @ B
    if problem.kind == "linear":
        return _linear_factor(B, problem)
    T = np.broadcast_to(problem.B_star[:, None], B.shape[:-1] + (problem.true_rank,))
    if problem.cov_chol is not None:
        T = problem.cov_chol.T @ T
    return _regression_factor(B, T, problem.noise, merge_noise=False)


# The linear factor's per-worker constants (whitened targets, their variance, which path): they depend
# on the problem only, and a Problem is immutable, so they are computed once per problem.
_LINEAR_CONSTANTS: "weakref.WeakKeyDictionary[Problem, tuple]" = weakref.WeakKeyDictionary()


def _linear_constants(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whitened targets K^T t (S, N, d, 1), their variance t^T Sigma t (S, N), and where the noise is too
    small for the Schur complement (see :func:`_linear_factor`)."""
    try:
        return _LINEAR_CONSTANTS[problem]
    except KeyError:
        pass
    t = problem.targets[..., None]
    if problem.cov_chol is not None:
        t = problem.cov_chol.T @ t
    D = np.einsum("snd,snd->sn", t[..., 0], t[..., 0])
    exact = ~(problem.noise**2 >= _EXACT_RESIDUAL_BELOW * D)
    out = (_read_only(t), _read_only(D), _read_only(exact))
    _LINEAR_CONSTANTS[problem] = out
    return out


def _regression_factor(B: np.ndarray, T: np.ndarray, noise: float, *, merge_noise: bool) -> np.ndarray:
    """The factor of :func:`projection_factor` through the regression of T on B, batched over B's leading axes.

    ``B`` (..., d, r) and ``T`` (..., d, m) are Sigma-whitened (plain inner
    products are Sigma-inner products). ``merge_noise``: the noise joins the
    single target's residual (the linear label, m = 1); otherwise it gets a
    coordinate of its own (the last).
    """
    batch, r, m = B.shape[:-2], B.shape[-1], T.shape[-1]
    Bt = np.ascontiguousarray(np.swapaxes(B, -1, -2))  # both orientations contiguous: numpy's batched
    B = np.ascontiguousarray(B)  # matmul is several times faster on those
    lA, U, inv = _cholesky_regress(Bt @ B, Bt @ T)
    beta = _batch_last(_back_substitute(lA, inv, U), 2)  # (..., r, m) = A^{-1} C
    res = T - B @ beta  # (..., d, m): what of T the features z cannot explain, exactly 0 once T is in span(B)
    R = np.swapaxes(res, -1, -2) @ res  # its covariance, from the residual itself: no cancellation
    q = r + m + (0 if merge_noise else 1)
    L = np.zeros((q, q) + batch)  # struct of arrays, transposed at the end
    L[:r, :r] = lA
    L[r:r + m, :r] = np.swapaxes(U, 0, 1)
    if merge_noise:
        L[r, r] = np.sqrt(R[..., 0, 0] + noise**2)
    else:
        L[r:r + m, r:r + m] = _batch_first(_psd_sqrt(R), 2)
        L[q - 1, q - 1] = noise
    return np.ascontiguousarray(_batch_last(L, 2))


def _linear_factor(B: np.ndarray, problem: Problem) -> np.ndarray:
    """:func:`projection_factor` of the linear problem, for Sigma-whitened representations ``B`` (S, N, d, r).

    Where the noise dominates the rounding of the label's conditional variance
    (noise^2 >= 1e-6 t^T Sigma t: the sweeps' case), the factor is the plain
    Cholesky factor of the joint covariance [[A, c], [c^T, D + noise^2]],
    one LAPACK call for the batch; it is positive definite there. Elsewhere
    (no noise: singular once t is in span(B)), and for any matrix that LAPACK
    rejects (a rank-deficient B), :func:`_regression_factor` builds it. Which
    path an entry takes depends on that entry alone, so a seed's numbers never
    depend on the other seeds of the batch.
    """
    r = B.shape[-1]
    t, D, exact = _linear_constants(problem)
    Bt = np.ascontiguousarray(np.swapaxes(B, -1, -2))  # both orientations contiguous: batched
    G = np.empty(B.shape[:-2] + (r + 1, r + 1))  # matmul is several times faster on those
    G[..., :r, :r] = Bt @ np.ascontiguousarray(B)
    c = (Bt @ t)[..., 0]
    G[..., :r, r] = c
    G[..., r, :r] = c
    G[..., r, r] = D + problem.noise**2
    some_exact = exact.any()
    if some_exact:
        G[exact] = np.eye(r + 1)  # placeholders, replaced below
    L, failed = _batched_cholesky(G)
    redo = exact | failed if some_exact else failed
    if redo.any():
        idx = np.nonzero(redo)
        L[idx] = _regression_factor(B[idx], t[idx], problem.noise, merge_noise=True)
    return L


def _batched_cholesky(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of a batch (..., n, n), and where LAPACK rejected a matrix (not positive definite).

    numpy factors the batch with one LAPACK call per matrix but raises for the
    whole batch if one fails; then each matrix is factored on its own, so that
    the other entries' factors are exactly what the batch call gives.
    """
    failed = np.zeros(G.shape[:-2], dtype=bool)
    try:
        return np.linalg.cholesky(G), failed
    except np.linalg.LinAlgError:
        pass
    # A seed that diverged is NaN for the rest of its run: set those aside in one more batch call,
    # so that they do not send every later round down the per-matrix path below.
    finite = np.isfinite(G).all(axis=(-2, -1))
    try:
        L = np.linalg.cholesky(np.where(finite[..., None, None], G, np.eye(G.shape[-1])))
        L[~finite] = np.nan
        return L, failed
    except np.linalg.LinAlgError:
        pass
    L = np.full_like(G, np.nan)
    for idx in zip(*np.nonzero(finite)):  # only for a rank-deficient B: a matrix LAPACK rejects
        try:
            L[idx] = np.linalg.cholesky(G[idx])
        except np.linalg.LinAlgError:
            failed[idx] = True
    return L, failed


def projected_minibatch(
    problem: Problem, L: np.ndarray, H: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, pre-activations and labels of head-step minibatches from projected draws.

    Parameters
    ----------
    L : (S, N, q, q) factor from :func:`projection_factor`
    H : (S, [T,] N, b, q) standard normals, q = ``projection_width(problem)``

    Returns
    -------
    feats, pre : (S, [T,] N, b, r);  y : (S, [T,] N, b) labels. Distributed
    exactly as :func:`minibatch_features` of inputs x ~ N(0, Sigma) under the
    representation L was built for.
    """
    r = problem.rank
    Pj = H @ _per_worker(np.swapaxes(L, -1, -2), H.ndim - 4)  # rows p^T = e^T L^T
    pre = Pj[..., :r]
    if problem.kind == "linear":
        return pre, pre, Pj[..., r]
    act, _ = ACTIVATIONS[problem.activation]
    w_end = r + problem.true_rank  # w = B*^T x: the r_true coordinates after z, then the noise
    clean = (act(Pj[..., r:w_end]) @ _per_worker(problem.heads_star[..., None], H.ndim - 4))[..., 0]
    return act(pre), pre, clean + Pj[..., w_end]


# --------------------------------------------------------------------------
# Population quantities.
# --------------------------------------------------------------------------
def population_loss_and_grads(
    problem: Problem, theta: np.ndarray, B: np.ndarray, *, grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Excess population loss F_i - noise floor and its gradients, per seed and worker.

    ``B`` is (S, N, d, r) (each worker its own) or (S, d, r) (one shared
    representation, e.g. the network average). Exact for the linear problem;
    on the fixed evaluation sample for the nonlinear one. ``grads=False``
    skips the gradients (returned as None): the loss alone is far cheaper.

    Returns
    -------
    excess : (S, N);  g_theta : (S, N, r);  g_B : (S, N, d, r)
    """
    if B.ndim == 3:
        B = B[:, None]
    if problem.kind == "linear":
        v = np.einsum("sndr,snr->snd", B, theta) - problem.targets  # (S, N, d)
        sv = v if problem.cov_chol is None else v @ problem.covariance
        excess = 0.5 * np.einsum("snd,snd->sn", v, sv)
        if not grads:
            return excess, None, None
        g_theta = np.einsum("sndr,snd->snr", B, sv)
        g_B = sv[..., None] * theta[:, :, None, :]
        return excess, g_theta, np.broadcast_to(g_B, np.broadcast_shapes(g_B.shape, B.shape))
    act, dact = ACTIVATIONS[problem.activation]
    X = problem.X_eval
    m = X.shape[-2]
    U = X @ B  # (S, N, m, r)
    feats = act(U)
    resid = np.einsum("snmr,snr->snm", feats, theta) - problem.eval_targets
    excess = 0.5 * np.mean(resid * resid, axis=-1)
    if not grads:
        return excess, None, None
    g_theta = np.einsum("snmr,snm->snr", feats, resid) / m
    g_B = np.swapaxes(X, -1, -2) @ (resid[..., None] * theta[:, :, None, :] * dact(U)) / m
    return excess, g_theta, g_B


def subspace_distance(B: np.ndarray, B_star: np.ndarray) -> np.ndarray:
    """Sine of the largest principal angle between span(B) and span(B*), measured from the model's side.

    ``B`` (S, d, r), ``B_star`` (S, d, r_true) with orthonormal columns,
    r <= r_true; returns (S,). The r principal angles between the two
    subspaces have cosines the singular values of B*^T Q (Q an orthonormal
    basis of span(B)); the largest angle's sine is ``||(I - B* B*^T) Q||_2``,
    how far the model's subspace reaches outside the truth's. For r = r_true
    this is the usual distance (0: the same subspace, 1: an orthogonal
    direction). For r < r_true (a misspecified model) it is 0 exactly when
    span(B) lies inside span(B*), which is where every best rank-r fit of
    the linear problem lies (:func:`best_rank_fit`): the angle between span(B)
    and its best r-dimensional fit inside span(B*) (the projection of span(B)
    onto span(B*)). It does not ask the model to hold all of span(B*), which
    no rank-r model can.
    """
    out = np.full(B.shape[0], np.nan)
    ok = np.isfinite(B).all(axis=(1, 2))  # a diverged seed has no subspace
    if ok.any():
        Q, _ = np.linalg.qr(B[ok])
        cosines = np.linalg.svd(np.swapaxes(B_star[ok], -1, -2) @ Q, compute_uv=False)
        smallest = np.clip(cosines[..., -1], 0.0, 1.0)
        out[ok] = np.sqrt(np.clip(1.0 - smallest**2, 0.0, 1.0))
    return out


def _whitened_target_spectrum(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors (S, d, d') and squared singular values (S, d') of K^T T, T = [t_1 .. t_N] (d x N).

    ``K`` is the Cholesky factor of Sigma (identity by default), so that the
    Sigma-weighted risk of the linear problem is a Frobenius norm:
    sum_i ||B theta_i - t_i||_Sigma^2 = ||K^T B Theta^T - K^T T||_F^2.
    """
    T = np.swapaxes(problem.targets, -1, -2)  # (S, d, N)
    if problem.cov_chol is not None:
        T = problem.cov_chol.T @ T
    U, sv, _ = np.linalg.svd(T, full_matrices=False)
    return U, sv**2


def optimal_heads(problem: Problem, B: np.ndarray) -> np.ndarray:
    """Population-optimal heads (S, N, r) for a fixed shared representation ``B`` (S, d, r), per worker.

    Least squares of each worker's clean labels on the features: exact for the
    linear problem, on the evaluation sample for the nonlinear one.
    """
    B = np.asarray(B, dtype=float)
    if problem.kind == "linear":
        SB = problem.covariance @ B  # (S, d, r)
        gram = np.swapaxes(B, -1, -2) @ SB  # (S, r, r)
        rhs = np.einsum("sdr,snd->snr", SB, problem.targets)
        return np.linalg.solve(gram[:, None], rhs[..., None])[..., 0]
    act, _ = ACTIVATIONS[problem.activation]
    feats = act(problem.X_eval @ B[:, None])  # (S, N, m, r)
    gram = np.swapaxes(feats, -1, -2) @ feats
    rhs = np.einsum("snmr,snm->snr", feats, problem.eval_targets)
    ridge = 1e-10 * np.eye(B.shape[-1])
    return np.linalg.solve(gram + ridge, rhs[..., None])[..., 0]


def best_rank_fit(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The best model of the model class: heads (S, N, r) and a shared representation (S, d, r).

    Realizable problem: the truth itself, (w_i*, B*). Misspecified linear
    problem: the mean risk (1/(2N)) ||K^T B Theta^T - K^T T||_F^2 over rank-r
    products is minimised by the top r left singular vectors U_r of K^T T
    (Eckart-Young), so span(B) = span(K^{-T} U_r), which lies inside
    span(B*) when Sigma = I; B is that span's orthonormal basis and the heads
    are :func:`optimal_heads`. Its excess risk is
    :attr:`Problem.approximation_error`. Where singular values tie (balanced
    heads with head_mean 0 give equal ones) every r of them is a best fit;
    this is one of them. Misspecified nonlinear problem: the same construction
    from the linear targets B* w_i* (the nonlinear best fit is a non-convex
    problem), with heads fitted on the evaluation sample: a point near the
    best fit, not certified to be it.
    """
    if not problem.misspecified:
        return problem.heads_star.copy(), problem.B_star.copy()
    U = _whitened_target_spectrum(problem)[0][..., :problem.rank]
    B = U if problem.cov_chol is None else np.linalg.solve(np.swapaxes(problem.cov_chol, -1, -2), U)
    B, upper = np.linalg.qr(B)
    B = B * np.sign(np.diagonal(upper, axis1=-2, axis2=-1))[:, None, :]  # a fixed basis: no QR sign ambiguity
    return optimal_heads(problem, B), B


def _average_and_consensus(B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network average phibar (..., d, r), its transpose (..., r, d) (both contiguous) and the consensus error C (...).

    ``B`` (..., N, d, r), any leading axes (seeds, or rounds and seeds). Works
    on whichever orientation of B is contiguous (the projected sampler's engine
    keeps the representations transposed): C sums over every entry, so the
    layout does not matter to it, and no copy of B is made.
    """
    N = B.shape[-3]
    transposed = not B.flags.c_contiguous and np.swapaxes(B, -1, -2).flags.c_contiguous
    work = np.swapaxes(B, -1, -2) if transposed else np.ascontiguousarray(B)
    lead = work.shape[:-3]
    flat = work.reshape(lead + (N, -1))
    bar = np.add.reduce(flat, axis=-2) / N  # the network average, as B.mean(axis=-3) computes it
    dev = flat - bar[..., None, :]
    # one dot product per worker, summed: BLAS threads a single long dot product, and on a loaded
    # machine waiting for the second thread costs far more than the product itself
    C = (dev[..., None, :] @ dev[..., :, None])[..., 0, 0].sum(axis=-1) / N
    bar = bar.reshape(lead + work.shape[-2:])
    if transposed:
        return np.ascontiguousarray(np.swapaxes(bar, -1, -2)), bar, C
    return bar, np.ascontiguousarray(np.swapaxes(bar, -1, -2)), C


def linear_stationarity(problem: Problem, theta: np.ndarray, B: np.ndarray) -> dict[str, np.ndarray]:
    """R, H, C and G of :func:`population_metrics` for the linear problem, for a stack of states at once.

    ``theta`` (..., S, N, r) and ``B`` (..., S, N, d, r): any leading axes
    (e.g. several rounds), in any memory orientation of B's last two axes. The
    engine evaluates these every round of a linear run; stacking rounds makes
    that a few numpy calls per stack instead of per round. Returns arrays of
    shape (..., S).
    """
    N = theta.shape[-2]
    Bbar, Bbar_t, C = _average_and_consensus(B)
    # population_loss_and_grads at phibar, without forming N gradients of size d x r:
    # grad_theta F_i = phibar^T Sigma v_i and mean_i grad_Phi F_i = (1/N) sum_i Sigma v_i theta_i^T
    v = theta @ Bbar_t - problem.targets  # (..., S, N, d)
    sv = v if problem.cov_chol is None else v @ problem.covariance
    g_theta = sv @ Bbar  # (..., S, N, r)
    grad_rep = np.swapaxes(sv, -1, -2) @ theta / N  # (..., S, d, r)
    R = np.einsum("...dr,...dr->...", grad_rep, grad_rep)
    H = np.einsum("...nr,...nr->...", g_theta, g_theta) / N
    return {"R": R, "H": H, "C": C, "G": R + H / N}


def population_metrics(
    problem: Problem, theta: np.ndarray, B: np.ndarray, *, ground_truth: bool = True
) -> dict[str, np.ndarray]:
    """The convergence measures of docs/theory.md, section 4, per seed (arrays of shape (S,)).

    R   = ||grad_Phi F(Theta, phibar)||^2          representation stationarity
    H   = mean_i ||grad_theta F_i(theta_i, phibar)||^2   head stationarity
    C   = mean_i ||Phi_i - phibar||_F^2            consensus error
    G   = R + H / N                                full stationarity of F
    and, with ``ground_truth``: ``subspace`` (principal-angle distance of
    span(phibar) to span(B*), :func:`subspace_distance`) and ``excess_risk``
    (mean over workers of the personalized population risk of
    (theta_i, Phi_i) above the noise floor). For a misspecified problem
    (``true_rank > rank``) the excess risk keeps this definition, so it stays
    comparable with the realizable problem's; it no longer tends to 0 but to
    at least :attr:`Problem.approximation_error`, the best rank-r fit's.
    """
    S, N = theta.shape[:2]
    if problem.kind == "linear":
        out = linear_stationarity(problem, theta, B)
        Bbar = _average_and_consensus(B)[0] if ground_truth else None
    else:
        Bbar, _, C = _average_and_consensus(B)
        _, g_theta, g_B = population_loss_and_grads(problem, theta, Bbar)
        grad_rep = g_B.mean(axis=1)
        R = np.einsum("sdr,sdr->s", grad_rep, grad_rep)
        H = np.einsum("snr,snr->s", g_theta, g_theta) / N
        out = {"R": R, "H": H, "C": C, "G": R + H / N}
    if ground_truth:
        out["subspace"] = subspace_distance(Bbar, problem.B_star)
        excess, _, _ = population_loss_and_grads(problem, theta, B, grads=False)
        out["excess_risk"] = excess.mean(axis=1)
    return out
