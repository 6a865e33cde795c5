"""Retention: `maintain` purges payloads past their type's retention (and what only made sense
with them); afterwards the score equals the score computed without those events; verify passes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import FixedClock
from tests.test_rights_helpers import event, seqs, sesame
from trustledger.engine import evaluate
from trustledger.errors import InputError
from trustledger.ledger import EventIn, Ledger
from trustledger.rights import disputes, grant_opt_in, maintain, open_dispute, past_retention
from trustledger.scoring import evaluate_subject

POLICY = sesame()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _ev(key: str, type_: str, occurred: str, supersedes: str | None = None,
        **attributes: Any) -> EventIn:
    return EventIn(source="bank", source_event_id=key, subject="dana", type=type_,
                   occurred_at=d(occurred), attributes=attributes, supersedes=supersedes)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(d("2025-12-01"))


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=clock) as opened:
        yield opened


def _dana(ledger: Ledger) -> dict[str, int]:
    ledger.append_events([
        # Identity verified twice: the second did not count (`when: identity_checks == 0`).
        _ev("id1", "identity_verified", "2015-06-01", method="passport"),
        _ev("id2", "identity_verified", "2016-06-01", method="passport"),
        _ev("late-old", "repayment_late", "2019-01-01", days_late=3, amount=50.0),
        _ev("late-new", "repayment_late", "2025-11-01", days_late=3, amount=50.0),
        # An overdue bill the bank corrected into a paid bill; the correction is past its
        # 3-year retention, the original (6 years) is not — it must not come back.
        _ev("bill", "bill_overdue", "2022-06-01", days_overdue=40),
        _ev("bill-fix", "bill_paid", "2022-06-01", supersedes="bill"),
        # A withdrawn event past retention: the retraction goes with it.
        _ev("old", "bill_overdue", "2018-01-01", days_overdue=10),
        _ev("old-x", "retraction", "2018-01-01", supersedes="old"),
    ])
    grant_opt_in(ledger, "dana", "sesame")
    return seqs(ledger, "dana")


def test_after_a_retention_purge_the_score_is_the_score_without_those_events(
        ledger: Ledger, clock: FixedClock) -> None:
    ids = _dana(ledger)
    open_dispute(ledger, "dana", ids["late-old"], "paid on time, bank error")
    before = evaluate_subject(ledger, "dana", POLICY, NOW).scorecards["sesame"].score
    clock.set(NOW)
    done = maintain(ledger, POLICY, NOW)
    assert (done.events_purged, done.records_purged) == (6, 1)
    purged = {"id1", "late-old", "bill", "bill-fix", "old", "old-x"}
    assert {e.source_event_id for e in ledger.events("dana")} == {"id2", "late-new"}
    for key in purged:
        assert ledger.entry(ids[key]).payload is None
    assert disputes(ledger, "dana") == []  # the dispute's reason went with its event
    ledger.verify()
    after = evaluate_subject(ledger, "dana", POLICY, NOW)
    kept = [e for e in ledger.events("dana")]
    assert after == evaluate(POLICY, kept, NOW, opt_ins={"sesame"})
    # Not a no-op: with the first verification gone, the second one counts now.
    assert after.scorecards["sesame"].score != before
    record = ledger.entry(done.seq)
    assert (record.kind, record.subject) == ("retention.maintained", None)
    assert record.payload is not None and record.payload["events_purged"] == 6
    reasons = {e.payload["reason"] for e in ledger.records(kind="purge") if e.payload}
    assert reasons == {"retention"}  # no event type (or anything else) in the purge entries


def test_a_second_run_purges_only_what_came_due_since(tmp_path: Path, clock: FixedClock) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}", clock=clock) as ledger:
        _dana(ledger)
        maintain(ledger, POLICY, NOW)
        assert maintain(ledger, POLICY, NOW).events_purged == 0
        # id2 is kept 10 years from 2016-06-01.
        later = maintain(ledger, POLICY, d("2026-06-01"))
        assert later.events_purged == 1
        assert [e.source_event_id for e in ledger.events("dana")] == ["late-new"]
        before = ledger.head()
        with pytest.raises(InputError, match="now"):
            maintain(ledger, POLICY, datetime(2027, 1, 1))
        assert ledger.head() == before
        ledger.verify()


def test_past_retention_is_exact_at_the_boundary() -> None:
    events = [event("x", "a", "bill_paid", d("2023-01-01")),
              event("x", "b", "not_in_policy", d("2000-01-01"))]
    assert past_retention(POLICY, events, d("2026-01-01") - timedelta(seconds=1)) == []
    assert [e.source_event_id for e in past_retention(POLICY, events, d("2026-01-01"))] == ["a"]
