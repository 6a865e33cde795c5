"""The sources' router: append events (one or a batch), retract or correct their own.

Bodies are read as they come (plain JSON or CloudEvents 1.0 structured JSON, by
``Content-Type``; see :mod:`trustledger.api.events`), so the OpenAPI request bodies
are declared here explicitly.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trustledger.api import events
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import Appended, BatchAppended, Correction, Retraction
from trustledger.engine import RETRACTION
from trustledger.principals import Role

router = APIRouter(prefix="/v1/events", tags=["sources"])

_ERRORS = responses(401, 403, 409, 413, 415, 422, 429, 503)
_ID = Path(min_length=1, max_length=256, pattern=r"^\S(?:.*\S)?$",
           description="the source's id of its earlier event")


def _body(*alternatives: tuple[str, str]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        media: {"schema": {"$ref": f"#/components/schemas/{model}"}}
        for media, model in alternatives}}}


def _appended(status: int, body: dict[str, Any], request: Request) -> Response:
    if body["status"] == "appended":
        request.app.state.metrics.events.inc()
    return json_response(body, status)


@router.post("", status_code=201, response_model=Appended, responses={
    200: {"description": "the same event was appended before (idempotent)",
          "model": Appended}, **_ERRORS},
    openapi_extra=_body((events.JSON, "EventSubmission"), (events.CLOUDEVENT, "CloudEvent")))
async def append_event(request: Request, caller: CallerDep) -> Response:
    """Append one event (plain JSON or a CloudEvent); 200 if it was appended before."""
    caller.require(Role.SOURCE)
    service = service_of(request)
    body = await request.body()
    kind = request.headers.get("content-type")

    def work() -> tuple[int, dict[str, Any]]:
        service.begin(caller)
        return events.append_one(service, caller, body, kind)

    status, result = await run_in_threadpool(work)
    return _appended(status, result, request)


@router.post("/batch", response_model=BatchAppended, responses=_ERRORS,
             openapi_extra=_body((events.JSON, "EventBatch"),
                                 (events.CLOUDEVENT_BATCH, "CloudEventBatch")))
async def append_batch(request: Request, caller: CallerDep) -> Response:
    """Append a batch atomically: all events or none, each bad item named (index, field)."""
    caller.require(Role.SOURCE)
    service = service_of(request)
    body = await request.body()
    kind = request.headers.get("content-type")

    def work() -> dict[str, Any]:
        service.begin(caller)
        return events.append_batch(service, caller, body, kind)

    result = await run_in_threadpool(work)
    request.app.state.metrics.events.inc(result["appended"])
    return json_response(result)


def _superseding(done: str) -> dict[str, Any]:
    """The route options of a retraction or a correction (``done``: what it did)."""
    return {"status_code": 201, "response_model": Appended,
            "responses": {200: {"description": f"{done} before (idempotent)", "model": Appended},
                          **responses(401, 403, 404, 409, 413, 422, 429, 503)}}


def _supersede(request: Request, caller: CallerDep, earlier: str, body: Retraction | Correction,
               type: str, attributes: dict[str, Any]) -> Response:
    """Record ``body`` as the caller's event of ``type`` that supersedes its ``earlier`` one."""
    caller.require(Role.SOURCE)
    service = service_of(request)
    service.begin(caller)
    status, result = events.supersede(service, caller, earlier, body.source_event_id, type,
                                      body.occurred_at or service.now(), attributes)
    return _appended(status, result, request)


@router.post("/{source_event_id}/retraction", **_superseding("retracted"))
def retract(request: Request, caller: CallerDep, body: Retraction,
            source_event_id: str = _ID) -> Response:
    """Withdraw one of your own events: it stops counting from the moment this is recorded."""
    return _supersede(request, caller, source_event_id, body, RETRACTION, {})


@router.post("/{source_event_id}/correction", **_superseding("corrected"))
def correct(request: Request, caller: CallerDep, body: Correction,
            source_event_id: str = _ID) -> Response:
    """Correct one of your own events: a new event (any accredited type) that replaces it."""
    return _supersede(request, caller, source_event_id, body, body.type, body.attributes)
