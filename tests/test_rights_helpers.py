"""Helpers shared by the subject-rights tests: an injectable clock, events, policies, CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from trustledger.engine import Event
from trustledger.ledger import EventIn, Ledger
from trustledger.policy import CompiledPolicy, load_policy
from trustledger.rights.commands import register

ROOT = Path(__file__).resolve().parent.parent
DRIVING_FILE = ROOT / "tests" / "policies" / "driving.yaml"
SESAME_FILE = ROOT / "policies" / "sesame.yaml"
T0 = datetime(2026, 1, 1, tzinfo=UTC)



def driving() -> CompiledPolicy:
    return load_policy(DRIVING_FILE)


def sesame() -> CompiledPolicy:
    return load_policy(SESAME_FILE)


def offence(subject: str, key: str, kind: str, occurred: datetime, *, source: str = "police",
            supersedes: str | None = None, **attributes: Any) -> EventIn:
    """A driving-policy event (``kind`` is the type without ``offence_``, or a full type)."""
    type_ = kind if kind in ("remedial_course", "retraction") or kind.startswith("offence_") \
        else f"offence_{kind}"
    return EventIn(source=source, source_event_id=key, subject=subject, type=type_,
                   occurred_at=occurred, attributes=attributes, supersedes=supersedes)


def event(subject: str, key: str, type_: str, occurred: datetime, *, source: str = "src",
          recorded: datetime | None = None, supersedes: str | None = None,
          seq: int | None = None, **attributes: Any) -> Event:
    """An engine event (for pure tests without a ledger)."""
    return Event(source, key, subject, type_, occurred, recorded or occurred, attributes,
                 supersedes, seq)


def seqs(ledger: Ledger, subject: str) -> dict[str, int]:
    """``source_event_id -> seq`` of the subject's events."""
    return {e.source_event_id: e.seq for e in ledger.events(subject) if e.seq is not None}


def cli_app() -> typer.Typer:
    """A Typer app with only this area's commands (as cli.py will register them)."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """trustledger (rights commands)."""

    register(app)
    return app
