"""How does the mixing matrix set the consensus error, does its bound hold, and when does linear speedup start?

    python -m verification.spectral                 # N = 16 plus the transient law: about 4 minutes on 2 cores
    python -m verification.spectral --quick --json  # under a minute
    python -m verification.spectral --no-law        # the consensus part only
    python -m verification.spectral --gaps 0.5 0.1 0.02 --rounds 500 2000 --seeds 6
    python -m verification.spectral --true-rank 5 --no-law --rounds 1000   # a misspecified model (rank 3)

At fixed N (the exact-gap family W = (1-g) I + g 11^T/N over a range of gaps,
plus every named topology): whether the consensus lemma Cbar <= 6 rho^2 beta^2
(sigma_phi^2 + delta^2)/(1-rho)^2 holds, is violated or is out of scope (its
step-size condition fails) at each graph; whether it is tight in rho (the
measured slope of log Cbar against log(rho/(1-rho)) against its 2); and which
predictor of Cbar puts every graph on one line: the whole spectrum
(sum_{i>=2} lambda_i^2/(1-lambda_i^2)) or the gap alone. Then the transient
law K0 ~ N^a (1-rho)^-q measured on the exact-gap family over N and the gap,
against the template (a = 3, q = 4) and the noise-dominated alternative
(a = 3, q = 2), checked on held-out points and on named graphs, and the table
of rounds until linear speedup per topology and N. The slope is also read
locally, per pair of adjacent gaps with its interval, to say where the
linearized law stops applying (a local slope below 1, the least any linearized
law gives: the consensus error saturates); the slope fit uses only the gaps
before that point. With ``--true-rank`` (a misspecified model: delta > 0
persists at the best fit) the realizable problem's family also runs at the
largest K, and the ratio of the two consensus errors is printed per gap.
Every cell goes through the
sweep cache: a rerun computes nothing. The experiments are
deprl_theory.experiments.consensus and .transient_law; this module parses,
calls and renders.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.experiments.consensus import (
    DEFAULT_GAPS,
    DEFAULT_ROUNDS,
    NAMED_TOPOLOGIES,
    ConsensusResult,
    ConsensusStudy,
    run_consensus,
)
from deprl_theory.experiments.records import run_rows
from deprl_theory.experiments.transient_law import (
    HELD_OUT,
    LAW_GAPS,
    LAW_N,
    NAMED_CHECKS,
    TransientLawResult,
    TransientLawStudy,
    run_transient_law,
)
from deprl_theory.graphs import TOPOLOGIES
from deprl_theory.io import provenance, write_csv_atomic, write_json_atomic
from deprl_theory.sweep import canonical_json, failure_line
from verification._cli import (
    ArgumentParser,
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

PROG = "python -m verification.spectral"
DEFAULT_OUT = "results/spectral"
QUICK = {"n": 8, "gaps": (0.5, 0.1, 0.056), "rounds": (250, 500, 1000, 2000), "seeds": 3,
         "topologies": ("ring", "exponential", "complete"),
         "law_n": (4, 8), "law_gaps": (0.1, 0.075, 0.056), "held_out": ((12, 0.065),), "named": (("star", 8),)}


def _words(values) -> str:
    return " ".join(map(str, values))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Consensus error and transient against the spectral gap.")
    g = p.add_argument_group("grid")
    g.add_argument("--n", type=positive_int, help=f"workers N (default 16; {QUICK['n']} with --quick)")
    g.add_argument("--gaps", type=unit_float, nargs="+",
                   help=f"spectral gaps in (0, 1] (default {_words(DEFAULT_GAPS)}; {_words(QUICK['gaps'])} "
                        "with --quick)")
    g.add_argument("--topologies", type=one_of(TOPOLOGIES, "topology"), nargs="*",
                   help=f"named topologies (default {_words(NAMED_TOPOLOGIES)}; {_words(QUICK['topologies'])} "
                        "with --quick)")
    g.add_argument("--rounds", type=positive_int, nargs="+",
                   help=f"K grid (default {_words(DEFAULT_ROUNDS)}; {_words(QUICK['rounds'])} with --quick)")
    g.add_argument("--seeds", type=positive_int, help=f"seeds per cell (default 4; {QUICK['seeds']} with --quick)")
    g.add_argument("--factor", type=positive_float, default=1.25,
                   help="transient: Gbar within this factor (> 1) of the reference (default 1.25)")
    law = p.add_argument_group("transient law K0 ~ N^a (1-rho)^-q (exact-gap family; shares the K grid)")
    law.add_argument("--no-law", action="store_true", help="skip the transient law, its table and held-out check")
    law.add_argument("--law-n", type=positive_int, nargs="+",
                     help=f"worker counts of the fit (default {_words(LAW_N)}; {_words(QUICK['law_n'])} with --quick)")
    law.add_argument("--law-gaps", type=unit_float, nargs="+",
                     help=f"gaps of the fit (default {_words(LAW_GAPS)}; {_words(QUICK['law_gaps'])} with --quick)")
    law.add_argument("--held-out", type=_held_out, nargs="+", metavar="N:GAP",
                     help="points outside the fitted grid to check the law on (default "
                          + " ".join(f"{n}:{g}" for n, g in HELD_OUT) + "; "
                          + " ".join(f"{n}:{g}" for n, g in QUICK["held_out"]) + " with --quick)")
    law.add_argument("--named-checks", type=_named, nargs="*", metavar="TOPOLOGY:N",
                     help="named graphs run at every K to check the law on (default "
                          + " ".join(f"{t}:{n}" for t, n in NAMED_CHECKS) + "; none without a value)")
    add_step_options(p)
    add_problem_options(p)
    add_sweep_options(p, DEFAULT_OUT)
    return p


def _held_out(text: str) -> tuple[int, float]:
    """``N:GAP``, e.g. ``32:0.056``."""
    try:
        n, gap = text.split(":")
        return positive_int(n), unit_float(gap)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"a held-out point is N:GAP such as 32:0.056, got {text!r}") from None


def _named(text: str) -> tuple[str, int]:
    """``TOPOLOGY:N``, e.g. ``ring:16``."""
    try:
        topology, n = text.split(":")
        return one_of(TOPOLOGIES, "topology")(topology), positive_int(n)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"a named check is TOPOLOGY:N such as ring:16, got {text!r}") from None


def study_from(args) -> tuple[ConsensusStudy, TransientLawStudy | None]:
    """The studies the options describe; every graph and problem is built before anything runs."""
    q = QUICK if args.quick else {}
    with user_input():
        study = ConsensusStudy(
            n=args.n or q.get("n", 16), gaps=tuple(args.gaps if args.gaps is not None else q.get("gaps", DEFAULT_GAPS)),
            topologies=tuple(args.topologies if args.topologies is not None
                             else q.get("topologies", NAMED_TOPOLOGIES)),
            rounds=tuple(args.rounds if args.rounds is not None else q.get("rounds", DEFAULT_ROUNDS)),
            seeds=args.seeds if args.seeds is not None else q.get("seeds", 4), base_seed=args.seed,
            cell=cell_overrides(args), factor=args.factor)
        study.check()
        if args.no_law:
            return study, None
        law = TransientLawStudy(n=tuple(args.law_n or q.get("law_n", LAW_N)),
                                gaps=tuple(args.law_gaps or q.get("law_gaps", LAW_GAPS)),
                                rounds=study.rounds, held_out=tuple(args.held_out or q.get("held_out", HELD_OUT)),
                                named=tuple(args.named_checks if args.named_checks is not None
                                            else q.get("named", NAMED_CHECKS)),
                                seeds=study.seeds, base_seed=study.base_seed, cell=study.cell, factor=study.factor)
        law.check()
    return study, law


def write_outputs(result: ConsensusResult, law: TransientLawResult | None, records: list, out: Path,
                  figures: Path | None, t0: float) -> dict:
    """CSV, figures and summary.json; returns the summary."""
    summary = result.as_dict()
    paths = []
    if figures is not None:
        from deprl_theory.plotting import consensus_figures, save_figure, transient_law_figure

        figs = consensus_figures(result)
        if law is not None and law.fit is not None:
            figs["transient_law"] = transient_law_figure(law)
        for name, fig in figs.items():
            paths += [str(q) for q in save_figure(fig, figures, f"spectral_{name}")]
    csv_path = out / "spectral_runs.csv"
    write_csv_atomic(csv_path, run_rows(records))
    sweep = dict(summary["sweep"])
    if law is not None:
        summary["transient_law"] = law.as_dict()
    # over the runs of both studies, each once: the law reads back runs the consensus sweep has just computed,
    # which came from this invocation, not from the cache of an earlier one
    sweep["computed"] = sum(not r.get("cached") for r in records)
    sweep["cached"] = sum(bool(r.get("cached")) for r in records)
    summary.update({"figures": paths, "csv": str(csv_path), "summary_json": str(out / "summary.json"),
                    "timings": {**sweep, "wall_seconds": time.monotonic() - t0}, "provenance": provenance()})
    write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    study, law_study = study_from(args)
    cells = study.cells() + ([] if law_study is None else law_study.cells())
    law = None
    with opened_sweep(args, DEFAULT_OUT, cells, study.seeds) as (options, out, figures):
        result, sweep = run_consensus(study, options)
        records, failures = list(sweep.records), list(sweep.failures)
        if law_study is not None:  # cells it shares with the consensus sweep come from the cache
            law, law_sweep = run_transient_law(law_study, options)
            seen = {(canonical_json(r["params"]), r["seed"]) for r in records}
            records += [r for r in law_sweep.records if (canonical_json(r["params"]), r["seed"]) not in seen]
            failures += law_sweep.failures
    if failures:  # one line: how many, which, the first cause (each cell's error is in summary.json)
        sys.stderr.write(f"{PROG}: {failure_line(failures)}\n")
    summary = write_outputs(result, law, records, out, figures, t0)
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


def _lemma_text(lemma: dict) -> str:
    if lemma["bound"] is None:
        return lemma["label"]
    why = f" ({lemma['failing_conditions'][0]})" if lemma["failing_conditions"] else ""
    return f"{lemma['bound']:.2e} {lemma['label']}{why}"


def _consensus(s: dict) -> list[str]:
    f, t, lem = s["consensus_slope"], s["tightness"], s["lemma"]
    st = s["settings"]
    model = ("realizable problem" if st["true_rank"] is None
             else f"misspecified model: rank {st['rank']}, truth of rank {st['true_rank']}")
    lines = [f"spectral gap experiment: N = {st['n']}, K = {f['K']}, seeds = {len(st['seeds'])}, {model}",
             f"  consensus lemma: {lem['bound']}",
             f"  does it hold? {lem['label'].upper()} ({lem['reason']})",
             f"  is it tight in rho? {t['label']} ({t['reason']})",
             "  graph        rho      whole-spectrum sum  Cbar       lemma bound, label"]
    for r in s["gaps"]:
        lines.append(f"  g = {r['gap']:<8.3g} {r['rho']:<8.3g} {r['spectral_sum']:<19.3g} {r['Cbar']:.3e}  "
                     f"{_lemma_text(r['lemma'])}")
    for r in s["topologies"]:
        lines.append(f"  {r['topology']:<12} {r['rho']:<8.3g} {r['spectral_sum']:<19.3g} {r['Cbar']:.3e}  "
                     f"{_lemma_text(r['lemma'])}")
    return lines


def _regimes(s: dict) -> list[str]:
    """The local slopes, where the linearized law stops, and (misspecified) the ratio to the realizable problem."""
    reg, f = s["linearized_regime"], s["consensus_slope"]
    lines = [f"  local slope of log Cbar against log(rho/(1-rho)), per pair of adjacent gaps "
             f"({s['local_slopes'][0]['ci_level']:.0%} {s['local_slopes'][0]['ci_method']}; a linearized law gives "
             f"{reg['floor']:g} to 2):",
             "  gaps            rho/(1-rho)        local slope"]
    for ls in s["local_slopes"]:
        lo, hi = ls["ci"]
        mark = "  <- saturated" if hi < reg["floor"] else ""
        lines.append(f"  {ls['gaps'][0]:<6g} -> {ls['gaps'][1]:<6g} {ls['x'][0]:>6.3g} -> {ls['x'][1]:<8.3g} "
                     f"{ls['slope']:5.2f} [{lo:.2f}, {hi:.2f}]{mark}")
    lines.append(f"  => {reg['statement']}")
    lines.append(f"  slope fit over the linearized regime (gaps {', '.join(f'{g:g}' for g in f['gaps'])}): "
                 f"{f['value']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}]")
    if s["realizable"]:
        st = s["settings"]
        lines.append(f"  misspecified (truth of rank {st['true_rank']}) against realizable (rank {st['rank']}), "
                     f"K = {f['K']}:")
        lines.append("  gap       Cbar misspecified  Cbar realizable  ratio [95% CI]")
        for r in s["realizable"]:
            lines.append(f"  {r['gap']:<8.3g}  {r['Cbar']:<17.3e}  {r['Cbar_realizable']:<15.3e}  "
                         f"{r['ratio']:.2f} [{r['ratio_ci'][0]:.2f}, {r['ratio_ci'][1]:.2f}]")
    return lines


def _predictors(s: dict) -> list[str]:
    preds = s["predictors"]
    lines = ["  which law predicts Cbar across graphs? (kappa beta^2 shape, kappa calibrated on the exact-gap family)",
             "  graph        " + "".join(f"{p['name'] + ': meas/pred':<30}" for p in preds)]
    for i, row in enumerate(preds[0]["rows"]):
        cells = []
        for p in preds:
            lr = p["rows"][i]["log_ratio"]
            cells.append(f"{'exact 0 (not scored)' if lr is None else format(math.exp(lr), '.3g'):<30}")
        lines.append(f"  {row['label']:<12} " + "".join(cells))
    for p in preds:
        lines.append(f"  {p['name']}: SD of log(meas/pred) {p['scatter']:.3f} over all graphs, "
                     f"{p['family_scatter']:.3f} "
                     f"over the family; named topologies off the family line by {p['named_offset']:+.3f} (log); "
                     f"worst {p['worst']['graph']} ({math.exp(p['worst']['log_ratio']):.3g}x)")
    lines.append(f"  => {s['predictor_statement']}")
    return lines


def _transient(s: dict) -> list[str]:
    tr = s["transient"]
    lines = [f"  transient at N = {s['settings']['n']} (Gbar within {tr['factor']:g}x of {tr['reference']}):",
             "  gap       measured K    predicted K0 (template)"]
    for r in tr["rows"]:
        m = f"> {tr['rounds'][-1]}" if r["measured_K"] is None else str(r["measured_K"])
        pk = "-" if r["predicted_K0"] is None else f"{r['predicted_K0']:.3g}"
        lines.append(f"  {r['gap']:<8.3g}  {m:<12}  {pk}")
    lines.append(f"  K0 = {tr['predicted_K0_expr']}")
    return lines


def render(s: dict) -> str:
    """The text report of a summary."""
    lines = _consensus(s) + _regimes(s) + _predictors(s) + _transient(s)
    if s.get("transient_law"):
        lines += render_law(s["transient_law"])
    lines.append(f"  figures: {', '.join(s['figures']) or '-'}")
    lines.append(f"  results: {s['csv']}, {s['summary_json']}")
    t = s["timings"]
    lines.append(f"  time: {t['wall_seconds']:.1f} s ({t['computed']} runs computed, {t['cached']} from an earlier "
                 "invocation's cache)")
    return "\n".join(lines)


def _law_points(law: dict) -> list[str]:
    st = law["settings"]
    lines = [f"  transient law on the exact-gap family: N = {' '.join(map(str, st['n']))}, gaps "
             f"{' '.join(f'{g:g}' for g in st['gaps'])}, K = {' '.join(map(str, st['rounds']))}; K0 = first K from "
             f"which Gbar stays within {st['factor']:g}x of the centralized run (crossing interpolated in log K)",
             "  N     gap      K0 (grid)  K0 (crossing)  Gbar/reference per K"]
    for p in law["points"]:
        grid = "-" if p["K_grid"] is None else str(p["K_grid"])
        k0 = {"below": f"<= {st['rounds'][0]}", "above": f"> {st['rounds'][-1]}"}.get(p["censored"]) \
            or f"{p['K0']:.4g}"
        tag = " (held out)" if p["held_out"] else ("" if p["in_fit"] else " (censored: not fitted)")
        lines.append(f"  {p['N']:<5} {p['gap']:<8.3g} {grid:<10} {k0:<14} "
                     + " ".join(f"{r:.2f}" for r in p["ratios"]) + tag)
    return lines


def _law_fit(law: dict) -> list[str]:
    L = law["law"]
    f = L["fit"]
    lines = [f"  fitted law: K0 = {math.exp(L['b0']):.3g} N^a (1-rho)^-q with a = {L['a']['value']:.2f} "
             f"[{L['a']['ci'][0]:.2f}, {L['a']['ci'][1]:.2f}], q = {L['q']['value']:.2f} "
             f"[{L['q']['ci'][0]:.2f}, {L['q']['ci'][1]:.2f}] (95% CI; {f['n_points']} points, {f['ci_method']}; "
             f"residual SD {f['resid_sd']:.2f} in log K0)"]
    for m in law["models"]:
        grid = (f"; on these points a = {m['a_on_grid']:.2f}, q = {m['q_on_grid']:.2f}"
                if m.get("a_on_grid") is not None else "")
        level = (f"; measured/predicted K0 = {m['measured_over_predicted']:.3g}"
                 if m.get("measured_over_predicted") is not None else "")
        inside = " and ".join(f"{k} = {m[k + '_asymptotic']:g} {'inside' if m[k + '_in_ci'] else 'OUTSIDE'} the CI"
                              for k in ("a", "q"))
        lines.append(f"  {m['model']}: a = {m['a_asymptotic']:g}, q = {m['q_asymptotic']:g} as N -> oo and rho -> 1"
                     f"{grid}{level}; {inside}")
    for h in law["held_out"]:
        lines.append(f"  held-out check, N = {h['N']}, gap {h['gap']:g} (not in the fit): measured K0 {h['measured']}, "
                     f"law {_law_value(h)} -> {'PASS' if h['passed'] else 'FAIL'}")
    for c in law["named_checks"]:
        at, eff = c["at_gap"], c["at_effective_gap"]
        lines.append(f"  named graph {c['topology']}, N = {c['N']}: measured K0 {c['measured']}; law at its gap "
                     f"{at['gap']:.3g}: {_law_value(at)} -> {'PASS' if at['passed'] else 'FAIL'}; at its effective gap "
                     f"{eff['gap']:.3g}: {_law_value(eff)} -> {'PASS' if eff['passed'] else 'FAIL'}")
    return lines


def _law_value(check: dict) -> str:
    pr = check["predicted"]
    lo, hi = pr["prediction_interval"]
    return f"{pr['value']:.4g} [{lo:.3g}, {hi:.3g}] (95% PI)"


def _law_table(law: dict) -> list[str]:
    t = law["table"]
    ns = t["n"]
    lines = [f"  rounds until linear speedup from the law (* = extrapolated beyond the fitted N {t['fitted_N'][0]}-"
             f"{t['fitted_N'][1]} or gaps {t['fitted_gaps'][0]:g}-{t['fitted_gaps'][1]:g}; [95% prediction interval])"]
    for key, what in (("rows", "at each graph's exact spectral gap"),
                      ("rows_effective", "at each graph's effective gap (same whole-spectrum noise sum)")):
        lines += [f"  {what}:", f"  {'topology':<12} " + "".join(f"{'N = ' + str(n):<24}" for n in ns)]
        for name, row in t[key].items():
            cells = []
            for n in ns:
                c = row[str(n)]
                lo, hi = c["prediction_interval"]
                text = ("0 (exact averaging)" if c["K0"] == 0
                        else f"{c['K0']:.2g}{'*' if c['extrapolated'] else ''} [{lo:.1g}, {hi:.1g}]")
                cells.append(f"{text:<24}")
            lines.append(f"  {name:<12} " + "".join(cells))
    lines.append("  the graphs' gaps (spectral / effective):")
    for name, row in t["rows"].items():
        lines.append(f"  {name:<12} " + "".join(
            f"{format(row[str(n)]['gap'], '.3g') + ' / ' + format(t['rows_effective'][name][str(n)]['gap'], '.3g'):<24}"
            for n in ns))
    return lines


def render_law(law: dict) -> list[str]:
    """The transient law's lines: measured K0, the fit against the two models, the held-out check, the table."""
    lines = _law_points(law)
    if law["law"] is None:
        return lines + [f"  {law['fit_error']}"]
    return lines + _law_fit(law) + _law_table(law)


if __name__ == "__main__":
    run_main(main, PROG)
