"""The decision on the rate, from tables of time-averaged metrics: one code path for real runs and planted data.

``verification.speedup`` feeds it the sweep's tables; ``verification.calibrate``
feeds it planted power laws, so the error rates it measures are those of the
procedure the tool runs (docs/theory.md, section 6):

1. :func:`fit_metric` fits the grid's cells, transient cells trimmed by the
   measured local slopes, the all-cells fit beside it, at the look's level;
2. the verdict is read from that fit (:func:`deprl_theory.inference.speedup_verdict`);
3. :func:`companion_needed` says whether the exact-averaging companion can
   change it (``--companion auto``: a graph that mixes, rho > 0, and a grid
   verdict other than ``linear``);
4. :func:`rate_decision` separates the leading rate from the transient: when
   the graph's excess over exact averaging decays faster than the leading term
   at every N where it matters, the rate is the companion's
   (``linear after transient``, say), the grid's own s is kept beside it; when
   the excess persists, the grid's exponent is the rate; otherwise (no excess
   shown, or its decay unresolved) a verdict is decisive only when the grid
   and the companion agree on it, and the look is ``inconclusive`` when they
   do not.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from ..inference import RateFit, Verdict, after_transient, fit_rate, speedup_verdict
from .transient import COMPANION_FACTOR, TransientDecomposition, decompose_transient, transient_cells

__all__ = ["INTERVALS", "DEFAULT_INTERVAL", "COMPANION_RULES", "MetricFit", "RateDecision", "fit_metric",
           "companion_needed", "rate_decision", "decide"]

#: when the exact-averaging companion runs
COMPANION_RULES = ("auto", "always", "never")


@dataclass(frozen=True)
class MetricFit:
    """The fit of one metric and the verdict read from it; ``fit`` is None when no fit was possible.

    ``dropped`` lists the cells left out because a seed diverged there (a
    whole cell goes, for every seed: keeping its survivors would favour the
    easy seeds). ``untrimmed`` is the fit over every cell when transient cells
    were trimmed, shown beside the trimmed one.
    """

    metric: str
    fit: RateFit | None
    verdict: Verdict
    dropped: tuple[tuple[int, int], ...] = ()
    untrimmed: "MetricFit | None" = None

    def as_dict(self) -> dict[str, Any]:
        if self.fit is None:
            none = {"value": None, "ci": [None, None]}
            out: dict[str, Any] = {"N": dict(none), "K": dict(none), "speedup": dict(none)}
        else:
            out = self.fit.as_dict()
        out.update(self.verdict.as_dict())
        out["cells_dropped_diverged"] = [list(k) for k in self.dropped]
        out["untrimmed"] = None if self.untrimmed is None else self.untrimmed.as_dict()
        return out


#: how the interval of s is computed: Fieller's t interval, or Hall's skewness-corrected inversion (the default)
INTERVALS = ("fieller", "hall")
DEFAULT_INTERVAL = "hall"


def _fit_cells(metric: str, table: Mapping, keys: Sequence[tuple[int, int]], *, margin: float,
               level: float, interval: str = DEFAULT_INTERVAL) -> MetricFit:
    complete = [key for key in keys if np.isfinite(table[key]).all()]
    dropped = tuple(key for key in keys if key not in complete)
    vals = np.array([table[key] for key in complete])
    try:
        fit = fit_rate([n for n, _ in complete], [k for _, k in complete], vals, ci=level,
                       skew_correction=interval == "hall")
    except ValueError as exc:
        why = f"fit impossible: {exc}"
        if dropped:
            why += (f"; {len(dropped)} of {len(keys)} cells were dropped because a seed diverged there "
                    "(see 'diverged')")
        return MetricFit(metric, None, Verdict("inconclusive", why, margin=margin, level=level), dropped)
    verdict = speedup_verdict(fit, margin=margin)
    if dropped:
        verdict = replace(verdict, reason=f"{verdict.reason}; {len(dropped)} cell(s) dropped for divergence")
    return MetricFit(metric, fit, verdict, dropped)


def fit_metric(metric: str, table: Mapping, fit_keys: Sequence[tuple[int, int]], keys: Sequence[tuple[int, int]],
               *, margin: float, level: float, interval: str = DEFAULT_INTERVAL) -> MetricFit:
    """The fit over the trimmed cells ``fit_keys``, with the all-cells fit beside it when trimming removed any."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    trimmed = _fit_cells(metric, table, fit_keys, margin=margin, level=level, interval=interval)
    if list(fit_keys) == list(keys):
        return trimmed
    full = _fit_cells(metric, table, keys, margin=margin, level=level, interval=interval)
    verdict = trimmed.verdict
    if full.verdict.word != verdict.word:
        verdict = replace(verdict, reason=f"{verdict.reason}; trimming the transient changed the verdict: "
                                          f"all cells give {full.verdict.word}")
    return replace(trimmed, verdict=verdict, untrimmed=full)


def trimmed_keys(table: Mapping, keys: Sequence[tuple[int, int]], *, tol: float) -> tuple[list, list[dict]]:
    """The cells past the measured transient (local slopes against the tail, ``tol``) and those excluded."""
    excluded = transient_cells(table, tol=tol) if tol > 0 else []
    fit_keys = [key for key in keys if not any(e["N"] == key[0] and e["K"] == key[1] for e in excluded)]
    if len({n for n, _ in fit_keys}) < 2 or len({k for _, k in fit_keys}) < 2:
        return list(keys), excluded
    return fit_keys, excluded


