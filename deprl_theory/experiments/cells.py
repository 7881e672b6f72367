"""The one sweep task every verification runs: a cell (N, K, graph, algorithm, ...) x seeds.

``simulate_cell`` follows the :mod:`deprl_theory.sweep` task contract: seed
``j``'s numbers depend only on ``(base_seed, params, j)``. The problem
instance of seed ``j`` is drawn from the problem's own parameters and ``j``
only (not N, K, the graph or the algorithm), so every cell of a sweep sees the
same true representation and the same first heads: common random numbers make
the comparison across N and K sharper.

:func:`run_cell` is the same computation returning the engine's full
:class:`~deprl_theory.engine.RunResult`; ``verification.run`` calls it, so
one ``--seed`` reproduces a sweep cell exactly.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._rng import derive_seed
from ..engine import BETA_RULES, METRICS, RunResult, StepSizes, run, theory_step_sizes
from ..graphs import mixing_matrix, mixing_rate
from ..problems import Problem, make_problem
from ..resources import MemoryEstimate, run_memory
from ..sweep import cell_seed

__all__ = ["CELL_DEFAULTS", "OPTIONAL_KEYS", "PROBLEM_KEYS", "TASK_VERSION", "simulate_cell", "run_cell",
           "cell_problem", "cell_params", "cell_steps", "build_mixing", "cell_rho", "checked_rho", "check_cells",
           "cells_memory", "cell_cost", "validate_result"]

#: bump when simulate_cell's numbers change (part of every cache key)
TASK_VERSION = "5"

#: every parameter of a cell, with its default
CELL_DEFAULTS: dict[str, Any] = {
    "problem": "linear",
    "N": 8,
    "K": 1000,
    "topology": "exponential",
    "weights": "metropolis",
    "gap": None,  # exact_gap family only
    "lazy": None,
    "algorithm": "deprl",
    "tau": 5,
    "c": 0.5,
    "head_rule": "1/N",
    "head_step": None,
    "batch": 10,
    "dim": 20,
    "rank": 3,
    "noise": 1.0,
    "heterogeneity": 1.0,
    "heads": "balanced",
    "activation": "tanh",
    "n_eval": 500,
    "beta_max": 0.5,
    "alpha_max": 0.5,
    "trace_points": 40,
    "sampler": "projected",
}

#: parameters a cell carries only when they are set (the graph's own: erdos_renyi's p, random_regular's
#: degree; the problem's true_rank, set only for a misspecified model), so that cells without them keep
#: their keys, and with them their random streams
OPTIONAL_KEYS = ("p", "degree", "true_rank", "beta_rule", "head_mean")

#: the parameters that define the problem instance (not the run); an optional one (true_rank) enters the
#: instance's seed only when it is set, so realizable cells keep the instances they always had
PROBLEM_KEYS = ("problem", "dim", "rank", "noise", "heterogeneity", "heads", "activation", "n_eval", "batch",
                "true_rank", "head_mean")

#: the metrics a cell's trace keeps
_TRACE_METRICS = ("R", "H", "C", "G")


def cell_params(**overrides: Any) -> dict:
    """A full cell: defaults updated by ``overrides`` (unknown names are an error).

    ``true_rank`` (the truth's rank; None, the default, for a realizable
    problem) must exceed ``rank`` when given. ``head_mean`` (the mean of the
    true heads, 0 by default and then not carried) gives a homogeneous problem
    signal: with ``heterogeneity=0`` every worker has the head ``head_mean``.
    """
    unknown = set(overrides) - set(CELL_DEFAULTS) - set(OPTIONAL_KEYS)
    if unknown:
        raise ValueError(f"unknown cell parameter(s): {', '.join(sorted(unknown))}")
    params = dict(CELL_DEFAULTS)
    params.update({k: v for k, v in overrides.items() if k not in OPTIONAL_KEYS or v is not None})
    # the theorem's step is the default and is not carried, so default cells keep their keys and streams
    if params.get("beta_rule") == BETA_RULES[0]:
        del params["beta_rule"]
    if params.get("head_mean") is not None:  # the mean of the true heads; 0, the default, is not carried
        if not (isinstance(params["head_mean"], (int, float)) and not isinstance(params["head_mean"], bool)
                and math.isfinite(params["head_mean"])):
            raise ValueError(f"head_mean must be a finite number, got {params['head_mean']!r}")
        params["head_mean"] = float(params["head_mean"])
        if params["head_mean"] == 0.0:
            del params["head_mean"]
    if params.get("beta_rule") is not None and params["beta_rule"] not in BETA_RULES:
        raise ValueError(f"unknown beta rule {params['beta_rule']!r}; use one of {', '.join(BETA_RULES)}")
    true_rank = params.get("true_rank")
    if true_rank is not None and (isinstance(true_rank, bool) or not isinstance(true_rank, int)
                                  or true_rank <= params["rank"]):
        raise ValueError(f"true rank {true_rank!r} must be an integer above the model's rank {params['rank']} "
                         "(a misspecified model); leave it out for a realizable problem")
    if params["problem"] != "nonlinear":
        params["activation"] = None
        params["n_eval"] = None
    if params["topology"] != "exact_gap":
        params["gap"] = None
    return params


def build_mixing(params: Mapping[str, Any], base_seed: int = 0):
    """The mixing matrix of a cell (random graphs are seeded by the base seed, N and topology)."""
    topology, n = params["topology"], int(params["N"])
    extra = {}
    if topology == "exact_gap":
        extra["gap"] = params["gap"]
    for key in ("p", "degree"):
        if params.get(key) is not None:
            extra[key] = params[key]
    seed = derive_seed(base_seed, "graph", topology, n)
    sparse = n > 256 and topology not in ("complete", "exact_gap")
    return mixing_matrix(topology, n, weights=params.get("weights", "metropolis"), seed=seed,
                         lazy=params.get("lazy"), sparse=sparse, **extra)


def cell_rho(params: Mapping[str, Any], W) -> float:
    """rho of the matrix the cell's algorithm mixes with: 0 for exact averaging, 1 for none."""
    if params["algorithm"] == "centralized":
        return 0.0
    if params["algorithm"] == "local":
        return 1.0
    return float(mixing_rate(W))


