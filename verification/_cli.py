"""What every CLI shares: one-line user errors with exit status 2, JSON output."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from deprl_theory.io import to_jsonable

__all__ = ["ArgumentParser", "UsageError", "run_main", "dump_json"]


class UsageError(ValueError):
    """A user mistake on the command line: reported in one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a user error is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def dump_json(obj: Any, **kw: Any) -> str:
    """JSON with numpy scalars and arrays converted; NaN becomes null."""
    return json.dumps(to_jsonable(obj), **kw)


def run_main(main: Callable[[Sequence[str] | None], int], prog: str, argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)``; a :class:`UsageError` or ValueError from input checks exits 2 in one line."""
    try:
        code = main(argv)
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
