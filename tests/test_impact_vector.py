"""The simulation's vectorised evaluation equals the reference ``evaluate`` on the same events.

Every month of a small simulated population, each subject's events so far (as
:func:`events_of` writes them) are evaluated by :func:`trustledger.engine.evaluate`, and
scores, totals, tiers, metrics and stateless measures must agree with the
:class:`VectorState` reading to 1e-9 — for the three example policies (with dense
scenarios so caps, ``when`` conditions, expiry and windows are all exercised) and a
test policy with every feature the simulation supports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import example, parse_declared
from tests.test_incremental_strategies import close, near_threshold, policies
from trustledger.engine import Event, evaluate
from trustledger.impact.conditions import Unsupported, vector_condition
from trustledger.impact.scenario import scenario_from_dict
from trustledger.impact.simulate import events_of, simulate
from trustledger.impact.vector import VariantKey, VectorPlan, VectorReading
from trustledger.policy import CompiledPolicy

KITCHEN = """
policy: kitchen
title: every feature the simulation evaluates
effective_from: 2025-01-01
event_types:
  gain_a:
    label: repayment
    domain: finance
    category: credit_repayment
    gravity: minor
    attributes:
      amount: {type: number, minimum: 0}
    points: {formula: "1.5 + attrs.amount / 300.0", max: 9}
    decay: {half_life: P90D}
    expiry: {after: P1Y}
    retention: P2Y
  loss_b:
    label: late
    domain: finance
    category: credit_repayment
    gravity: moderate
    points: -12
    decay: {half_life: P60D}
    expiry: {after: P6M}
    retention: P2Y
  loss_c:
    label: default
    domain: finance
    category: debt_default
    gravity: serious
    points: -40
    expiry: {after: P2Y}
    retention: P3Y
  perk:
    label: verified
    domain: finance
    category: credit_repayment
    gravity: minor
    points: 7
    when: "losses_1y == 0 && card.score < 520.0"
    retention: P10Y
metrics:
  losses_1y:
    aggregate: count
    types: [loss_b, loss_c]
    window: P1Y
  neg_now:
    aggregate: sum
    value: current
    sign: negative
    scorecard: card
    types: [gain_a, loss_b, loss_c]
    window: P9M
  gains_orig:
    aggregate: sum
    value: original
    sign: positive
    scorecard: card
    types: [gain_a, perk]
  gain_count:
    aggregate: count
    sign: positive
    scorecard: card
    types: [gain_a]
    window: P3M
scorecards:
  card:
    label: card
    events: [gain_a, loss_b, loss_c, perk]
    base: 500
    floor: 440
    ceiling: 600
    caps:
      - {period: month, max: 12, exempt: [perk]}
      - {period: year, max: 60, applies_to: losses}
    tiers:
      - {name: low, label: low}
      - {name: mid, label: mid, min: 480}
      - {name: high, label: high, min: 540}
measures:
  good:
    kind: privilege
    label: good standing
    domain: finance
    condition: "card.score >= 540.0 && losses_1y == 0"
  tiered:
    kind: privilege
    label: tier-based
    domain: finance
    condition: "card.tier == 'high' || (card.rank == 1 && gains_orig > 30.0) || good"
  review:
    kind: restriction
    label: review
    domain: finance
    severity: serious
    condition: "neg_now <= -45.0 && losses_1y >= 2"
