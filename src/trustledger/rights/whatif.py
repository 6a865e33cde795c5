"""What-if: the score, tier and measures of a modified history, and what it takes to reach a target.

Every answer here is a fresh :func:`~trustledger.engine.evaluate` of a modified
history — the subject's history as scoring sees it (an
:class:`~trustledger.scoring.Assessment`: disputed adverse events already left out,
the same opt-ins, human reviews laid over the measures the same way) — never a
second scoring path::

    assessment = assess_subject(ledger, "alice", policy, now)
    what_if(assessment, remove=[17])                       # if event seq 17 were removed
    what_if(assessment, add=[Hypothetical("bill_paid", now)])  # if an event were added
    what_if(assessment, at=now + timedelta(days=365))      # at a future date
    what_if(assessment, attributes={"amount": 2000})       # other decision-time attributes
    what_it_takes(assessment, parse_target(policy, "sesame:very good"))

Statistical scorecards are evaluated with the decision-time attributes the
assessment was made with (``assess_subject(..., attributes=...)``, kept in its
evaluation's ``attributes``); ``what_if(attributes=...)`` changes some of them for
the modified history only.

Removing an event also removes the events it supersedes (the originals of a
correction stand or fall with it), exactly as a dispute leaves them out.

A tier is named by its name or its label, in any case (:func:`find_tier`): the one
lookup behind ``--reach``, the API's ``reach`` and the portal.

"What it takes" answers three questions about a target (a tier on a scorecard, or a
measure: a privilege granted, a restriction lifted):

* which events the policy rewards would get there, how many and how often
  (:func:`positive_paths`): for each rewarded type (in the subject's favour, on a
  scorecard they opted in to, never an out-of-bounds category), events paced to the
  scorecard's caps from the moment asked about, the fewest that reach the target found
  with :func:`what_if` — proven by the engine: with them it is reached, with one fewer
  on the same schedule not;

* the earliest day decay and expiry alone reach it, if they ever do — a search
  over the days from the moment asked about to the end of the history's timeline
  (after the last event stops counting, the last tier change, holding times and
  notices), exact to a day: the answer is confirmed by ``evaluate`` on that day,
  and the day before does not reach it. For a tier the search runs over the
  closed form of the score (from the evaluation's own contributions); for a
  measure it walks the measure's transitions back from the horizon (each
  ``since`` is exact to the second). A statistical score does not decay: time
  changes it only through its metrics (an event stops counting or leaves a
  window) or an effective-dated tier threshold, so the search evaluates the first
  day after each such moment (every day when a metric is a decayed sum), and the
  answer says so (``notes``);
* the smallest set of adverse events whose removal (a successful dispute) would
  reach it now, among the ones that counted and were not disputed yet: exact
  (sets by increasing size) for up to ``exact_limit`` candidates, otherwise greedy
  (largest current contribution first), then pruned so no removal in the set can
  be dropped — minimal, not always minimum; ``removals_exact`` says which.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from trustledger.engine import Evaluation, Event, MeasureResult, evaluate
from trustledger.engine.reasons import phrased, plain, signed, value_text
from trustledger.errors import InputError, NotFoundError
from trustledger.policy import CompiledPolicy
from trustledger.policy.compiled import CompiledEventType, CompiledScorecard, CompiledTier
from trustledger.policy.compiler import probe_attributes
from trustledger.policy.durations import Duration
from trustledger.policy.models import Aggregate, CapDirection, CapPeriod, MeasureKind, MetricValue
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, OUT_OF_BOUNDS_CATEGORIES
from trustledger.rights import fields
from trustledger.rights.dispute import is_adverse
from trustledger.rights.review import apply_reviews
from trustledger.scoring import Assessment

HYPOTHETICAL_SOURCE = "what-if"
"""The source named by hypothetical events."""
EXACT_LIMIT = 10
"""Up to this many candidate removals, the smallest set is found exactly."""
DAY = timedelta(days=1)
PATH_HORIZON = timedelta(days=5 * 365)
"""Positive paths are looked for up to this far ahead of the moment asked about."""
PATH_LIMIT = 512
"""At most this many hypothetical events in one positive path."""
SEARCH_LIMIT = timedelta(days=100 * 366)
"""Decay and expiry are followed at most this far ahead (an event dated centuries ahead
must not make the day-by-day search run for millions of days)."""
_END = datetime.max.replace(tzinfo=UTC)
_PERIOD_DAYS = {CapPeriod.DAY: 1, CapPeriod.WEEK: 7, CapPeriod.MONTH: 31, CapPeriod.YEAR: 366}
_LN2 = math.log(2.0)
_MAX_STEPS = 1000

EventRef = int | tuple[str, str]
"""An event by ledger seq, or by ``(source, source_event_id)``."""


@dataclass(frozen=True, slots=True)
class Hypothetical:
    """An event that might happen: its type, when, and its attributes.

    ``recorded_at`` defaults to ``occurred_at``.
    """

    type: str
    occurred_at: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The current decision and the decision for a modified history."""

    valid_at: datetime
    removed: tuple[Event, ...]
    added: tuple[Event, ...]
    before: Evaluation
    after: Evaluation

    def changes(self) -> tuple[str, ...]:
        """What differs between ``before`` and ``after``, in words (scores, tiers, measures)."""
        out = []
        for name, after in self.after.scorecards.items():
            before = self.before.scorecards.get(name)
            if before is None or after.score is None or before.score is None:
                if before is None or before.score != after.score:
                    out.append(f"{name}: {_score(before.score if before else None)} → "
                               f"{_score(after.score)}")
                continue
            delta = after.score - before.score
            text = f"{name}: {plain(before.score)} → {plain(after.score)}"
            text += f" ({signed(delta)})" if abs(delta) > 5e-10 else " (unchanged)"
            if before.tier != after.tier:
                text += f", tier {before.tier or '—'} → {after.tier or '—'}"
            out.append(text)
        given, now = self.before.attributes, self.after.attributes
        for name in dict.fromkeys((*given, *now)):
            if given.get(name) != now.get(name):
                out.append(f"attribute {name}: {_value(given.get(name))} → "
                           f"{_value(now.get(name))}")
        for name, measure in self.after.measures.items():
            earlier = self.before.measures.get(name)
            if earlier is None or earlier.state != measure.state:
                was = earlier.state.value if earlier else "—"
                out.append(f"{measure.label}: {was} → {measure.state.value}")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class TierTarget:
    """Reach ``tier`` (or a better one) on ``scorecard``."""

    scorecard: str
    tier: str
    label: str | None = None
    """The tier's label in the policy (``very good``), when it has one other than its name."""

    def describe(self) -> str:
        """The target in words: ``tier very good (650-699) on sesame``."""
        shown = self.tier if not self.label or self.label == self.tier else \
            f"{self.label} ({self.tier})"
        return f"tier {shown} on {self.scorecard}"


