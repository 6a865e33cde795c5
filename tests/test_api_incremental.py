"""The service's incremental scores equal the reference evaluation, append after append.

Sources append over HTTP — in order, out of order, recorded late, corrections and
retractions, a dispute opened and answered — and after every step the scores, tiers
and measure states :func:`trustledger.api.view.current_scores` reads from the
incremental state equal :func:`trustledger.scoring.assess_subject` at the same moment.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from tests.clock import FixedClock
from tests.policies.support import shipped_register
from tests.test_api import SESAME, World, build_world
from trustledger.api import render
from trustledger.api.auth import json_response
from trustledger.api.service import Service
from trustledger.api.view import (
    SubjectRecord,
    current_assessment,
    current_scores,
    incremental_allowed,
)
from trustledger.policy import parse_policy
from trustledger.scoring import assess, assess_subject

NO_HOLD = SESAME.read_text().replace("    hold: P90D\n", "")
"""Sesame without its holding time: every measure is stateless, so incremental answers."""




@pytest.fixture
def world(database_url: str, clock: FixedClock) -> Iterator[World]:
    yield from build_world(database_url, clock=clock)


def service(w: World) -> Service:
    app = w.client.app
    assert isinstance(app, FastAPI), app
    found = app.state.service
    assert isinstance(found, Service), found
    return found


def check(w: World, clock: FixedClock, path: str) -> None:
    """Alice's current scores from the service equal the reference assessment now."""
    svc = service(w)
    svc.view.sync()
    policy = svc.view.policy_in_force(clock.now)
    got = current_scores(svc.view.subject("alice"), policy, clock.now)
    want = assess_subject(w.ledger, "alice", policy, clock.now).evaluation
    assert got.path == path
    for name, card in want.scorecards.items():
        if card.score is None or card.total is None:
            assert got.scores[name] is None and got.totals[name] is None
        else:
            assert got.scores[name] == pytest.approx(card.score, abs=1e-9)
            assert got.totals[name] == pytest.approx(card.total, abs=1e-9)
        assert got.tiers[name] == card.tier
    assert got.in_force == {n: m.in_force for n, m in want.measures.items()}


def appends(seed: int, count: int) -> Iterator[dict[str, Any]]:
    """Random events of bank-a about alice: in order, out of order, corrections, retractions."""
    rng = random.Random(seed)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    made: list[str] = []
    for i in range(count):
        days = rng.uniform(-400, 250)  # negative: occurred long before earlier appends
        kind = rng.choice(["repayment_on_time", "repayment_late", "bill_paid", "bill_overdue",
                           "debt_default"])
        by_kind: dict[str, dict[str, Any]] = {
            "repayment_on_time": {"amount": rng.choice([50.0, 400.0, 2000.0])},
            "repayment_late": {"days_late": rng.randint(1, 90), "amount": 100.0},
            "bill_paid": {},
            "bill_overdue": {"days_overdue": rng.randint(1, 400)},
            "debt_default": {"amount": 1000.0},
        }
        attributes = by_kind[kind]
        body: dict[str, Any] = {
            "source_event_id": f"r{seed}-{i}", "subject": "alice", "type": kind,
            "occurred_at": (base + timedelta(days=days)).isoformat(), "attributes": attributes}
        roll = rng.random()
        if made and roll < 0.12:
            body.update(type="retraction", attributes={}, supersedes=rng.choice(made))
        elif made and roll < 0.24:
            body["supersedes"] = rng.choice(made)
        made.append(body["source_event_id"])
        yield body


def test_policy_without_holds_is_read_incrementally() -> None:
    register = shipped_register()
    assert incremental_allowed(parse_policy(NO_HOLD, "no-hold", register=register))
    assert not incremental_allowed(parse_policy(SESAME.read_text(), "sesame",
                                                register=register))


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_scores_equal_the_reference_after_each_append(
        world: World, clock: FixedClock, seed: int) -> None:
    published = world.call("operator", "POST", "/v1/policies", json={"source": NO_HOLD})
    assert published.status_code == 201, published.text
    world.opt_in("alice")
    check(world, clock, "incremental")
    for step, body in enumerate(appends(seed, 30)):
        r = world.call("source", "POST", "/v1/events", json=body)
        if r.status_code == 404:  # a retraction of an event already retracted or superseded
            continue
        assert r.status_code in (200, 201), r.text
        if step % 3 == 0:
            clock.now += timedelta(days=3)  # reads move forward as the state's clock does
        check(world, clock, "incremental")
    # A dispute leaves an adverse event out; the state is rebuilt without it.
    policy = service(world).view.policy_in_force(clock.now)
    now = assess_subject(world.ledger, "alice", policy, clock.now)
    counting = {c.event for c in now.evaluation.scorecards["sesame"].contributions
                if c.counted and c.points_now < 0}
    adverse = next(e for e in now.scored if e.key in counting)
    opened = world.call("alice", "POST", "/v1/subjects/alice/disputes",
                        json={"event_seq": adverse.seq, "reason": "not mine"})
    assert opened.status_code == 201, opened.text
    check(world, clock, "incremental")
    clock.now += timedelta(days=40)  # unverified: lapsed, still out
    check(world, clock, "incremental")
    # Withdrawing the opt-in: no Sesame score from the next read on.
    consent = next(c for c in world.call("alice", "GET", "/v1/subjects/alice/consents").json()
                   if c["scope"] == "scorecard")
    world.call("alice", "DELETE", f"/v1/subjects/alice/consents/{consent['seq']}")
    check(world, clock, "incremental")


