"""A decision kept with the subject's stored state: reused by a restart or another worker.

:func:`trustledger.engine.decided.pack_evaluation` packs an evaluation and
:func:`~trustledger.engine.decided.unpack_evaluation` reads it back equal (``==``, every
field), for the example policies' full and decision-only reads; unreadable bytes are
refused with an error naming them.

Then the service's view on real ledgers (SQLite file, PostgreSQL server): a decision one
worker read is stored with the state it was read from, and another worker (or a
restart) answers the same decision from it — the same evaluation, equal to the
reference's parts — while it is fresh, without restoring the state; after its share of
the maximum age the state answers; a new event, an opt-in withdrawn or unreadable bytes
mean it is not reused; with a maximum age of 0 none is stored.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import FixedClock, examples
from tests.test_engine_properties import DRIVING_TYPES, SESAME_TYPES
from tests.test_engine_properties import histories as example_histories
from tests.test_state_decision import DRIVING, SESAME, START, Parts, parts_of, seed
from trustledger.api.view import LedgerView, SubjectRecord, decision_assessment, reuse_limit
from trustledger.engine import Event, evaluate
from trustledger.engine.decided import FORMAT, pack_evaluation, unpack_evaluation
from trustledger.engine.maintained import MaintainedEvaluation
from trustledger.errors import InputError
from trustledger.ledger.models import EventIn
from trustledger.ledger.schema import subject_states
from trustledger.principals import ServiceLedger
from trustledger.rights.consent import active_consents, withdraw_consent
from trustledger.scoring import Assessment, assess_subject

RENTAL = SESAME.purposes["rental_deposit"]
PARTS = Parts(RENTAL.scorecards, RENTAL.measures)


# -- the packed evaluation -------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_packed_evaluations_read_back_equal(data: st.DataObject) -> None:
    """Full reads (every contribution and event outcome) and decision-only reads."""
    policy, types = data.draw(st.sampled_from([(SESAME, SESAME_TYPES),
                                               (DRIVING, DRIVING_TYPES)]))
    events = data.draw(example_histories(types))
    moment = START + timedelta(days=data.draw(st.integers(0, 2_000)))
    full = evaluate(policy, events, moment, opt_ins=set(policy.scorecards))
    reads = [full]
    if policy.purposes and all(e.occurred_at <= moment for e in events):
        declared = policy.purposes[data.draw(st.sampled_from(sorted(policy.purposes)))]
        state = MaintainedEvaluation(policy, events, moment, set(policy.scorecards))
        if state.serves(moment):
            reads.append(state.evaluation(moment, declared=declared))
    for evaluation in reads:
        data_ = pack_evaluation(evaluation)
        assert data_ is not None
        assert unpack_evaluation(data_) == evaluation


def test_unreadable_packed_evaluations_are_refused() -> None:
    evaluation = evaluate(SESAME, seed_events(), START, opt_ins={"sesame"})
    packed = pack_evaluation(evaluation)
    assert packed is not None
    with pytest.raises(InputError, match="a packed evaluation cannot be read"):
        unpack_evaluation(b"not zlib")
    with pytest.raises(InputError, match="a packed evaluation cannot be read"):
        unpack_evaluation(zlib.compress(orjson.dumps([FORMAT, "too short"])))
    other = orjson.loads(zlib.decompress(packed))
    other[0] = FORMAT + 1
    with pytest.raises(InputError, match=f"of format {FORMAT + 1}, not {FORMAT}"):
        unpack_evaluation(zlib.compress(orjson.dumps(other)))
    # A float JSON cannot carry would not read back equal: not packed at all.
    card = next(iter(evaluation.scorecards.values()))
    odd = replace(evaluation, scorecards={card.name: replace(card, total=float("nan"))})
    assert pack_evaluation(odd) is None


def seed_events() -> list[Event]:
    """Two of alice's events, without a ledger."""
    day = START - timedelta(days=3)
    return [Event("bank", "a", "alice", "bill_paid", day, day, {}, seq=1),
            Event("bank", "b", "alice", "repayment_on_time", day, day, {"amount": 400.0},
                  seq=2)]


# -- the service's view, on real ledgers -----------------------------------------------------


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[ServiceLedger]:
    clock.now = START
    with ServiceLedger.open(database_url, clock=clock) as opened:
        yield opened


def decide(view: LedgerView, clock: FixedClock, max_age: float = 60.0
           ) -> tuple[SubjectRecord, Assessment]:
    """One rental-deposit decision for alice through ``view``, now."""
    record = view.decision_subject("alice", SESAME, clock.now)
    return record, decision_assessment(record, SESAME, clock.now, max_age, declared=RENTAL)


def close(*views: LedgerView) -> None:
    for view in views:
        assert view.persisted is not None
        view.persisted.writer.close()


def decided_once(ledger: ServiceLedger, clock: FixedClock, max_age: float = 60.0
                 ) -> Assessment:
    """Alice seeded and decided once by a worker, which then stops (its writes done)."""
    seed(ledger)
    a = LedgerView(ledger)
    _, first = decide(a, clock, max_age)
    close(a)
    return first