@dataclass(frozen=True, slots=True)
class MeasureTarget:
    """Have ``measure`` no longer adverse: a privilege granted, a restriction lifted."""

    measure: str

    def describe(self) -> str:
        """The target in words."""
        return f"measure {self.measure} (a privilege granted, a restriction not in force)"


Target = TierTarget | MeasureTarget
"""What a subject wants to reach."""


@dataclass(frozen=True, slots=True)
class PositivePath:
    """A way to reach a target with new events: ``count`` events of one type, ``every`` apart.

    The first event is at the moment asked about, the last at ``reached_at``; with them
    the history reaches the target at ``reached_at`` (``evaluation``: a fresh
    :func:`what_if` — the one engine, caps, decay and ``when`` conditions included), and
    one event fewer on the same schedule does not. ``attributes`` are the subject's own
    from their latest such event that was in their favour, else the smallest favourable
    ones the policy allows. ``every`` keeps within the scorecard's caps (``paced_by``
    says which, ``""`` without one).
    """

    type: str
    label: str
    attributes: Mapping[str, Any]
    points: float
    count: int
    every: timedelta
    paced_by: str
    events: tuple[Hypothetical, ...]
    reached_at: datetime
    evaluation: Evaluation

    def describe(self) -> str:
        """The path in words."""
        given = ", ".join(f"{k} {value_text(v)}" for k, v in sorted(self.attributes.items()))
        what = self.label + (f" with {given}" if given else "") + f", {signed(self.points)} each"
        if self.count == 1:
            return f"{what}: once, on {fields.day(self.reached_at)}"
        days = self.every.days
        pace = "one a day" if days == 1 else f"one every {days} days"
        if self.paced_by:
            pace += f" ({self.paced_by})"
        return (f"{what}: {self.count} times, {pace}, from "
                f"{fields.day(self.events[0].occurred_at)} to {fields.day(self.reached_at)}")


