"""Operator statistics: warm over the demo population, and 1,000,000 subjects columnar.

    .venv/bin/python bench/operator_statistics.py                      # both parts
    .venv/bin/python bench/operator_statistics.py --part demo --ledger /tmp/demo.db
    .venv/bin/python bench/operator_statistics.py --part columnar --opt-in-share 0.02

**demo** — the ledger ``make run`` builds (:func:`trustledger.api.serve.prepare_demo`:
10,000 subjects, 200,000 events, ``policies/sesame.yaml``, 2,000 opted in), built in a
temporary folder unless ``--ledger`` names one; ``trustledger serve`` on it in its own
process; over HTTP:

* **cold**: ``GET /v1/statistics`` from the start, asked again every second until 200,
  each 202's ``done``/``total``/``retry_after`` printed, and whether the ``retry_after``
  promised came true (the answer was ready by then, or more subjects were scored);
* **warm**, ``--rounds`` times (median): a source appends one event (``POST
  /v1/events``, a subject who opted in), then the time from asking for the statistics
  until an answer that counts that event (``ledger_seq`` at least the event's, not
  ``stale``), and the CPU time the server process used meanwhile (a figure the other
  processes of a shared machine disturb less than the wall time). A cache hit for an
  unchanged ledger is not this figure.

**columnar** — the sesame profile of the synthetic population at 1,000,000 subjects
(20,000,000 events, generated once into ``bench/out``), the first ``--opt-in-share``
opted in: the service's columnar path (:func:`trustledger.api.statistics.columnar_table`,
the batch job on DuckDB, then the subjects whose measures have a history one by one),
with its :class:`~trustledger.api.statistics.Progress` sampled every
``--sample-every`` seconds: stage, subjects done, the seconds left it estimates, the
``retry_after`` a 202 would carry; at the end each estimate is set against the time it
really took.

Every figure is printed with the load average (``os.getloadavg``) before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on the path, and this file's name is the
# standard library's ``statistics`` (which trustledger imports): take the folder out.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
POLICY = ROOT / "policies" / "sesame.yaml"


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# -- demo: the service over HTTP --------------------------------------------------------------

def call(port: int, method: str, path: str, key: str, body: Any = None
         ) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@contextmanager
def server(url: str, port: int, work: Path) -> Any:
    # A PYTHONPATH given to the bench comes first (an A/B run against a copy of the source).
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    env = {**os.environ, "TRUSTLEDGER_DATA": str(work), "PYTHONPATH": path}
    command = [sys.executable, "-c", "from trustledger.cli import main; import sys; "
               "sys.argv = ['trustledger', *sys.argv[1:]]; main()",
               "serve", "--host", HOST, "--port", str(port), "--database-url", url]
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=1)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"server did not start; see {work / 'server.log'}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def demo(args: argparse.Namespace) -> None:
    from trustledger.api.serve import prepare_demo
    from trustledger.synth import subject_id

    with tempfile.TemporaryDirectory(prefix="bench-statistics-") as scratch:
        work = Path(scratch)
        os.environ["TRUSTLEDGER_DATA"] = str(work)
        ledger = Path(args.ledger) if args.ledger else work / "demo.db"
        url = f"sqlite:///{ledger.resolve()}"
        started = time.perf_counter()
        keys = {k.name: k.key for k in prepare_demo(url, POLICY, 10_000, 200_000,
                                                    status=lambda _: None)}
        print(f"demo ledger {ledger} ready in {time.perf_counter() - started:.1f} s "
              "(prepare_demo, as `make run`)")
        operator, source = keys["demo-operator"], keys["bank-a"]
        port = free_port()
        with server(url, port, work) as proc:
            print(f"cold ({load()}):")
            started = time.perf_counter()
            samples = []
            while True:
                asked = time.perf_counter() - started
                status, body = call(port, "GET", "/v1/statistics", operator)
                if status == 200:
                    break
                assert status == 202, (status, body)
                samples.append((asked, body["done"], body["total"], body["retry_after"]))
                print(f"  {asked:6.1f} s  202  done {body['done']:>6,} of "
                      f"{body['total'] or '?'}  retry_after {body['retry_after']} s")
                time.sleep(1.0)
            cold = time.perf_counter() - started
            print(f"  {cold:6.1f} s  200  {body['subjects']:,} subjects "
                  f"(ledger_seq {body['ledger_seq']}; {load()})")
            kept = sum(1 for i, (at, done, _, wait) in enumerate(samples)
                       if at + wait >= cold or any(later[1] > done for later in samples[i + 1:]
                                                   if later[0] >= at + wait))
            print(f"  retry_after kept (ready by then, or further by then): "
                  f"{kept} of {len(samples)}")
            warm, cpu = [], []
            for n in range(args.rounds):
                subject = subject_id(100 + 37 * n)  # opted in (10 to 1,999 are)
                event = {"source": "bank-a",
                         "source_event_id": f"bench-statistics-{time.time_ns()}",
                         "subject": subject, "type": "bill_paid", "attributes": {},
                         "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
                status, appended = call(port, "POST", "/v1/events", source, event)
                assert status == 201, (status, appended)
                seq = int(appended["seq"])
                before = load()
                used = cpu_seconds(proc.pid)
                started = time.perf_counter()
                asks = 0
                while True:
                    asks += 1
                    status, body = call(port, "GET", "/v1/statistics", operator)
                    if status == 200 and not body["stale"] and body["ledger_seq"] >= seq:
                        break
                    time.sleep(0.05)
                spent = time.perf_counter() - started
                warm.append(spent)
                cpu.append(cpu_seconds(proc.pid) - used)
                print(f"warm {n + 1}: {spent:.3f} s until statistics counting event seq {seq} "
                      f"({asks} request(s); server CPU {cpu[-1]:.2f} s; {before} -> {load()})")
        print(f"DEMO warm median of {args.rounds}: {median(warm):.3f} s wall, server CPU "
              f"{median(cpu):.2f} s; cold {cold:.1f} s")


# -- columnar: 1,000,000 subjects -------------------------------------------------------------

def population_file(subjects: int) -> Path:
    from trustledger.demo import demo_population
    from trustledger.synth import write_parquet

    population = demo_population("sesame", subjects)
    path = ROOT / "bench" / "out" / (f"sesame-{population.subjects}-{population.events}-"
                                     f"{population.seed}.parquet")
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        write_parquet(population, partial)
        partial.rename(path)
        print(f"generated {population.events:,} events in "
              f"{time.perf_counter() - started:.1f} s: {path}")
    return path


def columnar(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    from trustledger.api.settings import Settings
    from trustledger.api.statistics import (
        Figures,
        Progress,
        aggregate,
        columnar_table,
    )
    from trustledger.batch import duckdb_backend, read_events
    from trustledger.policy import load_policy
    from trustledger.synth import subject_id

    path = population_file(args.subjects)
    policy = load_policy(POLICY)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    opted = int(args.subjects * args.opt_in_share)
    consents = {subject_id(i): frozenset({"sesame"}) for i in range(opted)}
    progress = Progress()
    progress.entries = pq.ParquetFile(path).metadata.num_rows
    progress.read = progress.entries  # the query scans the file itself
    samples: list[tuple[float, str, int, int, float, int]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(args.sample_every):
            left = progress.seconds_left()
            body = progress.body()
            at_ = time.perf_counter() - started
            samples.append((at_, progress.stage, progress.done, progress.total, left,
                            body["retry_after"]))
            print(f"  {at_:7.1f} s  {progress.stage:<8} {progress.done:>9,} of "
                  f"{progress.total or '?':>9}  estimate {left:7.1f} s left  "
                  f"retry_after {body['retry_after']} s", flush=True)

    print(f"columnar: {args.subjects:,} subjects, {progress.entries:,} events, {opted:,} "
          f"opted in ({load()})")
    backend = duckdb_backend(memory_limit="4GB")
    started = time.perf_counter()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        table = columnar_table(policy, read_events(backend, path), at, consents, progress)
        figures = Figures.of_table(table, policy)
        body = aggregate(figures, policy, Settings(database_url="sqlite://"))
    finally:
        done.set()
        backend.disconnect()
    total = time.perf_counter() - started
    per_subject = sum(1 for p in table.column("path").to_pylist() if p == "per-subject")
    print(f"COLUMNAR {figures.subjects:,} subjects in {total:.1f} s ({per_subject:,} by the "
          f"per-subject path; {load()})")
    tiers = body["scorecards"]["sesame"]["tiers"]
    print(f"  tiers: {[(c['label'], c['subjects']) for c in tiers]}")
    for at_, stage, _, _, left, wait in samples:
        print(f"  at {at_:7.1f} s ({stage}): estimated {left:7.1f} s left, really "
              f"{total - at_:7.1f} s; retry_after {wait} s "
              f"{'kept' if at_ + wait <= total or stage == 'scoring' else 'early'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["demo", "columnar", "both"], default="both")
    parser.add_argument("--ledger", help="demo ledger file (built there if empty)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--opt-in-share", type=float, default=0.2,
                        help="share of the population opted in (the demo's is 0.2)")
    parser.add_argument("--sample-every", type=float, default=2.0)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {load()}")
    if args.part in ("demo", "both"):
        demo(args)
    if args.part in ("columnar", "both"):
        columnar(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
