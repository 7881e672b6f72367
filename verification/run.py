"""Run one configuration of DePRL (or a baseline) and report its metrics.

    python -m verification.run --problem linear --n 8 --topology ring --rounds 2000

Prints the final and time-averaged metrics per seed (R, H, C, G, subspace
distance, excess risk), the step sizes and wall time; draws the metric curves
to figures/ (PNG and PDF); ``--json`` prints a machine-readable summary.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from deprl_theory.engine import ALGORITHMS, run, step_sizes, theory_step_sizes
from deprl_theory.experiments import build_mixing, cell_params
from deprl_theory.graphs import TOPOLOGIES, WEIGHT_RULES, mixing_rate
from deprl_theory.problems import make_problem
from verification._cli import ArgumentParser, UsageError, dump_json, run_main

PROG = "python -m verification.run"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--problem", choices=("linear", "nonlinear"), default="linear")
    p.add_argument("--n", type=int, default=8, help="workers N (default 8)")
    p.add_argument("--topology", default="ring", help=f"one of {', '.join(TOPOLOGIES)} (default ring)")
    p.add_argument("--weights", choices=WEIGHT_RULES, default="metropolis")
    p.add_argument("--gap", type=float, default=None, help="spectral gap for --topology exact_gap")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="deprl")
    p.add_argument("--rounds", type=int, default=2000, help="rounds K (default 2000)")
    p.add_argument("--tau", type=int, default=5, help="head steps per round (default 5)")
    p.add_argument("--alpha", type=float, default=None, help="constant head step (with --beta)")
    p.add_argument("--beta", type=float, default=None, help="constant representation step (with --alpha)")
    p.add_argument("--c", type=float, default=0.5, help="theory rule beta = c sqrt(N/K) when no --beta")
    p.add_argument("--head-rule", default="1/N", help="a in alpha = a beta / tau (theory rule)")
    p.add_argument("--seeds", type=int, default=3, help="seeds run at once (default 3)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--rank", type=int, default=3)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--heterogeneity", type=float, default=1.0)
    p.add_argument("--activation", choices=("tanh", "sigmoid", "relu"), default="tanh")
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=None, help="trace resolution in rounds")
    p.add_argument("--figures", default="figures", help="directory of the curves figure (default figures/)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = build_parser().parse_args(argv)
    if args.n < 2:
        raise UsageError(f"--n must be >= 2, got {args.n}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.topology not in TOPOLOGIES:
        raise UsageError(f"unknown topology {args.topology!r}; choose from {', '.join(TOPOLOGIES)}")
    if (args.alpha is None) != (args.beta is None):
        raise UsageError("give both --alpha and --beta for constant steps, or neither for the theory rule")
    cell = cell_params(N=args.n, K=args.rounds, topology=args.topology, weights=args.weights, gap=args.gap)
    W = None
    rho = None
    if args.algorithm in ("deprl", "dpsgd"):
        try:
            W = build_mixing(cell, args.seed)
        except ValueError as exc:
            raise UsageError(f"--topology {args.topology} with N = {args.n}: {exc}") from None
        rho = mixing_rate(W)
    problem = make_problem(args.problem, args.n, dim=args.dim, rank=args.rank, noise=args.noise, batch=args.batch,
                           heterogeneity=args.heterogeneity, activation=args.activation, n_eval=args.n_eval,
                           n_seeds=args.seeds, seed=args.seed)
    if args.alpha is not None:
        steps = step_sizes(args.alpha, args.beta)
    else:
        steps = theory_step_sizes(args.n, args.rounds, args.tau, c=args.c, head_rule=args.head_rule)
    res = run(problem, W, algorithm=args.algorithm, rounds=args.rounds, tau=args.tau, steps=steps,
              eval_every=args.eval_every, seed=args.seed)
    figure = []
    if not args.no_figures:
        from deprl_theory.plotting import curves_figure, save_figure

        fig = curves_figure(res.trace, ["G", "R", "H", "C", "subspace", "excess_risk"],
                            title=f"{args.algorithm} on {args.topology}, N = {args.n}, {args.problem} problem "
                                  f"(band over {args.seeds} seeds)")
        name = f"run_{args.problem}_{args.algorithm}_{args.topology}_n{args.n}_k{args.rounds}"
        figure = [str(p) for p in save_figure(fig, Path(args.figures), name)]
    summary = {
        "settings": {k: getattr(args, k) for k in ("problem", "n", "topology", "weights", "algorithm", "rounds",
                                                   "tau", "seeds", "seed", "dim", "rank", "batch", "noise")},
        "rho": rho,
        "spectral_gap": None if rho is None else 1 - rho,
        **res.summary(),
        "figures": figure,
        "seconds": time.perf_counter() - t0,
    }
    if args.json:
        print(dump_json(summary, indent=2))
        return 0
    gap = "" if rho is None else f", spectral gap {1 - rho:.4f}"
    print(f"{args.algorithm} on {args.topology} (N = {args.n}{gap}), {args.problem} problem, K = {args.rounds}, "
          f"tau = {args.tau}, {args.seeds} seeds")
    print(f"steps: alpha = {steps.alpha:.4g}, beta = {steps.beta:.4g} ({steps.rule})")
    print(f"{'metric':<12}{'final (mean over seeds)':>26}{'time average':>16}")
    for m in ("G", "R", "H", "C", "subspace", "excess_risk"):
        fin = np.nanmean(res.final[m]) if np.isfinite(res.final[m]).any() else float("nan")
        avg = res.averages.get(m)
        avg_s = "" if avg is None else f"{np.nanmean(avg) if np.isfinite(avg).any() else float('nan'):16.4g}"
        print(f"{m:<12}{fin:>26.4g}{avg_s}")
    if res.diverged.any():
        print(f"diverged seeds: {np.flatnonzero(res.diverged).tolist()} at rounds "
              f"{res.diverged_round[res.diverged].tolist()} (alpha = {steps.alpha:g}, beta = {steps.beta:g})")
    print(f"time: {res.seconds:.2f} s for the run, {summary['seconds']:.2f} s in all"
          + (f"; curves: {figure[0]}" if figure else ""))
    return 0


if __name__ == "__main__":
    run_main(main, PROG)
