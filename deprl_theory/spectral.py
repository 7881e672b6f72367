"""The spectral-gap experiment: how the consensus error and the transient depend on rho.

Claim checked (THEORY.md section 5, reconstructed template): at fixed N, K and
step size beta the time-averaged consensus error obeys

    Cbar <= 6 rho^2 beta^2 (sigma_phi^2 + delta^2) / (1 - rho)^2,

so on a log-log plot of Cbar against ``rho / (1 - rho)`` the slope is 2
(prediction), and linear speedup only shows after a transient
``K0 ~ N^3 rho^4 / (1 - rho)^4`` rounds.  The bound is an upper bound: its
``rho^2 / (1 - rho)^2`` is the worst case where the workers' gradient
disagreement is persistent (heterogeneity ``delta``), which accumulates
coherently over ``1 / (1 - rho)`` rounds.  Zero-mean gradient *noise*
accumulates incoherently, giving ``rho^2 / (1 - rho^2)``, slope 2 at large
gaps but slope 1 at small gaps, so a measured slope below 2 at small gaps is a
finding about the template's tightness, not an error.

Graphs: the ``exact_gap`` family ``W = (1 - g) I + g 11^T / N`` sweeps the gap
g over a geometric range with everything else fixed; named topologies (ring,
torus, exponential, hypercube, complete) are placed on the same axes.

Measured transient: the reference without any consensus error is the
``centralized`` algorithm (exact averaging, identical to ``exact_gap`` with
g = 1) on the same (N, K) cells and seeds; the transient of a gap is the
smallest K of the grid from which on (for every larger K of the grid) the
seed-mean Gbar is within ``factor`` (default 1.25) of the reference's.  It
is compared with :func:`deprl_theory.bound.transient_K0` of the default
template under ``beta = c sqrt(N/K)``, ``a = 1/N``, evaluated with the
constants of :mod:`deprl_theory.constants`.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .bound import default_bound, evaluate_expr, theory_step_rule, transient_K0
from .experiments import cell_params
from .rates import SlopeFit, fit_slope

__all__ = [
    "DEFAULT_GAPS",
    "NAMED_TOPOLOGIES",
    "DEFAULT_ROUNDS",
    "PREDICTED_SLOPE",
    "spectral_cells",
    "consensus_slope",
    "slope_verdict",
    "measured_transient",
    "predicted_transient",
    "collect",
    "summarize",
    "spectral_figures",
]

#: geometric range of spectral gaps g of the exact-gap family (rho = 1 - g)
DEFAULT_GAPS = (0.5, 0.3, 0.15, 0.08, 0.04, 0.02)
#: named topologies placed on the same axes
NAMED_TOPOLOGIES = ("ring", "torus", "exponential", "hypercube", "complete")
#: rounds grid for the transient
DEFAULT_ROUNDS = (250, 500, 1000, 2000, 4000)
#: slope of log Cbar against log(rho / (1 - rho)) that the template predicts
PREDICTED_SLOPE = 2.0


def spectral_cells(
    n: int = 16,
    gaps: Sequence[float] = DEFAULT_GAPS,
    topologies: Sequence[str] = NAMED_TOPOLOGIES,
    rounds: Sequence[int] = DEFAULT_ROUNDS,
    **overrides: Any,
) -> list[dict]:
    """The grid of the experiment, as :func:`~deprl_theory.experiments.cell_params` dicts.

    Every gap runs at every K of ``rounds`` (for the transient), the
    centralized reference too; the named topologies run at the largest K only
    (they are points on the consensus plot).

    Parameters
    ----------
    n : int
        Workers N (fixed).
    gaps : sequence of float in (0, 1]
    topologies : sequence of str
    rounds : sequence of int
    **overrides
        Further cell parameters (tau, c, problem, ...).
    """
    gaps = [float(g) for g in gaps]
    bad = [g for g in gaps if not (0 < g <= 1)]
    if bad:
        raise ValueError(f"spectral gaps must lie in (0, 1], got {bad}")
    if len(set(gaps)) != len(gaps):
        raise ValueError(f"gaps must be distinct, got {gaps}")
    rounds = sorted({int(k) for k in rounds})
    if not rounds or rounds[0] < 1:
        raise ValueError(f"rounds must be positive integers, got {rounds}")
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    cells = []
    for K in rounds:
        for g in gaps:
            cells.append(cell_params(N=int(n), K=K, topology="exact_gap", gap=g, **overrides))
        cells.append(cell_params(N=int(n), K=K, algorithm="centralized", topology="complete", **overrides))
    for name in topologies:
        cells.append(cell_params(N=int(n), K=rounds[-1], topology=name, **overrides))
    return cells


def consensus_slope(rho: Sequence[float], cbar: np.ndarray, *, n_boot: int = 2000, ci: float = 0.95,
                    seed: int = 0) -> SlopeFit:
    """Slope of log Cbar against log(rho / (1 - rho)), bootstrapping seeds.

    Parameters
    ----------
    rho : sequence (P,)
        Mixing rates, 0 < rho < 1 (rho = 0 has no consensus error and no log).
    cbar : ndarray (P, S)
        Time-averaged consensus error per point and seed, all at the same
        N, K and beta.

    Returns
    -------
    SlopeFit
        The template predicts slope 2 (``Cbar ∝ beta^2 rho^2 / (1 - rho)^2``).
    """
    rho = np.asarray(rho, dtype=float)
    cbar = np.asarray(cbar, dtype=float)
    if np.any((rho <= 0) | (rho >= 1)):
        raise ValueError(f"every rho must lie in (0, 1) for the log-log fit, got {rho.tolist()}")
    if np.any(cbar[np.isfinite(cbar)] <= 0):
        raise ValueError("consensus errors must be positive for a log-log fit")
    x = np.log(rho / (1 - rho))
    return fit_slope(x, np.log(cbar), n_boot=n_boot, ci=ci, seed=seed)


def slope_verdict(fit: SlopeFit, predicted: float = PREDICTED_SLOPE) -> tuple[str, str]:
    """``("consistent" | "inconsistent", reason)``: does the slope's CI contain the prediction?"""
    lo, hi = fit.ci
    if lo <= predicted <= hi:
        return "consistent", f"the {predicted:g} predicted by rho^2/(1-rho)^2 lies in the CI [{lo:.3g}, {hi:.3g}]"
    side = "below" if hi < predicted else "above"
    reason = f"CI [{lo:.3g}, {hi:.3g}] lies {side} the predicted {predicted:g}"
    if hi < predicted and lo > 0.75:
        reason += ("; between the slope 1 that zero-mean gradient noise gives at small gaps "
                   "(Cbar ~ rho^2/(1-rho^2)) and the template's worst case 2 (persistent heterogeneity): "
                   "the bound's rho^2/(1-rho)^2 over-states the growth at small gaps")
    return "inconsistent", reason


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


