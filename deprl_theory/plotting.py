"""Publication figures: one style, PNG and PDF, written atomically.

Every figure function takes tidy data (no re-running) and returns the
matplotlib Figure; :func:`save_figure` writes it as ``NAME.png`` and
``NAME.pdf``.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

__all__ = ["paper_style", "save_figure", "band", "speedup_figures", "curves_figure"]

_STYLE = {
    "figure.figsize": (5.0, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _plt():
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def paper_style() -> Iterator[None]:
    """Matplotlib rc settings for the package's figures."""
    plt = _plt()
    with plt.rc_context(_STYLE):
        yield


def save_figure(fig, out_dir: str | os.PathLike, name: str, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.{png,pdf}`` atomically; close it; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        target = out / f"{name}.{fmt}"
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=f".{fmt}")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=_STYLE["savefig.dpi"], bbox_inches="tight")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        paths.append(target)
    _plt().close(fig)
    return paths


def band(ax, x, samples: np.ndarray, *, color, label=None, q=(2.5, 97.5), marker="o"):
    """Median line with a percentile band over seeds (``samples`` shape (len(x), S))."""
    samples = np.asarray(samples, dtype=float)
    with np.errstate(all="ignore"):
        mid = np.nanmean(samples, axis=1)
        lo, hi = np.nanpercentile(samples, q, axis=1) if samples.shape[1] > 1 else (mid, mid)
    ax.plot(x, mid, marker=marker, ms=3.5, color=color, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def _colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("viridis")
    return [cmap(0.05 + 0.85 * i / max(n - 1, 1)) for i in range(n)]


def speedup_figures(
    table: Mapping[tuple[int, int], np.ndarray],
    *,
    metric: str,
    fit: Mapping | None = None,
    eps: float | None = None,
    title: str = "",
) -> dict:
    """The three pictures of a speedup sweep.

    Parameters
    ----------
    table : mapping (N, K) -> array (S,)
        Time-averaged metric per cell and seed (NaN for diverged seeds).
    metric : str
        Name of the metric (label).
    fit : mapping, optional
        ``{"intercept", "e_N", "e_K"}`` of the power-law fit, drawn as lines.
    eps : float, optional
        Accuracy for the speedup plot; default: the largest value reached by
        every N on the grid (so that every K_eps is interpolated, not extrapolated).

    Returns
    -------
    dict name -> Figure: ``rate`` (Gbar vs K per N), ``collapse`` (Gbar vs N K),
    ``speedup`` (S(N) = K_eps(N_min) / K_eps(N) with the ideal line).
    """
    plt = _plt()
    Ns = sorted({n for n, _ in table})
    Ks = sorted({k for _, k in table})
    colors = _colors(len(Ns))
    label = {"G": r"$\bar G_K$", "R": r"$\bar R_K$", "H": r"$\bar H_K$", "C": r"$\bar C_K$"}.get(metric, metric)
    figs = {}
    with paper_style():
        fig, ax = plt.subplots()
        for n, col in zip(Ns, colors):
            ks = [k for k in Ks if (n, k) in table]
            band(ax, ks, np.array([table[(n, k)] for k in ks]), color=col, label=f"N = {n}")
            if fit is not None:
                kk = np.geomspace(min(ks), max(ks), 50)
                ax.plot(kk, np.exp(fit["intercept"]) * n ** fit["e_N"] * kk ** fit["e_K"], "--", color=col, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rounds K")
        ax.set_ylabel(f"time-averaged {label} (squared gradient norm)")
        sub = "" if fit is None else f"   fit: $e_N$ = {fit['e_N']:.2f}, $e_K$ = {fit['e_K']:.2f}"
        ax.set_title((title + sub).strip())
        ax.legend(title="workers (band: 2.5-97.5% of seeds)", ncol=2)
        figs["rate"] = fig

        fig, ax = plt.subplots()
        for n, col in zip(Ns, colors):
            ks = [k for k in Ks if (n, k) in table]
            band(ax, n * np.array(ks), np.array([table[(n, k)] for k in ks]), color=col, label=f"N = {n}")
        allx = np.array([n * k for n, k in table])
        xx = np.geomspace(allx.min(), allx.max(), 50)
        ref = np.nanmean(np.concatenate([np.atleast_1d(np.nanmean(v)) for v in table.values()]))
        ref_x = np.exp(np.mean(np.log(allx)))
        ax.plot(xx, ref * np.sqrt(ref_x / xx), "k:", lw=1.2, label=r"$\propto (NK)^{-1/2}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("total samples budget N K (worker-rounds)")
        ax.set_ylabel(f"time-averaged {label}")
        ax.set_title("data collapse: linear speedup puts every N on one curve")
        ax.legend(ncol=2)
        figs["collapse"] = fig

        # K_eps(N): rounds for the seed-mean curve of N to reach eps, from a power law fitted
        # per N (log m = a_N + b_N log K). The ranges of different N need not overlap, so a
        # K_eps outside the measured K range is an extrapolation and is drawn hollow.
        k_eps, extrapolated, per_n = {}, {}, {}
        for n in Ns:
            ks = np.array([k for k in Ks if (n, k) in table], dtype=float)
            m = np.array([np.nanmean(table[(n, k)]) for k in ks])
            ok = np.isfinite(m) & (m > 0)
            if ok.sum() >= 2:
                b, a = np.polyfit(np.log(ks[ok]), np.log(m[ok]), 1)
                per_n[n] = (a, b, ks[ok].min(), ks[ok].max())
        if eps is None:
            allm = np.array([np.nanmean(v) for v in table.values()])
            allm = allm[np.isfinite(allm) & (allm > 0)]
            eps = float(np.exp(np.mean(np.log(allm)))) if allm.size else float("nan")
        for n in Ns:
            if n in per_n and per_n[n][1] < 0:
                a, b, kmin, kmax = per_n[n]
                k_eps[n] = float(np.exp((np.log(eps) - a) / b))
                extrapolated[n] = not (kmin <= k_eps[n] <= kmax)
            else:
                k_eps[n], extrapolated[n] = float("nan"), True
        fig, ax = plt.subplots()
        n0 = Ns[0]
        sp = np.array([k_eps[n0] / k_eps[n] for n in Ns])
        ext = np.array([extrapolated[n] or extrapolated[n0] for n in Ns])
        ax.plot(Ns, sp, "-", color=colors[-1])
        ax.plot(np.array(Ns)[~ext], sp[~ext], "o", color=colors[-1], label=f"measured (eps = {eps:.3g})")
        if ext.any():
            ax.plot(np.array(Ns)[ext], sp[ext], "o", mfc="white", color=colors[-1],
                    label="K_eps extrapolated from the fit in K")
        ax.plot(Ns, [n / n0 for n in Ns], "k--", lw=1, label="ideal linear speedup N / N_min")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("workers N")
        ax.set_ylabel(r"speedup $S(N) = K_\varepsilon(N_{min}) / K_\varepsilon(N)$")
        ax.set_title(f"rounds to reach {label} = eps")
        ax.legend()
        figs["speedup"] = fig
        figs["_k_eps"] = {"eps": float(eps), "k_eps": k_eps, "extrapolated": extrapolated}
    return figs


def curves_figure(trace: Mapping[str, Sequence], metrics: Sequence[str], *, title: str = ""):
    """Metric curves of one run: ``trace['round']`` and ``trace[m]`` (S, T) per metric."""
    plt = _plt()
    rounds = np.asarray(trace["round"])
    with paper_style():
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 3.0))
        axes = np.atleast_1d(axes)
        for ax, m in zip(axes, metrics):
            vals = np.asarray(trace[m], dtype=float)
            x = np.maximum(rounds, 1)
            band(ax, x, vals.T, color="C0", marker="")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("round k")
            ax.set_title(m)
        fig.suptitle(title)
        fig.tight_layout()
    return fig
