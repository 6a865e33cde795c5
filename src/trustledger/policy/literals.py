"""The numbers a policy's expressions single out, for the proportionality probe.

A condition can make an event count only at one attribute value (``attrs.kmh_over ==
13``), or a measure hold only at one count of events (``rides == 3 * 17``); the probe
must try those values, however they are written. :func:`folded_constants` evaluates
the literal-only arithmetic of an expression (constant folding, CEL's integer
division), and :func:`literal_probe_values` gives, per attribute an expression reads,
the numbers it compares with and their neighbours.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections.abc import Mapping, Sequence

from trustledger.policy.compiled import POINTS_LIMIT, CompiledAttribute
from trustledger.policy.conditions import attribute_reads, without_literals

_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w])")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARITHMETIC = re.compile(r"[\d.\s+\-*/%()]+")
_TOKEN = re.compile(r"\d+\.\d+|\d+|[-+*/%()]")
FOLD_TOKENS = 24
"""The longest run of literal-only arithmetic tokens :func:`folded_constants` evaluates."""


def folded_constants(source: str) -> frozenset[float]:
    """The values of an expression's literal-only arithmetic, and of every part of it.

    ``attrs.kmh_over == (2 + 3) * 2 + 3`` gives 2, 3, 5, 10 and 13; ``rides == 3 * 17``
    gives 3, 17 and 51. Texts and names are left out (``tickets_1y`` is no 1); integer
    division and remainder are CEL's (``27 / 2`` is 13).
    """
    code = _NAME.sub(" @ ", without_literals(source))
    out: set[float] = set()
    for run in _ARITHMETIC.finditer(code):
        tokens = _TOKEN.findall(run.group())[:FOLD_TOKENS]
        for i, j in itertools.combinations(range(len(tokens) + 1), 2):
            value = _fold(tokens[i:j])
            if value is not None:
                out.add(float(value))
    return frozenset(out)


def _fold(tokens: Sequence[str]) -> int | float | None:
    # CEL arithmetic over literal tokens (Python's grammar has CEL's precedence for these
    # operators); None when they are not one whole expression.
    try:
        value = _value(ast.parse(" ".join(tokens), mode="eval").body)
    except (SyntaxError, RecursionError):
        return None
    return value if value is not None and abs(value) <= POINTS_LIMIT else None


def _value(node: ast.expr) -> int | float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand)
        return None if inner is None else -inner if isinstance(node.op, ast.USub) else inner
    if not isinstance(node, ast.BinOp):
        return None
    a, b = _value(node.left), _value(node.right)
    if a is None or b is None or (isinstance(node.op, (ast.Div, ast.Mod)) and b == 0):
        return None
    if isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        return a + b if isinstance(node.op, ast.Add) else a - b \
            if isinstance(node.op, ast.Sub) else a * b
    if not isinstance(node.op, (ast.Div, ast.Mod)):
        return None
    if isinstance(a, int) and isinstance(b, int):  # CEL's: truncated toward zero
        quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        return quotient if isinstance(node.op, ast.Div) else a - b * quotient
    return a / b if isinstance(node.op, ast.Div) else math.fmod(a, b)


def literal_probe_values(sources: Sequence[str],
                         attributes: Mapping[str, CompiledAttribute],
                         ) -> dict[str, tuple[float, ...]]:
    """The numbers expressions compare attributes with, and one either side, per attribute read.

    The numbers written (in texts too: ``string(attrs.days) == '13'`` singles out 13),
    the values of literal-only arithmetic (:func:`folded_constants`), and, when there
    are at most 8 of them, their pairwise sums, differences, products and quotients
    (``attrs.kmh_over * 2 == 26`` singles out 13).
    """
    out: dict[str, set[float]] = {}
    for source in sources:
        names, _ = attribute_reads(source)
        written = {float(n) for n in _NUMBER.findall(source)}
        numbers = written | folded_constants(source)
        paired = numbers if len(numbers) <= 8 else written if len(written) <= 8 else set()
        numbers |= {v for a in paired for b in paired
                    for v in (a * b, a + b, a - b, a / b if b else a)}
        values = {x for n in numbers for x in (n - 1, n, n + 1, -n)}
        for name in names:
            if name in attributes:
                out.setdefault(name, set()).update(values)
    return {k: tuple(sorted(v)) for k, v in out.items()}
