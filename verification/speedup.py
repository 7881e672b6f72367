"""Does DePRL's convergence improve linearly with the number of workers?

    python -m verification.speedup --n 4 8 16 32

For each N, a geometric grid of rounds K and S seeds, the algorithm runs with
the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau); the
time-averaged metrics Rbar, Hbar, Gbar, Cbar are fitted as
log Mbar = a0 + e_N log N + e_K log K (bootstrap over seeds), and the speedup
exponent s = e_N / e_K gives the verdict (THEORY.md section 6):
linear / sublinear / none / inconclusive.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from deprl_theory.engine import ALGORITHMS
from deprl_theory.experiments import TASK_VERSION, build_mixing, cell_cost, cell_params, simulate_cell
from deprl_theory.graphs import TOPOLOGIES, WEIGHT_RULES, mixing_rate
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from deprl_theory.rates import fit_rate
from deprl_theory.sweep import run_sweep
from verification._cli import ArgumentParser, UsageError, dump_json, run_main

PROG = "python -m verification.speedup"
METRICS = ("R", "H", "G", "C")  # C (consensus error) is stored, not fitted: it is 0 on a complete graph
FIT_METRICS = ("R", "H", "G")
DEFAULT_ROUNDS = (500, 1000, 2000, 4000)
QUICK_ROUNDS = (250, 500, 1000)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=int, nargs="+", default=[4, 8, 16, 32], metavar="N",
                   help="worker counts, at least three distinct, each >= 2 (default: 4 8 16 32)")
    g.add_argument("--rounds", type=int, nargs="+", default=None, metavar="K",
                   help=f"grid of rounds K (default: {' '.join(map(str, DEFAULT_ROUNDS))})")
    g.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 8; 4 with --quick)")
    g.add_argument("--seed", type=int, default=0, help="base seed; every cell and seed derives from it (default 0)")
    g.add_argument("--quick", action="store_true",
                   help=f"small grid (K = {' '.join(map(str, QUICK_ROUNDS))}, 4 seeds) for a smoke test")
    a = p.add_argument_group("algorithm and graph")
    a.add_argument("--algorithm", choices=ALGORITHMS, default="deprl")
    a.add_argument("--topology", default="exponential",
                   help=f"graph family: {', '.join(TOPOLOGIES)} (default exponential: its gap stays bounded)")
    a.add_argument("--weights", choices=WEIGHT_RULES, default="metropolis")
    a.add_argument("--gap", type=float, default=None, help="spectral gap of the exact_gap family")
    a.add_argument("--tau", type=int, default=5, help="local head steps per round (default 5)")
    a.add_argument("--c", type=float, default=0.5, help="beta = c sqrt(N/K) (default 0.5)")
    a.add_argument("--head-rule", default="1/N",
                   help="a in alpha = a beta / tau: '1/N' (default), '1/sqrt(N)' or a number")
    a.add_argument("--head-step", type=float, default=None, help="fixed head step alpha (overrides --head-rule)")
    a.add_argument("--beta-max", type=float, default=0.5, help="stability cap on beta (reported when it binds)")
    a.add_argument("--alpha-max", type=float, default=0.5, help="stability cap on alpha")
    pr = p.add_argument_group("problem")
    pr.add_argument("--problem", choices=("linear", "nonlinear"), default="linear")
    pr.add_argument("--dim", type=int, default=20, help="input dimension d (default 20)")
    pr.add_argument("--rank", type=int, default=3, help="representation rank r (default 3)")
    pr.add_argument("--batch", type=int, default=10, help="minibatch size b (default 10)")
    pr.add_argument("--noise", type=float, default=1.0, help="label noise std (default 1)")
    pr.add_argument("--heterogeneity", type=float, default=1.0, help="spread of the true heads (default 1)")
    pr.add_argument("--activation", choices=("tanh", "sigmoid", "relu"), default="tanh")
    pr.add_argument("--n-eval", type=int, default=500, help="evaluation sample per worker (nonlinear)")
    o = p.add_argument_group("analysis and output")
    o.add_argument("--metric", choices=("G", "R", "H"), default="R",
                   help="metric of the headline verdict (default R, the representation)")
    o.add_argument("--boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    o.add_argument("--transient-tol", type=float, default=0.15,
                   help="measured transient: drop the smallest K of an N while the local log-log slope differs "
                        "from that N's tail slope by more than this (default 0.15; 0 keeps every cell)")
    o.add_argument("--transient-factor", type=float, default=0.0,
                   help="also drop cells with K < factor x the template's predicted K0 (default 0: report only; "
                        "the template's constants are worst-case)")
    o.add_argument("--out", default=None,
                   help="directory for CSV, summary.json, cache and figures "
                        "(default: results/speedup, figures in figures/)")
    o.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    o.add_argument("--no-figures", action="store_true", help="skip the figures")
    x = p.add_argument_group("execution")
    x.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: all cores)")
    x.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT")
    x.add_argument("--no-cache", action="store_true", help="recompute cells already in the cache")
    x.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def validate(args) -> None:
    """Every user error before anything runs or is written."""
    ns = args.n
    if any(n < 2 for n in ns):
        raise UsageError(f"--n: every worker count must be >= 2, got {min(ns)}")
    if len(set(ns)) < 3:
        raise UsageError(f"--n: need at least three distinct worker counts to fit a rate, got {sorted(set(ns))}")
    if args.rounds is not None:
        if any(k < 1 for k in args.rounds):
            raise UsageError(f"--rounds: every K must be a positive integer, got {min(args.rounds)}")
        if len(set(args.rounds)) < 2:
            raise UsageError("--rounds: need at least two distinct K to fit the K exponent")
    if args.seeds is not None and args.seeds < 2:
        raise UsageError(f"--seeds: need at least 2 seeds to bootstrap, got {args.seeds}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.topology not in TOPOLOGIES:
        raise UsageError(f"unknown topology {args.topology!r}; choose from {', '.join(TOPOLOGIES)}")
    if args.topology == "exact_gap" and args.gap is None:
        raise UsageError("--topology exact_gap needs --gap G with 0 < G <= 1")
    for name in ("tau", "dim", "rank", "batch", "boot"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.rank > args.dim:
        raise UsageError(f"--rank ({args.rank}) cannot exceed --dim ({args.dim})")
    if not args.c > 0:
        raise UsageError(f"--c must be positive, got {args.c}")
    if args.noise < 0:
        raise UsageError(f"--noise must be >= 0, got {args.noise}")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")


def make_cells(args, rounds: Sequence[int]) -> list[dict]:
    common = dict(
        problem=args.problem, topology=args.topology, weights=args.weights, gap=args.gap,
        algorithm=args.algorithm, tau=args.tau, c=args.c, head_rule=str(args.head_rule),
        head_step=args.head_step, batch=args.batch, dim=args.dim, rank=args.rank, noise=args.noise,
        heterogeneity=args.heterogeneity, activation=args.activation, n_eval=args.n_eval,
        beta_max=args.beta_max, alpha_max=args.alpha_max,
    )
    return [cell_params(N=n, K=k, **common) for n in sorted(set(args.n)) for k in sorted(set(rounds))]


def predicted_transient(args, cell: dict, rho: float) -> dict:
    """The template's K0(N) with constants estimated on the problem (None if it cannot be had)."""
    if args.algorithm == "local":
        return {"K0": None, "how": "local training has no consensus: no transient"}
    if args.algorithm == "centralized":
        return {"K0": 0.0, "how": "exact averaging: rho = 0, no consensus transient"}
    try:
        from deprl_theory.transient import predicted_K0

        return predicted_K0(cell, rho, base_seed=args.seed)
    except Exception as exc:  # a prediction must never sink the measurement
        return {"K0": None, "how": f"transient prediction failed: {type(exc).__name__}: {exc}"}


