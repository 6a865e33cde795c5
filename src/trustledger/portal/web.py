"""What every portal page shares: templates, sign-in state, CSRF checks, errors as pages.

A page handler hands :func:`signed_in_page` (GET) or :func:`signed_in_form` (POST)
a function of ``(caller, session[, form])`` that does the work in the server's
thread pool. They

* send a request without a valid session to the sign-in page (303);
* re-read the principal (a revoked key ends the session) and apply the same
  per-principal rate and in-flight limits as the API (:class:`~trustledger.api.limits.Limiter`);
* for a POST, read the ``application/x-www-form-urlencoded`` body and refuse it with
  403 — before any work, so nothing changes — unless it carries the session's CSRF token;
* turn a :class:`~trustledger.errors.TrustLedgerError` into an HTML page with the
  status the API gives the same error (:func:`trustledger.api.problems.classify`)
  and its message, which names the field or rule at fault.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from trustledger.api.auth import service_of
from trustledger.api.problems import RateLimitedError, classify
from trustledger.api.service import Caller
from trustledger.engine.reasons import plain, signed
from trustledger.errors import InputError, NotFoundError, TrustLedgerError
from trustledger.ledger.models import validation_problems
from trustledger.portal.session import CSRF_FIELD, Session, Sessions, new_session, secret_from_env
from trustledger.principals import PermissionDeniedError, Role, get_principal

Form = Mapping[str, str]
"""A submitted form: field name to (first) value."""
Work = Callable[[Caller, Session], Response]
"""A page's work, run in the thread pool once the caller is known."""
FormWork = Callable[[Caller, Session, Form], Response]
"""A form's work, run once the caller is known and the CSRF token checked."""

HOME = {Role.REVIEWER: "/portal/reviewer", Role.OPERATOR: "/portal/operator"}
"""Where each role lands after sign-in (a subject: their own page; others: /portal/home)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Sent with every portal page: nothing but the portal's own styles, no framing, no caching."""
MAX_FORM_FIELDS = 50
_lock = threading.Lock()


def home_of(caller: Caller) -> str:
    """The page a principal lands on."""
    principal = caller.principal
    if principal.role is Role.SUBJECT and principal.subject is not None:
        return f"/portal/subjects/{quote(principal.subject, safe='')}"
    return HOME.get(principal.role, "/portal/home")


def sessions_of(request: Request) -> Sessions:
    """The app's session signer (created on first use from the environment)."""
    state = request.app.state
    with _lock:
        found: Sessions | None = getattr(state, "portal_sessions", None)
        if found is None:
            found = Sessions(secret_from_env())
            state.portal_sessions = found
    return found


def _day(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).date().isoformat()


def _moment(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: float | None) -> str:
    return "—" if value is None else plain(value)


def _pts(value: float | None) -> str:
    return "—" if value is None else signed(value)


def countdown(deadline: datetime, now: datetime) -> str:
    """Time left until ``deadline`` in words (``overdue by ...`` once past)."""
    seconds = (deadline - now).total_seconds()
    days, rest = divmod(abs(int(seconds)), 86400)
    hours = rest // 3600
    text = f"{days} d {hours} h" if days else f"{hours} h {rest % 3600 // 60} min"
    return f"{text} left" if seconds >= 0 else f"overdue by {text}"


@cache
def environment() -> jinja2.Environment:
    """The portal's Jinja2 environment (autoescaped; an undefined name is an error)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("trustledger.portal", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(day=_day, moment=_moment, num=_num, pts=_pts, CSRF_FIELD=CSRF_FIELD)
    return env


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A rendered page with the portal's security headers."""
    context.setdefault("caller", None)
    context.setdefault("csrf", "")
    context.setdefault("notice", None)
    context.setdefault("error", None)
    context.setdefault("problems", [])
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(exc: TrustLedgerError, caller: Caller | None, session: Session | None
               ) -> HTMLResponse:
    """The page for an error: the API's status for it and its message."""
    status, _ = classify(exc)
    titles = {403: "Not allowed", 404: "Not found", 422: "Refused", 429: "Too many requests",
              503: "Unavailable"}
    return page("error.html.j2", status, title=titles.get(status, "Error"), message=str(exc),
                caller=caller, csrf=session.csrf if session and caller else "")


def to_sign_in(request: Request, message: str | None = None) -> Response:
    """Redirect to the sign-in page, coming back to this page afterwards."""
    target = "/portal/sign-in"
    if request.method == "GET" and request.url.path != "/portal/sign-in":
        target += f"?next={quote(request.url.path, safe='/')}"
    if message:
        target += ("&" if "?" in target else "?") + f"why={quote(message)}"
    return RedirectResponse(target, status_code=303)


