"""The portal's score chart (a pure function): dated axis, policy effective date, a broken line.

Issue 20: the chart had two x labels, an unexplained gap before the policy's effective
date, and a line drawn flat across time without a score.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.test_api import SESAME
from trustledger.policy import load_policy
from trustledger.portal.charts import MAX_TICKS, Mark, date_ticks, score_chart

NOW = datetime(2026, 11, 27, tzinfo=UTC)
EFFECTIVE = datetime(2025, 1, 1, tzinfo=UTC)


def chart(points: list[tuple[datetime, float | None]], marks: list[Mark],
          policies: list[tuple[datetime, str]]) -> str:
    card = load_policy(SESAME).scorecards["sesame"]
    return str(score_chart(card, points, marks, NOW, "c", policies))


def test_the_effective_date_is_marked_and_the_time_before_it_shaded() -> None:
    first = datetime(2024, 6, 1, tzinfo=UTC)
    svg = chart([(EFFECTIVE, 560.0), (NOW, 570.0)],
                [Mark(first, 1, "repayment_on_time", 2.5, False, True)],
                [(EFFECTIVE, "sesame"), (EFFECTIVE, "sesame-revised")])
    # One mark for one date: the version published later is the one in force.
    assert svg.count('class="policy-mark"') == 1
    assert "policy sesame-revised in force from 2025-01-01" in svg
    assert svg.count('class="no-policy"') == 1 and "no policy yet" in svg
    assert "policy in force from 2025-01-01" in svg  # the description says so too


def test_a_policy_before_the_chart_is_not_drawn_and_nothing_is_shaded() -> None:
    svg = chart([(NOW - timedelta(days=90), 560.0), (NOW, 570.0)], [],
                [(EFFECTIVE, "sesame")])
    assert 'class="policy-mark"' not in svg and 'class="no-policy"' not in svg


def test_the_line_breaks_where_there_is_no_score() -> None:
    points: list[tuple[datetime, float | None]] = [
        (NOW - timedelta(days=120), 560.0), (NOW - timedelta(days=90), 565.0),
        (NOW - timedelta(days=60), None), (NOW - timedelta(days=30), 570.0), (NOW, 575.0)]
    svg = chart(points, [], [])
    assert svg.count("<polyline") == 2


def test_the_time_axis_has_a_few_dated_ticks() -> None:
    svg = chart([(NOW - timedelta(days=365), 560.0), (NOW, 570.0)], [], [])
    labels = re.findall(r'text-anchor="middle" fill="#4a525c">([^<]+)</text>', svg)
    assert labels == ["Jan 2026", "Apr 2026", "Jul 2026", "Oct 2026"]


@pytest.mark.parametrize(("begins", "ends", "first", "last"), [
    (datetime(2026, 11, 20, tzinfo=UTC), NOW, "20 Nov 2026", "26 Nov"),
    (datetime(2019, 3, 1, tzinfo=UTC), NOW, "2020", "2026"),
    (datetime(1, 1, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC), "2000", "8000"),
    (datetime(9999, 12, 30, tzinfo=UTC), datetime.max.replace(tzinfo=UTC), "30 Dec 9999",
     "31 Dec"),
])
def test_ticks_are_round_dates_within_the_span(begins: datetime, ends: datetime, first: str,
                                               last: str) -> None:
    ticks = date_ticks(begins, ends)
    assert 2 <= len(ticks) <= MAX_TICKS
    assert all(begins <= t <= ends for t, _ in ticks)
    assert (ticks[0][1], ticks[-1][1]) == (first, last)


def test_events_on_the_line_are_marked_where_the_line_is() -> None:
    inside = Mark(NOW - timedelta(days=45), 7, "bill_overdue", -30.0, True, True)
    before = Mark(NOW - timedelta(days=400), 8, "bill_paid", 1.0, False, True)
    svg = chart([(NOW - timedelta(days=90), 560.0), (NOW, 580.0)], [inside, before], [])
    assert svg.count('class="mark"') == 2  # both below the axis
    # Only the one within the line's time is also ringed on it.
    assert svg.count('class="on-line"') == 1
    assert "event 7: bill_overdue on " in svg.split('class="on-line"')[1]
