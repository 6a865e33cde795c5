"""The HTTP service under load, on loopback: decisions and event appends, SQLite and PostgreSQL.

    .venv/bin/python bench/service.py                        # SQLite and PostgreSQL
    .venv/bin/python bench/service.py --database sqlite --rate 1500 --duration 20

For each database: a ledger with the demo population (10,000 subjects, 200,000 events,
`policies/sesame.yaml`; the same seed as `make run`) is built and not timed; a relying
party gets the consent of `--consenting` subjects (opted in to the Sesame score) and the
server (`trustledger serve`, `--workers` uvicorn processes) is started on 127.0.0.1. Then:

1. **decisions, cold**: one decision per consenting subject, 16 in flight (each subject's
   first decision loads and evaluates it, and writes its state to `subject_states`);
   **decisions, restart**: the server stopped and started again, the same decisions (each
   subject's first touch reuses the decision stored with its state by the cold phase,
   seconds old and so still fresh: neither events nor state read; bench/state.py
   measures first touches from the stored state itself), and the states' count and
   sizes;
2. **decision capacity**: 64 requests always in flight for `--duration` s (closed loop),
   against trustledger and, alternately, against a **bare FastAPI endpoint** (the ceiling:
   a pydantic body, a small JSON answer, the same uvicorn flags and worker count, the same
   load generator; started by this bench in the same run): `--rounds` rounds of each,
   medians reported, and trustledger's capacity as a ratio of the ceiling's;
3. **decisions at fixed offered rates**: each of `--rates` requests/s for `--duration` s,
   open loop (requests are sent on schedule whatever the answers; latency is measured from
   the scheduled time, so a stall counts against every request it delays; offering stops,
   marked `overloaded`, once 2,000 requests wait), subjects drawn at random from the
   consenting ones; then once more at half the capacity measured in step 2
   (`decisions_half_capacity`), and the bare-FastAPI ceiling at that same rate right after
   (its `ceiling`: what the machine gives any FastAPI endpoint at that rate then);
4. **events, single**: `--single` events, one per request, 16 in flight;
5. **events, batched**: `--batches` batches of `--batch-size` events;
6. **decision reads, in process** (no HTTP): assessments/s under `policies/sesame.yaml`
   by the reference (`scoring.assess`) and by the maintained evaluation (first read:
   builds the history; next reads, a day apart: resume the measures' replay), each
   checked equal to the reference;
7. **score reads, in process** (no HTTP): for the consenting subjects, the service's two
   ways to score a cached subject — the reference assessment (`current_assessment`, what
   decisions use: reasons need it) and the incremental state (`current_scores`: scores,
   tiers, measure states) — under the Sesame policy without its holding time (so every
   measure is stateless and the incremental state answers alone): reads/s of each, the
   first incremental read (which builds the state) and later ones (O(1)); every read's
   scores are checked equal to the reference's;
7b. **gc.freeze()**, one worker: at `--gc-freeze-rate` offered, open loop, alternately
   without and with `gc.freeze()` after warm-up (the server freezes on SIGUSR1, unfreezes
   on SIGUSR2), `--rounds` rounds each, medians of p50/p99;
8. **statistics over the population, in process** (`--statistics`): the operator's
   statistics computation under the same policy — every subject by the reference
   assessment, then by `current_scores` twice: the first run builds every subject's
   incremental state, the second (after 2,000 more events about consenting subjects)
   applies only the new events (states are kept whatever the ledger's size here; the
   service keeps them up to `statistics.KEEP_STATES_UP_TO` events). Each run includes
   reading the whole ledger.

Every decision is access-logged before it is answered (group commit). The load generator
is a minimal HTTP/1.1 client over keep-alive connections on the same 2-core machine, so it
takes CPU from the server: the figures are a floor. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from trustledger.api.pauses import PAUSES_ENV  # noqa: E402
from trustledger.demo import DEMO_POPULATION  # noqa: E402
from trustledger.ledger import ingest_file  # noqa: E402
from trustledger.principals import Record, Role, ServiceLedger, add_principal  # noqa: E402
from trustledger.registry import (  # noqa: E402
    approve_register,
    propose_register,
    register_in_force,
)
from trustledger.rights.consent import GRANTED  # noqa: E402
from trustledger.scoring import publish_policy  # noqa: E402
from trustledger.synth import Population, subject_id, write_parquet  # noqa: E402

HOST = "127.0.0.1"
POLICY = ROOT / "policies" / "sesame.yaml"


# -- a minimal HTTP/1.1 keep-alive client ---------------------------------------------------

class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, key: str, body: bytes) -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        return status, data

    def close(self) -> None:
        self.writer.close()


async def closed_loop(port: int, key: str, path: str, bodies: list[bytes],
                      concurrency: int) -> tuple[float, list[float], dict[int, int]]:
    """Send every body, ``concurrency`` in flight; (seconds, latencies, status counts)."""
    queue = list(reversed(bodies))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker() -> None:
        conn = await Connection.open(port)
        try:
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                status, _ = await conn.request("POST", path, key, body)
                latencies.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, statuses


async def open_loop(port: int, key: str, path: str, make_body: Any, rate: float,
                    duration: float, connections: int, backlog: int = 2_000) -> dict[str, Any]:
    """Offer ``rate`` requests/s for ``duration`` s; latency from each scheduled send time.

    When more than ``backlog`` requests are waiting, the server cannot keep up: offering
    stops there and the result says ``overloaded`` (latency then only grows).
    """
    total = int(rate * duration)
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    tasks: list[asyncio.Task[None]] = []

    async def one(scheduled: float, body: bytes) -> None:
        conn = await free.get()
        try:
            status, _ = await conn.request("POST", path, key, body)
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    overloaded = False
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) - len(latencies) > backlog:
            overloaded = True
            break
        tasks.append(asyncio.create_task(one(scheduled, make_body())))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 120)
    elapsed = time.perf_counter() - start
    while not free.empty():
        free.get_nowait().close()
    latencies.sort()
    return {"offered_per_s": rate, "requests": len(tasks), "seconds": round(elapsed, 2),
            "achieved_per_s": round(len(tasks) / elapsed, 1), "overloaded": overloaded,
            "statuses": statuses,
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
            "max_ms": round(1000 * latencies[-1], 2)}


# -- set-up -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def prepare(url: str, work: Path, population: Population, consenting: int
            ) -> dict[str, str]:
    """The demo population, the policy, principals and consents; returns the keys."""
    with ServiceLedger.open(url) as ledger:
        parquet = work / "population.parquet"
        write_parquet(population, parquet)
        ingest_file(ledger, parquet)
        # The event-type register in force first (proposed and approved by two operators).
        add_principal(ledger, "bench-proposer", Role.OPERATOR)
        add_principal(ledger, "bench-approver", Role.OPERATOR)
        proposal = propose_register(ledger, (POLICY.parent / "register.yaml").read_text(),
                                    "bench-proposer")
        approve_register(ledger, proposal.hash, "bench-approver")
        register = register_in_force(ledger)
        publish_policy(ledger, POLICY)
        party = add_principal(ledger, "bench-party", Role.RELYING_PARTY,
                              accreditations=("rental_deposit",), rate_limit=1_000_000)
        accredited = ("bill_paid", "repayment_on_time")
        source = add_principal(ledger, "bench-source", Role.SOURCE,
                               accreditations=accredited,
                               domains=tuple(sorted({register.domain_of(t) for t in accredited})),
                               rate_limit=1_000_000)
        records = []
        for i in range(consenting):
            s = subject_id(i)
            records.append(Record(GRANTED, {"scope": "scorecard", "scorecard": "sesame"}, s))
            records.append(Record(GRANTED, {"scope": "decision", "party": "bench-party",
                                            "purpose": "rental_deposit"}, s))
        ledger.append_records(records)
    if url.startswith("postgresql"):
        # A freshly bulk-loaded table has no planner statistics until autovacuum gets to
        # it; a server in service has them. Without, a subject's entries are read by a
        # sequential scan of the whole table.
        import sqlalchemy as sa

        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
        engine.dispose()
    return {"party": party.key, "source": source.key}


class Ask(BaseModel):
    """The ceiling's request body (a decision request's shape)."""

    subject: str
    purpose: str


def baseline_app() -> Any:
    """The ceiling: a bare FastAPI endpoint with a pydantic body and a small JSON answer."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/decisions")
    def decide(ask: Ask) -> dict[str, Any]:
        return {"subject": ask.subject, "purpose": ask.purpose, "in_force": True}

    return app


