"""Cascades benchmark: notifications delivered per second, and latency from cause to receipt.

    .venv/bin/python bench/cascades.py                      # SQLite, 100 subjects
    .venv/bin/python bench/cascades.py --subjects 200 --trickle 200 --bursts 5
    .venv/bin/python -m bench.cascades --postgres     # a throwaway PostgreSQL server

A ledger with a small policy (one tier threshold) and ``--subjects`` subjects, each
with consent and a subscription of one relying party whose webhook is a real HTTP
server on 127.0.0.1 (the standard library's threading server). The cascades
worker (derive + deliver, 8 sender threads) runs in a background thread exactly as
``trustledger cascades run`` runs it, polling every ``--interval`` s when idle.

* **latency** (``--trickle`` causes, one at a time): an event that moves one
  subject across the threshold is appended; the clock starts when the append has
  committed and stops when the receiver has the notification naming that ledger
  seq. p50 and p99 over the causes.
* **throughput** (``--bursts`` rounds): one event per subject appended in one
  batch; notifications delivered per second from the append to the last receipt.
* **latency at half the throughput** (``--paced`` causes, default one per subject):
  events appended one by one at half the median burst rate (open loop: on schedule,
  not waiting for receipts); p50 and p99 from each commit to its receipt.

Everything is bounded: at most ``--timeout`` s of waiting for any one notification.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from trustledger.cascades import Deliverer, Deriver, Egress, RetryPolicy, Worker, subscribe
from trustledger.ledger import EventIn
from trustledger.principals import Role, ServiceLedger, add_principal
from trustledger.registry import approve_register, propose_register
from trustledger.rights import grant_decision_consent
from trustledger.scoring import publish_policy

REGISTER = """\
register: cascade_bench
title: Cascades benchmark event types
event_types:
  bonus:
    label: bonus
    domain: finance
    category: bill_payment
    gravity: minor
  malus:
    label: malus
    domain: finance
    category: bill_payment
    gravity: minor
  late_fee:
    label: late fee
    domain: finance
    category: bill_payment
    gravity: minor
"""
"""The event types of the benchmark, put in force by two operators before publishing."""

POLICY = """\
policy: cascade_bench
title: Cascades benchmark policy
description: A bonus and a malus move a score across one tier threshold.
effective_from: 2025-01-01
event_types:
  bonus:
    points: 80
    decay: {half_life: P30D}
    expiry: {after: P2Y}
    retention: P3Y
  malus:
    points: -80
    expiry: {after: P1Y}
    retention: P2Y
  late_fee:
    points: -20
    expiry: {after: P1Y}
    retention: P2Y
scorecards:
  trust:
    label: Trust
    events: [bonus, malus, late_fee]
    base: 500
    tiers:
      - {name: low, label: low}
      - {name: high, label: high, min: 550}
measures:
  fast_lane:
    kind: privilege
    label: fast lane
    domain: finance
    condition: "trust.score >= 550.0"
purposes:
  lending:
    label: lending
    description: a lender asks about the fast lane
    domain: finance
    measures: [fast_lane]
    scorecards: [trust]
