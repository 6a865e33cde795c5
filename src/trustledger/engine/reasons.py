"""Principal reasons: specific sentences with dates and numbers, never "score too low".

A score's reasons are its largest contributions now, adverse ones first (negative
points, or positive ones on a ``higher_is: worse`` penalty-points scorecard)
("late rent payment on 2026-03-02: -20, now -19.40, halves to -10 by
2026-09-02; counts until 2031-03-02"). A measure's reasons say what blocks or
holds it (consent, a set-back, a holding time), the values its condition saw,
and the events behind those values. At most four of each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

from trustledger.engine.history import Entry, History, SetBack, at, day
from trustledger.engine.measures import Track
from trustledger.engine.result import (
    MAX_REASONS,
    Contribution,
    FeatureScore,
    PointsSetBack,
    Reason,
)
from trustledger.policy.compiled import CompiledEventType, CompiledMeasure, CompiledScorecard
from trustledger.policy.models import MeasureKind

if TYPE_CHECKING:
    from trustledger.models.compiled import ScoreResult

MINUS = "\u2212"
FAVOURABLE = "in your favour"
"""How an event whose type can work either way reads when it worked for the subject."""
ADVERSE = "against you"
"""How an event whose type can work either way reads when it worked against the subject."""


def signed(value: float) -> str:
    """``+10``, ``-20``, ``-14.14`` (true minus sign): whole numbers plain, others 2 decimals."""
    text = f"{round(value):+d}" if abs(value - round(value)) < 5e-10 else f"{value:+.2f}"
    return text.replace("-", MINUS)


def plain(value: float) -> str:
    """A score or metric value: ``650``, ``612.30``.

    The one display rule for scores, points and metric values (:func:`signed` is the
    same with a sign): two decimals, rounded to nearest; whole numbers (within 5e-10)
    without decimals; a true minus sign. The CLI, the report, the HTML pages and the
    portal all use it; the API returns full precision.
    """
    if abs(value - round(value)) < 5e-10:
        return str(round(value)).replace("-", MINUS)
    return f"{value:.2f}".replace("-", MINUS)


@lru_cache(maxsize=4096)
def works_both_ways(event_type: CompiledEventType) -> bool:
    """Whether an event type's points can be positive for some attributes and negative for others.

    Decided once per compiled type from the attributes the compiler probes its points
    rule with (bounds, zero, every enum value) — e.g. a rental returned on time (+3) or
    late (-5 per day).
    """
    # Imported here: the compiler imports the engine's event definitions.
    from trustledger.policy.compiler import probe_attributes

    signs = set()
    for attributes in probe_attributes(event_type):
        fitted = event_type.fit(attributes)
        if not isinstance(fitted, str) and fitted[1] != 0.0:
            signs.add(fitted[1] > 0)
    return len(signs) == 2


def phrased(label: str, event_type: CompiledEventType | None, adverse: bool | None) -> str:
    """An event type's label phrased by what one event did: ``rental returned (against you)``.

    Only for a type that can work either way (:func:`works_both_ways`), so a label like
    "rental returned" never reads as both reward and penalty; other labels unchanged.
    """
    if event_type is None or adverse is None or not works_both_ways(event_type):
        return label
    return f"{label} ({ADVERSE if adverse else FAVOURABLE})"


def contribution_text(contribution: Contribution, entry: Entry, valid_at: float,
                      card: CompiledScorecard | None = None) -> str:
    """One contribution in words: what, when, points, decay, cap and how long it counts.

    With ``card``, a label of a type that can work either way says which way this
    one did (:func:`phrased`).
    """
    adverse = None
    if card is not None and contribution.points != 0.0:
        adverse = card.is_adverse(contribution.points)
    text = f"{phrased(contribution.label, entry.type, adverse)} on " \
           f"{day(contribution.occurred_at)}: {signed(contribution.capped)}"
    if contribution.capped != contribution.points:
        text += f" (of {signed(contribution.points)}; {'; '.join(contribution.notes[:1])})"
    half_life = entry.half_life
    if half_life is not None and contribution.capped:
        age = max(0.0, valid_at - entry.o)
        halvings = math.floor(age / half_life) + 1
        by = entry.o + halvings * half_life
        later = contribution.capped * 2.0 ** -halvings
        if abs(contribution.points_now - contribution.capped) > 5e-10:
            text += f", now {signed(contribution.points_now)}"
        if by < entry.end:
            text += f", {'halves' if halvings == 1 else 'decays'} to {signed(later)} by {day(by)}"
    if math.isfinite(entry.end):
        text += f"; counts until {day(entry.end)}"
        if entry.overhang_by is not None and entry.expiry is not None:
            witness = entry.overhang_by
            text += (f" (expired {day(entry.expiry)}, kept through its overhang: "
                     f"{witness.label} on {day(witness.o)} was committed before and "
                     f"known after the expiry)")
    return text


def set_back_text(item: SetBack, labels: Mapping[str, str]) -> str:
    """A set-back in words, with its date, cause, points and how long it counts.

    E.g. ``set back to 7 points on 2028-05-02 because warning had not been given when
    licence revoked was reached: -1; counts until 2033-05-02`` (with a true minus sign).
    """
    text = (f"set back to {plain(item.to)} points on {day(item.at)} because "
            f"{labels.get(item.prerequisite, item.prerequisite)} had not been given when "
            f"{labels.get(item.measure, item.measure)} was reached: {signed(item.points)}")
    if math.isfinite(item.end):
        text += f"; counts until {day(item.end)}"
    return text


def set_back_record(item: SetBack, labels: Mapping[str, str], valid_at: float) -> PointsSetBack:
    """A set-back of the history as the result reports it (see :class:`PointsSetBack`)."""
    return PointsSetBack(
        measure=item.measure, prerequisite=item.prerequisite, at=at(item.at), to=item.to,
        points=item.points, counts_until=at(item.end) if math.isfinite(item.end) else None,
        counted=item.live_at(valid_at), text=set_back_text(item, labels))


def score_reasons(card: CompiledScorecard, score: float, total: float,
                  contributions: Sequence[Contribution], entries: Mapping[tuple[str, str], Entry],
                  valid_at: float,
                  set_backs: Sequence[PointsSetBack] = ()) -> tuple[Reason, ...]:
    """Up to four principal reasons for a score: a floor/ceiling, set-backs, the largest items."""
    out: list[Reason] = []
    if score != total:
        bound = "floor" if total < score else "ceiling"
        out.append(Reason(f"held at the {bound} of {plain(score)}: base {plain(card.base)} "
                          f"plus all contributions is {plain(total)}"))
    for item in set_backs:
        if item.counted:
            out.append(Reason(item.text, None, item.points))
    live = [c for c in contributions if c.counted and c.points_now != 0.0]
    adverse = sorted((c for c in live if card.is_adverse(c.points_now)),
                     key=lambda c: (-abs(c.points_now), c.occurred_at, c.event))
    favourable = sorted((c for c in live if not card.is_adverse(c.points_now)),
                        key=lambda c: (-abs(c.points_now), c.occurred_at, c.event))
    for c in adverse + favourable:
        if len(out) >= MAX_REASONS:
            break
        out.append(Reason(contribution_text(c, entries[c.event], valid_at, card), c.event,
                          c.points_now))
    if not live and not any(item.counted for item in set_backs):
        out.append(Reason(f"no event counts at {day(valid_at)}; the score is the base "
                          f"{plain(card.base)}"))
    return tuple(out[:MAX_REASONS])


def statistical_reasons(card: CompiledScorecard, result: ScoreResult,
                        features: Sequence[FeatureScore]) -> tuple[Reason, ...]:
    """The model's reason codes in words: the features furthest below their maximum.

    Each says the feature, the bin it fell in, where the value came from and the
    points it gave of the most it could give; ``points`` is that shortfall (negative).
    """
    by_name = {f.feature: f for f in features}
    out = []
    for code in result.reasons[:MAX_REASONS]:
        f = by_name[code.feature]
        shown = f"{f.source} not supplied" if f.value is None else \
            f"{f.source} = {value_text(f.value)}"
        out.append(Reason(f"{code.text} ({shown}): {plain(code.points)} of at "
                          f"most {plain(code.max_points)} points", None,
                          code.points - code.max_points))
    if not out:
        out.append(Reason(f"every feature of {card.label} gives its highest points: "
                          f"{plain(result.points)}"))
    return tuple(out)


def value_text(value: Any) -> str:
    """A condition input's value in words."""
    if isinstance(value, bool):
        return "in force" if value else "not in force"
    if isinstance(value, dict):
        tier = f" (tier {value['tier']})" if value.get("tier") else ""
        return f"{plain(value['score'])}{tier}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return plain(value)
    return str(value)


