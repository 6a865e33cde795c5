"""Delivery over real HTTP: a receiver on 127.0.0.1 that is down, fails, is slow, then healthy.

Every notification arrives, none is lost, a duplicate carries the same id and body;
signatures verify (with the ``standardwebhooks`` reference library) with the party's
secret and fail with another; bounded attempts end in the dead-letter state.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.test_cascades import T0, Setting, make_setting
from trustledger.cascades import (
    ALLOW_ENV,
    DEAD,
    DELIVERED,
    NOTIFIED,
    Deliverer,
    RetryPolicy,
    new_secret,
    sign,
    subscribe,
)
from trustledger.cascades.schema import notifications
from trustledger.errors import InputError


@pytest.fixture(autouse=True)
def loopback_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' receivers are on 127.0.0.1: allow loopback webhooks explicitly."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


class Receiver:
    """An HTTP endpoint on 127.0.0.1 whose behaviour the test switches: 500, slow or ok."""

    def __init__(self, port: int = 0) -> None:
        self.mode = "ok"
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                body = self.rfile.read(length).decode()
                mode = receiver.mode
                with receiver.lock:
                    receiver.requests.append({"headers": dict(self.headers.items()),
                                              "body": body, "mode": mode,
                                              "at": time.monotonic()})
                if mode == "slow":
                    time.sleep(receiver.delay)
                status = 500 if mode == "fail" else 204
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting (its timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def setting(tmp_path: Path) -> Iterator[Setting]:
    yield from make_setting(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_changes(s: Setting, count: int) -> None:
    """``count`` tier changes of alice's lending decision (from 480, low), one notification each."""
    for i in range(count):
        s.clock.set(T0 + timedelta(minutes=i + 1))
        if i % 2 == 0:
            s.event("bonus")  # +80: high
        else:
            for _ in range(3):
                s.event("late_fee")  # -60: low
        s.deriver.run()


def rows(s: Setting) -> list[Any]:
    with s.ledger.reading() as conn:
        return list(conn.execute(sa.select(notifications).order_by(notifications.c.serial)))


