"""The portal's session: a signed, HttpOnly cookie naming the principal, and its CSRF token.

Signing in with an API key puts the principal's *id* (never the key) and a fresh
random CSRF token into the cookie ``tl_portal``, signed with HMAC-SHA256 under the
portal's secret and stamped with the time it was issued; a cookie whose signature
does not verify, or that is older than :data:`MAX_AGE`, counts as no session. Every
request re-reads the principal, so a revoked key ends its sessions at once.

Before sign-in the cookie carries a CSRF token alone (an anonymous session), so the
sign-in form is protected too: every POST must send the session's token as the form
field ``csrf_token`` (compared in constant time) or it is refused with 403 and
changes nothing.

The secret is ``TRUSTLEDGER_SESSION_SECRET`` (at least 32 characters) when set —
needed when several worker processes serve the portal — otherwise a random one per
process (sessions then end when the server restarts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response

from trustledger.errors import ConfigError

COOKIE = "tl_portal"
"""Name of the session cookie."""
MAX_AGE = 8 * 3600
"""A session lasts at most this many seconds after sign-in."""
SECRET_VARIABLE = "TRUSTLEDGER_SESSION_SECRET"
"""The environment variable holding the signing secret."""
CSRF_FIELD = "csrf_token"
"""The form field every POST must carry."""
_MIN_SECRET = 32


@dataclass(frozen=True, slots=True)
class Session:
    """What the cookie says: the principal signed in (``None``: anonymous) and the CSRF token."""

    principal: str | None
    csrf: str
    issued: float

    def token_matches(self, sent: str | None) -> bool:
        """Whether ``sent`` is this session's CSRF token (constant-time comparison)."""
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), str(sent).encode())


def secret_from_env() -> bytes:
    """The signing secret: ``TRUSTLEDGER_SESSION_SECRET`` or a random one for this process."""
    text = os.environ.get(SECRET_VARIABLE, "")
    if not text:
        return secrets.token_bytes(32)
    if len(text) < _MIN_SECRET:
        raise ConfigError(f"{SECRET_VARIABLE}: must be at least {_MIN_SECRET} characters")
    return text.encode()


class Sessions:
    """Reads, writes and signs session cookies under one secret."""

    def __init__(self, secret: bytes) -> None:
        """Sign with ``secret``."""
        self._secret = secret

    def _mac(self, body: bytes) -> str:
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def encode(self, session: Session) -> str:
        """The cookie value: the session as base64 JSON, a dot, its signature."""
        body = base64.urlsafe_b64encode(orjson.dumps(
            {"p": session.principal, "c": session.csrf, "t": session.issued})).rstrip(b"=")
        return f"{body.decode()}.{self._mac(body)}"

    def decode(self, value: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie value; ``None`` if absent, tampered with or expired."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            principal, csrf, issued = data["p"], str(data["c"]), float(data["t"])
        except (ValueError, KeyError, TypeError):
            return None
        if principal is not None and not isinstance(principal, str):
            return None
        if not 0 <= (now if now is not None else time.time()) - issued <= MAX_AGE:
            return None
        return Session(principal, csrf, issued)

    def read(self, request: Request) -> Session | None:
        """The request's session, if its cookie is valid."""
        return self.decode(request.cookies.get(COOKIE))

    def write(self, request: Request, response: Response, session: Session) -> None:
        """Set the cookie: HttpOnly, SameSite=Lax, Secure over HTTPS, path ``/portal``."""
        response.set_cookie(COOKIE, self.encode(session), max_age=MAX_AGE, path="/portal",
                            httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")

    @staticmethod
    def clear(response: Response) -> None:
        """Remove the cookie (sign-out)."""
        response.delete_cookie(COOKIE, path="/portal", httponly=True, samesite="lax")


def new_session(principal: str | None) -> Session:
    """A fresh session for ``principal`` (``None``: anonymous) with a new CSRF token."""
    return Session(principal, secrets.token_urlsafe(32), time.time())