def _table(records, metric: str) -> dict:
    """(N, K) -> array over seeds of the time-averaged metric (NaN if diverged)."""
    cells: dict = {}
    for r in records:
        key = (int(r["params"]["N"]), int(r["params"]["K"]))
        res = r["result"]
        val = np.nan if res["diverged"] else res["averages"][metric]
        cells.setdefault(key, {})[r["seed"]] = val
    return {k: np.array([v[s] for s in sorted(v)]) for k, v in cells.items()}


def analyse(records, args, transient: dict) -> dict:
    """Fits and verdicts of every metric, with the transient exclusions."""
    out: dict = {}
    from deprl_theory.transient import transient_cells

    keys = sorted(_table(records, "G"))
    excluded = []
    if args.transient_tol > 0:
        excluded += transient_cells(_table(records, args.metric), tol=args.transient_tol)
    for n, k in keys:
        k0 = transient.get(n, {}).get("K0")
        if (k0 is not None and args.transient_factor > 0 and k < args.transient_factor * k0
                and not any(e["N"] == n and e["K"] == k for e in excluded)):
            excluded.append({"N": n, "K": k, "why": f"K = {k} < {args.transient_factor:g} x predicted K0 = {k0:.3g}"})
    fit_keys = [key for key in keys if not any(e["N"] == key[0] and e["K"] == key[1] for e in excluded)]
    note = ""
    if len({n for n, _ in fit_keys}) < 2 or len({k for _, k in fit_keys}) < 2:
        note = ("too few cells past the transient to fit; fitting all cells "
                "(the consensus term may bias the exponents)")
        fit_keys = keys
    for metric in FIT_METRICS:
        table = _table(records, metric)
        usable = [key for key in fit_keys if np.isfinite(table[key]).any()]
        dropped = [key for key in fit_keys if key not in usable]
        vals = np.array([table[key] for key in usable])
        try:
            fit = fit_rate([n for n, _ in usable], [k for _, k in usable], vals, n_boot=args.boot,
                           seed=args.seed)
            d = fit.as_dict()
        except ValueError as exc:
            why = f"fit impossible: {exc}"
            if dropped:
                why += f"; {len(dropped)} of {len(fit_keys)} cells lost every seed to divergence (see 'diverged')"
            d = {"verdict": "inconclusive", "reason": why,
                 "N": {"value": None, "ci": [None, None]}, "K": {"value": None, "ci": [None, None]},
                 "speedup": {"value": None, "ci": [None, None]}}
        d["cells_dropped_all_diverged"] = [list(key) for key in dropped]
        out[metric] = d
    return {"fits": out, "excluded": excluded, "fit_cells": [list(k) for k in fit_keys], "note": note}


