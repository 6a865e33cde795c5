"""CEL expressions of a policy, compiled once at load and run many times.

CEL (the Common Expression Language) is small, side-effect free and always
terminates; it is never Python ``eval``. An expression's free names are known
statically (:meth:`cel.Program.variables`), which lets the compiler refuse
unknown names and the linter trace which events can reach a condition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from trustledger.cel_runtime import cel
from trustledger.errors import PolicyError, PolicyProblem, SourceLocation


@dataclass(frozen=True, eq=False)
class Expression:
    """One compiled CEL expression with its source text, free names and location."""

    source: str
    program: cel.Program
    names: frozenset[str]
    location: SourceLocation
    beyond_score: frozenset[str] = frozenset()
    """Names used otherwise than as ``name.score`` (they need the tier and rank too)."""

    def run(self, context: dict[str, Any] | cel.Context) -> Any:
        """Evaluate against ``context``; a CEL error becomes a located :class:`PolicyError`."""
        try:
            return self.program.execute(context)
        except (RuntimeError, TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
            raise PolicyError([PolicyProblem(
                self.location, "expression-error",
                f"`{self.source}` failed: {_first_line(exc)}",
            )]) from exc

    def run_bool(self, context: dict[str, Any] | cel.Context) -> bool:
        """Evaluate a condition; anything but ``true``/``false`` is a :class:`PolicyError`."""
        result = self.run(context)
        if not isinstance(result, bool):
            raise PolicyError([PolicyProblem(
                self.location, "expression-type",
                f"condition `{self.source}` gave {result!r}, not true or false",
            )])
        return result


def compile_expression(source: str, location: SourceLocation) -> Expression:
    """Compile CEL ``source``; a syntax error is a :class:`PolicyError` naming line and column.

    The location is the expression's key in the YAML file; the message adds the
    line and column inside the expression.
    """
    try:
        program = cel.compile(source)
    except ValueError as exc:
        # CEL's own message says where inside the expression ("<input>:1:10"), with a caret.
        detail = str(exc).split("ERROR: ", 1)[-1].replace("<input>:", "expression position ")
        raise PolicyError([PolicyProblem(location, "expression-syntax",
                                         f"`{source}` is not valid CEL: {detail}")]) from exc
    names = frozenset(program.variables())
    # Converting a map into CEL costs per key, so a scorecard is passed as {score} alone
    # unless the expression reads more of it (an over-estimate here is harmless).
    beyond = frozenset(n for n in names
                       if re.search(rf"\b{re.escape(n)}\b(?!\s*\.\s*score\b)", source))
    return Expression(source, program, names, location, beyond)


_LITERAL = re.compile(
    r"[rRbB]{0,2}"
    r"('''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")")
_ATTRS = re.compile(r"\battrs\b(\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\())?")


def string_literals(source: str) -> list[str]:
    """The string literals of a CEL expression, without their quotes (``'A'`` → ``A``)."""
    out = []
    for match in _LITERAL.finditer(source):
        text = match.group(1)
        quote = 3 if text[:3] in ("'''", '"""') else 1
        body = text[quote:-quote]
        out.append(body if match.group(0)[:1] in "rR" else _ESCAPE.sub(_unescape, body))
    return out


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|[0-3][0-7]{2}|.)")


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] in "uUx":
        return chr(int(code[1:], 16))
    if code[0].isdigit():
        return chr(int(code, 8))
    return {"n": "\n", "t": "\t", "r": "\r"}.get(code, code)


def without_literals(source: str) -> str:
    """The expression with every string literal emptied (``'10 days'`` → ``""``)."""
    return _LITERAL.sub('""', source)


def attribute_reads(source: str) -> tuple[frozenset[str], bool]:
    """The attributes an expression reads as ``attrs.NAME``, and whether it reads ``attrs`` else.

    ``attrs`` read otherwise: ``attrs['x']``, a macro over ``attrs``, ``'x' in attrs``.
    String literals are left out: ``'attrs'`` in a text is not a read.
    """
    code = without_literals(source)
    names = set()
    other = False
    for match in _ATTRS.finditer(code):
        if match.group(2) is None:
            other = True
        else:
            names.add(match.group(2))
    return frozenset(names), other


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
