"""A subject's history as the policy sees it: which events count, with what points, until when.

This is the first half of the reference evaluator (:mod:`trustledger.engine.evaluate`).
It resolves knowledge (``known_at``, supersedes, retractions), computes each
event's points, its counting interval ``[occurred_at, end)`` and its capped
points per scorecard, and then answers "what is this score / metric at time t"
in closed form:

    score(t)  = clamp(base + Σ capped_i · 2^(-(t - o_i)/h_i)),  over i with o_i ≤ t < end_i
    metric(t) = Σ (1 | points_i · decay_i(t)),  over selected i with o_i ≤ t < min(end_i, o_i + W)

Only two things are sequential, and both follow the order of ``occurred_at``:
caps (a calendar period's allowance is used up in order) and ``when``
conditions (evaluated on the state just before the event).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trustledger.engine.events import RETRACTION, Event
from trustledger.errors import InputError, PolicyError
from trustledger.policy.compiled import (
    CompiledEventType,
    CompiledMetric,
    CompiledPolicy,
    CompiledScorecard,
    PointsFault,
)
from trustledger.policy.durations import Duration
from trustledger.policy.models import (
    Aggregate,
    CapDirection,
    CapPeriod,
    MetricValue,
    Sign,
)

LN2 = math.log(2.0)
_ADJECTIVE = {CapPeriod.DAY: "daily", CapPeriod.WEEK: "weekly", CapPeriod.MONTH: "monthly",
              CapPeriod.YEAR: "yearly"}
INF = math.inf
ERROR_PREFIX = "error: "
"""How an event's ``why_not`` begins when an error, not the policy's rules, left it out."""


def ts(moment: datetime) -> float:
    """POSIX seconds of an aware datetime."""
    return moment.timestamp()


_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
FIRST_TS = _FIRST.timestamp()
"""POSIX seconds of the earliest representable moment (0001-01-01T00:00:00Z)."""
LAST_TS = _LAST.timestamp()
"""POSIX seconds of the latest representable moment (9999-12-31T23:59:59.999999Z)."""


def at(seconds: float) -> datetime:
    """The UTC datetime of POSIX seconds, clamped to the representable years 1-9999.

    A moment beyond them (an end that never comes, ``INF``) reads as the last one.
    """
    if seconds >= LAST_TS:
        return _LAST
    if seconds <= FIRST_TS:
        return _FIRST
    return datetime.fromtimestamp(seconds, UTC)


def after(duration: Duration, moment: datetime) -> float:
    """POSIX seconds of ``duration`` after ``moment``; ``INF`` past the year 9999.

    An event near the end of the calendar keeps counting: its end is not representable,
    so it never comes (evaluation is total over every representable date).
    """
    try:
        return ts(duration.after(moment))
    except (OverflowError, ValueError):
        return INF


def before(duration: Duration, moment: datetime) -> float:
    """POSIX seconds of ``duration`` before ``moment``; ``-INF`` before the year 1."""
    try:
        return ts(duration.before(moment))
    except (OverflowError, ValueError):
        return -INF


def day(moment: datetime | float) -> str:
    """``YYYY-MM-DD`` of a moment, for reasons."""
    value = at(moment) if isinstance(moment, float) else moment.astimezone(UTC)
    return value.date().isoformat()


@dataclass(slots=True, eq=False)
class Entry:
    """One event the evaluation sees, with everything derived from it."""

    event: Event
    type: CompiledEventType | None
    o: float
    recorded: float
    attrs: dict[str, Any] = field(default_factory=dict)
    known: float = -INF
    """When the fact became known (:func:`known_instant`); computed when not given."""
    base_points: float = 0.0
    points: float = 0.0
    counted: bool = False
    why_not: str | None = None
    end: float = INF
    end_reason: str = ""
    expiry: float | None = None
    overhang_by: Entry | None = None
    capped: dict[str, float] = field(default_factory=dict)
    cap_notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.known == -INF:
            self.known = known_instant(self.type, self.event)

    @property
    def label(self) -> str:
        """The event type's label, or the raw type name when the policy does not know it."""
        return self.type.label if self.type is not None else self.event.type

    @property
    def half_life(self) -> float | None:
        """Half-life in seconds, ``None`` without decay."""
        return self.type.half_life if self.type is not None else None

    def decay(self, t: float) -> float:
        """The decay factor at POSIX time ``t``: ``2^(-age/half_life)``, 1 without decay."""
        hl = self.half_life
        if hl is None:
            return 1.0
        return math.exp(-LN2 * (t - self.o) / hl)

    def live_at(self, t: float) -> bool:
        """Counts at ``t``: ``o ≤ t < end``."""
        return self.counted and self.o <= t < self.end


