"""Disputes: a subject contests an event; its source verifies, corrects or retracts it.

Safeguard 6 (DESIGN.md): a disputed *adverse* event stops counting against the
subject while the dispute is open; if its source has not verified it within the
SLA — 30 days from the dispute, 45 when the subject added new information within
the first 30 — it is removed from scoring; a reviewer can resolve a dispute at
any time. Every step is a ledger record about the subject:

==============================  =====================================================
kind                            payload
==============================  =====================================================
``dispute.opened``              ``event_seq``, ``source``, ``source_event_id``,
                                ``reason``, ``new_information``
``dispute.information_added``   ``dispute_seq``, ``text``
``dispute.source_answered``     ``dispute_seq``, ``source``, ``answer``
                                (verified / corrected / retracted), ``note``,
                                ``event_seq`` of the correcting or retracting event
``dispute.resolved``            ``dispute_seq``, ``reviewer``, ``outcome``
                                (``valid``: the event counts again; ``invalid``: it
                                is removed for good), ``reason``
==============================  =====================================================

A correction or retraction is an ordinary event of the source that ``supersedes``
the disputed one, appended through the ledger's normal path before the answer is
recorded. Status is derived from ``recorded_at`` alone (:meth:`Dispute.status_at`),
so the SLA is tested with an injected clock and "what did the ledger say on a
date" stays reproducible; an answer recorded after the deadline is kept but does
not bring a lapsed event back (only a reviewer can).

:func:`fold_disputes`, :func:`is_adverse` and :func:`split_disputed` are pure; the
other functions read and write a ledger. Scoring applies them in
:func:`trustledger.scoring.assess_subject`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from trustledger.engine import RETRACTION, Event
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Entry, EventIn, Ledger
from trustledger.ledger.chain import EVENT_KIND
from trustledger.ledger.models import validation_problems
from trustledger.policy import CompiledPolicy
from trustledger.policy.models import MeasureKind
from trustledger.rights import fields
from trustledger.rights.records import recorded

OPENED = "dispute.opened"
"""Record kind: a subject disputes one of its events."""
INFORMATION_ADDED = "dispute.information_added"
"""Record kind: the subject adds information to an open dispute."""
ANSWERED = "dispute.source_answered"
"""Record kind: the event's source verified, corrected or retracted it."""
RESOLVED = "dispute.resolved"
"""Record kind: a reviewer resolved the dispute."""
KINDS = (OPENED, INFORMATION_ADDED, ANSWERED, RESOLVED)
"""Every dispute record kind."""

SLA = timedelta(days=30)
"""How long a source has to verify a disputed event."""
SLA_WITH_NEW_INFORMATION = timedelta(days=45)
"""The SLA when the subject added new information within the first :data:`SLA`."""


class Answer(StrEnum):
    """What the source said about the disputed event."""

    VERIFIED = "verified"
    CORRECTED = "corrected"
    RETRACTED = "retracted"


class Outcome(StrEnum):
    """A reviewer's finding about the disputed event."""

    VALID = "valid"
    """The event is valid: it counts again."""
    INVALID = "invalid"
    """The event is invalid: it is removed from scoring for good."""


class DisputeStatus(StrEnum):
    """Where a dispute stands at a moment."""

    OPEN = "open"
    """Waiting for the source; the event does not count against the subject."""
    VERIFIED = "verified"
    """The source verified the event within the SLA; it counts again."""
    CORRECTED = "corrected"
    """The source corrected the event; the correction counts instead."""
    RETRACTED = "retracted"
    """The source withdrew the event."""
    LAPSED = "lapsed"
    """Not verified within the SLA; the event is removed from scoring."""
    VALID = "valid"
    """A reviewer found the event valid; it counts again."""
    INVALID = "invalid"
    """A reviewer found the event invalid; it is removed from scoring."""


LEAVES_OUT = frozenset({DisputeStatus.OPEN, DisputeStatus.LAPSED, DisputeStatus.INVALID})
"""Statuses in which a disputed adverse event is left out of scoring."""


