"""A subject's evaluation maintained across reads: built once, read at any later moment.

:func:`~trustledger.engine.evaluate` builds the subject's history (knowledge,
supersession, points, counting intervals, caps, ``when`` conditions) and replays the
measures over every decision instant up to ``valid_at``, for every call.
:class:`MaintainedEvaluation` does the first once per set of events and keeps the
second as a *resumable* replay: the measures' state machine has processed every
decision instant before the latest read, and a read at a later ``t`` processes only
the instants in between (expiries, window exits, holding times ending, decay-driven
changes located by bisection), then decides ``t`` itself on a copy, as the reference
decides its ``valid_at``. The scores, contributions, metrics and reasons at ``t`` are
then read from the history's entries (sums over the subject's counted entries: no
rebuild, no replay).

A read equals :func:`evaluate` of the same events at ``t`` (no ``known_at``) exactly —
the same operations in the same order on the same entries, so every float is the
same, and every reason, ``since`` and ``held_until`` (a property test checks it).
That holds when (:meth:`MaintainedEvaluation.serves`):

* the policy has no set-back of points and no statistical scorecard
  (:func:`maintainable`): a set-back feeds back into the history (``evaluate``
  rebuilds it until the set-backs settle) and a statistical scorecard takes
  decision-time attributes;
* ``t`` is at or after every event's occurrence and the moment its fact became known
  (the history does not depend on ``valid_at`` then), and at or after the previous
  read (the replay only moves forward).

Otherwise the caller evaluates with :func:`evaluate` (or builds a new one). New
events, corrections, a dispute or a consent change make a new set of events: build a
new :class:`MaintainedEvaluation` (the next increment keeps the history itself
incremental).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

# The reference's own steps, so that a read is the reference's computation (one way to do
# each thing); they are private to evaluate and measures today.
from trustledger.engine.evaluate import (
    _contribution,
    _measure,
    _outcome,
    _scorecard,
    check_moments,
)
from trustledger.engine.events import Event
from trustledger.engine.history import INF, Entry, History, build_history, check_events, ts
from trustledger.engine.measures import _START, Track, _Inputs, _instants, _Runner
from trustledger.engine.reasons import measure_reasons, score_reasons
from trustledger.engine.result import MAX_REASONS, Evaluation, MeasureState, ScorecardResult
from trustledger.errors import InputError
from trustledger.policy.compiled import CompiledPolicy, CompiledScorecard


@dataclass(frozen=True, slots=True)
class Standing:
    """A subject's tiers and measure states at one moment: what a decision change is.

    ``tiers`` per scorecard (``None``: unavailable, or below every tier); ``states``
    per measure. ``scores``, the clamped score each tier was read from (``None``:
    unavailable), is carried along but is not part of the comparison: a score that moves
    within its tier is no decision change.
    """

    tiers: dict[str, str | None]
    states: dict[str, MeasureState]
    scores: dict[str, float | None] = field(compare=False)


class Declared(Protocol):
    """What a decision discloses: a purpose's scorecards and measures (``CompiledPurpose``)."""

    @property
    def scorecards(self) -> tuple[str, ...]:
        """The scorecards disclosed."""

    @property
    def measures(self) -> tuple[str, ...]:
        """The measures disclosed."""


def maintainable(policy: CompiledPolicy) -> bool:
    """Whether :class:`MaintainedEvaluation` can serve ``policy`` (see the module docstring).

    Not with a set-back of points (``requires.set_back``) or a statistical scorecard.
    """
    if policy.set_back_scorecards:
        return False
    return all(getattr(card, "model", None) is None for card in policy.scorecards.values())


