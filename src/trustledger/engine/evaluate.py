"""The reference evaluator: ``evaluate(policy, events, valid_at, known_at)``.

Pure and deterministic: no clock, no randomness, no I/O; the result depends
only on the arguments, not on the order the events are given in. It is
bitemporal: ``valid_at`` is the time the score is for (events that occurred
later are not seen), ``known_at`` limits knowledge (events recorded later are
not seen, and a correction or withdrawal takes effect only once it is itself
known). Every other path that scores (incremental, columnar) must agree with
this one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from trustledger.engine.events import Event
from trustledger.engine.history import Entry, History, at, build_history, check_events, day, ts
from trustledger.engine.measures import Track, replay
from trustledger.engine.reasons import measure_reasons, score_reasons
from trustledger.engine.result import (
    Contribution,
    Evaluation,
    EventOutcome,
    MeasureResult,
    MeasureState,
    Reason,
    ScorecardResult,
)
from trustledger.errors import InputError
from trustledger.policy.compiled import CompiledMeasure, CompiledPolicy, CompiledScorecard
from trustledger.policy.models import MeasureKind


def evaluate(policy: CompiledPolicy, events: Iterable[Event], valid_at: datetime,
             known_at: datetime | None = None, *,
             opt_ins: Collection[str] = ()) -> Evaluation:
    """Evaluate one subject's events under a compiled policy.

    ``valid_at``: the time the scores, tiers and measures are for.
    ``known_at``: only events recorded at or before it are seen (``None``: all given).
    ``opt_ins``: the opt-in scorecards the subject has consented to; an opt-in
    scorecard without consent produces nothing.

    Raises :class:`~trustledger.errors.InputError` for naive datetimes, events of
    several subjects, a repeated event key, an unknown opt-in name, or a
    ``valid_at`` before the policy's ``effective_from``.
    """
    for name, moment in (("valid_at", valid_at), ("known_at", known_at)):
        if moment is not None and moment.tzinfo is None:
            raise InputError(f"{name} must be timezone-aware (UTC)")
    if valid_at < policy.effective_from:
        raise InputError(f"policy {policy.name} ({policy.hash[:19]}) is effective from "
                         f"{policy.effective_from.isoformat()}, after valid_at "
                         f"{valid_at.isoformat()}")
    consented = frozenset(opt_ins)
    unknown = sorted(consented - set(policy.scorecards))
    if unknown:
        raise InputError(f"opt_ins names no scorecard of policy {policy.name}: "
                         f"{', '.join(unknown)}")
    items, _ = check_events(events)
    history = build_history(policy, items, valid_at, known_at, consented)
    v = ts(valid_at)
    scorecards = {name: _scorecard(history, card, v) for name, card in policy.scorecards.items()}
    metrics: dict[str, float | None] = {
        name: (history.metric(metric, v) if history.available(name) else None)
        for name, metric in policy.metrics.items()
    }
    tracks = replay(history, v)
    labels = {name: m.label for name, m in policy.measures.items()}
    context = history.context(
        sorted({n for m in policy.measures.values() for n in (*m.metrics, *m.scorecards)}), v)
    for name, track in tracks.items():
        context[name] = track.effective
    contributions = {name: result.contributions for name, result in scorecards.items()}
    measures = {
        name: _measure(m, tracks[name], measure_reasons(
            m, tracks[name], history, context, labels, contributions, v))
        for name, m in policy.measures.items()
    }
    # Everything in the record comes from known events only, so an evaluation with a
    # knowledge limit is the same as one given only the events known by then.
    known = [e for e in items if known_at is None or e.recorded_at <= known_at]
    seqs = [e.seq for e in known if e.seq is not None]
    subject = known[0].subject if known else None
    return Evaluation(
        policy=policy.name, policy_hash=policy.hash, subject=subject, valid_at=valid_at,
        known_at=known_at, ledger_seq=max(seqs) if seqs else None, scorecards=scorecards,
        metrics=metrics, measures=measures,
        events=tuple(_outcome(entry, v) for entry in history.entries),
    )


def _scorecard(history: History, card: CompiledScorecard, v: float) -> ScorecardResult:
    if not history.available(card.name):
        return ScorecardResult(card.name, False, None, None, None, (), ())
    contributions = tuple(
        _contribution(entry, card.name, v) for entry in history.entries
        if entry.event.type in card.events
    )
    total = card.base + sum(c.points_now for c in contributions)
    score = card.clamp(total)
    tier = card.tier_at(score, v)
    entries = {x.event.key: x for x in history.entries}
    reasons = score_reasons(card, score, total, contributions, entries, v)
    return ScorecardResult(card.name, True, score, tier[1].name if tier else None, total,
                           contributions, reasons)


def _why_not(entry: Entry, v: float) -> str | None:
    if entry.why_not is not None:
        return entry.why_not
    if not entry.counted:
        return "not counted"
    if v >= entry.end:
        return f"stopped counting on {day(entry.end)} ({entry.end_reason})"
    return None


def _contribution(entry: Entry, card: str, v: float) -> Contribution:
    live = entry.live_at(v)
    capped = entry.capped.get(card, 0.0)
    notes = []
    if card in entry.cap_notes:
        notes.append(entry.cap_notes[card])
    if entry.overhang_by is not None and entry.expiry is not None:
        notes.append(f"expired {day(entry.expiry)}, counts through its overhang because "
                     f"{entry.overhang_by.event.source}:{entry.overhang_by.event.source_event_id}"
                     " was committed before and recorded after the expiry")
    return Contribution(
        event=entry.event.key, type=entry.event.type, label=entry.label,
        occurred_at=entry.event.occurred_at,
        points=entry.points if entry.counted else entry.base_points, capped=capped,
        points_now=capped * entry.decay(v) if live else 0.0,
        counts_until=at(entry.end) if entry.counted else None,
        counted=live, why_not=None if live else _why_not(entry, v), notes=tuple(notes),
    )


def _outcome(entry: Entry, v: float) -> EventOutcome:
    live = entry.live_at(v)
    e = entry.event
    return EventOutcome(
        event=e.key, type=e.type, occurred_at=e.occurred_at, recorded_at=e.recorded_at,
        seq=e.seq, points=entry.points if entry.counted else entry.base_points,
        points_now=entry.points * entry.decay(v) if live else 0.0, counted=live,
        why_not=None if live else _why_not(entry, v),
        counts_until=at(entry.end) if entry.counted else None,
    )


def _measure(m: CompiledMeasure, track: Track, reasons: tuple[Reason, ...]) -> MeasureResult:
    privilege = m.kind is MeasureKind.PRIVILEGE
    if track.set_back:
        state, since = MeasureState.SET_BACK, track.set_back_since
    elif track.effective:
        state = MeasureState.GRANTED if privilege else MeasureState.ACTIVE
        since = track.effective_since
    else:
        state = MeasureState.DENIED if privilege else MeasureState.INACTIVE
        since = track.effective_since
    held = track.on and not track.raw and track.hold_end is not None
    return MeasureResult(
        name=m.name, label=m.label, kind=m.kind, domain=m.domain, severity=m.severity,
        state=state, in_force=track.effective,
        since=at(since) if since is not None else None,
        held_until=at(track.hold_end) if held and track.hold_end is not None else None,
        reasons=reasons,
    )
