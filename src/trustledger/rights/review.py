"""Human review: a subject asks a person to look at an adverse measure (GDPR Art. 22(3)).

Any adverse measure — a restriction in force, or a privilege denied — can be
sent to human review (safeguard 6). A reviewer confirms it or lifts it, always
with a written reason that the subject sees. Two ledger records about the subject:

* ``review.requested``: ``measure``, its ``kind``, ``state`` and ``since`` at the
  request (which decision is contested), ``policy_hash``, ``valid_at`` and the
  subject's optional ``statement``;
* ``review.resolved``: ``request_seq``, ``reviewer``, ``decision`` (``confirmed``
  or ``lifted``) and ``reason``.

A lift never edits events: :func:`apply_reviews` lays it over the engine's
:class:`~trustledger.engine.MeasureResult` (no longer adverse, the reviewer's
reason first among its reasons) for as long as the measure stays in the state
that was reviewed — the same ``since``. If the measure later comes into force
again for new reasons, that is a new decision, open to a new review.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from trustledger.engine import Evaluation, MeasureResult, MeasureState, Reason
from trustledger.engine.result import MAX_REASONS
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.policy.models import MeasureKind
from trustledger.rights import fields
from trustledger.rights.records import recorded

REQUESTED = "review.requested"
"""Record kind: the subject asks for human review of a measure."""
RESOLVED = "review.resolved"
"""Record kind: a reviewer confirmed or lifted the measure."""
KINDS = (REQUESTED, RESOLVED)
"""Every review record kind."""
SLA = timedelta(days=30)
"""How long a reviewer has to decide a request (GDPR Art. 12(3): one month); its due date."""


class Decision(StrEnum):
    """A reviewer's decision about a reviewed measure."""

    CONFIRMED = "confirmed"
    """The measure stands."""
    LIFTED = "lifted"
    """The measure is lifted: a restriction is no longer in force, a privilege is granted."""


@dataclass(frozen=True, slots=True)
class Review:
    """One request for human review, with its resolution once there is one."""

    seq: int
    subject: str
    measure: str
    label: str
    kind: MeasureKind
    state: MeasureState
    since: datetime | None
    policy_hash: str
    valid_at: datetime
    requested_at: datetime
    statement: str = ""
    decision: Decision | None = None
    reviewer: str | None = None
    reason: str | None = None
    resolved_at: datetime | None = None
    resolution_seq: int | None = None

    @property
    def due_at(self) -> datetime:
        """When a reviewer should have decided: :data:`SLA` after the request."""
        return self.requested_at + SLA

    def decision_at(self, at: datetime) -> Decision | None:
        """The decision in force at ``at`` (``None``: pending, or not yet requested)."""
        if self.resolved_at is None or self.resolved_at > at:
            return None
        return self.decision

    def concerns(self, measure: MeasureResult) -> bool:
        """Whether ``measure`` is the decision this review is about: same measure, same since."""
        return measure.name == self.measure and measure.since == self.since

    def describe(self, at: datetime) -> str:
        """The review's state in words, as the measure's first reason shows it."""
        decision = self.decision_at(at)
        if decision is None:
            return (f"human review requested on {fields.day(self.requested_at)}; pending")
        assert self.resolved_at is not None
        return (f"{decision.value} on {fields.day(self.resolved_at)} after human review by "
                f"{self.reviewer}: {self.reason}")


def is_adverse_measure(measure: MeasureResult) -> bool:
    """A restriction in force or a privilege not in force: what human review can look at."""
    if measure.kind is MeasureKind.RESTRICTION:
        return measure.in_force
    return not measure.in_force


# -- pure ---------------------------------------------------------------------------------


def fold_reviews(entries: Iterable[Entry], at: datetime | None = None) -> list[Review]:
    """Fold review records (in ledger order) into reviews, as recorded by ``at``."""
    found: dict[int, Review] = {}
    for entry, payload in recorded(entries, KINDS, at):
        if entry.kind == REQUESTED:
            review = _requested(entry, payload)
            if review is not None:
                found[entry.seq] = review
            continue
        target = found.get(payload.get("request_seq", -1))
        if target is not None and target.decision is None:
            found[target.seq] = replace(
                target, decision=Decision(payload["decision"]),
                reviewer=str(payload.get("reviewer", "")), reason=str(payload.get("reason", "")),
                resolved_at=entry.recorded_at, resolution_seq=entry.seq)
    return list(found.values())


def apply_reviews(evaluation: Evaluation, reviews: Iterable[Review], at: datetime) -> Evaluation:
    """Lay human reviews over an evaluation's measures, as they stand at ``at``.

    For each adverse measure that a review recorded by ``at`` is about (same measure,
    same ``since``): lifted — the measure is no longer adverse from the decision on,
    the reviewer's reason first; confirmed or pending — unchanged, the review's
    state first among its reasons. At most four reasons, as always. Events,
    scores and other measures are untouched.
    """
    known = [r for r in reviews if r.requested_at <= at]
    if not known:
        return evaluation
    measures = dict(evaluation.measures)
    changed = False
    for name, measure in evaluation.measures.items():
        if not is_adverse_measure(measure):
            continue
        # The latest request about this very decision (same measure, same since).
        review = next((r for r in reversed(known) if r.concerns(measure)), None)
        if review is None:
            continue
        reason = Reason(review.describe(at))
        kept = measure.reasons[: MAX_REASONS - 1]
        if review.decision_at(at) is Decision.LIFTED:
            assert review.resolved_at is not None
            restriction = measure.kind is MeasureKind.RESTRICTION
            measures[name] = replace(
                measure,
                state=MeasureState.INACTIVE if restriction else MeasureState.GRANTED,
                in_force=not restriction, since=review.resolved_at, held_until=None,
                reasons=(reason, *kept))
        else:
            measures[name] = replace(measure, reasons=(reason, *kept))
        changed = True
    return replace(evaluation, measures=measures) if changed else evaluation


