"""One progress bar on stderr for a sweep: redrawn in place on a terminal, sparse lines otherwise.

Hand-written rather than tqdm to keep the dependencies to the field's own
(numpy, scipy, sympy, matplotlib); it shows done/total cells, how many came
from the cache, failures, elapsed time and an ETA from the computed cells.
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
    """

    def __init__(
        self, total: int, cached: int, enabled: bool, label: str = "", stream: TextIO | None = None,
        work: float | None = None,
    ):
        self.label = f"{label} " if label else ""
        self._width = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total, self.cached, self.done, self.failed = total, cached, cached, 0
        # with the cells' work known, the time left is estimated from work done, not from cells done
        self.work, self.work_done = work, 0.0
        self.start = time.monotonic()
        self._last = -1e9
        self.update(force=True)

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        computed = self.done - self.cached
        remaining = self.total - self.done
        if remaining == 0:
            eta = "0:00"
        elif computed == 0:
            eta = "?"
        elif self.work and self.work_done > 0:
            eta = format_seconds(elapsed / self.work_done * max(self.work - self.work_done, 0.0))
        else:
            eta = format_seconds(elapsed / computed * remaining)
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.label}[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} cells "
            f"({self.cached} cached{failed}) {format_seconds(elapsed)} elapsed, ETA {eta}"
        )

    def update(self, *, done: int = 0, failed: int = 0, force: bool = False, cost: float = 0.0) -> None:
        """Count ``done`` more cells (``failed`` of them failed, ``cost`` their work) and redraw when due."""
        self.done += done
        self.failed += failed
        self.work_done += cost
        if not self.enabled:
            return
        now = time.monotonic()
        finished = self.done >= self.total
        if self.tty:
            if force or finished or now - self._last >= 0.1:
                line = self._line()
                # Pad over the previous, possibly longer, line.
                self.stream.write("\r" + line.ljust(self._width))
                self._width = len(line)
                if finished:
                    self.stream.write("\n")
                self.stream.flush()
                self._last = now
        elif finished or now - self._last >= 30.0:
            self.stream.write(self._line() + "\n")
            self.stream.flush()
            self._last = now

    def close(self) -> None:
        """End the line of an unfinished bar (after an interrupt)."""
        if self.enabled and self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
