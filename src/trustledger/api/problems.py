"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

The service raises only :class:`~trustledger.errors.TrustLedgerError` subclasses on
purpose; this module adds the ones that exist only over HTTP and maps every class
to a status, a title and a ``type`` URI::

    TrustLedgerError
    ├── InputError ............................ 422 (BatchError, PolicyError, LintError
    │   │                                              carry their items as ``errors``)
    │   └── UnsupportedMediaTypeError ......... 415 (below)
    ├── ConflictError ......................... 409
    ├── NotFoundError ......................... 404
    ├── ConfigError, IntegrityError ........... 503 (the server's state, never the input;
    │                                              so is any SQLAlchemyError)
    ├── AuthenticationError ................... 401 (principals)
    ├── PermissionDeniedError ................. 403 (principals)
    │   ├── MissingConsentError ............... 403, type .../missing-consent (below)
    │   └── ItemsForbiddenError ............... 403 with the items as ``errors`` (below)
    ├── PayloadTooLargeError .................. 413 (below)
    ├── RateLimitedError ...................... 429 with Retry-After (below)
    ├── RequestTimeoutError ................... 408 (below)
    └── UnavailableError ...................... 503 with Retry-After (below)

FastAPI's own request validation errors become 422 problems with one item per
field; HTTP errors of routing (unknown path: 404, wrong method: 405) become
problems too. Each problem carries the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from trustledger.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyError,
    TrustLedgerError,
)
from trustledger.principals import AuthenticationError, PermissionDeniedError

PROBLEM_JSON = "application/problem+json"
"""The media type of every error response."""

TYPE_BASE = "https://trustledger.example/problems/"
"""Problem ``type`` URIs are this plus a slug (e.g. ``.../missing-consent``)."""

log = logging.getLogger("trustledger.api")


class PayloadTooLargeError(TrustLedgerError):
    """The request body is larger than this endpoint accepts (HTTP 413)."""


class RequestTimeoutError(TrustLedgerError):
    """The client did not send its request body in time (HTTP 408)."""


class RateLimitedError(TrustLedgerError):
    """The principal sends more requests than its limit (HTTP 429, ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(TrustLedgerError):
    """The service cannot answer now; the client may retry (HTTP 503, ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MissingConsentError(PermissionDeniedError):
    """A relying party asked without the subject's active consent (HTTP 403)."""


class UnsupportedMediaTypeError(InputError):
    """The request body's ``Content-Type`` is not one this endpoint reads (HTTP 415)."""


class ItemsForbiddenError(PermissionDeniedError):
    """Items of a request the principal may not submit (HTTP 403), each listed."""

    def __init__(self, message: str, items: list[ProblemItem]) -> None:
        super().__init__(message)
        self.items = items


class ProblemItem(BaseModel):
    """One specific problem: which item or field, why, and (for policies) rule and place."""

    model_config = ConfigDict(extra="forbid")

    index: int | None = Field(None, description="position of the item in a batch")
    field: str | None = Field(None, description="the field at fault, dotted")
    reason: str = Field(description="what is wrong, in words a person can act on")
    rule: str | None = Field(None, description="the policy rule broken (policies only)")
    location: str | None = Field(None, description="file:line:column: key.path (policies)")


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="a URI naming the kind of problem")
    title: str = Field(description="the kind of problem, in words")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong and what to do about it")
    instance: str | None = Field(None, description="the request path")
    request_id: str | None = Field(None, description="quote it when you ask for help")
    errors: list[ProblemItem] | None = Field(None, description="the items at fault")


_CLASSES: tuple[tuple[type[TrustLedgerError], int, str], ...] = (
    # Most specific first: the first match wins.
    (MissingConsentError, 403, "missing-consent"),
    (AuthenticationError, 401, "unauthenticated"),
    (PermissionDeniedError, 403, "forbidden"),
    (PayloadTooLargeError, 413, "payload-too-large"),
    (RequestTimeoutError, 408, "request-timeout"),
    (RateLimitedError, 429, "rate-limited"),
    (UnavailableError, 503, "unavailable"),
    (UnsupportedMediaTypeError, 415, "unsupported-media-type"),
    (PolicyError, 422, "policy-refused"),
    (BatchError, 422, "invalid-items"),
    (InputError, 422, "invalid-input"),
    (ConflictError, 409, "conflict"),
    (NotFoundError, 404, "not-found"),
    (ConfigError, 503, "server-misconfigured"),
    (IntegrityError, 503, "ledger-integrity"),
)


def classify(exc: TrustLedgerError) -> tuple[int, str]:
    """The HTTP status and problem slug of an error (the one mapping of the service)."""
    for cls, status, slug in _CLASSES:
        if isinstance(exc, cls):
            return status, slug
    return 500, "internal"  # pragma: no cover - every subclass is listed above


