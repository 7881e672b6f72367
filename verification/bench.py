"""How fast is the vectorized engine, against the plain loop and at scale?

    python -m verification.bench
    python -m verification.bench --json --n 8 32 --skip-scale

Throughput: worker-rounds per second of :func:`deprl_theory.engine.run` and of
:func:`deprl_theory.reference.reference_run` (the per-worker loop the tests
check the engine against), on the same problem, graph, seeds and minibatches,
and their ratio. Rounds are calibrated so that each timing lasts about
``--seconds`` (the reference gets far fewer rounds than the engine: only rates
are compared); a warm-up run is excluded and the best of ``--repeats`` timings
is kept.

Scale: a ring of 1024 workers with a sparse mixing matrix, run in a fresh
process so that its peak memory is its own.

Numbers are measured, never asserted: the targets (engine >= 30x the loop at
N = 32; scale run < 60 s) are reported as met or not, and the exit status is 0
either way.
"""
from __future__ import annotations

import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Callable, Sequence

import numpy as np

from deprl_theory.engine import DrawStream, minibatch_generators, run
from deprl_theory.graphs import mixing_matrix
from deprl_theory.io import provenance
from deprl_theory.problems import make_problem
from deprl_theory.reference import reference_run
from verification._cli import ArgumentParser, UsageError, dump_json, run_main

PROG = "python -m verification.bench"

DEFINITION = ("worker-rounds per second = seeds S x workers N x rounds K / wall seconds of one run; "
              "one worker-round is tau head steps and one representation step (each on a minibatch of b "
              "samples) and the consensus step, for one worker of one seed")

#: the throughput setting (the speedup command's default problem) and the scale setting
THROUGHPUT = dict(dim=20, rank=3, tau=5, batch=10, noise=1.0, alpha=0.01, beta=0.01, topology="ring")
SCALE = dict(dim=50, rank=5, tau=5, batch=10, noise=1.0, alpha=0.01, beta=0.01, topology="ring")
TARGET_RATIO, TARGET_RATIO_N = 30.0, 32
TARGET_SCALE_SECONDS, DEFAULT_SCALE_N, DEFAULT_SCALE_ROUNDS = 60.0, 1024, 1000


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[8, 32, 128], metavar="N",
                   help="worker counts of the throughput comparison (default: 8 32 128)")
    p.add_argument("--seeds", type=int, default=5, help="seeds S advanced together (default 5)")
    p.add_argument("--rounds", type=int, default=None, metavar="K",
                   help="engine rounds per timing (default: calibrated to --seconds, in whole chunks of "
                        "pre-drawn minibatches; fewer rounds than a chunk overstate the cost)")
    p.add_argument("--reference-rounds", type=int, default=None, metavar="K",
                   help="reference-loop rounds per timing (default: calibrated to --seconds)")
    p.add_argument("--seconds", type=float, default=1.5,
                   help="aim of the calibration: seconds per timing (default 1.5)")
    p.add_argument("--repeats", type=int, default=3, help="timings per measurement, the best is kept (default 3)")
    p.add_argument("--seed", type=int, default=0, help="base seed of problems and minibatches (default 0)")
    p.add_argument("--skip-scale", action="store_true", help="skip the N = 1024 scale run")
    p.add_argument("--scale-n", type=int, default=DEFAULT_SCALE_N,
                   help=f"workers of the scale run (default {DEFAULT_SCALE_N}; the target applies to the default)")
    p.add_argument("--scale-rounds", type=int, default=DEFAULT_SCALE_ROUNDS,
                   help=f"rounds of the scale run (default {DEFAULT_SCALE_ROUNDS})")
    p.add_argument("--json", action="store_true", help="print every figure as JSON on stdout")
    return p


