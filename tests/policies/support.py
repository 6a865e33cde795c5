"""Helpers for engine and policy tests: dates, events and policy files."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from trustledger.engine import Event
from trustledger.policy import CompiledPolicy, load_policy, load_register, parse_policy
from trustledger.policy.models import DECLARED_KEYS
from trustledger.policy.register import Register, parse_register

HERE = Path(__file__).parent
POLICIES = HERE.parent.parent / "policies"


def d(text: str) -> datetime:
    """A UTC datetime from ``2026-03-02`` or ``2026-03-02T10:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ev(key: str, type_: str, occurred: str, recorded: str | None = None, *,
       subject: str = "alice", source: str = "src", supersedes: str | None = None,
       seq: int | None = None, **attributes: Any) -> Event:
    """An event; ``recorded`` defaults to ``occurred``."""
    return Event(source, key, subject, type_, d(occurred), d(recorded or occurred),
                 attributes, supersedes, seq)


def example(name: str) -> CompiledPolicy:
    """One of the example policies in ``policies/``."""
    return load_policy(POLICIES / f"{name}.yaml")


def policy_file(name: str) -> CompiledPolicy:
    """One of the test policies in ``tests/policies/``."""
    return load_policy(HERE / f"{name}.yaml")


def split_declarations(text: str) -> tuple[str, str]:
    """An old-style policy text declaring its event types → (register text, policy text).

    The register holds each type's label, description, domain, category, gravity and
    attributes; the policy keeps the rest, with every line it had at the same line number
    (a declaration's lines become blank), so a problem in the policy is reported where the
    old-style text had it. For tests whose subject is the engine, not the register (tests
    of the register use real register documents).
    """
    yaml = YAML(typ="rt")
    yaml.width = 4096
    root = yaml.load(text)
    if not isinstance(root, CommentedMap) or not isinstance(root.get("event_types"),
                                                            CommentedMap):
        raise ValueError("not a policy with an event_types mapping")
    name = root.get("policy")
    declared = CommentedMap()
    for type_name, spec in root["event_types"].items():
        if isinstance(spec, CommentedMap):
            declared[type_name] = CommentedMap(
                (key, spec.pop(key)) for key in DECLARED_KEYS if key in spec)
    register = CommentedMap(register=name if isinstance(name, str) else "test",
                            title=f"Event types of {name}", event_types=declared)
    blanked = _blank_declarations(text)
    safe = YAML(typ="safe")
    expected = YAML(typ="safe").load(_dump(yaml, root))
    policy = blanked if safe.load(blanked) == expected else _dump(yaml, root)
    return _dump(yaml, register), policy


def _blank_declarations(text: str) -> str:
    """``text`` with the lines declaring event types made blank (block style only)."""
    lines = text.splitlines(keepends=True)

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    out = list(lines)
    inside, type_indent, key_indent, skip_above = False, -1, -1, -1
    for i, line in enumerate(lines):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        if skip_above >= 0 and indent(line) > skip_above:
            out[i] = "\n"
            continue
        skip_above = -1
        if indent(line) == 0:
            inside = line.startswith("event_types:")
            type_indent = key_indent = -1
            continue
        if not inside:
            continue
        if type_indent < 0:
            type_indent = indent(line)
        if indent(line) == type_indent:
            key_indent = -1
            continue
        if key_indent < 0:
            key_indent = indent(line)
        key = body.split(":", 1)[0]
        if indent(line) == key_indent and key in DECLARED_KEYS:
            out[i] = "\n"
            skip_above = key_indent
    return "".join(out)


def _dump(yaml: YAML, tree: Any) -> str:
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


def parse_declared(text: str, name: str = "<policy>", **kw: Any) -> CompiledPolicy:
    """Parse an old-style policy text: its declarations become its register.

    ``kw`` goes to :func:`~trustledger.policy.parse_policy` (``models_dir``). A text that is
    no policy mapping is parsed against the shipped register, so its own error shows.
    """
    try:
        register_text, policy_text = split_declarations(text)
    except (YAMLError, ValueError):
        return parse_policy(text, name, register=shipped_register(), **kw)
    register = parse_register(register_text, f"{name} (register)")
    return parse_policy(policy_text, name, register=register, **kw)


def shipped_register() -> Register:
    """The register of the shipped policies (``policies/register.yaml``)."""
    return load_register(POLICIES / "register.yaml")
