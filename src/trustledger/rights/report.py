"""The subject's full report: everything about them, every number explained (safeguard 5).

:func:`build_report` gathers, for one subject at one moment: every event with its
source, dates, status and contribution now and over time; scores, tiers and
measures with their principal reasons (at most four each, specific: event, date,
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
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.ledger.chain import EVENT_KIND
from trustledger.policy import CompiledPolicy
from trustledger.policy.compiled import CompiledScorecard
from trustledger.rights import fields
from trustledger.rights.access import Access, fold_access
from trustledger.rights.consent import Consent, fold_consents
from trustledger.rights.dispute import Dispute, DisputeStatus
from trustledger.rights.erasure import erased_at
from trustledger.rights.review import Review
from trustledger.scoring import Assessment, PublishedPolicy, assess, published_policies

MAX_POINTS = 120
"""At most this many points in the scores over time (monthly; every few months if longer)."""


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
class ScoreLine:
    """A scorecard now: score, tier and at most four reasons."""

    name: str
    consented: bool
    score: float | None
    tier: str | None
    reasons: tuple[ReasonLine, ...]


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
        events=tuple(_event_line(now, e, history) for e in events),
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
    return ScoreLine(card.name, card.consented, card.score, card.tier,
                     tuple(_reason(r, seqs, compiled) for r in card.reasons))


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
        over_time=over_time,
    )


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
