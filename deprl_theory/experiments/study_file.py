"""The study file: what a sweep study asked, written beside its cache so that it can be re-analysed later.

Every ``run_*`` of a sweep study calls :func:`write_study` when it finishes
with an output folder; :mod:`.storage` reads the file back (:func:`~.storage.load`).
This module knows no study class: each study names its kind in a ``KIND``
class attribute.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ..io import to_jsonable, write_json_atomic
from ..sweep import SweepOptions

__all__ = ["FORMAT", "study_as_dict", "study_path", "write_study"]

#: the format of ``<kind>.study.json``
FORMAT = 1


def study_as_dict(study: Any) -> dict[str, Any]:
    """The study as JSON: ``{"kind", "fields"}``, every dataclass field by name (tuples become lists)."""
    kind = getattr(type(study), "KIND", None)
    if kind is None or not dataclasses.is_dataclass(study):
        raise TypeError(f"not a study that can be stored: {type(study).__name__} (no KIND)")
    fields = {f.name: getattr(study, f.name) for f in dataclasses.fields(study)}
    return {"kind": kind, "fields": to_jsonable(fields)}


def study_path(out: str | Path, kind: str) -> Path:
    """Where the study of ``kind`` run into ``out`` is described."""
    return Path(out) / f"{kind}.study.json"


def write_study(options: SweepOptions, study: Any, run: Mapping[str, Any] | None = None) -> Path | None:
    """Record ``study`` (and the keyword arguments of its ``run_*``) in ``options.out``; None without one.

    A read-only re-analysis (``options.compute`` False) leaves the file alone.
    """
    if options.out is None or not options.compute:
        return None
    data = {"format": FORMAT, **study_as_dict(study), "run": to_jsonable(dict(run or {}))}
    path = study_path(options.out, data["kind"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return path
