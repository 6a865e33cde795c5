"""Evaluations, events, consents and principals as the JSON the API returns.

Plain dictionaries (serialised with orjson), shaped exactly as the models of
:mod:`trustledger.api.schemas`; building them directly keeps a decision cheap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trustledger.engine import (
    Contribution,
    Evaluation,
    Event,
    MeasureResult,
    Reason,
    ScorecardResult,
)
from trustledger.ledger import Entry
from trustledger.policy import CompiledPolicy
from trustledger.policy.register import Register
from trustledger.principals import Principal
from trustledger.registry import Proposal
from trustledger.rights.consent import Consent
from trustledger.rights.whatif import PositivePath
from trustledger.scoring import Assessment, PublishedPolicy


def reason(r: Reason) -> dict[str, Any]:
    """A principal reason."""
    return {
        "text": r.text,
        "event": None if r.event is None else {"source": r.event[0],
                                               "source_event_id": r.event[1]},
        "points": r.points,
    }


def score(card: ScorecardResult, label: str) -> dict[str, Any]:
    """A scorecard's score, tier and reasons."""
    return {"label": label, "consented": card.consented, "score": card.score,
            "tier": card.tier, "reasons": [reason(r) for r in card.reasons]}


def contributions(card: ScorecardResult,
                  seqs: dict[tuple[str, str], int | None]) -> list[dict[str, Any]]:
    """A scorecard's contributions by date: ``occurred_at``, then ledger seq, then key."""
    ordered = sorted(card.contributions, key=lambda c: (
        c.occurred_at, seqs.get(c.event) or 0, c.event))
    return [contribution(c) for c in ordered]


def positive_path(p: PositivePath) -> dict[str, Any]:
    """A positive path of what it takes: the events, how often, and by when."""
    return {
        "type": p.type, "label": p.label, "attributes": dict(p.attributes),
        "points": p.points, "count": p.count, "every_days": p.every.days,
        "paced_by": p.paced_by, "first_at": p.events[0].occurred_at,
        "reached_at": p.reached_at,
        "events": [{"type": h.type, "occurred_at": h.occurred_at,
                    "attributes": dict(h.attributes), "recorded_at": h.recorded_at}
                   for h in p.events],
        "text": p.describe(),
    }


def contribution(c: Contribution) -> dict[str, Any]:
    """One event's contribution to a scorecard."""
    return {
        "event": {"source": c.event[0], "source_event_id": c.event[1]}, "type": c.type,
        "label": c.label, "occurred_at": c.occurred_at, "points": c.points,
        "capped": c.capped, "points_now": c.points_now, "counts_until": c.counts_until,
        "counted": c.counted, "why_not": c.why_not, "notes": list(c.notes),
    }


def measure(m: MeasureResult) -> dict[str, Any]:
    """A measure's state, since when and why."""
    return {
        "label": m.label, "kind": m.kind.value, "domain": m.domain, "state": m.state.value,
        "in_force": m.in_force, "since": m.since, "held_until": m.held_until,
        "reasons": [reason(r) for r in m.reasons],
    }


def decision(result: Evaluation, policy: CompiledPolicy, purpose: str, party: str,
             subject: str, access_seq: int) -> dict[str, Any]:
    """A decision: only the measures and scorecards the purpose discloses."""
    declared = policy.purposes[purpose]
    return {
        "subject": subject, "purpose": purpose, "purpose_label": declared.label,
        "party": party, "policy": result.policy, "policy_hash": result.policy_hash,
        "valid_at": result.valid_at, "ledger_seq": result.ledger_seq, "access_seq": access_seq,
        "scorecards": {name: score(result.scorecards[name], policy.scorecards[name].label)
                       for name in declared.scorecards},
        "measures": {name: measure(result.measures[name]) for name in declared.measures},
    }


