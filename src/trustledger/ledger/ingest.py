"""Event files (CSV, JSON Lines, Parquet) checked batch by batch and appended in one transaction.

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

:func:`ingest_file` streams the file in batches (never the whole file in memory):
each batch is checked column-wise by :mod:`trustledger.ledger.columnar` (the checks
the HTTP batch endpoint makes, with the same messages) and its clean rows are hashed
and inserted (:mod:`trustledger.ledger.appender`), all in **one** write transaction.
For a large file a forked worker process (:mod:`trustledger.ledger.ingest_worker`)
reads, checks and hashes the next batch while this one is inserted, and hands it over
in shared memory.
Every row of the file is checked, also after a bad one; if any row is bad the
transaction is rolled back at the end, so nothing is written and every bad row is
named. With ``rejects``, the clean rows are committed and each bad row goes to a JSON
Lines file, one ``{"line": n, "problems": [{"field": ..., "reason": ..., "rule": ...}],
"row": {...}}`` per bad row (for Parquet ``{"row": n, "problems": [...], "values": {...}}``).
"""

from __future__ import annotations

import csv
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import orjson

from trustledger.errors import ConflictError, InputError
from trustledger.ledger.columnar import (
    EventBatch,
    EventRules,
    RowProblem,
    check_batch,
    event_of_row,
    from_arrow,
    from_rows,
    policy_problem,
    string_column,
)
from trustledger.ledger.models import EventIn

if TYPE_CHECKING:
    import numpy as np

    from trustledger.ledger.appender import ChainAppender, Prepared
    from trustledger.ledger.store import Ledger, Validator
    from trustledger.policy import CompiledPolicy

__all__ = [
    "BATCH",
    "FORMATS",
    "OPTIONAL",
    "REQUIRED",
    "IngestReport",
    "IngestResult",
    "PolicyCheck",
    "RowProblem",
    "file_format",
    "file_rows",
    "ingest_file",
    "read_events",
    "schema_validator",
]

FORMATS = ("csv", "jsonl", "parquet")
"""File formats :func:`ingest_file` reads."""

REQUIRED = ("source", "source_event_id", "subject", "type", "occurred_at")
"""Columns every event file must have."""

OPTIONAL = ("attributes", "supersedes")
"""Columns an event file may have."""

BATCH = 65_536
"""Rows checked and inserted at a time: the memory an ingest holds is a few batches."""

SHOWN = 50
"""How many problems an error message lists (it says how many more there are)."""

WORKER_BYTES = 4 << 20
"""Files from this size on are read, checked and hashed in a worker process (see
:func:`ingest_file`) when ``worker`` is not given."""

_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
             ".pq": "parquet"}

Progress = Callable[[int], None]
"""Called after each batch with the number of rows done so far."""

T = TypeVar("T")


@dataclass(frozen=True)
class PolicyCheck:
    """The check of an event against a policy: its type, attribute schema and dates.

    Callable on one event (a :data:`~trustledger.ledger.store.Validator`, as the HTTP
    API's single-event path uses it); bulk paths read :attr:`policy` and check whole
    batches with the same rule (:func:`~trustledger.ledger.columnar.policy_problem`).
    """

    policy: CompiledPolicy
    recorded_at: datetime | None = None
    """The moment of appending: reported ``date`` attributes may not be later."""

    def __call__(self, event: EventIn) -> list[tuple[str, str]]:
        """``(field, reason)`` of the event's misfit, or nothing."""
        found = policy_problem(event, self.policy, self.recorded_at)
        return [] if found is None else [found]


def schema_validator(policy: CompiledPolicy, recorded_at: datetime | None = None) -> PolicyCheck:
    """The ledger ``validate`` hook: the event fits the policy's type and attribute schema.

    The one check of an event's attributes on every ingest path (HTTP, CloudEvents,
    batches, files): :meth:`~trustledger.policy.compiled.CompiledEventType.normalise`,
    which applies each attribute's declared bounds (or the default bound,
    :data:`~trustledger.policy.compiled.ATTRIBUTE_LIMIT`) and refuses attributes whose
    points cannot be computed; with ``recorded_at`` (the moment of appending), reported
    dates are checked too. Problems are ``("type" | "attributes", reason)``.
    """
    return PolicyCheck(policy, recorded_at)


