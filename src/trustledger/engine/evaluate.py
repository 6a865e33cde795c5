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

import math
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from trustledger.engine.events import Event
from trustledger.engine.history import Entry, History, at, build_history, check_events, day, ts
from trustledger.engine.measures import Track, replay
from trustledger.engine.reasons import (
    measure_reasons,
    score_reasons,
    set_back_record,
    statistical_reasons,
)
from trustledger.engine.result import (
    Contribution,
    Evaluation,
    EventOutcome,
    FeatureScore,
    MeasureResult,
    MeasureState,
    Reason,
    ScorecardResult,
)
from trustledger.errors import InputError
from trustledger.policy.compiled import CompiledMeasure, CompiledPolicy, CompiledScorecard
from trustledger.policy.models import MeasureKind


def check_moments(policy: CompiledPolicy, valid_at: datetime,
                  known_at: datetime | None = None) -> None:
    """Refuse a naive ``valid_at`` or ``known_at``, or a ``valid_at`` before the policy starts.

    Every engine path (reference, incremental, maintained) checks its read time here.
    """
    for name, moment in (("valid_at", valid_at), ("known_at", known_at)):
        if moment is not None and moment.tzinfo is None:
            raise InputError(f"{name} must be timezone-aware (UTC)")
    if valid_at < policy.effective_from:
        raise InputError(f"policy {policy.name} ({policy.hash[:19]}) is effective from "
                         f"{policy.effective_from.isoformat()}, after valid_at "
                         f"{valid_at.isoformat()}")


def evaluate(policy: CompiledPolicy, events: Iterable[Event], valid_at: datetime,
             known_at: datetime | None = None, *,
             opt_ins: Collection[str] = (),
             attributes: Mapping[str, Any] | None = None) -> Evaluation:
    """Evaluate one subject's events under a compiled policy.

    ``valid_at``: the time the scores, tiers and measures are for.
    ``known_at``: only events recorded at or before it are seen (``None``: all given).
    ``opt_ins``: the opt-in scorecards the subject has consented to; an opt-in
    scorecard without consent produces nothing.
    ``attributes``: values supplied at decision time for statistical scorecards'
    features (see :func:`check_attributes`); one not given scores as the model's
    missing bin.

    Raises :class:`~trustledger.errors.InputError` for naive datetimes, events of
    several subjects, a repeated event key, an unknown opt-in name, an unknown or
    mistyped attribute, or a ``valid_at`` before the policy's ``effective_from``.
    """
    check_moments(policy, valid_at, known_at)
    consented = frozenset(opt_ins)
    unknown = sorted(consented - set(policy.scorecards))
    if unknown:
        raise InputError(f"opt_ins names no scorecard of policy {policy.name}: "
                         f"{', '.join(unknown)}")
    supplied = check_attributes(policy, attributes or {})
    items, _ = check_events(events)
    v = ts(valid_at)
    history, tracks = _replayed(policy, items, valid_at, known_at, consented, supplied)
    scorecards = {name: _scorecard(history, card, v) for name, card in policy.scorecards.items()}
    metrics: dict[str, float | None] = {
        name: (history.metric(metric, v) if history.available(name) else None)
        for name, metric in policy.metrics.items()
    }
    labels = {name: m.label for name, m in policy.measures.items()}
    context = history.context(
        sorted({n for m in policy.measures.values() for n in (*m.metrics, *m.scorecards)}), v)
    for name, track in tracks.items():
        context[name] = track.effective
    contributions = {name: result.contributions for name, result in scorecards.items()}
    model_reasons = {name: result.reasons for name, result in scorecards.items()
                     if result.model is not None}
    measures = {
        name: _measure(m, tracks[name], measure_reasons(
            m, tracks[name], history, context, labels, contributions, v, model_reasons))
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
        events=tuple(_outcome(entry, v) for entry in history.entries), attributes=supplied,
    )


