"""The one sweep task every verification runs: a cell (N, K, graph, algorithm, ...) x seeds.

``simulate_cell`` follows the :mod:`deprl_theory.sweep` task contract: seed
``j``'s numbers depend only on ``(base_seed, params, j)``. The problem
instance of seed ``j`` is drawn from the problem's own parameters and ``j``
only (not N, K, the graph or the algorithm), so every cell of a sweep sees the
same true representation and the same first heads: common random numbers make
the comparison across N and K sharper.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence


from ._rng import derive_seed
from .engine import run, theory_step_sizes
from .graphs import mixing_matrix, mixing_rate
from .problems import Problem, make_problem
from .sweep import cell_seed

__all__ = ["CELL_DEFAULTS", "PROBLEM_KEYS", "simulate_cell", "cell_problem", "cell_params", "build_mixing", "cell_cost",
           "TASK_VERSION"]

#: bump when simulate_cell's numbers change (part of every cache key)
TASK_VERSION = "2"

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
    "activation": "tanh",
    "n_eval": 500,
    "beta_max": 0.5,
    "alpha_max": 0.5,
    "trace_points": 40,
}

#: the parameters that define the problem instance (not the run)
PROBLEM_KEYS = ("problem", "dim", "rank", "noise", "heterogeneity", "activation", "n_eval", "batch")


def cell_params(**overrides: Any) -> dict:
    """A full cell: defaults updated by ``overrides`` (unknown names are an error)."""
    unknown = set(overrides) - set(CELL_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown cell parameter(s): {', '.join(sorted(unknown))}")
    params = dict(CELL_DEFAULTS)
    params.update(overrides)
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


def cell_cost(params: Mapping[str, Any]) -> float:
    """Relative cost of a cell, for load balancing: rounds x workers x (tau + 1)."""
    return float(params["K"]) * float(params["N"]) * (int(params["tau"]) + 1)


def cell_problem(params: Mapping[str, Any], seeds: Sequence[int], base_seed: int = 0) -> Problem:
    """The problem instances of a cell, one per seed index.

    Seed ``j``'s instance depends on the problem parameters (:data:`PROBLEM_KEYS`)
    and ``j`` only, so every cell of a sweep, and the constants estimated for
    it, see the same instances.
    """
    p = {**CELL_DEFAULTS, **params}
    key = tuple((k, p[k]) for k in PROBLEM_KEYS)
    return make_problem(
        p["problem"], int(p["N"]), dim=p["dim"], rank=p["rank"], noise=p["noise"], batch=p["batch"],
        heterogeneity=p["heterogeneity"], activation=p["activation"] or "tanh", n_eval=p["n_eval"] or 500,
        seed=[derive_seed(base_seed, "problem", key, int(j)) for j in seeds],
    )


def simulate_cell(params: Mapping[str, Any], seeds: tuple, base_seed: int) -> dict[int, dict]:
    """Run one cell for the given seed indices (vectorized over seeds).

    Returns, per seed index, the time averages of R, H, C, G, the final
    metrics (including subspace distance and excess risk), the divergence flag
    with its round and step sizes, the spectral quantities of W and a
    downsampled trace.
    """
    p = {**CELL_DEFAULTS, **params}
    N, K = int(p["N"]), int(p["K"])
    problem = cell_problem(p, seeds, base_seed)
    W = None if p["algorithm"] in ("local", "centralized") else build_mixing(p, base_seed)
    if W is not None:
        rho = float(mixing_rate(W))
    else:
        rho = 0.0 if p["algorithm"] == "centralized" else 1.0
    steps = theory_step_sizes(N, K, int(p["tau"]), c=p["c"], head_rule=p["head_rule"],
                              head_step=p["head_step"], beta_max=p["beta_max"], alpha_max=p["alpha_max"])
    res = run(problem, W, algorithm=p["algorithm"], rounds=K, tau=int(p["tau"]), steps=steps,
              eval_every=max(1, K // max(1, int(p["trace_points"]))),
              seed=[cell_seed(base_seed, dict(params), int(j)) for j in seeds], validate=False)
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
            "trace": {"round": list(map(int, res.trace["round"])),
                      **{m: [float(x) for x in res.trace[m][pos]] for m in ("R", "H", "C", "G")}},
        }
    return out
