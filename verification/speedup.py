"""Does DePRL's convergence improve linearly with the number of workers?

    python -m verification.speedup --n 4 8 16 32

For each N, a geometric grid of rounds K and S seeds, the algorithm runs with
the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau); the
time-averaged metrics Rbar, Hbar, Gbar are fitted as
log Mbar = a0 + e_N log N + e_K log K (bootstrap over seeds), and the speedup
exponent s = e_N / e_K gives the verdict (docs/theory.md):
linear / sublinear / none / inconclusive. The experiment itself is
deprl_theory.experiments.speedup; this module parses, calls and renders.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.experiments.records import run_rows
from deprl_theory.experiments.speedup import (DEFAULT_ROUNDS, FIT_METRICS, QUICK_ROUNDS, SpeedupResult, SpeedupStudy,
                                              run_speedup)
from deprl_theory.rates import DEFAULT_MARGIN
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from verification._cli import (ArgumentParser, UsageError, add_graph_options, add_problem_options, add_step_options,
                               add_sweep_options, cell_overrides, dump_json, margin, nonneg_float,
                               one_of, positive_float, positive_int, run_main, opened_sweep, user_input)

PROG = "python -m verification.speedup"
DEFAULT_OUT = "results/speedup"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=positive_int, nargs="+", default=[4, 8, 16, 32], metavar="N",
                   help="worker counts, at least three distinct, each >= 2 (default: 4 8 16 32)")
    g.add_argument("--rounds", type=rounds_value, nargs="+", default=None, metavar="K",
                   help=f"grid of rounds K (default: {' '.join(map(str, DEFAULT_ROUNDS))}; "
                        f"with --quick {' '.join(map(str, QUICK_ROUNDS))}), or 'auto': start from the default "
                        "grid and double K per N until its local slope of the headline metric is within the "
                        "margin of -1/2")
    g.add_argument("--max-rounds", type=positive_int, default=256_000,
                   help="largest K that --rounds auto may reach (default 256000)")
    g.add_argument("--budget", type=positive_float, default=600.0, metavar="SECONDS",
                   help="--rounds auto stops extending before this much wall time would pass (default 600)")
    g.add_argument("--seeds", type=positive_int, default=None, help="seeds per cell (default 8; 4 with --quick)")
    add_graph_options(p, "exponential")
    add_step_options(p)
    add_problem_options(p)
    o = p.add_argument_group("analysis")
    o.add_argument("--metric", type=one_of(FIT_METRICS, "metric"), default="G",
                   help="metric of the headline verdict (default G, the full stationarity the theorem bounds)")
    o.add_argument("--margin", type=margin, default=DEFAULT_MARGIN,
                   help=f"equivalence margin m of the verdict: linear needs the CI's lower end within 1 +- m "
                        f"(default {DEFAULT_MARGIN})")
    o.add_argument("--until-decisive", action=argparse.BooleanOptionalAction, default=True,
                   help="when the headline verdict is inconclusive for want of precision, add seeds in batches "
                        "(reusing the cache) until it decides or --max-seeds is reached (default: on)")
    o.add_argument("--max-seeds", type=positive_int, default=64, help="seed limit of --until-decisive (default 64)")
    o.add_argument("--transient-tol", type=nonneg_float, default=0.15,
                   help="measured transient: drop the smallest K of an N while the local log-log slope differs "
                        "from that N's tail slope by more than this (default 0.15; 0 keeps every cell)")
    o.add_argument("--transient-factor", type=nonneg_float, default=0.0,
                   help="also drop cells with K < factor x the template's predicted K0 (default 0: report only; "
                        "the template's constants are worst-case)")
    add_sweep_options(p, DEFAULT_OUT)
    return p


def rounds_value(text: str) -> int | str:
    """A positive integer K, or 'auto'."""
    return "auto" if text == "auto" else positive_int(text)


def study_from(args) -> SpeedupStudy:
    """The study the options describe (UsageError for a grid or graph that cannot work)."""
    auto = args.rounds is not None and "auto" in args.rounds
    if auto and len(args.rounds) > 1:
        raise UsageError("--rounds auto takes no K values beside it")
    rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    if args.rounds is not None and not auto:
        rounds = args.rounds
    if auto and args.max_rounds < max(rounds):
        raise UsageError(f"--max-rounds {args.max_rounds} is below the starting grid's largest K {max(rounds)}")
    with user_input():
        study = SpeedupStudy(n=tuple(args.n), rounds=tuple(rounds), seeds=args.seeds or (4 if args.quick else 8),
                             base_seed=args.seed, cell=cell_overrides(args), metric=args.metric, margin=args.margin,
                             transient_tol=args.transient_tol, transient_factor=args.transient_factor,
                             regime="theory" if auto else "tail")
        if args.until_decisive and args.max_seeds < study.seeds:
            raise ValueError(f"--max-seeds {args.max_seeds} is below --seeds {study.seeds}")
        study.check()  # every graph and problem is built and checked before anything runs
    return study


def write_outputs(result: SpeedupResult, out: Path, figures: Path | None, argv: Sequence[str] | None,
                  t0: float) -> dict:
    """CSV, figures and summary.json; returns the summary."""
    summary = result.as_dict()
    summary["provenance"] = provenance(sys.argv if argv is None else [PROG, *argv])
    write_csv_atomic(out / "speedup.csv", run_rows(result.records))
    paths = []
    if figures is not None:
        from deprl_theory.plotting import save_figure, speedup_figures

        s = result.study.settings()
        for m in FIT_METRICS:
            figs = speedup_figures(result, m, title=f"{s['algorithm']}, {s['topology']}, {s['problem']}:")
            for name, fig in figs.items():
                paths += [str(q) for q in save_figure(fig, figures, f"speedup_{name}_{m}")]
    summary["figures"] = paths
    summary["outputs"] = {"csv": str(out / "speedup.csv"), "summary": str(out / "summary.json")}
    summary["seconds"] = time.perf_counter() - t0
    write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = build_parser().parse_args(argv)
    study = study_from(args)
    seeds = args.max_seeds if args.until_decisive else study.seeds
    with opened_sweep(args, DEFAULT_OUT, study.cells(), seeds) as (options, out, figures):
        result, sweep = run_speedup(study, options, until_decisive=args.until_decisive, max_seeds=args.max_seeds,
                                    auto_rounds=study.regime == "theory", max_rounds=args.max_rounds,
                                    budget=args.budget)
    for f in sweep.failures:
        sys.stderr.write(f"{PROG}: cell {f['params']['N']}x{f['params']['K']} failed: {f['error']}\n")
    summary = write_outputs(result, out, figures, argv, t0)
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


def _f(x) -> str:
    if x is None:
        return "   nan"
    return f"{x:+.3f}" if abs(x) < 100 else f"{x:+.0e}"


def _ci(c) -> str:
    return "[   nan,    nan]" if c[0] is None or c[1] is None else f"[{_f(c[0])}, {_f(c[1])}]"


def _table(summary: dict) -> list[str]:
    fits = summary["metrics"]
    lines = [f"{'metric':<7}{'e_N':>8}  {'95% CI':<18}{'e_K':>8}  {'95% CI':<18}{'s=e_N/e_K':>10}  "
             f"{'95% CI':<18}verdict"]
    for m in FIT_METRICS:
        d = fits[m]
        star = " <- headline" if m == summary["metric"] else ""
        lines.append(f"{m:<7}{_f(d['N']['value']):>8}  {_ci(d['N']['ci']):<18}{_f(d['K']['value']):>8}  "
                     f"{_ci(d['K']['ci']):<18}{_f(d['speedup']['value']):>10}  {_ci(d['speedup']['ci']):<18}"
                     f"{d['verdict']}{star}")
    for m in FIT_METRICS:
        u = fits[m].get("untrimmed")
        if u is not None:
            lines.append(f"  {m} over all cells (untrimmed): s = {_f(u['speedup']['value'])} "
                         f"{_ci(u['speedup']['ci'])}, e_K = {_f(u['K']['value'])} -> {u['verdict']}")
    s = summary["settings"]
    lines.append(f"intervals: {s['intervals']['method']}; verdict margin m = {s['margin']:g}")
    return lines


def _diagnostics(summary: dict) -> list[str]:
    lines = ["scales at the largest K (the rescaling (Phi, theta) -> (c Phi, theta/c) moves R, not F):"]
    for n, d in summary["diagnostics"].items():
        lines.append(f"  N = {n:>4}: mean ||theta_i|| = {d['theta']:.3f}, ||phibar||_F = {d['phibar']:.3f}")
    gt = summary["ground_truth"]
    parts = [f"{name} e_N {_f(g['N']['value'])} e_K {_f(g['K']['value'])}" for name, g in gt.items() if "N" in g]
    if parts:
        lines.append("ground-truth cross-check (final values, scale invariant): " + "; ".join(parts))
    return lines


def _transient(summary: dict) -> list[str]:
    lines = ["transient (consensus term vs leading term, docs/theory.md; predicted K0 uses the template's "
             "worst-case constants):"]
    for n, t in summary["transient"].items():
        k0, past = t.get("K0"), t.get("grid_past_transient")
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
    return lines


def render(summary: dict) -> str:
    """The text report of a summary."""
    s = summary["settings"]
    lines = [
        f"DePRL linear-speedup check: {s['algorithm']} on {s['topology']} ({s['weights']}), {s['problem']} problem "
        f"d={s['dim']} r={s['rank']} b={s['batch']} tau={s['tau']} noise={s['noise']}",
        f"grid: N = {s['n']}, K = {s['rounds']}, {s['seeds']} seeds (base seed {s['base_seed']}); "
        f"step rule: {s['step_rule']}", "", *_table(summary), "", *_transient(summary)]
    if "superlinear" in summary["verdicts"].values() or not summary["metrics"][summary["metric"]].get("asymptotic", True):
        lines += _diagnostics(summary)
    if summary["diverged"]:
        lines.append(f"diverged runs: {len(summary['diverged'])} (recorded with their step sizes in summary.json)")
    if summary["settings"]["regime_rule"] == "theory":
        lines.append("--rounds auto (per N: the K from which the local slope of "
                     f"{summary['metric']} stays within the margin of -1/2):")
        for n, r in summary["regime"].items():
            state = (f"regime from K = {r['start']}" if r["reached"] else
                     "NOT reached" + (f"; the trend of the local slopes puts it near K = {r['needs']:.3g}"
                                      if r["needs"] else "; the trend does not point to it"))
            slopes = ", ".join(f"{v:+.2f}" for v in r["slopes"])
            lines.append(f"  N = {n:>4}: K = {r['K']}; local slopes {slopes}; {state}")
    if summary["stopping"]:
        st = summary["stopping"]
        seeds = f"seeds tried {st['seeds_tried']}; " if "seeds_tried" in st else ""
        lines.append(f"stopped extending: {seeds}{st['why']}")
    figs = summary["figures"]
    lines += [
        "",
        f"verdict ({summary['metric']}): {summary['verdict'].upper()} -- {summary['reason']}",
        "per metric: " + ", ".join(f"{m} {v}" + ("" if summary["converges"][m] is not False else " (no convergence)")
                                   for m, v in summary["verdicts"].items()),
        f"results: {summary['outputs']['csv']}, {summary['outputs']['summary']}; "
        f"{len(figs)} figure files in {Path(figs[0]).parent if figs else '-'}",
        f"sweep: {summary['sweep']['computed']} runs computed, {summary['sweep']['cached']} from cache; "
        f"{summary['seconds']:.1f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
