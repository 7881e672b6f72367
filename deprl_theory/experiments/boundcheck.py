"""Does the bound hold, and how loose is it? Symbolic analysis plus a numeric check against measurement.

:func:`symbolic_analysis` gives the bound's terms with their exponents in N
and K under the theory's step sizes (beta = c sqrt(N/K), alpha = a beta / tau,
a = 1/N), the leading term, the transient K0 and the step-size conditions.
:func:`run_boundcheck` runs a small sweep, evaluates the bound with constants
estimated from the very problem instances that ran
(:mod:`deprl_theory.constants`), the graph's rho and the step sizes each run
actually used (a capped beta included), and compares it with the measured
time average at every (N, K, rho).

Two separate answers (:class:`BoundCheckResult`):

* **Does it hold?** A bound promises nothing where its own conditions fail.
  Each point is ``out of scope`` (naming the condition that fails, with
  numbers), ``holds`` (measured seed mean <= bound: the bound is on an
  expectation) or ``violated``. The bound ``holds`` if no point in scope is
  violated, ``violated`` otherwise, and says ``no point in scope`` when none is.
* **Does it have the right shape?** The exponents of ``measured / bound`` in
  N, K and ``1/(1 - rho)``, fitted over every point (and over the points in
  scope alone, where other terms may dominate) with intervals over seeds
  (:func:`~deprl_theory.experiments.laws.fit_power_law`), each read as
  ``tight``, ``loose``, ``optimistic`` or ``inconclusive``
  (:func:`~deprl_theory.experiments.laws.shape_verdict`). A bound whose
  exponents are right has a flat ratio.

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

from ..bound import (
    Bound,
    default_bound,
    evaluate,
    evaluate_expr,
    leading_term,
    step_size_conditions,
    substitute,
    term_exponents,
    theory_step_rule,
    transient_K0,
)
from ..constants import estimate_constants
from ..rates import DEFAULT_MARGIN
from ..sweep import SweepOptions, run_sweep
from .cells import TASK_VERSION, cell_cost, cell_params, cell_problem, check_cells, simulate_cell, validate_result
from .laws import PowerLawFit, ShapeVerdict, fit_power_law, shape_verdict

__all__ = ["MEASURED", "KNOWN_CONSTANTS", "POINT_LABELS", "SHAPE_AXES", "BoundSpec", "bound_from_spec",
           "default_spec", "SymbolicAnalysis", "symbolic_analysis", "BoundCheckStudy", "BoundPoint",
           "BoundCheckResult", "analyse_boundcheck", "run_boundcheck", "missing_constants", "condition_failures",
           "point_label", "bound_label", "shape_of", "shape_summary"]

#: what a bound may be compared with
MEASURED = ("G", "R", "H", "aH+R")
#: the symbols the check gives values to (estimated constants, the run's settings and the grid)
KNOWN_CONSTANTS = ("L_theta", "L_phi", "L_thetaphi", "sigma_theta", "sigma_phi", "delta", "Delta", "c", "tau",
                   "rho", "N", "K", "beta", "alpha", "a")


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
    """The template of docs/theory.md, section 5, compared with Rbar + a Hbar (= Gbar under a = 1/N)."""
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
    K0_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"quantity": self.bound.quantity, "rule": self.rule, "terms": self.terms, "leading": self.leading,
                "exponents": self.exponents, "K0": self.K0, "K0_large_N": self.K0_large_N,
                "K0_N_exponent": self.K0_N_exponent, "K0_note": self.K0_note, "conditions": self.conditions}


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
                                         None if tr.N_exponent is None else str(tr.N_exponent), tr.K0)
        K0_note = tr.note
    except (ValueError, NotImplementedError) as exc:
        K0, K0_large, K0_exp, K0_expr = f"none: {str(exc).splitlines()[0]}", None, None, None
        K0_note = ""
    return SymbolicAnalysis(bound=bound, substituted=sub, rule={k: str(v) for k, v in rule.items()}, terms=terms,
                            leading=leading, exponents=exponents, K0=K0, K0_large_N=K0_large, K0_N_exponent=K0_exp,
                            K0_expr=K0_expr, conditions=[str(c) for c in step_size_conditions(bound, rule)],
                            K0_note=K0_note)


def missing_constants(analysis: SymbolicAnalysis, spec: BoundSpec) -> list[str]:
    """Symbols the numeric check would need (in the terms or the conditions) and nobody provides."""
    known = set(KNOWN_CONSTANTS) | set(spec.constants)
    needed = set(analysis.bound.free_symbols).union(*(c.free_symbols for c in analysis.bound.conditions))
    return sorted(s.name for s in needed if s.name not in known)


@dataclass(frozen=True)
class BoundCheckStudy:
    """The grid of the numeric check: every N, K and (on the exact-gap family) spectral gap.

    The default varies rho independently of N, on the exact-gap family
    ``W = (1 - g) I + g 11^T / N``, so that the shape of the bound can be read
    in N, in K and in rho; g = 1 (exact averaging) adds points where the
    consensus term vanishes and the leading terms are what is compared. A
    named ``topology`` ties rho to N (one graph per N); ``gaps`` then play no
    part.
    """

    n: tuple[int, ...] = (4, 8, 16)
    rounds: tuple[int, ...] = (250, 500, 1000, 2000)
    gaps: tuple[float, ...] = (1.0, 0.5, 0.2, 0.05)
    topology: str = "exact_gap"
    seeds: int = 4
    base_seed: int = 0
    cell: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", tuple(int(n) for n in self.n))
        object.__setattr__(self, "rounds", tuple(sorted({int(k) for k in self.rounds})))
        object.__setattr__(self, "gaps", tuple(float(g) for g in self.gaps))
        object.__setattr__(self, "cell", dict(self.cell))
        if any(n < 2 for n in self.n):
            raise ValueError(f"worker counts must be at least 2, got {list(self.n)}")
        if any(k < 1 for k in self.rounds):
            raise ValueError(f"rounds must be positive, got {list(self.rounds)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if "topology" in self.cell or "gap" in self.cell:
            raise ValueError("give the graph as BoundCheckStudy(topology=..., gaps=...), not inside cell")
        if self.topology == "exact_gap":
            bad = [g for g in self.gaps if not 0 < g <= 1]
            if not self.gaps or bad or len(set(self.gaps)) != len(self.gaps):
                raise ValueError(f"the exact_gap family needs distinct gaps in (0, 1], got {list(self.gaps)}")
        cell_params(topology=self.topology, **self.cell)
        self.check()  # graphs and problems are built and checked here, with the CLI's checks

    @property
    def graph_gaps(self) -> tuple[float | None, ...]:
        """The gaps the grid runs (``(None,)`` for a named topology)."""
        return self.gaps if self.topology == "exact_gap" else (None,)

    def cells(self) -> list[dict]:
        return [cell_params(N=n, K=k, topology=self.topology, gap=g, **self.cell)
                for n in self.n for g in self.graph_gaps for k in self.rounds]

    def check(self) -> None:
        """Build and check (A4) the W of every N before anything runs; ValueError naming the first that fails."""
        check_cells(self.cells(), self.base_seed)

    def settings(self) -> dict[str, Any]:
        p = cell_params(topology=self.topology, **self.cell)
        return {"problem": p["problem"], "n": list(self.n), "rounds": list(self.rounds), "topology": self.topology,
                "gaps": list(self.gaps) if self.topology == "exact_gap" else None,
                "seeds": list(range(self.seeds)), "base_seed": self.base_seed, "c": p["c"], "tau": p["tau"],
                "head_rule": p["head_rule"], "beta_max": p["beta_max"]}


#: what a point of the numeric check can be
POINT_LABELS = ("holds", "violated", "out of scope")


def condition_failures(bound: Bound, values: Mapping[str, Any], K: float) -> list[str]:
    """The bound's conditions that fail at one point, each with both sides' numbers.

    ``values`` must hold the step sizes the run actually used (``beta``,
    ``alpha``, ``a``: a capped beta is not ``c sqrt(N/K)``), rho, N and the
    constants. rho = 0 makes some sides infinite, which is fine.
    """
    ops = {"<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater}
    failed = []
    for cond in bound.conditions:
        with np.errstate(divide="ignore", invalid="ignore"):
            lhs = float(evaluate_expr(cond.lhs, values, K=K))
            rhs = float(evaluate_expr(cond.rhs, values, K=K))
        if not bool(ops[cond.rel_op](lhs, rhs)):
            failed.append(f"{cond}: {lhs:.3g} {cond.rel_op} {rhs:.3g} is false")
    return failed


def point_label(bound: float, measured_mean: float, failures: Sequence[str], *, atol: float = 0.0) -> str:
    """``out of scope`` where a condition fails, else ``holds`` (mean <= bound + atol) or ``violated``.

    The bound is on an expectation, so the seed mean is its estimate; a
    single seed above the bound does not violate it. ``atol`` is for
    quantities that are exactly 0 in exact arithmetic (the consensus error of
    exact averaging is rounding, ~1e-31).
    """
    if failures:
        return "out of scope"
    return "holds" if measured_mean <= bound + atol else "violated"


@dataclass(frozen=True)
class BoundPoint:
    """Bound and measurement at one (N, K, rho), with the step sizes that ran and the conditions that fail."""

    N: int
    K: int
    rho: float
    gap: float | None
    a: float
    beta: float
    alpha: float
    capped: tuple[str, ...]
    bound: float
    terms: dict[str, float]
    measured_seeds: list[float]
    failures: tuple[str, ...]
    K0: float | None

    @property
    def measured_mean(self) -> float:
        return float(np.mean(self.measured_seeds))

    @property
    def measured_max(self) -> float:
        return float(np.max(self.measured_seeds))

    @property
    def ratio(self) -> float:
        """bound / measured mean: how many times the bound over-states."""
        return self.bound / self.measured_mean

    @property
    def label(self) -> str:
        return point_label(self.bound, self.measured_mean, self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {"N": self.N, "K": self.K, "rho": self.rho, "gap": self.gap, "a": self.a, "beta": self.beta,
                "alpha": self.alpha, "capped": list(self.capped), "bound": self.bound, "terms": self.terms,
                "measured_mean": self.measured_mean, "measured_max": self.measured_max,
                "measured_seeds": self.measured_seeds, "ratio": self.ratio, "label": self.label,
                "in_scope": not self.failures, "failing_conditions": list(self.failures), "K0": self.K0}


def bound_label(labels: Sequence[str]) -> tuple[str, str]:
    """``("holds" | "violated" | "no point in scope", reason)`` over the points' labels."""
    n_in = sum(lab != "out of scope" for lab in labels)
    n_out = len(labels) - n_in
    bad = sum(lab == "violated" for lab in labels)
    outside = f"; {n_out} of {len(labels)} points out of scope (a condition fails), not counted" if n_out else ""
    if n_in == 0:
        return "no point in scope", (f"the bound's conditions fail at all {len(labels)} points: "
                                     "it promises nothing there")
    if bad:
        return "violated", f"the measured mean exceeds the bound at {bad} of {n_in} points in scope{outside}"
    return "holds", f"the bound is above the measured mean at all {n_in} points in scope{outside}"