def known_instant(etype: CompiledEventType | None, event: Event) -> float:
    """POSIX seconds of when the fact an event reports became known.

    :meth:`CompiledEventType.known_instant`: the reported date the type's expiry counts
    from, else ``recorded_at``. An event whose reported date cannot be read does not fit
    its type and never counts, so its ``recorded_at`` is as good as any.
    """
    if etype is None:
        return ts(event.recorded_at)
    try:
        return ts(etype.known_instant(event.recorded_at, event.attributes))
    except ValueError:
        return ts(event.recorded_at)


def order_key(event: Event) -> tuple[datetime, datetime, str, str]:
    """The deterministic order of events: occurred, recorded, source, source's id."""
    return (event.occurred_at, event.recorded_at, event.source, event.source_event_id)


def check_events(events: Iterable[Event]) -> tuple[list[Event], str | None]:
    """All events as a list, after checking they are about one subject with distinct keys."""
    out = list(events)
    subjects = {e.subject for e in out}
    if len(subjects) > 1:
        raise InputError(
            f"evaluate takes one subject's events; got {len(subjects)} subjects "
            f"({', '.join(sorted(subjects)[:3])}...)")
    seen: set[tuple[str, str]] = set()
    for e in out:
        if e.key in seen:
            raise InputError(f"event {e.source}:{e.source_event_id} is given twice")
        seen.add(e.key)
        for name, value in (("occurred_at", e.occurred_at), ("recorded_at", e.recorded_at)):
            if value.tzinfo is None:
                raise InputError(f"event {e.source}:{e.source_event_id}: {name} has no time zone")
    return out, (subjects.pop() if subjects else None)


@dataclass(slots=True)
class SetBack:
    """Points set back on a scorecard at ``at`` by a measure whose prerequisite was not given.

    ``points`` is the adjustment (``to`` minus the total then); it counts from ``at``
    until ``end``, when the last entry it reduced stops counting.
    """

    card: str
    at: float
    points: float
    end: float
    to: float
    measure: str
    prerequisite: str

    def live_at(self, t: float) -> bool:
        """Counts at ``t``: ``at ≤ t < end``."""
        return self.at <= t < self.end


