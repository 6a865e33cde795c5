"""The authorization matrix: every endpoint x every role x own/other subject, exact statuses.

Roles: operator, source (bank-a), relying party (rentals, accredited for rental_deposit),
subject (alice; "own" is alice, "other" is bob), reviewer, no key, a revoked key.
Alice has consented to rentals for rental_deposit; bob has consented to nobody.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.governance import SHIPPED
from tests.test_api import World, build_world, event
from trustledger.ledger import EventIn
from trustledger.principals import revoke_principal
from trustledger.registry import propose_register
from trustledger.rights import grant_decision_consent, open_dispute, request_review
from trustledger.scoring import evaluate_subject

Request = tuple[str, str, dict[str, Any]]
_ids = itertools.count(1)


def _new_id() -> str:
    return f"m{next(_ids)}"


# Each entry: name -> (request builder, expected status per role). A builder gets the world
# and returns (method, path, kwargs); builders that change state make fresh ids each time.
OPS = "operator", "source", "party", "alice", "reviewer", "anonymous", "revoked"


def _expect(default: int, **overrides: int) -> dict[str, int]:
    out = {role: default for role in OPS}
    out.update({"anonymous": 401, "revoked": 401})
    out.update(overrides)
    return out


def _consent_seq(w: World, subject: str) -> int:
    seq = w.consent(subject, "party2", "rental_deposit")
    return seq


Case = tuple[Callable[[World], Request], dict[str, int]]
"""A row: the request builder and the expected status per role."""

CASES: dict[str, Case] = {
    "healthz": (lambda w: ("GET", "/healthz", {}),
                {**_expect(200), "anonymous": 200, "revoked": 200}),
    "metrics": (lambda w: ("GET", "/metrics", {}),
                {**_expect(200), "anonymous": 200, "revoked": 200}),
    "whoami": (lambda w: ("GET", "/v1/whoami", {}), _expect(200)),
    "append event (accredited type)": (
        lambda w: ("POST", "/v1/events", {"json": {**event(0), "source_event_id": _new_id()}}),
        _expect(403, source=201)),
    "append event (type not accredited)": (
        lambda w: ("POST", "/v1/events", {"json": {
            **event(0, kind="rental_returned", late_hours=0), "source_event_id": _new_id()}}),
        _expect(403)),
    "append batch": (
        lambda w: ("POST", "/v1/events/batch", {"json": {"events": [
            {**event(0), "source_event_id": _new_id()}]}}),
        _expect(403, source=200)),
    "retract own event": (
        lambda w: ("POST", "/v1/events/e2/retraction", {"json": {"source_event_id": _new_id()}}),
        _expect(403, source=201)),
    "retract another source's event": (
        lambda w: ("POST", "/v1/events/e4/retraction", {"json": {"source_event_id": _new_id()}}),
        _expect(403, source=404)),
    "correct own event": (
        lambda w: ("POST", "/v1/events/e2/correction", {"json": {
            "source_event_id": _new_id(), "type": "bill_paid",
            "occurred_at": "2026-03-06T00:00:00Z"}}),
        _expect(403, source=201)),
    "decision, subject with consent": (
        lambda w: ("POST", "/v1/decisions", {"json": {"subject": "alice",
                                                      "purpose": "rental_deposit"}}),
        _expect(403, party=200)),
    "decision, subject without consent": (
        lambda w: ("POST", "/v1/decisions", {"json": {"subject": "bob",
                                                      "purpose": "rental_deposit"}}),
        _expect(403)),
    "decision, another purpose": (
        lambda w: ("POST", "/v1/decisions", {"json": {"subject": "alice",
                                                      "purpose": "consumer_credit"}}),
        _expect(403)),
}


def _subject_cases(t: str, own: bool) -> dict[str, Case]:
    """The rows of the subject routes for subject ``t`` (alice is the subject role's own)."""

    def code(ok: int) -> dict[str, int]:
        return {"alice": ok} if own else {}

    return {
        f"scores of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/scores", {}),
            _expect(403, **code(200))),
        f"events of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/events", {}),
            _expect(403, **code(200))),
        f"consents of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/consents", {}),
            _expect(403, **code(200))),
        f"grant consent for {t}": (
            lambda w: ("POST", f"/v1/subjects/{t}/consents", {"json": {
                "scope": "decision", "party": "lender", "purpose": "consumer_credit"}}),
            _expect(403, **code(201))),
        f"withdraw consent of {t}": (
            lambda w: ("DELETE", f"/v1/subjects/{t}/consents/{_consent_seq(w, t)}", {}),
            _expect(403, **code(200))),
        f"access log of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/access-log", {}),
            _expect(403, **code(200))),
        f"report of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/report", {}),
            _expect(403, **code(200))),
        f"printable report of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/report.html", {}),
            _expect(403, **code(200))),
        f"what-if for {t}": (
            lambda w: ("POST", f"/v1/subjects/{t}/whatif", {"json": {
                "at": "2027-06-01T00:00:00Z", "reach": "deposit_free_rental"}}),
            _expect(403, **code(200))),
        f"disputes of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/disputes", {}),
            _expect(403, **code(200))),
        f"open a dispute for {t}": (
            lambda w: ("POST", f"/v1/subjects/{t}/disputes", {"json": {
                "event_seq": _fresh_event(w, t), "reason": "not mine"}}),
            _expect(403, **code(201))),
        f"add dispute information for {t}": (
            lambda w: ("POST", f"/v1/subjects/{t}/disputes/{_fresh_dispute(w, t)}/information",
                       {"json": {"text": "my bank statement"}}),
            _expect(403, **code(200))),
        f"reviews of {t}": (
            lambda w: ("GET", f"/v1/subjects/{t}/reviews", {}),
            _expect(403, **code(200))),
        f"ask for human review for {t}": (
            lambda w: ("POST", f"/v1/subjects/{t}/reviews",
                       {"json": {"measure": "deposit_free_rental"}}),
            _expect(403, **code(201))),
    }


