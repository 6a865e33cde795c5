"""Delivering the outbox: signed webhooks (Standard Webhooks), retries with backoff, dead letters.

Each notification is an HTTP ``POST`` of its JSON body to the subscription's URL
with the headers of the Standard Webhooks convention:

* ``webhook-id``: the notification's id (``msg_...``), the same on every attempt,
  so a receiver de-duplicates by it (delivery is at least once);
* ``webhook-timestamp``: the attempt's time, integer seconds since the epoch;
* ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over
  ``f"{id}.{timestamp}.{body}"`` keyed with the subscription's ``whsec_`` secret
  (base64-decoded).

A 2xx answer delivers it. Anything else — refused connection, timeout, another
status — schedules the next attempt after ``base · 2^(attempt-1)`` seconds
(at most ``cap``), with jitter (a random factor in [0.5, 1]); after
``max_attempts`` attempts it is *dead* (kept, with the last error, for the
operator). A subscription's notifications are delivered in the order they were
derived: a later one waits while an earlier one is pending. A decision change still
pending when its subscription ends (consent withdrawn or expired, cancelled) is
withheld — dead, never sent — since the decision may no longer be disclosed; the
``subscription.ended`` notice is still delivered. Nothing at all is sent once the
relying party's key that subscribed is revoked (withheld too).

Connections go only to addresses the operator allows
(:mod:`trustledger.cascades.egress`: public ones, unless allow-listed), checked when
each connection is opened; a refused address is a failed attempt like any other.
Each sender thread keeps its connections alive (:class:`~trustledger.cascades.egress.Sender`).

Every notification that reaches a final state is also recorded in the ledger about
its subject (:data:`~trustledger.cascades.records.NOTIFIED`), in the same
transaction as its outbox row: the subject's report lists them all. An attempt is
*claimed* first (its next attempt moved past the request's timeout), so two
workers do not send it at the same moment.

The guarantee is **at least once, in order per subscription**: an attempt whose
answer is lost (the receiver crashed after processing it, a timeout) is sent again
with the same ``webhook-id`` and body, so a receiver that de-duplicates by the id
processes each notification exactly once. :meth:`Deliverer.pump` delivers
continuously (the worker's way): up to ``limit`` attempts in flight on the sender
threads, and one short transaction per turn that records what finished and claims
what is due. :meth:`Deliverer.pass_` does one such turn and waits for its attempts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import random
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from trustledger.cascades.derive import CHANGED, DEAD, DELIVERED, PENDING
from trustledger.cascades.egress import Egress, EgressRefusedError, Sender
from trustledger.cascades.records import NOTIFIED
from trustledger.cascades.schema import notifications, subscriptions
from trustledger.cascades.store import secret_key
from trustledger.clock import Clock, system_clock
from trustledger.errors import InputError
from trustledger.ledger.chain import from_us, iso, to_us
from trustledger.principals import Record, ServiceLedger, principals

_n, _s = notifications.c, subscriptions.c
ENDED_WITHHELD = "withheld: the subscription ended before delivery"
"""Why a decision change was not sent: its subscription ended first."""
REVOKED_WITHHELD = "withheld: the relying party's key was revoked"
"""Why a notification was not sent: the key that subscribed was revoked first."""
_SCAN = 1_000
_GATHER_S = 0.02
_GATHER_COUNT = 128


def _claim_query() -> sa.Select[Any]:
    """Due notifications, the first pending of each subscription, oldest first.

    Built once (bound parameters ``now_us`` and ``most``): building a statement costs
    more than running it, and a busy worker claims many times a second.
    """
    earlier = notifications.alias("earlier")
    return (
        sa.select(_n.serial, _n.id, _n.subscription_id, _n.subject, _n.type, _n.cause,
                  _n.body, _n.attempts, _n.next_attempt_us, _n.created_at_us,
                  _s.url, _s.secret, _s.party, _s.purpose, _s.ended_at_us,
                  _s.end_reason, principals.c.revoked_at_us)
        .join(subscriptions, _s.id == _n.subscription_id)
        .join(principals, principals.c.id == _s.principal_id)
        .where(_n.status == PENDING, _n.next_attempt_us <= sa.bindparam("now_us"),
               ~sa.exists().where(earlier.c.subscription_id == _n.subscription_id,
                                  earlier.c.status == PENDING,
                                  earlier.c.serial < _n.serial))
        .order_by(_n.serial).limit(sa.bindparam("most", type_=sa.Integer)))


_CLAIM = _claim_query()
_RECORD = (sa.update(notifications).where(_n.serial == sa.bindparam("b_serial"))
           .values(status=sa.bindparam("b_status"), attempts=sa.bindparam("b_attempts"),
                   next_attempt_us=sa.bindparam("b_next_attempt_us"),
                   last_error=sa.bindparam("b_last_error"),
                   finished_at_us=sa.bindparam("b_finished_at_us")))


def _error_kind(err: Exception) -> str:
    """A failed attempt's kind in words: connecting, or the exchange after it."""
    if isinstance(err, ConnectionRefusedError | socket.gaierror):
        return "ConnectError"
    return type(err).__name__


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value of one attempt: ``v1,`` + base64(HMAC-SHA256)."""
    digest = hmac.new(secret_key(secret), f"{message_id}.{timestamp}.{body}".encode(),
                      hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard delivery tries: attempts, backoff base and cap (s), request timeout (s)."""

    max_attempts: int = 8
    base: float = 1.0
    cap: float = 3600.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        """Refuse values that make no sense, naming the field."""
        if not 1 <= self.max_attempts <= 100:
            raise InputError("max_attempts: from 1 to 100")
        for name in ("base", "cap", "timeout"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name}: must be more than 0 seconds")

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones (with jitter)."""
        exponential = min(self.cap, self.base * 2.0 ** min(attempts - 1, 60))
        return exponential * (0.5 + rng.random() / 2.0)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt: ``ok`` (2xx) or the error in words."""

    serial: int
    ok: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """What one delivery pass did."""

    attempted: int
    delivered: int
    retrying: int
    dead: int


