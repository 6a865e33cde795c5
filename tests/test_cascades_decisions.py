"""One subject's decisions in a derivation step: each moment evaluated once, equal to assess.

:class:`trustledger.cascades.decision.Decisions` shares one evaluation among every
subscription to a subject and reads later moments (the schedule's probes) from the
maintained evaluation. Each answer must equal the reference: ``assess`` at that
moment, through the same purpose view. Real SQLite ledgers (tests/test_cascades.py's
setting), real events, consents and disputes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.test_cascades import T0, URL, Setting, make_setting
from tests.test_incremental_strategies import (
    first_served,
    histories,
    latest,
    maintained_case,
    policies,
)
from trustledger.cascades import ALLOW_ENV, Deriver, subscribe
from trustledger.cascades.decision import Decided, Decisions, signature, view_of
from trustledger.cascades.store import subject_data
from trustledger.cascades.timing import next_change
from trustledger.engine import evaluate
from trustledger.engine.maintained import MaintainedEvaluation
from trustledger.rights import (
    erase,
    grant_decision_consent,
    open_dispute,
    request_review,
    resolve_review,
)
from trustledger.scoring import (
    assess,
    assessed,
    evaluate_subject,
    published_policies,
    rights_at,
)


@pytest.fixture(autouse=True)
def loopback_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The subscriptions' URL is on 127.0.0.1: allow loopback webhooks explicitly."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Setting]:
    yield from make_setting(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path)


def reference(decisions: Decisions, purpose: str, at: datetime) -> Decided:
    """The purpose's view from the reference ``assess`` at ``at``."""
    policy = decisions.policies.in_force(at)
    assert policy is not None
    assessment = assess(policy, "alice", decisions.events, decisions.records, at)
    view, reasons = view_of(assessment, purpose)
    return Decided(at, view, reasons, assessment)


def decisions_now(setting: Setting) -> Decisions:
    deriver = Deriver(setting.ledger, setting.clock)
    deriver.policies.load(published_policies(setting.ledger))
    return Decisions(deriver.policies, "alice",
                     *subject_data(setting.ledger, "alice", setting.ledger.position()))


def test_every_moment_equals_the_reference_and_later_ones_are_maintained_reads(
        s: Setting) -> None:
    s.event("bonus")
    fee = s.event("late_fee")
    s.event("returned_late")
    s.clock.set(T0 + timedelta(hours=1))
    open_dispute(s.ledger, "alice", fee, "I paid on time")  # the fee is left out
    s.event("bonus", occurred_at=(T0 - timedelta(days=40)).isoformat())  # late, decayed
    decisions = decisions_now(s)
    start = s.clock()
    # Forward, as the deriver and the schedule's probes read; then one moment back,
    # as the bisection of a measure crossing does (a fresh maintained build).
    moments = [start, start + timedelta(days=1), start + timedelta(days=29),
               start + timedelta(days=45), start + timedelta(days=400),
               start + timedelta(days=10)]
    for at in moments:
        for purpose in ("lending", "renting"):
            assert decisions.decide(purpose, at) == reference(decisions, purpose, at)
    # Every moment once (two purposes share it); the forward reads were maintained.
    assert sum(decisions.evaluated.values()) == len(moments)
    assert decisions.evaluated["maintained"] == len(moments)
    assert decisions.evaluated["reference"] == 0
    # The schedule's probes: tiers and states only, equal to the full view's signature.
    probes = decisions_now(s)
    for at in moments:
        for purpose in ("lending", "renting"):
            expected = signature(reference(decisions, purpose, at).view)
            assert probes.signature(purpose, at) == expected
    assert probes.evaluated["standing"] == len(moments)  # two purposes share each
    assert probes.evaluated["maintained"] == probes.evaluated["reference"] == 0


def test_a_review_in_force_is_probed_through_the_full_view(s: Setting) -> None:
    s.event("late_fee")  # 480: fast lane denied
    policy = decisions_now(s).policies.in_force(s.clock())
    assert policy is not None
    review = request_review(s.ledger, evaluate_subject(s.ledger, "alice", policy, s.clock()),
                            "fast_lane")
    resolve_review(s.ledger, review.seq, "reviewer", "lifted", "the fee was waived")
    decisions = decisions_now(s)
    at = s.clock() + timedelta(days=1)
    expected = signature(reference(decisions, "lending", at).view)
    assert expected is not None and ("fast_lane", "granted") in expected[2]  # lifted
    assert decisions.signature("lending", at) == expected
    assert decisions.evaluated["standing"] == 0


