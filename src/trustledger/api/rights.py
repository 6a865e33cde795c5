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
from trustledger.errors import NotFoundError, TrustLedgerError
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
from trustledger.scoring import Assessment, assess

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


# -- what a reviewer's decision rests on ------------------------------------------------------

CASE_EVENT_ROLES = ("disputed", "superseded", "correction", "reason", "evidence")
"""Why an event is shown with a case: the one disputed, the one it corrected, the source's
correction, one named in the reviewed measure's reasons, one counting in what it reads."""


def _involved(found: Dispute | Review, assessment: Assessment | None,
              everything: Iterable[Event]) -> list[tuple[int | None, str]]:
    """The events a case is about, each with its role (``(seq, role)``, most relevant first)."""
    if isinstance(found, Dispute):
        known = list(everything)
        out: list[tuple[int | None, str]] = [(found.event_seq, "disputed")]
        by_key = {e.key: e for e in known}
        by_seq = {e.seq: e for e in known if e.seq is not None}
        disputed = by_seq.get(found.event_seq)
        seen: set[int | None] = {found.event_seq}
        while disputed is not None and disputed.supersedes is not None:
            disputed = by_key.get((disputed.source, disputed.supersedes))
            if disputed is None or disputed.seq in seen:
                break
            seen.add(disputed.seq)
            out.append((disputed.seq, "superseded"))
        if found.answer is not None and found.answer.event_seq is not None:
            out.append((found.answer.event_seq, "correction"))
        return out
    if assessment is None:
        return []
    result = assessment.evaluation
    measure = result.measures.get(found.measure)
    seqs = {o.event: o.seq for o in result.events}
    out = []
    if measure is not None:
        out = [(seqs.get(r.event), "reason") for r in measure.reasons
               if r.event is not None and r.event in seqs]
    compiled = assessment.policy.measures.get(found.measure)
    if compiled is None:
        return out
    types = {t for m in compiled.metrics for t in assessment.policy.metrics[m].types}
    feeding = {c.event for name in compiled.scorecards if name in result.scorecards
               for c in result.scorecards[name].contributions if c.counted and c.points_now}
    named = {seq for seq, _ in out}
    evidence = sorted((o for o in result.events if o.counted and o.seq not in named
                       and (o.type in types or o.event in feeding)),
                      key=lambda o: (-abs(o.points_now), o.seq or 0))
    return out + [(o.seq, "evidence") for o in evidence]


def _case_event(seq: int | None, role: str, assessment: Assessment | None,
                events: dict[int, Event], cut: int) -> dict[str, Any]:
    found = events.get(seq) if seq is not None else None
    line: dict[str, Any] = {
        "seq": seq, "role": role, "source": None, "source_event_id": None, "type": None,
        "occurred_at": None, "recorded_at": None, "attributes": None, "points": None,
        "points_then": None, "counted": False, "note": "purged or unknown"}
    if found is None:
        return line
    line.update(source=found.source, source_event_id=found.source_event_id, type=found.type,
                occurred_at=found.occurred_at, recorded_at=found.recorded_at,
                attributes=dict(found.attributes), note="")
    if assessment is None:
        return line
    outcome_of = {o.event: o for o in assessment.evaluation.events}
    left = {x.event.key: x for x in assessment.left_out}
    o = outcome_of.get(found.key)
    if found.key in left:
        line["note"] = left[found.key].note
    elif o is not None:
        line.update(points=o.points, points_then=o.points_now, counted=o.counted,
                    note=o.why_not or "")
    elif seq is not None and seq >= cut:
        line["note"] = "recorded after the case was opened"
    else:
        line["note"] = "not known or not yet occurred at the decision"
    return line


def case_facts(service: Service, found: Dispute | Review, now: datetime) -> dict[str, Any]:
    """What a reviewer's decision on a case rests on (GDPR Art. 22(3): a review sees the facts).

    ``decided`` is the subject's assessment as it stood when the case was opened —
    the ledger up to (not including) the record opening it, valid at the moment the
    contested decision was made (a review: the decision's own ``valid_at`` under the
    policy version that made it; a dispute: its opening, under the policy then in
    force) — so a disputed event still counts in it, and a reviewed measure shows the
    state and reasons the subject asked about. ``null`` with ``decided_note`` saying
    why when there is nothing to assess (erased, no events, no policy).
    ``events`` are the events involved (see :data:`CASE_EVENT_ROLES`), with their
    points then; ``disputes`` every dispute of the subject as it stands now.
    Reads only: the case's read is logged once by :func:`read_case`.
    """
    record = service.view.subject(found.subject)
    cut = found.seq
    events = [e for e in record.events if e.seq is not None and e.seq < cut]
    records = [r for r in record.records if r.seq < cut]
    everything = {e.seq: e for e in record.events if e.seq is not None}
    assessment: Assessment | None = None
    note = ""
    try:
        if isinstance(found, Review):
            valid_at = found.valid_at
            if found.policy_hash not in {p.hash for p in service.view.policies()}:
                raise NotFoundError(f"policy {found.policy_hash} that made the decision is "
                                    "not published here")
            policy = service.view.compiled(found.policy_hash)
        else:
            valid_at = found.opened_at
            policy = service.view.policy_in_force(valid_at)
        assessment = assess(policy, found.subject, events, records, valid_at)
    except TrustLedgerError as exc:
        note = f"no assessment at the decision: {exc}"
    decided = None
    if assessment is not None:
        result = assessment.evaluation
        decided = {**outcome(result, assessment.policy), "ledger_seq": cut - 1,
                   "policy": result.policy, "policy_hash": result.policy_hash}
        note = (f"as the ledger stood just before the case was opened (position {cut - 1}), "
                f"valid at {result.valid_at.strftime('%Y-%m-%d %H:%M')} UTC")
    deadline = found.deadline if isinstance(found, Dispute) else found.due_at
    return {
        "decided": decided, "decided_note": note,
        "events": [_case_event(seq, role, assessment, everything, cut)
                   for seq, role in _involved(found, assessment, everything.values())],
        "disputes": [dispute(d, now) for d in fold_disputes(record.records)],
        "overdue": now >= deadline,
    }


def dispute_case(service: Service, found: Dispute, now: datetime) -> dict[str, Any]:
    """A dispute as a reviewer reads it: the dispute and :func:`case_facts`."""
    return {**dispute(found, now), **case_facts(service, found, now)}


def review_case(service: Service, found: Review, now: datetime) -> dict[str, Any]:
    """A request for human review as a reviewer reads it: the request and :func:`case_facts`."""
    return {**review(found, now), **case_facts(service, found, now)}
