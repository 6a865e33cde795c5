"""The subject's full report: everything about them, every number explained (safeguard 5).

:func:`build_report` gathers, for one subject at one moment: every event (by date) with
its source, dates, status and contribution now and over time; scores, tiers and
measures with their principal reasons, and what it takes to reach each scorecard's next
tier (new events, decay, disputes) (at most four each, specific: event, date,
points); scores over time (monthly, each as the ledger knew it on that date);
disputes and reviews with where they stand; consents; and the access log — who
read the subject's data, when, for what purpose — and every notification sent about
them to a subscribed relying party (docs/cascades.md).

A :class:`Report` is a tree of frozen dataclasses: :meth:`Report.to_json` exports
it, :func:`trustledger.rights.html.report_html` renders a printable,
self-contained HTML page, :func:`trustledger.rights.render.report` the terminal
view. It is read-only: building it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from trustledger.cascades.records import Notice, fold_notices
from trustledger.engine import Evaluation, Event, Reason
from trustledger.engine.reasons import phrased
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.ledger.chain import EVENT_KIND
from trustledger.policy import CompiledPolicy
from trustledger.policy.compiled import CompiledScorecard
from trustledger.rights import fields
from trustledger.rights.access import Access, fold_access
from trustledger.rights.consent import Consent, fold_consents
from trustledger.rights.dispute import Dispute, DisputeStatus, is_adverse
from trustledger.rights.erasure import erased_at
from trustledger.rights.review import Review
from trustledger.rights.whatif import TierTarget, what_it_takes
from trustledger.scoring import Assessment, PublishedPolicy, assess, published_policies

MAX_POINTS = 120
"""At most this many points in the scores over time (monthly; every few months if longer)."""
REPORT_EXACT_LIMIT = 4
"""The next tier's fewest removals are found exactly up to this many candidates (greedy beyond)."""


@dataclass(frozen=True, slots=True)
class ReasonLine:
    """One principal reason, with the event (key and ledger seq) and points it is about.

    ``adverse`` says whether its points work against the subject (``None``: no points).
    """

    text: str
    event: tuple[str, str] | None
    event_seq: int | None
    points: float | None
    adverse: bool | None = None


@dataclass(frozen=True, slots=True)
class PathLine:
    """A positive path to the next tier: ``count`` events of ``type``, ``every_days`` apart.

    From ``first_at`` (the report's moment) to ``reached_at``, when the tier is reached
    (:class:`~trustledger.rights.whatif.PositivePath`, checked by the engine); ``text``
    says it in words.
    """

    type: str
    label: str
    attributes: Mapping[str, Any]
    points: float
    count: int
    every_days: int
    first_at: datetime
    reached_at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class NextTier:
    """What it takes to reach the next better tier: new events, decay, disputes.

    ``paths`` are the positive paths (soonest first); ``by_decay_at`` the day decay and
    expiry alone reach it (``None``: never); ``lines`` the whole answer in words.
    """

    tier: str
    label: str
    paths: tuple[PathLine, ...]
    by_decay_at: datetime | None
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScoreLine:
    """A scorecard now: score, tier (name and label), at most four reasons, the next tier."""

    name: str
    consented: bool
    score: float | None
    tier: str | None
    reasons: tuple[ReasonLine, ...]
    tier_label: str | None = None
    next_tier: NextTier | None = None


@dataclass(frozen=True, slots=True)
class MeasureLine:
    """A privilege or restriction now: state, since when, and at most four reasons."""

    name: str
    label: str
    kind: str
    domain: str
    state: str
    in_force: bool
    since: datetime | None
    held_until: datetime | None
    reasons: tuple[ReasonLine, ...]


@dataclass(frozen=True, slots=True)
class EventLine:
    """One event about the subject: what, from whom, when, and what it does now and did.

    ``status`` says whether it counts and why not; ``over_time`` holds its points at
    each of the report's ``history`` dates (``None`` where it was not known or did
    not count then).
    """

    seq: int | None
    source: str
    source_event_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    attributes: Mapping[str, Any]
    supersedes: str | None
    points: float | None
    points_now: float
    counts: bool
    counts_until: datetime | None
    status: str
    dispute_seq: int | None
    over_time: tuple[float | None, ...]
    label: str = ""
    """The type's label, phrased by what this event did when the type can work either way
    (``rental returned (against you)``)."""


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """The subject's scores and measures in force on one date, as the ledger knew it then."""

    at: datetime
    policy_hash: str
    scores: Mapping[str, float | None]
    tiers: Mapping[str, str | None]
    in_force: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DisputeLine:
    """A dispute, where it stands, and its effect in words."""

    dispute: Dispute
    status: DisputeStatus
    deadline: datetime
    note: str


@dataclass(frozen=True, slots=True)
class ReviewLine:
    """A request for human review, where it stands, and the reviewer's reason."""

    review: Review
    state: str
    note: str


@dataclass(frozen=True, slots=True)
class ConsentLine:
    """A consent the subject gave, and whether it is in force."""

    consent: Consent
    active: bool
    description: str


