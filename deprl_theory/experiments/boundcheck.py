"""Does the bound hold, and how loose is it? Symbolic analysis plus a numeric check against measurement.

:func:`symbolic_analysis` gives the bound's terms with their exponents in N
and K under the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau,
a = 1/N), the leading term, the transient K0 and the step-size conditions.
:func:`run_boundcheck` runs a small sweep, evaluates the bound with constants
estimated from the very problem instances that ran
(:mod:`deprl_theory.constants`) and the graph's rho, and compares it with the
measured time average at every (N, K).

The default template bounds (1/K) sum_k (a H_k + R_k) with a = alpha tau / beta;
the measured counterpart is Rbar + a Hbar with the run's a, which equals
Gbar = mean(R + H/N) exactly under a = 1/N.

A user bound (:func:`bound_from_spec`, a JSON file) is ``{"terms": {name:
expr}, "conditions": [...], "consensus_terms": [...]}`` with optional
``"quantity"`` (text), ``"measured"`` (one of G, R, H, aH+R; default G) and
``"constants"`` (values overriding the estimates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from ..bound import (Bound, default_bound, evaluate, evaluate_expr, leading_term, step_size_conditions, substitute,
                     term_exponents, theory_step_rule, transient_K0)
from ..constants import estimate_constants
from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, cell_problem, check_cells, simulate_cell, validate_result

__all__ = ["MEASURED", "KNOWN_CONSTANTS", "BoundSpec", "bound_from_spec", "SymbolicAnalysis", "symbolic_analysis",
           "BoundCheckStudy", "BoundPoint", "BoundCheckResult", "analyse_boundcheck", "run_boundcheck",
           "missing_constants"]

#: what a bound may be compared with
MEASURED = ("G", "R", "H", "aH+R")
#: the symbols the check gives values to (estimated constants, the run's settings and the grid)
KNOWN_CONSTANTS = ("L_theta", "L_phi", "L_thetaphi", "sigma_theta", "sigma_phi", "delta", "Delta", "c", "tau",
                   "rho", "N", "K")


@dataclass(frozen=True)
class BoundSpec:
    """A bound with what it is compared with and the constants its file fixes."""

    bound: Bound
    measured: str = "G"
    constants: dict[str, float] = field(default_factory=dict)
    user: bool = True


def bound_from_spec(spec: Any) -> BoundSpec:
    """A :class:`BoundSpec` from the parsed JSON of a bound file.

    Raises
    ------
    ValueError
        Naming what is wrong: not ``{"terms": {...}}``, a term that is not a
        string formula, an unknown ``measured``, a constant that is not a
        finite number, or any formula the safe parser rejects.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("terms"), dict) or not spec["terms"]:
        raise ValueError('a bound file needs {"terms": {name: expression, ...}}')
    measured = spec.get("measured", "G")
    if measured not in MEASURED:
        raise ValueError(f"'measured' must be one of {', '.join(MEASURED)}, got {measured!r}")
    consts = spec.get("constants", {}) or {}
    if not isinstance(consts, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in consts.values()):
        raise ValueError("'constants' must map names to numbers")
    for name, value in consts.items():
        if not math.isfinite(value):
            raise ValueError(f"constant {name!r} = {value!r} is not a finite number")
    if not all(isinstance(t, (str, int, float)) and not isinstance(t, bool) for t in spec["terms"].values()):
        raise ValueError('every term must be a formula written as a string, such as "A/sqrt(N*K)"')
    conditions = spec.get("conditions")
    if conditions is not None and not (isinstance(conditions, list) and all(isinstance(c, str) for c in conditions)):
        raise ValueError("'conditions' must be a list of strings such as \"beta <= 1/L_phi\"")
    bound = Bound.from_strings(spec["terms"], conditions,
                               quantity=str(spec.get("quantity", "user-supplied bounded quantity")),
                               consensus_terms=spec.get("consensus_terms"))
    return BoundSpec(bound, measured, {k: float(v) for k, v in consts.items()})


def default_spec() -> BoundSpec:
    """The template of THEORY section 5, compared with Rbar + a Hbar (= Gbar under a = 1/N)."""
    return BoundSpec(default_bound(), "aH+R", {}, user=False)


@dataclass(frozen=True)
class SymbolicAnalysis:
    """The bound under the theory's step sizes: exponents, leading term, transient, conditions."""

    bound: Bound
    substituted: Bound
    rule: dict[str, str]
    terms: dict[str, dict[str, Any]]
    leading: dict[str, Any]
    exponents: dict[str, str | None]
    K0: str
    K0_large_N: str | None
    K0_N_exponent: str | None
    K0_expr: sympy.Expr | None
    conditions: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"quantity": self.bound.quantity, "rule": self.rule, "terms": self.terms, "leading": self.leading,
                "exponents": self.exponents, "K0": self.K0, "K0_large_N": self.K0_large_N,
                "K0_N_exponent": self.K0_N_exponent, "conditions": self.conditions}


