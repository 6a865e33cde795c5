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

import cel

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


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
