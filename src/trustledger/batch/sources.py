"""Where a population job reads its events, and the two backends it runs on.

The batch expression reads one table with the columns of
:data:`~trustledger.batch.expression.EVENT_COLUMNS`. This module makes that table:

* from an events Parquet file (what ``trustledger synth`` writes, or
  :func:`write_ledger_events` from a ledger): ``subject, source, source_event_id, type,
  occurred_at, recorded_at, attributes, supersedes`` with UTC timestamps; a file without
  ``recorded_at`` (recorded when it occurred) or ``supersedes`` (none) is accepted;
* from a keyed export (:func:`write_keyed`, read by :func:`read_keyed`): a folder with the
  same events where ``subject`` and ``type`` are integer surrogate keys (dense, in name
  order) and times are integer microseconds, with the two mapping tables; the query then
  groups and joins integers, and names are joined back only on the result;
* on DuckDB (embedded, the default; out-of-core within a memory limit) or on Spark
  (``local[2]`` here; any cluster elsewhere), where the only backend-specific step is
  turning timestamps into integer microseconds.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trustledger.errors import InputError
from trustledger.ledger.chain import EVENT_KIND

if TYPE_CHECKING:
    import duckdb
    import ibis.expr.types as ir

    from trustledger.engine import Event

# Ibis is imported where a backend is made, not with this module: the command reads the
# ledger into DuckDB while Ibis loads (trustledger.batch.commands).

EVENTS_SCHEMA = pa.schema([
    ("subject", pa.string()),
    ("source", pa.string()),
    ("source_event_id", pa.string()),
    ("type", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
    ("attributes", pa.string()),
    ("supersedes", pa.string()),
])
"""An events Parquet file for batch jobs; ``attributes`` is canonical JSON (sorted keys)."""

_REQUIRED = ("subject", "source", "source_event_id", "type", "occurred_at", "attributes")


_COMPILERS = "ibis.backends.sql.compilers"


def compilers_on_demand() -> None:
    """Let Ibis import the SQL compiler of the backend in use, not all twenty of them.

    The package ``ibis.backends.sql.compilers`` imports every compiler Ibis has, and
    with them most of sqlglot's dialects (about 0.1 s of every job's start), although
    a backend uses one. Set up before a backend loads it, the package is the same
    (same path, same submodules), but its submodules are imported when first named
    (``compilers.duckdb``); any other name runs the package's own ``__init__`` first.
    Nothing changes once the package is imported.
    """
    if _COMPILERS in sys.modules:
        return
    spec = importlib.util.find_spec(_COMPILERS)
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def attribute(name: str) -> Any:
        try:
            return importlib.import_module(f"{_COMPILERS}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{_COMPILERS}.{name}":
                raise
        del package.__getattr__
        loader.exec_module(package)  # every compiler, as a plain import would
        return getattr(package, name)

    package.__getattr__ = attribute  # type: ignore[method-assign]
    sys.modules[_COMPILERS] = package
    parent, _, child = _COMPILERS.rpartition(".")
    setattr(sys.modules[parent], child, package)


def duckdb_connection(memory_limit: str = "6GB", threads: int = 2,
                      temp_directory: str | None = None) -> duckdb.DuckDBPyConnection:
    """An embedded DuckDB connection that spills to disk beyond ``memory_limit`` (no Ibis).

    Set up as Ibis sets up its own (UTC session time zone, no lookup of Python variables
    as tables), without DuckDB's progress bar (the caller shows its own).
    """
    import duckdb

    con = duckdb.connect(config={
        "threads": threads, "memory_limit": memory_limit,
        "temp_directory": temp_directory or tempfile.gettempdir(),
        "preserve_insertion_order": False})
    for setting in ("TimeZone = 'UTC'", "python_enable_replacements = false",
                    "enable_progress_bar = false"):
        con.execute(f"SET {setting}")
    return con


def duckdb_backend(memory_limit: str = "6GB", threads: int = 2,
                   temp_directory: str | None = None,
                   connection: duckdb.DuckDBPyConnection | None = None) -> Any:
    """An Ibis backend over an embedded DuckDB connection (:func:`duckdb_connection`).

    ``connection``: one already open (the other arguments are then not used).
    """
    compilers_on_demand()
    import ibis

    return ibis.duckdb.from_connection(
        connection or duckdb_connection(memory_limit, threads, temp_directory))


def spark_session(memory: str = "4g", cores: int = 2, partitions: int = 4) -> Any:
    """A local Spark session (UTC, no UI) for running the batch expression on Spark."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (SparkSession.builder.master(f"local[{cores}]")
            .appName("trustledger-batch")
            .config("spark.driver.memory", memory)
            .config("spark.sql.shuffle.partitions", str(partitions))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate())