def measure_reasons(measure: CompiledMeasure, track: Track, history: History,
                    context: Mapping[str, Any], labels: Mapping[str, str],
                    contributions: Mapping[str, Sequence[Contribution]],
                    valid_at: float,
                    model_reasons: Mapping[str, Sequence[Reason]] | None = None,
                    ) -> tuple[Reason, ...]:
    """Up to four principal reasons for a measure's state at ``valid_at``.

    ``model_reasons`` are the reasons of statistical scorecards (their reason codes):
    evidence, like a rule-based scorecard's adverse contributions, when they work
    against the subject (a privilege denied, a restriction in force).
    """
    out: list[Reason] = []
    if track.blocked:
        out.append(Reason(f"needs the subject's consent to {', '.join(track.blocked)} (opt-in), "
                          "which has not been given"))
    if track.set_back and track.set_back_since is not None and measure.requires:
        given = f"in force for {measure.notice.describe()}" if measure.notice else \
            "given before"
        until = day(track.notice_end) if track.notice_end is not None else "?"
        out.append(Reason(
            f"set back to {labels[measure.requires]}: it had not been {given} "
            f"when {measure.label} was reached on {day(track.set_back_since)}; "
            f"{measure.label} applies on the first new event from {until} on at which its "
            "condition holds"))
    if not track.on and not track.set_back and track.points_set_back is not None \
            and track.points_set_back.live_at(valid_at):
        out.append(Reason(set_back_text(track.points_set_back, labels),
                          None, track.points_set_back.points))
    if track.forced_by is not None:
        since = f" on {day(track.effective_since)}" if track.effective_since is not None else ""
        out.append(Reason(f"in force because {labels[track.forced_by]} was set back to it"
                          f"{since}"))
    if track.on and not track.raw and track.hold_end is not None:
        hold = measure.hold.describe() if measure.hold else ""
        out.append(Reason(f"kept in force until {day(track.hold_end)} by its minimum holding "
                          f"time of {hold}, although its condition no longer holds"))
    if not track.blocked:
        shown = [f"{name}{'.score' if name in measure.scorecards else ''} = "
                 f"{value_text(context[name])}"
                 for name in (*measure.scorecards, *measure.metrics, *measure.measures)
                 if name in context]
        out.append(Reason(f"condition `{measure.condition.source}` is "
                          f"{'true' if track.raw else 'false'} on {day(valid_at)}"
                          + (f": {', '.join(shown)}" if shown else "")))
        out.extend(_evidence(measure, track, history, contributions, valid_at))
        if (measure.kind is MeasureKind.PRIVILEGE) != track.raw:
            for name in measure.scorecards:
                for reason in (model_reasons or {}).get(name, ()):
                    if reason.points is not None and reason.points < 0:
                        out.append(Reason(f"{name}: {reason.text}", None, reason.points))
    return tuple(out[:MAX_REASONS])


