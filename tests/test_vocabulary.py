"""One vocabulary: tiers by name or label, one display rounding, contributions by date,
event labels phrased by what the event did."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from tests.test_rights_helpers import driving, event, sesame
from tests.test_whatif import _opt_in
from trustledger import render
from trustledger.api import render as api_render
from trustledger.engine.reasons import plain, signed, works_both_ways
from trustledger.errors import NotFoundError
from trustledger.rights.whatif import TierTarget, find_tier, parse_target, tier_names
from trustledger.scoring import Assessment, assess

SESAME = sesame()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Ledger order is not date order: seq 1 happened last.
EVENTS = [event("bob", "t2", "rental_returned", d("2025-08-01"), seq=1, late_hours=0),
          event("bob", "r1", "repayment_on_time", d("2025-03-01"), seq=2, amount=1000.0),
          event("bob", "t1", "rental_returned", d("2025-07-01"), seq=3, late_hours=30),
          event("bob", "l1", "repayment_late", d("2025-06-01"), seq=4, days_late=20,
                amount=100.0)]


def _assessed() -> Assessment:
    return assess(SESAME, "bob", EVENTS, [_opt_in()], NOW)


# -- tiers: by name or label ----------------------------------------------------------------

@pytest.mark.parametrize("text", ["sesame:650-699", "sesame:very good", "sesame:Very Good",
                                  'sesame:"very good"', "sesame:  VERY   good ",
                                  "sesame:'very good'"])
def test_a_tier_is_found_by_its_name_or_its_label(text: str) -> None:
    assert parse_target(SESAME, text) == TierTarget("sesame", "650-699", "very good")
    assert parse_target(SESAME, text).describe() == "tier very good (650-699) on sesame"


def test_an_unknown_tier_lists_every_name_and_label() -> None:
    listed = ("350-549 (poor), 550-599 (fair), 600-649 (good), 650-699 (very good), "
              "700-950 (excellent)")
    assert tier_names(SESAME.scorecards["sesame"]) == listed
    with pytest.raises(NotFoundError, match=r"target: scorecard sesame has no tier 'great' "
                                            r"\(tiers, by name or label: 350-549 \(poor\)"):
        parse_target(SESAME, "sesame:great")
    with pytest.raises(NotFoundError, match=r"no scorecard 'credit' \(scorecards: sesame\)"):
        find_tier(SESAME, "credit", "good")
    with pytest.raises(NotFoundError, match=r"measures: deposit_free_rental, pay_later"):
        parse_target(SESAME, "free_lunch")
    # A tier without a label is called by its name, and listed so.
    assert parse_target(driving(), "driving:NOTED") == TierTarget("driving", "noted", "noted")
    assert tier_names(driving().scorecards["driving"]).startswith("clear, noted, admonished")


# -- one display rounding --------------------------------------------------------------------

def test_every_surface_rounds_a_score_alike() -> None:
    result = _assessed().evaluation
    score = result.scorecards["sesame"].score
    assert score is not None
    assert f"{score:g}" != plain(score)  # the CLI used to print 6 significant digits
    console = Console(record=True, width=200)
    console.print(render.evaluation(result, detail=True))
    shown = console.export_text()
    assert f"sesame: {plain(score)} " in shown and f"{score:g}" not in shown
    assert render.score_text(score) == plain(score) == f"{score:.2f}"
    assert render.points_text(-13.1642) == signed(-13.1642) == "\u221213.16"
    assert render.score_text(650.0) == "650" and render.score_text(None) == "—"
    # The API keeps full precision.
    body = api_render.subject_scores(_assessed(), "bob")
    assert body["scorecards"]["sesame"]["score"] == score


# -- contributions by date -------------------------------------------------------------------

def test_contributions_are_listed_by_date_everywhere() -> None:
    assessment = _assessed()
    by_date = ["r1", "l1", "t1", "t2"]
    body = api_render.subject_scores(assessment, "bob")
    assert [c["event"]["source_event_id"] for c in
            body["scorecards"]["sesame"]["contributions"]] == by_date
    result = assessment.evaluation
    console = Console(record=True, width=250)
    console.print(render.contributions(result.scorecards["sesame"],
                                       {o.event: o.seq for o in result.events}))
    rows = [line for line in console.export_text().splitlines() if "2025-" in line]
    assert [row.split("│")[1].strip() for row in rows] == \
        ["2025-03-01", "2025-06-01", "2025-07-01", "2025-08-01"]
    assert [row.split("│")[2].strip() for row in rows] == ["2", "4", "3", "1"]


# -- labels phrased by sign ------------------------------------------------------------------

def test_a_type_that_works_either_way_says_which_way_it_did() -> None:
    assert works_both_ways(SESAME.event_types["rental_returned"])
    assert not any(works_both_ways(t) for n, t in SESAME.event_types.items()
                   if n != "rental_returned")
    reasons = [r.text for r in _assessed().evaluation.scorecards["sesame"].reasons]
    assert any(r.startswith("rental returned (against you) on 2025-07-01: \u221210")
               for r in reasons)
    assert any(r.startswith("rental returned (in your favour) on 2025-08-01: +3")
               for r in reasons)
    assert any(r.startswith("late repayment on 2025-06-01: \u221230") for r in reasons)
    assert not any("(against you)" in r for r in reasons if r.startswith("late repayment"))


def test_a_tier_is_shown_by_its_label_and_name_given_the_policy() -> None:
    result = _assessed().evaluation
    assert render.tier_text("650-699", SESAME, "sesame") == "very good (650-699)"
    assert render.tier_text("noted", driving(), "driving") == "noted"
    assert render.tier_text("650-699") == "650-699" and render.tier_text(None) == "—"
    console = Console(record=True, width=200)
    console.print(render.evaluation(result, policy=SESAME))
    assert "tier poor (350-549)" in console.export_text()
