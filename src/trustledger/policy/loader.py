"""YAML text → validated :class:`~trustledger.policy.models.Policy`, errors pointing at the source.

The YAML is read with ruamel.yaml's round-trip loader, which keeps the line and
column of every key and refuses duplicate keys. A :class:`Locator` keeps that
tree so any later stage (Pydantic validation, compilation, the linter) can turn
a key path such as ``("event_types", "bill_overdue", "points")`` back into
``file:line:column``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from trustledger.errors import PolicyError, PolicyProblem, SourceLocation
from trustledger.policy.models import Policy

PathPart = str | int
"""One step of a key path: a mapping key or a list index."""


def format_path(path: Sequence[PathPart]) -> str:
    """``("scorecards", "x", "tiers", 2, "min")`` → ``scorecards.x.tiers[2].min``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Locator:
    """Maps key paths of one policy document to file, line and column."""

    def __init__(self, file: str, root: Any) -> None:
        self.file = file
        self._root = root

    def locate(self, path: Sequence[PathPart]) -> SourceLocation:
        """The location of the deepest node of ``path`` present in the document.

        Line and column are 1-based; the key path is always the full ``path``
        even when its tail is missing from the document (a missing key is
        reported at its parent).
        """
        node = self._root
        line: int | None = 1 if isinstance(node, CommentedMap) else None
        column: int | None = 1 if line else None
        for part in path:
            if isinstance(node, CommentedMap) and part in node:
                row, col = node.lc.key(part)
                node = node[part]
            elif (isinstance(node, CommentedSeq) and isinstance(part, int)
                  and 0 <= part < len(node)):
                row, col = node.lc.item(part)
                node = node[part]
            else:
                break
            line, column = row + 1, col + 1
        return SourceLocation(self.file, line, column, format_path(path))

    def problem(self, path: Sequence[PathPart], rule: str, message: str) -> PolicyProblem:
        """A :class:`PolicyProblem` located at ``path``."""
        return PolicyProblem(self.locate(path), rule, message)


def read_yaml(text: str, file: str) -> tuple[Any, Locator]:
    """Parse YAML text (duplicate keys refused) and return the tree and its locator."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        root = yaml.load(text)
    except DuplicateKeyError as exc:
        raise PolicyError([_yaml_problem(exc, file, "duplicate-key")]) from exc
    except MarkedYAMLError as exc:
        raise PolicyError([_yaml_problem(exc, file, "yaml-syntax")]) from exc
    except YAMLError as exc:
        problem = PolicyProblem(SourceLocation(file, None, None, ""), "yaml-syntax", str(exc))
        raise PolicyError([problem]) from exc
    locator = Locator(file, root)
    if not isinstance(root, CommentedMap):
        raise PolicyError([PolicyProblem(
            SourceLocation(file, 1, 1, ""), "schema",
            "a policy document is a YAML mapping with keys such as policy, event_types, "
            "scorecards",
        )])
    return root, locator


def _yaml_problem(exc: MarkedYAMLError, file: str, rule: str) -> PolicyProblem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
    return PolicyProblem(SourceLocation(file, line, column, ""), rule, message or str(exc))


def validate(root: Any, locator: Locator) -> Policy:
    """Validate the YAML tree against the models; every problem names its source location."""
    try:
        return Policy.model_validate(root)
    except ValidationError as exc:
        problems = [_pydantic_problem(error, locator) for error in exc.errors()]
        raise PolicyError(problems) from exc


def _pydantic_problem(error: Any, locator: Locator) -> PolicyProblem:
    # Union tags ("points:lookup") are Pydantic's bookkeeping, not keys of the document.
    path = [p for p in error["loc"] if not (isinstance(p, str) and ":" in p)]
    kind = error["type"]
    if kind == "missing":
        message = f"required key `{path[-1]}` is missing"
    elif kind == "extra_forbidden":
        message = f"unknown key `{path[-1]}`"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return locator.problem(path, "schema", message)
