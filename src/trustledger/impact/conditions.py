"""Policy conditions over a whole population at once: a CEL subset evaluated with NumPy.

A measure's condition (or an event type's ``when``) is compiled by the policy into a CEL
program that reads one subject's values. The simulation needs it for 100,000 subjects a
month, so the common subset of CEL — literals, names, ``name.field``, ``double()``,
``! - * / + -``, comparisons, ``&& ||`` and ``c ? a : b`` — is parsed here once and run
on NumPy arrays. Anything outside that subset raises :class:`Unsupported`, and the caller
runs the policy's own compiled CEL program subject by subject instead (exact, slower).
The vectorised result is checked against the CEL program on a sample of subjects at
every evaluation (:func:`trustledger.impact.vector.VectorState.read`), so the two cannot
drift silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Value = Any
"""A NumPy array (one element per subject), a scalar, or a map of those (a scorecard)."""

Node = Callable[[Mapping[str, Value]], Value]
"""A compiled sub-expression: context in, value out."""

_TOKEN = re.compile(r"""\s*(?:(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+u?)
    |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<name>[A-Za-z_][A-Za-z_0-9]*)
    |(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/?:().%\[\],{}]))""", re.VERBOSE)


class Unsupported(Exception):
    """The expression uses CEL beyond the vectorised subset (use the CEL program itself)."""


@dataclass(frozen=True)
class VectorCondition:
    """A condition compiled for arrays: call with a context of arrays, get a bool array."""

    source: str
    node: Node

    def __call__(self, context: Mapping[str, Value], size: int) -> np.ndarray:
        """The condition for every subject (``size`` of them) as a bool array."""
        out = self.node(context)
        if isinstance(out, np.ndarray):
            if out.dtype != np.bool_:
                raise Unsupported(f"`{self.source}` is not a condition")
            return out
        if isinstance(out, bool | np.bool_):
            return np.full(size, bool(out))
        raise Unsupported(f"`{self.source}` is not a condition")


def vector_condition(source: str) -> VectorCondition:
    """Parse ``source`` into a :class:`VectorCondition`; :class:`Unsupported` outside the subset."""
    tokens = _tokens(source)
    parser = _Parser(tokens, source)
    node = parser.ternary()
    if parser.pos != len(tokens):
        raise Unsupported(f"`{source}`: unexpected {tokens[parser.pos][1]!r}")
    return VectorCondition(source, node)


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = source.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Unsupported(f"`{source}`: cannot read at position {pos}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _is_int(value: Value) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iu"
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bool(value: Value) -> bool:
    if isinstance(value, np.ndarray):
        return bool(value.dtype == np.bool_)
    return isinstance(value, bool | np.bool_)


def _is_number(value: Value) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_text(value: Value) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "UO"
    return isinstance(value, str)


_COMPARE: dict[str, Callable[[Value, Value], Value]] = {
    "==": lambda a, b: np.equal(a, b), "!=": lambda a, b: np.not_equal(a, b),
    "<": lambda a, b: np.less(a, b), "<=": lambda a, b: np.less_equal(a, b),
    ">": lambda a, b: np.greater(a, b), ">=": lambda a, b: np.greater_equal(a, b),
}


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], source: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.source = source

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise Unsupported(f"`{self.source}`: ends early")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise Unsupported(f"`{self.source}`: expected {expected!r}, got {token[1]!r}")
        self.pos += 1
        return token

    def ternary(self) -> Node:
        cond = self.logical("||")
        if self._peek() != "?":
            return cond
        self._take("?")
        yes = self.ternary()
        self._take(":")
        no = self.ternary()

        def run(ctx: Mapping[str, Value]) -> Value:
            c = cond(ctx)
            if not _is_bool(c):
                raise Unsupported(f"`{self.source}`: ?: needs a condition")
            a, b = yes(ctx), no(ctx)
            if _is_number(a) != _is_number(b) or _is_int(a) != _is_int(b):
                raise Unsupported(f"`{self.source}`: ?: branches of different types")
            return np.where(c, a, b)
        return run

    def logical(self, op: str) -> Node:
        inner: Callable[[], Node] = (lambda: self.logical("&&")) if op == "||" \
            else self.relation
        left = inner()
        while self._peek() == op:
            self._take(op)
            right = inner()
            left = self._logical(op, left, right)
        return left

    def _logical(self, op: str, left: Node, right: Node) -> Node:
        fn = np.logical_or if op == "||" else np.logical_and

        def run(ctx: Mapping[str, Value]) -> Value:
            a, b = left(ctx), right(ctx)
            if not (_is_bool(a) and _is_bool(b)):
                raise Unsupported(f"`{self.source}`: {op} needs conditions")
            return fn(a, b)
        return run

    def relation(self) -> Node:
        left = self.additive()
        while self._peek() in _COMPARE:
            op = self._take()[1]
            right = self.additive()
            left = self._relation(op, left, right)
        return left

    def _relation(self, op: str, left: Node, right: Node) -> Node:
        fn = _COMPARE[op]

        def run(ctx: Mapping[str, Value]) -> Value:
            a, b = left(ctx), right(ctx)
            same = (_is_number(a) and _is_number(b)) or (_is_text(a) and _is_text(b)) or \
                (_is_bool(a) and _is_bool(b) and op in ("==", "!="))
            if not same:
                raise Unsupported(f"`{self.source}`: {op} between different types")
            return fn(a, b)
        return run

    def additive(self) -> Node:
        left = self.multiplicative()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            left = self._arith(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Node:
        left = self.unary()
        while self._peek() in ("*", "/"):
            op = self._take()[1]
            left = self._arith(op, left, self.unary())
        return left

    def _arith(self, op: str, left: Node, right: Node) -> Node:
        def run(ctx: Mapping[str, Value]) -> Value:
            a, b = left(ctx), right(ctx)
            if not (_is_number(a) and _is_number(b)) or _is_int(a) != _is_int(b):
                raise Unsupported(f"`{self.source}`: {op} needs two numbers of one type")
            if op == "/" and _is_int(a):
                raise Unsupported(f"`{self.source}`: integer division")
            if op == "+":
                return np.add(a, b)
            if op == "-":
                return np.subtract(a, b)
            if op == "*":
                return np.multiply(a, b)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.divide(a, b)
        return run

    def unary(self) -> Node:
        op = self._peek()
        if op == "!":
            self._take()
            inner = self.unary()

            def run_not(ctx: Mapping[str, Value]) -> Value:
                value = inner(ctx)
                if not _is_bool(value):
                    raise Unsupported(f"`{self.source}`: ! needs a condition")
                return np.logical_not(value)
            return run_not
        if op == "-":
            self._take()
            inner = self.unary()

            def run_neg(ctx: Mapping[str, Value]) -> Value:
                value = inner(ctx)
                if not _is_number(value):
                    raise Unsupported(f"`{self.source}`: - needs a number")
                return np.negative(value)
            return run_neg
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self._peek() == ".":
            self._take(".")
            kind, name = self._take()
            if kind != "name":
                raise Unsupported(f"`{self.source}`: field name expected")
            node = self._field(node, name)
        return node

    def _field(self, node: Node, name: str) -> Node:
        def run(ctx: Mapping[str, Value]) -> Value:
            value = node(ctx)
            if not isinstance(value, Mapping) or name not in value:
                raise Unsupported(f"`{self.source}`: no field {name}")
            return value[name]
        return run

    def primary(self) -> Node:
        kind, text = self._take()
        if kind == "num":
            if text.endswith("u"):
                raise Unsupported(f"`{self.source}`: unsigned literal")
            number: float | int = int(text) if text.isdigit() else float(text)
            return lambda ctx: number
        if kind == "str":
            literal = text[1:-1]
            if "\\" in literal:
                raise Unsupported(f"`{self.source}`: escapes in a string")
            return lambda ctx: literal
        if kind == "name":
            if text in ("true", "false"):
                flag = text == "true"
                return lambda ctx: flag
            if self._peek() == "(":
                return self._call(text)
            return self._name(text)
        if text == "(":
            inner = self.ternary()
            self._take(")")
            return inner
        raise Unsupported(f"`{self.source}`: unexpected {text!r}")

    def _name(self, name: str) -> Node:
        def run(ctx: Mapping[str, Value]) -> Value:
            if name not in ctx:
                raise Unsupported(f"`{self.source}`: unknown name {name}")
            return ctx[name]
        return run

    def _call(self, function: str) -> Node:
        if function != "double":
            raise Unsupported(f"`{self.source}`: function {function}()")
        self._take("(")
        inner = self.ternary()
        self._take(")")

        def run(ctx: Mapping[str, Value]) -> Value:
            value = inner(ctx)
            if not _is_number(value):
                raise Unsupported(f"`{self.source}`: double() of a non-number")
            return np.asarray(value, dtype=np.float64) if isinstance(value, np.ndarray) \
                else float(value)
        return run


__all__ = ["Unsupported", "VectorCondition", "vector_condition"]
