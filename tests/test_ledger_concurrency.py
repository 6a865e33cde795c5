"""Several processes at once, and a process killed mid-work, on real SQLite and PostgreSQL.

The children are separate Python processes (``python -c``) appending through the
public API, exactly as separate programs would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from trustledger.ledger import Ledger
from trustledger.ledger.schema import entries

APPENDER = r"""
import json, os, sys, time
from datetime import datetime, timedelta, UTC
from trustledger.ledger import EventIn, Ledger

url, worker, go, batches = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ledger = Ledger.open(url)  # all workers open (and migrate) the new database at once
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)

def event(key, subject, n):
    return EventIn(source="bank-a", source_event_id=key, subject=subject, type="bill_paid",
                   occurred_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=n),
                   attributes={"n": n})

mine, shared = {}, {}
for batch in range(batches):
    keys = [f"w{worker}-b{batch}-{i}" for i in range(5)]
    for key, entry in zip(keys, ledger.append_events(
            [event(k, f"s{batch % 7}", i) for i, k in enumerate(keys)])):
        mine[key] = entry.seq
    single = f"w{worker}-single-{batch}"
    mine[single] = ledger.append_event(event(single, "s1", batch)).seq
    if batch % 2 == 0:
        # Every worker appends the same shared events: exactly one copy each must exist.
        key = f"shared-{batch}"
        shared[key] = ledger.append_event(event(key, "s2", batch)).seq
    if batch % 8 == 0:
        ledger.append_record("consent", {"worker": worker, "batch": batch}, subject="s3")
print(json.dumps({"mine": mine, "shared": shared}))
"""

KILLED = r"""
import sys
from datetime import datetime, UTC
from trustledger.ledger import EventIn, Ledger

ledger = Ledger.open(sys.argv[1])
def event(key):
    return EventIn(source="bank-a", source_event_id=key, subject="alice", type="bill_paid",
                   occurred_at=datetime(2025, 1, 1, tzinfo=UTC), attributes={"k": key})

ledger.append_events([event(f"before-{i}") for i in range(3)])
entry = ledger.append_event(event("acknowledged"))
print(entry.seq, entry.hash, flush=True)
n = 0
while True:  # keep writing, so the kill lands in the middle of a transaction
    n += 1
    ledger.append_events([event(f"after-{n}-{i}") for i in range(50)])
"""

WORKERS = 4
BATCHES = 24


def _run_children(url: str, tmp_path: Path) -> list[dict[str, dict[str, int]]]:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, str(worker), str(go), str(BATCHES)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for worker in range(WORKERS)
    ]
    try:
        for child in children:  # all imported, opened and migrated: start them together
            assert child.stdout is not None
            if child.stdout.readline() != "ready\n":
                _, err = child.communicate(timeout=60)
                pytest.fail(f"an appender died before starting: {err}")
        go.touch()
        results = []
        for child in children:
            out, err = child.communicate(timeout=180)
            assert child.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.communicate()


@pytest.mark.timeout(240)
def test_concurrent_appenders_neither_fork_lose_nor_duplicate(
    empty_database_url: str, tmp_path: Path
) -> None:
    results = _run_children(empty_database_url, tmp_path)

    with Ledger.open(empty_database_url) as ledger:
        report = ledger.verify()
        stored = {(e.source_event_id): e.seq for e in ledger.events()}
        consents = list(ledger.records("consent"))
        stats = ledger.stats()

    per_worker = BATCHES * 5 + BATCHES  # batched events and single events
    shared = len(range(0, BATCHES, 2))
    assert len(stored) == WORKERS * per_worker + shared
    assert len(consents) == WORKERS * len(range(0, BATCHES, 8))
    assert report.entries == stats["entries"] == len(stored) + len(consents)
    # Each worker got back exactly the entries that are stored under its keys.
    for result in results:
        assert len(result["mine"]) == per_worker
        for key, seq in result["mine"].items():
            assert stored[key] == seq
    # Shared events: one copy each, and every worker was handed that same copy.
    for key in (f"shared-{b}" for b in range(0, BATCHES, 2)):
        assert {result["shared"][key] for result in results} == {stored[key]}

    engine = sa.create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            seqs = list(conn.execute(sa.select(entries.c.seq).order_by(entries.c.seq)).scalars())
            prevs = Counter(conn.execute(sa.select(entries.c.prev_hash)).scalars())
    finally:
        engine.dispose()
    assert seqs == list(range(1, report.entries + 1))  # no gaps, no duplicates
    assert max(prevs.values()) == 1  # no fork: no two entries follow the same one


@pytest.mark.timeout(120)
def test_an_acknowledged_append_survives_sigkill(database_url: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, database_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        assert line, child.stderr.read()
    seq, hash_ = line.split()

    with Ledger.open(database_url) as ledger:
        entry = ledger.entry(int(seq))
        assert entry.hash == hash_
        assert entry.payload is not None
        assert entry.payload["source_event_id"] == "acknowledged"
        report = ledger.verify()  # whatever the kill interrupted left no trace in the chain
        assert report.entries >= int(seq)
        keys = [e.source_event_id for e in ledger.events()]
        assert keys[:4] == ["before-0", "before-1", "before-2", "acknowledged"]
        # Whole batches or nothing: an interrupted batch is absent, never half there.
        assert (len(keys) - 4) % 50 == 0
        # The ledger is still writable after the crash.
        assert ledger.append_record("note", {"after": "crash"}).seq == report.entries + 1
