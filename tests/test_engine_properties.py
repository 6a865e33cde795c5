"""Properties of the reference evaluator (hypothesis): deterministic, independent of the order
events are given in, and ``known_at`` hides exactly the events recorded after it — also for
the worked example's reported dates, set-backs and once-per-period deduction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import POLICIES, example, policy_file
from trustledger.engine import RETRACTION, Event, evaluate
from trustledger.policy import CompiledPolicy, load_policy

SESAME = example("sesame")
DRIVING = policy_file("driving")
FLENSBURG = load_policy(POLICIES / "examples" / "flensburg.yaml")
START = datetime(2025, 1, 1, tzinfo=UTC)

SESAME_TYPES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "repayment_on_time": st.fixed_dictionaries({"amount": st.floats(0, 5000)}),
    "repayment_late": st.fixed_dictionaries({"days_late": st.integers(1, 120),
                                             "amount": st.floats(0, 5000)}),
    "bill_paid": st.just({}),
    "bill_overdue": st.fixed_dictionaries({"days_overdue": st.integers(1, 400)}),
    "rental_returned": st.fixed_dictionaries({"late_hours": st.integers(0, 200)}),
    "identity_verified": st.fixed_dictionaries({"method": st.sampled_from(["eid", "bank"])}),
    "debt_default": st.fixed_dictionaries({"amount": st.floats(0, 1e5)}),
}
DRIVING_TYPES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    name: st.just({}) for name in ("offence_minor", "offence_serious", "offence_grave",
                                   "offence_reported_late", "remedial_course")
}


@st.composite
def reported(draw: st.DrawFn, occurred: datetime, recorded: datetime) -> dict[str, Any]:
    """A decision final between the offence and its recording (rarely after: misfit)."""
    span = (recorded - occurred) // timedelta(hours=6)
    final = occurred + timedelta(hours=6 * draw(st.integers(0, span)))
    if draw(st.integers(0, 19)) == 0:
        final = recorded + timedelta(days=1)
    return {"final_on": final.isoformat()}


FLENSBURG_TYPES: dict[str, Any] = {
    "offence_1": reported, "offence_2": reported, "offence_3": reported,
    "seminar": st.just({}),
}
"""Attribute strategies; a callable takes the event's occurred and recorded moments."""


@st.composite
def histories(draw: st.DrawFn, types: dict[str, Any]) -> list[Event]:
    count = draw(st.integers(0, 14))
    events: list[Event] = []
    for i in range(count):
        name = draw(st.sampled_from(sorted(types)))
        # whole hours, so ties in occurred_at are frequent and the tie-break is exercised
        occurred = START + timedelta(hours=draw(st.integers(0, 3 * 365 * 24 // 6)) * 6)
        recorded = occurred + timedelta(hours=draw(st.sampled_from([0, 0, 1, 24 * 40, 24 * 400])))
        strategy = types[name]
        attributes = draw(strategy if isinstance(strategy, st.SearchStrategy)
                          else strategy(occurred, recorded))
        events.append(Event("src", f"e{i}", "alice", name, occurred, recorded, attributes,
                            seq=i + 1))
    if len(events) > 0 and draw(st.booleans()):
        target = draw(st.sampled_from(events))
        when = target.recorded_at + timedelta(days=draw(st.integers(0, 300)))
        events.append(Event("src", "withdraw", "alice", RETRACTION, when, when, {},
                            target.source_event_id, seq=count + 1))
    return events


moments = st.integers(0, 4 * 365).map(lambda days: START + timedelta(days=days))
SETTINGS = settings(max_examples=examples(40), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
CASES = st.sampled_from([(SESAME, SESAME_TYPES), (DRIVING, DRIVING_TYPES),
                         (FLENSBURG, FLENSBURG_TYPES)])


def _run(policy: CompiledPolicy, events: list[Event], valid_at: datetime,
         known_at: datetime | None) -> Any:
    return evaluate(policy, events, valid_at, known_at, opt_ins=set(policy.scorecards))


@SETTINGS
@given(data=st.data(), valid_at=moments)
def test_evaluation_is_deterministic(data: st.DataObject, valid_at: datetime) -> None:
    policy, types = data.draw(CASES)
    events = data.draw(histories(types))
    assert _run(policy, events, valid_at, None) == _run(policy, events, valid_at, None)


@SETTINGS
@given(data=st.data(), valid_at=moments)
def test_evaluation_does_not_depend_on_event_order(data: st.DataObject,
                                                   valid_at: datetime) -> None:
    policy, types = data.draw(CASES)
    events = data.draw(histories(types))
    shuffled = data.draw(st.permutations(events))
    assert _run(policy, events, valid_at, None) == _run(policy, shuffled, valid_at, None)


@SETTINGS
@given(data=st.data(), valid_at=moments, known_at=moments)
def test_known_at_hides_exactly_the_events_recorded_after_it(
        data: st.DataObject, valid_at: datetime, known_at: datetime) -> None:
    policy, types = data.draw(CASES)
    events = data.draw(histories(types))
    visible = [e for e in events if e.recorded_at <= known_at]
    limited = _run(policy, events, valid_at, known_at)
    assert limited == _run(policy, visible, valid_at, known_at)
    seen = {o.event for o in limited.events}
    assert all(e.key not in seen for e in events if e.recorded_at > known_at)
    # and every visible event that occurred by valid_at is accounted for
    assert seen == {e.key for e in visible if e.occurred_at <= valid_at}


@SETTINGS
@given(data=st.data(), valid_at=moments)
def test_set_backs_only_ever_lower_the_penalty_points(data: st.DataObject,
                                                      valid_at: datetime) -> None:
    events = data.draw(histories(FLENSBURG_TYPES))
    card = _run(FLENSBURG, events, valid_at, None).scorecards["points"]
    assert all(s.points <= 0.0 for s in card.set_backs)
    counted = sum(c.points_now for c in card.contributions)
    assert card.total is not None and card.total <= counted + 1e-9
    assert abs(card.total - counted - sum(s.points for s in card.set_backs if s.counted)) < 1e-9
