"""Seeds and cache keys of a sweep: one JSON spelling of a cell, one stream per (cell, seed)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping

import numpy as np

from .._rng import derive_seed
from ..io import to_jsonable

__all__ = ["canonical_json", "cell_seed", "cache_key", "check_index", "task_name"]


def canonical_json(obj: Any) -> str:
    """The one JSON spelling of ``obj`` used for seeds and cache keys.

    Keys sorted, no whitespace, numpy scalars converted, NaN rejected.  Note
    that ``8`` and ``8.0`` are different cells: give each parameter one type.

    Raises
    ------
    ValueError
        If ``obj`` is not JSON-serialisable or contains a non-finite float.

    Examples
    --------
    >>> canonical_json({"N": np.int64(8), "K": 10})
    '{"K":10,"N":8}'
    """
    try:
        return json.dumps(
            to_jsonable(obj, nan_to_null=False),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cell parameters must be numbers, strings, lists or dicts, all finite: {exc}") from None


def check_index(value: Any, name: str) -> int:
    """``value`` as a non-negative int, or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def cell_seed(base_seed: int, params: Mapping[str, Any], seed_index: int) -> np.random.SeedSequence:
    """The independent random stream of seed ``seed_index`` of the cell ``params``.

    Built with :func:`deprl_theory._rng.derive_seed` from
    ``(base_seed, "cell", canonical_json(params), seed_index)``, so it does not
    change when other cells or seeds are added to a sweep, and is the same in
    every process and on every machine.

    Parameters
    ----------
    base_seed : int
        The sweep's base seed (``--seed``), non-negative.
    params : mapping
        The cell's parameters.  To share a stream across cells (common random
        numbers, e.g. the same data for every N), pass only the shared subset.
    seed_index : int
        Non-negative seed index.

    Returns
    -------
    numpy.random.SeedSequence
        Use ``numpy.random.default_rng(cell_seed(...))``, or ``.spawn`` it for
        sub-streams.

    Examples
    --------
    >>> a = np.random.default_rng(cell_seed(0, {"N": 8}, 1)).random()
    >>> b = np.random.default_rng(cell_seed(0, {"N": 8}, 1)).random()
    >>> a == b, a == np.random.default_rng(cell_seed(0, {"N": 8}, 2)).random()
    (True, False)
    """
    index = check_index(seed_index, "seed_index")
    return derive_seed(check_index(base_seed, "base_seed"), "cell", canonical_json(params), index)


def task_name(task: Callable) -> str:
    """``module.qualname`` of a top-level task; TypeError for anything a worker could not import."""
    module = getattr(task, "__module__", None)
    qualname = getattr(task, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(
            f"task must be a top-level function (picklable, with a stable name), got {task!r}"
        )
    return f"{module}.{qualname}"


def cache_key(task_name: str, task_version: str, params: Mapping[str, Any], seed: int, base_seed: int) -> str:
    """SHA-256 hex digest naming the cache file of one ``(cell, seed)`` run.

    The digest covers the canonical JSON of ``{task, task_version, params,
    seed, base_seed}``; nothing else (not the code, not the executor).
    """
    blob = canonical_json(
        {
            "task": task_name,
            "task_version": str(task_version),
            "params": params,
            "seed": int(seed),
            "base_seed": int(base_seed),
        }
    )
    return hashlib.sha256(blob.encode("ascii")).hexdigest()