def spark_backend(session: Any) -> Any:
    """An Ibis backend over a Spark session."""
    compilers_on_demand()
    import ibis

    return ibis.pyspark.connect(session)


def _columns(path: Path) -> set[str]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path}: not a Parquet file ({exc})") from exc
    names = set(schema.names)
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; an events file "
                         "has " + ", ".join(EVENTS_SCHEMA.names))
    return names


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a ledger export (``trustledger export``), not an events file."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    try:
        names = set(pq.read_schema(file).names)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{file}: not a Parquet file ({exc})") from exc
    return {"kind", "payload", "seq"} <= names


def _read_export(backend: Any, file: Path, name: str) -> ir.Table:
    """A ledger export's events (purged ones left out), with the payload's fields.

    The event's source and id come from the payload (the stored event itself), so an
    export needs only ``kind``, ``subject``, ``recorded_at`` and ``payload``
    (:meth:`~trustledger.ledger.Ledger.batch_columns` reads no more). On DuckDB the
    payloads are parsed once, into a temporary table (spilled to disk beyond the memory
    limit) that the job's queries then read.
    """
    quoted = str(file.resolve()).replace("'", "''")
    where = f"kind = '{EVENT_KIND}' AND payload IS NOT NULL"
    if backend.name == "duckdb":
        return _parsed(backend, f"read_parquet('{quoted}')", name)
    if backend.name == "pyspark":
        frame = backend._session.read.parquet(str(file.resolve())).where(where).selectExpr(
            "subject", "get_json_object(payload, '$.source') AS source",
            "get_json_object(payload, '$.source_event_id') AS source_event_id",
            "get_json_object(payload, '$.type') AS type",
            "unix_micros(to_timestamp(get_json_object(payload, '$.occurred_at'))) "
            "AS occurred_us", "unix_micros(recorded_at) AS recorded_us",
            "get_json_object(payload, '$.attributes') AS attributes",
            "get_json_object(payload, '$.supersedes') AS supersedes")
        frame.createOrReplaceTempView(name)
        return backend.table(name)
    raise InputError(f"backend {backend.name} is not supported; use duckdb or pyspark")


def _parsed(backend: Any, source: str, name: str) -> ir.Table:
    """The events of ledger entries (DuckDB ``source``: a relation) in a temporary table."""
    return backend.table(_parse_entries(backend.con, source, name))


def _parse_entries(con: duckdb.DuckDBPyConnection, source: str, name: str) -> str:
    """:func:`_parsed` on a DuckDB connection; the temporary table's name."""
    # One parse of each payload into a struct of its fields, the attributes kept as JSON
    # text. A JSON null there comes out as SQL NULL, as a missing key does: the payload
    # is looked at again for those rows only, so that it stays the text "null".
    table = f"{name}_{uuid.uuid4().hex}"
    fields = ", ".join(f'"{f}": "{kind}"' for f, kind in (
        ("source", "VARCHAR"), ("source_event_id", "VARCHAR"), ("type", "VARCHAR"),
        ("occurred_at", "VARCHAR"), ("attributes", "JSON"), ("supersedes", "VARCHAR")))
    con.execute(
        f"CREATE TEMP TABLE {table} AS SELECT subject, f.source, f.source_event_id, "
        "f.type, epoch_us(CAST(f.occurred_at AS TIMESTAMPTZ)) AS occurred_us, "
        "epoch_us(recorded_at) AS recorded_us, "
        "CASE WHEN f.attributes IS NULL AND json_exists(payload, '$.attributes') "
        "THEN 'null' ELSE CAST(f.attributes AS VARCHAR) END AS attributes, "
        "f.supersedes FROM (SELECT subject, recorded_at, payload, "
        f"json_transform(payload, '{{{fields}}}') AS f "
        f"FROM {source} WHERE kind = '{EVENT_KIND}' AND payload IS NOT NULL)")
    return table


