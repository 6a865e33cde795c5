"""The subjects' router: their own scores, reasons, events, consents and access log.

Every route is for the subject themself (a subject key speaks for one subject id):
any other caller gets 403, so no one reads another's data here. Reads by the
subject are not access-logged; the access log is what *others* read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request
from starlette.responses import Response

from trustledger.api import render
from trustledger.api.access import ACCESS_READ
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import (
    AccessPage,
    ConsentOut,
    ConsentRequest,
    DecisionConsent,
    EventPage,
    SubjectScores,
)
from trustledger.api.service import Service
from trustledger.api.view import current_assessment, event_of
from trustledger.errors import InputError
from trustledger.ledger.chain import EVENT_KIND
from trustledger.principals import Role, list_principals
from trustledger.rights import consents, grant_decision_consent, grant_opt_in, withdraw_consent

router = APIRouter(prefix="/v1/subjects/{subject}", tags=["subjects"])

SubjectPath = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^\S(?:.*\S)?$",
                                  description="the subject id your key speaks for")]
After = Annotated[int, Query(ge=0, le=2**62, description="only entries after this seq")]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many")]
_READ = responses(401, 403, 404, 422, 429, 503)


@router.get("/scores", response_model=SubjectScores, responses=_READ)
def scores(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Your current scores, tiers, measures and reasons, with every event's contribution."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    policy = service.view.policy_in_force(now)
    assessment = current_assessment(service.view.subject(subject), policy, now,
                                    service.settings.decision_max_age)
    return json_response(render.subject_scores(assessment, subject))


@router.get("/events", response_model=EventPage, responses=_READ)
def subject_events(request: Request, caller: CallerDep, subject: SubjectPath,
                   after: After = 0, limit: Limit = 100) -> Response:
    """Your events as the sources reported them, in ledger order (paged)."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    page = service.ledger.subject_page(subject, (EVENT_KIND,), after, limit)
    shown = [render.event(e) for entry in page if (e := event_of(entry)) is not None]
    return json_response({"events": shown,
                          "next_after": page[-1].seq if len(page) == limit else None})


@router.get("/consents", response_model=list[ConsentOut], responses=_READ)
def list_consents(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Every consent you granted, with withdrawals and whether each is active now."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    return json_response([render.consent(c, now) for c in consents(service.ledger, subject)])


@router.post("/consents", status_code=201, response_model=ConsentOut,
             responses=responses(401, 403, 413, 422, 429, 503))
def grant(request: Request, caller: CallerDep, subject: SubjectPath,
          body: Annotated[ConsentRequest, Body()]) -> Response:
    """Grant a consent: a relying party may ask for one purpose, or an opt-in to a scorecard."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    if body.expires_at is not None and body.expires_at <= now:
        raise InputError(f"expires_at: {body.expires_at.isoformat()} is not in the future")
    policy = service.view.policy_in_force(now)
    if isinstance(body, DecisionConsent):
        if body.purpose not in policy.purposes:
            raise InputError(f"purpose: {body.purpose!r} is not declared by policy "
                             f"{policy.name}; declared: {', '.join(policy.purposes) or 'none'}")
        _check_party(service, body.party, body.purpose)
        granted = grant_decision_consent(service.ledger, subject, body.party, body.purpose,
                                         expires_at=body.expires_at)
    else:
        card = policy.scorecards.get(body.scorecard)
        if card is None or not card.opt_in:
            opt_in = [n for n, c in policy.scorecards.items() if c.opt_in]
            raise InputError(f"scorecard: {body.scorecard!r} is not an opt-in scorecard of "
                             f"policy {policy.name}; opt-in: {', '.join(opt_in) or 'none'}")
        granted = grant_opt_in(service.ledger, subject, body.scorecard,
                               expires_at=body.expires_at)
    service.view.forget(subject)
    return json_response(render.consent(granted, service.now()), 201)


def _check_party(service: Service, party: str, purpose: str) -> None:
    parties = [p for p in list_principals(service.ledger)
               if p.role is Role.RELYING_PARTY and p.name == party]
    if not parties:
        raise InputError(f"party: there is no relying party named {party!r}")
    if not any(purpose in p.accreditations for p in parties):
        raise InputError(f"party: {party!r} is not accredited for purpose {purpose!r}, so it "
                         "could not ask for it")


@router.delete("/consents/{consent_seq}", response_model=ConsentOut,
               responses=responses(401, 403, 404, 422, 429, 503))
def withdraw(request: Request, caller: CallerDep, subject: SubjectPath,
             consent_seq: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """Withdraw a consent; it stops counting at once (a relying party's next ask is refused)."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    withdrawn = withdraw_consent(service.ledger, subject, consent_seq)
    service.view.forget(subject)
    return json_response(render.consent(withdrawn, service.now()))


@router.get("/access-log", response_model=AccessPage, responses=_READ)
def access_log(request: Request, caller: CallerDep, subject: SubjectPath,
               after: After = 0, limit: Limit = 100) -> Response:
    """Who read your data: principal, role, purpose, what and when (paged)."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    page = service.ledger.subject_page(subject, (ACCESS_READ,), after, limit)
    return json_response({"reads": [render.access(e) for e in page],
                          "next_after": page[-1].seq if len(page) == limit else None})
