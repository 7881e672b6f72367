"""Publication figures: one style, PNG and PDF, written atomically, each with a draft caption.

Every figure function draws a result object it is given (no re-running, no
analysis: fits, K_eps and transients come computed in the result) and returns
matplotlib Figures; :func:`save_figure` writes each as ``NAME.png`` and
``NAME.pdf`` (and ``NAME.txt`` when given its caption).

The style is one for all figures: the Okabe-Ito palette (safe for the common
colour-vision deficiencies), fonts embedded in PDFs as TrueType (``pdf.fonttype
= 42``), and no titles (what a figure shows goes in its caption). By default
the figures are sized for reading on screen. Inside :func:`figure_style` with a
venue (``"aaai2024"``, ``"neurips2024"``, ``"icml2024"``, ...; see
:data:`VENUES`), the width, the font family and the font sizes are the
venue's, from the bundles of the tueplots package, so
that a figure is placed at 100 % in the paper and its text matches the text
around it::

    from deprl_theory.plotting import figure_style, save_figure, speedup_captions, speedup_figures
    with figure_style("aaai2024", column="half"):
        figs = speedup_figures(result, "G")
        for name, fig in figs.items():
            save_figure(fig, "figures", name, caption=speedup_captions(result, "G", figs)[name])
"""
from __future__ import annotations

import contextvars
import inspect
import io
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from .io import write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .experiments.boundcheck import BoundCheckResult
    from .experiments.consensus import ConsensusResult
    from .experiments.speedup import SpeedupResult
    from .experiments.transient_law import TransientLawResult

__all__ = ["COLUMN", "FULL", "PALETTE", "VENUES", "COLUMNS", "FigureStyle", "figure_style", "set_figure_style",
           "current_style", "pyplot", "paper_style", "save_figure", "band", "speedup_figures", "speedup_captions",
           "curves_figure", "consensus_figures", "predictors_figure", "transient_law_figure", "bound_figure",
           "report_figures"]

#: width in inches of a figure that spans one column / the full text of a two-column paper (screen default)
COLUMN, FULL = 3.3, 6.9
#: Okabe-Ito: distinguishable under the common colour-vision deficiencies, and in greyscale by lightness
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
#: the venues whose page geometry and fonts :func:`figure_style` applies (tueplots bundles of those names)
VENUES = ("aaai2024", "icml2024", "neurips2024", "iclr2024", "aistats2025", "uai2023", "cvpr2024", "eccv2024",
          "jmlr2001", "tmlr2023")
#: ``half``: one column of a two-column venue (half the text width for a one-column venue); ``full``: the text width
COLUMNS = ("half", "full")

_STYLE = {
    "figure.figsize": (COLUMN * 1.5, COLUMN * 1.1),
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
}

#: Times-like text and maths without a TeX installation (the venues set Times through LaTeX's ``times``)
_SERIF = {"font.family": "serif", "font.serif": ["Times New Roman", "Times", "Nimbus Roman", "Nimbus Roman No9 L",
                                                  "TeX Gyre Termes", "STIXGeneral", "DejaVu Serif"],
          "mathtext.fontset": "stix"}


@dataclass(frozen=True)
class FigureStyle:
    """How figures are sized and typeset: the screen default (``venue=None``) or a venue's column."""

    venue: str | None = None
    column: str = "half"

    def __post_init__(self) -> None:
        if self.venue is not None and self.venue not in VENUES:
            raise ValueError(f"unknown venue {self.venue!r}; choose from {', '.join(VENUES)}")
        if self.column not in COLUMNS:
            raise ValueError(f"column must be one of {', '.join(COLUMNS)}, got {self.column!r}")

    @property
    def paper(self) -> bool:
        return self.venue is not None

    def rc(self) -> dict[str, Any]:
        """The matplotlib rc settings of this style."""
        if self.venue is None:
            return {**_STYLE, "savefig.bbox": "tight"}
        return {**_STYLE, **_venue_rc(self.venue, self.column), "savefig.bbox": None}

    @property
    def width(self) -> float:
        """Figure width in inches."""
        return float(self.rc()["figure.figsize"][0])


def _venue_rc(venue: str, column: str) -> dict[str, Any]:
    try:
        from tueplots import bundles
    except ImportError:  # pragma: no cover - a dependency; said in one line if it was removed
        raise ImportError("figure venues need tueplots: pip install tueplots") from None
    make = getattr(bundles, venue)
    params = inspect.signature(make).parameters
    if "column" in params:
        rc = make(column=column)
    else:  # a one-column venue: "half" is half the text width (two figures side by side)
        rc = make(rel_width=0.5 if column == "half" else 1.0) if "rel_width" in params else make()
    rc = dict(rc)
    # no TeX needed at draw time: the sizes and the width are the venue's, the serif face Times-like
    serif = rc.get("font.family") in ("serif", ["serif"])
    rc.pop("text.latex.preamble", None)
    rc["text.usetex"] = False
    if serif:
        rc.update(_SERIF)
    else:
        rc["font.family"] = "DejaVu Sans"
    rc["lines.linewidth"] = 1.0
    rc["lines.markersize"] = 3.0
    return rc


_CURRENT: contextvars.ContextVar[FigureStyle | None] = contextvars.ContextVar("figure_style", default=None)


