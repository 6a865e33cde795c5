"""The worker delivering continuously over real HTTP, through a receiver that fails and recovers.

The guarantee is **at least once, in order per subscription, the same id and body on
every attempt**: a receiver that de-duplicates by ``webhook-id`` processes each
notification exactly once. These tests run the worker as ``trustledger cascades run``
does (derivation and delivery concurrently, :meth:`Worker.run`) against a real HTTP
server on 127.0.0.1 that loses its answers, goes down (connection refused), comes back on
the same port, and check that nothing is lost, nothing is processed twice after the
receiver's de-duplication, and the ledger records one outcome per notification.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from tests.test_cascades import T0, Setting, make_setting
from trustledger.cascades import (
    ALLOW_ENV,
    DELIVERED,
    NOTIFIED,
    Deliverer,
    Egress,
    RetryPolicy,
    Worker,
    subscribe,
)
from trustledger.cascades.egress import EgressRefusedError, Sender
from trustledger.cascades.schema import cursor, notifications
from trustledger.ledger import database
from trustledger.rights import grant_decision_consent

SUBJECTS = ("alice", "bob", "carol")
LOOPBACK = Egress.parse("127.0.0.1")


@pytest.fixture(autouse=True)
def loopback_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' receivers are on 127.0.0.1: allow loopback webhooks explicitly."""
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.1")


@pytest.fixture
def setting(database_url: str, tmp_path: Path) -> Iterator[Setting]:
    yield from make_setting(database_url, tmp_path)


class Receiver:
    """A relying party's endpoint on 127.0.0.1 that de-duplicates by ``webhook-id``.

    ``drop`` > 0: that many requests are read and processed, then the connection is
    closed without an answer (the sender cannot tell it was processed). ``crash_at``:
    the request of that number is processed, then the receiver goes down at once
    (``stop()``: connection refused); ``start()`` brings it back on the same port.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.processed: dict[str, str] = {}   # webhook-id -> body, once (de-duplicated)
        self.drop = 0
        self.crash_at = 0
        self.crashed = False
        self.peers: list[tuple[str, int]] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        receiver = self
        self.crashed = False

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def setup(self) -> None:
                super().setup()
                with receiver.lock:
                    receiver.connections.append(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                msg_id = self.headers["webhook-id"]
                with receiver.lock:
                    if receiver.crashed:
                        # Crashed: a dead process processes nothing more, even on a
                        # connection still open while the listener shuts down.
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    receiver.requests.append({"headers": dict(self.headers.items()),
                                              "body": body})
                    receiver.peers.append(self.client_address)
                    receiver.processed.setdefault(msg_id, body)
                    dropping = receiver.drop > 0
                    receiver.drop -= dropping
                    crashing = len(receiver.requests) == receiver.crash_at
                    receiver.crashed = receiver.crashed or crashing
                if crashing:  # processed, and the receiver dies before answering
                    receiver.stop()
                    return
                if dropping:  # processed, but the answer is lost
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down, as a crashed process is: the listener and every open connection closed."""
        server, self.server = self.server, None
        assert server is not None
        server.shutdown()
        server.server_close()
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.connections.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def outbox(s: Setting) -> list[Any]:
    with s.ledger.reading() as conn:
        return list(conn.execute(sa.select(notifications).order_by(notifications.c.serial)))


