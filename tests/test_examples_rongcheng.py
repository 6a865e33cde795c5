"""policies/rongcheng.yaml reproduces the published deduction table and grades, with every
deduction in its own domain so that no restriction crosses domains."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.policies.support import d, ev, example
from trustledger.engine import Event, MeasureState, evaluate
from trustledger.policy.models import MeasureKind

RONGCHENG = example("rongcheng")
AT = "2026-03-01"


def civic(events: list[Event], at: str = AT) -> float:
    score = evaluate(RONGCHENG, events, d(at), opt_ins={"civic"}).scorecards["civic"].score
    assert score is not None
    return score


# (event type, attributes, published deduction, domain)
TABLE = [
    ("contract_breach", {}, -20, "commerce"),
    ("breach_judgement", {}, -50, "commerce"),
    ("commercial_fraud", {}, -30, "commerce"),
    ("counterfeit_goods", {}, -30, "commerce"),
    ("other_commercial_untrustworthiness", {"deduction": 5}, -5, "commerce"),
    ("other_commercial_untrustworthiness", {"deduction": 50}, -50, "commerce"),
    ("bank_arrears", {"cycles": 1}, -10, "finance"),
    ("bank_arrears", {"cycles": 3}, -30, "finance"),       # -10 per monthly cycle
    ("private_lending_breach", {}, -20, "finance"),
    ("illegal_fundraising_investigation", {}, -40, "finance"),
    ("guarantee_breach", {}, -20, "finance"),
    ("unpaid_debt_judgement", {}, -30, "finance"),
    ("late_public_fees", {}, -20, "utilities"),
    ("fee_arrears_judgement", {}, -50, "utilities"),
    ("heating_tampering", {}, -50, "utilities"),
    ("utility_theft", {}, -60, "utilities"),
    ("utility_equipment_destroyed", {}, -100, "utilities"),
]


@pytest.mark.parametrize(("type_", "attrs", "deduction", "domain"), TABLE)
def test_published_deduction_table(type_: str, attrs: dict[str, int], deduction: int,
                                   domain: str) -> None:
    # everyone starts at 1000: 1000 + deduction
    assert civic([replace(ev("1", type_, "2026-02-01"), attributes=attrs)]) == 1000 + deduction
    assert RONGCHENG.event_types[type_].domain == domain


def test_other_commercial_untrustworthiness_is_limited_to_5_to_50() -> None:
    result = evaluate(RONGCHENG, [ev("1", "other_commercial_untrustworthiness", "2026-02-01",
                                     deduction=80)], d(AT), opt_ins={"civic"})
    assert result.scorecards["civic"].score == 1000
    assert "above its maximum 50" in (result.events[0].why_not or "")


@pytest.mark.parametrize(("score", "grade"), [
    (1100, "AAA"), (1050, "AAA"), (1049, "AA"), (1030, "AA"), (1029, "A"), (1000, "A"),
    (960, "A"), (959, "B"), (850, "B"), (849, "C"), (600, "C"), (599, "D"), (0, "D"),
])
def test_published_grades(score: float, grade: str) -> None:
    assert RONGCHENG.tier("civic", score, d(AT)) == grade


def test_a_year_of_small_lapses() -> None:
    events = [ev("1", "contract_breach", "2025-05-01"),               # -20
              ev("2", "bank_arrears", "2025-07-01", cycles=2),        # -20
              ev("3", "late_public_fees", "2025-09-01")]              # -20
    result = evaluate(RONGCHENG, events, d(AT), opt_ins={"civic"})
    card = result.scorecards["civic"]
    # 1000 - 20 - 20 - 20 = 940: grade B; the grade-A privilege (960+) is lost
    assert (card.score, card.tier) == (940, "B")
    assert result.measures["civic_a_benefits"].state is MeasureState.DENIED
    # deductions expire after two years: back to 1000 and grade A on 2027-09-01
    assert civic(events, at="2027-09-01") == 1000


def test_restrictions_stay_in_their_domain() -> None:
    commerce = [ev("1", "breach_judgement", "2026-01-05"), ev("2", "counterfeit_goods",
                                                              "2026-01-06")]   # -80 commerce
    result = evaluate(RONGCHENG, commerce, d(AT))
    assert result.measures["merchant_review"].state is MeasureState.ACTIVE
    assert result.measures["utility_prepayment"].state is MeasureState.INACTIVE
    assert result.measures["credit_line_review"].state is MeasureState.INACTIVE
    utilities = [ev("3", "utility_theft", "2026-01-10"),
                 ev("4", "late_public_fees", "2026-01-20")]                   # -80 utilities
    result = evaluate(RONGCHENG, commerce + utilities, d(AT))
    # -80 in utilities is not -100: the commerce deductions do not count there
    assert result.metrics["utility_deductions_2y"] == -80
    assert result.measures["utility_prepayment"].state is MeasureState.INACTIVE
    result = evaluate(RONGCHENG, [*commerce, *utilities,
                                  ev("5", "late_public_fees", "2026-02-01")], d(AT))
    assert result.measures["utility_prepayment"].state is MeasureState.ACTIVE   # -100


def test_every_restriction_reads_only_its_own_domain() -> None:
    for measure in RONGCHENG.measures.values():
        if measure.kind is not MeasureKind.RESTRICTION:
            continue
        for metric in measure.metrics:
            domains = {RONGCHENG.event_types[t].domain for t in RONGCHENG.metrics[metric].types}
            assert domains == {measure.domain}
        assert measure.scorecards == ()


def test_civic_total_is_opt_in_and_only_grants() -> None:
    assert RONGCHENG.scorecards["civic"].opt_in
    assert RONGCHENG.scorecards["civic"].domains == {"commerce", "finance", "utilities"}
    result = evaluate(RONGCHENG, [], d(AT))
    assert result.scorecards["civic"].score is None
    granted = evaluate(RONGCHENG, [], d(AT), opt_ins={"civic"}).measures["civic_a_benefits"]
    assert granted.state is MeasureState.GRANTED   # 1000 ≥ 960
