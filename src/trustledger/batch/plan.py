"""A batch plan: a compiled policy at one ``valid_at``, turned into constants for the query.

Everything calendar-aware is decided here, in Python, with the engine's own duration
arithmetic (:mod:`trustledger.policy.durations`), so the columnar query only compares
integers. "Does an event anchored at ``a`` still count at ``v``?" is ``D.after(a) > v``;
``D.after`` never decreases as ``a`` grows, so the answer is ``a >= T`` for one threshold
``T`` (in microseconds), found here by bisection. The same holds for retention, metric
windows and overhangs. Decay is ``exp(-λ·(v - o))`` with ``λ = ln 2 / half-life``.

The plan also says which policy features the vectorised query computes exactly and
which subjects must be evaluated one by one with the reference engine (see
``docs/scale.md``): subjects with an event of a type that has a ``when`` condition the
query cannot decide (:class:`WhenPlan` says which it can), with an entry that an overhang
may keep counting, with events on a scorecard whose caps cannot be computed as nested
running sums; and, when measures are asked for, the subjects for whom a measure with a
holding time or a prerequisite is not blocked by a missing opt-in (:meth:`Plan.guards`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trustledger.engine.history import run_when
from trustledger.engine.incremental import stateless_measures
from trustledger.policy.compiled import CompiledCap, CompiledEventType, CompiledPolicy
from trustledger.policy.durations import Duration
from trustledger.policy.models import Anchor, AttributeType, CapDirection, CapPeriod

LN2 = math.log(2.0)
NEVER = -(2**62)
"""A threshold every timestamp passes (microseconds)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Period nesting: a day lies in one week, month and year; a month in one year. An ISO week
# can straddle a month or a year, so it nests only days.
_NESTS = {
    (CapPeriod.DAY, CapPeriod.DAY), (CapPeriod.DAY, CapPeriod.WEEK),
    (CapPeriod.DAY, CapPeriod.MONTH), (CapPeriod.DAY, CapPeriod.YEAR),
    (CapPeriod.WEEK, CapPeriod.WEEK), (CapPeriod.MONTH, CapPeriod.MONTH),
    (CapPeriod.MONTH, CapPeriod.YEAR), (CapPeriod.YEAR, CapPeriod.YEAR),
}
_SIZE = {CapPeriod.DAY: 0, CapPeriod.WEEK: 1, CapPeriod.MONTH: 2, CapPeriod.YEAR: 3}


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (moment - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """The UTC datetime ``us`` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def first_counting(shift: Callable[[datetime], datetime], v_us: int, longest: int) -> int:
    """The least anchor ``a`` (µs) with ``shift(a) > v``; ``shift`` is non-decreasing.

    ``longest`` bounds ``shift(a) - a`` in microseconds.
    """
    lo, hi = v_us - longest - 1, v_us  # shift(lo) <= v < shift(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if to_us(shift(from_us(mid))) > v_us:
            hi = mid
        else:
            lo = mid
    return hi


def _longest(duration: Duration) -> int:
    return ((duration.months * 31 + duration.days + 1) * 86400 + duration.seconds) * 1_000_000


def duration_threshold(duration: Duration, v_us: int) -> int:
    """The least anchor (µs) with ``duration.after(anchor) > v``."""
    return first_counting(duration.after, v_us, _longest(duration))


def shortest(duration: Duration) -> int:
    """A lower bound (µs) of ``duration.after(a) - a`` over every anchor ``a``.

    A calendar month is at least 28 days (the day of the month is clamped to its end).
    """
    return ((duration.months * 28 + duration.days) * 86400 + duration.seconds) * 1_000_000


_MOST_FIRST = 1_000
"""How far :func:`when_plan` looks for the first count a ``when`` refuses."""


@dataclass(frozen=True, slots=True)
class WhenPlan:
    """A ``when`` condition the query decides: "only the first ``first`` count".

    The condition reads one count metric, unscoped (or scoped to a scorecard that is not
    opt-in), without sign filter, whose only type is the conditional type itself: it is
    then a function of how many earlier entries of that type still count when the entry
    occurs. While none of them has stopped counting, that is its rank among the
    subject's entries of the type, so the first ``first`` entries count and the others
    do not (``first``: the least ``n`` for which the condition is false). A subject with
    more than ``first`` such entries, the latest at least ``life_us`` after the earliest
    anchor (a lower bound of how long an entry stays counted: retention, expiry, the
    metric's window), takes the per-subject path.
    """

    type: str
    first: int
    life_us: int
    by_recorded: bool


def when_plan(policy: CompiledPolicy, et: CompiledEventType) -> WhenPlan | None:
    """The vectorised form of ``et``'s ``when``, or ``None`` when the query cannot decide it."""
    when = et.when
    if when is None or len(when.names) != 1 or et.expiry_attribute is not None or any(
            a.type is AttributeType.DATE for a in et.attributes):
        return None
    (name,) = when.names
    metric = policy.metrics.get(name)
    if metric is None or metric.aggregate.value != "count" or metric.sign is not None \
            or metric.types != frozenset({et.name}):
        return None
    if metric.scorecard is not None and policy.scorecards[metric.scorecard].opt_in:
        return None  # without the subject's consent the condition is blocked
    first = next((n for n in range(_MOST_FIRST + 1)
                  if run_when(et, {name: n}) is not True), None)  # an error counts nothing
    if first is None:
        return None
    spans = [shortest(et.retention)]
    if et.expiry is not None:
        spans.append(shortest(et.expiry))
    if metric.window is not None:
        spans.append(shortest(metric.window))
    return WhenPlan(et.name, first, min(spans), et.expiry_from is Anchor.RECORDED_AT)


@dataclass(frozen=True, slots=True)
class TypePlan:
    """One event type's constants at ``valid_at``.

    ``constant``: the points when they depend on no attribute and the type declares
    none (``None``: computed per distinct attributes). The event counts at ``v`` when
    ``occurred_us >= occurred_from`` and ``recorded_us >= recorded_from``. With an
    overhang, an entry whose expiry has passed may count on while its anchor is at least
    ``overhang_from`` (only the per-subject pass decides that).
    """

    name: str
    constant: float | None
    lam: float
    occurred_from: int
    recorded_from: int
    expiry_from: int
    expiry_anchor: Anchor
    overhang_from: int | None
    conditional: bool
    domain: str
    when: WhenPlan | None = None


@dataclass(frozen=True, slots=True)
class CapStage:
    """One cap, as one running sum: per subject and period, in ``occurred_at`` order."""

    index: int
    period: CapPeriod
    max: float
    gains: bool
    types: frozenset[str]


@dataclass(frozen=True, slots=True)
class CardPlan:
    """A scorecard's constants: base, bounds, tiers at ``v``, caps as nested stages."""

    name: str
    base: float
    floor: float | None
    ceiling: float | None
    opt_in: bool
    types: frozenset[str]
    tiers: tuple[tuple[str, float | None], ...]  # highest first
    stages: tuple[CapStage, ...]  # innermost first, per direction
    sequential: bool


@dataclass(frozen=True, slots=True)
class MetricPlan:
    """A metric's constants: which types, since when an event is inside its window."""

    name: str
    count: bool
    decays: bool
    types: frozenset[str]
    window_from: int
    scorecard: str | None
    sign: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """The policy at ``valid_at`` (and ``known_at``) as constants for the columnar query."""

    policy: CompiledPolicy
    valid_at: datetime
    known_at: datetime | None
    v_us: int
    known_us: int | None
    types: tuple[TypePlan, ...]
    cards: tuple[CardPlan, ...]
    metrics: tuple[MetricPlan, ...]
    stateless: frozenset[str]

    @property
    def conditional_types(self) -> frozenset[str]:
        """Types whose subjects take the per-subject path.

        A ``when`` the query cannot decide, a reported date (a ``date`` attribute,
        perhaps the expiry's anchor), or a scorecard a measure can set back.
        """
        return frozenset(t.name for t in self.types if t.conditional and t.when is None)

    @property
    def whens(self) -> tuple[WhenPlan, ...]:
        """The ``when`` conditions the query decides (see :class:`WhenPlan`)."""
        return tuple(t.when for t in self.types if t.when is not None)

    @property
    def sequential_types(self) -> frozenset[str]:
        """Types on a scorecard whose caps are not nested: per-subject path."""
        return frozenset().union(*(c.types for c in self.cards if c.sequential))

    @property
    def computed_types(self) -> frozenset[str]:
        """Types whose points depend on attributes (computed per distinct attributes)."""
        return frozenset(t.name for t in self.types if t.constant is None)

    def stateful_measures(self) -> tuple[str, ...]:
        """Measures with a history (hold, prerequisite): per-subject path when asked for."""
        return tuple(n for n in self.policy.measures if n not in self.stateless)

    def consent_bound_types(self) -> frozenset[str]:
        """Attribute-dependent types whose points and fit only opt-in outputs read.

        Every scorecard with the type is opt-in, every metric selecting it is scoped to
        an opt-in scorecard, and it has no ``when``; and no type of the policy has an
        overhang (an entry of any type can witness one). Without the subject's opt-in
        those outputs are not produced, so the type's points need not be computed.
        """
        policy = self.policy
        if any(t.overhang_from is not None for t in self.types):
            return frozenset()
        out = set()
        for name in self.computed_types:
            cards = [c for c in self.cards if name in c.types]
            metrics = [m for m in self.metrics if name in m.types]
            if policy.event_types[name].when is None and all(c.opt_in for c in cards) and all(
                    m.scorecard is not None and policy.scorecards[m.scorecard].opt_in
                    for m in metrics):
                out.add(name)
        return frozenset(out)

    def guards(self) -> tuple[frozenset[str], ...] | None:
        """Per stateful measure, the opt-in scorecards its condition reads.

        Without consent to one of them, the measure is blocked at every instant, so it
        is never in force and the subject needs no replay of its history for it. ``None``
        when some stateful measure reads no opt-in scorecard: every subject needs it.
        """
        policy = self.policy
        out = []
        for name in self.stateful_measures():
            measure = policy.measures[name]
            cards = {c for c in measure.scorecards if policy.scorecards[c].opt_in}
            for metric in measure.metrics:
                scope = policy.metrics[metric].scorecard
                if scope is not None and policy.scorecards[scope].opt_in:
                    cards.add(scope)
            if not cards:
                return None
            out.append(frozenset(cards))
        return tuple(out)

    @property
    def sets_back(self) -> bool:
        """Whether a measure can set a score back: scores then need the measures' replay."""
        return bool(self.policy.set_back_scorecards)

    def replays(self, consented: frozenset[str]) -> bool:
        """Whether a subject with these opt-ins needs its measures' history replayed."""
        guards = self.guards()
        return guards is None or any(g <= consented for g in guards)


def make_plan(policy: CompiledPolicy, valid_at: datetime,
              known_at: datetime | None = None) -> Plan:
    """Compile ``policy`` at ``valid_at`` into a :class:`Plan`.

    A policy with statistical scorecards is refused (:class:`InputError`): their
    decision-time attributes are not in the ledger.
    """
    policy.require_rule_based("batch rescoring")
    v_us = to_us(valid_at)
    types = []
    replay = policy.replay_types
    for name, et in policy.event_types.items():
        rule = policy.model.event_types[name].points
        constant = float(rule) if isinstance(rule, int | float) and not et.attributes else None
        occurred_from = duration_threshold(et.retention, v_us)
        recorded_from = NEVER
        expiry_from = NEVER
        overhang_from = None
        if et.expiry is not None:
            expiry = et.expiry
            expiry_from = duration_threshold(expiry, v_us)
            if et.expiry_from is Anchor.OCCURRED_AT:
                occurred_from = max(occurred_from, expiry_from)
            else:
                recorded_from = expiry_from
            if et.overhang is not None:
                overhang = et.overhang
                overhang_from = first_counting(_then(expiry, overhang), v_us,
                                               _longest(expiry) + _longest(overhang))
        lam = LN2 / et.half_life if et.half_life is not None else 0.0
        types.append(TypePlan(name, constant, lam, occurred_from, recorded_from, expiry_from,
                              et.expiry_from, overhang_from,
                              _one_by_one(et) or name in replay, et.domain,
                              None if name in replay else when_plan(policy, et)))
    cards = []
    v = valid_at.timestamp()
    for name, card in policy.scorecards.items():
        tiers = tuple((t.name, t.min_at(v)) for t in reversed(card.tiers))
        stages, sequential = _stages(card.caps, card.events)
        cards.append(CardPlan(name, card.base, card.floor, card.ceiling, card.opt_in,
                              card.events, tiers, stages, sequential))
    metrics = []
    for name, m in policy.metrics.items():
        window_from = duration_threshold(m.window, v_us) if m.window is not None else NEVER
        metrics.append(MetricPlan(name, m.aggregate.value == "count",
                                  m.value.value == "current", m.types, window_from,
                                  m.scorecard, m.sign.value if m.sign else None))
    return Plan(policy, valid_at, known_at, v_us,
                to_us(known_at) if known_at is not None else None, tuple(types), tuple(cards),
                tuple(metrics), stateless_measures(policy))


def _one_by_one(et: CompiledEventType) -> bool:
    """Whether an entry of ``et`` needs the per-subject path whatever its history.

    A ``when`` (unless :func:`when_plan` vectorises it), an expiry counted from a reported
    date, or any ``date`` attribute (whether the event fits depends on its own times:
    :meth:`~trustledger.policy.compiled.CompiledEventType.check_dates`). The policy's
    :attr:`~trustledger.policy.compiled.CompiledPolicy.replay_types` (those, and the types
    on a scorecard a measure can set back) are added by :func:`make_plan`.
    """
    return et.when is not None or et.expiry_attribute is not None or any(
        a.type is AttributeType.DATE for a in et.attributes)


def _then(first: Duration, second: Duration) -> Callable[[datetime], datetime]:
    return lambda moment: second.after(first.after(moment))


def _stages(caps: tuple[CompiledCap, ...],
            events: frozenset[str]) -> tuple[tuple[CapStage, ...], bool]:
    """Caps as running sums, innermost first; ``sequential`` when they do not nest.

    Caps on one direction compose as successive running sums when their periods nest
    and each outer cap applies to every type the inner one does: the outer allowance,
    once used up, stops everything the inner one would still let through.
    """
    stages: list[CapStage] = []
    for gains in (True, False):
        mine = [(i, c) for i, c in enumerate(caps)
                if (c.applies_to is CapDirection.GAINS) == gains]
        mine.sort(key=lambda ic: (_SIZE[ic[1].period], -len(ic[1].exempt)))
        for (_, inner), (_, outer) in itertools.pairwise(mine):
            if (inner.period, outer.period) not in _NESTS or not outer.exempt <= inner.exempt:
                return (), True
        stages += [CapStage(i, c.period, c.max, gains, events - c.exempt) for i, c in mine]
    return tuple(stages), False