def problem_response(
    request: Request | None,
    status: int,
    slug: str,
    detail: str,
    *,
    errors: Sequence[ProblemItem] | None = None,
    headers: dict[str, str] | None = None,
    title: str | None = None,
) -> Response:
    """A ``application/problem+json`` response with the request id and path filled in."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = request.scope.get("state", {}).get("request_id")
        if request_id:
            body["request_id"] = request_id
    if errors:
        body["errors"] = [e.model_dump(exclude_none=True) for e in errors]
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON,
                    headers=headers)


def error_items(exc: TrustLedgerError) -> list[ProblemItem]:
    """The per-item problems an error carries (batch items, policy problems)."""
    if isinstance(exc, BatchError):
        return [ProblemItem(index=p.index, field=p.field, reason=p.reason) for p in exc.problems]
    if isinstance(exc, PolicyError):
        return [ProblemItem(rule=p.rule, location=str(p.location), field=p.location.path or None,
                            reason=p.message) for p in exc.problems]
    items = getattr(exc, "items", None)
    if isinstance(items, list) and all(isinstance(i, ProblemItem) for i in items):
        return items
    return []


def error_response(request: Request | None, exc: TrustLedgerError) -> Response:
    """The problem response for a trustledger error."""
    status, slug = classify(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError | UnavailableError):
        headers["Retry-After"] = str(exc.retry_after)
    elif status == 503:
        headers["Retry-After"] = "5"
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="trustledger"'
    detail = str(exc)
    if isinstance(exc, BatchError | PolicyError):
        detail = _summary(exc)
    if status >= 500:
        log.error("service unavailable: %s", exc, exc_info=exc)
    return problem_response(request, status, slug, detail, errors=error_items(exc),
                            headers=headers or None)


def _summary(exc: BatchError | PolicyError) -> str:
    if isinstance(exc, BatchError):
        return (f"{len(exc.problems)} item(s) are invalid and nothing was written; each is "
                "listed in `errors` with its index, field and reason: fix them and send the "
                "batch again")
    kind = "safeguard" if exc.problems and all(
        p.rule in _SAFEGUARD_RULES for p in exc.problems) else "policy"
    return (f"the policy was refused ({len(exc.problems)} {kind} problem(s)), nothing was "
            "published; each is listed in `errors` with its rule and place")


_SAFEGUARD_RULES = frozenset({
    "out-of-bounds-category", "out-of-bounds-name", "unknown-category", "context-firewall",
    "cross-domain-consent", "cross-domain-restriction", "purpose-firewall", "proportionality",
})


def _validation_items(exc: RequestValidationError) -> list[ProblemItem]:
    items = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path", "header")
                         else loc)
        source = loc[0] if loc else "request"
        kind = error.get("type", "")
        if kind == "missing":
            reason = f"required {source} field is missing"
        elif kind == "extra_forbidden":
            reason = "unknown field; it is refused rather than ignored"
        elif kind == "json_invalid":
            reason = f"the body is not valid JSON: {error.get('ctx', {}).get('error', '')}"
        elif kind == "json_type":
            reason = "the body must be a JSON object"
        else:
            reason = str(error.get("msg", "invalid"))
        items.append(ProblemItem(field=where or source, reason=reason))
    return items


def database_unavailable(exc: Exception) -> UnavailableError:
    """The 503 for a database that failed under a request (logged here)."""
    # Unreachable, out of space: the server's trouble, not the input's; the client may retry.
    log.error("database error: %s", exc, exc_info=exc)
    return UnavailableError(
        f"the ledger database is not available ({type(exc).__name__}); try again shortly",
        retry_after=5)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""

    async def on_trustledger(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TrustLedgerError)
        return error_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        items = _validation_items(exc)
        detail = "; ".join(f"{i.field}: {i.reason}" for i in items[:5]) or "invalid request"
        return problem_response(request, 422, "invalid-request",
                                f"the request does not match the API schema: {detail}",
                                errors=items)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no endpoint {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        slug = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-")
        return problem_response(request, exc.status_code, slug, detail,
                                headers=dict(exc.headers) if exc.headers else None)

    async def on_database(request: Request, exc: Exception) -> Response:
        return error_response(request, database_unavailable(exc))

    app.add_exception_handler(TrustLedgerError, on_trustledger)
    app.add_exception_handler(SQLAlchemyError, on_database)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem statuses (for route decorators)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in (429, 503):
            entry["headers"] = {"Retry-After": {
                "description": "seconds to wait before trying again",
                "schema": {"type": "integer"}}}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {
                "description": "how to authenticate", "schema": {"type": "string"}}}
        out[status] = entry
    return out