"""


class Receiver:
    """A webhook endpoint on 127.0.0.1 noting when each cause's notification arrived."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.requests = 0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                now = time.perf_counter()
                cause = orjson.loads(body)["data"]["cause"]["seq"]
                with receiver.cond:
                    receiver.requests += 1
                    receiver.arrived.setdefault(cause, now)
                    receiver.cond.notify_all()
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, seqs: list[int], timeout: float) -> dict[int, float]:
        """Receipt times of the causes ``seqs``; raises if one is missing after ``timeout``."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while not all(s in self.arrived for s in seqs):
                left = deadline - time.perf_counter()
                if left <= 0:
                    missing = [s for s in seqs if s not in self.arrived]
                    raise SystemExit(f"{len(missing)} notification(s) not received in "
                                     f"{timeout:g} s")
                self.cond.wait(left)
            return {s: self.arrived[s] for s in seqs}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def database(url: str | None, postgres: bool) -> Iterator[str]:
    if url is not None:
        yield url
        return
    if postgres:
        # Started like the test suite's (fsync off: the figure flatters the disk).
        from tests.postgres import create_database, postgres_server

        with postgres_server() as server:
            yield create_database(server)
        return
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'ledger.db'}"


def event(n: int, subject: str, kind: str) -> EventIn:
    return EventIn.model_validate({
        "source": "bank", "source_event_id": f"b{n}", "subject": subject, "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(), "attributes": {}})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--trickle", type=int, default=100, help="causes timed one by one")
    parser.add_argument("--bursts", type=int, default=3, help="rounds of one cause per subject")
    parser.add_argument("--paced", type=int, default=None,
                        help="causes appended at half the burst rate (default: --subjects)")
    parser.add_argument("--interval", type=float, default=0.01, help="worker idle poll (s)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL server (tests/postgres.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, database(args.database_url, args.postgres) as url:
        policy = Path(folder) / "policy.yaml"
        policy.write_text(POLICY, encoding="utf-8")
        ledger = ServiceLedger.open(url)
        for operator in ("bench-proposer", "bench-approver"):
            add_principal(ledger, operator, Role.OPERATOR)
        proposal = propose_register(ledger, REGISTER, "bench-proposer")
        approve_register(ledger, proposal.hash, "bench-approver")
        publish_policy(ledger, policy)
        party = add_principal(ledger, "bench-lender", Role.RELYING_PARTY,
                              accreditations=("lending",)).principal
        subjects = [f"s{i:05d}" for i in range(args.subjects)]
        counter = 0
        ledger.append_events([event(i, s, "late_fee") for i, s in enumerate(subjects)])
        counter = len(subjects)
        receiver = Receiver()
        loopback = Egress.parse("127.0.0.1")  # the receiver is on loopback: allowed explicitly
        for s in subjects:
            grant_decision_consent(ledger, s, "bench-lender", "lending")
        started = time.perf_counter()
        for s in subjects:
            subscribe(ledger, party, s, "lending", receiver.url, datetime.now(UTC),
                      egress=loopback)
        setup = time.perf_counter() - started
        high = dict.fromkeys(subjects, False)
        deliverer = Deliverer(ledger, retry=RetryPolicy(timeout=5.0), egress=loopback,
                              concurrency=8)
        worker = Worker(Deriver(ledger), deliverer)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop, args.interval), daemon=True)
        thread.start()

        def flip(subject: str) -> EventIn:
            nonlocal counter
            counter += 1
            kind = "malus" if high[subject] else "bonus"
            high[subject] = not high[subject]
            return event(counter, subject, kind)

        try:
            latencies = []
            for i in range(args.trickle):
                entry = ledger.append_events([flip(subjects[i % len(subjects)])])[0]
                committed = time.perf_counter()
                arrived = receiver.wait([entry.seq], args.timeout)[entry.seq]
                latencies.append(arrived - committed)
            rates = []
            for _ in range(args.bursts):
                begun = time.perf_counter()
                entries = ledger.append_events([flip(s) for s in subjects])
                arrived_at = receiver.wait([e.seq for e in entries], args.timeout)
                rates.append(len(entries) / (max(arrived_at.values()) - begun))
            paced: list[float] = []
            paced_rate = achieved = 0.0
            count = min(args.subjects, args.subjects if args.paced is None else args.paced)
            if rates and count > 0:
                # One cause per subject at most, so no two causes of one subject are
                # told as one change (which would leave a cause without its notice).
                paced_rate = statistics.median(rates) / 2
                sent: dict[int, float] = {}
                begun = time.perf_counter()
                for i in range(count):
                    pause = begun + i / paced_rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    entry = ledger.append_events([flip(subjects[i])])[0]
                    sent[entry.seq] = time.perf_counter()
                achieved = count / max(1e-9, max(sent.values()) - begun)
                arrived_at = receiver.wait(list(sent), args.timeout)
                paced = [arrived_at[seq] - at for seq, at in sent.items()]
        finally:
            stop.set()
            thread.join(timeout=30)
            deliverer.close()
            receiver.close()
            ledger.close()
    backend = url.split(":", 1)[0]
    print(f"cascades on {backend}, {platform.python_implementation()} "
          f"{platform.python_version()}, {args.subjects} subscribed subjects, worker idle "
          f"poll {args.interval * 1000:g} ms, 8 sender threads")
    print(f"subscribe: {args.subjects / setup:,.0f} subscriptions/s")
    if latencies:
        print(f"latency cause→receipt over {len(latencies)} causes: "
              f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms")
    if rates:
        print(f"throughput over {args.bursts} burst(s) of {args.subjects}: "
              f"median {statistics.median(rates):,.0f} notifications/s delivered "
              f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    if paced:
        print(f"latency at half the burst rate ({paced_rate:,.0f}/s asked, {achieved:,.0f}/s "
              f"appended) over {len(paced)} causes: p50 {percentile(paced, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(paced, 0.99) * 1000:.1f} ms, max {max(paced) * 1000:.1f} ms")
    print(f"receiver saw {receiver.requests} request(s) for "
          f"{len(receiver.arrived)} cause(s)")


if __name__ == "__main__":
    main()
