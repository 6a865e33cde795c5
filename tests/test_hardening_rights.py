"""Issue 21, items 2 and 3: erasure is not observable, erased means erased, operators are logged.

The real app over a real ledger (SQLite and PostgreSQL); the ledger and the service
share one fixed clock, so no date here depends on the day the tests run.

* A relying party without consent gets the same answer for an erased subject as for
  one the ledger never heard of (decision and subscription: status, problem type,
  detail, and the decision counter in ``/metrics``).
* After erasure nothing new is recorded about the subject: no consent (422 naming
  ``subject``), no subscription (the same 403 as for anyone without consent, also for
  a consent an older version recorded after the erasure), no notification but the
  last ``subscription.ended``; a second erasure is 422; the ledger head stays put.
* What an operator does about a named subject — issuing or revoking their key — is
  in that subject's access log (API, report, portal page); a second key for a
  subject who holds one is refused, so no one can act in their name unnoticed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.clock import FixedClock
from tests.governance import domains_of, put_in_force
from tests.test_api import SESAME, event
from trustledger.api import Settings, create_app
from trustledger.api.service import Service
from trustledger.cascades import Deriver
from trustledger.cascades.schema import notifications
from trustledger.ledger import EventIn
from trustledger.principals import Principal, Role, ServiceLedger, add_principal
from trustledger.rights import access_log
from trustledger.rights.consent import GRANTED
from trustledger.scoring import publish_policy

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
HOOK = "https://hooks.trustledger.invalid/notify"  # never resolves: accepted, never reached
ASK = {"purpose": "rental_deposit"}


@dataclass
class App:
    """A ledger, one key per actor, and the app over it, all on one fixed clock."""

    ledger: ServiceLedger
    clock: FixedClock
    client: TestClient
    keys: dict[str, str]
    principals: dict[str, Principal]

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        """One request with ``who``'s key."""
        self.clock.advance(seconds=1)
        return self.client.request(method, path, headers={
            "Authorization": f"Bearer {self.keys[who]}"}, **kwargs)

    def consent(self, subject: str = "alice") -> httpx2.Response:
        """The subject grants rentals a decision consent for rental_deposit."""
        return self.call(subject, "POST", f"/v1/subjects/{subject}/consents", json={
            "scope": "decision", "party": "rentals", "purpose": "rental_deposit"})

    def erase(self, subject: str = "alice") -> httpx2.Response:
        """The subject asks for erasure."""
        return self.call(subject, "POST", f"/v1/subjects/{subject}/erasure")

    def outbox(self) -> list[dict[str, Any]]:
        """Every notification derived so far, oldest first, body parsed."""
        with self.ledger.reading() as conn:
            rows = conn.execute(sa.select(notifications).order_by(notifications.c.serial))
            return [{**row._asdict(), "body": orjson.loads(row.body)} for row in rows]


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    clock = FixedClock(T0)
    ledger = ServiceLedger.open(database_url, clock=clock)
    put_in_force(ledger)
    publish_policy(ledger, SESAME)
    keys, found = {}, {}
    for who, role, accredited, subject in (
            ("operator", Role.OPERATOR, (), None),
            ("source", Role.SOURCE, ("bill_paid", "bill_overdue"), None),
            ("party", Role.RELYING_PARTY, ("rental_deposit",), None),
            ("alice", Role.SUBJECT, (), "alice"),
            ("bob", Role.SUBJECT, (), "bob")):
        name = {"source": "bank-a", "party": "rentals", "operator": "op"}.get(who, who)
        issued = add_principal(ledger, name, role, accreditations=accredited, subject=subject,
                               domains=domains_of(accredited) if role is Role.SOURCE else ())
        keys[who], found[who] = issued.key, issued.principal
    ledger.append_events([EventIn.model_validate(event(i, subject, "bill_paid", i))
                          for i, subject in enumerate(("alice", "alice", "bob"), 1)])
    settings = Settings(database_url=database_url, clock=clock, decision_max_age=0.0)
    service = Service(ledger, settings)
    try:
        with TestClient(create_app(settings, service=service)) as client:
            yield App(ledger, clock, client, keys, found)
    finally:
        service.close()