@dataclass(frozen=True, slots=True)
class Information:
    """Information the subject added to a dispute."""

    seq: int
    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class SourceAnswer:
    """The source's answer; ``event_seq`` is its correcting or retracting event."""

    seq: int
    at: datetime
    source: str
    answer: Answer
    note: str
    event_seq: int | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """A reviewer's resolution, with the written reason the subject sees."""

    seq: int
    at: datetime
    reviewer: str
    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class Dispute:
    """One dispute about one event, with everything recorded about it since."""

    seq: int
    subject: str
    event_seq: int
    source: str
    source_event_id: str
    reason: str
    opened_at: datetime
    new_information: bool = False
    information: tuple[Information, ...] = ()
    answer: SourceAnswer | None = None
    resolution: Resolution | None = None

    @property
    def event(self) -> tuple[str, str]:
        """The disputed event's identity: ``(source, source_event_id)``."""
        return (self.source, self.source_event_id)

    @property
    def deadline(self) -> datetime:
        """When the SLA ends: 30 days after opening, 45 with new information in time."""
        first = self.opened_at + SLA
        extended = self.new_information or any(i.at < first for i in self.information)
        return self.opened_at + (SLA_WITH_NEW_INFORMATION if extended else SLA)

    def status_at(self, at: datetime) -> DisputeStatus:
        """The status at ``at`` from what was recorded by then (see :class:`DisputeStatus`)."""
        if self.resolution is not None and self.resolution.at <= at:
            return DisputeStatus(self.resolution.outcome.value)
        answer = self.answer
        if answer is not None and answer.at <= at:
            if answer.answer is Answer.CORRECTED:
                return DisputeStatus.CORRECTED
            if answer.answer is Answer.RETRACTED:
                return DisputeStatus.RETRACTED
            if answer.at < self.deadline:
                return DisputeStatus.VERIFIED
        return DisputeStatus.LAPSED if at >= self.deadline else DisputeStatus.OPEN

    def leaves_out(self, at: datetime) -> bool:
        """Whether an adverse disputed event is left out of scoring at ``at``."""
        return self.status_at(at) in LEAVES_OUT

    def describe(self, at: datetime) -> str:
        """The dispute's state in words, as the subject's report shows it per event."""
        status = self.status_at(at)
        opened = f"disputed on {fields.day(self.opened_at)}"
        deadline = fields.day(self.deadline)
        if status is DisputeStatus.OPEN:
            return (f"{opened}, not counting while under review (its source has until "
                    f"{deadline} to verify it)")
        if status is DisputeStatus.LAPSED:
            late = ""
            if self.answer is not None and self.answer.at <= at:
                late = f"; verified late, on {fields.day(self.answer.at)}"
            return (f"{opened}; not verified by its source by {deadline}, removed from "
                    f"scoring{late}")
        if status in (DisputeStatus.VALID, DisputeStatus.INVALID):
            resolution = self.resolution
            assert resolution is not None
            effect = ("counts again" if status is DisputeStatus.VALID
                      else "removed from scoring")
            return (f"{opened}; found {status.value} by reviewer {resolution.reviewer} on "
                    f"{fields.day(resolution.at)}: {resolution.reason}; {effect}")
        answer = self.answer
        assert answer is not None
        effect = {DisputeStatus.VERIFIED: "counts again",
                  DisputeStatus.CORRECTED: "the correction counts instead",
                  DisputeStatus.RETRACTED: "withdrawn"}[status]
        return f"{opened}; {status.value} by its source on {fields.day(answer.at)}; {effect}"


# -- pure ---------------------------------------------------------------------------------


def fold_disputes(entries: Iterable[Entry], at: datetime | None = None) -> list[Dispute]:
    """Fold dispute records (in ledger order) into disputes, as recorded by ``at``.

    Other kinds and purged records are ignored; ``at=None`` means everything.
    """
    found: dict[int, Dispute] = {}
    for entry, payload in recorded(entries, KINDS, at):
        if entry.kind == OPENED:
            dispute = _opened(entry, payload)
            if dispute is not None:
                found[entry.seq] = dispute
            continue
        target = found.get(payload.get("dispute_seq", -1))
        if target is None:
            continue
        if entry.kind == INFORMATION_ADDED:
            info = Information(entry.seq, entry.recorded_at, str(payload.get("text", "")))
            found[target.seq] = replace(target, information=(*target.information, info))
        elif entry.kind == ANSWERED and target.answer is None:
            event_seq = payload.get("event_seq")
            found[target.seq] = replace(target, answer=SourceAnswer(
                entry.seq, entry.recorded_at, str(payload.get("source", "")),
                Answer(payload["answer"]), str(payload.get("note", "")),
                event_seq if isinstance(event_seq, int) else None))
        elif entry.kind == RESOLVED and target.resolution is None:
            found[target.seq] = replace(target, resolution=Resolution(
                entry.seq, entry.recorded_at, str(payload.get("reviewer", "")),
                Outcome(payload["outcome"]), str(payload.get("reason", ""))))
    return list(found.values())


