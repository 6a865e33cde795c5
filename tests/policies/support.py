"""Helpers for engine and policy tests: dates, events and policy files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustledger.engine import Event
from trustledger.policy import CompiledPolicy, load_policy

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
