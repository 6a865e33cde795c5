"""Decisions after a restart, over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL.

A server decides for two subjects and stops (their states and decisions written behind
the reads). A new server on the same ledger — a restart — then answers:

* a subject decided before and unchanged: from the decision stored with its state (the
  same ``valid_at`` and reasons: the same answer, but its own access-log entry);
* a subject with a new event since: read now from its events, equal to the reference;
* a subject never decided: read from its events;
* a subject without the party's consent: refused, as before the restart — also one
  whose consent lapsed meanwhile while her stored state and decision stayed current (a
  lapse appends nothing: the consent is checked against the records now, never taken
  from what was stored).

On both databases a first read starts with the subject's snapshot, read by the view's
snapshot reader for every request waiting (``LedgerView.decision_subject_async``). Then
the view's own
``decision_subject(load=False)``: the stored record when its state or decision can
answer, the snapshot's record without a state when the subject must be loaded with its
events (a decision then loads it), ``None`` when no states persist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.clock import FixedClock
from tests.governance import put_in_force
from tests.test_api import ROOT
from tests.test_api_live import serving
from trustledger.api import Settings, create_app
from trustledger.api.view import LedgerView, decision_assessment
from trustledger.ledger import EventIn
from trustledger.policy import load_policy
from trustledger.principals import Role, ServiceLedger, add_principal
from trustledger.rights.consent import grant_decision_consent, grant_opt_in
from trustledger.scoring import assess_subject, publish_policy

SESAME_PATH = ROOT / "policies" / "sesame.yaml"
SESAME = load_policy(SESAME_PATH)
ASK = "rental_deposit"


def seeded(url: str, clock: FixedClock) -> dict[str, dict[str, str]]:
    """Sesame in force, a relying party, and alice, bob, carol and dora with events; the
    party's and alice's keys' headers.

    Alice, bob and dora consent to the party's rental-deposit decisions (dora's for three
    seconds); carol does not.
    """
    with ServiceLedger.open(url, clock=clock) as ledger:
        put_in_force(ledger)
        publish_policy(ledger, SESAME_PATH)
        keys = {"party": add_principal(ledger, "rentals", Role.RELYING_PARTY,
                                       accreditations=(ASK,)).key,
                "alice": add_principal(ledger, "alice", Role.SUBJECT, subject="alice").key}
        for subject in ("alice", "bob", "carol", "dora"):
            for i, (kind, attributes) in enumerate([
                    ("bill_paid", {}), ("repayment_on_time", {"amount": 900.0}),
                    ("bill_overdue", {"days_overdue": 35})]):
                ledger.append_event(EventIn(
                    source="bank", source_event_id=f"{subject}-{i}", subject=subject,
                    type=kind, attributes=attributes,
                    occurred_at=clock.now - timedelta(days=20 * i + 3)))
            grant_opt_in(ledger, subject, "sesame")
            if subject != "carol":
                grant_decision_consent(ledger, subject, "rentals", ASK, expires_at=(
                    clock.now + timedelta(seconds=3) if subject == "dora" else None))
    return {role: {"Authorization": f"Bearer {secret}"} for role, secret in keys.items()}


@pytest.fixture
def keys(database_url: str, clock: FixedClock) -> Iterator[dict[str, dict[str, str]]]:
    yield seeded(database_url, clock)


def decide(http: httpx.Client, party: dict[str, str], subject: str) -> httpx.Response:
    return http.post("/v1/decisions", headers=party, json={"subject": subject, "purpose": ASK})


def answer(r: httpx.Response) -> dict[str, Any]:
    """A decision's body but its own access-log seq."""
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    body.pop("access_seq")
    return body


