"""Retention: payloads of events past their type's retention are purged (safeguard 8).

Each event type declares ``retention`` (docs/policy-language.md): the event counts
at most until ``occurred_at + retention`` and its payload is purged then.
:func:`maintain` (``trustledger maintain``) does the purging with the policy in
force, through :meth:`~trustledger.ledger.Ledger.purge_payload`, so the chain still
verifies. Along with an event past retention it purges what only made sense with it:

* the events it supersedes (otherwise an original would come back once its
  correction is gone);
* retractions of it (a withdrawal of nothing);
* dispute records about it (the subject's reasons, the source's answer, the review).

Purge entries give the reason ``retention`` and nothing else (an event's type says
something about its subject). The run is recorded as a ``retention.maintained``
record with no subject: the policy, the moment it ran for, and how many payloads it
purged. Purged events are no longer read by scoring, so afterwards a subject's
score is the score computed without them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from trustledger.engine import RETRACTION, Event
from trustledger.ledger import Ledger
from trustledger.policy import CompiledPolicy
from trustledger.rights import fields
from trustledger.rights.dispute import KINDS as DISPUTE_KINDS
from trustledger.rights.dispute import OPENED
from trustledger.rights.erasure import purge

MAINTAINED = "retention.maintained"
"""Record kind of one retention run (no subject, no personal data)."""
REASON = "retention"
"""The purge reason of every payload retention purges."""


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What one retention run did."""

    seq: int
    recorded_at: datetime
    as_of: datetime
    policy: str
    policy_hash: str
    events_purged: int
    records_purged: int


def past_retention(
    policy: CompiledPolicy, events: Iterable[Event], now: datetime
) -> list[Event]:
    """The events to purge at ``now``: past their type's retention, and what goes with them.

    Pure. An event is past retention when ``occurred_at + retention <= now`` for
    its type in ``policy`` (types the policy does not know are kept). With it go the
    events it supersedes, and retractions whose target is past retention or gone.
    """
    fields.moment("now", now)
    present = {e.key: e for e in events}
    due = set()
    for key, event in present.items():
        etype = policy.event_types.get(event.type)
        if etype is not None and etype.retention.after(event.occurred_at) <= now:
            due.add(key)
    grown = True
    while grown:
        grown = False
        for key, event in present.items():
            if event.supersedes is None:
                continue
            target = (event.source, event.supersedes)
            if key in due and target in present and target not in due:
                due.add(target)
                grown = True
            if key not in due and event.type == RETRACTION and (
                    target in due or target not in present):
                due.add(key)
                grown = True
    return [event for key, event in present.items() if key in due]


def maintain(ledger: Ledger, policy: CompiledPolicy, now: datetime) -> Maintenance:
    """Purge every payload past retention at ``now`` under ``policy``; record the run.

    Raises :class:`~trustledger.errors.InputError` for a naive ``now``; nothing
    changes then. Running it again purges only what has come due since.
    """
    fields.moment("now", now)
    due = past_retention(policy, ledger.events(), now)
    events_purged = 0
    for event in due:
        if event.seq is not None and purge(ledger, event.seq, REASON) is not None:
            events_purged += 1
    seqs = {e.seq for e in due}
    records_purged = 0
    for subject in sorted({e.subject for e in due}):
        for seq in _dispute_records(ledger, subject, seqs):
            if purge(ledger, seq, REASON) is not None:
                records_purged += 1
    record = ledger.append_record(MAINTAINED, {
        "policy": policy.name, "policy_hash": policy.hash, "as_of": now.isoformat(),
        "events_purged": events_purged, "records_purged": records_purged,
    })
    return Maintenance(record.seq, record.recorded_at, now, policy.name, policy.hash,
                       events_purged, records_purged)


def _dispute_records(ledger: Ledger, subject: str, event_seqs: set[int | None]) -> list[int]:
    """Seqs of the subject's dispute records about the given events (unpurged ones)."""
    disputes: set[int] = set()
    found = []
    for entry in ledger.records(subject=subject):
        payload = entry.payload
        if entry.kind not in DISPUTE_KINDS or payload is None:
            continue
        if entry.kind == OPENED:
            if payload.get("event_seq") in event_seqs:
                disputes.add(entry.seq)
                found.append(entry.seq)
        elif payload.get("dispute_seq") in disputes:
            found.append(entry.seq)
    return found
