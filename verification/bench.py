"""How fast is the vectorized engine, against the plain loop, the random numbers it draws, and at scale?

    python -m verification.bench
    python -m verification.bench --json --n 8 32 --skip-scale

For each minibatch sampler (``direct``: every input drawn, the numbers the
plain loop replays; ``projected``: only the projections the head steps need,
see :func:`deprl_theory.problems.projection_factor`):

* throughput: worker-rounds per second of :func:`deprl_theory.engine.run` at
  each N, and its ratio to :func:`deprl_theory.reference.reference_run` (the
  per-worker loop the tests check the engine against);
* the RNG limit: the seconds that drawing the sampler's standard normals alone
  takes (the engine's own draw streams, SFC64, the same count, no arithmetic),
  and the engine's time over it;
* scale: a ring of 1024 workers with a sparse mixing matrix, with peak memory.

The throughput timings run in a fresh process, each scale run in its own.
At each N the engine (per sampler), the RNG alone and the reference loop are
timed interleaved, back to back, so that their ratios are as fair as this
machine allows; the best of ``--repeats`` is kept after a warm-up. BLAS runs
on one thread there (``--blas-threads``): on a two-core machine whose other
core is busy, a threaded BLAS call waits for that core and costs far more
than it computes. Engine rounds are calibrated to about ``--seconds`` per
timing (the reference loop gets far fewer rounds: only rates are compared).

Numbers are measured, never asserted: the targets are reported as met or not
met, and the exit status is 0 either way. Absolute timings depend on the
machine and its load; the ratios measured in one process are the figures to
compare.
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from deprl_theory.engine import SAMPLERS, draw_stream, normals_per_worker_round, run
from deprl_theory.graphs import mixing_matrix
from deprl_theory.io import provenance
from deprl_theory.problems import Problem, make_problem
from deprl_theory.reference import reference_run
from deprl_theory.resources import check_memory, run_memory
from verification._cli import (
    ArgumentParser,
    UsageError,
    dump_json,
    nonneg_int,
    positive_float,
    positive_int,
    run_main,
    user_input,
)

PROG = "python -m verification.bench"

DEFINITION = ("worker-rounds per second = seeds S x workers N x rounds K / wall seconds of one run; "
              "one worker-round is tau head steps and one representation step (each on a minibatch of b "
              "samples) and the consensus step, for one worker of one seed")

#: the throughput setting (the speedup command's default problem) and the scale setting
THROUGHPUT = dict(dim=20, rank=3, tau=5, batch=10, noise=1.0, alpha=0.01, beta=0.01, topology="ring")
SCALE = dict(dim=50, rank=5, tau=5, batch=10, noise=1.0, alpha=0.01, beta=0.01, topology="ring")
#: the sampler the targets are set for (the one that is to become the default)
TARGET_SAMPLER = "projected"
TARGET_RATIO, GOAL_RATIO, TARGET_RATIO_N = 80.0, 100.0, 32
TARGET_SCALE_SECONDS, TARGET_SCALE_MB, DEFAULT_SCALE_N, DEFAULT_SCALE_ROUNDS = 10.0, 200.0, 1024, 1000
TARGET_RNG_FACTOR = 1.5
#: environment variables that set the thread count of the BLAS numpy may be linked against
_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=positive_int, nargs="+", default=[8, 32, 128], metavar="N",
                   help="worker counts of the throughput comparison (default: 8 32 128)")
    p.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS), metavar="SAMPLER",
                   help=f"minibatch samplers to time: {', '.join(SAMPLERS)} (default: {' '.join(SAMPLERS)})")
    p.add_argument("--seeds", type=positive_int, default=5, help="seeds S advanced together (default 5)")
    p.add_argument("--rounds", type=positive_int, default=None, metavar="K",
                   help="engine rounds per timing (default: calibrated to --seconds, in whole chunks of "
                        "pre-drawn minibatches)")
    p.add_argument("--reference-rounds", type=positive_int, default=None, metavar="K",
                   help="reference-loop rounds per timing (default: calibrated to --seconds)")
    p.add_argument("--seconds", type=seconds_value, default=1.5,
                   help="aim of the calibration: seconds per timing (default 1.5)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="timings per measurement, the best is kept (default 3)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="base seed of problems and minibatches (default 0)")
    p.add_argument("--blas-threads", type=positive_int, default=1,
                   help="BLAS threads of the timing processes (default 1: one core per timing)")
    p.add_argument("--skip-scale", action="store_true", help="skip the N = 1024 scale run")
    p.add_argument("--scale-n", type=positive_int, default=DEFAULT_SCALE_N,
                   help=f"workers of the scale run (default {DEFAULT_SCALE_N}; the targets apply to the default)")
    p.add_argument("--scale-rounds", type=positive_int, default=DEFAULT_SCALE_ROUNDS,
                   help=f"rounds of the scale run (default {DEFAULT_SCALE_ROUNDS})")
    p.add_argument("--scale-rng-rounds", type=positive_int, default=200, metavar="K",
                   help="rounds whose draws are timed alone for the scale run's RNG limit, scaled to its "
                        "rounds (default 200; the draw cost is linear in the count)")
    p.add_argument("--json", action="store_true", help="print every figure as JSON on stdout")
    return p


def validate(args) -> None:
    for name in ("seeds", "repeats", "scale_n", "scale_rounds", "scale_rng_rounds", "blas_threads"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(n < 3 for n in args.n):
        raise UsageError(f"--n: every worker count must be >= 3 (ring graph), got {min(args.n)}")
    if args.scale_n < 3:
        raise UsageError(f"--scale-n must be >= 3 (ring graph), got {args.scale_n}")
    for name in ("rounds", "reference_rounds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    with user_input():
        for n in dict.fromkeys(args.n):  # the throughput runs use a dense W, the scale run a sparse one
            check_memory(run_memory(seeds=args.seeds, workers=n, dim=THROUGHPUT["dim"], rank=THROUGHPUT["rank"],
                                    batch=THROUGHPUT["batch"], tau=THROUGHPUT["tau"], rounds=10**6),
                         what=f"the throughput run at N = {n}")
        if not args.skip_scale:
            check_memory(run_memory(seeds=1, workers=args.scale_n, dim=SCALE["dim"], rank=SCALE["rank"],
                                    batch=SCALE["batch"], tau=SCALE["tau"], rounds=args.scale_rounds, sparse=True),
                         what=f"the scale run at N = {args.scale_n}")


def seconds_value(text: str) -> float:
    """Seconds per timing: a finite number in (0, 600]."""
    value = positive_float(text)
    if value > 600:
        raise argparse.ArgumentTypeError(f"must be at most 600 seconds per timing, got {text}")
    return value


# --------------------------------------------------------------------------- timing
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


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _stream(problem: Problem, sampler: str, tau: int, seeds: Sequence[int], rounds: int | None):
    """The draw stream the engine builds for ``sampler`` (same seeds, shapes and chunks)."""
    return draw_stream(problem, sampler, tau, list(seeds), rounds)


def rng_only(problem: Problem, sampler: str, tau: int, seeds: Sequence[int], rounds: int) -> None:
    """Draw a run's standard normals and nothing else: the engine's streams, ``rounds`` rounds."""
    stream = _stream(problem, sampler, tau, seeds, rounds)
    for _ in range(rounds):
        stream.next()


def throughput(n: int, *, samplers: Sequence[str], seeds: int, seed: int, repeats: int, seconds: float,
               rounds: int | None = None, reference_rounds: int | None = None) -> dict:
    """Engine (per sampler), RNG-alone and reference-loop rates at ``n`` workers, timed back to back."""
    s = THROUGHPUT
    problem = make_problem("linear", n, dim=s["dim"], rank=s["rank"], batch=s["batch"], noise=s["noise"],
                           n_seeds=seeds, seed=seed)
    W = mixing_matrix(s["topology"], n)
    run_seeds = [seed + 1000 + j for j in range(seeds)]
    work = seeds * n

    def engine(sampler: str) -> Callable[[int], Any]:
        return lambda k: run(problem, W, rounds=k, tau=s["tau"], alpha=s["alpha"], beta=s["beta"], seed=run_seeds,
                             validate=False, sampler=sampler)

    def reference(k: int):
        return reference_run(problem, W, "deprl", k, s["tau"], s["alpha"], s["beta"], run_seeds)

    # calibrate (the probes double as warm-ups), then time everything interleaved, so that the engine,
    # the RNG alone and the loop see the same machine
    ks = {}
    for sampler in samplers:
        fn = engine(sampler)
        # minibatches are drawn a chunk of rounds at a time: time whole chunks
        chunk = _stream(problem, sampler, s["tau"], run_seeds, None).chunk
        ks[sampler] = _calibrate(fn, chunk, seconds, multiple=chunk) if rounds is None else rounds
        if rounds is not None:
            fn(min(ks[sampler], chunk))
        rng_only(problem, sampler, s["tau"], run_seeds, min(ks[sampler], chunk))
    ref_k = _calibrate(reference, 1, seconds) if reference_rounds is None else reference_rounds
    if reference_rounds is not None:
        reference(1)
    best = {key: math.inf for key in [("engine", x) for x in samplers] + [("rng", x) for x in samplers] + ["loop"]}
    theta_ref = B_ref = None
    for _ in range(repeats):
        for sampler in samplers:
            k = ks[sampler]
            best["engine", sampler] = min(best["engine", sampler],
                                          _timed(lambda sampler=sampler, k=k: engine(sampler)(k)))
            best["rng", sampler] = min(best["rng", sampler], _timed(
                lambda sampler=sampler, k=k: rng_only(problem, sampler, s["tau"], run_seeds, k)))
        t0 = time.perf_counter()
        theta_ref, B_ref = reference(ref_k)
        best["loop"] = min(best["loop"], time.perf_counter() - t0)
    out: dict[str, Any] = {"samplers": {}}
    out["reference"] = work * ref_k / best["loop"]
    out["reference_rounds"], out["reference_seconds"] = ref_k, best["loop"]
    for sampler in samplers:
        k, t_engine, t_rng = ks[sampler], best["engine", sampler], best["rng", sampler]
        normals = normals_per_worker_round(problem, s["tau"], sampler)
        out["samplers"][sampler] = {
            "engine": work * k / t_engine, "engine_rounds": k, "engine_seconds": t_engine,
            "ratio": work * k / t_engine / out["reference"],
            "normals_per_worker_round": normals,
            "rng_seconds": t_rng, "rng_limit": work * k / t_rng, "normals_per_second": work * k * normals / t_rng,
            "engine_over_rng": t_engine / t_rng,
        }
    if "direct" in out["samplers"]:  # the loop replays the direct draws: the two timed the same computation
        res = engine("direct")(ref_k)
        out["max_abs_difference"] = max(float(np.max(np.abs(res.theta - theta_ref))),
                                        float(np.max(np.abs(res.B - B_ref))))
        # the pre-sampler layout of this record: the direct sampler's figures at the top level
        out.update({key: out["samplers"]["direct"][key] for key in ("engine", "engine_rounds", "engine_seconds")})
        out["ratio"] = out["samplers"]["direct"]["ratio"]
    return out


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


def scale_case(n: int, rounds: int, seed: int, sampler: str = "direct", rng_rounds: int = 200) -> dict:
    """One seed on a ring of ``n`` workers with a sparse W; meant to run in a fresh process.

    Peak memory is reported two ways: ``peak_rss_mb`` is the peak resident
    set (see :func:`_peak_rss_mb`), restarted just before the run where Linux
    allows it (then it is the run's peak, interpreter and problem included;
    otherwise the whole process's), and ``tracemalloc_peak_mb`` is the peak of
    the memory allocated during the run (numpy buffers and Python objects), as
    traced by tracemalloc. After the run, ``rng_rounds`` rounds of the
    sampler's draws are timed alone and scaled to ``rounds``: the RNG limit.
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
              validate=False, sampler=sampler)
    seconds = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak, source = _peak_rss_mb()
    k = min(rng_rounds, rounds)
    rng_seconds = _timed(lambda: rng_only(problem, sampler, s["tau"], [seed + 1], k)) * rounds / k
    return {
        "sampler": sampler, "n_workers": n, "rounds": rounds, "seeds": 1, "seconds": seconds,
        "worker_rounds_per_second": n * rounds / seconds,
        "normals_per_worker_round": normals_per_worker_round(problem, s["tau"], sampler),
        "rng_seconds": rng_seconds, "rng_rounds_timed": k, "engine_over_rng": seconds / rng_seconds,
        "peak_rss_mb": peak, "peak_rss_source": source, "peak_rss_scope": scope, "rss_before_run_mb": before,
        "tracemalloc_peak_mb": traced / 2**20,
        "diverged": bool(res.diverged[0]), "subspace_start": float(res.trace["subspace"][0, 0]),
        "subspace_final": float(res.final["subspace"][0]),
    }


@contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    """Set the BLAS thread count that processes started inside the block read when they load numpy."""
    saved = {v: os.environ.get(v) for v in _BLAS_THREAD_VARS}
    os.environ.update({v: str(n) for v in _BLAS_THREAD_VARS})
    try:
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


def _fresh_process(blas_threads: int) -> ProcessPoolExecutor:
    with _blas_threads(blas_threads):  # a spawned process copies the environment when it starts
        pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
        pool.submit(int).result()  # start it now, inside the block
    return pool


def scale(n: int, rounds: int, seed: int, sampler: str = "direct", rng_rounds: int = 200,
          blas_threads: int = 1) -> dict:
    """:func:`scale_case` in a fresh process, so that its peak memory is the scale run's own."""
    with _fresh_process(blas_threads) as pool:
        return pool.submit(scale_case, n, rounds, seed, sampler, rng_rounds).result()


# --------------------------------------------------------------------------- report
def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "NOT met")


def _targets(tp: dict, sc: dict) -> dict:
    at = tp.get(TARGET_RATIO_N, {}).get("samplers", {}).get(TARGET_SAMPLER)
    ratio = None if at is None else at["ratio"]
    rng_factor = None if at is None else at["engine_over_rng"]
    case = sc.get(TARGET_SAMPLER)
    default_scale = case is not None and (case["n_workers"], case["rounds"]) == (DEFAULT_SCALE_N, DEFAULT_SCALE_ROUNDS)
    return {
        "engine_over_reference": {
            "sampler": TARGET_SAMPLER, "at_n": TARGET_RATIO_N, "target": TARGET_RATIO, "goal": GOAL_RATIO,
            "measured": ratio, "met": None if ratio is None else bool(ratio >= TARGET_RATIO),
            "goal_met": None if ratio is None else bool(ratio >= GOAL_RATIO),
        },
        "scale_seconds": {
            "sampler": TARGET_SAMPLER, "n_workers": DEFAULT_SCALE_N, "rounds": DEFAULT_SCALE_ROUNDS,
            "target": TARGET_SCALE_SECONDS, "measured": case["seconds"] if default_scale else None,
            "met": bool(case["seconds"] <= TARGET_SCALE_SECONDS) if default_scale else None,
        },
        "scale_memory_mb": {
            "sampler": TARGET_SAMPLER, "target": TARGET_SCALE_MB,
            "measured": case["peak_rss_mb"] if default_scale else None,
            "met": bool(case["peak_rss_mb"] < TARGET_SCALE_MB) if default_scale else None,
        },
        "engine_over_rng": {
            "sampler": TARGET_SAMPLER, "target": TARGET_RNG_FACTOR,
            "at_n": TARGET_RATIO_N, "measured": rng_factor,
            "met": None if rng_factor is None else bool(rng_factor <= TARGET_RNG_FACTOR),
            "scale_measured": case["engine_over_rng"] if default_scale else None,
            "scale_met": bool(case["engine_over_rng"] <= TARGET_RNG_FACTOR) if default_scale else None,
        },
    }