def validate(args) -> None:
    for name in ("seeds", "repeats", "scale_n", "scale_rounds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(n < 3 for n in args.n):
        raise UsageError(f"--n: every worker count must be >= 3 (ring graph), got {min(args.n)}")
    if args.scale_n < 3:
        raise UsageError(f"--scale-n must be >= 3 (ring graph), got {args.scale_n}")
    for name in ("rounds", "reference_rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.seconds > 0:
        raise UsageError(f"--seconds must be positive, got {args.seconds}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


# --------------------------------------------------------------------------- timing
def _best_of(fn: Callable[[int], Any], rounds: int, repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls ``fn(rounds)``, and the last call's result."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(rounds)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _calibrate(fn: Callable[[int], Any], probe: int, seconds: float, multiple: int = 1) -> int:
    """Rounds for a timing of about ``seconds``, from probe runs (which double as the warm-up)."""
    rounds = probe
    while True:
        t0 = time.perf_counter()
        fn(rounds)
        elapsed = max(time.perf_counter() - t0, 1e-6)
        target = min(10 * rounds, math.ceil(rounds * seconds / elapsed))
        target = multiple * max(1, math.ceil(target / multiple))
        if elapsed >= seconds / 3:
            return target
        rounds = target


def throughput(n: int, *, seeds: int, seed: int, repeats: int, seconds: float,
               rounds: int | None = None, reference_rounds: int | None = None) -> dict:
    """Worker-rounds per second of the engine and of the reference loop at ``n`` workers."""
    s = THROUGHPUT
    problem = make_problem("linear", n, dim=s["dim"], rank=s["rank"], batch=s["batch"], noise=s["noise"],
                           n_seeds=seeds, seed=seed)
    W = mixing_matrix(s["topology"], n)
    run_seeds = [seed + 1000 + j for j in range(seeds)]

    def engine(k: int):
        return run(problem, W, rounds=k, tau=s["tau"], alpha=s["alpha"], beta=s["beta"], seed=run_seeds,
                   validate=False)

    def reference(k: int):
        return reference_run(problem, W, "deprl", k, s["tau"], s["alpha"], s["beta"], run_seeds)

    # minibatches are drawn a chunk of rounds at a time: time whole chunks so that no draw is wasted
    chunk = DrawStream(minibatch_generators(run_seeds, seeds), s["tau"] + 1, n, s["batch"], s["dim"]).chunk
    if rounds is None:
        rounds = _calibrate(engine, chunk, seconds, multiple=chunk)
    else:
        engine(min(rounds, chunk))  # warm-up
    if reference_rounds is None:
        reference_rounds = _calibrate(reference, 1, seconds)
    else:
        reference(1)
    t_engine, _ = _best_of(engine, rounds, repeats)
    t_reference, (theta_ref, B_ref) = _best_of(reference, reference_rounds, repeats)
    # the two time the same computation: same draws, same result
    res = engine(reference_rounds)
    diff = max(float(np.max(np.abs(res.theta - theta_ref))), float(np.max(np.abs(res.B - B_ref))))
    work = seeds * n
    return {
        "engine": work * rounds / t_engine,
        "reference": work * reference_rounds / t_reference,
        "ratio": (work * rounds / t_engine) / (work * reference_rounds / t_reference),
        "engine_rounds": rounds, "engine_seconds": t_engine,
        "reference_rounds": reference_rounds, "reference_seconds": t_reference,
        "max_abs_difference": diff,
    }


def _peak_rss_mb() -> tuple[float, str]:
    """Peak resident set of this process in MiB, and where it was read.

    On Linux, VmHWM of /proc/self/status: the memory map's high-water mark,
    which ``clear_refs`` can restart. ru_maxrss is the fallback elsewhere; on
    Linux it also counts the parent's pages at the fork before exec, so a
    spawned child would report at least its parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10, "VmHWM"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak / 2**20 if sys.platform == "darwin" else peak / 2**10), "ru_maxrss"


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def scale_case(n: int, rounds: int, seed: int) -> dict:
    """One seed on a ring of ``n`` workers with a sparse W; meant to run in a fresh process.

    Peak memory is reported two ways: ``peak_rss_mb`` is the peak resident
    set (see :func:`_peak_rss_mb`), restarted just before the run where Linux
    allows it (then it is the run's peak, interpreter and problem included;
    otherwise the whole process's), and ``tracemalloc_peak_mb`` is the peak of
    the memory allocated during the run (numpy buffers and Python objects), as
    traced by tracemalloc.
    """
    import tracemalloc

    s = SCALE
    problem = make_problem("linear", n, dim=s["dim"], rank=s["rank"], batch=s["batch"], noise=s["noise"],
                           n_seeds=1, seed=seed)
    W = mixing_matrix(s["topology"], n, sparse=True)
    scope = "run" if _reset_peak_rss() else "process"
    before, _ = _peak_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = run(problem, W, rounds=rounds, tau=s["tau"], alpha=s["alpha"], beta=s["beta"], seed=seed + 1,
              validate=False)
    seconds = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak, source = _peak_rss_mb()
    return {
        "n_workers": n, "rounds": rounds, "seeds": 1, "seconds": seconds,
        "worker_rounds_per_second": n * rounds / seconds,
        "peak_rss_mb": peak, "peak_rss_source": source, "peak_rss_scope": scope, "rss_before_run_mb": before,
        "tracemalloc_peak_mb": traced / 2**20,
        "diverged": bool(res.diverged[0]), "subspace_start": float(res.trace["subspace"][0, 0]),
        "subspace_final": float(res.final["subspace"][0]),
    }


def scale(n: int, rounds: int, seed: int) -> dict:
    """:func:`scale_case` in a fresh process, so that ru_maxrss is the scale run's own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(scale_case, n, rounds, seed).result()


# --------------------------------------------------------------------------- report
def _targets(tp: dict, sc: dict | None) -> dict:
    ratio = tp.get(TARGET_RATIO_N, {}).get("ratio")
    default_scale = sc is not None and (sc["n_workers"], sc["rounds"]) == (DEFAULT_SCALE_N, DEFAULT_SCALE_ROUNDS)
    return {
        "engine_over_reference": {
            "at_n": TARGET_RATIO_N, "target": TARGET_RATIO, "measured": ratio,
            "met": None if ratio is None else bool(ratio >= TARGET_RATIO),
        },
        "scale_seconds": {
            "n_workers": DEFAULT_SCALE_N, "rounds": DEFAULT_SCALE_ROUNDS, "target": TARGET_SCALE_SECONDS,
            "measured": sc["seconds"] if default_scale else None,
            "met": bool(sc["seconds"] < TARGET_SCALE_SECONDS) if default_scale else None,
        },
    }


def _setting(s: dict) -> str:
    return (f"linear problem d = {s['dim']}, r = {s['rank']}, noise {s['noise']:g}; tau = {s['tau']}, "
            f"b = {s['batch']}; constant steps alpha = {s['alpha']:g}, beta = {s['beta']:g}; "
            f"{s['topology']} graph, Metropolis weights")


def render(summary: dict) -> str:
    lines = [
        "Throughput, " + DEFINITION + ".",
        f"  {_setting(THROUGHPUT)}; S = {summary['settings']['seeds']} seeds; dense W.",
        f"  Best of {summary['settings']['repeats']} timings after a warm-up; the engine's time includes its "
        "per-round metrics (as in the sweeps), the reference loop computes none.",
        "",
        f"  {'N':>5}  {'engine wr/s':>12}  {'(K rounds, s)':<15}  {'reference wr/s':>14}  {'(K rounds, s)':<14}"
        f"  {'ratio':>7}  {'max |diff|':>10}",
    ]
    for n, t in summary["throughput"].items():
        engine_k = "(%d, %.2f)" % (t["engine_rounds"], t["engine_seconds"])
        reference_k = "(%d, %.2f)" % (t["reference_rounds"], t["reference_seconds"])
        lines.append(f"  {n:>5}  {t['engine']:>12,.0f}  {engine_k:<15}  {t['reference']:>14,.0f}  {reference_k:<14}"
                     f"  {t['ratio']:>6.1f}x  {t['max_abs_difference']:>10.1e}")
    tr = summary["targets"]["engine_over_reference"]
    if tr["measured"] is None:
        lines.append(f"Target engine >= {tr['target']:g}x the reference at N = {tr['at_n']}: not measured "
                     f"(N = {tr['at_n']} not in --n).")
    else:
        lines.append(f"Target engine >= {tr['target']:g}x the reference at N = {tr['at_n']}: measured "
                     f"{tr['measured']:.1f}x -> {'met' if tr['met'] else 'NOT met'}.")
    sc = summary["scale"]
    if sc is None:
        lines.append("Scale run skipped (--skip-scale).")
    else:
        ts = summary["targets"]["scale_seconds"]
        verdict = ("target not applicable: it is set for N = %d, K = %d" % (ts["n_workers"], ts["rounds"])
                   if ts["met"] is None else
                   f"target < {ts['target']:g} s: {'met' if ts['met'] else 'NOT met'}")
        lines += [
            "",
            f"Scale: ring of N = {sc['n_workers']} workers, sparse W (scipy CSR), {sc['rounds']} rounds, 1 seed; "
            f"{_setting(SCALE)}.",
            f"  wall time {sc['seconds']:.1f} s ({verdict}); {sc['worker_rounds_per_second']:,.0f} worker-rounds/s; "
            f"{'DIVERGED' if sc['diverged'] else 'no divergence'} (subspace distance {sc['subspace_start']:.3f} -> "
            f"{sc['subspace_final']:.3f}).",
            f"  peak memory: {sc['peak_rss_mb']:.0f} MB resident ({sc['peak_rss_source']} in a fresh process, "
            + (f"restarted before the run: {sc['rss_before_run_mb']:.0f} MB resident then)"
               if sc["peak_rss_scope"] == "run" else "whole process)")
            + f"; {sc['tracemalloc_peak_mb']:.0f} MB peak allocated during the run (tracemalloc: numpy buffers "
            "and Python objects).",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    validate(args)
    tp = {}
    for n in dict.fromkeys(args.n):
        tp[n] = throughput(n, seeds=args.seeds, seed=args.seed, repeats=args.repeats, seconds=args.seconds,
                           rounds=args.rounds, reference_rounds=args.reference_rounds)
        print(f"  N = {n}: engine {tp[n]['engine']:,.0f} wr/s, reference {tp[n]['reference']:,.0f} wr/s",
              file=sys.stderr, flush=True)
    sc = None
    if not args.skip_scale:
        print(f"  scale run: N = {args.scale_n}, {args.scale_rounds} rounds ...", file=sys.stderr, flush=True)
        sc = scale(args.scale_n, args.scale_rounds, args.seed)
    summary = {
        "definition": DEFINITION,
        "settings": {"throughput": THROUGHPUT, "scale": SCALE, "seeds": args.seeds, "repeats": args.repeats,
                     "seconds_per_timing": args.seconds, "seed": args.seed},
        "throughput": {str(n): t for n, t in tp.items()},
        "scale": sc,
        "targets": _targets(tp, sc),
        "provenance": provenance(),
    }
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


if __name__ == "__main__":
    run_main(main, PROG)
