"""Run one configuration of DePRL (or a baseline) and report its metrics.

    python -m verification.run --problem linear --n 8 --topology ring --rounds 2000

Prints the final and time-averaged metrics per seed (R, H, C, G, subspace
distance, excess risk), the step sizes and wall time; draws the metric curves
to figures/ (PNG and PDF); ``--json`` prints a machine-readable summary. The
run is exactly the sweep cell of the same options and ``--seed``
(deprl_theory.experiments.run_cell): seed j here is seed j of that cell in
``verification.speedup``.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from deprl_theory.engine import step_sizes
from deprl_theory.experiments import cell_params, cells_memory, check_cells, run_cell
from deprl_theory.resources import check_memory
from verification._cli import (
    ArgumentParser,
    UsageError,
    add_graph_options,
    add_problem_options,
    add_step_options,
    cell_overrides,
    dump_json,
    nonneg_float,
    nonneg_int,
    output_dir,
    positive_int,
    run_main,
    user_input,
)

PROG = "python -m verification.run"
CURVES = ("G", "R", "H", "C", "subspace", "excess_risk")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("run")
    g.add_argument("--n", type=positive_int, default=8, help="workers N (default 8)")
    g.add_argument("--rounds", type=positive_int, default=2000, help="rounds K (default 2000)")
    g.add_argument("--alpha", type=nonneg_float, default=None, help="constant head step (with --beta)")
    g.add_argument("--beta", type=nonneg_float, default=None, help="constant representation step (with --alpha)")
    g.add_argument("--seeds", type=positive_int, default=3, help="seeds run at once (default 3)")
    g.add_argument("--seed", type=nonneg_int, default=0, help="base seed, as in the sweeps (default 0)")
    g.add_argument("--eval-every", type=positive_int, default=None, help="trace resolution in rounds")
    g.add_argument("--figures", default="figures", help="directory of the curves figure (default figures/)")
    g.add_argument("--no-figures", action="store_true")
    g.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_graph_options(p, "ring")
    add_step_options(p)
    add_problem_options(p)
    return p


def _checked(args):
    if (args.alpha is None) != (args.beta is None):
        raise UsageError("give both --alpha and --beta for constant steps, or neither for the theory rule")
    if args.n < 2:
        raise UsageError(f"--n must be >= 2, got {args.n}")
    with user_input():
        cell = cell_params(N=args.n, K=args.rounds, **cell_overrides(args))
        check_memory(cells_memory([cell], args.seeds), what="this run")
        check_cells([cell], args.seed)
    figures = None if args.no_figures else output_dir(args.figures, "--figures")
    steps = None if args.alpha is None else step_sizes(args.alpha, args.beta)
    return cell, steps, figures


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = build_parser().parse_args(argv)
    cell, steps, figures = _checked(args)
    res, rho = run_cell(cell, range(args.seeds), args.seed, steps=steps, eval_every=args.eval_every)
    paths = []
    if figures is not None:
        from deprl_theory.plotting import curves_figure, save_figure

        fig = curves_figure(res.trace, CURVES, title=f"{args.algorithm} on {args.topology}, N = {args.n}, "
                                                     f"{args.problem} problem (band over {args.seeds} seeds)")
        name = f"run_{args.problem}_{args.algorithm}_{args.topology}_n{args.n}_k{args.rounds}"
        paths = [str(p) for p in save_figure(fig, figures, name)]
    gossips = args.algorithm in ("deprl", "dpsgd")
    summary = {"settings": {**cell, "seeds": args.seeds, "seed": args.seed}, "rho": rho if gossips else None,
               "spectral_gap": 1 - rho if gossips else None, **res.summary(), "figures": paths,
               "seconds": time.perf_counter() - t0}
    print(dump_json(summary, indent=2) if args.json else render(summary, res))
    return 0


def render(summary: dict, res) -> str:
    s, steps = summary["settings"], res.steps
    gap = "" if summary["rho"] is None else f", spectral gap {summary['spectral_gap']:.4f}"
    lines = [f"{s['algorithm']} on {s['topology']} (N = {s['N']}{gap}), {s['problem']} problem, K = {s['K']}, "
             f"tau = {s['tau']}, {s['seeds']} seeds",
             f"steps: alpha = {steps.alpha:.4g}, beta = {steps.beta:.4g} ({steps.rule})",
             f"{'metric':<12}{'final (mean over seeds)':>26}{'time average':>16}"]
    with np.errstate(all="ignore"):
        for m in CURVES:
            fin = np.nanmean(res.final[m]) if np.isfinite(res.final[m]).any() else float("nan")
            avg = res.averages.get(m)
            avg_s = "" if avg is None else f"{np.nanmean(avg) if np.isfinite(avg).any() else float('nan'):16.4g}"
            lines.append(f"{m:<12}{fin:>26.4g}{avg_s}")
    if res.diverged.any():
        lines.append(f"diverged seeds: {np.flatnonzero(res.diverged).tolist()} at rounds "
                     f"{res.diverged_round[res.diverged].tolist()} (alpha = {steps.alpha:g}, beta = {steps.beta:g})")
    lines.append(f"time: {res.seconds:.2f} s for the run, {summary['seconds']:.2f} s in all"
                 + (f"; curves: {summary['figures'][0]}" if summary["figures"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