#: the variables of the shape fit, and the axis each is taken along
SHAPE_AXES = {"N": "N", "K": "K", "rho": "1/(1-rho)"}


def shape_of(points: Sequence[BoundPoint], *, margin: float = DEFAULT_MARGIN
             ) -> tuple[PowerLawFit | None, dict[str, ShapeVerdict], str]:
    """Exponents of measured / bound in N, K and 1/(1-rho) (per-seed fits), and a word for each.

    The shape is a property of the bound's formula, so every point given
    enters, in scope or not (:func:`analyse_boundcheck` also fits the points
    in scope alone). Points with a diverged seed are left out.
    """
    use = [p for p in points if p.bound > 0 and np.all(np.isfinite(p.measured_seeds))
           and np.all(np.asarray(p.measured_seeds) > 0)]
    if not use:
        return None, {}, "no point with a finite measurement and a positive bound"
    S = min(len(p.measured_seeds) for p in use)
    ratio = np.array([np.asarray(p.measured_seeds[:S]) / p.bound for p in use])
    factors = {"N": [p.N for p in use], "K": [p.K for p in use], "rho": [1.0 / max(1.0 - p.rho, 1e-300) for p in use]}
    try:
        fit = fit_power_law(factors, ratio)
    except ValueError as exc:
        return None, {}, f"no shape fit: {exc}"
    verdicts = {v: shape_verdict(v, fit.exponents.get(v), fit.cis.get(v), axis=SHAPE_AXES[v], margin=margin)
                for v in SHAPE_AXES}
    return fit, verdicts, f"{fit.n_points} points, {fit.n_seeds} seeds, {fit.method}"