def predicted_transient(constants: Mapping[str, float], n: int, rho: Sequence[float], *, c: float,
                        tau: int) -> dict[str, Any]:
    """K0 of the default template (``beta = c sqrt(N/K)``, ``a = 1/N``) at the given rho.

    Returns ``{"expr": str, "large_N": str, "values": ndarray}``.
    """
    tr = transient_K0(default_bound(), theory_step_rule("1/N"))
    rho = np.asarray(rho, dtype=float)
    values = {**dict(constants), "c": c, "tau": tau, "N": n}
    vals = evaluate_expr(tr.K0, {k: v for k, v in values.items() if k != "rho"}, rho=rho)
    vals = np.where(rho == 0, 0.0, vals)
    return {"expr": str(tr.K0), "large_N": str(tr.K0_large_N), "values": vals}


# --------------------------------------------------------------------------- results


def collect(records: Iterable[Mapping[str, Any]], metric: str = "C") -> dict[tuple, dict[int, float]]:
    """Index sweep records: ``(algorithm, topology, gap, K) -> {seed: time average of metric}``."""
    out: dict[tuple, dict[int, float]] = {}
    for rec in records:
        p, res = rec["params"], rec["result"]
        key = (p["algorithm"], p["topology"], p.get("gap"), int(p["K"]))
        value = float("nan") if res.get("diverged") else float(res["averages"][metric])
        out.setdefault(key, {})[int(rec["seed"])] = value
    return out


def _rho_of(records: Iterable[Mapping[str, Any]]) -> dict[tuple, float]:
    return {(r["params"]["algorithm"], r["params"]["topology"], r["params"].get("gap")): float(r["result"]["rho"])
            for r in records}