# -- reading and writing a ledger ---------------------------------------------------------


def reviews(ledger: Ledger, subject: str, at: datetime | None = None) -> list[Review]:
    """Every review the subject asked for (with resolutions), as recorded by ``at``."""
    return fold_reviews((e for e in ledger.records(subject=subject) if e.kind in KINDS), at)


def get_review(ledger: Ledger, request_seq: int) -> Review:
    """The review requested at ``request_seq``; :class:`NotFoundError` naming the field if none."""
    subject = fields.case_subject(ledger, "request_seq", request_seq, REQUESTED,
                                  "review request")
    found = next((r for r in reviews(ledger, subject) if r.seq == request_seq), None)
    if found is None:
        raise NotFoundError(f"request_seq: review request {request_seq} was purged")
    return found


def request_review(
    ledger: Ledger, evaluation: Evaluation, measure: str, *, statement: str = ""
) -> Review:
    """The subject asks for human review of ``measure`` as ``evaluation`` decided it.

    ``evaluation`` is the subject's current decision (from
    :func:`trustledger.scoring.evaluate_subject`, reviews already applied).
    Raises :class:`NotFoundError` (``measure``) for a measure the policy does not
    have, :class:`InputError` when it is not adverse (nothing to review) or this
    decision is already under review or was reviewed; nothing is recorded then.
    """
    subject = evaluation.subject
    if subject is None:
        raise InputError("evaluation: it names no subject (no events were scored)")
    words = fields.text("statement", statement, required=False)
    result = evaluation.measures.get(measure)
    if result is None:
        raise NotFoundError(f"measure: policy {evaluation.policy} has no measure {measure!r}")
    if not is_adverse_measure(result):
        raise InputError(
            f"measure: {result.label} is {result.state.value} for subject {subject!r}; only "
            "a restriction in force or a privilege denied can be reviewed")
    for earlier in reviews(ledger, subject):
        if earlier.concerns(result):
            state = "pending" if earlier.decision is None else earlier.decision.value
            raise InputError(
                f"measure: this decision on {result.label} is already under review or was "
                f"reviewed (request {earlier.seq}, {state})")
    payload: dict[str, Any] = {
        "measure": result.name,
        "label": result.label,
        "kind": result.kind.value,
        "state": result.state.value,
        "since": result.since.isoformat() if result.since is not None else None,
        "policy_hash": evaluation.policy_hash,
        "valid_at": evaluation.valid_at.isoformat(),
        "statement": words,
    }
    record = ledger.append_record(REQUESTED, payload, subject=subject)
    review = _requested(record, payload)
    assert review is not None  # built from the payload just written
    return review


def resolve_review(
    ledger: Ledger, request_seq: int, reviewer: str, decision: Decision | str, reason: str
) -> Review:
    """A reviewer confirms or lifts the reviewed measure, with a written reason.

    Raises :class:`NotFoundError` (``request_seq``) or :class:`InputError` naming
    the field (a missing reason, an unknown decision, a review already resolved);
    nothing is recorded then.
    """
    fields.name("reviewer", reviewer)
    try:
        found = Decision(decision)
    except ValueError:
        raise InputError(
            f"decision: {decision!r} is not one of {', '.join(d.value for d in Decision)}"
        ) from None
    why = fields.text("reason", reason)
    review = get_review(ledger, request_seq)
    if review.decision is not None:
        assert review.resolved_at is not None
        raise InputError(
            f"request_seq: review {review.seq} was already resolved on "
            f"{fields.day(review.resolved_at)} ({review.decision.value})")
    record = ledger.append_record(
        RESOLVED,
        {"request_seq": review.seq, "reviewer": reviewer, "decision": found.value,
         "reason": why},
        subject=review.subject,
    )
    return replace(review, decision=found, reviewer=reviewer, reason=why,
                   resolved_at=record.recorded_at, resolution_seq=record.seq)


def _requested(entry: Entry, payload: Mapping[str, Any]) -> Review | None:
    if entry.subject is None:
        return None
    since = payload.get("since")
    return Review(
        seq=entry.seq, subject=entry.subject, measure=str(payload["measure"]),
        label=str(payload.get("label", payload["measure"])),
        kind=MeasureKind(payload["kind"]), state=MeasureState(payload["state"]),
        since=datetime.fromisoformat(since) if isinstance(since, str) else None,
        policy_hash=str(payload.get("policy_hash", "")),
        valid_at=datetime.fromisoformat(str(payload["valid_at"])),
        requested_at=entry.recorded_at, statement=str(payload.get("statement", "")),
    )
