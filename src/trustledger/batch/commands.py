"""The ``trustledger rescore`` command: the whole population, as one job, with progress.

Events come from an events Parquet file (``trustledger synth`` writes one), a ledger
export (``trustledger export``: its events and opt-in consents), a keyed export (a
folder, :func:`trustledger.batch.sources.write_keyed`: integer subject and type keys)
or, without a file, from the ledger itself (its events and opt-in consents, read as an
export is: on DuckDB streamed into the job while they are read, by a second thread
(fed on SQLite by a forked reading process) while the policy and Ibis load; on Spark
through a temporary Parquet file). The
policy is a file, or the published version in force at ``--at``. Progress goes to
standard error (the per-subject stage with a bar).

What it shows and writes, and safeguard 4 (no interface returns named subjects ranked
or filtered by score or tier):

* the terminal (or ``--json``) shows each scorecard's tier distribution, subjects and
  share per tier, cells under 10 subjects suppressed (:func:`trustledger.aggregates.suppress`),
  and a *sample* of ``--sample`` per-subject results (default 5, at most
  :data:`MOST_SAMPLE`): subjects drawn uniformly at random, shown in subject order, never
  chosen, sorted or filtered by score, tier or measure, so the top or bottom of the
  population cannot be read off it;
* ``--output FILE`` (CSV for ``.csv``, else Parquet) writes every subject's result in subject
  order (never by score): the batch job's output, written to the operator's own disk
  for the programme's decision delivery (the service stores it per subject), with the
  policy hash and ``valid_at`` in the Parquet metadata.
"""

from __future__ import annotations

import enum
import gc
import importlib.abc
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trustledger.aggregates import SMALLEST_CELL, suppress
from trustledger.errors import InputError
from trustledger.options import (
    AtOption,
    DatabaseOption,
    JsonFlag,
    KnownAtOption,
    print_json,
    text_column,
)
from trustledger.options import table as terminal_table

if TYPE_CHECKING:
    import pyarrow as pa

    from trustledger.policy import CompiledPolicy


MOST_SAMPLE = 20
"""The largest ``--sample``: a handful of rows to check a job by, not a listing."""


class Engine(enum.StrEnum):
    """Where the population job runs."""

    DUCKDB = "duckdb"
    SPARK = "spark"


