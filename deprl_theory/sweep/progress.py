"""One progress bar for a sweep, drawn by tqdm (``tqdm.auto``: a widget in Jupyter, a line in a terminal).

It shows done/total cells, how many came from the cache, failures, elapsed
time and the time left. The time left is estimated from the *work* of the
cells computed so far (rounds x workers x local steps), not from their number:
a sweep's cells differ in cost by orders of magnitude, and tqdm's own rate
(cells per second) would run low while the cheap cells finish first. Outside a
terminal (a log file, CI) the line is written at most every 30 s.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress over ``total`` cells of which ``cached`` are done before any work starts.

    Parameters
    ----------
    total, cached : int
    enabled : bool
        Draw nothing when False.
    label : str
        Printed before the bar.
    stream : text stream, default sys.stderr
    work : float, optional
        The total work of the cells to compute (e.g. rounds x workers): the
        estimate of the time left then weighs cells by their work.
    after : float
        Work, in the same units, that the caller will run after this sweep
        (e.g. the companions a report may add): counted in the time left, so
        that the estimate is of the whole command, not of this bar alone.
    """

    def __init__(
        self, total: int, cached: int, enabled: bool, label: str = "", stream: TextIO | None = None,
        work: float | None = None, after: float = 0.0,
    ):
        self.total, self.cached, self.done, self.failed = total, cached, cached, 0
        self.work, self.work_done, self.after = work, 0.0, float(after)
        self.start = time.monotonic()
        self.enabled = enabled and total > 0
        self.bar = None
        if self.enabled:
            from tqdm.auto import tqdm

            stream = stream if stream is not None else sys.stderr
            tty = bool(getattr(stream, "isatty", lambda: False)())
            self.bar = tqdm(total=total, initial=cached, desc=label or None, unit="cell", file=stream,
                            mininterval=0.1 if tty else 30.0, dynamic_ncols=True, leave=True,
                            postfix=self._status(),
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cells "
                                       "[{elapsed}{postfix}]")

    def eta(self) -> str:
        """The time left, from the work done so far ("?" before the first computed cell)."""
        remaining = self.total - self.done
        computed = self.done - self.cached
        elapsed = time.monotonic() - self.start
        if remaining == 0:
            return "0:00"
        if computed == 0:
            return "?"
        if self.work and self.work_done > 0:
            return format_seconds(elapsed / self.work_done * (max(self.work - self.work_done, 0.0) + self.after))
        return format_seconds(elapsed / computed * remaining)

    def _status(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.cached} cached{failed}, ETA {self.eta()}"

    def _postfix(self) -> None:
        self.bar.set_postfix_str(self._status(), refresh=False)

    def update(self, *, done: int = 0, failed: int = 0, force: bool = False, cost: float = 0.0) -> None:
        """Count ``done`` more cells (``failed`` of them failed, ``cost`` their work) and redraw when due."""
        self.done += done
        self.failed += failed
        self.work_done += cost
        if self.bar is None:
            return
        self._postfix()
        self.bar.update(done)
        if force:
            self.bar.refresh()
        if self.done >= self.total:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        """End an unfinished bar (after an interrupt)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
