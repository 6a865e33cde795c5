"""The policy evaluated for a whole population at once, one instant at a time, with NumPy.

:class:`VectorState` is :class:`~trustledger.engine.incremental.SubjectState`'s design —
static sums, forward-decay accumulators ``A = Σ p·2^((o - L)/h)`` per half-life, live
counts that reset a sum to exactly 0 when its last entry leaves — laid out as one array
element per subject, so that a month of events for 100,000 subjects costs a few dozen
array operations. It evaluates what the simulation produces: every event of a month
occurs (and is recorded) at one instant, in a fixed order (``when`` types first, then
the policy's order, then variant, then sequence), so

* an event's counting interval, metric windows and cap periods are the same for every
  subject and are computed once per type and instant with the policy's own duration
  arithmetic; entries leave the sums in cohorts (type, instant);
* caps and ``when`` conditions, the two sequential parts of the reference fold, are run
  entry by entry in that order, vectorised over subjects;
* points come from the compiled policy (one call per type and attributes);
* stateless measures (no ``hold``, no ``requires``; see
  :func:`~trustledger.engine.incremental.stateless_measures`) are the compiled
  conditions, run on arrays (:mod:`trustledger.impact.conditions`) or, outside that CEL
  subset, the policy's CEL program subject by subject; measures with a holding time or a
  prerequisite depend on their own past between instants and are not simulated.

``tests/test_impact_vector.py`` proves :meth:`VectorState.read` equal to the reference
:func:`~trustledger.engine.evaluate` on the same events (scores, totals, tiers, metrics,
stateless measures) for every example policy and randomised small ones.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any

import numpy as np

from trustledger.cel_runtime import cel
from trustledger.engine.history import LN2, ts
from trustledger.engine.incremental import stateless_measures
from trustledger.errors import InputError
from trustledger.impact.conditions import Unsupported, VectorCondition, vector_condition
from trustledger.policy.compiled import CompiledEventType, CompiledPolicy, CompiledScorecard
from trustledger.policy.conditions import Expression
from trustledger.policy.models import Aggregate, CapDirection, MetricValue, Sign

VariantKey = tuple[str, int]
"""(event type, index of its attribute variant): what the policy is given counts of."""

_CHECK = 16
"""Subjects on which each vectorised condition is checked against its CEL program."""

_SPARSE = 0.25
"""Cohorts with fewer non-zero subjects than this share are stored sparse."""


@dataclass(frozen=True)
class PlannedVariant:
    """One (type, attributes) the simulation draws: its normalised attributes and points."""

    type: CompiledEventType
    index: int
    attributes: Mapping[str, Any]
    points: float


class VectorPlan:
    """What a policy needs to be evaluated on arrays, prepared once per policy and scenario.

    ``variants`` maps each event type to its attribute sets; the attributes must fit the
    type's schema (:class:`~trustledger.errors.InputError` otherwise).
    """

    def __init__(self, policy: CompiledPolicy,
                 variants: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Plan ``policy`` for the given event types and attribute variants."""
        policy.require_rule_based("the impact simulation")
        self.policy = policy
        self.variants: dict[str, tuple[PlannedVariant, ...]] = {}
        for name, etype in policy.event_types.items():
            if name not in variants:
                continue
            planned = []
            for i, attrs in enumerate(variants[name]):
                normal = etype.normalise(attrs)
                if isinstance(normal, str):
                    raise InputError(f"event type {name}, variant {i}: {normal}")
                planned.append(PlannedVariant(etype, i, dict(attrs), etype.points(normal)))
            self.variants[name] = tuple(planned)
        # The order of a month's events (their ids sort the same way): `when` types first,
        # so that a condition sees only earlier conditional events of the same instant.
        names = list(self.variants)
        self.order: tuple[str, ...] = tuple(
            [n for n in names if policy.event_types[n].when is not None]
            + [n for n in names if policy.event_types[n].when is None])
        self.positions: dict[str, int] = {n: i for i, n in enumerate(self.order)}
        self.metrics_of: dict[str, tuple[str, ...]] = {
            name: tuple(m for m, metric in policy.metrics.items() if name in metric.types)
            for name in self.variants}
        self.stateless = stateless_measures(policy)
        self.not_simulated: tuple[str, ...] = tuple(
            n for n in policy.measures if n not in self.stateless)
        self.conditions: dict[str, VectorCondition | None] = {}
        self.paths: dict[str, str] = {}
        for name in self.stateless:
            self._compile(name, policy.measures[name].condition)
        for name in self.order:
            when = policy.event_types[name].when
            if when is not None:
                self._compile(f"when:{name}", when)

    def _compile(self, key: str, expression: Expression) -> None:
        try:
            self.conditions[key] = vector_condition(expression.source)
            self.paths[key] = "vectorised"
        except Unsupported:
            self.conditions[key] = None
            self.paths[key] = "per subject (CEL)"

    def rank(self, name: str) -> int:
        """The position of an event type in a month's order."""
        return self.positions[name]