@dataclass(frozen=True, eq=False)
class BoundCheckResult:
    """The numeric check: every point labelled, the overall label, and the shape of the bound."""

    study: BoundCheckStudy
    spec: BoundSpec
    analysis: SymbolicAnalysis
    points: list[BoundPoint]
    constants: dict[str, dict[str, float]]
    constants_how: dict[str, str]
    shape_fit: PowerLawFit | None
    shape: dict[str, ShapeVerdict]
    shape_note: str
    shape_in_scope: dict[str, ShapeVerdict] = field(default_factory=dict)
    shape_in_scope_note: str = ""
    sweep: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return bound_label([p.label for p in self.points])[0]

    @property
    def measured_quantity(self) -> str:
        m = self.spec.measured
        return "Rbar + a Hbar (= Gbar, a = 1/N)" if m == "aH+R" else m + "bar"

    def scope(self) -> dict[str, Any]:
        """How many points hold, are violated or out of scope, and which conditions fail how often."""
        counts = {lab: sum(p.label == lab for p in self.points) for lab in POINT_LABELS}
        failing: dict[str, int] = {}
        for p in self.points:
            for f in p.failures:
                key = f.split(":")[0]
                failing[key] = failing.get(key, 0) + 1
        return {"points": len(self.points), "in_scope": counts["holds"] + counts["violated"],
                "holds": counts["holds"], "violated": counts["violated"], "out_of_scope": counts["out of scope"],
                "failing_conditions": failing}

    def tightness(self) -> dict[str, dict[str, float] | None]:
        """bound / measured: min, median, max over the points in scope and over all points."""
        def summary(pts):
            if not pts:
                return None
            r = np.array([p.ratio for p in pts])
            return {"min": float(r.min()), "median": float(np.median(r)), "max": float(r.max())}
        return {"in_scope": summary([p for p in self.points if not p.failures]), "all": summary(self.points)}

    def dominant_terms(self) -> dict[str, int]:
        """How often each term is the bound's largest: the shape on the grid is that term's shape."""
        out: dict[str, int] = {}
        for p in self.points:
            top = max(p.terms, key=p.terms.get)
            out[top] = out.get(top, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        note = ("the template bounds (1/K) sum (a H_k + R_k); the measured counterpart is Rbar + a Hbar with the "
                "run's a = alpha tau / beta, which is exactly Gbar = mean(R + H/N) under a = 1/N"
                if not self.spec.user else f"user bound compared with the measured {self.spec.measured}")
        label, reason = bound_label([p.label for p in self.points])
        out = {"label": label, "label_reason": reason, "scope": self.scope(), "tightness": self.tightness(),
                "dominant_terms": self.dominant_terms(),
                "shape": {v: s.as_dict() for v, s in self.shape.items()},
                "shape_fit": None if self.shape_fit is None else self.shape_fit.as_dict(),
                "shape_note": self.shape_note,
                "shape_in_scope": {v: s.as_dict() for v, s in self.shape_in_scope.items()},
                "shape_in_scope_note": self.shape_in_scope_note, "measured_quantity": self.measured_quantity,
                "note": note + "; the bound and its conditions are evaluated with the step sizes each run used",
                "points": [p.as_dict() for p in self.points], "constants": self.constants,
                "constants_how": self.constants_how, "settings": self.study.settings(), "sweep": self.sweep}
        out["shape_summary"] = shape_summary(out)
        return out


def shape_summary(summary: Mapping[str, Any]) -> str:
    """The one sentence on the bound's shape, with its scope, that every output quotes (CLI, report, README).

    The conclusion is the shape over the points in scope (where the bound's
    conditions hold, the only points the theorem speaks of); the shape over
    all points follows, labelled as such, when it reads differently.
    """
    sc = summary["scope"]

    def words(shape: Mapping[str, Any]) -> str:
        parts = []
        for v in shape.values():
            ci = v.get("ci")
            parts.append(v["label"] + ("" if v.get("exponent") is None else
                                       f" ({v['exponent']:+.3f}" + ("" if ci is None else
                                                                    f" [{ci[0]:+.3f}, {ci[1]:+.3f}]") + ")"))
        return ", ".join(parts)

    inside, everywhere = summary.get("shape_in_scope") or {}, summary.get("shape") or {}
    head = (f"shape over the {sc['in_scope']} points in scope: {words(inside)}" if inside else
            f"shape over the points in scope: not fitted ({summary.get('shape_in_scope_note') or 'no points'})")
    same = [v["label"] for v in inside.values()] == [v["label"] for v in everywhere.values()]
    if not everywhere or same or sc["out_of_scope"] == 0:
        return head
    return (f"{head}; over all {sc['points']} points, including the {sc['out_of_scope']} out of scope where the "
            f"theorem claims nothing: {words(everywhere)}")


def _measured(result: Mapping[str, Any], name: str, a: float) -> float:
    if result["diverged"]:
        return float("inf")
    av = result["averages"]
    return {"G": av["G"], "R": av["R"], "H": av["H"], "aH+R": av["R"] + a * av["H"]}[name]


def _point(analysis: SymbolicAnalysis, spec: BoundSpec, consts: Mapping[str, float], results: Sequence[Mapping],
           n: int, k: int, gap: float | None, tau: int, c: float) -> BoundPoint:
    first = results[0]
    rho, beta, alpha = float(first["rho"]), float(first["beta"]), float(first["alpha"])
    a = alpha * tau / beta
    vals = {**consts, "c": c, "tau": tau, "rho": rho, "N": n, "beta": beta, "alpha": alpha, "a": a}
    terms = evaluate(analysis.bound, vals, K=float(k))
    K0 = None if analysis.K0_expr is None else float(evaluate_expr(analysis.K0_expr, vals))
    return BoundPoint(N=n, K=k, rho=rho, gap=gap, a=a, beta=beta, alpha=alpha, capped=tuple(first.get("capped", ())),
                      bound=float(terms["total"]), terms={t: float(v) for t, v in terms.items() if t != "total"},
                      measured_seeds=[_measured(r, spec.measured, a) for r in results],
                      failures=tuple(condition_failures(analysis.bound, vals, float(k))), K0=K0)


def analyse_boundcheck(study: BoundCheckStudy, spec: BoundSpec, analysis: SymbolicAnalysis,
                       records: Sequence[Mapping[str, Any]], constants: Mapping[int, Mapping[str, float]], *,
                       constants_how: Mapping[str, str] | None = None, sweep: Mapping[str, Any] | None = None,
                       margin: float = DEFAULT_MARGIN) -> BoundCheckResult:
    """Label every point of a finished sweep and read the bound's shape (no simulation).

    The bound (``analysis.bound``, before any step-size rule) and its
    conditions are evaluated with the step sizes each cell ran with, so a
    capped beta is judged as the beta it is.

    Parameters
    ----------
    constants : mapping N -> {symbol: value}
        The bound's constants per N (values of the bound file override them).
    """
    by_cell: dict[tuple, list] = {}
    for rec in records:
        pr = rec["params"]
        by_cell.setdefault((int(pr["N"]), int(pr["K"]), pr.get("gap")), []).append(rec["result"])
    p = cell_params(topology=study.topology, **study.cell)
    points, table = [], {}
    for n in study.n:
        consts = {**constants[n], **spec.constants}
        table[str(n)] = consts
        for g in study.graph_gaps:
            for k in study.rounds:
                if (n, k, g) in by_cell:
                    points.append(_point(analysis, spec, consts, by_cell[(n, k, g)], n, k, g, p["tau"], p["c"]))
    fit, shape, note = shape_of(points, margin=margin)
    # where the bound makes a promise its own terms may dominate differently: the same fit on those points alone
    _, shape_in, note_in = shape_of([q for q in points if not q.failures], margin=margin)
    return BoundCheckResult(study=study, spec=spec, analysis=analysis, points=points, constants=table,
                            constants_how=dict(constants_how or {}), shape_fit=fit, shape=shape, shape_note=note,
                            shape_in_scope=shape_in, shape_in_scope_note=note_in, sweep=dict(sweep or {}))


def run_boundcheck(study: BoundCheckStudy, spec: BoundSpec, analysis: SymbolicAnalysis,
                   options: SweepOptions = SweepOptions()) -> tuple[BoundCheckResult, Any]:
    """Run the sweep of ``study`` (cached), estimate the constants per N and compare bound with measurement."""
    cells = study.cells()
    seeds = list(range(study.seeds))
    sweep = run_sweep(simulate_cell, cells, seeds, base_seed=study.base_seed, task_version=TASK_VERSION,
                      cost=cell_cost, validate=validate_result, **options.kwargs())
    sweep.require_records()  # every cell failed: say how many, and the first cause
    constants, how = {}, {}
    for n in study.n:
        # the problem instances depend on N and the problem's own parameters only, not on the graph
        est = estimate_constants(cell_problem(cell_params(N=n, **study.cell), seeds, study.base_seed),
                                 seed=study.base_seed)
        constants[n], how = est.symbols(), est.how
    result = analyse_boundcheck(study, spec, analysis, sweep.records, constants, constants_how=how,
                                sweep=sweep.info())
    return result, sweep