def redirect(location: str) -> Response:
    """303 See Other (after a form was handled)."""
    return RedirectResponse(location, status_code=303)


async def read_form(request: Request) -> Form:
    """The url-encoded form of a POST (:class:`InputError` for another body type).

    An empty body is an empty form (then refused for its missing CSRF token).
    """
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and kind != "application/x-www-form-urlencoded":
        raise InputError(f"content-type: the portal's forms are "
                         f"application/x-www-form-urlencoded, not {kind or 'missing'}")
    body = raw.decode("utf-8", errors="replace")
    pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def _caller_of(request: Request, session: Session) -> Caller | None:
    """The signed-in principal as a rate-limited :class:`Caller` (``None``: signed out)."""
    service = service_of(request)
    assert session.principal is not None
    # The epoch before the read (as Service.authenticate): a revocation landing in between
    # then makes Service.begin check the principal again rather than miss it.
    epoch = service.view.principal_epoch
    try:
        principal = get_principal(service.ledger, session.principal)
    except NotFoundError:
        return None
    if principal.revoked_at is not None:
        return None
    service.limiter.acquire(principal)
    state = request.scope["state"]
    state["principal"] = principal.id
    # The service middleware calls this once the response is sent (the in-flight count).
    state["release"] = lambda: service.limiter.release(principal)
    return Caller(principal, epoch, state.get("request_id"),
                  state.get("arrived", time.monotonic()))


async def _signed_in(request: Request) -> tuple[Caller | None, Session | None]:
    session = sessions_of(request).read(request)
    if session is None or session.principal is None:
        return None, session
    return await run_in_threadpool(_caller_of, request, session), session


async def signed_in_page(request: Request, work: Work) -> Response:
    """Run a page's ``work`` for the signed-in caller; errors become pages."""
    caller: Caller | None = None
    session: Session | None = None
    try:
        caller, session = await _signed_in(request)
        if caller is None or session is None:
            return to_sign_in(request, "your session ended: sign in again"
                              if session is not None and session.principal else None)
        return await run_in_threadpool(work, caller, session)
    except TrustLedgerError as exc:
        return error_page(exc, caller, session)


async def signed_in_form(request: Request, work: FormWork) -> Response:
    """Check the CSRF token, then run a form's ``work``; errors become pages, nothing changed."""
    caller: Caller | None = None
    session: Session | None = None
    try:
        caller, session = await _signed_in(request)
        form = await read_form(request)
        if session is None or not session.token_matches(form.get(CSRF_FIELD)):
            raise PermissionDeniedError(
                f"{CSRF_FIELD}: missing or wrong — the form did not come from this session "
                "(reload the page and send it again); nothing was changed")
        if caller is None:
            return to_sign_in(request, "your session ended: sign in again")
        return await run_in_threadpool(work, caller, session, form)
    except TrustLedgerError as exc:
        return error_page(exc, caller, session)


def before_body(request: Request, blocked: RateLimitedError | None) -> Response | None:
    """The answer to a form POST before its body is read (the service middleware asks).

    ``None`` lets the body be read and the form handled. Sign-in from a client
    address over its failed-authentication limit (``blocked``) is refused with 429;
    any other form needs a signed-in session -- the cookie is signed, so this needs
    no database -- and without one goes to the sign-in page (303), its body unread.
    """
    if request.url.path == "/portal/sign-in":
        if blocked is None:
            return None
        response = error_page(blocked, None, None)
        response.headers["Retry-After"] = str(blocked.retry_after)
        return response
    session = sessions_of(request).read(request)
    if session is not None and session.principal is not None:
        return None
    return to_sign_in(request, "sign in to send this form")


def field_problems(exc: ValidationError) -> InputError:
    """A pydantic error on a form as one :class:`InputError` naming each field."""
    return InputError("; ".join(f"{field}: {reason}"
                                for field, reason in validation_problems(exc)))


def anonymous(request: Request, response_for: Callable[[Session], Response]) -> Response:
    """A response for a signed-out visitor, with an anonymous session (its CSRF token) set."""
    sessions = sessions_of(request)
    session = sessions.read(request)
    if session is None:
        session = new_session(None)
    response = response_for(session)
    sessions.write(request, response, session)
    return response


def sign_in_as(request: Request, caller: Caller, response: Response) -> Response:
    """Start a fresh session (a new CSRF token) for ``caller`` on ``response``."""
    sessions_of(request).write(request, response, new_session(caller.principal.id))
    return response