def checked_rho(params: Mapping[str, Any], base_seed: int = 0) -> float:
    """Build the cell's mixing matrix, check it against A4 when the algorithm gossips with it, return rho.

    Raises
    ------
    ValueError
        ``topology T with N = n: ...`` naming what cannot be built, or
        (:class:`~deprl_theory.graphs.MixingMatrixError`) the A4 property W breaks.
    """
    from ..graphs import MixingMatrixError, check_mixing

    where = f"topology {params['topology']} ({params.get('weights', 'metropolis')} weights) with N = {params['N']}"
    try:
        W = None if params["algorithm"] in ("local", "centralized") else build_mixing(params, base_seed)
        if W is not None:
            check_mixing(W)
    except MixingMatrixError as exc:
        raise MixingMatrixError(f"{where} breaks A4: {exc}", exc.property) from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return cell_rho(params, W)


def check_cells(cells: Sequence[Mapping[str, Any]], base_seed: int = 0) -> dict[tuple, float]:
    """Check every cell before anything runs: each distinct graph is built and checked (A4), each distinct
    problem is drawn for one seed (sizes, head design against N, ...).

    Returns rho per ``(algorithm, topology, weights, gap, N)``.

    Raises
    ------
    ValueError
        Naming the first cell that cannot run and why.
    """
    out: dict[tuple, float] = {}
    problems = set()
    for params in cells:
        key = (params["algorithm"], params["topology"], params.get("weights"), params.get("gap"), params["N"])
        if key not in out:
            out[key] = _checked_rho_once(params, base_seed)
        p = {**CELL_DEFAULTS, **params}
        problem_key = (int(p["N"]),) + tuple(p.get(k) for k in PROBLEM_KEYS)
        if problem_key not in problems:
            problems.add(problem_key)
            _problem_checked_once(p, base_seed)
    return out


# Studies check their cells when they are built, and a run rebuilds its study at every look: a passed
# check is remembered (keyed by every parameter but K, so an over-specific key, never a wrong one); a
# failed one raises again each time.
_PASSED: dict[tuple, Any] = {}
_MEMO_SIZE = 8192


def _once(what: str, params: Mapping[str, Any], base_seed: int, check: Callable[[], Any]) -> Any:
    key = (what, json.dumps({k: v for k, v in params.items() if k != "K"}, sort_keys=True, default=str),
           int(base_seed))
    if key not in _PASSED:
        if len(_PASSED) >= _MEMO_SIZE:
            _PASSED.clear()
        _PASSED[key] = check()
    return _PASSED[key]