def assert_read_now(ledger: ServiceLedger, clock: FixedClock, got: Assessment) -> None:
    """``got`` was read now (not reused), and equals the reference's parts."""
    assert got.valid_at == clock.now
    want = assess_subject(ledger, "alice", SESAME, clock.now)
    assert parts_of(got.evaluation, PARTS) == parts_of(want.evaluation, PARTS)


def stored_decision(ledger: ServiceLedger) -> bytes | None:
    with ledger._engine.connect() as conn:
        value = conn.execute(sa.select(subject_states.c.decision).where(
            subject_states.c.subject == "alice")).scalar_one()
    return None if value is None else bytes(value)


def test_another_worker_answers_from_the_decision_one_worker_stored(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    first = decided_once(ledger, clock)
    assert stored_decision(ledger) is not None
    clock.advance(seconds=5.0)
    b = LedgerView(ledger)  # another worker, or a restart
    record, got = decide(b, clock)
    # The same decision, not read again: its valid_at is the first worker's, and the
    # state was never restored.
    assert got.evaluation == first.evaluation and got.valid_at == first.valid_at
    assert record.light and record.packed is None and record.stored is not None
    want = assess_subject(ledger, "alice", SESAME, first.valid_at)
    assert parts_of(got.evaluation, PARTS) == parts_of(want.evaluation, PARTS)
    # Past the subject's share of the maximum age, the stored state answers (restored
    # then), equal to the reference at the new moment.
    clock.advance(seconds=reuse_limit("alice", 60.0))
    record, later = decide(b, clock)
    assert record.packed is not None and record.answered_by == "persisted"
    assert_read_now(ledger, clock, later)
    close(b)


def test_a_stored_decision_is_not_reused_once_the_subject_changed(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    decided_once(ledger, clock)
    clock.advance(seconds=1.0)
    ledger.append_event(EventIn(source="bank", source_event_id="late", subject="alice",
                                type="debt_default", attributes={"amount": 5000.0},
                                occurred_at=START - timedelta(days=1)))
    b = LedgerView(ledger)
    _, got = decide(b, clock)
    assert_read_now(ledger, clock, got)  # read again, with the new event
    assert any(e.source_event_id == "late"
               for e in assess_subject(ledger, "alice", SESAME, clock.now).scored)
    close(b)


def test_a_stored_decision_is_not_reused_once_the_opt_in_is_withdrawn(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    decided_once(ledger, clock)
    clock.advance(seconds=1.0)
    b = LedgerView(ledger)
    opt_in = next(c for c in active_consents(b.subject("alice").records, clock.now)
                  if c.scope != "decision")
    withdraw_consent(ledger, "alice", opt_in.seq)
    c = LedgerView(ledger)
    _, got = decide(c, clock)
    assert got.opt_ins == frozenset() and not got.evaluation.scorecards["sesame"].consented
    assert_read_now(ledger, clock, got)
    close(b, c)


def test_an_unreadable_stored_decision_is_not_reused(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    decided_once(ledger, clock)
    with ledger._engine.begin() as conn:
        conn.execute(sa.update(subject_states).values(decision=b"not a decision"))
    clock.advance(seconds=1.0)
    b = LedgerView(ledger)
    record, got = decide(b, clock)
    assert record.answered_by == "persisted"
    assert_read_now(ledger, clock, got)
    close(b)


def test_no_decision_is_stored_when_none_may_be_reused(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    decided_once(ledger, clock, max_age=0.0)
    assert stored_decision(ledger) is None


@pytest.mark.parametrize("max_age", [60.0, 0.0])
def test_a_state_built_for_a_decision_is_written_once(
        ledger: ServiceLedger, clock: FixedClock, max_age: float) -> None:
    """Built from the events: one write, of the state with the decision (or alone)."""
    seed(ledger)
    a = LedgerView(ledger)
    assert a.persisted is not None
    writer = a.persisted.writer
    before = writer.submitted
    record, got = decide(a, clock, max_age)
    assert record.answered_by == "maintained" and not record.read_packed
    assert writer.submitted == before + 1
    close(a)
    assert (stored_decision(ledger) is not None) is (max_age > 0)
    clock.advance(seconds=1.0)
    b = LedgerView(ledger)  # a restart: the row written is read
    record, again = decide(b, clock, max_age)
    if max_age > 0:  # the stored decision answers
        assert record.light and again.valid_at == got.valid_at
    else:  # the stored state answers, read now
        assert record.answered_by == "persisted"
        assert_read_now(ledger, clock, again)
    close(b)


def test_migration_0006_adds_the_decision_column_and_downgrades(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    """Rows written before it keep their states (no decision); a downgrade drops only it."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    from trustledger.ledger import database

    config = Config()
    config.set_main_option("script_location",
                           str(resources.files("trustledger.ledger") / "migrations"))
    engine = ledger._engine

    def migrate(target: str, down: bool = False) -> None:
        with database.writing(engine) as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, target)

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(engine).get_columns("subject_states")}

    decided_once(ledger, clock)
    migrate("0005", down=True)
    assert "decision" not in columns() and "state" in columns()
    migrate("0006")
    assert "decision" in columns()
    assert stored_decision(ledger) is None  # the row is kept, its decision is not
    clock.advance(seconds=1.0)
    b = LedgerView(ledger)
    record, got = decide(b, clock)
    assert record.answered_by == "persisted"  # read from the state the row kept
    assert_read_now(ledger, clock, got)
    close(b)
