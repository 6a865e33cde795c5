"""Backup files: a ledger's entries exactly as stored, as Parquet or JSON Lines.

Each record has the columns of the ``entries`` table: ``seq``, ``kind``, ``subject``,
``source``, ``source_event_id``, ``recorded_at`` (UTC, microseconds), ``payload``
(the canonical JSON text, byte for byte, or null when purged), ``payload_hash``,
``prev_hash`` and ``hash``. Importing a file into an empty ledger rebuilds the same
chain and the same head hash; the chain is verified while the file is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trustledger.errors import InputError
from trustledger.ledger.bulk import CHUNK
from trustledger.ledger.chain import COLUMNS, StoredEntry, from_us, iso, to_us

Writer = Callable[[Path, Iterable[StoredEntry], Callable[[int], None] | None], int]
"""Writes entries to a file and returns how many; reports progress now and then."""

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("subject", pa.string()),
        pa.field("source", pa.string()),
        pa.field("source_event_id", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.large_string()),
        pa.field("payload_hash", pa.string(), nullable=False),
        pa.field("prev_hash", pa.string(), nullable=False),
        pa.field("hash", pa.string(), nullable=False),
    ],
    metadata={"trustledger.export": "1"},
)
"""Columns of a Parquet export."""

_FIELDS = tuple(name if name != "recorded_at_us" else "recorded_at" for name in COLUMNS)
_TEXT = {"kind", "payload_hash", "prev_hash", "hash"}


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    raise InputError(f"{path}: unknown format {suffix!r}; use .parquet or .jsonl")


def writer_for(path: Path) -> Writer:
    """The writer for a path's suffix (``.parquet``/``.pq`` or ``.jsonl``/``.ndjson``)."""
    return _write_parquet if _format(path) == "parquet" else _write_jsonl


def _write_parquet(
    path: Path, rows: Iterable[StoredEntry], progress: Callable[[int], None] | None
) -> int:
    count = 0
    with pq.ParquetWriter(path, PARQUET_SCHEMA) as writer:
        chunk: list[StoredEntry] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK:
                writer.write_table(_table(chunk))
                count += len(chunk)
                chunk = []
                if progress is not None:
                    progress(count)
        if chunk or count == 0:
            writer.write_table(_table(chunk))
            count += len(chunk)
    if progress is not None:
        progress(count)
    return count


def _table(rows: list[StoredEntry]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    arrays = []
    for field, values in zip(PARQUET_SCHEMA, columns, strict=True):
        if field.name == "recorded_at":
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=PARQUET_SCHEMA)


def _write_jsonl(
    path: Path, rows: Iterable[StoredEntry], progress: Callable[[int], None] | None
) -> int:
    count = 0
    with path.open("wb") as out:
        for row in rows:
            record = dict(zip(_FIELDS, row, strict=True))
            record["recorded_at"] = iso(from_us(row.recorded_at_us))
            out.write(orjson.dumps(record) + b"\n")
            count += 1
            if progress is not None and count % CHUNK == 0:
                progress(count)
    if progress is not None:
        progress(count)
    return count


def read_export(path: Path) -> Iterator[StoredEntry]:
    """The entries of an export file, in file order; :class:`InputError` on a malformed one."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if _format(path) == "parquet":
        return _read_parquet(path)
    return _read_jsonl(path)


def _read_parquet(path: Path) -> Iterator[StoredEntry]:
    try:
        file = pq.ParquetFile(path)
        names = set(file.schema_arrow.names)
        missing = [name for name in _FIELDS if name not in names]
        if missing:
            raise InputError(f"{path}: not a ledger export; missing column(s) {missing}")
        row_number = 0
        for batch in file.iter_batches(batch_size=CHUNK, columns=list(_FIELDS)):
            stamps = batch.column("recorded_at")
            if not pa.types.is_timestamp(stamps.type):
                raise InputError(f"{path}: recorded_at is not a timestamp column")
            columns = [
                stamps.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
                if name == "recorded_at"
                else batch.column(name).to_pylist()
                for name in _FIELDS
            ]
            for values in zip(*columns, strict=True):
                row_number += 1
                yield _checked(path, f"row {row_number}", values)
    except pa.ArrowException as err:
        raise InputError(f"{path}: not a readable Parquet file: {err}") from err


def _read_jsonl(path: Path) -> Iterator[StoredEntry]:
    with path.open("rb") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"line {line_number}"
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise InputError(f"{path}: {where}: invalid JSON: {err}") from err
            if not isinstance(record, dict):
                raise InputError(f"{path}: {where}: not a JSON object")
            unknown = set(record) - set(_FIELDS)
            if unknown:
                raise InputError(f"{path}: {where}: unknown field(s) {sorted(unknown)}")
            stamp = record.get("recorded_at")
            if isinstance(stamp, str):
                try:
                    moment = datetime.fromisoformat(stamp)
                except ValueError as err:
                    raise InputError(f"{path}: {where}: recorded_at: {err}") from err
                if moment.tzinfo is None:
                    raise InputError(f"{path}: {where}: recorded_at: no UTC offset")
                record["recorded_at"] = to_us(moment)
            yield _checked(path, where, tuple(record.get(name) for name in _FIELDS))


def _checked(path: Path, where: str, values: tuple[Any, ...]) -> StoredEntry:
    for name, value in zip(_FIELDS, values, strict=True):
        if name in {"seq", "recorded_at"}:
            ok = type(value) is int
        elif name in _TEXT:
            ok = type(value) is str
        else:
            ok = value is None or type(value) is str
        if not ok:
            raise InputError(f"{path}: {where}: {name}: missing or of the wrong type")
    return StoredEntry(*values)