@dataclass(frozen=True, slots=True)
class WhatItTakes:
    """What it takes to reach a target: new events, the date decay alone does, fewest removals.

    ``by_decay_at`` is ``None`` when decay and expiry alone never reach the target;
    ``removals`` is ``None`` when removing every candidate would not reach it either
    (``()`` when it is reached already). ``candidates`` are the adverse events that
    could be disputed, most consequential first. ``paths`` are the positive paths
    (:class:`PositivePath`, soonest first): event types the policy rewards that alone
    reach the target. ``notes`` say what limits the answer (a statistical score changes
    with time only through its metrics; an opt-in score without consent counts no
    event; a rewarded type that alone does not get there).
    """

    target: Target
    valid_at: datetime
    reached_now: bool
    by_decay_at: datetime | None
    by_decay: Evaluation | None
    removals: tuple[Event, ...] | None
    removals_exact: bool
    by_removals: Evaluation | None
    candidates: tuple[Event, ...]
    notes: tuple[str, ...] = ()
    paths: tuple[PositivePath, ...] = ()
    paths_searched: bool = False
    """Whether positive paths were looked for (not for a statistical score or a past
    knowledge time)."""

    def summary(self) -> tuple[str, ...]:
        """The answer in words: new events first, then decay and expiry, then removals."""
        what = self.target.describe()
        if self.reached_now:
            return (f"{what} is reached already on {fields.day(self.valid_at)}",)
        lines = [f"by new events: {path.describe()}" for path in self.paths]
        if self.paths_searched and not self.paths:
            lines.append("by new events: no single kind of event the policy rewards reaches "
                         f"it within {PATH_HORIZON.days // 365} years")
        lines += [
            f"by decay and expiry alone: from {fields.day(self.by_decay_at)}"
            if self.by_decay_at is not None
            else "by decay and expiry alone: never (no new events)", *self.notes]
        if self.removals is None:
            lines.append(f"no set of disputable adverse events ({len(self.candidates)}) would "
                         "reach it if removed")
        else:
            names = ", ".join(_event_name(e) for e in self.removals)
            qualifier = "smallest" if self.removals_exact else "a minimal (greedy)"
            lines.append(f"{qualifier} set of removals reaching it now "
                         f"({len(self.removals)}): {names}")
        return (f"what it takes to reach {what}:", *lines)


# -- modified histories -------------------------------------------------------------------


