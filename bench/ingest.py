"""Ingest benchmark: a deterministic Parquet file of events appended into SQLite and PostgreSQL.

    .venv/bin/python -m bench.ingest                 # 1,000,000 events, 3 runs each
    .venv/bin/python -m bench.ingest --events 200000 --runs 1 --no-postgres

The file comes from :mod:`trustledger.synth` (seeded, so every run reads the same
rows) and is cached under ``bench/out/``. Each run appends the whole file into a
fresh, empty ledger through :func:`trustledger.ledger.ingest_file` — reading,
validating, hashing and committing, exactly what ``trustledger ingest`` does — and
the figure is the median of the runs' events per second. PostgreSQL is a throwaway
server started like the test suite's (``tests/postgres.py``), or the one
``$TRUSTLEDGER_TEST_POSTGRES_URL`` names; it runs with fsync off, SQLite with
``synchronous=FULL``, so the PostgreSQL figure flatters the disk.

Where the time goes (per event, on the 2-core development machine, measured
separately): reading the Parquet columns and building rows 3-4 µs, pydantic
validation into ``EventIn`` 5-8 µs, canonical payload + SHA-256 4 µs, chaining
(header + SHA-256) 2-3 µs, and SQLite itself 8 µs per insert plus 2 µs of commit
(three B-trees: the rows, the ``(source, source_event_id)`` key and the
``(subject, seq)`` index). SQLite alone therefore caps this machine near 100,000
events/s before any Python runs; PostgreSQL spends most of its time in psycopg's
per-row pipelined ``executemany``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from trustledger.ledger import Ledger, ingest_file
from trustledger.synth import Population, write_parquet

OUT = Path(__file__).resolve().parent / "out"
SEED = 20261127


def events_file(events: int, subjects: int) -> Path:
    """The benchmark's Parquet file, generated once per size."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"events-{events}-{subjects}-{SEED}.parquet"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        write_parquet(Population(subjects=subjects, events=events, seed=SEED), partial)
        partial.rename(path)
        print(f"generated {path.name} in {time.perf_counter() - started:.1f}s")
    return path


def run_once(url: str, path: Path) -> tuple[float, float, float]:
    """Ingest ``path`` into the empty ledger at ``url``: (total, read, append) seconds."""
    marks: dict[str, float] = {}

    def progress(phase: str, _done: int) -> None:
        marks.setdefault(phase, time.perf_counter())

    with Ledger.open(url) as ledger:
        started = time.perf_counter()
        report = ingest_file(ledger, path, progress=progress)
        total = time.perf_counter() - started
        if report.appended != ledger.head()[0]:
            raise SystemExit(f"appended {report.appended} but the head is {ledger.head()}")
    appending = marks.get("append", started + total)
    return total, appending - started, started + total - appending


def measure(name: str, fresh_url: Callable[[], str], path: Path, runs: int, events: int) -> float:
    """Median events/s over ``runs`` runs, each into a fresh ledger; prints each run."""
    rates = []
    for run in range(1, runs + 1):
        total, reading, appending = run_once(fresh_url(), path)
        rates.append(events / total)
        print(f"  {name} run {run}: {total:6.2f}s = read+validate {reading:5.2f}s + "
              f"hash+append+commit {appending:5.2f}s -> {events / total:9,.0f} events/s")
    median = statistics.median(rates)
    print(f"{name}: median {median:,.0f} events/s over {runs} run(s)")
    return median


@contextlib.contextmanager
def postgres() -> Iterator[Callable[[], str]]:
    """A function giving a fresh PostgreSQL database URL per call, on a throwaway server."""
    from tests.postgres import create_database, postgres_server

    with postgres_server() as server:
        yield lambda: create_database(server)


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    path = events_file(args.events, args.subjects)
    print(f"{args.events:,} events from {path.name} ({path.stat().st_size / 1e6:.0f} MB), "
          f"Python {platform.python_version()}, {platform.machine()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="tl-bench-") as folder:
        counter = iter(range(1_000_000))
        results["sqlite"] = measure(
            "sqlite", lambda: f"sqlite:///{folder}/ledger-{next(counter)}.db", path, args.runs,
            args.events,
        )
    if not args.no_postgres:
        with postgres() as fresh:
            results["postgresql"] = measure("postgresql", fresh, path, args.runs, args.events)
    print("\nmedian events/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
