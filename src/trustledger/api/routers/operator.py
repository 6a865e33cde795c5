"""The operator's router: publish policies, manage principals, aggregate statistics.

The operator never reads a named subject's data: statistics are counts with
small cells suppressed. Policies are compiled against the event-type register in
force (its hash is recorded with the publication) and refused with the linter's
messages when they break a safeguard, and then nothing is published. A source is
issued with its domains, checked against the register in force.

The one thing an operator does about a named subject is manage their key (onboarding,
a lost key). Whoever holds a subject key can read everything about the subject and
consent in their name, so each issue and revocation of a subject key is recorded in
that subject's access log, in the same transaction as the key change, and a subject
holds one key at a time: a second key is refused (409) until the first is revoked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trustledger.api import render
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import (
    IssuedOut,
    PolicyOut,
    PolicySubmission,
    PrincipalOut,
    PrincipalRequest,
    Statistics,
    StatisticsPending,
)
from trustledger.api.service import Caller
from trustledger.errors import NotFoundError
from trustledger.policy import parse_policy
from trustledger.principals import (
    Audit,
    Role,
    add_principal,
    get_principal,
    list_principals,
    revoke_principal,
)
from trustledger.rights.access import ISSUED, REVOKED, key_logged
from trustledger.rights.erasure import refuse_if_erased
from trustledger.scoring import publish_compiled

router = APIRouter(prefix="/v1", tags=["operator"])

PrincipalId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^\S+$")]


@router.get("/policies", response_model=list[PolicyOut], responses=responses(401, 403, 429, 503))
def policies(request: Request, caller: CallerDep) -> Response:
    """Every published policy version, and which one is in force now (any role but subject)."""
    caller.require(Role.OPERATOR, Role.SOURCE, Role.RELYING_PARTY, Role.REVIEWER)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    try:
        current = service.view.policy_in_force(now).hash
    except NotFoundError:
        current = None
    view = service.view
    out = []
    for published in view.policies():
        out.append(render.policy(published, view.compiled(published.hash),
                                 published.hash == current))
    return json_response(out)


@router.post("/policies", status_code=201, response_model=PolicyOut, responses={
    200: {"description": "this exact version was published before", "model": PolicyOut},
    **responses(401, 403, 413, 422, 429, 503)})
def publish(request: Request, caller: CallerDep, body: PolicySubmission) -> Response:
    """Publish a policy version against the register in force.

    Refused with the linter's messages if it breaks a safeguard (422), 404 while no
    event-type register is in force, 409 if this version was published under another
    register (publish it as a new version).
    """
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    view = service.view
    compiled = parse_policy(body.source, "policy", register=view.register_in_force())
    before = service.ledger.position()
    # The record scoring.publish_policy writes, from text instead of a file.
    written = publish_compiled(service.ledger, compiled, body.source)
    status = 201 if written.seq > before else 200
    view.sync()
    existing = next(p for p in view.policies() if p.seq == written.seq)
    try:
        current = view.policy_in_force(service.now()).hash
    except NotFoundError:
        current = None
    return json_response(render.policy(existing, view.compiled(existing.hash),
                                       existing.hash == current), status)


@router.get("/principals", response_model=list[PrincipalOut],
            responses=responses(401, 403, 422, 429, 503))
def principals(request: Request, caller: CallerDep,
               include_revoked: Annotated[bool, Query()] = False) -> Response:
    """Every principal (never a key)."""
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    found = list_principals(service.ledger, include_revoked=include_revoked)
    return json_response([render.principal(p) for p in found])


@router.post("/principals", status_code=201, response_model=IssuedOut,
             responses=responses(401, 403, 409, 413, 422, 429, 503))
def issue(request: Request, caller: CallerDep, body: PrincipalRequest) -> Response:
    """Issue a key for a new principal: the key is in this response only, keep it safe.

    A subject key is recorded in that subject's access log; 409 (naming ``subject``)
    while the subject holds another active key, 422 for an erased subject. A source
    names its ``domains``: each accredited type must be in one of them in the register
    in force (422 naming the type and both domains; 409 while no register is in force).
    """
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    if body.role is Role.SUBJECT and body.subject is not None:
        refuse_if_erased(service.ledger, body.subject, "no key: give the person a new id")
    issued = add_principal(service.ledger, body.name, body.role,
                           accreditations=tuple(body.accreditations),
                           domains=tuple(body.domains), subject=body.subject,
                           rate_limit=body.rate_limit,
                           audit=_key_logged(caller, ISSUED),
                           sole_subject_key=True)
    return json_response({"principal": render.principal(issued.principal), "key": issued.key},
                         201)


def _key_logged(caller: Caller, what: str) -> Audit:
    """The subject's access-log record of the operator's action on their key (if a subject's)."""
    who = caller.principal
    return key_logged(who.id, who.name, who.role.value, what, caller.request_id)


@router.get("/principals/{principal_id}", response_model=PrincipalOut,
            responses=responses(401, 403, 404, 422, 429, 503))
def principal(request: Request, caller: CallerDep, principal_id: PrincipalId) -> Response:
    """One principal (never its key)."""
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    return json_response(render.principal(get_principal(service.ledger, principal_id)))


@router.delete("/principals/{principal_id}", response_model=PrincipalOut,
               responses=responses(401, 403, 404, 422, 429, 503))
def revoke(request: Request, caller: CallerDep, principal_id: PrincipalId) -> Response:
    """Revoke a principal's key at once (revoking twice changes nothing).

    Revoking a subject key is recorded in that subject's access log.
    """
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    revoked = revoke_principal(service.ledger, principal_id,
                               audit=_key_logged(caller, REVOKED))
    service.view.sync()
    return json_response(render.principal(revoked))


@router.get("/statistics", response_model=Statistics, responses={
    202: {"description": "being computed: ask again after `retry_after` seconds",
          "model": StatisticsPending,
          "headers": {"Retry-After": {"description": "seconds to wait",
                                      "schema": {"type": "integer"}}}},
    **responses(401, 403, 404, 429, 503)})
async def statistics(request: Request, caller: CallerDep) -> Response:
    """Score histograms, tier and measure counts over all subjects; cells under k suppressed."""
    caller.require(Role.OPERATOR)
    service = service_of(request)

    def work() -> tuple[int, dict[str, object]]:
        service.begin(caller)
        service.view.policy_in_force(service.now())  # 404 before any work if none is
        return service.statistics.get()

    status, body = await run_in_threadpool(work)
    response = json_response(body, status)
    if status == 202:
        response.headers["Retry-After"] = str(body["retry_after"])
    return response
