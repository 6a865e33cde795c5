"""A decision-only read (a purpose's scorecards and measures) equals ``evaluate``'s parts.

:meth:`MaintainedEvaluation.evaluation` with ``declared`` reads only what a decision
discloses. Random policies across the language and random histories
(tests/test_incremental_strategies), random declared parts, reads at later moments with
restarts (pack, unpack) in between, decision-only and full reads mixed at random: every
declared scorecard (consented, score, total, tier, reasons) and measure (state, since,
held_until, reasons) is the reference's exactly, and a full read after decision-only
reads is the reference's too (the replay moved forward the same way).

Then the service's view on real ledgers (SQLite file, PostgreSQL server): decisions for
Sesame's two purposes from fresh views (restarts, a second worker), alternating, equal to
:func:`trustledger.scoring.assess_subject`'s parts; a decision-only assessment is reused
only for a purpose whose parts it holds, never for the subject's full reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import FixedClock, examples
from tests.policies.support import example, policy_file
from tests.test_engine_properties import DRIVING_TYPES, SESAME_TYPES
from tests.test_engine_properties import histories as example_histories
from tests.test_incremental_strategies import histories, latest, policies
from trustledger.api.view import (
    LedgerView,
    current_assessment,
    decision_assessment,
    decision_parts,
    reusable,
    reuse_limit,
)
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.engine.compact import pack, unpack
from trustledger.engine.history import at
from trustledger.engine.maintained import MaintainedEvaluation, maintainable
from trustledger.errors import InputError
from trustledger.ledger.models import EventIn
from trustledger.policy import CompiledPolicy
from trustledger.principals import ServiceLedger
from trustledger.rights.consent import (
    active_consents,
    grant_decision_consent,
    grant_opt_in,
    withdraw_consent,
)
from trustledger.scoring import assess_subject

SESAME = example("sesame")
DRIVING = policy_file("driving")
START = datetime(2026, 3, 1, tzinfo=UTC)
STEPS = [0, 1, 3_600, 86_400 * 30, 86_400 * 200, 86_400 * 900]


@dataclass(frozen=True)
class Parts:
    """Declared parts, as a purpose declares them."""

    scorecards: tuple[str, ...]
    measures: tuple[str, ...]


def parts_of(e: Evaluation, declared: Parts) -> tuple[Any, ...]:
    """The declared parts of an evaluation, as a decision shows them."""
    return (e.policy, e.policy_hash, e.subject, e.valid_at, e.ledger_seq,
            {n: (c.consented, c.score, c.total, c.tier, c.reasons)
             for n, c in e.scorecards.items() if n in declared.scorecards},
            {n: m for n, m in e.measures.items() if n in declared.measures})


def whole(e: Evaluation) -> tuple[Any, ...]:
    """Every decision-time part (what a restored state's full read equals)."""
    return (parts_of(e, Parts(tuple(e.scorecards), tuple(e.measures))), e.metrics)


def declared_parts(data: st.DataObject, policy: CompiledPolicy) -> Parts:
    cards = data.draw(st.lists(st.sampled_from(sorted(policy.scorecards)), unique=True))
    measures = data.draw(st.lists(st.sampled_from(sorted(policy.measures)), unique=True)) \
        if policy.measures else []
    return Parts(tuple(cards), tuple(measures))


def mixed_reads(data: st.DataObject, policy: CompiledPolicy, events: list[Event],
                opt_ins: set[str]) -> None:
    """Decision-only and full reads at later moments, restarts between them at random."""
    floor = latest(events, policy.effective_from)
    state = MaintainedEvaluation(policy, events, floor, opt_ins)
    first = max(floor, at(state.horizon)) if state.horizon > floor.timestamp() else floor
    moment = first + timedelta(hours=data.draw(st.integers(0, 24 * 400)))
    for _ in range(data.draw(st.integers(1, 5))):
        assert state.serves(moment)
        want = evaluate(policy, events, moment, opt_ins=opt_ins)
        if data.draw(st.booleans()):
            declared = declared_parts(data, policy)
            got = state.evaluation(moment, declared=declared)
            assert parts_of(got, declared) == parts_of(want, declared)
            # Nothing but the declared parts is returned.
            assert set(got.scorecards) == set(declared.scorecards)
            assert set(got.measures) == set(declared.measures)
            assert got.events == () and got.metrics == {}
        else:
            got = state.evaluation(moment)
            assert whole(got) == whole(want)
        if data.draw(st.booleans()):
            state = unpack(policy, pack(state))  # a restart between two reads
        moment += timedelta(seconds=data.draw(st.sampled_from(STEPS)))


@settings(max_examples=examples(150), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_decision_only_reads_equal_evaluate(data: st.DataObject) -> None:
    policy, specs = data.draw(policies(reported_dates=True))
    assert maintainable(policy)
    events = data.draw(histories(specs))
    opt_ins = data.draw(st.sets(st.sampled_from(sorted(policy.scorecards))))
    mixed_reads(data, policy, events, set(opt_ins))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decision_only_reads_of_the_example_policies(data: st.DataObject) -> None:
    """Sesame (a holding time) and the driving licence (prerequisites with notice)."""
    policy, types = data.draw(st.sampled_from([(SESAME, SESAME_TYPES),
                                               (DRIVING, DRIVING_TYPES)]))
    if not maintainable(policy):
        pytest.skip("set-backs of points are the reference's")
    events = data.draw(st.permutations(data.draw(example_histories(types))))
    mixed_reads(data, policy, events, set(policy.scorecards))


def test_declared_parts_the_policy_does_not_have_are_refused() -> None:
    day = START - timedelta(days=3)
    events = [Event("bank", "a", "alice", "bill_paid", day, day, {}, seq=1)]
    state = MaintainedEvaluation(SESAME, events, START, {"sesame"})
    later = START + timedelta(days=30)
    with pytest.raises(InputError, match=r"declared parts name nothing in policy \w+: "
                                         r"no_such_measure"):
        state.evaluation(later, declared=Parts(("sesame",), ("no_such_measure",)))
    # Refused before the read moved: an earlier moment still serves, and equals evaluate.
    assert state.serves(START)
    parts = Parts(("sesame",), tuple(SESAME.purposes["rental_deposit"].measures))
    assert parts_of(state.evaluation(START, declared=parts), parts) == parts_of(
        evaluate(SESAME, events, START, opt_ins={"sesame"}), parts)


# -- the service's view, on real ledgers --------------------------------------------------


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[ServiceLedger]:
    clock.now = START
    with ServiceLedger.open(database_url, clock=clock) as opened:
        yield opened


def seed(ledger: ServiceLedger) -> None:
    kinds = [("identity_verified", {"method": "eid"}), ("bill_paid", {}),
             ("repayment_on_time", {"amount": 4000.0}), ("bill_overdue", {"days_overdue": 40}),
             ("repayment_on_time", {"amount": 400.0}), ("debt_default", {"amount": 900.0})]
    for i, (kind, attributes) in enumerate(kinds * 2):
        ledger.append_event(EventIn(source="bank", source_event_id=f"e{i}", subject="alice",
                                    type=kind, attributes=attributes,
                                    occurred_at=START - timedelta(days=17 * i + 2)))
    grant_opt_in(ledger, "alice", "sesame")


def test_decisions_per_purpose_across_restarts_and_workers(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    seed(ledger)
    purposes = [SESAME.purposes[name] for name in ("rental_deposit", "consumer_credit")]
    assert {*purposes[0].measures} != {*purposes[1].measures}
    a, b = LedgerView(ledger), LedgerView(ledger)  # two workers
    served: list[str | None] = []
    for step in range(8):
        view = (a, b)[step % 2]
        declared = purposes[(step // 2) % 2]
        record = view.decision_subject("alice", SESAME, clock.now)
        got = decision_assessment(record, SESAME, clock.now, 0.0, declared=declared)
        want = assess_subject(ledger, "alice", SESAME, clock.now)
        parts = Parts(declared.scorecards, declared.measures)
        assert parts_of(got.evaluation, parts) == parts_of(want.evaluation, parts)
        assert record.assessment_parts == decision_parts(declared)
        served.append(record.answered_by)
        # Held: reused for the same purpose; never for the other purpose (other measures)
        # nor for a full read.
        other = purposes[1 - (step // 2) % 2]
        assert reusable(record, SESAME, clock.now, 60.0, partial=True,
                        declared=declared) is got
        assert reusable(record, SESAME, clock.now, 60.0, partial=True,
                        declared=other) is None
        assert reusable(record, SESAME, clock.now, 60.0) is None
        # Reused up to the subject's share of the maximum age, not after.
        limit = timedelta(seconds=reuse_limit("alice", 60.0))
        assert reusable(record, SESAME, clock.now + limit - timedelta(milliseconds=1), 60.0,
                        partial=True, declared=declared) is got
        assert reusable(record, SESAME, clock.now + limit + timedelta(milliseconds=1), 60.0,
                        partial=True, declared=declared) is None
        assert view.persisted is not None and view.persisted.writer.flush()
        # A full read of the same view: the whole evaluation, equal to the reference.
        full = current_assessment(view.subject("alice"), SESAME, clock.now, 60.0)
        assert full.evaluation == want.evaluation
        clock.advance(days=(0.0, 3.0, 40.0, 120.0)[step % 4])
        if step % 2 == 1:  # a restarts: its next decision reads the stored state
            assert a.persisted is not None
            a.persisted.writer.close()
            a = LedgerView(ledger)
    assert "persisted" in served
    for view in (a, b):
        assert view.persisted is not None
        view.persisted.writer.close()


def test_consents_folded_once_equal_the_fold_at_each_moment(
        ledger: ServiceLedger, clock: FixedClock) -> None:
    """A record's consents (folded once) are ``active_consents`` at every moment."""
    seed(ledger)
    first = grant_decision_consent(ledger, "alice", "shop", "rental_deposit",
                                   expires_at=START + timedelta(days=10))
    clock.advance(days=2.0)
    second = grant_decision_consent(ledger, "alice", "bank", "consumer_credit")
    clock.advance(days=3.0)
    withdraw_consent(ledger, "alice", second.seq)
    view = LedgerView(ledger, persist_states=False)
    record = view.subject("alice")
    moments = [START - timedelta(days=1), START, START + timedelta(days=1),
               START + timedelta(days=4), clock.now, START + timedelta(days=10),
               START + timedelta(days=40)]
    seen = []
    for moment in moments:
        want = active_consents(record.records, moment)
        assert record.consents(moment) == want
        seen.append(frozenset(c.seq for c in want if c.scope == "decision"))
    # The case exercises a grant, a withdrawal and an expiry.
    assert seen[2] == {first.seq} and seen[3] == {first.seq, second.seq}
    assert seen[4] == {first.seq} and seen[6] == frozenset()


def test_reuse_limits_spread_subjects_over_the_second_half_of_the_maximum_age() -> None:
    """Subjects first read together are read again spread over 30 s, never after 60 s."""
    limits = [reuse_limit(f"subject-{i}", 60.0) for i in range(1_000)]
    assert all(30.0 <= limit <= 60.0 for limit in limits)
    assert max(limits) - min(limits) > 29.0  # spread, not one burst
    assert sum(limit < 45.0 for limit in limits) in range(400, 600)  # evenly
    assert reuse_limit("alice", 60.0) == reuse_limit("alice", 60.0)  # the same every time
    assert reuse_limit("alice", 0.0) == 0.0
