"""Sweep records as a tidy long table (one row per run and evaluation point)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["tidy_rows", "flat_rows", "rows_frame"]


def tidy_rows(records: Iterable[Mapping[str, Any]], *, trace: str | None = "trace") -> list[dict[str, Any]]:
    """Flatten sweep records into a tidy long table (one row per run and evaluation point).

    Each row holds the cell's params, ``seed``, and the result's scalar
    entries, with nested dicts (e.g. ``"metrics"``) merged in by their own
    keys.  If the result has a ``trace`` dict of equal-length lists (e.g.
    ``{"k": [...], "consensus_error": [...]}``) the run gives one row per
    trace point, with the trace's keys as columns; otherwise one row.

    Parameters
    ----------
    records : SweepResult or iterable of records
    trace : str or None, default "trace"
        Result key holding per-evaluation-point lists; ``None`` disables.

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        If two entries would give the same column name, or trace lists differ
        in length.

    Examples
    --------
    >>> rec = {"params": {"N": 4}, "seed": 0,
    ...        "result": {"metrics": {"err": 0.5}, "diverged": False,
    ...                   "trace": {"k": [0, 10], "gap": [1.0, 0.1]}}}
    >>> tidy_rows([rec])
    [{'N': 4, 'seed': 0, 'err': 0.5, 'diverged': False, 'k': 0, 'gap': 1.0}, \
{'N': 4, 'seed': 0, 'err': 0.5, 'diverged': False, 'k': 10, 'gap': 0.1}]
    """
    records = getattr(records, "records", records)
    rows: list[dict[str, Any]] = []

    def put(row: dict[str, Any], key: str, value: Any) -> None:
        if key in row:
            raise ValueError(f"column {key!r} appears twice (params, result or trace)")
        row[key] = value

    def merge(row: dict[str, Any], obj: Mapping[str, Any]) -> None:
        for key, value in obj.items():
            if isinstance(value, Mapping):
                merge(row, value)
            else:
                put(row, key, value)

    for rec in records:
        base: dict[str, Any] = {}
        merge(base, rec["params"])
        put(base, "seed", rec["seed"])
        result = dict(rec["result"])
        series = result.pop(trace, None) if trace is not None else None
        merge(base, result)
        if not series:
            rows.append(base)
            continue
        lengths = {k: len(v) for k, v in series.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"trace lists differ in length: {lengths}")
        for t in range(next(iter(lengths.values()))):
            row = dict(base)
            for key, values in series.items():
                put(row, key, values[t])
            rows.append(row)
    return rows


def rows_frame(rows: list[dict[str, Any]]):
    """A pandas DataFrame of ``rows`` (pandas is optional: the ImportError says how to get it)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_frame() needs pandas: pip install 'deprl-theory[frames]' (or pip install pandas)"
                          ) from None
    return pd.DataFrame(rows)


def flat_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: params, ``seed``, ``cached``, ``seconds`` and the result's scalars under dotted keys.

    Examples
    --------
    >>> flat_rows([{"params": {"N": 4}, "seed": 0, "cached": False, "seconds": 0.1,
    ...             "result": {"averages": {"G": 0.5}, "trace": {"k": [1, 2]}, "diverged": False}}])
    [{'N': 4, 'seed': 0, 'cached': False, 'seconds': 0.1, 'averages.G': 0.5, 'diverged': False}]
    """
    def scalars(prefix: str, value: Any, out: dict[str, Any]) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                scalars(f"{prefix}.{k}" if prefix else str(k), v, out)
        elif not isinstance(value, (list, tuple)):
            out[prefix] = value

    rows = []
    for rec in records:
        row = {**rec["params"], "seed": rec["seed"], "cached": rec.get("cached"), "seconds": rec.get("seconds")}
        scalars("", rec["result"], row)
        rows.append(row)
    return rows
