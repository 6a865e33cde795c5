"""Subject states stored in the database: read after a restart instead of a rebuild, never stale.

Real ledgers (SQLite file, PostgreSQL server). Random steps on one subject — events
appended in and out of order and late, corrections, withdrawals, an opt-in granted and
withdrawn, a dispute opened, a human review asked — and after each step:

* a fresh :class:`~trustledger.api.view.LedgerView` (a restart, or a second worker) gives
  a decision that is *built* (the stored state is stale: the step changed the subject),
  equal to :func:`trustledger.scoring.assess_subject`, and writes the state;
* the clock moves on and another fresh view gives a decision read from the stored state
  (``answered_by == "persisted"``, no rebuild), equal to the reference again;
* the full assessment of that view (what the subject's own pages show) is built, never
  the partial one, and equals the reference exactly.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.clock import FixedClock
from tests.policies.support import POLICIES, example
from trustledger.api.view import LedgerView, current_assessment, decision_assessment
from trustledger.engine import Evaluation
from trustledger.engine.compact import pack
from trustledger.engine.maintained import MaintainedEvaluation
from trustledger.errors import InputError
from trustledger.ledger.models import EventIn
from trustledger.ledger.schema import metadata, subject_states
from trustledger.ledger.states import StoredState, SubjectStates, fingerprint
from trustledger.policy import load_policy
from trustledger.principals import ServiceLedger
from trustledger.rights.consent import Consent, grant_opt_in, withdraw_consent
from trustledger.rights.dispute import open_dispute
from trustledger.rights.review import request_review
from trustledger.scoring import assess_subject

SESAME = example("sesame")
START = datetime(2026, 3, 1, tzinfo=UTC)


def decision_parts(e: Evaluation) -> tuple[Any, ...]:
    """What a decision shows: all but the per-event derivation."""
    return (e.policy_hash, e.subject, e.valid_at, e.ledger_seq,
            {n: (c.consented, c.score, c.total, c.tier, c.reasons)
             for n, c in e.scorecards.items()},
            e.metrics, e.measures)


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[ServiceLedger]:
    clock.now = START
    with ServiceLedger.open(database_url, clock=clock) as opened:
        yield opened


def decide(ledger: ServiceLedger, clock: FixedClock) -> tuple[str | None, bool]:
    """A decision for alice from a fresh view (a new process); its states written after.

    Returns which engine answered and whether the subject's events were left unread.
    """
    view = LedgerView(ledger)
    record = view.decision_subject("alice", SESAME, clock.now)
    assessment = decision_assessment(record, SESAME, clock.now, 0.0)
    by = record.answered_by
    # A current stored state is read without the subject's events (but with an open
    # dispute: what it leaves out depends on the events).
    assert record.assessment_partial == (by == "persisted")
    assert not record.light or by == "persisted"
    assert view.persisted is not None and view.persisted.writer.flush()
    want = assess_subject(ledger, "alice", SESAME, clock.now)
    assert decision_parts(assessment.evaluation) == decision_parts(want.evaluation)
    assert assessment.opt_ins == want.opt_ins and assessment.reviews == want.reviews
    if not record.light:
        assert assessment.left_out == want.left_out
    full_record = view.subject("alice")
    assert not full_record.light
    full = current_assessment(full_record, SESAME, clock.now, 0.0)
    assert full.evaluation == want.evaluation  # the subject's own view is never partial
    assert not full_record.assessment_partial
    assert view.persisted.writer.flush()
    view.persisted.writer.close()
    return by, record.light


def event(rng: random.Random, i: int, made: list[str], clock: FixedClock) -> EventIn:
    kind = rng.choice(["repayment_on_time", "repayment_late", "bill_paid", "bill_overdue",
                       "debt_default", "identity_verified"])
    table: dict[str, dict[str, Any]] = {
        "repayment_on_time": {"amount": rng.choice([50.0, 400.0, 4000.0])},
        "repayment_late": {"days_late": rng.randint(1, 90), "amount": 100.0},
        "bill_paid": {},
        "bill_overdue": {"days_overdue": rng.randint(1, 400)},
        "debt_default": {"amount": 1000.0},
        "identity_verified": {"method": "eid"},
    }
    attributes = table[kind]
    occurred = clock.now - timedelta(days=rng.uniform(0, 600))  # late and out of order
    body: dict[str, Any] = {"source": "bank", "source_event_id": f"e{i}", "subject": "alice",
                            "type": kind, "occurred_at": occurred, "attributes": attributes}
    roll = rng.random()
    if made and roll < 0.1:
        body.update(type="retraction", attributes={}, supersedes=rng.choice(made))
    elif made and roll < 0.2:
        body["supersedes"] = rng.choice(made)
    made.append(body["source_event_id"])
    return EventIn(**body)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restarts_read_stored_states_equal_to_the_reference(
        ledger: ServiceLedger, clock: FixedClock, seed: int) -> None:
    rng = random.Random(seed)
    made: list[str] = []
    for i in range(6):
        ledger.append_event(event(rng, i, made, clock))
    consent: Consent | None = grant_opt_in(ledger, "alice", "sesame")
    seen: set[str] = set()
    lights: list[bool] = []
    for step in range(10):
        before = ledger.head()[0]
        roll = rng.random()
        if roll < 0.55 or step == 0:
            ledger.append_event(event(rng, 100 + step, made, clock))
            seen.add("event")
        elif roll < 0.7:
            if consent is not None:
                withdraw_consent(ledger, "alice", consent.seq)
                consent = None
                seen.add("withdrawn")
            else:
                consent = grant_opt_in(ledger, "alice", "sesame")
                seen.add("granted")
        elif roll < 0.85:
            target = rng.choice(list(ledger.events("alice")))
            assert target.seq is not None
            try:
                open_dispute(ledger, "alice", target.seq, "not mine")
                seen.add("dispute")
            except InputError as exc:  # already disputed: this step changes nothing then
                assert "already disputed" in str(exc), exc
        else:
            current = assess_subject(ledger, "alice", SESAME, clock.now).evaluation
            adverse = [m for m, r in current.measures.items()
                       if r.state.value in ("denied", "active")]
            if adverse:
                try:
                    request_review(ledger, current, adverse[0], statement="please")
                    seen.add("review")
                except InputError as exc:
                    assert "already under review" in str(exc), exc
        by, _ = decide(ledger, clock)
        if ledger.head()[0] != before:
            assert by == "maintained", "a state stale by the step's change was served"
        clock.advance(days=rng.choice([0.0, 1.0, 45.0, 200.0]))
        by, light = decide(ledger, clock)
        assert by == "persisted"
        lights.append(light)
    assert "event" in seen
    assert any(lights)


def test_a_stale_state_is_never_served(ledger: ServiceLedger, clock: FixedClock) -> None:
    """Moved basis, other inputs, another policy, a later read, garbage: built again."""
    ledger.append_event(EventIn(source="bank", source_event_id="a", subject="alice",
                                type="bill_paid", occurred_at=START - timedelta(days=3)))
    grant_opt_in(ledger, "alice", "sesame")
    by, _ = decide(ledger, clock)
    assert by == "maintained"
    store = SubjectStates(ledger._engine)
    row = store.load("alice", SESAME.hash)
    assert row is not None and row.basis_seq == ledger.head()[0]
    assert decide(ledger, clock)[0] == "persisted"

    def tampered(**change: Any) -> str | None:
        with ledger._engine.begin() as conn:
            conn.execute(sa.update(subject_states).values(**change))
        found = decide(ledger, clock)[0]
        with ledger._engine.begin() as conn:
            conn.execute(sa.update(subject_states).values(
                basis_seq=row.basis_seq, inputs=row.inputs, state=row.state))
        return found

    assert tampered(basis_seq=row.basis_seq - 1) == "maintained"
    assert tampered(inputs="0" * 64) == "maintained"
    assert tampered(state=b"garbage") == "maintained"
    assert decide(ledger, clock)[0] == "persisted"
    # A state read later than now (another worker's clock ahead): not served before it.
    clock.advance(days=30)
    assert decide(ledger, clock)[0] == "persisted"
    clock.now -= timedelta(days=10)
    assert decide(ledger, clock)[0] == "maintained"



def test_another_policy_version_builds_its_own(ledger: ServiceLedger, clock: FixedClock,
                                               tmp_path: Path) -> None:
    """A new policy version never reads the old version's state; each keeps its own row."""
    ledger.append_event(EventIn(source="bank", source_event_id="a", subject="alice",
                                type="bill_paid", occurred_at=START - timedelta(days=3)))
    assert decide(ledger, clock)[0] == "maintained"
    shutil.copy(POLICIES / "register.yaml", tmp_path / "register.yaml")
    text = (POLICIES / "sesame.yaml").read_text()
    changed = text.replace("    label: deposit-free rental\n", "    label: rental, no deposit\n", 1)
    assert changed != text
    (tmp_path / "sesame.yaml").write_text(changed)
    newer = load_policy(tmp_path / "sesame.yaml")
    assert newer.hash != SESAME.hash
    view = LedgerView(ledger)
    record = view.subject("alice")
    got = decision_assessment(record, newer, clock.now, 0.0)
    assert record.answered_by == "maintained"
    want = assess_subject(ledger, "alice", newer, clock.now)
    assert decision_parts(got.evaluation) == decision_parts(want.evaluation)
    view.close()
    store = SubjectStates(ledger._engine)
    assert {SESAME.hash, newer.hash} == {
        h for h in (SESAME.hash, newer.hash) if store.load("alice", h) is not None}
    assert decide(ledger, clock)[0] == "persisted"  # the old version's own state, still good


