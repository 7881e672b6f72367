"""Safe parsing of user-written formulas into sympy, without evaluating any code.

Bound files are shared between researchers, so a formula in one is untrusted
input. sympy's ``parse_expr`` (and ``sympify``) hand the text to Python's
``eval``; mapping every identifier to a Symbol does not stop attribute access
on literals (``().__class__.__base__.__subclasses__()``), so they can run
arbitrary code. This module never evaluates the text: it parses it with
:mod:`ast`, accepts only a whitelist of node types, and builds the sympy
expression from the tree itself.

Accepted
--------
* numbers (int and decimal literals; decimals become exact rationals, so
  ``K**0.5`` stays ``sqrt(K)``);
* names made of letters, digits and underscores that start with a letter
  (they become positive symbols through ``symbol``);
* ``+ - * / **`` and ``^`` (power, as in the papers), unary ``-`` and ``+``;
* calls of :data:`FUNCTIONS` by name, with positional arguments only;
* the constants :data:`CONSTANTS` (``pi``, ``E``);
* one comparison ``< <= > >=`` at the top level (for conditions), when asked.

Size limits keep sympy from hanging on hostile input (``9**9**9**9``,
``(N+K+rho)**200``, a 400-term sum): the text length, the number of tree
nodes, the nesting depth and the size of any exponent are bounded, and all of
them are checked before sympy builds anything large.
"""
from __future__ import annotations

import ast
import math
import multiprocessing
import traceback
from fractions import Fraction
from typing import Any, Callable, TypeVar

import sympy

__all__ = ["ExpressionError", "FUNCTIONS", "CONSTANTS", "LIMITS", "parse_formula", "call_with_time_limit"]

T = TypeVar("T")


class ExpressionError(ValueError):
    """A formula is not allowed or cannot be read; the message says why, in one line."""


#: functions a formula may call, with the number of arguments each takes (None: 2 or more)
FUNCTIONS: dict[str, tuple[Callable, int | None]] = {
    "sqrt": (sympy.sqrt, 1),
    "log": (sympy.log, 1),
    "ln": (sympy.log, 1),
    "exp": (sympy.exp, 1),
    "Abs": (sympy.Abs, 1),
    "Max": (sympy.Max, None),
    "Min": (sympy.Min, None),
}
#: named constants
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "E": sympy.E}

#: the size limits (characters, tree nodes, nesting depth, |exponent|, |number|)
LIMITS = {"length": 2000, "nodes": 400, "depth": 40, "exponent": 16, "number": 1e100}

_COMPARE = {ast.Lt: sympy.Lt, ast.LtE: sympy.Le, ast.Gt: sympy.Gt, ast.GtE: sympy.Ge}
_BINARY = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Compare,
            ast.Load, ast.USub, ast.UAdd, *_BINARY, *_COMPARE)


def _describe(node: ast.AST) -> str:
    kinds = {ast.Attribute: "attribute access ('.')", ast.Subscript: "subscripts ('[...]')",
             ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions",
             ast.SetComp: "comprehensions", ast.DictComp: "comprehensions", ast.List: "lists",
             ast.Tuple: "tuples", ast.Dict: "dicts", ast.Set: "sets", ast.keyword: "keyword arguments",
             ast.Starred: "starred arguments", ast.BoolOp: "'and'/'or'", ast.IfExp: "'if' expressions",
             ast.NamedExpr: "assignment expressions", ast.JoinedStr: "strings", ast.Await: "await"}
    for kind, text in kinds.items():
        if isinstance(node, kind):
            return text
    return type(node).__name__