def _problem(r: httpx2.Response, subject: str) -> tuple[int, str, str, list[str]]:
    """What a relying party learns from a refusal: status, type, detail (the subject id
    it named itself replaced), and the problem's fields."""
    body = r.json()
    return (r.status_code, body["type"], body["detail"].replace(repr(subject), "<subject>"),
            sorted(k for k in body if k != "request_id"))


def _decisions_by_outcome(a: App) -> dict[str, float]:
    text = a.client.get("/metrics").text
    return {m[0]: float(m[1]) for m in re.findall(
        r'trustledger_decisions_total\{[^}]*outcome="([^"]+)"[^}]*\} (\S+)', text)}


# -- item 2: erasure is not observable -----------------------------------------------------------

def test_a_party_without_consent_cannot_tell_erased_from_unknown(app: App) -> None:
    assert app.consent().status_code == 201
    assert app.call("party", "POST", "/v1/decisions",
                    json={"subject": "alice", **ASK}).status_code == 200
    assert app.erase().status_code == 201

    erased = app.call("party", "POST", "/v1/decisions", json={"subject": "alice", **ASK})
    unknown = app.call("party", "POST", "/v1/decisions", json={"subject": "zed", **ASK})
    assert erased.status_code == 403, erased.text
    assert _problem(erased, "alice") == _problem(unknown, "zed")
    assert erased.json()["type"].endswith("/missing-consent")
    # Nothing public counts them apart either: both are decisions refused for want of consent.
    assert "no-data" not in _decisions_by_outcome(app)

    sub = {"purpose": "rental_deposit", "url": HOOK}
    erased = app.call("party", "POST", "/v1/subscriptions", json={"subject": "alice", **sub})
    unknown = app.call("party", "POST", "/v1/subscriptions", json={"subject": "zed", **sub})
    assert erased.status_code == 403, erased.text
    assert _problem(erased, "alice") == _problem(unknown, "zed")


# -- item 2: nothing new about an erased subject -------------------------------------------------

def test_erasure_forbids_new_consents_and_a_second_erasure_is_422(app: App) -> None:
    assert app.erase().status_code == 201
    head = app.ledger.head()
    for body in ({"scope": "decision", "party": "rentals", "purpose": "rental_deposit"},
                 {"scope": "scorecard", "scorecard": "sesame"}):
        r = app.call("alice", "POST", "/v1/subjects/alice/consents", json=body)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("subject:") and "erased" in detail, detail
    assert app.ledger.head() == head
    again = app.erase()
    assert again.status_code == 422, again.text
    assert again.json()["detail"].startswith("subject:") and "already erased" in \
        again.json()["detail"]
    assert app.ledger.head() == head
    assert app.call("alice", "GET", "/v1/subjects/alice/consents").json() == []
    app.ledger.verify()


def test_no_subscription_and_no_notification_after_erasure(app: App) -> None:
    deriver = Deriver(app.ledger, app.clock)
    assert app.consent().status_code == 201
    sub = {"subject": "alice", "purpose": "rental_deposit", "url": HOOK}
    assert app.call("party", "POST", "/v1/subscriptions", json=sub).status_code == 201
    deriver.run()
    assert app.outbox() == []
    assert app.erase().status_code == 201
    deriver.run()
    (ended,) = app.outbox()  # the last notice: the subscription ended, no decision data
    assert ended["type"] == "subscription.ended"
    assert ended["body"]["data"]["reason"] == "the subject's data was erased"

    # A consent recorded after the erasure by an older version (it used to accept one)
    # does not count: no subscription, the same refusal as for anyone without consent.
    app.ledger.append_record(GRANTED, {"scope": "decision", "party": "rentals",
                                       "purpose": "rental_deposit"}, subject="alice")
    head = app.ledger.head()
    r = app.call("party", "POST", "/v1/subscriptions", json=sub)
    assert r.status_code == 403 and r.json()["detail"].startswith("missing consent"), r.text
    decision = app.call("party", "POST", "/v1/decisions", json={"subject": "alice", **ASK})
    assert decision.status_code == 403, decision.text
    assert app.ledger.head() == head
    # A source still reports about the id: kept unscored, and nobody is told.
    late = app.call("source", "POST", "/v1/events",
                    json={**event(9, "alice", "bill_overdue", 30, days_overdue=40)})
    assert late.status_code == 201, late.text
    app.clock.advance(days=1)
    deriver.run()
    assert [n["type"] for n in app.outbox()] == ["subscription.ended"]


