"""The one loop head every right's fold starts with: its records, as recorded by a moment."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from trustledger.ledger import Entry


def recorded(entries: Iterable[Entry], kinds: Collection[str],
             at: datetime | None = None) -> Iterator[tuple[Entry, Mapping[str, Any]]]:
    """Each of ``entries`` of one of ``kinds`` recorded by ``at``, with its payload.

    Purged entries (no payload) are left out; ``at=None`` means everything.
    """
    for entry in entries:
        payload = entry.payload
        if payload is None or entry.kind not in kinds:
            continue
        if at is not None and entry.recorded_at > at:
            continue
        yield entry, payload
