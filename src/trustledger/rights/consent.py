"""Consent: opt-in, per purpose, expiring, revocable — and recorded in the ledger.

Two kinds of consent exist (DESIGN.md safeguard 7):

* an **opt-in** to a scorecard that produces nothing without it
  (``scope="scorecard"``, ``scorecard=NAME``);
* a **decision consent** that lets one relying party ask for this subject's
  decision for one purpose (``scope="decision"``, ``party``, ``purpose``).

Both default to off, may carry an expiry, and are withdrawn by a later entry; a
withdrawal takes effect from the moment it is recorded. Each grant and
withdrawal is a ledger record (kinds :data:`GRANTED` and :data:`WITHDRAWN`), so
consent is as tamper-evident as the events themselves. :func:`active_consents`
is the pure fold; the other functions read and write a ledger.

An erased subject has no consent: erasure purges every grant, no new one is
recorded afterwards (:class:`~trustledger.errors.InputError` naming ``subject``),
and the fold counts none for a subject whose entries show an erasure — so a grant
that slipped in during an erasure, or that an older version recorded after one,
never lets anyone read or subscribe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.ledger.chain import PURGE_KIND
from trustledger.rights.erasure import REASON as ERASURE_REASON
from trustledger.rights.erasure import refuse_if_erased
from trustledger.rights.records import recorded

GRANTED = "consent.granted"
"""Record kind of a consent grant."""
WITHDRAWN = "consent.withdrawn"
"""Record kind of a consent withdrawal; its payload names the grant's ``seq``."""

Scope = Literal["scorecard", "decision"]


@dataclass(frozen=True, slots=True)
class Consent:
    """One grant of consent, as recorded, with its withdrawal if there was one."""

    seq: int
    subject: str
    scope: Scope
    granted_at: datetime
    scorecard: str | None = None
    party: str | None = None
    purpose: str | None = None
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None

    def active_at(self, at: datetime) -> bool:
        """Whether the consent is in force at ``at``: granted, not expired, not withdrawn."""
        if at < self.granted_at:
            return False
        if self.expires_at is not None and at >= self.expires_at:
            return False
        return self.withdrawn_at is None or at < self.withdrawn_at

    def describe(self) -> str:
        """The consent in words, e.g. ``decision for party 'bank-a', purpose 'lending'``."""
        if self.scope == "scorecard":
            return f"opt-in to scorecard {self.scorecard!r}"
        return f"decision for party {self.party!r}, purpose {self.purpose!r}"


def active_consents(entries: Iterable[Entry], at: datetime) -> list[Consent]:
    """Fold consent records (in ledger order) into the consents in force at ``at``.

    Entries of other kinds are ignored; only entries recorded at or before ``at``
    count, so the answer for a past moment is what the ledger said then.
    """
    return [c for c in fold_consents(entries, at) if c.active_at(at)]


def fold_consents(entries: Iterable[Entry], at: datetime | None = None) -> list[Consent]:
    """Every consent among ``entries`` (withdrawals filled in), as recorded by ``at``; pure.

    None if ``entries`` (the subject's) show that the subject was erased by ``at``.
    """
    grants: dict[int, Consent] = {}
    for entry, payload in recorded(entries, (GRANTED, WITHDRAWN, PURGE_KIND), at):
        if entry.kind == PURGE_KIND:
            if payload.get("reason") == ERASURE_REASON:
                return []
            continue
        if entry.kind == GRANTED:
            consent = _consent(entry)
            if consent is not None:
                grants[entry.seq] = consent
        else:
            seq = payload.get("consent_seq")
            if isinstance(seq, int) and seq in grants:
                grants[seq] = replace(grants[seq], withdrawn_at=entry.recorded_at)
    return list(grants.values())


def consents(ledger: Ledger, subject: str, at: datetime | None = None) -> list[Consent]:
    """Every consent the subject ever granted (withdrawals filled in), up to ``at``."""
    return fold_consents(_records(ledger, subject), at)


def opt_ins(ledger: Ledger, subject: str, at: datetime) -> frozenset[str]:
    """Names of the scorecards the subject has opted in to at ``at``."""
    return frozenset(
        c.scorecard
        for c in active_consents(_records(ledger, subject), at)
        if c.scope == "scorecard" and c.scorecard is not None
    )


def grant_opt_in(
    ledger: Ledger, subject: str, scorecard: str, *, expires_at: datetime | None = None
) -> Consent:
    """Record the subject's opt-in to an opt-in scorecard."""
    _require_name("scorecard", scorecard)
    return _grant(ledger, subject, {"scope": "scorecard", "scorecard": scorecard}, expires_at)


def grant_decision_consent(
    ledger: Ledger,
    subject: str,
    party: str,
    purpose: str,
    *,
    expires_at: datetime | None = None,
) -> Consent:
    """Record the subject's consent for one relying party to ask for one purpose."""
    _require_name("party", party)
    _require_name("purpose", purpose)
    payload = {"scope": "decision", "party": party, "purpose": purpose}
    return _grant(ledger, subject, payload, expires_at)


def withdraw_consent(ledger: Ledger, subject: str, consent_seq: int) -> Consent:
    """Withdraw the subject's consent recorded at ``consent_seq``; effective at once.

    Raises :class:`NotFoundError` if the subject has no such consent and
    :class:`InputError` if it was already withdrawn.
    """
    grant = next((c for c in consents(ledger, subject) if c.seq == consent_seq), None)
    if grant is None:
        raise NotFoundError(f"consent_seq: subject {subject!r} has no consent {consent_seq}")
    if grant.withdrawn_at is not None:
        raise InputError(f"consent_seq: consent {consent_seq} was already withdrawn")
    entry = ledger.append_record(WITHDRAWN, {"consent_seq": consent_seq}, subject=subject)
    return replace(grant, withdrawn_at=entry.recorded_at)


def _grant(
    ledger: Ledger, subject: str, payload: dict[str, Any], expires_at: datetime | None
) -> Consent:
    refuse_if_erased(ledger, subject, "no consent")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InputError("expires_at: must be timezone-aware")
        payload["expires_at"] = expires_at.astimezone(UTC).isoformat()
    entry = ledger.append_record(GRANTED, payload, subject=subject)
    consent = _consent(entry)
    if consent is None:  # pragma: no cover - the payload was built just above
        raise InputError("consent: could not be read back")
    return consent


def _require_name(field: str, value: str) -> None:
    if not value or value.strip() != value:
        raise InputError(f"{field}: must be a non-empty name without surrounding spaces")


def _records(ledger: Ledger, subject: str) -> Iterable[Entry]:
    # One pass over the subject's entries; the ledger indexes them by (subject, seq).
    # Purges are read too: after an erasure no consent counts (fold_consents).
    return (e for e in ledger.records(subject=subject)
            if e.kind in (GRANTED, WITHDRAWN, PURGE_KIND))


def _consent(entry: Entry) -> Consent | None:
    payload = entry.payload
    if payload is None or entry.subject is None:
        return None
    expires = payload.get("expires_at")
    scope = payload.get("scope")
    if scope not in ("scorecard", "decision"):
        return None
    return Consent(
        seq=entry.seq,
        subject=entry.subject,
        scope=scope,
        granted_at=entry.recorded_at,
        scorecard=payload.get("scorecard"),
        party=payload.get("party"),
        purpose=payload.get("purpose"),
        expires_at=datetime.fromisoformat(expires) if isinstance(expires, str) else None,
    )