"""


def _dense(policy: CompiledPolicy) -> dict[str, Any]:
    """A scenario with rates high enough to hit caps, conditions and thresholds."""
    if policy.name == "kitchen":
        events = {
            "gain_a": {"rate": {"distribution": "gamma", "mean": 2.5, "shape": 2},
                       "variants": [{"share": 0.5, "attributes": {"amount": 100}},
                                    {"share": 0.5, "attributes": {"amount": 2000}}]},
            "loss_b": {"rate": {"distribution": "uniform", "low": 0, "high": 0.6}},
            "loss_c": {"rate": {"distribution": "uniform", "low": 0, "high": 0.15}},
            "perk": {"rate": {"distribution": "fixed", "value": 0.4}},
        }
        feedback = [{"measure": "review", "while": "on", "multiply": {"loss_b": 2.0}}]
        return {"events": events, "feedback": feedback,
                "groups": [{"name": "a", "share": 1}, {"name": "b", "share": 1}]}
    if policy.name == "sesame":
        return {"events": {
            "repayment_on_time": {"rate": {"distribution": "gamma", "mean": 3, "shape": 2},
                                  "variants": [{"share": 0.5, "attributes": {"amount": 100}},
                                               {"share": 0.5, "attributes": {"amount": 3000}}]},
            "repayment_late": {"rate": {"distribution": "uniform", "low": 0, "high": 0.4},
                               "variants": [{"share": 1, "attributes": {"days_late": 9,
                                                                        "amount": 50}}]},
            "bill_paid": {"rate": {"distribution": "gamma", "mean": 4, "shape": 3}},
            "bill_overdue": {"rate": {"distribution": "uniform", "low": 0, "high": 0.3},
                             "variants": [{"share": 1, "attributes": {"days_overdue": 40}}]},
            "rental_returned": {"rate": {"distribution": "fixed", "value": 1.0},
                                "variants": [{"share": 0.7, "attributes": {"late_hours": 0}},
                                             {"share": 0.3, "attributes": {"late_hours": 50}}]},
            "identity_verified": {"rate": {"distribution": "fixed", "value": 0.3},
                                  "variants": [{"share": 1, "attributes": {"method": "x"}}]},
            "debt_default": {"rate": {"distribution": "fixed", "value": 0.02},
                             "variants": [{"share": 1, "attributes": {"amount": 10}}]},
        }, "opt_in": {"sesame": 0.8},
            "feedback": [{"measure": "pay_later", "while": "off",
                          "multiply": {"repayment_late": 1.5}}]}
    if policy.name == "rongcheng":
        return {"events": {
            "contract_breach": {"rate": {"distribution": "uniform", "low": 0, "high": 0.2}},
            "bank_arrears": {"rate": {"distribution": "uniform", "low": 0, "high": 0.3},
                             "variants": [{"share": 0.5, "attributes": {"cycles": 1}},
                                          {"share": 0.5, "attributes": {"cycles": 4}}]},
            "late_public_fees": {"rate": {"distribution": "uniform", "low": 0, "high": 0.2}},
            "utility_theft": {"rate": {"distribution": "fixed", "value": 0.03}},
        }, "opt_in": {"civic": 0.5}}
    return {"events": {
        "answer_upvoted": {"rate": {"distribution": "gamma", "mean": 12, "shape": 1}},
        "question_upvoted": {"rate": {"distribution": "gamma", "mean": 6, "shape": 1}},
        "answer_accepted": {"rate": {"distribution": "fixed", "value": 1}},
        "downvote_received": {"rate": {"distribution": "fixed", "value": 2}},
        "spam_flags_reached": {"rate": {"distribution": "fixed", "value": 0.05}},
        "bounty_offered": {"rate": {"distribution": "fixed", "value": 0.1},
                           "variants": [{"share": 1, "attributes": {"amount": 50}}]},
    }}


def _compare(policy: CompiledPolicy, plan: VectorPlan, reading: VectorReading,
             history: list[list[Event]], opted: Mapping[str, np.ndarray]) -> int:
    checked = 0
    for i, events in enumerate(history):
        opt_ins = {c for c, mask in opted.items() if mask[i]}
        ref = evaluate(policy, events, reading.valid_at, opt_ins=opt_ins)
        for name, card in ref.scorecards.items():
            got = reading.scores[name][i]
            if card.score is None:
                assert math.isnan(got), (i, name)
                continue
            assert got == pytest.approx(card.score, abs=1e-9), (i, name)
            assert reading.totals[name][i] == pytest.approx(card.total, abs=1e-9), (i, name)
            rank = reading.ranks[name][i]
            tiers = policy.scorecards[name].tiers
            assert (tiers[rank].name if rank >= 0 else None) == card.tier, (i, name)
        for name, value in ref.metrics.items():
            got = reading.metrics[name][i]
            if value is None:
                assert math.isnan(got)
            else:
                assert got == pytest.approx(value, abs=1e-9), (i, name)
        for name in plan.stateless:
            assert bool(reading.measures[name][i]) == ref.measures[name].in_force, (i, name)
        checked += 1
    return checked


@pytest.mark.parametrize("name", ["kitchen", "sesame", "rongcheng", "reputation"])
def test_simulation_equals_the_reference_evaluator(name: str) -> None:
    policy = parse_declared(KITCHEN, "kitchen.yaml") if name == "kitchen" else example(name)
    scenario = scenario_from_dict(_dense(policy), policy, "dense")
    size = 24
    history: list[list[Event]] = [[] for _ in range(size)]
    seen: dict[str, Any] = {"checked": 0, "plan": None}
    plan = VectorPlan(policy, {t: [v.attributes for v in b.variants]
                               for t, b in scenario.events.items()})

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        for i in range(size):
            history[i].extend(events_of(plan, m, moment, counts, i))
        opted = {c: ~np.isnan(reading.scores[c]) for c, card in policy.scorecards.items()
                 if card.opt_in}
        seen["checked"] += _compare(policy, plan, reading, history, opted)

    report = simulate(policy, scenario, subjects=size, months=24, seed=7, probe_months=3,
                      observer=observe)
    assert seen["checked"] == size * 24
    assert all(path == "vectorised" for path in report["condition_paths"].values())
    assert sum(n or 0 for n in report["events"].values()) > 0


def test_caps_and_conditions_were_exercised() -> None:
    """The dense kitchen scenario really hits both caps and both outcomes of `when`."""
    policy = parse_declared(KITCHEN, "kitchen.yaml")
    scenario = scenario_from_dict(_dense(policy), policy, "dense")
    plan = VectorPlan(policy, {t: [v.attributes for v in b.variants]
                               for t, b in scenario.events.items()})
    history: list[list[Event]] = [[] for _ in range(24)]
    last: dict[str, datetime] = {}

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        for i in range(24):
            history[i].extend(events_of(plan, m, moment, counts, i))
        last["at"] = moment

    simulate(policy, scenario, subjects=24, months=30, seed=7, probe_months=1,
             observer=observe)
    notes: set[str] = set()
    skipped = 0
    for events in history:
        ref = evaluate(policy, events, last["at"])
        for c in ref.scorecards["card"].contributions:
            notes.update(c.notes)
        skipped += sum(1 for e in ref.events if e.why_not and "condition" in e.why_not)
    assert any("monthly cap" in n for n in notes)
    assert any("yearly cap" in n for n in notes)
    assert skipped > 0
    assert any(e.type == "perk" and e.counted for h in history
               for e in evaluate(policy, h, last["at"]).events)


def test_conditions_outside_the_vectorised_subset_are_refused_not_guessed() -> None:
    for source in ("size(x) > 1", "a / b > 1", "x in [1, 2]", "a % 2 == 0"):
        with pytest.raises(Unsupported):
            condition = vector_condition(source)
            condition({"a": np.array([1, 2]), "b": np.array([1, 1]), "x": np.array([1, 2])}, 2)
    condition = vector_condition("double(n) / 2.0 >= 1.0 ? !flag : s.tier == 'A'")
    out = condition({"n": np.array([1, 4, 2]), "flag": np.array([True, False, True]),
                     "s": {"tier": np.array(["A", "B", "A"])}}, 3)
    assert out.tolist() == [True, True, False]


def test_a_sum_whose_entries_all_left_is_exactly_zero() -> None:
    """Decayed entries that all expired leave the score exactly at the base (a tier bound).

    Adding and removing forward-decayed terms leaves rounding noise; without the reset to
    exactly 0 a score of 550 - 1e-14 would fall into the tier below 550.
    """
    from trustledger.impact.simulate import instant
    from trustledger.impact.vector import VectorState

    policy = parse_declared("""