def symbolic_analysis(bound: Bound, head_rule: str = "1/N") -> SymbolicAnalysis:
    """Exponents of every term, the leading term, K0 and the conditions on K under the theory rule."""
    rule = theory_step_rule(head_rule)
    sub = substitute(bound, rule)
    exps = term_exponents(sub)
    terms = {n: {"expr": str(bound.terms[n]), "substituted": str(sub.terms[n]),
                 "exponents": {"N": str(e["N"]), "K": str(e["K"])}} for n, e in exps.items()}
    try:
        lead = leading_term(sub)
        leading = {"names": list(lead.names), "expr": str(lead.expr), "rate_setting": list(lead.rate_setting)}
        exponents = {"N": str(lead.exponents["N"]), "K": str(lead.exponents["K"])}
    except ValueError as exc:
        leading, exponents = {"names": [], "expr": None, "error": str(exc)}, {"N": None, "K": None}
    try:
        tr = transient_K0(bound, rule)
        K0, K0_large, K0_exp, K0_expr = (str(tr.K0), None if tr.K0_large_N is None else str(tr.K0_large_N),
                                         str(tr.N_exponent), tr.K0)
    except (ValueError, NotImplementedError) as exc:
        K0, K0_large, K0_exp, K0_expr = f"none: {str(exc).splitlines()[0]}", None, None, None
    return SymbolicAnalysis(bound=bound, substituted=sub, rule={k: str(v) for k, v in rule.items()}, terms=terms,
                            leading=leading, exponents=exponents, K0=K0, K0_large_N=K0_large, K0_N_exponent=K0_exp,
                            K0_expr=K0_expr, conditions=[str(c) for c in step_size_conditions(bound, rule)])


def missing_constants(analysis: SymbolicAnalysis, spec: BoundSpec) -> list[str]:
    """Symbols the numeric check would need and nobody provides."""
    known = set(KNOWN_CONSTANTS) | set(spec.constants)
    return sorted(s.name for s in analysis.substituted.free_symbols if s.name not in known)


