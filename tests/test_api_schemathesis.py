"""Schemathesis against the live server's OpenAPI schema: every operation, authenticated.

Each operation is called with the key of the actor it is for (the subject's own id in
subject paths, the consenting subject in decisions, so answers other than 403 occur too)
and with generated data, valid and invalid. Then every operation again with each other
role's key, with no key and with a key nobody holds (refused with 401 or 403 where the
route is not for that caller). Checks: no server error, and every response conforms to
the schema (status code, content type, headers, body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_api_live import seed, serving
from trustledger.api import Settings, create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = 15
"""Examples per operation: bounded, so the test takes seconds."""
EXAMPLES_OTHERS = 3
"""Examples per operation and caller it is not for."""
CALLERS = ("source", "party", "alice", "operator", "reviewer", None, "unknown")
"""Every role's key, no key (``None``) and a key nobody holds."""
ROLE_OF_TAG = {"sources": "source", "relying parties": "party", "subjects": "alice",
               "operator": "operator", "system": "operator", "reviewers": "reviewer",
               "register": "operator"}
LAST = "/v1/subjects/{subject}/erasure"
"""Run last: once alice is erased, her other routes can only answer "no data"."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'ledger.db'}"
    keys = seed(url)
    keys["unknown"] = "tl_" + "A" * 43
    app = create_app(Settings(database_url=url, rate_limit=100_000.0, max_in_flight=1_000,
                              auth_failure_burst=1_000_000))
    with serving(app) as base:
        import httpx

        auth = {"Authorization": f"Bearer {keys['alice']}"}
        httpx.post(base + "/v1/subjects/alice/consents", headers=auth, json={
            "scope": "decision", "party": "rentals", "purpose": "rental_deposit"})
        appended = httpx.post(
            base + "/v1/events", headers={"Authorization": f"Bearer {keys['source']}"},
            json={"source_event_id": "seed-1", "subject": "alice", "type": "bill_paid",
                  "occurred_at": "2026-01-01T00:00:00Z"})
        # A dispute and a review, so the source's and reviewer's routes find cases too.
        httpx.post(base + "/v1/subjects/alice/disputes", headers=auth, json={
            "event_seq": appended.json()["seq"], "reason": "not mine"})
        httpx.post(base + "/v1/subjects/alice/reviews", headers=auth,
                   json={"measure": "deposit_free_rental"})
        yield base, keys


@pytest.fixture(scope="module")
def api_schema(live: tuple[str, dict[str, str]]) -> Any:
    return schemathesis.openapi.from_url(live[0] + "/openapi.json")


def _call(case: Any, base: str, keys: dict[str, str]) -> None:
    tags = case.operation.definition.raw.get("tags") or ["system"]
    role = ROLE_OF_TAG[tags[0]]
    if "subject" in (case.path_parameters or {}):
        case.path_parameters["subject"] = "alice"
    if case.path == "/v1/decisions" and isinstance(case.body, dict) and \
            len(str(case.body)) % 2 == 0:
        case.body = {**case.body, "subject": "alice", "purpose": "rental_deposit"}
    headers = {"Authorization": f"Bearer {keys[role]}"}
    case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)


def test_no_server_errors_and_no_schema_violations(
        api_schema: Any, live: tuple[str, dict[str, str]]) -> None:
    base, keys = live
    operations = [result.ok() for result in api_schema.get_all_operations()]
    operations.sort(key=lambda operation: operation.path == LAST)
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            _call(case, base, keys)

        run()


def _role(case: Any) -> str:
    tags = case.operation.definition.raw.get("tags") or ["system"]
    return ROLE_OF_TAG[tags[0]]


def test_every_other_caller_is_refused_without_server_errors(
        api_schema: Any, live: tuple[str, dict[str, str]]) -> None:
    base, keys = live
    operations = [result.ok() for result in api_schema.get_all_operations()
                  if result.ok().path.startswith("/v1/")]
    operations.sort(key=lambda operation: operation.path == LAST)
    statuses: set[int] = set()

    def as_caller(caller: str | None) -> Callable[[Any], None]:
        def call(case: Any) -> None:
            if caller == _role(case):
                return
            if "subject" in (case.path_parameters or {}):
                case.path_parameters["subject"] = "alice"
            headers = {} if caller is None else {"Authorization": f"Bearer {keys[caller]}"}
            response = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)
            statuses.add(response.status_code)
            assert response.status_code < 500

        return call

    for operation in operations:
        for caller in CALLERS:
            run = settings(max_examples=EXAMPLES_OTHERS, deadline=None, derandomize=True,
                           database=None, suppress_health_check=list(HealthCheck))(
                given(case=operation.as_strategy())(as_caller(caller)))
            run()
    assert {401, 403} <= statuses


def test_schema_lists_every_route(api_schema: Any) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {"/v1/decisions", "/v1/events", "/v1/events/batch", "/v1/statistics",
            "/v1/subjects/{subject}/scores", "/healthz", "/metrics"} <= paths
    assert not any(p.startswith("/v1/subjects") and "list" in p for p in paths)
    assert Path(__file__).name  # keep the module's path in failure reports