def _checked_rho_once(params: Mapping[str, Any], base_seed: int) -> float:
    return _once("rho", params, base_seed, lambda: checked_rho(params, base_seed))


def _problem_checked_once(p: Mapping[str, Any], base_seed: int) -> None:
    def check() -> None:
        try:
            cell_problem(p, (0,), base_seed)
        except ValueError as exc:
            raise ValueError(f"N = {p['N']}: {exc}") from None

    _once("problem", {"N": p["N"], **{k: p.get(k) for k in PROBLEM_KEYS}}, base_seed, check)


def cells_memory(cells: Sequence[Mapping[str, Any]], seeds: int) -> MemoryEstimate:
    """The largest estimated peak memory of one cell run with ``seeds`` seeds at once (see :mod:`..resources`)."""
    best = None
    for params in cells:
        p = {**CELL_DEFAULTS, **params}
        # the truth's rank sizes the nonlinear problem's clean-label features: count the larger rank
        est = run_memory(seeds=seeds, workers=int(p["N"]), dim=int(p["dim"]),
                         rank=max(int(p["rank"]), int(p.get("true_rank") or 0)),
                         batch=int(p["batch"]), tau=int(p["tau"]), rounds=int(p["K"]),
                         nonlinear=p["problem"] == "nonlinear", n_eval=int(p["n_eval"] or 0),
                         sparse=int(p["N"]) > 256 and p["topology"] not in ("complete", "exact_gap"))
        if best is None or est.bytes > best.bytes:
            best = est
    return best


def cell_cost(params: Mapping[str, Any]) -> float:
    """Relative cost of a cell, for load balancing: rounds x workers x (tau + 1)."""
    return float(params["K"]) * float(params["N"]) * (int(params["tau"]) + 1)


def cell_problem(params: Mapping[str, Any], seeds: Sequence[int], base_seed: int = 0) -> Problem:
    """The problem instances of a cell, one per seed index.

    Seed ``j``'s instance depends on the problem parameters (:data:`PROBLEM_KEYS`)
    and ``j`` only, so every cell of a sweep, and the constants estimated for
    it, see the same instances. An optional parameter that is not set is not
    part of the key: a realizable cell's instances are those it always had.
    """
    p = {**CELL_DEFAULTS, **params}
    key = tuple((k, p.get(k)) for k in PROBLEM_KEYS if k not in OPTIONAL_KEYS or p.get(k) is not None)
    return make_problem(
        p["problem"], int(p["N"]), dim=p["dim"], rank=p["rank"], true_rank=p.get("true_rank"), noise=p["noise"],
        batch=p["batch"], heterogeneity=p["heterogeneity"], heads=p["heads"], activation=p["activation"] or "tanh",
        n_eval=p["n_eval"] or 500, head_mean=p.get("head_mean") or 0.0,
        seed=[derive_seed(base_seed, "problem", key, int(j)) for j in seeds],
    )


def cell_steps(params: Mapping[str, Any]) -> StepSizes:
    """The theory's step sizes of a cell (beta = c sqrt(N/K), alpha = a beta / tau, capped)."""
    p = {**CELL_DEFAULTS, **params}
    return theory_step_sizes(int(p["N"]), int(p["K"]), int(p["tau"]), c=p["c"], head_rule=p["head_rule"],
                             head_step=p["head_step"], beta_max=p["beta_max"], alpha_max=p["alpha_max"],
                             beta_rule=p.get("beta_rule") or BETA_RULES[0])


