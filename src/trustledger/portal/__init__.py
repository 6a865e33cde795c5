"""The web portal: server-rendered pages for subjects, reviewers and operators (``/portal``).

Served by the same FastAPI app as the API (``trustledger serve``), from Jinja2
templates and one stylesheet in this package — no script, no CDN, nothing fetched
from elsewhere; charts are inline SVG drawn on the server. Sign-in takes an API
key and starts a signed, HttpOnly session cookie; every form carries the
session's CSRF token (:mod:`trustledger.portal.session`). Each page calls the same
functions as the API and the CLI (rights, scoring, statistics), so it shows what
they would. See ``docs/portal.md``.
"""

from fastapi import APIRouter

from trustledger.portal import account, staff, subject

router = APIRouter(include_in_schema=False)
"""Every portal route (registered by :func:`trustledger.api.app.create_app`)."""
for _module in (account, subject, staff):
    router.include_router(_module.router)
router.include_router(account.root)

__all__ = ["router"]