def rescore(
    events: Annotated[Path | None, typer.Argument(
        help="Events Parquet file, ledger export or keyed export folder (default: the "
        "ledger itself).")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Policy file (default: the published version in force at --at).")] = None,
    engine: Annotated[Engine, typer.Option(help="duckdb (embedded) or spark (local).")] =
        Engine.DUCKDB,
    at: AtOption = None,
    known_at: KnownAtOption = None,
    output: Annotated[Path | None, typer.Option(
        help="Write every subject's result, in subject order, to this file: CSV if it ends "
        "in .csv, else Parquet.")] = None,
    sample: Annotated[int, typer.Option(
        min=0, max=MOST_SAMPLE, help="Show this many subjects' results, drawn at random "
        "(never by score).")] = 5,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the sample's random draw (default: a fresh one).")] = None,
    consent_all: Annotated[bool, typer.Option(
        "--consent-all", help="Treat every subject as opted in (synthetic data only).")] =
        False,
    measures: Annotated[bool, typer.Option(help="Also decide measures.")] = True,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit (spills beyond).")] =
        "6GB",
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Re-evaluate every subject as one columnar job (DuckDB or Spark); show a sample, write all."""
    arrow_without_pandas()
    from trustledger.options import parse_moment

    # Standard output carries the summary (or the JSON alone); progress goes to standard error.
    console = Console()
    valid = parse_moment(at, "--at")
    known = parse_moment(known_at, "--known-at") if known_at else None
    started = time.perf_counter()
    with (tempfile.TemporaryDirectory() as scratch, _progress(Console(stderr=True)) as bar,
          ExitStack() as closing):
        task = bar.add_task("preparing", total=None)
        consents: dict[str, frozenset[str]] | None = None
        if events is not None and policy is None:
            raise InputError("--policy: give a policy file with an events file")
        keys = None
        if events is None:
            backend, table, records, compiled = _from_ledger(
                database_url, policy, valid, _Job(engine, memory_limit, Path(scratch), closing),
                bar, task)
            if not consent_all:
                from trustledger.batch.sources import ledger_consents

                consents = ledger_consents(records, known or valid, compiled.scorecards)
        else:
            from trustledger.batch.sources import (
                export_consents,
                is_export,
                is_keyed,
                read_events,
                read_keyed,
            )
            from trustledger.policy import load_policy

            assert policy is not None
            backend = _Job(engine, memory_limit, Path(scratch), closing).backend()
            compiled = load_policy(policy)
            if is_keyed(events):
                table, keys = read_keyed(backend, events)
            else:
                if is_export(events) and not consent_all:
                    consents = export_consents(events, known or valid, compiled.scorecards)
                table = read_events(backend, events)

        def progress(stage: str, done: int, total: int | None) -> None:
            bar.update(task, description=f"{stage} ({done:,} subjects)", completed=done,
                       total=total)

        from trustledger.batch.run import rescore as run

        job = run(compiled, table, valid, known, consents=consents, consent_all=consent_all,
                  measures=measures, progress=progress, keys=keys)
    results = job.table.sort_by("subject")
    if output is not None:
        write_results(results, output, compiled.hash, valid)
    elapsed = time.perf_counter() - started
    shares = distribution(compiled, results)
    shown = sample_rows(results, sample, random.Random(seed))
    if json_out:
        print_json({"subjects": job.subjects, "per_subject": job.per_subject,
                    "policy": {"name": compiled.name, "hash": compiled.hash},
                    "valid_at": valid, "known_at": known, "engine": engine.value,
                    "output": None if output is None else str(output),
                    "seconds": round(elapsed, 3), "smallest_cell": SMALLEST_CELL,
                    "tiers": shares, "sample": shown})
        return
    console.print(f"{job.subjects:,} subjects scored at {valid.isoformat()} with policy "
                  f"{compiled.name} {compiled.hash[:19]}… on {engine.value} in {elapsed:.1f} s "
                  f"({job.per_subject:,} by the per-subject path)"
                  + (f"; every subject's result in {output}" if output is not None else ""))
    for card, rows in shares.items():
        console.print(f"{card}: subjects by tier (cells under {SMALLEST_CELL} hidden)")
        grid = terminal_table()
        text_column(grid, "tier")
        grid.add_column("subjects", justify="right", no_wrap=True)
        grid.add_column("share", justify="right", no_wrap=True)
        for row in rows:
            n, share = row["subjects"], row["share"]
            grid.add_row(row["tier"] or "no tier", f"<{SMALLEST_CELL}" if n is None else f"{n:,}",
                         "—" if share is None else f"{share:.1%}")
        console.print(grid)
    if shown:
        _print_sample(console, compiled, shown)


class _PandasWithheld(importlib.abc.MetaPathFinder):
    """A finder that refuses pandas (see :func:`arrow_without_pandas`)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        """Refuse pandas and its modules; leave every other name to the other finders."""
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("pandas is withheld while pyarrow looks for it")
        return None


def arrow_without_pandas() -> None:
    """Spare a job pyarrow's import of pandas (0.2 to 0.4 s, a third of its own start-up).

    The first time pyarrow turns Python values into Arrow, it imports pandas only to ask
    whether they are pandas objects; a job never hands it any. When pandas is not
    imported yet, that first conversion is made here with pandas withheld, so pyarrow
    takes it as absent; it still imports pandas when asked for a pandas conversion
    (``to_pandas``, ``from_pandas``), after which it recognises pandas objects again.
    """
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    withheld = _PandasWithheld()
    sys.meta_path.insert(0, withheld)
    try:
        pa.array([0])  # pyarrow's one look for pandas
    finally:
        sys.meta_path.remove(withheld)


def write_results(results: pa.Table, output: Path, policy_hash: str, valid: Any) -> None:
    """Write the per-subject results to ``output``: CSV for ``.csv``, else Parquet.

    The Parquet file carries the policy hash and ``valid_at`` in its metadata.
    """
    if output.suffix.lower() == ".csv":
        import pyarrow.csv as csv

        csv.write_csv(results, output)
        return
    import pyarrow.parquet as pq

    pq.write_table(results.replace_schema_metadata({
        "trustledger.policy_hash": policy_hash, "trustledger.valid_at": valid.isoformat(),
    }), output)


def sample_rows(results: pa.Table, n: int, draw: random.Random) -> list[dict[str, Any]]:
    """``n`` rows drawn uniformly at random, in subject order: never chosen by score."""
    picked = sorted(draw.sample(range(results.num_rows), min(n, results.num_rows)))
    return results.take(picked).to_pylist() if picked else []


def _print_sample(console: Console, policy: CompiledPolicy, rows: list[dict[str, Any]]) -> None:
    console.print(f"a random sample of {len(rows)} subjects, in subject order (not by score):")
    grid = terminal_table()
    text_column(grid, "subject")
    for card in policy.scorecards:
        grid.add_column(f"{card} score", justify="right", no_wrap=True)
        text_column(grid, "tier")
    measures = [m for m in policy.measures if any(f"measure__{m}" in r for r in rows)]
    if measures:
        text_column(grid, "measures in force")
    text_column(grid, "path")
    for row in rows:
        cells = [row["subject"]]
        for card in policy.scorecards:
            score = row[f"score__{card}"]
            cells += ["—" if score is None else f"{score:,.1f}", row[f"tier__{card}"] or "—"]
        if measures:
            cells.append(", ".join(m for m in measures if row.get(f"measure__{m}")) or "none")
        cells.append(row["path"])
        grid.add_row(*cells)
    console.print(grid)


def distribution(policy: CompiledPolicy, results: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Each scorecard's tier distribution: subjects and share per tier, small cells hidden.

    Tiers in the policy's order (lowest first), then "no tier" (``None``: no score, or
    below every tier). A cell of 1 to ``SMALLEST_CELL - 1`` subjects shows ``None`` for
    both count and share (:func:`trustledger.aggregates.suppress`).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for name, card in policy.scorecards.items():
        counts = Counter(results.column(f"tier__{name}").to_pylist())
        order: list[str | None] = [tier.name for tier in card.tiers]
        order += sorted((t for t in counts if t not in order and t is not None), key=str)
        order.append(None)
        total = sum(counts.values())
        shown = suppress([counts.get(tier, 0) for tier in order])
        out[name] = [{"tier": tier, "subjects": n,
                      "share": None if n is None or not total else n / total}
                     for tier, n in zip(order, shown, strict=True)
                     if counts.get(tier, 0) or tier is not None]
    return out


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


@dataclass(frozen=True, slots=True)
class _Job:
    """Where the job runs, and what closes its backend when the job is done.

    The engine, DuckDB's memory limit, a scratch folder, and the stack that closes the
    backend (DuckDB's connection, Spark's session).
    """

    engine: Engine
    memory_limit: str
    scratch: Path
    closing: ExitStack

    def connection(self) -> Any:
        """A DuckDB connection, closed with the job (no Ibis yet)."""
        from trustledger.batch.sources import duckdb_connection

        con = duckdb_connection(memory_limit=self.memory_limit,
                                temp_directory=str(self.scratch))
        self.closing.callback(con.close)
        return con

    def backend(self, connection: Any = None) -> Any:
        """The job's Ibis backend (on ``connection``, a DuckDB connection, if given)."""
        from trustledger.batch.sources import duckdb_backend, spark_backend, spark_session

        if self.engine is Engine.SPARK:
            session = spark_session()
            self.closing.callback(session.stop)
            session.sparkContext.setLogLevel("ERROR")
            return spark_backend(session)
        return duckdb_backend(connection=connection or self.connection())


def _from_ledger(url: str | None, policy: Path | None, valid: Any, job: _Job, bar: Progress,
                 task: Any) -> tuple[Any, Any, pa.Table, CompiledPolicy]:
    """The job's backend, the ledger's events as its table, the other records, the policy.

    The entries are read by columns (:meth:`Ledger.batch_columns`) and go to the job as
    a ledger export does (:func:`~trustledger.batch.sources.read_ledger`): no engine
    event is built from the database, and the opt-ins come from the same records.

    On DuckDB the entries are parsed into DuckDB by a second thread while this one loads
    the policy (its linter included) and Ibis. On SQLite (where the platform forks) a
    forked process reads them (:class:`~trustledger.batch.reader.ReaderProcess`): Python's
    ``sqlite3`` driver holds the interpreter's lock while it reads, so a thread reading
    would mostly take turns with this one. On PostgreSQL the second thread reads them
    too (the server does the work). A policy that fails to load stops the read (the
    thread at its next page, the process at once); an error of the read is raised as it
    was raised in the reader.
    """
    from trustledger.batch.reader import ReaderProcess, forks
    from trustledger.config import database_url
    from trustledger.ledger import Ledger
    from trustledger.ledger.chain import EVENT_KIND
    from trustledger.rights.consent import GRANTED, WITHDRAWN

    kinds = (EVENT_KIND, GRANTED, WITHDRAWN)
    stop = threading.Event()
    done = 0
    failure: BaseException | None = None

    def entries(read: Callable[[], Iterable[pa.RecordBatch]]) -> Iterator[pa.RecordBatch]:
        # The reading iterator is made here, so that it is closed (its database connection
        # given back) as soon as this ends, however it ends.
        nonlocal done, failure
        try:
            for batch in read():
                if stop.is_set():
                    raise InputError("the ledger read was stopped")
                done += batch.num_rows
                bar.update(task, description=f"reading the ledger ({done:,} entries)")
                yield batch
        except Exception as err:  # kept, to be raised as it is, not as DuckDB wraps it
            failure = err
            raise

    def load(con: Any, read: Callable[[], Iterable[pa.RecordBatch]]) -> tuple[str, pa.Table]:
        import duckdb

        from trustledger.batch.sources import load_ledger

        try:
            return load_ledger(con, entries(read))
        except duckdb.Error:
            if failure is not None:
                raise failure from None
            raise

    # The driver builds a tuple per entry: acyclic, so the cycle collector, which would
    # otherwise walk every live object again and again, is paused meanwhile (and while
    # the modules load, which make no garbage worth collecting either).
    paused = gc.isenabled()
    gc.disable()
    try:
        with ExitStack() as reading:
            child: ReaderProcess | None = None
            address = url or database_url()
            if job.engine is Engine.DUCKDB and forks(address):
                # Forked first, before this process opens the ledger (the child opens it
                # itself: no SQLite state is shared) and before DuckDB's threads exist.
                child = reading.enter_context(ReaderProcess(address, kinds, rows=5_000))
            ledger = reading.enter_context(Ledger.open(url))
            bar.update(task, description="reading the ledger")
            if job.engine is Engine.SPARK:
                from trustledger.batch.sources import read_ledger

                backend = job.backend()
                table, records = read_ledger(
                    backend, entries(lambda: ledger.batch_columns(kinds, rows=5_000)),
                    job.scratch)
                return backend, table, records, _policy(ledger, policy, valid)
            read: Callable[[], Iterable[pa.RecordBatch]] = (
                child.batches if child is not None
                else lambda: ledger.batch_columns(kinds, rows=5_000))
            con = job.connection()
            with ThreadPoolExecutor(1, thread_name_prefix="trustledger-read") as reader:
                loading = reader.submit(load, con, read)
                try:
                    compiled = _policy(ledger, policy, valid)
                    _load_ibis()
                    name, records = loading.result()
                except BaseException:
                    stop.set()  # a failed policy, an interrupt: the read stops
                    if child is not None:
                        child.stop()
                    raise
        # Only now: DuckDB's connection serves one statement at a time, and the read's
        # statement calls back into Python for each page.
        backend = job.backend(con)
        return backend, backend.table(name), records, compiled
    finally:
        if paused:
            gc.enable()


def _load_ibis() -> None:
    """Import what the DuckDB job needs (Ibis, its DuckDB backend, the planner) ahead."""
    from trustledger.batch.sources import compilers_on_demand

    compilers_on_demand()
    import ibis.backends.duckdb  # noqa: F401

    import trustledger.batch.run  # noqa: F401


def _policy(ledger: Any, policy: Path | None, valid: Any) -> CompiledPolicy:
    """The policy file, or the version published in ``ledger`` in force at ``valid``."""
    from trustledger.policy import load_policy

    if policy is not None:
        return load_policy(policy)
    from trustledger.scoring import policy_in_force

    return policy_in_force(ledger, valid).compile()


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command()(rescore)
