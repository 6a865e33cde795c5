"""A maintained evaluation packed, restored from the bytes alone and read on equals ``evaluate``.

Random policies across the language and random histories (late, out of order,
corrections, withdrawals, reported dates; tests/test_incremental_strategies), and the
example policies with their holding time and prerequisites: build, read, pack, restore
into fresh objects (no events), read at later moments — repacking between reads at
random — and every decision-time part (scores, totals, tiers, reasons, metrics,
measures with ``since``, ``held_until`` and reasons) is the reference's, bit for bit.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import example, policy_file
from tests.test_engine_properties import DRIVING_TYPES, SESAME_TYPES
from tests.test_engine_properties import histories as example_histories
from tests.test_incremental_strategies import (
    first_served,
    histories,
    latest,
    maintained_case,
    policies,
)
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.engine.compact import FORMAT, dictionary, header, pack, unpack
from trustledger.engine.maintained import MaintainedEvaluation, maintainable
from trustledger.engine.packed import PackedState
from trustledger.errors import InputError
from trustledger.policy import CompiledPolicy

SETTINGS = settings(max_examples=examples(150), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SESAME = example("sesame")
DRIVING = policy_file("driving")
STEPS = [0, 1, 3_600, 86_400 * 30, 86_400 * 200, 86_400 * 900]


def decision_parts(e: Evaluation) -> tuple[Any, ...]:
    """What a decision shows (and a measure decides on): all but the per-event derivation."""
    return (e.policy, e.policy_hash, e.subject, e.valid_at, e.ledger_seq,
            {n: (c.consented, c.score, c.total, c.tier, c.reasons)
             for n, c in e.scorecards.items()},
            e.metrics, e.measures)


def restored_reads(data: st.DataObject, policy: CompiledPolicy, events: list[Event],
                   opt_ins: set[str]) -> None:
    """Build, read once, pack; restore and read 1-4 later moments, each equal to ``evaluate``."""
    floor = latest(events, policy.effective_from)
    built = MaintainedEvaluation(policy, events, floor, opt_ins)
    moment = first_served(built, floor) + timedelta(hours=data.draw(st.integers(0, 24 * 400)))
    assert built.serves(moment)
    built.evaluation(moment)
    state = unpack(policy, pack(built))
    assert state.partial and not built.partial
    for _ in range(data.draw(st.integers(1, 4))):
        moment += timedelta(seconds=data.draw(st.sampled_from(STEPS)))
        assert state.serves(moment)
        got = state.evaluation(moment)
        want = evaluate(policy, events, moment, opt_ins=opt_ins)
        assert decision_parts(got) == decision_parts(want)
        # What is left out is only what no longer counts.
        assert {o.event for o in want.events if o.counted} <= {o.event for o in got.events}
        for m in got.measures.values():
            event(f"{m.state.value}, since {'set' if m.since else 'none'}, "
                  f"held {'yes' if m.held_until else 'no'}")
        if data.draw(st.booleans()):
            state = unpack(policy, pack(state))  # a restart between two reads


@SETTINGS
@given(data=st.data())
def test_restored_reads_equal_evaluate(data: st.DataObject) -> None:
    policy, specs = data.draw(policies(reported_dates=True))
    assert maintainable(policy)
    events = data.draw(histories(specs))
    opt_ins = data.draw(st.sets(st.sampled_from(sorted(policy.scorecards))))
    restored_reads(data, policy, events, set(opt_ins))


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_restored_example_policies(data: st.DataObject) -> None:
    """Sesame (a holding time) and the driving licence (prerequisites with notice)."""
    policy, types = data.draw(st.sampled_from([(SESAME, SESAME_TYPES),
                                               (DRIVING, DRIVING_TYPES)]))
    if not maintainable(policy):
        pytest.skip("set-backs of points are the reference's")
    events = data.draw(st.permutations(data.draw(example_histories(types))))
    restored_reads(data, policy, events, set(policy.scorecards))


def test_a_hold_survives_a_restart() -> None:
    """Priority service gained, lost to a default, kept by its 90-day hold across a restart."""
    start = datetime(2025, 2, 1, tzinfo=UTC)
    events = [Event("id", "v", "alice", "identity_verified", start, start, {"method": "eid"},
                    seq=1)]
    for month in range(8):
        for k in range(2):
            day = start + timedelta(days=31 * month + 3 + k)
            events.append(Event("bank", f"r{month}-{k}", "alice", "repayment_on_time", day, day,
                                {"amount": 4000.0}, seq=len(events) + 1))
    default = start + timedelta(days=250)
    events.append(Event("bank", "d", "alice", "debt_default", default, default,
                        {"amount": 900.0}, seq=len(events) + 1))
    built = MaintainedEvaluation(SESAME, events, default, {"sesame"})
    built.evaluation(default + timedelta(days=1))
    held = []
    state = unpack(SESAME, pack(built))
    for days in (2, 30, 55, 65, 400):
        moment = default + timedelta(days=days)
        got = state.evaluation(moment)
        want = evaluate(SESAME, events, moment, opt_ins={"sesame"})
        assert decision_parts(got) == decision_parts(want)
        held.append(got.measures["priority_service"].held_until is not None)
        state = unpack(SESAME, pack(state))
    assert held[0] and not held[-1], "the case must exercise the hold"


def test_a_packed_state_is_small_and_forgets_what_stopped_counting() -> None:
    """Two years of weekly events: only those still counting are kept."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = [Event("bank", f"b{i}", "alice", "bill_paid", start + timedelta(days=7 * i),
                    start + timedelta(days=7 * i), {}, seq=i + 1) for i in range(150)]
    now = start + timedelta(days=7 * 150)
    built = MaintainedEvaluation(SESAME, events, now, {"sesame"})
    built.evaluation(now)
    data = pack(built)
    state = unpack(SESAME, data)
    got = state.evaluation(now)
    want = evaluate(SESAME, events, now, opt_ins={"sesame"})
    assert decision_parts(got) == decision_parts(want)
    counting = sum(1 for o in want.events if o.counted)
    assert len(state.history.entries) == counting < len(events)
    assert header(SESAME, data) == (FORMAT, SESAME.hash)


