"""Figures a paper can print: venue sizes, no titles, embedded fonts, captions, S(N) with its uncertainty."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from deprl_theory.plotting import (
    FigureStyle,
    figure_style,
    pyplot,
    save_figure,
    speedup_captions,
    speedup_figures,
)

pypdf = pytest.importorskip("pypdf")


@pytest.fixture
def finished(finished_speedup):
    return finished_speedup


def _fonts(pdf) -> list[tuple[str, str, bool]]:
    """(name, subtype, embedded) of every font a PDF uses; Type 42 shows as Type0 over a CIDFontType2."""
    reader = pypdf.PdfReader(str(pdf))
    out = []
    for page in reader.pages:
        for font in page["/Resources"].get("/Font", {}).values():
            font = font.get_object()
            desc = font.get("/FontDescriptor")
            if desc is None and "/DescendantFonts" in font:
                desc = font["/DescendantFonts"][0].get_object().get("/FontDescriptor")
            desc = desc.get_object() if desc is not None else {}
            embedded = any(k in desc for k in ("/FontFile", "/FontFile2", "/FontFile3"))
            out.append((str(font.get("/BaseFont")), str(font.get("/Subtype")), embedded))
    return out


def test_the_venue_sets_the_width_and_the_cli_writes_captions_beside_untitled_pdfs(cli, finished, tmp_path):
    out, result = finished
    figures = tmp_path / "aaai"
    run = cli("speedup", "--replot", "--out", str(out), "--venue", "aaai2024", "--figures", str(figures),
              "--no-progress")
    assert run.returncode == 0, run.stderr
    pdfs = sorted(figures.glob("*.pdf"))
    assert len(pdfs) == 9
    ci = result.headline.fit.speedup_ci
    for pdf in pdfs:
        width = float(pypdf.PdfReader(str(pdf)).pages[0].mediabox.width) / 72
        assert width == pytest.approx(3.3, rel=0.05), pdf.name  # AAAI's column, as the target asks
        fonts = _fonts(pdf)
        assert fonts and all(sub != "/Type3" and emb for _, sub, emb in fonts), (pdf.name, fonts)
        caption = pdf.with_suffix(".txt").read_text()
        assert "seeds per cell" in caption and "Verdict:" in caption
    speedup = (figures / "speedup_speedup_G.txt").read_text()
    assert f"[{ci.low:.3f}, {ci.high:.3f}]" in speedup and "band" in speedup


def test_pdffonts_sees_embedded_fonts(finished, tmp_path):
    if shutil.which("pdffonts") is None:
        if os.environ.get("CI", "").lower() == "true":  # .ci/run installs poppler-utils: there it is required
            pytest.fail("pdffonts is needed in CI: apt-get install poppler-utils")
        pytest.skip("pdffonts not found (apt-get install poppler-utils); the pypdf check above covers embedding")
    _, result = finished
    with figure_style("neurips2024"):
        path = [p for p in save_figure(speedup_figures(result, "G")["speedup"], tmp_path, "s") if p.suffix == ".pdf"]
    lines = subprocess.run(["pdffonts", str(path[0])], capture_output=True, text=True, check=True).stdout
    rows = lines.strip().splitlines()[2:]
    assert rows and all(" yes " in row and "Type 3" not in row for row in rows), lines


def test_paper_figures_have_no_titles_and_screen_ones_are_readable(finished):
    _, result = finished
    with figure_style("icml2024", column="full"):
        figs = speedup_figures(result, "G", title="a heading")
        assert all(ax.get_title() == "" for f in figs.values() for ax in f.axes)
        width = FigureStyle("icml2024", "full").width
        assert all(f.get_size_inches()[0] == pytest.approx(width) for f in figs.values())
        for f in figs.values():
            pyplot().close(f)
    figs = speedup_figures(result, "G", title="a heading")
    assert figs["rate"].axes[0].get_title() == "a heading"  # the screen keeps a short title when asked
    assert figs["rate"].get_size_inches()[0] > 4  # and is sized for reading
    for f in figs.values():
        pyplot().close(f)


def test_the_speedup_figure_draws_the_band_of_the_ci_of_s_and_its_legend_matches_its_points(finished):
    _, result = finished
    fit = result.headline.fit
    fig = speedup_figures(result, "G")["speedup"]
    ax = fig.axes[0]
    band = [c for c in ax.collections if len(c.get_paths())]
    assert len(band) == 1
    top = band[0].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(max(4.0 ** fit.speedup_ci.low, 4.0 ** fit.speedup_ci.high), rel=1e-6)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    ext = result.k_eps["G"].extrapolated
    hollow = any(ext.values())
    assert any("extrapolated" in t for t in labels) == hollow
    filled = [n for n in ext if not (ext[n] or ext[min(ext)])]
    assert any("measured" in t for t in labels) == bool(filled)
    assert all("K_eps" not in t and "N_min" not in t for t in labels)  # maths typeset as on the axes
    pyplot().close(fig)


def test_the_rate_plot_draws_the_fit_dashed_and_names_it(finished):
    _, result = finished
    fig = speedup_figures(result, "G")["rate"]
    ax = fig.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() not in ("-", "None", "none", "")]
    assert len(dashed) >= 3  # one fitted line per N (plus the legend's proxy)
    data = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert data and all(line.get_linestyle() in ("None", "none", "") for line in data)
    assert any(t.get_text().startswith("fit") for t in ax.get_legend().get_texts())
    pyplot().close(fig)


def test_a_band_narrower_than_the_line_is_said_in_the_caption(finished):
    _, result = finished
    figs = speedup_figures(result, "G")
    notes = figs["rate"]._deprl_notes
    caption = speedup_captions(result, "G", figs)["rate"]
    assert ("narrower than the drawn line" in caption) == (notes["band_pt"] is not None)
    for f in figs.values():
        pyplot().close(f)
    # a planted case: a band a hundredth of the value wide is under the line at this scale
    from deprl_theory.plotting import _band_below_line

    fig, ax = pyplot().subplots()
    ax.set_yscale("log")
    ax.set_ylim(0.01, 1)
    x = np.array([1.0, 2.0])
    assert _band_below_line(ax, fig, x, [0.1, 0.1], [0.1001, 0.1001], 1.0) is not None
    assert _band_below_line(ax, fig, x, [0.05, 0.05], [0.2, 0.2], 1.0) is None
    pyplot().close(fig)


def test_bad_venue_and_column_exit_2_in_one_line(cli, finished):
    out, _ = finished
    bad = cli("speedup", "--replot", "--out", str(out), "--venue", "nips1987")
    assert bad.returncode == 2 and "unknown venue" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    lone = cli("speedup", "--replot", "--out", str(out), "--column", "full")
    assert lone.returncode == 2 and "--venue" in lone.stderr
    with pytest.raises(ValueError, match="unknown venue"):
        FigureStyle("nips1987")
