"""System routes: ``/healthz``, ``/metrics`` (Prometheus) and ``/v1/whoami``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from trustledger.api import render
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import Health, PrincipalOut

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, responses=responses(503))
def healthz(request: Request) -> Response:
    """The service is up and can read its ledger (no key needed)."""
    service = service_of(request)
    position = service.ledger.position()
    return json_response({"status": "ok", "database": service.ledger.url.split(":", 1)[0],
                          "ledger_seq": position})


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text format",
          "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (no key needed)."""
    service = service_of(request)
    app_metrics = request.app.state.metrics
    app_metrics.ledger_seq.set(service.view.position)
    app_metrics.access_commits.set(service.access_log.commits)
    app_metrics.access_records.set(service.access_log.records)
    return Response(generate_latest(app_metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/whoami", response_model=PrincipalOut, responses=responses(401, 429, 503))
def whoami(caller: CallerDep, request: Request) -> Response:
    """The principal the key belongs to: role, name, accreditations (any role)."""
    service_of(request).begin(caller)
    return json_response(render.principal(caller.principal))
