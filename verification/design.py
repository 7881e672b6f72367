"""Why balanced heads? The instance-to-instance scatter of each head design, measured.

    python -m verification.design                  # N = 4 and 32, K = 500, 32 instances each

Runs the same cells with the true heads drawn iid and balanced (whitened), over
many problem instances, and prints the standard deviation over instances of
log Gbar and log Rbar, with 95 % chi-square intervals: the scatter a rate fit
has to average away. The experiment itself is deprl_theory.experiments.design.
"""
from __future__ import annotations

import time
from typing import Sequence

from deprl_theory.experiments.design import DesignStudy, run_design
from verification._cli import (
    ArgumentParser,
    add_problem_options,
    add_step_options,
    add_sweep_options,
    cell_overrides,
    finish_study,
    opened_sweep,
    positive_int,
    run_main,
    user_input,
)

PROG = "python -m verification.design"
DEFAULT_OUT = "results/design"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=positive_int, nargs="+", default=[4, 32], help="worker counts (default 4 32)")
    g.add_argument("--rounds", type=positive_int, default=500, help="rounds K (default 500)")
    g.add_argument("--instances", type=positive_int, default=32, help="problem instances (default 32; 8 with --quick)")
    add_step_options(p)
    add_problem_options(p)
    add_sweep_options(p, DEFAULT_OUT)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in cell_overrides(args).items() if k != "heads"}
    with user_input():
        study = DesignStudy(n=tuple(args.n), rounds=args.rounds, base_seed=args.seed, cell=overrides,
                            instances=8 if args.quick and args.instances == 32 else args.instances)
        study.check()
    with opened_sweep(args, DEFAULT_OUT, study.cells(), study.instances) as (options, out, _):
        result, sweep = run_design(study, options)
    return finish_study(PROG, args, out, result, sweep, time.monotonic() - t0, render)


def render(s: dict) -> str:
    st = s["settings"]
    lines = [f"scatter over {st['instances']} instances of log Mbar at K = {st['rounds']} "
             "(standard deviation, 95% chi-square CI)",
             f"{'heads':<10}{'N':>5}  {'sd log Gbar':<26}{'sd log Rbar':<26}"]
    for heads, by_n in s["scatter"].items():
        for n, m in by_n.items():
            cols = [f"{m[k]['sd']:.3f} [{m[k]['ci'][0]:.3f}, {m[k]['ci'][1]:.3f}]" for k in ("G", "R")]
            lines.append(f"{heads:<10}{n:>5}  {cols[0]:<26}{cols[1]:<26}")
    lines.append(f"time: {s['seconds']:.1f} s ({s['sweep']['computed']} runs computed, {s['sweep']['cached']} cached)")
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
