"""Does the bound hold where it applies, and does it have the right shape?  Symbolic analysis plus a numeric check.

    python -m verification.bound                        # N = 4 8 16, four gaps: well under a minute on 2 cores
    python -m verification.bound --quick --json
    python -m verification.bound --terms my_bound.json --latex
    python -m verification.bound --topology exponential # one named graph per N (rho tied to N)

Prints the bound's terms with their exponents in N and K under the theory's
step sizes, the leading term, the transient K0 and the step-size conditions;
then runs a small sweep and compares the bound, evaluated with constants
estimated on the very problem instances that ran and the step sizes each run
used, with the measured time average at every (N, K, rho). Each point is
`holds`, `violated` or `out of scope` (a condition of the bound fails there,
named); the bound holds or is violated over the points in scope. Separately,
the exponents of measured/bound in N, K and 1/(1-rho) say whether the bound is
`tight`, `loose` or `optimistic` in each. A user bound (--terms FILE.json) is
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

from deprl_theory.bound import Bound, to_latex
from deprl_theory.experiments.boundcheck import (
    BoundCheckResult,
    BoundCheckStudy,
    BoundSpec,
    SymbolicAnalysis,
    bound_from_spec,
    default_spec,
    missing_constants,
    run_boundcheck,
    symbolic_analysis,
)
from deprl_theory.experiments.records import run_rows
from deprl_theory.expressions import ExpressionError, call_with_time_limit
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from verification._cli import (
    ArgumentParser,
    UsageError,
    add_problem_options,
    add_step_options,
    add_sweep_options,
    cell_overrides,
    dump_json,
    one_of,
    opened_sweep,
    positive_float,
    positive_int,
    run_main,
    unit_float,
    user_input,
)

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
    g.add_argument("--rounds", type=positive_int, nargs="+",
                   help="K grid (default 250 500 1000 2000; 200 800 with --quick)")
    g.add_argument("--topology", type=one_of(TOPOLOGIES, "topology"), default="exact_gap",
                   help="gossip graph (default exact_gap, which varies rho apart from N; a named graph ties rho to N)")
    g.add_argument("--gaps", type=unit_float, nargs="+",
                   help="spectral gaps of the exact_gap family (default 1 0.5 0.2 0.05; 0.5 0.1 with --quick)")
    g.add_argument("--seeds", type=positive_int, help="seeds per cell (default 4; 2 with --quick)")
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


QUICK = {"n": (4, 8), "rounds": (200, 800), "gaps": (0.5, 0.1), "seeds": 2}
DEFAULTS = {"n": (4, 8, 16), "rounds": (250, 500, 1000, 2000), "gaps": (1.0, 0.5, 0.2, 0.05), "seeds": 4}


def study_from(args) -> BoundCheckStudy:
    d = QUICK if args.quick else DEFAULTS
    if args.gaps is not None and args.topology != "exact_gap":
        raise UsageError(f"--gaps applies to the exact_gap topology only, not to {args.topology}")
    cell = {k: v for k, v in cell_overrides(args).items() if k not in ("topology", "gap")}
    with user_input():
        study = BoundCheckStudy(n=tuple(args.n or d["n"]), rounds=tuple(args.rounds or d["rounds"]),
                                gaps=tuple(args.gaps or d["gaps"]), topology=args.topology,
                                seeds=args.seeds if args.seeds is not None else d["seeds"],
                                base_seed=args.seed, cell=cell)
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


def analyse(bound: Bound, latex: bool) -> tuple[SymbolicAnalysis, str | None]:
    """The symbolic analysis of ``bound`` and, if asked, its LaTeX (run under the time budget)."""
    analysis = symbolic_analysis(bound)
    return analysis, (to_latex(bound) + "\n" + to_latex(analysis.substituted) if latex else None)


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    spec = load_spec(args.terms)
    try:
        analysis, latex = call_with_time_limit(args.symbolic_timeout, "the symbolic analysis of the bound",
                                               analyse, spec.bound, args.latex)
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
        with opened_sweep(args, DEFAULT_OUT, study.cells(), study.seeds) as (options, out, figures):
            result, sweep = run_boundcheck(study, spec, analysis, options)
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
    if a.get("K0_note"):
        lines.append(f"  K0: {a['K0_note']}")
    lines.append("  conditions: " + ("; ".join(a["conditions"]) or "none"))
    if s.get("latex"):
        lines += ["", s["latex"]]
    return lines


def _points(s: dict) -> list[str]:
    st = s["settings"]
    gaps = "" if st["gaps"] is None else f", gaps {' '.join(f'{g:g}' for g in st['gaps'])}"
    lines = [f"numeric check ({st['problem']}, {st['topology']}{gaps}, {len(st['seeds'])} seeds): "
             f"bound vs measured {s['measured_quantity']} (seed mean), with the step sizes each run used",
             "  N    K      rho     beta      bound       measured    bound/meas  label"]
    for p in s["points"]:
        why = "" if p["in_scope"] else f" ({p['failing_conditions'][0]})"
        lines.append(f"  {p['N']:<4} {p['K']:<6} {p['rho']:<7.3g} {p['beta']:<9.3g} {p['bound']:<11.3e} "
                     f"{p['measured_mean']:<11.3e} {p['ratio']:<11.3g} {p['label']}{why}")
    return lines


def _verdicts(s: dict) -> list[str]:
    sc, t = s["scope"], s["tightness"]
    lines = [f"  bound: {s['label'].upper()} ({s['label_reason']})",
             f"  points: {sc['holds']} hold, {sc['violated']} violated, {sc['out_of_scope']} out of scope"]
    for cond, count in sc["failing_conditions"].items():
        lines.append(f"    out of scope because {cond} fails: {count} points")
    for name, part in (("in scope", t["in_scope"]), ("all points", t["all"])):
        if part:
            lines.append(f"  bound/measured over {name}: min {part['min']:.3g}, median {part['median']:.3g}, "
                         f"max {part['max']:.3g}")
    lines.append("  largest term of the bound: "
                 + ", ".join(f"{t} at {c} points" for t, c in s["dominant_terms"].items()))
    lines.append(f"  {s['shape_summary']}")  # the one conclusion on the shape, as the report and README say it
    for key, where in (("shape_in_scope", "points in scope"), ("shape", "all points")):
        lines.append(f"    over {where} ({s[key + '_note']}):")
        for v in s[key].values():
            lines.append(f"      {v['label']}: {v['reason']}")
    return lines


def render(s: dict) -> str:
    """The text report of a summary."""
    lines = _symbolic(s)
    if "points" not in s:
        return "\n".join(lines)
    lines += [""] + _points(s) + _verdicts(s)
    lines.append("  constants (max over seeds, per N): " + "; ".join(
        f"N={n}: " + ", ".join(f"{k}={v:.3g}" for k, v in c.items()) for n, c in s["constants"].items()))
    lines.append(f"  figures: {', '.join(s['figures']) or '-'}")
    lines.append(f"  results: {s['csv']}  time: {s['timings']['wall_seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main, PROG)