@dataclass(frozen=True)
class BoundCheckStudy:
    """The grid of the numeric check."""

    n: tuple[int, ...] = (4, 8, 16)
    rounds: tuple[int, ...] = (250, 500, 1000, 2000)
    seeds: int = 3
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", tuple(int(n) for n in self.n))
        object.__setattr__(self, "rounds", tuple(sorted({int(k) for k in self.rounds})))
        object.__setattr__(self, "cell", dict(self.cell))
        if any(n < 2 for n in self.n):
            raise ValueError(f"worker counts must be at least 2, got {list(self.n)}")
        if any(k < 1 for k in self.rounds):
            raise ValueError(f"rounds must be positive, got {list(self.rounds)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        cell_params(**self.cell)

    def cells(self) -> list[dict]:
        return [cell_params(N=n, K=k, **self.cell) for n in self.n for k in self.rounds]

    def check(self) -> None:
        """Build and check (A4) the W of every N before anything runs; ValueError naming the first that fails."""
        check_cells(self.cells(), self.base_seed)

    def settings(self) -> dict[str, Any]:
        p = cell_params(**self.cell)
        return {"problem": p["problem"], "n": list(self.n), "rounds": list(self.rounds), "topology": p["topology"],
                "seeds": list(range(self.seeds)), "base_seed": self.base_seed, "c": p["c"], "tau": p["tau"]}


@dataclass(frozen=True)
class BoundPoint:
    """Bound and measurement at one (N, K)."""

    N: int
    K: int
    rho: float
    a: float
    bound: float
    terms: dict[str, float]
    measured_seeds: list[float]
    conditions_hold: bool
    K0: float | None

    @property
    def measured_mean(self) -> float:
        return float(np.mean(self.measured_seeds))

    @property
    def measured_max(self) -> float:
        return float(np.max(self.measured_seeds))

    @property
    def ratio(self) -> float:
        return self.bound / self.measured_mean

    @property
    def holds(self) -> bool:
        return bool(self.bound >= self.measured_max)

    def as_dict(self) -> dict[str, Any]:
        return {"N": self.N, "K": self.K, "rho": self.rho, "a": self.a, "bound": self.bound, "terms": self.terms,
                "measured_mean": self.measured_mean, "measured_max": self.measured_max,
                "measured_seeds": self.measured_seeds, "ratio": self.ratio, "holds": self.holds,
                "conditions_hold": self.conditions_hold, "K0": self.K0}


@dataclass(frozen=True, eq=False)
class BoundCheckResult:
    """The numeric check: every point, whether the bound holds, and how loose it is."""

    study: BoundCheckStudy
    spec: BoundSpec
    analysis: SymbolicAnalysis
    points: list[BoundPoint]
    constants: dict[str, dict[str, float]]
    constants_how: dict[str, str]
    sweep: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return all(p.holds for p in self.points)

    @property
    def measured_quantity(self) -> str:
        m = self.spec.measured
        return "Rbar + a Hbar (= Gbar, a = 1/N)" if m == "aH+R" else m + "bar"

    def tightness(self) -> dict[str, float]:
        ratios = np.array([p.ratio for p in self.points])
        return {"min": float(ratios.min()), "median": float(np.median(ratios)), "max": float(ratios.max())}

    def as_dict(self) -> dict[str, Any]:
        note = ("the template bounds (1/K) sum (a H_k + R_k); the measured counterpart is Rbar + a Hbar with the "
                "run's a = alpha tau / beta, which is exactly Gbar = mean(R + H/N) under a = 1/N"
                if not self.spec.user else f"user bound compared with the measured {self.spec.measured}")
        return {"holds": self.holds, "tightness": self.tightness(), "measured_quantity": self.measured_quantity,
                "note": note, "points": [p.as_dict() for p in self.points], "constants": self.constants,
                "constants_how": self.constants_how, "settings": self.study.settings(), "sweep": self.sweep}


def _condition_holds(cond, values: Mapping[str, Any], K: float) -> bool:
    """Numeric truth of one condition (rho = 0 makes some sides infinite: that is fine)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lhs = evaluate_expr(cond.lhs, values, K=K)
        rhs = evaluate_expr(cond.rhs, values, K=K)
    ops = {"<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater}
    return bool(np.all(ops[cond.rel_op](lhs, rhs)))


def _measured(result: Mapping[str, Any], name: str, a: float) -> float:
    if result["diverged"]:
        return float("inf")
    av = result["averages"]
    return {"G": av["G"], "R": av["R"], "H": av["H"], "aH+R": av["R"] + a * av["H"]}[name]


def analyse_boundcheck(study: BoundCheckStudy, spec: BoundSpec, analysis: SymbolicAnalysis,
                       records: Sequence[Mapping[str, Any]], constants: Mapping[int, Any],
                       sweep: Mapping[str, Any] | None = None) -> BoundCheckResult:
    """Evaluate the bound at every (N, K) of a finished sweep and compare it with the measurement.

    ``constants`` maps N to the :class:`~deprl_theory.constants.Constants` of that N's problem.
    """
    by_cell: dict[tuple, list] = {}
    for rec in records:
        by_cell.setdefault((int(rec["params"]["N"]), int(rec["params"]["K"])), []).append(rec["result"])
    p = cell_params(**study.cell)
    sub, points, table = analysis.substituted, [], {}
    for n in study.n:
        consts = {**constants[n].symbols(), **spec.constants}
        table[str(n)] = consts
        for k in study.rounds:
            res = by_cell[(n, k)]
            rho = float(res[0]["rho"])
            a = res[0]["alpha"] * p["tau"] / res[0]["beta"]
            vals = {**consts, "c": p["c"], "tau": p["tau"], "rho": rho, "N": n}
            terms = evaluate(sub, vals, K=np.array([float(k)]))
            points.append(BoundPoint(
                N=n, K=k, rho=rho, a=a, bound=float(terms["total"][0]),
                terms={t: float(v[0]) for t, v in terms.items() if t != "total"},
                measured_seeds=[_measured(r, spec.measured, a) for r in res],
                conditions_hold=all(_condition_holds(c, vals, float(k)) for c in sub.conditions),
                K0=None if analysis.K0_expr is None else float(evaluate_expr(analysis.K0_expr, vals))))
    how = next(iter(constants.values())).how if constants else {}
    return BoundCheckResult(study=study, spec=spec, analysis=analysis, points=points, constants=table,
                            constants_how=dict(how), sweep=dict(sweep or {}))


def run_boundcheck(study: BoundCheckStudy, spec: BoundSpec, analysis: SymbolicAnalysis,
                   options: SweepOptions = SweepOptions()) -> tuple[BoundCheckResult, Any]:
    """Run the sweep of ``study`` (cached), estimate the constants per N and compare bound with measurement."""
    cells = study.cells()
    seeds = list(range(study.seeds))
    sweep = run_sweep(simulate_cell, cells, seeds, base_seed=study.base_seed, task_version=TASK_VERSION,
                      cost=cell_cost, validate=validate_result, **options.kwargs())
    constants = {}
    for i, n in enumerate(study.n):
        constants[n] = estimate_constants(cell_problem(cells[i * len(study.rounds)], seeds, study.base_seed),
                                          seed=study.base_seed)
    return analyse_boundcheck(study, spec, analysis, sweep.records, constants, sweep.info()), sweep
