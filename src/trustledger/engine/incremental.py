"""Incremental state: one subject's scores kept up to date event by event, never replayed.

:class:`SubjectState` holds what the closed forms of :mod:`trustledger.engine.history`
need, so that applying an event and reading the present cost O(1) amortized:

* per scorecard and metric, a static sum and a count, and per half-life a forward-decay
  accumulator ``A = Σ p·2^((o - L)/h)``, read as ``A·2^(-(t - L)/h)``; the landmark ``L``
  moves to a newer event before an exponent passes 2^64 (far from overflow);
* a heap of the moments entries stop counting (expiry, overhang, retention) or leave a
  metric's window: reading at ``t`` first removes what ended by ``t``;
* per scorecard and cap, the allowance used per calendar period;
* the events themselves, for what is not a sum: supersession, caps, conditions.

The state's knowledge is every event applied (in any order). :meth:`SubjectState.read`
at ``valid_at`` equals :func:`~trustledger.engine.evaluate` of the applied events at
``valid_at`` (no ``known_at``) for scores, totals, tiers and metrics, and for the
*stateless* measures (no ``hold``, no ``requires``, not a prerequisite, reading only
stateless measures), to 1e-9. A ``valid_at`` before the latest applied event's
``occurred_at`` is refused: the past is :func:`evaluate`'s job.

Costs (``n`` events of the subject, ``k`` of them in one cap period):

=============================================  ==========================================
event after every applied one                  O(1) amortized (heap push: O(log n) in C)
event out of ``occurred_at`` order             O(1); O(k) if a cap applies (its period is
                                               recomputed); several caps on one direction:
                                               O(n) for that scorecard
correction or withdrawal of an applied event   as above, for the withdrawn entry
read at ``t``                                  O(expired since the last read) amortized,
                                               plus O(half-lives * sinks)
removing a term 2^20 times the rest of its sum O(live) recompute of that sum (rare: the
                                               oldest, smallest terms usually leave first)
reading earlier than the previous read         rebuild, O(n log n)
an out-of-order event or a withdrawal before   rebuild, O(n log n)
a ``when`` event; a ``when`` event older than
a previous read; withdrawing an overhang
witness
=============================================  ==========================================

Measures with a holding time or a prerequisite depend on their own past (the decision
instants of :mod:`trustledger.engine.measures`); :meth:`read` names them in
:attr:`Reading.replay_measures` and leaves them to :func:`evaluate`.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any

from trustledger.cel_runtime import cel
from trustledger.engine.evaluate import check_moments
from trustledger.engine.events import RETRACTION, Event
from trustledger.engine.history import (
    INF,
    LN2,
    after,
    at,
    counting_bounds,
    known_instant,
    run_when,
    scorecard_value,
    ts,
)
from trustledger.errors import InputError
from trustledger.policy.compiled import (
    CompiledEventType,
    CompiledMeasure,
    CompiledPolicy,
    CompiledScorecard,
)
from trustledger.policy.models import Aggregate, CapDirection, MetricValue, Sign

SNAPSHOT_FORMAT = "trustledger.incremental/1"
"""Format tag of :meth:`SubjectState.snapshot`."""

_REBASE = 64.0
"""Move the landmark once an exponent would pass 2^64 (2^1023 overflows)."""

_CANCELLATION = 2.0**20
"""Removing a term this much larger than what is left recomputes the sum (lost digits)."""

OrderKey = tuple[float, float, str, str]
"""The deterministic order of events: occurred, recorded (POSIX seconds), source, id."""


def stateless_measures(policy: CompiledPolicy) -> frozenset[str]:
    """Measures whose state at ``t`` is their condition at ``t`` (no history involved).

    A measure is stateless when it has no ``hold`` and no ``requires``, no other measure
    requires it, and every measure its condition reads is stateless.
    """
    required = {m.requires for m in policy.measures.values() if m.requires is not None}
    out: set[str] = set()
    for name, m in policy.measures.items():  # dependency order
        if m.hold is None and m.requires is None and name not in required \
                and all(dep in out for dep in m.measures):
            out.add(name)
    return frozenset(out)


def _known(etype: CompiledEventType, event: Event) -> float:
    """POSIX seconds of when an event's fact became known (the reference's rule)."""
    return known_instant(etype, event)


def _order(event: Event) -> OrderKey:
    return (ts(event.occurred_at), ts(event.recorded_at), event.source, event.source_event_id)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a :class:`SubjectState` says at ``valid_at``.

    ``scores``, ``totals`` and ``tiers`` per scorecard (``None`` for an opt-in scorecard
    without consent), ``metrics`` per metric (``None`` when scoped to such a scorecard),
    ``measures`` whether each stateless measure is in force; ``replay_measures`` names
    the measures that need :func:`~trustledger.engine.evaluate` (hold, prerequisites).
    """

    policy_hash: str
    valid_at: datetime
    scores: Mapping[str, float | None]
    totals: Mapping[str, float | None]
    tiers: Mapping[str, str | None]
    metrics: Mapping[str, float | int | None]
    measures: Mapping[str, bool]
    replay_measures: tuple[str, ...]


