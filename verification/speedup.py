"""Does DePRL's convergence improve linearly with the number of workers?

    python -m verification.speedup --n 4 8 16 32

For each N, a geometric grid of rounds K and S seeds, the algorithm runs with
the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau); the
time-averaged metrics Rbar, Hbar, Gbar are fitted as
log Mbar = a0 + e_N log N + e_K log K (t intervals over per-seed fits), and the
speedup exponent s = e_N / e_K gives the verdict (docs/theory.md): none /
sublinear / linear / superlinear / inconclusive, or "<verdict> after transient"
when the exact-averaging companion shows that the graph's excess over it is a
transient. Seeds are added at the planned looks of a group-sequential design
(O'Brien-Fleming by default). The experiment itself is
deprl_theory.experiments.speedup; this module parses, calls and renders.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.experiments.decision import COMPANION_RULES, INTERVALS
from deprl_theory.experiments.records import run_rows
from deprl_theory.experiments.speedup import (
    DEFAULT_ROUNDS,
    FIT_METRICS,
    QUICK_ROUNDS,
    SpeedupResult,
    SpeedupStudy,
    run_speedup,
)
from deprl_theory.inference import DEFAULT_DESIGN, DEFAULT_MARGIN, DESIGNS, geometric_looks
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from verification._cli import (
    ArgumentParser,
    UsageError,
    add_graph_options,
    add_problem_options,
    add_step_options,
    add_sweep_options,
    apply_figure_style,
    cell_overrides,
    dump_json,
    figures_dir,
    margin,
    nonneg_float,
    one_of,
    opened_sweep,
    positive_float,
    positive_int,
    run_main,
    user_input,
)

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
                   help=f"margin m of the verdict's tests: linear needs the CI's lower end within 1 +- m "
                        f"(at least linear up to the margin), sublinear its upper end below 1 - m "
                        f"(default {DEFAULT_MARGIN})")
    o.add_argument("--until-decisive", action=argparse.BooleanOptionalAction, default=True,
                   help="group-sequential seeding: analyse at the planned looks (--looks) with the design's "
                        "repeated-CI levels and stop at the first decisive headline verdict (default: on, except "
                        "with --quick unless --looks is given); --no-until-decisive runs --seeds seeds once, at "
                        "the plain 95%% level")
    o.add_argument("--looks", type=positive_int, nargs="+", default=None, metavar="S",
                   help="seeds at each planned look, increasing, the first >= 2 (default: --seeds, then about "
                        "x1.25 per look up to --max-seeds: 8 10 13 16 20 25 32 40 51 64)")
    o.add_argument("--max-seeds", type=positive_int, default=64,
                   help="seeds of the last default look (default 64)")
    o.add_argument("--design", type=one_of(tuple(DESIGNS), "design"), default=DEFAULT_DESIGN,
                   help="boundary of the group-sequential design: obrien-fleming (default) or pocock")
    o.add_argument("--interval", type=one_of(INTERVALS, "interval"), default="hall",
                   help="interval of s (default %(default)s): hall inverts Hall's skewness-corrected t test at "
                        "levels up to 0.999 (Fieller's interval above); fieller is Fieller's t interval at every "
                        "level")
    o.add_argument("--companion", type=one_of(COMPANION_RULES, "companion rule"), default="auto",
                   help="run exact averaging (W = 11^T/N) on the same instances and seeds to separate the rate "
                        "from the transient (default %(default)s): auto runs it when the graph mixes, rho > 0, and "
                        "the grid's verdict is not linear; always; or never")
    o.add_argument("--transient-tol", type=nonneg_float, default=0.15,
                   help="measured transient: drop the smallest K of an N while the local log-log slope differs "
                        "from that N's tail slope by more than this (default 0.15; 0 keeps every cell)")
    o.add_argument("--transient-factor", type=nonneg_float, default=0.0,
                   help="also drop cells with K < factor x the template's predicted K0 (default 0: report only; "
                        "the template's constants are worst-case)")
    add_sweep_options(p, DEFAULT_OUT)
    p.add_argument("--replot", action="store_true",
                   help="re-analyse and redraw the study finished in --out from its cache, simulating nothing; "
                        "the grid and the analysis come from the folder (speedup.study.json), not from the "
                        "other options")
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
    seeds = args.seeds or (4 if args.quick else 8)
    looks: tuple[int, ...] = ()
    if args.looks is not None and not args.until_decisive:
        raise UsageError("--looks plans the looks of --until-decisive; drop --no-until-decisive or --looks")
    if args.until_decisive and not (args.quick and args.looks is None):  # --quick: a smoke test, one look
        if args.looks is not None:
            looks = tuple(args.looks)
            if args.seeds is not None and args.seeds != looks[0]:
                raise UsageError(f"--seeds {args.seeds} differs from the first look {looks[0]}; give one of them")
        else:
            if args.max_seeds < seeds:
                raise UsageError(f"--max-seeds {args.max_seeds} is below --seeds {seeds}")
            looks = geometric_looks(seeds, args.max_seeds) if seeds >= 2 else (seeds,)
        seeds = looks[0]
    with user_input():
        study = SpeedupStudy(n=tuple(args.n), rounds=tuple(rounds), seeds=seeds, looks=looks, design=args.design,
                             companion=args.companion, interval=args.interval, base_seed=args.seed,
                             cell=cell_overrides(args),
                             metric=args.metric, margin=args.margin, transient_tol=args.transient_tol,
                             transient_factor=args.transient_factor, regime="theory" if auto else "tail")
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
        from deprl_theory.plotting import save_figure, speedup_captions, speedup_figures

        for m in FIT_METRICS:
            figs = speedup_figures(result, m)
            captions = speedup_captions(result, m, figs)
            for name, fig in figs.items():
                summary.setdefault("captions", {})[f"speedup_{name}_{m}"] = captions[name]
                paths += [str(q) for q in save_figure(fig, figures, f"speedup_{name}_{m}", caption=captions[name])]
    summary["figures"] = paths
    summary["outputs"] = {"csv": str(out / "speedup.csv"), "summary": str(out / "summary.json")}
    summary["seconds"] = time.perf_counter() - t0
    write_json_atomic(out / "summary.json", summary)
    return summary


def replot(args) -> tuple[SpeedupResult, Path, Path | None]:
    """--replot: the study finished in --out, from its cache (UsageError when it is not there)."""
    from deprl_theory.experiments import load_speedup
    from deprl_theory.sweep import CacheMiss

    out = Path(args.out or DEFAULT_OUT)
    figures = None if args.no_figures else figures_dir(args, DEFAULT_OUT)  # where a run would draw them
    apply_figure_style(args)
    try:
        result = load_speedup(out, progress=not args.no_progress)
    except (FileNotFoundError, CacheMiss, ValueError) as exc:
        raise UsageError(f"--replot: {exc}") from None
    return result, out, figures


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = build_parser().parse_args(argv)
    if args.replot:
        result, out, figures = replot(args)
    else:
        study = study_from(args)
        with opened_sweep(args, DEFAULT_OUT, study.cells(), study.max_seeds) as (options, out, figures):
            result, sweep = run_speedup(study, options, auto_rounds=study.regime == "theory",
                                        max_rounds=args.max_rounds, budget=args.budget)
        if sweep.failures:  # one line: how many, which, the first cause (each cell's error is in summary.json)
            sys.stderr.write(f"{PROG}: {sweep.failure_line()}\n")
    summary = write_outputs(result, out, figures, argv, t0)
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


def _f(x) -> str:
    if x is None:
        return "   nan"
    return f"{x:+.3f}" if abs(x) < 100 else f"{x:+.0e}"


#: what an interval with an infinite end means, said once under the table that shows one
UNBOUNDED = ("unbounded: the CI of e_K reaches 0, so s = e_N / e_K has no finite interval (Fieller's set is "
             "the whole line or excludes a middle); the verdict judges convergence from e_K first")


def _ci(c) -> str:
    """An interval as ``[lo, hi]``; one with an infinite or missing end is said in a word."""
    if c[0] is None or c[1] is None or not (math.isfinite(c[0]) and math.isfinite(c[1])):
        return "unbounded"
    return f"[{_f(c[0])}, {_f(c[1])}]"


def _level(level: float) -> str:
    """A CI level for a header: 95%, 99.98%, 1-1.4e-08."""
    if level > 0.9999:
        return f"1-{1 - level:.1e}"
    return f"{100 * level:.4g}%"


def _table(summary: dict) -> list[str]:
    fits = summary["metrics"]
    lv = _level(summary["level"]) + " CI"
    lines = [f"{'metric':<7}{'e_N':>8}  {lv:<18}{'e_K':>8}  {lv:<18}{'s=e_N/e_K':>10}  "
             f"{lv:<18}verdict on this grid"]
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
    lines.append(f"intervals: {s['intervals']['method']}, level {_level(summary['level'])}; "
                 f"verdict margin m = {s['margin']:g}")
    if any("unbounded" in line for line in lines):
        lines.append(UNBOUNDED)
    return lines


def _sequential(summary: dict) -> list[str]:
    seq = summary.get("sequential") or {}
    if not seq:
        s = summary["settings"]
        return [f"fixed design: {s['seeds']} seeds, intervals at the plain 95% level"]
    d = seq["design"]
    levels = ", ".join(_level(v) for v in d["levels"])
    return [f"design: {d['description'].split(',')[0]}, looks at {d['looks']} seeds "
            f"(repeated-CI levels {levels}; two-sided alpha {d['alpha']:g})",
            f"  stopped at look {seq['stopped_at_look']} of {len(d['looks'])} ({seq['seeds']} seeds): {seq['why']}; "
            f"verdict per look: {', '.join(seq['verdicts_per_look'])}"]


def _companion(summary: dict) -> list[str]:
    comp = summary.get("companion")
    if not comp:
        return []
    fit = comp["fit"]
    dec = comp["decomposition"] or {}
    lines = [f"exact averaging on the same instances and seeds (--companion {comp['rule']}): "
             f"s = {_f(fit['speedup']['value'])} {_ci(fit['speedup']['ci'])}, e_K = {_f(fit['K']['value'])} "
             f"{_ci(fit['K']['ci'])} -> {fit['verdict']}"]
    if dec:
        lines.append(f"graph over exact averaging, per N (Gbar ratio per K; the excess's K-exponent against the "
                     f"leading {dec['companion_e_K']:+.3f}; transient ends where the ratio is within "
                     f"{dec['factor']:g}):")
        for n, law in dec["per_N"].items():
            ratios = ", ".join(f"{r:.3f}" for r in law["ratio"])
            ex = ("excess not positive at every K" if law["exponent"] is None else
                  f"excess ~ K^{law['exponent']:+.2f}" + ("" if law["exponent_ci"] is None else
                                                         f" {_ci(law['exponent_ci'])}"))
            k0 = ("" if law["K0"] is None else
                  f"; K0 = {law['K0']:.3g} ({law['K0_how']})")
            lines.append(f"  N = {n:>4}: ratio {ratios} at K = {law['K']}; {ex}: {law['state']}{k0}")
        pooled = dec.get("pooled_excess_law")
        if pooled:
            lines.append(f"  excess over the N where it is shown ({pooled['N']}): ~ N^{pooled['x']:+.2f} "
                         + ("" if pooled["x_ci"] is None else f"{_ci(pooled['x_ci'])} ")
                         + f"K^{pooled['q']:+.2f}" + ("" if pooled["q_ci"] is None else f" {_ci(pooled['q_ci'])}"))
        lines.append(f"  -> {dec['reason']}")
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
    lines = []
    if summary["excluded_cells"]:
        lines.append("excluded from the fit as transient (local slopes against each N's tail):")
        lines += [f"  (N={e['N']}, K={e['K']}): {e['why']}" for e in summary["excluded_cells"]]
    else:
        lines.append("excluded from the fit: none (every cell's local slope agrees with its N's tail)")
    if summary["fit_note"]:
        lines.append("note: " + summary["fit_note"])
    bounds = [(n, t.get("K0"), t["spectral_gap"]) for n, t in summary["transient"].items()]
    lines.append("template's K0 (an upper bound: worst-case constants, often orders of magnitude too large): "
                 + ", ".join(f"N = {n}: {'n/a' if k0 is None else f'{k0:.3g}'} (gap {gap:.3f})"
                             for n, k0, gap in bounds))
    return lines


def _k_grid(settings: dict) -> str:
    """The K grid that ran: one list, or each N's own where --rounds auto grew them apart."""
    per_n = settings.get("rounds_per_n") or {}
    if all(list(v) == list(settings["rounds"]) for v in per_n.values()):
        return f"K = {settings['rounds']}"
    return "K reached per N: " + "; ".join(f"N = {n}: {v}" for n, v in per_n.items())


