"""Time: exponential decay, hard expiry from occurred_at or recorded_at, overhang, retention."""

from __future__ import annotations

import math

import pytest

from tests.policies.support import d, ev, parse_declared, policy_file
from trustledger.engine import Event, evaluate

TIME = parse_declared("""
policy: time
title: decay, expiry and retention
effective_from: 2024-01-01
event_types:
  late_rent:
    label: late rent payment
    domain: housing
    category: bill_payment
    gravity: moderate
    points: -20
    decay: {half_life: P184D}
    expiry: {after: P5Y}
    retention: P6Y
  from_occurred:
    domain: housing
    category: bill_payment
    gravity: minor
    points: -10
    expiry: {after: P2Y}
    retention: P3Y
  from_recorded:
    domain: housing
    category: bill_payment
    gravity: minor
    points: -10
    expiry: {after: P2Y, from: recorded_at}
    retention: P3Y
  short_lived:
    domain: housing
    category: bill_payment
    gravity: minor
    points: -5
    retention: P1Y
scorecards:
  s:
    events: [late_rent, from_occurred, from_recorded, short_lived]
    base: 600
""", "time.yaml")


def s(events: list[Event], at: str, known: str | None = None) -> float:
    result = evaluate(TIME, events, d(at), d(known) if known else None)
    value = result.scorecards["s"].score
    assert value is not None
    return value


RENT = [ev("r1", "late_rent", "2026-03-02")]


@pytest.mark.parametrize(("at", "expected"), [
    ("2026-03-02", 580.0),   # age 0: 600 - 20
    ("2026-09-02", 590.0),   # 2026-03-02 + 184 days: one half-life, -20 · 2^-1 = -10
    ("2027-03-05", 595.0),   # 368 days, two half-lives: -20 · 2^-2 = -5
])
def test_exponential_decay_by_half_life(at: str, expected: float) -> None:
    assert s(RENT, at) == pytest.approx(expected, abs=1e-9)


def test_decay_between_half_lives_is_exponential() -> None:
    # 2026-03-02 → 2026-06-01 is 91 days: -20 · 2^(-91/184) = -14.1955…; 600 - 14.1955 = 585.8045
    assert s(RENT, "2026-06-01") == pytest.approx(600 - 20 * 2 ** (-91 / 184), abs=1e-9)
    assert 600 - 20 * math.exp(-math.log(2) * 91 / 184) == pytest.approx(585.8045, abs=1e-4)


def test_decaying_reason_names_date_points_and_next_halving() -> None:
    result = evaluate(TIME, RENT, d("2026-06-01"))
    assert result.scorecards["s"].reasons[0].text == (
        "late rent payment on 2026-03-02: \u221220, now \u221214.20, halves to \u221210 by "
        "2026-09-02; counts until 2031-03-02")


BOTH = [ev("a", "from_occurred", "2024-01-01", "2024-07-01"),
        ev("b", "from_recorded", "2024-01-01", "2024-07-01")]


def test_expiry_counted_from_occurred_at_or_recorded_at() -> None:
    # both happened 2024-01-01 and were recorded 2024-07-01; expiry P2Y
    assert s(BOTH, "2025-12-31") == 580   # both count: 600 - 10 - 10
    assert s(BOTH, "2026-01-01") == 590   # a expired (2024-01-01 + 2y); b counts to 2026-07-01
    assert s(BOTH, "2026-07-01") == 600   # b expired too (2024-07-01 + 2y)


def test_expired_entry_says_when_and_why() -> None:
    result = evaluate(TIME, BOTH, d("2026-03-01"))
    rows = {c.event[1]: c for c in result.scorecards["s"].contributions}
    assert rows["a"].counted is False
    assert rows["a"].why_not == "stopped counting on 2026-01-01 (expiry)"
    assert rows["b"].counts_until == d("2026-07-01")


def test_retention_ends_counting() -> None:
    events = [ev("x", "short_lived", "2026-01-10")]
    assert s(events, "2027-01-09T23:59:59") == 595   # 600 - 5
    assert s(events, "2027-01-10") == 600            # retention P1Y over
    result = evaluate(TIME, events, d("2027-02-01"))
    assert result.events[0].why_not == "stopped counting on 2027-01-10 (retention)"


def test_retention_shorter_than_expiry_is_refused_at_load() -> None:
    from trustledger.errors import PolicyError

    with pytest.raises(PolicyError) as info:
        parse_declared("""
policy: bad
title: purged while counting
effective_from: 2024-01-01
event_types:
  x:
    domain: housing
    category: bill_payment
    gravity: minor
    points: -1
    expiry: {after: P5Y, overhang: P1Y}
    retention: P5Y
""", "bad.yaml")
    problem = info.value.problems[0]
    assert problem.rule == "retention"
    assert problem.location.path == "event_types.x.retention"
    assert problem.location.line == 12   # the text starts with a newline: line 12 is retention


# --- overhang (driving.yaml: offence_minor expires after P2Y6M with a P1Y overhang) ---------

DRIVING = policy_file("driving")
E = ev("e", "offence_minor", "2020-01-01")                 # expires 2022-07-01


def points(events: list[Event], at: str, known: str | None = None) -> float:
    result = evaluate(DRIVING, events, d(at), d(known) if known else None)
    value = result.scorecards["driving"].score
    assert value is not None
    return value


def test_entry_expires_without_a_late_recorded_offence() -> None:
    assert points([E], "2022-06-30") == 1
    assert points([E], "2022-07-01") == 0   # 2020-01-01 + 2y6m


def test_overhang_keeps_expired_entry_for_offence_committed_before_but_recorded_after() -> None:
    # F was committed 2022-06-01, before E's expiry (2022-07-01), and recorded after it
    f = ev("f", "offence_minor", "2022-06-01", "2022-08-01")
    assert points([E, f], "2022-09-01") == 2       # E (overhang) + F
    assert points([E, f], "2023-06-30") == 2       # overhang ends 2022-07-01 + 1y
    assert points([E, f], "2023-07-01") == 1       # only F
    result = evaluate(DRIVING, [E, f], d("2022-09-01"))
    row = next(c for c in result.scorecards["driving"].contributions if c.event[1] == "e")
    assert row.counts_until == d("2023-07-01")
    assert "overhang" in row.notes[0]


def test_no_overhang_when_the_later_offence_was_recorded_before_the_expiry() -> None:
    f = ev("f", "offence_minor", "2022-06-01", "2022-06-15")
    assert points([E, f], "2022-09-01") == 1       # E expired normally; F alone


def test_overhang_needs_the_late_offence_to_be_known() -> None:
    f = ev("f", "offence_minor", "2022-06-01", "2022-08-01")
    # as known on 2022-07-15, F is not recorded yet: E has expired
    assert points([E, f], "2022-07-15", known="2022-07-15") == 0
    # as known on 2022-08-02 about 2022-07-15: F was committed then, so E still counts
    assert points([E, f], "2022-07-15", known="2022-08-02") == 2


def test_expiry_from_recorded_at_in_driving_policy() -> None:
    late = ev("l", "offence_reported_late", "2020-01-01", "2021-01-01")
    assert points([late], "2022-12-31") == 1       # counts 2y from 2021-01-01
    assert points([late], "2023-01-01") == 0
