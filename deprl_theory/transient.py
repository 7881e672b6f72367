"""When does linear speedup start? The consensus transient, predicted and measured.

THEORY section 5: the consensus term ~ N rho^2 / (K (1 - rho)^2) is of higher
order and falls below the leading (N K)^(-1/2) term after a transient
``K0 ~ N^3 rho^4 / (1 - rho)^4``.

* :func:`predicted_K0` evaluates K0 of the default bound template with the
  constants estimated on the very problem instances a sweep runs on. The
  template's absolute constants are worst-case, so this is an upper estimate.
* :func:`transient_cells` finds, per N, the leading K of the grid that are not
  yet on the asymptotic power law, from the measurements alone: a cell is
  transient while the local log-log slope between it and the next K differs
  from the slope of the largest K of that N by more than ``tol``. It compares
  the curve with its own tail, not with the -1/2 the theory predicts, so it
  cannot manufacture agreement with the theory.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["predicted_K0", "transient_cells"]


def predicted_K0(params: Mapping[str, Any], rho: float, *, base_seed: int = 0, n_seeds: int = 2) -> dict:
    """K0 of the default template at ``rho`` with constants estimated on the cell's problem.

    Parameters
    ----------
    params : cell parameters (see :func:`deprl_theory.experiments.cell_params`)
    rho : mixing rate of the cell's W
    base_seed, n_seeds : which problem instances to estimate the constants on

    Returns
    -------
    dict with ``K0`` (float), ``expr`` (the symbolic K0), ``how`` and ``constants``.
    """
    from .constants import estimate_constants
    from .experiments import cell_problem
    from .spectral import predicted_transient

    if rho <= 1e-12:  # numerically exact averaging
        return {"K0": 0.0, "how": "rho = 0 (exact averaging): no consensus term, no transient"}
    if rho >= 1:
        return {"K0": None, "how": "rho = 1: W does not mix, the consensus term never dies"}
    problem = cell_problem(params, tuple(range(n_seeds)), base_seed)
    constants = estimate_constants(problem, seed=base_seed)
    pred = predicted_transient(constants.symbols(), int(params["N"]), [rho], c=float(params["c"]), tau=int(params["tau"]))
    how = ("K0 of the default template (beta = c sqrt(N/K), a = 1/N) where T_cons meets the leading term, "
           f"constants estimated on {n_seeds} problem instances (max over seeds); the template's absolute "
           "constants are worst-case, so this over-estimates the transient")
    return {"K0": float(pred["values"][0]), "expr": pred["expr"], "how": how,
            "constants": constants.symbols()}


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
