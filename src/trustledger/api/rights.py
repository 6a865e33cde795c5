"""Subject rights over HTTP: disputes, reviews and what-if as JSON, the reviewers' queue.

The rights themselves live in :mod:`trustledger.rights` (the CLI calls the same
functions); this module only shapes their results as the models of
:mod:`trustledger.api.schemas` and finds the cases waiting for a reviewer or a
source. Every read of a subject's case by someone other than the subject is
access-logged (:func:`case_reads`): a reviewer's reads, for the API's reviewer routes
and the portal's pages alike, by :func:`reviewer_queue`, :func:`read_case` and
:func:`after_decision`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from trustledger.api import render
from trustledger.api.access import access_record
from trustledger.api.service import Caller, Service
from trustledger.engine import Evaluation, Event
from trustledger.ledger import Entry, Ledger
from trustledger.policy import CompiledPolicy
from trustledger.principals import Principal, Record
from trustledger.rights.dispute import KINDS as DISPUTE_KINDS
from trustledger.rights.dispute import (
    Answer,
    Dispute,
    DisputeStatus,
    fold_disputes,
    get_dispute,
    resolve_dispute,
)
from trustledger.rights.review import KINDS as REVIEW_KINDS
from trustledger.rights.review import Review, fold_reviews, get_review, resolve_review
from trustledger.rights.whatif import MeasureTarget, WhatIf, WhatItTakes

DISPUTE_PURPOSE = "dispute"
"""Access-log purpose of a read made to handle a dispute the subject opened."""
REVIEW_PURPOSE = "human review"
"""Access-log purpose of a read made to decide a review the subject asked for."""


def dispute(d: Dispute, at: datetime) -> dict[str, Any]:
    """A dispute with where it stands at ``at``."""
    answer = d.answer
    resolution = d.resolution
    return {
        "seq": d.seq, "subject": d.subject, "event_seq": d.event_seq,
        "event": {"source": d.source, "source_event_id": d.source_event_id},
        "reason": d.reason, "opened_at": d.opened_at, "new_information": d.new_information,
        "information": [{"seq": i.seq, "at": i.at, "text": i.text} for i in d.information],
        "deadline": d.deadline, "status": d.status_at(at).value, "note": d.describe(at),
        "answer": None if answer is None else {
            "at": answer.at, "source": answer.source, "answer": answer.answer.value,
            "note": answer.note, "event_seq": answer.event_seq},
        "resolution": None if resolution is None else {
            "at": resolution.at, "reviewer": resolution.reviewer,
            "outcome": resolution.outcome.value, "reason": resolution.reason},
    }


def review(r: Review, at: datetime) -> dict[str, Any]:
    """A request for human review with its decision (if any) as of ``at``."""
    decision = r.decision_at(at)
    return {
        "seq": r.seq, "subject": r.subject, "measure": r.measure, "label": r.label,
        "kind": r.kind.value, "state": r.state.value, "since": r.since,
        "policy_hash": r.policy_hash, "requested_at": r.requested_at, "due_at": r.due_at,
        "statement": r.statement,
        "decision": None if decision is None else decision.value,
        "reviewer": r.reviewer if decision is not None else None,
        "reason": r.reason if decision is not None else None,
        "resolved_at": r.resolved_at if decision is not None else None,
        "note": r.describe(at),
    }


def event(e: Event) -> dict[str, Any]:
    """An event a what-if removed or added."""
    return {"seq": e.seq, "source": e.source, "source_event_id": e.source_event_id,
            "type": e.type, "occurred_at": e.occurred_at}


def outcome(result: Evaluation, policy: CompiledPolicy) -> dict[str, Any]:
    """Scores, tiers and measures of one evaluation, with their reasons."""
    return {"valid_at": result.valid_at,
            "scorecards": {name: render.score(card, policy.scorecards[name].label)
                           for name, card in result.scorecards.items()},
            "measures": {name: render.measure(m) for name, m in result.measures.items()}}


def what_it_takes(result: WhatItTakes) -> dict[str, Any]:
    """What it takes to reach a target."""
    target = result.target
    name = target.measure if isinstance(target, MeasureTarget) else \
        f"{target.scorecard}:{target.tier}"
    return {"target": name, "reached_now": result.reached_now,
            "by_decay_at": result.by_decay_at,
            "removals": None if result.removals is None else [event(e) for e in result.removals],
            "removals_exact": result.removals_exact,
            "candidates": [event(e) for e in result.candidates],
            "summary": list(result.summary())}


def what_if(result: WhatIf, policy: CompiledPolicy, takes: WhatItTakes | None
            ) -> dict[str, Any]:
    """A what-if: what was changed, what differs, the decision before and after."""
    return {"valid_at": result.valid_at, "removed": [event(e) for e in result.removed],
            "added": [event(e) for e in result.added], "changes": list(result.changes()),
            "before": outcome(result.before, policy), "after": outcome(result.after, policy),
            "what_it_takes": None if takes is None else what_it_takes(takes)}


# -- finding cases --------------------------------------------------------------------------

UNDECIDED = frozenset({DisputeStatus.OPEN, DisputeStatus.VERIFIED, DisputeStatus.LAPSED})
"""Dispute statuses a reviewer may still resolve (no resolution, not closed by its source)."""


def _by_subject(ledger: Ledger, kinds: Iterable[str]) -> dict[str, list[Entry]]:
    found: list[Entry] = []
    for kind in kinds:
        found.extend(ledger.records(kind=kind))
    grouped: dict[str, list[Entry]] = defaultdict(list)
    for entry in sorted(found, key=lambda e: e.seq):
        if entry.subject is not None:
            grouped[entry.subject].append(entry)
    return grouped


def all_disputes(ledger: Ledger) -> list[Dispute]:
    """Every dispute in the ledger (all subjects), with answers and resolutions."""
    return [d for entries in _by_subject(ledger, DISPUTE_KINDS).values()
            for d in fold_disputes(entries)]


def all_reviews(ledger: Ledger) -> list[Review]:
    """Every request for human review in the ledger (all subjects), with resolutions."""
    return [r for entries in _by_subject(ledger, REVIEW_KINDS).values()
            for r in fold_reviews(entries)]


def undecided(d: Dispute, at: datetime) -> bool:
    """Whether a reviewer may still resolve the dispute at ``at``."""
    return d.resolution is None and (d.answer is None or d.answer.answer is Answer.VERIFIED) \
        and d.status_at(at) in UNDECIDED


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One case in the reviewers' queue, as shown, and whose it is."""

    subject: str
    item: dict[str, Any]


