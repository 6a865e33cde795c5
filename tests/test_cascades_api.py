"""The subscription routes over HTTP: who may call them, consent, errors, and the matrix.

On SQLite and PostgreSQL through FastAPI's test client over the ``World`` of
``tests/test_api.py`` (the Sesame policy; ``party`` = "rentals" accredited for
``rental_deposit``, ``party2`` = "lender" for ``consumer_credit`` and ``rental_deposit``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_api import PROBLEM, World, build_world
from trustledger.cascades import ALLOW_ENV


@pytest.fixture(autouse=True)
def loopback_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' receivers are on 127.0.0.1: allow loopback webhooks explicitly."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from build_world(database_url)


def subscription(subject: str = "alice", purpose: str = "rental_deposit") -> dict[str, str]:
    """A subscription request body."""
    return {"subject": subject, "purpose": purpose, "url": HOOK}


ROUTES = [("POST", "/v1/subscriptions"), ("GET", "/v1/subscriptions"),
          ("DELETE", "/v1/subscriptions/sub_0123456789abcdef")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(("role", "status"), [
    (None, 401), ("operator", 403), ("source", 403), ("alice", 403), ("reviewer", 403),
])
def test_only_relying_parties_may_call_the_subscription_routes(
        world: World, method: str, path: str, role: str | None, status: int) -> None:
    kwargs = {"json": subscription()} if method == "POST" else {}
    r = world.call(role, method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM


def test_a_relying_party_subscribes_lists_and_cancels(world: World) -> None:
    r = world.call("party", "POST", "/v1/subscriptions", json=subscription())
    assert r.status_code == 403
    assert "missing consent" in r.json()["detail"]
    world.consent("alice", "party", "rental_deposit")
    r = world.call("party", "POST", "/v1/subscriptions", json=subscription())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["active"] is True
    assert (created["subject"], created["purpose"], created["url"]) == (
        "alice", "rental_deposit", HOOK)
    again = world.call("party", "POST", "/v1/subscriptions", json=subscription())
    assert again.status_code == 409
    listed = world.call("party", "GET", "/v1/subscriptions").json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0] and "state" not in listed[0]
    # Another party neither sees nor cancels it.
    assert world.call("party2", "GET", "/v1/subscriptions").json() == []
    other = world.call("party2", "DELETE", f"/v1/subscriptions/{created['id']}")
    assert other.status_code == 404
    r = world.call("party", "DELETE", f"/v1/subscriptions/{created['id']}")
    assert r.status_code == 200 and r.json()["active"] is False
    assert world.call("party", "GET", "/v1/subscriptions").json() == []
    ended = world.call("party", "GET", "/v1/subscriptions",
                       params={"include_ended": "true"}).json()
    assert [s["end_reason"] for s in ended] == ["cancelled by the relying party"]


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"purpose": "consumer_credit"}, 403, "not accredited"),
    ({"url": "not a url"}, 422, "url"),
    ({"url": "ftp://127.0.0.1/x"}, 422, "url"),
    ({"secret": "whsec_short"}, 422, "secret"),
    ({"subject": " alice"}, 422, "subject"),
    ({"colour": "red"}, 422, "colour"),
])
def test_bad_subscription_requests_name_the_field(world: World, change: dict[str, str],
                                                  status: int, field: str) -> None:
    world.consent("alice", "party", "rental_deposit")
    head = world.ledger.position()
    r = world.call("party", "POST", "/v1/subscriptions", json={**subscription(), **change})
    assert r.status_code == status, r.text
    assert field in r.text
    assert world.ledger.position() == head
