"""The experiments: what each verification runs, how its records are read, and what it concludes.

* :mod:`.cells`      the sweep task (one cell x seeds) and its parameters
* :mod:`.records`    one way to index sweep records
* :mod:`.transient`  the one home of predicted and measured transients
* :mod:`.decision`   the rate decision at one look: trimmed fit, verdict, the exact-averaging companion
* :mod:`.speedup`    linear speedup: orchestrates the sweep, the looks of the design and the decision
* :mod:`.calibration` the decision procedure on planted data: its error rates, coverage and seeds
* :mod:`.consensus`  consensus error against the mixing matrix: the lemma's labels, its
                     tightness in rho, the whole-spectrum predictor
* :mod:`.transient_law` the transient K0 ~ N^a (1-rho)^-q measured, held out, tabulated
* :mod:`.boundcheck` the symbolic bound against measurement: holds / violated / out of scope, and its shape
* :mod:`.laws`       power-law fits with intervals, and the shape verdict of a bound
* :mod:`.regime`     what delays the asymptotic regime: step constant, plateau, floor, scales
* :mod:`.study_file` what a study asked, written beside its cache
* :mod:`.storage`    results back from disk: :func:`load` re-analyses a finished study from its cache

Each experiment is a frozen *study* (what to run), a ``run_*`` function that
runs the cached sweep, an ``analyse_*`` function that only reads records, and
a frozen *result* with ``as_dict()``. A study run with an output folder is
recorded there, and ``load(out)`` gives its result again, simulating nothing.
"""
from .cells import (
                    CELL_DEFAULTS,
                    OPTIONAL_KEYS,
                    PROBLEM_KEYS,
                    TASK_VERSION,
                    build_mixing,
                    cell_cost,
                    cell_params,
                    cell_problem,
                    cell_rho,
                    cell_steps,
                    cells_memory,
                    check_cells,
                    checked_rho,
                    run_cell,
                    simulate_cell,
                    validate_result,
)
from .storage import STUDY_KINDS, load, load_speedup

__all__ = ["CELL_DEFAULTS", "OPTIONAL_KEYS", "PROBLEM_KEYS", "TASK_VERSION", "build_mixing", "cell_cost",
           "cell_params", "cell_problem", "cell_rho", "cell_steps", "cells_memory", "check_cells", "checked_rho",
           "run_cell",
           "simulate_cell", "validate_result", "STUDY_KINDS", "load", "load_speedup"]
