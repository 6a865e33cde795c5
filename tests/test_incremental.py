"""Incremental state equals the reference ``evaluate`` (hypothesis), whatever the order events
arrive in, with late-recorded events, corrections and withdrawals; snapshots round-trip."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import d, ev, example, policy_file
from tests.test_engine_properties import DRIVING_TYPES, SESAME_TYPES
from tests.test_engine_properties import histories as example_histories
from tests.test_incremental_strategies import (
    close,
    histories,
    latest,
    near_threshold,
    policies,
)
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.engine.incremental import Reading, SubjectState, stateless_measures
from trustledger.errors import InputError
from trustledger.policy import CompiledPolicy

SETTINGS = settings(max_examples=examples(120), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same(policy: CompiledPolicy, reading: Reading, expected: Evaluation) -> None:
    at = reading.valid_at
    for name, result in expected.scorecards.items():
        assert close(reading.scores[name], result.score), (name, reading.scores, result)
        assert close(reading.totals[name], result.total), name
        if not near_threshold(policy, name, result.score, at):
            assert reading.tiers[name] == result.tier, name
    for name, value in expected.metrics.items():
        got = reading.metrics[name]
        assert close(None if got is None else float(got),
                     None if value is None else float(value)), (name, got, value)
        assert type(got) is type(value), name
    knife_edge = any(near_threshold(policy, n, r.score, at)
                     for n, r in expected.scorecards.items())
    for name, in_force in reading.measures.items():
        if not knife_edge:
            assert in_force == expected.measures[name].in_force, name
    assert set(reading.measures) | set(reading.replay_measures) == set(policy.measures)


@SETTINGS
@given(data=st.data())
def test_incremental_state_equals_evaluate(data: st.DataObject) -> None:
    policy, specs = data.draw(policies(reported_dates=True))
    events = data.draw(histories(specs))
    opt_ins = data.draw(st.sets(st.sampled_from(sorted(policy.scorecards))))
    valid_at = latest(events) + timedelta(hours=data.draw(st.integers(0, 3 * 365 * 24)))
    state = SubjectState.empty(policy, opt_ins)
    for event in events:
        state.apply(event)
    assert_same(policy, state.read(valid_at), evaluate(policy, events, valid_at,
                                                        opt_ins=opt_ins))


@SETTINGS
@given(data=st.data())
def test_reads_between_arrivals_equal_evaluate(data: st.DataObject) -> None:
    """Reading, then applying more (late, out of order), then reading again, snapshots too."""
    policy, specs = data.draw(policies(reported_dates=True))
    events = data.draw(histories(specs))
    opt_ins = set(policy.scorecards)
    cut = data.draw(st.integers(0, len(events)))
    state = SubjectState.empty(policy, opt_ins)
    for event in events[:cut]:
        state.apply(event)
    first = latest(events[:cut]) + timedelta(days=data.draw(st.integers(0, 900)))
    assert_same(policy, state.read(first), evaluate(policy, events[:cut], first,
                                                     opt_ins=opt_ins))
    restored = SubjectState.from_snapshot(policy, json.loads(json.dumps(state.snapshot())))
    for event in events[cut:]:
        restored.apply(event)
    second = latest(events) + timedelta(days=data.draw(st.integers(0, 900)))
    assert_same(policy, restored.read(second), evaluate(policy, events, second,
                                                         opt_ins=opt_ins))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_example_policies(data: st.DataObject) -> None:
    """The example policies, with their own event types and attributes."""
    policy, types = data.draw(st.sampled_from([(SESAME, SESAME_TYPES),
                                               (DRIVING, DRIVING_TYPES)]))
    events = data.draw(example_histories(types))
    events = data.draw(st.permutations(events))
    valid_at = latest(events, policy.effective_from) + timedelta(
        days=data.draw(st.integers(0, 2000)))
    state = SubjectState.empty(policy, set(policy.scorecards))
    for event in events:
        state.apply(event)
    assert_same(policy, state.read(valid_at), evaluate(policy, events, valid_at,
                                                        opt_ins=set(policy.scorecards)))


SESAME = example("sesame")
DRIVING = policy_file("driving")


def test_reading_the_past_is_refused() -> None:
    state = SubjectState.empty(DRIVING)
    state.apply(ev("a", "offence_minor", "2024-03-01"))
    with pytest.raises(InputError, match="evaluate"):
        state.read(d("2024-02-01"))


def test_repeated_key_other_subject_and_naive_times_are_refused() -> None:
    state = SubjectState.empty(DRIVING)
    state.apply(ev("a", "offence_minor", "2024-03-01"))
    with pytest.raises(InputError, match="twice"):
        state.apply(ev("a", "offence_minor", "2024-03-02"))
    with pytest.raises(InputError, match="subject"):
        state.apply(ev("b", "offence_minor", "2024-03-02", subject="bob"))
    naive = Event("src", "c", "alice", "offence_minor", d("2024-03-02").replace(tzinfo=None),
                  d("2024-03-02"))
    with pytest.raises(InputError, match="time zone"):
        state.apply(naive)
    with pytest.raises(InputError, match="opt_ins"):
        SubjectState.empty(DRIVING, {"nope"})


def test_driving_points_overhang_and_prerequisites_are_named() -> None:
    # Two serious offences, then one committed before the first expired but recorded after:
    # the first keeps counting through its overhang, as evaluate says.
    events = [ev("a", "offence_serious", "2020-02-01"), ev("b", "offence_serious", "2021-02-01"),
              ev("c", "offence_grave", "2025-01-15", "2025-03-01")]
    state = SubjectState.empty(DRIVING)
    for e in reversed(events):
        state.apply(e)
    at = d("2025-06-01")
    reading = state.read(at)
    expected = evaluate(DRIVING, events, at)
    assert reading.scores["driving"] == expected.scorecards["driving"].score == 7.0
    assert reading.tiers["driving"] == "warned"
    assert stateless_measures(DRIVING) == {"admonition"}
    assert reading.measures == {"admonition": True}
    assert set(reading.replay_measures) == {"warning", "licence_revoked"}


def test_snapshot_refuses_another_policy() -> None:
    state = SubjectState.empty(DRIVING)
    with pytest.raises(InputError, match="policy"):
        SubjectState.from_snapshot(SESAME, state.snapshot())
