"""Console scripts: ``deprl-<name>`` for each tool, and ``deprl-theory <name>`` for all of them.

Each is the same program as ``python -m verification.<name>``: the same
options, the same output, the same exit statuses.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

#: the tools, in the order ``deprl-theory --help`` lists them
TOOLS = {
    "speedup": "linear speedup: exponents, CIs and the verdict",
    "calibrate": "the verdict's error rates on planted data",
    "report": "the paper kit: every figure and table of the study",
    "spectral": "consensus error against the spectrum; the transient law",
    "bound": "the bound as sympy terms against measurement",
    "graphs": "is this W a valid mixing matrix?",
    "run": "one configuration, with curves",
    "design": "the instance scatter of each head design",
    "regime": "what delays the asymptotic regime",
    "bench": "throughput of the engine",
}


def _run(name: str, argv: Sequence[str] | None = None) -> None:
    module = importlib.import_module(f"verification.{name}")
    module.run_main(module.main, module.PROG, None if argv is None else list(argv))


def main(argv: Sequence[str] | None = None) -> None:
    """``deprl-theory TOOL [OPTIONS]``: dispatch to one tool."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        width = max(map(len, TOOLS))
        print("usage: deprl-theory TOOL [OPTIONS]   (deprl-theory TOOL --help for its options)\n\ntools:")
        for name, what in TOOLS.items():
            print(f"  {name:<{width}}  {what}")
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        from deprl_theory import __version__

        print(f"deprl-theory {__version__}")
        sys.exit(0)
    if args[0] not in TOOLS:
        sys.stderr.write(f"deprl-theory: error: unknown tool {args[0]!r}; choose from {', '.join(TOOLS)}\n")
        sys.exit(2)
    _run(args[0], args[1:])


def _entry(name: str):
    def entry() -> None:
        _run(name)
    entry.__name__ = name
    entry.__doc__ = f"``deprl-{name}``: {TOOLS[name]} (``python -m verification.{name}``)."
    return entry


speedup = _entry("speedup")
calibrate = _entry("calibrate")
report = _entry("report")
spectral = _entry("spectral")
bound = _entry("bound")
graphs = _entry("graphs")
run = _entry("run")
design = _entry("design")
regime = _entry("regime")
bench = _entry("bench")
