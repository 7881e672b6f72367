"""What every command-line tool shares: checked option types, the sweep options, one-line user errors.

Only a :class:`UsageError` exits with status 2 and one line on stderr. Input
checks raise it: argparse types (:func:`positive_int`, :func:`finite_float`,
...), :func:`output_dir`, and the :func:`user_input` block, which turns the
``ValueError`` of a library check (a topology that cannot be built for some
N, a W that breaks A4, a bound the safe parser rejects) into a UsageError.
Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextvars
import json
import math
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from deprl_theory.engine import BETA_RULES
from deprl_theory.experiments.records import InsufficientData
from deprl_theory.io import to_jsonable
from deprl_theory.sweep import CellsFailed, SweepOptions, choose_executor

__all__ = ["ArgumentParser", "UsageError", "run_main", "dump_json", "user_input", "positive_int", "nonneg_int",
           "positive_float", "nonneg_float", "finite_float", "unit_float", "fraction", "margin", "output_dir",
           "add_sweep_options", "sweep_options", "opened_sweep", "one_of", "finish_study", "SCHEDULER_TIMEOUT"]

#: seconds to wait for a Dask scheduler before giving up with a one-line error
SCHEDULER_TIMEOUT = 10.0
#: paths results must never be written under
_FORBIDDEN = ("/proc", "/sys", "/dev")


class UsageError(Exception):
    """A user mistake on the command line: reported in one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a user error is one line on stderr and exit status 2; every tool has ``--version``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from deprl_theory import __version__

        self.add_argument("--version", action="version", version=f"deprl-theory {__version__}",
                          help="print the package version and exit")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]}\n")


def dump_json(obj: Any, **kw: Any) -> str:
    """JSON with numpy scalars and arrays converted; NaN becomes null."""
    return json.dumps(to_jsonable(obj), **kw)