def serve_baseline(port: int, workers: int) -> None:
    """Run :func:`baseline_app` with the uvicorn flags ``trustledger serve`` uses."""
    import uvicorn

    uvicorn.run("bench.service:baseline_app", factory=True, host=HOST, port=port,
                workers=workers, access_log=False, timeout_keep_alive=5, server_header=False,
                log_level="warning")


# `trustledger serve` with two signal handlers for the GC experiment (one worker: uvicorn
# serves in this process): SIGUSR1 collects and freezes every object alive (gc.freeze:
# the warmed-up caches leave the collector's generations, so a gen-2 pass no longer walks
# them), SIGUSR2 unfreezes.
_SERVE_WITH_GC_SIGNALS = """
import gc, signal, sys
signal.signal(signal.SIGUSR1, lambda *_: (gc.collect(), gc.freeze()))
signal.signal(signal.SIGUSR2, lambda *_: gc.unfreeze())
from trustledger.cli import main
sys.argv = ["trustledger", *sys.argv[1:]]
main()
"""


@contextmanager
def server(url: str, port: int, work: Path, workers: int, *,
           baseline: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    # A PYTHONPATH given to the bench comes first (an A/B run against a copy of the source).
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    env = {**os.environ, "TRUSTLEDGER_DATA": str(work), "TRUSTLEDGER_MAX_IN_FLIGHT": "1000",
           "PYTHONPATH": path, PAUSES_ENV: str(work / "pauses")}
    command = [sys.executable, "-c", _SERVE_WITH_GC_SIGNALS, "serve", "--host", HOST,
               "--port", str(port), "--database-url", url, "--workers", str(workers)]
    if baseline:
        command = [sys.executable, str(ROOT / "bench" / "service.py"), "--serve-baseline",
                   str(port), "--workers", str(workers)]
    log = (work / ("baseline.log" if baseline else "server.log")).open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"server did not start; see {work / 'server.log'}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


async def capacity(port: int, key: str, path: str, make_body: Any, seconds: float,
                   connections: int) -> dict[str, Any]:
    """Closed loop: ``connections`` requests always in flight for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        conn = await Connection.open(port)
        try:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                status, _ = await conn.request("POST", path, key, make_body())
                latencies.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"connections": connections, "requests": len(latencies),
            "per_s": round(len(latencies) / elapsed, 1), "statuses": statuses,
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2)}


def ceiling_ratio(port: int, key: str, decision_body: Any, args: argparse.Namespace,
                  work: Path) -> dict[str, Any]:
    """Decision capacity and the bare-FastAPI ceiling's, alternating rounds; medians, ratio."""
    ceiling_port = free_port()
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with server("", ceiling_port, work, args.workers, baseline=True):
        for _ in range(args.rounds):
            theirs.append(asyncio.run(capacity(ceiling_port, key, "/v1/decisions",
                                               decision_body, args.duration, 64)))
            ours.append(asyncio.run(capacity(port, key, "/v1/decisions", decision_body,
                                             args.duration, 64)))

    if any(set(r["statuses"]) != {200} for r in theirs):
        raise RuntimeError(f"the ceiling's endpoint did not answer 200: {theirs}")

    def median(runs: list[dict[str, Any]], name: str) -> float:
        return float(statistics.median(r[name] for r in runs))

    per_s, ceiling = median(ours, "per_s"), median(theirs, "per_s")
    return {"rounds": args.rounds, "per_s": per_s, "p50_ms": median(ours, "p50_ms"),
            "p99_ms": median(ours, "p99_ms"), "ceiling_per_s": ceiling,
            "ceiling_p99_ms": median(theirs, "p99_ms"),
            "ratio_to_ceiling": round(per_s / ceiling, 3), "runs": ours, "ceiling_runs": theirs}


def run(database: str, url: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    population = Population(subjects=args.subjects, events=args.events,
                            seed=DEMO_POPULATION.seed)
    t = time.perf_counter()
    keys = prepare(url, work, population, args.consenting)
    print(f"[{database}] ledger ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    port = free_port()
    result: dict[str, Any] = {"database": database}
    rng = random.Random(7)
    subjects = [subject_id(i) for i in range(args.consenting)]

    def decision_body() -> bytes:
        return json.dumps({"subject": rng.choice(subjects),
                           "purpose": "rental_deposit"}).encode()

    bodies = [json.dumps({"subject": s, "purpose": "rental_deposit"}).encode()
              for s in subjects] * args.workers  # each worker process has its own cache

    def cold() -> dict[str, Any]:
        seconds, lat, statuses = asyncio.run(closed_loop(port, keys["party"], "/v1/decisions",
                                                         bodies, 16))
        return {"requests": len(bodies), "seconds": round(seconds, 2),
                "per_s": round(len(bodies) / seconds, 1),
                "p50_ms": round(1000 * statistics.median(lat), 2), "statuses": statuses}

    # First touch with no stored states: every subject built from its events (its state
    # written behind the answer). The server is then stopped and started again: the
    # first touch after the restart reads the stored states (events unread).
    with server(url, port, work, args.workers):
        result["decisions_cold"] = cold()
    result["stored_states"] = stored_states(url)
    with server(url, port, work, args.workers) as proc:
        result["decisions_restart"] = cold()
        result["decisions_capacity"] = ceiling_ratio(
            port, keys["party"], decision_body, args, work)
        warm = result["decisions_capacity"]["per_s"]
        for name in ("decisions_cold", "decisions_restart"):
            result[name]["ratio_to_warm"] = round(result[name]["per_s"] / warm, 3)
        result["decisions"] = [offered(port, keys["party"], decision_body, rate, args, work)
                               for rate in args.rates]
        # The latency figure: open loop at half the capacity just measured; then
        # the bare-FastAPI ceiling at the same offered rate (what this machine gives any
        # FastAPI service at that rate, in the same minute).
        half = round(warm / 2)
        result["decisions_half_capacity"] = offered(port, keys["party"], decision_body,
                                                    half, args, work)
        result["decisions_half_capacity"]["ceiling"] = ceiling_offered(
            keys["party"], decision_body, half, args, work)
        if args.gc_freeze_rate and args.workers == 1:
            result["gc_freeze"] = gc_freeze(proc, port, keys["party"], decision_body, args)
        base = datetime(2026, 6, 1, tzinfo=UTC)

        def event(i: int, tag: str) -> dict[str, Any]:
            return {"source_event_id": f"bench-{tag}-{i}", "subject": subjects[i % len(subjects)],
                    "type": "bill_paid", "occurred_at": (base + timedelta(seconds=i)).isoformat()}

        singles = [json.dumps(event(i, "single")).encode() for i in range(args.single)]
        if singles:
            seconds, lat, statuses = asyncio.run(closed_loop(port, keys["source"],
                                                             "/v1/events", singles, 16))
            result["events_single"] = {"events": len(singles), "seconds": round(seconds, 2),
                                       "per_s": round(len(singles) / seconds, 1),
                                       "p50_ms": round(1000 * statistics.median(lat), 2),
                                       "statuses": statuses}
        batches = [json.dumps({"events": [event(b * args.batch_size + i, "batch")
                                          for i in range(args.batch_size)]}).encode()
                   for b in range(args.batches)]
        if batches:
            seconds, lat, statuses = asyncio.run(closed_loop(port, keys["source"],
                                                             "/v1/events/batch", batches, 1))
            events = args.batches * args.batch_size
            result["events_batched"] = {"events": events, "batch_size": args.batch_size,
                                        "seconds": round(seconds, 2),
                                        "per_s": round(events / seconds, 1),
                                        "p50_batch_ms": round(1000 * statistics.median(lat), 1),
                                        "statuses": statuses}
    return result


def pauses(work: Path, start: float, end: float) -> dict[str, Any]:
    """What stalled the server's processes between ``start`` and ``end`` (wall clock).

    Read from the records the server writes when ``TRUSTLEDGER_PAUSES`` is set
    (:mod:`trustledger.api.pauses`), every worker process together: garbage collections
    (count and milliseconds per generation; each generation-2 one), event-loop stalls
    (and how many of them overlap a generation-2 collection, an access-log commit of
    10 ms or more, a WAL checkpoint), the access log's group commits, WAL checkpoints.
    """
    time.sleep(1.0)  # the server appends its records every half second
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((work / "pauses").glob("pauses-*.jsonl")):
        for line in path.read_text().splitlines():
            item = json.loads(line)
            if start <= item["t"] <= end:
                found.setdefault(item["kind"], []).append(item)
    counts, gc_ms, collected = [0, 0, 0], [0.0, 0.0, 0.0], [0, 0, 0]
    for item in found.get("gc-counts", []):
        for gen in range(3):
            counts[gen] += item["counts"][gen]
            gc_ms[gen] += item["ms"][gen]
            collected[gen] += item["collected"][gen]
    full = sorted((g for g in found.get("gc", []) if g["gen"] == 2), key=lambda g: g["t"])
    commits = sorted(c["ms"] for c in found.get("commit", []))
    checkpoints = found.get("checkpoint", [])
    stalls = found.get("stall", [])

    def overlapping(stall: dict[str, Any], others: list[dict[str, Any]]) -> bool:
        return any(o["t"] < stall["t"] + stall["ms"] / 1000 and stall["t"] < o["t"]
                   + o["ms"] / 1000 for o in others)

    slow_commits = [c for c in found.get("commit", []) if c["ms"] >= 10]

    def quantile(values: list[float], q: float) -> float | None:
        return round(values[min(len(values) - 1, int(len(values) * q))], 2) if values else None

    return {
        "seconds": round(end - start, 1),
        "gc": {"collections": counts, "ms": [round(m, 1) for m in gc_ms],
               "collected": collected, "gen2_ms": [round(g["ms"], 1) for g in full],
               "gen2_threads": sorted({g["thread"] for g in full}),
               "slowest_young_ms": max((g["ms"] for g in found.get("gc", [])
                                        if g["gen"] < 2), default=0.0)},
        "stalls": {"count": len(stalls), "ms": round(sum(x["ms"] for x in stalls), 1),
                   "max_ms": max((x["ms"] for x in stalls), default=0.0),
                   "during_gen2": sum(overlapping(x, full) for x in stalls),
                   "during_slow_commit": sum(overlapping(x, slow_commits) for x in stalls),
                   "during_checkpoint": sum(overlapping(x, checkpoints) for x in stalls)},
        "commits": {"count": len(commits),
                    "records": sum(c["records"] for c in found.get("commit", [])),
                    "p50_ms": quantile(commits, 0.5), "p99_ms": quantile(commits, 0.99),
                    "max_ms": commits[-1] if commits else None,
                    "over_10_ms": len(slow_commits)},
        "checkpoints": {"count": len(checkpoints),
                        "ms": round(sum(c["ms"] for c in checkpoints), 1),
                        "max_ms": max((c["ms"] for c in checkpoints), default=0.0),
                        "pages": sum(c.get("pages", 0) for c in checkpoints)},
    }


def ceiling_offered(key: str, make_body: Any, rate: float, args: argparse.Namespace,
                    work: Path) -> dict[str, Any]:
    """:func:`open_loop` at ``rate`` against the bare-FastAPI ceiling (started for it)."""
    ceiling_port = free_port()
    with server("", ceiling_port, work, args.workers, baseline=True):
        return asyncio.run(open_loop(ceiling_port, key, "/v1/decisions", make_body, rate,
                                     args.duration, args.connections))


def offered(port: int, key: str, make_body: Any, rate: float, args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    """:func:`open_loop` at ``rate`` on the decisions, with the server's pauses meanwhile."""
    start = time.time()
    result = asyncio.run(open_loop(port, key, "/v1/decisions", make_body, rate,
                                   args.duration, args.connections))
    result["pauses"] = pauses(work, start, time.time())
    return result


def stored_states(url: str) -> dict[str, Any]:
    """How many subject states the server wrote, and their sizes in bytes."""
    import sqlalchemy as sa

    from trustledger.ledger.schema import subject_states

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            lengths = sorted(len(bytes(x)) for (x,) in conn.execute(
                sa.select(subject_states.c.state)))
    finally:
        engine.dispose()
    if not lengths:
        return {"states": 0}
    return {"states": len(lengths), "median_bytes": statistics.median(lengths),
            "max_bytes": lengths[-1]}


def gc_freeze(proc: subprocess.Popen[bytes], port: int, key: str, decision_body: Any,
              args: argparse.Namespace) -> dict[str, Any]:
    """p50/p99 at one offered rate without and with ``gc.freeze()``, alternating, same run.

    The server (one worker) freezes on SIGUSR1 and unfreezes on SIGUSR2; each setting is
    measured ``--rounds`` times in turn, medians reported.
    """
    import signal

    runs: dict[str, list[dict[str, Any]]] = {"unfrozen": [], "frozen": []}
    for _ in range(args.rounds):
        for name, sig in (("unfrozen", signal.SIGUSR2), ("frozen", signal.SIGUSR1)):
            proc.send_signal(sig)
            time.sleep(1.0)
            runs[name].append(asyncio.run(open_loop(
                port, key, "/v1/decisions", decision_body, args.gc_freeze_rate,
                args.duration, args.connections)))
    proc.send_signal(signal.SIGUSR2)
    out: dict[str, Any] = {"offered_per_s": args.gc_freeze_rate, "rounds": args.rounds}
    for name, found in runs.items():
        out[name] = {m: statistics.median(r[m] for r in found)
                     for m in ("achieved_per_s", "p50_ms", "p99_ms", "max_ms")}
        out[name]["runs"] = [{m: r[m] for m in ("p50_ms", "p99_ms", "overloaded")}
                             for r in found]
    return out


@contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'ledger.db'}"
        return
    from tests.postgres import create_database, postgres_server

    with postgres_server() as server_url:
        yield create_database(server_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--subjects", type=int, default=DEMO_POPULATION.subjects)
    parser.add_argument("--events", type=int, default=DEMO_POPULATION.events)
    parser.add_argument("--consenting", type=int, default=2_000)
    parser.add_argument("--rates", type=lambda text: [float(x) for x in text.split(",")],
                        default=[250.0, 500.0, 1_000.0, 1_500.0],
                        help="offered decision rates, requests/s, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="capacity rounds against trustledger and the bare-FastAPI ceiling")
    parser.add_argument("--serve-baseline", type=int, metavar="PORT",
                        help=argparse.SUPPRESS)  # the ceiling's server process
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--gc-freeze-rate", type=float, default=400.0,
                        help="offered rate of the gc.freeze() A/B (0: skip; one worker only)")
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "service.json")
    args = parser.parse_args()
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline, args.workers)
        return
    command = "python bench/service.py " + shlex.join(sys.argv[1:])
    results = []
    for kind in (["sqlite", "postgres"] if args.database == "both" else [args.database]):
        work = Path(tempfile.mkdtemp(prefix=f"tl-bench-{kind}-"))
        try:
            with database(kind, work) as url:
                results.append(run(kind, url, args, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(results[-1], indent=2))
    report = {"command": command.strip(), "machine": f"{platform.machine()}, "
              f"{os.cpu_count()} cores, Python {platform.python_version()}", "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
