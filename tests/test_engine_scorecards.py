"""Scorecards: caps per calendar period with exempt types, floor and ceiling, opt-in, tiers."""

from __future__ import annotations

from tests.policies.support import d, ev, parse_declared
from trustledger.engine import MeasureState, evaluate

CAPS = parse_declared("""
policy: caps
title: caps, floor and ceiling
effective_from: 2026-01-01
event_types:
  like: {domain: community, category: peer_rating, gravity: minor, points: 10, retention: P5Y}
  award: {domain: community, category: peer_rating, gravity: minor, points: 50, retention: P5Y}
  penalty:
    domain: community
    category: platform_conduct
    gravity: moderate
    points: -30
    retention: P5Y
scorecards:
  s:
    events: [like, award, penalty]
    base: 100
    floor: 0
    ceiling: 200
    caps:
      - {period: week, max: 40, exempt: [award]}
      - {period: day, max: 25, exempt: [award]}
  losses:
    events: [like, penalty]
    base: 100
    caps:
      - {period: day, max: 40, applies_to: losses}
""", "caps.yaml")

# 2026-03-02 is a Monday.
WEEK = [
    ev("m1", "like", "2026-03-02T10:00"), ev("m2", "like", "2026-03-02T11:00"),
    ev("m3", "like", "2026-03-02T12:00"),
    ev("t1", "like", "2026-03-03T10:00"), ev("t2", "like", "2026-03-03T11:00"),
    ev("t3", "like", "2026-03-03T12:00"),
    ev("w1", "award", "2026-03-04T09:00"),
]


def test_caps_per_day_and_week_with_exempt_types() -> None:
    result = evaluate(CAPS, WEEK, d("2026-03-05"))
    card = result.scorecards["s"]
    capped = {c.event[1]: c.capped for c in card.contributions}
    # Monday: day cap 25 → 10, 10, 5 (week used 25)
    assert (capped["m1"], capped["m2"], capped["m3"]) == (10, 10, 5)
    # Tuesday: week cap 40 leaves 15 → 10, 5, 0
    assert (capped["t1"], capped["t2"], capped["t3"]) == (10, 5, 0)
    # Wednesday: the award is exempt from both caps → 50
    assert capped["w1"] == 50
    # 100 + 25 + 15 + 50 = 190
    assert card.score == 190
    m3 = next(c for c in card.contributions if c.event[1] == "m3")
    assert m3.notes == ("daily cap of 25 points gained reached",)
    t3 = next(c for c in card.contributions if c.event[1] == "t3")
    assert t3.notes == ("weekly cap of 40 points gained reached",)


def test_new_week_and_ceiling() -> None:
    events = [*WEEK, ev("n1", "like", "2026-03-09T10:00"), ev("n2", "like", "2026-03-09T11:00")]
    card = evaluate(CAPS, events, d("2026-03-10")).scorecards["s"]
    # 190 + 10 + 10 = 210 (new week, new day), held at the ceiling of 200
    assert card.total == 210
    assert card.score == 200
    assert card.reasons[0].text == \
        "held at the ceiling of 200: base 100 plus all contributions is 210"


def test_floor() -> None:
    events = [ev(f"p{i}", "penalty", f"2026-03-0{i + 1}") for i in range(5)]
    card = evaluate(CAPS, events, d("2026-03-10")).scorecards["s"]
    # 100 - 5 x 30 = -50, held at the floor of 0
    assert (card.total, card.score) == (-50, 0)


def test_cap_on_losses_applies_per_scorecard() -> None:
    events = [ev("p1", "penalty", "2026-03-02T10:00"), ev("p2", "penalty", "2026-03-02T11:00")]
    result = evaluate(CAPS, events, d("2026-03-03"))
    # `losses` loses at most 40 a day: -30, then -10; 100 - 40 = 60
    assert result.scorecards["losses"].score == 60
    # `s` has no cap on losses: 100 - 60 = 40
    assert result.scorecards["s"].score == 40


