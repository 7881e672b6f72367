"""One seed convention for the whole package.

Every random function takes ``seed=None | int | numpy.random.Generator``
(a :class:`numpy.random.SeedSequence` is accepted too).  Sweeps derive one
independent stream per experiment axis from a base seed and the cell's own
parameters, so adding an N or a seed never changes the numbers of other cells.
"""
from __future__ import annotations

import hashlib
from typing import Union

import numpy as np

SeedLike = Union[None, int, np.integer, np.random.Generator, np.random.SeedSequence]

__all__ = ["SeedLike", "as_generator", "derive_seed", "stable_key"]


def as_generator(seed: SeedLike = None) -> np.random.Generator:
    """Return a Generator for ``seed`` (a Generator is returned unchanged)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        if isinstance(seed, (int, np.integer)) and int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        return np.random.default_rng(seed)
    raise TypeError(
        f"seed must be None, an int or a numpy.random.Generator, got {type(seed).__name__}"
    )


def stable_key(*parts: object) -> tuple[int, ...]:
    """Hash ``parts`` to a tuple of 32-bit words, stable across processes and runs.

    Python's ``hash`` is salted per process; a sweep executed on several
    processes or machines needs the same key everywhere, so we hash ``repr``.
    """
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def derive_seed(base: SeedLike, *parts: object) -> np.random.SeedSequence:
    """An independent :class:`~numpy.random.SeedSequence` for the cell named by ``parts``.

    ``base`` is the user's seed.  With ``base=None`` fresh OS entropy is used
    (not reproducible, as asked).  A Generator base contributes one draw, so a
    Generator advanced the same way gives the same derived seeds.
    """
    if isinstance(base, np.random.Generator):
        entropy = int(base.integers(2**63))
    elif isinstance(base, np.random.SeedSequence):
        entropy = base.entropy
    elif base is None:
        entropy = None
    else:
        if int(base) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {base}")
        entropy = int(base)
    return np.random.SeedSequence(entropy, spawn_key=stable_key(*parts))