class MaintainedEvaluation:
    """One subject's evaluation under one policy, for a fixed set of events and opt-ins.

    Build with the events (any order), read with :meth:`evaluation` at moments that
    :meth:`serves`; each read moves the measures' replay forward to it.
    """

    def __init__(self, policy: CompiledPolicy, events: Iterable[Event], built_at: datetime,
                 opt_ins: Collection[str] = ()) -> None:
        """Build the history of ``events`` (those occurred by ``built_at`` are the ones seen).

        Raises :class:`~trustledger.errors.InputError` for a policy that is not
        :func:`maintainable`, an unknown opt-in, or events :func:`evaluate` refuses.
        """
        if not maintainable(policy):
            raise InputError(f"policy {policy.name} sets back points or has a statistical "
                             "scorecard: evaluate it with trustledger.engine.evaluate")
        if built_at.tzinfo is None:
            raise InputError("built_at must be timezone-aware (UTC)")
        consented = frozenset(opt_ins)
        unknown = sorted(consented - set(policy.scorecards))
        if unknown:
            raise InputError(f"opt_ins names no scorecard of policy {policy.name}: "
                             f"{', '.join(unknown)}")
        items, _ = check_events(events)
        self.policy = policy
        self.opt_ins = consented
        self._items = items
        seqs = [e.seq for e in items if e.seq is not None]
        self._ledger_seq = max(seqs) if seqs else None
        self._subject = items[0].subject if items else None
        history = build_history(policy, items, built_at, None, consented, {})
        self.history: History = history
        b = ts(built_at)
        future = [e for e in items if e.occurred_at > built_at]
        self.horizon = max([b if future else -INF,
                            *(max(x.o, x.known) for x in history.entries)], default=-INF)
        """Reads before this moment are not served (an event not yet occurred or known)."""
        self._complete = not future
        self.partial = False
        """True when restored by :func:`trustledger.engine.compact.unpack`: the events that
        stopped counting are not kept, so :meth:`evaluation`'s contributions and event
        outcomes list only the entries still counting (everything else is complete)."""
        measures = list(policy.measures.values())
        self._inputs = sorted({n for m in measures for n in (*m.metrics, *m.scorecards)})
        tracks = {m.name: Track() for m in measures}
        self._runner: _Runner | None = None
        self._changes_left_out = False
        self._heap: list[float] = []
        self._continuous = False
        self._previous = _START
        self._read = -INF
        if measures:
            instants, self._continuous = _instants(history, self._inputs, INF)
            self._heap = sorted(instants)
            self._runner = _Runner(history, measures, tracks, self._inputs, INF)
            self._runner.process(_START)
        self._tracks = tracks

    @property
    def last_read(self) -> float:
        """POSIX seconds of the latest read (``-inf``: none yet); reads go forward from it."""
        return self._read

    @property
    def position(self) -> float:
        """POSIX seconds of the last decision instant the measures' replay processed for good."""
        return self._previous

    def serves(self, valid_at: datetime) -> bool:
        """Whether a read at ``valid_at`` equals :func:`evaluate` (see the module docstring)."""
        v = ts(valid_at)
        return self._complete and v >= self.horizon and v >= self._read

    def evaluation(self, valid_at: datetime, *, declared: Declared | None = None) -> Evaluation:
        """The evaluation at ``valid_at``: equal to :func:`evaluate` of the same events.

        With ``declared`` (a decision: a purpose's scorecards and measures), only those
        parts are read — each equal to :func:`evaluate`'s — and nothing else: no other
        scorecard or measure, no metric values and no event outcomes (the scorecards a
        declared measure's reasons cite are read, not returned). The measures' replay
        moves forward as for a full read, so later reads of either kind go on equal.

        Raises :class:`~trustledger.errors.InputError` when the read is not
        :meth:`serves` (evaluate that moment with :func:`evaluate`).
        """
        policy = self.policy
        if declared is None:
            wanted_cards: Collection[str] = policy.scorecards
            wanted_measures: Collection[str] = policy.measures
        else:
            unknown = sorted({*declared.scorecards} - set(policy.scorecards)
                             | {*declared.measures} - set(policy.measures))
            if unknown:
                raise InputError(f"declared parts name nothing in policy {policy.name}: "
                                 f"{', '.join(unknown)}")
            wanted_measures = frozenset(declared.measures)
            wanted_cards = frozenset(declared.scorecards).union(
                *(policy.measures[m].scorecards for m in wanted_measures))
        v, tracks = self._advance(valid_at)
        history = self.history
        # A decision shows each scorecard's score, tier and reasons: only the contributions
        # its reasons (and its measures' evidence) may cite are made (decision_scorecard).
        score = _scorecard if declared is None else decision_scorecard
        read = {name: score(history, card, v)
                for name, card in policy.scorecards.items() if name in wanted_cards}
        metrics: dict[str, float | None] = {} if declared is not None else {
            name: (history.metric(metric, v) if history.available(name) else None)
            for name, metric in policy.metrics.items()
        }
        labels = {name: m.label for name, m in policy.measures.items()}
        names = self._inputs if declared is None else sorted(
            {n for m in wanted_measures for n in (*policy.measures[m].metrics,
                                                  *policy.measures[m].scorecards)})
        context = history.context(names, v)
        for name, track in tracks.items():
            context[name] = track.effective
        contributions = {name: result.contributions for name, result in read.items()}
        measures = {
            name: _measure(m, tracks[name], measure_reasons(
                m, tracks[name], history, context, labels, contributions, v, {}))
            for name, m in policy.measures.items() if name in wanted_measures
        }
        scorecards = read if declared is None else {
            name: result for name, result in read.items() if name in declared.scorecards}
        return Evaluation(
            policy=policy.name, policy_hash=policy.hash, subject=self._subject,
            valid_at=valid_at, known_at=None, ledger_seq=self._ledger_seq,
            scorecards=scorecards, metrics=metrics, measures=measures,
            events=() if declared is not None else tuple(
                _outcome(entry, v) for entry in history.entries),
            attributes={},
        )

    def _advance(self, valid_at: datetime) -> tuple[float, dict[str, Track]]:
        """Move the read to ``valid_at``: its microseconds and the measures' tracks there."""
        check_moments(self.policy, valid_at)
        if not self.serves(valid_at):
            raise InputError(f"valid_at {valid_at.isoformat()} is before an event occurred "
                             "or became known, or before an earlier read: evaluate it with "
                             "trustledger.engine.evaluate")
        v = ts(valid_at)
        self._read = v
        return v, self._decide(v)

    def complete_changes(self) -> None:
        """Make the measures' input changes a restored state was left without.

        :func:`trustledger.engine.compact.unpack` restores the inputs' sums but not the
        list of changes still to come (every counted entry's start and end): a read with
        no decision instant between the last one processed and itself needs none. A read
        past one calls this first: the changes as the replay's own ``_Inputs`` makes
        them, those at or before the instant processed last already applied.
        """
        runner = self._runner
        if runner is None or not self._changes_left_out:
            return
        built = _Inputs(self.history, self._inputs, runner.full, INF)
        state = runner.state
        state.changes, state.starts = built.changes, built.starts
        state.position = sum(1 for c in built.changes if c[0] <= self._previous)
        self._changes_left_out = False

    def standing(self, valid_at: datetime) -> Standing:
        """Only the tiers, scores and measures' states at ``valid_at``, as :meth:`evaluation`.

        Equal to the ``tier`` and ``score`` of each scorecard and the ``state`` of each
        measure of :meth:`evaluation` (and so of :func:`evaluate`) at ``valid_at``, without the
        contributions, reasons and outcomes; the read moves forward as
        :meth:`evaluation`'s does. Raises :class:`~trustledger.errors.InputError` as
        :meth:`evaluation` does.
        """
        policy = self.policy
        v, tracks = self._advance(valid_at)
        history = self.history
        tiers: dict[str, str | None] = {}
        scores: dict[str, float | None] = {}
        for name, card in policy.scorecards.items():
            if not history.available(name):
                tiers[name] = scores[name] = None
                continue
            # The sum of _scorecard's contributions' points_now, in the same order.
            score = card.clamp(card.base + sum(
                (entry.capped.get(name, 0.0) * entry.decay(v) if entry.live_at(v) else 0.0)
                for entry in history.entries if entry.event.type in card.events))
            tier = card.tier_at(score, v)
            tiers[name], scores[name] = (tier[1].name if tier else None), score
        states = {name: _measure(m, tracks[name], ()).state
                  for name, m in policy.measures.items()}
        return Standing(tiers, states, scores)

    def _decide(self, v: float) -> dict[str, Track]:
        """The measures' tracks at ``v``: the replay moved to just before ``v``, then ``v``.

        The instants before ``v`` are processed for good, exactly as the reference
        replay processes them; ``v`` itself (where the reference uses the direct sums)
        is decided on a copy, so a later read processes the instants from here on as a
        replay up to that later moment would.
        """
        runner = self._runner
        if runner is None:
            return self._tracks
        heap = self._heap
        if self._changes_left_out and any(self._previous < t <= v for t in heap):
            self.complete_changes()
        while heap and heap[0] < v:
            t = heapq.heappop(heap)
            if t <= self._previous:
                continue
            if self._continuous and self._previous != _START:
                self._previous = runner.follow_decay(self._previous, t)
            for extra in runner.process(t):
                heapq.heappush(heap, extra)
            self._previous = t
        fork = _fork(runner, v)
        previous = self._previous
        if self._continuous and previous != _START:
            previous = fork.follow_decay(previous, v)
        if v > previous:
            fork.process(v)
        return fork.tracks