def _check_tree(tree: ast.AST, text: str) -> None:
    nodes = list(ast.walk(tree))  # iterative: no recursion on hostile nesting
    if len(nodes) > LIMITS["nodes"]:
        raise ExpressionError(f"formula is too large ({len(nodes)} parts, limit {LIMITS['nodes']}): {_short(text)}")
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{_describe(node)} not allowed in a formula: {_short(text)}")
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > LIMITS["depth"]:
            raise ExpressionError(f"formula is nested too deeply (more than {LIMITS['depth']} levels; "
                                  f"a long sum counts one level per term): {_short(text)}")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _number(value: object) -> sympy.Expr:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"only numbers may appear as literals, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"number {value!r} is not finite")
    if abs(value) > LIMITS["number"]:
        raise ExpressionError(f"number {value:g} is too large (limit {LIMITS['number']:g})")
    if isinstance(value, int):
        return sympy.Integer(value)
    # exact: 0.1 is 1/10, not 0.1000000000000000055...
    frac = Fraction(repr(value))
    return sympy.Rational(frac.numerator, frac.denominator)


class _Builder:
    """Turn a checked tree into sympy, one whitelisted node at a time."""

    def __init__(self, symbol: Callable[[str], sympy.Symbol]):
        self.symbol = symbol

    def build(self, node: ast.AST) -> sympy.Basic:
        if isinstance(node, ast.Constant):
            return _number(node.value)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            return self._binary(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Compare):
            raise ExpressionError("a comparison is only allowed as a whole condition, such as 'beta <= 1/L_phi'")
        raise ExpressionError(f"{_describe(node)} not allowed in a formula")  # pragma: no cover - checked first

    def _name(self, name: str) -> sympy.Basic:
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise ExpressionError(f"{name!r} is a function: call it, as in {name}(x)")
        if name.startswith("_"):
            raise ExpressionError(f"names may not start with an underscore, got {name!r}")
        if not name.isascii() or not name.replace("_", "").isalnum():
            raise ExpressionError(f"names must be letters, digits and underscores, got {name!r}")
        return self.symbol(name)

    def _binary(self, node: ast.BinOp) -> sympy.Expr:
        left = self.build(node.left)
        right = self.build(node.right)
        op = node.op
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div):
            if right == 0:
                raise ExpressionError("division by zero in a formula")
            return left / right
        # power: the exponent must be a modest number, or sympy may never return
        if right.free_symbols:
            raise ExpressionError(f"exponents must be numbers, got {right}")
        if not right.is_real or abs(float(right)) > LIMITS["exponent"]:
            raise ExpressionError(f"exponent {_short(str(right), 30)} is too large (limit |p| <= {LIMITS['exponent']})")
        if left.is_number and abs(float(right)) * math.log10(max(abs(float(left)), 2.0)) > 100:
            raise ExpressionError(f"number {left}**{right} is too large (limit {LIMITS['number']:g})")
        return left**right

    def _call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else _describe(node.func)
            raise ExpressionError(f"unknown function {name!r}; allowed: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise ExpressionError("keyword arguments not allowed in a formula")
        fn, arity = FUNCTIONS[node.func.id]
        n = len(node.args)
        if (arity is not None and n != arity) or (arity is None and n < 2):
            want = arity if arity is not None else "at least 2"
            raise ExpressionError(f"{node.func.id} takes {want} argument(s), got {n}")
        return fn(*(self.build(a) for a in node.args))


def parse_formula(
    text: str, symbol: Callable[[str], sympy.Symbol], *, relation: bool = False
) -> sympy.Basic:
    """Parse ``text`` into a sympy expression (or relation) without evaluating code.

    Parameters
    ----------
    text : str
        E.g. ``"2*Delta/(beta*K)"``; with ``relation=True`` also
        ``"beta <= (1-rho)/(sqrt(6)*rho*L_phi)"``.
    symbol : callable
        Maps a name to the sympy Symbol it stands for.
    relation : bool
        Allow one top-level comparison.

    Returns
    -------
    sympy.Basic

    Raises
    ------
    ExpressionError
        Naming what is not allowed (attribute access, subscripts, lambdas,
        comprehensions, unknown functions, names starting with ``_``), a
        syntax error, or a size limit that is exceeded.

    Examples
    --------
    >>> import sympy
    >>> parse_formula("A/sqrt(N*K)", lambda n: sympy.Symbol(n, positive=True))
    A/(sqrt(K)*sqrt(N))
    >>> parse_formula("().__class__", sympy.Symbol)
    Traceback (most recent call last):
    ...
    deprl_theory.expressions.ExpressionError: attribute access ('.') not allowed in a formula: '().__class__'
    """
    if not isinstance(text, str):
        raise ExpressionError(f"a formula must be a string, got {type(text).__name__}")
    if len(text) > LIMITS["length"]:
        raise ExpressionError(f"formula is too long ({len(text)} characters, limit {LIMITS['length']})")
    if not text.strip():
        raise ExpressionError("empty formula")
    try:
        # '^' is power, as in the papers; as text, so that it binds like '**' (Python's ^ binds loosest)
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot read {_short(text)}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting
        raise ExpressionError(f"cannot read {_short(text)}") from None
    _check_tree(tree, text)
    body = tree.body
    builder = _Builder(symbol)
    if isinstance(body, ast.Compare):
        if not relation:
            raise ExpressionError(f"expected an expression, got a comparison: {_short(text)}")
        if len(body.ops) != 1:
            raise ExpressionError(f"one comparison per condition, got a chain: {_short(text)}")
        op = type(body.ops[0])
        if op not in _COMPARE:
            raise ExpressionError(f"comparison must be one of < <= > >=, got {_short(text)}")
        sides = [builder.build(body.left), builder.build(body.comparators[0])]
        for side in sides:
            _check_finite(side, text)
        return _COMPARE[op](*sides)
    expr = builder.build(body)
    _check_finite(expr, text)
    return expr


def _check_finite(expr: sympy.Basic, text: str) -> None:
    """Reject an expression that is infinite, undefined or complex for positive symbols."""
    if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        raise ExpressionError(f"formula is not a finite real expression ({expr}): {_short(text)}")


def call_with_time_limit(seconds: float | None, what: str, fn: Callable[..., T], /, *args: Any) -> T:
    """Return ``fn(*args)``, or raise :class:`ExpressionError` after ``seconds`` of wall time.

    Within the size limits a formula can still make sympy's simplification
    run for minutes (a product of powers of sums, say), so the symbolic
    analysis of a user bound runs under a time budget. The call runs in a
    child process that is killed at the deadline. A signal would not do: the
    process that started us may block ``SIGALRM`` (the handler then never
    runs), sympy's own ``except Exception`` blocks may swallow an exception
    raised from a handler, and no handler runs while a call is stuck in C.
    ``SIGKILL`` stops the child in every case.

    ``fn``, its arguments and its result must pickle. An exception in the
    child is raised again here; one that is not an :class:`ExpressionError`
    carries the child's traceback as a note. With ``seconds=None`` the call
    runs in this process without a limit.
    """
    if seconds is None:
        return fn(*args)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_run_and_send, args=(sender, fn, args), daemon=True,
                        name="deprl-theory time-limited call")
    child.start()
    sender.close()
    try:
        if not receiver.poll(seconds):
            raise ExpressionError(f"{what} took longer than {seconds:g} s: the expression is too complex to analyse")
        try:
            status, payload, trace = receiver.recv()
        except EOFError:
            child.join()
            raise RuntimeError(f"{what} ended without a result (exit code {child.exitcode})") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
    if status == "ok":
        return payload
    if trace and not isinstance(payload, ExpressionError):
        payload.add_note(f"raised in the child process that ran {what}:\n{trace}")
    raise payload


def _run_and_send(conn: Any, fn: Callable[..., Any], args: tuple) -> None:
    """The child's side of :func:`call_with_time_limit`: run, then send the result or the exception."""
    try:
        message = ("ok", fn(*args), "")
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the parent
        message = ("error", exc, traceback.format_exc())
    try:
        conn.send(message)
    except Exception as exc:  # noqa: BLE001 - the result or the exception did not pickle
        conn.send(("error", RuntimeError(f"the result could not be sent back: {exc}"), message[2]))
    finally:
        conn.close()