@dataclass(slots=True)
class History:
    """The entries of one evaluation, in order, with the lookups the engine needs."""

    policy: CompiledPolicy
    entries: list[Entry]
    consented: frozenset[str]
    by_scorecard: dict[str, list[Entry]]
    by_metric: dict[str, list[tuple[Entry, float]]]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    """Attributes supplied at decision time (statistical scorecards' features)."""
    set_backs: list[SetBack] = field(default_factory=list)
    """Points set back by measures (filled by the measures' replay, in time order)."""
    _models: dict[tuple[str, tuple[float | int, ...]], float] = field(default_factory=dict)

    def score(self, card: CompiledScorecard, t: float) -> float:
        """The unclamped total ``base + Σ capped · decay`` of a scorecard at ``t``.

        A statistical scorecard's score is its model's points for its metrics at ``t``
        and the decision-time attributes.
        """
        if card.model is not None:
            return self._statistical_points(card, t)
        total = card.base
        name = card.name
        for entry in self.by_scorecard[name]:
            if entry.live_at(t):
                total += entry.capped[name] * entry.decay(t)
        for item in self.set_backs:
            if item.card == name and item.live_at(t):
                total += item.points
        return total

    def model_metrics(self, card: CompiledScorecard, t: float) -> dict[str, float | int]:
        """The values at ``t`` of the metrics a statistical scorecard's model reads."""
        assert card.model is not None
        return {name: self.metric(self.policy.metrics[name], t) for name in card.model.metrics}

    def _statistical_points(self, card: CompiledScorecard, t: float) -> float:
        assert card.model is not None
        metrics = self.model_metrics(card, t)
        # Measures read the score at many instants; the metrics take few distinct values.
        key = (card.name, tuple(metrics.values()))
        found = self._models.get(key)
        if found is None:
            found = self._models[key] = card.model.points(metrics, self.attributes)
        return found

    def metric(self, metric: CompiledMetric, t: float) -> float | int:
        """A metric's value at ``t``: count, or sum of (decayed or original) points."""
        count = 0
        total = 0.0
        card = metric.scorecard
        for entry, window_end in self.by_metric[metric.name]:
            if not entry.live_at(t) or t >= window_end:
                continue
            points = entry.capped[card] if card is not None else entry.points
            if metric.sign is Sign.NEGATIVE and points >= 0:
                continue
            if metric.sign is Sign.POSITIVE and points <= 0:
                continue
            count += 1
            if metric.aggregate is Aggregate.SUM:
                total += points if metric.value is MetricValue.ORIGINAL else \
                    points * entry.decay(t)
        return count if metric.aggregate is Aggregate.COUNT else total

    def metric_members(self, metric: CompiledMetric, t: float) -> list[tuple[Entry, float]]:
        """The entries a metric selects at ``t``, each with when it leaves the metric."""
        out = []
        card = metric.scorecard
        for entry, window_end in self.by_metric[metric.name]:
            if not entry.live_at(t) or t >= window_end:
                continue
            points = entry.capped[card] if card is not None else entry.points
            if metric.sign is Sign.NEGATIVE and points >= 0:
                continue
            if metric.sign is Sign.POSITIVE and points <= 0:
                continue
            out.append((entry, min(entry.end, window_end)))
        return out

    def available(self, name: str) -> bool:
        """Whether a scorecard (or a metric scoped to one) may be read: opt-in needs consent."""
        policy = self.policy
        if name in policy.scorecards:
            card = policy.scorecards[name]
            if card.model is not None and not all(self.available(m) for m in card.model.metrics):
                return False
            return not card.opt_in or name in self.consented
        if name in policy.metrics:
            scope = policy.metrics[name].scorecard
            return scope is None or self.available(scope)
        return True

    def context(self, names: Iterable[str], t: float,
                full: Collection[str] | None = None) -> dict[str, Any]:
        """The CEL variables for metrics and scorecards among ``names`` at ``t``.

        A scorecard is ``{score, tier, rank}``; only ``{score}`` when ``full`` is given
        and does not name it (see :attr:`Expression.beyond_score`).
        """
        policy = self.policy
        out: dict[str, Any] = {}
        for name in names:
            if name in policy.metrics and self.available(name):
                out[name] = self.metric(policy.metrics[name], t)
            elif name in policy.scorecards and self.available(name):
                card = policy.scorecards[name]
                out[name] = scorecard_value(card, card.clamp(self.score(card, t)), t,
                                            full is None or name in full)
        return out


def scorecard_value(card: CompiledScorecard, score: float, t: float,
                    full: bool) -> dict[str, Any]:
    """A scorecard as a CEL map: ``{score, tier, rank}`` (or ``{score}`` alone)."""
    if not full:
        return {"score": score}
    tier = card.tier_at(score, t)
    return {"score": score, "tier": tier[1].name if tier else "",
            "rank": tier[0] if tier else -1}