def current_style() -> FigureStyle:
    """The style figures are drawn in now."""
    return _CURRENT.get() or FigureStyle()


def set_figure_style(venue: str | None = None, column: str = "half") -> FigureStyle:
    """Draw every later figure of this context (a command-line tool's process) in this style."""
    style = FigureStyle(venue, column)
    _CURRENT.set(style)
    return style


@contextmanager
def figure_style(venue: str | None = None, column: str = "half") -> Iterator[FigureStyle]:
    """Figures drawn inside are sized and typeset for ``venue`` (None: the screen default)."""
    token = _CURRENT.set(FigureStyle(venue, column))
    try:
        yield current_style()
    finally:
        _CURRENT.reset(token)


def pyplot():
    """``matplotlib.pyplot``, on the Agg backend unless MPLBACKEND says otherwise (no display needed)."""
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib rc settings for the package's figures, in the current :func:`figure_style`."""
    plt = pyplot()
    from cycler import cycler

    style = current_style()
    before = set(plt.get_fignums())
    try:
        with plt.rc_context({**style.rc(), "axes.prop_cycle": cycler(color=list(PALETTE))}):
            yield
    finally:
        # fonts are resolved when a figure is drawn: save_figure draws each in the style it was made in
        for num in set(plt.get_fignums()) - before:
            plt.figure(num)._deprl_style = style


def save_figure(fig, out_dir: str | os.PathLike, name: str, formats: Sequence[str] = ("png", "pdf"),
                caption: str | None = None) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.{png,pdf}`` atomically, and ``name.txt`` with ``caption``; close it.

    In a venue's style the page is the figure's own size (no tight crop, so
    the PDF's width is the column's); on screen the white margin is cropped.
    Returns the paths written.
    """
    out = Path(out_dir)
    paths = []
    style = getattr(fig, "_deprl_style", None) or current_style()
    tight = fig.get_layout_engine() is None or not style.paper
    with pyplot().rc_context(style.rc()):  # the fonts and their embedding (Type 42) of the figure's own style
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=_STYLE["savefig.dpi"], bbox_inches="tight" if tight else None)
            paths.append(write_bytes_atomic(out / f"{name}.{fmt}", buf.getvalue()))
    if caption:
        paths.append(write_text_atomic(out / f"{name}.txt", caption.rstrip() + "\n"))
    pyplot().close(fig)
    return paths


def band(ax, x, samples: np.ndarray, *, color, label=None, q=(2.5, 97.5), marker="o", line: bool = True):
    """Mean over seeds (markers, joined unless ``line`` is False) with a percentile band (``samples`` (len(x), S)).

    Returns the band's lower and upper ends.
    """
    samples = np.asarray(samples, dtype=float)
    with np.errstate(all="ignore"):
        mid = np.nanmean(samples, axis=1)
        lo, hi = np.nanpercentile(samples, q, axis=1) if samples.shape[1] > 1 else (mid, mid)
    ax.plot(x, mid, marker=marker, ms=3.5, color=color, label=label, ls="-" if line else "none")
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    return lo, hi


def _plain_log_ticks(axis) -> None:
    """Plain numbers on a log axis: at 1, 2 and 5 times the powers of ten, more within less than a decade."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    short = lo > 0 and np.log10(hi / lo) < 1.0
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0) if short
                                      else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def _ticks_at(axis, values: Sequence[float]) -> None:
    """Ticks exactly at ``values``, labelled as plain numbers (worker counts, powers of two)."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator

    axis.set_major_locator(FixedLocator(list(values)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _colors(n: int) -> list:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


_LABELS = {"G": r"$\bar G_K$", "R": r"$\bar R_K$", "H": r"$\bar H_K$", "C": r"$\bar C_K$"}
_WORDS = {"G": "the time-averaged full stationarity Gbar_K (the quantity the theorem bounds)",
          "R": "the time-averaged representation gradient Rbar_K", "H": "the time-averaged head gradient Hbar_K",
          "C": "the time-averaged consensus error Cbar_K"}


def _figsize(span: str, height: float, screen: float | None = None) -> tuple[float, float]:
    """A figure ``height`` inches tall and ``screen`` wide (default: the width of ``span``) on screen.

    In a venue's style the width is the venue's: the chosen column (half or
    full) for a one-panel figure (``span = "column"``), the full text width for
    a row of panels (``"full"``); the height keeps the screen proportions.
    """
    screen = screen or (COLUMN if span == "column" else FULL)
    style = current_style()
    if not style.paper:
        return screen, height
    width = FigureStyle(style.venue, style.column if span == "column" else "full").width
    return width, height * width / screen


def _title(ax, text: str, **kw) -> None:
    """A short title on screen; none in a venue's style (the caption says it)."""
    if text and not current_style().paper:
        ax.set_title(text, **kw)


def _suptitle(fig, text: str, **kw) -> None:
    if text and not current_style().paper:
        fig.suptitle(text, **kw)


