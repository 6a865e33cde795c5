"""Measures over time: the state machine of privileges and restrictions.

A measure's state at ``valid_at`` can depend on its past (a minimum holding
time, a prerequisite given with notice), so the engine replays the subject's
history at *decision instants*: every instant an input of a measure changes
discretely (an event occurs, stops counting, or leaves a metric's window; a
tier threshold changes; a holding time or a notice period ends), and
``valid_at`` itself. Between two instants inputs change only by decay, which
is continuous: when a condition's value differs just before the next instant,
the change is located by bisection to the second, so a privilege regained by
decay has the same ``since`` whatever ``valid_at`` is asked.

Decisions are taken on what was *known*: an event enters the measures' history
when it occurred and became known (:meth:`CompiledEventType.known_instant`: its
reported date, else its ``recorded_at``), i.e. at ``max(occurred_at, known)`` —
or at ``valid_at`` if that is earlier, so the decision at ``valid_at`` sees what
the score sees. A notice is thus given, and a prerequisite judged, when the facts
became known, not at the offence date.

Transitions at an instant ``t`` (measures in dependency order):

* off → in force when the condition holds; with ``requires: {measure: p,
  notice: N}`` only if ``p`` has been in force since ``t - N`` at the latest
  (without ``notice``: since before ``t``). Otherwise the measure is *set back*:
  with ``set_back: {scorecard: c, to: V}`` the points of ``c`` are set to ``V``
  (when worse than ``V``), ``p`` is put in force from ``t``, and the conditions of
  the instant are decided again on the new points; without ``set_back``, ``p`` is
  put in force from ``t`` and the measure waits (state ``set_back``): it applies on
  the first new event from ``t + N`` on at which its condition holds;
* in force → off when the condition fails, but not before ``since + hold``;
* set back → off when the condition fails.

Before the first event, a measure is in force if its condition holds for a
subject with no events; its ``since`` is then ``None`` (from the start).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from trustledger.cel_runtime import cel
from trustledger.engine.history import INF, LN2, Entry, History, SetBack, at, scorecard_value
from trustledger.engine.history import after as _after
from trustledger.engine.history import before as _before
from trustledger.policy.compiled import CompiledMeasure
from trustledger.policy.models import Aggregate, MetricValue, Sign

_START = -INF
_REBASE = 64.0
"""Move the forward-decay landmark once an exponent passes 2^64 (far from overflow)."""


@dataclass(slots=True)
class Track:
    """One measure's state while the history is replayed."""

    raw: bool = False
    blocked: tuple[str, ...] = ()
    on: bool = False
    hold_end: float | None = None
    set_back: bool = False
    set_back_since: float | None = None
    notice_end: float | None = None
    effective: bool = False
    effective_since: float | None = None
    forced_by: str | None = None
    points_set_back: SetBack | None = None
    """The latest set-back of points this measure caused (``requires.set_back``)."""


def replay(history: History, valid_at: float) -> dict[str, Track]:
    """Replay the measures of the history's policy up to ``valid_at``; their final tracks."""
    policy = history.policy
    measures = list(policy.measures.values())
    tracks = {m.name: Track() for m in measures}
    if not measures:
        return tracks
    inputs = sorted({n for m in measures for n in (*m.metrics, *m.scorecards)})
    history.set_backs.clear()
    instants, continuous = _instants(history, inputs, valid_at)
    runner = _Runner(history, measures, tracks, inputs, valid_at)
    runner.process(_START)
    previous = _START
    heap = sorted(instants | {valid_at})
    heapq.heapify(heap)
    while heap:
        t = heapq.heappop(heap)
        if t <= previous or t > valid_at:
            continue
        if continuous and previous != _START:
            previous = runner.follow_decay(previous, t)
        for extra in runner.process(t):
            if extra <= valid_at:
                heapq.heappush(heap, extra)
        previous = t
    return tracks


def start(entry: Entry, valid_at: float) -> float:
    """When an entry enters the measures' history: it occurred and is known (by ``valid_at``)."""
    return min(max(entry.o, entry.known), valid_at)


