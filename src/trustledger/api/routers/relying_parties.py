"""The relying parties' router: one subject's decision for one declared purpose.

``POST /v1/decisions`` answers only while the subject's consent for this party and
this purpose is active, only for a purpose the party is accredited for, and
returns only what the purpose discloses (the policy's ``purposes``). Every answer
is first recorded in the access log. There is no list or bulk endpoint.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trustledger.api import render
from trustledger.api.access import access_record
from trustledger.api.auth import caller_of, json_response, service_of
from trustledger.api.problems import MissingConsentError, responses
from trustledger.api.schemas import Decision, DecisionRequest
from trustledger.api.view import SubjectRecord, decision_assessment, reusable
from trustledger.errors import InputError
from trustledger.ledger.chain import iso
from trustledger.principals import PermissionDeniedError, Role
from trustledger.scoring import Assessment, assess

router = APIRouter(prefix="/v1", tags=["relying parties"])


@router.post("/decisions", response_model=Decision,
             responses=responses(401, 403, 404, 413, 422, 429, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/DecisionRequest"}}}}})
async def decide(request: Request) -> Response:
    """The subject's decision for a purpose: its measures (and scorecards), with reasons.

    403 if the party is not accredited for the purpose or the subject's consent for
    this party and purpose is not active (the problem says which consent is
    missing; the same for an erased or unknown subject); 404 if a consenting subject
    has no events.
    ``attributes`` feed the policy's statistical scorecards; an unknown or mistyped
    one is a 422 naming it.
    """
    # The hot path (subject in memory, assessment still fresh) runs on the event loop:
    # one short read of what was appended, then the access-log commit is awaited.
    # Loading or evaluating a subject goes to a worker thread. Where states persist, a
    # first read starts with the subject's snapshot (its rights records, last seq,
    # stored state and decision), read by one thread for every request waiting
    # (LedgerView.decision_subject_async); a stored decision then answers on the loop,
    # while reading its events, or restoring and reading its state, goes to a thread.
    # The service middleware calls this endpoint directly (:data:`DIRECT`): the caller
    # it admitted is taken from the request's state, with no dependency to solve.
    caller = await caller_of(request)
    caller.require(Role.RELYING_PARTY)
    # Parsed by pydantic-core straight from the bytes (FastAPI's body handling costs as
    # much again); errors become the same 422 problem as everywhere else.
    try:
        body = DecisionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    service = service_of(request)
    await service.begin_async(caller)
    party = caller.principal
    metrics = request.app.state.metrics
    if body.purpose not in party.accreditations:
        raise PermissionDeniedError(
            f"{party.name!r} is not accredited for purpose {body.purpose!r}; accredited: "
            f"{', '.join(party.accreditations)}")
    now = service.now()
    policy = service.view.policy_in_force(now)
    declared = policy.purposes.get(body.purpose)
    if declared is None:
        raise InputError(f"purpose: {body.purpose!r} is not declared by policy {policy.name} "
                         f"({policy.hash[:19]}…); declared: "
                         f"{', '.join(policy.purposes) or 'none'}")
    # Without decision-time attributes, the subject's stored state may answer (its events
    # unread); with them, the evaluation is the request's own and needs the events.
    light = body.attributes is None
    max_age = service.settings.decision_max_age

    # Consent is checked before anything else about the subject, and an erased subject
    # has none (erasure purged it; nothing is granted after it): whoever has no consent
    # gets the same problem, and the same counter moves, whether the subject exists, was
    # erased or was never heard of. Erasure must not be observable (docs/api.md).
    def consenting(record: SubjectRecord) -> bool:
        return not record.erased and any(
            c.scope == "decision" and c.party == party.name and c.purpose == body.purpose
            for c in record.consents(now))

    def first_read(subject: str) -> tuple[SubjectRecord, Assessment | None]:
        # A subject not in memory: loaded and, if consenting, read for this purpose in
        # one trip to a worker thread.
        record = service.view.decision_subject(subject, policy, now)
        if not consenting(record):
            return record, None
        return record, decision_assessment(record, policy, now, max_age, declared=declared)

    assessment: Assessment | None = None
    cached = service.view.cached(body.subject, light=light)
    if cached is None and light:
        cached = await service.view.decision_subject_async(body.subject, policy, now)
    if cached is not None:
        state = cached
    elif light:
        state, assessment = await run_in_threadpool(first_read, body.subject)
    else:
        state = await run_in_threadpool(service.view.subject, body.subject)
    if not consenting(state):
        metrics.decisions.labels(body.purpose, "no-consent").inc()
        raise MissingConsentError(
            f"missing consent: subject {body.subject!r} has no active consent for party "
            f"{party.name!r} and purpose {body.purpose!r} ({declared.label}); the subject "
            f"can grant it (POST /v1/subjects/{{subject}}/consents)")
    if body.attributes is not None:
        # Decision-time attributes (statistical scorecards) make this evaluation the
        # request's own: the same scoring.assess, never cached for another request.
        assessment = await run_in_threadpool(
            partial(assess, policy, state.subject, state.events, state.records, now, None,
                    attributes=body.attributes))
    elif assessment is None:
        # The purpose's parts only (its scorecards and measures), reused while fresh.
        assessment = reusable(state, policy, now, max_age, partial=True, declared=declared)
        if assessment is None:
            assessment = await run_in_threadpool(partial(
                decision_assessment, state, policy, now, max_age, declared=declared))
    result = assessment.evaluation
    entry = await service.access_log.append_async(access_record(
        party, body.subject, body.purpose, "decision", caller.request_id,
        {"policy_hash": result.policy_hash, "valid_at": iso(result.valid_at),
         "ledger_seq": result.ledger_seq, "measures": list(declared.measures),
         "scorecards": list(declared.scorecards),
         **({"attributes": dict(body.attributes)} if body.attributes is not None else {})}))
    metrics.decisions.labels(body.purpose, "answered").inc()
    return json_response(render.decision(result, policy, body.purpose, party.name,
                                         body.subject, entry.seq))


DIRECT: dict[tuple[str, str], APIRoute] = {("POST", "/v1/decisions"): next(
    route for route in router.routes
    if isinstance(route, APIRoute) and route.endpoint is decide)}
"""Routes the service middleware calls directly, past the framework's routing and
dependency solving (the decision hot path): ``(method, path)`` to the route, whose
endpoint takes only the request. The route stays registered (OpenAPI, other methods)."""