def _setting(s: dict) -> str:
    return (f"linear problem d = {s['dim']}, r = {s['rank']}, noise {s['noise']:g}; tau = {s['tau']}, "
            f"b = {s['batch']}; constant steps alpha = {s['alpha']:g}, beta = {s['beta']:g}; "
            f"{s['topology']} graph, Metropolis weights")


def render(summary: dict) -> str:
    st = summary["settings"]
    lines = [
        "Throughput, " + DEFINITION + ".",
        f"  {_setting(THROUGHPUT)}; S = {st['seeds']} seeds; dense W.",
        f"  Timed in a fresh process (BLAS threads: {st['blas_threads']}), interleaved, best of {st['repeats']} after "
        "a warm-up; the engine's time includes its per-round metrics (as in the sweeps), the reference loop "
        "computes none.",
        "  RNG alone: the same run's standard normals drawn by the engine's own streams (SFC64) and nothing else; "
        "engine/RNG is the engine's time over that limit.",
        "",
        f"  {'N':>5}  {'sampler':<9}  {'normals/wr':>10}  {'engine wr/s':>12}  {'(K, s)':<14}  {'RNG-limit wr/s':>14}"
        f"  {'engine/RNG':>10}  {'x loop':>7}",
    ]
    for n, t in summary["throughput"].items():
        for sampler, u in t["samplers"].items():
            k = "(%d, %.2f)" % (u["engine_rounds"], u["engine_seconds"])
            lines.append(f"  {n:>5}  {sampler:<9}  {u['normals_per_worker_round']:>10}  {u['engine']:>12,.0f}  {k:<14}"
                         f"  {u['rng_limit']:>14,.0f}  {u['engine_over_rng']:>9.2f}x  {u['ratio']:>6.1f}x")
        diff = ("" if "max_abs_difference" not in t else
                f"; direct engine vs loop, same draws: max |diff| {t['max_abs_difference']:.1e}")
        lines.append(f"  {n:>5}  {'loop':<9}  {'':>10}  {t['reference']:>12,.0f}  "
                     f"{'(%d, %.2f)' % (t['reference_rounds'], t['reference_seconds']):<14}{diff}")
    tg = summary["targets"]
    tr = tg["engine_over_reference"]
    lines.append("")
    lines.append("Targets (the " + TARGET_SAMPLER + " sampler):")
    if tr["measured"] is None:
        lines.append(f"  engine >= {tr['target']:g}x the loop at N = {tr['at_n']} (goal {tr['goal']:g}x): not measured "
                     f"(N = {tr['at_n']} or the {TARGET_SAMPLER} sampler not timed).")
    else:
        lines.append(f"  engine >= {tr['target']:g}x the loop at N = {tr['at_n']}: measured {tr['measured']:.1f}x -> "
                     f"{_verdict(tr['met'])} (goal {tr['goal']:g}x: {_verdict(tr['goal_met'])}).")
    tq = tg["engine_over_rng"]
    lines.append(f"  engine within {tq['target']:g}x of its RNG-only time at N = {tq['at_n']}: "
                 + ("not measured." if tq["measured"] is None else
                    f"measured {tq['measured']:.2f}x -> {_verdict(tq['met'])}.")
                 + ("" if tq["scale_measured"] is None else
                    f" Scale run: {tq['scale_measured']:.2f}x -> {_verdict(tq['scale_met'])}."))
    ts, tm = tg["scale_seconds"], tg["scale_memory_mb"]
    if ts["measured"] is None:
        lines.append(f"  scale run <= {ts['target']:g} s with peak memory < {tm['target']:g} MB: not measured "
                     f"(the targets are set for N = {ts['n_workers']}, K = {ts['rounds']}).")
    else:
        lines.append(f"  scale run <= {ts['target']:g} s: measured {ts['measured']:.1f} s -> {_verdict(ts['met'])}; "
                     f"peak memory < {tm['target']:g} MB: measured {tm['measured']:.0f} MB -> {_verdict(tm['met'])}.")
    if not summary["scale"]:
        lines.append("Scale run skipped (--skip-scale).")
    for sampler, sc in summary["scale"].items():
        lines += [
            "",
            f"Scale, {sampler} sampler: ring of N = {sc['n_workers']} workers, sparse W (scipy CSR), {sc['rounds']} "
            f"rounds, 1 seed; {_setting(SCALE)}.",
            f"  wall time {sc['seconds']:.1f} s; {sc['worker_rounds_per_second']:,.0f} worker-rounds/s; RNG alone "
            f"{sc['rng_seconds']:.1f} s ({sc['normals_per_worker_round']} normals per worker-round; timed over "
            f"{sc['rng_rounds_timed']} rounds and scaled), engine/RNG {sc['engine_over_rng']:.2f}x; "
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
    samplers = list(dict.fromkeys(args.samplers))
    tp = {}
    with _fresh_process(args.blas_threads) as pool:
        for n in dict.fromkeys(args.n):
            tp[n] = pool.submit(throughput, n, samplers=samplers, seeds=args.seeds, seed=args.seed,
                                repeats=args.repeats, seconds=args.seconds, rounds=args.rounds,
                                reference_rounds=args.reference_rounds).result()
            rates = ", ".join(f"{s} {u['engine']:,.0f} wr/s ({u['ratio']:.1f}x)" for s, u in tp[n]["samplers"].items())
            print(f"  N = {n}: {rates}; loop {tp[n]['reference']:,.0f} wr/s", file=sys.stderr, flush=True)
    sc = {}
    if not args.skip_scale:
        for sampler in samplers:
            print(f"  scale run ({sampler}): N = {args.scale_n}, {args.scale_rounds} rounds ...", file=sys.stderr,
                  flush=True)
            sc[sampler] = scale(args.scale_n, args.scale_rounds, args.seed, sampler, args.scale_rng_rounds,
                                args.blas_threads)
    summary = {
        "definition": DEFINITION,
        "settings": {"throughput": THROUGHPUT, "scale": SCALE, "samplers": samplers, "seeds": args.seeds,
                     "repeats": args.repeats, "seconds_per_timing": args.seconds, "seed": args.seed,
                     "blas_threads": args.blas_threads},
        "throughput": {str(n): t for n, t in tp.items()},
        "scale": sc,
        "targets": _targets(tp, sc),
        "provenance": provenance(),
    }
    print(dump_json(summary, indent=2) if args.json else render(summary))
    return 0


if __name__ == "__main__":
    run_main(main, PROG)