def decision_scorecard(history: History, card: CompiledScorecard, v: float) -> ScorecardResult:
    """A scorecard at ``v`` for a decision: :func:`evaluate`'s score, total, tier and reasons.

    Equal to the reference's ``_scorecard`` in everything a decision shows, but its
    ``contributions`` are only those a reason may cite: on each side (adverse,
    favourable), the counting ones at least as large (in absolute points now) as the
    :data:`~trustledger.engine.result.MAX_REASONS`-th largest, ties included. The
    reference's reasons (:func:`~trustledger.engine.reasons.score_reasons`, and a
    measure's evidence) take at most that many per side, largest first, so they pick
    from these exactly what they pick from all. The total adds the same points now in
    the same order, leaving out only exact zeros (which change no sum). Not for a policy
    that is not :func:`maintainable` (no statistical scorecard, no set-back).
    """
    name = card.name
    if not history.available(name):
        return ScorecardResult(name, False, None, None, None, (), ())
    nows: list[float] = []
    sides: tuple[list[tuple[float, Entry]], list[tuple[float, Entry]]] = ([], [])
    events = card.events
    for entry in history.entries:
        if entry.event.type not in events or not entry.live_at(v):
            continue
        # _contribution's points now, the same expression.
        now = entry.capped.get(name, 0.0) * entry.decay(v)
        if now != 0.0:
            nows.append(now)
            sides[0 if card.is_adverse(now) else 1].append((abs(now), entry))
    total = card.base + sum(nows)
    score = card.clamp(total)
    tier = card.tier_at(score, v)
    cited: set[int] = set()
    for side in sides:
        if len(side) > MAX_REASONS:
            least = sorted((size for size, _ in side), reverse=True)[MAX_REASONS - 1]
            cited.update(id(entry) for size, entry in side if size >= least)
        else:
            cited.update(id(entry) for _, entry in side)
    chosen = [x for x in history.entries if id(x) in cited]
    contributions = tuple(_contribution(x, name, v) for x in chosen)
    reasons = score_reasons(card, score, total, contributions,
                            {x.event.key: x for x in chosen}, v)
    return ScorecardResult(name, True, score, tier[1].name if tier else None, total,
                           contributions, reasons)


def _fork(runner: _Runner, valid_at: float) -> _Runner:
    """A copy of a replay in progress that may go on independently, deciding ``valid_at``."""
    fork = object.__new__(_Runner)
    fork.__dict__.update(runner.__dict__)
    fork.tracks = {name: replace(track) for name, track in runner.tracks.items()}
    state = object.__new__(type(runner.state))
    state.__dict__.update(runner.state.__dict__)
    state.static = dict(state.static)
    state.count = dict(state.count)
    state.forward = {name: dict(group) for name, group in state.forward.items()}
    state.live = {name: dict(group) for name, group in state.live.items()}
    state.pending = list(state.pending)
    fork.state = state
    fork.valid_at = valid_at
    return fork


__all__ = ["Declared", "MaintainedEvaluation", "Standing", "maintainable"]