def pump(deliverer: Deliverer, until: Any, limit: float = 30.0) -> None:
    """Delivery passes (real time) until ``until()`` holds; fails after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not until():
        assert time.monotonic() < deadline, "delivery did not get there in time"
        deliverer.pass_()
        time.sleep(0.01)


def test_down_failing_slow_then_healthy_loses_nothing(setting: Setting) -> None:
    s = setting
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    s.event("late_fee")
    created = subscribe(s.ledger, s.party, "alice", "lending", url, s.clock())
    make_changes(s, 4)
    outbox = rows(s)
    assert len(outbox) == 4
    retry = RetryPolicy(max_attempts=50, base=0.02, cap=0.2, timeout=0.5)
    deliverer = Deliverer(s.ledger, retry=retry, rng=random.Random(7))
    receiver: Receiver | None = None
    try:
        # Down: nothing listens; attempts fail and are rescheduled, nothing is lost.
        pump(deliverer, lambda: rows(s)[0].attempts >= 3)
        assert all(r.status == "pending" for r in rows(s))
        assert "ConnectError" in (rows(s)[0].last_error or "")
        receiver = Receiver(port)
        receiver.mode = "fail"
        pump(deliverer, lambda: len(receiver.requests) >= 2)
        assert rows(s)[0].last_error == "HTTP 500"
        receiver.mode, receiver.delay = "slow", 1.5
        pump(deliverer, lambda: any(r["mode"] == "slow"
                                    for r in receiver.requests))
        pump(deliverer, lambda: "timed out" in (rows(s)[0].last_error or ""))
        receiver.mode = "ok"
        pump(deliverer, lambda: all(r.status == DELIVERED for r in rows(s)))
    finally:
        deliverer.close()
        if receiver is not None:
            receiver.close()
    assert receiver is not None
    final = rows(s)
    ok = [r for r in receiver.requests if r["mode"] == "ok"]
    # Every notification arrived (answered 2xx), in the order it was derived (a busy
    # machine may time out a healthy answer too: then it arrives twice, same id).
    assert list(dict.fromkeys(r["headers"]["webhook-id"] for r in ok)) == [n.id for n in final]
    # The one that timed out was received twice: same id, same body.
    slow = [r for r in receiver.requests if r["mode"] == "slow"]
    assert slow and slow[0]["headers"]["webhook-id"] == ok[0]["headers"]["webhook-id"]
    assert slow[0]["body"] == ok[0]["body"]
    by_id: dict[str, set[str]] = {}
    for r in receiver.requests:
        by_id.setdefault(r["headers"]["webhook-id"], set()).add(r["body"])
    assert all(len(bodies) == 1 for bodies in by_id.values())
    # Signatures verify with the party's secret, and not with another.
    for r in receiver.requests:
        Webhook(created.secret).verify(r["body"], r["headers"])
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(r["body"], r["headers"])
    # The subject's ledger records every notification delivered about them.
    notified = [e.payload for e in s.ledger.records(kind=NOTIFIED, subject="alice")]
    assert [p["id"] for p in notified if p] == [n.id for n in final]
    assert all(p and p["status"] == DELIVERED for p in notified)


def test_bounded_attempts_end_in_the_dead_letter_state(setting: Setting) -> None:
    s = setting
    receiver = Receiver()
    receiver.mode = "fail"
    s.event("late_fee")
    subscribe(s.ledger, s.party, "alice", "lending", receiver.url, s.clock())
    make_changes(s, 2)
    retry = RetryPolicy(max_attempts=3, base=0.01, cap=0.05, timeout=1.0)
    deliverer = Deliverer(s.ledger, retry=retry, rng=random.Random(1))
    try:
        pump(deliverer, lambda: rows(s)[0].status == DEAD)
        # A dead notification does not block the next one of the subscription.
        pump(deliverer, lambda: rows(s)[1].status == DEAD)
    finally:
        deliverer.close()
        receiver.close()
    first = rows(s)[0]
    assert (first.attempts, first.last_error) == (3, "HTTP 500")
    assert len([r for r in receiver.requests
                if r["headers"]["webhook-id"] == first.id]) == 3
    notified = [e.payload for e in s.ledger.records(kind=NOTIFIED, subject="alice")]
    assert [p["status"] for p in notified if p] == [DEAD, DEAD]


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    retry = RetryPolicy(max_attempts=10, base=1.0, cap=60.0)
    rng = random.Random(3)
    for attempts in range(1, 10):
        bound = min(60.0, 2.0 ** (attempts - 1))
        delays = [retry.delay(attempts, rng) for _ in range(200)]
        assert all(bound / 2 <= d <= bound for d in delays)
        assert max(delays) - min(delays) > bound / 4  # jittered, not fixed


@pytest.mark.parametrize(("field", "value"), [("max_attempts", 0), ("base", 0.0),
                                              ("cap", -1.0), ("timeout", 0.0)])
def test_a_bad_retry_policy_names_the_field(field: str, value: float) -> None:
    settings: dict[str, Any] = {field: value}
    with pytest.raises(InputError, match=field):
        RetryPolicy(**settings)


def test_signature_is_the_standard_webhooks_one(now: datetime) -> None:
    """The standardwebhooks library checks the timestamp against the system clock: ``now``."""
    secret = new_secret()
    timestamp = int(now.timestamp())
    body = '{"type":"decision.changed"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret, "msg_1", timestamp, body)}
    assert Webhook(secret).verify(body, headers) == {"type": "decision.changed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("changed", "chanGed"), headers)


def test_cli_run_once_delivers_and_status_counts(setting: Setting) -> None:
    from typer.testing import CliRunner

    from trustledger.cascades.commands import cascades_app

    s = setting
    receiver = Receiver()
    s.event("late_fee")
    subscribe(s.ledger, s.party, "alice", "lending", receiver.url, s.clock())
    make_changes(s, 1)
    url = s.url  # the CLI opens the same database
    runner = CliRunner()
    try:
        done = runner.invoke(cascades_app, ["run", "--once", "--database-url", url])
    finally:
        receiver.close()
    assert done.exit_code == 0, done.output
    assert "delivered 1," in done.output
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [rows(s)[0].id]
    status = runner.invoke(cascades_app, ["status", "--database-url", url])
    assert status.exit_code == 0, status.output
    assert "1 active, 0 ended" in status.output and "1 delivered" in status.output
    bad = runner.invoke(cascades_app, ["run", "--once", "--max-attempts", "0",
                                       "--database-url", url])
    assert bad.exit_code == 2 and "max-attempts" in bad.output


def test_the_subjects_report_lists_every_notification_sent_about_them(
        setting: Setting) -> None:
    from rich.console import Console

    from trustledger.rights.html import report_html
    from trustledger.rights.render import report as render_report
    from trustledger.rights.report import build_report

    s = setting
    receiver = Receiver()
    s.event("late_fee")
    subscribe(s.ledger, s.party, "alice", "lending", receiver.url, s.clock())
    make_changes(s, 2)
    deliverer = Deliverer(s.ledger, retry=RetryPolicy(base=0.01, timeout=2.0))
    try:
        pump(deliverer, lambda: all(r.status == DELIVERED for r in rows(s)))
    finally:
        deliverer.close()
        receiver.close()
    report = build_report(s.ledger, "alice", s.clock() + timedelta(days=1))
    assert [n.notification for n in report.notifications] == [r.id for r in rows(s)]
    assert {(n.party, n.purpose, n.status) for n in report.notifications} == {
        ("lender", "lending", DELIVERED)}
    assert report.to_dict()["notifications"][0]["type"] == "decision.changed"
    page = report_html(report)
    assert "Who was told when your decision changed" in page and "lender" in page
    console = Console(width=200, record=True)
    console.print(render_report(report))
    assert "notifications sent about this subject" in console.export_text()
    # Bob has none: the section says so.
    s.event("late_fee", subject="bob")
    assert build_report(s.ledger, "bob", s.clock()).notifications == ()


def test_a_change_pending_when_consent_ends_is_withheld(setting: Setting) -> None:
    from trustledger.rights import withdraw_consent

    s = setting
    port = free_port()
    s.event("late_fee")
    subscribe(s.ledger, s.party, "alice", "lending", f"http://127.0.0.1:{port}/hook",
              s.clock())
    make_changes(s, 1)  # a change, not delivered: nothing listens yet
    deliverer = Deliverer(s.ledger, retry=RetryPolicy(base=0.01, timeout=1.0))
    receiver: Receiver | None = None
    try:
        pump(deliverer, lambda: rows(s)[0].attempts >= 1)
        s.clock.set(T0 + timedelta(hours=1))
        withdraw_consent(s.ledger, "alice", s.consent_seq)
        s.deriver.run()
        receiver = Receiver(port)
        pump(deliverer, lambda: rows(s)[-1].status == DELIVERED)
    finally:
        deliverer.close()
        if receiver is not None:
            receiver.close()
    changed, ended = rows(s)
    assert (changed.status, changed.last_error) == (
        DEAD, "withheld: the subscription ended before delivery")
    assert [r["body"] for r in receiver.requests] == [ended.body]
    assert '"subscription.ended"' in ended.body
    notified = [e.payload for e in s.ledger.records(kind=NOTIFIED, subject="alice")]
    assert [p["type"] for p in notified if p] == ["subscription.ended"]
