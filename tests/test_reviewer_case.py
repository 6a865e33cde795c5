"""What a reviewer sees of a case: the facts the contested decision rested on.

GDPR Art. 22(3): a review without the facts is no review. Over the API (the portal
shows the same dict, ``api.rights.case_facts``): the score, tier and measures as they
stood when the case was opened, the events involved with their points then, the
subject's statement and disputes, the deadline — each read logged exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clock import FixedClock
from tests.test_api import World, build_world
from tests.test_api_rights import dispute, overdue, sesame
from trustledger.api.schemas import ReviewerDisputeOut, ReviewerReviewOut


@pytest.fixture
def world(database_url: str, clock: FixedClock) -> Iterator[World]:
    yield from build_world(database_url, clock=clock, decision_max_age=0.0)


def reads(world: World) -> Counter[tuple[str, str, str]]:
    log = world.call("alice", "GET", "/v1/subjects/alice/access-log").json()["reads"]
    return Counter((x["name"], x["purpose"], x["read"]) for x in log)


def test_a_dispute_case_shows_the_score_with_the_event_and_the_event_itself(
        world: World, clock: FixedClock) -> None:
    seq = overdue(world)
    with_it = sesame(world)
    opened = dispute(world, seq)
    clock.advance(days=3)
    before = reads(world)
    r = world.call("reviewer", "GET", f"/v1/reviewer/disputes/{opened['seq']}")
    assert r.status_code == 200, r.text
    case: dict[str, Any] = r.json()
    ReviewerDisputeOut.model_validate(case)
    assert reads(world) - before == Counter({("rev", "dispute", "dispute"): 1})
    decided = case["decided"]
    # As it stood when the subject disputed: the overdue bill still counted.
    assert decided["ledger_seq"] == opened["seq"] - 1
    assert decided["valid_at"] == opened["opened_at"]
    assert decided["scorecards"]["sesame"]["score"] == pytest.approx(with_it["score"], abs=1e-9)
    assert decided["scorecards"]["sesame"]["tier"] == with_it["tier"]
    assert decided["scorecards"]["sesame"]["reasons"]
    assert "deposit_free_rental" in decided["measures"]
    [event] = case["events"]
    assert (event["seq"], event["role"], event["type"]) == (seq, "disputed", "bill_overdue")
    assert event["attributes"] == {"days_overdue": 65}
    assert event["counted"] is True and event["points_then"] < 0
    assert [d["seq"] for d in case["disputes"]] == [opened["seq"]]
    assert case["reason"] == "I paid that bill on time" and case["overdue"] is False
    clock.advance(days=30)
    assert world.call("reviewer", "GET",
                      f"/v1/reviewer/disputes/{opened['seq']}").json()["overdue"] is True


def test_a_review_case_shows_the_measure_as_decided_and_what_drives_it(world: World) -> None:
    overdue(world)
    measure = world.call("alice", "GET", "/v1/subjects/alice/scores").json()[
        "measures"]["deposit_free_rental"]
    asked = world.call("alice", "POST", "/v1/subjects/alice/reviews",
                       json={"measure": "deposit_free_rental",
                             "statement": "I have rented for five years"})
    assert asked.status_code == 201, asked.text
    before = reads(world)
    r = world.call("reviewer", "GET", f"/v1/reviewer/reviews/{asked.json()['seq']}")
    assert r.status_code == 200, r.text
    case: dict[str, Any] = r.json()
    ReviewerReviewOut.model_validate(case)
    assert reads(world) - before == Counter({("rev", "human review", "review"): 1})
    assert case["statement"] == "I have rented for five years"
    assert case["due_at"] and case["overdue"] is False
    decided = case["decided"]
    assert decided["policy_hash"] == asked.json()["policy_hash"]
    shown = decided["measures"]["deposit_free_rental"]
    # The decision the subject asked about, with its own reasons (not "review pending").
    assert (shown["state"], shown["in_force"]) == (measure["state"], measure["in_force"])
    assert [x["text"] for x in shown["reasons"]] == [x["text"] for x in measure["reasons"]]
    assert decided["scorecards"]["sesame"]["score"] is not None
    assert case["events"], "the events driving the measure"
    assert {e["role"] for e in case["events"]} <= {"reason", "evidence"}
    assert all(e["type"] is not None and e["counted"] for e in case["events"])


def test_a_corrected_dispute_shows_the_sources_correction_as_recorded_later(
        world: World) -> None:
    seq = overdue(world)
    opened = dispute(world, seq)
    r = world.call("source", "POST", f"/v1/disputes/{opened['seq']}/answer", json={
        "answer": "corrected", "source_event_id": "c20", "type": "bill_overdue",
        "occurred_at": "2026-03-13T00:00:00Z", "attributes": {"days_overdue": 5}})
    assert r.status_code == 200, r.text
    case = world.call("reviewer", "GET", f"/v1/reviewer/disputes/{opened['seq']}").json()
    ReviewerDisputeOut.model_validate(case)
    roles = [(e["role"], e["source_event_id"]) for e in case["events"]]
    assert roles == [("disputed", "e20"), ("correction", "c20")]
    correction = case["events"][1]
    assert correction["attributes"] == {"days_overdue": 5}
    assert correction["points_then"] is None
    assert correction["note"] == "recorded after the case was opened"
    assert case["status"] == "corrected"
