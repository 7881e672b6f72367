"""Rate exponents and verdicts: the names of :mod:`deprl_theory.inference`, kept under their first home.

New code imports from :mod:`deprl_theory.inference` (fit, design, verdict).
"""
from .inference.fit import CI_METHOD, ConfidenceInterval, RateFit, SlopeFit, fit_rate, fit_slope
from .inference.verdict import DEFAULT_MARGIN, VERDICTS, Verdict, speedup_verdict

__all__ = ["ConfidenceInterval", "RateFit", "Verdict", "fit_rate", "speedup_verdict", "fit_slope", "SlopeFit",
           "VERDICTS", "CI_METHOD", "DEFAULT_MARGIN"]
