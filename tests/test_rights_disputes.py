"""Disputes: a disputed adverse event stops counting while open, is gone after the SLA, and
comes back when verified in time or found valid; every step is a ledger entry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import FixedClock
from tests.test_rights_helpers import T0, driving, offence, seqs
from trustledger.engine import evaluate
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Ledger
from trustledger.rights import (
    DisputeStatus,
    add_dispute_information,
    answer_dispute,
    disputes,
    get_dispute,
    open_dispute,
    resolve_dispute,
)
from trustledger.scoring import assess_subject, evaluate_subject

POLICY = driving()
DAY = timedelta(days=1)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def sqlite_ledger(tmp_path: Path, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock) as opened:
        yield opened


def _alice(ledger: Ledger, clock: FixedClock) -> dict[str, int]:
    """alice: a minor offence (+1) and a serious one (+2): 3 points, tier 'noted'."""
    clock.set(T0 - 100 * DAY)
    ledger.append_events([
        offence("alice", "m1", "minor", datetime(2025, 6, 1, tzinfo=T0.tzinfo)),
        offence("alice", "s1", "serious", datetime(2025, 9, 1, tzinfo=T0.tzinfo)),
    ])
    clock.set(T0)
    return seqs(ledger, "alice")


def _score(ledger: Ledger, at: datetime, known_at: datetime | None = None) -> float:
    score = evaluate_subject(ledger, "alice", POLICY, at, known_at).scorecards["driving"].score
    assert score is not None
    return score


def _without(ledger: Ledger, key: str, at: datetime) -> float:
    events = [e for e in ledger.events("alice") if e.source_event_id != key]
    score = evaluate(POLICY, events, at).scorecards["driving"].score
    assert score is not None
    return score


def test_disputed_adverse_event_stops_counting_while_open_and_is_gone_after_the_sla(
        ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(ledger, clock)
    assert _score(ledger, T0) == 3.0
    opened_at = clock.advance(1)
    dispute = open_dispute(ledger, "alice", ids["s1"], "I was not driving that day")
    assert dispute.deadline == opened_at + timedelta(days=30)
    # While open: exactly the score of the history without the event.
    assert _score(ledger, opened_at + DAY) == _without(ledger, "s1", opened_at + DAY) == 1.0
    assessment = assess_subject(ledger, "alice", POLICY, opened_at + DAY)
    (left,) = assessment.left_out
    assert left.event.source_event_id == "s1"
    assert left.note.startswith("disputed on 2026-01-02, not counting while under review")
    just_before = dispute.deadline - timedelta(seconds=1)
    assert get_dispute(ledger, dispute.seq).status_at(just_before) is DisputeStatus.OPEN
    assert _score(ledger, just_before) == 1.0
    # After the SLA, unverified: removed from scoring.
    assert get_dispute(ledger, dispute.seq).status_at(dispute.deadline) is DisputeStatus.LAPSED
    assert _score(ledger, dispute.deadline) == 1.0
    # A verification after the deadline is recorded but does not bring it back.
    clock.set(dispute.deadline + 5 * DAY)
    late = answer_dispute(ledger, dispute.seq, "police", "verified", note="checked the camera")
    assert late.status_at(clock.now) is DisputeStatus.LAPSED
    assert _score(ledger, clock.now + DAY) == 1.0
    assert "verified late" in assess_subject(ledger, "alice", POLICY, clock.now).left_out[0].note
    # What the ledger said before the dispute is reproducible: the event counted then.
    assert _score(ledger, opened_at + DAY, known_at=opened_at - timedelta(seconds=1)) == 3.0
    kinds = [e.kind for e in ledger.records(subject="alice") if e.kind.startswith("dispute.")]
    assert kinds == ["dispute.opened", "dispute.source_answered"]
    ledger.verify()


def test_a_dispute_resolved_as_valid_restores_the_event(ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(ledger, clock)
    clock.advance(1)
    dispute = open_dispute(ledger, "alice", ids["s1"], "wrong car")
    resolved_at = clock.advance(50)  # after the SLA lapsed: a reviewer can still restore it
    assert _score(ledger, resolved_at - DAY) == 1.0
    resolved = resolve_dispute(ledger, dispute.seq, "rev-1", "valid", "the photo shows the car")
    assert resolved.status_at(resolved_at) is DisputeStatus.VALID
    assert _score(ledger, resolved_at) == 3.0
    assert _score(ledger, resolved_at) == evaluate(POLICY, list(ledger.events("alice")),
                                                    resolved_at).scorecards["driving"].score
    assert _score(ledger, resolved_at - DAY) == 1.0  # as it stood before the resolution
    note = resolved.describe(resolved_at)
    assert "found valid by reviewer rev-1" in note and "the photo shows the car" in note
    ledger.verify()


def test_a_dispute_resolved_as_invalid_removes_the_event_for_good(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    dispute = open_dispute(sqlite_ledger, "alice", ids["s1"], "wrong car")
    clock.advance(3)
    resolve_dispute(sqlite_ledger, dispute.seq, "rev-1", "invalid", "another car's plate")
    assert _score(sqlite_ledger, clock.now + 400 * DAY) == 1.0


def test_verified_in_time_counts_again_from_the_verification(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    dispute = open_dispute(sqlite_ledger, "alice", ids["s1"], "not me")
    verified_at = clock.advance(10)
    answer_dispute(sqlite_ledger, dispute.seq, "police", "verified")
    assert _score(sqlite_ledger, verified_at - timedelta(seconds=1)) == 1.0
    assert _score(sqlite_ledger, verified_at) == 3.0
    assert _score(sqlite_ledger, verified_at + 60 * DAY) == 3.0  # the SLA no longer matters


def test_a_correction_counts_instead_and_a_retraction_withdraws(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    dispute = open_dispute(sqlite_ledger, "alice", ids["s1"], "it was a minor offence")
    clock.advance(2)
    corrected = answer_dispute(sqlite_ledger, dispute.seq, "police", "corrected", event={
        "source": "police", "source_event_id": "s1-fix", "subject": "alice",
        "type": "offence_minor", "occurred_at": "2025-09-01T00:00:00Z", "supersedes": "s1"})
    assert corrected.status_at(clock.now) is DisputeStatus.CORRECTED
    assert corrected.answer is not None and corrected.answer.event_seq is not None
    assert _score(sqlite_ledger, clock.now) == 2.0  # minor 1 + corrected minor 1
    # The subject disputes the other one; its source withdraws it.
    other = open_dispute(sqlite_ledger, "alice", ids["m1"], "paid and cancelled")
    clock.advance(1)
    answer_dispute(sqlite_ledger, other.seq, "police", "retracted", event=offence(
        "alice", "m1-withdrawn", "retraction", datetime(2025, 6, 1, tzinfo=T0.tzinfo),
        supersedes="m1"))
    assert _score(sqlite_ledger, clock.now) == 1.0
    sqlite_ledger.verify()


def test_new_information_extends_the_sla_to_45_days(sqlite_ledger: Ledger,
                                                    clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    with_info = open_dispute(sqlite_ledger, "alice", ids["s1"], "see my receipt",
                             new_information=True)
    assert with_info.deadline == T0 + timedelta(days=45)
    assert with_info.status_at(T0 + timedelta(days=44)) is DisputeStatus.OPEN
    later = open_dispute(sqlite_ledger, "alice", ids["m1"], "not me")
    clock.advance(29)
    added = add_dispute_information(sqlite_ledger, later.seq, "alice", "a witness statement")
    assert added.deadline == T0 + timedelta(days=45)
    assert get_dispute(sqlite_ledger, later.seq).deadline == T0 + timedelta(days=45)


def test_information_added_after_30_days_does_not_revive_a_lapsed_dispute(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    dispute = open_dispute(sqlite_ledger, "alice", ids["s1"], "not me")
    clock.advance(31)
    added = add_dispute_information(sqlite_ledger, dispute.seq, "alice", "too late")
    assert added.deadline == T0 + timedelta(days=30)
    assert added.status_at(clock.now) is DisputeStatus.LAPSED


def test_a_disputed_favourable_event_keeps_counting(sqlite_ledger: Ledger,
                                                    clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    sqlite_ledger.append_events([offence("alice", "c1", "remedial_course",
                                         datetime(2025, 12, 1, tzinfo=T0.tzinfo),
                                         source="school")])
    course = seqs(sqlite_ledger, "alice")["c1"]
    assert _score(sqlite_ledger, T0) == 2.0
    open_dispute(sqlite_ledger, "alice", course, "any event may be disputed")
    assert _score(sqlite_ledger, T0 + DAY) == 2.0
    assert assess_subject(sqlite_ledger, "alice", POLICY, T0 + DAY).left_out == ()
    assert ids  # the other events are untouched


def test_disputing_a_correction_does_not_bring_back_the_original(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    _alice(sqlite_ledger, clock)
    sqlite_ledger.append_events([offence("alice", "s1-v2", "minor",
                                         datetime(2025, 9, 1, tzinfo=T0.tzinfo),
                                         supersedes="s1")])
    assert _score(sqlite_ledger, T0) == 2.0
    open_dispute(sqlite_ledger, "alice", seqs(sqlite_ledger, "alice")["s1-v2"], "not even that")
    assessment = assess_subject(sqlite_ledger, "alice", POLICY, T0 + DAY)
    assert {x.event.source_event_id for x in assessment.left_out} == {"s1-v2", "s1"}
    assert _score(sqlite_ledger, T0 + DAY) == 1.0


# -- every failure path a user can reach names the field and changes nothing --------------


def _refused(ledger: Ledger, error: type[Exception], field: str, call: Any) -> None:
    before = ledger.head()
    with pytest.raises(error, match=field):
        call()
    assert ledger.head() == before


def test_opening_refusals(sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    sqlite_ledger.append_events([offence("bob", "b1", "minor", T0 - DAY)])
    bobs = seqs(sqlite_ledger, "bob")["b1"]
    lg = sqlite_ledger
    _refused(lg, NotFoundError, "event_seq", lambda: open_dispute(lg, "alice", 999, "x"))
    _refused(lg, NotFoundError, "event_seq: subject 'alice' has no event",
             lambda: open_dispute(lg, "alice", bobs, "not mine"))  # another subject's event
    consent = lg.append_record("consent.granted", {"scope": "scorecard", "scorecard": "x"},
                               subject="alice")
    _refused(lg, NotFoundError, "event_seq", lambda: open_dispute(lg, "alice", consent.seq, "x"))
    _refused(lg, InputError, "reason", lambda: open_dispute(lg, "alice", ids["s1"], "  "))
    _refused(lg, InputError, "event_seq", lambda: open_dispute(lg, "alice", 0, "x"))
    _refused(lg, InputError, "subject", lambda: open_dispute(lg, " alice", ids["s1"], "x"))
    _refused(lg, InputError, "new_information",
             lambda: open_dispute(lg, "alice", ids["s1"], "x", new_information="yes"))  # type: ignore[arg-type]
    open_dispute(lg, "alice", ids["s1"], "first")
    _refused(lg, InputError, "already disputed",
             lambda: open_dispute(lg, "alice", ids["s1"], "again"))
    lg.purge_payload(ids["m1"], "test")
    _refused(lg, InputError, "purged", lambda: open_dispute(lg, "alice", ids["m1"], "x"))


def test_answer_and_resolution_refusals(sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    lg = sqlite_ledger
    dispute = open_dispute(lg, "alice", ids["s1"], "not me")
    n = dispute.seq
    _refused(lg, NotFoundError, "dispute_seq",
             lambda: answer_dispute(lg, 999, "police", "verified"))
    _refused(lg, NotFoundError, "dispute_seq",
             lambda: answer_dispute(lg, ids["s1"], "police", "verified"))  # an event, no dispute
    _refused(lg, NotFoundError, "dispute_seq: source 'bank' has no dispute",
             lambda: answer_dispute(lg, n, "bank", "verified"))
    _refused(lg, InputError, "answer", lambda: answer_dispute(lg, n, "police", "maybe"))
    _refused(lg, InputError, "event: a verification carries no event",
             lambda: answer_dispute(lg, n, "police", "verified", event={"x": 1}))
    _refused(lg, InputError, "event: required",
             lambda: answer_dispute(lg, n, "police", "corrected"))
    good = {"source": "police", "source_event_id": "fix", "subject": "alice",
            "type": "offence_minor", "occurred_at": "2025-09-01T00:00:00Z", "supersedes": "s1"}
    for field, change in (("event.supersedes", {"supersedes": "m1"}),
                          ("event.subject", {"subject": "bob"}),
                          ("event.source", {"source": "other"}),
                          ("event.type", {"type": "retraction"}),
                          ("event.occurred_at", {"occurred_at": "yesterday"})):
        _refused(lg, InputError, field, lambda change=change: answer_dispute(
            lg, n, "police", "corrected", event={**good, **change}))
    _refused(lg, InputError, "event.type", lambda: answer_dispute(
        lg, n, "police", "retracted", event=good))
    _refused(lg, InputError, "outcome", lambda: resolve_dispute(lg, n, "rev", "maybe", "x"))
    _refused(lg, InputError, "reason", lambda: resolve_dispute(lg, n, "rev", "valid", ""))
    _refused(lg, InputError, "reviewer", lambda: resolve_dispute(lg, n, "", "valid", "x"))
    _refused(lg, NotFoundError, "dispute_seq",
             lambda: resolve_dispute(lg, 12345, "r", "valid", "x"))
    answer_dispute(lg, n, "police", "verified")
    _refused(lg, InputError, "already answered",
             lambda: answer_dispute(lg, n, "police", "verified"))
    _refused(lg, InputError, "already answered",
             lambda: add_dispute_information(lg, n, "alice", "more"))
    resolve_dispute(lg, n, "rev", "invalid", "checked: wrong plate")
    _refused(lg, InputError, "already resolved",
             lambda: resolve_dispute(lg, n, "rev", "valid", "changed my mind"))
    _refused(lg, NotFoundError, "dispute_seq: subject 'bob' has no dispute",
             lambda: add_dispute_information(lg, n, "bob", "x"))


def test_a_dispute_closed_by_a_correction_cannot_be_resolved(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    ids = _alice(sqlite_ledger, clock)
    lg = sqlite_ledger
    dispute = open_dispute(lg, "alice", ids["s1"], "not me")
    answer_dispute(lg, dispute.seq, "police", "retracted", event=offence(
        "alice", "s1-x", "retraction", datetime(2025, 9, 1, tzinfo=T0.tzinfo), supersedes="s1"))
    _refused(lg, InputError, "closed by its source",
             lambda: resolve_dispute(lg, dispute.seq, "rev", "valid", "x"))
    (listed,) = disputes(lg, "alice")
    assert listed.status_at(clock.now) is DisputeStatus.RETRACTED
