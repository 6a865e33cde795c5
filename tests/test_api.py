"""The HTTP service's core flows, on SQLite and PostgreSQL, through FastAPI's test client.

``World`` (also used by the other ``test_api_*`` modules) is a ledger with the shipped
event-type register in force (proposed and approved by two operators), the Sesame policy
published, one principal per role (sources with their domains) and a few events, and the
app over it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.clock import START, FixedClock
from tests.governance import put_in_force
from trustledger.api import Settings, create_app
from trustledger.api.middleware import JSONFormatter
from trustledger.errors import ConfigError
from trustledger.ledger import EventIn
from trustledger.principals import Principal, Role, ServiceLedger, add_principal
from trustledger.scoring import assess_subject, publish_policy

ROOT = Path(__file__).resolve().parent.parent
SESAME = ROOT / "policies" / "sesame.yaml"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = START
"""Where a world's clock starts: the ledger and the service share it; tests move it."""
PROBLEM = "application/problem+json"

ROLES: dict[str, tuple[Role, tuple[str, ...], str | None]] = {
    "operator": (Role.OPERATOR, (), None),
    "source": (Role.SOURCE, ("repayment_on_time", "repayment_late", "bill_paid",
                             "bill_overdue", "debt_default"), None),
    "source2": (Role.SOURCE, ("rental_returned",), None),
    "party": (Role.RELYING_PARTY, ("rental_deposit",), None),
    "party2": (Role.RELYING_PARTY, ("consumer_credit", "rental_deposit"), None),
    "alice": (Role.SUBJECT, (), "alice"),
    "bob": (Role.SUBJECT, (), "bob"),
    "reviewer": (Role.REVIEWER, (), None),
}
NAMES = {"operator": "op", "source": "bank-a", "source2": "rentals-a", "party": "rentals",
         "party2": "lender", "alice": "alice", "bob": "bob", "reviewer": "rev"}


def event(i: int, subject: str = "alice", kind: str = "bill_paid", days: int = 0,
          source: str = "bank-a", **attrs: Any) -> dict[str, Any]:
    """A plain-form event of the caller ``source``."""
    return {"source": source, "source_event_id": f"e{i}", "subject": subject, "type": kind,
            "occurred_at": (T0 + timedelta(days=days)).isoformat(), "attributes": attrs}