# -- item 3: operators' actions about a named subject are logged ----------------------------------

def _log(app: App, who: str, subject: str) -> list[tuple[str, str, str, str]]:
    r = app.call(who, "GET", f"/v1/subjects/{subject}/access-log")
    assert r.status_code == 200, r.text
    return [(x["name"], x["role"], x["purpose"], x["read"]) for x in r.json()["reads"]]


def test_operator_actions_about_a_subject_are_in_their_access_log(app: App) -> None:
    # A second key for a subject who holds one would let its holder act in their name.
    head = app.ledger.head()
    twin = app.call("operator", "POST", "/v1/principals",
                    json={"name": "alice", "role": "subject", "subject": "alice"})
    assert twin.status_code == 409, twin.text
    assert twin.json()["detail"].startswith("subject:") and "alice" in twin.json()["detail"]
    other = app.call("operator", "POST", "/v1/principals",
                     json={"name": "alice-shadow", "role": "subject", "subject": "alice"})
    assert other.status_code == 409, other.text
    assert app.ledger.head() == head

    # Onboarding a new subject is logged about them.
    carol = app.call("operator", "POST", "/v1/principals",
                     json={"name": "carol", "role": "subject", "subject": "carol"})
    assert carol.status_code == 201, carol.text
    app.keys["carol"] = carol.json()["key"]
    issued = ("op", "operator", "key management", "subject key issued")
    assert _log(app, "carol", "carol") == [issued]

    # A lost key: revoked and issued again, both in alice's log.
    gone = app.call("operator", "DELETE", f"/v1/principals/{app.principals['alice'].id}")
    assert gone.status_code == 200, gone.text
    again = app.call("operator", "POST", "/v1/principals",
                     json={"name": "alice", "role": "subject", "subject": "alice"})
    assert again.status_code == 201, again.text
    app.keys["alice"] = again.json()["key"]
    revoked = ("op", "operator", "key management", "subject key revoked")
    assert _log(app, "alice", "alice") == [revoked, issued]
    assert [(a.name, a.read) for a in access_log(app.ledger, "alice")] == [
        ("op", "subject key revoked"), ("op", "subject key issued")]
    report = app.call("alice", "GET", "/v1/subjects/alice/report").json()
    assert [(a["name"], a["read"]) for a in report["access_log"]] == [
        ("op", "subject key revoked"), ("op", "subject key issued")]

    # The portal shows them where it shows who read the subject's data.
    form = app.client.get("/portal/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    page = app.client.post("/portal/sign-in", data={"csrf_token": token.group(1),
                                                    "api_key": app.keys["alice"]})
    assert page.status_code == 200, page.text
    table = html.unescape(page.text.split('id="access-table"', 1)[1].split("</table>", 1)[0])
    assert "subject key issued" in table and "subject key revoked" in table
    assert "key management" in table and "op" in table

    # Other principals' keys are nobody's business but the operator's: not logged.
    before = app.ledger.head()
    spare = app.call("operator", "POST", "/v1/principals",
                     json={"name": "rev-2", "role": "reviewer"})
    assert spare.status_code == 201
    assert app.ledger.head()[0] == before[0] + 1  # principal.added only