def render_table(summary: dict) -> str:
    fits = summary["metrics"]
    lines = []
    lines.append(f"{'metric':<7}{'e_N':>8}  {'95% CI':<18}{'e_K':>8}  {'95% CI':<18}{'s=e_N/e_K':>10}  "
                 f"{'95% CI':<18}verdict")

    def f(x):
        if x is None:
            return "   nan"
        return f"{x:+.2f}" if abs(x) < 100 else f"{x:+.0e}"

    def ci(c):
        return "[  nan,   nan]" if c[0] is None else f"[{f(c[0])}, {f(c[1])}]"

    for m in FIT_METRICS:
        d = fits[m]
        star = " <- headline" if m == summary["metric"] else ""
        lines.append(f"{m:<7}{f(d['N']['value']):>8}  {ci(d['N']['ci']):<18}{f(d['K']['value']):>8}  "
                     f"{ci(d['K']['ci']):<18}{f(d['speedup']['value']):>10}  {ci(d['speedup']['ci']):<18}"
                     f"{d['verdict']}{star}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = build_parser().parse_args(argv)
    validate(args)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS)
    n_seeds = args.seeds or (4 if args.quick else 8)
    cells = make_cells(args, rounds)
    # Build every graph first: a topology that cannot be built for some N fails here, before any output.
    rho = {}
    for cell in cells:
        n = cell["N"]
        if n not in rho:
            try:
                W = build_mixing(cell, args.seed)
            except ValueError as exc:
                raise UsageError(f"--topology {args.topology} with N = {n}: {exc}") from None
            rho[n] = float(mixing_rate(W)) if args.algorithm not in ("local", "centralized") else (
                0.0 if args.algorithm == "centralized" else 1.0)
    out_dir = Path(args.out) if args.out else Path("results") / "speedup"
    fig_dir = (Path(args.out) / "figures") if args.out else Path("figures")

    first_cell = {c["N"]: c for c in reversed(cells)}
    transient = {n: predicted_transient(args, first_cell[n], rho[n]) for n in sorted(rho)}
    executor = "dask" if args.scheduler else ("serial" if args.jobs == 1 else "processes")
    sweep = run_sweep(simulate_cell, cells, list(range(n_seeds)), base_seed=args.seed, out=out_dir,
                      executor=executor, jobs=args.jobs, scheduler=args.scheduler,
                      use_cache=not args.no_cache, progress=not args.no_progress,
                      task_version=TASK_VERSION, cost=cell_cost)
    if sweep.failures:
        for f in sweep.failures:
            sys.stderr.write(f"{PROG}: cell {f['params']['N']}x{f['params']['K']} failed: {f['error']}\n")
    records = sweep.records
    if not records:
        raise RuntimeError("no cell finished; nothing to analyse")
    analysis = analyse(records, args, transient)
    fits = analysis["fits"]
    for n in transient:
        k0 = transient[n].get("K0")
        transient[n]["grid_past_transient"] = None if k0 is None else bool(min(rounds) >= k0)
        transient[n]["measured_transient_K"] = [e["K"] for e in analysis["excluded"] if e["N"] == n]
        transient[n]["rho"] = rho[n]
        transient[n]["spectral_gap"] = 1.0 - rho[n]

    diverged = [
        {"N": r["params"]["N"], "K": r["params"]["K"], "seed": r["seed"], "round": r["result"]["diverged_round"],
         "alpha": r["result"]["alpha"], "beta": r["result"]["beta"]}
        for r in records if r["result"]["diverged"]
    ]
    steps = sorted({(r["params"]["N"], r["params"]["K"], r["result"]["alpha"], r["result"]["beta"],
                     r["result"]["step_rule"]) for r in records})
    headline = fits[args.metric]
    summary = {
        "question": "does convergence improve linearly with the number of workers N?",
        "verdict": headline["verdict"],
        "metric": args.metric,
        "reason": headline.get("reason", ""),
        "exponents": {k: headline[k] for k in ("N", "K", "speedup")},
        "verdicts": {m: fits[m]["verdict"] for m in FIT_METRICS},
        "metrics": fits,
        "settings": {
            "n": sorted(set(args.n)), "rounds": sorted(set(rounds)), "seeds": n_seeds, "base_seed": args.seed,
            "problem": args.problem, "topology": args.topology, "weights": args.weights, "gap": args.gap,
            "algorithm": args.algorithm, "tau": args.tau, "c": args.c, "head_rule": args.head_rule,
            "head_step": args.head_step, "batch": args.batch, "dim": args.dim, "rank": args.rank,
            "noise": args.noise, "heterogeneity": args.heterogeneity,
            "activation": args.activation if args.problem == "nonlinear" else None,
            "step_rule": steps[0][4] if steps else None,
            "bootstrap": {"replicates": args.boot, "level": 0.95, "over": "seeds"},
        },
        "step_sizes": [{"N": s[0], "K": s[1], "alpha": s[2], "beta": s[3]} for s in steps],
        "transient": {str(n): v for n, v in transient.items()},
        "excluded_cells": analysis["excluded"],
        "fit_cells": analysis["fit_cells"],
        "fit_note": analysis["note"],
        "diverged": diverged,
        "sweep": {"computed": sweep.n_computed, "cached": sweep.n_cached, "failures": len(sweep.failures),
                  "executor": executor, "sweep_seconds": sweep.wall_seconds},
        "provenance": provenance(sys.argv if argv is None else [PROG, *argv]),
    }

    rows = []
    for r in records:
        res = r["result"]
        for m in METRICS:
            rows.append({"N": r["params"]["N"], "K": r["params"]["K"], "seed": r["seed"], "metric": m,
                         "value": res["averages"][m], "final": res["final"][m], "diverged": res["diverged"],
                         "alpha": res["alpha"], "beta": res["beta"], "rho": res["rho"],
                         "algorithm": r["params"]["algorithm"], "topology": r["params"]["topology"],
                         "problem": r["params"]["problem"]})
    write_csv_atomic(out_dir / "speedup.csv", rows)

    figures = []
    if not args.no_figures:
        from deprl_theory.plotting import save_figure, speedup_figures

        for m in FIT_METRICS:
            d = fits[m]
            fit = None
            if d["N"]["value"] is not None:
                fit = {"intercept": d["intercept"], "e_N": d["N"]["value"], "e_K": d["K"]["value"]}
            figs = speedup_figures(_table(records, m), metric=m, fit=fit,
                                   title=f"{args.algorithm}, {args.topology}, {args.problem}:")
            summary.setdefault("k_eps", {})[m] = {"eps": figs["_k_eps"]["eps"],
                                                  "K_eps": {str(n): v for n, v in figs["_k_eps"]["k_eps"].items()}}
            for name in ("rate", "collapse", "speedup"):
                figures += [str(p) for p in save_figure(figs[name], fig_dir, f"speedup_{name}_{m}")]
    summary["figures"] = figures
    summary["outputs"] = {"csv": str(out_dir / "speedup.csv"), "summary": str(out_dir / "summary.json")}
    summary["seconds"] = time.perf_counter() - t0
    write_json_atomic(out_dir / "summary.json", summary)

    if args.json:
        print(dump_json(summary, indent=2))
    else:
        print(report(summary))
    return 0