policy: bound
title: base on a tier bound
effective_from: 2025-01-01
event_types:
  paid:
    label: paid
    domain: finance
    category: bill_payment
    gravity: minor
    points: 97.3
    decay: {half_life: P800D}
    expiry: {after: P3M}
    retention: P1Y
scorecards:
  card:
    label: card
    events: [paid]
    base: 550
    tiers:
      - {name: below, label: below}
      - {name: fair, label: fair, min: 550}
""", "bound.yaml")
    plan = VectorPlan(policy, {"paid": [{}]})
    start = instant(datetime(2025, 1, 15, tzinfo=policy.effective_from.tzinfo), 0)
    size = 1000
    state = VectorState(plan, size, start, {}, instant(start, 24))
    rng = np.random.default_rng(1)
    for m in range(6):
        state.apply(instant(start, m), {("paid", 0): rng.integers(0, 7, size)})
    assert (state.read(instant(start, 5)).scores["card"] > 550).any()
    later = state.read(instant(start, 12))
    assert (later.scores["card"] == 550.0).all()
    assert (later.ranks["card"] == 1).all()


@settings(max_examples=examples(25), deadline=None)
@given(data=st.data())
def test_generated_policies_simulate_as_the_reference_evaluates(data: st.DataObject) -> None:
    """Random policies of the language (tests/test_incremental_strategies.py), random rates:
    every subject, every month, equal to ``evaluate`` (tiers compared off their bounds)."""
    policy, specs = data.draw(policies())
    events: dict[str, Any] = {}
    for spec in specs:
        forms: dict[str, list[dict[str, Any]]] = {
            "lookup": [{"level": "low"}, {"level": "high"}],
            "per_started": [{"n": 3}, {"n": 40}], "formula": [{"n": 2}, {"n": 31}]}
        variants = forms.get(spec.form, [{}])
        mean = data.draw(st.sampled_from([0.2, 1.0, 3.0]))
        events[spec.name] = {"rate": {"distribution": "gamma", "mean": mean, "shape": 2},
                             "variants": [{"share": 1, "attributes": v} for v in variants]}
    scenario = scenario_from_dict({"events": events, "opt_in": {
        c: 0.5 for c, card in policy.scorecards.items() if card.opt_in}}, policy, "drawn")
    plan = VectorPlan(policy, {t: [v.attributes for v in b.variants]
                               for t, b in scenario.events.items()})
    size = 8
    history: list[list[Event]] = [[] for _ in range(size)]

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        for i in range(size):
            history[i].extend(events_of(plan, m, moment, counts, i))
            opt_ins = {c for c, card in policy.scorecards.items()
                       if card.opt_in and not math.isnan(reading.scores[c][i])}
            ref = evaluate(policy, history[i], moment, opt_ins=opt_ins)
            for name, card in ref.scorecards.items():
                got = float(reading.scores[name][i])
                assert close(None if math.isnan(got) else got, card.score), (m, i, name)
                if not near_threshold(policy, name, card.score, moment):
                    rank = int(reading.ranks[name][i])
                    tiers = policy.scorecards[name].tiers
                    assert (tiers[rank].name if rank >= 0 else None) == card.tier
            for name, value in ref.metrics.items():
                got = float(reading.metrics[name][i])
                assert close(None if math.isnan(got) else got, value), (m, i, name)
            for name in plan.stateless:
                assert bool(reading.measures[name][i]) == ref.measures[name].in_force

    simulate(policy, scenario, subjects=size, months=14, seed=data.draw(st.integers(0, 99)),
             probe_months=1, observer=observe)
