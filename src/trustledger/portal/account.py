"""Signing in and out, the landing page, and the portal's stylesheet.

Sign-in takes an API key (the same keys the API takes), checks it exactly as the
API does (:meth:`trustledger.api.service.Service.authenticate`) and starts a
session for its principal; the key itself is not kept anywhere.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from trustledger.api.auth import service_of
from trustledger.api.service import Caller
from trustledger.errors import TrustLedgerError
from trustledger.portal.session import CSRF_FIELD, Session, Sessions
from trustledger.portal.web import (
    Form,
    anonymous,
    error_page,
    home_of,
    page,
    read_form,
    redirect,
    sessions_of,
    sign_in_as,
    signed_in_form,
    signed_in_page,
)
from trustledger.principals import AuthenticationError

router = APIRouter(prefix="/portal", include_in_schema=False)
root = APIRouter(include_in_schema=False)
"""The site's own root routes: ``/`` and ``/favicon.ico`` (no sign-in needed)."""

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#1b1f24"/>'
    '<path d="M8 9h16v4h-6v12h-4V13H8z" fill="#fff"/>'
    '<path d="M6 27h20" stroke="#ffbf47" stroke-width="2"/></svg>'
)
"""The portal's icon: a small SVG drawn here, served by the app (nothing from a CDN)."""


def _next(target: str | None) -> str | None:
    # Only a portal path of this site: never an open redirect.
    if target and target.startswith("/portal/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return None


@root.get("/")
async def site_root() -> Response:
    """The site's root: the portal (307; it sends a signed-out visitor to sign in)."""
    return RedirectResponse("/portal/", status_code=307)


@root.get("/favicon.ico")
@router.get("/static/favicon.svg")
async def favicon() -> Response:
    """The portal's icon (SVG), for browsers asking ``/favicon.ico`` and the pages' link."""
    return Response(FAVICON, media_type="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=86400",
                             "X-Content-Type-Options": "nosniff"})


@router.get("")
@router.get("/")
async def index(request: Request) -> Response:
    """The caller's own page, or the sign-in page."""
    return await signed_in_page(request, lambda caller, _: redirect(home_of(caller)))


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str | None = None, why: str | None = None
                       ) -> Response:
    """The sign-in form (with an anonymous session carrying its CSRF token)."""
    notice = "Your session ended: sign in again." if why else None
    return anonymous(request, lambda session: page(
        "sign_in.html.j2", title="Sign in", csrf=session.csrf, next=_next(next) or "",
        notice=notice))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the key; on success start a session and go to the caller's page."""
    sessions = sessions_of(request)
    session = sessions.read(request)
    try:
        form = await read_form(request)
    except TrustLedgerError as exc:
        return error_page(exc, None, None)
    if session is None or not session.token_matches(form.get(CSRF_FIELD)):
        return anonymous(request, lambda fresh: page(
            "sign_in.html.j2", 403, title="Sign in", csrf=fresh.csrf, next="",
            error=f"{CSRF_FIELD}: missing or wrong (the form is older than your session, or "
                  "did not come from this site): sign in again from this page"))
    return await run_in_threadpool(_sign_in, request, sessions, session, form)


def _sign_in(request: Request, sessions: Sessions, session: Session, form: Form) -> Response:
    service = service_of(request)
    key = form.get("api_key", "").strip()
    target = _next(form.get("next"))
    try:
        if not key:
            raise AuthenticationError("required — paste the API key the operator issued you")
        epoch, principal = service.authenticate(key)
    except TrustLedgerError as exc:
        response = page("sign_in.html.j2", 401, title="Sign in", csrf=session.csrf,
                        next=target or "", error=f"api_key: {exc}")
        sessions.write(request, response, session)
        return response
    caller = Caller(principal, epoch, None, 0.0)
    return sign_in_as(request, caller, redirect(target or home_of(caller)))


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session (a POST with the session's CSRF token)."""

    def work(caller: Caller, session: Session, form: Form) -> Response:
        response = redirect("/portal/sign-in")
        Sessions.clear(response)
        return response

    return await signed_in_form(request, work)


@router.get("/home")
async def home(request: Request) -> Response:
    """The landing page of a role the portal has no pages for (sources, relying parties)."""
    return await signed_in_page(request, lambda caller, session: page(
        "home.html.j2", caller=caller, csrf=session.csrf, title="Signed in"))


@router.get("/static/portal.css")
async def stylesheet() -> Response:
    """The portal's one stylesheet (served by the app: nothing comes from elsewhere)."""
    css = resources.files("trustledger.portal").joinpath("static/portal.css")
    return Response(css.read_text(encoding="utf-8"), media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600",
                             "X-Content-Type-Options": "nosniff"})