def test_a_restart_answers_from_stored_decisions_and_reads_the_rest(
        database_url: str, clock: FixedClock, keys: dict[str, dict[str, str]]) -> None:
    party = keys["party"]
    settings = Settings(database_url=database_url, clock=clock, decision_max_age=60.0)
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as http:
        before = decide(http, party, "alice")
        first = {"alice": answer(before), "bob": answer(decide(http, party, "bob"))}
        answer(decide(http, party, "dora"))
        assert decide(http, party, "carol").status_code == 403
    # Bob has a new event before the restart; alice has none.
    clock.advance(seconds=5.0)
    with ServiceLedger.open(database_url, clock=clock) as ledger:
        ledger.append_event(EventIn(source="bank", source_event_id="bob-late", subject="bob",
                                    type="debt_default", attributes={"amount": 5000.0},
                                    occurred_at=clock.now - timedelta(days=1)))
    clock.advance(seconds=1.0)
    restarted = create_app(settings)
    with serving(restarted) as base, httpx.Client(base_url=base, timeout=30) as http:
        view = restarted.state.service.view
        assert view.persisted is not None
        reads = view.persisted.store.snapshots_read
        alice = decide(http, party, "alice")
        assert answer(alice) == first["alice"]  # the stored decision: same moment, reasons
        assert view.persisted.store.snapshots_read == reads + 1  # by the snapshot reader
        bob = answer(decide(http, party, "bob"))
        assert bob["valid_at"] != first["bob"]["valid_at"]  # read again, with the new event
        with ServiceLedger.open(database_url, clock=clock) as ledger:
            want = assess_subject(ledger, "bob", SESAME, clock.now).evaluation
        assert bob["scorecards"]["sesame"]["score"] == want.scorecards["sesame"].score
        assert bob["scorecards"]["sesame"]["tier"] == want.scorecards["sesame"].tier
        assert decide(http, party, "carol").status_code == 403  # never consented
        assert decide(http, party, "dora").status_code == 403  # lapsed, decision stored
        dora = view.cached("dora", light=True)  # read from her stored row, then refused
        assert dora is not None and dora.light and dora.assessment is not None
        assert decide(http, party, "dave").status_code == 403  # never heard of
        # Each answer has its own access-log entry, the reused one too.
        log = http.get("/v1/subjects/alice/access-log", headers=keys["alice"])
        assert log.status_code == 200, log.text
        assert [x["seq"] for x in log.json()["reads"]] == [before.json()["access_seq"],
                                                           alice.json()["access_seq"]]


def test_decision_subject_without_loading(database_url: str, clock: FixedClock,
                                          keys: dict[str, dict[str, str]]) -> None:
    with ServiceLedger.open(database_url, clock=clock) as ledger:
        policy = LedgerView(ledger).policy_in_force(clock.now)
        a = LedgerView(ledger)
        # Never stored: the snapshot's record, without a state, not kept; a decision
        # loads the subject in full from it.
        fresh = a.decision_subject("alice", policy, clock.now, load=False)
        assert fresh is not None and fresh.light and not fresh.events
        assert fresh.packed is None and fresh.stored is None and fresh.assessment is None
        assert a.cached("alice", light=True) is None
        first = decision_assessment(fresh, policy, clock.now, 60.0,
                                    declared=policy.purposes[ASK])
        record = a.cached("alice")
        assert record is not None and not record.light and record.events
        assert record.answered_by == "maintained" and record.assessment is first
        assert a.persisted is not None
        a.persisted.writer.close()
        b = LedgerView(ledger)  # a restart
        stored = b.decision_subject("alice", policy, clock.now, load=False)
        assert stored is not None and stored.light and stored.assessment is not None
        bob = b.decision_subject("bob", policy, clock.now, load=False)
        assert bob is not None and bob.packed is None and bob.stored is None
        assert b.persisted is not None
        b.persisted.writer.close()
        clock.advance(seconds=61.0)  # past the stored decision's reuse: its state answers
        later = LedgerView(ledger)
        restored = later.decision_subject("alice", policy, clock.now, load=False)
        assert restored is not None and restored.light
        got = decision_assessment(restored, policy, clock.now, 60.0,
                                  declared=policy.purposes[ASK])
        assert restored.answered_by == "persisted" and restored.packed is not None
        assert got.valid_at == clock.now  # read now from the stored state, not reused
        assert later.persisted is not None
        later.persisted.writer.close()
        c = LedgerView(ledger, persist_states=False)
        assert c.decision_subject("alice", policy, clock.now, load=False) is None
        assert asyncio.run(c.decision_subject_async("alice", policy, clock.now)) is None