@dataclass(slots=True)
class _Sink:
    """The running sums of one scorecard or metric."""

    static: float = 0.0
    count: int = 0
    forward: dict[float, float] = field(default_factory=dict)
    live: dict[float, int] = field(default_factory=dict)
    """How many decaying contributions each forward sum holds (0: the sum is exactly 0)."""

    def value(self, t: float, landmark: float, base: float = 0.0) -> float:
        """``base`` + the sum at ``t``: the exact part first, then the decayed part.

        The reference sums in event order; any other order may round differently, so a
        value that sits exactly on a condition's bound (to the last bit) can fall on
        either side of it (see ``docs/scale.md``).
        """
        total = base + self.static
        for hl, acc in self.forward.items():
            total += acc * math.exp(-LN2 * (t - landmark) / hl)
        return total


@dataclass(slots=True, eq=False)
class _Item:
    """One applied event of a policy type that is neither withdrawn nor malformed."""

    event: Event
    type: CompiledEventType
    key: OrderKey
    o: float
    recorded: float
    """When the fact became known (:meth:`CompiledEventType.known_instant`): the reported
    date the type's expiry counts from, else ``recorded_at``; overhangs judge by it."""
    base_points: float
    points: float = 0.0
    counted: bool = True
    capped: dict[str, float] = field(default_factory=dict)
    expiry: float | None = None
    end: float = INF
    witnessed: bool = False
    held: dict[str, float] = field(default_factory=dict)
    version: int = 0


