"""Run a pre-registered group-sequential design: analyse at each planned look, stop at the first decisive one.

The loop knows nothing about simulations: ``analyse(seeds, level)`` returns
the analysis of the first ``seeds`` seeds with intervals at ``level`` (a sweep
in :func:`deprl_theory.experiments.run_speedup`, planted data in
:mod:`deprl_theory.experiments.calibration`), and ``verdict_of`` reads the
verdict that decides whether to stop. Looks are never added, skipped or moved
by the data: the design fixed them before the first seed ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .design import GroupSequentialDesign

__all__ = ["SequentialOutcome", "run_sequential", "FIXED_LEVEL"]

#: level of the intervals of a fixed design (one look)
FIXED_LEVEL = 0.95

T = TypeVar("T")


@dataclass(frozen=True)
class SequentialOutcome(Generic[T]):
    """The analysis at the look where the design stopped, and how it got there.

    Attributes
    ----------
    result : the analysis at the stopping look
    design : GroupSequentialDesign
    look : int
        0-based index of the stopping look.
    seeds : int
    level : float
        Level of the repeated CIs reported (the stopping look's).
    words : tuple of str
        The verdict at every look made.
    why : str
    """

    result: T
    design: GroupSequentialDesign
    look: int
    seeds: int
    level: float
    words: tuple[str, ...]
    why: str

    def as_dict(self) -> dict:
        return {"design": self.design.as_dict(), "stopped_at_look": self.look + 1, "seeds": self.seeds,
                "level": self.level, "verdicts_per_look": list(self.words), "why": self.why}


def run_sequential(design: GroupSequentialDesign, analyse: Callable[[int, float], T],
                   verdict_of: Callable[[T], str], *, decisive: Callable[[str], bool] | None = None,
                   futile: Callable[[T], str | None] | None = None) -> SequentialOutcome[T]:
    """Analyse at each planned look with its repeated-CI level; stop at the first decisive verdict.

    Parameters
    ----------
    design : the planned looks and their levels
    analyse : callable ``(seeds, level) -> result``
    verdict_of : callable ``result -> verdict word``
    decisive : callable ``word -> bool``
        Default: every word but ``inconclusive`` decides.
    futile : callable ``result -> str or None``
        A reason to stop without a verdict (no fit at all, say). Stopping
        early *without* a verdict never raises the error of a decisive one.
    """
    decisive = decisive or (lambda word: word != "inconclusive")
    words: list[str] = []
    for look, seeds in enumerate(design.looks):
        level = design.level(look)
        result = analyse(seeds, level)
        word = verdict_of(result)
        words.append(word)
        if decisive(word):
            why = f"decisive ({word})"
            return SequentialOutcome(result, design, look, seeds, level, tuple(words), why)
        stop = futile(result) if futile is not None else None
        if stop:
            return SequentialOutcome(result, design, look, seeds, level, tuple(words),
                                     f"stopped without a verdict at look {look + 1}: {stop}")
    why = f"still inconclusive at the last planned look ({design.looks[-1]} seeds)"
    return SequentialOutcome(result, design, len(design.looks) - 1, design.looks[-1], level, tuple(words), why)
