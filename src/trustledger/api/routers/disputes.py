"""The sources' side of disputes: see the disputes about your events, and answer them.

Only the source that reported a disputed event sees or answers its dispute (404 for
any other source, as for its events). An answer is ``verified``, ``corrected`` (a new
event of yours superseding the disputed one) or ``retracted``; the new event is
checked as any event you append (accreditation: 403; the schema of the policy in
force: 422) before anything is written. Reading a dispute shows the subject's words,
so every read is access-logged (purpose ``dispute``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from trustledger.api import rights as shown
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.events import schema_validator, type_problem
from trustledger.api.problems import responses
from trustledger.api.schemas import DisputeAnswer, DisputeOut, SourceDisputes
from trustledger.api.service import Caller, Service
from trustledger.engine import RETRACTION
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import EventIn
from trustledger.principals import PermissionDeniedError, Role
from trustledger.rights.dispute import Dispute, answer_dispute, get_dispute

router = APIRouter(prefix="/v1/disputes", tags=["sources"])

DisputeSeq = Annotated[int, Path(ge=1, le=2**62, description="the dispute's seq")]


def _own_dispute(service: Service, caller: Caller, dispute_seq: int) -> Dispute:
    """The dispute if it is about one of the caller's events; 404 otherwise."""
    try:
        found = get_dispute(service.ledger, dispute_seq)
    except NotFoundError:
        found = None
    if found is None or found.source != caller.principal.name:
        raise NotFoundError(f"dispute_seq: {caller.principal.name!r} has no dispute "
                            f"{dispute_seq} about its events")
    return found


def _log(service: Service, caller: Caller, items: list[Dispute], read: str) -> None:
    shown.log_case_reads(service, caller, [d.subject for d in items], shown.DISPUTE_PURPOSE,
                         read)


@router.get("", response_model=SourceDisputes, responses=responses(401, 403, 422, 429, 503))
def source_disputes(request: Request, caller: CallerDep,
                    everything: Annotated[bool, Query(
                        alias="all", description="also the answered and resolved ones")] = False
                    ) -> Response:
    """The disputes about your events: undecided ones (``all=true``: every one)."""
    caller.require(Role.SOURCE)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    mine = [d for d in shown.all_disputes(service.ledger)
            if d.source == caller.principal.name and (everything or shown.undecided(d, now))]
    mine.sort(key=lambda d: (d.deadline, d.seq))
    _log(service, caller, mine, "disputes")
    return json_response({"disputes": [shown.dispute(d, now) for d in mine]})


@router.get("/{dispute_seq}", response_model=DisputeOut,
            responses=responses(401, 403, 404, 422, 429, 503))
def source_dispute(request: Request, caller: CallerDep, dispute_seq: DisputeSeq) -> Response:
    """One dispute about one of your events."""
    caller.require(Role.SOURCE)
    service = service_of(request)
    service.begin(caller)
    found = _own_dispute(service, caller, dispute_seq)
    _log(service, caller, [found], "dispute")
    return json_response(shown.dispute(found, service.now()))


@router.post("/{dispute_seq}/answer", response_model=DisputeOut,
             responses=responses(401, 403, 404, 413, 422, 429, 503))
def answer(request: Request, caller: CallerDep, dispute_seq: DisputeSeq,
           body: DisputeAnswer) -> Response:
    """Verify, correct or retract your disputed event (once; before a reviewer resolves it).

    Verified within the SLA, the event counts again; corrected, the correction counts
    instead; retracted, it is gone.
    """
    caller.require(Role.SOURCE)
    service = service_of(request)
    service.begin(caller)
    found = _own_dispute(service, caller, dispute_seq)
    event = _answer_event(service, caller, found, body)
    done = answer_dispute(service.ledger, found.seq, caller.principal.name, body.answer,
                          note=body.note, event=event)
    service.view.forget(found.subject)
    _log(service, caller, [done], "dispute")
    return json_response(shown.dispute(done, service.now()))


def _answer_event(service: Service, caller: Caller, found: Dispute,
                  body: DisputeAnswer) -> EventIn | None:
    """The correcting or retracting event, checked as an appended event would be."""
    given = {"source_event_id": body.source_event_id, "type": body.type,
             "occurred_at": body.occurred_at, "attributes": body.attributes}
    if body.answer == "verified":
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise InputError(f"{extra[0]}: a verification carries no event (only a correction "
                             "or retraction does)")
        return None
    if body.source_event_id is None:
        raise InputError(f"source_event_id: required: the id of your {body.answer} event "
                         f"superseding {found.source_event_id!r}")
    now = service.now()
    if body.answer == "retracted":
        if body.type not in (None, RETRACTION):
            raise InputError(f"type: a retraction is of type {RETRACTION!r}")
        if body.attributes:
            raise InputError("attributes: a retraction carries no attributes")
        kind, occurred, attributes = RETRACTION, body.occurred_at or now, {}
    else:
        if body.type is None:
            raise InputError("type: required: the correction's event type")
        if body.type == RETRACTION:
            raise InputError(f"type: a correction is an event of a scored type, not "
                             f"{RETRACTION!r} (answer 'retracted' to withdraw the event)")
        if body.occurred_at is None:
            raise InputError("occurred_at: required: when the corrected event happened")
        kind, occurred, attributes = body.type, body.occurred_at, body.attributes or {}
    refused = type_problem(service, caller, kind)
    if refused is not None:
        raise PermissionDeniedError(f"{refused[0]}: {refused[1]}")
    event = EventIn.model_validate({
        "source": caller.principal.name, "source_event_id": body.source_event_id,
        "subject": found.subject, "type": kind, "occurred_at": occurred,
        "attributes": attributes, "supersedes": found.source_event_id})
    problems = schema_validator(service.view.policy_in_force(now))(event)
    if problems:
        field, reason = problems[0]
        raise InputError(f"{field}: {reason}")
    if service.ledger.find_event(caller.principal.name, body.source_event_id) is not None:
        raise InputError(f"source_event_id: {body.source_event_id!r} is already one of your "
                         "events; give the new event a new id")
    return event