@contextmanager
def user_input(what: str = "") -> Iterator[None]:
    """Turn the ValueError of an input check inside the block into a one-line UsageError."""
    try:
        yield
    except ValueError as exc:
        msg = as_flags(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise UsageError(f"{what}: {msg}" if what else msg) from None


#: library parameter names that a message may carry, and the flag a command-line user sets instead
_FLAGS = {"head_mean": "--head-mean", "heterogeneity": "--heterogeneity", "true_rank": "--true-rank",
          "head_rule": "--head-rule", "head_step": "--head-step", "beta_rule": "--beta-rule",
          "beta_max": "--beta-max", "alpha_max": "--alpha-max", "n_eval": "--n-eval", "max_rounds": "--max-rounds",
          "max_seeds": "--max-seeds", "transient_tol": "--transient-tol", "transient_factor": "--transient-factor"}


def as_flags(message: str) -> str:
    """A library message in the command line's words: parameter names become the flags that set them."""
    for name, flag in _FLAGS.items():
        message = re.sub(rf"(?<![\w-]){name}(?![\w-])", flag, message)
    return message


def run_main(main: Callable[[Sequence[str] | None], int], prog: str, argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)``; a :class:`UsageError` exits 2 in one line, any other error keeps its traceback.

    Warnings raised by numpy, scipy or sympy while the input is being read
    would print before the one-line error; they are held back while ``main``
    runs, dropped when it ends in a user error (the error says what is wrong),
    and shown after the output otherwise.
    """
    outcome: BaseException | None = None
    code = 0
    with warnings.catch_warnings(record=True) as caught:  # the filters in force still apply
        try:
            code = _call(main, prog, argv)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, once the warnings are settled
            outcome = exc
    user_error = isinstance(outcome, SystemExit) and outcome.code == 2
    if not user_error:
        _replay(caught)
    if outcome is not None:
        raise outcome
    sys.exit(code or 0)


def _replay(caught: Sequence[warnings.WarningMessage] | None) -> None:
    for w in caught or ():
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def _call(main: Callable[[Sequence[str] | None], int], prog: str, argv: Sequence[str] | None) -> int:
    try:
        # in a context of its own: what the command sets for itself (the figure style) ends with it
        code = contextvars.copy_context().run(main, argv)
    except UsageError as exc:
        sys.stderr.write(f"{prog}: error: {str(exc).splitlines()[0] if str(exc) else 'bad input'}\n")
        sys.exit(2)
    except InsufficientData as exc:
        sys.stderr.write(f"{prog}: cannot analyse: {str(exc).splitlines()[0]}\n")
        sys.exit(1)
    except CellsFailed as exc:
        sys.stderr.write(f"{prog}: {str(exc).splitlines()[0]}\n")
        sys.exit(1)
    except BrokenPipeError:
        # stdout closed early (e.g. piped into `head`): not an error of ours, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; finished runs are kept in the results cache\n")
        sys.exit(130)
    return code


# --------------------------------------------------------------------------- option types
def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{'an integer' if kind is int else 'a number'} expected, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"a finite number expected, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (not nan, not inf)."""
    return float(_number(text, float))


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def unit_float(text: str) -> float:
    """A number in (0, 1]."""
    value = finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def margin(text: str) -> float:
    """A number in [0, 1)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1)."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


# --------------------------------------------------------------------------- output paths
def output_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` if results can be written there (it need not exist yet); UsageError otherwise.

    Rejected: an existing file, a path under /proc, /sys or /dev, a path whose
    nearest existing parent is not a writable directory.
    """
    p = Path(path).expanduser()
    resolved = p.resolve()
    for forbidden in _FORBIDDEN:
        if str(resolved) == forbidden or str(resolved).startswith(forbidden + "/"):
            raise UsageError(f"{option} {str(path)!r} lies under {forbidden}: not a place for results")
    if resolved.exists() and not resolved.is_dir():
        raise UsageError(f"{option} {str(path)!r} exists and is not a directory")
    parent = resolved
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {str(path)!r}: cannot create it, {str(parent)!r} is not a writable directory")
    return p


# --------------------------------------------------------------------------- the shared sweep options
#: the title of the option group every sweep command shares (the README names it)
SHARED_GROUP = "execution and output (shared by every sweep command)"


def add_sweep_options(parser: argparse.ArgumentParser, default_out: str, *, figures_dir: bool = True) -> None:
    """The options every sweep command has, worded the same everywhere.

    ``figures_dir=False``: the command writes its figures under OUT/figures
    itself (the report, whose README.md shows them), so there is no --figures.
    """
    from deprl_theory.plotting import COLUMNS, VENUES

    g = parser.add_argument_group(SHARED_GROUP)
    g.add_argument("--seed", type=nonneg_int, default=0,
                   help="base seed; every cell and seed derives its own stream from it (default %(default)s)")
    g.add_argument("--quick", action="store_true", help="a small grid for a smoke test")
    g.add_argument("--out", default=None,
                   help=f"directory for results and the run cache (default {default_out})")
    if figures_dir:
        g.add_argument("--figures", default=None,
                       help="directory for figures (default OUT/figures with --out, else figures/)")
        g.add_argument("--no-figures", action="store_true", help="skip the figures")
    else:
        g.add_argument("--no-figures", action="store_true",
                       help="skip the figures (written under OUT/figures, beside the README.md that shows them)")
    g.add_argument("--venue", type=one_of(VENUES, "venue"), default=None,
                   help="size and typeset every figure for this venue's page, with no titles (choices: "
                        f"{', '.join(VENUES)}; default: sized for the screen)")
    g.add_argument("--column", type=one_of(COLUMNS, "column"), default="half",
                   help="with --venue: one column of the page (half) or the full text width "
                        "(default %(default)s)")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    g.add_argument("-j", "--jobs", type=positive_int, default=None, help="worker processes (default: all cores)")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="run on this Dask scheduler")
    g.add_argument("--scheduler-timeout", type=positive_float, default=SCHEDULER_TIMEOUT, metavar="SECONDS",
                   help=f"give up when the scheduler does not answer within this time (default {SCHEDULER_TIMEOUT:g})")
    g.add_argument("--no-cache", action="store_true", help="recompute runs that are already in the cache")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def figures_dir(args: argparse.Namespace, default_out: str) -> Path:
    """Where a sweep command writes its figures (checked like every output path)."""
    if not hasattr(args, "figures"):  # a command that keeps its figures beside its results (the report)
        return output_dir(Path(args.out or default_out) / "figures", "--out")
    fig = args.figures
    if fig is None:
        fig = Path(args.out) / "figures" if args.out else Path("figures")
    return output_dir(fig, "--figures")


def apply_figure_style(args: argparse.Namespace) -> None:
    """The figures of this command in the style --venue and --column ask for (the screen default without)."""
    from deprl_theory.plotting import set_figure_style

    if args.venue is None and args.column != "half":
        raise UsageError("--column sizes the figures for a --venue; give the venue too")
    set_figure_style(args.venue, args.column)


