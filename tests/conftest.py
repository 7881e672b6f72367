"""Shared fixtures: one way to run a command-line tool, in-process or as a real subprocess."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    """What a command printed and its exit status (the fields of subprocess.CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def _to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class Cli:
    """Run ``python -m verification.<name> ARGS`` in a working directory.

    ``cli(name, *args)`` runs it in this process through the same
    ``run_main`` wrapper as the real entry point (fast: no interpreter start);
    ``cli.subprocess(name, *args)`` starts a real interpreter, for tests of
    what only a process shows (exit status of the program, signals).
    """

    def __init__(self, cwd: Path):
        self.cwd = cwd

    def __call__(self, name: str, *args: str) -> CliResult:
        module = importlib.import_module(f"verification.{name}")
        out, err = io.StringIO(), io.StringIO()
        old = os.getcwd()
        os.chdir(self.cwd)
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
                # as in a real process: every warning that reaches the user is printed on stderr, where the
                # one-line tests can count it (pytest would otherwise collect it out of sight)
                warnings.simplefilter("always")
                warnings.filterwarnings("error", category=RuntimeWarning, module="deprl_theory")
                warnings.showwarning = _to_stderr
                try:
                    module.run_main(module.main, module.PROG, list(args))
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(old)
        return CliResult(code, out.getvalue(), err.getvalue())

    def subprocess(self, name: str, *args: str, timeout: float = 600) -> CliResult:
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", f"verification.{name}", *args], cwd=self.cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path) -> Cli:
    """A command-line runner whose working directory is a fresh temporary directory."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    return Cli(tmp_path)


@pytest.fixture(scope="session")
def finished_speedup(tmp_path_factory):
    """A small speedup study run once into a folder (two planned looks), shared by the storage and figure tests.

    Returns ``(out, result)``. Tests may add outputs there (a summary, figures), never touch its cache.
    """
    from deprl_theory import SweepOptions
    from deprl_theory.experiments.speedup import SpeedupStudy, run_speedup

    out = tmp_path_factory.mktemp("finished_speedup")
    result, _ = run_speedup(SpeedupStudy(n=(4, 8, 16), rounds=(250, 500, 1000), seeds=4, looks=(4, 6)),
                            SweepOptions(out=out, executor="serial", progress=False))
    return out, result