def _instants(history: History, inputs: list[str], valid_at: float) -> tuple[set[float], bool]:
    policy = history.policy
    instants: set[float] = set()
    continuous = False
    for name in inputs:
        card = policy.scorecards.get(name)
        if card is not None and card.model is not None:
            # A statistical score changes when one of its metrics does.
            for metric_name in card.model.metrics:
                more, decays = _instants(history, [metric_name], valid_at)
                instants |= more
                continuous = continuous or decays
            for tier in card.tiers:
                instants.update(start for start, _ in tier.thresholds[1:])
        elif name in policy.scorecards:
            for entry in history.by_scorecard[name]:
                if entry.counted and entry.capped[name] != 0.0:
                    instants.update((start(entry, valid_at), entry.end))
                    continuous = continuous or entry.half_life is not None
            for tier in policy.scorecards[name].tiers:
                instants.update(start for start, _ in tier.thresholds[1:])
        else:
            metric = policy.metrics[name]
            for entry, window_end in history.by_metric[name]:
                if entry.counted:
                    instants.update((start(entry, valid_at), entry.end, window_end))
                    if metric.aggregate is Aggregate.SUM and metric.value is MetricValue.CURRENT:
                        continuous = continuous or entry.half_life is not None
    return {t for t in instants if t <= valid_at and math.isfinite(t)}, continuous


class _Inputs:
    """The measures' inputs kept up to date as the replay moves forward in time.

    Counts and sums of non-decaying points change only when an entry starts or
    stops counting (O(1) per change). Decaying points are kept per half-life as a
    forward-decay sum ``A = Σ v·2^((o - L)/h)`` read as ``A·2^(-(t - L)/h)``, the
    landmark ``L`` moving forward before the exponents get large. This is the
    closed form of :meth:`History.score` and :meth:`History.metric` summed
    incrementally; the decision at ``valid_at`` itself uses the direct sums, so it
    sees exactly the reported values.
    """

    def __init__(self, history: History, names: list[str], full: frozenset[str],
                 valid_at: float) -> None:
        policy = history.policy
        self.history = history
        self.full = full
        self.names = [n for n in names if history.available(n)]
        self.static = dict.fromkeys(self.names, 0.0)
        self.count = dict.fromkeys(self.names, 0)
        self.forward: dict[str, dict[float, float]] = {n: {} for n in self.names}
        self.live: dict[str, dict[int, tuple[Entry, float]]] = {n: {} for n in self.names}
        self.landmark = 0.0
        changes: list[tuple[float, int, str, Entry, float]] = []
        for name in self.names:
            if name in policy.scorecards:
                for entry in history.by_scorecard[name]:
                    value = entry.capped[name]
                    begin = start(entry, valid_at)
                    if entry.counted and value != 0.0 and begin < entry.end:
                        changes += [(begin, 1, name, entry, value),
                                    (entry.end, -1, name, entry, value)]
                continue
            metric = policy.metrics[name]
            for entry, window_end in history.by_metric[name]:
                if not entry.counted:
                    continue
                value = entry.capped[metric.scorecard] if metric.scorecard else entry.points
                if (metric.sign is Sign.NEGATIVE and value >= 0) or (
                        metric.sign is Sign.POSITIVE and value <= 0):
                    continue
                begin, leaves = start(entry, valid_at), min(entry.end, window_end)
                if begin < leaves:
                    changes += [(begin, 1, name, entry, value), (leaves, -1, name, entry, value)]
        changes.sort(key=lambda c: c[0])
        self.changes = changes
        self.starts = frozenset(c[0] for c in changes if c[1] > 0)
        """The instants a new event enters an input."""
        self.pending: list[tuple[float, str, float]] = []
        self.position = 0
        if changes:
            self.landmark = min(c[3].o for c in changes)

    def _decays(self, name: str, entry: Entry) -> bool:
        metric = self.history.policy.metrics.get(name)
        return entry.half_life is not None and not (
            metric is not None and metric.value is MetricValue.ORIGINAL)

    def adjust(self, name: str, value: float, end: float) -> None:
        """Add a set-back's ``value`` to scorecard ``name`` from now until ``end``."""
        self.static[name] += value
        heapq.heappush(self.pending, (end, name, value))

    def total(self, name: str, t: float) -> float:
        """A scorecard's unclamped total (without its base) at ``t``, as things stand."""
        total = self.static[name]
        for hl, acc in self.forward[name].items():
            total += acc * math.exp(-LN2 * (t - self.landmark) / hl)
        return total

    def advance(self, t: float, inclusive: bool) -> None:
        """Apply every change at or before ``t`` (strictly before, unless ``inclusive``)."""
        pending = self.pending
        while pending and (pending[0][0] < t or (pending[0][0] == t and inclusive)):
            _, name, value = heapq.heappop(pending)
            self.static[name] -= value
        changes = self.changes
        while self.position < len(changes):
            when, step, name, entry, value = changes[self.position]
            if when > t or (when == t and not inclusive):
                break
            self.position += 1
            self.count[name] += step
            if not self._decays(name, entry):
                self.static[name] += step * value
                continue
            hl = entry.half_life
            assert hl is not None
            if step > 0:
                if (entry.o - self.landmark) / hl > _REBASE:
                    self._rebase(entry.o)
                self.live[name][id(entry)] = (entry, value)
            else:
                self.live[name].pop(id(entry), None)
            group = self.forward[name]
            group[hl] = group.get(hl, 0.0) + step * value * math.exp(
                LN2 * (entry.o - self.landmark) / hl)

    def _rebase(self, landmark: float) -> None:
        self.landmark = landmark
        for name, live in self.live.items():
            group: dict[float, float] = {}
            for entry, value in live.values():
                hl = entry.half_life
                assert hl is not None
                group[hl] = group.get(hl, 0.0) + value * math.exp(
                    LN2 * (entry.o - landmark) / hl)
            self.forward[name] = group

    def context(self, t: float) -> dict[str, Any]:
        """The CEL variables at ``t`` from the current state (no change in between)."""
        policy = self.history.policy
        out: dict[str, Any] = {}
        age = t - self.landmark
        for name in self.names:
            total = self.static[name]
            for hl, acc in self.forward[name].items():
                total += acc * math.exp(-LN2 * age / hl)
            if name in policy.scorecards:
                card = policy.scorecards[name]
                # A statistical score is the model's points for its metrics at t, read
                # from the history (the reference path; it has no events of its own).
                score = self.history.score(card, t) if card.model is not None else \
                    card.clamp(card.base + total)
                out[name] = scorecard_value(card, score, t, name in self.full)
            elif policy.metrics[name].aggregate is Aggregate.COUNT:
                out[name] = self.count[name]
            else:
                out[name] = total
        return out


