"""The reviewers' router: the queue of cases, and resolving disputes and human reviews.

A reviewer sees only cases a subject opened (a dispute, a request for human review)
— the subject's own request is what the read is for — and never changes events: a
dispute is resolved ``valid`` (the event counts again) or ``invalid`` (removed from
scoring), a review ``confirmed`` or ``lifted``, always with a written reason the
subject sees. Every read of a case, the queue included, is access-logged about its
subject (purpose ``dispute`` or ``human review``), committed before the answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from trustledger.api import rights as shown
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import (
    DisputeOut,
    DisputeResolution,
    ReviewerDisputeOut,
    ReviewerReviewOut,
    ReviewOut,
    ReviewQueue,
    ReviewResolution,
)
from trustledger.api.service import Caller, Service
from trustledger.principals import Role
from trustledger.rights import resolve_dispute, resolve_review

router = APIRouter(prefix="/v1/reviewer", tags=["reviewers"])

CaseSeq = Annotated[int, Path(ge=1, le=2**62, description="the seq that opened the case")]
_READ = responses(401, 403, 404, 422, 429, 503)
_WRITE = responses(401, 403, 404, 413, 422, 429, 503)


def reviewing(request: Request, caller: Caller) -> Service:
    """The service, once the caller is shown to be a reviewer and the request has begun."""
    caller.require(Role.REVIEWER)
    service = service_of(request)
    service.begin(caller)
    return service


@router.get("/queue", response_model=ReviewQueue, responses=responses(401, 403, 429, 503))
def queue(request: Request, caller: CallerDep) -> Response:
    """Undecided disputes and pending human reviews, earliest due date first.

    Never filtered or ranked by score or tier: by due date only.
    """
    service = reviewing(request, caller)
    now = service.now()
    cases = shown.reviewer_queue(service, caller, now)
    return json_response({"as_of": now, "items": [c.item for c in cases]})


@router.get("/disputes/{dispute_seq}", response_model=ReviewerDisputeOut, responses=_READ)
def dispute(request: Request, caller: CallerDep, dispute_seq: CaseSeq) -> Response:
    """One dispute and what deciding it rests on.

    The event and what it did, the subject's reason and information, the source's
    answer, the subject's score, tier and measures when the dispute was opened, and
    the subject's other disputes.
    """
    service = reviewing(request, caller)
    found = shown.read_case(service, caller, shown.DISPUTE_CASE, dispute_seq)
    return json_response(shown.dispute_case(service, found, service.now()))


@router.post("/disputes/{dispute_seq}/resolution", response_model=DisputeOut,
             responses=_WRITE)
def resolve(request: Request, caller: CallerDep, dispute_seq: CaseSeq,
            body: DisputeResolution) -> Response:
    """Resolve a dispute: ``valid`` (counts again) or ``invalid`` (removed), with a reason."""
    service = reviewing(request, caller)
    done = resolve_dispute(service.ledger, dispute_seq, caller.principal.name, body.outcome,
                           body.reason)
    shown.after_decision(service, caller, shown.DISPUTE_CASE, done)
    return json_response(shown.dispute(done, service.now()))


@router.get("/reviews/{request_seq}", response_model=ReviewerReviewOut, responses=_READ)
def review(request: Request, caller: CallerDep, request_seq: CaseSeq) -> Response:
    """One request for human review and what deciding it rests on.

    The measure as decided and its reasons, the score and tier then, the events
    driving it, the subject's statement and disputes, the due date.
    """
    service = reviewing(request, caller)
    found = shown.read_case(service, caller, shown.REVIEW_CASE, request_seq)
    return json_response(shown.review_case(service, found, service.now()))


@router.post("/reviews/{request_seq}/resolution", response_model=ReviewOut, responses=_WRITE)
def decide_review(request: Request, caller: CallerDep, request_seq: CaseSeq,
                  body: ReviewResolution) -> Response:
    """Confirm or lift the reviewed measure, with a written reason the subject sees."""
    service = reviewing(request, caller)
    done = resolve_review(service.ledger, request_seq, caller.principal.name, body.decision,
                          body.reason)
    shown.after_decision(service, caller, shown.REVIEW_CASE, done)
    return json_response(shown.review(done, service.now()))
