"""Scoring from the ledger: published policy versions, and one subject's evaluation.

This is the one place that joins storage and the pure engine: it reads a
subject's events and opt-ins from the ledger and calls
:func:`trustledger.engine.evaluate`; every path that scores a subject from the
ledger (CLI, service) goes through :func:`evaluate_subject`.

A policy version is published by appending a :data:`PUBLISHED` record holding
its full YAML text, content hash and ``effective_from``; the version in force at
a moment is the published one with the latest ``effective_from`` at or before
it (of two with the same date, the later published).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from trustledger.engine import Evaluation, evaluate
from trustledger.errors import NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.policy import CompiledPolicy, load_policy, parse_policy
from trustledger.rights import opt_ins

PUBLISHED = "policy.published"
"""Record kind of a policy publication."""


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    """A policy version as recorded in the ledger."""

    seq: int
    name: str
    hash: str
    effective_from: datetime
    published_at: datetime
    source: str

    def compile(self) -> CompiledPolicy:
        """Compile (and lint) the recorded text again."""
        return parse_policy(self.source, f"ledger:{self.seq}:{self.name}")


def publish_policy(ledger: Ledger, path: str | Path) -> PublishedPolicy:
    """Validate, lint and publish a policy file; the earlier record if already published.

    Raises :class:`~trustledger.errors.PolicyError` or
    :class:`~trustledger.errors.LintError` (nothing is recorded then).
    """
    policy = load_policy(path)
    text = Path(path).read_text(encoding="utf-8")
    for known in published_policies(ledger):
        if known.hash == policy.hash:
            return known
    entry = ledger.append_record(
        PUBLISHED,
        {
            "name": policy.name,
            "hash": policy.hash,
            "effective_from": policy.effective_from.isoformat(),
            "source": text,
        },
    )
    published = _published(entry)
    assert published is not None  # the payload was written just above
    return published


def published_policies(ledger: Ledger) -> list[PublishedPolicy]:
    """Every published policy version, in publication order."""
    return [p for e in ledger.records(kind=PUBLISHED) if (p := _published(e)) is not None]


def policy_in_force(ledger: Ledger, at: datetime) -> PublishedPolicy:
    """The published version in force at ``at``; :class:`NotFoundError` if none is."""
    candidates = [p for p in published_policies(ledger) if p.effective_from <= at]
    if not candidates:
        raise NotFoundError(f"no published policy is in force at {at.isoformat()}")
    return max(candidates, key=lambda p: (p.effective_from, p.seq))


def evaluate_subject(
    ledger: Ledger,
    subject: str,
    policy: CompiledPolicy,
    valid_at: datetime,
    known_at: datetime | None = None,
) -> Evaluation:
    """Evaluate one subject from the ledger.

    Events are those recorded by ``known_at`` (all, if ``None``); opt-ins are those
    in force at ``known_at`` (or at ``valid_at`` if ``known_at`` is ``None``).
    Raises :class:`~trustledger.errors.NotFoundError` for a subject with no events.
    """
    events = list(ledger.events(subject, known_at=known_at))
    if not events:
        raise NotFoundError(f"subject {subject!r} has no events in the ledger")
    consented = opt_ins(ledger, subject, known_at or valid_at) & set(policy.scorecards)
    return evaluate(policy, events, valid_at, known_at, opt_ins=consented)


def _published(entry: Entry) -> PublishedPolicy | None:
    payload = entry.payload
    if payload is None:
        return None
    return PublishedPolicy(
        seq=entry.seq,
        name=str(payload["name"]),
        hash=str(payload["hash"]),
        effective_from=datetime.fromisoformat(str(payload["effective_from"])),
        published_at=entry.recorded_at,
        source=str(payload["source"]),
    )