def queue(ledger: Ledger, at: datetime) -> list[QueueEntry]:
    """Undecided disputes and pending reviews at ``at``, earliest due first."""
    out = []
    for d in all_disputes(ledger):
        if undecided(d, at):
            out.append(QueueEntry(d.subject, {
                "kind": "dispute", "seq": d.seq, "subject": d.subject, "opened_at": d.opened_at,
                "due_at": d.deadline, "overdue": at >= d.deadline,
                "status": d.status_at(at).value}))
    for r in all_reviews(ledger):
        if r.decision_at(at) is None:
            out.append(QueueEntry(r.subject, {
                "kind": "review", "seq": r.seq, "subject": r.subject,
                "opened_at": r.requested_at, "due_at": r.due_at, "overdue": at >= r.due_at,
                "status": "pending"}))
    out.sort(key=lambda q: (q.item["due_at"], q.item["seq"]))
    return out


def case_reads(principal: Principal, subjects: Iterable[str], purpose: str, read: str,
               request_id: str | None) -> list[Record]:
    """Access records of a reviewer's or source's read of subjects' cases (one per subject)."""
    return [access_record(principal, subject, purpose, read, request_id)
            for subject in dict.fromkeys(subjects)]


def log_case_reads(service: Service, caller: Caller, subjects: Iterable[str], purpose: str,
                   read: str) -> None:
    """Record ``caller``'s read of subjects' cases in each subject's access log (committed)."""
    service.access_log.append_all(case_reads(caller.principal, subjects, purpose, read,
                                             caller.request_id))


def reviewer_queue(service: Service, caller: Caller, at: datetime) -> list[QueueEntry]:
    """The reviewers' queue at ``at`` (:func:`queue`), its read logged about every subject in it."""
    cases = queue(service.ledger, at)
    log_case_reads(service, caller, [c.subject for c in cases if c.item["kind"] == "dispute"],
                   DISPUTE_PURPOSE, "review queue")
    log_case_reads(service, caller, [c.subject for c in cases if c.item["kind"] == "review"],
                   REVIEW_PURPOSE, "review queue")
    return cases


CaseT = TypeVar("CaseT", Dispute, Review)
"""A case a reviewer handles: a dispute or a request for human review."""


@dataclass(frozen=True, slots=True)
class CaseKind(Generic[CaseT]):
    """A kind of case a reviewer handles: how one is found and decided, how its read is logged."""

    get: Callable[[Ledger, int], CaseT]
    """The case opened at a seq (:class:`~trustledger.errors.NotFoundError` if none)."""
    resolve: Callable[[Ledger, int, str, str, str], CaseT]
    """Decide it: ledger, seq, the reviewer's name, the verdict, the written reason."""
    purpose: str
    """The access-log purpose of a reviewer's read of it."""
    read: str
    """What the access record says was read."""


DISPUTE_CASE = CaseKind(get_dispute, resolve_dispute, DISPUTE_PURPOSE, "dispute")
"""A dispute: resolved ``valid`` or ``invalid``."""
REVIEW_CASE = CaseKind(get_review, resolve_review, REVIEW_PURPOSE, "review")
"""A request for human review: decided ``confirmed`` or ``lifted``."""


def read_case(service: Service, caller: Caller, kind: CaseKind[CaseT], seq: int) -> CaseT:
    """The case of ``kind`` opened at ``seq``, its read logged about its subject."""
    found = kind.get(service.ledger, seq)
    log_case_reads(service, caller, [found.subject], kind.purpose, kind.read)
    return found


def after_decision(service: Service, caller: Caller, kind: CaseKind[CaseT],
                   decided: CaseT) -> None:
    """After a reviewer decided a case: the subject's cached state dropped, the read logged."""
    service.view.forget(decided.subject)
    log_case_reads(service, caller, [decided.subject], kind.purpose, kind.read)
