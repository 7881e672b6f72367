"""Does a gossip graph satisfy assumption A4, and what is its spectral gap?

Builds the mixing matrix of a topology (or of an adjacency read from a file),
checks A4 property by property and prints gap, rho, degrees and checks.

    python -m verification.graphs --topology ring --n 16
    python -m verification.graphs --topology star --n 8 --weights uniform --json
    python -m verification.graphs --adjacency graph.npy --lazy 0.5

Exit status: 0 when every check holds, 1 when W breaks A4 (the report says which
property fails), 2 for bad input (one line on stderr).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deprl_theory.graphs import (
    TOPOLOGIES,
    WEIGHT_RULES,
    adjacency,
    graph_adjacency,
    mixing_matrix,
    mixing_report,
    topology_help,
)
from deprl_theory.graphs.spectra import DENSE_MAX
from deprl_theory.graphs.topologies import graph_memory
from deprl_theory.resources import MemoryEstimate, check_memory, mixing_matrix_memory
from verification._cli import (
    ArgumentParser,
    UsageError,
    dump_json,
    nonneg_float,
    nonneg_int,
    one_of,
    positive_int,
    run_main,
    unit_float,
    user_input,
)

PROG = "python -m verification.graphs"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Mixing matrix of a gossip graph: spectral gap, rho and the A4 checks.",
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--topology", type=one_of(TOPOLOGIES, "topology"), default="ring",
                     help=f"graph family (default: ring): {topology_help()}")
    src.add_argument("--adjacency", metavar="FILE", type=Path,
                     help="0/1 adjacency matrix (.npy, or text readable by numpy.loadtxt)")
    parser.add_argument("--n", type=positive_int, help="number of workers N (required with --topology)")
    parser.add_argument("--weights", type=one_of(WEIGHT_RULES, "weight rule"), default="metropolis",
                        help=f"weight rule: {', '.join(WEIGHT_RULES)} (default: metropolis)")
    parser.add_argument("--lazy", type=unit_float, metavar="A", help="use (1-A) I + A W, 0 < A <= 1")
    parser.add_argument("--p", type=unit_float, help="edge probability for erdos_renyi")
    parser.add_argument("--degree", type=positive_int, help="degree for random_regular")
    parser.add_argument("--gap", type=unit_float, help="spectral gap g for exact_gap")
    parser.add_argument("--seed", type=nonneg_int, help="seed for random topologies")
    parser.add_argument("--tol", type=nonneg_float, default=1e-10, help="tolerance of the checks")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _read_adjacency(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"adjacency file {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about an empty file; the error below says it once
            data = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise UsageError(f"cannot read adjacency file {str(path)!r}: {str(exc).splitlines()[0]}") from None
    if data.size == 0:
        raise UsageError(f"adjacency file {str(path)!r} holds no numbers")
    return graph_adjacency(data)


def report(args: Any) -> dict[str, Any]:
    """Build W from parsed arguments and return the A4 report as a dict."""
    params = {k: getattr(args, k) for k in ("p", "degree", "gap") if getattr(args, k) is not None}
    if args.adjacency is not None:
        graph = _read_adjacency(args.adjacency)
        w = mixing_matrix(graph, args.n, weights=args.weights, lazy=args.lazy, **params)
        source = {"adjacency": str(args.adjacency)}
    else:
        if args.n is None:
            raise ValueError("--n is required with --topology")
        sparse = args.n > DENSE_MAX  # no dense n x n step for large graphs
        dense_w = args.topology == "exact_gap"
        need = MemoryEstimate(graph_memory(args.topology, args.n) + mixing_matrix_memory(
            args.n, sparse=sparse and not dense_w), f"{args.topology} graph of {args.n} nodes")
        check_memory(need, what=f"--topology {args.topology} --n {args.n}")
        # Draw the graph once so W and the zero-pattern check see the same graph.
        graph = adjacency(args.topology, args.n, seed=args.seed, sparse=sparse, **params)
        if dense_w:
            w = mixing_matrix(args.topology, args.n, weights=args.weights, lazy=args.lazy, **params)
        else:
            w = mixing_matrix(graph, weights=args.weights, lazy=args.lazy, sparse=sparse)
        source = {"topology": args.topology}
    result = mixing_report(w, graph, args.tol).as_dict()
    setup = {**source, "weights": args.weights, "lazy": args.lazy, "seed": args.seed,
             "params": params, "tol": args.tol}
    if source.get("topology") == "exact_gap":
        setup["weights"] = "closed form (1-g) I + g 11^T/n"
    return {**setup, **result}


def _format(rep: dict[str, Any]) -> str:
    name = rep.get("topology") or rep.get("adjacency")
    extras = "".join(f", {k} = {v}" for k, v in rep["params"].items())
    if rep["lazy"] is not None:
        extras += f", lazy = {rep['lazy']}"
    deg = rep["degrees"]
    lines = [
        f"mixing matrix: {name}, n = {rep['n']}, weights = {rep['weights']}{extras}",
        f"  spectral gap  {rep['spectral_gap']:.6g}",
        f"  rho           {rep['rho']:.6g}",
        f"  degrees       min {deg['min']}, max {deg['max']}, mean {deg['mean']:.3g}",
        "  checks (assumption A4):",
    ]
    lines += [f"    {key:<18} {'ok' if ok else 'FAIL'}" for key, ok in rep["checks"].items()]
    lines += [f"  FAIL {msg}" for msg in rep["failures"]]
    lines.append("  verdict       " + ("W satisfies A4" if rep["ok"] else "W breaks A4"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with user_input():
        rep = report(args)
    print(dump_json(rep, indent=2) if args.json else _format(rep))
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    run_main(main, PROG)