def _opened(entry: Entry, payload: Mapping[str, Any]) -> Dispute | None:
    event_seq = payload.get("event_seq")
    if entry.subject is None or not isinstance(event_seq, int):
        return None
    return Dispute(
        seq=entry.seq, subject=entry.subject, event_seq=event_seq,
        source=str(payload.get("source", "")),
        source_event_id=str(payload.get("source_event_id", "")),
        reason=str(payload.get("reason", "")), opened_at=entry.recorded_at,
        new_information=bool(payload.get("new_information", False)),
    )


def is_adverse(policy: CompiledPolicy, event: Event) -> bool:
    """Whether an event works against its subject under ``policy``.

    It does when its points (from its attributes, before ``when``, caps and decay)
    are adverse on a scorecard that uses its type (negative, or positive on a
    ``higher_is: worse`` scorecard), or negative when no scorecard uses the type,
    or when a metric that a restriction reads selects its type. Events the policy
    cannot score (unknown type, attributes that do not fit) are not adverse.
    """
    etype = policy.event_types.get(event.type)
    if etype is None:
        return False
    attrs = etype.normalise(event.attributes)
    if isinstance(attrs, str):
        return False
    points = etype.points(attrs)
    if etype.scorecards:
        if any(policy.scorecards[name].is_adverse(points) for name in etype.scorecards):
            return True
    elif points < 0:
        return True
    return any(
        event.type in policy.metrics[metric].types
        for measure in policy.measures.values() if measure.kind is MeasureKind.RESTRICTION
        for metric in measure.metrics
    )


def split_disputed(
    policy: CompiledPolicy, events: Sequence[Event], disputes: Iterable[Dispute], at: datetime
) -> tuple[list[Event], list[tuple[Event, Dispute]]]:
    """Split a subject's events into those scoring counts and those a dispute leaves out.

    An adverse event is left out at ``at`` while its dispute is open, after the SLA
    lapsed unverified, or once a reviewer found it invalid. An event it supersedes
    (the original of a disputed correction) is left out with it: the source itself
    replaced that one, so it must not come back while its replacement is contested.
    Returns ``(kept, left_out)``, each ``left_out`` item naming the dispute.
    """
    by_key = {e.key: e for e in events}
    by_seq = {e.seq: e for e in events if e.seq is not None}
    out: dict[tuple[str, str], Dispute] = {}
    for dispute in disputes:
        event = by_seq.get(dispute.event_seq) or by_key.get(dispute.event)
        if event is None or not dispute.leaves_out(at) or not is_adverse(policy, event):
            continue
        while event is not None and event.key not in out:
            out[event.key] = dispute
            previous = event.supersedes
            event = by_key.get((event.source, previous)) if previous is not None else None
    kept = [e for e in events if e.key not in out]
    return kept, [(e, out[e.key]) for e in events if e.key in out]


# -- reading and writing a ledger ---------------------------------------------------------


def disputes(ledger: Ledger, subject: str, at: datetime | None = None) -> list[Dispute]:
    """Every dispute the subject opened (with answers and resolutions), as recorded by ``at``."""
    return fold_disputes(_records(ledger, subject), at)


def get_dispute(ledger: Ledger, dispute_seq: int) -> Dispute:
    """The dispute opened at ``dispute_seq``; :class:`NotFoundError` naming the field if none."""
    subject = fields.case_subject(ledger, "dispute_seq", dispute_seq, OPENED, "dispute")
    found = next((d for d in disputes(ledger, subject) if d.seq == dispute_seq), None)
    if found is None:
        raise NotFoundError(f"dispute_seq: dispute {dispute_seq} was purged")
    return found


