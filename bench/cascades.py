"""Cascades benchmark: notifications derived and delivered per second, and event-to-receipt latency.

    .venv/bin/python bench/cascades.py                       # SQLite, 1,000 subscribed subjects
    .venv/bin/python bench/cascades.py --subjects 300 --bursts 5 --paced-rate 500
    .venv/bin/python -m bench.cascades --postgres      # a throwaway PostgreSQL server

A ledger with a small policy (one tier threshold) and ``--subjects`` subjects, each
with consent and a subscription of one relying party. The webhook receiver is a
real HTTP server on 127.0.0.1 in **its own process** (the standard library's
threading server, keep-alive), as a relying party's service would be: it checks
each signature, de-duplicates by ``webhook-id`` and reports every request (id,
cause, time) to the bench over a pipe. The cascades worker runs in a background
thread of the bench process, as ``trustledger serve --cascades`` runs it.

Phases (one run; every figure is printed with what it measures):

* **latency, one at a time** (``--trickle``): an event is appended (one
  transaction), the clock starts at its commit and stops when the receiver has the
  notification naming that ledger seq;
* **throughput** (``--bursts`` rounds): one event per subject appended in one batch;
  notifications derived and delivered per second, from the start of the append to
  the last receipt; the median of the rounds;
* **latency at a steady rate** (open loop, ``--paced-rate``, default half the median
  burst rate): events *arrive* on schedule, one per subject, and the source appends
  what has arrived in one batch each time it is free (``--paced-batch 0``, as a
  source posting to the batch endpoint does), or one event per transaction
  (``--paced-batch 1``); latency from each event's **scheduled arrival** to its
  receipt, so the append's own wait is counted, never hidden;
* **receiver failure** (``--outage`` s): a burst is appended and the receiver process
  is killed (SIGKILL) while it is being delivered, then started again on the same
  port; every cause must be received (none lost), duplicates (a request the receiver
  processed but whose answer was lost) are counted and de-duplicated by id, and the
  outbox must hold exactly one delivered notification per cause.

Everything is bounded: at most ``--timeout`` s of waiting for any one phase.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from trustledger.ledger import EventIn

SECRET = "whsec_" + base64.b64encode(b"cascades-bench-secret-32-bytes!!").decode()
"""Every bench subscription signs with this secret, so the receiver can check each request."""

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




def serve_receiver(port: int, secret: str) -> None:
    """The receiver process: answer 204, report ``id seq time verified`` per request."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    out = sys.stdout
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            now = time.perf_counter()
            msg_id = self.headers["webhook-id"]
            signed = f"{msg_id}.{self.headers['webhook-timestamp']}.".encode() + body
            expected = "v1," + base64.b64encode(
                hmac.new(key, signed, hashlib.sha256).digest()).decode()
            verified = hmac.compare_digest(expected, self.headers["webhook-signature"])
            cause = orjson.loads(body)["data"]["cause"]["seq"]
            with lock:
                out.write(f"{msg_id} {cause} {now:.6f} {int(verified)}\n")
                out.flush()
            self.send_response(204 if verified else 401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    out.write(f"{server.server_address[1]}\n")
    out.flush()
    server.serve_forever()


class Receiver:
    """The receiver process seen from the bench: what arrived, when, how often."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}   # webhook-id -> first receipt
        self.by_seq: dict[int, float] = {}  # cause seq -> first receipt
        self.ids_by_seq: dict[int, set[str]] = {}
        self.requests = 0
        self.forged = 0
        self.cond = threading.Condition()
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Start the process (on the same port as before, after the first time)."""
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-receiver",
             "--receiver-port", str(self.port)],
            stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,),
                                        daemon=True)
        self._reader.start()

    def kill(self) -> None:
        """SIGKILL the process (requests in flight lose their answers)."""
        assert self.process is not None and self._reader is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._reader.join()

    def _read(self, stream: Any) -> None:
        for line in stream:
            msg_id, seq, at, verified = line.split()
            with self.cond:
                self.requests += 1
                self.forged += verified != "1"
                if msg_id not in self.first:
                    self.first[msg_id] = float(at)
                    if seq != "None":
                        self.by_seq.setdefault(int(seq), float(at))
                        self.ids_by_seq.setdefault(int(seq), set()).add(msg_id)
                self.cond.notify_all()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, seqs: list[int], timeout: float) -> dict[int, float]:
        """Receipt times of the causes ``seqs``; raises if one is missing after ``timeout``."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while not all(s in self.by_seq for s in seqs):
                left = deadline - time.perf_counter()
                if left <= 0:
                    missing = [s for s in seqs if s not in self.by_seq]
                    raise SystemExit(f"LOST: {len(missing)} notification(s) not received in "
                                     f"{timeout:g} s")
                self.cond.wait(left)
            return {s: self.by_seq[s] for s in seqs}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


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
    from trustledger.ledger import EventIn

    return EventIn.model_validate({
        "source": "bank", "source_event_id": f"b{n}", "subject": subject, "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(), "attributes": {}})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(values, 0.99) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def profile_worker(worker: Any, path: str) -> None:
    """cProfile (CPU time) of each worker thread (derive, deliver, senders): ``path.<thread>``."""
    import atexit
    import cProfile

    profiles: dict[str, cProfile.Profile] = {}

    def wrap(owner: Any, name: str) -> None:
        inner = getattr(owner, name)

        def profiled(*a: Any, **k: Any) -> Any:
            thread = threading.current_thread().name
            prof = profiles.setdefault(thread, cProfile.Profile(time.thread_time))
            return prof.runcall(inner, *a, **k)

        setattr(owner, name, profiled)

    wrap(worker.deriver, "run")
    wrap(worker.deliverer, "pump")
    wrap(worker.deliverer, "_send")

    def dump() -> None:
        for thread, prof in profiles.items():
            prof.dump_stats(f"{path}.{thread}")

    atexit.register(dump)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--trickle", type=int, default=100, help="causes timed one by one")
    parser.add_argument("--bursts", type=int, default=3, help="rounds of one cause per subject")
    parser.add_argument("--paced-rate", type=float, default=None,
                        help="events/s arriving in the open-loop phase (default: half the "
                             "median burst rate; 0 skips the phase)")
    parser.add_argument("--paced-batch", type=int, default=0, choices=(0, 1),
                        help="0: append what has arrived in one batch; 1: one per transaction")
    parser.add_argument("--outage", type=float, default=1.0,
                        help="seconds the receiver stays down in the failure phase (0 skips)")
    parser.add_argument("--interval", type=float, default=0.01, help="worker idle poll (s)")
    parser.add_argument("--senders", type=int, default=16, help="concurrent HTTP requests")
    parser.add_argument("--worker", choices=("thread", "process", "split"), default="thread",
                        help="thread: in the bench process (as serve --cascades); process: "
                             "`trustledger cascades run`; split: one process deriving, one "
                             "delivering (--only)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL server (tests/postgres.py)")
    parser.add_argument("--profile", default=None,
                        help="write the worker threads' cProfile stats to PATH.<thread>")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--receiver-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.receiver_port, SECRET)
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    import sqlalchemy as sa

    from trustledger.cascades import Deliverer, Deriver, Egress, RetryPolicy, Worker, subscribe
    from trustledger.cascades.schema import notifications
    from trustledger.principals import Role, ServiceLedger, add_principal
    from trustledger.registry import approve_register, propose_register
    from trustledger.rights import grant_decision_consent
    from trustledger.scoring import publish_policy

    out: list[str] = []

    def say(line: str) -> None:
        out.append(line)
        print(line, flush=True)

    receiver = Receiver()
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
        ledger.append_events([event(i, s, "late_fee") for i, s in enumerate(subjects)])
        counter = len(subjects)
        loopback = Egress.parse("127.0.0.1")  # the receiver is on loopback: allowed explicitly
        for s in subjects:
            grant_decision_consent(ledger, s, "bench-lender", "lending")
        started = time.perf_counter()
        for s in subjects:
            subscribe(ledger, party, s, "lending", receiver.url, datetime.now(UTC),
                      egress=loopback, secret=SECRET)
        setup = time.perf_counter() - started
        backend = url.split(":", 1)[0]
        say(f"cascades on {backend}, {platform.python_implementation()} "
            f"{platform.python_version()}, {args.subjects} subscribed subjects, worker idle "
            f"poll {args.interval * 1000:g} ms, {args.senders} concurrent requests, worker: "
            f"{args.worker}, receiver in its own process; {load()}")
        say(f"subscribe: {args.subjects / setup:,.0f} subscriptions/s")
        high = dict.fromkeys(subjects, False)

        def flip(subject: str) -> EventIn:
            nonlocal counter
            counter += 1
            kind = "malus" if high[subject] else "bonus"
            high[subject] = not high[subject]
            return event(counter, subject, kind)

        retry = RetryPolicy(timeout=5.0, base=0.05, cap=0.5, max_attempts=100)
        deliverer = Deliverer(ledger, retry=retry, egress=loopback, concurrency=args.senders)
        worker = Worker(Deriver(ledger), deliverer)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop, args.interval), daemon=True)
        processes: list[subprocess.Popen[bytes]] = []
        if args.worker == "thread":
            if args.profile:
                profile_worker(worker, args.profile)
            thread.start()
        else:
            command = [str(Path(sys.executable).parent / "trustledger"), "cascades", "run",
                       "--database-url", url, "--interval", str(args.interval),
                       "--backoff", "0.05", "--timeout", "5", "--max-attempts", "100",
                       "--senders", str(args.senders)]
            env = {**os.environ, "TRUSTLEDGER_WEBHOOK_ALLOW": "127.0.0.1"}
            for only in (["derive", "deliver"] if args.worker == "split" else [None]):
                processes.append(subprocess.Popen(
                    command + ([] if only is None else ["--only", only]), env=env,
                    stdout=subprocess.DEVNULL))
        # Warm up (imports, connections): one cause, not timed.
        warm = ledger.append_events([flip(subjects[0])])[0]
        receiver.wait([warm.seq], args.timeout)

        try:
            latencies = []
            for i in range(args.trickle):
                entry = ledger.append_events([flip(subjects[i % len(subjects)])])[0]
                committed = time.perf_counter()
                arrived = receiver.wait([entry.seq], args.timeout)[entry.seq]
                latencies.append(arrived - committed)
            if latencies:
                say(f"latency, one cause at a time (commit→receipt) over {len(latencies)} "
                    f"causes: {ms(latencies)}; {load()}")
            rates = []
            cpu = time.process_time()
            for _ in range(args.bursts):
                begun = time.perf_counter()
                entries = ledger.append_events([flip(s) for s in subjects])
                arrived_at = receiver.wait([e.seq for e in entries], args.timeout)
                rates.append(len(entries) / (max(arrived_at.values()) - begun))
            if rates:
                cpu_ms = (time.process_time() - cpu) * 1000 / (args.bursts * args.subjects)
                say(f"throughput, {args.bursts} burst(s) of {args.subjects} (append start→last "
                    f"receipt): median {statistics.median(rates):,.0f} notifications/s derived "
                    f"and delivered (each: {', '.join(f'{r:,.0f}' for r in rates)}); CPU of the "
                    f"bench process (appends{', worker' if args.worker == 'thread' else ''}) "
                    f"{cpu_ms:.2f} ms per notification; {load()}")
            rate = args.paced_rate
            if rate is None:
                rate = statistics.median(rates) / 2 if rates else 0.0
            if rate > 0:
                # One cause per subject, so no two causes of one subject are told as one change.
                count = len(subjects)
                scheduled: dict[int, float] = {}
                committed_at: dict[int, float] = {}
                batches = 0
                begun = time.perf_counter()
                i = 0
                while i < count:
                    now = time.perf_counter()
                    due = min(count, int((now - begun) * rate) + 1)
                    if args.paced_batch == 1:
                        due = min(due, i + 1)
                    if due <= i:
                        time.sleep(max(0.0, begun + i / rate - now))
                        continue
                    entries = ledger.append_events([flip(subjects[k]) for k in range(i, due)])
                    done = time.perf_counter()
                    batches += 1
                    for k, entry in zip(range(i, due), entries, strict=True):
                        scheduled[entry.seq] = begun + k / rate
                        committed_at[entry.seq] = done
                    i = due
                achieved = count / max(1e-9, time.perf_counter() - begun)
                arrived_at = receiver.wait(list(scheduled), args.timeout)
                paced = [arrived_at[s] - at for s, at in scheduled.items()]
                from_commit = [arrived_at[s] - at for s, at in committed_at.items()]
                how = ("one per transaction" if args.paced_batch == 1
                       else f"in {batches} batches of what had arrived")
                say(f"open loop at {rate:,.0f} events/s asked ({achieved:,.0f}/s appended, "
                    f"{how}) over {count} causes: arrival→receipt {ms(paced)}; "
                    f"commit→receipt {ms(from_commit)}; {load()}")
            if args.outage > 0:
                requests_before, ids_before = receiver.requests, len(receiver.first)
                begun = time.perf_counter()
                entries = ledger.append_events([flip(s) for s in subjects])
                while receiver.requests - requests_before < len(subjects) // 5:
                    time.sleep(0.001)
                receiver.kill()
                seen_before_kill = receiver.requests - requests_before
                time.sleep(args.outage)
                receiver.start()
                seqs = [e.seq for e in entries]
                receiver.wait(seqs, args.timeout)
                took = time.perf_counter() - begun
                requests = receiver.requests - requests_before
                unique = len(receiver.first) - ids_before
                per_cause = [len(receiver.ids_by_seq[s]) for s in seqs]
                settled = time.perf_counter() + args.timeout
                while True:  # the receipts are in; their outcomes are recorded just after
                    with ledger.reading() as conn:
                        states = dict(conn.execute(
                            sa.select(notifications.c.status, sa.func.count())
                            .where(notifications.c.cause_seq.in_(seqs))
                            .group_by(notifications.c.status)).all())
                    if states.get("pending", 0) == 0 or time.perf_counter() > settled:
                        break
                    time.sleep(0.01)
                lost = len(seqs) - sum(1 for s in seqs if s in receiver.by_seq)
                say(f"receiver killed after {seen_before_kill} of {len(seqs)} requests, down "
                    f"{args.outage:g} s, started again: all received in {took:.2f} s; "
                    f"lost {lost}; {requests} requests for {unique} notification ids "
                    f"({requests - unique} duplicate(s), same id, de-duplicated by the "
                    f"receiver); ids per cause: max {max(per_cause)}; outbox {states}; "
                    f"forged {receiver.forged}")
                if lost or max(per_cause) != 1 or states != {"delivered": len(seqs)}:
                    raise SystemExit("FAILED: a cause lost or told twice")
        finally:
            stop.set()
            if thread.is_alive():
                thread.join(timeout=30)
            for process in processes:
                process.terminate()
                process.wait(timeout=60)
            deliverer.close()
            receiver.close()
            ledger.close()
    say(f"receiver saw {receiver.requests} request(s) for {len(receiver.first)} "
        f"notification(s); signatures failing: {receiver.forged}")


if __name__ == "__main__":
    main()
