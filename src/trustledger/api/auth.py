"""Authentication (API keys as bearer tokens) and the per-principal limits, as one dependency.

``Authorization: Bearer tl_...`` names the principal; a key seen before is found in
memory (dropped whenever any principal changes), otherwise by its SHA-256 hash in
the ``principals`` table. The principal's rate and in-flight limits are applied
here, before any work is done for the request.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trustledger.api.service import Caller, Service
from trustledger.principals import AuthenticationError

SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                   "description": "An API key issued by the operator (`tl_...`)."}
"""The OpenAPI security scheme of every ``/v1`` route."""


def service_of(request: Request) -> Service:
    """The process's :class:`Service`."""
    service: Service = request.app.state.service
    return service


async def _caller(request: Request) -> Caller:
    # The header is read here rather than through HTTPBearer (one dependency less per
    # request); the scheme is declared in the OpenAPI document by the app.
    scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError("no API key: send `Authorization: Bearer <key>` with the key "
                                  "the operator issued you")
    service = service_of(request)
    key = key.strip()
    found = service.cached_principal(key)
    if found is None:
        found = await run_in_threadpool(service.authenticate, key)
    epoch, principal = found
    service.limiter.acquire(principal)
    state = request.scope["state"]
    state["principal"] = principal.id
    # The middleware calls this once the response is sent (the in-flight count).
    state["release"] = lambda: service.limiter.release(principal)
    return Caller(principal, epoch, state.get("request_id"),
                  state.get("arrived", time.monotonic()))


CallerDep = Annotated[Caller, Depends(_caller)]
"""The authenticated, rate-limited caller of a request."""


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response serialised by orjson (date-times as RFC 3339 with ``Z``)."""
    return Response(orjson.dumps(data, option=orjson.OPT_UTC_Z), status_code=status,
                    media_type="application/json")
