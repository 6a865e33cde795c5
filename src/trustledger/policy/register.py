"""The event-type register: what each event type *is*, declared once, apart from policies.

A register document declares every event type a programme may score: its label,
description, domain, category (the fixed taxonomy), gravity and attribute schema
(the dates the type carries are its ``type: date`` attributes). A policy refers to
registered types and gives them only points, a condition and a life span; it cannot
re-declare what a type is (rule ``register-declares``), nor score a type the register
does not hold (rule ``unregistered-type``).

A register is read, validated and linted like a policy (:func:`parse_register`): the
same YAML bounds, duplicate keys refused, problems at ``file:line:column`` with key path
and rule; the declaration-level safeguards (the word scan, categories, ``category-domain``,
``gravity-cap``) run here, once, for every policy that uses the register.

from trustledger.policy import load_register
register = load_register("policies/register.yaml")
register.domain_of("bill_overdue")              # "utilities"
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import Field, ValidationError

from trustledger.errors import NotFoundError, PolicyError
from trustledger.policy.loader import Locator, pydantic_problem, read_document, read_yaml
from trustledger.policy.models import Attribute, Category, Name, _Model
from trustledger.policy.taxonomy import Gravity

REGISTER_FILE = "register.yaml"
"""The file name :func:`find_register` looks for next to a policy (and in its parents)."""

SCORING_KEYS = ("points", "when", "decay", "expiry", "retention")
"""What a policy says about a type; a register writing one is refused (``policy-scores``)."""


class RegisteredType(_Model):
    """One event type as the register declares it: what it is, not what it is worth."""

    label: str | None = None
    description: str = ""
    domain: Name
    category: Category
    gravity: Gravity
    attributes: dict[Name, Attribute] = Field(default_factory=dict)
    formality: bool = False
    """The type records a formality that starts an entitlement (an identity verified, a
    card issued, an account opened), not conduct: the proportionality probe counts it as
    neutral whatever points a policy gives it, so a privilege everyone holds once it is
    done and one lesser event takes away is weighed as a restriction (safeguard 3). The
    register's two operators declare it; a policy cannot."""

    def display_label(self, name: str) -> str:
        """The label used in reasons: ``label`` or the name with spaces."""
        return self.label or name.replace("_", " ")


class RegisterDocument(_Model):
    """A register document: the event types a programme's policies may score."""

    name: Name = Field(alias="register")
    """The register's name (the document's ``register`` key)."""
    title: str
    description: str = ""
    event_types: dict[Name, RegisteredType] = Field(min_length=1)


@dataclass(frozen=True, eq=False)
class Register:
    """A validated and linted register, named by the hash of its canonical JSON.

    Build one with :func:`parse_register` or :func:`load_register`. The linter runs on
    every construction (there is no unlinted register): :class:`LintError` if a
    declaration breaks a safeguard, :class:`ValueError` if ``hash`` or ``event_types``
    are not the document's.
    """

    name: str
    hash: str
    source: str
    document: RegisterDocument
    event_types: Mapping[str, RegisteredType]
    locator: Locator

    def __post_init__(self) -> None:
        from trustledger.policy.linter import lint_register

        if self.hash != register_hash(self.document) or \
                dict(self.event_types) != self.document.event_types:
            raise ValueError(f"register {self.name}: the hash and event types must be "
                             "those of its document")
        lint_register(self)

    def domain_of(self, event_type: str) -> str:
        """The domain the register declares for ``event_type`` (NotFoundError if absent)."""
        found = self.event_types.get(event_type)
        if found is None:
            raise NotFoundError(f"event type {event_type!r} is not in register {self.name} "
                                f"({self.hash})")
        return found.domain


def register_json_schema() -> dict[str, Any]:
    """The JSON Schema of a register document, for editors and publishing."""
    schema = RegisterDocument.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://trustledger.example/schema/register.json"
    schema["title"] = "trustledger event-type register"
    return schema


def register_hash(document: RegisterDocument) -> str:
    """``sha256:<hex>`` of the register's canonical JSON (comments and layout do not count).

    ``formality: false`` (the default) is left out, so a register that declares no
    formality keeps the hash it had before the flag existed.
    """
    data = document.model_dump(mode="json", by_alias=True)
    for declared in data["event_types"].values():
        if not declared.get("formality"):
            declared.pop("formality", None)
    canonical = json.dumps(data, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=64)
def parse_register(text: str, name: str = "<register>") -> Register:
    """Validate and lint a register document given as YAML text.

    A register is immutable and a pure function of its text, so the last 64 are kept:
    reading the same version again (each publication, each proposal, each ledger that
    puts it in force) costs a lookup instead of a YAML parse and the word scan (about
    0.2 s). Errors are not kept: a bad text is read and refused every time.

    ``name`` is the file name in error locations. Raises
    :class:`~trustledger.errors.PolicyError` (shape) or
    :class:`~trustledger.errors.LintError` (safeguards,
    :func:`~trustledger.policy.linter.lint_register`), each problem naming file, line,
    column, key path and rule.
    """
    root, locator = read_yaml(text, name, kind="register")
    try:
        document = RegisterDocument.model_validate(root)
    except ValidationError as exc:
        problems = [pydantic_problem(error, locator, misplaced=SCORING_KEYS,
                                     rule="policy-scores",
                                     why="is how a policy scores the type, not what the "
                                         "type is; write it in the policy, not the register")
                    for error in exc.errors()]
        raise PolicyError(problems) from exc
    return Register(name=document.name, hash=register_hash(document), source=text,
                    document=document, event_types=MappingProxyType(document.event_types),
                    locator=locator)


def load_register(path: str | Path) -> Register:
    """Read a register file and :func:`parse_register` it (validation and linter always run)."""
    file = Path(path)
    text = read_document(file, "register")
    return parse_register(text, str(file))


def find_register(policy_path: Path) -> Path:
    """The ``register.yaml`` in the policy file's folder or the nearest parent folder."""
    start = Path(policy_path).resolve().parent
    for folder in (start, *start.parents):
        candidate = folder / REGISTER_FILE
        if candidate.is_file():
            try:
                return candidate.relative_to(Path.cwd())
            except ValueError:
                return candidate
    raise NotFoundError(f"no {REGISTER_FILE} next to policy {policy_path} nor in a folder "
                        "above it; pass the event-type register the policy refers to "
                        "(--register FILE)")
