"""Erasure: on a valid request, every payload about a subject is purged (safeguard 8).

Subject ids are pseudonyms: the link between an id and a real person lives with
the operator, outside the ledger. An entry's header — seq, kind, subject id,
source, the source's event id, ``recorded_at``, the payload's hash — is part of
the hash chain and stays; every payload about the subject (events, consents,
disputes, reviews, the access log, ...) is purged through
:meth:`~trustledger.ledger.Ledger.purge_payload` with the reason ``erasure``, so
:meth:`~trustledger.ledger.Ledger.verify` still passes. The erasure itself is
recorded as an ``erasure`` record with no subject and no personal data: only how
many payloads were purged and the seqs of the first and last purge entries.

After erasure no score is computed for the subject
(:func:`trustledger.scoring.evaluate_subject` raises
:class:`~trustledger.errors.ErasedError`: "no data"). Relying parties are never told:
the subject has no consent any more (see :mod:`trustledger.rights.consent`), so
they get what they get for a subject they never heard of.
Events about the same id that arrive later are kept unscored; erasing again
purges them too.

The purges are one transaction each. If a run is interrupted, the subject is
already treated as erased (no score) and running :func:`erase` again purges
what is left; a subject with nothing left to purge cannot be erased twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.ledger.chain import PURGE_KIND
from trustledger.rights import fields

ERASED = "erasure"
"""Record kind of a completed erasure (no subject, no personal data)."""
REASON = "erasure"
"""The purge reason of every payload an erasure purges."""


@dataclass(frozen=True, slots=True)
class Erasure:
    """A completed erasure: its record, when, and how many payloads it purged."""

    seq: int
    recorded_at: datetime
    purged: int
    first_purge_seq: int | None
    last_purge_seq: int | None


def erased_at(entries: Iterable[Entry]) -> datetime | None:
    """When the subject whose entries these are was erased (first erasure purge); ``None``: never.

    Pure: the entries are the subject's own (``ledger.records(subject=...)``).
    """
    for entry in entries:
        if entry.kind == PURGE_KIND and entry.payload is not None \
                and entry.payload.get("reason") == REASON:
            return entry.recorded_at
    return None


def is_erased(ledger: Ledger, subject: str) -> bool:
    """Whether the subject was erased."""
    return erased_at(ledger.records(kind=PURGE_KIND, subject=subject)) is not None


def refuse_if_erased(ledger: Ledger, subject: str, what: str) -> None:
    """Refuse recording ``what`` about an erased subject: :class:`InputError` naming ``subject``.

    After an erasure nothing new is recorded about the subject by the rights (no
    consent, so no subscription) nor by the operator (no new key).
    """
    when = erased_at(ledger.records(kind=PURGE_KIND, subject=subject))
    if when is not None:
        raise InputError(f"subject: {subject!r} was erased on request on {fields.day(when)}; "
                         f"nothing new is recorded about an erased subject ({what})")


def erase(ledger: Ledger, subject: str) -> Erasure:
    """Purge every payload about ``subject`` and record the erasure without personal data.

    Raises :class:`NotFoundError` (``subject``) when the ledger has nothing about
    the subject and :class:`InputError` when it was erased already and nothing is
    left to purge; nothing changes then.
    """
    fields.name("subject", subject)
    entries = list(ledger.records(subject=subject))
    if not entries:
        raise NotFoundError(f"subject: the ledger has nothing about {subject!r}")
    left = [e.seq for e in entries if e.payload is not None and e.kind != PURGE_KIND]
    if not left:
        when = erased_at(entries)
        if when is not None:
            raise InputError(f"subject: {subject!r} was already erased on {fields.day(when)}")
        raise InputError(f"subject: every payload about {subject!r} is already purged")
    purges = [seq for seq in (purge(ledger, seq, REASON) for seq in left) if seq is not None]
    if not purges:
        raise InputError(f"subject: every payload about {subject!r} is already purged")
    record = ledger.append_record(
        ERASED,
        {"purged": len(purges), "first_purge_seq": purges[0], "last_purge_seq": purges[-1]},
    )
    return Erasure(record.seq, record.recorded_at, len(purges), purges[0], purges[-1])


def purge(ledger: Ledger, seq: int, reason: str) -> int | None:
    """Purge one payload; the purge entry's seq, ``None`` if another process purged it first.

    Retention and erasure may run at the same time; a payload one of them purged is
    simply skipped by the other.
    """
    try:
        return ledger.purge_payload(seq, reason).seq
    except InputError:
        if ledger.entry(seq).payload is None:
            return None
        raise
