"""Symbolic convergence bound of DePRL and what follows from it.

The toolkit treats the paper's bound as *editable data*: a :class:`Bound` is a
set of named sympy terms, the step-size conditions under which it holds, and a
description of the quantity it bounds.  The default (:func:`default_bound`) is
the reconstructed template of docs/theory.md, section 5::

    (1/K) sum_{k<K} (a H_k + R_k) <=  T_opt  = 2 Delta / (beta K)
                                   + T_rep  = beta L_phi sigma_phi^2 / N
                                   + T_head = a alpha L_theta sigma_theta^2
                                   + T_cons = (2 a L_thetaphi^2 + L_phi^2)
                                              * 6 rho^2 beta^2 (sigma_phi^2 + delta^2) / (1 - rho)^2

    under  beta <= (1 - rho) / (sqrt(6) rho L_phi),  alpha L_theta <= 1/2,  rho < 1,

where ``a = alpha tau / beta``.  With ``a = 1/N`` the bounded quantity
``a H_k + R_k`` *is* ``G_k = R_k + H_k / N``, the squared gradient of F over
all variables, so the template then bounds ``Gbar_K`` exactly.

A user holding the paper's exact constants replaces the terms (strings are
parsed with the same symbol table, unknown names become new positive symbols)
and every derivation below works on the result:

* :func:`substitute` applies a step-size rule such as :func:`theory_step_rule`
  (``beta = c sqrt(N/K)``, ``alpha = a beta / tau``, optionally ``a = 1/N``);
* :func:`exponents` / :func:`term_exponents` give the power-law exponents of
  each term in N and K;
* :func:`leading_term` finds the term(s) that decay slowest in K;
* :func:`transient_K0` solves for the round count after which the consensus
  term falls below the leading term;
* :func:`step_size_conditions` rewrites the conditions as constraints on K;
* :func:`evaluate` evaluates every term on numpy grids of N and K;
* :func:`to_latex` prints the whole bound.

Standing assumption used by the simplifications: every symbol is positive and
``rho < 1``, so every base appearing in a bound (including ``1 - rho``) is
positive and powers may be combined freely (``force=True`` in sympy).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence, Union

import numpy as np
import sympy
from sympy.core.relational import Relational

from .expressions import ExpressionError, parse_formula

__all__ = [
    "SYMBOLS",
    "DEFAULT_QUANTITY",
    "USER_QUANTITY",
    "Bound",
    "LeadingTerm",
    "Transient",
    "make_bound",
    "default_bound",
    "consensus_lemma",
    "parse",
    "to_strings",
    "theory_step_rule",
    "substitute",
    "exponents",
    "local_exponents",
    "NoClosedExponent",
    "LOCAL_RANGE",
    "term_exponents",
    "leading_term",
    "transient_K0",
    "step_size_conditions",
    "evaluate",
    "evaluate_expr",
    "to_latex",
]

ExprLike = Union[sympy.Expr, str, int, float]
RelLike = Union[Relational, str]

_SYMBOL_NAMES = (
    "N", "K", "tau", "alpha", "beta", "c", "a",
    "L_theta", "L_phi", "L_thetaphi", "sigma_theta", "sigma_phi",
    "delta", "rho", "Delta",
)
#: The symbol table shared by the default bound, string parsing and rules.
#: All symbols are positive; ``rho < 1`` is carried as a condition of the bound.
SYMBOLS: dict[str, sympy.Symbol] = {
    name: sympy.Symbol(name, positive=True) for name in _SYMBOL_NAMES
}

# How the paper's symbols are typeset; sympy's default would print
# ``L_thetaphi`` as ``L_{thetaphi}``.
_LATEX_SYMBOLS = {
    "tau": r"\tau", "alpha": r"\alpha", "beta": r"\beta", "rho": r"\rho",
    "delta": r"\delta", "Delta": r"\Delta",
    "L_theta": r"L_{\theta}", "L_phi": r"L_{\phi}", "L_thetaphi": r"L_{\theta\phi}",
    "sigma_theta": r"\sigma_{\theta}", "sigma_phi": r"\sigma_{\phi}",
}

#: Description of what the default template bounds.
DEFAULT_QUANTITY = (
    "(1/K) sum_{k<K} (a H_k + R_k), a = alpha tau / beta; "
    "with a = 1/N this equals Gbar_K = (1/K) sum_{k<K} G_k, G = R + H/N"
)
#: Description used for user bounds that do not say what they bound.
USER_QUANTITY = "user-supplied bounded quantity"
_DEFAULT_QUANTITY_LATEX = r"\frac{1}{K}\sum_{k<K}\left(a H_k + R_k\right)"

_N = SYMBOLS["N"]
_K = SYMBOLS["K"]


# --------------------------------------------------------------------------- parsing


def _symbol(name: str) -> sympy.Symbol:
    """The table's symbol for ``name``, or a new positive symbol of that name.

    New symbols get the same assumptions as the table's, so a bound written
    out with :func:`to_strings` and parsed back compares equal.
    """
    return SYMBOLS.get(name) or sympy.Symbol(name, positive=True)


def parse(text: ExprLike, *, relation: bool = True) -> sympy.Basic:
    """Parse an expression or a relation with the bound's symbol table, evaluating no code.

    Parameters
    ----------
    text : str or sympy expression or number
        E.g. ``"2*Delta/(beta*K)"`` or ``"beta <= (1-rho)/(sqrt(6)*rho*L_phi)"``.
        ``^`` means power; decimals are turned into exact rationals so that
        exponents such as ``K**0.5`` stay exact.  Any name that is not a known
        symbol, a math function (sqrt, log, ln, exp, Abs, Max, Min) or a
        constant (pi, E) becomes a new positive symbol.  Strings go through
        :func:`deprl_theory.expressions.parse_formula`, which builds the
        expression from a whitelisted syntax tree and bounds its size: a
        bound file is untrusted input.
    relation : bool
        Accept one top-level comparison (a condition).

    Returns
    -------
    sympy.Basic
        The parsed expression (sympy objects are returned with their symbols
        mapped onto the table, so ``Symbol("N")`` and ``SYMBOLS["N"]`` agree).

    Raises
    ------
    ValueError
        (:class:`~deprl_theory.expressions.ExpressionError`) for anything that
        is not such a formula, in one line.

    Examples
    --------
    >>> parse("A/sqrt(N*K)")
    A/(sqrt(K)*sqrt(N))
    """
    if isinstance(text, sympy.Basic):
        # the rule strings obey: a symbolic exponent cannot be ordered in N or K (see parse_formula)
        for power in text.atoms(sympy.Pow):
            if power.exp.free_symbols:
                raise ExpressionError(f"exponents must be numbers, got {power.exp}")
        # Symbols built elsewhere without assumptions would not cancel against
        # ours (Symbol("N") != Symbol("N", positive=True)): map them by name.
        return text.xreplace({s: _symbol(s.name) for s in text.free_symbols})
    if isinstance(text, (bool, np.bool_)):
        raise ExpressionError(f"expected a formula or a number, got {text!r}")
    if isinstance(text, (int, float, np.integer, np.floating)):
        if not np.isfinite(text):
            raise ExpressionError(f"number {text!r} is not finite")
        return sympy.nsimplify(text, rational=True)
    if not isinstance(text, str):
        raise ExpressionError(f"cannot parse {type(text).__name__} {text!r} as an expression")
    return parse_formula(text, _symbol, relation=relation)


def _parse_term(name: str, value: ExprLike) -> sympy.Expr:
    expr = parse(value, relation=False)
    if not isinstance(expr, sympy.Expr) or isinstance(expr, Relational):
        raise ValueError(f"term {name!r} must be an expression, got {value!r}")
    return expr


def _parse_condition(value: RelLike) -> Relational | None:
    """Parse a condition; ``None`` when it holds identically (e.g. ``rho > 0``)."""
    rel = parse(value)
    if rel is sympy.true:
        return None
    if rel is sympy.false:
        raise ValueError(f"condition {value!r} can never hold")
    if not isinstance(rel, Relational):
        raise ValueError(f"condition {value!r} is not a relation such as 'x <= y'")
    return rel


# --------------------------------------------------------------------------- the bound


@dataclass(frozen=True)
class Bound:
    """A convergence bound: ``quantity <= sum(terms.values())`` under ``conditions``.

    Parameters
    ----------
    terms : dict of str to sympy.Expr
        Named terms whose sum is the bound; order is kept for printing.
    conditions : tuple of sympy relationals
        Step-size (and other) conditions under which the bound holds.
    quantity : str
        Plain-text description of the bounded quantity.
    consensus_terms : tuple of str
        Names of the terms caused by disagreement between workers; they
        define the transient :func:`transient_K0`.  Must name terms of the
        bound (may be empty).
    quantity_latex : str
        LaTeX of the bounded quantity; empty means ``quantity`` is printed as text.
    substitutions : tuple of (str, sympy.Expr)
        Rules already applied by :func:`substitute`, kept so that printed
        bounds say which step sizes they assume.

    Notes
    -----
    Prefer :func:`make_bound` (or :meth:`Bound.from_strings`), which parses
    strings; the constructor maps symbols onto :data:`SYMBOLS` and checks names.
    """

    terms: dict[str, sympy.Expr]
    conditions: tuple[Relational, ...] = ()
    quantity: str = DEFAULT_QUANTITY
    consensus_terms: tuple[str, ...] = ("T_cons",)
    quantity_latex: str = ""
    substitutions: tuple[tuple[str, sympy.Expr], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("a bound needs at least one term")
        terms = {}
        for name, value in self.terms.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"term names must be non-empty strings, got {name!r}")
            if name == "total":
                raise ValueError("'total' is reserved for the sum of the terms; rename that term")
            terms[name] = _parse_term(name, value)
            if not terms[name].free_symbols:
                raise ValueError(f"term {name!r} is the constant {terms[name]}: a term of a convergence bound "
                                 "must depend on N, K, the step sizes or the problem's constants")
        conditions = tuple(
            c for c in (_parse_condition(v) for v in self.conditions) if c is not None
        )
        consensus = tuple(self.consensus_terms)
        missing = [n for n in consensus if n not in terms]
        if missing:
            raise ValueError(
                f"consensus_terms {missing} are not terms of the bound "
                f"(terms: {list(terms)}); pass consensus_terms=() if there is none"
            )
        subs = tuple((str(k), parse(v)) for k, v in self.substitutions)
        # frozen: the normalised values replace the raw inputs exactly once here
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "conditions", conditions)
        object.__setattr__(self, "consensus_terms", consensus)
        object.__setattr__(self, "substitutions", subs)

    @classmethod
    def from_strings(
        cls,
        terms: Mapping[str, ExprLike],
        conditions: Iterable[RelLike] | None = None,
        quantity: str = USER_QUANTITY,
        consensus_terms: Iterable[str] | None = None,
        quantity_latex: str = "",
        substitutions: Mapping[str, ExprLike] | Iterable[tuple[str, ExprLike]] = (),
    ) -> "Bound":
        """Build a bound from strings (or sympy objects); see :func:`make_bound`."""
        return make_bound(
            terms, conditions, quantity=quantity, consensus_terms=consensus_terms,
            quantity_latex=quantity_latex, substitutions=substitutions,
        )

    @property
    def total(self) -> sympy.Expr:
        """The sum of all terms."""
        return sympy.Add(*self.terms.values())

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        """Symbols a numerical evaluation of the terms needs."""
        return set().union(*(t.free_symbols for t in self.terms.values()))


def make_bound(
    terms: Mapping[str, ExprLike],
    conditions: Iterable[RelLike] | None = None,
    *,
    quantity: str = USER_QUANTITY,
    consensus_terms: Iterable[str] | None = None,
    quantity_latex: str = "",
    substitutions: Mapping[str, ExprLike] | Iterable[tuple[str, ExprLike]] = (),
) -> Bound:
    """Build a :class:`Bound` from expressions given as strings or sympy objects.

    Parameters
    ----------
    terms : mapping of str to str or sympy.Expr
        E.g. ``{"T_opt": "2*Delta/(beta*K)", "T_rep": "beta*L_phi*sigma_phi**2/N"}``.
    conditions : iterable of str or sympy relational, optional
        E.g. ``["beta <= (1-rho)/(sqrt(6)*rho*L_phi)", "rho < 1"]``.
    quantity : str
        What the bound controls, in words.
    consensus_terms : iterable of str, optional
        Names of the consensus terms; default ``("T_cons",)`` when a term of
        that name exists, else none.
    quantity_latex : str
        LaTeX of the bounded quantity, used by :func:`to_latex`.
    substitutions : mapping or pairs
        Rules already applied (normally set by :func:`substitute`).

    Returns
    -------
    Bound

    Examples
    --------
    >>> b = make_bound({"T_1": "A/sqrt(N*K)", "T_2": "B*N/K"}, consensus_terms=["T_2"])
    >>> leading_term(b).names
    ('T_1',)
    """
    if consensus_terms is None:
        consensus_terms = ("T_cons",) if "T_cons" in terms else ()
    if isinstance(substitutions, Mapping):
        substitutions = tuple(substitutions.items())
    return Bound(
        terms=dict(terms),
        conditions=tuple(conditions or ()),
        quantity=quantity,
        consensus_terms=tuple(consensus_terms),
        quantity_latex=quantity_latex,
        substitutions=tuple(substitutions),
    )


def default_bound() -> Bound:
    """The reconstructed bound template of docs/theory.md, section 5.

    Setting: DePRL with N workers, tau head steps of size alpha and one
    representation step of size beta per round, gossip with mixing matrix of
    second-largest singular value rho.  The template is an *upper bound*
    assembled from the standard D-PSGD / FedRep analyses, correct up to
    absolute constants; replace its terms with :func:`make_bound` if you hold
    the paper's exact constants.

    Returns
    -------
    Bound
        Terms ``T_opt``, ``T_rep``, ``T_head``, ``T_cons`` (the consensus
        term), conditions ``beta <= (1-rho)/(sqrt(6) rho L_phi)``,
        ``alpha L_theta <= 1/2`` and ``rho < 1``.
    """
    s = SYMBOLS
    beta, rho, a = s["beta"], s["rho"], s["a"]
    consensus_error = _consensus_error()
    terms = {
        "T_opt": 2 * s["Delta"] / (beta * s["K"]),
        "T_rep": beta * s["L_phi"] * s["sigma_phi"] ** 2 / s["N"],
        "T_head": a * s["alpha"] * s["L_theta"] * s["sigma_theta"] ** 2,
        "T_cons": (2 * a * s["L_thetaphi"] ** 2 + s["L_phi"] ** 2) * consensus_error,
    }
    conditions = (
        _consensus_condition(),
        sympy.Le(s["alpha"] * s["L_theta"], sympy.Rational(1, 2)),
        sympy.Lt(rho, 1),
    )
    return Bound(
        terms=terms,
        conditions=conditions,
        quantity=DEFAULT_QUANTITY,
        consensus_terms=("T_cons",),
        quantity_latex=_DEFAULT_QUANTITY_LATEX,
    )


def _consensus_error() -> sympy.Expr:
    s = SYMBOLS
    return 6 * s["rho"] ** 2 * s["beta"] ** 2 * (s["sigma_phi"] ** 2 + s["delta"] ** 2) / (1 - s["rho"]) ** 2


def _consensus_condition() -> Relational:
    s = SYMBOLS
    return sympy.Le(s["beta"], (1 - s["rho"]) / (sympy.sqrt(6) * s["rho"] * s["L_phi"]))


def consensus_lemma() -> Bound:
    """The consensus lemma inside the template: a bound on the consensus error alone.

    Setting: gossip ``Phi <- W (Phi - beta G)`` with mixing rate rho,
    representation-gradient noise ``sigma_phi^2`` and heterogeneity
    ``delta^2`` (docs/theory.md, section 5, reconstructed). Upper bound::

        Cbar_K = (1/K) sum_k C_k <= 6 rho^2 beta^2 (sigma_phi^2 + delta^2) / (1 - rho)^2

    under ``beta <= (1 - rho) / (sqrt(6) rho L_phi)`` and ``rho < 1``. Its
    ``rho^2 / (1 - rho)^2`` is the worst case of a persistent drift; zero-mean
    noise alone gives ``rho^2 / (1 - rho^2)`` (see
    :func:`deprl_theory.graphs.noise_spectral_sum`).

    Returns
    -------
    Bound
        One term ``C_bound``, the conditions above, no consensus terms (it is one).
    """
    return Bound(
        terms={"C_bound": _consensus_error()},
        conditions=(_consensus_condition(), sympy.Lt(SYMBOLS["rho"], 1)),
        quantity="Cbar_K = (1/K) sum_{k<K} C_k, the time-averaged consensus error",
        consensus_terms=(),
        quantity_latex=r"\frac{1}{K}\sum_{k<K} C_k",
    )


def to_strings(bound: Bound) -> dict:
    """Write a bound as plain strings; ``Bound.from_strings(**to_strings(b)) == b``.

    Returns
    -------
    dict
        Keys ``terms`` (name -> str), ``conditions`` (list of str),
        ``quantity``, ``consensus_terms``, ``quantity_latex`` and
        ``substitutions`` (name -> str): JSON-serialisable.
    """
    return {
        "terms": {name: str(expr) for name, expr in bound.terms.items()},
        "conditions": [str(c) for c in bound.conditions],
        "quantity": bound.quantity,
        "consensus_terms": list(bound.consensus_terms),
        "quantity_latex": bound.quantity_latex,
        "substitutions": {name: str(expr) for name, expr in bound.substitutions},
    }


# --------------------------------------------------------------------------- rules


def theory_step_rule(
    a: ExprLike | None = None, *, head_rule: ExprLike | None = None
) -> dict[str, sympy.Expr]:
    """Step sizes of docs/theory.md, section 6: ``beta = c sqrt(N/K)``, ``alpha = a beta / tau``.

    Parameters
    ----------
    a : str or sympy.Expr, optional
        The head rule ``a = alpha tau / beta``.  ``None`` (default) keeps ``a``
        symbolic, i.e. a head step that does not shrink with N; ``"1/N"`` is
        the theory's choice ``alpha = beta / (N tau)``, under which the
        template bounds ``Gbar = mean(R + H/N)``.
    head_rule : str or sympy.Expr, optional
        Keyword alias of ``a`` (the CLI's name); give one or the other.

    Returns
    -------
    dict of str to sympy.Expr
        ``{"beta": ..., "alpha": ...}`` (plus ``"a"`` when fixed), with every
        value already expressed in N, K, c, tau (and a) so the rule can be
        applied in one simultaneous substitution.

    Examples
    --------
    >>> theory_step_rule("1/N")["alpha"]
    c/(sqrt(K)*sqrt(N)*tau)
    """
    if a is not None and head_rule is not None:
        raise ValueError("give the head rule as `a` or as `head_rule`, not both")
    if head_rule is not None:
        a = head_rule
    s = SYMBOLS
    beta = s["c"] * sympy.sqrt(s["N"] / s["K"])
    a_expr = s["a"] if a is None else parse(a)
    rule = {"beta": beta, "alpha": sympy.simplify(a_expr * beta / s["tau"])}
    if a is not None:
        rule["a"] = a_expr
    return rule


def _resolve_rule(rule: Mapping[str, ExprLike], known: set[str]) -> dict[sympy.Symbol, sympy.Expr]:
    """Parse a rule and substitute it into itself until no right side uses a left side.

    This lets users write chained rules (``alpha: "a*beta/tau"`` next to
    ``beta: "c*sqrt(N/K)"``) and still get one simultaneous substitution.
    """
    parsed: dict[sympy.Symbol, sympy.Expr] = {}
    for name, value in rule.items():
        name = name.name if isinstance(name, sympy.Symbol) else str(name)
        if name not in SYMBOLS and name not in known:
            raise ValueError(
                f"rule substitutes unknown symbol {name!r}; known: "
                f"{sorted(set(SYMBOLS) | known)}"
            )
        parsed[_symbol(name)] = _parse_term(name, value)
    for _ in range(len(parsed) + 1):
        new = {k: v.subs(parsed, simultaneous=True) for k, v in parsed.items()}
        if new == parsed:
            return parsed
        parsed = new
    cyclic = [k.name for k, v in parsed.items() if v.free_symbols & set(parsed)]
    raise ValueError(f"rule is cyclic in {cyclic}")


def _simplify(expr: sympy.Expr) -> sympy.Expr:
    # force=True is valid because all bases are positive (rho < 1 included).
    out = sympy.simplify(sympy.powsimp(sympy.powdenest(expr, force=True), force=True))
    return _gap_form(out)


def _gap_form(expr: sympy.Expr) -> sympy.Expr:
    """Write ``(rho - 1)**(2m)`` as ``(1 - rho)**(2m)``: the spectral gap, as in the paper.

    ``simplify`` prefers ``rho - 1``, which is negative; even powers are equal
    either way, and the gap form keeps printed bounds readable.
    """
    rho = SYMBOLS["rho"]
    return expr.replace(
        lambda e: e.is_Pow and e.base == rho - 1 and e.exp.is_even,
        lambda e: (1 - rho) ** e.exp,
    )


def substitute(bound: Bound, rule: Mapping[str, ExprLike] | None) -> Bound:
    """Apply a substitution rule (e.g. a step-size schedule) to terms and conditions.

    Parameters
    ----------
    bound : Bound
    rule : mapping of str to str or sympy.Expr, or None
        Symbol name -> replacement, e.g. :func:`theory_step_rule`.  Right
        sides may refer to other left sides.  ``None`` returns ``bound``.

    Returns
    -------
    Bound
        A new bound with simplified terms; conditions that became identically
        true are dropped; ``substitutions`` records the rule.

    Raises
    ------
    ValueError
        If the rule names an unknown symbol or makes a condition false.
    """
    if not rule:
        return bound
    known = {s.name for s in bound.free_symbols}
    known |= {s.name for c in bound.conditions for s in c.free_symbols}
    resolved = _resolve_rule(rule, known)
    terms = {
        name: _simplify(expr.subs(resolved, simultaneous=True))
        for name, expr in bound.terms.items()
    }
    conditions = []
    for cond in bound.conditions:
        new = cond.subs(resolved, simultaneous=True)
        if new is sympy.false:
            raise ValueError(f"rule {dict(rule)} violates condition {cond}")
        if new is not sympy.true:
            conditions.append(new)
    return Bound(
        terms=terms,
        conditions=tuple(conditions),
        quantity=bound.quantity,
        consensus_terms=bound.consensus_terms,
        quantity_latex=bound.quantity_latex,
        substitutions=bound.substitutions + tuple((k.name, v) for k, v in resolved.items()),
    )


# --------------------------------------------------------------------------- exponents


def _as_symbol(var: str | sympy.Symbol) -> sympy.Symbol:
    return _symbol(var.name if isinstance(var, sympy.Symbol) else str(var))


def _log_derivative(expr: sympy.Expr, x: sympy.Symbol) -> sympy.Expr:
    """``d log(expr) / d log(x)``, simplified; a constant iff expr is a power law in x."""
    log_expr = sympy.expand_log(sympy.log(expr), force=True)
    return sympy.simplify(sympy.cancel(x * sympy.diff(log_expr, x)))


def exponents(
    expr_or_bound: Bound | ExprLike, var: str | sympy.Symbol
) -> sympy.Expr | dict[str, sympy.Expr]:
    """Power-law exponent of an expression (or of each term of a bound) in ``var``.

    The exponent is ``d log T / d log var``.  For a monomial in ``var`` it is
    a constant (e.g. ``-1/2`` for ``1/sqrt(N K)``); for a sum of powers it
    varies with ``var`` and the *asymptotic* exponent, its limit as
    ``var -> oo``, is returned (e.g. ``1`` for ``(2/N + 1) N``).

    Parameters
    ----------
    expr_or_bound : Bound or str or sympy.Expr
    var : str or sympy.Symbol
        Usually ``"N"`` or ``"K"``.

    Returns
    -------
    sympy.Expr or dict of str to sympy.Expr
        The exponent, or term name -> exponent for a bound.

    Examples
    --------
    >>> exponents("A/sqrt(N*K) + B*N/K", "K")
    -1/2
    """
    x = _as_symbol(var)
    if isinstance(expr_or_bound, Bound):
        return {name: exponents(t, x) for name, t in expr_or_bound.terms.items()}
    expr = parse(expr_or_bound)
    if not expr.has(x):
        return sympy.Integer(0)
    e = _log_derivative(expr, x)
    if e.has(x):
        e = sympy.simplify(sympy.limit(e, x, sympy.oo))
    if e.has(x) or e.has(sympy.Limit):
        raise NoClosedExponent(expr, x)
    return e


#: the range of a variable on which an exponent with no closed form is measured numerically
LOCAL_RANGE = (4.0, 1024.0)


def local_exponents(expr: ExprLike, var: str | sympy.Symbol,
                    at: Sequence[float] = LOCAL_RANGE) -> tuple[float, ...] | None:
    """``d log expr / d log var`` evaluated numerically at each point of ``at``, every other symbol set to 1.

    None when ``expr`` is not real and positive there. For expressions with no
    closed power law (log factors, LambertW), this is the number to quote, with
    its range.
    """
    from scipy.special import lambertw

    x = _as_symbol(var)
    e = parse(expr)
    e = e.subs({s: 1 for s in e.free_symbols if s != x})
    f = sympy.lambdify(x, e, modules=[{"LambertW": lambda z, k=0: lambertw(z, k)}, "numpy"])
    h = 1e-4
    out = []
    with np.errstate(all="ignore"):
        for x0 in at:
            lo, hi = (complex(f(x0 * np.exp(-h))), complex(f(x0 * np.exp(h))))
            if not all(abs(v.imag) <= 1e-12 * max(1.0, abs(v)) and v.real > 0 and np.isfinite(v.real)
                       for v in (lo, hi)):
                return None
            out.append(float((np.log(hi.real) - np.log(lo.real)) / (2 * h)))
    return tuple(out)


def _real_positive(expr: sympy.Expr) -> bool:
    """Whether ``expr`` is real and positive at N (or K) = each end of :data:`LOCAL_RANGE`, other symbols 1."""
    for x0 in LOCAL_RANGE:
        v = complex(sympy.N(expr.subs({s: (x0 if s.name in ("N", "K") else 1) for s in expr.free_symbols})))
        if not (abs(v.imag) <= 1e-12 * max(1.0, abs(v)) and v.real > 0 and np.isfinite(v.real)):
            return False
    return True


class NoClosedExponent(ValueError):
    """An expression that is not asymptotically a power of the variable (a log factor, LambertW, ...)."""

    def __init__(self, expr: sympy.Expr, x: sympy.Symbol):
        self.local = local_exponents(expr, x)
        lo, hi = LOCAL_RANGE
        where = ("it is not real and positive there with every other symbol = 1" if self.local is None else
                 f"its local exponent d log / d log {x} is {self.local[0]:.3g} at {x} = {lo:g} and "
                 f"{self.local[-1]:.3g} at {x} = {hi:g}, every other symbol = 1")
        self.words = f"no closed power law in {x} (d log / d log {x} has no limit sympy can evaluate); {where}"
        super().__init__(f"{_short_expr(expr)}: {self.words}")


def _short_expr(expr: sympy.Expr, limit: int = 80) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def term_exponents(bound: Bound) -> dict[str, dict[str, sympy.Expr]]:
    """Exponents of every term in N and in K: ``{term: {"N": e_N, "K": e_K}}``."""
    return {
        name: {"N": exponents(t, _N), "K": exponents(t, _K)}
        for name, t in bound.terms.items()
    }


def _power_law(expr: sympy.Expr, x: sympy.Symbol) -> tuple[sympy.Expr, sympy.Expr] | None:
    """``(coef, p)`` with ``expr == coef * x**p`` exactly, or None if not a power law."""
    p = _log_derivative(expr, x)
    if p.has(x):
        return None
    coef = _simplify(expr * x ** (-p))
    if coef.has(x):
        return None
    return coef, p


# --------------------------------------------------------------------------- leading term


@dataclass(frozen=True)
class LeadingTerm:
    """The slowest-decaying part of a bound in one variable.

    Attributes
    ----------
    names : tuple of str
        Terms sharing the slowest decay in ``var`` (ties are summed).
    expr : sympy.Expr
        Their sum.
    var : str
        The variable that grows (``"K"`` by default).
    exponents : dict of str to sympy.Expr
        Asymptotic exponents of ``expr`` in N and in K.  In the variable other
        than ``var`` this is the slowest rate among the tied terms, because a
        sum decays like its slowest summand.
    rate_setting : tuple of str
        The tied terms that actually reach that exponent in the other variable
        (under ``a = 1/N``: ``T_opt``, ``T_rep`` but not ``T_head``).
    term_exponents : dict of str to dict
        Exponents of every term of the bound, for reporting.
    """

    names: tuple[str, ...]
    expr: sympy.Expr
    var: str
    exponents: dict[str, sympy.Expr]
    rate_setting: tuple[str, ...]
    term_exponents: dict[str, dict[str, sympy.Expr]]


def _compare_key(e: sympy.Expr, what: str) -> float:
    if not (e.is_number or e.is_infinite):
        raise ValueError(
            f"cannot order terms: exponent {e} of {what} depends on symbols "
            f"{sorted(s.name for s in e.free_symbols)}"
        )
    return float(e)


def leading_term(bound: Bound, var: str | sympy.Symbol = "K") -> LeadingTerm:
    """The term(s) of ``bound`` that dominate as ``var`` grows, and their exponents.

    Terms are ordered by their asymptotic exponent in ``var``; the largest
    (slowest decay) wins, and terms that tie are summed, because a tie means
    they stay comparable for every ``var``.  The exponent of that sum in the
    *other* scaling variable is the slowest among the tied terms.

    Under ``beta = c sqrt(N/K)`` and ``a = 1/N`` (``theory_step_rule("1/N")``)
    the template's ``T_opt``, ``T_rep`` and ``T_head`` all decay as
    ``K^(-1/2)``, so the leading term is their sum.  ``T_opt + T_rep`` scales as
    ``(N K)^(-1/2)`` and ``T_head = c L_theta sigma_theta^2 / (tau N^(3/2) K^(1/2))``
    decays faster in N, so the sum has exponent ``-1/2`` in N and ``-1/2`` in
    K (linear speedup); ``rate_setting`` is then ``("T_opt", "T_rep")``.
    With ``a`` kept symbolic (head step not scaled with N) ``T_head`` grows as
    ``N^(+1/2)`` and the leading sum's N exponent becomes ``+1/2``: no speedup
    for the heads.

    Parameters
    ----------
    bound : Bound
        Usually after :func:`substitute` with a step-size rule; with raw step
        sizes most terms do not depend on K at all.
    var : str or sympy.Symbol
        The growing variable, ``"K"`` (default) or ``"N"``.

    Returns
    -------
    LeadingTerm

    Raises
    ------
    ValueError
        If an exponent in ``var`` is symbolic, so terms cannot be ordered.
    """
    x = _as_symbol(var)
    other = _N if x == _K else _K
    per_term = term_exponents(bound)
    if x not in (_N, _K):
        for name, t in bound.terms.items():
            per_term[name][x.name] = exponents(t, x)
    keys = {name: _compare_key(e[x.name], name) for name, e in per_term.items()}
    top = max(keys.values())
    names = tuple(n for n, k in keys.items() if k == top)
    expr = sympy.Add(*(bound.terms[n] for n in names))
    exps = {"N": exponents(expr, _N), "K": exponents(expr, _K)}
    if x not in (_N, _K):
        exps[x.name] = per_term[names[0]][x.name]
    rate_setting = tuple(
        n for n in names if sympy.simplify(per_term[n][other.name] - exps[other.name]) == 0
    )
    return LeadingTerm(
        names=names, expr=expr, var=x.name, exponents=exps,
        rate_setting=rate_setting, term_exponents=per_term,
    )


# --------------------------------------------------------------------------- transient


@dataclass(frozen=True)
class Transient:
    """Round count after which the consensus term falls below the leading term.

    Attributes
    ----------
    K0 : sympy.Expr
        Exact positive solution of ``consensus(K) = leading(K)`` for K.
    K0_large_N : sympy.Expr or None
        Its large-N form ``coef * N**N_exponent`` (None if K0 is not
        asymptotically a power of N, e.g. has log factors or no N at all).
    N_exponent : sympy.Expr or None
        ``d log K0 / d log N`` as ``N -> oo`` (3 for the template under
        ``beta = c sqrt(N/K)``); None when that limit has no closed form
        (then ``note`` says so and ``N_exponent_local`` gives numbers).
    leading : tuple of str
        Names of the leading terms used.
    consensus : tuple of str
        Names of the consensus terms used.
    note : str
        In words, what is not a closed power law (empty for the template).
    N_exponent_local : dict or None
        When ``N_exponent`` is None: the local exponent ``d log K0 / d log N``
        at each N of :data:`LOCAL_RANGE`, every other symbol set to 1 (None
        there too when K0 is not real and positive at those values).
    """

    K0: sympy.Expr
    K0_large_N: sympy.Expr | None
    N_exponent: sympy.Expr | None
    leading: tuple[str, ...]
    consensus: tuple[str, ...]
    note: str = ""
    N_exponent_local: dict[float, float] | None = None


def transient_K0(bound: Bound, rule: Mapping[str, ExprLike] | None = None) -> Transient:
    """Solve for the transient K0 where the consensus term(s) equal the leading term.

    Linear speedup is only visible once the consensus term, which decays
    faster in K, has fallen below the leading ``(N K)^(-1/2)`` term.  The
    crossing point is found exactly: when the ratio consensus / leading is a
    power law ``C K^p`` in K (true for the template under
    ``beta = c sqrt(N/K)``) the root is ``C^(-1/p)``; otherwise
    ``sympy.solve`` is used and its positive root kept.

    Under ``beta = c sqrt(N/K)`` and ``a = 1/N`` the template's consensus
    term is ``(2 L_thetaphi^2 / N + L_phi^2) 6 rho^2 c^2 N (sigma_phi^2 +
    delta^2) / (K (1 - rho)^2)``.  The exact K0 keeps both parts (and the
    ``T_head`` part of the leading sum); for large N the ``L_phi^2`` part and
    ``T_opt + T_rep`` dominate, and ``K0_large_N`` reports
    ``36 c^6 L_phi^4 rho^4 (sigma_phi^2 + delta^2)^2 N^3 /
    ((2 Delta + c^2 L_phi sigma_phi^2)^2 (1 - rho)^4)``: K0 ~ N^3 rho^4 / (1 - rho)^4.
    The exact K0 is proportional to ``rho^4 / (1 - rho)^4`` for every N.

    Parameters
    ----------
    bound : Bound
    rule : mapping, optional
        Substitution applied first (e.g. ``theory_step_rule("1/N")``).

    Returns
    -------
    Transient

    Raises
    ------
    ValueError
        If the bound has no consensus term, the consensus term is itself
        leading (no transient: it never falls below), or no positive root exists.
    """
    b = substitute(bound, rule)
    if not b.consensus_terms:
        raise ValueError("the bound has no consensus_terms, so there is no transient")
    lead = leading_term(b, _K)
    overlap = set(lead.names) & set(b.consensus_terms)
    if overlap:
        raise ValueError(
            f"consensus term(s) {sorted(overlap)} decay no faster in K than the "
            "leading term: they never fall below it, so there is no transient K0 "
            "(did you forget the step-size rule?)"
        )
    consensus = sympy.Add(*(b.terms[n] for n in b.consensus_terms))
    law = _power_law(consensus / lead.expr, _K)
    if law is not None and law[1] != 0:
        coef, p = law
        K0 = _simplify(coef ** (-1 / p))
    else:
        roots = sympy.solve(sympy.Eq(consensus, lead.expr), _K)
        roots = [r for r in roots if r.is_positive is not False and not r.has(sympy.I)]
        # sympy cannot always tell a branch that is complex for positive symbols (LambertW of a negative
        # argument): prefer the roots that are real and positive over the local range, every symbol = 1
        real = [r for r in roots if _real_positive(r)]
        roots = real or roots
        if not roots:
            raise ValueError(f"no positive K solves {consensus} = {lead.expr}")
        K0 = _simplify(roots[0])
    note = "" if law is not None and law[1] != 0 else (
        "K0 solves consensus = leading with no closed power law in K (sympy's root"
        + (", through LambertW)" if K0.has(sympy.LambertW) else ")"))
    try:
        e_N = exponents(K0, _N)
    except NoClosedExponent as exc:
        e_N, local = None, exc.local
        note = "; ".join(filter(None, [note, f"K0 has {exc.words}"]))
        return Transient(K0=K0, K0_large_N=None, N_exponent=None, leading=lead.names,
                         consensus=b.consensus_terms, note=note,
                         N_exponent_local=None if local is None else dict(zip(LOCAL_RANGE, local)))
    K0_large_N = None
    if e_N.is_number and e_N.is_finite:
        coef = sympy.limit(K0 / _N**e_N, _N, sympy.oo)
        # is_finite cannot know that 1 - rho != 0, so test for infinities directly
        if coef != 0 and not coef.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
            K0_large_N = _simplify(coef * _N**e_N)
    if K0_large_N is None:
        note = "; ".join(filter(None, [note, "K0 is not asymptotically a constant times a power of N"]))
    return Transient(
        K0=K0, K0_large_N=K0_large_N, N_exponent=e_N,
        leading=lead.names, consensus=b.consensus_terms, note=note,
    )


# --------------------------------------------------------------------------- conditions


def _solve_for(rel: Relational, x: sympy.Symbol) -> Relational:
    """Rewrite ``lhs <op> rhs`` as a bound on ``x`` when both sides are positive power laws.

    Both sides of the bound's conditions are positive (standing assumption),
    so ``lhs <= rhs`` is ``g = lhs / rhs <= 1``; if ``g = C x^p`` this is
    ``x <= C^(-1/p)`` for ``p > 0`` and ``x >= C^(-1/p)`` for ``p < 0``.
    Anything else is returned unchanged.
    """
    if not rel.has(x) or not isinstance(rel, (sympy.Le, sympy.Lt, sympy.Ge, sympy.Gt)):
        return rel
    strict = isinstance(rel, (sympy.Lt, sympy.Gt))
    small, large = (rel.lhs, rel.rhs) if isinstance(rel, (sympy.Le, sympy.Lt)) else (rel.rhs, rel.lhs)
    law = _power_law(small / large, x)
    if law is None or not law[1].is_number or law[1] == 0:
        return rel
    coef, p = law
    threshold = _simplify(coef ** (-1 / p))
    if p > 0:
        return sympy.Lt(x, threshold) if strict else sympy.Le(x, threshold)
    return sympy.Gt(x, threshold) if strict else sympy.Ge(x, threshold)


def step_size_conditions(
    bound: Bound, rule: Mapping[str, ExprLike] | None = None, var: str | sympy.Symbol = "K"
) -> tuple[Relational, ...]:
    """The bound's conditions after ``rule``, solved for ``var`` where possible.

    Under ``beta = c sqrt(N/K)`` the template's condition on beta becomes
    ``K >= 6 c^2 L_phi^2 N rho^2 / (1 - rho)^2``: the theory's step size is
    only admissible after that many rounds.

    Parameters
    ----------
    bound : Bound
    rule : mapping, optional
        Substitution applied first (e.g. :func:`theory_step_rule`).
    var : str or sympy.Symbol
        Variable to isolate, default K.

    Returns
    -------
    tuple of sympy relationals
        Conditions that involve ``var`` as a power law are returned as
        ``var >= ...`` / ``var <= ...``; the others unchanged.
    """
    x = _as_symbol(var)
    return tuple(_solve_for(c, x) for c in substitute(bound, rule).conditions)


# --------------------------------------------------------------------------- numbers


def evaluate_expr(
    expr: ExprLike, constants: Mapping[str, object] | None = None, **grid: object
) -> np.ndarray:
    """Evaluate one expression on numpy arrays (broadcast like numpy).

    Parameters
    ----------
    expr : str or sympy.Expr
    constants : mapping of str to float or array, optional
        Values of the symbols.
        The :class:`~deprl_theory.constants.Constants` that
        :func:`~deprl_theory.constants.estimate_constants` returns is accepted
        as it is (its :meth:`~deprl_theory.constants.Constants.symbols`: the
        max over seeds, under the bound's names).
    **grid : float or array
        More values, typically ``N=np.array([...])[:, None], K=np.array([...])``.

    Returns
    -------
    numpy.ndarray
        Float array of the broadcast shape of all inputs.

    Raises
    ------
    ValueError
        Naming every symbol of ``expr`` that has no value, or a name given twice.
    """
    values = _merge_values(constants, grid)
    e = parse(expr)
    return _lambdify_eval({"value": e}, values, grid)["value"]


def _merge_values(constants: Mapping[str, object] | None, grid: Mapping[str, object]) -> dict:
    if hasattr(constants, "symbols") and callable(constants.symbols):
        constants = constants.symbols()  # estimate_constants' Constants: the bound's own names
    constants = dict(constants or {})
    both = sorted(set(constants) & set(grid))
    if both:
        raise ValueError(f"{both} given both in constants and as grid arguments")
    constants.update(grid)
    # float: integer arrays would make numpy reject negative integer powers
    return {str(k): np.asarray(v, dtype=float) for k, v in constants.items()}


def _lambdify_eval(exprs: Mapping[str, sympy.Expr], values: Mapping[str, np.ndarray],
                   grid: Iterable[str] = ()) -> dict:
    needed = sorted({s.name for e in exprs.values() for s in e.free_symbols})
    missing = [n for n in needed if n not in values]
    if missing:
        squares = [n for n in missing if f"{n}2" in values]
        hint = (f"; {', '.join(f'{n}2' for n in squares)} given instead: the bound is written in "
                f"{', '.join(squares)} themselves (pass the Constants object, or Constants.symbols())"
                if squares else "")
        raise ValueError(
            f"missing constants {missing}: give a value for each of them "
            f"(needed: {needed}){hint}"
        )
    args = [values[n] for n in needed]
    # the values used and the grid set the shape: unrelated extra constants are ignored
    shape = np.broadcast_shapes(*(a.shape for a in args), *(values[g].shape for g in grid))
    out = {}
    for name, e in exprs.items():
        f = sympy.lambdify([sympy.Symbol(n) for n in needed],
                           e.xreplace({s: sympy.Symbol(s.name) for s in e.free_symbols}),
                           modules="numpy")
        out[name] = np.broadcast_to(np.asarray(f(*args), dtype=float), shape).copy()
    return out


def evaluate(
    bound: Bound, constants: Mapping[str, object] | None = None, **grid: object
) -> dict[str, np.ndarray]:
    """Evaluate every term of a bound numerically, vectorised over arrays.

    Parameters
    ----------
    bound : Bound
        Usually after :func:`substitute`, so that only constants, N and K remain.
    constants : mapping of str to float or array
        Values of the symbols, e.g. ``{"c": 0.5, "L_phi": 1.0, ...}``.  Extra
        names are ignored, so one dictionary can serve several bounds.
        The :class:`~deprl_theory.constants.Constants` that
        :func:`~deprl_theory.constants.estimate_constants` returns is accepted
        as it is (its :meth:`~deprl_theory.constants.Constants.symbols`: the
        max over seeds, under the bound's names).
    **grid : float or array
        Values that vary, e.g. ``N=np.array([4, 8])[:, None], K=np.array([500, 1000])``;
        all inputs are broadcast together with numpy rules.

    Returns
    -------
    dict of str to numpy.ndarray
        term name -> values, plus ``"total"``, all of the broadcast shape.

    Raises
    ------
    ValueError
        Naming the symbols of the bound that have no value.

    Examples
    --------
    >>> b = make_bound({"T": "A/sqrt(N*K)"})
    >>> evaluate(b, {"A": 2.0}, N=np.array([1, 4]), K=1.0)["T"]
    array([2., 1.])
    """
    values = _merge_values(constants, grid)
    out = _lambdify_eval(bound.terms, values, grid)
    out["total"] = np.sum([out[n] for n in bound.terms], axis=0)
    return out


# --------------------------------------------------------------------------- LaTeX


def _latex_name(name: str) -> str:
    """``T_opt`` -> ``T_{\\mathrm{opt}}``; other names in upright text."""
    m = re.fullmatch(r"([A-Za-z])_([A-Za-z0-9]+)", name)
    if m:
        return rf"{m.group(1)}_{{\mathrm{{{m.group(2)}}}}}"
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


def _latex(expr: sympy.Basic) -> str:
    names = {s: _LATEX_SYMBOLS[s.name] for s in expr.free_symbols if s.name in _LATEX_SYMBOLS}
    return sympy.latex(expr, symbol_names=names)


def to_latex(bound: Bound) -> str:
    """LaTeX of the whole bound: quantity <= sum of named terms, then its conditions.

    Each term is shown under an ``\\underbrace`` labelled with its name
    (``T_opt`` -> ``T_{\\mathrm{opt}}``); applied substitutions and the
    conditions follow after ``\\quad``.

    Returns
    -------
    str
        A single LaTeX math expression (no surrounding ``$``).
    """
    quantity = bound.quantity_latex or r"\text{" + bound.quantity.replace("_", r"\_") + "}"
    pieces = [
        rf"\underbrace{{{_latex(expr)}}}_{{{_latex_name(name)}}}"
        for name, expr in bound.terms.items()
    ]
    out = quantity + r" \le " + " + ".join(pieces)
    if bound.substitutions:
        subs = ", ".join(
            f"{_latex(_symbol(n))} = {_latex(v)}" for n, v in bound.substitutions
        )
        out += r" \quad \text{with } " + subs
    if bound.conditions:
        out += r" \quad \text{if } " + ", ".join(_latex(c) for c in bound.conditions)
    return out
