"""The FastAPI application: one router per actor, problem+json errors, limits, logs, metrics.

``create_app(settings)`` builds the app; the ledger is opened when the app starts
(its lifespan) unless a :class:`~trustledger.api.service.Service` is passed in.
``create_app_from_env`` is the factory ``uvicorn`` imports (``trustledger serve``).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from trustledger import __version__
from trustledger.api import pauses, problems
from trustledger.api.auth import SECURITY_SCHEME
from trustledger.api.limits import FailureLimiter
from trustledger.api.middleware import Metrics, ServiceMiddleware
from trustledger.api.routers import (
    disputes,
    operator,
    register,
    relying_parties,
    reviewers,
    sources,
    subjects,
    system,
)
from trustledger.api.routers import subscriptions as subscription_routes
from trustledger.api.schemas import CloudEvent, DecisionRequest, EventBatch, EventSubmission
from trustledger.api.service import Service
from trustledger.api.settings import Settings
from trustledger.cascades.worker import Background
from trustledger.portal import router as portal_router
from trustledger.portal.web import before_body

DESCRIPTION = """\
Trust scores with reasons, consent and contestability built in.

Every call but `/healthz` and `/metrics` needs an API key (`Authorization: Bearer tl_...`)
issued by the operator. Each actor has its own routes: **sources** append events,
**relying parties** ask for one subject's decision for a declared purpose (only with that
subject's active consent), **subjects** see everything about themselves and grant or
withdraw consent, the **operator** publishes policies, manages principals and sees
aggregate statistics; two operators change the **event-type register** (one proposes, another
approves). Errors are RFC 9457 problem details.
"""


def create_app(settings: Settings | None = None, *, service: Service | None = None,
               freeze_after_startup: bool = False) -> FastAPI:
    """The application; it opens (and at shutdown closes) its service unless given one.

    ``freeze_after_startup`` (the server process only, :func:`create_app_from_env`): once
    the service is open, every object alive (modules, the compiled policies, the app) is
    collected and moved out of the garbage collector's generations (``gc.freeze``), so
    the full collections a busy server runs no longer walk them (bench/service.py
    measured gen-2 pauses of 300 to 430 ms as the p99 at capacity). Never in a process
    that creates many apps (tests): frozen objects are never collected. Then the young
    generation's threshold becomes :attr:`Settings.gc_young_threshold`.
    """
    settings = settings or (service.settings if service else Settings.from_env())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = service is None
        app.state.service = service or Service.open(settings)
        # `trustledger serve --cascades`: the cascades' worker runs beside the service.
        cascades = Background.from_env(app.state.service.ledger)
        if freeze_after_startup:
            gc.collect()
            gc.freeze()
            gc.set_threshold(settings.gc_young_threshold, *gc.get_threshold()[1:])
        recorder = pauses.recorder()  # the bench's diagnostics (TRUSTLEDGER_PAUSES)
        if recorder is not None:
            recorder.start_probe()
        try:
            yield
        finally:
            if cascades is not None:
                cascades.stop()
            if own:
                app.state.service.close()
            if recorder is not None:
                recorder.close()

    app = FastAPI(title="trustledger", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    if service is not None:
        app.state.service = service
    metrics = Metrics()
    app.state.metrics = metrics
    problems.install(app)
    for module in (system, sources, disputes, relying_parties, subjects, reviewers, operator,
                   register):
        app.include_router(module.router)
    app.include_router(portal_router)  # the web portal (/portal): server-rendered pages
    app.include_router(subscription_routes.router)  # cascades (docs/cascades.md)
    failures = FailureLimiter(settings.auth_failure_rate, settings.auth_failure_burst,
                              settings.auth_failure_clients)
    app.add_middleware(ServiceMiddleware, settings=settings, metrics=metrics,
                       failures=failures, portal_gate=before_body,
                       direct=relying_parties.DIRECT)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            _, extra = models_json_schema(
                [(m, "validation") for m in (EventSubmission, CloudEvent, EventBatch,
                                              DecisionRequest, problems.Problem,
                                              problems.ProblemItem)],
                ref_template="#/components/schemas/{model}")
            components.update(extra.get("$defs", {}))
            components["CloudEventBatch"] = {
                "type": "array", "minItems": 1,
                "items": {"$ref": "#/components/schemas/CloudEvent"},
                "title": "CloudEventBatch",
                "description": "CloudEvents 1.0 batch (`application/cloudevents-batch+json`)."}
            schema["components"]["securitySchemes"] = {"apiKey": SECURITY_SCHEME}
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_app_from_env() -> FastAPI:
    """The app with settings from ``TRUSTLEDGER_*`` variables (uvicorn's factory).

    Also sets the server process's thread switch interval (``switch_interval``) and
    freezes what startup leaves alive out of the garbage collector's way.
    """
    settings = Settings.from_env()
    sys.setswitchinterval(settings.switch_interval)
    pauses.install_from_env()
    return create_app(settings, freeze_after_startup=True)