def what_if(
    assessment: Assessment,
    *,
    remove: Iterable[EventRef] = (),
    add: Iterable[Hypothetical] = (),
    at: datetime | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> WhatIf:
    """The decision if events were removed, hypothetical events added, and/or at ``at``.

    ``before`` is the assessment's decision; ``after`` a fresh evaluation of the
    modified history at ``at`` (default: the assessment's ``valid_at``) with the
    assessment's decision-time attributes, those in ``attributes`` replacing them
    (``None`` for one: missing). Raises :class:`NotFoundError` or
    :class:`InputError` naming the field (``remove[i]``, ``add[i].type``, ``at``,
    ``attributes.NAME``, ...).
    """
    valid_at = assessment.valid_at if at is None else fields.moment("at", at)
    policy = assessment.policy
    if valid_at < policy.effective_from:
        raise InputError(f"at: {valid_at.isoformat()} is before policy {policy.name}'s "
                         f"effective_from {policy.effective_from.isoformat()}")
    if attributes is not None and not isinstance(attributes, Mapping):
        raise InputError("attributes: must be an object of NAME: VALUE")
    given = {**assessment.engine.attributes, **(attributes or {})}
    events, removed, added = modified_history(assessment, remove, add, valid_at)
    return WhatIf(valid_at, removed, added, assessment.evaluation,
                  evaluate_history(assessment, events, valid_at, attributes=given))


def remove_event(assessment: Assessment, event: EventRef) -> WhatIf:
    """The decision if one event were removed (what a successful dispute would do)."""
    return what_if(assessment, remove=[event])


def add_event(assessment: Assessment, event: Hypothetical) -> WhatIf:
    """The decision if a hypothetical event were added."""
    return what_if(assessment, add=[event])


def at_date(assessment: Assessment, at: datetime) -> WhatIf:
    """The decision at another (usually future) date, with no new events."""
    return what_if(assessment, at=at)


def modified_history(
    assessment: Assessment,
    remove: Iterable[EventRef] = (),
    add: Iterable[Hypothetical] = (),
    valid_at: datetime | None = None,
) -> tuple[list[Event], tuple[Event, ...], tuple[Event, ...]]:
    """The assessment's scored events without ``remove`` (and what they supersede), plus ``add``.

    Returns ``(events, removed, added)``; ``valid_at`` (default: the assessment's)
    is the moment added events must have occurred by.
    """
    moment = assessment.valid_at if valid_at is None else valid_at
    scored = assessment.scored
    by_key = {e.key: e for e in scored}
    gone: dict[tuple[str, str], Event] = {}
    for index, ref in enumerate(remove):
        event: Event | None = _find(assessment, ref, f"remove[{index}]")
        while event is not None and event.key not in gone:
            gone[event.key] = event
            previous = event.supersedes
            event = by_key.get((event.source, previous)) if previous is not None else None
    kept = [e for e in scored if e.key not in gone]
    taken = {e.key for e in assessment.events}
    added = []
    for index, hypothetical in enumerate(add):
        new = _hypothetical(assessment, hypothetical, f"add[{index}]", moment, taken)
        taken.add(new.key)
        added.append(new)
    return kept + added, tuple(gone.values()), tuple(added)


def evaluate_history(
    assessment: Assessment, events: Sequence[Event], valid_at: datetime, *,
    attributes: Mapping[str, Any] | None = None,
) -> Evaluation:
    """A fresh evaluation of ``events`` with the assessment's opt-ins and reviews.

    Statistical scorecards get ``attributes``, by default the decision-time
    attributes the assessment was made with.
    """
    given = assessment.engine.attributes if attributes is None else attributes
    raw = evaluate(assessment.policy, events, valid_at, assessment.known_at,
                   opt_ins=assessment.opt_ins, attributes=given)
    return apply_reviews(raw, assessment.reviews, assessment.as_of)


def _find(assessment: Assessment, ref: EventRef, label: str) -> Event:
    if isinstance(ref, bool) or not (
            isinstance(ref, int) or (isinstance(ref, tuple) and len(ref) == 2
                                     and all(isinstance(part, str) for part in ref))):
        raise InputError(f"{label}: an event seq or (source, source_event_id), not {ref!r}")
    found = next((e for e in assessment.scored if _is(e, ref)), None)
    if found is not None:
        return found
    shown = str(ref) if isinstance(ref, int) else ":".join(ref)
    left = next((x for x in assessment.left_out if _is(x.event, ref)), None)
    if left is not None:
        raise InputError(f"{label}: event {shown} is already left out of scoring ({left.note})")
    raise NotFoundError(f"{label}: subject {assessment.subject!r} has no event {shown}")


def _is(event: Event, ref: EventRef) -> bool:
    return event.seq == ref if isinstance(ref, int) else event.key == ref


def _hypothetical(assessment: Assessment, h: Hypothetical, label: str, valid_at: datetime,
                  taken: set[tuple[str, str]]) -> Event:
    policy = assessment.policy
    etype = policy.event_types.get(h.type)
    if etype is None:
        raise NotFoundError(f"{label}.type: policy {policy.name} has no event type {h.type!r}")
    occurred = fields.moment(f"{label}.occurred_at", h.occurred_at)
    recorded = occurred if h.recorded_at is None else \
        fields.moment(f"{label}.recorded_at", h.recorded_at)
    if recorded < occurred:
        raise InputError(f"{label}.recorded_at: before its occurred_at")
    if occurred > valid_at:
        raise InputError(f"{label}.occurred_at: {occurred.isoformat()} is after the moment "
                         f"asked about ({valid_at.isoformat()}); it would not be seen")
    if assessment.known_at is not None and recorded > assessment.known_at:
        raise InputError(f"{label}.recorded_at: after known_at {assessment.known_at.isoformat()};"
                         " it would not be seen")
    if not isinstance(h.attributes, Mapping):
        raise InputError(f"{label}.attributes: must be an object")
    problem = etype.normalise(h.attributes)
    if isinstance(problem, str):
        raise InputError(f"{label}.attributes: {problem}")
    number = 1
    while (HYPOTHETICAL_SOURCE, f"hypothetical-{number}") in taken:
        number += 1
    return Event(HYPOTHETICAL_SOURCE, f"hypothetical-{number}", assessment.subject, h.type,
                 occurred, recorded, dict(h.attributes))


# -- what it takes ------------------------------------------------------------------------


def find_tier(policy: CompiledPolicy, scorecard: str, text: str) -> CompiledTier:
    """A scorecard's tier by its name or its label, case-insensitive (``650-699``, ``very good``).

    The one lookup of a tier from words (``--reach``, the API's and the portal's
    what-if). Quotes and surrounding spaces are ignored. Raises
    :class:`NotFoundError` (``target``) listing every tier as ``name (label)``.
    """
    card = policy.scorecards.get(scorecard)
    if card is None:
        raise NotFoundError(f"target: policy {policy.name} has no scorecard {scorecard!r} "
                            f"(scorecards: {', '.join(policy.scorecards) or 'none'})")
    wanted = " ".join(text.strip().strip("\"'").split()).casefold()
    for tier in card.tiers:
        if wanted in (tier.name.casefold(), " ".join(tier.label.split()).casefold()):
            return tier
    raise NotFoundError(f"target: scorecard {scorecard} has no tier {text.strip()!r} (tiers, "
                        f"by name or label: {tier_names(card) or 'none'})")


def tier_names(card: CompiledScorecard) -> str:
    """Every tier of a scorecard as ``name (label)``, lowest first: what a tier may be called."""
    return ", ".join(t.name if t.label == t.name else f"{t.name} ({t.label})"
                     for t in card.tiers)


def parse_target(policy: CompiledPolicy, text: str) -> Target:
    """A target from text: ``SCORECARD:TIER`` (the tier's name or label) or a measure's name.

    ``sesame:650-699``, ``sesame:very good`` and ``sesame:"Very Good"`` are the same
    target (:func:`find_tier`). Raises :class:`NotFoundError` (``target``) naming what
    the policy does not have, and listing what it has.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("target: required: SCORECARD:TIER or a measure's name")
    if ":" in text:
        card, tier = text.split(":", 1)
        found = find_tier(policy, card.strip(), tier)
        return TierTarget(card.strip(), found.name, found.label)
    if text.strip() not in policy.measures:
        raise NotFoundError(f"target: policy {policy.name} has no measure {text!r} (measures: "
                            f"{', '.join(policy.measures) or 'none'}; or give SCORECARD:TIER)")
    return MeasureTarget(text.strip())


def reached(policy: CompiledPolicy, target: Target, evaluation: Evaluation) -> bool:
    """Whether ``evaluation`` reaches ``target``."""
    if isinstance(target, MeasureTarget):
        return _measure_reached(evaluation.measures[target.measure])
    result = evaluation.scorecards[target.scorecard]
    if not result.consented or result.score is None:
        return False
    card = policy.scorecards[target.scorecard]
    ranks = {tier.name: rank for rank, tier in enumerate(card.tiers)}
    have = ranks[result.tier] if result.tier is not None else -1
    return _rank_reaches(card.adverse_sign, have, ranks[target.tier])


def what_it_takes(
    assessment: Assessment, target: Target, *, exact_limit: int = EXACT_LIMIT
) -> WhatItTakes:
    """The date decay alone reaches ``target``, and the fewest removals that reach it now."""
    policy = assessment.policy
    _check_target(policy, target)
    now = assessment.evaluation
    candidates = _candidates(assessment)
    if reached(policy, target, now):
        return WhatItTakes(target, assessment.valid_at, True, assessment.valid_at, now, (),
                           True, now, tuple(candidates))
    found = _by_decay(assessment, target)
    removals, exact, by_removals = _removals(assessment, target, candidates, exact_limit)
    paths, path_notes = positive_paths(assessment, target)
    return WhatItTakes(
        target, assessment.valid_at, False, found[0] if found else None,
        found[1] if found else None, removals, exact, by_removals, tuple(candidates),
        (*_decay_notes(assessment, target), *path_notes), paths,
        _paths_searched(assessment, target))


def _check_target(policy: CompiledPolicy, target: Target) -> None:
    if isinstance(target, MeasureTarget):
        if target.measure not in policy.measures:
            raise NotFoundError(f"target: policy {policy.name} has no measure {target.measure!r}")
        return
    card = policy.scorecards.get(target.scorecard)
    if card is None or target.tier not in {t.name for t in card.tiers}:
        raise NotFoundError(f"target: policy {policy.name} has no tier {target.tier!r} on "
                            f"scorecard {target.scorecard!r}")


def _measure_reached(measure: MeasureResult) -> bool:
    if measure.kind is MeasureKind.RESTRICTION:
        return not measure.in_force
    return measure.in_force


def _rank_reaches(adverse_sign: float, have: int, want: int) -> bool:
    # On a trust score higher tiers are better; on penalty points lower ones are.
    return have >= want if adverse_sign < 0 else have <= want


def _horizon(assessment: Assessment) -> datetime:
    """A moment after which nothing changes any more without new events."""
    policy = assessment.policy
    start = assessment.valid_at
    moments = [o.counts_until for o in assessment.engine.events if o.counts_until is not None]
    moments += [e.occurred_at for e in assessment.scored]
    for card in policy.scorecards.values():
        for tier in card.tiers:
            moments += [datetime.fromtimestamp(since, UTC) for since, _ in
                        tier.thresholds[1:]]
    horizon = min(max([start, *(m for m in moments if m > start)]),
                  _plus(start, SEARCH_LIMIT))
    for measure in policy.measures.values():
        for duration in (measure.notice, measure.hold):
            if duration is not None:
                horizon = _after(duration, horizon)
    return _plus(horizon, DAY)


def _after(duration: Duration, moment: datetime) -> datetime:
    """``duration`` after ``moment``, or the calendar's last moment when that is past it."""
    try:
        return duration.after(moment)
    except OverflowError:  # past year 9999
        return _END


def _plus(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, or the calendar's last moment when that is past it."""
    return moment + delta if _END - moment > delta else _END


def _by_decay(assessment: Assessment, target: Target) -> tuple[datetime, Evaluation] | None:
    horizon = _horizon(assessment)
    if isinstance(target, TierTarget):
        if assessment.policy.scorecards[target.scorecard].model is not None:
            return _statistical_by_decay(assessment, target, horizon)
        return _tier_by_decay(assessment, target, horizon)
    return _measure_by_decay(assessment, target, horizon)


def _decay_notes(assessment: Assessment, target: Target) -> tuple[str, ...]:
    if not isinstance(target, TierTarget):
        return ()
    policy = assessment.policy
    card = policy.scorecards[target.scorecard]
    model = card.model
    if model is None:
        return ()
    attributes = sorted({f.attribute for f in model.features if f.attribute is not None})
    kept = (f"; its decision-time attributes ({', '.join(attributes)}) are taken as given"
            if attributes else "")
    if not model.metrics:
        return (f"{card.name} is a statistical score (model sha256:{model.hash[:12]}…) of "
                "decision-time attributes only: it does not decay, and time alone does not "
                f"change it{kept}",)
    return (f"{card.name} is a statistical score (model sha256:{model.hash[:12]}…): it does "
            "not decay; time changes it only when its metrics "
            f"({', '.join(model.metrics)}) do, as events stop counting or leave their "
            f"window{kept}",)


def _statistical_by_decay(assessment: Assessment, target: TierTarget,
                          horizon: datetime) -> tuple[datetime, Evaluation] | None:
    # The model's points are a function of its inputs: the attributes stay as given and
    # its metrics change only where an event starts or stops counting or leaves a
    # window (unless a metric is a decayed sum). Between two such moments (or
    # effective-dated tier thresholds) the tier is constant, so the first day after
    # each moment is the only one of its stretch to evaluate.
    policy = assessment.policy
    card = policy.scorecards[target.scorecard]
    assert card.model is not None
    metrics = [policy.metrics[name] for name in card.model.metrics]
    start = assessment.valid_at
    moments = [o.counts_until for o in assessment.engine.events if o.counts_until is not None]
    moments += [e.occurred_at for e in assessment.scored]
    moments += [_after(m.window, e.occurred_at) for m in metrics if m.window is not None
                for e in assessment.scored if e.type in m.types]
    moments += [datetime.fromtimestamp(since, UTC) for tier in card.tiers
                for since, _ in tier.thresholds[1:]]
    decayed = any(m.aggregate is Aggregate.SUM and m.value is MetricValue.CURRENT and any(
        (etype := policy.event_types.get(t)) is not None and etype.half_life is not None
        for t in m.types) for m in metrics)
    last = min(max([horizon, *moments]), _plus(start, SEARCH_LIMIT))
    steps = math.ceil((last - start) / DAY)
    days = range(1, steps + 1) if decayed else sorted(
        {max(1, math.ceil((m - start) / DAY)) for m in moments if start < m <= last})
    for k in days:
        moment = start + k * DAY
        confirmed = _confirmed(assessment, target, moment)
        if confirmed is not None:
            return moment, confirmed
    return None


def _confirmed(assessment: Assessment, target: Target,
               moment: datetime) -> Evaluation | None:
    result = evaluate_history(assessment, assessment.scored, moment)
    return result if reached(assessment.policy, target, result) else None


def _tier_by_decay(assessment: Assessment, target: TierTarget,
                   horizon: datetime) -> tuple[datetime, Evaluation] | None:
    policy = assessment.policy
    card = policy.scorecards[target.scorecard]
    late = evaluate_history(assessment, assessment.scored, horizon).scorecards[card.name]
    if not late.consented:
        return None
    terms = []
    for c in late.contributions:
        if c.counts_until is None or c.capped == 0.0:
            continue
        etype = policy.event_types.get(c.type)
        half_life = etype.half_life if etype is not None else None
        terms.append((c.occurred_at.timestamp(), c.counts_until.timestamp(), c.capped,
                      half_life))
    want = [t.name for t in card.tiers].index(target.tier)
    start = assessment.valid_at
    steps = math.ceil((horizon - start) / DAY)
    for k in range(1, steps + 1):
        moment = start + k * DAY
        t = moment.timestamp()
        total = card.base
        for o, end, capped, half_life in terms:
            if o <= t < end:
                total += capped if half_life is None else \
                    capped * math.exp(-_LN2 * (t - o) / half_life)
        found = card.tier_at(card.clamp(total), t)
        if not _rank_reaches(card.adverse_sign, found[0] if found else -1, want):
            continue
        confirmed = _confirmed(assessment, target, moment)
        if confirmed is None:
            continue  # the closed form and the engine differ by rounding at a boundary
        while k > 1:
            earlier = _confirmed(assessment, target, start + (k - 1) * DAY)
            if earlier is None:
                break
            k, confirmed = k - 1, earlier
        return start + k * DAY, confirmed
    return None


def _measure_by_decay(assessment: Assessment, target: MeasureTarget,
                      horizon: datetime) -> tuple[datetime, Evaluation] | None:
    # Walk the measure's states back from the horizon: each evaluation's `since` is
    # when its current state began (exact to the second), the moment before it is
    # the previous state. Then take the first reaching state, on the day grid.
    start = assessment.valid_at
    segments: list[tuple[datetime, bool]] = []
    moment = horizon
    for _ in range(_MAX_STEPS):
        measure = evaluate_history(assessment, assessment.scored, moment) \
            .measures[target.measure]
        since = measure.since
        if since is None or since <= start:
            segments.append((start, _measure_reached(measure)))
            break
        segments.append((since, _measure_reached(measure)))
        moment = since - timedelta(seconds=1)
    else:  # pragma: no cover - more transitions than any policy makes; start from now then
        segments.append((start, _measure_reached(assessment.evaluation.measures[target.measure])))
    segments.reverse()
    for index, (begin, state) in enumerate(segments):
        if not state:
            continue
        end = segments[index + 1][0] if index + 1 < len(segments) else None
        k = max(1, math.ceil((begin - start) / DAY))
        moment = start + k * DAY
        if end is not None and moment >= end:
            continue
        confirmed = _confirmed(assessment, target, moment)
        if confirmed is not None:
            return moment, confirmed
    return None


def _candidates(assessment: Assessment) -> list[Event]:
    """Adverse events that counted and were never disputed, most consequential first."""
    outcomes = {o.event: o for o in assessment.engine.events}
    disputed = {d.event_seq for d in assessment.disputes} | {d.event for d in assessment.disputes}
    ranked = []
    for event in assessment.scored:
        outcome = outcomes.get(event.key)
        if outcome is None or outcome.counts_until is None:
            continue
        if event.seq in disputed or event.key in disputed or event.source == HYPOTHETICAL_SOURCE:
            continue
        if not is_adverse(assessment.policy, event):
            continue
        ranked.append((-abs(outcome.points_now), -event.occurred_at.timestamp(), event.key, event))
    ranked.sort(key=lambda item: item[:3])
    return [item[3] for item in ranked]


def _removals(assessment: Assessment, target: Target, candidates: list[Event],
              exact_limit: int) -> tuple[tuple[Event, ...] | None, bool, Evaluation | None]:
    policy = assessment.policy

    def attempt(chosen: Sequence[Event]) -> Evaluation | None:
        events, _, _ = modified_history(assessment, [e.key for e in chosen])
        result = evaluate_history(assessment, events, assessment.valid_at)
        return result if reached(policy, target, result) else None

    if len(candidates) <= exact_limit:
        for size in range(1, len(candidates) + 1):
            for chosen in itertools.combinations(candidates, size):
                result = attempt(chosen)
                if result is not None:
                    return chosen, True, result
        return None, True, None
    picked: list[Event] = []
    result = None
    for event in candidates:
        picked.append(event)
        result = attempt(picked)
        if result is not None:
            break
    if result is None:
        return None, False, None
    for event in reversed(list(picked)):
        fewer = [e for e in picked if e is not event]
        smaller = attempt(fewer)
        if smaller is not None:
            picked, result = fewer, smaller
    return tuple(picked), False, result


# -- positive paths -----------------------------------------------------------------------


def positive_paths(assessment: Assessment,
                   target: Target) -> tuple[tuple[PositivePath, ...], tuple[str, ...]]:
    """Event types that alone reach ``target``: how many, how often, by when; and notes.

    Candidates are the types a consented rule-based scorecard of the target uses (for a
    measure: the scorecards its condition reads) whose points can work in the subject's
    favour there, in a category a policy may score (never an out-of-bounds one). For each,
    events are added one ``every`` apart from the moment asked about (paced to the
    scorecard's caps) and the fewest that reach the target are found with :func:`what_if`
    — doubling, then halving the gap; each answer is the engine's own. Soonest first.
    """
    policy = assessment.policy
    names = [target.scorecard] if isinstance(target, TierTarget) else \
        list(policy.measures[target.measure].scorecards)
    notes: list[str] = []
    if assessment.known_at is not None:
        return (), ("by new events: not projected for a moment with a knowledge limit",)
    cards: list[CompiledScorecard] = []
    for name in names:
        card = policy.scorecards[name]
        if card.model is not None:
            continue  # events reach a statistical score only through its metrics
        if not assessment.evaluation.scorecards[name].consented:
            notes.append(f"{name} is opt-in and you have not opted in: no event counts on it "
                         "until you do")
            continue
        cards.append(card)
    chosen: dict[str, CompiledScorecard] = {}
    for card in cards:
        for name in policy.event_types:
            if name in card.events:
                chosen.setdefault(name, card)
    paths = []
    for name, card in chosen.items():
        etype = policy.event_types[name]
        if etype.category in OUT_OF_BOUNDS_CATEGORIES or etype.category not in ALLOWED_CATEGORIES:
            continue
        favourable = _favourable(assessment, etype, card)
        if favourable is None:
            continue
        path = _path(assessment, target, etype, card, *favourable)
        if path is None:
            notes.append(f"{phrased(etype.label, etype, False)} ({signed(favourable[1])} "
                         "each) helps, but alone does not reach it within "
                         f"{PATH_HORIZON.days // 365} years")
        else:
            paths.append(path)
    paths.sort(key=lambda p: (p.reached_at, p.count, p.type))
    return tuple(paths), tuple(notes)


def _paths_searched(assessment: Assessment, target: Target) -> bool:
    if assessment.known_at is not None:
        return False
    policy = assessment.policy
    names = [target.scorecard] if isinstance(target, TierTarget) else \
        list(policy.measures[target.measure].scorecards)
    return any(policy.scorecards[name].model is None for name in names)


def _favourable(assessment: Assessment, etype: CompiledEventType,
                card: CompiledScorecard) -> tuple[dict[str, Any], float] | None:
    # The subject's own latest favourable attributes, else the smallest favourable probe.
    for event in sorted(assessment.scored, key=lambda e: e.occurred_at, reverse=True):
        if event.type != etype.name or event.source == HYPOTHETICAL_SOURCE:
            continue
        fitted = etype.fit(event.attributes)
        if not isinstance(fitted, str) and fitted[1] != 0.0 and not card.is_adverse(fitted[1]):
            return fitted
    best: tuple[dict[str, Any], float] | None = None
    for attributes in probe_attributes(etype):
        fitted = etype.fit(attributes)
        if isinstance(fitted, str) or fitted[1] == 0.0 or card.is_adverse(fitted[1]):
            continue
        if best is None or abs(fitted[1]) < abs(best[1]):
            best = fitted
    return best


def _pace(card: CompiledScorecard, type_name: str, points: float) -> tuple[timedelta, str]:
    # Whole days, so that no calendar period of a cap gets more events than its allowance
    # lets count in full: at most k a period is one every ceil(longest period / k) days.
    favoured = CapDirection.GAINS if card.adverse_sign < 0 else CapDirection.LOSSES
    days, why = 1, ""
    for cap in card.caps:
        if cap.applies_to is not favoured or type_name in cap.exempt:
            continue
        per = max(1, math.floor(cap.max / abs(points) + 1e-9))
        need = math.ceil(_PERIOD_DAYS[cap.period] / per)
        if need > days:
            days, why = need, f"{card.name} counts at most {plain(cap.max)} points " \
                f"{'gained' if favoured is CapDirection.GAINS else 'lost'} a {cap.period.value}"
    return timedelta(days=days), why


def _path(assessment: Assessment, target: Target, etype: CompiledEventType,
          card: CompiledScorecard, attributes: dict[str, Any],
          points: float) -> PositivePath | None:
    every, why = _pace(card, etype.name, points)
    start = assessment.valid_at
    limit = min(PATH_LIMIT, min(PATH_HORIZON, _END - start) // every + 1)
    label = phrased(etype.label, etype, card.is_adverse(points))

    def schedule(n: int) -> list[Hypothetical]:
        return [Hypothetical(etype.name, start + i * every, attributes) for i in range(n)]

    def attempt(n: int) -> Evaluation:
        events = schedule(n)
        return what_if(assessment, add=events, at=events[-1].occurred_at).after

    def gain(result: Evaluation) -> float:
        # What the added events themselves bring now: once more of them bring no more
        # (a `when` that lets one count, an expiry), the type cannot get there alone.
        return sum(-card.adverse_sign * c.points_now
                   for c in result.scorecards[card.name].contributions
                   if c.event[0] == HYPOTHETICAL_SOURCE)

    # Doubling until reached (or no gain over half as many, or over the limit), then
    # halving the gap: `low` never reaches (0: now), `high` does.
    low, high, found = 0, 1, None
    previous = 0.0
    while found is None:
        result = attempt(high)
        if reached(assessment.policy, target, result):
            found = result
            break
        if high >= limit or gain(result) <= previous + 1e-9:
            return None
        previous = gain(result)
        low, high = high, min(limit, high * 2)
    while high - low > 1:
        middle = (low + high) // 2
        result = attempt(middle)
        if reached(assessment.policy, target, result):
            high, found = middle, result
        else:
            low = middle
    events = schedule(high)
    return PositivePath(etype.name, label, attributes, points, high, every, why,
                        tuple(events), events[-1].occurred_at, found)


def _score(value: float | None) -> str:
    return "no score" if value is None else plain(value)


def _value(value: float | int | str | None) -> str:
    return "missing" if value is None else value_text(value)


def _event_name(event: Event) -> str:
    where = f"{event.source}:{event.source_event_id}" if event.seq is None else f"seq {event.seq}"
    return f"{event.type} on {fields.day(event.occurred_at)} ({where})"