def _interval(ci) -> str:
    """An interval as text; an infinite end is said in words."""
    lo, hi = float(ci.low), float(ci.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "unbounded (the fit's exponent in K is not distinguishable from 0)"
    return f"[{lo:.3f}, {hi:.3f}]"


def _level_text(level: float) -> str:
    """A confidence level readably: 0.95, or 1 - 7.2e-09 for the levels of early looks."""
    return f"{level:.3g}" if level <= 0.999 else f"1 - {1 - level:.2g}"


def _speedup_band(result: "SpeedupResult", metric: str, Ns: Sequence[int]):
    """S(N) = (N / N_min)^s at the point estimate and at the ends of the CI of s (None without a finite CI)."""
    fit = result.fits[metric].fit
    if fit is None or not (np.isfinite(fit.speedup_ci.low) and np.isfinite(fit.speedup_ci.high)):
        return None
    x = np.geomspace(min(Ns), max(Ns), 60)
    r = x / min(Ns)
    return x, r ** fit.speedup, r ** fit.speedup_ci.low, r ** fit.speedup_ci.high


def _band_below_line(ax, fig, x, lo, hi, lw: float) -> float | None:
    """The widest seed band in points when every band is narrower than a line of width ``lw`` (else None)."""
    fig.canvas.draw()
    to = ax.transData
    widest = 0.0
    for xi, a, b in zip(x, lo, hi):
        if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0):
            continue
        ya, yb = to.transform([(xi, a), (xi, b)])[:, 1]
        widest = max(widest, abs(yb - ya) * 72.0 / fig.dpi)
    return widest if widest < lw else None


