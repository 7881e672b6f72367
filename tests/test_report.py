"""The paper kit: every file, valid PDFs with embedded fonts, tables that compile, numbers that agree, a re-plot
that simulates nothing."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import Cli

FIGURES = ("rate", "collapse", "topologies", "algorithms", "spectral", "bound")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("report")
    cli = Cli(cwd)
    res = cli("report", "--quick", "--out", "rep", "--no-progress", "-j", "2")
    assert res.returncode == 0, res.stderr
    return cwd / "rep", cli


@pytest.mark.slow
def test_a_quick_report_writes_every_file(quick_report):
    out, _ = quick_report
    for name in FIGURES:
        for ext in ("pdf", "png"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    for name in ("exponents", "transient"):
        assert (out / "tables" / f"{name}.tex").read_text().count(r"\toprule") >= 1
    readme = (out / "README.md").read_text()
    assert all(f"](figures/{name}.png)" in readme for name in FIGURES)
    report = json.loads((out / "report.json").read_text())
    assert {"settings", "speedup", "consensus", "transient_law", "bound", "tables", "provenance"} <= set(report)
    assert report["provenance"]["packages"]["numpy"] and "report" in report["provenance"]["command"]


@pytest.mark.slow
def test_every_pdf_is_a_valid_pdf_with_its_fonts_embedded(quick_report):
    pypdf = pytest.importorskip("pypdf")
    out, _ = quick_report
    for name in FIGURES:
        reader = pypdf.PdfReader(out / "figures" / f"{name}.pdf")
        assert len(reader.pages) == 1
        fonts = reader.pages[0]["/Resources"]["/Font"]
        assert len(fonts) > 0
        for font in fonts.values():
            font = font.get_object()
            descendants = font.get("/DescendantFonts")
            target = descendants[0].get_object() if descendants else font
            if target.get("/Subtype") == "/Type3":  # drawn glyph by glyph: nothing to embed
                continue
            descriptor = target["/FontDescriptor"].get_object()
            assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), (name, font)


@pytest.mark.slow
def test_every_table_compiles_with_pdflatex(quick_report, tmp_path):
    if shutil.which("pdflatex") is None:
        how = "apt-get install texlive-latex-base texlive-latex-recommended"
        if os.environ.get("CI", "").lower() == "true":  # .ci/run installs TeX: there the test is required
            pytest.fail(f"pdflatex is needed in CI: {how}")
        pytest.skip(f"pdflatex not found: the LaTeX tables are written but not compiled; to check them, {how}")
    out, _ = quick_report
    for table in sorted((out / "tables").glob("*.tex")):
        doc = tmp_path / f"doc_{table.stem}.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                       f"\\input{{{table}}}\n\\end{{document}}\n")
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert (tmp_path / f"doc_{table.stem}.pdf").stat().st_size > 0


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]\d+\.\d+", text)]


@pytest.mark.slow
def test_readme_tables_and_report_json_agree(quick_report):
    out, _ = quick_report
    report = json.loads((out / "report.json").read_text())
    readme = (out / "README.md").read_text()
    tex = (out / "tables" / "exponents.tex").read_text()
    for row in report["tables"]["exponents"]:
        name = f"{row['algorithm']}/{row['topology']}"
        raw = report["speedup"][name]["metrics"][row["metric"]]
        # the stored strings are the raw numbers, rounded
        for key, field in (("s", "speedup"), ("e_N", "N"), ("e_K", "K")):
            value = raw[field]["value"]
            if value is not None:
                assert float(row[key]) == pytest.approx(value, abs=5e-4), (name, key)
        line = " & ".join([row["algorithm"], row["topology"], row["metric"]])
        tex_line = next(t for t in tex.splitlines() if t.startswith(line + " "))
        md_line = next(m for m in readme.splitlines()
                       if m.startswith(f"| {row['algorithm']} | {row['topology']} | {row['metric']} |"))
        assert _numbers(tex_line) == _numbers(md_line)
        if row["s"] != "--":
            assert float(row["s"]) in _numbers(tex_line)
        assert row["verdict"] in tex_line and row["verdict"] in md_line
    # the headline table repeats the G rows
    head = readme.split("## Figures")[0]
    for row in (r for r in report["tables"]["exponents"] if r["metric"] == "G"):
        assert f"| {row['algorithm']} | {row['topology']} | {row['s']} | {row['s CI']} | {row['verdict']} |" in head
    law = report["transient_law"]["law"]
    if law is not None:
        assert f"a = {report['tables']['law']['a']}" in readme
        assert float(report["tables"]["law"]["a"]) == pytest.approx(law["a"]["value"], abs=5e-3)


@pytest.mark.slow
def test_replot_simulates_nothing(quick_report, monkeypatch):
    out, cli = quick_report
    import deprl_theory.engine as engine
    import deprl_theory.experiments.cells as cells

    def forbidden(*args, **kwargs):
        raise AssertionError("--replot ran a simulation")

    monkeypatch.setattr(cells, "run", forbidden)
    monkeypatch.setattr(engine, "run", forbidden)
    before = json.loads((out / "report.json").read_text())
    res = cli("report", "--quick", "--out", "rep", "--replot", "--no-progress")
    assert res.returncode == 0, res.stderr
    after = json.loads((out / "report.json").read_text())
    assert after["tables"] == before["tables"] and after["sweep"]["computed"] == 0


def test_replot_without_a_cache_is_a_one_line_error(cli, tmp_path):
    res = cli("report", "--quick", "--out", "empty", "--replot")
    assert res.returncode == 2 and len(res.error_lines) == 1 and "run without --replot first" in res.stderr
    assert "compute=" not in res.stderr and "nothing was simulated" in res.stderr  # the command line's words
    assert not (tmp_path / "empty" / "README.md").exists()


@pytest.mark.slow
def test_the_report_states_the_bounds_shape_as_the_bound_tool_does(quick_report):
    """One conclusion per claim: the report's sentence on the bound's shape is the summary's, with its scope."""
    import json

    out, _ = quick_report
    summary = json.loads((out / "report.json").read_text())["bound"]["shape_summary"]
    assert summary.startswith("shape over the") and "points in scope" in summary
    assert summary in (out / "README.md").read_text()
