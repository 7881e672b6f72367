"""Statistical inference on rate exponents: the fit, the group-sequential design, the verdict.

* :mod:`.fit`         power-law fits with t intervals over per-seed fits (Fieller for s = e_N / e_K)
* :mod:`.design`      pre-registered looks and their boundaries (O'Brien-Fleming, Pocock)
* :mod:`.sequential`  the loop that analyses at each look and stops at the first decisive verdict
* :mod:`.verdict`     the verdict rules read from a fit's CIs
"""
from .design import (
                     DEFAULT_DESIGN,
                     DEFAULT_LOOKS,
                     DESIGNS,
                     GroupSequentialDesign,
                     crossing_probability,
                     geometric_looks,
                     group_sequential_design,
)
from .fit import CI_METHOD, CI_METHOD_SKEW, SKEW_MAX_LEVEL, ConfidenceInterval, RateFit, SlopeFit, fit_rate, fit_slope
from .sequential import FIXED_LEVEL, SequentialOutcome, run_sequential
from .verdict import DEFAULT_MARGIN, VERDICTS, Verdict, after_transient, speedup_verdict

__all__ = [
    "DEFAULT_DESIGN", "DEFAULT_LOOKS", "DESIGNS", "GroupSequentialDesign", "crossing_probability", "geometric_looks",
    "group_sequential_design", "CI_METHOD", "CI_METHOD_SKEW", "SKEW_MAX_LEVEL", "ConfidenceInterval", "RateFit",
    "SlopeFit", "fit_rate", "fit_slope",
    "FIXED_LEVEL", "SequentialOutcome", "run_sequential", "DEFAULT_MARGIN", "VERDICTS", "Verdict",
    "after_transient", "speedup_verdict",
]
