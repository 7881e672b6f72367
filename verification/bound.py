"""Does the bound hold, and how loose is it?  Symbolic analysis plus a numeric check.

Prints the bound's terms with their exponents in N and K under the theory's
step sizes (beta = c sqrt(N/K), alpha = a beta / tau, a = 1/N), the leading
term, the transient K0 and the step-size conditions; then runs a small sweep,
evaluates the bound with constants estimated from the very problem instances
that ran (deprl_theory.constants) and the graph's rho, and compares it with
the measured time average at every (N, K).

The default template bounds (1/K) sum_k (a H_k + R_k) with a = alpha tau / beta;
the measured counterpart is Rbar + a Hbar with the run's a, which equals
Gbar = mean(R + H/N) exactly under a = 1/N.

    python -m verification.bound                        # linear, N = 4 8 16
    python -m verification.bound --quick --json
    python -m verification.bound --terms my_bound.json --latex

A user bound (--terms FILE.json) is {"terms": {name: expr}, "conditions": [...],
"consensus_terms": [...]} with optional "quantity" (text), "measured" (one of
G, R, H, aH+R; default G) and "constants" (values overriding the estimates).
Exit status 0 (also when the bound fails: the report says where); bad input: one
line on stderr, exit 2.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np


from deprl_theory.bound import (
    Bound,
    default_bound,
    evaluate,
    evaluate_expr,
    leading_term,
    step_size_conditions,
    substitute,
    term_exponents,
    theory_step_rule,
    to_latex,
    transient_K0,
)
from deprl_theory.constants import estimate_constants
from deprl_theory.expressions import ExpressionError, time_limit
from deprl_theory.experiments import TASK_VERSION, cell_cost, cell_params, cell_problem, simulate_cell
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from deprl_theory.sweep import run_sweep
from verification._cli import ArgumentParser, UsageError, dump_json, run_main

PROG = "python -m verification.bound"
MEASURED = ("G", "R", "H", "aH+R")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Symbolic bound analysis and bound-vs-measurement check.")
    p.add_argument("--problem", choices=("linear", "nonlinear"), default="linear")
    p.add_argument("--n", type=int, nargs="+", help="workers N (default 4 8 16)")
    p.add_argument("--rounds", type=int, nargs="+", help="K grid (default 250 500 1000 2000)")
    p.add_argument("--topology", default="exponential", help="gossip graph (default exponential)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 3)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--c", type=float, default=0.5, help="beta = c sqrt(N/K) (default 0.5)")
    p.add_argument("--tau", type=int, default=5, help="local head steps (default 5)")
    p.add_argument("--terms", type=Path, metavar="FILE.json", help="user-supplied bound")
    p.add_argument("--latex", action="store_true", help="print the bound in LaTeX")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--out", type=Path, default=Path("results/bound"), help="results directory (default results/bound)")
    p.add_argument("--figures", type=Path, default=Path("figures"), help="figure directory (default figures/)")
    p.add_argument("-j", "--jobs", type=int, help="worker processes (default: all cores)")
    p.add_argument("--scheduler", help="dask scheduler address tcp://HOST:PORT (uses the dask executor)")
    p.add_argument("--no-cache", action="store_true", help="recompute every run")
    p.add_argument("--symbolic-only", action="store_true", help="print the analysis, run nothing")
    p.add_argument("--symbolic-timeout", type=float, default=30.0,
                   help="seconds allowed for the symbolic analysis of a bound (default 30)")
    p.add_argument("--quick", action="store_true", help="small grid (N = 4 8, K = 200 800, 2 seeds)")
    return p


def load_bound(path: Path) -> tuple[Bound, dict]:
    """Read a user bound; returns the bound and the file's extras (measured, constants)."""
    if not path.is_file():
        raise UsageError(f"bound file {str(path)!r} does not exist")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"bound file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("terms"), dict) or not spec["terms"]:
        raise UsageError('bound file needs {"terms": {name: expression, ...}}')
    measured = spec.get("measured", "G")
    if measured not in MEASURED:
        raise UsageError(f"'measured' must be one of {', '.join(MEASURED)}, got {measured!r}")
    consts = spec.get("constants", {}) or {}
    if not isinstance(consts, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in consts.values()):
        raise UsageError("'constants' must map names to numbers")
    for name, value in consts.items():
        if not np.isfinite(value):
            raise UsageError(f"constant {name!r} = {value!r} is not a finite number")
    if not all(isinstance(t, (str, int, float)) and not isinstance(t, bool) for t in spec["terms"].values()):
        raise UsageError("every term must be a formula written as a string, such as \"A/sqrt(N*K)\"")
    try:
        bound = Bound.from_strings(spec["terms"], spec.get("conditions"),
                                   quantity=spec.get("quantity", "user-supplied bounded quantity"),
                                   consensus_terms=spec.get("consensus_terms"))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read the bound in {str(path)!r}: {str(exc).splitlines()[0]}") from None
    return bound, {"measured": measured, "constants": {k: float(v) for k, v in consts.items()}}


