"""A maintained evaluation, read at later and later moments, equals ``evaluate`` exactly.

Random policies across the language (every points form, decay, expiry, overhang, ``when``
conditions, windows, caps, tiers, stateless and held measures), random histories (late,
out of order, corrections, withdrawals, reported dates), several reads one after the
other on the same state: every score, reason, ``since`` and ``held_until`` is the
reference's, to the last bit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import example, policy_file
from tests.test_engine_properties import DRIVING_TYPES, SESAME_TYPES
from tests.test_engine_properties import histories as example_histories
from tests.test_incremental_strategies import histories, latest, policies
from trustledger.engine import Event, evaluate
from trustledger.engine.history import at
from trustledger.engine.maintained import MaintainedEvaluation, maintainable
from trustledger.errors import InputError
from trustledger.policy import CompiledPolicy

SETTINGS = settings(max_examples=examples(120), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SESAME = example("sesame")
DRIVING = policy_file("driving")


def reads(data: st.DataObject, policy: CompiledPolicy, events: list[Event],
          opt_ins: set[str]) -> None:
    """Build once, then read at 1 to 4 increasing moments, each equal to ``evaluate``."""
    floor = latest(events, policy.effective_from)
    state = MaintainedEvaluation(policy, events, floor, opt_ins)
    first = max(floor, at(state.horizon)) if state.horizon > floor.timestamp() else floor
    moment = first + timedelta(hours=data.draw(st.integers(0, 24 * 400)))
    for _ in range(data.draw(st.integers(1, 4))):
        assert state.serves(moment)
        got = state.evaluation(moment)
        assert got == evaluate(policy, events, moment, opt_ins=opt_ins)
        for m in got.measures.values():
            event(f"since {'set' if m.since else 'none'}, held {'yes' if m.held_until else 'no'}"
                  f", {m.state.value}")
        moment += timedelta(seconds=data.draw(st.sampled_from(
            [0, 1, 3_600, 86_400 * 30, 86_400 * 200, 86_400 * 900])))


@SETTINGS
@given(data=st.data())
def test_reads_equal_evaluate(data: st.DataObject) -> None:
    policy, specs = data.draw(policies(reported_dates=True))
    assert maintainable(policy)
    events = data.draw(histories(specs))
    opt_ins = data.draw(st.sets(st.sampled_from(sorted(policy.scorecards))))
    reads(data, policy, events, set(opt_ins))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_example_policies(data: st.DataObject) -> None:
    """Sesame (a holding time) and the driving licence (prerequisites with notice)."""
    policy, types = data.draw(st.sampled_from([(SESAME, SESAME_TYPES),
                                               (DRIVING, DRIVING_TYPES)]))
    if not maintainable(policy):
        pytest.skip("set-backs of points are the reference's")
    events = data.draw(st.permutations(data.draw(example_histories(types))))
    reads(data, policy, events, set(policy.scorecards))


def test_reads_that_cannot_be_served_are_refused() -> None:
    """Before the latest read, before an event, or a naive moment: a clear refusal."""
    start = datetime(2025, 3, 1, tzinfo=UTC)
    event = Event("bank", "e1", "alice", "bill_paid", start, start, {})
    state = MaintainedEvaluation(SESAME, [event], start, {"sesame"})
    later = start + timedelta(days=10)
    assert state.evaluation(later) == evaluate(SESAME, [event], later, opt_ins={"sesame"})
    assert not state.serves(start + timedelta(days=1))
    with pytest.raises(InputError, match="before an earlier read"):
        state.evaluation(start + timedelta(days=1))
    with pytest.raises(InputError, match="timezone-aware"):
        state.evaluation(datetime(2026, 1, 1))
    future = Event("bank", "e2", "alice", "bill_paid", start + timedelta(days=5), start, {})
    ahead = MaintainedEvaluation(SESAME, [event, future], start, {"sesame"})
    assert not ahead.serves(start + timedelta(days=30))


def test_set_backs_and_unknown_opt_ins_are_refused() -> None:
    with pytest.raises(InputError, match="opt_ins names no scorecard"):
        MaintainedEvaluation(SESAME, [], datetime(2025, 3, 1, tzinfo=UTC), {"nope"})
    if DRIVING.set_back_scorecards:
        assert not maintainable(DRIVING)
        with pytest.raises(InputError, match="sets back points"):
            MaintainedEvaluation(DRIVING, [], datetime(2025, 3, 1, tzinfo=UTC))


def test_a_held_privilege_reads_as_the_reference_before_during_and_after_its_hold() -> None:
    """Sesame's priority service (score ≥ 700, held 90 days) gained, lost by a default, held."""
    start = datetime(2025, 2, 1, tzinfo=UTC)
    events = [Event("id", "v", "alice", "identity_verified", start, start, {"method": "eid"})]
    for month in range(8):
        for k in range(2):
            day = start + timedelta(days=31 * month + 3 + k)
            events.append(Event("bank", f"r{month}-{k}", "alice", "repayment_on_time", day, day,
                                {"amount": 4000.0}))
    default = start + timedelta(days=250)
    events.append(Event("bank", "d", "alice", "debt_default", default, default,
                        {"amount": 900.0}))
    state = MaintainedEvaluation(SESAME, events, default, {"sesame"})
    seen = []
    for days in (1, 30, 55, 65, 400):
        moment = default + timedelta(days=days)
        got = state.evaluation(moment)
        assert got == evaluate(SESAME, events, moment, opt_ins={"sesame"})
        seen.append(got.measures["priority_service"].held_until is not None)
    assert seen[0] and not seen[-1]