def _matrix(table: Mapping[tuple, Mapping[int, float]], keys: Sequence[tuple], seeds: Sequence[int]) -> np.ndarray:
    return np.array([[table.get(k, {}).get(s, np.nan) for s in seeds] for k in keys], dtype=float)


def summarize(
    records: Sequence[Mapping[str, Any]],
    *,
    n: int,
    gaps: Sequence[float],
    topologies: Sequence[str],
    rounds: Sequence[int],
    seeds: Sequence[int],
    constants: Mapping[str, float] | None = None,
    c: float = 0.5,
    tau: int = 5,
    factor: float = 1.25,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Everything the experiment reports, JSON-serialisable (numpy arrays aside).

    Keys: ``consensus_slope`` {value, ci, intercept, n_points, K}, ``predicted_slope``,
    ``verdict``, ``reason``, ``gaps`` (per gap: rho, x = rho/(1-rho), Cbar mean
    and per seed), ``topologies`` (same per named graph), ``transient`` (per
    gap: measured K, predicted K0, reference ratio per K).
    """
    rounds = sorted(int(k) for k in rounds)
    K_fit = rounds[-1]
    C = collect(records, "C")
    G = collect(records, "G")
    rhos = _rho_of(records)
    gap_keys = [("deprl", "exact_gap", float(g), K_fit) for g in gaps]
    rho = np.array([rhos[k[:3]] for k in gap_keys])
    cbar = _matrix(C, gap_keys, seeds)
    fit_mask = (rho > 0) & (rho < 1)
    if fit_mask.sum() < 2:
        raise ValueError("need at least two gaps with 0 < rho < 1 (gap < 1) to fit the consensus slope")
    fit = consensus_slope(rho[fit_mask], cbar[fit_mask], n_boot=n_boot)
    verdict, reason = slope_verdict(fit)
    gap_rows = []
    for g, r, row in zip(gaps, rho, cbar):
        gap_rows.append({"gap": float(g), "rho": float(r), "x": float(r / (1 - r)) if r < 1 else None,
                         "Cbar": float(np.nanmean(row)), "Cbar_seeds": row.tolist(), "in_fit": bool(0 < r < 1)})
    topo_rows = []
    for name in topologies:
        key = ("deprl", name, None, K_fit)
        row = _matrix(C, [key], seeds)[0]
        r = rhos.get(key[:3], float("nan"))
        topo_rows.append({"topology": name, "rho": r, "spectral_gap": 1 - r,
                          "x": float(r / (1 - r)) if 0 <= r < 1 else None,
                          "Cbar": float(np.nanmean(row)), "Cbar_seeds": row.tolist(),
                          "predicted_Cbar": float(np.exp(fit.intercept) * (r / (1 - r)) ** fit.slope) if 0 < r < 1 else None})
    ref = _matrix(G, [("centralized", "complete", None, K) for K in rounds], seeds)
    pred = predicted_transient(constants, n, rho, c=c, tau=tau) if constants else None
    transient_rows = []
    for i, g in enumerate(gaps):
        gm = _matrix(G, [("deprl", "exact_gap", float(g), K) for K in rounds], seeds)
        with np.errstate(all="ignore"):
            ratio = np.nanmean(gm, axis=1) / np.nanmean(ref, axis=1)
        transient_rows.append({
            "gap": float(g), "rho": float(rho[i]),
            "measured_K": measured_transient(rounds, gm, ref, factor),
            "predicted_K0": None if pred is None else float(pred["values"][i]),
            "ratio_to_reference": {str(K): float(v) for K, v in zip(rounds, ratio)},
            "Gbar": {str(K): float(np.nanmean(v)) for K, v in zip(rounds, gm)},
        })
    return {
        "consensus_slope": {**fit.as_dict(), "K": K_fit},
        "predicted_slope": PREDICTED_SLOPE,
        "verdict": verdict,
        "reason": reason,
        "gaps": gap_rows,
        "topologies": topo_rows,
        "transient": {"reference": "centralized (exact averaging) on the same N, K and seeds",
                      "factor": factor, "rounds": rounds,
                      "reference_Gbar": {str(K): float(np.nanmean(v)) for K, v in zip(rounds, ref)},
                      "predicted_K0_expr": None if pred is None else pred["expr"],
                      "predicted_K0_large_N": None if pred is None else pred["large_N"],
                      "rows": transient_rows},
        "_arrays": {"rho": rho, "cbar": cbar, "ref": ref},
    }


def spectral_figures(summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]], seeds: Sequence[int],
                     out_dir: str) -> list:
    """Write the three figures (PNG + PDF, names prefixed ``spectral_``); return the paths."""
    from .plotting import _plt, band, paper_style, save_figure

    plt = _plt()
    paths = []
    fit = summary["consensus_slope"]
    gaps_rows = summary["gaps"]
    tr = summary["transient"]
    rounds = tr["rounds"]
    G = collect(records, "G")
    with paper_style():
        # 1. Cbar vs rho/(1-rho), fitted line, named topologies marked
        fig, ax = plt.subplots(figsize=(5.2, 4))
        pts = [r for r in gaps_rows if r["in_fit"]]
        x = np.array([r["x"] for r in pts])
        samples = np.array([r["Cbar_seeds"] for r in pts])
        order = np.argsort(x)
        band(ax, x[order], samples[order], color="C0", label="exact-gap family")
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xs, np.exp(fit["intercept"]) * xs ** fit["value"], "--", color="C0", lw=1,
                label=f"fit: slope {fit['value']:.2f} [{fit['ci'][0]:.2f}, {fit['ci'][1]:.2f}]")
        anchor = np.exp(fit["intercept"]) * x[order][0] ** fit["value"]
        ax.plot(xs, anchor * (xs / x[order][0]) ** 2, ":", color="gray", lw=1, label="slope 2 (template)")
        for j, t in enumerate(summary["topologies"]):
            if t["x"] and t["x"] > 0 and t["Cbar"] > 0:
                ax.scatter([t["x"]], [t["Cbar"]], marker="s", color=f"C{j + 1}", zorder=3, label=t["topology"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\rho/(1-\rho)$")
        ax.set_ylabel(r"consensus error $\bar C_K$")
        ax.set_title(f"N = {_n_of(records)}, K = {fit['K']}")
        ax.legend(fontsize=7)
        paths += save_figure(fig, out_dir, "spectral_consensus")

        # 2. Gbar vs K per gap, with the centralized reference
        fig, ax = plt.subplots(figsize=(5.2, 4))
        colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, len(tr["rows"])))
        for row, col in zip(tr["rows"], colors):
            m = np.array([[G.get(("deprl", "exact_gap", row["gap"], K), {}).get(s, np.nan) for s in seeds]
                          for K in rounds])
            band(ax, rounds, m, color=col, label=f"g = {row['gap']:g}")
        ref = summary["_arrays"]["ref"]
        band(ax, rounds, ref, color="black", label="centralized", marker="s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rounds K")
        ax.set_ylabel(r"$\bar G_K$")
        ax.legend(fontsize=7, ncol=2)
        paths += save_figure(fig, out_dir, "spectral_gbar_vs_K")

        # 3. measured vs predicted transient against rho/(1-rho)
        fig, ax = plt.subplots(figsize=(5.2, 4))
        xs_all = np.array([r["rho"] / (1 - r["rho"]) for r in tr["rows"]])
        meas = np.array([np.nan if r["measured_K"] is None else r["measured_K"] for r in tr["rows"]], float)
        beyond = np.isnan(meas) & (xs_all > 0)
        ax.scatter(xs_all[~np.isnan(meas)], meas[~np.isnan(meas)], color="C0", label=f"measured (within {tr['factor']:g}x)")
        if beyond.any():
            ax.scatter(xs_all[beyond], np.full(beyond.sum(), rounds[-1] * 1.5), marker="^", color="C0",
                       facecolors="none", label="measured: beyond the K grid")
        pred = np.array([np.nan if r["predicted_K0"] is None else r["predicted_K0"] for r in tr["rows"]], float)
        ok = np.isfinite(pred) & (pred > 0) & (xs_all > 0)
        if ok.any():
            o = np.argsort(xs_all[ok])
            ax.plot(xs_all[ok][o], pred[ok][o], "--", color="C3", label="predicted K0 (template)")
        ax.axhspan(rounds[0], rounds[-1], color="gray", alpha=0.1, lw=0, label="K grid")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\rho/(1-\rho)$")
        ax.set_ylabel("transient rounds")
        ax.legend(fontsize=7)
        paths += save_figure(fig, out_dir, "spectral_transient")
    return paths


def _n_of(records: Sequence[Mapping[str, Any]]) -> int:
    return int(records[0]["params"]["N"]) if records else 0
