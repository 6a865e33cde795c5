"""The event-type register over HTTP: read it, propose a version, a second operator approves.

And what it governs: a policy published over HTTP records the register in force, and a
source appends (single, batch, CloudEvents, corrections, dispute answers) only the types
the register puts in its domains. On SQLite and PostgreSQL, through the real app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.governance import APPROVER, PROPOSER, SHIPPED
from tests.test_api import PROBLEM, World, build_world, event

TEXT = SHIPPED.read_text(encoding="utf-8")
SECOND = TEXT.replace("title: Event types of the shipped example policies",
                      "title: Event types of the shipped example policies, second version")
MOVED = TEXT.replace("  bill_paid:\n    label: bill paid\n    domain: finance",
                     "  bill_paid:\n    label: bill paid\n    domain: utilities")


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    """The API world, with a second operator key (``operator2``) to approve proposals."""
    for built in build_world(database_url):
        r = built.call("operator", "POST", "/v1/principals",
                       json={"name": "op2", "role": "operator"})
        assert r.status_code == 201, r.text
        built.keys["operator2"] = r.json()["key"]
        yield built


def _propose(world: World, text: str, role: str = "operator") -> dict[str, object]:
    r = world.call(role, "POST", "/v1/register/proposals", json={"source": text})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def _approve(world: World, register_hash: object, role: str = "operator2") -> None:
    r = world.call(role, "POST", f"/v1/register/proposals/{register_hash}/approval")
    assert r.status_code == 200, r.text


def test_operators_and_sources_read_the_register_in_force(world: World) -> None:
    for role in ("operator", "source"):
        r = world.call(role, "GET", "/v1/register")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == "shipped" and body["hash"].startswith("sha256:")
        assert (body["proposed_by"], body["approved_by"]) == (PROPOSER, APPROVER)
        assert body["event_types"]["bill_paid"]["domain"] == "finance"
        assert body["event_types"]["repayment_late"]["attributes"]["days_late"]["type"] == \
            "integer"
    for role in ("party", "alice", "reviewer"):
        r = world.call(role, "GET", "/v1/register")
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert world.call(None, "GET", "/v1/register").status_code == 401


def test_a_proposal_needs_a_second_operator(world: World) -> None:
    proposal = _propose(world, SECOND)
    assert proposal["status"] == "pending" and proposal["proposed_by"] == "op"
    again = world.call("operator2", "POST", "/v1/register/proposals", json={"source": SECOND})
    assert again.status_code == 200 and again.json()["seq"] == proposal["seq"]
    before = world.ledger.head()
    own = world.call("operator", "POST", f"/v1/register/proposals/{proposal['hash']}/approval")
    assert own.status_code == 409 and own.headers["content-type"] == PROBLEM
    assert own.json()["detail"].startswith("approved_by: 'op' proposed this register")
    assert world.ledger.head() == before
    approved = world.call("operator2", "POST",
                          f"/v1/register/proposals/{proposal['hash']}/approval")
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["approved_by"]) == ("in_force", "op2")
    assert world.call("source", "GET", "/v1/register").json()["hash"] == proposal["hash"]
    twice = world.call("operator", "POST", f"/v1/register/proposals/{proposal['hash']}/approval")
    assert twice.status_code == 409 and "already approved" in twice.json()["detail"]
    listed = world.call("operator", "GET", "/v1/register/proposals").json()
    assert [p["status"] for p in listed] == ["replaced", "in_force"]
    in_force = world.call("operator2", "POST", "/v1/register/proposals", json={"source": SECOND})
    assert in_force.status_code == 409 and "already in force" in in_force.json()["detail"]


def test_a_refused_register_is_a_422_naming_line_and_rule_and_nothing_is_recorded(
        world: World) -> None:
    before = world.ledger.head()
    bad = TEXT.replace("    category: credit_repayment\n", "    category: political_opinion\n",
                       1)
    r = world.call("operator", "POST", "/v1/register/proposals", json={"source": bad})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    errors = r.json()["errors"]
    assert errors and all(e["field"] and e["rule"] for e in errors)
    line = next(i for i, text in enumerate(bad.splitlines(), 1) if "political_opinion" in text)
    assert any(e["location"].startswith(f"register:{line}:") for e in errors), errors
    assert "political_opinion" in r.text
    broken = world.call("operator", "POST", "/v1/register/proposals",
                        json={"source": "register: [unclosed"})
    assert broken.status_code == 422
    empty = world.call("operator", "POST", "/v1/register/proposals", json={"source": ""})
    assert empty.status_code == 422 and "source" in empty.text
    assert world.ledger.head() == before
    assert len(world.call("operator", "GET", "/v1/register/proposals").json()) == 1


@pytest.mark.parametrize("role", ["source", "party", "alice", "reviewer"])
def test_only_operators_propose_approve_and_list(world: World, role: str) -> None:
    proposal = _propose(world, SECOND)
    before = world.ledger.head()
    for method, path, body in (
            ("POST", "/v1/register/proposals", {"json": {"source": SECOND}}),
            ("POST", f"/v1/register/proposals/{proposal['hash']}/approval", {}),
            ("GET", "/v1/register/proposals", {})):
        r = world.call(role, method, path, **body)
        assert r.status_code == 403, (path, r.text)
        assert "operator" in r.json()["detail"]
    assert world.ledger.head() == before


def test_unknown_and_malformed_hashes(world: World) -> None:
    unknown = world.call("operator2", "POST",
                         f"/v1/register/proposals/sha256:{'0' * 64}/approval")
    assert unknown.status_code == 404 and unknown.json()["detail"].startswith("hash:")
    malformed = world.call("operator2", "POST", "/v1/register/proposals/abc/approval")
    assert malformed.status_code == 422 and "not a register hash" in malformed.json()["detail"]


def test_a_policy_published_over_http_records_the_register_in_force(world: World) -> None:
    current = world.call("operator", "GET", "/v1/register").json()["hash"]
    listed = world.call("operator", "GET", "/v1/policies").json()
    assert [p["register_hash"] for p in listed] == [current]
    newer = world.policy_text.replace("effective_from: 2025-01-01", "effective_from: 2026-01-01")
    r = world.call("operator", "POST", "/v1/policies", json={"source": newer})
    assert r.status_code == 201, r.text
    assert r.json()["register_hash"] == current
    # Under another register the same version is refused: a version means one thing.
    _approve(world, _propose(world, SECOND)["hash"])
    before = world.ledger.head()
    again = world.call("operator", "POST", "/v1/policies", json={"source": newer})
    assert again.status_code == 409 and "publish it as a new version" in again.json()["detail"]
    assert world.ledger.head() == before
    # A policy scoring a type the register lacks is refused with the rule.
    unknown = newer.replace("repayment_on_time:", "repayment_in_advance:", 1)
    r = world.call("operator", "POST", "/v1/policies", json={"source": unknown})
    assert r.status_code == 422 and "unregistered-type" in r.text


def test_a_source_is_issued_with_domains_the_register_bears_out(world: World) -> None:
    r = world.call("operator", "POST", "/v1/principals", json={
        "name": "court", "role": "source", "accreditations": ["breach_judgement"],
        "domains": ["finance"]})
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "accreditations: event type 'breach_judgement' is in domain 'commerce' (register "
        "shipped); source 'court' is accredited for domain(s) 'finance' only")
    missing = world.call("operator", "POST", "/v1/principals", json={
        "name": "court", "role": "source", "accreditations": ["breach_judgement"]})
    assert missing.status_code == 422 and missing.json()["detail"].startswith("domains:")
    ok = world.call("operator", "POST", "/v1/principals", json={
        "name": "court", "role": "source", "accreditations": ["breach_judgement"],
        "domains": ["commerce"]})
    assert ok.status_code == 201, ok.text
    assert ok.json()["principal"]["domains"] == ["commerce"]
    me = world.client.get("/v1/whoami", headers={"Authorization": f"Bearer {ok.json()['key']}"})
    assert me.json()["domains"] == ["commerce"]


def test_a_type_moved_out_of_the_sources_domain_is_refused_on_every_path(world: World) -> None:
    assert world.call("source", "POST", "/v1/events",
                      json=event(50, "alice", "bill_paid", 20)).status_code == 201
    _approve(world, _propose(world, MOVED)["hash"])
    before = world.ledger.head()
    why = ("event type 'bill_paid' is in domain 'utilities' in the register in force "
           "(shipped); 'bank-a' is accredited for domain(s) 'finance' only")
    single = world.call("source", "POST", "/v1/events", json=event(51, "alice", "bill_paid", 21))
    assert single.status_code == 403
    assert single.json()["errors"] == [{"index": 0, "field": "type", "reason": why}]
    batch = world.call("source", "POST", "/v1/events/batch", json={"events": [
        event(52, "alice", "repayment_on_time", 21, amount=10.0),
        event(53, "alice", "bill_paid", 21)]})
    assert batch.status_code == 403
    assert batch.json()["errors"] == [{"index": 1, "field": "type", "reason": why}]
    cloud = {"specversion": "1.0", "id": "ce-9", "source": "bank-a", "type": "bill_paid",
             "subject": "alice", "time": "2026-03-04T10:00:00Z"}
    r = world.call("source", "POST", "/v1/events", content=json.dumps(cloud),
                   headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 403 and r.json()["errors"][0]["reason"] == why
    r = world.call("source", "POST", "/v1/events/batch", content=json.dumps([cloud]),
                   headers={"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 403 and r.json()["errors"][0]["reason"] == why
    corrected = world.call("source", "POST", "/v1/events/e50/correction", json={
        "source_event_id": "e50-c", "type": "bill_paid", "occurred_at": "2026-03-21T00:00:00Z"})
    assert corrected.status_code == 403 and corrected.json()["detail"] == why
    assert world.ledger.head() == before
    # The other types of its domain still go in; a retraction needs no accreditation.
    ok = world.call("source", "POST", "/v1/events",
                    json=event(54, "alice", "repayment_on_time", 21, amount=10.0))
    assert ok.status_code == 201, ok.text
    retracted = world.call("source", "POST", "/v1/events/e50/retraction",
                           json={"source_event_id": "e50-r"})
    assert retracted.status_code == 201, retracted.text


def test_a_dispute_answered_with_a_type_outside_the_domain_is_refused(world: World) -> None:
    r = world.call("source", "POST", "/v1/events",
                   json=event(60, "alice", "bill_overdue", 10, days_overdue=30))
    assert r.status_code == 201, r.text
    opened = world.call("alice", "POST", "/v1/subjects/alice/disputes", json={
        "event_seq": r.json()["seq"], "reason": "I paid it"})
    assert opened.status_code == 201, opened.text
    _approve(world, _propose(world, MOVED)["hash"])
    before = world.ledger.head()
    answer = world.call("source", "POST", f"/v1/disputes/{opened.json()['seq']}/answer", json={
        "answer": "corrected", "source_event_id": "c60", "type": "bill_paid",
        "occurred_at": "2026-03-11T00:00:00Z"})
    assert answer.status_code == 403
    assert answer.json()["detail"].startswith("type: event type 'bill_paid' is in domain "
                                              "'utilities'")
    assert world.ledger.head() == before


def test_the_register_routes_are_in_the_openapi_document(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/register"]) == {"get"}
    assert set(paths["/v1/register/proposals"]) == {"get", "post"}
    approval = paths["/v1/register/proposals/{register_hash}/approval"]["post"]
    assert {"403", "404", "409", "422"} <= set(approval["responses"])
    assert {"403", "409", "422"} <= set(paths["/v1/register/proposals"]["post"]["responses"])
