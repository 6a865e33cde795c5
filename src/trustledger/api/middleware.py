"""The service's outer layer, as one ASGI middleware: request ids, limits, logs, metrics.

For every HTTP request it

* takes the ``X-Request-ID`` the client sent (if it is a short token) or makes one,
  and returns it;
* authenticates before a byte of the body is read: a ``/v1`` request with no, an
  unknown or a revoked key gets 401 (and one over its principal's limits 429)
  while its body is still unread; a portal form needs a signed-in session
  (:func:`trustledger.portal.web.before_body`). Each failed authentication counts
  against the client's address (:class:`~trustledger.api.limits.FailureLimiter`):
  an address over its limit gets 429 without its key being looked up;
* then reads the request body in full before the app sees it — refusing it with 413 if
  it is larger than the endpoint allows (``Content-Length`` or counted) and with
  408 if the client does not send it within ``body_timeout`` — so a slow or huge
  upload cannot hold a worker;
* gives the app ``request_timeout`` seconds to start its response (503 with
  ``Retry-After`` after that); a *direct* route (the decision hot path) is called
  straight from here, past the framework's routing and dependency solving, its errors
  answered by the app's exception handlers as a routed request's are;
* writes one JSON log line (request id, method, route, status, duration, principal)
  and updates the Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trustledger.api.auth import admit, authenticate_header
from trustledger.api.limits import FailureLimiter, client_of
from trustledger.api.problems import (
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnavailableError,
    database_unavailable,
    error_response,
)
from trustledger.api.settings import Settings
from trustledger.errors import TrustLedgerError
from trustledger.principals import AuthenticationError

log = logging.getLogger("trustledger.api")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
LARGE_BODY_PATHS = frozenset({"/v1/events/batch", "/v1/policies"})
"""Endpoints that take the larger ``max_batch_bytes`` body."""
KEYED_PREFIX = "/v1/"
"""Every request under this path needs an API key (checked before its body is read)."""
PortalGate = Callable[[Request, RateLimitedError | None], Response | None]
"""The portal's check of a form POST before its body is read, given whether the client
address is over its failed-authentication limit: the answer instead, or ``None`` to go on."""


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


JSONFormatter.converter = time.gmtime


def log_config(level: str = "INFO") -> dict[str, Any]:
    """Logging for the server (a :func:`logging.config.dictConfig` dict): JSON lines on stderr.

    Every logger — the service's, uvicorn's, alembic's — goes through the root logger's one
    handler, so stderr holds only JSON lines and stdout stays for people (the banner of
    ``trustledger serve``). A fresh dict per call: uvicorn applies it again in each worker
    process.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{JSONFormatter.__module__}.JSONFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


class Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        """Create the metrics."""
        self.registry = CollectorRegistry()
        self.requests = Counter("trustledger_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram(
            "trustledger_http_request_duration_seconds", "time to answer a request",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.in_progress = Gauge("trustledger_http_requests_in_progress",
                                 "requests being handled", registry=self.registry)
        self.decisions = Counter("trustledger_decisions", "decisions by purpose and outcome",
                                 ["purpose", "outcome"], registry=self.registry)
        self.events = Counter("trustledger_events_appended", "events appended by sources",
                              registry=self.registry)
        self.ledger_seq = Gauge("trustledger_ledger_seq", "the ledger position the service "
                                "has seen", registry=self.registry)
        self.access_commits = Gauge("trustledger_access_log_commits",
                                    "group commits of the access log", registry=self.registry)
        self.access_records = Gauge("trustledger_access_log_records",
                                    "reads recorded in the access log", registry=self.registry)


class ServiceMiddleware:
    """Request id, body limits and timeouts, JSON access log, metrics (see the module doc)."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics,
                 failures: FailureLimiter | None = None,
                 portal_gate: PortalGate | None = None,
                 direct: Mapping[tuple[str, str], APIRoute] | None = None) -> None:
        """Wrap ``app``.

        ``failures`` counts failed authentications (one from the settings if not given);
        ``portal_gate`` checks portal form posts before their body is read; ``direct``
        maps ``(method, path)`` to a route whose endpoint (taking only the request) is
        called directly once the request is admitted and its body read: no routing, no
        dependency solving; its errors go to the app's exception handlers as a routed
        request's do.
        """
        self.app = app
        self.direct = dict(direct or {})
        self.settings = settings
        self.metrics = metrics
        self.failures = failures or FailureLimiter(
            settings.auth_failure_rate, settings.auth_failure_burst,
            settings.auth_failure_clients)
        self.portal_gate = portal_gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection event (HTTP requests only; the rest passes through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["arrived"] = time.monotonic()
        status = [500]
        sent = [False]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent[0] = True
                status[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        client = client_of(scope)
        self.metrics.in_progress.inc()
        try:
            refusal = await self._before_body(scope, client)
            if refusal is not None:
                await refusal(scope, _no_body, send_wrapper)
                return
            try:
                body_receive = await self._read_body(scope, receive)
            except (PayloadTooLargeError, RequestTimeoutError) as exc:
                await self._problem(scope, send_wrapper, exc)
                return
            direct = self.direct.get((scope["method"], scope["path"]))
            try:
                async with asyncio.timeout(self.settings.request_timeout):
                    if direct is None:
                        await self.app(scope, body_receive, send_wrapper)
                    else:
                        await _call_direct(direct, scope, body_receive, send_wrapper)
            except TimeoutError:
                if not sent[0]:
                    await self._problem(scope, send_wrapper, UnavailableError(
                        f"the request took longer than {self.settings.request_timeout:g} s "
                        "and was abandoned; retry later", retry_after=5))
        finally:
            release = scope["state"].pop("release", None)
            if release is not None:
                release()
            if status[0] == 401 and not scope["state"].get("auth_failed"):
                self.failures.fail(client)  # a key refused later (revoked), a portal sign-in
            self.metrics.in_progress.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.requests.labels(scope["method"], template, str(status[0])).inc()
            self.metrics.duration.labels(template).observe(elapsed)
            log.info("%s %s %s", scope["method"], scope["path"], status[0], extra={"fields": {
                "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "route": template, "status": status[0],
                "duration_ms": round(elapsed * 1000, 3),
                "principal": scope["state"].get("principal"),
            }})

    async def _before_body(self, scope: Scope, client: str) -> ASGIApp | None:
        """Who is calling, before the body is read: ``None`` to go on, else what answers."""
        path = scope["path"]
        if path.startswith(KEYED_PREFIX):
            service = scope["app"].state.service
            state = scope["state"]
            try:
                found = await authenticate_header(service, _header(scope, b"authorization"),
                                                  lambda: self.failures.check(client))
            except AuthenticationError as exc:
                state["auth_failed"] = True
                self.failures.fail(client)
                return self._refuse(scope, exc)
            except TrustLedgerError as exc:  # 429 for the address; 503 for the database
                return self._refuse(scope, exc)
            except SQLAlchemyError as exc:
                return self._refuse(scope, database_unavailable(exc))
            try:
                admit(service, state, found)
            except RateLimitedError as exc:
                return self._refuse(scope, exc)
            return None
        if self.portal_gate is not None and path.startswith("/portal/") \
                and scope["method"] == "POST":
            try:
                self.failures.check(client)
                blocked = None
            except RateLimitedError as exc:
                blocked = exc
            return self.portal_gate(Request(scope), blocked)
        return None

    def _refuse(self, scope: Scope, exc: Any) -> ASGIApp:
        # A path or method no route has is answered by the router (404, 405), as with a key:
        # the refusal says nothing about keys there, and reads no body either.
        router = getattr(scope["app"], "router", None)
        if not any(route.matches(scope)[0] is Match.FULL
                   for route in getattr(router, "routes", ())):
            return self.app
        return error_response(Request(scope), exc)

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive:
        """Read the whole body within the limits; a ``receive`` that replays it."""
        limit = (self.settings.max_batch_bytes if scope["path"] in LARGE_BODY_PATHS
                 else self.settings.max_body_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    raise PayloadTooLargeError(_too_large(declared, limit))
        chunks: list[bytes] = []
        size = 0
        more = True
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        chunks.clear()
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLargeError(_too_large(size, limit, counted=True))
                    chunks.append(chunk)
                    more = message.get("more_body", False)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"the request body did not arrive within {self.settings.body_timeout:g} s"
            ) from exc
        body = b"".join(chunks)
        replayed = [False]

        async def replay() -> Message:
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _problem(self, scope: Scope, send: Send, exc: Any) -> None:
        response = error_response(Request(scope), exc)
        await response(scope, _no_body, send)


async def _call_direct(route: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
    """Call ``route``'s endpoint with the request; an error goes to the app's handlers.

    The same handler the framework's exception middleware would pick (the nearest class
    in the exception's MRO); an error no handler takes propagates, as from a route.
    """
    scope["route"] = route
    scope["endpoint"] = route.endpoint
    request = Request(scope, receive, send)
    try:
        response: Response = await route.endpoint(request)
    except Exception as exc:
        handlers = scope["app"].exception_handlers
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise
        response = await handler(request, exc)
    await response(scope, receive, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _too_large(size: int, limit: int, *, counted: bool = False) -> str:
    what = "more than" if counted else ""
    return (f"the request body is {what} {size:,} bytes; this endpoint takes at most "
            f"{limit:,}: send less (batches: split them)").replace("  ", " ")


_PROCESS = uuid.uuid4().hex[:12]
_COUNTER = itertools.count(1)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    # Unique without a system call per request: a random prefix per process and a counter.
    return f"{_PROCESS}-{next(_COUNTER)}"