LEDGER_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("kind", pa.string()),
    ("subject", pa.string()),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
    ("payload", pa.string()),
])
"""The ledger entries a job reads (:meth:`~trustledger.ledger.Ledger.batch_columns`)."""


def read_ledger(backend: Any, entries: Iterable[pa.RecordBatch], folder: str | Path,
                name: str = "events") -> tuple[ir.Table, pa.Table]:
    """Ledger entries (:data:`LEDGER_SCHEMA` batches) as the job's input table.

    Returns the table and the entries that are not events (consent records, for
    :func:`ledger_consents`). On DuckDB the batches stream into the job's table as they
    are read: DuckDB's threads parse the payloads of one batch while the next is read.
    Elsewhere (Spark) they are written to a Parquet file in ``folder`` first and read as
    an export.
    """
    if backend.name == "duckdb":
        loaded, records = load_ledger(backend.con, entries, name)
        return backend.table(loaded), records
    others: list[pa.RecordBatch] = []
    path = Path(folder) / f"{name}_{uuid.uuid4().hex}.parquet"
    with pq.ParquetWriter(path, LEDGER_SCHEMA, compression="none") as writer:
        for batch in _split(entries, others):
            writer.write_batch(batch)
    return read_events(backend, path, name), pa.Table.from_batches(others, LEDGER_SCHEMA)


def load_ledger(con: duckdb.DuckDBPyConnection, entries: Iterable[pa.RecordBatch],
                name: str = "events") -> tuple[str, pa.Table]:
    """:func:`read_ledger` on a DuckDB connection (no Ibis): the table's name, the others.

    The batches stream into a temporary table as they are read: DuckDB's threads parse
    the payloads of one batch while the next is read.
    """
    others: list[pa.RecordBatch] = []
    stream = f"{name}_{uuid.uuid4().hex}_entries"
    con.register(stream, pa.RecordBatchReader.from_batches(LEDGER_SCHEMA,
                                                          _split(entries, others)))
    try:
        table = _parse_entries(con, stream, name)
    finally:
        con.unregister(stream)
    return table, pa.Table.from_batches(others, LEDGER_SCHEMA)


