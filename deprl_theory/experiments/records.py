"""One way to read sweep records: metric tables keyed by cell parameters, and the long CSV table.

Every experiment indexes the records of :func:`~deprl_theory.sweep.run_sweep`
the same way: pick the cell parameters that name a point (``("N", "K")`` for
the speedup grid, ``("algorithm", "topology", "gap", "K")`` for the consensus
experiment) and get, per point, the time-averaged metric of every seed, NaN
where the run diverged.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..engine import METRICS

__all__ = ["InsufficientData", "seed_mean", "metric_table", "run_rows", "diverged_runs", "step_table"]


class InsufficientData(ValueError):
    """The runs that finished (divergence, failures) do not support an analysis; the message says what is missing.

    Not a user error and not a bug: the sweep ran and its runs are in the
    cache, with every diverged run recorded with its step sizes.
    """


def seed_mean(values, axis: int | None = None):
    """Mean over seeds ignoring NaN (diverged runs); NaN, without a warning, where every seed diverged.

    Examples
    --------
    >>> seed_mean(np.array([[1.0, np.nan], [np.nan, np.nan]]), axis=1)
    array([ 1., nan])
    """
    a = np.asarray(values, dtype=float)
    finite = ~np.isnan(a)
    count = finite.sum(axis=axis)
    total = np.where(finite, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return np.where(count > 0, out, np.nan) if np.ndim(out) else (float(out) if count > 0 else float("nan"))


def metric_table(
    records: Iterable[Mapping[str, Any]],
    metric: str,
    key: Sequence[str] = ("N", "K"),
    *,
    seeds: Sequence[int] | None = None,
    where: Mapping[str, Any] | None = None,
) -> dict[tuple, np.ndarray]:
    """Point -> array over seeds of the time-averaged ``metric`` (NaN where the run diverged).

    Parameters
    ----------
    records : iterable of sweep records
    metric : str
        A key of the result's ``averages`` (R, H, C or G).
    key : sequence of str
        Cell parameters naming a point; integer-valued ones (N, K) become ints.
    seeds : sequence of int, optional
        Align every array to these seed indices (NaN where a seed is missing);
        by default the seeds present, in increasing order.
    where : mapping, optional
        Keep only records whose params have these values.

    Returns
    -------
    dict
        ``{(values of key...): ndarray (S,)}``.

    Examples
    --------
    >>> recs = [{"params": {"N": 4, "K": 10}, "seed": s, "result": {"diverged": s == 1, "averages": {"G": 0.5}}}
    ...         for s in (0, 1)]
    >>> metric_table(recs, "G")
    {(4, 10): array([0.5, nan])}
    """
    cells: dict[tuple, dict[int, float]] = {}
    for rec in records:
        params, res = rec["params"], rec["result"]
        if where and any(params.get(k) != v for k, v in where.items()):
            continue
        point = tuple(int(params[k]) if k in ("N", "K") else params.get(k) for k in key)
        value = float("nan") if res["diverged"] else float(res["averages"][metric])
        cells.setdefault(point, {})[int(rec["seed"])] = value
    out = {}
    for point, by_seed in cells.items():
        order = sorted(by_seed) if seeds is None else list(seeds)
        out[point] = np.array([by_seed.get(s, np.nan) for s in order], dtype=float)
    return out


def run_rows(records: Iterable[Mapping[str, Any]], metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """The long table of a sweep: one row per (cell, seed, metric).

    Columns: every cell parameter, ``seed``, ``metric``, ``value`` (the time
    average), ``final`` (the value at round K), ``diverged``, ``alpha``,
    ``beta``, ``rho``, and the run's final ground-truth measures
    ``final_subspace`` (principal-angle distance to the true representation)
    and ``final_excess_risk`` (above the noise floor) where the records hold them.
    """
    rows = []
    for rec in records:
        res = rec["result"]
        truth = {f"final_{k}": res["final"][k] for k in ("subspace", "excess_risk") if k in res["final"]}
        for m in metrics:
            rows.append({**rec["params"], "seed": rec["seed"], "metric": m, "value": res["averages"][m],
                         "final": res["final"][m], "diverged": res["diverged"], "alpha": res["alpha"],
                         "beta": res["beta"], "rho": res["rho"], **truth})
    return rows


def diverged_runs(records: Iterable[Mapping[str, Any]], key: Sequence[str] = ("N", "K")) -> list[dict[str, Any]]:
    """Every diverged run with the round it diverged at and its step sizes."""
    return [{**{k: r["params"].get(k) for k in key}, "seed": r["seed"], "round": r["result"]["diverged_round"],
             "alpha": r["result"]["alpha"], "beta": r["result"]["beta"]}
            for r in records if r["result"]["diverged"]]


def step_table(records: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, float, float, str]]:
    """The distinct step sizes of a sweep: sorted ``(N, K, alpha, beta, rule)``."""
    return sorted({(r["params"]["N"], r["params"]["K"], r["result"]["alpha"], r["result"]["beta"],
                    r["result"]["step_rule"]) for r in records})
