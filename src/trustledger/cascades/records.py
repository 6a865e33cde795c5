"""The ledger records the cascades write about a subject, and their fold for the subject's report.

* :data:`SUBSCRIBED` — a relying party subscribed to the subject's decision for a purpose;
* :data:`ENDED` — that subscription ended (consent withdrawn or expired, cancelled, erased);
* :data:`NOTIFIED` — a notification about the subject reached its final state:
  ``delivered`` (the party's endpoint answered 2xx) or ``dead`` (given up after the
  bounded number of attempts; the party may still have received it).

None of them changes the subject's evaluation. The subject's report lists every
:data:`NOTIFIED` record (:func:`fold_notices`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from trustledger.ledger import Entry

SUBSCRIBED = "cascade.subscribed"
"""Record kind of a new subscription (id, party, purpose, consent; no URL or secret)."""
ENDED = "cascade.ended"
"""Record kind of a subscription ended, with the reason."""
NOTIFIED = "cascade.notified"
"""Record kind of a notification delivered (or given up on) about the subject."""
KINDS = frozenset({SUBSCRIBED, ENDED, NOTIFIED})
"""Every record kind of the cascades: none of them changes a decision."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification sent about the subject: to whom, for what, why, and its fate."""

    seq: int
    at: datetime
    notification: str
    party: str
    purpose: str
    type: str
    cause: str
    status: str
    attempts: int


def fold_notices(entries: Iterable[Entry], at: datetime | None = None) -> list[Notice]:
    """The :data:`NOTIFIED` records among ``entries`` recorded by ``at``, in ledger order."""
    out = []
    for entry in entries:
        payload = entry.payload
        if entry.kind != NOTIFIED or payload is None:
            continue
        if at is not None and entry.recorded_at > at:
            continue
        out.append(Notice(
            seq=entry.seq, at=entry.recorded_at, notification=str(payload.get("id", "")),
            party=str(payload.get("party", "")), purpose=str(payload.get("purpose", "")),
            type=str(payload.get("type", "")), cause=str(payload.get("cause", "")),
            status=str(payload.get("status", "")), attempts=int(payload.get("attempts", 0)),
        ))
    return out