def test_holds_and_reviews_are_answered_by_the_reference(world: World, clock: FixedClock) -> None:
    world.opt_in("alice")
    check(world, clock, "reference")  # Sesame's priority_service has a holding time
    world.call("operator", "POST", "/v1/policies", json={"source": NO_HOLD})
    check(world, clock, "incremental")
    asked = world.call("alice", "POST", "/v1/subjects/alice/reviews",
                       json={"measure": "deposit_free_rental"})
    assert asked.status_code == 201, asked.text
    world.call("reviewer", "POST", f"/v1/reviewer/reviews/{asked.json()['seq']}/resolution",
               json={"decision": "lifted", "reason": "long record of returns"})
    check(world, clock, "reference")


def test_statistics_equal_the_reference_population(world: World, clock: FixedClock) -> None:
    from trustledger.api.statistics import population

    world.call("operator", "POST", "/v1/policies", json={"source": NO_HOLD})
    for subject in ("alice", "bob"):
        world.opt_in(subject)
    policy = service(world).view.policy_in_force(clock.now)
    states: dict[str, Any] = {}

    def run() -> None:
        results = population(world.ledger, policy, clock.now, [0, 0], states)
        assert [r.path for r in results] == ["incremental", "incremental"]
        for subject, got in zip(("alice", "bob"), results, strict=True):
            want = assess_subject(world.ledger, subject, policy, clock.now).evaluation
            card = want.scorecards["sesame"]
            assert got.scores["sesame"] == pytest.approx(card.score, abs=1e-9)
            assert got.totals["sesame"] == pytest.approx(card.total, abs=1e-9)
            assert got.in_force == {n: m.in_force for n, m in want.measures.items()}

    run()
    first = states["alice"].state
    for body in appends(3, 8):  # the next run applies only these to alice's state
        world.call("source", "POST", "/v1/events", json=body)
    clock.now += timedelta(days=2)
    run()
    assert states["alice"].state is first
    assert states["alice"].applied == len(list(world.ledger.events("alice")))
    # An event purged (erasure here): the subject is out, its state dropped.
    world.call("bob", "POST", "/v1/subjects/bob/erasure")
    results = population(world.ledger, policy, clock.now, [0, 0], states)
    assert len(results) == 1 and set(states) == {"alice"}
    # A ledger larger than states may be kept for: the reference, nothing kept.
    bigger = population(world.ledger, policy, clock.now, [0, 0], states, keep_up_to=5)
    assert [r.path for r in bigger] == ["reference"] and states == {}
    assert bigger[0].totals["sesame"] == pytest.approx(results[0].totals["sesame"], abs=1e-9)


def test_a_state_takes_only_new_events_and_is_rebuilt_when_one_is_gone(world: World,
                                                                       clock: FixedClock) -> None:
    world.call("operator", "POST", "/v1/policies", json={"source": NO_HOLD})
    world.opt_in("alice")
    svc = service(world)
    svc.view.sync()
    policy = svc.view.policy_in_force(clock.now)
    record = svc.view.subject("alice")
    current_scores(record, policy, clock.now)
    built = record.incremental
    assert built is not None and built.applied == len(record.events) == 3
    events = record.events
    assert built.extends(events)
    later = replace(events[-1], source_event_id="later", seq=(events[-1].seq or 0) + 100)
    assert built.extends((*events, later))
    assert not built.extends((events[0], events[2]))  # one purged
    assert not built.extends((*events[:2], later))  # the last applied purged, a new one
    assert not built.extends((*events, replace(later, seq=events[0].seq)))  # not newer
    # A record that lost an event gets a new state, equal to the reference.
    shorter = SubjectRecord("alice", 0, (events[0], events[2]), record.records,
                            incremental=built)
    got = current_scores(shorter, policy, clock.now)
    assert shorter.incremental is not built
    want = assess(policy, "alice", shorter.events, shorter.records, clock.now)
    assert got.totals["sesame"] == pytest.approx(
        want.evaluation.scorecards["sesame"].total, abs=1e-9)