class Deliverer:
    """Sends due notifications from the outbox and records their fate."""

    def __init__(self, ledger: ServiceLedger, *, retry: RetryPolicy | None = None,
                 egress: Egress | None = None, clock: Clock | None = None,
                 rng: random.Random | None = None, concurrency: int = 16) -> None:
        """Deliver from ``ledger``'s outbox to the addresses ``egress`` allows.

        ``egress`` defaults to ``$TRUSTLEDGER_WEBHOOK_ALLOW`` (public addresses only
        when unset); ``clock`` and ``rng`` may be given for tests.
        """
        self.ledger = ledger
        self.retry = retry or RetryPolicy()
        self.clock = clock or system_clock
        self.rng = rng or random.Random()
        self.egress = egress or Egress.from_env()
        self.concurrency = max(1, concurrency)
        # One keep-alive sender per thread: no connection pool shared (and locked)
        # between threads.
        self._local = threading.local()
        self._senders: list[Sender] = []
        self._senders_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency,
                                        thread_name_prefix="cascade-delivery")

    @property
    def sender(self) -> Sender:
        """The calling thread's webhook sender (guarded by :attr:`egress`, keep-alive)."""
        sender: Sender | None = getattr(self._local, "sender", None)
        if sender is None:
            sender = self._local.sender = Sender(self.egress, self.retry.timeout)
            with self._senders_lock:
                self._senders.append(sender)
        return sender

    def close(self) -> None:
        """Stop the sender threads and close their connections."""
        self._pool.shutdown(wait=True)
        with self._senders_lock:
            for sender in self._senders:
                sender.close()
            self._senders.clear()

    def pass_(self, limit: int = 100) -> Delivered:
        """Send every due notification (at most ``limit``, one per subscription), once."""
        now = self.clock()
        claimed = self._claim(to_us(now), limit)
        if not claimed:
            return Delivered(0, 0, 0, 0)
        outcomes = list(self._pool.map(self._send, claimed))
        return self._finish(claimed, outcomes)

    def pump(self, stop: threading.Event, wake: threading.Event, interval: float,
             limit: int = 500) -> int:
        """Deliver continuously until ``stop`` is set; returns how many were delivered.

        Up to ``limit`` attempts are in flight at once on the sender threads. Each
        turn is **one** transaction that records the attempts finished since the
        last turn and claims the next due ones (one per subscription, in order), so a
        slow receiver holds up only its own subscription and the database sees one
        short write per turn, whatever the number of notifications. A turn comes when
        ``wake`` is set (by the derivation: new notifications), when the senders run
        short of work (fewer attempts still running than sender threads), when
        :data:`_GATHER_COUNT` attempts have finished, or :data:`_GATHER_S` after the
        last turn if any finished meanwhile: while the senders are busy, one commit
        records many attempts (what finished is already with its receiver; recording
        it later delays nothing the receiver sees). With nothing in flight and nothing
        due a turn waits ``interval`` s. Attempts still in flight when ``stop`` is set
        are awaited and recorded.
        """
        inflight: dict[int, tuple[Any, Future[Outcome]]] = {}
        delivered = 0
        finishing = [0]  # attempts finished since the last turn (the senders count them)
        concurrency = self.concurrency

        def done_callback(_: Future[Outcome]) -> None:
            finishing[0] += 1
            done = finishing[0]
            if done >= _GATHER_COUNT or len(inflight) - done < concurrency:
                wake.set()  # a turn is worth it: many to record, or senders running short

        last_turn = time.monotonic()
        while True:
            stopping = stop.is_set()
            if stopping:
                for _, future in inflight.values():
                    future.result()
            if inflight and not stopping and not wake.is_set():
                # Busy senders: gather finished attempts for one turn, or look for
                # new due ones now and then.
                waited = time.monotonic() - last_turn
                wait = (_GATHER_S if finishing[0] else interval) - waited
                if wait > 0:
                    wake.wait(wait)
                    continue
            wake.clear()
            finishing[0] = 0
            finished = [(row, future.result()) for row, future in list(inflight.values())
                        if future.done()]
            for row, _ in finished:
                del inflight[row.serial]
            room = 0 if stopping else max(0, limit - len(inflight))
            if not finished and room == 0:
                if stopping:
                    return delivered
                last_turn = time.monotonic()
                continue
            claimed, done = self._turn([row for row, _ in finished],
                                       [outcome for _, outcome in finished], room)
            last_turn = time.monotonic()
            delivered += done.delivered
            if stopping:
                return delivered
            for row in claimed:
                future = self._pool.submit(self._send, row)
                inflight[row.serial] = (row, future)
                future.add_done_callback(done_callback)
            if not inflight:
                wake.wait(interval)

    def next_due(self) -> datetime | None:
        """When the earliest pending notification is due (``None``: none is pending)."""
        with self.ledger.reading() as conn:
            value = conn.execute(sa.select(sa.func.min(_n.next_attempt_us))
                                 .where(_n.status == PENDING)).scalar()
        return None if value is None else from_us(int(value))

    def _claim(self, now_us: int, limit: int) -> list[Any]:

        def work(conn: sa.Connection, _: int) -> tuple[list[Any], list[Record]]:
            return self._claim_in(conn, now_us, limit), []

        return self.ledger.write(work)[0]

    def _claim_in(self, conn: sa.Connection, now_us: int, limit: int) -> list[Any]:
        """Claim up to ``limit`` due notifications, the first pending of each subscription.

        A notification is due when its next attempt has come and no earlier one of its
        subscription is pending (a subscription's notifications go in order): an
        indexed range query on ``(status, next_attempt_us)``, never a scan of every
        pending row. The claim moves the next attempt past the request's timeout.
        """
        lease_us = int((self.retry.timeout + 30.0) * 1e6)
        rows = conn.execute(_CLAIM, {"now_us": now_us, "most": min(limit, _SCAN)}).all()
        # The party's key was revoked: nothing more about the subject reaches it.
        revoked = [r.serial for r in rows if r.revoked_at_us is not None]
        # Consent ended (or the party cancelled) before these went out: a decision
        # is not disclosed without it. The subscription.ended notice still goes.
        ended = [r.serial for r in rows if r.ended_at_us is not None and r.type == CHANGED
                 and r.revoked_at_us is None]
        for serials, why in ((revoked, REVOKED_WITHHELD), (ended, ENDED_WITHHELD)):
            if serials:
                conn.execute(sa.update(notifications).where(_n.serial.in_(serials))
                             .values(status=DEAD, finished_at_us=now_us, last_error=why))
        withheld = {*revoked, *ended}
        chosen = [row for row in rows if row.serial not in withheld]
        if chosen:
            conn.execute(sa.update(notifications)
                         .where(_n.serial.in_([r.serial for r in chosen]))
                         .values(next_attempt_us=now_us + lease_us))
        return chosen

    def _send(self, row: Any) -> Outcome:
        timestamp = int(self.clock().timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": row.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(row.secret, row.id, timestamp, row.body),
            "user-agent": "trustledger-cascades/1",
        }
        try:
            status = self.sender.post(row.url, row.body.encode(), headers)
        except EgressRefusedError as err:
            return Outcome(row.serial, False, f"ConnectError: refused: {err}")
        except TimeoutError:
            return Outcome(row.serial, False, f"timed out after {self.retry.timeout:g} s")
        except (OSError, http.client.HTTPException) as err:
            return Outcome(row.serial, False, f"{_error_kind(err)}: {err}"[:500])
        if 200 <= status < 300:
            return Outcome(row.serial, True, None)
        return Outcome(row.serial, False, f"HTTP {status}")

    def _finish(self, claimed: Sequence[Any], outcomes: Sequence[Outcome]) -> Delivered:
        return self._turn(claimed, outcomes, 0)[1]

    def _turn(self, finished: Sequence[Any], outcomes: Sequence[Outcome],
              room: int) -> tuple[list[Any], Delivered]:
        """One transaction: record ``finished`` attempts, then claim up to ``room`` more."""
        now = self.clock()
        now_us = to_us(now)
        delivered = retrying = dead = 0
        updates: list[dict[str, Any]] = []
        records: list[Record] = []
        for row, outcome in zip(finished, outcomes, strict=True):
            attempts = row.attempts + 1
            if outcome.ok:
                status, next_us = DELIVERED, row.next_attempt_us
                delivered += 1
            elif attempts >= self.retry.max_attempts:
                status, next_us = DEAD, row.next_attempt_us
                dead += 1
            else:
                status = PENDING
                next_us = now_us + int(self.retry.delay(attempts, self.rng) * 1e6)
                retrying += 1
            updates.append({"serial": row.serial, "status": status, "attempts": attempts,
                            "next_attempt_us": next_us, "last_error": outcome.error,
                            "finished_at_us": None if status == PENDING else now_us})
            if status != PENDING:
                records.append(Record(NOTIFIED, {
                    "id": row.id, "subscription": row.subscription_id, "party": row.party,
                    "purpose": row.purpose, "type": row.type, "cause": row.cause,
                    "status": status, "attempts": attempts, "at": iso(now)}, row.subject))

        def work(conn: sa.Connection, _: int) -> tuple[list[Any], list[Record]]:
            if updates:  # one executemany, not a statement per notification
                conn.execute(_RECORD, [{f"b_{k}": v for k, v in values.items()}
                                       for values in updates])
            claimed = self._claim_in(conn, now_us, room) if room > 0 else []
            return claimed, records

        claimed = self.ledger.write(work)[0]
        return claimed, Delivered(len(finished), delivered, retrying, dead)
