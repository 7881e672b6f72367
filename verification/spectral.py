"""Does the consensus error grow like rho^2 / (1 - rho)^2, and when does the transient end?

Sweeps the spectral gap of the exact-gap family W = (1-g) I + g 11^T/N at
fixed N (plus named topologies), fits the slope of log Cbar against
log(rho/(1-rho)) (the template predicts 2) and measures, per gap, after how
many rounds Gbar follows the centralized reference (no consensus error),
next to the template's predicted transient K0.

    python -m verification.spectral                 # N = 16, about 1-2 minutes on 2 cores
    python -m verification.spectral --quick --json
    python -m verification.spectral --gaps 0.5 0.1 0.02 --rounds 500 2000 --seeds 6

Writes figures/spectral_*.{png,pdf}, and under --out a tidy CSV (one row per
run), summary.json (settings, seeds, provenance, timings) and the run cache.
Exit status 0; bad input: one line on stderr, exit 2.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deprl_theory.constants import estimate_constants
from deprl_theory.experiments import TASK_VERSION, cell_cost, cell_problem, simulate_cell
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from deprl_theory.spectral import (
    DEFAULT_GAPS,
    DEFAULT_ROUNDS,
    NAMED_TOPOLOGIES,
    spectral_cells,
    spectral_figures,
    summarize,
)
from deprl_theory.sweep import run_sweep
from verification._cli import ArgumentParser, UsageError, dump_json, run_main

PROG = "python -m verification.spectral"
QUICK = {"gaps": (0.5, 0.15, 0.04), "rounds": (200, 800), "seeds": 3, "topologies": ("ring", "exponential", "complete")}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Consensus error and transient against the spectral gap.")
    p.add_argument("--n", type=int, default=16, help="workers N (default 16)")
    p.add_argument("--gaps", type=float, nargs="+", help=f"spectral gaps in (0, 1] (default {' '.join(map(str, DEFAULT_GAPS))})")
    p.add_argument("--topologies", nargs="*", help=f"named topologies (default {' '.join(NAMED_TOPOLOGIES)})")
    p.add_argument("--rounds", type=int, nargs="+", help=f"K grid (default {' '.join(map(str, DEFAULT_ROUNDS))})")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 4)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--tau", type=int, default=5, help="local head steps (default 5)")
    p.add_argument("--c", type=float, default=0.5, help="step constant c in beta = c sqrt(N/K) (default 0.5)")
    p.add_argument("--factor", type=float, default=1.25, help="transient: Gbar within this factor of the reference (default 1.25)")
    p.add_argument("--out", type=Path, default=Path("results/spectral"), help="results directory (default results/spectral)")
    p.add_argument("--figures", type=Path, default=Path("figures"), help="figure directory (default figures/)")
    p.add_argument("-j", "--jobs", type=int, help="worker processes (default: all cores)")
    p.add_argument("--scheduler", help="dask scheduler address (uses the dask executor)")
    p.add_argument("--no-cache", action="store_true", help="recompute every run")
    p.add_argument("--quick", action="store_true", help="small grid, well under 30 s")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _settings(args: Any) -> dict[str, Any]:
    q = QUICK if args.quick else {}
    gaps = args.gaps if args.gaps is not None else q.get("gaps", DEFAULT_GAPS)
    topologies = args.topologies if args.topologies is not None else q.get("topologies", NAMED_TOPOLOGIES)
    rounds = args.rounds if args.rounds is not None else q.get("rounds", DEFAULT_ROUNDS)
    n_seeds = args.seeds if args.seeds is not None else q.get("seeds", 4)
    if args.n < 2:
        raise UsageError(f"--n must be at least 2, got {args.n}")
    if n_seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {n_seeds}")
    if any(k < 1 for k in rounds):
        raise UsageError(f"--rounds must be positive, got {rounds}")
    if args.tau < 1 or not args.c > 0:
        raise UsageError("--tau must be >= 1 and --c > 0")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if sum(1 for g in gaps if 0 < g < 1) < 2:
        raise UsageError("give at least two gaps strictly between 0 and 1 to fit a slope")
    from deprl_theory.graphs import TOPOLOGIES

    unknown = [t for t in topologies if t not in TOPOLOGIES]
    if unknown:
        raise UsageError(f"unknown topology {unknown[0]!r}; choose from {', '.join(TOPOLOGIES)}")
    return {"n": args.n, "gaps": [float(g) for g in gaps], "topologies": list(topologies),
            "rounds": sorted(set(int(k) for k in rounds)), "seeds": list(range(n_seeds)),
            "base_seed": args.seed, "tau": args.tau, "c": args.c, "factor": args.factor}


def _rows(records: Sequence[dict]) -> list[dict]:
    rows = []
    for rec in records:
        p, r = rec["params"], rec["result"]
        rows.append({**p, "seed": rec["seed"], "rho": r["rho"], "spectral_gap": r["spectral_gap"],
                     "alpha": r["alpha"], "beta": r["beta"], "diverged": r["diverged"],
                     **{f"{m}bar": r["averages"][m] for m in ("R", "H", "C", "G")},
                     **{f"final_{m}": v for m, v in r["final"].items()},
                     "cached": rec.get("cached"), "seconds": rec.get("seconds")})
    return rows


def _format(s: dict) -> str:
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
    lines.append(f"  figures: {', '.join(s['figures'])}")
    lines.append(f"  results: {s['csv']}, {s['summary_json']}")
    t = s["timings"]
    lines.append(f"  time: {t['wall_seconds']:.1f} s ({t['n_computed']} runs computed, {t['n_cached']} cached)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    st = _settings(args)
    t0 = time.monotonic()
    cells = spectral_cells(st["n"], st["gaps"], st["topologies"], st["rounds"], tau=st["tau"], c=st["c"])
    executor = "dask" if args.scheduler else "processes"
    if args.jobs == 1 and not args.scheduler:
        executor = "serial"
    sweep = run_sweep(simulate_cell, cells, st["seeds"], base_seed=st["base_seed"], out=args.out,
                      executor=executor, jobs=args.jobs, scheduler=args.scheduler,
                      use_cache=not args.no_cache, progress=not args.json, task_version=TASK_VERSION,
                      cost=cell_cost)
    if sweep.failures:
        first = sweep.failures[0]
        raise RuntimeError(f"{len(sweep.failures)} run(s) failed, first: {first}")
    t_sweep = time.monotonic() - t0
    problem = cell_problem(cells[0], st["seeds"], st["base_seed"])
    consts = estimate_constants(problem, seed=st["base_seed"])
    summary = summarize(sweep.records, n=st["n"], gaps=st["gaps"], topologies=st["topologies"],
                        rounds=st["rounds"], seeds=st["seeds"], constants=consts.symbols(),
                        c=st["c"], tau=st["tau"], factor=st["factor"])
    figs = spectral_figures(summary, sweep.records, st["seeds"], str(args.figures))
    summary.pop("_arrays")
    csv_path = args.out / "spectral_runs.csv"
    write_csv_atomic(csv_path, _rows(sweep.records))
    summary.update({
        "settings": st, "constants": consts.as_dict(),
        "figures": [str(p) for p in figs], "csv": str(csv_path),
        "summary_json": str(args.out / "summary.json"),
        "timings": {"wall_seconds": time.monotonic() - t0, "sweep_seconds": t_sweep,
                    "n_computed": sweep.n_computed, "n_cached": sweep.n_cached,
                    "run_seconds": float(np.sum([r.get("seconds") or 0 for r in sweep.records]))},
        "provenance": provenance(),
    })
    write_json_atomic(args.out / "summary.json", summary)
    print(dump_json(summary, indent=2) if args.json else _format(summary))
    return 0


if __name__ == "__main__":
    run_main(main, PROG)
