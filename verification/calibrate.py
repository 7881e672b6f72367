"""Does the verdict keep its error rates? The decision procedure of speedup, run on planted data.

    python -m verification.calibrate [--quick] [--json]

Plants power laws with a known speedup exponent s (exact averaging
N^(-s/2) K^(-1/2), the graph with a transient b N / K on top) and the per-seed
scatter of real runs of the tool, then runs the same code as
`python -m verification.speedup`: the trimmed fit, the group-sequential design
over seeds, the verdict and the exact-averaging decomposition. Prints, per
case, the chance of each verdict, the coverage of the CI the verdict reports and
the mean seeds used. The scatter of the real runs is recorded in
deprl_theory/data/scatter.json; --record-scatter remakes it. The experiment
itself is deprl_theory.experiments.calibration.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.experiments.calibration import (
    DEFAULT_B,
    DEFAULT_S,
    PROCEDURES,
    QUICK_B,
    QUICK_S,
    SCATTER_FILE,
    SCATTER_MODELS,
    calibration_cases,
    load_scatter,
    record_scatter,
    run_calibration,
    t_process_error,
)
from deprl_theory.experiments.decision import INTERVALS
from deprl_theory.inference import DEFAULT_DESIGN, DEFAULT_LOOKS, DESIGNS, group_sequential_design
from deprl_theory.io import provenance, write_json_atomic
from verification._cli import (
    ArgumentParser,
    UsageError,
    dump_json,
    finite_float,
    margin,
    nonneg_float,
    nonneg_int,
    one_of,
    output_dir,
    positive_int,
    run_main,
    user_input,
)

PROG = "python -m verification.calibrate"
DEFAULT_OUT = "results/calibrate"
DEFAULT_SCATTERS = ("gaussian:ring", "gaussian:default", "resampled:ring")
QUICK_SCATTERS = ("gaussian:ring", "resampled:ring")
#: verdict columns of the text table, in this order (others appear after them)
COLUMNS = ("none", "sublinear", "linear", "superlinear", "inconclusive", "sublinear after transient",
           "linear after transient", "superlinear after transient")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("planted cases")
    g.add_argument("--s", type=finite_float, nargs="+", default=None, metavar="S",
                   help="true speedup exponents (default " + " ".join(f"{v:g}" for v in DEFAULT_S)
                        + "; with --quick " + " ".join(f"{v:g}" for v in QUICK_S) + ")")
    g.add_argument("--b", type=nonneg_float, nargs="+", default=None, metavar="B",
                   help="transient sizes b of G = N^(-s/2) K^(-1/2) + b N/K (default "
                        + " ".join(f"{v:g}" for v in DEFAULT_B) + "; with --quick "
                        + " ".join(f"{v:g}" for v in QUICK_B) + ")")
    g.add_argument("--scatter", type=scatter_name, nargs="+", default=None, metavar="MODEL:RUN",
                   help="scatter models: gaussian or resampled, of a recorded run, ring or default (default "
                        + " ".join(DEFAULT_SCATTERS) + "; with --quick " + " ".join(QUICK_SCATTERS) + ")")
    g.add_argument("--procedure", type=one_of(PROCEDURES, "procedure"), nargs="+", default=["sequential"],
                   help="sequential (what speedup does by default), fixed (one look at 95%%), unadjusted (the same "
                        "looks each read at 95%%, the rule before the design; for comparison)")
    g.add_argument("--reps", type=positive_int, default=None,
                   help="planted data sets per case (default 2000; 600 with --quick)")
    d = p.add_argument_group("procedure (as in speedup)")
    d.add_argument("--looks", type=positive_int, nargs="+", default=list(DEFAULT_LOOKS), metavar="S",
                   help=f"seeds at each planned look (default {' '.join(map(str, DEFAULT_LOOKS))})")
    d.add_argument("--design", type=one_of(tuple(DESIGNS), "design"), default=DEFAULT_DESIGN,
                   help="obrien-fleming (default) or pocock")
    d.add_argument("--margin", type=margin, default=0.1, help="verdict margin m (default 0.1)")
    d.add_argument("--interval", type=one_of(INTERVALS, "interval"), default="hall",
                   help="interval of s: hall (default, as speedup) or fieller")
    o = p.add_argument_group("execution and output")
    o.add_argument("--seed", type=nonneg_int, default=0, help="base seed of the planted data (default 0)")
    o.add_argument("--quick", action="store_true", help="fewer cases and data sets (well under 2 minutes)")
    o.add_argument("--out", default=None, help=f"directory for calibration.json (default {DEFAULT_OUT})")
    o.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    o.add_argument("--markdown", action="store_true",
                   help="print the rows as a Markdown table (wrong, right and undecided verdicts per case)")
    o.add_argument("--from", dest="from_file", default=None, metavar="CALIBRATION_JSON",
                   help="render a calibration.json written before, computing nothing")
    o.add_argument("-j", "--jobs", type=positive_int, default=None, help="worker processes (default: all cores)")
    o.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    o.add_argument("--scatter-file", default=None, help=f"recorded scatter (default {SCATTER_FILE})")
    o.add_argument("--record-scatter", action="store_true",
                   help="run the recorded runs (ring and default, each with its companion; 64 seeds, cached "
                        "under results/scatter) and rewrite the scatter file, then calibrate")
    return p


def scatter_name(text: str) -> str:
    """MODEL:RUN with a known model (the run is checked against the scatter file)."""
    import argparse

    model, _, run = text.partition(":")
    if model not in SCATTER_MODELS or not run:
        raise argparse.ArgumentTypeError(f"expected MODEL:RUN with MODEL one of {', '.join(SCATTER_MODELS)}, "
                                         f"got {text!r}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = build_parser().parse_args(argv)
    if args.from_file is not None:
        try:
            summary = json.loads(Path(args.from_file).read_text())
            summary["rows"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--from {args.from_file!r}: not a calibration.json ({exc})") from None
        print(markdown(summary) if args.markdown else dump_json(summary["rows"], indent=2) if args.json
              else render(summary))
        return 0
    out = output_dir(args.out or DEFAULT_OUT, "--out")
    looks = tuple(args.looks) if args.looks else DEFAULT_LOOKS
    if len(looks) > 1 and looks[0] < 2:
        raise UsageError(f"--looks: the first look needs at least 2 seeds, got {looks[0]}")
    if args.record_scatter:
        from deprl_theory.sweep import SweepOptions

        path = record_scatter(SweepOptions(out=Path("results/scatter"), progress=not args.no_progress),
                              path=args.scatter_file)
        sys.stderr.write(f"{PROG}: recorded the scatter in {path}\n")
    with user_input("scatter"):
        scatters = load_scatter(args.scatter_file)
    cases_s = args.s or (QUICK_S if args.quick else DEFAULT_S)
    cases_b = args.b or (QUICK_B if args.quick else DEFAULT_B)
    names = args.scatter or (QUICK_SCATTERS if args.quick else DEFAULT_SCATTERS)
    reps = args.reps or (600 if args.quick else 2000)
    with user_input():
        cases = calibration_cases(cases_s, cases_b, names, args.procedure)
        progress = None if args.no_progress else _progress(time.perf_counter())
        rows = run_calibration(cases, scatters, reps=reps, looks=looks, jobs=args.jobs, design=args.design,
                               margin=args.margin, interval=args.interval, seed=args.seed, progress=progress)
    paths = 100_000 if args.quick else 1_000_000
    with user_input():
        design = group_sequential_design(looks, args.design)
    t_error = {"one_sided_error": t_process_error(design, paths=paths, seed=args.seed), "paths": paths,
               "nominal": design.alpha / 2}
    summary = {"question": "does the verdict keep its stated error rates on planted data?",
               "rows": [r.as_dict() for r in rows], "looks": list(looks), "design": args.design,
               "interval": args.interval,
               "t_process": t_error,
               "margin": args.margin, "reps": reps, "base_seed": args.seed,
               "scatter": {n: {"command": s.command, "median_sd_log_G": s.sd(), "seeds": s.seeds}
                           for n, s in scatters.items()},
               "seconds": time.perf_counter() - t0, "provenance": provenance()}
    write_json_atomic(out / "calibration.json", summary)
    print(markdown(summary) if args.markdown else dump_json(summary["rows"], indent=2) if args.json
          else render(summary))
    return 0


def _boundary_errors(row: dict) -> tuple[str, str]:
    """The chance of a wrong decisive verdict at the margin, and of a right decisive one, for a planted s."""
    p = row["p"]
    linear = p.get("linear", 0.0) + p.get("linear after transient", 0.0)
    sub = p.get("sublinear", 0.0) + p.get("sublinear after transient", 0.0)
    sup = p.get("superlinear", 0.0) + p.get("superlinear after transient", 0.0)
    return f"{linear:.3f}", f"{sub:.3f} / {sup:.3f}"


def markdown(summary: dict) -> str:
    """The rows as a Markdown table: P(linear), P(sublinear) / P(superlinear), P(as a transient), coverage, seeds."""
    lines = [f"{summary['reps']} planted data sets per case; looks {summary['looks']} ({summary['design']}, "
             f"interval {summary.get('interval', 'fieller')}); margin {summary['margin']:g}; base seed "
             f"{summary['base_seed']}. P(linear) counts `linear after transient` too, and so on; "
             "'after transient' is the share of decisive verdicts that came through exact averaging.",
             "",
             "| scatter | b | s | P(linear) | P(sublinear) / P(superlinear) | P(inconclusive) | after transient "
             "| coverage | mean seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        linear, other = _boundary_errors(r)
        tr = sum(v for k, v in r["p"].items() if k.endswith("after transient"))
        lines.append(f"| {r['scatter']} | {r['b']:g} | {r['s']:.2f} | {linear} | {other} | "
                     f"{r['p'].get('inconclusive', 0.0):.3f} | {tr:.3f} | {r['coverage']:.3f} | "
                     f"{r['mean_seeds']:.1f} |")
    return "\n".join(lines)


def _progress(start: float):
    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\rcalibrate: {done}/{total} cases, {time.perf_counter() - start:.0f} s"
                         + ("\n" if done == total else ""))
        sys.stderr.flush()
    return show


def render(summary: dict) -> str:
    rows = summary["rows"]
    words = [w for w in COLUMNS if any(w in r["p"] for r in rows)]
    words += sorted({w for r in rows for w in r["p"]} - set(words))
    short = {w: w.replace(" after transient", "+tr") for w in words}
    head = f"{'procedure':<11}{'scatter':<18}{'b':>5}{'s':>6}  " + "".join(f"{short[w]:>13}" for w in words) \
        + f"{'coverage':>10}{'seeds':>7}"
    lines = [f"planted data: {summary['reps']} data sets per case; looks {summary['looks']} "
             f"({summary['design']}); interval {summary['interval']}; margin {summary['margin']:g}; "
             f"base seed {summary['base_seed']}",
             "P(verdict) per case; '+tr' = 'after transient'; coverage of the CI the verdict reports; mean seeds",
             "", head]
    for r in rows:
        lines.append(f"{r['procedure']:<11}{r['scatter']:<18}{r['b']:>5g}{r['s']:>6.2f}  "
                     + "".join(f"{r['p'].get(w, 0.0):>13.3f}" for w in words)
                     + f"{r['coverage']:>10.3f}{r['mean_seeds']:>7.1f}")
    t = summary["t_process"]
    p = t["one_sided_error"]
    lines += ["", f"design on the t statistics of {t['paths']} simulated seed paths: one-sided error {p:.4f} "
                  f"(Monte Carlo sd {(p * (1 - p) / t['paths']) ** 0.5:.4f}; nominal {t['nominal']:g})",
              f"Monte Carlo sd of a probability p over {summary['reps']} data sets: sqrt(p (1 - p) / "
              f"{summary['reps']}), {(0.025 * 0.975 / summary['reps']) ** 0.5:.4f} at p = 0.025"]
    lines += ["", "scatter: " + "; ".join(f"{n}: median sd of log Gbar {v['median_sd_log_G']:.4f} over "
                                         f"{v['seeds']} seeds ({v['command']})"
                                         for n, v in summary["scatter"].items()),
              f"time: {summary['seconds']:.1f} s"]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