@dataclass(frozen=True, slots=True)
class Report:
    """Everything about one subject at ``as_of``, from ledger position ``ledger_seq``."""

    subject: str
    as_of: datetime
    policy: str
    policy_hash: str
    ledger_seq: int
    ledger_hash: str
    scorecards: tuple[ScoreLine, ...]
    measures: tuple[MeasureLine, ...]
    events: tuple[EventLine, ...]
    history: tuple[HistoryPoint, ...]
    disputes: tuple[DisputeLine, ...]
    reviews: tuple[ReviewLine, ...]
    consents: tuple[ConsentLine, ...]
    access_log: tuple[Access, ...]
    purged_events: int
    notifications: tuple[Notice, ...] = ()
    """Every notification sent about the subject to a subscribed relying party."""

    def to_json(self, *, indent: bool = True) -> str:
        """The report as JSON: dates RFC 3339 (UTC), tuples as arrays."""
        option = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
        if indent:
            option |= orjson.OPT_INDENT_2
        return orjson.dumps(self, option=option).decode()

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (what :meth:`to_json` writes)."""
        value: dict[str, Any] = orjson.loads(self.to_json(indent=False))
        return value


def build_report(
    ledger: Ledger,
    subject: str,
    at: datetime,
    *,
    policy: CompiledPolicy | None = None,
) -> Report:
    """The subject's report at ``at`` under ``policy`` (default: the published one in force).

    Scores over time are evaluated at the start of each month after the first event
    was recorded, up to ``at``, each with the policy in force then (or ``policy``)
    and what the ledger knew then. Raises :class:`~trustledger.errors.ErasedError`
    for an erased subject and :class:`~trustledger.errors.NotFoundError` for one
    with no events or when no policy is in force.
    """
    fields.name("subject", subject)
    at = fields.moment("at", at)
    head_seq, head_hash = ledger.head()
    records = list(ledger.records(subject=subject))
    if erased_at(records) is not None:
        raise ErasedError(subject)
    events = list(ledger.events(subject))
    published = published_policies(ledger) if policy is None else []
    current_policy = policy or _in_force(published, at, {})
    if current_policy is None:
        raise NotFoundError(f"no published policy is in force at {at.isoformat()}")
    now = assess(current_policy, subject, events, records, at)
    compiled: dict[str, CompiledPolicy] = {current_policy.hash: current_policy}
    history = _history(subject, events, records, at, policy, published, compiled)
    history.append(now)
    return Report(
        subject=subject, as_of=at, policy=current_policy.name, policy_hash=current_policy.hash,
        ledger_seq=head_seq, ledger_hash=head_hash,
        scorecards=tuple(_score_line(now, name) for name in now.evaluation.scorecards),
        measures=tuple(_measure_line(now, m) for m in now.evaluation.measures),
        events=tuple(_event_line(now, e, history) for e in sorted(
            events, key=lambda e: (e.occurred_at, e.seq or 0, e.key))),
        history=tuple(_point(a) for a in history),
        disputes=tuple(DisputeLine(d, d.status_at(at), d.deadline, d.describe(at))
                       for d in now.disputes),
        reviews=tuple(_review_line(r, at) for r in now.reviews),
        consents=tuple(ConsentLine(c, c.active_at(at), c.describe())
                       for c in fold_consents(records, at)),
        access_log=tuple(fold_access(records, at)),
        purged_events=sum(1 for e in records if e.kind == EVENT_KIND and e.payload is None),
        notifications=tuple(fold_notices(records, at)),
    )


def history_dates(first: datetime, at: datetime) -> list[datetime]:
    """Month starts (UTC) after ``first`` and before ``at``: at most :data:`MAX_POINTS` - 1.

    When there are more, every few months, always ending with the last month start.
    """
    first = first.astimezone(UTC)
    month = first.year * 12 + first.month  # the month after first's (0-based months)
    dates = []
    while True:
        year, index = divmod(month, 12)
        moment = datetime(year, index + 1, 1, tzinfo=UTC)
        if moment >= at:
            break
        dates.append(moment)
        month += 1
    step = max(1, -(-len(dates) // (MAX_POINTS - 1)))
    return dates[::-1][::step][::-1]


def _in_force(published: Sequence[PublishedPolicy], at: datetime,
              compiled: dict[str, CompiledPolicy]) -> CompiledPolicy | None:
    candidates = [p for p in published if p.effective_from <= at]
    if not candidates:
        return None
    chosen = max(candidates, key=lambda p: (p.effective_from, p.seq))
    if chosen.hash not in compiled:
        compiled[chosen.hash] = chosen.compile()
    return compiled[chosen.hash]


def _history(subject: str, events: list[Event], records: list[Entry], at: datetime,
             policy: CompiledPolicy | None, published: Sequence[PublishedPolicy],
             compiled: dict[str, CompiledPolicy]) -> list[Assessment]:
    if not events:
        return []
    out = []
    for moment in history_dates(min(e.recorded_at for e in events), at):
        chosen = policy if policy is not None and policy.effective_from <= moment else \
            (_in_force(published, moment, compiled) if policy is None else None)
        known = [e for e in events if e.recorded_at <= moment]
        if chosen is None or not known:
            continue
        out.append(assess(chosen, subject, known, records, moment, moment))
    return out


def _reason(reason: Reason, seqs: Mapping[tuple[str, str], int | None],
            card: CompiledScorecard | None = None) -> ReasonLine:
    adverse = None
    if card is not None and reason.points is not None:
        adverse = card.is_adverse(reason.points)
    return ReasonLine(reason.text, reason.event,
                      seqs.get(reason.event) if reason.event is not None else None,
                      reason.points, adverse)


def _seqs(assessment: Assessment) -> dict[tuple[str, str], int | None]:
    return {e.key: e.seq for e in assessment.events}


def _score_line(assessment: Assessment, name: str) -> ScoreLine:
    card = assessment.evaluation.scorecards[name]
    seqs = _seqs(assessment)
    compiled = assessment.policy.scorecards[name]
    label = next((t.label for t in compiled.tiers if t.name == card.tier), None)
    return ScoreLine(card.name, card.consented, card.score, card.tier,
                     tuple(_reason(r, seqs, compiled) for r in card.reasons), label,
                     _next_tier(assessment, compiled))


def _next_tier(assessment: Assessment, card: CompiledScorecard) -> NextTier | None:
    result = assessment.evaluation.scorecards[card.name]
    if not result.consented or result.tier is None or card.model is not None:
        return None
    names = [t.name for t in card.tiers]
    rank = names.index(result.tier)
    better = rank + 1 if card.adverse_sign < 0 else rank - 1
    if not 0 <= better < len(names):
        return None
    tier = card.tiers[better]
    # Greedy removals beyond a few candidates: the report answers for every scorecard.
    takes = what_it_takes(assessment, TierTarget(card.name, tier.name, tier.label),
                          exact_limit=REPORT_EXACT_LIMIT)
    paths = tuple(PathLine(p.type, p.label, dict(p.attributes), p.points, p.count,
                           p.every.days, p.events[0].occurred_at, p.reached_at, p.describe())
                  for p in takes.paths)
    return NextTier(tier.name, tier.label, paths, takes.by_decay_at, takes.summary())


def _measure_line(assessment: Assessment, name: str) -> MeasureLine:
    m = assessment.evaluation.measures[name]
    seqs = _seqs(assessment)
    return MeasureLine(m.name, m.label, m.kind.value, m.domain, m.state.value, m.in_force,
                       m.since, m.held_until, tuple(_reason(r, seqs) for r in m.reasons))


def _event_line(now: Assessment, event: Event, history: Sequence[Assessment]) -> EventLine:
    outcome = next((o for o in now.evaluation.events if o.event == event.key), None)
    left = next((x for x in now.left_out if x.event.key == event.key), None)
    dispute = next((d for d in now.disputes if d.event_seq == event.seq), None)
    over_time = tuple(_points_in(a.evaluation, event.key) for a in history)
    if left is not None:
        status = left.note
    elif outcome is None:
        status = f"occurs on {fields.day(event.occurred_at)}, after {fields.day(now.valid_at)}"
    elif outcome.counted:
        status = "counts"
        if dispute is not None:
            status += f"; {dispute.describe(now.as_of)}"
    else:
        status = outcome.why_not or "does not count"
        if dispute is not None:
            status += f"; {dispute.describe(now.as_of)}"
    return EventLine(
        seq=event.seq, source=event.source, source_event_id=event.source_event_id,
        type=event.type, occurred_at=event.occurred_at, recorded_at=event.recorded_at,
        attributes=dict(event.attributes), supersedes=event.supersedes,
        points=outcome.points if outcome is not None else None,
        points_now=outcome.points_now if outcome is not None else 0.0,
        counts=outcome.counted if outcome is not None else False,
        counts_until=outcome.counts_until if outcome is not None else None,
        status=status, dispute_seq=dispute.seq if dispute is not None else None,
        over_time=over_time, label=_label(now.policy, event),
    )


def _label(policy: CompiledPolicy, event: Event) -> str:
    etype = policy.event_types.get(event.type)
    if etype is None:
        return event.type
    fitted = etype.fit(event.attributes)
    if isinstance(fitted, str) or fitted[1] == 0.0:
        return etype.label
    return phrased(etype.label, etype, is_adverse(policy, event))


def _points_in(evaluation: Evaluation, key: tuple[str, str]) -> float | None:
    outcome = next((o for o in evaluation.events if o.event == key), None)
    if outcome is None or not outcome.counted:
        return None
    return outcome.points_now


def _point(assessment: Assessment) -> HistoryPoint:
    result = assessment.evaluation
    return HistoryPoint(
        at=assessment.valid_at, policy_hash=result.policy_hash,
        scores={n: c.score for n, c in result.scorecards.items()},
        tiers={n: c.tier for n, c in result.scorecards.items()},
        in_force=tuple(m.name for m in result.measures.values() if m.in_force),
    )


def _review_line(review: Review, at: datetime) -> ReviewLine:
    decision = review.decision_at(at)
    return ReviewLine(review, "pending" if decision is None else decision.value,
                      review.describe(at))