def sweep_options(args: argparse.Namespace, default_out: str, cells: Sequence[dict] | None = None,
                  seeds: int = 1) -> tuple[SweepOptions, Path, Path | None]:
    """Check the shared options and return the sweep options, the results directory and the figures directory.

    Every check happens here, before anything is computed or written: the
    output paths, the memory the largest of ``cells`` needs with ``seeds``
    seeds in each of the local worker processes, and the scheduler, which is
    connected to here, so an unreachable one fails fast.
    """
    out = output_dir(args.out if args.out else default_out, "--out")
    if cells:
        from deprl_theory.experiments import cells_memory
        from deprl_theory.resources import check_memory

        processes = 1 if args.scheduler or args.jobs == 1 else min(args.jobs or os.cpu_count() or 1, len(cells))
        with user_input():
            check_memory(cells_memory(cells, seeds), processes=processes, what="the largest cell")
    figures = None
    if not args.no_figures:
        figures = figures_dir(args, default_out)
    apply_figure_style(args)
    scheduler = None
    if args.scheduler is not None:
        from deprl_theory.sweep.executors import SchedulerUnreachable, connect_scheduler

        try:
            scheduler = connect_scheduler(args.scheduler, timeout=args.scheduler_timeout)
        except (ValueError, SchedulerUnreachable, ImportError) as exc:
            raise UsageError(f"--scheduler: {exc}") from None
    options = SweepOptions(out=out, executor=choose_executor(args.jobs, scheduler), jobs=args.jobs,
                           scheduler=scheduler, use_cache=not args.no_cache,
                           progress=not args.no_progress)
    return options, out, figures


def finish_study(prog: str, args: argparse.Namespace, out: Path, result: Any, sweep: Any, seconds: float,
                 render: Callable[[dict], str]) -> int:
    """The end of a study command: failed cells named on stderr, ``summary.json`` written atomically, then printed.

    ``result`` has ``as_dict()``; ``sweep`` is the finished sweep (its
    ``failures``). Returns the exit status, 0.
    """
    from deprl_theory.io import provenance, write_json_atomic

    if sweep.failures:  # one line: how many, which, the first cause (every cell's error is in summary.json)
        sys.stderr.write(f"{prog}: {sweep.failure_line()}\n")
    summary = {**result.as_dict(), "seconds": seconds, "provenance": provenance()}
    write_json_atomic(out / "summary.json", summary)
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


@contextmanager
def opened_sweep(args: argparse.Namespace, default_out: str, cells: Sequence[dict] | None = None,
                 seeds: int = 1) -> Iterator[tuple[SweepOptions, Path, Path | None]]:
    """:func:`sweep_options` for the block, with the scheduler connection closed when it ends."""
    options, out, figures = sweep_options(args, default_out, cells, seeds)
    try:
        yield options, out, figures
    finally:
        if options.scheduler is not None and hasattr(options.scheduler, "close"):
            options.scheduler.close()