class SubjectState:
    """One subject's incremental state under one compiled policy.

    Build with :meth:`empty` (or :meth:`from_snapshot`), :meth:`apply` events in any order,
    :meth:`read` the present. See the module docstring for what each step costs.
    """

    def __init__(self, policy: CompiledPolicy, opt_ins: Collection[str] = ()) -> None:
        """Use :meth:`empty`."""
        policy.require_rule_based("the incremental state")
        if policy.set_back_scorecards:
            raise InputError(
                f"the incremental state does not compute set-backs of points "
                f"({', '.join(sorted(policy.set_back_scorecards))} of policy {policy.name}): "
                "they depend on the measures' history; evaluate such a policy with the "
                "reference engine (trustledger.engine.evaluate)")
        consented = frozenset(opt_ins)
        unknown = sorted(consented - set(policy.scorecards))
        if unknown:
            raise InputError(f"opt_ins names no scorecard of policy {policy.name}: "
                             f"{', '.join(unknown)}")
        self.policy = policy
        self.opt_ins = consented
        self._stateless = stateless_measures(policy)
        self._sinks_for: dict[str, tuple[str, ...]] = {}
        for name, et in policy.event_types.items():
            sinks = [c for c in et.scorecards if self._available(c)]
            sinks += [m for m, metric in policy.metrics.items()
                      if name in metric.types and self._available(m)]
            self._sinks_for[name] = tuple(sinks)
        self._conditional = any(et.when is not None for et in policy.event_types.values())
        self._overhang = any(et.overhang is not None for et in policy.event_types.values())
        self._events: dict[tuple[str, str], Event] = {}
        self._subject: str | None = None
        self._latest_o = -INF
        self._reset()

    @classmethod
    def empty(cls, policy: CompiledPolicy, opt_ins: Collection[str] = ()) -> SubjectState:
        """A state with no events; ``opt_ins`` are the opt-in scorecards consented to."""
        return cls(policy, opt_ins)

    def _reset(self) -> None:
        self._sinks = {name: _Sink() for names in self._sinks_for.values() for name in names}
        for name in (*self.policy.scorecards, *self.policy.metrics):
            if self._available(name):
                self._sinks.setdefault(name, _Sink())
        self._items: dict[tuple[str, str], _Item] = {}
        self._superseded: set[tuple[str, str]] = set()
        self._heap: list[tuple[float, int, _Item, int, str]] = []
        self._tick = count()
        self._landmark: float | None = None
        self._now = -INF
        self._last: OrderKey | None = None
        self._conditions: list[OrderKey] = []
        self._caps = {name: _CapBook(card) for name, card in self.policy.scorecards.items()
                      if card.caps}
        self._late: dict[str, list[_Item]] = {}
        self._expiring: dict[str, list[tuple[float, int, _Item]]] = {}
        self._prewitnessed: set[tuple[str, str]] = set()

    def _available(self, name: str) -> bool:
        policy = self.policy
        if name in policy.scorecards:
            return not policy.scorecards[name].opt_in or name in self.opt_ins
        scope = policy.metrics[name].scorecard
        return scope is None or self._available(scope)

    # -- applying events -------------------------------------------------------------------

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event applied so far (the state's knowledge), in the order applied."""
        return tuple(self._events.values())

    def apply(self, event: Event) -> None:
        """Apply one event (any order). Refuses another subject, a repeated key, naive times."""
        for name, value in (("occurred_at", event.occurred_at),
                            ("recorded_at", event.recorded_at)):
            if value.tzinfo is None:
                raise InputError(f"event {event.source}:{event.source_event_id}: {name} has "
                                 "no time zone")
        if event.key in self._events:
            raise InputError(f"event {event.source}:{event.source_event_id} is given twice")
        if self._subject is not None and event.subject != self._subject:
            raise InputError(f"this state is subject {self._subject}'s; event "
                             f"{event.source}:{event.source_event_id} is about {event.subject}")
        self._subject = event.subject
        self._events[event.key] = event
        self._latest_o = max(self._latest_o, ts(event.occurred_at))
        if not self._insert(event, rebuilding=False):
            self._rebuild()

    def _rebuild(self) -> None:
        self._reset()
        events = sorted(self._events.values(), key=_order)
        # What later events decide about earlier ones is known before the fold, as in the
        # reference: which events are withdrawn, and which entries an overhang keeps.
        self._superseded = {(e.source, e.supersedes) for e in events if e.supersedes is not None}
        self._prewitnessed = self._witnesses(events)
        for event in events:
            done = self._insert(event, rebuilding=True)
            assert done, "events in order never need a rebuild"
        self._prewitnessed = set()

    def _witnesses(self, events: list[Event]) -> set[tuple[str, str]]:
        """Keys of the entries an overhang keeps counting (the reference's witness rule)."""
        if not self._overhang:
            return set()
        valid: list[tuple[Event, CompiledEventType, float]] = []
        for e in events:
            etype = self.policy.event_types.get(e.type)
            if e.type == RETRACTION or e.key in self._superseded or etype is None:
                continue
            fitted = etype.fit(e.attributes, occurred_at=e.occurred_at, recorded_at=e.recorded_at)
            if not isinstance(fitted, str):
                valid.append((e, etype, fitted[1]))
        late = [(e, etype, p) for e, etype, p in valid if _known(etype, e) > ts(e.occurred_at)
                and p]
        out: set[tuple[str, str]] = set()
        for e, etype, points in valid:
            if etype.overhang is None or etype.expiry is None or not points:
                continue
            expiry = counting_bounds(etype, e)[1]
            assert expiry is not None
            if any(o is not e and ot.domain == etype.domain and op * points > 0
                   and ts(o.occurred_at) < expiry <= _known(ot, o) for o, ot, op in late):
                out.add(e.key)
        return out

    def _insert(self, event: Event, rebuilding: bool) -> bool:
        """Apply ``event`` to the structures; False when only a rebuild can do it."""
        key = _order(event)
        in_order = self._last is None or key > self._last
        if event.supersedes is not None:
            target = (event.source, event.supersedes)
            self._superseded.add(target)
            withdrawn = self._items.get(target)
            if withdrawn is not None and not self._withdraw(withdrawn):
                return False
        if in_order:
            self._last = key
        if event.type == RETRACTION or event.key in self._superseded:
            return True
        etype = self.policy.event_types.get(event.type)
        if etype is None:
            return True
        fitted = etype.fit(event.attributes, occurred_at=event.occurred_at,
                           recorded_at=event.recorded_at)
        if isinstance(fitted, str):
            return True  # as the reference: it does not count (a fault says why there)
        if self._conditional and not in_order and self._conditions and \
                self._conditions[-1] > key:
            return False
        attrs, points = fitted
        item = _Item(event, etype, key, ts(event.occurred_at), _known(etype, event), points,
                     points)
        if etype.when is not None:
            if not in_order or self._now > item.o:
                return False
            self._advance(item.o)
            self._decide(item, attrs)
            bisect.insort(self._conditions, key)
        self._interval(item)
        if event.key in self._prewitnessed:
            item.witnessed = True
            item.end = self._overhang_end(item)
        if self._overhang and not self._witness(item):
            return False
        self._items[event.key] = item
        changed: dict[int, _Item] = {}
        for name in etype.scorecards:
            item.capped[name] = item.points
        for name in etype.scorecards:
            book = self._caps.get(name)
            if book is not None and item.points:
                changed.update((id(x), x) for x in book.insert(item))
        changed.pop(id(item), None)
        self._place(item)
        for other in changed.values():
            self._place(other)
        return True

    def _decide(self, item: _Item, attrs: Mapping[str, Any]) -> None:
        when = item.type.when
        assert when is not None
        if any(not self._available(n) for n in when.names - {"attrs"}):
            item.counted, item.points = False, 0.0
            return
        context = self._context(sorted(when.names - {"attrs"}), item.o, when.beyond_score)
        context["attrs"] = attrs
        if run_when(item.type, context) is not True:  # false, or a contained fault
            item.counted, item.points = False, 0.0

    def _interval(self, item: _Item) -> None:
        end, item.expiry = counting_bounds(item.type, item.event)
        item.end = end if item.expiry is None else min(end, item.expiry)

    def _overhang_end(self, item: _Item) -> float:
        etype = item.type
        assert etype.overhang is not None and item.expiry is not None
        retention = after(etype.retention, item.event.occurred_at)
        return min(retention, after(etype.overhang, at(item.expiry)))

    def _witness(self, item: _Item) -> bool:
        """Overhangs: does ``item`` keep counting, or keep another counting? False: rebuild."""
        domain = item.type.domain
        sign = math.copysign(1.0, item.base_points) if item.base_points else 0.0
        if item.type.overhang is not None and item.expiry is not None and sign:
            expiry = item.expiry
            for other in self._late.get(domain, ()):
                if other.base_points * sign > 0 and other.o < expiry <= other.recorded:
                    item.witnessed = True
                    item.end = self._overhang_end(item)
                    break
            bisect.insort(self._expiring.setdefault(domain, []),
                          (expiry, next(self._tick), item))
        if item.recorded > item.o and sign:
            self._late.setdefault(domain, []).append(item)
            waiting = self._expiring.get(domain, [])
            start = bisect.bisect_right(waiting, (item.o, math.inf))
            for expiry, _, other in waiting[start:]:
                if expiry > item.recorded:
                    break
                if other is item or other.witnessed or other.base_points * sign <= 0:
                    continue
                if self._now >= other.end and self._conditional:
                    return False
                other.witnessed = True
                other.end = self._overhang_end(other)
                if other.event.key in self._items:
                    self._place(other)
        return True

    def _withdraw(self, item: _Item) -> bool:
        """Remove a withdrawn or corrected entry; False when only a rebuild can."""
        if self._conditions and self._conditions[-1] > item.key:
            return False
        if self._overhang and item.recorded > item.o and any(
                other.witnessed for _, _, other in self._expiring.get(item.type.domain, ())):
            return False
        if self._overhang and item.type.overhang is not None:
            waiting = self._expiring.get(item.type.domain, [])
            waiting[:] = [w for w in waiting if w[2] is not item]
        late = self._late.get(item.type.domain)
        if late is not None and item in late:
            late.remove(item)
        self._unplace(item)
        del self._items[item.event.key]
        changed: dict[int, _Item] = {}
        for name in item.type.scorecards:
            book = self._caps.get(name)
            if book is not None and item.points:
                changed.update((id(x), x) for x in book.remove(item))
        for other in changed.values():
            self._place(other)
        return True

    # -- sums ----------------------------------------------------------------------------------

    def _values(self, item: _Item) -> dict[str, tuple[float, float]]:
        """What ``item`` adds to each sink, and until when: ``{sink: (value, exit)}``."""
        out: dict[str, tuple[float, float]] = {}
        if not item.counted:
            return out
        policy = self.policy
        for name in self._sinks_for[item.type.name]:
            if name in policy.scorecards:
                out[name] = (item.capped[name], item.end)
                continue
            metric = policy.metrics[name]
            value = item.capped[metric.scorecard] if metric.scorecard else item.points
            if (metric.sign is Sign.NEGATIVE and value >= 0) or (
                    metric.sign is Sign.POSITIVE and value <= 0):
                continue
            exit_ = item.end
            if metric.window is not None:
                exit_ = min(exit_, after(metric.window, item.event.occurred_at))
            out[name] = (value, exit_)
        return out

    def _decays(self, item: _Item, sink: str) -> bool:
        if item.type.half_life is None:
            return False
        metric = self.policy.metrics.get(sink)
        return metric is None or metric.value is MetricValue.CURRENT

    def _add(self, item: _Item, sink: str, value: float, step: int) -> None:
        acc = self._sinks[sink]
        acc.count += step
        hl = item.type.half_life
        if hl is None or not self._decays(item, sink):
            acc.static += step * value
            return
        if self._landmark is None:
            self._landmark = item.o
        elif step > 0 and (item.o - self._landmark) / hl > _REBASE:
            self._rebase(item.o)
        landmark = self._landmark
        term = value * math.exp(LN2 * (item.o - landmark) / hl)
        left = acc.live.get(hl, 0) + step
        acc.live[hl] = left
        if not left:
            acc.forward[hl] = 0.0  # nothing left: no rounding residue either
            return
        total = acc.forward.get(hl, 0.0) + step * term
        if step < 0 and abs(term) > _CANCELLATION * abs(total):
            total = self._forward(sink, hl)  # most digits cancelled: sum the live ones again
        acc.forward[hl] = total

    def _forward(self, sink: str, hl: float) -> float:
        """The forward sum of ``sink`` for half-life ``hl``, from the live entries."""
        landmark = self._landmark or 0.0
        return math.fsum(value * math.exp(LN2 * (item.o - landmark) / hl)
                         for item in self._items.values() if item.type.half_life == hl
                         for name, value in item.held.items()
                         if name == sink and self._decays(item, sink))

    def _rebase(self, landmark: float) -> None:
        self._landmark = landmark
        for acc in self._sinks.values():
            acc.forward = {}
        for item in self._items.values():
            hl = item.type.half_life
            if hl is None:
                continue
            for sink, value in item.held.items():
                if self._decays(item, sink):
                    acc = self._sinks[sink]
                    acc.forward[hl] = acc.forward.get(hl, 0.0) + value * math.exp(
                        LN2 * (item.o - landmark) / hl)

    def _place(self, item: _Item) -> None:
        """(Re)put ``item``'s contributions into the sinks it counts in now."""
        self._unplace(item)
        item.version += 1
        for sink, (value, exit_) in self._values(item).items():
            if exit_ <= self._now:
                continue
            self._add(item, sink, value, 1)
            item.held[sink] = value
            heapq.heappush(self._heap, (exit_, next(self._tick), item, item.version, sink))

    def _unplace(self, item: _Item) -> None:
        while item.held:
            sink, value = item.held.popitem()
            self._add(item, sink, value, -1)

    def _advance(self, t: float) -> None:
        """Remove every contribution that stops at or before ``t``."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            _, _, item, version, sink = heapq.heappop(heap)
            if version == item.version and sink in item.held:
                self._add(item, sink, item.held.pop(sink), -1)
        self._now = max(self._now, t)

    # -- reading -------------------------------------------------------------------------------

    def _context(self, names: Iterable[str], t: float,
                 full: Collection[str] | None) -> dict[str, Any]:
        policy = self.policy
        out: dict[str, Any] = {}
        landmark = self._landmark or 0.0
        for name in names:
            if not self._available(name):
                continue
            sink = self._sinks[name]
            if name in policy.scorecards:
                card = policy.scorecards[name]
                out[name] = scorecard_value(card, card.clamp(sink.value(t, landmark, card.base)),
                                            t, full is None or name in full)
            elif policy.metrics[name].aggregate is Aggregate.COUNT:
                out[name] = sink.count
            else:
                out[name] = sink.value(t, landmark)
        return out

    def read(self, valid_at: datetime) -> Reading:
        """Scores, tiers, metrics and stateless measures at ``valid_at``.

        Raises :class:`~trustledger.errors.InputError` for a naive ``valid_at``, one
        before the policy's ``effective_from``, or one before the latest applied event's
        ``occurred_at`` (evaluate the past with :func:`~trustledger.engine.evaluate`).
        """
        policy = self.policy
        check_moments(policy, valid_at)
        v = ts(valid_at)
        if v < self._latest_o:
            raise InputError(f"valid_at {valid_at.isoformat()} is before the latest event "
                             f"({at(self._latest_o).isoformat()}); incremental state reads "
                             "the present, evaluate() reads the past")
        if v < self._now:
            self._rebuild()
        self._advance(v)
        scores: dict[str, float | None] = {}
        totals: dict[str, float | None] = {}
        tiers: dict[str, str | None] = {}
        landmark = self._landmark or 0.0
        for name, card in policy.scorecards.items():
            if not self._available(name):
                scores[name] = totals[name] = tiers[name] = None
                continue
            total = self._sinks[name].value(v, landmark, card.base)
            score = card.clamp(total)
            tier = card.tier_at(score, v)
            scores[name], totals[name] = score, total
            tiers[name] = tier[1].name if tier else None
        metrics = self._context(policy.metrics, v, ())
        metric_values: dict[str, float | int | None] = {
            name: metrics.get(name) for name in policy.metrics}
        measures = self._measures(v)
        replay = tuple(n for n in policy.measures if n not in self._stateless)
        return Reading(policy.hash, valid_at, scores, totals, tiers, metric_values, measures,
                       replay)

    def _measures(self, v: float) -> dict[str, bool]:
        policy = self.policy
        wanted = [m for name, m in policy.measures.items() if name in self._stateless]
        if not wanted:
            return {}
        full = frozenset().union(*(m.condition.beyond_score for m in wanted))
        inputs = sorted({n for m in wanted for n in (*m.metrics, *m.scorecards)})
        context = self._context(inputs, v, full)
        return measure_states(wanted, context)

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A plain, JSON-serialisable snapshot (restore with :meth:`from_snapshot`).

        It holds the applied events and the derived state (sums, landmark, per-entry
        caps and ends), so restoring evaluates no points, condition or cap again.
        """
        items = []
        for key, event in self._events.items():
            item = self._items.get(key)
            record: dict[str, Any] = {"event": _event_record(event)}
            if item is not None:
                record.update(base_points=item.base_points, points=item.points,
                              counted=item.counted, capped=item.capped, expiry=item.expiry,
                              end=_finite(item.end), witnessed=item.witnessed, held=item.held)
            items.append(record)
        return {
            "format": SNAPSHOT_FORMAT, "policy_hash": self.policy.hash,
            "opt_ins": sorted(self.opt_ins), "landmark": self._landmark,
            "now": _finite(self._now),
            "last": list(self._last) if self._last is not None else None,
            "sinks": {name: {"static": s.static, "count": s.count,
                             "forward": [[hl, a] for hl, a in s.forward.items()],
                             "live": [[hl, n] for hl, n in s.live.items()]}
                      for name, s in self._sinks.items()},
            "caps": {name: book.dump() for name, book in self._caps.items()},
            "items": items,
        }

    @classmethod
    def from_snapshot(cls, policy: CompiledPolicy, data: Mapping[str, Any]) -> SubjectState:
        """Restore a :meth:`snapshot` taken under the same policy version."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise InputError(f"not a {SNAPSHOT_FORMAT} snapshot")
        if data.get("policy_hash") != policy.hash:
            raise InputError(f"snapshot was taken under policy {data.get('policy_hash')}, "
                             f"not {policy.hash}")
        state = cls(policy, data["opt_ins"])
        for record in data["items"]:
            event = _event_from_record(record["event"])
            state._events[event.key] = event
            state._subject = event.subject
            state._latest_o = max(state._latest_o, ts(event.occurred_at))
            if event.supersedes is not None:
                state._superseded.add((event.source, event.supersedes))
            if "points" not in record:
                continue
            etype = policy.event_types[event.type]
            base = float(record["base_points"])
            end = record["end"]
            item = _Item(event, etype, _order(event), ts(event.occurred_at),
                         _known(etype, event), base, float(record["points"]),
                         bool(record["counted"]), dict(record["capped"]), record["expiry"],
                         INF if end is None else float(end), bool(record["witnessed"]),
                         dict(record["held"]))
            state._items[event.key] = item
            if etype.when is not None:
                state._conditions.append(item.key)
            sign = math.copysign(1.0, base) if base else 0.0
            if item.recorded > item.o and sign:
                state._late.setdefault(etype.domain, []).append(item)
            if etype.overhang is not None and item.expiry is not None and sign:
                state._expiring.setdefault(etype.domain, []).append(
                    (item.expiry, next(state._tick), item))
            for sink in item.held:
                exit_ = state._values(item)[sink][1]
                state._heap.append((exit_, next(state._tick), item, item.version, sink))
        heapq.heapify(state._heap)
        state._conditions.sort()
        for waiting in state._expiring.values():
            waiting.sort(key=lambda w: (w[0], w[1]))
        state._landmark = data["landmark"]
        state._now = -INF if data["now"] is None else float(data["now"])
        state._last = tuple(data["last"]) if data["last"] is not None else None
        for name, s in data["sinks"].items():
            state._sinks[name] = _Sink(float(s["static"]), int(s["count"]),
                                       {float(hl): float(a) for hl, a in s["forward"]},
                                       {float(hl): int(n) for hl, n in s["live"]})
        for name, dumped in data["caps"].items():
            state._caps[name].load(dumped, state._items)
        return state


def measure_states(measures: Iterable[CompiledMeasure], context: dict[str, Any]) -> dict[str, bool]:
    """Stateless measures' states from their inputs' values at one moment.

    ``context`` holds each available metric and scorecard (as a CEL map); a measure that
    reads one that is missing (no consent) is not in force. Measures come in dependency
    order, so each one's condition sees the states of those before it.
    """
    shared = cel.Context(context)
    out: dict[str, bool] = {}
    for m in measures:
        blocked = any(n not in context for n in (*m.scorecards, *m.metrics))
        state = False if blocked else m.condition.run_bool(shared)
        out[m.name] = state
        shared.add_variable(m.name, state)
    return out


class _CapBook:
    """One scorecard's caps: allowance used per period, entries per period in order."""

    def __init__(self, card: CompiledScorecard) -> None:
        self.card = card
        self.used: dict[tuple[int, tuple[int, int]], float] = {}
        # (direction, cap index, period) -> entries in order; direction -> all, in order
        self.periods: dict[tuple[bool, int, tuple[int, int]], list[tuple[OrderKey, _Item]]] = {}
        self.rows: dict[bool, list[tuple[OrderKey, _Item]]] = {True: [], False: []}
        self.multiple = {
            gains: sum((c.applies_to is CapDirection.GAINS) == gains for c in card.caps) > 1
            for gains in (True, False)
        }

    def _caps(self, item: _Item) -> list[tuple[int, tuple[int, int]]]:
        gains = item.points > 0
        return [(i, cap.period_key(at(item.o))) for i, cap in enumerate(self.card.caps)
                if item.type.name not in cap.exempt
                and (cap.applies_to is CapDirection.GAINS) == gains]

    def _amount(self, item: _Item, keys: list[tuple[int, tuple[int, int]]]) -> None:
        amount = abs(item.points)
        for i, period in keys:
            room = max(0.0, self.card.caps[i].max - self.used.get((i, period), 0.0))
            amount = min(amount, room)
        for key in keys:
            self.used[key] = self.used.get(key, 0.0) + amount
        item.capped[self.card.name] = math.copysign(amount, item.points)

    def insert(self, item: _Item) -> list[_Item]:
        """Add a counted entry; the entries whose capped points may have changed."""
        keys = self._caps(item)
        if not keys:
            item.capped[self.card.name] = item.points
            return [item]
        gains = item.points > 0
        rows = self.rows[gains]
        entry = (item.key, item)
        last = not rows or rows[-1][0] < item.key
        bisect.insort(rows, entry, key=lambda r: r[0])
        for i, period in keys:
            group = self.periods.setdefault((gains, i, period), [])
            if not self.multiple[gains]:
                last = not group or group[-1][0] < item.key
            bisect.insort(group, entry, key=lambda r: r[0])
        if last:
            self._amount(item, keys)
            return [item]
        return self._recompute(gains, keys)

    def remove(self, item: _Item) -> list[_Item]:
        """Remove an entry; the entries whose capped points may have changed."""
        keys = self._caps(item)
        if not keys:
            return []
        gains = item.points > 0
        self.rows[gains] = [r for r in self.rows[gains] if r[1] is not item]
        for i, period in keys:
            group = self.periods[(gains, i, period)]
            group[:] = [r for r in group if r[1] is not item]
        return [x for x in self._recompute(gains, keys) if x is not item]

    def _recompute(self, gains: bool, keys: list[tuple[int, tuple[int, int]]]) -> list[_Item]:
        if self.multiple[gains]:
            caps = [i for i, c in enumerate(self.card.caps)
                    if (c.applies_to is CapDirection.GAINS) == gains]
            self.used = {k: v for k, v in self.used.items() if k[0] not in caps}
            rows = self.rows[gains]
        else:
            ((i, period),) = keys
            self.used.pop((i, period), None)
            rows = self.periods[(gains, i, period)]
        changed = []
        for _, other in rows:
            before = other.capped.get(self.card.name)
            self._amount(other, self._caps(other))
            if other.capped[self.card.name] != before:
                changed.append(other)
        return changed

    def dump(self) -> list[list[Any]]:
        """The allowance used, as ``[cap, year, number, used]`` rows."""
        return [[i, p[0], p[1], v] for (i, p), v in self.used.items()]

    def load(self, rows: list[list[Any]], items: Mapping[tuple[str, str], _Item]) -> None:
        """Restore :meth:`dump` and re-index the entries."""
        self.used = {(int(i), (int(y), int(n))): float(v) for i, y, n, v in rows}
        for item in sorted(items.values(), key=lambda x: x.key):
            if self.card.name not in item.type.scorecards or not item.points:
                continue
            keys = self._caps(item)
            if not keys:
                continue
            gains = item.points > 0
            self.rows[gains].append((item.key, item))
            for i, period in keys:
                self.periods.setdefault((gains, i, period), []).append((item.key, item))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _event_record(event: Event) -> dict[str, Any]:
    return {"source": event.source, "source_event_id": event.source_event_id,
            "subject": event.subject, "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "recorded_at": event.recorded_at.isoformat(), "attributes": dict(event.attributes),
            "supersedes": event.supersedes, "seq": event.seq}


def _event_from_record(record: Mapping[str, Any]) -> Event:
    return Event(record["source"], record["source_event_id"], record["subject"], record["type"],
                 datetime.fromisoformat(record["occurred_at"]),
                 datetime.fromisoformat(record["recorded_at"]), dict(record["attributes"]),
                 record["supersedes"], record["seq"])


__all__ = ["SNAPSHOT_FORMAT", "Reading", "SubjectState", "measure_states",
           "stateless_measures"]
