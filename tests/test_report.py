"""The subject's report: every event with source, dates and contribution now and over time,
scores over time, specific reasons (at most four), disputes, reviews, consents, who read the
data; JSON and a self-contained printable HTML page."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.clock import FixedClock
from tests.governance import put_in_force
from tests.test_rights_helpers import SESAME_FILE, seqs, sesame
from trustledger.engine.result import MAX_REASONS
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import EventIn, Ledger
from trustledger.rights import (
    erase,
    grant_decision_consent,
    grant_opt_in,
    open_dispute,
    record_access,
    request_review,
    withdraw_consent,
)
from trustledger.rights.html import report_html
from trustledger.rights.report import Report, build_report, history_dates
from trustledger.scoring import evaluate_subject, publish_policy

POLICY = sesame()
AT = datetime(2026, 4, 20, tzinfo=UTC)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _ev(key: str, type_: str, occurred: str, **attributes: object) -> EventIn:
    return EventIn(source="bank-a", source_event_id=key, subject="erin", type=type_,
                   occurred_at=d(occurred), attributes=attributes)


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    clock = FixedClock(d("2026-01-10"))
    with Ledger.open(database_url, clock=clock) as opened:
        put_in_force(opened)   # two operators put the shipped register in force
        publish_policy(opened, SESAME_FILE)
        opened.append_events([
            _ev("r1", "repayment_on_time", "2026-01-05", amount=500.0),
            _ev("l1", "repayment_late", "2026-01-08", days_late=12, amount=80.0),
        ])
        grant_opt_in(opened, "erin", "sesame")
        clock.set(d("2026-03-20"))
        # Occurred in February but recorded only in March: February's point does not know it.
        opened.append_events([_ev("b1", "bill_overdue", "2026-02-10", days_overdue=45)])
        consent = grant_decision_consent(opened, "erin", "landlord-co", "tenancy")
        clock.set(d("2026-04-02"))
        opened.append_record("access.read", {
            "principal": "p-17", "name": "landlord-co", "role": "relying_party",
            "purpose": "tenancy", "read": "decision", "request_id": "req-1"}, subject="erin")
        record_access(opened, "erin", "ops-1", "operator", "support", "report")
        withdraw_consent(opened, "erin", consent.seq)
        open_dispute(opened, "erin", seqs(opened, "erin")["b1"], "<script>alert(1)</script> paid")
        clock.set(d("2026-04-03"))
        request_review(opened, evaluate_subject(opened, "erin", POLICY, clock.now), "pay_later",
                       statement="one late payment")
        yield opened


def test_the_report_holds_everything_about_the_subject(ledger: Ledger) -> None:
    report = build_report(ledger, "erin", AT)
    assert (report.subject, report.as_of, report.policy_hash) == ("erin", AT, POLICY.hash)
    assert (report.ledger_seq, report.ledger_hash) == ledger.head()
    # Every event, with its source, dates, points now and over time, and status.
    by_key = {e.source_event_id: e for e in report.events}
    assert set(by_key) == {"r1", "l1", "b1"}
    late = by_key["l1"]
    assert (late.source, late.occurred_at, late.recorded_at) == \
        ("bank-a", d("2026-01-08"), d("2026-01-10"))
    assert late.counts and late.points == -22.0 and -22.0 < late.points_now < 0
    assert late.status == "counts"
    disputed = by_key["b1"]
    assert not disputed.counts and disputed.dispute_seq is not None
    assert disputed.status.startswith("disputed on 2026-04-02, not counting while under review")
    # Scores over time: month starts after the first recording, then now.
    assert [p.at for p in report.history] == [d("2026-02-01"), d("2026-03-01"),
                                              d("2026-04-01"), AT]
    assert len(late.over_time) == len(report.history)
    assert by_key["b1"].over_time[:2] == (None, None)  # not known in February and March 1st
    assert by_key["b1"].over_time[2] is not None       # counted on April 1st (before the dispute)
    assert by_key["b1"].over_time[3] is None          # disputed since
    assert report.history[-1].scores["sesame"] == report.scorecards[0].score
    # Reasons: specific (event, date, points), at most four per score and per measure.
    (card,) = report.scorecards
    assert 1 <= len(card.reasons) <= MAX_REASONS
    for reason in card.reasons:
        assert reason.event is not None and reason.event_seq is not None
        event = next(e for e in report.events if e.seq == reason.event_seq)
        assert event.occurred_at.date().isoformat() in reason.text
        assert reason.points is not None
        assert re.search(r"[+\u2212]\d", reason.text)
        assert reason.adverse == (reason.points < 0)
    for measure in report.measures:
        assert 1 <= len(measure.reasons) <= MAX_REASONS
    pay_later = next(m for m in report.measures if m.name == "pay_later")
    assert pay_later.reasons[0].text == "human review requested on 2026-04-03; pending"
    # Pending disputes and reviews, consents, the access log.
    assert [x.status.value for x in report.disputes] == ["open"]
    assert [x.state for x in report.reviews] == ["pending"]
    assert [(c.description, c.active) for c in report.consents] == [
        ("opt-in to scorecard 'sesame'", True),
        ("decision for party 'landlord-co', purpose 'tenancy'", False)]
    assert [(a.name, a.role, a.purpose, a.read) for a in report.access_log] == [
        ("landlord-co", "relying_party", "tenancy", "decision"),
        ("ops-1", "operator", "support", "report")]
    assert report.access_log[0].at == d("2026-04-02")


def test_the_report_exports_as_json(ledger: Ledger) -> None:
    report = build_report(ledger, "erin", AT)
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert set(data) == {f for f in Report.__dataclass_fields__}
    assert data["as_of"] == "2026-04-20T00:00:00Z"
    assert data["events"][0]["occurred_at"].endswith("Z")
    assert data["disputes"][0]["dispute"]["reason"] == "<script>alert(1)</script> paid"
    assert data["scorecards"][0]["reasons"][0]["event"] == ["bank-a", "l1"]


def test_the_html_page_is_self_contained_printable_and_escaped(ledger: Ledger) -> None:
    page = report_html(build_report(ledger, "erin", AT))
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http://", "https://", "<script", "<link", "src=", "@import", "url("):
        assert external not in page
    assert "@media print" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; paid" in page
    assert "late repayment on 2026-01-08" in page
    assert "landlord-co" in page and "human review requested on 2026-04-03" in page
    assert page.count("<svg") >= 2  # the score chart and per-event sparklines


def test_refusals(ledger: Ledger) -> None:
    with pytest.raises(NotFoundError, match="'nobody' has no events"):
        build_report(ledger, "nobody", AT)
    with pytest.raises(NotFoundError, match="no published policy"):
        build_report(ledger, "erin", d("2024-06-01"))
    erase(ledger, "erin")
    with pytest.raises(ErasedError):
        build_report(ledger, "erin", AT)


def test_history_dates_are_monthly_and_bounded() -> None:
    assert history_dates(d("2026-01-31"), d("2026-03-01")) == [d("2026-02-01")]
    assert history_dates(d("2026-01-01"), d("2026-01-20")) == []
    long = history_dates(d("2000-01-01"), d("2026-01-01"))
    assert len(long) <= 119 and long[-1] == d("2025-12-01")
    assert all(b - a >= timedelta(days=28) for a, b in itertools.pairwise(long))