def build_history(policy: CompiledPolicy, events: list[Event], valid_at: datetime,
                  known_at: datetime | None, consented: frozenset[str],
                  attributes: Mapping[str, Any] | None = None,
                  set_backs: Iterable[SetBack] = ()) -> History:
    """Resolve knowledge and supersession, compute points, intervals, caps and ``when``.

    ``set_backs`` (from an earlier replay of the measures) are seen by ``when``
    conditions that read a scorecard (see :func:`trustledger.engine.evaluate`).
    """
    known = [e for e in events if known_at is None or e.recorded_at <= known_at]
    superseded: dict[tuple[str, str], Event] = {}
    for e in sorted(known, key=order_key):
        if e.supersedes is not None:
            superseded[(e.source, e.supersedes)] = e
    entries = []
    for e in sorted(known, key=order_key):
        if e.occurred_at > valid_at:
            continue
        entry = Entry(e, policy.event_types.get(e.type), ts(e.occurred_at), ts(e.recorded_at))
        entries.append(entry)
        by = superseded.get(e.key)
        if by is not None:
            verb = "withdrawn" if by.type == RETRACTION else "corrected"
            entry.why_not = f"{verb} by {by.source}:{by.source_event_id} " \
                            f"(recorded {day(by.recorded_at)})"
        elif e.type == RETRACTION:
            entry.why_not = f"withdraws {e.source}:{e.supersedes}"
        elif entry.type is None:
            entry.why_not = f"event type {e.type} is not in policy {policy.name}"
        else:
            fitted = entry.type.fit(e.attributes, occurred_at=e.occurred_at,
                                    recorded_at=e.recorded_at)
            if isinstance(fitted, PointsFault):
                entry.why_not = f"{ERROR_PREFIX}{fitted}"
            elif isinstance(fitted, str):
                entry.why_not = f"attributes do not fit the policy: {fitted}"
            else:
                entry.attrs, entry.base_points = fitted
                entry.points = entry.base_points
                entry.counted = True
    live = [x for x in entries if x.counted]
    for entry in live:
        set_counting_interval(entry, live)
    history = History(policy, entries, consented, {}, {}, dict(attributes or {}),
                      list(set_backs))
    for name, card in policy.scorecards.items():
        history.by_scorecard[name] = [x for x in live if x.event.type in card.events]
    for name, metric in policy.metrics.items():
        history.by_metric[name] = [
            (x, after(metric.window, x.event.occurred_at) if metric.window else INF)
            for x in live if x.event.type in metric.types
        ]
    _fold(history, live)
    return history


def set_counting_interval(entry: Entry, live: list[Entry]) -> None:
    """Set when a counted entry stops counting: ``entry.end`` and ``entry.end_reason``.

    The end is the earliest of the type's retention and its expiry (anchored at
    ``occurred_at`` or ``recorded_at`` as the type says); an expiry is pushed out to
    the overhang when another of ``live`` (the counted entries, ``entry`` among them)
    of the same domain and sign witnesses it (``entry.overhang_by``). ``entry.expiry``
    is set when the type expires. ``entry`` must be counted (its type known).
    """
    etype = entry.type
    assert etype is not None
    end, expiry = counting_bounds(etype, entry.event)
    reason = "retention"
    if expiry is not None:
        entry.expiry = expiry
        stop, why = expiry, "expiry"
        if etype.overhang is not None:
            by = _overhang_witness(entry, expiry, live)
            if by is not None:
                entry.overhang_by = by
                stop, why = after(etype.overhang, at(expiry)), "overhang"
        if stop < end:
            end, reason = stop, why
    entry.end, entry.end_reason = end, reason


def counting_bounds(etype: CompiledEventType, event: Event) -> tuple[float, float | None]:
    """An event's retention end and its expiry (``None`` when its type does not expire).

    The expiry is anchored at ``occurred_at``, ``recorded_at`` or a reported date as the
    type says (:meth:`CompiledEventType.expiry_anchor`; the event must fit its type); an
    overhang, when witnessed, runs from it (see :func:`set_counting_interval`).
    """
    retention_end = after(etype.retention, event.occurred_at)
    if etype.expiry is None:
        return retention_end, None
    anchor = etype.expiry_anchor(event.occurred_at, event.recorded_at, event.attributes)
    return retention_end, after(etype.expiry, anchor)


def _overhang_witness(entry: Entry, expiry: float, live: list[Entry]) -> Entry | None:
    # An offence committed before the expiry but known only after it keeps the entry
    # counting through the overhang: the same domain, points of the same sign. Known is
    # the reported date when the type has one (backfilled history keeps its real dates).
    assert entry.type is not None
    sign = math.copysign(1.0, entry.base_points) if entry.base_points else 0.0
    if not sign:
        return None
    for other in live:
        if other is entry or other.type is None or other.type.domain != entry.type.domain:
            continue
        if other.base_points * sign > 0 and other.o < expiry <= other.known:
            return other
    return None