for target, own in (("alice", True), ("bob", False)):
    CASES |= _subject_cases(target, own)

# Alice's own erasure is in test_erasure_matrix: in this world it would end her other cases.
CASES["erasure of bob"] = (lambda w: ("POST", "/v1/subjects/bob/erasure", {}), _expect(403))
# Alice's own new key is in test_hardening_rights: here it would end the key the matrix uses.
CASES["new key for bob"] = (lambda w: ("POST", "/v1/subjects/bob/key", {}), _expect(403))
CASES |= {
    "list policies": (lambda w: ("GET", "/v1/policies", {}), _expect(200, alice=403)),
    "publish policy": (
        lambda w: ("POST", "/v1/policies", {"json": {"source": w.policy_text}}),
        _expect(403, operator=200)),
    "list principals": (lambda w: ("GET", "/v1/principals", {}), _expect(403, operator=200)),
    "issue principal": (
        lambda w: ("POST", "/v1/principals", {"json": {"name": _new_id(), "role": "reviewer"}}),
        _expect(403, operator=201)),
    "get principal": (
        lambda w: ("GET", f"/v1/principals/{w.principals['bob'].id}", {}),
        _expect(403, operator=200)),
    "revoke principal": (
        lambda w: ("DELETE", f"/v1/principals/{w.spare(_new_id())}", {}),
        _expect(403, operator=200)),
    "statistics": (lambda w: ("GET", "/v1/statistics", {}), _expect(403, operator=202)),
    "read the register": (lambda w: ("GET", "/v1/register", {}),
                          _expect(403, operator=200, source=200)),
    "list register proposals": (lambda w: ("GET", "/v1/register/proposals", {}),
                                _expect(403, operator=200)),
    "propose a register": (
        lambda w: ("POST", "/v1/register/proposals", {"json": {"source": _register_text()}}),
        _expect(403, operator=201)),
    # The operator reaches the rule that a second operator must approve (its own proposal):
    # an approval here would change the register the other cases run under.
    "approve a register": (
        lambda w: ("POST", f"/v1/register/proposals/{_own_proposal(w)}/approval", {}),
        _expect(403, operator=409)),
    "disputes about own events": (lambda w: ("GET", "/v1/disputes", {}),
                                  _expect(403, source=200)),
    "a dispute about own event": (
        lambda w: ("GET", f"/v1/disputes/{w.cases['dispute']}", {}), _expect(403, source=200)),
    "a dispute about another source's event": (
        lambda w: ("GET", f"/v1/disputes/{w.cases['other dispute']}", {}),
        _expect(403, source=404)),
    "answer a dispute about own event": (
        lambda w: ("POST", f"/v1/disputes/{_fresh_dispute(w, 'alice')}/answer",
                   {"json": {"answer": "verified"}}),
        _expect(403, source=200)),
    "answer a dispute about another source's event": (
        lambda w: ("POST", f"/v1/disputes/{w.cases['other dispute']}/answer",
                   {"json": {"answer": "verified"}}),
        _expect(403, source=404)),
    "reviewer queue": (lambda w: ("GET", "/v1/reviewer/queue", {}), _expect(403, reviewer=200)),
    "reviewer reads a dispute": (
        lambda w: ("GET", f"/v1/reviewer/disputes/{w.cases['dispute']}", {}),
        _expect(403, reviewer=200)),
    "reviewer resolves a dispute": (
        lambda w: ("POST", f"/v1/reviewer/disputes/{_fresh_dispute(w, 'bob')}/resolution",
                   {"json": {"outcome": "invalid", "reason": "no record of it"}}),
        _expect(403, reviewer=200)),
    "reviewer reads a review": (
        lambda w: ("GET", f"/v1/reviewer/reviews/{w.cases['review']}", {}),
        _expect(403, reviewer=200)),
    "reviewer decides a review": (
        lambda w: ("POST", f"/v1/reviewer/reviews/{w.cases['review']}/resolution",
                   {"json": {"decision": "confirmed", "reason": "the score is below 600"}}),
        _expect(403, reviewer=200)),
    "list own subscriptions": (lambda w: ("GET", "/v1/subscriptions", {}),
                               _expect(403, party=200)),
    "subscribe, subject with consent": (
        lambda w: ("POST", "/v1/subscriptions", {"json": {
            "subject": "alice", "purpose": "rental_deposit", "url": "http://127.0.0.1:9/hook"}}),
        _expect(403, party=201)),
    "subscribe, subject without consent": (
        lambda w: ("POST", "/v1/subscriptions", {"json": {
            "subject": "bob", "purpose": "rental_deposit", "url": "http://127.0.0.1:9/hook"}}),
        _expect(403)),
    "cancel own subscription": (
        lambda w: ("DELETE", f"/v1/subscriptions/{_fresh_subscription(w)}", {}),
        _expect(403, party=200)),
}


