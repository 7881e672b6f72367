"""What delays the asymptotic regime? The step constant, the time average's plateau and the floor, measured.

    python -m verification.regime                 # the non-linear problem, N = 4 and 16, K = 500 to 8000
    python -m verification.regime --quick         # a smoke test

For every step constant c and head rule: Gbar (the theorem's average over all
rounds) against K per N, with its local slopes; beside it, as a diagnostic
only, the average of G over the second half of the rounds, and the final
scales ||theta_i|| and ||phibar||. Then the floor: constant steps beta run for
the same flow time beta K, and the local exponent p of the late G in beta
(p = 1 is the K^(-1/2) of the bound). The experiment itself is
deprl_theory.experiments.regime; docs/theory.md (section 7.7) says what it found.
"""
from __future__ import annotations

import time
from typing import Sequence

from deprl_theory.experiments.regime import RegimeStudy, run_regime
from verification._cli import (
    ArgumentParser,
    add_graph_options,
    add_problem_options,
    add_sweep_options,
    cell_overrides,
    finish_study,
    head_rule,
    opened_sweep,
    positive_float,
    positive_int,
    run_main,
    user_input,
)

PROG = "python -m verification.regime"
DEFAULT_OUT = "results/regime"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=positive_int, nargs="+", default=[4, 16], help="worker counts (default 4 16)")
    g.add_argument("--rounds", type=positive_int, nargs="+", default=None,
                   help="rounds K (default 500 1000 2000 4000 8000; with --quick 250 500 1000)")
    g.add_argument("--c", type=positive_float, nargs="+", default=None,
                   help="step constants c in beta = c sqrt(N/K) (default 0.25 0.5 1 2; with --quick 0.5 1)")
    g.add_argument("--head-rules", type=head_rule, nargs="+", default=["1/N", "1/sqrt(N)"],
                   help="head rules a in alpha = a beta / tau (default 1/N 1/sqrt(N))")
    g.add_argument("--seeds", type=positive_int, default=4, help="seeds (instances) per cell (default 4)")
    g.add_argument("--floor-betas", type=positive_float, nargs="+", default=None,
                   help="constant steps of the floor runs (default 0.09 0.045 0.0225 0.01125; with --quick 0.09 0.045)")
    g.add_argument("--floor-time", type=positive_float, default=None,
                   help="flow time beta K of every floor run (default 256; with --quick 64)")
    g.add_argument("--no-floor", action="store_true", help="skip the floor runs")
    add_graph_options(p, "exponential")
    add_problem_options(p)
    p.set_defaults(problem="nonlinear")
    add_sweep_options(p, DEFAULT_OUT)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    quick = args.quick
    rounds = args.rounds or ([250, 500, 1000] if quick else [500, 1000, 2000, 4000, 8000])
    cs = args.c or ([0.5, 1.0] if quick else [0.25, 0.5, 1.0, 2.0])
    betas = [] if args.no_floor else (args.floor_betas or ([0.09, 0.045] if quick else [0.09, 0.045, 0.0225, 0.01125]))
    with user_input():
        study = RegimeStudy(n=tuple(args.n), rounds=tuple(rounds), c=tuple(cs), head_rules=tuple(args.head_rules),
                            seeds=args.seeds, floor_betas=tuple(betas),
                            floor_time=args.floor_time or (64.0 if quick else 256.0), base_seed=args.seed,
                            cell=cell_overrides(args))
        study.check()
    with opened_sweep(args, DEFAULT_OUT, study.cells(), study.seeds) as (options, out, _):
        result, sweep = run_regime(study, options)
    return finish_study(PROG, args, out, result, sweep, time.monotonic() - t0, render)


def _nums(values, fmt: str) -> str:
    return " ".join(format(v, fmt) for v in values)


def render(s: dict) -> str:
    st = s["settings"]
    lines = [f"what delays the regime: {st['cell'].get('problem', 'linear')} problem, "
             f"{st['cell'].get('topology', 'exponential')} graph, {st['seeds']} seeds (base seed {st['base_seed']}), "
             f"K = {st['rounds']}",
             "Gbar is the theorem's average over all K rounds; 'tail' averages G over the second half only "
             "(a diagnostic, never the verdict's metric)"]
    for block in s["grid"]:
        lines.append(f"\nc = {block['c']:g}, head rule a = {block['head_rule']}:")
        for n, r in block["by_N"].items():
            div = f"  ({r['diverged']} runs diverged)" if r["diverged"] else ""
            lines.append(f"  N = {n:>3}: beta {r['beta'][0]:.3g} .. {r['beta'][-1]:.3g}; "
                         f"Gbar {_nums(r['G_full'], '.2e')}{div}")
            lines.append(f"           local slopes, full average: {_nums(r['slopes_full'], '+.2f')}")
            lines.append(f"           local slopes, tail average: {_nums(r['slopes_tail'], '+.2f')}")
            lines.append(f"           tail / full:                {_nums(r['tail_over_full'], '.2f')}; "
                         f"final ||theta_i|| {r['theta']:.2f}, ||phibar|| {r['phibar']:.2f}")
    if s["floor"]:
        lines.append(f"\nfloor: constant steps beta = {st['floor_betas']} run for flow time beta K = "
                     f"{st['floor_time']:g}; mean G over its second half; p = local exponent in beta (95% t CI, "
                     "paired over the same instances; p = 1 is the bound's K^-1/2)")
        for block in s["floor"]:
            for n, r in block["by_N"].items():
                ps = ", ".join(f"{e['value']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]" for e in r["exponents"])
                lines.append(f"  a = {block['head_rule']:<9} N = {n:>3}: G {_nums(r['G_floor'], '.2e')}; p = {ps}")
    sw = s["sweep"]
    lines.append(f"\ntime: {s['seconds']:.1f} s ({sw.get('computed', 0)} runs computed, {sw.get('cached', 0)} cached)")
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