def test_subscriptions_to_one_subject_share_one_evaluation(s: Setting) -> None:
    s.event("bonus")
    decisions = decisions_now(s)
    at = s.clock()
    lending = decisions.decide("lending", at)
    renting = decisions.decide("renting", at)
    assert lending.assessment is renting.assessment is not None
    assert decisions.evaluated == {"maintained": 1, "reference": 0, "standing": 0}


def test_two_parties_are_told_the_same_change_from_one_step(s: Setting) -> None:
    grant_decision_consent(s.ledger, "alice", "other-lender", "lending")
    subscribe(s.ledger, s.party, "alice", "lending", URL, s.clock())
    subscribe(s.ledger, s.other, "alice", "lending", URL, s.clock())
    s.clock.set(T0 + timedelta(minutes=1))
    s.event("bonus")  # 580: high
    s.deriver.run()
    rows = s.outbox()
    assert sorted(r["body"]["data"]["party"] for r in rows) == ["lender", "other-lender"]
    bodies = [r["body"]["data"] for r in rows]
    assert bodies[0]["new"] == bodies[1]["new"]
    assert bodies[0]["new"]["scorecards"]["trust"]["tier"] == "high"
    assert bodies[0]["reasons"] == bodies[1]["reasons"]


def test_an_erased_subject_and_an_event_not_yet_occurred_are_the_reference_answers(
        s: Setting) -> None:
    s.event("bonus", occurred_at=(T0 + timedelta(days=3)).isoformat())  # in the future
    decisions = decisions_now(s)
    at = s.clock()
    assert decisions.decide("lending", at) == reference(decisions, "lending", at)
    assert decisions.evaluated == {"maintained": 0, "reference": 1, "standing": 0}
    later = at + timedelta(days=4)  # the event has occurred: maintained again
    assert decisions.decide("lending", later) == reference(decisions, "lending", later)
    assert decisions.evaluated == {"maintained": 1, "reference": 1, "standing": 0}
    erase(s.ledger, "alice")
    gone = decisions_now(s)
    assert gone.decide("lending", later).view == {"status": "erased"}
    assert gone.evaluated == {"maintained": 0, "reference": 0, "standing": 0}


@settings(max_examples=examples(80), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_standing_equals_the_tiers_scores_and_states_of_evaluate(data: st.DataObject) -> None:
    """Random policies and histories (tests/test_incremental_strategies), reads moving on."""
    policy, events, opt_ins, state, first = maintained_case(data)
    moment = first + timedelta(hours=data.draw(st.integers(0, 24 * 400)))
    for _ in range(data.draw(st.integers(1, 4))):
        got = state.standing(moment)
        expected = evaluate(policy, events, moment, opt_ins=opt_ins)
        assert got.tiers == {n: c.tier for n, c in expected.scorecards.items()}
        assert got.states == {n: m.state for n, m in expected.measures.items()}
        assert got.scores == {n: c.score for n, c in expected.scorecards.items()}
        moment += timedelta(seconds=data.draw(st.sampled_from(
            [0, 1, 3_600, 86_400 * 30, 86_400 * 200, 86_400 * 900])))


def _whole_view(evaluation: Any) -> dict[str, Any]:
    """Every scorecard and measure of an evaluation, as a purpose declaring all would see it."""
    return {"status": "decided", "policy_hash": evaluation.policy_hash,
            "scorecards": {n: {"score": c.score, "tier": c.tier}
                           for n, c in evaluation.scorecards.items()},
            "measures": {n: {"state": m.state.value, "in_force": m.in_force}
                         for n, m in evaluation.measures.items()}}


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_schedule_from_the_maintained_history_equals_the_schedule_built_anew(
        data: st.DataObject) -> None:
    """next_change given the maintained evaluation's history answers as building its own.

    Random policies and histories (tests/test_incremental_strategies): the decision is
    read from a maintained evaluation at a moment it serves, as the deriver reads it,
    and the probe is the reference ``evaluate``.
    """
    policy, specs = data.draw(policies(reported_dates=True))
    events = data.draw(histories(specs))
    floor = latest(events, policy.effective_from)
    rights = rights_at(policy, events, [], floor)
    state = MaintainedEvaluation(policy, rights.kept, floor, rights.opt_ins)
    at = first_served(state, floor) + timedelta(hours=data.draw(st.integers(0, 24 * 400)))
    assume(state.serves(at))
    assessment = assessed(policy, "alice", events, rights, state.evaluation(at), at)
    decided = Decided(at, _whole_view(assessment.evaluation), (), assessment)

    def probe(moment: datetime) -> tuple[Any, ...] | None:
        return signature(_whole_view(evaluate(policy, rights.kept, moment,
                                              opt_ins=rights.opt_ins)))

    built = next_change(decided, at, probe)
    assert next_change(decided, at, probe, history=state.history) == built