def wait_for(condition: Any, limit: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fails after ``limit`` s (a bound, not a timing)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        time.sleep(0.02)


def test_a_receiver_that_loses_answers_goes_down_and_recovers_misses_nothing(
        setting: Setting) -> None:
    s = setting
    receiver = Receiver()
    secrets = {}
    s.event("late_fee", subject="alice")
    for subject in SUBJECTS[1:]:
        grant_decision_consent(s.ledger, subject, "lender", "lending")
        s.event("late_fee", subject=subject)
    for subject in SUBJECTS:
        created = subscribe(s.ledger, s.party, subject, "lending", receiver.url, s.clock(),
                            egress=LOOPBACK)
        secrets[created.subscription.id] = created.secret
    # Four tier changes per subject, derived before delivery starts: 12 notifications.
    for i in range(4):
        s.clock.set(T0 + timedelta(minutes=i + 1))
        for subject in SUBJECTS:
            if i % 2 == 0:
                s.event("bonus", subject=subject)
            else:
                for _ in range(3):
                    s.event("late_fee", subject=subject)
        s.deriver.run()
    derived = outbox(s)
    assert len(derived) == 12
    receiver.drop = 4  # the first four requests are processed, their answers lost
    receiver.crash_at = 6  # then it goes down, with half the notifications still to go
    retry = RetryPolicy(max_attempts=100, base=0.02, cap=0.1, timeout=2.0)
    deliverer = Deliverer(s.ledger, retry=retry, egress=LOOPBACK, rng=random.Random(3),
                          concurrency=4)
    worker = Worker(s.deriver, deliverer)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 0.01), daemon=True)
    thread.start()
    try:
        # Down: connection refused, attempts fail and are retried.
        wait_for(lambda: any("ConnectError" in (r.last_error or "") for r in outbox(s)))
        assert receiver.server is None and len(receiver.requests) == 6
        receiver.start()  # back, on the same port
        wait_for(lambda: all(r.status == DELIVERED for r in outbox(s)))
    finally:
        stop.set()
        thread.join(timeout=30)
        deliverer.close()
        if receiver.server is not None:
            receiver.stop()
    assert not thread.is_alive()
    final = outbox(s)
    # Nothing lost: every notification was processed, exactly once after de-duplication,
    # with the body derived for it.
    assert receiver.processed == {r.id: r.body for r in final}
    # Answers were lost, so some arrived twice: with the same id and the same body.
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert len(ids) > len(set(ids))
    assert all(r["body"] == receiver.processed[r["headers"]["webhook-id"]]
               for r in receiver.requests)
    # In order per subscription: the first receipt of each follows the derivation order.
    first_seen = list(dict.fromkeys(ids))
    for sub_id in secrets:
        mine = [r.id for r in final if r.subscription_id == sub_id]
        assert [i for i in first_seen if i in mine] == mine
    # Every request is signed with its subscription's secret.
    by_id = {r.id: r.subscription_id for r in final}
    for request in receiver.requests:
        sub_id = by_id[request["headers"]["webhook-id"]]
        Webhook(secrets[sub_id]).verify(request["body"], request["headers"])
    # The ledger records one outcome per notification, on the subject it is about.
    for subject in SUBJECTS:
        told = [e.payload for e in s.ledger.records(kind=NOTIFIED, subject=subject)]
        assert [p["id"] for p in told if p] == [r.id for r in final if r.subject == subject]
        assert all(p and p["status"] == DELIVERED for p in told)
    assert all(r.attempts >= 1 for r in final)


@pytest.mark.parametrize("interval", [0.01, 120.0])
def test_the_worker_derives_and_delivers_what_arrives_while_it_runs(
        setting: Setting, interval: float) -> None:
    """Polling every 10 ms, or caught up and waiting 120 s: an append of this process
    wakes the derivation (:meth:`ServiceLedger.appends`), long before the interval."""
    s = setting
    receiver = Receiver()
    s.event("late_fee")
    subscribe(s.ledger, s.party, "alice", "lending", receiver.url, s.clock(), egress=LOOPBACK)
    deliverer = Deliverer(s.ledger, retry=RetryPolicy(base=0.02, timeout=2.0),
                          egress=LOOPBACK)
    worker = Worker(s.deriver, deliverer)
    appends = s.ledger.appends()
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, interval), daemon=True)
    thread.start()
    try:
        wait_for(lambda: derived_to(s) == s.ledger.position(), 30.0)
        seen = appends.count
        s.clock.set(T0 + timedelta(minutes=1))
        s.event("bonus")  # low -> high, while the worker runs
        assert appends.count == seen + 1
        wait_for(lambda: len(receiver.processed) == 1, 30.0)
        wait_for(lambda: [r.status for r in outbox(s)] == [DELIVERED], 30.0)
    finally:
        stop.set()
        thread.join(timeout=30)  # a stop is seen within STOP_CHECK_S, not the interval
        deliverer.close()
        receiver.stop()
    assert not thread.is_alive()
    (row,) = outbox(s)
    assert receiver.processed == {row.id: row.body}
    assert '"tier":"high"' in row.body