OPT_IN = parse_declared("""
policy: opt_in
title: opt-in scorecards
effective_from: 2026-01-01
event_types:
  paid: {domain: finance, category: bill_payment, gravity: minor, points: 10, retention: P5Y}
  returned: {domain: rental, category: rental_conduct, gravity: minor, points: 5, retention: P5Y}
metrics:
  paid_in_combined: {aggregate: count, scorecard: combined, types: [paid]}
scorecards:
  combined: {events: [paid, returned], base: 500, opt_in: true}
measures:
  perk: {kind: privilege, domain: rental, condition: "combined.score >= 510.0"}
""", "opt_in.yaml")

PAID = [ev("1", "paid", "2026-02-01"), ev("2", "returned", "2026-02-02")]


def test_opt_in_scorecard_produces_nothing_without_consent() -> None:
    result = evaluate(OPT_IN, PAID, d("2026-03-01"))
    card = result.scorecards["combined"]
    assert (card.consented, card.score, card.tier, card.contributions, card.reasons) == \
        (False, None, None, (), ())
    assert result.metrics["paid_in_combined"] is None
    perk = result.measures["perk"]
    assert perk.state is MeasureState.DENIED
    assert "consent" in perk.reasons[0].text
    # the events are still kept and listed
    assert [o.event[1] for o in result.events] == ["1", "2"]


def test_opt_in_scorecard_with_consent() -> None:
    result = evaluate(OPT_IN, PAID, d("2026-03-01"), opt_ins={"combined"})
    # 500 + 10 + 5 = 515
    assert result.scorecards["combined"].score == 515
    assert result.metrics["paid_in_combined"] == 1
    assert result.measures["perk"].state is MeasureState.GRANTED


TIERS = parse_declared("""
policy: tiers
title: effective-dated tiers
effective_from: 2026-01-01
event_types:
  fine: {domain: civic, category: public_service_fees, gravity: minor, points: -145,
         retention: P5Y}
scorecards:
  civic:
    events: [fine]
    base: 1000
    tiers:
      - {name: C}
      - {name: B, min: 850, changes: [{from: 2026-07-01, min: 860}]}
      - {name: A, min: 960}
measures:
  b_or_better: {kind: privilege, domain: civic, severity: minor, condition: "civic.rank >= 1"}
  grade_a: {kind: privilege, domain: civic, severity: minor, condition: "civic.tier == 'A'"}
""", "tiers.yaml")


def test_tier_threshold_applies_by_date() -> None:
    events = [ev("1", "fine", "2026-02-01")]
    # 1000 - 145 = 855: B while B starts at 850, C once B starts at 860 (2026-07-01)
    assert evaluate(TIERS, events, d("2026-06-30")).scorecards["civic"].tier == "B"
    assert evaluate(TIERS, events, d("2026-07-01")).scorecards["civic"].tier == "C"
    assert evaluate(TIERS, [], d("2026-07-01")).scorecards["civic"].tier == "A"
    assert TIERS.tier("civic", 855, d("2026-06-30")) == "B"
    assert TIERS.tier("civic", 855, d("2026-07-01")) == "C"


def test_conditions_read_tier_and_rank_by_date() -> None:
    events = [ev("1", "fine", "2026-02-01")]
    june = evaluate(TIERS, events, d("2026-06-30")).measures
    assert (june["b_or_better"].state, june["grade_a"].state) == \
        (MeasureState.GRANTED, MeasureState.DENIED)
    july = evaluate(TIERS, events, d("2026-07-02")).measures["b_or_better"]
    # B's threshold moved to 860 on 2026-07-01: 855 is C (rank 0) from then on
    assert (july.state, july.since) == (MeasureState.DENIED, d("2026-07-01"))
    assert "civic.score = 855 (tier C)" in july.reasons[0].text