@dataclass
class World:
    """A ledger, one key per role, and a client of the app over it."""

    url: str
    ledger: ServiceLedger
    client: TestClient
    keys: dict[str, str]
    principals: dict[str, Principal]
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))
    """The one clock of the world's ledger and service (never the real one)."""
    seq: dict[str, int] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)
    """Seqs of disputes and reviews a test set up, by name."""

    def h(self, role: str | None) -> dict[str, str]:
        """Headers of a role's key (none for ``None``)."""
        return {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}

    def call(self, role: str | None, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        """One request as ``role`` (Starlette's test client speaks httpx2)."""
        return self.client.request(method, path, headers={**self.h(role),
                                                          **kwargs.pop("headers", {})}, **kwargs)

    def consent(self, subject: str, party: str, purpose: str) -> int:
        """The subject grants a decision consent through the API; its seq."""
        r = self.call(subject, "POST", f"/v1/subjects/{subject}/consents",
                      json={"scope": "decision", "party": NAMES[party], "purpose": purpose})
        assert r.status_code == 201, r.text
        return int(r.json()["seq"])

    @property
    def policy_text(self) -> str:
        """The source of the policy published in this world (Sesame)."""
        return SESAME.read_text()

    def spare(self, name: str) -> str:
        """The operator issues a new reviewer principal ``name`` through the API; its id."""
        r = self.call("operator", "POST", "/v1/principals", json={"name": name, "role": "reviewer"})
        assert r.status_code == 201, r.text
        return str(r.json()["principal"]["id"])

    def ledger_policy(self) -> Any:
        """The compiled policy in force now."""
        from trustledger.scoring import policy_in_force

        return policy_in_force(self.ledger, self.clock()).compile()

    def opt_in(self, subject: str) -> None:
        """The subject opts in to the Sesame score through the API."""
        r = self.call(subject, "POST", f"/v1/subjects/{subject}/consents",
                      json={"scope": "scorecard", "scorecard": "sesame"})
        assert r.status_code == 201, r.text


def build_world(url: str, clock: FixedClock | None = None,
                **overrides: Any) -> Iterator[World]:
    """Yield a :class:`World` on ``url`` (settings ``overrides`` for the app).

    The ledger and the app share ``clock`` (default: a new one at :data:`NOW`).
    """
    clock = clock or FixedClock(NOW)
    ledger = ServiceLedger.open(url, clock=clock)
    register = put_in_force(ledger)
    publish_policy(ledger, SESAME)
    keys, found = {}, {}
    for role, (kind, accredited, subject) in ROLES.items():
        domains = tuple(sorted({register.domain_of(t) for t in accredited})
                        ) if kind is Role.SOURCE else ()
        issued = add_principal(ledger, NAMES[role], kind, accreditations=accredited,
                               domains=domains, subject=subject)
        keys[role], found[role] = issued.key, issued.principal
    ledger.append_events([
        EventIn.model_validate(event(1, "alice", "repayment_on_time", 0, amount=400.0)),
        EventIn.model_validate(event(2, "alice", "bill_paid", 5)),
        EventIn.model_validate(event(3, "bob", "bill_overdue", 3, days_overdue=40)),
        EventIn.model_validate({**event(4, "alice", "rental_returned", 9, late_hours=0),
                                "source": "rentals-a"}),
    ])
    settings = Settings(database_url=url, clock=clock, **overrides)
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        yield World(url, ledger, client, keys, found, clock)
    ledger.close()


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from build_world(database_url)


# -- sources ----------------------------------------------------------------------------------

def test_source_appends_an_event_idempotently(world: World) -> None:
    body = {k: v for k, v in event(10, "alice", "bill_paid", 20).items() if k != "source"}
    first = world.call("source", "POST", "/v1/events", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "appended" and first.json()["source"] == "bank-a"
    again = world.call("source", "POST", "/v1/events", json=body)
    assert again.status_code == 200
    assert again.json()["status"] == "existing" and again.json()["seq"] == first.json()["seq"]
    changed = world.call("source", "POST", "/v1/events", json={**body, "occurred_at":
                                                              "2026-04-01T00:00:00Z"})
    assert changed.status_code == 409 and changed.headers["content-type"] == PROBLEM
    assert "different content" in changed.json()["detail"]


def test_cloudevents_structured_json_is_accepted(world: World) -> None:
    cloud = {"specversion": "1.0", "id": "ce-1", "source": "bank-a", "type": "repayment_late",
             "subject": "bob", "time": "2026-03-04T10:00:00Z",
             "datacontenttype": "application/json",
             "data": {"days_late": 12, "amount": 90.5}}
    r = world.call("source", "POST", "/v1/events", content=json.dumps(cloud),
                   headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 201, r.text
    assert (r.json()["source_event_id"], r.json()["subject"]) == ("ce-1", "bob")
    batch = [{**cloud, "id": f"ce-b{i}"} for i in range(3)]
    r = world.call("source", "POST", "/v1/events/batch", content=json.dumps(batch),
                   headers={"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 200 and r.json()["appended"] == 3
    bad = {**cloud, "id": "ce-x", "colour": "red"}
    r = world.call("source", "POST", "/v1/events", content=json.dumps(bad),
                   headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "colour"
    assert "supersedes" in r.json()["errors"][0]["reason"]


def test_batch_is_atomic_with_per_item_errors(world: World) -> None:
    items = [event(20 + i, "alice", "bill_paid", i) for i in range(4)]
    items[1] = event(21, "alice", "repayment_late", 1, days_late=0)  # below the minimum
    items[3] = {**items[3], "colour": "red"}  # unknown field
    before = world.ledger.head()
    r = world.call("source", "POST", "/v1/events/batch", json={"events": items})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "attributes"), (3, "colour")]
    assert "days_late" in errors[0]["reason"] and "minimum" in errors[0]["reason"]
    assert world.ledger.head() == before  # nothing written
    good = [event(30 + i, "alice", "bill_paid", i) for i in range(3)]
    r = world.call("source", "POST", "/v1/events/batch", json={"events": good + good[:1]})
    assert r.status_code == 200
    body = r.json()
    assert (body["appended"], body["existing"]) == (3, 1)
    assert (body["head_seq"], body["head_hash"]) == world.ledger.head()
    again = world.call("source", "POST", "/v1/events/batch", json={"events": good})
    assert (again.json()["appended"], again.json()["existing"]) == (0, 3)


def test_source_may_append_only_accredited_types_in_its_own_name(world: World) -> None:
    r = world.call("source", "POST", "/v1/events", json=event(40, "alice", "rental_returned",
                                                               late_hours=0))
    assert r.status_code == 403
    assert r.json()["errors"][0] == {"index": 0, "field": "type", "reason": r.json()[
        "errors"][0]["reason"]}
    assert "not accredited for event type 'rental_returned'" in r.json()["errors"][0]["reason"]
    r = world.call("source", "POST", "/v1/events", json={**event(41), "source": "rentals-a"})
    assert r.status_code == 403 and "own name" in r.json()["errors"][0]["reason"]


def test_events_must_fit_the_policy_schema(world: World) -> None:
    r = world.call("source", "POST", "/v1/events", json=event(50, "alice", "bill_overdue",
                                                               days_overdue="many"))
    assert r.status_code == 422 and "must be a number" in r.json()["errors"][0]["reason"]
    r = world.call("source", "POST", "/v1/events", json=event(51, "alice", "bill_paid",
                                                               colour="red"))
    assert r.status_code == 422 and "unknown attribute" in r.json()["errors"][0]["reason"]
    r = world.call("source", "POST", "/v1/events",
                   json={**event(52), "occurred_at": "2026-03-01T00:00:00"})
    assert r.status_code == 422 and "UTC offset" in r.json()["errors"][0]["reason"]


def test_retract_and_correct_own_events_only(world: World) -> None:
    r = world.call("source", "POST", "/v1/events/e2/retraction",
                   json={"source_event_id": "e2-retracted"})
    assert r.status_code == 201 and r.json()["subject"] == "alice"
    r = world.call("source", "POST", "/v1/events/e3/correction",
                   json={"source_event_id": "e3-fixed", "type": "bill_overdue",
                         "occurred_at": "2026-03-04T00:00:00Z",
                         "attributes": {"days_overdue": 10}})
    assert r.status_code == 201 and r.json()["subject"] == "bob"
    # e4 belongs to rentals-a: bank-a cannot see it, let alone withdraw it.
    r = world.call("source", "POST", "/v1/events/e4/retraction",
                   json={"source_event_id": "e4-retracted"})
    assert r.status_code == 404 and "only its own events" in r.json()["detail"]
    r = world.call("source", "POST", "/v1/events/e1/correction",
                   json={"source_event_id": "e1-x", "type": "rental_returned",
                         "occurred_at": "2026-03-04T00:00:00Z", "attributes": {}})
    assert r.status_code == 403


# -- decisions ---------------------------------------------------------------------------------

def test_decision_needs_the_subjects_consent_for_that_party_and_purpose(world: World) -> None:
    ask = {"subject": "alice", "purpose": "rental_deposit"}
    r = world.call("party", "POST", "/v1/decisions", json=ask)
    assert r.status_code == 403 and r.json()["type"].endswith("/missing-consent")
    assert "party 'rentals' and purpose 'rental_deposit'" in r.json()["detail"]
    world.consent("alice", "party2", "rental_deposit")  # another party's consent
    assert world.call("party", "POST", "/v1/decisions", json=ask).status_code == 403
    seq = world.consent("alice", "party", "rental_deposit")
    r = world.call("party", "POST", "/v1/decisions", json=ask)
    assert r.status_code == 200, r.text
    # The party is accredited for rental_deposit only; and consent is per purpose.
    r = world.call("party", "POST", "/v1/decisions",
                   json={"subject": "alice", "purpose": "consumer_credit"})
    assert r.status_code == 403 and "not accredited" in r.json()["detail"]
    r = world.call("party2", "POST", "/v1/decisions",
                   json={"subject": "alice", "purpose": "consumer_credit"})
    assert r.status_code == 403 and "missing consent" in r.json()["detail"]
    withdrawn = world.call("alice", "DELETE", f"/v1/subjects/alice/consents/{seq}")
    assert withdrawn.status_code == 200 and withdrawn.json()["active"] is False
    assert world.call("party", "POST", "/v1/decisions", json=ask).status_code == 403


def test_decision_discloses_only_what_the_purpose_covers(world: World) -> None:
    world.opt_in("alice")
    world.consent("alice", "party", "rental_deposit")
    r = world.call("party", "POST", "/v1/decisions",
                   json={"subject": "alice", "purpose": "rental_deposit"})
    assert r.status_code == 200
    body = r.json()
    assert set(body["measures"]) == {"deposit_free_rental", "priority_service"}
    assert "pay_later" not in json.dumps(body)
    assert set(body["scorecards"]) == {"sesame"}
    card = body["scorecards"]["sesame"]
    assert card["consented"] is True and card["score"] is not None and card["reasons"]
    assert body["policy_hash"].startswith("sha256:") and body["ledger_seq"] is not None
    # The same numbers as the one scoring path, at the decision's valid_at.
    valid_at = datetime.fromisoformat(body["valid_at"])
    reference = assess_subject(world.ledger, "alice", world.ledger_policy(), valid_at)
    assert card["score"] == reference.evaluation.scorecards["sesame"].score
    assert body["measures"]["deposit_free_rental"]["state"] == \
        reference.evaluation.measures["deposit_free_rental"].state.value


def test_every_read_by_others_is_in_the_access_log_before_the_answer(world: World) -> None:
    world.consent("alice", "party", "rental_deposit")
    r = world.call("party", "POST", "/v1/decisions",
                   json={"subject": "alice", "purpose": "rental_deposit"},
                   headers={"X-Request-ID": "req-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    entry = world.ledger.entry(r.json()["access_seq"])
    assert entry.kind == "access.read" and entry.subject == "alice"
    assert entry.payload is not None
    assert {k: entry.payload[k] for k in ("principal", "name", "role", "purpose", "read",
                                          "request_id")} == {
        "principal": world.principals["party"].id, "name": "rentals",
        "role": "relying_party", "purpose": "rental_deposit", "read": "decision",
        "request_id": "req-42"}
    log = world.call("alice", "GET", "/v1/subjects/alice/access-log").json()["reads"]
    assert [(x["name"], x["purpose"], x["read"]) for x in log] == [
        ("rentals", "rental_deposit", "decision")]
    # The subject's own reads are not "reads by others".
    world.call("alice", "GET", "/v1/subjects/alice/scores")
    assert len(world.call("alice", "GET", "/v1/subjects/alice/access-log").json()["reads"]) == 1


def test_unknown_subject_and_unknown_purpose(world: World) -> None:
    r = world.call("party", "POST", "/v1/decisions",
                   json={"subject": "nobody", "purpose": "rental_deposit"})
    assert r.status_code == 403  # no consent: existence is not revealed
    r = world.call("alice", "POST", "/v1/subjects/alice/consents",
                   json={"scope": "decision", "party": "rentals", "purpose": "astrology"})
    assert r.status_code == 422 and "not declared" in r.json()["detail"]
    r = world.call("alice", "POST", "/v1/subjects/alice/consents",
                   json={"scope": "decision", "party": "nobody", "purpose": "rental_deposit"})
    assert r.status_code == 422 and "no relying party" in r.json()["detail"]
    r = world.call("alice", "POST", "/v1/subjects/alice/consents",
                   json={"scope": "scorecard", "scorecard": "nothing"})
    assert r.status_code == 422 and "opt-in scorecard" in r.json()["detail"]


def test_decision_for_a_subject_with_consent_but_no_events_is_404(world: World) -> None:
    add = world.call("operator", "POST", "/v1/principals",
                     json={"name": "carol", "role": "subject", "subject": "carol"})
    world.keys["carol"] = add.json()["key"]
    NAMES["carol"] = "carol"
    world.consent("carol", "party", "rental_deposit")
    r = world.call("party", "POST", "/v1/decisions",
                   json={"subject": "carol", "purpose": "rental_deposit"})
    assert r.status_code == 404 and "no events" in r.json()["detail"]


# -- subjects ----------------------------------------------------------------------------------

def test_subject_sees_scores_events_and_consents(world: World) -> None:
    world.opt_in("alice")
    scores = world.call("alice", "GET", "/v1/subjects/alice/scores")
    assert scores.status_code == 200
    card = scores.json()["scorecards"]["sesame"]
    assert card["consented"] and len(card["contributions"]) == 3
    events = world.call("alice", "GET", "/v1/subjects/alice/events?limit=2").json()
    assert [e["source_event_id"] for e in events["events"]] == ["e1", "e2"]
    more = world.call("alice", "GET",
                      f"/v1/subjects/alice/events?after={events['next_after']}").json()
    assert [e["source_event_id"] for e in more["events"]] == ["e4"]
    consents = world.call("alice", "GET", "/v1/subjects/alice/consents").json()
    assert [(c["scope"], c["scorecard"], c["active"]) for c in consents] == [
        ("scorecard", "sesame", True)]
    assert world.call("alice", "GET", "/v1/subjects/bob/scores").status_code == 403


def test_consent_expiry_and_withdrawal_errors(world: World) -> None:
    past = (world.clock() - timedelta(days=1)).isoformat()
    r = world.call("alice", "POST", "/v1/subjects/alice/consents",
                   json={"scope": "decision", "party": "rentals", "purpose": "rental_deposit",
                         "expires_at": past})
    assert r.status_code == 422 and "not in the future" in r.json()["detail"]
    assert world.call("alice", "DELETE", "/v1/subjects/alice/consents/99999").status_code == 404
    seq = world.consent("alice", "party", "rental_deposit")
    assert world.call("alice", "DELETE", f"/v1/subjects/alice/consents/{seq}").status_code == 200
    again = world.call("alice", "DELETE", f"/v1/subjects/alice/consents/{seq}")
    assert again.status_code == 422 and "already withdrawn" in again.json()["detail"]


# -- operator ----------------------------------------------------------------------------------

def test_operator_publishes_and_is_refused_with_the_linters_messages(world: World) -> None:
    source = SESAME.read_text()
    r = world.call("operator", "POST", "/v1/policies", json={"source": source})
    assert r.status_code == 200 and r.json()["in_force"]  # published by the fixture already
    assert set(r.json()["purposes"]) == {"rental_deposit", "consumer_credit"}
    leaky = source.replace("measures: [pay_later]", "measures: [pay_later, deposit_free_rental]")
    r = world.call("operator", "POST", "/v1/policies", json={"source": leaky})
    assert r.status_code == 422 and r.json()["type"].endswith("/policy-refused")
    assert r.json()["errors"][0]["rule"] == "purpose-firewall"
    assert r.json()["errors"][0]["location"].startswith("policy:")
    newer = source.replace("effective_from: 2025-01-01", "effective_from: 2025-06-01")
    r = world.call("operator", "POST", "/v1/policies", json={"source": newer})
    assert r.status_code == 201 and r.json()["in_force"]
    listed = world.call("operator", "GET", "/v1/policies").json()
    assert [p["in_force"] for p in listed] == [False, True]
    r = world.call("operator", "POST", "/v1/policies", json={"source": "policy: [unclosed"})
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "yaml-syntax"


def test_operator_manages_principals_and_a_revoked_key_stops_at_once(world: World) -> None:
    r = world.call("operator", "POST", "/v1/principals",
                   json={"name": "lender-b", "role": "relying_party",
                         "accreditations": ["consumer_credit"]})
    assert r.status_code == 201
    key, principal_id = r.json()["key"], r.json()["principal"]["id"]
    me = world.client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and me.json()["name"] == "lender-b"
    listed = world.call("operator", "GET", "/v1/principals").json()
    assert "lender-b" in [p["name"] for p in listed] and key not in json.dumps(listed)
    assert world.call("operator", "DELETE", f"/v1/principals/{principal_id}").status_code == 200
    r = world.client.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert world.call("operator", "GET", "/v1/principals/pr_none").status_code == 404
    bad = world.call("operator", "POST", "/v1/principals",
                     json={"name": "x", "role": "source"})
    assert bad.status_code == 422 and "event type" in bad.json()["detail"]


def test_key_revoked_by_another_process_is_refused_on_the_next_request(world: World) -> None:
    from trustledger.principals import revoke_principal

    assert world.call("alice", "GET", "/v1/whoami").status_code == 200
    with ServiceLedger.open(world.url) as other:  # e.g. `trustledger principal revoke`
        revoke_principal(other, world.principals["alice"].id)
    assert world.call("alice", "GET", "/v1/whoami").status_code == 401


def test_statistics_are_aggregates_with_small_cells_suppressed(world: World) -> None:
    world.opt_in("alice")
    status = 202
    for _ in range(200):
        r = world.call("operator", "GET", "/v1/statistics")
        status = r.status_code
        if status == 200:
            break
        assert r.headers["retry-after"]
        time.sleep(0.05)
    assert status == 200, r.text
    body = r.json()
    assert body["subjects"] == 2 and body["suppress_below"] == 10
    sesame = body["scorecards"]["sesame"]
    assert sesame["scored"] is None and sesame["not_consented"] is None  # 1 and 1
    assert all(b["subjects"] in (0, None) for b in sesame["histogram"])
    assert "alice" not in r.text and "bob" not in r.text


# -- failure paths -----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "status", "needle"), [
    ({"content": b"{bad json", "headers": {"Content-Type": "application/json"}}, 422,
     "not valid JSON"),
    ({"json": {"subject": "alice", "purpose": "rental_deposit", "extra": 1}}, 422,
     "unknown field"),
    ({"json": {"subject": 7, "purpose": "rental_deposit"}}, 422, "subject"),
    ({"json": {"subject": "alice"}}, 422, "missing"),
    ({"json": {"subject": "alice", "purpose": "Not An Ident"}}, 422, "purpose"),
])
def test_bad_requests_are_problems(world: World, kwargs: dict[str, Any], status: int,
                                   needle: str) -> None:
    r = world.call("party", "POST", "/v1/decisions", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["request_id"] and body["instance"] == \
        "/v1/decisions"
    assert needle in json.dumps(body)


def test_events_failure_paths(world: World) -> None:
    r = world.call("source", "POST", "/v1/events", content=b"[1]",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "one event" in r.json()["detail"]
    r = world.call("source", "POST", "/v1/events", content=b"{}",
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = world.call("source", "POST", "/v1/events/batch", json={"events": []})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    r = world.call("source", "POST", "/v1/events/batch", json={"events": [1], "more": 2})
    assert r.status_code == 422
    r = world.call("source", "POST", "/v1/events/batch", json={"events": [1]})
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 0


@pytest.mark.parametrize(("headers", "needle"), [
    ({}, "no API key"),
    ({"Authorization": "Basic abc"}, "no API key"),
    ({"Authorization": "Bearer nonsense"}, "malformed"),
    ({"Authorization": "Bearer tl_" + "A" * 43}, "not known"),
])
def test_authentication_failures(world: World, headers: dict[str, str], needle: str) -> None:
    r = world.client.get("/v1/whoami", headers=headers)
    assert r.status_code == 401 and needle in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_unknown_route_and_method(world: World) -> None:
    r = world.client.get("/v1/nothing")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = world.client.put("/v1/decisions")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM


def test_health_metrics_and_json_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trustledger.api"):
        r = world.client.get("/healthz", headers={"X-Request-ID": "abc-1"})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    line = json.loads(JSONFormatter().format(caplog.records[-1]))
    assert line["request_id"] == "abc-1" and line["status"] == 200
    assert line["route"] == "/healthz" and line["duration_ms"] >= 0
    world.call("operator", "GET", "/v1/whoami")
    metrics = world.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'trustledger_http_requests_total{method="GET",route="/v1/whoami",status="200"}' \
        in metrics.text
    bad_id = world.client.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert bad_id.headers["x-request-id"] != "x" * 200  # not echoed: a new one is made


def test_a_request_that_takes_too_long_gets_503_with_retry_after(database_url: str) -> None:
    for world in build_world(database_url, request_timeout=1e-6):
        r = world.call("alice", "GET", "/v1/whoami")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "longer than" in r.json()["detail"]


def test_too_many_requests_in_flight_for_one_principal() -> None:
    from trustledger.api.limits import Limiter
    from trustledger.api.problems import RateLimitedError

    limiter = Limiter(rate=1_000.0, burst_seconds=1.0, max_in_flight=2, clock=lambda: 0.0)
    principal = Principal("pr_x", "x", Role.SOURCE, ("bill_paid",), None, None,
                          NOW, None)
    other = Principal("pr_y", "y", Role.SOURCE, ("bill_paid",), None, None,
                      NOW, None)
    limiter.acquire(principal)
    limiter.acquire(principal)
    with pytest.raises(RateLimitedError, match="already in progress") as refused:
        limiter.acquire(principal)
    assert refused.value.retry_after == 1
    limiter.acquire(other)  # others are not held up
    limiter.release(principal)
    limiter.acquire(principal)


class _BrokenLedger(ServiceLedger):
    """A ledger whose group commits fail, as when the disk is full."""

    def append_records(self, records: Any) -> Any:
        raise OSError("disk full")


def test_a_read_that_cannot_be_logged_is_not_answered(tmp_path: Path) -> None:
    from trustledger.api.access import AccessLog, access_record
    from trustledger.api.problems import UnavailableError

    broken = _BrokenLedger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    log = AccessLog(broken)
    try:
        principal = Principal("pr_x", "x", Role.RELYING_PARTY, ("p",), None, None,
                              NOW, None)
        with pytest.raises(UnavailableError, match="could not be written"):
            log.append(access_record(principal, "alice", "p", "decision", "r1"))
    finally:
        log.close()
        broken.close()


def test_a_database_that_fails_under_the_service_gives_503_not_500(tmp_path: Path) -> None:
    import sqlite3

    for world in build_world(f"sqlite:///{tmp_path / 'ledger.db'}"):
        assert world.call("alice", "GET", "/v1/whoami").status_code == 200
        with sqlite3.connect(tmp_path / "ledger.db") as raw:
            raw.execute("ALTER TABLE entries RENAME TO entries_gone")
        for role, method, path, kwargs in (
                ("alice", "GET", "/v1/whoami", {}),
                ("party", "POST", "/v1/decisions",
                 {"json": {"subject": "alice", "purpose": "rental_deposit"}}),
                ("operator", "GET", "/v1/principals", {})):
            r = world.call(role, method, path, **kwargs)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"]


def test_small_cell_threshold_can_be_raised_never_lowered() -> None:
    assert Settings.from_env({"TRUSTLEDGER_SUPPRESS_BELOW": "25"}).suppress_below == 25
    for lowered in ("9", "1", "0", "-3"):
        with pytest.raises(ConfigError, match="TRUSTLEDGER_SUPPRESS_BELOW: must be at least 10"):
            Settings.from_env({"TRUSTLEDGER_SUPPRESS_BELOW": lowered})
    with pytest.raises(ConfigError, match="SUPPRESS_BELOW"):
        Settings(suppress_below=9)


def test_a_refusal_names_both_roles_in_plain_english(world: World) -> None:
    r = world.call("operator", "GET", "/v1/subjects/alice/scores")
    assert r.status_code == 403
    assert "this endpoint is for a subject; the key of 'op' is an operator's key" \
        in r.json()["detail"], r.text
    r = world.call("alice", "POST", "/v1/decisions", json={"subject": "alice",
                                                          "purpose": "rental_deposit"})
    assert r.status_code == 403
    assert "is for a relying party; the key of 'alice' is a subject's key" in r.json()["detail"]
