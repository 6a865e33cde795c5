"""Human review: a subject asks; a reviewer confirms or lifts with a written reason the subject
sees; a lift is an overlay on the measure, never an edit of events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import FixedClock
from tests.test_rights_helpers import driving, offence, sesame
from trustledger.engine import MeasureState, evaluate
from trustledger.engine.result import MAX_REASONS
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import EventIn, Ledger
from trustledger.rights import (
    Decision,
    get_review,
    grant_opt_in,
    request_review,
    resolve_review,
    reviews,
)
from trustledger.scoring import evaluate_subject

POLICY = driving()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def sqlite_ledger(tmp_path: Path, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock) as opened:
        yield opened


def _bob(ledger: Ledger) -> None:
    """bob: 4 points from 2025-07-01, so the admonition (a restriction) is in force."""
    ledger.append_events([
        offence("bob", "m1", "minor", d("2025-01-01")),
        offence("bob", "s1", "serious", d("2025-06-01")),
        offence("bob", "m2", "minor", d("2025-07-01")),
    ])


def test_a_lifted_restriction_is_no_longer_in_force_with_the_reviewers_reason(
        ledger: Ledger, clock: FixedClock) -> None:
    _bob(ledger)
    before = evaluate_subject(ledger, "bob", POLICY, NOW)
    assert before.measures["admonition"].state is MeasureState.ACTIVE
    review = request_review(ledger, before, "admonition", statement="I took a course")
    # The offences were recorded on NOW: a measure starts when what brings it is known.
    assert (review.state, review.since) == (MeasureState.ACTIVE, NOW)
    pending = evaluate_subject(ledger, "bob", POLICY, clock.advance(1))
    assert pending.measures["admonition"].in_force
    assert pending.measures["admonition"].reasons[0].text == \
        "human review requested on 2026-01-01; pending"
    resolved_at = clock.advance(2)
    resolve_review(ledger, review.seq, "rev-7", "lifted",
                   "the serious offence was a parking error")
    after = evaluate_subject(ledger, "bob", POLICY, clock.advance(1))
    admonition = after.measures["admonition"]
    assert (admonition.state, admonition.in_force, admonition.since) == \
        (MeasureState.INACTIVE, False, resolved_at)
    assert admonition.reasons[0].text == ("lifted on 2026-01-04 after human review by rev-7: "
                                          "the serious offence was a parking error")
    assert len(admonition.reasons) <= MAX_REASONS
    # Only the overlay changed: events, scores and other measures are the engine's own.
    engine = evaluate(POLICY, list(ledger.events("bob")), clock.now)
    assert after.scorecards == engine.scorecards and after.events == engine.events
    assert after.measures["warning"] == engine.measures["warning"]
    assert engine.measures["admonition"].in_force
    # Reproducible: before the resolution it was in force.
    assert evaluate_subject(ledger, "bob", POLICY, resolved_at - timedelta(seconds=1)) \
        .measures["admonition"].in_force
    kinds = [e.kind for e in ledger.records(subject="bob") if e.kind.startswith("review.")]
    assert kinds == ["review.requested", "review.resolved"]
    ledger.verify()


def test_a_confirmed_restriction_stays_with_the_written_reason(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    _bob(sqlite_ledger)
    review = request_review(sqlite_ledger, evaluate_subject(sqlite_ledger, "bob", POLICY, NOW),
                            "admonition")
    clock.advance(1)
    resolved = resolve_review(sqlite_ledger, review.seq, "rev-7", Decision.CONFIRMED,
                              "four points in a year")
    assert resolved.decision is Decision.CONFIRMED
    measure = evaluate_subject(sqlite_ledger, "bob", POLICY, clock.now).measures["admonition"]
    assert measure.in_force
    assert measure.reasons[0].text == ("confirmed on 2026-01-02 after human review by rev-7: "
                                       "four points in a year")


def test_a_lift_does_not_cover_a_new_restriction_for_new_reasons(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    _bob(sqlite_ledger)
    review = request_review(sqlite_ledger, evaluate_subject(sqlite_ledger, "bob", POLICY, NOW),
                            "admonition")
    resolve_review(sqlite_ledger, review.seq, "rev-7", "lifted", "first time")
    # m1 expires on 2027-07-01 (3 points); a new offence on 2027-08-01 brings 4 again.
    sqlite_ledger.append_events([offence("bob", "m3", "minor", d("2027-08-01"))])
    again = evaluate_subject(sqlite_ledger, "bob", POLICY, d("2027-08-02")).measures["admonition"]
    assert (again.in_force, again.since) == (True, d("2027-08-01"))
    request_review(sqlite_ledger, evaluate_subject(sqlite_ledger, "bob", POLICY,
                                                   d("2027-08-02")), "admonition")
    assert len(reviews(sqlite_ledger, "bob")) == 2


def test_a_denied_privilege_can_be_reviewed_and_granted(
        sqlite_ledger: Ledger, clock: FixedClock) -> None:
    policy = sesame()
    sqlite_ledger.append_events([EventIn(
        source="bank", source_event_id="l1", subject="carol", type="repayment_late",
        occurred_at=d("2025-12-01"), attributes={"days_late": 5, "amount": 10.0})])
    grant_opt_in(sqlite_ledger, "carol", "sesame")
    denied = evaluate_subject(sqlite_ledger, "carol", policy, NOW)
    assert denied.measures["pay_later"].state is MeasureState.DENIED
    review = request_review(sqlite_ledger, denied, "pay_later")
    resolve_review(sqlite_ledger, review.seq, "rev-2", "lifted", "one late payment of 10")
    granted = evaluate_subject(sqlite_ledger, "carol", policy, clock.advance(1))
    assert granted.measures["pay_later"].state is MeasureState.GRANTED
    assert granted.measures["pay_later"].in_force


def _refused(ledger: Ledger, error: type[Exception], field: str, call: Any) -> None:
    before = ledger.head()
    with pytest.raises(error, match=field):
        call()
    assert ledger.head() == before


def test_review_refusals(sqlite_ledger: Ledger, clock: FixedClock) -> None:
    _bob(sqlite_ledger)
    lg = sqlite_ledger
    now = evaluate_subject(lg, "bob", POLICY, NOW)
    _refused(lg, NotFoundError, "measure", lambda: request_review(lg, now, "curfew"))
    _refused(lg, InputError, "measure: warning is inactive",
             lambda: request_review(lg, now, "warning"))
    _refused(lg, InputError, "statement",
             lambda: request_review(lg, now, "admonition", statement="x" * 5000))
    review = request_review(lg, now, "admonition")
    _refused(lg, InputError, "already under review",
             lambda: request_review(lg, now, "admonition"))
    _refused(lg, NotFoundError, "request_seq",
             lambda: resolve_review(lg, 999, "rev", "lifted", "x"))
    _refused(lg, NotFoundError, "request_seq",
             lambda: resolve_review(lg, 1, "rev", "lifted", "x"))  # an event, not a request
    _refused(lg, InputError, "decision",
             lambda: resolve_review(lg, review.seq, "rev", "overturned", "x"))
    _refused(lg, InputError, "reason", lambda: resolve_review(lg, review.seq, "rev", "lifted", ""))
    _refused(lg, InputError, "reviewer",
             lambda: resolve_review(lg, review.seq, " rev", "lifted", "x"))
    resolve_review(lg, review.seq, "rev", "confirmed", "fair")
    _refused(lg, InputError, "already resolved",
             lambda: resolve_review(lg, review.seq, "rev", "lifted", "second thoughts"))
    assert get_review(lg, review.seq).decision is Decision.CONFIRMED
    no_subject = evaluate(POLICY, [], NOW)
    _refused(lg, InputError, "evaluation", lambda: request_review(lg, no_subject, "admonition"))
