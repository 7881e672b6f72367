"""Results back from disk: a finished study is re-analysed from its output folder, simulating nothing.

A study's numbers live in its sweep cache (``out/cache``, one checked file per
run); what was asked lives in ``out/<kind>.study.json``, which every ``run_*``
of a sweep study writes, atomically, when it finishes with an output folder.
:func:`load` reads the study back and runs the same ``run_*`` function with
the cache read-only (``SweepOptions(compute=False)``): every fit, interval,
look of a sequential design and verdict is recomputed from the stored runs by
the code that made it, so the numbers are the same to the last digit, and a
run missing from the cache is named in a :class:`~deprl_theory.sweep.CacheMiss`
instead of being simulated. For example, after ``python -m verification.speedup``::

    from deprl_theory.experiments import load_speedup
    result = load_speedup("results/speedup")
    result.verdict, result.sweep["computed"]        # ('linear', 0)

The bound check is not covered: its formula and symbolic analysis are inputs
of their own (re-run ``verification.bound``, which reads the same cache).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ..sweep import SweepOptions
from .study_file import FORMAT, study_as_dict, study_path, write_study

__all__ = ["STUDY_KINDS", "study_as_dict", "study_from_dict", "write_study", "study_path", "load", "load_speedup"]


def _kinds() -> dict[str, tuple[type, Callable]]:
    from .consensus import ConsensusStudy, run_consensus
    from .design import DesignStudy, run_design
    from .regime import RegimeStudy, run_regime
    from .report import ReportStudy, run_report
    from .speedup import SpeedupStudy, run_speedup
    from .transient_law import TransientLawStudy, run_transient_law

    pairs = ((SpeedupStudy, run_speedup), (ConsensusStudy, run_consensus), (RegimeStudy, run_regime),
             (DesignStudy, run_design), (TransientLawStudy, run_transient_law), (ReportStudy, run_report))
    return {cls.KIND: (cls, run) for cls, run in pairs}  # each study names its kind once, in its class


#: the studies :func:`load` brings back, by the kind named in their study file
STUDY_KINDS = ("speedup", "consensus", "regime", "design", "transient_law", "report")


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the studies hold (mappings keep their keys; ``__post_init__`` types them)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def study_from_dict(data: Mapping[str, Any]) -> Any:
    """The study :func:`study_as_dict` wrote (its checks run again, as when it was built)."""
    kind = data.get("kind")
    kinds = _kinds()
    if kind not in kinds:
        raise ValueError(f"unknown study kind {kind!r}; the stored kinds are {', '.join(STUDY_KINDS)}")
    cls, _ = kinds[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    fields = dict(data.get("fields") or {})
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"{kind} study file has unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, value in fields.items():
        # the cell is a parameter dict: its lists stay lists (JSON cannot tell them apart in a cache key anyway)
        values[name] = dict(value) if name == "cell" else _tuples(value)
    return cls(**values)


def _read(out: Path, kind: str | None) -> dict[str, Any]:
    if not out.is_dir():
        raise FileNotFoundError(f"no results folder {out}")
    found = sorted(p.name[: -len(".study.json")] for p in out.glob("*.study.json"))
    if kind is None:
        if not found:
            raise FileNotFoundError(f"{out} holds no finished study (no *.study.json): run the study with "
                                    "this folder as its output first")
        if len(found) > 1:
            raise ValueError(f"{out} holds several studies ({', '.join(found)}); name one with kind=")
        kind = found[0]
    elif kind not in STUDY_KINDS:
        raise ValueError(f"unknown study kind {kind!r}; the stored kinds are {', '.join(STUDY_KINDS)}")
    path = study_path(out, kind)
    if not path.is_file():
        raise FileNotFoundError(f"{out} holds no finished {kind} study (no {path.name}"
                                + (f"; it holds {', '.join(found)}" if found else "") + ")")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable study file: {exc}") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} has format {data.get('format')!r}; this version reads format {FORMAT}")
    return data


def load(out: str | Path, kind: str | None = None, *, progress: bool = False) -> Any:
    """The result of the study finished in ``out``, re-analysed from its cache without simulating anything.

    Parameters
    ----------
    out : path
        The output folder the study ran into (``SweepOptions(out=...)``, or a
        command's ``--out``).
    kind : str, optional
        Which study, when the folder holds several (one of :data:`STUDY_KINDS`).
    progress : bool
        Progress bar while the cache is read.

    Returns
    -------
    The study's result object (``SpeedupResult``, ``ConsensusResult``, ...), with
    ``sweep["computed"] == 0``.

    Raises
    ------
    FileNotFoundError
        No folder, or no finished study of that kind in it.
    CacheMiss
        A run the analysis needs is not in the cache (named; nothing is simulated).
    """
    out = Path(out)
    data = _read(out, kind)
    study = study_from_dict(data)
    _, run = _kinds()[data["kind"]]
    options = SweepOptions(out=out, executor="serial", progress=progress, compute=False)
    outcome = run(study, options, **dict(data.get("run") or {}))
    return outcome[0] if isinstance(outcome, tuple) else outcome


def load_speedup(out: str | Path, *, progress: bool = False):
    """The :class:`~deprl_theory.experiments.speedup.SpeedupResult` finished in ``out``; see :func:`load`."""
    return load(out, "speedup", progress=progress)