def companion_needed(rule: str, mixes: bool, grid: Verdict) -> bool:
    """Whether the exact-averaging companion runs.

    ``always`` and ``never`` say it; ``auto`` runs it when the graph mixes
    (rho > 0) and the grid's verdict is not ``linear``.
    """
    if rule not in COMPANION_RULES:
        raise ValueError(f"companion rule must be one of {', '.join(COMPANION_RULES)}, got {rule!r}")
    if rule == "never" or not mixes:
        return False
    return rule == "always" or grid.word != "linear"


@dataclass(frozen=True)
class RateDecision:
    """The verdict on the rate, and what it was read from.

    Attributes
    ----------
    verdict : Verdict
        The rate's verdict (the headline): the grid's own, or the companion's
        with ``after transient`` when the decomposition says the grid is bent
        by a transient, or ``inconclusive`` when the two disagree and the
        decomposition cannot tell yet.
    grid : MetricFit
        The graph's own fit: ``s on this grid``.
    companion : MetricFit or None
        Exact averaging's fit on the same instances and seeds (None: not run).
    decomposition : TransientDecomposition or None
    """

    verdict: Verdict
    grid: MetricFit
    companion: MetricFit | None = None
    decomposition: TransientDecomposition | None = None

    @property
    def word(self) -> str:
        return self.verdict.word

    @property
    def reported_fit(self) -> MetricFit:
        """The fit whose CI of s the verdict reports: exact averaging's when the rate is its, else the grid's."""
        d = self.decomposition
        if d is not None and d.rate_is_companion and self.companion is not None:
            return self.companion
        return self.grid

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.as_dict(), "grid": self.grid.as_dict(),
                "companion": None if self.companion is None else self.companion.as_dict(),
                "decomposition": None if self.decomposition is None else self.decomposition.as_dict()}


def rate_decision(grid: MetricFit, graph_table: Mapping, companion_table: Mapping | None, *, margin: float,
                  level: float, transient_tol: float, factor: float = COMPANION_FACTOR,
                  interval: str = DEFAULT_INTERVAL) -> RateDecision:
    """Combine the grid's verdict with the exact-averaging companion (None: the grid's verdict is the rate)."""
    if companion_table is None:
        return RateDecision(grid.verdict, grid)
    keys = sorted(companion_table)
    fit_keys, _ = trimmed_keys(companion_table, keys, tol=transient_tol)
    comp = fit_metric(grid.metric, companion_table, fit_keys, keys, margin=margin, level=level, interval=interval)
    if comp.fit is None:
        why = f"{grid.verdict.reason}; exact averaging could not be fitted ({comp.verdict.reason})"
        return RateDecision(replace(grid.verdict, reason=why), grid, comp)
    dec = decompose_transient(graph_table, companion_table, leading_e_K=comp.fit.e_K, level=level, margin=margin,
                              factor=factor)
    g, c = grid.verdict, comp.verdict
    s = comp.fit.speedup_ci
    on_grid = ("" if grid.fit is None else
               f"; s on this grid {grid.fit.speedup:.3f} [{grid.fit.speedup_ci.low:.3f}, "
               f"{grid.fit.speedup_ci.high:.3f}] ({g.word})")
    comp_text = f"exact averaging gives s = {comp.fit.speedup:.3f} [{s.low:.3f}, {s.high:.3f}] ({c.word})"
    if dec.rate_is_companion:
        word = c.word if c.word == g.word else after_transient(c.word)
        verdict = replace(c, word=word, reason=f"{dec.reason}: {comp_text}{on_grid}; {c.reason}")
    elif dec.rate_is_companion is None and c.word != g.word:
        # nothing separates the two readings, and they disagree: a verdict here would rest on which one we chose
        verdict = Verdict("inconclusive", f"the grid says {g.word}, {comp_text}, and {dec.reason}{on_grid}",
                          g.converges, g.asymptotic, None, margin, None, level)
    else:
        verdict = replace(g, reason=f"{g.reason}; {dec.reason}; {comp_text}")
    return RateDecision(verdict, grid, comp, dec)


def decide(metric: str, graph_table: Mapping, *, margin: float, level: float, transient_tol: float,
           companion_rule: str = "auto", mixes: bool = True, companion_table: Any = None,
           interval: str = DEFAULT_INTERVAL) -> RateDecision:
    """The whole decision at one look: trim, fit, read the verdict, consult the companion when the rule says so.

    ``companion_table`` is the companion's table or a callable returning it
    (called only when :func:`companion_needed` says the companion runs).
    """
    keys = sorted(graph_table)
    fit_keys, _ = trimmed_keys(graph_table, keys, tol=transient_tol)
    grid = fit_metric(metric, graph_table, fit_keys, keys, margin=margin, level=level, interval=interval)
    if not companion_needed(companion_rule, mixes, grid.verdict) or companion_table is None:
        return RateDecision(grid.verdict, grid)
    table = companion_table() if callable(companion_table) else companion_table
    return rate_decision(grid, graph_table, table, margin=margin, level=level, transient_tol=transient_tol,
                         interval=interval)
