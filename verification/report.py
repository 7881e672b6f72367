"""The paper kit: one command builds every figure and table of the study.

    python -m verification.report                 # the full study (cached; about 5-10 minutes cold on 2 cores)
    python -m verification.report --quick         # a small grid for a smoke test
    python -m verification.report --replot        # rebuild figures, tables and README.md from the cache only

Writes, under --out (default report/): README.md (the study in one page, with
the figures inline and the commands that reproduce it), figures/ (each figure
as a vector PDF with its fonts embedded and as PNG, sized for a paper column
or the full text width), tables/ (booktabs LaTeX fragments for \\input) and
report.json (every number of the figures and tables, with settings, seeds,
package versions and the command line). The experiments themselves are
deprl_theory.experiments.report; this module parses, calls and renders.
"""
from __future__ import annotations

import datetime
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from deprl_theory.experiments.report import ReportResult, ReportStudy, run_report
from deprl_theory.io import provenance, write_json_atomic, write_text_atomic
from deprl_theory.sweep import CacheMiss
from deprl_theory.tables import exponent_rows, fmt, fmt_ci, latex_table, law_summary, markdown_table, transient_rows
from verification._cli import (
    ArgumentParser,
    UsageError,
    add_sweep_options,
    dump_json,
    opened_sweep,
    run_main,
    user_input,
)

PROG = "python -m verification.report"
DEFAULT_OUT = "report"
EXPONENT_COLUMNS = ("algorithm", "topology", "metric", "e_N", "e_N CI", "e_K", "e_K CI", "s", "s CI", "verdict",
                    "seeds")
#: the figures, their files, and what each shows (the measured sentence is added under each)
FIGURES = {"rate": "Gbar against K per N, with the fitted power law (DePRL, exponential graph)",
           "collapse": "the data collapse of Gbar against N K",
           "topologies": "the speedup S(N) on four topologies, against the ideal line",
           "algorithms": "DePRL against its baselines: Gbar against K at the largest N, and S(N)",
           "spectral": "consensus error against rho/(1-rho), and the measured transient K0 against the gap",
           "bound": "measured Gbar over the bound at every (N, K, gap) of the check"}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--replot", action="store_true",
                   help="rebuild figures, tables and README.md from the cached runs only; simulate nothing")
    add_sweep_options(p, DEFAULT_OUT, figures_dir=False)
    return p


def _sentences(report: ReportResult) -> dict[str, str]:
    """One sentence per figure, from the measured numbers."""
    sp = {k: v.as_dict()["metrics"]["G"] for k, v in report.speedup.items()}
    main = sp["deprl/exponential"]

    def s_of(name: str) -> str:
        f, rate = sp[name], report.speedup[name].verdict
        if rate == f["verdict"]:
            return f"s = {fmt(f['speedup']['value'])} {fmt_ci(f['speedup']['ci'])} ({rate})"
        return f"s on this grid = {fmt(f['speedup']['value'])} {fmt_ci(f['speedup']['ci'])}, rate: {rate}"

    def s_at_max(name: str) -> str:
        r = report.speedup[name]
        n = max(r.study.n)
        value = r.k_eps["G"].speedup().get(n)
        return ("--" if value is None or value != value else f"{value:.2f}") + \
            f" at N = {n} (ideal {n / min(r.study.n):.2f})"

    c = report.consensus.as_dict()
    law = law_summary(report.law)
    b = report.bound.as_dict()
    return {
        "rate": (f"Gbar falls as N^e_N K^e_K with e_N = {fmt(main['N']['value'])} {fmt_ci(main['N']['ci'])} and "
                 f"e_K = {fmt(main['K']['value'])} {fmt_ci(main['K']['ci'])}: "
                 f"{s_of('deprl/exponential')}."),
        "collapse": f"Plotted against N K, the curves of every N lie on one line, as linear speedup requires "
                    f"({s_of('deprl/exponential')}).",
        "topologies": "; ".join(f"{name.split('/')[1]}: {s_of(name)}, S = {s_at_max(name)}"
                                for name in ("deprl/ring", "deprl/torus", "deprl/exponential", "deprl/complete")
                                if name in sp) + ".",
        "algorithms": "; ".join(f"{name.split('/')[0]}: {s_of(name)}"
                                + ("" if report.speedup[name].as_dict()["converges"]["G"] is not False
                                   else ", Gbar does not converge in K") for name in
                                ("deprl/exponential", "centralized/exponential", "dpsgd/exponential",
                                 "local/exponential") if name in sp) + ".",
        "spectral": (f"The consensus error grows with slope {fmt(c['consensus_slope']['value'], 2)} "
                     f"{fmt_ci(c['consensus_slope']['ci'], 2)} in rho/(1-rho) (the template's 2: "
                     f"{c['tightness']['label']}); the measured transient follows K0 ~ N^a (1-rho)^-q with "
                     f"a = {law['a']} {law['a CI']} and q = {law['q']} {law['q CI']} (template: 3 and 4); held out: "
                     f"{law['held out']}."),
        "bound": (f"The bound {b['label']}: {b['scope']['holds']} of {b['scope']['in_scope']} points in scope hold, "
                  f"{b['scope']['out_of_scope']} of {b['scope']['points']} are out of scope; {b['shape_summary']}."),
    }