def report(summary: dict) -> str:
    s = summary["settings"]
    lines = [
        f"DePRL linear-speedup check: {s['algorithm']} on {s['topology']} ({s['weights']}), {s['problem']} problem "
        f"d={s['dim']} r={s['rank']} b={s['batch']} tau={s['tau']} noise={s['noise']}",
        f"grid: N = {s['n']}, K = {s['rounds']}, {s['seeds']} seeds (base seed {s['base_seed']}); "
        f"step rule: {s['step_rule']}",
        "",
        render_table(summary),
        "",
    ]
    lines.append("transient (consensus term vs leading term, THEORY section 5; predicted K0 uses the template's "
                 "worst-case constants):")
    for n, t in summary["transient"].items():
        k0 = t.get("K0")
        past = t.get("grid_past_transient")
        state = "unknown" if past is None else ("grid past it" if past else "grid NOT past it")
        k0s = "n/a" if k0 is None else f"{k0:.3g}"
        meas = t.get("measured_transient_K") or []
        mstate = f"measured: K = {meas} still transient" if meas else "measured: every K on the power law"
        lines.append(f"  N = {n:>4}: spectral gap {t['spectral_gap']:.3f}, predicted K0 = {k0s} -> {state}; {mstate}")
    if summary["excluded_cells"]:
        lines.append("excluded from the fit as transient:")
        lines += [f"  (N={e['N']}, K={e['K']}): {e['why']}" for e in summary["excluded_cells"]]
    else:
        lines.append("excluded from the fit: none (every cell is past the measured transient)")
    if summary["fit_note"]:
        lines.append("note: " + summary["fit_note"])
    if summary["diverged"]:
        lines.append(f"diverged runs: {len(summary['diverged'])} (recorded with their step sizes in summary.json)")
    lines += [
        "",
        f"verdict ({summary['metric']}): {summary['verdict'].upper()} -- {summary['reason']}",
        "per metric: " + ", ".join(f"{m} {v}" for m, v in summary["verdicts"].items()),
        f"results: {summary['outputs']['csv']}, {summary['outputs']['summary']}; "
        f"{len(summary['figures'])} figure files in {Path(summary['figures'][0]).parent if summary['figures'] else '-'}",
        f"sweep: {summary['sweep']['computed']} runs computed, {summary['sweep']['cached']} from cache; "
        f"{summary['seconds']:.1f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
