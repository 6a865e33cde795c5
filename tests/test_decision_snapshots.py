"""Decisions' first reads of stored subjects, many in one statement (SQLite and PostgreSQL).

``SubjectStates.snapshots`` reads what a decision needs of any number of subjects without
their events: each subject's rights records, the seq of its last entry that changes its
state, its stored row, and the ledger's head. Each subject's snapshot must equal what
the ledger says of it alone (its entries read in full), whatever else is asked with it.

``LedgerView.decision_subject_async`` (the decision endpoint's first read where states
persist) has one thread read the snapshots of every subject waiting in one statement:
each request gets the record it would get alone; a failed read fails every request
waiting on it, and the next read works again; a request abandoned while waiting (a
timeout) leaves the others their answers; closing the view stops the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from tests.clock import FixedClock
from tests.test_decisions_restart_http import ASK, seeded
from trustledger.api.view import NOT_SUBJECT_STATE, LedgerView, SubjectRecord, decision_assessment
from trustledger.errors import ConfigError
from trustledger.ledger.chain import EVENT_KIND
from trustledger.ledger.states import Snapshot, SubjectStates
from trustledger.policy import CompiledPolicy
from trustledger.principals import ServiceLedger

SUBJECTS = ("alice", "bob", "carol", "dora", "dave")  # dave: never heard of
T = TypeVar("T")


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[ServiceLedger]:
    """The seeded ledger, with alice's and bob's decisions stored with their states."""
    seeded(database_url, clock)
    with ServiceLedger.open(database_url, clock=clock) as opened:
        view = LedgerView(opened)
        policy = view.policy_in_force(clock.now)
        for subject in ("alice", "bob"):
            decision_assessment(view.decision_subject(subject, policy, clock.now), policy,
                                clock.now, 60.0, declared=policy.purposes[ASK])
        close(view)
        clock.advance(seconds=1.0)
        yield opened


def close(view: LedgerView) -> None:
    """Stop the view's state writer and snapshot reader."""
    view.close()


def store_of(view: LedgerView) -> SubjectStates:
    assert view.persisted is not None
    return view.persisted.store


def alone(ledger: ServiceLedger, store: SubjectStates, subject: str,
          policy: CompiledPolicy) -> Snapshot:
    """What the ledger says of one subject, its entries read in full."""
    at, entries = ledger.subject_entries(subject, exclude=NOT_SUBJECT_STATE)
    return Snapshot(at, [e for e in entries if e.kind != EVENT_KIND],
                    max((e.seq for e in entries), default=0), store.load(subject, policy.hash))


def test_snapshots_of_many_subjects_equal_each_read_alone(ledger: ServiceLedger,
                                                          clock: FixedClock) -> None:
    view = LedgerView(ledger)
    policy = view.policy_in_force(clock.now)
    store = store_of(view)
    before = store.snapshots_read
    together = store.snapshots([*SUBJECTS, "alice"], policy.hash, NOT_SUBJECT_STATE)
    assert store.snapshots_read == before + 1
    assert set(together) == set(SUBJECTS)
    for subject in SUBJECTS:
        assert together[subject] == alone(ledger, store, subject, policy), subject
    assert together["alice"].stored is not None and together["alice"].stored.decision
    assert together["carol"].records and together["carol"].stored is None
    assert together["dave"] == Snapshot(together["dave"].at, [], 0, None)
    close(view)


def run(*steps: Awaitable[T]) -> list[T | BaseException]:
    async def together() -> list[T | BaseException]:
        return await asyncio.wait_for(asyncio.gather(*steps, return_exceptions=True), 10)
    return asyncio.run(together())


def summary(record: SubjectRecord | None) -> tuple[Any, ...]:
    """What a decision takes from a first-read record."""
    assert record is not None
    return (record.subject, record.light, record.basis_seq, record.records,
            record.answered_by, record.assessment is not None and record.assessment.valid_at,
            record.packed is not None, record.stored is not None)


def test_decisions_asked_together_read_one_statement(ledger: ServiceLedger,
                                                     clock: FixedClock) -> None:
    view, each = LedgerView(ledger), LedgerView(ledger)  # two restarts of one worker
    policy = view.policy_in_force(clock.now)
    store = store_of(view)
    before = store.snapshots_read
    got = run(*(view.decision_subject_async(s, policy, clock.now) for s in SUBJECTS))
    # One statement for the five, or two: the reader may wake on the first ask and take
    # it alone before the loop has queued the rest (never a statement each).
    assert store.snapshots_read - before in (1, 2)
    for subject, record in zip(SUBJECTS, got, strict=True):
        assert not isinstance(record, BaseException)
        assert summary(record) == summary(each.decision_subject(subject, policy, clock.now,
                                                                load=False)), subject
    alice = got[0]
    assert isinstance(alice, SubjectRecord) and alice.assessment is not None  # stored decision
    # Kept: a second request finds alice in memory and reads nothing.
    before = store_of(view).snapshots_read
    assert run(view.decision_subject_async("alice", policy, clock.now)) == [alice]
    assert store_of(view).snapshots_read == before
    close(view)
    close(each)


def test_a_failed_read_fails_every_waiting_decision_and_the_next_read_works(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    view = LedgerView(ledger)
    policy = view.policy_in_force(clock.now)
    engine = ledger._engine

    def rename(old: str, new: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))

    rename("subject_states", "subject_states_away")  # the database fails under the read
    try:
        failed = run(*(view.decision_subject_async(s, policy, clock.now) for s in SUBJECTS))
    finally:
        rename("subject_states_away", "subject_states")
    for subject, outcome in zip(SUBJECTS, failed, strict=True):
        assert isinstance(outcome, ConfigError), subject  # a 503
        assert "the ledger database" in str(outcome) and "subject_states" in str(outcome)
        assert view.cached(subject, light=True) is None  # nothing kept
    again = run(view.decision_subject_async("alice", policy, clock.now))[0]
    assert isinstance(again, SubjectRecord) and again.assessment is not None
    close(view)


def test_an_abandoned_waiting_decision_leaves_the_others_their_records(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    view = LedgerView(ledger)
    policy = view.policy_in_force(clock.now)

    async def scenario() -> tuple[tuple[SubjectRecord | None, SubjectRecord | None], bool]:
        tasks = [asyncio.ensure_future(view.decision_subject_async(s, policy, clock.now))
                 for s in ("alice", "bob", "carol")]
        await asyncio.sleep(0)  # each has asked and waits for the read
        tasks[1].cancel()  # bob's request times out
        done = await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 10)
        return done, tasks[1].cancelled()

    (alice, carol), cancelled = asyncio.run(scenario())
    assert cancelled
    assert alice is not None and alice.subject == "alice" and alice.assessment is not None
    assert carol is not None and carol.subject == "carol" and carol.stored is None
    assert view.cached("bob", light=True) is None
    close(view)


def test_closing_the_view_stops_its_snapshot_reader(ledger: ServiceLedger,
                                                    clock: FixedClock) -> None:
    view = LedgerView(ledger)
    policy = view.policy_in_force(clock.now)
    run(view.decision_subject_async("alice", policy, clock.now))
    reader = [t for t in threading.enumerate() if t.name == "decision-snapshots"]
    assert reader and all(t.is_alive() for t in reader)
    view.close()
    assert not any(t.is_alive() for t in reader)
    failed = run(view.decision_subject_async("bob", policy, clock.now))[0]
    assert isinstance(failed, RuntimeError) and "closed" in str(failed)