def one_of(names: Sequence[str], what: str) -> Callable[[str], str]:
    """An argparse type accepting one of ``names``, with an error that lists them."""
    def check(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose from {', '.join(names)}")
        return text

    check.__name__ = what
    return check


# --------------------------------------------------------------------------- the cell options
_PROBLEM_OPTIONS = ("problem", "dim", "rank", "true_rank", "batch", "noise", "heterogeneity", "heads", "activation",
                    "n_eval", "head_mean")
_STEP_OPTIONS = ("tau", "c", "beta_rule", "head_rule", "head_step", "beta_max", "alpha_max", "sampler")
_GRAPH_OPTIONS = ("algorithm", "topology", "weights", "gap", "p", "degree")


def head_rule(text: str) -> str:
    """'1/N', '1/sqrt(N)' or a positive number (the a in alpha = a beta / tau)."""
    from deprl_theory.engine import parse_head_rule

    try:
        parse_head_rule(text, 2)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """The synthetic problem: kind, sizes (model rank and, for a misspecified model, the truth's), noise,
    heterogeneity."""
    from deprl_theory.problems import ACTIVATIONS, HEAD_DESIGNS

    g = parser.add_argument_group("problem")
    g.add_argument("--problem", type=one_of(("linear", "nonlinear"), "problem"), default="linear",
                   help="linear or nonlinear (default %(default)s)")
    g.add_argument("--dim", type=positive_int, default=20, help="input dimension d (default 20)")
    g.add_argument("--rank", type=positive_int, default=3, help="representation rank r (default 3)")
    g.add_argument("--true-rank", type=positive_int, default=None, metavar="R",
                   help="rank of the truth, above --rank: a misspecified model whose workers' representation "
                        "gradients disagree even at the best fit, so the heterogeneity delta > 0 persists "
                        "(default: the model's rank, a realizable problem)")
    g.add_argument("--batch", type=positive_int, default=10, help="minibatch size b (default 10)")
    g.add_argument("--noise", type=nonneg_float, default=1.0, help="label noise std (default 1)")
    g.add_argument("--heterogeneity", type=nonneg_float, default=1.0, help="spread of the true heads (default 1)")
    g.add_argument("--head-mean", type=finite_float, default=0.0, metavar="MU",
                   help="mean of the true heads (every coordinate; default %(default)s): with --heterogeneity 0, "
                        "a homogeneous problem with signal, where every worker has the head MU")
    g.add_argument("--heads", type=one_of(HEAD_DESIGNS, "heads design"), default="balanced",
                   help="true heads: balanced (whitened: the same task diversity for every N; needs N >= rank) "
                        "or iid (default balanced)")
    g.add_argument("--activation", type=one_of(tuple(ACTIVATIONS), "activation"), default="tanh",
                   help=f"non-linearity of the nonlinear problem: {', '.join(ACTIVATIONS)} (default tanh)")
    g.add_argument("--n-eval", type=positive_int, default=500,
                   help="evaluation sample per worker of the nonlinear problem (default 500)")


def add_step_options(parser: argparse.ArgumentParser) -> None:
    """The theory's step sizes: beta = c sqrt(N/K), alpha = a beta / tau, with stability caps."""
    g = parser.add_argument_group("step sizes")
    g.add_argument("--tau", type=positive_int, default=5, help="local head steps per round (default 5)")
    g.add_argument("--c", type=positive_float, default=0.5, help="the constant c of the beta rule (default 0.5)")
    g.add_argument("--beta-rule", type=one_of(BETA_RULES, "beta rule"), default=BETA_RULES[0],
                   help="representation step: 'c*sqrt(N/K)' (default, the theorem's step) or 'c/sqrt(K)' "
                        "(N-free: a known sublinear case, the optimisation term does not shrink with N)")
    g.add_argument("--head-rule", type=head_rule, default="1/N",
                   help="a in alpha = a beta / tau: '1/N' (default), '1/sqrt(N)' or a number")
    g.add_argument("--head-step", type=positive_float, default=None,
                   help="fixed head step alpha (overrides --head-rule)")
    g.add_argument("--beta-max", type=positive_float, default=0.5,
                   help="stability cap on beta, reported when it binds (default 0.5)")
    g.add_argument("--alpha-max", type=positive_float, default=0.5, help="stability cap on alpha (default 0.5)")
    g.add_argument("--sampler", type=one_of(("projected", "direct"), "sampler"), default="projected",
                   help="minibatch draws: projected (only what the head steps need; exact in distribution, "
                        "default) or direct (every input, as the reference loop replays)")


def add_graph_options(parser: argparse.ArgumentParser, default_topology: str) -> None:
    """The algorithm and the gossip graph."""
    from deprl_theory.engine import ALGORITHMS
    from deprl_theory.graphs import TOPOLOGIES, WEIGHT_RULES, topology_help

    g = parser.add_argument_group("algorithm and graph")
    g.add_argument("--algorithm", type=one_of(ALGORITHMS, "algorithm"), default="deprl",
                   help=f"{', '.join(ALGORITHMS)} (default deprl)")
    g.add_argument("--topology", type=one_of(TOPOLOGIES, "topology"), default=default_topology,
                   help=f"graph family (default {default_topology}): {topology_help()}")
    g.add_argument("--weights", type=one_of(WEIGHT_RULES, "weight rule"), default="metropolis",
                   help=f"weight rule: {', '.join(WEIGHT_RULES)} (default metropolis)")
    g.add_argument("--gap", type=unit_float, default=None, help="spectral gap g in (0, 1] of the exact_gap family")
    g.add_argument("--p", type=unit_float, default=None, help="edge probability of erdos_renyi")
    g.add_argument("--degree", type=positive_int, default=None, help="degree of random_regular")


def cell_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The cell parameters the parsed options set (those of the option groups the command has)."""
    out = {}
    for name in _PROBLEM_OPTIONS + _STEP_OPTIONS + _GRAPH_OPTIONS:
        if hasattr(args, name):
            out[name] = getattr(args, name)
    if "head_rule" in out:
        out["head_rule"] = str(out["head_rule"])
    return out
