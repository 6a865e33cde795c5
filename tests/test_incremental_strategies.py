"""Hypothesis strategies shared by the incremental and batch property tests.

``policies()`` draws random policy documents within the language (every points form,
decay, expiry from either anchor with calendar months — or, with ``reported_dates``, from
a reported ``date`` attribute —, overhang, retention, ``when``
conditions, metrics with windows, signs and scopes, scorecards with caps, floors,
ceilings, opt-in and effective-dated tiers, stateless and held measures), compiled and
linted like any other. ``histories()`` draws one subject's events: ties in
``occurred_at``, late recording, out-of-order arrival, malformed attributes, unknown
types, corrections and withdrawals. The tests at the bottom check the strategies
themselves produce what the property tests rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import parse_declared
from trustledger.engine import RETRACTION, Event, evaluate
from trustledger.engine.history import at
from trustledger.engine.maintained import MaintainedEvaluation
from trustledger.policy import CompiledPolicy

START = datetime(2020, 1, 1, tzinfo=UTC)
SPAN_HOURS = 4 * 365 * 24
HALF_LIVES = ["PT12H", "P1D", "P30D", "P365D"]
EXPIRIES = ["P30D", "P6M", "P1Y", "P2Y6M", "P1M"]
OVERHANGS = ["P30D", "P6M", "P1Y"]
WINDOWS = ["P30D", "P1M", "P1Y", "P2W"]


@dataclass(frozen=True)
class TypeSpec:
    """How to draw attributes for one event type of a generated policy."""

    name: str
    form: str  # constant | lookup | formula | per_started
    dated: bool = False
    """The type carries a reported date ``final_on`` its expiry counts from."""


def _points(draw: st.DrawFn, form: str) -> tuple[str, str]:
    """(points YAML, attributes YAML) for a points form."""
    if form == "constant":
        value = draw(st.sampled_from([-20, -5, -1.5, 1, 2, 3, 7.25, 15]))
        return f"{value}", ""
    if form == "lookup":
        low, high = draw(st.sampled_from([(-5, -25), (2, 9), (-3, 4), (0.5, 1.25)]))
        return (f"{{lookup: level, values: {{low: {low}, high: {high}}}}}",
                "{level: {type: enum, values: [low, high]}}")
    if form == "per_started":
        each = draw(st.sampled_from([-10, -2.5, 3]))
        size = draw(st.sampled_from([1, 7.5, 30]))
        most = draw(st.sampled_from(["", ", max_periods: 4"]))
        return (f"{{each: {each}, per_started: {size}, of: n{most}}}",
                "{n: {type: integer, minimum: 0}}")
    sign = draw(st.sampled_from(["-", ""]))
    return (f'{{formula: "{sign}1.5 * double(attrs.n) + {sign}0.25", min: -40, max: 40}}',
            "{n: {type: integer, minimum: 0, maximum: 50}}")


@st.composite
def policies(draw: st.DrawFn, conditions: bool = True, overhangs: bool = True,
             measures: bool = True,
             reported_dates: bool = False) -> tuple[CompiledPolicy, list[TypeSpec]]:
    """A random policy within the language, and how to draw events of each of its types."""
    n_types = draw(st.integers(2, 5))
    specs: list[TypeSpec] = []
    type_lines: list[str] = []
    names = [f"t{i}" for i in range(n_types)]
    n_cards = draw(st.integers(1, 2))
    cards = [f"card{i}" for i in range(n_cards)]
    card_events = [sorted(draw(st.sets(st.sampled_from(names), min_size=1))) for _ in cards]
    opt_in = [draw(st.booleans()) for _ in cards]
    metric_lines: list[str] = []
    metric_names: list[str] = []
    for i in range(draw(st.integers(0, 3))):
        name = f"m{i}"
        metric_names.append(name)
        aggregate = draw(st.sampled_from(["count", "sum"]))
        parts = [f"aggregate: {aggregate}"]
        scope = draw(st.sampled_from([None, *range(n_cards)]))
        pool = card_events[scope] if scope is not None else names
        chosen = sorted(draw(st.sets(st.sampled_from(pool), min_size=1)))
        parts.append(f"types: [{', '.join(chosen)}]")
        if scope is not None:
            parts.append(f"scorecard: {cards[scope]}")
        if aggregate == "sum" and draw(st.booleans()):
            parts.append("value: original")
        window = draw(st.sampled_from([None, *WINDOWS]))
        if window:
            parts.append(f"window: {window}")
        sign = draw(st.sampled_from([None, "negative", "positive"]))
        if sign:
            parts.append(f"sign: {sign}")
        metric_lines.append(f"  {name}: {{{', '.join(parts)}}}")
    readable = [*cards, *metric_names]
    conditional = draw(st.sampled_from([None, *names])) if conditions else None
    for name in names:
        form = draw(st.sampled_from(["constant", "constant", "lookup", "per_started",
                                     "formula"]))
        points, attributes = _points(draw, form)
        dated = reported_dates and draw(st.booleans())
        specs.append(TypeSpec(name, form, dated))
        if dated:
            attributes = "{final_on: {type: date}" + (", " + attributes[1:] if attributes
                                                       else "}")
        lines = [f"  {name}:", "    domain: finance", "    category: credit_repayment",
                 "    gravity: minor", f"    points: {points}"]
        if attributes:
            lines.append(f"    attributes: {attributes}")
        half_life = draw(st.sampled_from([None, *HALF_LIVES]))
        if half_life:
            lines.append(f"    decay: {{half_life: {half_life}}}")
        if dated or draw(st.booleans()):
            expiry = [f"after: {draw(st.sampled_from(EXPIRIES))}"]
            if dated:
                expiry.append("from: final_on")
            elif draw(st.booleans()):
                expiry.append("from: recorded_at")
            if overhangs and draw(st.booleans()):
                expiry.append(f"overhang: {draw(st.sampled_from(OVERHANGS))}")
            lines.append(f"    expiry: {{{', '.join(expiry)}}}")
        lines.append(f"    retention: {draw(st.sampled_from(['P5Y', 'P10Y']))}")
        if name == conditional:
            # Bounds are never multiples of 0.25, which every sum of generated points is:
            # a value exactly on a bound is decided by the last bit of a float sum, which
            # depends on the order of summation (see docs/scale.md).
            target = draw(st.sampled_from(readable))
            if target in cards:
                bound = draw(st.sampled_from([0.1, 5.1, 20.1, 100.1]))
                op = draw(st.sampled_from([">=", "<"]))
                lines.append(f'    when: "{target}.score {op} {bound}"')
            else:
                lines.append(f'    when: "{target} <= 1.1"')
        type_lines += lines
    card_lines: list[str] = []
    for i, card in enumerate(cards):
        events = card_events[i]
        base = draw(st.sampled_from([0, 10, 100, 550]))
        lines = [f"  {card}:", f"    events: [{', '.join(events)}]", f"    base: {base}"]
        if opt_in[i]:
            lines.append("    opt_in: true")
        if draw(st.booleans()):
            lines.append(f"    floor: {base - draw(st.sampled_from([0, 10, 30]))}")
        if draw(st.booleans()):
            lines.append(f"    ceiling: {base + draw(st.sampled_from([5, 25, 80]))}")
        caps = []
        for _ in range(draw(st.integers(0, 2))):
            period = draw(st.sampled_from(["day", "week", "month", "year"]))
            most = draw(st.sampled_from([3, 10, 12.5, 40]))
            direction = draw(st.sampled_from(["gains", "losses"]))
            exempt = sorted(draw(st.sets(st.sampled_from(events), max_size=1)))
            caps.append(f"{{period: {period}, max: {most}, applies_to: {direction}, "
                        f"exempt: [{', '.join(exempt)}]}}")
        if caps:
            lines.append(f"    caps: [{', '.join(caps)}]")
        if draw(st.booleans()):
            step = draw(st.sampled_from([5, 20]))
            change = draw(st.sampled_from(["", f", changes: [{{from: 2022-06-01, min: "
                                               f"{base + step + 3}}}]"]))
            lines.append(f"    tiers: [{{name: low}}, {{name: mid, min: {base}}}, "
                         f"{{name: high, min: {base + step}{change}}}]")
        card_lines += lines
    measure_lines: list[str] = []
    if measures:
        for i in range(draw(st.integers(0, 2))):
            target = draw(st.sampled_from(readable))
            condition = f"{target}.score >= {base}.1" if target in cards \
                else f"{target} >= 1.1"
            if i == 1 and draw(st.booleans()):
                condition += " && !x0"
            hold = draw(st.sampled_from(["", "    hold: P30D"]))
            # A privilege held with no events restricts like a restriction (the linter
            # weighs it by its severity); minor weighs every single event fairly.
            measure_lines += [f"  x{i}:", "    kind: privilege", "    domain: finance",
                              "    severity: minor",
                              f'    condition: "{condition}"'] + ([hold] if hold else [])
    text = "\n".join([
        "policy: generated", "title: generated", "effective_from: 2020-01-01",
        "event_types:", *type_lines,
        *(["metrics:", *metric_lines] if metric_lines else []),
        "scorecards:", *card_lines,
        *(["measures:", *measure_lines] if measure_lines else []),
    ]) + "\n"
    return parse_declared(text, "generated.yaml"), specs


def _attributes(draw: st.DrawFn, spec: TypeSpec, occurred: datetime,
                recorded: datetime) -> dict[str, Any]:
    if draw(st.integers(0, 19)) == 0:  # malformed: does not count, says why
        return {"bogus": 1}
    out: dict[str, Any] = {}
    if spec.form == "lookup":
        out = {"level": draw(st.sampled_from(["low", "high"]))}
    elif spec.form in ("per_started", "formula"):
        out = {"n": draw(st.integers(0, 50))}
    if spec.dated:
        # Final between the event and its recording (often the recording itself, as a
        # backfill's reported date is not); now and then after it, which does not fit.
        span = max(0, (recorded - occurred) // timedelta(hours=1))
        final = occurred + timedelta(hours=draw(st.integers(0, span)))
        if draw(st.integers(0, 14)) == 0:
            final = recorded + timedelta(days=1)
        out["final_on"] = final.isoformat()
    return out


@st.composite
def histories(draw: st.DrawFn, specs: list[TypeSpec], subject: str = "alice",
              max_events: int = 18) -> list[Event]:
    """One subject's events, in arrival order (not ``occurred_at`` order)."""
    n = draw(st.integers(0, max_events))
    events: list[Event] = []
    for i in range(n):
        spec = draw(st.sampled_from(specs))
        kind = spec.name if draw(st.integers(0, 24)) else "unknown_type"
        # whole hours, so ties in occurred_at are frequent and the tie-break is exercised
        occurred = START + timedelta(hours=draw(st.integers(0, SPAN_HOURS // 6)) * 6)
        delay = draw(st.sampled_from([0, 0, 0, 1, 24 * 40, 24 * 200, 24 * 800]))
        recorded = occurred + timedelta(hours=delay)
        source = draw(st.sampled_from(["s1", "s2"]))
        events.append(Event(source, f"{subject}-e{i}", subject, kind, occurred, recorded,
                             _attributes(draw, spec, occurred, recorded), seq=i + 1))
    for j in range(draw(st.integers(0, 2)) if events else 0):
        target = draw(st.sampled_from(events))
        when = target.recorded_at + timedelta(days=draw(st.integers(0, 300)))
        if draw(st.booleans()):
            events.append(Event(target.source, f"{subject}-w{j}", subject, RETRACTION, when,
                                when, {}, target.source_event_id))
        else:
            spec = draw(st.sampled_from(specs))
            occurred = target.occurred_at + timedelta(hours=draw(st.integers(-48, 48)))
            events.append(Event(target.source, f"{subject}-c{j}", subject, spec.name, occurred,
                                when, _attributes(draw, spec, occurred, when),
                                target.source_event_id))
    return draw(st.permutations(events))


def latest(events: list[Event], floor: datetime = START) -> datetime:
    """The latest ``occurred_at``, at least ``floor``."""
    return max([floor, *(e.occurred_at for e in events)])


def first_served(state: MaintainedEvaluation, floor: datetime) -> datetime:
    """The first moment ``state`` (built at ``floor``) serves: its horizon, if later."""
    return max(floor, at(state.horizon)) if state.horizon > floor.timestamp() else floor


def maintained_case(data: st.DataObject) -> tuple[
        CompiledPolicy, list[Event], set[str], MaintainedEvaluation, datetime]:
    """A random policy, history and opt-ins, a maintained evaluation built at the latest
    event, and the first moment it serves."""
    policy, specs = data.draw(policies(reported_dates=True))
    events = data.draw(histories(specs))
    opt_ins = set(data.draw(st.sets(st.sampled_from(sorted(policy.scorecards)))))
    floor = latest(events, policy.effective_from)
    state = MaintainedEvaluation(policy, events, floor, opt_ins)
    return policy, events, opt_ins, state, first_served(state, floor)


def close(a: float | None, b: float | None, tol: float = 1e-9) -> bool:
    """Equal within ``tol`` (relative for large values), or both ``None``."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def near_threshold(policy: CompiledPolicy, card: str, score: float | None, at: datetime,
                   tol: float = 1e-9) -> bool:
    """Whether ``score`` is within ``tol`` of one of the card's tier bounds at ``at``."""
    if score is None:
        return False
    compiled = policy.scorecards[card]
    bounds = [t.min_at(at.timestamp()) for t in compiled.tiers]
    return any(b is not None and abs(score - b) <= tol * max(1.0, abs(b)) for b in bounds)


@settings(max_examples=examples(30), deadline=None)
@given(data=st.data())
def test_generated_policies_compile_and_evaluate(data: st.DataObject) -> None:
    policy, specs = data.draw(policies(reported_dates=True))
    events = data.draw(histories(specs))
    result = evaluate(policy, events, latest(events) + timedelta(days=1),
                      opt_ins=set(policy.scorecards))
    assert set(result.scorecards) == set(policy.scorecards)