def open_dispute(
    ledger: Ledger, subject: str, event_seq: int, reason: str, *, new_information: bool = False
) -> Dispute:
    """The subject disputes its event at ``event_seq``, saying why.

    ``new_information``: the subject gives information the source did not have
    (the SLA becomes 45 days). Raises :class:`NotFoundError` (``event_seq``) when
    the subject has no such event, :class:`InputError` when the event was purged or
    already disputed, or a field is missing; nothing is recorded then.
    """
    fields.name("subject", subject)
    fields.seq("event_seq", event_seq)
    why = fields.text("reason", reason)
    if not isinstance(new_information, bool):
        raise InputError("new_information: must be true or false")
    try:
        entry = ledger.entry(event_seq)
    except NotFoundError:
        entry = None
    if entry is None or entry.kind != EVENT_KIND or entry.subject != subject:
        # The same answer whether the event is someone else's or does not exist.
        raise NotFoundError(f"event_seq: subject {subject!r} has no event {event_seq}")
    if entry.payload is None:
        raise InputError(f"event_seq: event {event_seq} was purged; nothing is left to dispute")
    earlier = next((d for d in disputes(ledger, subject) if d.event_seq == event_seq), None)
    if earlier is not None:
        raise InputError(
            f"event_seq: event {event_seq} is already disputed (dispute {earlier.seq}, "
            f"{earlier.status_at(datetime.max.replace(tzinfo=UTC)).value}); ask for human "
            "review of a measure instead")
    payload = {
        "event_seq": event_seq,
        "source": str(entry.payload["source"]),
        "source_event_id": str(entry.payload["source_event_id"]),
        "reason": why,
        "new_information": new_information,
    }
    record = ledger.append_record(OPENED, payload, subject=subject)
    dispute = _opened(record, payload)
    assert dispute is not None  # built from the payload just written
    return dispute


def add_dispute_information(
    ledger: Ledger, dispute_seq: int, subject: str, text: str
) -> Dispute:
    """The subject adds information to its open dispute.

    Added within the first 30 days, it extends the SLA to 45 days. Raises
    :class:`NotFoundError` when the subject has no such dispute and
    :class:`InputError` once the source answered or a reviewer resolved it.
    """
    fields.name("subject", subject)
    info = fields.text("text", text)
    dispute = _subjects_dispute(ledger, dispute_seq, subject)
    _require_undecided(dispute, "information cannot be added")
    record = ledger.append_record(
        INFORMATION_ADDED, {"dispute_seq": dispute.seq, "text": info}, subject=subject)
    added = Information(record.seq, record.recorded_at, info)
    return replace(dispute, information=(*dispute.information, added))


def answer_dispute(
    ledger: Ledger,
    dispute_seq: int,
    source: str,
    answer: Answer | str,
    *,
    note: str = "",
    event: EventIn | Mapping[str, Any] | None = None,
) -> Dispute:
    """The disputed event's source answers: verified, corrected or retracted.

    A correction or retraction comes with ``event``: the source's new event
    (``supersedes`` naming the disputed one; type ``retraction`` to withdraw it),
    appended through the ledger's normal path (idempotent), then the answer is
    recorded. Raises :class:`NotFoundError` when ``source`` has no such dispute,
    :class:`InputError` naming the field for a bad answer or event, or when the
    dispute was already answered or resolved; nothing is recorded then.
    """
    fields.name("source", source)
    try:
        kind = Answer(answer)
    except ValueError:
        raise InputError(
            f"answer: {answer!r} is not one of {', '.join(a.value for a in Answer)}") from None
    remark = fields.text("note", note, required=False)
    dispute = get_dispute(ledger, dispute_seq)
    if dispute.source != source:
        raise NotFoundError(f"dispute_seq: source {source!r} has no dispute {dispute_seq}")
    _require_undecided(dispute, "it cannot be answered again")
    new_event = _answer_event(dispute, kind, event)
    event_seq = None
    if new_event is not None:
        event_seq = ledger.append_events([new_event])[0].seq
    record = ledger.append_record(
        ANSWERED,
        {"dispute_seq": dispute.seq, "source": source, "answer": kind.value, "note": remark,
         "event_seq": event_seq},
        subject=dispute.subject,
    )
    return replace(dispute, answer=SourceAnswer(
        record.seq, record.recorded_at, source, kind, remark, event_seq))