def run_cell(params: Mapping[str, Any], seeds: Sequence[int], base_seed: int, *,
             steps: StepSizes | None = None, eval_every: int | None = None) -> tuple[RunResult, float]:
    """Run one cell for the given seed indices; return the engine's result and the cell's rho.

    ``steps`` replaces the theory's step sizes (constant steps of
    ``verification.run``); ``eval_every`` the trace resolution. Neither
    changes the random streams, which depend on ``(base_seed, params, j)``.
    """
    p = {**CELL_DEFAULTS, **params}
    K = int(p["K"])
    problem = cell_problem(p, seeds, base_seed)
    W = None if p["algorithm"] in ("local", "centralized") else build_mixing(p, base_seed)
    rho = cell_rho(p, W)
    if eval_every is None:
        eval_every = max(1, K // max(1, int(p["trace_points"])))
    res = run(problem, W, algorithm=p["algorithm"], rounds=K, tau=int(p["tau"]), steps=steps or cell_steps(p),
              eval_every=eval_every, seed=[cell_seed(base_seed, dict(params), int(j)) for j in seeds],
              validate=False, sampler=p["sampler"])
    return res, rho


def simulate_cell(params: Mapping[str, Any], seeds: tuple, base_seed: int) -> dict[int, dict]:
    """Run one cell for the given seed indices (vectorized over seeds).

    Returns, per seed index, the time averages of R, H, C, G, the final
    metrics (including subspace distance and excess risk), the divergence flag
    with its round and step sizes, the spectral quantities of W and a
    downsampled trace.
    """
    res, rho = run_cell(params, seeds, base_seed)
    steps = res.steps
    with np.errstate(all="ignore"):  # a diverged seed's parameters are NaN
        head_norm = np.linalg.norm(res.theta, axis=-1).mean(axis=1)
        rep_norm = np.linalg.norm(res.B.mean(axis=1), axis=(-2, -1))
    out = {}
    for pos, j in enumerate(seeds):
        out[int(j)] = {
            "averages": {m: float(v[pos]) for m, v in res.averages.items()},
            "final": {m: float(v[pos]) for m, v in res.final.items()},
            "diverged": bool(res.diverged[pos]),
            "diverged_round": int(res.diverged_round[pos]),
            "alpha": steps.alpha,
            "beta": steps.beta,
            "step_rule": steps.rule,
            "capped": list(steps.capped),
            "rho": rho,
            "spectral_gap": 1.0 - rho,
            "seconds": res.seconds / len(seeds),
            # the model's rescaling symmetry (Phi, theta) -> (c Phi, theta / c) leaves F alone but not R:
            # the final scales show it at work
            "norms": {"theta": float(head_norm[pos]), "phibar": float(rep_norm[pos])},
            "trace": {"round": list(map(int, res.trace["round"])),
                      **{m: [float(x) for x in res.trace[m][pos]] for m in _TRACE_METRICS}},
        }
    return out


def _number(value: Any, where: str, *, finite: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {type(value).__name__}")
    if finite and not math.isfinite(value):
        raise ValueError(f"{where} is {value}, not finite")
    return float(value)


def validate_result(result: Mapping[str, Any]) -> None:
    """Schema check of one :func:`simulate_cell` result (used on everything read from the cache).

    Keys and types, finite values where a finished run has them, equal trace
    lengths; a diverged run must say so consistently (NaN averages, a round).

    Raises
    ------
    ValueError
        Naming the first entry that is wrong.
    """
    diverged = result.get("diverged")
    if not isinstance(diverged, bool):
        raise ValueError(f"'diverged' must be true or false, got {diverged!r}")
    for group in ("averages", "final"):
        values = result.get(group)
        if not isinstance(values, Mapping):
            raise ValueError(f"'{group}' is missing")
        for m in METRICS:
            if m not in values:
                raise ValueError(f"'{group}.{m}' is missing")
            v = _number(values[m], f"'{group}.{m}'", finite=not diverged)
            if not diverged and v < 0:
                raise ValueError(f"'{group}.{m}' = {v} is negative")
    round_ = result.get("diverged_round")
    if not isinstance(round_, int) or isinstance(round_, bool) or (round_ >= 1) != diverged:
        raise ValueError(f"'diverged_round' = {round_!r} disagrees with 'diverged' = {diverged}")
    for key in ("alpha", "beta", "rho", "spectral_gap"):
        _number(result.get(key), f"'{key}'")
    if not 0.0 <= result["rho"] <= 1.0 + 1e-9:
        raise ValueError(f"'rho' = {result['rho']} lies outside [0, 1]")
    trace = result.get("trace")
    if not isinstance(trace, Mapping) or not isinstance(trace.get("round"), list):
        raise ValueError("'trace' is missing")
    lengths = {k: len(v) for k, v in trace.items() if isinstance(v, list)}
    if set(trace) != {"round", *_TRACE_METRICS} or len(set(lengths.values())) != 1:
        raise ValueError(f"'trace' has the wrong keys or lengths: {lengths}")
    norms = result.get("norms")
    if not isinstance(norms, Mapping) or set(norms) != {"theta", "phibar"}:
        raise ValueError("'norms' must hold 'theta' and 'phibar'")
    for key, value in norms.items():
        _number(value, f"'norms.{key}'", finite=not diverged)
    if not isinstance(result.get("step_rule"), str):
        raise ValueError("'step_rule' must be a string")
    np.asarray(trace["round"], dtype=float)  # numbers only
