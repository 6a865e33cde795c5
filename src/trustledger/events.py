"""The event: an immutable fact about one subject, as the ledger stores it and the engine reads it.

The ledger stores events and hands them to the engine as :class:`Event` values;
the engine never reads storage itself. This module imports nothing from the rest of
trustledger, so the ledger (and the command line) can use :class:`Event` without
loading the engine and the policy stack (``tests/test_cli_startup.py`` guards it);
``trustledger.engine`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RETRACTION = "retraction"
"""Reserved event type: an event of this type with ``supersedes`` withdraws the earlier event."""

REPRESENTABLE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
"""The range of moments the ledger and the engine represent (Python's, in UTC)."""


def in_utc(moment: datetime) -> datetime:
    """An aware moment moved to UTC; :class:`ValueError` when it falls outside the years 1-9999.

    ``0001-01-01T00:00:00+01:00`` is a valid ISO 8601 text whose UTC moment lies before
    the year 1: every date that enters the ledger (``EventIn``), the HTTP API or a command
    is checked here, so it is refused with a message (HTTP 422, exit 2) rather than
    overflowing later.
    """
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside the representable range "
                         f"({REPRESENTABLE}) once moved to UTC") from None


@dataclass(frozen=True, slots=True)
class Event:
    """One reported fact about one subject.

    ``source_event_id`` is the source's own id (its idempotency key); the pair
    ``(source, source_event_id)`` names the event. ``supersedes`` names an
    earlier event *of the same source* that this one corrects (any type) or
    withdraws (type :data:`RETRACTION`). ``occurred_at`` is when it happened,
    ``recorded_at`` when the ledger accepted it; both are timezone-aware UTC.
    ``seq`` is the ledger position, when the event came from a ledger.
    """

    source: str
    source_event_id: str
    subject: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)
    supersedes: str | None = None
    seq: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The event's identity: ``(source, source_event_id)``."""
        return (self.source, self.source_event_id)