def subject_scores(assessment: Assessment, subject: str) -> dict[str, Any]:
    """The subject's whole evaluation, every contribution and every event left out included."""
    result, policy = assessment.evaluation, assessment.policy
    seqs = {e.key: e.seq for e in assessment.events}
    cards = {}
    for name, card in result.scorecards.items():
        detail = score(card, policy.scorecards[name].label)
        detail["total"] = card.total
        detail["contributions"] = contributions(card, seqs)
        detail["set_backs"] = [
            {"measure": b.measure, "prerequisite": b.prerequisite, "at": b.at, "to": b.to,
             "points": b.points, "counts_until": b.counts_until, "counted": b.counted,
             "text": b.text}
            for b in card.set_backs]
        cards[name] = detail
    return {
        "subject": subject, "policy": result.policy, "policy_hash": result.policy_hash,
        "valid_at": result.valid_at, "ledger_seq": result.ledger_seq, "scorecards": cards,
        "measures": {name: measure(m) for name, m in result.measures.items()},
        "metrics": dict(result.metrics),
        "left_out": [{"event": {"source": x.event.source,
                                "source_event_id": x.event.source_event_id}, "note": x.note}
                     for x in assessment.left_out],
    }


def event(e: Event) -> dict[str, Any]:
    """An event as recorded."""
    return {
        "seq": e.seq, "source": e.source, "source_event_id": e.source_event_id, "type": e.type,
        "occurred_at": e.occurred_at, "recorded_at": e.recorded_at,
        "attributes": dict(e.attributes), "supersedes": e.supersedes,
    }


def consent(c: Consent, now: datetime) -> dict[str, Any]:
    """A consent with its state now."""
    return {
        "seq": c.seq, "scope": c.scope, "party": c.party, "purpose": c.purpose,
        "scorecard": c.scorecard, "granted_at": c.granted_at, "expires_at": c.expires_at,
        "withdrawn_at": c.withdrawn_at, "active": c.active_at(now),
    }


def access(entry: Entry) -> dict[str, Any]:
    """One access-log entry."""
    payload = entry.payload or {}
    return {
        "seq": entry.seq, "at": entry.recorded_at, "principal": str(payload.get("principal")),
        "name": str(payload.get("name")), "role": str(payload.get("role")),
        "purpose": str(payload.get("purpose")), "read": str(payload.get("read")),
    }


def principal(p: Principal) -> dict[str, Any]:
    """A principal, never its key."""
    return {
        "id": p.id, "name": p.name, "role": p.role.value, "accreditations": list(p.accreditations),
        "domains": list(p.domains), "subject": p.subject, "rate_limit": p.rate_limit,
        "created_at": p.created_at, "revoked_at": p.revoked_at,
    }


def policy(p: PublishedPolicy, compiled: CompiledPolicy, in_force: bool) -> dict[str, Any]:
    """A published policy version and the purposes it declares."""
    return {
        "seq": p.seq, "name": p.name, "hash": p.hash, "effective_from": p.effective_from,
        "published_at": p.published_at, "in_force": in_force, "register_hash": p.register_hash,
        "purposes": {name: {"label": x.label, "domain": x.domain, "measures": list(x.measures),
                            "scorecards": list(x.scorecards)}
                     for name, x in compiled.purposes.items()},
    }


def proposal(p: Proposal) -> dict[str, Any]:
    """A proposed register version and its status (never its text: ``GET /v1/register``)."""
    return {
        "seq": p.seq, "name": p.name, "hash": p.hash, "status": p.status,
        "proposed_by": p.proposed_by, "proposed_at": p.proposed_at,
        "approved_by": p.approved_by, "approved_at": p.approved_at,
        "superseded_by": p.superseded_by,
    }


def register(p: Proposal, register: Register) -> dict[str, Any]:
    """The register in force: its approval and each event type's declaration."""
    return {
        "name": register.name, "hash": register.hash, "seq": p.seq,
        "proposed_by": p.proposed_by, "approved_by": p.approved_by,
        "approved_at": p.approved_at,
        "event_types": {name: t.model_dump(mode="json", exclude_none=True)
                        for name, t in register.event_types.items()},
    }
