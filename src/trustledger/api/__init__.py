"""The HTTP service: a FastAPI app with one router per actor (``trustledger serve``).

    from trustledger.api import Settings, create_app
    app = create_app(Settings(database_url="sqlite:///data/ledger.db"))

See ``docs/api.md`` for the endpoints, roles, limits and errors. The names below
are imported on first use, so the command line does not load the web stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustledger.api.app import create_app, create_app_from_env
    from trustledger.api.service import Caller, Service
    from trustledger.api.settings import Settings

_WHERE = {
    "create_app": "trustledger.api.app",
    "create_app_from_env": "trustledger.api.app",
    "Caller": "trustledger.api.service",
    "Service": "trustledger.api.service",
    "Settings": "trustledger.api.settings",
}

__all__ = ["Caller", "Service", "Settings", "create_app", "create_app_from_env"]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module 'trustledger.api' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