def analyse(bound: Bound, head_rule: str = "1/N") -> dict[str, Any]:
    """Symbolic part: exponents of every term, leading term, K0, conditions on K."""
    rule = theory_step_rule(head_rule)
    sub = substitute(bound, rule)
    exps = term_exponents(sub)
    out: dict[str, Any] = {
        "quantity": bound.quantity,
        "rule": {k: str(v) for k, v in rule.items()},
        "terms": {n: {"expr": str(bound.terms[n]), "substituted": str(sub.terms[n]),
                      "exponents": {"N": str(e["N"]), "K": str(e["K"])}} for n, e in exps.items()},
    }
    try:
        lead = leading_term(sub)
        out["leading"] = {"names": list(lead.names), "expr": str(lead.expr),
                          "rate_setting": list(lead.rate_setting)}
        out["exponents"] = {"N": str(lead.exponents["N"]), "K": str(lead.exponents["K"])}
    except ValueError as exc:
        out["leading"] = {"names": [], "expr": None, "error": str(exc)}
        out["exponents"] = {"N": None, "K": None}
    try:
        tr = transient_K0(bound, rule)
        out["K0"] = str(tr.K0)
        out["K0_large_N"] = None if tr.K0_large_N is None else str(tr.K0_large_N)
        out["K0_N_exponent"] = str(tr.N_exponent)
        out["_K0_expr"] = tr.K0
    except (ValueError, NotImplementedError) as exc:
        out["K0"] = f"none: {str(exc).splitlines()[0]}"
        out["K0_large_N"] = None
        out["_K0_expr"] = None
    out["conditions"] = [str(c) for c in step_size_conditions(bound, rule)]
    out["_sub"] = sub
    return out