@dataclass(slots=True)
class _Cohort:
    """Contributions that leave one sum together (same sink, half-life and exit time)."""

    sink: str
    half_life: float | None
    index: np.ndarray | None
    values: np.ndarray
    live: np.ndarray
    counts: np.ndarray | None


@dataclass(slots=True)
class _Pending:
    values: np.ndarray
    live: np.ndarray
    counts: np.ndarray | None


@dataclass(frozen=True)
class VectorReading:
    """A population's values at one instant: one array element per subject.

    ``scores`` (NaN where the subject has not opted in), ``ranks`` (tier rank, -1 below
    every tier or without tiers, -2 not opted in), ``metrics`` (NaN where unavailable),
    ``measures`` (in force; only stateless measures).
    """

    valid_at: datetime
    scores: Mapping[str, np.ndarray]
    totals: Mapping[str, np.ndarray]
    ranks: Mapping[str, np.ndarray]
    metrics: Mapping[str, np.ndarray]
    measures: Mapping[str, np.ndarray]

    def tier_names(self, policy: CompiledPolicy, card: str) -> np.ndarray:
        """Tier names per subject ('' below every tier, None not opted in)."""
        names = [t.name for t in policy.scorecards[card].tiers]
        table = np.array([*names, "", None], dtype=object)
        ranks = self.ranks[card]
        return table[np.where(ranks == -2, len(names) + 1, np.where(ranks < 0, len(names),
                                                                     ranks))]


@dataclass(slots=True)
class _Sink:
    static: np.ndarray
    static_live: np.ndarray
    forward: dict[float, np.ndarray] = field(default_factory=dict)
    forward_live: dict[float, np.ndarray] = field(default_factory=dict)
    count: np.ndarray | None = None


