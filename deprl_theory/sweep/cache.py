"""The results cache: one JSON file per finished (cell, seed) run, written atomically, trusted only when checked.

An entry holds the task's name and version, the cell's params, the seed, the
base seed, the result, a SHA-256 checksum over all of those, and provenance.
Reading an entry checks, in order: that it parses, that it is the run asked
for (task, version, params, seed, base seed), that the checksum matches the
payload (a hand-edited or bit-rotted file fails), and that the result passes
the task's own schema check (keys, types, finite values, shapes). Any failure
makes the entry *rejected*: the run is computed again and the file replaced;
the reason is reported in one line. Nothing read from the cache is used
unchecked.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from ..io import write_text_atomic

__all__ = ["cache_dir", "checksum", "read_entry", "write_entry", "Validator"]

#: a task's schema check of one result: raises ValueError naming what is wrong
Validator = Callable[[Mapping[str, Any]], None]

_PAYLOAD_KEYS = ("task", "task_version", "params", "seed", "base_seed", "result")


def cache_dir(out: str | Path, task_name: str) -> Path:
    """``out/cache/<task name, filesystem-safe>``."""
    return Path(out) / "cache" / re.sub(r"[^A-Za-z0-9._-]", "_", task_name)


def checksum(entry: Mapping[str, Any]) -> str:
    """SHA-256 over the entry's payload (everything but provenance and the checksum itself)."""
    payload = {k: entry.get(k) for k in _PAYLOAD_KEYS}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def read_entry(path: Path, expect: Mapping[str, Any],
               validate: Validator | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The checked entry at ``path``, or ``(None, why)``.

    ``why`` is None when the file does not exist (nothing to report) and a
    one-line reason when an existing file was rejected.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            entry = json.load(fh)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(entry, dict) or not isinstance(entry.get("result"), dict):
        return None, "not a cache entry"
    for key, value in expect.items():
        if entry.get(key) != value:
            return None, f"belongs to another run ({key} differs)"
    if entry.get("checksum") != checksum(entry):
        return None, "checksum does not match its contents (edited or corrupted)"
    if validate is not None:
        try:
            validate(entry["result"])
        except (ValueError, TypeError, KeyError) as exc:
            return None, f"result fails the schema check: {exc}"
    return entry, None


def write_entry(path: Path, entry: Mapping[str, Any]) -> None:
    """Write ``entry`` with its checksum, atomically."""
    full = dict(entry)
    full["checksum"] = checksum(full)
    # NaN/inf are kept as Python's JSON literals so a cached result equals a fresh one.
    write_text_atomic(path, json.dumps(full, indent=1, allow_nan=True) + "\n")