def _condition_holds(cond, values: dict, K: float) -> bool:
    """Numeric truth of one condition (rho = 0 makes some sides infinite: that is fine)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lhs = evaluate_expr(cond.lhs, values, K=K)
        rhs = evaluate_expr(cond.rhs, values, K=K)
    ops = {"<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater}
    return bool(np.all(ops[cond.rel_op](lhs, rhs)))


def _format(s: dict, latex: str | None) -> str:
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
    if latex:
        lines += ["", latex]
    if "points" not in s:
        return "\n".join(lines)
    lines.append("")
    lines.append(f"numeric check ({s['settings']['problem']}, {s['settings']['topology']}, "
                 f"{len(s['settings']['seeds'])} seeds): bound vs measured {s['measured_quantity']}")
    lines.append("  N    K      rho     bound       measured    ratio    conditions")
    for p in s["points"]:
        lines.append(f"  {p['N']:<4} {p['K']:<6} {p['rho']:<7.3g} {p['bound']:<11.3e} {p['measured_max']:<11.3e} "
                     f"{p['ratio']:<8.3g} {'ok' if p['conditions_hold'] else 'violated'}")
    t = s["tightness"]
    lines.append(f"  holds at every measured point: {'yes' if s['holds'] else 'NO'}"
                 f" (bound >= the largest seed's value)")
    lines.append(f"  tightness bound/measured: min {t['min']:.3g}, median {t['median']:.3g}, max {t['max']:.3g}")
    if not all(p["conditions_hold"] for p in s["points"]):
        lines.append("  note: the bound's step-size conditions fail at some points with these constants;"
                     " there the template promises nothing")
    lines.append("  constants (max over seeds, per N): " + "; ".join(
        f"N={n}: " + ", ".join(f"{k}={v:.3g}" for k, v in c.items()) for n, c in s["constants"].items()))
    lines.append(f"  figures: {', '.join(s['figures'])}")
    lines.append(f"  results: {s['csv']}  time: {s['timings']['wall_seconds']:.1f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    ns = args.n or ([4, 8] if args.quick else [4, 8, 16])
    rounds = sorted(set(args.rounds or ([200, 800] if args.quick else [250, 500, 1000, 2000])))
    n_seeds = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    if any(n < 2 for n in ns):
        raise UsageError(f"--n values must be at least 2, got {ns}")
    if any(k < 1 for k in rounds):
        raise UsageError(f"--rounds must be positive, got {rounds}")
    if n_seeds < 1 or args.tau < 1 or not args.c > 0 or args.seed < 0:
        raise UsageError("--seeds and --tau must be >= 1, --c > 0, --seed >= 0")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    from deprl_theory.graphs import TOPOLOGIES

    if args.topology not in TOPOLOGIES:
        raise UsageError(f"unknown topology {args.topology!r}; choose from {', '.join(TOPOLOGIES)}")
    if args.terms is not None:
        bound, extras = load_bound(args.terms)
    else:
        bound, extras = default_bound(), {"measured": "aH+R", "constants": {}}
    try:
        with time_limit(args.symbolic_timeout, "the symbolic analysis of the bound"):
            analysis = analyse(bound)
    except ExpressionError as exc:
        raise UsageError(str(exc)) from None
    sub, K0_expr = analysis.pop("_sub"), analysis.pop("_K0_expr")
    latex = to_latex(bound) + "\n" + to_latex(sub) if args.latex else None
    summary: dict[str, Any] = {"exponents": analysis["exponents"], "K0": analysis["K0"], "analysis": analysis}
    if latex:
        summary["latex"] = latex
    if args.symbolic_only:
        print(dump_json(summary, indent=2) if args.json else _format(summary, latex))
        return 0

    # fail before any run if the bound needs a value nobody provides
    known = {"L_theta", "L_phi", "L_thetaphi", "sigma_theta", "sigma_phi", "delta", "Delta",
             "c", "tau", "rho", "N", "K"} | set(extras["constants"])
    missing = sorted(s.name for s in sub.free_symbols if s.name not in known)
    if missing:
        raise UsageError(f"cannot evaluate the bound: no value for {missing}; add them under \"constants\" "
                         "in the bound file")
    seeds = list(range(n_seeds))
    cells = [cell_params(problem=args.problem, N=n, K=k, topology=args.topology, tau=args.tau, c=args.c)
             for n in ns for k in rounds]
    executor = "dask" if args.scheduler else ("serial" if args.jobs == 1 else "processes")
    sweep = run_sweep(simulate_cell, cells, seeds, base_seed=args.seed, out=args.out, executor=executor,
                      jobs=args.jobs, scheduler=args.scheduler, use_cache=not args.no_cache, progress=not args.json,
                      task_version=TASK_VERSION, cost=cell_cost)
    if sweep.failures:
        raise RuntimeError(f"{len(sweep.failures)} run(s) failed, first: {sweep.failures[0]}")
    t_sweep = time.monotonic() - t0
    by_cell: dict[tuple, list] = {}
    for rec in sweep.records:
        by_cell.setdefault((int(rec["params"]["N"]), int(rec["params"]["K"])), []).append(rec["result"])

    measured_name = extras["measured"]
    constants, points, csv_rows = {}, [], []
    for n in ns:
        problem = cell_problem(cells[ns.index(n) * len(rounds)], seeds, args.seed)
        est = estimate_constants(problem, seed=args.seed)
        consts = {**est.symbols(), **extras["constants"]}
        constants[str(n)] = consts
        for k in rounds:
            res = by_cell[(n, k)]
            rho = float(res[0]["rho"])
            a = res[0]["alpha"] * args.tau / res[0]["beta"]
            vals = {**consts, "c": args.c, "tau": args.tau, "rho": rho, "N": n}
            try:
                terms = evaluate(sub, {k_: v for k_, v in vals.items()}, K=np.array([float(k)]))
            except ValueError as exc:
                raise UsageError(f"cannot evaluate the bound: {str(exc).splitlines()[0]}") from None
            measured = []
            for r in res:
                av = r["averages"]
                measured.append({"G": av["G"], "R": av["R"], "H": av["H"],
                                 "aH+R": av["R"] + a * av["H"]}[measured_name] if not r["diverged"] else np.inf)
            total = float(terms["total"][0])
            cond_ok = all(_condition_holds(c, vals, float(k)) for c in sub.conditions)
            point = {"N": n, "K": k, "rho": rho, "a": a, "bound": total,
                     "terms": {t: float(v[0]) for t, v in terms.items() if t != "total"},
                     "measured_mean": float(np.mean(measured)), "measured_max": float(np.max(measured)),
                     "measured_seeds": [float(m) for m in measured],
                     "ratio": total / float(np.mean(measured)), "holds": bool(total >= np.max(measured)),
                     "conditions_hold": cond_ok,
                     "K0": None if K0_expr is None else float(evaluate_expr(K0_expr, vals))}
            points.append(point)
            for s_, m in zip(seeds, measured):
                csv_rows.append({"problem": args.problem, "topology": args.topology, "N": n, "K": k, "seed": s_,
                                 "rho": rho, "a": a, "measured": m, "measured_quantity": measured_name,
                                 "bound": total, **{f"bound_{t}": v for t, v in point["terms"].items()}})
    ratios = np.array([p["ratio"] for p in points])
    holds = bool(all(p["holds"] for p in points))
    figs = _figure(points, ns, rounds, sweep.records, measured_name, args.figures)
    csv_path = args.out / "bound_points.csv"
    write_csv_atomic(csv_path, csv_rows)
    note = ("the template bounds (1/K) sum (a H_k + R_k); the measured counterpart is Rbar + a Hbar with the run's "
            "a = alpha tau / beta, which is exactly Gbar = mean(R + H/N) under a = 1/N"
            if args.terms is None else f"user bound compared with the measured {measured_name}")
    summary.update({
        "holds": holds,
        "tightness": {"min": float(ratios.min()), "median": float(np.median(ratios)), "max": float(ratios.max())},
        "measured_quantity": "Rbar + a Hbar (= Gbar, a = 1/N)" if measured_name == "aH+R" else measured_name + "bar",
        "note": note,
        "points": points, "constants": constants, "constants_how": est.how,
        "settings": {"problem": args.problem, "n": ns, "rounds": rounds, "topology": args.topology,
                     "seeds": seeds, "base_seed": args.seed, "c": args.c, "tau": args.tau,
                     "terms_file": None if args.terms is None else str(args.terms)},
        "figures": [str(p) for p in figs], "csv": str(csv_path),
        "timings": {"wall_seconds": time.monotonic() - t0, "sweep_seconds": t_sweep,
                    "n_computed": sweep.n_computed, "n_cached": sweep.n_cached},
        "provenance": provenance(),
    })
    write_json_atomic(args.out / "summary.json", summary)
    print(dump_json(summary, indent=2) if args.json else _format(summary, latex))
    return 0


def _figure(points, ns, rounds, records, measured_name, out_dir) -> list:
    from deprl_theory.plotting import _plt, band, paper_style, save_figure

    plt = _plt()
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, len(ns)))
    with paper_style():
        fig, ax = plt.subplots(figsize=(5.4, 4))
        for n, col in zip(ns, colors):
            pts = [p for p in points if p["N"] == n]
            band(ax, rounds, np.array([p["measured_seeds"] for p in pts]), color=col, label=f"measured, N = {n}")
            ax.plot(rounds, [p["bound"] for p in pts], "--", color=col, label=f"bound, N = {n}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rounds K")
        ax.set_ylabel(r"$\bar G_K$" if measured_name in ("G", "aH+R") else measured_name)
        ax.legend(fontsize=7, ncol=2)
        return save_figure(fig, out_dir, "bound_vs_measured")


if __name__ == "__main__":
    run_main(main, PROG)
