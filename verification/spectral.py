"""Does the consensus error grow like rho^2 / (1 - rho)^2, and when does the transient end?

    python -m verification.spectral                 # N = 16, about 1-2 minutes on 2 cores
    python -m verification.spectral --quick --json
    python -m verification.spectral --gaps 0.5 0.1 0.02 --rounds 500 2000 --seeds 6

Sweeps the spectral gap of the exact-gap family W = (1-g) I + g 11^T/N at
fixed N (plus named topologies), fits the slope of log Cbar against
log(rho/(1-rho)) (the template predicts 2) and measures, per gap, after how
many rounds Gbar follows the centralized reference (no consensus error),
next to the template's predicted transient K0. The experiment itself is
deprl_theory.experiments.consensus; this module parses, calls and renders.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.experiments.consensus import (DEFAULT_GAPS, DEFAULT_ROUNDS, NAMED_TOPOLOGIES, ConsensusResult,
                                                ConsensusStudy, run_consensus)
from deprl_theory.experiments.records import run_rows
from deprl_theory.graphs import TOPOLOGIES
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from verification._cli import (ArgumentParser, add_problem_options, add_step_options, add_sweep_options,
                               cell_overrides, close_options, dump_json, one_of, positive_float,
                               positive_int, run_main, sweep_options, unit_float, user_input)

PROG = "python -m verification.spectral"
DEFAULT_OUT = "results/spectral"
QUICK = {"gaps": (0.5, 0.15, 0.04), "rounds": (200, 800), "seeds": 3, "topologies": ("ring", "exponential", "complete")}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Consensus error and transient against the spectral gap.")
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=positive_int, default=16, help="workers N (default 16)")
    g.add_argument("--gaps", type=unit_float, nargs="+",
                   help=f"spectral gaps in (0, 1] (default {' '.join(map(str, DEFAULT_GAPS))})")
    g.add_argument("--topologies", type=one_of(TOPOLOGIES, "topology"), nargs="*",
                   help=f"named topologies (default {' '.join(NAMED_TOPOLOGIES)})")
    g.add_argument("--rounds", type=positive_int, nargs="+",
                   help=f"K grid (default {' '.join(map(str, DEFAULT_ROUNDS))})")
    g.add_argument("--seeds", type=positive_int, help="seeds per cell (default 4; 3 with --quick)")
    g.add_argument("--factor", type=positive_float, default=1.25,
                   help="transient: Gbar within this factor (> 1) of the reference (default 1.25)")
    add_step_options(p)
    add_problem_options(p)
    add_sweep_options(p, DEFAULT_OUT)
    return p


def study_from(args) -> ConsensusStudy:
    """The study the options describe; every topology is built at N before anything runs."""
    q = QUICK if args.quick else {}
    with user_input():
        study = ConsensusStudy(
            n=args.n, gaps=tuple(args.gaps if args.gaps is not None else q.get("gaps", DEFAULT_GAPS)),
            topologies=tuple(args.topologies if args.topologies is not None
                             else q.get("topologies", NAMED_TOPOLOGIES)),
            rounds=tuple(args.rounds if args.rounds is not None else q.get("rounds", DEFAULT_ROUNDS)),
            seeds=args.seeds if args.seeds is not None else q.get("seeds", 4), base_seed=args.seed,
            cell=cell_overrides(args), factor=args.factor)
        study.check()
    return study


def write_outputs(result: ConsensusResult, records: list, out: Path, figures: Path | None, t0: float) -> dict:
    """CSV, figures and summary.json; returns the summary."""
    summary = result.as_dict()
    paths = []
    if figures is not None:
        from deprl_theory.plotting import consensus_figures, save_figure

        for name, fig in consensus_figures(result).items():
            paths += [str(q) for q in save_figure(fig, figures, f"spectral_{name}")]
    csv_path = out / "spectral_runs.csv"
    write_csv_atomic(csv_path, run_rows(records))
    summary.update({"figures": paths, "csv": str(csv_path), "summary_json": str(out / "summary.json"),
                    "timings": {"wall_seconds": time.monotonic() - t0, **summary["sweep"]},
                    "provenance": provenance()})
    write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    study = study_from(args)
    options, out, figures = sweep_options(args, DEFAULT_OUT)
    try:
        result, sweep = run_consensus(study, options)
    finally:
        close_options(options)
    for f in sweep.failures:
        sys.stderr.write(f"{PROG}: cell {f['params']['topology']} K={f['params']['K']} failed: {f['error']}\n")
    summary = write_outputs(result, sweep.records, out, figures, t0)
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


def render(s: dict) -> str:
    """The text report of a summary."""
    f = s["consensus_slope"]
    lines = [f"spectral gap experiment: N = {s['settings']['n']}, K = {f['K']} for the slope, "
             f"seeds = {len(s['settings']['seeds'])}",
             f"  consensus slope d log Cbar / d log(rho/(1-rho)) = {f['value']:.3f} "
             f"[{f['ci'][0]:.3f}, {f['ci'][1]:.3f}] (95% CI), predicted {s['predicted_slope']:g}",
             f"  verdict: {s['verdict']} ({s['reason']})",
             "  gap       rho      rho/(1-rho)  Cbar"]
    for r in s["gaps"]:
        x = "-" if r["x"] is None else f"{r['x']:.3g}"
        lines.append(f"  {r['gap']:<8.3g}  {r['rho']:<7.3g}  {x:<11}  {r['Cbar']:.3e}")
    lines.append("  topology     gap      Cbar       Cbar from fit")
    for t in s["topologies"]:
        pc = "-" if t["predicted_Cbar"] is None else f"{t['predicted_Cbar']:.3e}"
        lines.append(f"  {t['topology']:<11}  {t['spectral_gap']:<7.3g}  {t['Cbar']:.3e}  {pc}")
    tr = s["transient"]
    lines.append(f"  transient (Gbar within {tr['factor']:g}x of {tr['reference']}):")
    lines.append("  gap       measured K    predicted K0 (template)")
    for r in tr["rows"]:
        m = f"> {tr['rounds'][-1]}" if r["measured_K"] is None else str(r["measured_K"])
        pk = "-" if r["predicted_K0"] is None else f"{r['predicted_K0']:.3g}"
        lines.append(f"  {r['gap']:<8.3g}  {m:<12}  {pk}")
    lines.append(f"  K0 = {tr['predicted_K0_expr']}")
    lines.append(f"  figures: {', '.join(s['figures']) or '-'}")
    lines.append(f"  results: {s['csv']}, {s['summary_json']}")
    t = s["timings"]
    lines.append(f"  time: {t['wall_seconds']:.1f} s ({t['computed']} runs computed, {t['cached']} cached)")
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