def speedup_figures(result: "SpeedupResult", metric: str, *, title: str = "") -> dict:
    """The three pictures of a speedup sweep for one metric; their captions are :func:`speedup_captions`.

    Returns
    -------
    dict name -> Figure: ``rate`` (Mbar vs K per N with the seed band, and the
    fitted power law dashed), ``collapse`` (Mbar vs N K against the ideal
    ``(NK)^(-1/2)``), ``speedup`` (S(N) = K_eps(N_min) / K_eps(N) with the band
    of ``(N/N_min)^s`` over the CI of s, and the ideal line; hollow markers where
    K_eps is extrapolated). ``title`` is a short heading shown on screen only.
    """
    plt = pyplot()
    table = result.tables[metric]
    fit = result.fits[metric].fit
    k_eps = result.k_eps[metric]
    Ns = sorted({n for n, _ in table})
    Ks = sorted({k for _, k in table})
    colors = _colors(len(Ns))
    label = _LABELS.get(metric, metric)
    figs = {}
    notes: dict[str, Any] = {}
    with paper_style():
        lw = float(pyplot().rcParams["lines.linewidth"])
        fig, ax = plt.subplots(figsize=_figsize("column", COLUMN * 1.1, COLUMN * 1.5))
        bands = []
        for n, col in zip(Ns, colors):
            ks = [k for k in Ks if (n, k) in table]
            lo, hi = band(ax, ks, np.array([table[(n, k)] for k in ks]), color=col, label=f"$N = {n}$",
                          line=False)  # data: markers; the fit: dashed
            bands += list(zip(ks, lo, hi))
            if fit is not None:
                kk = np.geomspace(min(ks), max(ks), 50)
                ax.plot(kk, np.exp(fit.intercept) * n ** fit.e_N * kk ** fit.e_K, ls=(0, (4, 2)), color=col,
                        lw=0.8 * lw)
        if fit is not None:
            ax.plot([], [], ls=(0, (4, 2)), color="0.3", lw=0.8 * lw,
                    label=f"fit $N^{{{fit.e_N:.2f}}} K^{{{fit.e_K:.2f}}}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _ticks_at(ax.xaxis, Ks)
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("rounds $K$")
        ax.set_ylabel(label)
        _title(ax, title)
        ax.legend(ncol=2)
        if bands:
            xs, los, his = zip(*bands)
            notes["band_pt"] = _band_below_line(ax, fig, xs, los, his, lw)
        figs["rate"] = fig

        fig, ax = plt.subplots(figsize=_figsize("column", COLUMN * 1.1, COLUMN * 1.5))
        for n, col in zip(Ns, colors):
            ks = [k for k in Ks if (n, k) in table]
            band(ax, n * np.array(ks), np.array([table[(n, k)] for k in ks]), color=col, label=f"$N = {n}$")
        allx = np.array([n * k for n, k in table])
        xx = np.geomspace(allx.min(), allx.max(), 50)
        ref_x = np.exp(np.mean(np.log(allx)))
        ax.plot(xx, k_eps.eps * np.sqrt(ref_x / xx), "k:", lw=lw, label=r"$\propto (NK)^{-1/2}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis)
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("worker-rounds $NK$")
        ax.set_ylabel(label)
        _title(ax, title)
        ax.legend(ncol=2)
        figs["collapse"] = fig

        fig, ax = plt.subplots(figsize=_figsize("column", COLUMN * 1.1, COLUMN * 1.5))
        n0 = Ns[0]
        speed = k_eps.speedup()
        sp = np.array([speed[n] for n in Ns])
        ext = np.array([bool(k_eps.extrapolated[n] or k_eps.extrapolated[n0]) for n in Ns])
        implied = _speedup_band(result, metric, Ns)
        if implied is not None:
            x, mid, lo, hi = implied
            ax.fill_between(x, lo, hi, color=PALETTE[0], alpha=0.2, lw=0,
                            label=r"$(N/N_{\min})^s$ over the CI of $s$")
            ax.plot(x, mid, "-", color=PALETTE[0], lw=lw)
        if (~ext).any():
            ax.plot(np.array(Ns)[~ext], sp[~ext], "o", color=PALETTE[0], label=r"$K_\varepsilon$ measured")
        if ext.any():
            ax.plot(np.array(Ns)[ext], sp[ext], "o", mfc="white", color=PALETTE[0],
                    label=r"$K_\varepsilon$ extrapolated in $K$")
        ax.plot(Ns, [n / n0 for n in Ns], "k--", lw=0.8 * lw, label=r"ideal $N/N_{\min}$")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        _ticks_at(ax.xaxis, Ns)
        top = max([*(n / n0 for n in Ns), *sp[np.isfinite(sp)]])
        _ticks_at(ax.yaxis, [2.0 ** j for j in range(int(np.floor(np.log2(top))) + 1)])
        ax.set_xlabel("workers $N$")
        ax.set_ylabel(r"speedup $S(N) = K_\varepsilon(N_{\min}) / K_\varepsilon(N)$")
        _title(ax, title)
        ax.legend()
        figs["speedup"] = fig
    for f in figs.values():
        f._deprl_notes = notes  # what the captions need to know about what was drawn
    return figs


def speedup_captions(result: "SpeedupResult", metric: str, figures: Mapping[str, Any] | None = None
                     ) -> dict[str, str]:
    """A draft caption for each figure of :func:`speedup_figures`: what is drawn, the grid, seeds, fit and verdict.

    Pass the figures to let the rate plot's caption say when the seed band is
    narrower than the drawn line (it is measured on the figure).
    """
    s = result.study.settings()
    table = result.tables[metric]
    Ns = sorted({n for n, _ in table})
    Ks = sorted({k for _, k in table})
    seeds = max((np.isfinite(np.asarray(v, dtype=float)).sum() for v in table.values()), default=0)
    mf = result.fits[metric]
    fit = mf.fit
    headline = metric == result.study.metric
    verdict = result.verdict if headline else mf.verdict.word
    what = _WORDS.get(metric, metric)
    setting = (f"{s['algorithm']} on the {s['topology']} graph, {s['problem']} problem (dimension {s['dim']}, "
               f"rank {s['rank']}), N = {', '.join(map(str, Ns))} workers, K = {', '.join(map(str, Ks))} rounds, "
               f"{seeds} seeds per cell (base seed {s['base_seed']})")
    if fit is None:
        fitted = f"No power law could be fitted ({mf.verdict.reason})."
    else:
        lvl = _level_text(fit.ci_level)
        fitted = (f"Fit over {fit.n_cells} cells: Gbar ~ N^e_N K^e_K with e_N = {fit.e_N:.3f} "
                  f"{_interval(fit.e_N_ci)}, e_K = {fit.e_K:.3f} {_interval(fit.e_K_ci)}, speedup exponent "
                  f"s = e_N/e_K = {fit.speedup:.3f} {_interval(fit.speedup_ci)} ({lvl} CIs over seeds).")
        fitted = fitted.replace("Gbar", {"G": "Gbar", "R": "Rbar", "H": "Hbar"}.get(metric, metric))
    word = f"Verdict: {verdict}" + ("" if headline else " (on this grid)") + "."
    notes = getattr(next(iter((figures or {}).values()), None), "_deprl_notes", {})
    band_note = ""
    if notes.get("band_pt") is not None:
        band_note = (f" The seed band is at most {notes['band_pt']:.2f} pt tall, narrower than the drawn line, "
                     "so it is hidden under the line.")
    k_eps = result.k_eps[metric]
    own = [n for n in Ns if k_eps.extrapolated.get(n)]
    hollow = (f" (every point: S(N) divides by K_eps(N_min), and K_eps at N = {Ns[0]} is extrapolated)"
              if k_eps.extrapolated.get(Ns[0]) else f" (N = {', '.join(map(str, own))})" if own else "")
    band_words = ("No band: there is no fit of s, or its CI is unbounded. "
                  if _speedup_band(result, metric, Ns) is None else
                  f"Line and band: (N/N_min)^s at the fitted s = {fit.speedup:.3f} and over its CI "
                  f"{_interval(fit.speedup_ci)} (level {_level_text(fit.ci_level)}). ")
    return {
        "rate": (f"{what[0].upper()}{what[1:]} against the rounds K, one colour per worker count N: the mean over "
                 f"seeds (markers) with the 2.5-97.5 % band of the seeds, and the fitted power law (dashed). "
                 f"{setting}. {fitted} {word}{band_note}"),
        "collapse": (f"{what[0].upper()}{what[1:]} against the worker-rounds N K, one colour per N, with the seed "
                     f"band; the dotted line is the ideal (NK)^(-1/2). Under linear speedup the curves of all N "
                     f"lie on one line. {setting}. {fitted} {word}"),
        "speedup": (f"Speedup S(N) = K_eps(N_min) / K_eps(N), the ratio of rounds the seed-mean curve needs to reach "
                    f"eps = {k_eps.eps:.3g} ({_WORDS.get(metric, metric).split(' (')[0]}). Markers: K_eps from a power "
                    f"law fitted to each N's curve, hollow where it lies outside the measured K range"
                    + hollow + ". "
                    + band_words
                    + f"Dashed: ideal linear speedup N / N_min. {setting}. {word}"),
    }


def curves_figure(trace: Mapping[str, Sequence], metrics: Sequence[str], *, title: str = ""):
    """Metric curves of one run: ``trace['round']`` and ``trace[m]`` (S, T) per metric."""
    plt = pyplot()
    rounds = np.asarray(trace["round"])
    with paper_style():
        fig, axes = plt.subplots(1, len(metrics), figsize=_figsize("full", 2.4, FULL / 3 * len(metrics) * 0.75))
        axes = np.atleast_1d(axes)
        for ax, m in zip(axes, metrics):
            vals = np.asarray(trace[m], dtype=float)
            x = np.maximum(rounds, 1)
            band(ax, x, vals.T, color=PALETTE[0], marker="")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("round k")
            ax.set_title(m)  # the panel's metric: a panel label, kept in every style
        _suptitle(fig, title)
        fig.tight_layout()
    return fig


def consensus_figures(result: "ConsensusResult") -> dict:
    """Consensus error against rho/(1-rho), Gbar against K per gap, and the transient against the gap."""
    plt = pyplot()
    fit = result.slope
    tr = result.transient
    rounds = tr["rounds"]
    figs = {}
    with paper_style():
        fig, ax = plt.subplots()
        pts = [r for r in result.gaps if r["in_fit"]]
        x = np.array([r["x"] for r in pts])
        samples = np.array([r["Cbar_seeds"] for r in pts])
        order = np.argsort(x)
        band(ax, x[order], samples[order], color=PALETTE[0], label="exact-gap family")
        # the line spans the gaps it was fitted on: the linearized regime, not the saturated gaps beyond it
        fitted = np.array([r["x"] for r in pts if r.get("in_linearized_regime", True)])
        xs = np.geomspace(fitted.min(), fitted.max(), 50)
        ax.plot(xs, np.exp(fit.intercept) * xs ** fit.slope, "--", color=PALETTE[0], lw=1,
                label=f"fit: slope {fit.slope:.2f} [{fit.ci.low:.2f}, {fit.ci.high:.2f}]")
        anchor = np.exp(fit.intercept) * x[order][0] ** fit.slope
        ax.plot(xs, anchor * (xs / x[order][0]) ** 2, ":", color="gray", lw=1, label="slope 2 (template)")
        for j, t in enumerate(result.topologies):
            if t["x"] and t["x"] > 0 and t["Cbar"] > 0:
                ax.scatter([t["x"]], [t["Cbar"]], marker="s", color=PALETTE[(j + 1) % len(PALETTE)], zorder=3,
                           label=t["topology"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\rho/(1-\rho)$")
        ax.set_ylabel(r"consensus error $\bar C_K$")
        _title(ax, f"N = {result.study.n}, K = {rounds[-1]}")
        ax.legend(fontsize=6.5)
        figs["consensus"] = fig

        fig, ax = plt.subplots()
        for (g, gm), col in zip(result.gbar.items(), _colors(len(result.gbar))):
            band(ax, rounds, gm, color=col, label=f"g = {g:g}")
        band(ax, rounds, result.gbar_reference, color="black", label="centralized", marker="s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rounds K")
        ax.set_ylabel(r"$\bar G_K$")
        ax.legend(fontsize=6.5, ncol=2)
        figs["gbar_vs_K"] = fig

        fig, ax = plt.subplots()
        xs_all = np.array([r["rho"] / (1 - r["rho"]) for r in tr["rows"]])
        meas = np.array([np.nan if r["measured_K"] is None else r["measured_K"] for r in tr["rows"]], float)
        beyond = np.isnan(meas) & (xs_all > 0)
        ax.scatter(xs_all[~np.isnan(meas)], meas[~np.isnan(meas)], color=PALETTE[0],
                   label=f"measured (within {tr['factor']:g}x)")
        if beyond.any():
            ax.scatter(xs_all[beyond], np.full(beyond.sum(), rounds[-1] * 1.5), marker="^", color=PALETTE[0],
                       facecolors="none", label="measured: beyond the K grid")
        pred = np.array([np.nan if r["predicted_K0"] is None else r["predicted_K0"] for r in tr["rows"]], float)
        ok = np.isfinite(pred) & (pred > 0) & (xs_all > 0)
        if ok.any():
            o = np.argsort(xs_all[ok])
            ax.plot(xs_all[ok][o], pred[ok][o], "--", color=PALETTE[3], label="predicted K0 (template)")
        ax.axhspan(rounds[0], rounds[-1], color="gray", alpha=0.1, lw=0, label="K grid")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$\rho/(1-\rho)$")
        ax.set_ylabel("transient rounds")
        ax.legend(fontsize=6.5)
        figs["transient"] = fig
    figs["predictors"] = predictors_figure(result)
    return figs


def predictors_figure(result: "ConsensusResult"):
    """Measured Cbar against each predictor's Cbar, one panel per predictor, every graph on the same axes.

    A predictor that puts every graph on the diagonal is the law; the title
    of each panel carries its scatter (SD of log(measured/predicted)),
    computed in the result. Graphs whose errors are exactly 0 (exact
    averaging) cannot be drawn on log axes and are named in the caption.
    """
    plt = pyplot()
    preds = result.predictors
    with paper_style():
        fig, axes = plt.subplots(1, len(preds), figsize=_figsize("full", 2.6), squeeze=False)
        for ax, pred in zip(axes[0], preds):
            rows = [r for r in pred.rows if r["log_ratio"] is not None]
            fam = [r for r in rows if r["kind"] == "exact_gap"]
            named = [r for r in rows if r["kind"] != "exact_gap"]
            ax.scatter([r["predicted"] for r in fam], [r["measured"] for r in fam], color=PALETTE[0], s=14,
                       label="exact-gap family (calibration)")
            for j, r in enumerate(named):
                ax.scatter([r["predicted"]], [r["measured"]], marker="s", s=16, zorder=3,
                           color=PALETTE[(j + 1) % len(PALETTE)], label=r["label"])
            vals = [v for r in rows for v in (r["predicted"], r["measured"])]
            lim = (min(vals) / 2, max(vals) * 2)
            ax.plot(lim, lim, "k:", lw=1, label="measured = predicted")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_xlabel(f"predicted $\\bar C_K$ ({pred.name})")
            ax.set_title(f"{pred.name}: SD log ratio {pred.scatter:.2f}", fontsize=7.5)
        axes[0][0].set_ylabel(r"measured $\bar C_K$")
        axes[0][-1].legend(fontsize=5.5, loc="lower right")
        zero = [r["label"] for r in preds[0].rows if r["log_ratio"] is None]
        caption = f"N = {result.study.n}, K = {result.study.rounds[-1]}; best: {result.best_predictor}"
        if zero:
            caption += f"; not drawn (error exactly 0): {', '.join(zero)}"
        _suptitle(fig, caption, fontsize=7.5)
        fig.tight_layout()
    return fig


def transient_law_figure(result: "TransientLawResult"):
    """Measured K0 against 1/(1-rho) per N with the fitted law, the censored cells and the held-out points.

    Censored cells are drawn at the edge of the K grid as triangles pointing
    where K0 lies; held-out points as stars with the law's prediction interval.
    """
    plt = pyplot()
    fit, st = result.fit, result.study
    rounds = st.rounds
    ns = sorted({p["N"] for p in result.points if not p["held_out"]})
    colors = dict(zip(ns, _colors(len(ns))))
    with paper_style():
        fig, ax = plt.subplots()
        for n in ns:
            pts = [p for p in result.points if p["N"] == n and not p["held_out"]]
            x = np.array([1 / p["gap"] for p in pts if p["K0"] is not None])
            ax.plot(x, [p["K0"] for p in pts if p["K0"] is not None], "o", color=colors[n], ms=4, label=f"N = {n}")
            for p in pts:
                if p["censored"]:
                    y, mk = (rounds[0], "v") if p["censored"] == "below" else (rounds[-1], "^")
                    ax.plot([1 / p["gap"]], [y], mk, color=colors[n], mfc="white", ms=5)
            if fit is not None and len(x):
                xs = np.geomspace(1 / max(st.gaps), 1 / min(st.gaps), 20)
                ax.plot(xs, [fit.predict({"N": n, "1/(1-rho)": v}).value for v in xs], "--", color=colors[n], lw=1)
        for h in result.held_out:
            pr = h["predicted"]
            xv = 1 / h["gap"]
            ax.errorbar([xv * 1.01], [pr["value"]], yerr=[[pr["value"] - pr["prediction_interval"][0]],
                                                          [pr["prediction_interval"][1] - pr["value"]]],
                        color="gray", capsize=2, lw=1, label=f"law at N = {h['N']} (95% PI)")
            if h["measured_K0"] is not None:
                ax.plot([xv], [h["measured_K0"]], "*", color="black", ms=8, label=f"held out, N = {h['N']}")
        ax.axhspan(rounds[0], rounds[-1], color="gray", alpha=0.08, lw=0, label="K grid")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel(r"$1/(1-\rho)$ (exact-gap family)")
        ax.set_ylabel(r"transient $K_0$ (rounds)")
        if fit is not None and result.a is not None and result.q is not None:
            a_ci, q_ci = fit.cis["N"], fit.cis["1/(1-rho)"]
            _title(ax, f"$K_0 \\propto N^{{{result.a:.2f}}}(1-\\rho)^{{-{result.q:.2f}}}$;  a in "
                         f"[{a_ci.low:.2f}, {a_ci.high:.2f}], q in [{q_ci.low:.2f}, {q_ci.high:.2f}]", fontsize=7.5)
        ax.legend(fontsize=6)
    return fig


def bound_figure(result: "BoundCheckResult"):
    """Measured time average (band over seeds) and the bound against K, per N, one panel per graph.

    The bound's markers carry each point's label: filled where it holds,
    a cross where it is violated, hollow where the point is out of scope.
    """
    plt = pyplot()
    ns, graphs = result.study.n, result.study.graph_gaps
    style = {"holds": {"marker": "o"}, "violated": {"marker": "x", "ms": 6},
             "out of scope": {"marker": "o", "mfc": "white"}}
    with paper_style():
        size = _figsize("full", 2.8, min(FULL, 2.6 * len(graphs) + 0.6))
        fig, axes = plt.subplots(1, len(graphs), figsize=size, sharey=True,
                                 squeeze=False)
        for ax, g in zip(axes[0], graphs):
            for n, col in zip(ns, _colors(len(ns))):
                pts = sorted((p for p in result.points if p.N == n and p.gap == g), key=lambda p: p.K)
                if not pts:
                    continue
                ks = [p.K for p in pts]
                band(ax, ks, np.array([p.measured_seeds for p in pts]), color=col, label=f"measured, N = {n}")
                ax.plot(ks, [p.bound for p in pts], "--", color=col, lw=1)
                for p in pts:
                    ax.plot([p.K], [p.bound], linestyle="none", color=col, **{"ms": 4, **style[p.label]})
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_ticks(ax.xaxis)
            ax.set_xlabel("rounds K")
            ax.set_title(result.study.topology if g is None else f"exact gap g = {g:g}")
        axes[0][0].set_ylabel(r"$\bar G_K$" if result.spec.measured in ("G", "aH+R") else result.spec.measured)
        handles = [plt.Line2D([], [], color="gray", linestyle="--", label="bound"),
                   *(plt.Line2D([], [], color="gray", linestyle="none", label=lab, **kw) for lab, kw in style.items())]
        axes[0][-1].legend(handles=handles + axes[0][0].get_legend_handles_labels()[0], fontsize=6, ncol=1)
        _suptitle(fig, f"bound {result.label}; shape: " + (", ".join(v.label for v in result.shape.values()) or "-"),
                     fontsize=7.5)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the paper kit
_TOPOLOGY_ORDER = ("deprl/ring", "deprl/torus", "deprl/exponential", "deprl/complete")
_ALGORITHM_ORDER = ("deprl/exponential", "dpsgd/exponential", "local/exponential", "centralized/exponential")


def _loglog(ax, xlabel: str, ylabel: str, *, plain: str = "x") -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for name in plain:  # short log ranges read better as plain numbers
        _plain_log_ticks(ax.xaxis if name == "x" else ax.yaxis)


def _speedup_curve(ax, result, color, label: str) -> None:
    """S(N) of one speedup result on ``ax``: filled where K_eps is measured, hollow where extrapolated."""
    k = result.k_eps["G"]
    ns = sorted(k.k_eps)
    s = k.speedup()
    ys = np.array([s[n] for n in ns])
    if not np.isfinite(ys).any():
        return
    ext = np.array([k.extrapolated[n] or k.extrapolated[ns[0]] for n in ns])
    ax.plot(ns, ys, "-", color=color, label=label)
    ax.plot(np.array(ns)[~ext], ys[~ext], "o", color=color, ms=3.5)
    ax.plot(np.array(ns)[ext], ys[ext], "o", color=color, mfc="white", ms=3.5)


def _fig_rate(report):
    plt = pyplot()
    main = report.speedup["deprl/exponential"]
    table, fit = main.tables["G"], main.fits["G"].fit
    fig, ax = plt.subplots(figsize=_figsize("column", 2.6))
    ns = sorted({n for n, _ in table})
    for n, col in zip(ns, _colors(len(ns))):
        ks = sorted(k for m, k in table if m == n)
        band(ax, ks, np.array([table[(n, k)] for k in ks]), color=col, label=f"N = {n}")
        if fit is not None:
            kk = np.geomspace(min(ks), max(ks), 30)
            ax.plot(kk, np.exp(fit.intercept) * n ** fit.e_N * kk ** fit.e_K, "--", color=col, lw=0.9)
    _loglog(ax, "rounds K", r"$\bar G_K$")
    ax.legend(ncol=2, fontsize=6)
    return fig


def _fig_collapse(report):
    plt = pyplot()
    main = report.speedup["deprl/exponential"]
    table = main.tables["G"]
    fig, ax = plt.subplots(figsize=_figsize("column", 2.6))
    ns = sorted({n for n, _ in table})
    for n, col in zip(ns, _colors(len(ns))):
        ks = sorted(k for m, k in table if m == n)
        band(ax, n * np.array(ks), np.array([table[(n, k)] for k in ks]), color=col, label=f"N = {n}")
    nk = np.array([n * k for n, k in table])
    xx = np.geomspace(nk.min(), nk.max(), 30)
    eps = main.k_eps["G"].eps
    ax.plot(xx, eps * np.sqrt(np.exp(np.mean(np.log(nk))) / xx), "k:", lw=1, label=r"$\propto (NK)^{-1/2}$")
    _loglog(ax, "N K (worker-rounds)", r"$\bar G_K$")
    ax.legend(ncol=2, fontsize=6)
    return fig


def _fig_topologies(report):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=_figsize("column", 2.6))
    for name, col in zip(_TOPOLOGY_ORDER, _colors(len(_TOPOLOGY_ORDER))):
        if name in report.speedup:
            res = report.speedup[name]
            _speedup_curve(ax, res, col, name.split("/")[1])
            n0 = min(res.study.n)
            ax.plot(res.study.n, [n / n0 for n in res.study.n], ":", color=col, lw=0.9)
    _loglog(ax, "workers N", r"$S(N) = K_\varepsilon(N_{min})/K_\varepsilon(N)$", plain="xy")
    _title(ax, "dotted: ideal N / N_min; hollow: K_eps extrapolated", fontsize=6.5)
    ax.legend(fontsize=6)
    return fig


def _fig_algorithms(report):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=_figsize("full", 2.6))
    for name, col in zip(_ALGORITHM_ORDER, _colors(len(_ALGORITHM_ORDER))):
        if name not in report.speedup:
            continue
        res = report.speedup[name]
        tab, n_max = res.tables["G"], max(res.study.n)
        ks = sorted(k for m, k in tab if m == n_max)
        band(ax1, ks, np.array([tab[(n_max, k)] for k in ks]), color=col, label=name.split("/")[0])
        _speedup_curve(ax2, res, col, name.split("/")[0])
    n_all = report.speedup["deprl/exponential"].study.n
    ax2.plot(n_all, [n / min(n_all) for n in n_all], "k:", lw=0.9, label="ideal")
    _loglog(ax1, "rounds K", rf"$\bar G_K$ at N = {max(n_all)}")
    _loglog(ax2, "workers N", r"$S(N)$", plain="xy")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _fig_spectral(report):
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=_figsize("full", 2.6))
    c = report.consensus
    pts = sorted((r for r in c.gaps if r["in_fit"]), key=lambda r: r["x"])
    band(ax1, [r["x"] for r in pts], np.array([r["Cbar_seeds"] for r in pts]), color=PALETTE[0],
         label="exact-gap family")
    for j, t in enumerate(c.topologies):
        if t["x"] and t["x"] > 0 and t["Cbar"] > 0:
            ax1.plot([t["x"]], [t["Cbar"]], "s", ms=4, color=PALETTE[(j + 1) % len(PALETTE)], label=t["topology"])
    _loglog(ax1, r"$\rho/(1-\rho)$", rf"$\bar C_K$ (N = {c.study.n}, K = {c.study.rounds[-1]})")
    ax1.legend(fontsize=5.5, ncol=2)
    law = report.law
    lns = sorted({p["N"] for p in law.points if not p["held_out"]})
    for n, col in zip(lns, _colors(len(lns))):
        pp = [p for p in law.points if p["N"] == n and not p["held_out"] and p["K0"] is not None]
        ax2.plot([1 / p["gap"] for p in pp], [p["K0"] for p in pp], "o", ms=3.5, color=col, label=f"N = {n}")
        if law.fit is not None and pp:
            xs = np.geomspace(min(1 / p["gap"] for p in pp), max(1 / p["gap"] for p in pp), 20)
            ax2.plot(xs, [law.fit.predict({"N": n, "1/(1-rho)": v}).value for v in xs], "--", color=col, lw=0.9)
    for h in law.held_out:
        if h["measured_K0"] is not None:
            ax2.plot([1 / h["gap"]], [h["measured_K0"]], "*", color="black", ms=7, label=f"held out (N = {h['N']})")
    _loglog(ax2, r"$1/(1-\rho)$", r"measured transient $K_0$")
    ax2.legend(fontsize=5.5)
    fig.tight_layout()
    return fig


def _fig_bound(report):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=_figsize("column", 2.6))
    b = report.bound
    gaps = b.study.graph_gaps
    markers = dict(zip(gaps, "osd^v<>"))
    colors = _colors(len(b.study.n))
    for n, col in zip(b.study.n, colors):
        for g in gaps:
            pts = sorted((p for p in b.points if p.N == n and p.gap == g), key=lambda p: p.K)
            if not pts:
                continue
            ax.plot([p.K for p in pts], [1 / p.ratio for p in pts], "-", color=col, lw=0.8)
            for p in pts:
                ax.plot([p.K], [1 / p.ratio], markers[g], color=col, ms=3.5, mfc=col if p.label == "holds" else "white")
    ax.axhline(1.0, color="black", lw=0.8)
    _loglog(ax, "rounds K", "measured / bound")
    handles = [plt.Line2D([], [], color=col, label=f"N = {n}") for n, col in zip(b.study.n, colors)]
    handles += [plt.Line2D([], [], color="gray", linestyle="none", marker=markers[g],
                           label=f"g = {g:g}" if g is not None else b.study.topology) for g in gaps]
    ax.legend(handles=handles, fontsize=5.5, ncol=2)
    _title(ax, "filled: in scope; hollow: a condition fails", fontsize=6.5)
    return fig


#: the paper kit's figures, in the order of the report
_REPORT_FIGURES = {"rate": _fig_rate, "collapse": _fig_collapse, "topologies": _fig_topologies,
                   "algorithms": _fig_algorithms, "spectral": _fig_spectral, "bound": _fig_bound}


def report_figures(report) -> dict:
    """The six figures of the paper kit, drawn from a :class:`~deprl_theory.experiments.report.ReportResult`.

    Column-wide (3.3 in) or full-width (6.9 in), one style. Returns name -> Figure:
    ``rate``, ``collapse``, ``topologies``, ``algorithms``, ``spectral``, ``bound``.
    """
    with paper_style():
        return {name: draw(report) for name, draw in _REPORT_FIGURES.items()}