def render(summary: dict) -> str:
    """The text report of a summary."""
    s = summary["settings"]
    lines = [
        f"DePRL linear-speedup check: {s['algorithm']} on {s['topology']} ({s['weights']}), {s['problem']} problem "
        f"d={s['dim']} r={s['rank']} b={s['batch']} tau={s['tau']} noise={s['noise']}",
        f"grid: N = {s['n']}, {_k_grid(s)}, {s['seeds']} seeds (base seed {s['base_seed']}); "
        f"step rule: {s['step_rule']}", "", *_table(summary), *_sequential(summary), "", *_companion(summary),
        *_transient(summary)]
    headline = summary["metrics"][summary["metric"]]
    if "superlinear" in summary["verdicts"].values() or not headline.get("asymptotic", True):
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
    if summary["stopping"].get("why"):
        lines.append(f"--rounds auto stopped extending: {summary['stopping']['why']}")
    figs = summary["figures"]
    lines += [
        "",
        f"verdict ({summary['metric']}): {summary['verdict'].upper()} -- {summary['reason']}",
        "per metric, on this grid: " + ", ".join(
            f"{m} {v}" + ("" if summary["converges"][m] is not False else " (no convergence)")
            for m, v in summary["verdicts"].items()),
        f"results: {summary['outputs']['csv']}, {summary['outputs']['summary']}; "
        f"{len(figs)} figure files in {Path(figs[0]).parent if figs else '-'}",
        f"sweep: {summary['sweep']['computed']} runs computed, {summary['sweep']['cached']} from an earlier "
        f"invocation's cache; {summary['seconds']:.1f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
