"""How much memory a run needs, estimated before it starts, against what the machine has.

A run with absurd sizes (a minibatch of a million, 10^5 workers with a dense
W) would allocate gigabytes and die with a MemoryError long after it started.
:func:`run_memory` estimates the peak of one engine call from its sizes, and
:func:`check_memory` refuses, with one line naming the estimate, what does not
fit in the memory available now. The estimate counts the large arrays (the
pre-drawn minibatch buffer, a round's features and gradients, the
representations, the nonlinear problem's evaluation sample, a dense W) and
adds a fixed allowance for the interpreter and libraries; it errs on the
large side, so that what it accepts runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MemoryEstimate", "run_memory", "mixing_matrix_memory", "available_memory", "check_memory",
           "format_bytes"]

_FLOAT = 8
#: floats per seed of pre-drawn minibatches the engine keeps at most (its chunk size)
_CHUNK_FLOATS = 2_000_000
#: the interpreter, numpy, scipy, sympy and matplotlib once imported
_BASE = 250 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimated peak in bytes and what dominates it."""

    bytes: int
    what: str

    def __add__(self, other: "MemoryEstimate") -> "MemoryEstimate":
        return MemoryEstimate(self.bytes + other.bytes, f"{self.what}; {other.what}")


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def mixing_matrix_memory(n_workers: int, *, sparse: bool, degree: int = 2) -> int:
    """Bytes of a mixing matrix: dense n^2 floats, or CSR with about (degree + 1) entries per row."""
    if sparse:
        return int(n_workers * (degree + 1) * 12 + 8 * (n_workers + 1))
    return int(n_workers) ** 2 * _FLOAT


def run_memory(*, seeds: int, workers: int, dim: int, rank: int, batch: int, tau: int, rounds: int,
               nonlinear: bool = False, n_eval: int = 0, sparse: bool = False) -> MemoryEstimate:
    """Estimated peak bytes of one :func:`deprl_theory.engine.run` call with these sizes."""
    per_round = (tau + 1) * workers * batch * (dim + 1)  # direct draws of one round, per seed
    chunk = max(1, min(int(rounds), _CHUNK_FLOATS // max(per_round, 1)))
    buffer = seeds * per_round * chunk * _FLOAT
    # a round's features, pre-activations and labels for tau + 1 minibatches, a few temporaries each
    features = 4 * seeds * (tau + 1) * workers * batch * (2 * rank + 2) * _FLOAT
    params = 8 * seeds * workers * (dim * rank + rank) * _FLOAT
    evaluation = (2 * seeds * workers * n_eval * (dim + 2 * rank) * _FLOAT) if nonlinear else 0
    W = mixing_matrix_memory(workers, sparse=sparse)
    total = _BASE + buffer + features + params + evaluation + W
    parts = {"minibatch buffer": buffer, "features": features, "parameters": params,
             "evaluation sample": evaluation, "mixing matrix": W}
    top = max(parts, key=parts.get)
    return MemoryEstimate(int(total), f"largest part: {top} {format_bytes(parts[top])}")


def available_memory() -> int | None:
    """Bytes available to a new allocation now (MemAvailable on Linux), or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(estimate: MemoryEstimate, *, processes: int = 1, what: str = "this run") -> None:
    """Raise ValueError, naming the estimate, when ``processes`` copies of it do not fit in available memory."""
    have = available_memory()
    need = estimate.bytes * max(1, processes)
    if have is not None and need > have:
        times = f" x {processes} processes" if processes > 1 else ""
        raise ValueError(f"{what} needs about {format_bytes(estimate.bytes)}{times} "
                         f"({estimate.what}), more than the {format_bytes(have)} available")
