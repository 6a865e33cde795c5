"""YAML text → validated :class:`~trustledger.policy.models.Policy`, errors pointing at the source.

The YAML is read with ruamel.yaml's round-trip loader, which keeps the line and
column of every key and refuses duplicate keys. A :class:`Locator` keeps that
tree so any later stage (Pydantic validation, compilation, the linter) can turn
a key path such as ``("event_types", "bill_overdue", "points")`` back into
``file:line:column``.

A document is bounded before it is built: at most :data:`MAX_POLICY_BYTES` of
text, :data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` nodes (each alias
counted as the nodes it stands for, so anchors cannot multiply a small text into
a huge tree). Beyond a bound the problem names the file, the line and the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from trustledger.errors import (
    InputError,
    NotFoundError,
    PolicyError,
    PolicyProblem,
    SourceLocation,
)
from trustledger.policy.models import DECLARED_KEYS, Policy

PathPart = str | int
"""One step of a key path: a mapping key or a list index."""

MAX_POLICY_BYTES = 1024 * 1024
"""Largest policy document, in bytes of UTF-8 text (the example policies are under 10 KiB)."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists in a policy (the example policies reach 7)."""
MAX_NODES = 200_000
"""Most nodes (keys, values, items) in a policy, an alias counting as what it stands for."""


class _TooLarge(Exception):
    """A bound of the document was crossed (rule, message, line, column)."""

    def __init__(self, rule: str, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.rule, self.message, self.line, self.column = rule, message, line, column


class _BoundedComposer(Composer):
    """ruamel's composer, refusing depth beyond :data:`MAX_DEPTH`, nodes beyond :data:`MAX_NODES`.

    The composer is recursive: without the depth bound, ``[[[[...`` a few thousand
    deep exhausts Python's stack.
    """

    def compose_document(self) -> Any:
        self._level = 0
        self._nodes = 0
        self._sizes: dict[Any, int] = {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        mark = event.start_mark
        where = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        if isinstance(event, AliasEvent):
            size = self._sizes.get(event.anchor)
            if size is None and event.anchor in self.anchors:
                raise _TooLarge("policy-alias", f"alias *{event.anchor} refers to a node "
                                "that contains it; a policy cannot be recursive", *where)
            self._count(size or 1, where)
            return super().compose_node(parent, index)
        self._level += 1
        if self._level > MAX_DEPTH:
            raise _TooLarge("policy-too-deep", f"nesting deeper than {MAX_DEPTH} levels (the "
                            f"limit of a policy document)", *where)
        before = self._nodes
        self._count(1, where)
        node = super().compose_node(parent, index)
        if event.anchor is not None:
            self._sizes[event.anchor] = self._nodes - before
        self._level -= 1
        return node

    def _count(self, nodes: int, where: tuple[int | None, int | None]) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _TooLarge("policy-too-large", f"more than {MAX_NODES:,} nodes (keys, values, "
                            "items; an alias counts as the nodes it repeats): the limit of a "
                            "policy document", *where)


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


def read_document(path: Path, what: str) -> str:
    """The text of a ``what`` file (``policy``, ``register``), read as UTF-8.

    A missing file is :class:`NotFoundError`, an unreadable one :class:`InputError`,
    each naming it.
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(f"{what} file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {path}: {exc}") from exc


def read_yaml(text: str, file: str, *, kind: str = "policy") -> tuple[Any, Locator]:
    """Parse YAML text (duplicate keys refused) and return the tree and its locator.

    The document's size, nesting depth and node count are bounded (see the module doc);
    ``kind`` (``policy`` or ``register``) names the document in messages.
    """
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_POLICY_BYTES:
        line = text.encode("utf-8", errors="surrogatepass")[:MAX_POLICY_BYTES].count(b"\n") + 1
        raise PolicyError([PolicyProblem(
            SourceLocation(file, line, None, ""), "policy-too-large",
            f"the document is {size:,} bytes, more than the {MAX_POLICY_BYTES:,} a policy may "
            f"have (line {line} crosses the limit)")])
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Composer = _BoundedComposer
    try:
        root = yaml.load(text)
    except _TooLarge as exc:
        problem = PolicyProblem(SourceLocation(file, exc.line, exc.column, ""), exc.rule,
                                exc.message)
        raise PolicyError([problem]) from None
    except DuplicateKeyError as exc:
        raise PolicyError([_yaml_problem(exc, file, "duplicate-key")]) from exc
    except MarkedYAMLError as exc:
        raise PolicyError([_yaml_problem(exc, file, "yaml-syntax")]) from exc
    except YAMLError as exc:
        problem = PolicyProblem(SourceLocation(file, None, None, ""), "yaml-syntax", str(exc))
        raise PolicyError([problem]) from exc
    locator = Locator(file, root)
    if not isinstance(root, CommentedMap):
        keys = "policy, event_types, scorecards" if kind == "policy" else \
            "register, title, event_types"
        raise PolicyError([PolicyProblem(
            SourceLocation(file, 1, 1, ""), "schema",
            f"a {kind} document is a YAML mapping with keys such as {keys}",
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
        problems = [pydantic_problem(error, locator, misplaced=DECLARED_KEYS,
                                     rule="register-declares",
                                     why="is what the type is, which the event-type register "
                                         "declares once for every policy; a policy gives a "
                                         "registered type only points, when, decay, expiry "
                                         "and retention")
                    for error in exc.errors()]
        raise PolicyError(problems) from exc


def pydantic_problem(error: Any, locator: Locator, *, misplaced: Sequence[str] = (),
                     rule: str = "schema", why: str = "") -> PolicyProblem:
    """A Pydantic error as a located problem (rule ``schema``).

    An unknown key under ``event_types.<name>`` that is one of ``misplaced`` (keys that
    belong to the other document, register or policy) is refused with ``rule``: the key
    ``why``.
    """
    # Union tags ("points:lookup") are Pydantic's bookkeeping, not keys of the document.
    path = [p for p in error["loc"] if not (isinstance(p, str) and ":" in p)]
    kind = error["type"]
    if (kind == "extra_forbidden" and len(path) == 3 and path[0] == "event_types"
            and path[-1] in misplaced):
        return locator.problem(path, rule, f"`{path[-1]}` of event type `{path[1]}` {why}")
    if kind == "missing":
        message = f"required key `{path[-1]}` is missing"
    elif kind == "extra_forbidden":
        message = f"unknown key `{path[-1]}`"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    return locator.problem(path, "schema", message)
