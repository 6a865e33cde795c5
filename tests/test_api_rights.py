"""Subject rights over HTTP: report, what-if, disputes, human review, consent, erasure.

The real app over a real ledger (SQLite and PostgreSQL), with the service's clock
injected so the dispute SLA is tested without waiting; one flow on a live uvicorn
server. Every expected number is the reference evaluation of the same history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.clock import FixedClock
from tests.governance import TEST_PROGRAMMES, put_in_force
from tests.test_api import PROBLEM, World, build_world, event
from tests.test_api_live import serving
from trustledger.api import Settings, create_app
from trustledger.engine import evaluate
from trustledger.ledger import EventIn
from trustledger.scoring import assess_subject


@pytest.fixture
def world(database_url: str, clock: FixedClock) -> Iterator[World]:
    yield from build_world(database_url, clock=clock, decision_max_age=0.0)


def append(w: World, body: dict[str, Any]) -> int:
    """A source appends one event through the API; its seq."""
    role = "source2" if body.get("source") == "rentals-a" else "source"
    r = w.call(role, "POST", "/v1/events", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["seq"])


def sesame(w: World, subject: str = "alice") -> dict[str, Any]:
    r = w.call(subject, "GET", f"/v1/subjects/{subject}/scores")
    assert r.status_code == 200, r.text
    card: dict[str, Any] = r.json()["scorecards"]["sesame"]
    return card


def overdue(w: World, i: int = 20) -> int:
    """Alice opts in; bank-a reports an overdue bill of hers (adverse); its seq."""
    w.opt_in("alice")
    return append(w, event(i, "alice", "bill_overdue", 12, days_overdue=65))


def reference(w: World, clock: FixedClock, without: set[int] | None = None) -> float:
    """Alice's Sesame score now by the reference engine, leaving out events by seq."""
    policy = w.ledger_policy()
    events = [e for e in w.ledger.events("alice") if e.seq not in (without or set())]
    score = evaluate(policy, events, clock.now, opt_ins={"sesame"}).scorecards["sesame"].score
    assert score is not None
    return score


def head(w: World) -> tuple[int, str]:
    return w.ledger.head()