def test_the_later_basis_wins(ledger: ServiceLedger, clock: FixedClock) -> None:
    """Two workers writing: a state reflecting fewer entries never replaces a newer one."""
    store = SubjectStates(ledger._engine)
    e = EventIn(source="bank", source_event_id="a", subject="alice", type="bill_paid",
                occurred_at=START - timedelta(days=3))
    ledger.append_event(e)
    events = list(ledger.events("alice"))
    built = MaintainedEvaluation(SESAME, events, START, {"sesame"})
    built.evaluation(START)
    data = pack(built)
    inputs = fingerprint(SESAME.hash, {"sesame"}, ())
    store.save([StoredState("alice", SESAME.hash, 5, inputs, data)], 1)
    store.save([StoredState("alice", SESAME.hash, 4, "older", data)], 2)
    row = store.load("alice", SESAME.hash)
    assert row is not None and (row.basis_seq, row.inputs) == (5, inputs)
    store.save([StoredState("alice", SESAME.hash, 6, "newer", data)], 3)
    row = store.load("alice", SESAME.hash)
    assert row is not None and (row.basis_seq, row.inputs) == (6, "newer")
    store.forget("alice")
    assert store.load("alice", SESAME.hash) is None


def test_the_migration_creates_the_table(database_url: str, clock: FixedClock) -> None:
    ServiceLedger.open(database_url, clock=clock).close()

    def ours(obj: Any, name: str | None, kind: str, *_: Any) -> bool:
        table = obj if kind == "table" else getattr(obj, "table", None)
        return (name if kind == "table" else getattr(table, "name", None)) == "subject_states"

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": ours})
            assert compare_metadata(context, metadata) == []
            assert sa.inspect(conn).has_table("subject_states")
    finally:
        engine.dispose()