@dataclass
class IngestResult:
    """A file checked without a ledger (:func:`read_events`): its clean events and problems."""

    path: Path
    format: str
    events: list[EventIn] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0
    """Rows read, valid or not."""

    @property
    def unit(self) -> str:
        """What the numbers count: ``"line"`` for text files, ``"row"`` for Parquet."""
        return unit_of(self.format)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What :func:`ingest_file` did."""

    rows: int
    appended: int
    existing: int
    rejected: int
    head_seq: int
    head_hash: str


def unit_of(kind: str) -> str:
    """What problem numbers count in a file of this format: ``row`` (Parquet) or ``line``."""
    return "row" if kind == "parquet" else "line"


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


def file_rows(path: Path, format: str | None = None) -> int | None:
    """How many rows a file holds, when that is known without reading it (Parquet)."""
    if file_format(path, format) != "parquet" or not path.is_file():
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowException, OSError):
        return None


# -- reading batches ---------------------------------------------------------------------------


def batches(path: Path, kind: str, size: int = BATCH) -> Iterator[EventBatch]:
    """The file's rows as :class:`EventBatch` es of at most ``size`` rows, read as needed.

    File-level faults (missing file, unreadable content, unknown or missing columns,
    a column of the wrong type) raise :class:`InputError` naming the file and column.
    """
    if size < 1:
        raise InputError("batch size: must be at least 1")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if kind == "parquet":
        yield from _parquet_batches(path, size)
        return
    rows = _csv_rows(path) if kind == "csv" else _jsonl_rows(path)
    lines: list[int] = []
    chunk: list[Any] = []
    problems: list[tuple[int, str, str]] = []
    for line, row, problem in rows:
        if problem is not None:
            problems.append((len(chunk), *problem))
        lines.append(line)
        chunk.append(row)
        if len(chunk) == size:
            yield _row_batch(lines, chunk, problems, kind)
            lines, chunk, problems = [], [], []
    if chunk:
        yield _row_batch(lines, chunk, problems, kind)


def _row_batch(lines: list[int], rows: list[Any], problems: list[tuple[int, str, str]],
               kind: str) -> EventBatch:
    batch = from_rows(lines, rows, json_text=kind == "csv")
    batch.problems = problems
    return batch


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


RowRead = tuple[int, Any, tuple[str, str] | None]
"""A row as read: its line, its content, and why it cannot be read (if so)."""


def _utf8_lines(path: Path, data: IO[bytes]) -> Iterator[str]:
    for number, line in enumerate(data, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: line {number}: not UTF-8 text") from err
        yield text.removeprefix("\ufeff") if number == 1 else text


def _csv_rows(path: Path) -> Iterator[RowRead]:
    with path.open("rb") as data:
        reader = csv.reader(_utf8_lines(path, data), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file; expected a header line") from None
        except csv.Error as err:
            raise InputError(f"{path}: line 1: {err}") from err
        header = [name.strip() for name in header]
        _columns(path, header, "line 1")
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
                yield line, cells, ("(row)", f"has {len(cells)} cells; the header has {width}")
                continue
            yield line, dict(zip(header, cells, strict=True)), None


def _jsonl_rows(path: Path) -> Iterator[RowRead]:
    with path.open("rb") as lines:
        for line, data in enumerate(lines, start=1):
            if not data.strip():
                continue
            try:
                row = orjson.loads(data)
            except orjson.JSONDecodeError as err:
                yield line, data.decode("utf-8", "replace").rstrip("\r\n"), \
                    ("(row)", f"invalid JSON: {err}")
                continue
            if not isinstance(row, dict):
                yield line, row, ("(row)", "not a JSON object")
                continue
            yield line, row, None


def _parquet_batches(path: Path, size: int) -> Iterator[EventBatch]:
    import pyarrow as pa  # here, not at the top: pyarrow takes a while to import
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable Parquet file: {err}") from err
    schema = file.schema_arrow
    names = list(schema.names)
    _columns(path, names, "columns")
    for name in names:
        kind = schema.field(name).type
        if name == "occurred_at":
            if pa.types.is_timestamp(kind):
                if kind.tz is None:
                    raise InputError(
                        f"{path}: occurred_at: the timestamp column has no time zone; "
                        "naive date-times are refused"
                    )
                continue
            if string_column(kind):
                continue
            raise InputError(f"{path}: occurred_at: must be a timestamp column with a time "
                             f"zone or a string column of ISO 8601 text, not {kind}")
        if not string_column(kind):
            what = "a string column of JSON objects" if name == "attributes" else \
                "a string column"
            raise InputError(f"{path}: {name}: must be {what}, not {kind}")
    def read() -> Iterator[pa.RecordBatch]:
        # One reader per row group: a reader over the whole file buffers the column chunks
        # it has read ahead until it is done, and its memory grows with the file.
        for group in range(file.num_row_groups):
            yield from file.iter_batches(batch_size=size, row_groups=[group])

    done = 0
    try:
        for batch in _prefetched(read()):
            yield from_arrow(batch, done + 1)
            done += batch.num_rows
    except pa.ArrowException as err:
        raise InputError(f"{path}: after row {done}: unreadable: {err}") from err


def _prefetched(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """The items of ``items``, read up to ``depth`` ahead in a thread.

    Parquet decoding releases the interpreter lock: the next batch is read while
    this one is checked, hashed and inserted. An error while reading is raised here.
    """
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as err:  # handed to the reader, who raises it
            put((False, err))

    thread = threading.Thread(target=produce, name="trustledger-ingest-read", daemon=True)
    thread.start()
    try:
        while True:
            more, value = slots.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()


# -- checking and appending --------------------------------------------------------------------


def _rules(validate: Validator | None, rules: EventRules | None) -> EventRules:
    rules = rules or EventRules()
    if isinstance(validate, PolicyCheck):
        return replace(rules, policy=validate.policy,
                       recorded_at=validate.recorded_at or rules.recorded_at)
    if validate is not None:
        return replace(rules, validate=validate)
    return rules


def _row_problems(lines: np.ndarray, problems: list[tuple[int, str, str, str]], unit: str
                  ) -> list[RowProblem]:
    return [RowProblem(int(lines[i]), name, reason, unit, rule)
            for i, name, reason, rule in problems]


class _Problems:
    """The problems of a whole file: counted in full, the first :data:`SHOWN` kept."""

    def __init__(self, path: Path, unit: str) -> None:
        self.path, self.unit = path, unit
        self.shown: list[RowProblem] = []
        self.count = 0
        self.rows = 0

    def add(self, problems: list[RowProblem]) -> None:
        self.rows += len({problem.line for problem in problems})
        self.count += len(problems)
        self.shown.extend(problems[: max(0, SHOWN - len(self.shown))])

    def message(self) -> str:
        listed = "\n".join(f"  {problem}" for problem in self.shown)
        more = self.count - len(self.shown)
        tail = f"\n  ... and {more} more problem(s)" if more > 0 else ""
        return (f"{self.path}: {self.rows} invalid {self.unit}(s), nothing appended:\n"
                f"{listed}{tail}")


def ingest_file(
    ledger: Ledger,
    path: str | Path,
    *,
    rejects: str | Path | None = None,
    validate: Validator | None = None,
    format: str | None = None,
    progress: Progress | None = None,
    rules: EventRules | None = None,
    batch_size: int = BATCH,
    worker: bool | None = None,
) -> IngestReport:
    """Check every row of an event file and append it to ``ledger`` in one transaction.

    Without ``rejects``: if any row is bad (unreadable, invalid, refused by the
    ``rules`` or ``validate``, a key repeated with other content, ``supersedes`` naming
    no earlier event), nothing is appended and :class:`InputError` names the bad
    lines, fields and rules (the first :data:`SHOWN`, and how many more). With
    ``rejects``: bad rows are written there (JSON Lines, see the module docstring) and
    the rest appended. A key already in the ledger with different content raises
    :class:`ConflictError` either way. A file without any event row is refused.

    With ``worker``, a worker process reads, checks and hashes the file's batches
    (:func:`~trustledger.ledger.appender.prepare`) one batch ahead while this process
    writes them: the same checks and the same chain, on a second core. By default
    (``None``) files from :data:`WORKER_BYTES` on get one, where processes can be forked
    and the rules are those of :class:`EventRules` alone (no ``validate`` hook: it might
    not be safe to run in another process) and there is no ``rejects`` file (it needs
    each bad row as read).
    """
    path = Path(path)
    kind = file_format(path, format)
    unit = unit_of(kind)
    checks = _rules(validate, rules)
    problems = _Problems(path, unit)
    conflicts: list[str] = []
    rows = appended = existing = 0
    if worker is None:
        from trustledger.ledger.ingest_worker import can_fork

        worker = (rejects is None and checks.validate is None and can_fork()
                  and path.is_file() and path.stat().st_size >= WORKER_BYTES)
    elif worker and rejects is not None:
        raise ValueError("a rejects file needs each bad row as read: no worker process")
    with ExitStack() as stack:
        out = None if rejects is None else stack.enter_context(Path(rejects).open("wb"))
        appender = stack.enter_context(ledger.bulk_appender())
        if checks.recorded_at is None and checks.policy is not None:
            checks = replace(checks, recorded_at=ledger.now())
        prepared = stack.enter_context(closing(
            _from_worker(path, kind, batch_size, checks, appender) if worker
            else _here(path, kind, batch_size, checks, appender)))
        for batch, ready in prepared:
            outcome = appender.write(ready, unit)
            found = sorted(ready.problems + outcome.problems, key=lambda p: p[0])
            if found:
                problems.add(_row_problems(ready.lines, found, unit))
                if out is not None and batch is not None:
                    _write_rejects(out, batch, found, unit)
            conflicts.extend(outcome.conflicts)
            rows += len(ready)
            appended += outcome.appended
            existing += outcome.existing
            if progress is not None:
                progress(rows)
        # Raised inside the transaction: it rolls back, and nothing is written.
        if rows == 0:
            raise InputError(f"{path}: no events in the file; nothing appended")
        if conflicts:
            raise ConflictError(
                f"{len(conflicts)} event key(s) already recorded with different content, "
                f"nothing written: {'; '.join(conflicts[:20])}"
                + (f" (and {len(conflicts) - 20} more)" if len(conflicts) > 20 else "")
            )
        if problems.count and out is None:
            raise InputError(problems.message())
        head_seq, head_hash = appender.seq, appender.hash
    return IngestReport(rows=rows, appended=appended, existing=existing,
                        rejected=problems.rows, head_seq=head_seq, head_hash=head_hash)


def _here(path: Path, kind: str, size: int, rules: EventRules, appender: ChainAppender,
          ) -> Generator[tuple[EventBatch | None, Prepared], None, None]:
    """The file's batches, checked and prepared in this process, each from the chain's head."""
    from trustledger.ledger.appender import prepare

    for batch in batches(path, kind, size):
        yield batch, prepare(check_batch(batch, rules), appender.seq, appender.hash,
                             appender.recorded_at_us, copy=appender.postgres)


def _from_worker(path: Path, kind: str, size: int, rules: EventRules, appender: ChainAppender,
                 ) -> Generator[tuple[EventBatch | None, Prepared], None, None]:
    """The file's batches, checked and prepared one batch ahead by a worker process.

    See :mod:`trustledger.ledger.ingest_worker`: each batch must be written before the
    next is asked for (its columns may sit in a shared slot the worker fills again).
    """
    from trustledger.ledger.ingest_worker import prepared_by_worker

    with closing(prepared_by_worker(lambda: batches(path, kind, size), rules, appender.seq,
                                    appender.hash, appender.recorded_at_us,
                                    copy=appender.postgres)) as ready_batches:
        for ready in ready_batches:
            yield None, ready


def _write_rejects(out: IO[bytes], batch: EventBatch, found: list[tuple[int, str, str, str]],
                   unit: str) -> None:
    by_row: dict[int, list[dict[str, str]]] = {}
    for index, name, reason, rule in found:
        by_row.setdefault(index, []).append({"field": name, "reason": reason, "rule": rule})
    for index, listed in by_row.items():
        content = "values" if unit == "row" else "row"
        record = {unit: int(batch.lines[index]), "problems": listed,
                  content: batch.raw(index)}
        out.write(orjson.dumps(record, default=str) + b"\n")


def read_events(
    path: str | Path,
    *,
    format: str | None = None,
    rules: EventRules | None = None,
    batch_size: int = BATCH,
) -> IngestResult:
    """Check every row of an event file without a ledger; never raises for a bad row.

    For small files and tools (it keeps every event): the checks of :func:`ingest_file`
    that need no ledger (keys repeated within the file and ``supersedes`` are checked
    only when appending). File-level faults raise :class:`InputError`.
    """
    path = Path(path)
    kind = file_format(path, format)
    result = IngestResult(path, kind)
    checks = rules or EventRules()
    for batch in batches(path, kind, batch_size):
        checked = check_batch(batch, checks)
        result.problems.extend(_row_problems(batch.lines, checked.problems, result.unit))
        for index in checked.ok.nonzero()[0]:
            result.events.append(event_of_row(batch.raw(int(index)), batch.json_text))
            result.lines.append(int(batch.lines[index]))
        result.rows += len(batch)
    return result
