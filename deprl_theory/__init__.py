"""deprl-theory: put DePRL's linear-speedup theorem to the test.

Layers (one module each):

* :mod:`~deprl_theory.graphs`      topologies, mixing matrices, spectral gap, A4 checks
* :mod:`~deprl_theory.problems`    synthetic linear / non-linear problems with ground truth
* :mod:`~deprl_theory.engine`      vectorized DePRL, D-PSGD, local-only, centralized
* :mod:`~deprl_theory.inference`   rate exponents with t intervals, group-sequential designs, verdicts
* :mod:`~deprl_theory.bound`       the convergence bound as editable sympy terms
* :mod:`~deprl_theory.constants`   constants of the bound estimated on a problem
* :mod:`~deprl_theory.expressions` safe parsing of user formulas (no code is evaluated)
* :mod:`~deprl_theory.sweep`       cached, resumable sweeps (serial, processes, Dask)
* :mod:`~deprl_theory.experiments` the verifications: speedup, consensus, bound check, transients
* :mod:`~deprl_theory.plotting`    publication figures (draws result objects, computes nothing)
"""
from ._rng import SeedLike, as_generator, derive_seed
from .engine import ALGORITHMS, RunResult, StepSizes, run, step_sizes, theory_step_sizes
from .graphs import (
    TOPOLOGIES,
    WEIGHT_RULES,
    MixingMatrixError,
    MixingReport,
    adjacency,
    check_mixing,
    graph_adjacency,
    lazy,
    max_degree_weights,
    metropolis_weights,
    mixing_matrix,
    mixing_rate,
    mixing_report,
    spectral_gap,
    uniform_weights,
)
from .inference import ConfidenceInterval, RateFit, Verdict, fit_rate, fit_slope, speedup_verdict
from .problems import Problem, make_problem, population_metrics
from .sweep import SweepOptions, SweepResult, cell_seed, run_sweep

__version__ = "0.1.0"

__all__ = [
    "SeedLike", "as_generator", "derive_seed",
    "ALGORITHMS", "RunResult", "StepSizes", "run", "step_sizes", "theory_step_sizes",
    "TOPOLOGIES", "WEIGHT_RULES", "MixingMatrixError", "MixingReport", "adjacency", "check_mixing",
    "graph_adjacency", "lazy", "max_degree_weights", "metropolis_weights", "mixing_matrix", "mixing_rate",
    "mixing_report", "spectral_gap", "uniform_weights",
    "Problem", "make_problem", "population_metrics",
    "ConfidenceInterval", "RateFit", "Verdict", "fit_rate", "fit_slope", "speedup_verdict",
    "SweepOptions", "SweepResult", "cell_seed", "run_sweep",
]