def _fold(history: History, live: list[Entry]) -> None:
    policy = history.policy
    used: dict[tuple[str, int, tuple[int, int]], float] = {}
    processed: list[Entry] = []
    for entry in live:
        etype = entry.type
        assert etype is not None
        if etype.when is not None:
            _decide_when(history, entry, processed)
        for name in etype.scorecards:
            _cap(policy.scorecards[name], entry, used)
        processed.append(entry)


def _decide_when(history: History, entry: Entry, processed: list[Entry]) -> None:
    etype = entry.type
    assert etype is not None and etype.when is not None
    blocked = sorted(n for n in etype.when.names if not history.available(n))
    if blocked:
        entry.counted, entry.points = False, 0.0
        entry.why_not = f"its condition reads {', '.join(blocked)}, which needs the " \
                        "subject's consent (opt-in)"
        return
    # The state just before the event: only entries earlier in the order.
    earlier = History(history.policy, processed, history.consented,
                      _restrict(history.by_scorecard, processed),
                      _restrict_metric(history.by_metric, processed),
                      set_backs=[x for x in history.set_backs if x.at < entry.o])
    context = earlier.context(etype.when.names - {"attrs"}, entry.o, etype.when.beyond_score)
    context["attrs"] = entry.attrs
    decided = run_when(etype, context)
    if isinstance(decided, str):
        entry.counted, entry.points = False, 0.0
        entry.why_not = decided
        return
    if not decided:
        entry.counted, entry.points = False, 0.0
        shown = ", ".join(f"{k} = {_brief(v)}" for k, v in sorted(context.items())
                          if k != "attrs")
        entry.why_not = f"condition `{etype.when.source}` was false when it occurred" + \
            (f" ({shown})" if shown else "")


def run_when(etype: CompiledEventType, context: dict[str, Any]) -> bool | str:
    """An event type's ``when`` condition on ``context``, or why it cannot be evaluated.

    An arithmetic fault (CEL overflow, division by zero, a result that is not
    true/false) is contained: the event does not count, and the text says why.
    """
    assert etype.when is not None
    try:
        return etype.when.run_bool(context)
    except PolicyError as exc:
        return f"{ERROR_PREFIX}condition `{etype.when.source}` cannot be evaluated: " \
               f"{exc.problems[0].message}"
    except ArithmeticError as exc:
        return f"{ERROR_PREFIX}condition `{etype.when.source}` cannot be evaluated: " \
               f"{type(exc).__name__}: {exc}"


def _restrict(groups: Mapping[str, list[Entry]], keep: list[Entry]) -> dict[str, list[Entry]]:
    ids = {id(x) for x in keep}
    return {k: [x for x in v if id(x) in ids] for k, v in groups.items()}


def _restrict_metric(groups: Mapping[str, list[tuple[Entry, float]]],
                     keep: list[Entry]) -> dict[str, list[tuple[Entry, float]]]:
    ids = {id(x) for x in keep}
    return {k: [p for p in v if id(p[0]) in ids] for k, v in groups.items()}


def _brief(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['score']:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cap(card: CompiledScorecard, entry: Entry, used: dict[tuple[str, int, tuple[int, int]],
                                                           float]) -> None:
    points = entry.points if entry.counted else 0.0
    if not card.caps or points == 0.0:
        entry.capped[card.name] = points
        return
    amount = abs(points)
    applied: list[tuple[tuple[str, int, tuple[int, int]], str]] = []
    for i, cap in enumerate(card.caps):
        if entry.event.type in cap.exempt:
            continue
        if (cap.applies_to is CapDirection.GAINS) != (points > 0):
            continue
        key = (card.name, i, cap.period_key(entry.event.occurred_at.astimezone(UTC)))
        room = max(0.0, cap.max - used.get(key, 0.0))
        if room < amount:
            amount = room
            entry.cap_notes[card.name] = (
                f"{_ADJECTIVE[cap.period]} cap of {cap.max:g} points "
                f"{'gained' if points > 0 else 'lost'} reached")
        applied.append((key, cap.period.value))
    for key, _ in applied:
        used[key] = used.get(key, 0.0) + amount
    entry.capped[card.name] = math.copysign(amount, points)
