"""policies/sesame.yaml reproduces its published figures: 350-950, the five bands,
deposit-free rental at 650+, pay-later at 600+ with no negative record in 5 years."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.policies.support import d, ev, example
from trustledger.engine import Event, MeasureState, evaluate
from trustledger.policy.models import AttributeType

SESAME = example("sesame")
V = d("2026-06-01")


def run(events: list[Event], at: str = "2026-06-01", consent: bool = True):  # type: ignore[no-untyped-def]
    return evaluate(SESAME, events, d(at), opt_ins={"sesame"} if consent else ())


def good_history() -> list[Event]:
    """Identity verified (+30, no decay) and, every 73 days back from 2026-06-01, two
    repayments of 4,000 (2 + 4000/500 = 10, at most 10, each): +20 per date, each in its
    own month so the monthly cap of 20 is just met."""
    events = [ev("id", "identity_verified", "2024-08-01", method="eid")]
    for j in range(10):
        day = (V - timedelta(days=73 * j)).date().isoformat()
        events += [ev(f"r{j}a", "repayment_on_time", day, amount=4000.0),
                   ev(f"r{j}b", "repayment_on_time", day, amount=4000.0)]
    return events


# 20 · Σ_{j=0..9} 2^(-73j/365) = 20 · (1 - 2^-2) / (1 - 2^-0.2) = 115.8754 (half-life 365 days)
GOOD = 550 + 30 + 20 * (1 - 2 ** -2) / (1 - 2 ** -0.2)    # = 695.8754


def test_event_types_and_attributes_match_the_population_generator() -> None:
    expected = {
        "repayment_on_time": {"amount": AttributeType.NUMBER},
        "repayment_late": {"days_late": AttributeType.INTEGER, "amount": AttributeType.NUMBER},
        "bill_paid": {},
        "bill_overdue": {"days_overdue": AttributeType.INTEGER},
        "rental_returned": {"late_hours": AttributeType.INTEGER},
        "identity_verified": {"method": AttributeType.STRING},
        "debt_default": {"amount": AttributeType.NUMBER},
    }
    actual = {name: {a.name: a.type for a in et.attributes}
              for name, et in SESAME.event_types.items()}
    assert actual == expected
    assert set(SESAME.scorecards) == {"sesame"}


@pytest.mark.parametrize(("score", "band"), [
    (350, "350-549"), (549.99, "350-549"), (550, "550-599"), (599.99, "550-599"),
    (600, "600-649"), (649.99, "600-649"), (650, "650-699"), (699.99, "650-699"),
    (700, "700-950"), (950, "700-950"),
])
def test_bands(score: float, band: str) -> None:
    assert SESAME.tier("sesame", score, V) == band


def test_opt_in_no_consent_no_score() -> None:
    result = run(good_history(), consent=False)
    assert result.scorecards["sesame"].score is None
    assert all(m.state is MeasureState.DENIED for m in result.measures.values())


def test_new_subject_starts_at_550() -> None:
    card = run([]).scorecards["sesame"]
    assert (card.score, card.tier) == (550, "550-599")


def test_good_payer_gets_deposit_free_rental_at_650_plus() -> None:
    result = run(good_history())
    card = result.scorecards["sesame"]
    assert card.score == pytest.approx(GOOD, abs=1e-9)          # 695.8754
    assert card.tier == "650-699"
    assert result.measures["deposit_free_rental"].state is MeasureState.GRANTED
    assert result.measures["pay_later"].state is MeasureState.GRANTED
    assert result.measures["priority_service"].state is MeasureState.DENIED   # needs 700


def test_one_late_repayment_keeps_650_but_loses_pay_later_for_5_years() -> None:
    late = ev("late", "repayment_late", "2026-06-01", days_late=5, amount=800.0)
    result = run([*good_history(), late])
    # -10 - 5 days = -15: 695.8754 - 15 = 680.8754
    assert result.scorecards["sesame"].score == pytest.approx(GOOD - 15, abs=1e-9)
    assert result.measures["deposit_free_rental"].state is MeasureState.GRANTED
    pay_later = result.measures["pay_later"]
    assert pay_later.state is MeasureState.DENIED
    assert "negative_records_5y = 1" in pay_later.reasons[0].text
    assert pay_later.reasons[1].text == \
        "late repayment on 2026-06-01 (\u221215) counts in negative_records_5y until 2031-06-01"
    later = run([*good_history(), late], at="2031-06-01").measures["pay_later"]
    assert later.state is MeasureState.DENIED   # the good history has decayed below 600 by then
    assert "negative_records_5y = 0" in later.reasons[0].text


def test_points_of_each_behaviour() -> None:
    events = [
        ev("a", "bill_overdue", "2026-06-01", days_overdue=45),     # ceil(45/30) = 2: -20
        ev("b", "rental_returned", "2026-06-01", late_hours=30),    # ceil(30/24) = 2: -10
        ev("c", "rental_returned", "2026-06-01", late_hours=0),     # on time: +3
        ev("e", "bill_paid", "2026-06-01"),                          # +1
        ev("f", "debt_default", "2026-06-01", amount=5000.0),        # -150
    ]
    # 550 - 20 - 10 + 3 + 1 - 150 = 374
    assert run(events).scorecards["sesame"].score == 374


def test_floor_of_350() -> None:
    events = [ev(f"x{i}", "debt_default", "2026-06-01", amount=1.0) for i in range(3)]
    card = run(events).scorecards["sesame"]
    # 550 - 3 x 150 = 100, held at the floor
    assert (card.total, card.score, card.tier) == (100, 350, "350-549")


def test_monthly_cap_on_gains_and_identity_counted_once() -> None:
    events = [ev(f"p{i}", "repayment_on_time", "2026-06-01", amount=4000.0) for i in range(3)]
    events += [ev("id1", "identity_verified", "2026-06-01", method="eid"),
               ev("id2", "identity_verified", "2026-06-01", method="bank")]
    card = run(events).scorecards["sesame"]
    capped = {c.event[1]: c.capped for c in card.contributions}
    # 10 + 10 + 0 (monthly cap of 20 reached); identity +30 once, exempt from the cap
    assert [capped["p0"], capped["p1"], capped["p2"]] == [10, 10, 0]
    assert [capped["id1"], capped["id2"]] == [30, 0]
    assert card.score == 550 + 20 + 30


def test_principal_reasons_are_specific() -> None:
    late = ev("late", "repayment_late", "2026-03-02", days_late=10, amount=800.0)   # -20
    result = run([late], at="2026-06-01")
    reasons = result.scorecards["sesame"].reasons
    # -20 · 2^(-91/180) = -14.0878 on 2026-06-01 (91 days); halves to -10 by 2026-03-02 + 180 days;
    # score 550 - 14.0878 = 535.9122
    assert reasons[0].text == ("late repayment on 2026-03-02: \u221220, now \u221214.09, "
                               "halves to \u221210 by 2026-08-29; counts until 2031-03-02")
    denied = result.measures["deposit_free_rental"]
    assert denied.reasons[0].text == ("condition `sesame.score >= 650.0` is false on "
                                      "2026-06-01: sesame.score = 535.91 (tier 350-549)")
    assert len(denied.reasons) <= 4