def _replayed(policy: CompiledPolicy, items: list[Event], valid_at: datetime,
              known_at: datetime | None, consented: frozenset[str],
              supplied: Mapping[str, Any]) -> tuple[History, dict[str, Track]]:
    """The history and the measures' tracks, with set-backs seen by ``when`` conditions.

    Set-backs come from the measures' replay, and a ``when`` condition reading a
    scorecard that can be set back must see those before its event. Both are causal
    (a set-back at ``s`` depends on what counts up to ``s``; a ``when`` at ``o`` on set-backs
    up to ``o``), so rebuilding with the set-backs of the previous replay settles one more
    of them each round: at most one round per set-back, plus one.
    """
    v = ts(valid_at)
    history = build_history(policy, items, valid_at, known_at, consented, supplied)
    tracks = replay(history, v)
    cards = policy.set_back_scorecards
    if not cards or not any(et.when is not None and et.when.names & cards
                            for et in policy.event_types.values()):
        return history, tracks
    seen: list[tuple[str, float, float]] = []
    for _ in range(len(items) + 2):
        found = [(x.card, x.at, x.points) for x in history.set_backs]
        if found == seen:
            return history, tracks
        seen = found
        history = build_history(policy, items, valid_at, known_at, consented, supplied,
                                list(history.set_backs))
        tracks = replay(history, v)
    raise AssertionError("set-backs and `when` conditions did not settle")  # causal: never


def check_attributes(policy: CompiledPolicy,
                     attributes: Mapping[str, Any]) -> dict[str, float | int | str | None]:
    """Decision-time attributes checked against the statistical scorecards that use them.

    Numerical features take numbers (not booleans), categorical ones texts; ``None``
    (or NaN) is missing and scores as the model's missing bin, as optbinning does. An
    attribute no statistical scorecard of the policy uses is refused (nothing is
    scored that the policy does not declare). Raises
    :class:`~trustledger.errors.InputError` naming the attribute.
    """
    if not attributes:
        return {}
    expected: dict[str, tuple[bool, str]] = {}
    for card in policy.scorecards.values():
        if card.model is None:
            continue
        for f in card.model.features:
            if f.attribute is not None:
                expected.setdefault(f.attribute, (f.numerical, f"{card.name}.{f.name}"))
    unknown = sorted(set(attributes) - set(expected))
    if unknown:
        known = ", ".join(sorted(expected)) or "none"
        raise InputError(f"attributes: {', '.join(unknown)} "
                         f"{'is' if len(unknown) == 1 else 'are'} not used by any statistical "
                         f"scorecard of policy {policy.name} (it uses: {known})")
    out: dict[str, float | int | str | None] = {}
    for name, value in attributes.items():
        numerical, used = expected[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[name] = None
        elif numerical:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"attributes.{name}: a number is expected (feature {used}), "
                                 f"got {type(value).__name__} {value!r}")
            try:
                float(value)
            except OverflowError:
                raise InputError(f"attributes.{name}: {str(value)[:20]}… is too large for a "
                                 f"number (feature {used})") from None
            out[name] = value
        else:
            if not isinstance(value, str):
                raise InputError(f"attributes.{name}: a text is expected (feature {used}), "
                                 f"got {type(value).__name__} {value!r}")
            out[name] = value
    return out


def _scorecard(history: History, card: CompiledScorecard, v: float) -> ScorecardResult:
    if not history.available(card.name):
        return ScorecardResult(card.name, False, None, None, None, (), ())
    if card.model is not None:
        return _statistical(history, card, v)
    contributions = tuple(
        _contribution(entry, card.name, v) for entry in history.entries
        if entry.event.type in card.events
    )
    labels = {name: m.label for name, m in history.policy.measures.items()}
    set_backs = tuple(set_back_record(x, labels, v) for x in history.set_backs
                      if x.card == card.name)
    total = card.base + sum(c.points_now for c in contributions) + \
        sum(x.points for x in set_backs if x.counted)
    score = card.clamp(total)
    tier = card.tier_at(score, v)
    entries = {x.event.key: x for x in history.entries}
    reasons = score_reasons(card, score, total, contributions, entries, v, set_backs)
    return ScorecardResult(card.name, True, score, tier[1].name if tier else None, total,
                           contributions, reasons, set_backs=set_backs)


def _statistical(history: History, card: CompiledScorecard, v: float) -> ScorecardResult:
    model = card.model
    assert model is not None
    inputs = model.inputs(history.model_metrics(card, v), history.attributes)
    result = model.scorer.score(inputs)
    maxima = {f.name: f.max_points for f in model.scorer.artifact.features}
    features = tuple(
        FeatureScore(f.name, f.description, f.source, inputs[f.name], result.feature_bins[f.name],
                     result.feature_points[f.name], maxima[f.name])
        for f in model.features
    )
    tier = card.tier_at(result.points, v)
    return ScorecardResult(card.name, True, result.points, tier[1].name if tier else None,
                           result.points, (), statistical_reasons(card, result, features),
                           model=f"sha256:{model.hash}", features=features)


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
                     " was committed before and known after the expiry")
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
