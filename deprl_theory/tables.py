"""Tables of results: rows read from result objects, written as booktabs LaTeX or Markdown.

Every number a table shows goes through :func:`fmt`, so the LaTeX fragments,
the Markdown of a report and the rounded values stored beside the raw ones in
``report.json`` are the same strings. The writers compute nothing.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

__all__ = ["fmt", "fmt_ci", "exponent_rows", "transient_rows", "law_summary", "latex_table", "markdown_table",
           "latex_escape"]

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals (scientific beyond 1e5), or ``--`` when it is missing or not finite."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "--"
    x = float(x)
    if abs(x) >= 1e5:
        return f"{x:.2e}"
    return f"{x:+.{digits}f}" if digits else f"{x:.0f}"


def fmt_ci(ci: Sequence[Any] | None, digits: int = 3) -> str:
    """``[lo, hi]`` with :func:`fmt`, ``--`` when the interval is missing or unbounded."""
    if not ci or ci[0] is None or ci[1] is None:
        return "--"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def exponent_rows(speedup: Mapping[str, Any], metrics: Sequence[str] = ("G", "R", "H")) -> list[dict[str, str]]:
    """One row per (algorithm, topology, metric) of the speedup results: exponents, CIs and the verdict."""
    rows = []
    for name, result in speedup.items():
        algorithm, topology = name.split("/")
        summary = result.as_dict()
        d = summary["metrics"]
        for m in metrics:
            f = d[m]
            # the headline metric's verdict is the rate's (it may consult exact averaging); s is this grid's
            word = summary["verdict"] if m == summary["metric"] else f["verdict"]
            rows.append({"algorithm": algorithm, "topology": topology, "metric": m,
                         "e_N": fmt(f["N"]["value"]), "e_N CI": fmt_ci(f["N"]["ci"]),
                         "e_K": fmt(f["K"]["value"]), "e_K CI": fmt_ci(f["K"]["ci"]),
                         "s": fmt(f["speedup"]["value"]), "s CI": fmt_ci(f["speedup"]["ci"]),
                         "verdict": word, "seeds": str(result.study.seeds)})
    return rows


def law_summary(law) -> dict[str, str]:
    """The fitted transient law: a and q with their CIs, and the held-out checks, as strings."""
    d = law.as_dict()
    if d["law"] is None:
        return {"a": "--", "a CI": "--", "q": "--", "q CI": "--", "held out": d["fit_error"] or "no law"}
    held = "; ".join(f"N = {h['N']}, g = {h['gap']:g}: measured {fmt(h['measured_K0'], 0)}, law "
                     f"{fmt(h['predicted']['value'], 0)} {fmt_ci(h['predicted']['prediction_interval'], 0)} "
                     f"{'pass' if h['passed'] else 'FAIL'}" for h in d["held_out"])
    return {"a": fmt(d["law"]["a"]["value"], 2), "a CI": fmt_ci(d["law"]["a"]["ci"], 2),
            "q": fmt(d["law"]["q"]["value"], 2), "q CI": fmt_ci(d["law"]["q"]["ci"], 2), "held out": held or "--"}


def transient_rows(law) -> list[dict[str, str]]:
    """Rounds until linear speedup per topology and N, from the measured law at each graph's gap (* extrapolated)."""
    table = law.as_dict()["table"]
    if not table:
        return []
    rows = []
    for topology, cells in table["rows"].items():
        row = {"topology": topology}
        for n in table["n"]:
            cell = cells[str(n)] if str(n) in cells else cells[n]
            star = "*" if cell.get("extrapolated") else ""
            row[f"N = {n}"] = fmt(cell["K0"], 0) + star
        rows.append(row)
    return rows


def latex_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str], *, caption: str = "",
                align: str | None = None) -> str:
    """A booktabs ``tabular`` (with an optional caption line above it), ready for ``\\input``."""
    align = align or ("l" * 3 + "r" * (len(columns) - 3) if len(columns) > 3 else "l" * len(columns))
    lines = []
    if caption:
        lines.append(f"% {caption}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
              " & ".join(latex_escape(c) for c in columns) + r" \\", r"\midrule"]
    for row in rows:
        lines.append(" & ".join(latex_escape(row[c]) for c in columns) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """A Markdown (GitHub) table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