def test_unreadable_or_foreign_states_are_refused() -> None:
    """Another policy, another format, garbage, or a state built before an event occurred."""
    start = datetime(2025, 3, 1, tzinfo=UTC)
    e = Event("bank", "e1", "alice", "bill_paid", start, start, {}, seq=1)
    built = MaintainedEvaluation(SESAME, [e], start, {"sesame"})
    built.evaluation(start)
    data = pack(built)
    with pytest.raises(InputError, match="is for another policy version, not sha256:"):
        unpack(DRIVING, data)
    with pytest.raises(InputError, match="is for another policy version"):
        header(DRIVING, data)
    body = orjson.loads(zlib.decompressobj(zdict=dictionary(SESAME)).decompress(data))
    body[0] = FORMAT + 1
    with pytest.raises(InputError, match=f"of format {FORMAT + 1}"):
        unpack(SESAME, zlib.compress(orjson.dumps(body)))
    body[0], body[1] = FORMAT, DRIVING.hash  # no dictionary: the hash in the body decides
    with pytest.raises(InputError, match="is for policy"):
        unpack(SESAME, zlib.compress(orjson.dumps(body)))
    with pytest.raises(InputError, match="cannot be read"):
        unpack(SESAME, b"not a state")
    with pytest.raises(InputError, match="unknown layout"):
        unpack(SESAME, zlib.compress(orjson.dumps({"a": 1})))
    future = Event("bank", "e2", "alice", "bill_paid", start + timedelta(days=5),
                   start, {}, seq=2)
    early = MaintainedEvaluation(SESAME, [e, future], start, {"sesame"})
    with pytest.raises(InputError, match="before one of its events occurred"):
        pack(early)


@settings(max_examples=examples(100), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_packed_states_held_in_memory_read_as_evaluate(data: st.DataObject) -> None:
    """:class:`PackedState` (what the service holds per subject): each read, from the
    state the previous read left, equals ``evaluate``; a read that processed no decision
    instant keeps the same bytes, one that did gives a state packed after it."""
    policy, events, opt_ins, built, moment = maintained_case(data)
    held = PackedState.of(built)
    assert held.data == pack(built) and held.serves(moment)
    for _ in range(data.draw(st.integers(1, 4))):
        moment += timedelta(seconds=data.draw(st.sampled_from(STEPS)))
        got, kept = held.evaluation(moment)
        want = evaluate(policy, events, moment, opt_ins=opt_ins)
        assert decision_parts(got) == decision_parts(want)
        assert kept is held or kept.data != held.data
        assert kept.serves(moment)
        held = kept
    assert PackedState.restore(policy, held.data).data == held.data
    with pytest.raises(InputError):
        PackedState.restore(policy, b"not a state")