def _register_text() -> str:
    """The shipped register under a new title: a version never proposed before."""
    return SHIPPED.read_text(encoding="utf-8").replace(
        "title: Event types of the shipped", f"title: ({_new_id()}) Event types of the shipped")


def _own_proposal(w: World) -> str:
    """A new register proposal by the matrix's operator (``op``); its hash."""
    return propose_register(w.ledger, _register_text(), "op").hash


def _fresh_subscription(w: World) -> str:
    """A new subscription of the party (rentals) to a new consenting subject; its id."""
    from trustledger.cascades import subscribe

    subject = _new_id()
    grant_decision_consent(w.ledger, subject, "rentals", "rental_deposit")
    created = subscribe(w.ledger, w.principals["party"], subject, "rental_deposit",
                        "http://127.0.0.1:9/hook", w.clock())
    return created.subscription.id


def _fresh_event(w: World, subject: str, source: str = "bank-a") -> int:
    """A new event of ``source`` about ``subject``, appended directly; its seq."""
    kind = "bill_paid" if source == "bank-a" else "rental_returned"
    body = {**event(0, subject, kind, source=source), "source_event_id": _new_id()}
    if source != "bank-a":
        body["attributes"] = {"late_hours": 0}
    (entry,) = w.ledger.append_events([EventIn.model_validate(body)])
    return entry.seq