def dispute(w: World, seq: int, **extra: Any) -> dict[str, Any]:
    r = w.call("alice", "POST", "/v1/subjects/alice/disputes",
               json={"event_seq": seq, "reason": "I paid that bill on time", **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# -- disputes -----------------------------------------------------------------------------------

def test_disputed_negative_event_stops_counting_and_retraction_removes_it(
        world: World, clock: FixedClock) -> None:
    seq = overdue(world)
    with_it = sesame(world)["score"]
    assert with_it == pytest.approx(reference(world, clock), abs=1e-9)
    opened = dispute(world, seq)
    assert opened["status"] == "open" and opened["event"]["source"] == "bank-a"
    assert opened["deadline"].startswith(
        (datetime.fromisoformat(opened["opened_at"]) + timedelta(days=30)).date().isoformat())
    scores = world.call("alice", "GET", "/v1/subjects/alice/scores").json()
    while_open = scores["scorecards"]["sesame"]["score"]
    assert while_open > with_it
    assert while_open == pytest.approx(reference(world, clock, {seq}), abs=1e-9)
    assert [x["event"]["source_event_id"] for x in scores["left_out"]] == ["e20"]

    # Only the event's own source sees and answers the dispute.
    mine = world.call("source", "GET", "/v1/disputes")
    assert [d["seq"] for d in mine.json()["disputes"]] == [opened["seq"]]
    assert world.call("source2", "GET", "/v1/disputes").json()["disputes"] == []
    other = world.call("source2", "POST", f"/v1/disputes/{opened['seq']}/answer",
                       json={"answer": "retracted", "source_event_id": "r1"})
    assert other.status_code == 404 and "dispute_seq" in other.json()["detail"]

    answered = world.call("source", "POST", f"/v1/disputes/{opened['seq']}/answer",
                          json={"answer": "retracted", "source_event_id": "r20",
                                "note": "our mistake"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "retracted"
    after = world.call("alice", "GET", "/v1/subjects/alice/scores").json()
    assert after["left_out"] == []
    assert "e20" not in {c["event"]["source_event_id"]
                         for c in after["scorecards"]["sesame"]["contributions"]
                         if c["counted"]}
    assert after["scorecards"]["sesame"]["score"] == pytest.approx(
        reference(world, clock), abs=1e-9)  # the ledger's own history, retraction included
    assert after["scorecards"]["sesame"]["score"] == pytest.approx(while_open, abs=1e-9)
    # The source's reads of the dispute are in alice's access log.
    reads = world.call("alice", "GET", "/v1/subjects/alice/access-log").json()["reads"]
    assert {(r["name"], r["purpose"]) for r in reads} >= {("bank-a", "dispute")}


def test_reviewer_resolves_valid_and_the_event_counts_again(world: World,
                                                            clock: FixedClock) -> None:
    seq = overdue(world)
    with_it = sesame(world)["score"]
    opened = dispute(world, seq, new_information=True)
    assert opened["deadline"].startswith(
        (datetime.fromisoformat(opened["opened_at"]) + timedelta(days=45)).date().isoformat())
    assert sesame(world)["score"] > with_it
    queue = world.call("reviewer", "GET", "/v1/reviewer/queue").json()
    assert [(i["kind"], i["seq"], i["subject"], i["overdue"]) for i in queue["items"]] == [
        ("dispute", opened["seq"], "alice", False)]
    assert queue["items"][0]["due_at"] == opened["deadline"]
    detail = world.call("reviewer", "GET", f"/v1/reviewer/disputes/{opened['seq']}")
    assert detail.json()["reason"] == "I paid that bill on time"
    done = world.call("reviewer", "POST", f"/v1/reviewer/disputes/{opened['seq']}/resolution",
                      json={"outcome": "valid", "reason": "the bank's statement shows it late"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "valid"
    assert sesame(world)["score"] == pytest.approx(with_it, abs=1e-9)
    mine = world.call("alice", "GET", "/v1/subjects/alice/disputes").json()
    assert mine[0]["resolution"]["reason"] == "the bank's statement shows it late"
    assert world.call("reviewer", "GET", "/v1/reviewer/queue").json()["items"] == []
    reads = world.call("alice", "GET", "/v1/subjects/alice/access-log").json()["reads"]
    assert {(r["name"], r["read"]) for r in reads} >= {("rev", "review queue"),
                                                       ("rev", "dispute")}


def test_every_case_route_logs_its_read_in_the_subjects_access_log(world: World) -> None:
    """Safeguards 5 and 7: each source and reviewer route that shows a case logs one read."""
    opened = dispute(world, overdue(world))
    asked = world.call("alice", "POST", "/v1/subjects/alice/reviews", json={"measure": "pay_later"})
    assert asked.status_code == 201, asked.text
    d, r = opened["seq"], asked.json()["seq"]

    def reads() -> Counter[tuple[str, str, str]]:
        log = world.call("alice", "GET", "/v1/subjects/alice/access-log").json()["reads"]
        return Counter((x["name"], x["purpose"], x["read"]) for x in log)

    steps: list[tuple[str, str, str, dict[str, Any] | None, list[tuple[str, str, str]]]] = [
        ("source", "GET", "/v1/disputes", None, [("bank-a", "dispute", "disputes")]),
        ("source", "GET", f"/v1/disputes/{d}", None, [("bank-a", "dispute", "dispute")]),
        ("reviewer", "GET", "/v1/reviewer/queue", None,
         [("rev", "dispute", "review queue"), ("rev", "human review", "review queue")]),
        ("reviewer", "GET", f"/v1/reviewer/disputes/{d}", None, [("rev", "dispute", "dispute")]),
        ("reviewer", "GET", f"/v1/reviewer/reviews/{r}", None,
         [("rev", "human review", "review")]),
        ("reviewer", "POST", f"/v1/reviewer/reviews/{r}/resolution",
         {"decision": "confirmed", "reason": "no score without opt-in"},
         [("rev", "human review", "review")]),
        ("source", "POST", f"/v1/disputes/{d}/answer", {"answer": "verified"},
         [("bank-a", "dispute", "dispute")]),
        ("reviewer", "POST", f"/v1/reviewer/disputes/{d}/resolution",
         {"outcome": "valid", "reason": "the bank's statement shows it late"},
         [("rev", "dispute", "dispute")]),
    ]
    for role, method, path, body, logged in steps:
        before = reads()
        done = world.call(role, method, path, json=body)
        assert done.status_code == 200, (path, done.text)
        assert reads() - before == Counter(logged), path


def test_unverified_dispute_lapses_after_the_sla(world: World, clock: FixedClock) -> None:
    seq = overdue(world)
    opened = dispute(world, seq)
    clock.advance(days=31)
    scores = world.call("alice", "GET", "/v1/subjects/alice/scores").json()
    assert [x["event"]["source_event_id"] for x in scores["left_out"]] == ["e20"]
    assert "not verified by its source" in scores["left_out"][0]["note"]
    assert scores["scorecards"]["sesame"]["score"] == pytest.approx(
        reference(world, clock, {seq}), abs=1e-9)
    item = world.call("reviewer", "GET", "/v1/reviewer/queue").json()["items"][0]
    assert item["status"] == "lapsed" and item["overdue"] is True
    # A reviewer can still resolve it; found invalid, it stays out for good.
    done = world.call("reviewer", "POST", f"/v1/reviewer/disputes/{opened['seq']}/resolution",
                      json={"outcome": "invalid", "reason": "the source never answered"})
    assert done.status_code == 200 and done.json()["status"] == "invalid"
    clock.advance(days=400)
    assert "e20" not in {c["event"]["source_event_id"] for c in sesame(world)["contributions"]
                         if c["counted"]}


def test_source_correction_counts_instead(world: World, clock: FixedClock) -> None:
    seq = overdue(world)
    opened = dispute(world, seq)
    r = world.call("source", "POST", f"/v1/disputes/{opened['seq']}/answer", json={
        "answer": "corrected", "source_event_id": "c20", "type": "bill_overdue",
        "occurred_at": "2026-03-13T00:00:00Z", "attributes": {"days_overdue": 5}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "corrected" and r.json()["answer"]["event_seq"] > seq
    assert sesame(world)["score"] == pytest.approx(reference(world, clock), abs=1e-9)
    counted = {c["event"]["source_event_id"] for c in sesame(world)["contributions"]
               if c["counted"]}
    assert "c20" in counted and "e20" not in counted


# -- human review -------------------------------------------------------------------------------

def test_review_lifted_restriction_is_gone_with_the_reason_shown(world: World) -> None:
    world.opt_in("alice")
    measure = world.call("alice", "GET", "/v1/subjects/alice/scores").json()[
        "measures"]["deposit_free_rental"]
    assert measure["in_force"] is False  # a privilege denied: adverse, reviewable
    asked = world.call("alice", "POST", "/v1/subjects/alice/reviews",
                       json={"measure": "deposit_free_rental", "statement": "I rent often"})
    assert asked.status_code == 201, asked.text
    assert asked.json()["decision"] is None
    again = world.call("alice", "POST", "/v1/subjects/alice/reviews",
                       json={"measure": "deposit_free_rental"})
    assert again.status_code == 422 and again.json()["detail"].startswith("measure:")
    queue = world.call("reviewer", "GET", "/v1/reviewer/queue").json()["items"]
    assert [(i["kind"], i["seq"]) for i in queue] == [("review", asked.json()["seq"])]
    why = "five years of on-time rentals outweigh the score"
    lifted = world.call("reviewer", "POST",
                        f"/v1/reviewer/reviews/{asked.json()['seq']}/resolution",
                        json={"decision": "lifted", "reason": why})
    assert lifted.status_code == 200, lifted.text
    now = world.call("alice", "GET", "/v1/subjects/alice/scores").json()[
        "measures"]["deposit_free_rental"]
    assert now["in_force"] is True and now["state"] == "granted"
    assert why in now["reasons"][0]["text"]
    shown = world.call("alice", "GET", "/v1/subjects/alice/reviews").json()
    assert shown[0]["decision"] == "lifted" and shown[0]["reason"] == why
    world.consent("alice", "party", "rental_deposit")
    decided = world.call("party", "POST", "/v1/decisions",
                         json={"subject": "alice", "purpose": "rental_deposit"})
    assert decided.json()["measures"]["deposit_free_rental"]["in_force"] is True


def test_review_confirmed_keeps_the_measure(world: World) -> None:
    asked = world.call("alice", "POST", "/v1/subjects/alice/reviews",
                       json={"measure": "pay_later"})
    assert asked.status_code == 201, asked.text
    done = world.call("reviewer", "POST",
                      f"/v1/reviewer/reviews/{asked.json()['seq']}/resolution",
                      json={"decision": "confirmed", "reason": "no score without opt-in"})
    assert done.json()["decision"] == "confirmed"
    measure = world.call("alice", "GET", "/v1/subjects/alice/scores").json()[
        "measures"]["pay_later"]
    assert measure["in_force"] is False and "no score without opt-in" in \
        measure["reasons"][0]["text"]


# -- consent and erasure --------------------------------------------------------------------------

def test_withdrawn_consent_blocks_the_next_decision(world: World) -> None:
    seq = world.consent("alice", "party", "rental_deposit")
    ask = {"subject": "alice", "purpose": "rental_deposit"}
    assert world.call("party", "POST", "/v1/decisions", json=ask).status_code == 200
    assert world.call("alice", "DELETE", f"/v1/subjects/alice/consents/{seq}").status_code == 200
    refused = world.call("party", "POST", "/v1/decisions", json=ask)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/missing-consent")


def test_after_erasure_no_endpoint_returns_the_subjects_payloads(world: World) -> None:
    seq = overdue(world)
    dispute(world, seq)
    world.consent("alice", "party", "rental_deposit")
    ask = {"subject": "alice", "purpose": "rental_deposit"}
    assert world.call("party", "POST", "/v1/decisions", json=ask).status_code == 200
    erased = world.call("alice", "POST", "/v1/subjects/alice/erasure")
    assert erased.status_code == 201, erased.text
    assert erased.json()["purged"] >= 8
    again = world.call("alice", "POST", "/v1/subjects/alice/erasure")
    assert again.status_code == 422 and again.json()["detail"].startswith("subject:")

    decision = world.call("party", "POST", "/v1/decisions", json=ask)
    # Its consent went with the erasure: the party is told what it would be told about a
    # subject it never heard of (erasure is not observable; tests/test_hardening_rights.py).
    assert decision.status_code == 403 and "missing consent" in decision.json()["detail"]
    bodies = []
    for path in ("scores", "report", "report.html"):
        r = world.call("alice", "GET", f"/v1/subjects/alice/{path}")
        assert r.status_code == 404, (path, r.text)
        bodies.append(r.text)
    for path, key in (("events", "events"), ("access-log", "reads")):
        r = world.call("alice", "GET", f"/v1/subjects/alice/{path}")
        assert r.status_code == 200 and r.json()[key] == [], (path, r.text)
        bodies.append(r.text)
    for path in ("consents", "disputes", "reviews"):
        r = world.call("alice", "GET", f"/v1/subjects/alice/{path}")
        assert r.status_code == 200 and r.json() == [], (path, r.text)
    whatif = world.call("alice", "POST", "/v1/subjects/alice/whatif", json={})
    assert whatif.status_code == 404
    # No new case about the erased subject: nothing left to dispute, no decision to review.
    position = world.ledger.position()
    for path, body, status, says in (
            ("disputes", {"event_seq": seq, "reason": "I paid that bill on time"}, 422,
             "event_seq: event"),
            ("reviews", {"measure": "pay_later"}, 404, "no data")):
        r = world.call("alice", "POST", f"/v1/subjects/alice/{path}", json=body)
        assert r.status_code == status and says in r.json()["detail"], (path, r.text)
    assert world.ledger.position() == position
    for role, path in (("source", "/v1/disputes?all=true"), ("reviewer", "/v1/reviewer/queue")):
        r = world.call(role, "GET", path)
        assert r.status_code == 200 and "alice" not in r.text, r.text
        bodies.append(r.text)
    for text in bodies:
        assert "I paid that bill" not in text and "days_overdue" not in text
    world.ledger.verify()
    # Others are untouched.
    assert world.call("bob", "GET", "/v1/subjects/bob/scores").status_code == 200


# -- report and what-if -------------------------------------------------------------------------

def test_report_json_and_printable_page(world: World, clock: FixedClock) -> None:
    seq = overdue(world)
    dispute(world, seq)
    report = world.call("alice", "GET", "/v1/subjects/alice/report")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["subject"] == "alice" and len(body["events"]) == 4
    assert body["disputes"][0]["status"] == "open"
    card = body["scorecards"][0]
    assert card["score"] == pytest.approx(reference(world, clock, {seq}), abs=1e-9)
    assert 1 <= len(card["reasons"]) <= 4
    page = world.call("alice", "GET", "/v1/subjects/alice/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text and "bill_overdue" in page.text and "I paid that bill" in page.text


def test_whatif_equals_a_fresh_evaluation(world: World, clock: FixedClock) -> None:
    seq = overdue(world)
    policy = world.ledger_policy()
    later = clock.now + timedelta(days=200)
    r = world.call("alice", "POST", "/v1/subjects/alice/whatif", json={
        "remove": [seq],
        "add": [{"type": "bill_paid", "occurred_at": clock.now.isoformat()}],
        "reach": "sesame:600-649"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["seq"] for e in body["removed"]] == [seq]
    assert body["added"][0]["source"] == "what-if"
    events = [e for e in world.ledger.events("alice") if e.seq != seq]
    from trustledger.engine import Event

    hypothetical = Event("what-if", "hypothetical-1", "alice", "bill_paid", clock.now, clock.now,
                         {})
    want = evaluate(policy, [*events, hypothetical], clock.now, opt_ins={"sesame"})
    assert body["after"]["scorecards"]["sesame"]["score"] == pytest.approx(
        want.scorecards["sesame"].score, abs=1e-9)
    assert body["before"]["scorecards"]["sesame"]["score"] == pytest.approx(
        reference(world, clock), abs=1e-9)
    takes = body["what_it_takes"]
    assert takes["target"] == "sesame:600-649" and takes["summary"][0].startswith("what it takes")
    # At a future date: the same as asking then, with nothing new in the ledger.
    future = world.call("alice", "POST", "/v1/subjects/alice/whatif",
                        json={"at": later.isoformat()}).json()
    clock.now = later
    assert future["after"]["scorecards"]["sesame"]["score"] == pytest.approx(
        sesame(world)["score"], abs=1e-9)
    assert assess_subject(world.ledger, "alice", policy, later).evaluation.scorecards[
        "sesame"].score == pytest.approx(future["after"]["scorecards"]["sesame"]["score"],
                                         abs=1e-9)


# -- bad input changes nothing --------------------------------------------------------------------

BAD: list[tuple[str, str, str, dict[str, Any] | None, int, str]] = [
    # role, method, path, body, status, field named in the problem
    ("alice", "POST", "/v1/subjects/alice/disputes", {"event_seq": 999999, "reason": "x"},
     404, "event_seq"),
    ("alice", "POST", "/v1/subjects/alice/disputes", {"event_seq": 1, "reason": ""}, 422,
     "reason"),
    ("alice", "POST", "/v1/subjects/alice/disputes", {"event_seq": "{bob}", "reason": "x"},
     404, "event_seq"),
    ("alice", "POST", "/v1/subjects/alice/disputes", {"event_seq": 1, "reason": "x",
                                                       "extra": 1}, 422, "extra"),
    ("alice", "POST", "/v1/subjects/alice/disputes/999999/information", {"text": "more"}, 404,
     "dispute_seq"),
    ("alice", "POST", "/v1/subjects/alice/disputes/{dispute}/information", {"text": " "}, 422,
     "text"),
    ("alice", "POST", "/v1/subjects/alice/reviews", {"measure": "no_such_measure"}, 404,
     "measure"),
    ("alice", "POST", "/v1/subjects/alice/reviews", {"measure": "Bad Name"}, 422, "measure"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"remove": [999999]}, 404, "remove[0]"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"add": [
        {"type": "no_such_type", "occurred_at": "2026-03-02T00:00:00Z"}]}, 404, "add[0].type"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"add": [
        {"type": "bill_overdue", "occurred_at": "2026-03-02T00:00:00Z",
         "attributes": {"days_overdue": 0}}]}, 422, "add[0].attributes"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"reach": "sesame:platinum"}, 404, "target"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"at": "2019-01-01T00:00:00Z"}, 422, "at"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"at": "9999-01-01T00:00:00Z"}, 422, "at"),
    ("alice", "POST", "/v1/subjects/alice/whatif", {"at": "2027-01-01T00:00:00"}, 422, "at"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {"answer": "maybe"}, 422, "answer"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {"answer": "corrected"}, 422,
     "source_event_id"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {"answer": "corrected",
                                                          "source_event_id": "c9"}, 422, "type"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {
        "answer": "corrected", "source_event_id": "c9", "type": "bill_overdue",
        "occurred_at": "2026-03-13T00:00:00Z", "attributes": {"days_overdue": "many"}}, 422,
     "attributes"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {
        "answer": "corrected", "source_event_id": "c9", "type": "rental_returned",
        "occurred_at": "2026-03-13T00:00:00Z"}, 403, "type"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {"answer": "verified",
                                                          "source_event_id": "v1"}, 422,
     "source_event_id"),
    ("source", "POST", "/v1/disputes/{dispute}/answer", {"answer": "retracted",
                                                          "source_event_id": "e1"}, 422,
     "source_event_id"),
    ("source", "POST", "/v1/disputes/999999/answer", {"answer": "verified"}, 404, "dispute_seq"),
    ("reviewer", "POST", "/v1/reviewer/disputes/{dispute}/resolution",
     {"outcome": "valid", "reason": ""}, 422, "reason"),
    ("reviewer", "POST", "/v1/reviewer/disputes/{dispute}/resolution",
     {"outcome": "perhaps", "reason": "x"}, 422, "outcome"),
    ("reviewer", "POST", "/v1/reviewer/disputes/999999/resolution",
     {"outcome": "valid", "reason": "x"}, 404, "dispute_seq"),
    ("reviewer", "POST", "/v1/reviewer/disputes/1/resolution",
     {"outcome": "valid", "reason": "x"}, 404, "dispute_seq"),
    ("reviewer", "GET", "/v1/reviewer/disputes/999999", None, 404, "dispute_seq"),
    ("reviewer", "GET", "/v1/reviewer/reviews/999999", None, 404, "request_seq"),
    ("reviewer", "POST", "/v1/reviewer/reviews/{dispute}/resolution",
     {"decision": "lifted", "reason": "x"}, 404, "request_seq"),
    ("reviewer", "POST", "/v1/reviewer/reviews/1/resolution",
     {"decision": "lifted", "reason": "  "}, 422, "reason"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
        world: World, case: int) -> None:
    role, method, path, body, status, field = BAD[case]
    seq = overdue(world)
    opened = dispute(world, seq)
    bob_event = next(e.seq for e in world.ledger.events("bob"))
    if isinstance(body, dict) and body.get("event_seq") == "{bob}":
        body = {**body, "event_seq": bob_event}
    path = path.replace("{dispute}", str(opened["seq"]))
    before = head(world)
    r = world.call(role, method, path, **({} if body is None else {"json": body}))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    named = problem["detail"] + " ".join(str(e.get("field")) for e in problem.get("errors", []))
    assert field in named, problem
    assert head(world) == before
    assert sesame(world)["score"] == pytest.approx(reference(world, world.clock, {seq}),
                                                   abs=1e-9)


# -- a live server --------------------------------------------------------------------------------

def test_dispute_flow_over_a_live_server(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for w in build_world(url):
        keys = w.keys
        w.ledger.append_events([EventIn.model_validate(
            event(30, "alice", "repayment_late", 10, days_late=20, amount=50.0))])
        seq = next(e.seq for e in w.ledger.events("alice") if e.source_event_id == "e30")
        app = create_app(Settings(database_url=url, clock=w.clock))
        with serving(app) as base, httpx.Client(base_url=base, timeout=30) as http:
            def auth(role: str, keys: dict[str, str] = keys) -> dict[str, str]:
                return {"Authorization": f"Bearer {keys[role]}"}

            http.post("/v1/subjects/alice/consents", headers=auth("alice"),
                      json={"scope": "scorecard", "scorecard": "sesame"})
            opened = http.post("/v1/subjects/alice/disputes", headers=auth("alice"),
                               json={"event_seq": seq, "reason": "never late"})
            assert opened.status_code == 201, opened.text
            verified = http.post(f"/v1/disputes/{opened.json()['seq']}/answer",
                                 headers=auth("source"), json={"answer": "verified"})
            assert verified.json()["status"] == "verified"
            scores = http.get("/v1/subjects/alice/scores", headers=auth("alice")).json()
            assert scores["left_out"] == []
            queue = http.get("/v1/reviewer/queue", headers=auth("reviewer")).json()
            assert [i["status"] for i in queue["items"]] == ["verified"]


def test_review_lifts_a_restriction_in_force(world: World) -> None:
    from tests.test_api import ROOT

    driving = (ROOT / "tests" / "policies" / "driving.yaml").read_text().replace(
        "effective_from: 2020-01-01", "effective_from: 2026-06-01")
    put_in_force(world.ledger, TEST_PROGRAMMES)  # the register declaring the driving types
    published = world.call("operator", "POST", "/v1/policies", json={"source": driving})
    assert published.status_code == 201, published.text
    world.ledger.append_events([EventIn.model_validate(
        {**event(40 + i, "alice", "offence_grave", 100 + i), "source": "police"})
        for i in range(2)])
    measures = world.call("alice", "GET", "/v1/subjects/alice/scores").json()["measures"]
    assert measures["warning"]["in_force"] is True
    asked = world.call("alice", "POST", "/v1/subjects/alice/reviews",
                       json={"measure": "warning", "statement": "the second one was not me"})
    assert asked.status_code == 201, asked.text
    assert asked.json()["kind"] == "restriction" and asked.json()["state"] == "active"
    why = "the camera record shows another driver"
    lifted = world.call("reviewer", "POST",
                        f"/v1/reviewer/reviews/{asked.json()['seq']}/resolution",
                        json={"decision": "lifted", "reason": why})
    assert lifted.status_code == 200, lifted.text
    after = world.call("alice", "GET", "/v1/subjects/alice/scores").json()["measures"]
    assert after["warning"]["in_force"] is False and after["warning"]["state"] == "inactive"
    assert why in after["warning"]["reasons"][0]["text"]
    assert after["admonition"]["in_force"] is True  # only the reviewed measure is lifted
    shown = world.call("alice", "GET", "/v1/subjects/alice/reviews").json()
    assert (shown[0]["decision"], shown[0]["reason"]) == ("lifted", why)
