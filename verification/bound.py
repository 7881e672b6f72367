"""Does the bound hold, and how loose is it?  Symbolic analysis plus a numeric check.

    python -m verification.bound                        # linear, N = 4 8 16
    python -m verification.bound --quick --json
    python -m verification.bound --terms my_bound.json --latex

Prints the bound's terms with their exponents in N and K under the theory's
step sizes, the leading term, the transient K0 and the step-size conditions;
then runs a small sweep and compares the bound, evaluated with constants
estimated on the very problem instances that ran, with the measured time
average at every (N, K). A user bound (--terms FILE.json) is
{"terms": {name: expr}, "conditions": [...], "consensus_terms": [...]} with
optional "quantity", "measured" (G, R, H or aH+R) and "constants". Formulas are
read by a safe parser that evaluates no code. The experiment itself is
deprl_theory.experiments.boundcheck; this module parses, calls and renders.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.bound import to_latex
from deprl_theory.experiments.boundcheck import (BoundCheckResult, BoundCheckStudy, BoundSpec, bound_from_spec,
                                                 default_spec, missing_constants, run_boundcheck, symbolic_analysis)
from deprl_theory.experiments.records import run_rows
from deprl_theory.expressions import ExpressionError, time_limit
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from verification._cli import (ArgumentParser, UsageError, add_problem_options, add_step_options, add_sweep_options,
                               cell_overrides, close_options, dump_json, one_of, positive_float, positive_int,
                               run_main, sweep_options, user_input)

PROG = "python -m verification.bound"
DEFAULT_OUT = "results/bound"


def build_parser() -> ArgumentParser:
    from deprl_theory.graphs import TOPOLOGIES

    p = ArgumentParser(prog=PROG, description="Symbolic bound analysis and bound-vs-measurement check.")
    g = p.add_argument_group("bound and grid")
    g.add_argument("--terms", type=Path, metavar="FILE.json", help="user-supplied bound")
    g.add_argument("--latex", action="store_true", help="print the bound in LaTeX")
    g.add_argument("--symbolic-only", action="store_true", help="print the analysis, run nothing")
    g.add_argument("--symbolic-timeout", type=positive_float, default=30.0,
                   help="seconds allowed for the symbolic analysis of a bound (default 30)")
    g.add_argument("--n", type=positive_int, nargs="+", help="workers N (default 4 8 16; 4 8 with --quick)")
    g.add_argument("--rounds", type=positive_int, nargs="+", help="K grid (default 250 500 1000 2000)")
    g.add_argument("--topology", type=one_of(TOPOLOGIES, "topology"), default="exponential",
                   help="gossip graph (default exponential)")
    g.add_argument("--seeds", type=positive_int, help="seeds per cell (default 3; 2 with --quick)")
    add_step_options(p)
    add_problem_options(p)
    add_sweep_options(p, DEFAULT_OUT)
    return p


def load_spec(path: Path | None) -> BoundSpec:
    """The bound of a file (or the default template); UsageError for anything unreadable."""
    if path is None:
        return default_spec()
    if not path.is_file():
        raise UsageError(f"bound file {str(path)!r} does not exist")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"bound file {str(path)!r} is not valid JSON: {exc}") from None
    with user_input(f"cannot read the bound in {str(path)!r}"):
        return bound_from_spec(spec)


def study_from(args) -> BoundCheckStudy:
    with user_input():
        study = BoundCheckStudy(n=tuple(args.n or ([4, 8] if args.quick else [4, 8, 16])),
                                rounds=tuple(args.rounds or ([200, 800] if args.quick else [250, 500, 1000, 2000])),
                                seeds=args.seeds if args.seeds is not None else (2 if args.quick else 3),
                                base_seed=args.seed, cell={**cell_overrides(args), "topology": args.topology})
        study.check()
    return study


def write_outputs(result: BoundCheckResult, records: list, summary: dict, out: Path, figures: Path | None,
                  t0: float) -> None:
    paths = []
    if figures is not None:
        from deprl_theory.plotting import bound_figure, save_figure

        paths = [str(q) for q in save_figure(bound_figure(result), figures, "bound_vs_measured")]
    csv_path = out / "bound_points.csv"
    write_csv_atomic(csv_path, run_rows(records))
    summary.update(result.as_dict())
    summary.update({"figures": paths, "csv": str(csv_path), "provenance": provenance(),
                    "timings": {"wall_seconds": time.monotonic() - t0, **result.sweep}})
    write_json_atomic(out / "summary.json", summary)


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    spec = load_spec(args.terms)
    try:
        with time_limit(args.symbolic_timeout, "the symbolic analysis of the bound"):
            analysis = symbolic_analysis(spec.bound)
            latex = to_latex(spec.bound) + "\n" + to_latex(analysis.substituted) if args.latex else None
    except ExpressionError as exc:
        raise UsageError(str(exc)) from None
    summary = {"exponents": analysis.exponents, "K0": analysis.K0, "analysis": analysis.as_dict(),
               **({"latex": latex} if latex else {})}
    if not args.symbolic_only:
        missing = missing_constants(analysis, spec)
        if missing:
            raise UsageError(f"cannot evaluate the bound: no value for {missing}; add them under \"constants\" "
                             "in the bound file")
        study = study_from(args)
        options, out, figures = sweep_options(args, DEFAULT_OUT)
        try:
            result, sweep = run_boundcheck(study, spec, analysis, options)
        finally:
            close_options(options)
        write_outputs(result, sweep.records, summary, out, figures, t0)
        summary["settings"]["terms_file"] = None if args.terms is None else str(args.terms)
        write_json_atomic(out / "summary.json", summary)
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


def _symbolic(s: dict) -> list[str]:
    a = s["analysis"]
    lines = [f"bound on {a['quantity']}",
             "step sizes: " + ", ".join(f"{k} = {v}" for k, v in a["rule"].items()),
             "  term      exponent N   exponent K   after substitution"]
    for n, t in a["terms"].items():
        lines.append(f"  {n:<8}  {t['exponents']['N']:<11}  {t['exponents']['K']:<11}  {t['substituted']}")
    lead = a["leading"]
    lines.append(f"  leading term: {' + '.join(lead['names']) or '?'} ~ N^{s['exponents']['N']} K^{s['exponents']['K']}"
                 + (f" (rate set by {', '.join(lead['rate_setting'])})" if lead.get("rate_setting") else ""))
    lines.append(f"  transient K0 = {s['K0']}")
    if a.get("K0_large_N"):
        lines.append(f"  K0 for large N ~ {a['K0_large_N']}")
    lines.append("  conditions: " + ("; ".join(a["conditions"]) or "none"))
    if s.get("latex"):
        lines += ["", s["latex"]]
    return lines


def render(s: dict) -> str:
    """The text report of a summary."""
    lines = _symbolic(s)
    if "points" not in s:
        return "\n".join(lines)
    st = s["settings"]
    lines += ["", f"numeric check ({st['problem']}, {st['topology']}, {len(st['seeds'])} seeds): "
                  f"bound vs measured {s['measured_quantity']}",
              "  N    K      rho     bound       measured    ratio    conditions"]
    for p in s["points"]:
        lines.append(f"  {p['N']:<4} {p['K']:<6} {p['rho']:<7.3g} {p['bound']:<11.3e} {p['measured_max']:<11.3e} "
                     f"{p['ratio']:<8.3g} {'ok' if p['conditions_hold'] else 'violated'}")
    t = s["tightness"]
    lines.append(f"  holds at every measured point: {'yes' if s['holds'] else 'NO'} (bound >= the largest seed's value)")
    lines.append(f"  tightness bound/measured: min {t['min']:.3g}, median {t['median']:.3g}, max {t['max']:.3g}")
    if not all(p["conditions_hold"] for p in s["points"]):
        lines.append("  note: the bound's step-size conditions fail at some points with these constants;"
                     " there the template promises nothing")
    lines.append("  constants (max over seeds, per N): " + "; ".join(
        f"N={n}: " + ", ".join(f"{k}={v:.3g}" for k, v in c.items()) for n, c in s["constants"].items()))
    lines.append(f"  figures: {', '.join(s['figures']) or '-'}")
    lines.append(f"  results: {s['csv']}  time: {s['timings']['wall_seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
