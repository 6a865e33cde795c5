"""The event-type register's routes: read it, propose a version, approve another's.

Two operators change the register: one proposes a version (validated and linted like a
policy: 422 naming file, line, rule), another approves it (409 when the proposer tries,
or the proposal was already approved or superseded). Sources read the register in
force to learn which types (and domains) exist. Everything is recorded in the ledger
(:mod:`trustledger.registry`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from trustledger.api import render
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import ProposalOut, RegisterOut, RegisterSubmission
from trustledger.principals import Role
from trustledger.registry import approve_register, in_force, propose_register

router = APIRouter(prefix="/v1/register", tags=["register"])

RegisterHash = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^\S+$",
                                   description="the register's hash, `sha256:` and 64 hex "
                                               "digits")]


@router.get("", response_model=RegisterOut, responses=responses(401, 403, 404, 429, 503))
def register(request: Request, caller: CallerDep) -> Response:
    """The event-type register in force: each type's domain, category, gravity, attributes.

    For operators and sources; 404 while none has been approved.
    """
    caller.require(Role.OPERATOR, Role.SOURCE)
    service = service_of(request)
    service.begin(caller)
    view = service.view
    current = view.register_in_force()
    return json_response(render.register(in_force(view.proposals()), current))


@router.get("/proposals", response_model=list[ProposalOut],
            responses=responses(401, 403, 429, 503))
def proposals(request: Request, caller: CallerDep) -> Response:
    """Every proposed register version, oldest first, with its status (operators)."""
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    return json_response([render.proposal(p) for p in service.view.proposals()])


@router.post("/proposals", status_code=201, response_model=ProposalOut, responses={
    200: {"description": "this exact version already awaits approval", "model": ProposalOut},
    **responses(401, 403, 409, 413, 422, 429, 503)})
def propose(request: Request, caller: CallerDep, body: RegisterSubmission) -> Response:
    """Propose a register version (operators); a second operator must approve it.

    Refused with the linter's messages (422: file, line, column, rule) if it breaks a
    rule, and 409 if this version is already in force; nothing is recorded then.
    """
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    before = service.ledger.position()
    proposal = propose_register(service.ledger, body.source, caller.principal.name)
    service.view.sync()
    return json_response(render.proposal(proposal), 201 if proposal.seq > before else 200)


@router.post("/proposals/{register_hash}/approval", response_model=ProposalOut,
             responses=responses(401, 403, 404, 409, 422, 429, 503))
def approve(request: Request, caller: CallerDep, register_hash: RegisterHash) -> Response:
    """Approve a pending proposal: it is the register in force from now on (operators).

    409 when the caller proposed it (a second operator must approve), or it was already
    approved, or superseded by a later approval; 404 for an unknown hash.
    """
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    approved = approve_register(service.ledger, register_hash, caller.principal.name)
    service.view.sync()
    return json_response(render.proposal(approved))
