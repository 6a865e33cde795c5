"""Metrics: sums and counts over rolling windows, filtered by type, domain, category,
gravity and sign."""

from __future__ import annotations

import pytest

from tests.policies.support import d, ev, parse_declared
from trustledger.engine import evaluate

METRICS = parse_declared("""
policy: metrics
title: metrics
effective_from: 2025-01-01
event_types:
  loan_late:
    domain: finance
    category: credit_repayment
    gravity: moderate
    points: -20
    retention: P10Y
  loan_paid:
    domain: finance
    category: credit_repayment
    gravity: minor
    points: 5
    retention: P10Y
  default:
    domain: finance
    category: debt_default
    gravity: serious
    points: -100
    decay: {half_life: P365D}
    retention: P10Y
  late_return:
    domain: rental
    category: rental_conduct
    gravity: minor
    points: -5
    retention: P10Y
metrics:
  late_count_1y: {aggregate: count, types: [loan_late], window: P1Y}
  finance_sum_2y: {aggregate: sum, domains: [finance], window: P2Y}
  finance_original_2y: {aggregate: sum, value: original, domains: [finance], window: P2Y}
  repayments: {aggregate: count, categories: [credit_repayment]}
  serious_or_worse: {aggregate: count, min_gravity: serious}
  rental_negatives: {aggregate: count, domains: [rental], sign: negative}
  finance_gains: {aggregate: sum, domains: [finance], sign: positive}
""", "metrics.yaml")

EVENTS = [
    ev("1", "loan_late", "2025-03-01"),
    ev("2", "default", "2025-06-01"),
    ev("3", "loan_paid", "2026-01-15"),
    ev("4", "late_return", "2026-01-20"),
    ev("5", "loan_late", "2026-02-01"),
]


@pytest.mark.parametrize(("metric", "expected"), [
    # loan_late on 2025-03-01 leaves the 1-year window on 2026-03-01 (o ≤ t < o + 1y): only #5
    ("late_count_1y", 1),
    # -20 - 20 + 5 + (-100 · 2^(-273/365) = -59.5451…): 2025-06-01 → 2026-03-01 is 273 days
    ("finance_sum_2y", -20 - 20 + 5 - 100 * 2 ** (-273 / 365)),
    # original points, no decay: -20 - 20 + 5 - 100 = -135
    ("finance_original_2y", -135),
    # category credit_repayment: loan_late x2 + loan_paid = 3
    ("repayments", 3),
    # gravity ≥ serious: the default
    ("serious_or_worse", 1),
    # rental, negative points: the late return
    ("rental_negatives", 1),
    # finance, positive points: +5
    ("finance_gains", 5),
])
def test_metric_values(metric: str, expected: float) -> None:
    result = evaluate(METRICS, EVENTS, d("2026-03-01"))
    assert result.metrics[metric] == pytest.approx(expected, abs=1e-9)


def test_window_is_half_open_at_the_anniversary() -> None:
    result = evaluate(METRICS, EVENTS, d("2026-02-28T23:59:59"))
    assert result.metrics["late_count_1y"] == 2          # #1 still inside its year
    result = evaluate(METRICS, EVENTS, d("2027-02-01"))
    assert result.metrics["late_count_1y"] == 0          # #5 left on 2027-02-01


def test_two_year_window_drops_old_events() -> None:
    # at 2027-03-01: #1 (2025-03-01) has left the 2-year window; #5 -20, #2 -100, #3 +5 remain
    result = evaluate(METRICS, EVENTS, d("2027-03-01"))
    assert result.metrics["finance_original_2y"] == -115
