"""Reading event files (CSV, JSON Lines, Parquet) into validated events, and ingesting them.

Columns (CSV header, JSON object keys, Parquet columns) are the fields of
:class:`~trustledger.ledger.EventIn`: ``source``, ``source_event_id``, ``subject``,
``type``, ``occurred_at`` (ISO 8601 with a UTC offset; in Parquet also a timestamp
column *with* a time zone), optional ``attributes`` and ``supersedes``. Unknown
columns are refused.

- CSV: UTF-8, a header line; ``attributes`` is a JSON object as text; an empty
  ``attributes`` or ``supersedes`` cell means none. Problems name the line in the file
  (the header is line 1).
- JSON Lines: one object per line, ``attributes`` a JSON object; blank lines are
  skipped. Problems name the line.
- Parquet: ``attributes`` a string column of JSON objects. Problems name the row
  (the first row is row 1).

:func:`ingest_file` appends a file as one atomic batch: nothing unless every row is
valid, or, with ``rejects``, the valid rows while the bad ones go to a JSON Lines
file, one ``{"line": n, "problems": [{"field": ..., "reason": ...}], "row": {...}}``
per bad row (``"row": n`` instead of ``"line"`` for Parquet).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from trustledger.errors import BatchError, InputError
from trustledger.events import RETRACTION
from trustledger.ledger.bulk import CHUNK, paused_gc
from trustledger.ledger.chain import EPOCH
from trustledger.ledger.models import EventIn, validation_problems

if TYPE_CHECKING:
    from trustledger.ledger.store import Ledger, Validator
    from trustledger.policy import CompiledPolicy

FORMATS = ("csv", "jsonl", "parquet")
"""File formats :func:`read_events` reads."""

REQUIRED = ("source", "source_event_id", "subject", "type", "occurred_at")
"""Columns every event file must have."""

OPTIONAL = ("attributes", "supersedes")
"""Columns an event file may have."""

_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
             ".pq": "parquet"}
_EVENTS = TypeAdapter(list[EventIn])
_SHOWN = 50

Chunk = tuple[list[int], list[dict[str, Any]]]
"""Rows of a file with their line (row) numbers."""

Phase = Callable[[str, int], None]
"""Progress of an ingest: called with the phase (``"read"`` or ``"append"``) and rows done."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem with one row of a file: where (line or row number), which field, why."""

    line: int
    field: str
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.field}: {self.reason}"