class _Runner:
    def __init__(self, history: History, measures: list[CompiledMeasure],
                 tracks: dict[str, Track], inputs: list[str], valid_at: float) -> None:
        self.history = history
        self.measures = measures
        self.tracks = tracks
        self.inputs = inputs
        self.full = frozenset().union(*(m.condition.beyond_score for m in measures))
        self.state = _Inputs(history, inputs, self.full, valid_at)
        self.by_name = {m.name: m for m in measures}
        self.valid_at = valid_at
        self.dependants: dict[str, list[str]] = {}
        for m in measures:
            if m.requires is not None:
                self.dependants.setdefault(m.requires, []).append(m.name)
        self.last_raw: tuple[bool, ...] = ()

    def raws(self, t: float) -> tuple[bool, ...]:
        """Every measure's condition at ``t`` (or just before the next change) as things stand."""
        context = self.state.context(t)
        shared = self._shared(context)
        return tuple(self._condition(m, context, shared)[0] for m in self.measures)

    def _shared(self, context: dict[str, Any]) -> cel.Context:
        # One CEL context for all conditions at an instant: converting values into CEL
        # costs more than running a condition.
        shared = cel.Context(context)
        for name, track in self.tracks.items():
            shared.add_variable(name, track.effective)
        return shared

    @staticmethod
    def _condition(m: CompiledMeasure, context: dict[str, Any],
                   shared: cel.Context) -> tuple[bool, tuple[str, ...]]:
        blocked = tuple(n for n in (*m.scorecards, *m.metrics) if n not in context)
        if blocked:
            return False, blocked
        return m.condition.run_bool(shared), ()

    def follow_decay(self, previous: float, t: float) -> float:
        """Process every decay-driven change of a condition in ``(previous, t)``."""
        self.state.advance(t, inclusive=False)
        while self.raws(t) != self.last_raw:
            low, high = previous, t
            while high - low > 1.0:
                mid = low + math.floor((high - low) / 2.0)
                if mid <= low:
                    break
                if self.raws(mid) != self.last_raw:
                    high = mid
                else:
                    low = mid
            if high >= t:
                break
            self.process(high)
            previous = high
        return previous

    def process(self, t: float) -> list[float]:
        """Apply the transitions at ``t``; returns new instants (hold ends, set-back ends).

        A set-back of points changes the inputs at ``t`` itself, so the instant is
        decided again on the new points (each measure sets back at most once per
        instant, so this ends).
        """
        self.state.advance(t, inclusive=True)
        before = {name: (tr.effective, tr.effective_since) for name, tr in self.tracks.items()}
        later: list[float] = []
        for _ in range(len(self.measures) + 1):
            if not self._pass(t, before, later):
                break
        for m in self.measures:
            track = self.tracks[m.name]
            track.forced_by = self._forced(m.name)
            effective = track.on or track.forced_by is not None
            if effective != before[m.name][0]:
                track.effective_since = None if t == _START else t
            track.effective = effective
        return later

    def _pass(self, t: float, before: dict[str, tuple[bool, float | None]],
              later: list[float]) -> bool:
        """Decide every measure at ``t`` once; True when a set-back changed the points."""
        if t == self.valid_at:
            context = self.history.context(self.inputs, t, self.full)
        else:
            context = self.state.context(t)
        shared = self._shared(context)
        raws = []
        for m in self.measures:
            track = self.tracks[m.name]
            track.raw, track.blocked = self._condition(m, context, shared)
            raws.append(track.raw)
            if self._transition(m, track, t, before, later):
                return True
            track.effective = track.on or self._forced(m.name) is not None
            shared.add_variable(m.name, track.effective)
        self.last_raw = tuple(raws)
        return False

    def _forced(self, name: str) -> str | None:
        for dependant in self.dependants.get(name, ()):
            if self.tracks[dependant].set_back:
                return dependant
        return None

    def _transition(self, m: CompiledMeasure, track: Track, t: float,
                    before: dict[str, tuple[bool, float | None]], later: list[float]) -> bool:
        raw = track.raw
        if t == _START:
            track.on = raw
            return False
        if track.on:
            if not raw and (track.hold_end is None or t >= track.hold_end):
                track.on, track.hold_end = False, None
            return False
        if track.set_back:
            if not raw:
                track.set_back, track.set_back_since, track.notice_end = False, None, None
            elif track.notice_end is not None and t >= track.notice_end \
                    and track.set_back_since is not None and t > track.set_back_since \
                    and t in self.state.starts:
                # Reached again by a new event once the notice has run: not by itself.
                track.set_back, track.set_back_since, track.notice_end = False, None, None
                self._switch_on(m, track, t, later)
            return False
        if not raw:
            return False
        if m.requires is not None and not self._given(m, t, before):
            if m.set_back is not None:
                if track.points_set_back is not None and track.points_set_back.at == t:
                    return False  # already set back at this instant: stays off
                self._set_back_points(m, track, t, later)
                return True
            track.set_back, track.set_back_since = True, t
            track.notice_end = _after(m.notice, at(t)) if m.notice is not None else t
            return False
        self._switch_on(m, track, t, later)
        return False

    @staticmethod
    def _given(m: CompiledMeasure, t: float,
               before: dict[str, tuple[bool, float | None]]) -> bool:
        """Whether ``m``'s prerequisite was in force before ``t`` (for its notice)."""
        assert m.requires is not None
        was, since = before[m.requires]
        if not was:
            return False
        if since is None:
            return True
        if m.notice is None:
            return since < t
        return since <= _before(m.notice, at(t))

    def _set_back_points(self, m: CompiledMeasure, track: Track, t: float,
                         later: list[float]) -> None:
        assert m.set_back is not None and m.requires is not None
        name, to = m.set_back
        history = self.history
        card = history.policy.scorecards[name]
        if t == self.valid_at:
            total = history.score(card, t)
        else:
            total = card.base + self.state.total(name, t)
        points = to - total if (total - to) * card.adverse_sign > 0 else 0.0
        ends = [x.end for x in history.by_scorecard[name]
                if x.counted and card.is_adverse(x.capped[name])
                and start(x, self.valid_at) <= t < x.end]
        end = max(ends, default=INF)
        item = SetBack(card=name, at=t, points=points, end=end, to=to, measure=m.name,
                       prerequisite=m.requires)
        track.points_set_back = item
        if points != 0.0:
            history.set_backs.append(item)
            if name in self.state.static:
                self.state.adjust(name, points, end)
            if math.isfinite(end):
                later.append(end)
        prerequisite = self.tracks[m.requires]
        if not prerequisite.on:
            prerequisite.set_back, prerequisite.set_back_since = False, None
            prerequisite.notice_end = None
            self._switch_on(self.by_name[m.requires], prerequisite, t, later)

    def _switch_on(self, m: CompiledMeasure, track: Track, t: float, later: list[float]) -> None:
        track.on = True
        if m.hold is not None:
            track.hold_end = _after(m.hold, at(t))
            later.append(track.hold_end)