def _split(entries: Iterable[pa.RecordBatch],
           others: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches as they come, the entries that are not events also put in ``others``."""
    for batch in entries:
        rest = batch.filter(pc.not_equal(batch.column("kind"), EVENT_KIND))
        if rest.num_rows:
            others.append(rest)
        yield batch


def ledger_consents(records: pa.Table, at: datetime,
                    scorecards: Iterable[str]) -> dict[str, frozenset[str]]:
    """The opt-ins in force at ``at`` among ledger ``records``, per subject.

    ``records``: entries with the columns of :data:`LEDGER_SCHEMA`; consent records
    are taken from them (an export's, or those :func:`read_ledger` returns).
    """
    from trustledger.ledger import Entry
    from trustledger.rights import active_consents
    from trustledger.rights.consent import GRANTED, WITHDRAWN

    table = records.filter(pc.is_in(records.column("kind"),
                                    pa.array([GRANTED, WITHDRAWN], pa.string())))
    entries = sorted((Entry(r["seq"], r["kind"], r["subject"], r["recorded_at"],
                            orjson.loads(r["payload"]) if r["payload"] else None, "", "", "")
                      for r in table.to_pylist()), key=lambda e: e.seq)
    names = set(scorecards)
    out: dict[str, set[str]] = {}
    for consent in active_consents(entries, at):
        if consent.scope == "scorecard" and consent.scorecard in names:
            out.setdefault(consent.subject, set()).add(consent.scorecard)
    return {subject: frozenset(cards) for subject, cards in out.items()}


def export_consents(path: str | Path, at: datetime,
                    scorecards: Iterable[str]) -> dict[str, frozenset[str]]:
    """The opt-ins in force at ``at`` recorded in a ledger export, per subject.

    Reads the consent records' ``seq``, ``kind``, ``subject``, ``recorded_at`` and
    ``payload`` (so also the partial export of :meth:`Ledger.batch_columns`).
    """
    from trustledger.rights.consent import GRANTED, WITHDRAWN

    records = pq.read_table(Path(path), columns=LEDGER_SCHEMA.names,
                            filters=[("kind", "in", [GRANTED, WITHDRAWN])])
    return ledger_consents(records, at, scorecards)


def read_events(backend: Any, path: str | Path, name: str = "events") -> ir.Table:
    """The events of a Parquet file as the batch expression's input table on ``backend``.

    The file is an events file (:data:`EVENTS_SCHEMA`) or a ledger export
    (``trustledger export``, whose event payloads are read in the query).
    """
    file = Path(path)
    if is_export(file):
        return _read_export(backend, file, name)
    names = _columns(file)
    if backend.name == "duckdb":
        recorded = "recorded_at" if "recorded_at" in names else "occurred_at"
        supersedes = "supersedes" if "supersedes" in names else "CAST(NULL AS VARCHAR)"
        quoted = str(file.resolve()).replace("'", "''")
        return backend.sql(
            "SELECT subject, source, source_event_id, type, "
            "epoch_us(occurred_at) AS occurred_us, "
            f"epoch_us({recorded}) AS recorded_us, attributes, {supersedes} AS supersedes "
            f"FROM read_parquet('{quoted}')")
    if backend.name == "pyspark":
        session = backend._session
        recorded = "recorded_at" if "recorded_at" in names else "occurred_at"
        supersedes = "supersedes" if "supersedes" in names else "CAST(NULL AS STRING)"
        frame = session.read.parquet(str(file.resolve())).selectExpr(
            "subject", "source", "source_event_id", "type",
            "unix_micros(occurred_at) AS occurred_us",
            f"unix_micros({recorded}) AS recorded_us", "attributes",
            f"{supersedes} AS supersedes")
        frame.createOrReplaceTempView(name)
        return backend.table(name)
    raise InputError(f"backend {backend.name} is not supported; use duckdb or pyspark")


def event_rows(events: Iterator[Event] | list[Event]) -> Iterator[dict[str, Any]]:
    """Engine events as rows of :data:`EVENTS_SCHEMA` (times converted to UTC)."""
    for e in events:
        yield {"subject": e.subject, "source": e.source, "source_event_id": e.source_event_id,
               "type": e.type, "occurred_at": e.occurred_at, "recorded_at": e.recorded_at,
               "attributes": orjson.dumps(dict(e.attributes),
                                          option=orjson.OPT_SORT_KEYS).decode(),
               "supersedes": e.supersedes}


def write_events(events: Iterator[Event] | list[Event], path: str | Path,
                 progress: Callable[[int], None] | None = None, chunk: int = 200_000) -> int:
    """Write engine events to an events Parquet file; returns how many."""
    count = 0
    with pq.ParquetWriter(str(path), EVENTS_SCHEMA) as writer:
        rows: list[dict[str, Any]] = []
        for row in event_rows(events):
            rows.append(row)
            if len(rows) == chunk:
                writer.write_table(pa.Table.from_pylist(rows, EVENTS_SCHEMA))
                count += len(rows)
                rows = []
                if progress is not None:
                    progress(count)
        writer.write_table(pa.Table.from_pylist(rows, EVENTS_SCHEMA))
        count += len(rows)
    return count


def events_table(backend: Any, events: list[Event], folder: str | Path) -> ir.Table:
    """Engine events written to ``folder`` and read back on ``backend`` (tests, small jobs)."""
    name = f"events_{uuid.uuid4().hex}"
    path = Path(folder) / f"{name}.parquet"
    write_events(events, path)
    return read_events(backend, path, name=name)


KEYED_FILES = ("events.parquet", "subjects.parquet", "types.parquet")
"""A keyed export: a folder with these three files (see :func:`write_keyed`)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The mapping tables of a keyed export.

    :attr:`subjects`: each subject's name at the index of its key; ``types``: each event
    type's name to its key. The names may still be being read (``names``: a future),
    since a job needs them only once its query has run.
    """

    names: Future[pa.Array] | pa.Array
    types: Mapping[str, int]

    @property
    def subjects(self) -> pa.Array:
        """Each subject's name at the index of its key."""
        return self.names.result() if isinstance(self.names, Future) else self.names


def is_keyed(path: str | Path) -> bool:
    """Whether ``path`` is a keyed export folder (:func:`write_keyed`)."""
    folder = Path(path)
    return folder.is_dir() and all((folder / name).is_file() for name in KEYED_FILES)


def write_keyed(backend: Any, source: str | Path, folder: str | Path) -> int:
    """Write the events of ``source`` (events file or ledger export) as a keyed export.

    ``folder`` (created; existing files replaced) gets ``subjects.parquet`` (``key``,
    ``subject``) and ``types.parquet`` (``key``, ``type``): dense integer keys in name
    order, and ``events.parquet`` with the batch columns (:data:`EVENT_COLUMNS`), where
    ``subject`` and ``type`` are those keys and times are microseconds since the epoch.
    DuckDB only. Returns how many events.
    """
    if backend.name != "duckdb":
        raise InputError("a keyed export is written with DuckDB")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    events = read_events(backend, source, name=f"keyed_{uuid.uuid4().hex}")
    stem = f"k{uuid.uuid4().hex}"
    backend.create_view(f"{stem}_e", events, overwrite=True)
    sql = backend.raw_sql
    sql(f"CREATE TEMP TABLE {stem}_s AS SELECT CAST(row_number() OVER (ORDER BY subject) - 1 "
        f"AS BIGINT) AS key, subject FROM (SELECT DISTINCT subject FROM {stem}_e)")
    sql(f"CREATE TEMP TABLE {stem}_t AS SELECT CAST(row_number() OVER (ORDER BY type) - 1 "
        f"AS BIGINT) AS key, type FROM (SELECT DISTINCT type FROM {stem}_e)")
    for table, name in ((f"{stem}_s", "subjects"), (f"{stem}_t", "types")):
        sql(f"COPY (SELECT * FROM {table} ORDER BY key) TO '{_quote(out / name)}.parquet' "
            "(FORMAT parquet)")
    sql(f"COPY (SELECT s.key AS subject, e.source, e.source_event_id, t.key AS type, "
        f"e.occurred_us, e.recorded_us, e.attributes, e.supersedes FROM {stem}_e AS e "
        f"JOIN {stem}_s AS s ON e.subject = s.subject JOIN {stem}_t AS t ON e.type = t.type "
        f"ORDER BY s.key) TO '{_quote(out / 'events')}.parquet' "
        "(FORMAT parquet, ROW_GROUP_SIZE 1000000)")
    for name in (f"{stem}_s", f"{stem}_t"):
        sql(f"DROP TABLE {name}")
    sql(f"DROP VIEW {stem}_e")
    rows: int = pq.read_metadata(out / "events.parquet").num_rows
    return rows


def _quote(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


def read_keyed(backend: Any, folder: str | Path, name: str = "events") -> tuple[ir.Table, Keys]:
    """A keyed export (:func:`write_keyed`) as the batch input table, with its mapping tables."""
    path = Path(folder)
    if not is_keyed(path):
        raise InputError(f"{path}: not a keyed export (a folder with "
                         f"{', '.join(KEYED_FILES)})")
    import numpy as np

    from trustledger.batch.expression import EVENT_COLUMNS

    types = pq.read_table(path / "types.parquet")
    keys = pq.read_table(path / "subjects.parquet", columns=["key"]).column("key").to_numpy()
    if not np.array_equal(keys, np.arange(len(keys))):
        raise InputError(f"{path / 'subjects.parquet'}: keys must be 0, 1, 2, … in order")
    # The names are read while the job's query runs (both release the GIL).
    reader = ThreadPoolExecutor(max_workers=1)
    names = reader.submit(lambda: pq.read_table(path / "subjects.parquet", columns=["subject"])
                          .column("subject").combine_chunks())
    reader.shutdown(wait=False)
    mapping = Keys(names, dict(zip(types.column("type").to_pylist(),
                                   types.column("key").to_pylist(), strict=True)))
    events = path / "events.parquet"
    if backend.name == "duckdb":
        return backend.sql(f"SELECT {', '.join(EVENT_COLUMNS)} FROM "
                           f"read_parquet('{_quote(events)}')"), mapping
    if backend.name == "pyspark":
        frame = backend._session.read.parquet(str(events.resolve())).select(*EVENT_COLUMNS)
        frame.createOrReplaceTempView(name)
        return backend.table(name), mapping
    raise InputError(f"backend {backend.name} is not supported; use duckdb or pyspark")