def render_readme(report: ReportResult, rows: list, seconds: float, command: str) -> str:
    """The study in one page: headline verdicts, each figure with a measured sentence, the tables, the commands."""
    head = [r for r in rows if r["metric"] == "G"]
    sentences = _sentences(report)
    law = law_summary(report.law)
    lines = [
        "# DePRL's linear speedup, put to the test",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()} in {seconds:.0f} s "
        f"({report.sweep['computed']} runs computed, {report.sweep['cached']} from the cache). "
        "Every number below is in `report.json`; the tables are in `tables/` for `\\input`.",
        "",
        "## Headline: the verdict on G = ||grad F||^2 per algorithm and topology",
        "",
        markdown_table(head, ("algorithm", "topology", "s", "s CI", "verdict", "seeds")),
        "",
        "s = e_N / e_K is the speedup exponent (linear speedup: s = 1); 95 % t/Fieller intervals over per-seed "
        "fits; verdict margin m = 0.1 (`linear`: the CI's lower end within [0.9, 1.1], at least linear up to "
        "the margin). `linear after transient`: the graph's excess over exact averaging (same instances and "
        "seeds) dies faster than the leading term, so the rate is exact averaging's; s is this grid's own.",
        "",
        "## Figures",
    ]
    for i, (name, what) in enumerate(FIGURES.items(), start=1):
        lines += ["", f"### {i}. {what[0].upper()}{what[1:]}", "", f"![{name}](figures/{name}.png)", "",
                  sentences[name], f"Vector version: `figures/{name}.pdf`."]
    lines += ["", "## Tables", "", "### Exponents, intervals and verdicts (`tables/exponents.tex`)", "",
              markdown_table(rows, EXPONENT_COLUMNS), "",
              "### The transient law and the rounds until linear speedup (`tables/transient.tex`)", "",
              f"K0 ~ N^a (1 - rho)^-q on the exact-gap family: a = {law['a']} {law['a CI']}, "
              f"q = {law['q']} {law['q CI']}. Held-out check: {law['held out']}.", ""]
    trows = transient_rows(report.law)
    if trows:
        lines += [markdown_table(trows, tuple(trows[0])), "",
                  "Rounds until linear speedup from the measured law at each graph's spectral gap; "
                  "* marks an extrapolation beyond the fitted N or gaps.", ""]
    lines += ["## Reproduce", "", "```", "python -m verification.report            # cold: every run, cached",
              "python -m verification.report --replot   # figures, tables and this page from the cache only",
              "python -m verification.report --quick    # a smoke test", "```", ""]
    return "\n".join(lines)


def write_outputs(report: ReportResult, out: Path, figures: bool, argv: Sequence[str] | None, t0: float) -> dict:
    from deprl_theory.plotting import report_figures, save_figure

    paths = []
    if figures:
        for name, fig in report_figures(report).items():
            paths += [str(q) for q in save_figure(fig, out / "figures", name)]
    rows = exponent_rows(report.speedup)
    trows = transient_rows(report.law)
    write_text_atomic(out / "tables" / "exponents.tex", latex_table(
        rows, EXPONENT_COLUMNS, caption="rate exponents, 95% CIs and verdicts per algorithm, topology and metric"))
    law = law_summary(report.law)
    lrow = [{"a": law["a"], "a CI": law["a CI"], "q": law["q"], "q CI": law["q CI"]}]
    tex = latex_table(lrow, ("a", "a CI", "q", "q CI"), caption="transient law K0 ~ N^a (1-rho)^-q",
                      align="rrrr")
    if trows:
        tex += "\n" + latex_table(trows, tuple(trows[0]), caption="rounds until linear speedup (* extrapolated)",
                                  align="l" + "r" * (len(trows[0]) - 1))
    write_text_atomic(out / "tables" / "transient.tex", tex)
    command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    seconds = time.monotonic() - t0
    write_text_atomic(out / "README.md", render_readme(report, rows, seconds, command))
    summary = {**report.as_dict(), "tables": {"exponents": rows, "law": law, "transient": trows},
               "figures": paths, "seconds": seconds,
               "provenance": provenance(sys.argv if argv is None else [PROG, *argv])}
    write_json_atomic(out / "report.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.monotonic()
    args = build_parser().parse_args(argv)
    with user_input():
        study = ReportStudy(quick=args.quick, base_seed=args.seed)
        study.check()
    cells, seeds = study.grid()
    with opened_sweep(args, DEFAULT_OUT, cells, max(len(s) for s in seeds)) as (options, out, figures):
        try:
            report = run_report(study, options, compute=not args.replot)
        except CacheMiss as exc:
            raise UsageError(f"--replot: {exc}; run without --replot first") from None
    summary = write_outputs(report, out, figures is not None, argv, t0)
    if args.json:
        print(dump_json(summary, indent=2))
    else:
        print(f"study: {report.sweep['computed']} runs computed, {report.sweep['cached']} cached; "
              f"{summary['seconds']:.1f} s\nwrote {out / 'README.md'}, {out / 'report.json'}, "
              f"{len(summary['figures'])} figure files and 2 tables under {out}")
    if shutil.which("pdflatex") is None:
        print("tables: written as LaTeX for \\input, not compiled here (no pdflatex); they need booktabs")
    return 0


if __name__ == "__main__":
    run_main(main, PROG)
