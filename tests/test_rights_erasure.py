"""Erasure: every payload about the subject is purged, no score is computed, relying parties
get "no data", the chain verifies, and the erasure record carries no personal data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.clock import FixedClock
from tests.governance import TEST_PROGRAMMES, put_in_force
from tests.test_rights_helpers import driving, offence, seqs
from trustledger.errors import ErasedError, InputError, NotFoundError
from trustledger.ledger import Ledger
from trustledger.rights import (
    access_log,
    consents,
    disputes,
    erase,
    grant_decision_consent,
    is_erased,
    open_dispute,
    opt_ins,
    record_access,
    request_review,
    reviews,
)
from trustledger.rights.report import build_report
from trustledger.rights.whatif import what_if
from trustledger.scoring import assess_subject, evaluate_subject, publish_policy

POLICY = driving()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECT = "subject-7f3a9c"  # distinctive, so a leftover copy anywhere would be found


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=clock) as opened:
        yield opened


def _history(ledger: Ledger, clock: FixedClock) -> None:
    put_in_force(ledger, TEST_PROGRAMMES)
    publish_policy(ledger, Path(__file__).parent / "policies" / "driving.yaml")
    ledger.append_events([
        offence(SUBJECT, "e1", "minor", NOW - timedelta(days=200)),
        offence(SUBJECT, "e4", "grave", NOW - timedelta(days=150)),
        offence(SUBJECT, "e2", "serious", NOW - timedelta(days=100)),
        offence(SUBJECT, "e3", "minor", NOW - timedelta(days=50)),
        offence("other", "o1", "grave", NOW - timedelta(days=10)),
    ])
    events = seqs(ledger, SUBJECT)
    grant_decision_consent(ledger, SUBJECT, "insurer", "pricing")
    record_access(ledger, SUBJECT, "insurer", "relying_party", "pricing", "decision")
    clock.advance(1)
    open_dispute(ledger, SUBJECT, events["e2"], f"{SUBJECT} was abroad")
    request_review(ledger, evaluate_subject(ledger, SUBJECT, POLICY, clock.now), "admonition",
                   statement="please look again")
    ledger.append_events([offence(SUBJECT, "e2-fix", "minor", NOW - timedelta(days=100),
                                  supersedes="e2")])


def test_after_erasure_nothing_returns_the_subjects_payloads_and_verify_passes(
        ledger: Ledger, clock: FixedClock) -> None:
    _history(ledger, clock)
    asked = clock.now + timedelta(days=2)
    other_before = evaluate_subject(ledger, "other", POLICY, asked)
    clock.advance(1)
    done = erase(ledger, SUBJECT)
    assert done.purged == 9  # 5 events, a consent, a read, a dispute, a review request
    assert is_erased(ledger, SUBJECT)
    # No score, no report, no what-if: "no data".
    with pytest.raises(ErasedError, match="no data"):
        evaluate_subject(ledger, SUBJECT, POLICY, clock.now)
    with pytest.raises(NotFoundError):  # ErasedError is a NotFoundError
        assess_subject(ledger, SUBJECT, POLICY, clock.now)
    with pytest.raises(ErasedError):
        build_report(ledger, SUBJECT, clock.now)
    # Nothing about the subject comes back from any reading function.
    assert list(ledger.events(SUBJECT)) == []
    assert SUBJECT not in set(ledger.subjects())
    assert consents(ledger, SUBJECT) == [] and opt_ins(ledger, SUBJECT, clock.now) == frozenset()
    assert disputes(ledger, SUBJECT) == [] and reviews(ledger, SUBJECT) == []
    assert access_log(ledger, SUBJECT) == []
    for entry in ledger.records(subject=SUBJECT):
        assert entry.payload is None or entry.kind == "purge"
    # No payload anywhere in the ledger still mentions the subject.
    for entry in ledger.records():
        if entry.payload is not None:
            assert SUBJECT not in orjson.dumps(entry.payload).decode(), entry
    # The erasure itself is recorded without personal data.
    record = ledger.entry(done.seq)
    assert (record.kind, record.subject) == ("erasure", None)
    assert record.payload == {"purged": 9, "first_purge_seq": done.first_purge_seq,
                              "last_purge_seq": done.last_purge_seq}
    ledger.verify()
    # Others are untouched.
    assert evaluate_subject(ledger, "other", POLICY, asked) == other_before


def test_erasing_twice_or_an_unknown_subject_is_refused(ledger: Ledger, clock: FixedClock) -> None:
    _history(ledger, clock)
    before = ledger.head()
    with pytest.raises(NotFoundError, match="subject: the ledger has nothing about 'nobody'"):
        erase(ledger, "nobody")
    with pytest.raises(InputError, match="subject"):
        erase(ledger, " padded ")
    assert ledger.head() == before
    erase(ledger, SUBJECT)
    after = ledger.head()
    with pytest.raises(InputError, match="already erased on 2026-01-02"):
        erase(ledger, SUBJECT)
    assert ledger.head() == after


def test_events_arriving_after_erasure_stay_unscored_until_erased_again(
        tmp_path: Path, clock: FixedClock) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}", clock=clock) as ledger:
        ledger.append_events([offence(SUBJECT, "e1", "minor", NOW - timedelta(days=3))])
        erase(ledger, SUBJECT)
        ledger.append_events([offence(SUBJECT, "late", "minor", NOW - timedelta(days=1))])
        with pytest.raises(ErasedError):
            evaluate_subject(ledger, SUBJECT, POLICY, clock.now)
        again = erase(ledger, SUBJECT)
        assert again.purged == 1
        assert list(ledger.events(SUBJECT)) == []
        ledger.verify()


def test_what_if_on_an_assessment_made_before_erasure_is_pure(
        tmp_path: Path, clock: FixedClock) -> None:
    # What-if works on an assessment already in hand; it never reads the ledger again.
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}", clock=clock) as ledger:
        ledger.append_events([offence(SUBJECT, "e1", "minor", NOW - timedelta(days=3))])
        assessment = assess_subject(ledger, SUBJECT, POLICY, NOW)
        erase(ledger, SUBJECT)
        assert what_if(assessment, at=NOW + timedelta(days=1)).after.scorecards["driving"].score \
            == 1.0