def test_a_consent_lapsing_in_memory_loads_the_subject(ledger: ServiceLedger,
                                                       clock: FixedClock) -> None:
    """A record without events whose opt-in expires while cached: loaded in full, not stale."""
    ledger.append_event(EventIn(source="bank", source_event_id="a", subject="alice",
                                type="repayment_on_time", occurred_at=START - timedelta(days=3),
                                attributes={"amount": 4000.0}))
    grant_opt_in(ledger, "alice", "sesame", expires_at=START + timedelta(days=10))
    assert decide(ledger, clock)[0] == "maintained"
    view = LedgerView(ledger)
    record = view.decision_subject("alice", SESAME, clock.now)
    assert record.light and not record.events
    decision_assessment(record, SESAME, clock.now, 0.0)
    assert record.answered_by == "persisted"
    clock.advance(days=20)  # the opt-in has expired: no entry says so
    assert view.decision_subject("alice", SESAME, clock.now) is record  # still cached
    got = decision_assessment(record, SESAME, clock.now, 0.0)
    want = assess_subject(ledger, "alice", SESAME, clock.now)
    assert decision_parts(got.evaluation) == decision_parts(want.evaluation)
    assert not want.evaluation.scorecards["sesame"].consented
    loaded = view.cached("alice")
    assert loaded is not None and not loaded.light and loaded.answered_by == "maintained"
    view.close()


def test_a_purge_deletes_the_stored_states(ledger: ServiceLedger, clock: FixedClock) -> None:
    """Derived data of a purged event does not outlive it: the view deletes it on sync."""
    entry = ledger.append_event(EventIn(source="bank", source_event_id="a", subject="alice",
                                        type="bill_paid", occurred_at=START - timedelta(days=3)))
    assert decide(ledger, clock)[0] == "maintained"
    store = SubjectStates(ledger._engine)
    assert store.load("alice", SESAME.hash) is not None
    view = LedgerView(ledger)
    ledger.purge_payload(entry.seq, "asked by the subject")
    view.sync()
    assert store.load("alice", SESAME.hash) is None
    view.close()


def test_two_workers_share_their_states(ledger: ServiceLedger, clock: FixedClock) -> None:
    """Worker B reads the state worker A wrote; after a change, A reads the one B rebuilt."""
    ledger.append_event(EventIn(source="bank", source_event_id="a", subject="alice",
                                type="repayment_on_time", occurred_at=START - timedelta(days=9),
                                attributes={"amount": 400.0}))
    grant_opt_in(ledger, "alice", "sesame")
    a, b = LedgerView(ledger), LedgerView(ledger)
    assert a.persisted is not None and b.persisted is not None

    def answer(view: LedgerView) -> str | None:
        view.sync()
        record = view.decision_subject("alice", SESAME, clock.now)
        got = decision_assessment(record, SESAME, clock.now, 0.0)
        want = assess_subject(ledger, "alice", SESAME, clock.now)
        assert decision_parts(got.evaluation) == decision_parts(want.evaluation)
        assert view.persisted is not None and view.persisted.writer.flush()
        return record.answered_by

    assert answer(a) == "maintained"
    clock.advance(days=3)
    assert answer(b) == "persisted"
    ledger.append_event(EventIn(source="bank", source_event_id="b", subject="alice",
                                type="bill_overdue", occurred_at=START,
                                attributes={"days_overdue": 45}))
    clock.advance(days=1)
    assert answer(b) == "maintained"  # B's own state is stale now: built again, written
    clock.advance(days=1)
    assert answer(a) == "persisted"  # A dropped its copy on sync and reads B's
    a.close()
    b.close()
