"""When does linear speedup start? The one home of the consensus transient, predicted and measured.

THEORY section 5: the consensus term ~ N rho^2 / (K (1 - rho)^2) is of higher
order and falls below the leading (N K)^(-1/2) term after a transient
``K0 ~ N^3 rho^4 / (1 - rho)^4``.

* :func:`template_K0` evaluates K0 of the default bound template
  (:func:`deprl_theory.bound.transient_K0` under ``beta = c sqrt(N/K)``,
  ``a = 1/N``) for given constants; :func:`predict_transient` does so with the
  constants estimated on the very problem instances a sweep runs on. The
  template's absolute constants are worst-case, so this is an upper estimate.
* :func:`transient_cells` finds, per N, the leading K of a grid that are not
  yet on the asymptotic power law, from the measurements alone: a cell is
  transient while the local log-log slope between it and the next K differs
  from the slope of the largest K of that N by more than ``tol``. It compares
  the curve with its own tail, not with the -1/2 the theory predicts, so it
  cannot manufacture agreement with the theory.
* :func:`measured_transient` finds the first K of a grid from which Gbar stays
  within a factor of a reference without consensus error (the centralized run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from ..bound import Transient, default_bound, evaluate_expr, theory_step_rule, transient_K0
from ..constants import estimate_constants
from .cells import cell_problem

__all__ = ["PredictedTransient", "template_transient", "template_K0", "predict_transient", "transient_cells",
           "measured_transient"]


@dataclass(frozen=True)
class PredictedTransient:
    """The template's K0 at one cell, with how it was obtained.

    ``K0`` is None when there is no transient to speak of (no mixing at all).
    """

    K0: float | None
    how: str
    expr: str | None = None
    constants: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"K0": self.K0, "how": self.how}
        if self.expr is not None:
            out["expr"] = self.expr
        if self.constants:
            out["constants"] = dict(self.constants)
        return out


@lru_cache(maxsize=1)
def template_transient() -> Transient:
    """K0 of the default template under ``beta = c sqrt(N/K)``, ``a = 1/N`` (symbolic, computed once)."""
    return transient_K0(default_bound(), theory_step_rule("1/N"))


def template_K0(constants: Mapping[str, float], n: int, rho: Sequence[float] | float, *, c: float,
                tau: int) -> np.ndarray:
    """The template's K0 at every ``rho`` (0 where rho = 0: exact averaging has no transient)."""
    rho = np.asarray(rho, dtype=float)
    values = {k: v for k, v in {**dict(constants), "c": c, "tau": tau, "N": n}.items() if k != "rho"}
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = evaluate_expr(template_transient().K0, values, rho=rho)
    return np.where(rho == 0, 0.0, vals)


def predict_transient(params: Mapping[str, Any], rho: float, *, base_seed: int = 0,
                      n_seeds: int = 2) -> PredictedTransient:
    """K0 of the default template at ``rho`` with constants estimated on the cell's problem.

    Parameters
    ----------
    params : cell parameters (see :func:`deprl_theory.experiments.cell_params`)
    rho : mixing rate of the cell's W (0 for exact averaging, 1 for none)
    base_seed, n_seeds : which problem instances to estimate the constants on
    """
    if params.get("algorithm") == "local" or rho >= 1:
        return PredictedTransient(None, "no mixing (rho = 1): the consensus term never dies, no transient to reach")
    if rho <= 1e-12:
        return PredictedTransient(0.0, "rho = 0 (exact averaging): no consensus term, no transient")
    problem = cell_problem(params, tuple(range(n_seeds)), base_seed)
    constants = estimate_constants(problem, seed=base_seed).symbols()
    K0 = float(template_K0(constants, int(params["N"]), [rho], c=float(params["c"]), tau=int(params["tau"]))[0])
    how = ("K0 of the default template (beta = c sqrt(N/K), a = 1/N) where T_cons meets the leading term, "
           f"constants estimated on {n_seeds} problem instances (max over seeds); the template's absolute "
           "constants are worst-case, so this over-estimates the transient")
    return PredictedTransient(K0, how, str(template_transient().K0), constants)


def transient_cells(table: Mapping[tuple[int, int], np.ndarray], *, tol: float = 0.15) -> list[dict]:
    """Cells whose K is still in the transient, measured from the data.

    Parameters
    ----------
    table : mapping (N, K) -> array over seeds of the time-averaged metric
    tol : float
        Largest allowed difference between a local slope and the tail slope.

    Returns
    -------
    list of ``{"N", "K", "why"}``; per N at least the two largest K are kept.

    Examples
    --------
    >>> import numpy as np
    >>> t = {(4, k): np.array([v]) for k, v in [(100, 8.0), (200, 1.0), (400, 0.7), (800, 0.5)]}
    >>> [c["K"] for c in transient_cells(t)]
    [100]
    """
    out = []
    for n in sorted({n for n, _ in table}):
        ks = sorted(k for m, k in table if m == n)
        if len(ks) < 3:
            continue
        with np.errstate(all="ignore"):
            y = np.array([np.nanmean(np.log(table[(n, k)])) for k in ks])
        x = np.log(np.array(ks, dtype=float))
        if not np.all(np.isfinite(y)):
            continue
        slopes = np.diff(y) / np.diff(x)
        tail = slopes[-1]
        for j in range(len(ks) - 2):
            if abs(slopes[j] - tail) > tol:
                out.append({"N": n, "K": ks[j],
                            "why": f"local slope {slopes[j]:+.2f} from K = {ks[j]} to {ks[j + 1]} differs from "
                                   f"the tail slope {tail:+.2f} by more than {tol:g}"})
            else:
                break
    return out


def measured_transient(rounds: Sequence[int], gbar: np.ndarray, gbar_ref: np.ndarray,
                       factor: float = 1.25) -> int | None:
    """Smallest K of the grid from which on Gbar stays within ``factor`` of the reference.

    ``gbar`` and ``gbar_ref`` are (len(rounds), S); the seed means are
    compared.  Returns None if even the largest K is not within the factor
    (the transient lies beyond the grid).
    """
    if not factor > 1:
        raise ValueError(f"factor must exceed 1, got {factor}")
    rounds = np.asarray(rounds)
    with np.errstate(all="ignore"):
        ratio = np.nanmean(np.asarray(gbar, float), axis=1) / np.nanmean(np.asarray(gbar_ref, float), axis=1)
    ok = ratio <= factor
    for i in range(len(rounds)):
        if ok[i:].all():
            return int(rounds[i])
    return None
