"""Writing results so a reader never sees half a file, and saying where they came from.

Every result file the package writes (cache entries, tidy CSV tables,
``summary.json``) goes through :func:`write_text_atomic`: the bytes are
written to a temporary file in the target's directory, flushed and fsync'ed,
then moved over the target with :func:`os.replace`.  A crash or Ctrl-C at any
moment leaves either the old file or the new one, never a truncated one; at
worst a stray hidden ``.<name>.<random>.tmp`` file remains next to it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shlex
import socket
import sys
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "to_jsonable",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "write_csv_atomic",
    "provenance",
]

_PROVENANCE_PACKAGES = ("numpy", "scipy", "sympy", "matplotlib", "deprl-theory")


def to_jsonable(obj: Any, *, nan_to_null: bool = True) -> Any:
    """Plain-Python copy of ``obj`` that :func:`json.dumps` accepts.

    Parameters
    ----------
    obj : object
        Nested dicts, lists, tuples, numpy arrays and scalars, str, int,
        float, bool or None.
    nan_to_null : bool, default True
        Replace non-finite floats by ``None`` so the output is strict JSON
        (what other tools expect of ``summary.json``).  With ``False`` they
        are kept, and :func:`json.dumps` writes ``NaN``/``Infinity``, which
        Python reads back exactly.

    Returns
    -------
    object
        Built from dict (with str keys), list, str, int, float, bool, None.

    Raises
    ------
    TypeError
        For an object with no JSON equivalent; the message names its type.

    Examples
    --------
    >>> to_jsonable({"x": np.float64(0.5), "v": np.arange(2), "bad": float("nan")})
    {'x': 0.5, 'v': [0, 1], 'bad': None}
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if nan_to_null and not math.isfinite(value) else value
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), nan_to_null=nan_to_null)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if isinstance(key, (np.integer, int)) and not isinstance(key, bool):
                key = str(int(key))
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, got {type(key).__name__}")
            out[key] = to_jsonable(value, nan_to_null=nan_to_null)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, nan_to_null=nan_to_null) for v in obj]
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Parameters
    ----------
    path : str or path-like
        Target file; missing parent directories are created.
    data : bytes
        Complete new content.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The temporary file lives in the target's directory (so :func:`os.replace`
    is a rename within one filesystem) and is named ``.<name>.<hex>.tmp``, so
    globbing for ``*.json`` or ``*.csv`` never picks it up.  It is created with
    mode 0o666 minus the umask (the mode any new file gets), and removed if
    writing fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # os.open with mode 0o666 honours the umask, unlike mkstemp's private 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`write_bytes_atomic`).

    Parameters
    ----------
    path : str or path-like
        Target file; missing parent directories are created.
    text : str
        Complete new content.
    encoding : str, default "utf-8"

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(
    path: str | os.PathLike, obj: Any, *, indent: int | None = 2, nan_to_null: bool = True
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        Target file.
    obj : object
        Anything :func:`to_jsonable` accepts (numpy arrays and scalars included).
    indent : int or None, default 2
        Passed to :func:`json.dumps`.
    nan_to_null : bool, default True
        Write non-finite floats as ``null`` (strict JSON).  ``False`` keeps
        them as ``NaN``/``Infinity``, readable by Python's :mod:`json`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    data = to_jsonable(obj, nan_to_null=nan_to_null)
    text = json.dumps(data, indent=indent, sort_keys=False, allow_nan=not nan_to_null)
    return write_text_atomic(path, text + "\n")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple, np.ndarray)):
        return json.dumps(to_jsonable(value, nan_to_null=True), separators=(",", ":"))
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float):
        # repr round-trips exactly; csv would otherwise use str(), also exact in Py3.
        return repr(value) if math.isfinite(value) else str(value).lower()
    return value


def write_csv_atomic(
    path: str | os.PathLike,
    rows: Iterable[Mapping[str, Any]],
    *,
    fieldnames: Sequence[str] | None = None,
) -> Path:
    """Write ``rows`` as a CSV table with a header line, atomically.

    Parameters
    ----------
    path : str or path-like
        Target file.
    rows : iterable of mappings
        One mapping per row (a tidy table: one row per run and evaluation
        point).  Missing keys become empty cells; ``None`` becomes an empty
        cell; lists and dicts are written as compact JSON; floats are written
        with :func:`repr`, so they read back bit-for-bit; non-finite floats
        as ``nan``, ``inf``, ``-inf``.
    fieldnames : sequence of str, optional
        Column order.  By default the union of the rows' keys in order of
        first appearance.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If a row has a key not in ``fieldnames``.
    """
    rows = list(rows)
    if fieldnames is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        fieldnames = list(seen)
    else:
        fieldnames = list(fieldnames)
        allowed = set(fieldnames)
        for i, row in enumerate(rows):
            extra = [k for k in row if k not in allowed]
            if extra:
                raise ValueError(f"row {i} has columns not in fieldnames: {extra}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return write_text_atomic(path, buf.getvalue())


def _package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        pass
    module = sys.modules.get(dist.replace("-", "_"))
    if module is None:
        try:
            module = __import__(dist.replace("-", "_"))
        except Exception:
            return None
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Where a result came from: package versions, interpreter, machine, date, command.

    Parameters
    ----------
    argv : sequence of str, optional
        The command line to record; defaults to :data:`sys.argv`.

    Returns
    -------
    dict
        ``{"packages": {name: version or None}, "python", "implementation",
        "platform", "hostname", "date", "argv", "command"}``, all
        JSON-serialisable.  ``date`` is an ISO-8601 UTC timestamp;
        ``command`` is ``argv`` quoted for a POSIX shell.

    Examples
    --------
    >>> p = provenance(["speedup", "--seed", "0"])
    >>> p["command"]
    'speedup --seed 0'
    >>> sorted(p["packages"])[:2]
    ['deprl_theory', 'matplotlib']
    """
    argv = list(sys.argv if argv is None else argv)
    return {
        "packages": {
            dist.replace("-", "_"): _package_version(dist) for dist in _PROVENANCE_PACKAGES
        },
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": argv,
        "command": shlex.join(argv),
    }