def _evidence(measure: CompiledMeasure, track: Track, history: History,
              contributions: Mapping[str, Sequence[Contribution]],
              valid_at: float) -> list[Reason]:
    # Evidence for the condition's current value: adverse items make a restriction's
    # condition true and a privilege's false. Largest first, the most recent on a tie; an
    # event in a metric is shown as such (it says when it leaves the metric). Only the
    # ones shown are put into words.
    adverse = (measure.kind is MeasureKind.PRIVILEGE) != track.raw
    candidates: list[tuple[float, float, tuple[str, str], int, Callable[[], Reason]]] = []
    entries = {x.event.key: x for x in history.entries}
    for name in measure.scorecards:
        card = history.policy.scorecards[name]
        for c in contributions.get(name, ()):
            if not c.counted or c.points_now == 0.0 or card.is_adverse(c.points_now) != adverse:
                continue
            entry = entries[c.event]
            candidates.append((-abs(c.points_now), -entry.o, c.event, 1,
                               partial(_contribution_reason, card, c, entry, valid_at)))
    for name in measure.metrics:
        metric = history.policy.metrics[name]
        if not history.available(name):
            continue
        for entry, leaves in history.metric_members(metric, valid_at):
            points = entry.capped[metric.scorecard] if metric.scorecard else entry.points
            now = points * entry.decay(valid_at)
            candidates.append((-(abs(now) or 0.5), -entry.o, entry.event.key, 0,
                               partial(_member_reason, name, entry, points, now, leaves)))
    candidates.sort(key=lambda item: item[:4])
    seen: set[tuple[str, str]] = set()
    out: list[Reason] = []
    for _, _, key, _, build in candidates:
        if key in seen:
            continue
        seen.add(key)
        out.append(build())
        if len(out) >= MAX_REASONS:
            break
    return out


def _contribution_reason(card: CompiledScorecard, c: Contribution, entry: Entry,
                         valid_at: float) -> Reason:
    return Reason(f"{card.name}: {contribution_text(c, entry, valid_at, card)}", c.event,
                  c.points_now)


def _member_reason(name: str, entry: Entry, points: float, now: float, leaves: float) -> Reason:
    until = day(leaves) if math.isfinite(leaves) else "further notice"
    # A metric has no side of its own: its points are the event's, so their sign says.
    label = phrased(entry.label, entry.type, points < 0 if points else None)
    return Reason(f"{label} on {day(entry.o)} ({signed(points)}) counts in {name} "
                  f"until {until}", entry.event.key, now)
