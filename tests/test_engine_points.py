"""Event points: constant, table by attribute, formula, per started period, conditional."""

from __future__ import annotations

import pytest

from tests.policies.support import d, ev, parse_declared, policy_file
from trustledger.engine import Event, evaluate

POINTS = parse_declared("""
policy: points
title: the forms of points
effective_from: 2026-01-01
event_types:
  fixed:
    domain: commerce
    category: contract_performance
    gravity: minor
    points: -20
    retention: P5Y
  graded:
    domain: commerce
    category: commercial_conduct
    gravity: moderate
    attributes:
      severity: {type: enum, values: [low, medium, high, extreme]}
    points: {lookup: severity, values: {low: -5, medium: -10, high: -25, extreme: -50}}
    retention: P5Y
  late:
    domain: commerce
    category: credit_repayment
    gravity: moderate
    attributes:
      days_late: {type: integer, minimum: 1}
      amount: {type: number, minimum: 0}
    points: {formula: "-5.0 - double(attrs.days_late) - attrs.amount / 1000.0", min: -60}
    retention: P5Y
  overdue:
    domain: commerce
    category: bill_payment
    gravity: minor
    attributes:
      days_overdue: {type: integer, minimum: 0}
    points: {each: -10, per_started: 30, of: days_overdue, max_periods: 6}
    retention: P5Y
scorecards:
  s:
    events: [fixed, graded, late, overdue]
    base: 500
""", "points.yaml")

AT = "2026-03-01"


def score(*events: Event) -> float:
    result = evaluate(POINTS, events, d(AT))
    value = result.scorecards["s"].score
    assert value is not None
    return value


def test_constant_points() -> None:
    # 500 base - 20 = 480
    assert score(ev("1", "fixed", "2026-02-01")) == 480


@pytest.mark.parametrize(("severity", "expected"), [
    ("low", 495),       # 500 - 5
    ("medium", 490),    # 500 - 10
    ("high", 475),      # 500 - 25
    ("extreme", 450),   # 500 - 50
])
def test_value_chosen_from_a_range_by_an_attribute(severity: str, expected: float) -> None:
    assert score(ev("1", "graded", "2026-02-01", severity=severity)) == expected


def test_formula_over_attributes() -> None:
    # -5 - 10 days - 2500/1000 = -17.5; 500 - 17.5 = 482.5
    assert score(ev("1", "late", "2026-02-01", days_late=10, amount=2500)) == 482.5


def test_formula_is_clamped_to_its_bounds() -> None:
    # -5 - 100 - 0 = -105, clamped to min -60; 500 - 60 = 440
    assert score(ev("1", "late", "2026-02-01", days_late=100, amount=0)) == 440


@pytest.mark.parametrize(("days", "expected"), [
    (0, 500),     # 0 started periods: 0
    (1, 490),     # ceil(1/30) = 1 period: -10
    (30, 490),    # ceil(30/30) = 1: -10
    (31, 480),    # ceil(31/30) = 2: -20
    (90, 470),    # ceil(90/30) = 3: -30
    (400, 440),   # ceil(400/30) = 14, at most 6: -60
])
def test_points_per_started_period(days: int, expected: float) -> None:
    assert score(ev("1", "overdue", "2026-02-01", days_overdue=days)) == expected


def test_points_rule_is_described_for_people() -> None:
    assert POINTS.event_types["overdue"].points_rule == \
        "\u221210 per started 30 of days_overdue, at most 6 periods"
    assert POINTS.event_types["graded"].points_rule == "\u221250 to \u22125 by severity"


# --- points that depend on a condition at the event's time ----------------------------------
# driving.yaml: a remedial course removes one point only while the total is 1 to 5, and only
# if no course counted in the previous 5 years (metric courses_5y, window P5Y).

DRIVING = policy_file("driving")


def driving(events: list[Event], at: str) -> tuple[float, list[tuple[str, bool, str | None]]]:
    result = evaluate(DRIVING, events, d(at))
    card = result.scorecards["driving"]
    assert card.score is not None
    return card.score, [(c.event[1], c.counted, c.why_not) for c in card.contributions]


def test_course_counts_while_total_is_between_1_and_5() -> None:
    events = [ev("o1", "offence_serious", "2021-01-10"),   # +2
              ev("o2", "offence_minor", "2021-02-01"),     # +1  → 3
              ev("c1", "remedial_course", "2021-03-01")]   # 3 is in [1, 5]: -1 → 2
    total, rows = driving(events, "2021-06-01")
    assert total == 2
    assert ("c1", True, None) in rows


def test_second_course_within_5_years_does_not_count() -> None:
    events = [ev("o1", "offence_serious", "2021-01-10"),   # +2
              ev("o2", "offence_minor", "2021-02-01"),     # +1 → 3
              ev("c1", "remedial_course", "2021-03-01"),   # -1 → 2
              ev("c2", "remedial_course", "2022-01-01")]   # courses_5y = 1: not counted → 2
    total, rows = driving(events, "2022-02-01")
    assert total == 2
    c2 = next(r for r in rows if r[0] == "c2")
    assert c2[1] is False
    assert c2[2] is not None and "courses_5y = 1" in c2[2]


def test_course_counts_again_once_the_earlier_one_left_the_5_year_window() -> None:
    events = [ev("o1", "offence_grave", "2021-01-10"),     # +3, counts 10 years
              ev("c1", "remedial_course", "2021-03-01"),   # 3 → 2
              ev("o2", "offence_grave", "2025-06-01"),     # +3 → 5
              ev("c2", "remedial_course", "2026-03-01")]   # c1 left the window 2026-03-01: -1 → 4
    total, rows = driving(events, "2026-04-01")
    assert total == 4
    assert ("c2", True, None) in rows


@pytest.mark.parametrize(("offences", "expected"), [
    ([], 0),                                                # total 0: not in [1, 5]
    (["offence_grave", "offence_grave"], 6),               # total 6: not in [1, 5]
])
def test_course_outside_the_band_does_not_count(offences: list[str], expected: float) -> None:
    events: list[Event] = [ev(f"o{i}", t, "2021-01-10") for i, t in enumerate(offences)]
    events.append(ev("c1", "remedial_course", "2021-03-01"))
    total, rows = driving(events, "2021-06-01")
    assert total == expected
    assert next(r for r in rows if r[0] == "c1")[1] is False