@pytest.fixture
def fresh_world(database_url: str, clock: FixedClock) -> Iterator[World]:
    """A world whose decisions never reuse an earlier evaluation (each is for now)."""
    yield from build_world(database_url, clock=clock, decision_max_age=0.0)


def decided(w: World, clock: FixedClock) -> str | None:
    """Alice's decision over HTTP equals the reference's rendered now; which engine gave it."""
    r = w.call("party", "POST", "/v1/decisions",
               json={"subject": "alice", "purpose": "rental_deposit"})
    assert r.status_code == 200, r.text
    svc = service(w)
    policy = svc.view.policy_in_force(clock.now)
    want = assess_subject(w.ledger, "alice", policy, clock.now)
    expected = json.loads(bytes(json_response(render.decision(
        want.evaluation, policy, "rental_deposit", r.json()["party"], "alice",
        r.json()["access_seq"])).body))
    assert r.json() == expected
    record = svc.view.subject("alice")
    got = current_assessment(record, policy, clock.now, 0.0)
    assert got.evaluation == want.evaluation and got.left_out == want.left_out
    assert (got.opt_ins, got.disputes, got.reviews) == (want.opt_ins, want.disputes,
                                                        want.reviews)
    return record.answered_by


@pytest.mark.parametrize("seed", [4, 5])
def test_decisions_from_the_maintained_state_equal_the_reference(
        fresh_world: World, clock: FixedClock, seed: int) -> None:
    """Sesame with its holding time, appends in and out of order, a dispute, a review, consent."""
    w = fresh_world
    w.opt_in("alice")
    w.consent("alice", "party", "rental_deposit")
    clock.now += timedelta(days=400)  # past most appends, so the maintained state can answer
    paths = [decided(w, clock)]
    for step, body in enumerate(appends(seed, 24)):
        r = w.call("source", "POST", "/v1/events", json=body)
        if r.status_code == 404:  # a retraction of an event already retracted or superseded
            continue
        assert r.status_code in (200, 201), r.text
        if step % 4 == 0:
            clock.now += timedelta(days=17)
        paths.append(decided(w, clock))
        paths.append(decided(w, clock))  # the same record read again: no rebuild
    assert paths.count("maintained") > len(paths) // 2, paths
    policy = service(w).view.policy_in_force(clock.now)
    now = assess_subject(w.ledger, "alice", policy, clock.now)
    adverse = next(e for e in now.scored if e.key in {
        c.event for c in now.evaluation.scorecards["sesame"].contributions
        if c.counted and c.points_now < 0})
    opened = w.call("alice", "POST", "/v1/subjects/alice/disputes",
                    json={"event_seq": adverse.seq, "reason": "not mine"})
    assert opened.status_code == 201, opened.text
    assert decided(w, clock) == "maintained"
    clock.now += timedelta(days=40)  # unverified: lapsed, still out
    assert decided(w, clock) == "maintained"
    asked = w.call("alice", "POST", "/v1/subjects/alice/reviews",
                   json={"measure": "deposit_free_rental"})
    assert asked.status_code == 201, asked.text
    w.call("reviewer", "POST", f"/v1/reviewer/reviews/{asked.json()['seq']}/resolution",
           json={"decision": "lifted", "reason": "long record of returns"})
    assert decided(w, clock) == "maintained"  # the review applies to the maintained result
    consent = next(c for c in w.call("alice", "GET", "/v1/subjects/alice/consents").json()
                   if c["scope"] == "scorecard")
    w.call("alice", "DELETE", f"/v1/subjects/alice/consents/{consent['seq']}")
    assert decided(w, clock) == "maintained"
    clock.now += timedelta(days=1)
    assert decided(w, clock) == "maintained"


def test_an_event_not_yet_occurred_is_answered_by_the_reference(fresh_world: World,
                                                                clock: FixedClock) -> None:
    w = fresh_world
    w.opt_in("alice")
    w.consent("alice", "party", "rental_deposit")
    assert decided(w, clock) == "maintained"
    ahead = {"source_event_id": "ahead", "subject": "alice", "type": "bill_paid",
             "occurred_at": (clock.now + timedelta(days=3)).isoformat()}
    assert w.call("source", "POST", "/v1/events", json=ahead).status_code == 201
    assert decided(w, clock) == "reference"
    clock.now += timedelta(days=4)
    assert decided(w, clock) == "maintained"