def test_a_subject_replaces_the_key_the_operator_saw(app: App) -> None:
    carol = app.call("operator", "POST", "/v1/principals",
                     json={"name": "carol", "role": "subject", "subject": "carol"})
    assert carol.status_code == 201, carol.text
    app.keys["operator's copy"] = app.keys["carol"] = carol.json()["key"]
    other = app.call("bob", "POST", "/v1/subjects/carol/key")
    assert other.status_code == 403, other.text
    mine = app.call("carol", "POST", "/v1/subjects/carol/key")
    assert mine.status_code == 201, mine.text
    app.keys["carol"] = mine.json()["key"]
    assert mine.json()["principal"]["subject"] == "carol"
    assert mine.json()["principal"]["id"] != carol.json()["principal"]["id"]
    # The onboarding key the operator saw speaks for carol no more; the new one does.
    assert app.call("operator's copy", "GET", "/v1/subjects/carol/report").status_code == 401
    assert app.call("operator's copy", "POST", "/v1/subjects/carol/consents", json={
        "scope": "decision", "party": "rentals", "purpose": "rental_deposit"}).status_code == 401
    assert _log(app, "carol", "carol") == [
        ("op", "operator", "key management", "subject key issued")]
    # And the operator cannot hand out a second one beside it.
    twin = app.call("operator", "POST", "/v1/principals",
                    json={"name": "carol", "role": "subject", "subject": "carol"})
    assert twin.status_code == 409, twin.text


def test_an_erased_id_gets_no_new_key(app: App) -> None:
    assert app.erase().status_code == 201
    gone = app.call("operator", "DELETE", f"/v1/principals/{app.principals['alice'].id}")
    assert gone.status_code == 200
    head = app.ledger.head()
    r = app.call("operator", "POST", "/v1/principals",
                 json={"name": "alice", "role": "subject", "subject": "alice"})
    assert r.status_code == 422 and r.json()["detail"].startswith("subject:"), r.text
    assert "erased" in r.json()["detail"]
    assert app.ledger.head() == head


def test_the_command_line_logs_subject_keys_too(database_url: str) -> None:
    from typer.testing import CliRunner

    from trustledger.cli import app as cli

    runner = CliRunner()
    url = ["--database-url", database_url]
    added = runner.invoke(cli, ["principal", "add", "dora", "--role", "subject", "--subject",
                                "dora", *url])
    assert added.exit_code == 0, added.output
    principal_id = re.search(r"\((pr_[0-9a-f]+)\)", added.output)
    assert principal_id is not None
    twin = runner.invoke(cli, ["principal", "add", "dora-2", "--role", "subject",
                               "--subject", "dora", *url])
    assert twin.exit_code != 0 and "already holds an active key" in str(twin.exception or "") \
        + twin.output
    revoked = runner.invoke(cli, ["principal", "revoke", principal_id.group(1), *url])
    assert revoked.exit_code == 0, revoked.output
    runner.invoke(cli, ["principal", "add", "bank-z", "--role", "source", "--accredit",
                        "bill_paid", *url])
    with ServiceLedger.open(database_url) as ledger:
        assert [(a.name, a.role, a.purpose, a.read) for a in access_log(ledger, "dora")] == [
            ("operator (command line)", "operator", "key management", "subject key issued"),
            ("operator (command line)", "operator", "key management", "subject key revoked")]
        assert [a for a in access_log(ledger, "bank-z")] == []


def test_an_erased_subject_gets_no_new_key_of_their_own_either(app: App) -> None:
    assert app.erase().status_code == 201
    head = app.ledger.head()
    r = app.call("alice", "POST", "/v1/subjects/alice/key")
    assert r.status_code == 422 and r.json()["detail"].startswith("subject:"), r.text
    assert app.ledger.head() == head
    assert app.erase().status_code == 422
    assert app.ledger.head() == head