class VectorState:
    """Every subject's state under one policy, advanced one instant at a time.

    ``available`` maps each opt-in scorecard to a bool array (the subject consented).
    ``landmark`` is the forward-decay landmark (the first instant); ``horizon`` the
    latest instant that will be read (entries leaving later are never removed).
    """

    def __init__(self, plan: VectorPlan, size: int, landmark: datetime,
                 available: Mapping[str, np.ndarray], horizon: datetime) -> None:
        """An empty population of ``size`` subjects."""
        policy = plan.policy
        self.plan = plan
        self.size = size
        self.landmark = ts(landmark)
        self.horizon = ts(horizon)
        self.available: dict[str, np.ndarray] = {}
        for name, card in policy.scorecards.items():
            mask = available.get(name) if card.opt_in else None
            self.available[name] = (np.asarray(mask, dtype=bool) if mask is not None
                                    else np.full(size, not card.opt_in))
        for name, metric in policy.metrics.items():
            self.available[name] = (self.available[metric.scorecard] if metric.scorecard
                                    else np.ones(size, dtype=bool))
        self._sinks: dict[str, _Sink] = {}
        for name in (*policy.scorecards, *policy.metrics):
            sink = _Sink(np.zeros(size), np.zeros(size, dtype=np.int64))
            if name in policy.metrics and policy.metrics[name].aggregate is Aggregate.COUNT:
                sink.count = np.zeros(size, dtype=np.int64)
            self._sinks[name] = sink
        self._heap: list[tuple[float, int, _Cohort]] = []
        self._tick = count()
        self._caps: dict[tuple[str, int], tuple[tuple[int, int], np.ndarray]] = {}
        self.now = -math.inf

    def fork(self) -> VectorState:
        """An independent copy (cohorts are shared: they are never changed)."""
        other = VectorState.__new__(VectorState)
        other.plan, other.size, other.landmark = self.plan, self.size, self.landmark
        other.horizon, other.available = self.horizon, self.available
        other._sinks = {n: _Sink(s.static.copy(), s.static_live.copy(),
                                 {h: a.copy() for h, a in s.forward.items()},
                                 {h: a.copy() for h, a in s.forward_live.items()},
                                 None if s.count is None else s.count.copy())
                        for n, s in self._sinks.items()}
        other._heap = list(self._heap)
        other._tick = count(next(self._tick))
        other._caps = {k: (p, u.copy()) for k, (p, u) in self._caps.items()}
        other.now = self.now
        return other

    # -- time ----------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        if t < self.now:
            raise InputError("the population state only moves forward in time")
        self.now = t
        touched: set[tuple[str, float | None]] = set()
        while self._heap and self._heap[0][0] <= t:
            _, _, cohort = heapq.heappop(self._heap)
            sink = self._sinks[cohort.sink]
            where = cohort.index if cohort.index is not None else slice(None)
            if cohort.half_life is None:
                sink.static[where] -= cohort.values
                sink.static_live[where] -= cohort.live
            else:
                sink.forward[cohort.half_life][where] -= cohort.values
                sink.forward_live[cohort.half_life][where] -= cohort.live
            if cohort.counts is not None and sink.count is not None:
                sink.count[where] -= cohort.counts
            touched.add((cohort.sink, cohort.half_life))
        for name, hl in touched:
            # A sum whose entries have all left is exactly 0, not rounding noise.
            sink = self._sinks[name]
            values, live = (sink.static, sink.static_live) if hl is None else \
                (sink.forward[hl], sink.forward_live[hl])
            values[live == 0] = 0.0

    # -- events ------------------------------------------------------------------------------

    def apply(self, moment: datetime, counts: Mapping[VariantKey, np.ndarray], *,
              end: float | None = None) -> None:
        """Every subject's events of one instant: ``counts[(type, variant)]`` per subject.

        Event counts per type and attributes are the only input: nothing else about a
        subject (in particular no group label) reaches the policy. ``end`` (POSIX
        seconds): when these entries stop counting, if not when events recorded as they
        occur would (a real history's, computed by the engine's interval rule).
        """
        plan = self.plan
        unknown = [k for k in counts if k[0] not in plan.variants
                   or not 0 <= k[1] < len(plan.variants[k[0]])]
        if unknown:
            raise InputError(f"no such event type and variant in the plan: {unknown[0]}")
        t = ts(moment)
        self._advance(t)
        pending: dict[tuple[str, float | None, float], _Pending] = {}
        # In the month's order (type, then variant); only the variants given, as a real
        # history's types can have thousands of attribute sets.
        for name, v in sorted(counts, key=lambda k: (plan.positions[k[0]], k[1])):
            n = np.asarray(counts[(name, v)])
            if n.dtype.kind not in "iu" or n.shape != (self.size,):
                raise InputError(f"counts of {name}: one whole number per subject")
            if not n.any():
                continue
            self._apply_variant(moment, t, plan.variants[name][v], n, pending, end)
        for (sink, hl, exit_), p in pending.items():
            if exit_ > self.horizon:
                continue
            nonzero = np.flatnonzero(p.live if p.counts is None else (p.live | p.counts))
            if not len(nonzero):
                continue
            if len(nonzero) < _SPARSE * self.size:
                cohort = _Cohort(sink, hl, nonzero, p.values[nonzero], p.live[nonzero],
                                 None if p.counts is None else p.counts[nonzero])
            else:
                cohort = _Cohort(sink, hl, None, p.values, p.live, p.counts)
            heapq.heappush(self._heap, (exit_, next(self._tick), cohort))

    def _ends(self, etype: CompiledEventType, moment: datetime) -> float:
        # Simulated events are recorded when they occur, so both expiry anchors agree
        # and no overhang witness exists.
        end = ts(etype.retention.after(moment))
        if etype.expiry is not None:
            end = min(end, ts(etype.expiry.after(moment)))
        return end

    def _add(self, pending: dict[tuple[str, float | None, float], _Pending], sink_name: str,
             hl: float | None, exit_: float, t: float, values: np.ndarray,
             live: np.ndarray, counts: np.ndarray | None) -> None:
        sink = self._sinks[sink_name]
        if hl is None:
            sink.static += values
            sink.static_live += live
            scaled = values
        else:
            scaled = values * math.exp(LN2 * (t - self.landmark) / hl)
            if hl not in sink.forward:
                sink.forward[hl] = np.zeros(self.size)
                sink.forward_live[hl] = np.zeros(self.size, dtype=np.int64)
            sink.forward[hl] += scaled
            sink.forward_live[hl] += live
        if counts is not None and sink.count is not None:
            sink.count += counts
        key = (sink_name, hl, exit_)
        p = pending.get(key)
        if p is None:
            pending[key] = _Pending(scaled.astype(np.float64, copy=True),
                                    live.astype(np.int64, copy=True),
                                    None if counts is None else counts.astype(np.int64))
        else:
            p.values += scaled
            p.live += live
            if counts is not None:
                p.counts = counts.astype(np.int64) if p.counts is None else p.counts + counts

    def _capping(self, card: CompiledScorecard, etype: CompiledEventType,
                 points: float) -> list[int]:
        if not points:
            return []
        return [i for i, cap in enumerate(card.caps)
                if etype.name not in cap.exempt
                and (cap.applies_to is CapDirection.GAINS) == (points > 0)]

    def _used(self, card: CompiledScorecard, i: int, moment: datetime) -> np.ndarray:
        period = card.caps[i].period_key(moment)
        held = self._caps.get((card.name, i))
        if held is None or held[0] != period:
            held = (period, np.zeros(self.size))
            self._caps[(card.name, i)] = held
        return held[1]

    def _apply_variant(self, moment: datetime, t: float, variant: PlannedVariant,
                       n: np.ndarray, pending: dict[tuple[str, float | None, float],
                                                    _Pending], ends: float | None) -> None:
        policy = self.plan.policy
        etype = variant.type
        p = variant.points
        end = self._ends(etype, moment) if ends is None else ends
        cards = [policy.scorecards[c] for c in etype.scorecards]
        capping = {c.name: self._capping(c, etype, p) for c in cards}
        metrics = self.plan.metrics_of[etype.name]
        windows = {m: (min(end, ts(w.after(moment))) if (w := policy.metrics[m].window)
                       else end) for m in metrics}
        sequential = etype.when is not None or any(capping.values())
        if not sequential:
            counted = n.astype(np.int64)
            capped = {c.name: counted * p for c in cards}
            live = counted if p else np.zeros_like(counted)
            for c in cards:
                self._add(pending, c.name, etype.half_life, end, t, capped[c.name], live, None)
            for m in metrics:
                self._metric(pending, m, etype, windows[m], t, counted, p)
            return
        # Entry by entry (the order of their ids), only over the subjects that have a j-th
        # entry; sums are gathered per variant and added once (per entry for `when` types,
        # whose condition must see the entries before it).
        acc: dict[str, list[np.ndarray]] = {}

        def gather(sink: str, rows: np.ndarray, values: np.ndarray | float,
                   live: np.ndarray, counts: np.ndarray | None) -> None:
            if sink not in acc:
                acc[sink] = [np.zeros(self.size), np.zeros(self.size, dtype=np.int64),
                             np.zeros(self.size, dtype=np.int64)]
            acc[sink][0][rows] += values
            acc[sink][1][rows] += live
            if counts is not None:
                acc[sink][2][rows] += counts

        def flush() -> None:
            for sink, (values, live, counts) in acc.items():
                if sink in policy.scorecards:
                    self._add(pending, sink, etype.half_life, end, t, values, live, None)
                    continue
                metric = policy.metrics[sink]
                if metric.aggregate is Aggregate.COUNT:
                    self._add(pending, sink, None, windows[sink], t, values, live, counts)
                else:
                    hl = etype.half_life if metric.value is MetricValue.CURRENT else None
                    self._add(pending, sink, hl, windows[sink], t, values, live, None)
            acc.clear()

        rows = np.flatnonzero(n > 0)
        sign = math.copysign(1.0, p)
        for j in range(int(n.max())):
            rows = rows[n[rows] > j]
            if etype.when is not None:
                mask = np.zeros(self.size, dtype=bool)
                mask[rows] = True
                counted = rows[self._when(etype, variant, moment, mask)[rows]]
            else:
                counted = rows
            capped = {}
            for c in cards:
                amount = np.full(len(counted), abs(p))
                used = [(c.caps[i].max, self._used(c, i, moment)) for i in capping[c.name]]
                for cap_max, u in used:
                    amount = np.minimum(amount, np.maximum(0.0, cap_max - u[counted]))
                for _, u in used:
                    u[counted] += amount
                capped[c.name] = sign * amount if p else np.zeros(len(counted))
                gather(c.name, counted, capped[c.name],
                       (capped[c.name] != 0).astype(np.int64), None)
            plain = np.full(len(counted), p)
            for m in metrics:
                metric = policy.metrics[m]
                values = capped.get(metric.scorecard, plain) if metric.scorecard else plain
                if metric.sign is Sign.NEGATIVE:
                    passing = values < 0
                elif metric.sign is Sign.POSITIVE:
                    passing = values > 0
                else:
                    passing = np.ones(len(counted), dtype=bool)
                summed = np.where(passing, values, 0.0)
                gather(m, counted, summed, (passing & (summed != 0)).astype(np.int64),
                       passing.astype(np.int64))
            if etype.when is not None:
                flush()
        flush()

    def _metric(self, pending: dict[tuple[str, float | None, float], _Pending], name: str,
                etype: CompiledEventType, exit_: float, t: float, counted: np.ndarray,
                points: float) -> None:
        """One metric's share of ``counted`` uncapped entries of ``points`` each, per subject."""
        metric = self.plan.policy.metrics[name]
        if metric.sign is Sign.NEGATIVE:
            passing = points < 0
        elif metric.sign is Sign.POSITIVE:
            passing = points > 0
        else:
            passing = True
        n = counted if passing else np.zeros(self.size, dtype=np.int64)
        if metric.aggregate is Aggregate.COUNT:
            self._add(pending, name, None, exit_, t, np.zeros(self.size),
                      np.zeros(self.size, dtype=np.int64), n)
            return
        live = n if points else np.zeros(self.size, dtype=np.int64)
        hl = etype.half_life if metric.value is MetricValue.CURRENT else None
        self._add(pending, name, hl, exit_, t, n * points, live, None)

    # -- reading -------------------------------------------------------------------------------

    def _value(self, name: str, t: float, base: float = 0.0) -> np.ndarray:
        sink = self._sinks[name]
        total = base + sink.static
        for hl, acc in sink.forward.items():
            total = total + acc * math.exp(-LN2 * (t - self.landmark) / hl)
        return total

    def _context(self, t: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        policy = self.plan.policy
        context: dict[str, Any] = {}
        totals: dict[str, np.ndarray] = {}
        for name, card in policy.scorecards.items():
            total = self._value(name, t, card.base)
            score = total
            if card.floor is not None:
                score = np.maximum(score, card.floor)
            if card.ceiling is not None:
                score = np.minimum(score, card.ceiling)
            rank = np.full(self.size, -1, dtype=np.int64)
            for r, tier in enumerate(card.tiers):
                low = tier.min_at(t)
                rank = np.where(True if low is None else score >= low, r, rank)
            names = np.array([*(tier.name for tier in card.tiers), ""])
            context[name] = {"score": score, "rank": rank, "tier": names[rank]}
            totals[name] = total
        for name, metric in policy.metrics.items():
            sink = self._sinks[name]
            if metric.aggregate is Aggregate.COUNT:
                assert sink.count is not None
                context[name] = sink.count.copy()
            else:
                context[name] = self._value(name, t)
        return context, totals

    def _blocked(self, names: Sequence[str]) -> np.ndarray:
        blocked = np.zeros(self.size, dtype=bool)
        for n in names:
            if n in self.available:
                blocked |= ~self.available[n]
        return blocked

    def _run(self, key: str, expression: Expression, context: Mapping[str, Any],
             rows: np.ndarray, extra: Mapping[str, Any] | None = None) -> np.ndarray:
        """A condition for every subject: vectorised, checked on a sample, or per subject."""
        out = np.zeros(self.size, dtype=bool)
        if not rows.any():
            return out
        vector = self.plan.conditions.get(key)
        ctx = dict(context) if extra is None else {**context, **extra}
        if vector is not None:
            try:
                result = vector(ctx, self.size)
            except Unsupported:
                self.plan.conditions[key] = None
                self.plan.paths[key] = "per subject (CEL)"
            else:
                sample = np.flatnonzero(rows)[:_CHECK]
                for i in sample:
                    if expression.run_bool(_subject_context(ctx, int(i))) != bool(result[i]):
                        self.plan.conditions[key] = None
                        self.plan.paths[key] = "per subject (CEL: vectorised form disagreed)"
                        break
                else:
                    return np.asarray(result & rows, dtype=bool)
        for i in np.flatnonzero(rows):
            out[i] = expression.run_bool(_subject_context(ctx, int(i)))
        return out

    def _when(self, etype: CompiledEventType, variant: PlannedVariant, moment: datetime,
              rows: np.ndarray) -> np.ndarray:
        assert etype.when is not None
        context, _ = self._context(ts(moment))
        allowed = rows & ~self._blocked(sorted(etype.when.names - {"attrs"}))
        return self._run(f"when:{etype.name}", etype.when, context, allowed,
                         {"attrs": dict(_cel_attrs(etype, variant.attributes))})

    def read(self, moment: datetime) -> VectorReading:
        """Scores, totals, tier ranks, metrics and stateless measures at ``moment``."""
        t = ts(moment)
        self._advance(t)
        policy = self.plan.policy
        context, totals = self._context(t)
        scores, ranks, metrics = {}, {}, {}
        for name in policy.scorecards:
            ok = self.available[name]
            scores[name] = np.where(ok, context[name]["score"], np.nan)
            totals[name] = np.where(ok, totals[name], np.nan)
            ranks[name] = np.where(ok, context[name]["rank"], -2)
        for name in policy.metrics:
            metrics[name] = np.where(self.available[name], context[name], np.nan)
        measures: dict[str, np.ndarray] = {}
        for name, m in policy.measures.items():
            if name not in self.plan.stateless:
                continue
            rows = ~self._blocked([*m.scorecards, *m.metrics])
            state = self._run(name, m.condition, context, rows)
            measures[name] = state
            context[name] = state
        return VectorReading(moment, scores, totals, ranks, metrics, measures)


def _cel_attrs(etype: CompiledEventType, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    normal = etype.normalise(attributes)
    assert not isinstance(normal, str)
    return normal


def _subject_context(context: Mapping[str, Any], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in context.items():
        if isinstance(value, Mapping) and "rank" in value and "tier" in value:
            out[name] = {"score": float(value["score"][i]), "tier": str(value["tier"][i]),
                         "rank": int(value["rank"][i])}
        elif isinstance(value, np.ndarray):
            item = value[i].item()
            out[name] = item
        else:
            out[name] = value
    return out


def cel_context(context: Mapping[str, Any], i: int) -> cel.Context:
    """One subject's CEL context from population arrays (for checks and tests)."""
    return cel.Context(_subject_context(context, i))


__all__ = ["PlannedVariant", "VariantKey", "VectorPlan", "VectorReading", "VectorState",
           "cel_context"]