@dataclass
class IngestResult:
    """A file read into events: the valid ones with their line numbers, and the problems."""

    path: Path
    format: str
    events: list[EventIn] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rejected: dict[int, Any] = field(default_factory=dict)
    """The raw content of each bad row, by line (row) number."""

    @property
    def unit(self) -> str:
        """What the numbers count: ``"line"`` for text files, ``"row"`` for Parquet."""
        return "row" if self.format == "parquet" else "line"

    @property
    def rows(self) -> int:
        """Rows read, valid or not."""
        return len(self.events) + len(self.rejected)

    def reject(self, line: int, raw: Any, problems: list[tuple[str, str]]) -> None:
        """Set a row aside with its problems."""
        self.rejected.setdefault(line, raw)
        self.problems.extend(RowProblem(line, f, reason, self.unit) for f, reason in problems)

    def describe(self, problems: list[RowProblem] | None = None) -> str:
        """A message naming each problem's line and field (the first 50 of them)."""
        problems = self.problems if problems is None else problems
        bad = len({p.line for p in problems})
        shown = "\n".join(f"  {p}" for p in problems[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        return f"{self.path}: {bad} invalid {self.unit}(s), nothing appended:\n{shown}{more}"


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What :func:`ingest_file` did."""

    rows: int
    appended: int
    existing: int
    rejected: int
    head_seq: int
    head_hash: str


def file_format(path: Path, format: str | None = None) -> str:
    """The format named, or the one a file's suffix implies; :class:`InputError` if neither."""
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"format: {format!r} is not one of {', '.join(FORMATS)}")
        return format
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InputError(
            f"{path}: cannot tell the format from {path.suffix!r}; use .csv, .jsonl or .parquet"
        )
    return found


def read_events(
    path: str | Path,
    *,
    format: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Read and validate every row of an event file; never raises for a bad row.

    File-level faults (missing file, unreadable or undecodable content, unknown or
    missing columns) raise :class:`InputError`; each bad row becomes a
    :class:`RowProblem` in the result, with its raw content kept for a rejects file.
    """
    path = Path(path)
    kind = file_format(path, format)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    result = IngestResult(path, kind)
    if kind == "parquet":
        chunks = _parquet_chunks(path, result)
    else:
        rows = _csv_rows(path, result) if kind == "csv" else _jsonl_rows(path, result)
        chunks = _chunked(rows, result, json_text=kind == "csv")
    with paused_gc():
        for lines, chunk in chunks:
            _validate(lines, chunk, result)
            if progress is not None:
                progress(result.rows)
    result.problems.sort(key=lambda problem: problem.line)
    if progress is not None:
        progress(result.rows)
    return result


def _validate(lines: list[int], rows: list[dict[str, Any]], result: IngestResult) -> None:
    """Validate rows, all at once when they are all fine (fast), else one by one."""
    if not rows:
        return
    try:
        events = _EVENTS.validate_python(rows)
    except ValidationError:
        for line, row in zip(lines, rows, strict=True):
            try:
                event = EventIn.model_validate(row)
            except ValidationError as err:
                result.reject(line, row, validation_problems(err))
                continue
            result.events.append(event)
            result.lines.append(line)
        return
    result.events.extend(events)
    result.lines.extend(lines)


def _chunked(
    rows: Iterator[tuple[int, dict[str, Any]]], result: IngestResult, *, json_text: bool
) -> Iterator[Chunk]:
    """Rows gathered into chunks; with ``json_text``, ``attributes`` parsed from JSON text."""
    lines: list[int] = []
    chunk: list[dict[str, Any]] = []
    for line, row in rows:
        lines.append(line)
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield _json_attributes(lines, chunk, result) if json_text else (lines, chunk)
            lines, chunk = [], []
    yield _json_attributes(lines, chunk, result) if json_text else (lines, chunk)


def _json_attributes(lines: list[int], rows: list[dict[str, Any]], result: IngestResult) -> Chunk:
    """Parse each row's JSON-text ``attributes`` in place; rows where it is bad are rejected."""
    kept_lines: list[int] = []
    kept: list[dict[str, Any]] = []
    loads = orjson.loads
    for line, row in zip(lines, rows, strict=True):
        text = row.get("attributes")
        if text is None or text == "":
            row.pop("attributes", None)
        elif type(text) is str:
            try:
                value = loads(text)
            except orjson.JSONDecodeError as err:
                result.reject(line, row, [("attributes", f"invalid JSON: {err}")])
                continue
            if type(value) is not dict:
                result.reject(line, row, [("attributes", "must be a JSON object")])
                continue
            row["attributes"] = value
        kept_lines.append(line)
        kept.append(row)
    return kept_lines, kept


def _columns(path: Path, names: list[str], where: str) -> None:
    unknown = [name for name in names if name not in REQUIRED and name not in OPTIONAL]
    missing = [name for name in REQUIRED if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    faults = []
    if unknown:
        faults.append(f"unknown column(s) {', '.join(unknown)}")
    if missing:
        faults.append(f"missing column(s) {', '.join(missing)}")
    if repeated:
        faults.append(f"repeated column(s) {', '.join(repeated)}")
    if faults:
        raise InputError(
            f"{path}: {where}: {'; '.join(faults)} (columns: {', '.join(REQUIRED + OPTIONAL)})"
        )


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text") from err


def _csv_rows(path: Path, result: IngestResult) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(_text(path), newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}: empty file; expected a header line") from None
    except csv.Error as err:
        raise InputError(f"{path}: line 1: {err}") from err
    header = [name.strip() for name in header]
    _columns(path, header, "line 1")
    return _csv_records(path, reader, header, result)


def _csv_records(
    path: Path, reader: Any, header: list[str], result: IngestResult
) -> Iterator[tuple[int, dict[str, Any]]]:
    width = len(header)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputError(f"{path}: line {line}: {err}") from err
        if not cells:
            continue
        if len(cells) != width:
            result.reject(line, cells, [("(row)", f"has {len(cells)} cells; the header has "
                                                  f"{width}")])
            continue
        row: dict[str, Any] = dict(zip(header, cells, strict=True))
        if row.get("supersedes") == "":
            del row["supersedes"]
        yield line, row


def _jsonl_rows(path: Path, result: IngestResult) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as lines:
        for line, data in enumerate(lines, start=1):
            if not data.strip():
                continue
            try:
                row = orjson.loads(data)
            except orjson.JSONDecodeError as err:
                result.reject(line, data.decode("utf-8", "replace").rstrip("\r\n"),
                              [("(row)", f"invalid JSON: {err}")])
                continue
            if not isinstance(row, dict):
                result.reject(line, row, [("(row)", "not a JSON object")])
                continue
            yield line, row


def _parquet_chunks(path: Path, result: IngestResult) -> Iterator[Chunk]:
    import pyarrow as pa  # here, not at the top: pyarrow takes a while to import
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable Parquet file: {err}") from err
    names = list(schema.names)
    _columns(path, names, "columns")
    stamp = schema.field("occurred_at").type
    if pa.types.is_timestamp(stamp) and stamp.tz is None:
        raise InputError(
            f"{path}: occurred_at: the timestamp column has no time zone; "
            "naive date-times are refused"
        )
    if "attributes" in names and not (
        pa.types.is_string(schema.field("attributes").type)
        or pa.types.is_large_string(schema.field("attributes").type)
    ):
        raise InputError(f"{path}: attributes: must be a string column of JSON objects")
    return _parquet_batches(path, names, result)


def _parquet_batches(path: Path, names: list[str], result: IngestResult) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
            columns = [_pylist(batch.column(name)) for name in names]
            rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
            lines = list(range(done + 1, done + 1 + len(rows)))
            done += len(rows)
            yield _json_attributes(lines, rows, result)
    except pa.ArrowException as err:
        raise InputError(f"{path}: after row {done}: unreadable: {err}") from err


def _pylist(column: Any) -> list[Any]:
    """A column's values as Python objects; timestamps made 6x faster than pyarrow does."""
    import pyarrow as pa

    if not pa.types.is_timestamp(column.type) or column.type.tz is None:
        return list(column.to_pylist())
    micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    return [None if us is None else EPOCH + timedelta(microseconds=us) for us in micros]


def schema_validator(policy: CompiledPolicy) -> Validator:
    """The ledger ``validate`` hook: the event fits the policy's type and attribute schema.

    The one check of an event's attributes on every ingest path (HTTP, CloudEvents,
    batches, files): :meth:`~trustledger.policy.compiled.CompiledEventType.normalise`,
    which applies each attribute's declared bounds (or the default bound,
    :data:`~trustledger.policy.compiled.ATTRIBUTE_LIMIT`) and refuses attributes whose
    points cannot be computed. Problems are ``("attributes", reason)`` naming the attribute.
    """

    def check(event: EventIn) -> list[tuple[str, str]]:
        if event.type == RETRACTION:
            if event.attributes:
                return [("attributes", "a retraction carries no attributes")]
            return []
        spec = policy.event_types.get(event.type)
        if spec is None:
            return [("type", f"{event.type!r} is not an event type of policy {policy.name}")]
        normal = spec.normalise(event.attributes)
        return [("attributes", normal)] if isinstance(normal, str) else []

    return check


def ingest_file(
    ledger: Ledger,
    path: str | Path,
    *,
    rejects: str | Path | None = None,
    validate: Validator | None = None,
    format: str | None = None,
    progress: Phase | None = None,
) -> IngestReport:
    """Read an event file and append it to ``ledger`` as one atomic batch.

    Without ``rejects``: if any row is bad (unreadable, invalid, refused by
    ``validate``, ``supersedes`` naming no earlier event), nothing is appended and
    :class:`InputError` names every bad line and field. With ``rejects``: bad rows
    are written there (JSON Lines, see the module docstring) and the rest appended.
    A key already used with different content raises :class:`ConflictError` either way.
    """
    result = read_events(
        path, format=format, progress=None if progress is None else lambda n: progress("read", n)
    )
    if result.problems and rejects is None:
        raise InputError(result.describe())
    rows = result.rows
    events, lines = result.events, result.lines
    while True:
        try:
            appended = ledger.append_bulk(
                events, validate=validate,
                progress=None if progress is None else lambda n: progress("append", n),
            )
            break
        except BatchError as err:
            problems = [RowProblem(lines[p.index], p.field, p.reason, result.unit)
                        for p in err.problems]
            if rejects is None:
                raise InputError(result.describe(problems)) from err
            bad = {p.index for p in err.problems}
            for problem in err.problems:
                result.reject(lines[problem.index],
                              events[problem.index].model_dump(mode="json"),
                              [(problem.field, problem.reason)])
            events = [event for i, event in enumerate(events) if i not in bad]
            lines = [line for i, line in enumerate(lines) if i not in bad]
    if rejects is not None:
        _write_rejects(Path(rejects), result)
    return IngestReport(
        rows=rows,
        appended=appended.appended,
        existing=appended.existing,
        rejected=len(result.rejected),
        head_seq=appended.head_seq,
        head_hash=appended.head_hash,
    )


def _write_rejects(path: Path, result: IngestResult) -> None:
    by_line: dict[int, list[dict[str, str]]] = {}
    for problem in result.problems:
        by_line.setdefault(problem.line, []).append(
            {"field": problem.field, "reason": problem.reason}
        )
    with path.open("wb") as out:
        for line in sorted(result.rejected):
            record = {result.unit: line, "problems": by_line.get(line, []),
                      "row": result.rejected[line]}
            out.write(orjson.dumps(record, default=str) + b"\n")