def _fresh_dispute(w: World, subject: str, source: str = "bank-a") -> int:
    """A new dispute of ``subject`` about a new event of ``source``; its seq."""
    return open_dispute(w.ledger, subject, _fresh_event(w, subject, source), "not mine").seq


@pytest.fixture(autouse=True)
def loopback_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriptions here name a webhook on 127.0.0.1: allow loopback explicitly."""
    monkeypatch.setenv("TRUSTLEDGER_WEBHOOK_ALLOW", "127.0.0.1")


@pytest.fixture(scope="module")
def matrix_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'ledger.db'}"
    # Every anonymous and revoked call here is a failed authentication from one client:
    # the per-address limit (tests/test_hardening_transport.py) is out of the way.
    for world in build_world(url, rate_limit=10_000.0, auth_failure_burst=10_000):
        world.consent("alice", "party", "rental_deposit")
        world.call("operator", "POST", "/v1/principals",
                   json={"name": "gone", "role": "reviewer"})
        revoked = world.call("operator", "POST", "/v1/principals",
                             json={"name": "revoked", "role": "operator"}).json()
        world.keys["revoked"] = revoked["key"]
        revoke_principal(world.ledger, revoked["principal"]["id"])
        now = world.clock()
        world.cases = {
            "dispute": _fresh_dispute(world, "alice"),
            "other dispute": _fresh_dispute(world, "alice", "rentals-a"),
            "review": request_review(world.ledger, evaluate_subject(
                world.ledger, "bob", world.ledger_policy(), now), "pay_later").seq,
        }
        yield world


@pytest.mark.parametrize("role", OPS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_matrix(matrix_world: World, case: str, role: str) -> None:
    build, expected = CASES[case]
    method, path, kwargs = build(matrix_world)
    key = None if role == "anonymous" else role
    response = matrix_world.call(key, method, path, **kwargs)
    want = expected[role]
    if case == "statistics" and role == "operator":
        assert response.status_code in (200, 202), response.text  # 200 once computed
    else:
        assert response.status_code == want, f"{case} as {role}: {response.text}"
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("role", OPS)
def test_erasure_matrix(tmp_path: Path, role: str) -> None:
    """Only the subject themself may erase their data (its own world: it ends alice's data)."""
    for world in build_world(f"sqlite:///{tmp_path / 'ledger.db'}"):
        world.keys["revoked"] = world.keys["operator"]
        if role == "revoked":
            revoke_principal(world.ledger, world.principals["operator"].id)
        response = world.call(None if role == "anonymous" else role, "POST",
                              "/v1/subjects/alice/erasure")
        want = {"alice": 201, "anonymous": 401, "revoked": 401}.get(role, 403)
        assert response.status_code == want, f"erasure as {role}: {response.text}"


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?", 1)[0])


def test_every_route_is_in_the_matrix_and_in_the_docs(matrix_world: World) -> None:
    """A new /v1 route needs its row here (who may call it) and its line in docs/api.md."""
    app = matrix_world.client.app
    assert isinstance(app, FastAPI), app
    paths = app.openapi()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items()
              if path.startswith("/v1/") for method in operations}
    assert len(routes) >= 35, routes
    called = [build(matrix_world)[:2] for build, _ in CASES.values()]

    def matches(template: str, path: str) -> bool:
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        return re.fullmatch(pattern, path.split("?", 1)[0]) is not None

    missing = sorted(f"{method} {path}" for method, path in routes
                     if not any(m == method and matches(path, p) for m, p in called))
    assert missing == [], f"routes without a row in the authorization matrix: {missing}"
    docs = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    documented = {(m, _template(p)) for m, p in
                  re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[^\s`|·]+)", docs)}
    undocumented = sorted(f"{method} {path}" for method, path in routes
                          if (method, _template(path)) not in documented)
    assert undocumented == [], f"routes missing from docs/api.md: {undocumented}"
