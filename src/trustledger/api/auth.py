"""Authentication (API keys as bearer tokens) and the per-principal limits, as one dependency.

``Authorization: Bearer tl_...`` names the principal; a key seen before is found in
memory (dropped whenever any principal changes), otherwise by its SHA-256 hash in
the ``principals`` table. The principal's rate and in-flight limits are applied
here, before any work is done for the request.

The service middleware calls :func:`authenticate_header` and :func:`admit` for every
``/v1`` request before reading its body (so an unknown key never gets a body byte
read); the route's dependency then takes the caller it found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trustledger.api.service import Caller, Service
from trustledger.principals import AuthenticationError, Principal

SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                   "description": "An API key issued by the operator (`tl_...`)."}
"""The OpenAPI security scheme of every ``/v1`` route."""


def service_of(request: Request) -> Service:
    """The process's :class:`Service`."""
    service: Service = request.app.state.service
    return service


_NO_KEY = ("no API key: send `Authorization: Bearer <key>` with the key the operator "
           "issued you")


async def authenticate_header(service: Service, authorization: str | None,
                              guard: Callable[[], None] | None = None) -> tuple[int, Principal]:
    """The principal (and epoch) of an ``Authorization`` header; 401 if none.

    A key found in memory is taken at once; any other is first passed to ``guard``
    (the client's failed-authentication limit, which may refuse with 429) and then
    looked up by :meth:`Service.authenticate` -- the one way keys are checked.
    """
    # The header is read here rather than through HTTPBearer (one dependency less per
    # request); the scheme is declared in the OpenAPI document by the app.
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError(_NO_KEY)
    key = key.strip()
    found = service.cached_principal(key)
    if found is None:
        if guard is not None:
            guard()
        found = await run_in_threadpool(service.authenticate, key)
    return found


def admit(service: Service, state: dict[str, Any], found: tuple[int, Principal]) -> None:
    """Apply the principal's limits (429) and remember the caller in the request's state."""
    principal = found[1]
    service.limiter.acquire(principal)
    state["principal"] = principal.id
    state["authenticated"] = found
    # The middleware calls this once the response is sent (the in-flight count).
    state["release"] = lambda: service.limiter.release(principal)


async def caller_of(request: Request) -> Caller:
    """The request's authenticated, rate-limited caller (admitted here if no middleware did)."""
    service = service_of(request)
    state = request.scope.setdefault("state", {})
    found = state.get("authenticated")
    if found is None:  # not admitted by the service middleware (an app without it)
        found = await authenticate_header(service, request.headers.get("authorization"))
        admit(service, state, found)
    epoch, principal = found
    return Caller(principal, epoch, state.get("request_id"),
                  state.get("arrived", time.monotonic()))


CallerDep = Annotated[Caller, Depends(caller_of)]
"""The authenticated, rate-limited caller of a request."""


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response serialised by orjson (date-times as RFC 3339 with ``Z``)."""
    return Response(orjson.dumps(data, option=orjson.OPT_UTC_Z), status_code=status,
                    media_type="application/json")
