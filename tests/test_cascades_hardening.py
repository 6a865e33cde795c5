"""Cascades hardening: revoked keys end subscriptions, webhooks reach only allowed addresses,
the signing secret is shown once, and one conversion from ledger entries to engine events.

Real SQLite (and PostgreSQL where the ``setting`` fixture runs on both), real HTTP
receivers on 127.0.0.1 (allowed explicitly where a test needs them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.test_api import World, build_world
from tests.test_cascades import T0, Setting, make_setting
from tests.test_cascades_delivery import Receiver, pump, rows
from trustledger.cascades import (
    ALLOW_ENV,
    CHANGED,
    DEAD,
    DELIVERED,
    REVOKED_REASON,
    Deliverer,
    Deriver,
    Egress,
    RetryPolicy,
    get_subscription,
    list_subscriptions,
    subscribe,
)
from trustledger.cascades.delivery import REVOKED_WITHHELD
from trustledger.cascades.egress import kind_of
from trustledger.cascades.records import ENDED as ENDED_RECORD
from trustledger.cascades.schema import cursor
from trustledger.errors import ConfigError, InputError
from trustledger.ledger import Ledger, event_of
from trustledger.ledger.chain import EVENT_KIND
from trustledger.principals import AuthenticationError, Role, add_principal, revoke_principal
from trustledger.rights import erase, grant_decision_consent

LOOPBACK = Egress.parse("127.0.0.1, ::1")
FAST = RetryPolicy(max_attempts=5, base=0.01, cap=0.05, timeout=2.0)


@pytest.fixture
def setting(database_url: str, tmp_path: Any) -> Iterator[Setting]:
    yield from make_setting(database_url, tmp_path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def subscribed(s: Setting, url: str) -> str:
    """alice (low: one late fee) subscribed by ``s.party`` for lending at ``url``; its id."""
    s.event("late_fee")
    return subscribe(s.ledger, s.party, "alice", "lending", url, s.clock(),
                     egress=LOOPBACK).subscription.id


def change(s: Setting, minutes: int) -> None:
    """alice crosses into ``high`` (a bonus) at T0 + ``minutes``; derived at once."""
    s.clock.set(T0 + timedelta(minutes=minutes))
    s.event("bonus")
    s.deriver.run()


# -- 1. revoking the key ends its subscriptions -------------------------------------------

def test_revoking_the_key_ends_the_subscription_and_nothing_more_reaches_the_party(
        setting: Setting, receiver: Receiver) -> None:
    s = setting
    sub_id = subscribed(s, receiver.url)
    change(s, 1)
    assert [n["type"] for n in s.outbox()] == [CHANGED]  # derived, not yet delivered
    revoke_principal(s.ledger, s.party.id)
    s.clock.set(T0 + timedelta(minutes=2))
    s.deriver.run()
    ended = get_subscription(s.ledger, sub_id)
    assert not ended.active and ended.end_reason == REVOKED_REASON
    # Recorded in the ledger about the subject, as a consent-ended subscription is.
    records = [e.payload for e in s.ledger.records(kind=ENDED_RECORD, subject="alice")]
    assert records == [{"id": sub_id, "party": "lender", "purpose": "lending",
                        "reason": REVOKED_REASON}]
    # No subscription.ended notice to a revoked party, and nothing for later causes.
    for _ in range(3):
        s.event("late_fee")
    s.deriver.run()
    assert [n["type"] for n in s.outbox()] == [CHANGED]
    deliverer = Deliverer(s.ledger, retry=FAST, egress=LOOPBACK)
    try:
        pump(deliverer, lambda: rows(s)[0].status != "pending")
    finally:
        deliverer.close()
    assert rows(s)[0].status == DEAD and rows(s)[0].last_error == REVOKED_WITHHELD
    assert receiver.requests == []


def test_a_notification_pending_when_the_key_is_revoked_is_withheld_at_delivery(
        setting: Setting, receiver: Receiver) -> None:
    s = setting
    sub_id = subscribed(s, receiver.url)
    change(s, 1)
    revoke_principal(s.ledger, s.party.id)
    # The deriver has not looked yet: the subscription is still active in its table,
    # and delivery alone must keep the notification from the revoked party.
    assert get_subscription(s.ledger, sub_id).active
    deliverer = Deliverer(s.ledger, retry=FAST, egress=LOOPBACK)
    try:
        done = deliverer.pass_()
    finally:
        deliverer.close()
    assert done.attempted == 0 and receiver.requests == []
    assert [(r.status, r.last_error, r.attempts) for r in rows(s)] == [
        (DEAD, REVOKED_WITHHELD, 0)]


def test_revoking_another_key_of_the_party_leaves_the_subscription(setting: Setting) -> None:
    s = setting
    sub_id = subscribed(s, "http://127.0.0.1:9/hook")
    rotated = add_principal(s.ledger, "lender", Role.RELYING_PARTY,
                            accreditations=("lending",)).principal
    revoke_principal(s.ledger, rotated.id)
    s.deriver.run()
    assert get_subscription(s.ledger, sub_id).active
    revoke_principal(s.ledger, s.party.id)  # the key that subscribed
    s.deriver.run()
    assert get_subscription(s.ledger, sub_id).end_reason == REVOKED_REASON


def test_a_key_revoked_before_the_worker_ran_is_found_on_its_first_step(
        setting: Setting) -> None:
    s = setting
    sub_id = subscribed(s, "http://127.0.0.1:9/hook")
    revoke_principal(s.ledger, s.party.id)
    # The cursor is already past the revocation (an older worker read it): only the
    # first step's sweep can find the subscription.
    engine = sa.create_engine(s.url)
    with engine.begin() as conn:
        conn.execute(sa.update(cursor).values(seq=s.ledger.position()))
    engine.dispose()
    Deriver(s.ledger, s.clock).run()
    assert get_subscription(s.ledger, sub_id).end_reason == REVOKED_REASON


def test_a_key_revoked_while_subscribing_writes_nothing(setting: Setting) -> None:
    s = setting
    s.event("late_fee")
    stale = s.party  # authenticated before the revocation
    revoke_principal(s.ledger, s.party.id)
    head = s.ledger.position()
    with pytest.raises(AuthenticationError, match="revoked"):
        subscribe(s.ledger, stale, "alice", "lending", "http://127.0.0.1:9/hook", s.clock(),
                  egress=LOOPBACK)
    assert s.ledger.position() == head
    assert list_subscriptions(s.ledger, "lender", include_ended=True) == []


# -- 2. webhook addresses: public only, unless allowed -------------------------------------

@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("100.64.0.1", "not publicly routable"), ("240.0.0.1", "reserved"),
    ("93.184.215.14", None), ("2606:4700::1111", None),
])
def test_kinds_of_address(address: str, kind: str | None) -> None:
    assert kind_of(ipaddress.ip_address(address)) == kind


def test_the_allow_list_admits_networks_and_names() -> None:
    egress = Egress.from_env({ALLOW_ENV: "10.0.0.0/8 ,hooks.internal., [::1]"})
    assert egress.refusal("10.9.9.9", [ipaddress.ip_address("10.9.9.9")]) is None
    assert egress.refusal("::1", [ipaddress.ip_address("::1")]) is None
    assert egress.refusal("Hooks.Internal", [ipaddress.ip_address("127.0.0.1")]) is None
    refused = egress.refusal("x.internal", [ipaddress.ip_address("10.1.1.1"),
                                            ipaddress.ip_address("192.168.1.1")])
    assert refused is not None and "resolves to 192.168.1.1, which is a private" in refused
    assert Egress.from_env({}).refusal("10.9.9.9", [ipaddress.ip_address("10.9.9.9")])


@pytest.mark.parametrize("value", ["10.0.0.0/8, not a host!", "300.1.1.1/8x", "-bad-"])
def test_a_bad_allow_list_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match=ALLOW_ENV):
        Egress.from_env({ALLOW_ENV: value})


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]:8080/",
    "http://169.254.169.254/latest/meta-data/", "https://10.1.2.3/x",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0:80/",
])
def test_subscribing_to_an_internal_address_is_refused_and_writes_nothing(
        setting: Setting, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    s = setting
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    s.event("late_fee")
    head = s.ledger.position()
    with pytest.raises(InputError, match=r"^url: .* address; webhooks go only to public"):
        subscribe(s.ledger, s.party, "alice", "lending", url, s.clock())
    assert s.ledger.position() == head
    assert list_subscriptions(s.ledger, "lender", include_ended=True) == []


def test_public_and_not_yet_resolvable_urls_are_accepted(
        setting: Setting, monkeypatch: pytest.MonkeyPatch) -> None:
    s = setting
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    s.event("late_fee")
    public = subscribe(s.ledger, s.party, "alice", "lending", "https://93.184.215.14/hook",
                       s.clock())
    # A name that does not resolve now is accepted: delivery checks again.
    grant_decision_consent(s.ledger, "alice", "lender", "renting")
    later = subscribe(s.ledger, s.party, "alice", "renting", "https://hooks.invalid/x",
                      s.clock())
    assert sorted(x.id for x in list_subscriptions(s.ledger, "lender")) == sorted(
        [public.subscription.id, later.subscription.id])


def test_the_api_refuses_an_internal_webhook_with_422_naming_url(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    world: World
    for world in build_world(database_url):
        world.consent("alice", "party", "rental_deposit")
        head = world.ledger.position()
        r = world.call("party", "POST", "/v1/subscriptions", json={
            "subject": "alice", "purpose": "rental_deposit",
            "url": "http://169.254.169.254/latest/meta-data/"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("url: 169.254.169.254 is a link-local address")
        assert world.ledger.position() == head
        monkeypatch.setenv(ALLOW_ENV, "169.254.0.0/16")
        r = world.call("party", "POST", "/v1/subscriptions", json={
            "subject": "alice", "purpose": "rental_deposit",
            "url": "http://169.254.169.254/latest/meta-data/"})
        assert r.status_code == 201, r.text


def test_delivery_checks_the_address_again_before_connecting(
        setting: Setting, receiver: Receiver) -> None:
    s = setting
    # Accepted while the operator allowed loopback by name; the allow-list changed since.
    url = f"http://localhost:{receiver.port}/hook"
    s.event("late_fee")
    subscribe(s.ledger, s.party, "alice", "lending", url, s.clock(),
              egress=Egress.parse("localhost"))
    change(s, 1)
    public_only = Deliverer(s.ledger, retry=FAST, egress=Egress())
    try:
        done = public_only.pass_()
    finally:
        public_only.close()
    assert (done.attempted, done.delivered, done.retrying) == (1, 0, 1)
    row = rows(s)[0]
    assert row.status == "pending" and row.attempts == 1
    assert "refused: localhost resolves to 127.0.0.1, which is a loopback address" in (
        row.last_error or "")
    assert receiver.requests == []
    # The same notification goes once the address is allowed (by network, the name
    # resolved at connection time).
    allowed = Deliverer(s.ledger, retry=FAST, egress=LOOPBACK)
    try:
        pump(allowed, lambda: rows(s)[0].status == DELIVERED)
    finally:
        allowed.close()
    assert len(receiver.requests) == 1


# -- 4. the signing secret is shown once ---------------------------------------------------

def test_the_secret_is_shown_once_and_never_again(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")
    for world in build_world(database_url):
        world.consent("alice", "party", "rental_deposit")
        r = world.call("party", "POST", "/v1/subscriptions", json={
            "subject": "alice", "purpose": "rental_deposit", "url": "http://127.0.0.1:9/h"})
        secret = r.json()["secret"]
        key = secret.removeprefix("whsec_")
        for include_ended in ("false", "true"):
            listed = world.call("party", "GET", "/v1/subscriptions",
                                params={"include_ended": include_ended})
            assert listed.status_code == 200 and key not in listed.text
        report = world.call("alice", "GET", "/v1/subjects/alice/report")
        assert key not in report.text
        with world.ledger.reading() as conn:
            payloads = conn.execute(sa.text("select payload from entries")).scalars()
            assert all(key not in (p or "") for p in payloads)


# -- 5. one conversion from ledger entries to engine events -------------------------------

def test_event_of_is_what_ledger_events_read(setting: Setting) -> None:
    s = setting
    for kind in ("bonus", "late_fee", "bonus"):
        s.event(kind, attributes={"note": kind})
    s.event("late_fee", subject="bob")
    ledger: Ledger = s.ledger
    entries = list(ledger.records())
    converted = [e for entry in entries if (e := event_of(entry)) is not None]
    assert converted == list(ledger.events())
    assert len(converted) == 4
    assert all(event_of(entry) is None for entry in entries if entry.kind != EVENT_KIND)
    erase(ledger, "bob")
    purged = [entry for entry in ledger.records(kind=EVENT_KIND, subject="bob")]
    assert purged and all(entry.payload is None and event_of(entry) is None
                          for entry in purged)
    assert [e.subject for e in ledger.events()] == ["alice"] * 3
