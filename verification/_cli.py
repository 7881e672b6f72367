"""What every CLI shares: one-line user errors with exit status 2, JSON output."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["ArgumentParser", "UsageError", "run_main", "dump_json"]


class UsageError(ValueError):
    """A user mistake on the command line: reported in one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a user error is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dump_json(obj: Any, **kw: Any) -> str:
    """JSON with numpy scalars and arrays converted; NaN becomes null."""
    return json.dumps(_nan_to_none(obj), default=_default, **kw)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.floating) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _nan_to_none(obj.tolist())
    return obj


def run_main(main: Callable[[Sequence[str] | None], int], prog: str) -> None:
    """Run ``main``; a :class:`UsageError` or ValueError from input checks exits 2 in one line."""
    try:
        code = main(None)
    except (UsageError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"{prog}: error: {msg}\n")
        sys.exit(2)
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours, and no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; finished runs are kept in the results cache\n")
        sys.exit(130)
    sys.exit(code or 0)