def derived_to(s: Setting) -> int:
    """The derivation's cursor, in a snapshot of its own."""
    with s.ledger.reading() as conn:
        return int(conn.execute(sa.select(cursor.c.seq)).scalar_one())


def test_only_committed_appends_are_counted(setting: Setting) -> None:
    s = setting
    appends = s.ledger.appends()
    seen = appends.count
    with pytest.raises(RuntimeError, match="rolled back"), \
            database.writing(s.ledger._engine) as conn:
        database.head_moved(conn)
        raise RuntimeError("rolled back")
    assert appends.count == seen  # nothing was appended
    with database.writing(s.ledger._engine):
        pass  # a write that appends nothing (a cursor, a state)
    assert appends.count == seen
    s.event("bonus")
    assert appends.count == seen + 1
    # A wait for a count already passed returns at once with the count.
    assert appends.wait(seen, 60.0) == seen + 1


def test_a_sender_keeps_its_connection_and_replaces_one_the_receiver_closed() -> None:
    receiver = Receiver()
    sender = Sender(LOOPBACK, timeout=5.0)
    try:
        headers = {"content-type": "application/json", "webhook-id": "msg_a",
                   "webhook-timestamp": "0", "webhook-signature": "v1,x"}
        assert [sender.post(receiver.url, b"{}", headers) for _ in range(3)] == [204] * 3
        assert len(set(receiver.peers)) == 1  # one keep-alive connection for the three
        receiver.stop()
        receiver.start()  # the kept connection is dead now
        assert sender.post(receiver.url, b"{}", {**headers, "webhook-id": "msg_b"}) == 204
        assert len(set(receiver.peers)) == 2
        assert list(receiver.processed) == ["msg_a", "msg_b"]
        receiver.stop()
        with pytest.raises(ConnectionRefusedError):
            sender.post(receiver.url, b"{}", headers)
    finally:
        sender.close()
        if receiver.server is not None:
            receiver.stop()


def test_a_sender_refuses_an_address_the_operator_does_not_allow() -> None:
    receiver = Receiver()
    sender = Sender(Egress(), timeout=5.0)  # public addresses only
    try:
        with pytest.raises(EgressRefusedError, match=r"127\.0\.0\.1 is a loopback address"):
            sender.post(receiver.url, b"{}", {"webhook-id": "msg_a"})
        assert receiver.requests == []
    finally:
        sender.close()
        receiver.stop()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no trusted authority signed, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_a_sender_verifies_the_receivers_certificate(tmp_path: Path) -> None:
    receiver = Receiver()
    assert receiver.server is not None
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(*_self_signed(tmp_path))
    receiver.server.socket = server_side.wrap_socket(receiver.server.socket, server_side=True)
    sender = Sender(LOOPBACK, timeout=5.0)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            sender.post(f"https://127.0.0.1:{receiver.port}/hook", b"{}",
                        {"webhook-id": "msg_a"})
        assert receiver.requests == []
    finally:
        sender.close()
        receiver.stop()


def test_a_worker_split_in_two_refuses_doing_nothing_and_the_cli_names_bad_options(
        setting: Setting, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trustledger.cascades.commands import cascades_app
    from trustledger.errors import InputError

    s = setting
    head = s.ledger.position()
    deliverer = Deliverer(s.ledger, egress=LOOPBACK)
    try:
        with pytest.raises(InputError, match=r"^only: a worker derives, delivers, or both"):
            Worker(s.deriver, deliverer).run(threading.Event(), derive=False, deliver=False)
    finally:
        deliverer.close()
    missing = tmp_path / "never.db"
    runner = CliRunner()
    bad = runner.invoke(cascades_app, ["run", "--only", "everything", "--database-url",
                                       f"sqlite:///{missing}"])
    assert bad.exit_code == 2 and "--only" in bad.output and "derive or deliver" in bad.output
    few = runner.invoke(cascades_app, ["run", "--senders", "0", "--database-url",
                                       f"sqlite:///{missing}"])
    assert few.exit_code == 2 and "--senders" in few.output
    assert not missing.exists() and s.ledger.position() == head  # nothing written