def resolve_dispute(
    ledger: Ledger, dispute_seq: int, reviewer: str, outcome: Outcome | str, reason: str
) -> Dispute:
    """A reviewer resolves a dispute with a written reason the subject sees.

    ``outcome``: ``valid`` (the event counts again) or ``invalid`` (it is removed
    from scoring for good). Open, verified and lapsed disputes can be resolved,
    once; one the source closed by a correction or retraction cannot (the event is
    no longer in force). Raises :class:`NotFoundError` or :class:`InputError`
    naming the field; nothing is recorded then.
    """
    fields.name("reviewer", reviewer)
    try:
        found = Outcome(outcome)
    except ValueError:
        raise InputError(
            f"outcome: {outcome!r} is not one of {', '.join(o.value for o in Outcome)}") from None
    why = fields.text("reason", reason)
    dispute = get_dispute(ledger, dispute_seq)
    if dispute.resolution is not None:
        raise InputError(
            f"dispute_seq: dispute {dispute.seq} was already resolved on "
            f"{fields.day(dispute.resolution.at)} ({dispute.resolution.outcome.value})")
    if dispute.answer is not None and dispute.answer.answer is not Answer.VERIFIED:
        raise InputError(
            f"dispute_seq: dispute {dispute.seq} was closed by its source "
            f"({dispute.answer.answer.value} on {fields.day(dispute.answer.at)}); dispute the "
            "correction instead")
    record = ledger.append_record(
        RESOLVED,
        {"dispute_seq": dispute.seq, "reviewer": reviewer, "outcome": found.value,
         "reason": why},
        subject=dispute.subject,
    )
    return replace(dispute, resolution=Resolution(
        record.seq, record.recorded_at, reviewer, found, why))


def _records(ledger: Ledger, subject: str) -> Iterable[Entry]:
    return (e for e in ledger.records(subject=subject) if e.kind in KINDS)


def _subjects_dispute(ledger: Ledger, dispute_seq: int, subject: str) -> Dispute:
    fields.seq("dispute_seq", dispute_seq)
    found = next((d for d in disputes(ledger, subject) if d.seq == dispute_seq), None)
    if found is None:
        raise NotFoundError(f"dispute_seq: subject {subject!r} has no dispute {dispute_seq}")
    return found


def _require_undecided(dispute: Dispute, consequence: str) -> None:
    if dispute.resolution is not None:
        raise InputError(
            f"dispute_seq: dispute {dispute.seq} was resolved on "
            f"{fields.day(dispute.resolution.at)}; {consequence}")
    if dispute.answer is not None:
        raise InputError(
            f"dispute_seq: dispute {dispute.seq} was already answered "
            f"({dispute.answer.answer.value} on {fields.day(dispute.answer.at)}); {consequence}")


def _answer_event(
    dispute: Dispute, answer: Answer, event: EventIn | Mapping[str, Any] | None
) -> EventIn | None:
    if answer is Answer.VERIFIED:
        if event is not None:
            raise InputError("event: a verification carries no event (only a correction or "
                             "retraction does)")
        return None
    if event is None:
        raise InputError(f"event: required: a {answer.value} answer is the source's new event "
                         f"superseding {dispute.source_event_id!r}")
    if isinstance(event, EventIn):
        new = event
    else:
        try:
            new = EventIn.model_validate(event)
        except ValidationError as exc:
            problems = "; ".join(f"event.{f}: {r}" for f, r in validation_problems(exc))
            raise InputError(problems) from None
    checks = (
        ("source", new.source == dispute.source, f"must be the disputed event's source "
                                                 f"{dispute.source!r}"),
        ("subject", new.subject == dispute.subject, "must be the dispute's subject"),
        ("supersedes", new.supersedes == dispute.source_event_id,
         f"must name the disputed event {dispute.source_event_id!r}"),
        ("type", (new.type == RETRACTION) == (answer is Answer.RETRACTED),
         f"must be {RETRACTION!r} for a retraction" if answer is Answer.RETRACTED
         else f"a correction is an event of a scored type, not {RETRACTION!r}"),
    )
    for field, ok, why in checks:
        if not ok:
            raise InputError(f"event.{field}: {why}")
    return new
