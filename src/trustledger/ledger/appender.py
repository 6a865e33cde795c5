"""Checked batches of events appended to the chain: one pass of hashing, one statement a batch.

A batch goes in two steps. :func:`prepare` turns the clean rows of
:func:`trustledger.ledger.columnar.check_batch` into a :class:`Prepared` batch: the
canonical payload texts, their hashes and the chain's hashes (the encoding of
:mod:`trustledger.ledger.chain`: headers assembled column-wise, then hashed in order),
and for PostgreSQL the binary ``COPY`` data. It needs nothing from the ledger but the chain
position it starts from, so :func:`trustledger.ledger.ingest.ingest_file` can prepare
the next batch in a worker process while this one is written. :class:`ChainAppender`
then writes the batches in order, inside the one write transaction of
:meth:`trustledger.ledger.Ledger.bulk_appender`: one ``executemany`` (SQLite) or one
``COPY ... FROM STDIN`` under a savepoint (PostgreSQL, psycopg 3) per batch. A batch
prepared from another chain position than the ledger's (rows of the batch before
were refused) gets its chain hashes again.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from trustledger.ledger.chain import COLUMNS, EVENT_KIND, FORMAT
from trustledger.ledger.columnar import Checked, json_text, payload_texts

FindKeys = Callable[[sa.Connection, Iterable[tuple[str, str]]],
                    dict[tuple[str, str], tuple[int, str]]]
"""Looks event keys up in the ledger: ``(source, source_event_id) -> (seq, payload_hash)``."""

INSERT_SQL = (f"INSERT INTO entries ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(COLUMNS))})")
"""The SQLite statement inserting one entry, columns in :data:`chain.COLUMNS` order."""

COPY_SQL = f"COPY entries ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
"""The PostgreSQL statement loading entries (binary format), columns in the same order."""


@dataclass
class BatchOutcome:
    """What :meth:`ChainAppender.append` did with one batch."""

    appended: int = 0
    existing: int = 0
    problems: list[tuple[int, str, str, str]] = field(default_factory=list)
    """``(index, field, reason, rule)``: rows refused because of what the ledger holds."""
    conflicts: list[str] = field(default_factory=list)
    """Keys recorded before this ingest with different content."""


def sha256_hex(values: pa.Array) -> list[str]:
    """``hex(SHA-256(value as UTF-8))`` of each text: the payload hashes."""
    sha256 = hashlib.sha256
    return [sha256(data).hexdigest() for data in values.cast(pa.binary()).to_pylist()]


def chain_hashes(seq: int, prev_hash: str, recorded_at_us: int, subjects: pa.Array,
                 sources: pa.Array, ids: pa.Array, payload_hashes: list[str]) -> list[str]:
    """The hashes of new event entries after ``(seq, prev_hash)``, in order.

    The same hashes as :func:`trustledger.ledger.chain.entry_hash`: each header (the
    JSON array of the chain's encoding) is assembled column-wise, then each is hashed
    with the previous entry's hash in one pass.
    """
    sha256 = hashlib.sha256
    n = len(payload_hashes)
    seqs = pa.array(np.arange(seq + 1, seq + 1 + n, dtype=np.int64)).cast(pa.string())
    heads = pc.binary_join_element_wise(
        f'["{FORMAT}",', seqs, f',"{EVENT_KIND}","', json_text(subjects),
        f'",{recorded_at_us},"', json_text(sources), '","', json_text(ids), '","',
        pa.array(payload_hashes, pa.string()), '"]', "",
    ).cast(pa.binary()).to_pylist()
    hashes: list[str] = []
    add = hashes.append
    prev = prev_hash.encode()
    for head in heads:
        hashed = sha256(head + prev).hexdigest()
        add(hashed)
        prev = hashed.encode()
    return hashes


@dataclass
class Prepared:
    """A checked batch made ready for the chain (see :func:`prepare`).

    ``rows`` are the indexes of the batch's clean rows; the columns, ``payloads`` and
    both hash lists hold those rows only, in order. ``hashes`` and ``copy`` (the
    binary ``COPY`` data, for PostgreSQL) assume the rows follow the entry ``(seq, prev_hash)``.
    Pickled (to come from a worker process), the hash lists travel as Arrow arrays.
    """

    lines: np.ndarray
    """Every row's line (row, item) number."""
    problems: list[tuple[int, str, str, str]]
    """The rows the checks refused: ``(index, field, reason, rule)``."""
    rows: np.ndarray
    subjects: pa.Array
    sources: pa.Array
    ids: pa.Array
    supersedes: pa.Array
    payloads: pa.Array
    payload_hashes: list[str]
    seq: int
    prev_hash: str
    hashes: list[str]
    copy: pa.Buffer | None = None

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def end(self) -> tuple[int, str]:
        """The chain position after these rows, if all of them are written."""
        if not self.hashes:
            return self.seq, self.prev_hash
        return self.seq + len(self.hashes), self.hashes[-1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("payload_hashes", "hashes"):
            state[name] = pa.array(state[name], pa.string())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("payload_hashes", "hashes"):
            state[name] = state[name].to_pylist()
        self.__dict__.update(state)


def prepare(checked: Checked, seq: int, prev_hash: str, recorded_at_us: int, *,
            copy: bool = False) -> Prepared:
    """The clean rows of a checked batch with their payloads and hashes after ``(seq, prev_hash)``.

    With ``copy``, also their rows as binary ``COPY ... FROM STDIN`` data (for PostgreSQL).
    Pure: it reads nothing from the ledger.
    """
    batch = checked.batch
    rows = np.flatnonzero(checked.ok)
    subjects, sources, ids = batch.subject, batch.source, batch.source_event_id
    supersedes = batch.supersedes
    if len(rows) != len(batch):
        take = pa.array(rows, pa.int64())
        subjects, sources, ids = subjects.take(take), sources.take(take), ids.take(take)
        supersedes = supersedes.take(take)
    payloads = payload_texts(checked, rows)
    payload_hashes = sha256_hex(payloads)
    hashes = chain_hashes(seq, prev_hash, recorded_at_us, subjects, sources, ids,
                          payload_hashes)
    text = None
    if copy and len(rows):
        text = copy_lines(seq + 1, recorded_at_us, subjects, sources, ids, payloads,
                          payload_hashes, [prev_hash, *hashes[:-1]], hashes)
    return Prepared(batch.lines, checked.problems, rows, subjects, sources, ids, supersedes,
                    payloads, payload_hashes, seq, prev_hash, hashes, text)


class _Refused(Exception):
    """The database refused a row of a batch (``error``); ``inserted`` rows before it are in."""

    def __init__(self, inserted: int, error: BaseException) -> None:
        super().__init__(inserted, error)
        self.inserted = inserted
        self.error = error


class ChainAppender:
    """Appends checked batches of events to the chain inside one write transaction.

    If the unique key refuses a row (an event already in the ledger, or written
    earlier in this transaction), the rows before it stay written (SQLite; PostgreSQL
    rolls the batch back to its savepoint), the keys of the rest are looked up, and
    the rest is inserted again: the same event again counts as ``existing``; the same
    key with other content is a conflict (recorded before) or a refused row (written
    earlier in this transaction).
    """

    def __init__(self, conn: sa.Connection, seq: int, prev_hash: str, recorded_at_us: int,
                 find_keys: FindKeys) -> None:
        self.start_seq = seq
        self.seq = seq
        self.hash = prev_hash
        self.recorded_at_us = recorded_at_us
        self._conn = conn
        self._find = find_keys
        self._driver: Any = conn.connection.driver_connection
        self.postgres = conn.dialect.name == "postgresql"
        self._error: type[BaseException] = conn.dialect.loaded_dbapi.IntegrityError
        self._first_seqs: list[int] = []
        self._lines: list[np.ndarray | int] = []  # per batch: each row's line, or the first
        self._unit = "line"

    def line_of(self, seq: int) -> int:
        """The line (row, item) number of an entry this appender wrote."""
        at = bisect.bisect_right(self._first_seqs, seq) - 1
        lines = self._lines[at]
        offset = seq - self._first_seqs[at]
        return lines + offset if isinstance(lines, int) else int(lines[offset])

    def append(self, checked: Checked, unit: str) -> BatchOutcome:
        """Append the clean rows of a checked batch; report the rows the ledger refuses."""
        return self.write(prepare(checked, self.seq, self.hash, self.recorded_at_us,
                                  copy=self.postgres), unit)

    def write(self, prepared: Prepared, unit: str) -> BatchOutcome:
        """Append a prepared batch; report the rows the ledger refuses."""
        out = BatchOutcome()
        self._unit = unit
        rows = prepared.rows
        if len(rows) == 0:
            return out
        keep = np.ones(len(rows), dtype=bool)  # rows still to write
        if prepared.supersedes.null_count < len(rows):
            self._targets(prepared, keep, out)
        repeats_checked = False
        while True:
            chosen = np.flatnonzero(keep)
            if len(chosen) == 0:
                break
            try:
                self._insert(prepared, chosen)
            except _Refused as refused:
                # The unique key refused a row: a key repeated within the batch, or one
                # already stored. The rows before it are written; sort out the rest.
                keep[chosen[:refused.inserted]] = False
                out.appended += refused.inserted
                left = int(keep.sum())
                if not repeats_checked:
                    repeats_checked = True
                    self._repeats(prepared, keep, out)
                self._known(prepared, np.flatnonzero(keep), keep, out)
                if refused.inserted == 0 and int(keep.sum()) == left:
                    raise refused.error from None  # not a key: nothing to sort out
                continue
            out.appended += len(chosen)
            break
        out.problems.sort(key=lambda problem: problem[0])
        return out

    def _repeats(self, prepared: Prepared, keep: np.ndarray, out: BatchOutcome) -> None:
        """Keys repeated within the batch: the same event again is ``existing``, else refused."""
        codes = pc.binary_join_element_wise(prepared.sources, prepared.ids, "\x1f")
        numbers = np.asarray(codes.dictionary_encode().indices.to_numpy(zero_copy_only=False),
                             dtype=np.int64)
        repeated = np.bincount(numbers)[numbers] > 1
        first: dict[int, int] = {}
        hashes, rows = prepared.payload_hashes, prepared.rows
        for j in np.flatnonzero(repeated):
            earlier = first.setdefault(int(numbers[j]), int(j))
            if earlier == j:
                continue
            keep[j] = False
            if hashes[earlier] == hashes[j]:
                out.existing += 1
            else:
                out.problems.append((int(rows[j]), "source_event_id",
                                     f"repeats {self._unit} {int(prepared.lines[rows[earlier]])}"
                                     "'s key with different content", "duplicate"))

    def _targets(self, prepared: Prepared, keep: np.ndarray, out: BatchOutcome) -> None:
        """``supersedes`` must name an event of the same source written before this row."""
        wanted = np.flatnonzero(np.asarray(
            pc.is_valid(prepared.supersedes).to_numpy(zero_copy_only=False), dtype=bool))
        if len(wanted) == 0:
            return
        source_list, id_list = prepared.sources.to_pylist(), prepared.ids.to_pylist()
        targets = prepared.supersedes.to_pylist()
        stored = self._find(self._conn, {(source_list[j], targets[j]) for j in wanted})
        superseding = set(wanted.tolist())
        changed = True
        while changed:  # a refused row takes the rows superseding it along
            changed = False
            seen: set[tuple[str, str]] = set()
            for j in range(len(keep)):
                if keep[j] and j in superseding:
                    target = (source_list[j], targets[j])
                    if target not in seen and target not in stored:
                        keep[j] = False
                        changed = True
                        out.problems.append((int(prepared.rows[j]), "supersedes",
                                             f"names no earlier event {target[1]!r} of "
                                             f"source {target[0]!r}", "supersedes"))
                if keep[j]:
                    seen.add((source_list[j], id_list[j]))

    def _known(self, prepared: Prepared, chosen: np.ndarray, keep: np.ndarray,
               out: BatchOutcome) -> None:
        """Sort out the rows whose key is already stored: the same event, or a refusal."""
        source_list, id_list = prepared.sources.to_pylist(), prepared.ids.to_pylist()
        stored = self._find(self._conn, [(source_list[j], id_list[j]) for j in chosen])
        for j in chosen:
            found = stored.get((source_list[j], id_list[j]))
            if found is None:
                continue
            keep[j] = False
            seq, payload_hash = found
            if payload_hash == prepared.payload_hashes[j]:
                out.existing += 1
            elif seq > self.start_seq:
                out.problems.append((int(prepared.rows[j]), "source_event_id",
                                     f"repeats {self._unit} {self.line_of(seq)}'s key with "
                                     "different content", "duplicate"))
            else:
                out.conflicts.append(f"({source_list[j]!r}, {id_list[j]!r}) "
                                     f"(recorded as seq={seq})")

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        cursor = self._driver.cursor()
        try:
            cursor.execute("SAVEPOINT trustledger_batch")
            try:
                yield
            except BaseException:
                cursor.execute("ROLLBACK TO SAVEPOINT trustledger_batch")
                raise
            cursor.execute("RELEASE SAVEPOINT trustledger_batch")
        finally:
            cursor.close()

    def _insert(self, prepared: Prepared, chosen: np.ndarray) -> None:
        """Chain and insert the chosen rows (indexes into ``prepared.rows``), one statement.

        Raises :class:`_Refused` if the unique key refuses a row, saying how many rows
        before it were written (SQLite writes them; PostgreSQL's ``COPY`` is undone).
        """
        n = len(chosen)
        first = self.seq + 1
        subjects, sources, ids = prepared.subjects, prepared.sources, prepared.ids
        payloads, payload_hashes = prepared.payloads, prepared.payload_hashes
        if n != len(prepared.rows):
            take = pa.array(chosen, pa.int64())
            subjects, sources, ids = subjects.take(take), sources.take(take), ids.take(take)
            payloads = payloads.take(take)
            payload_hashes = [payload_hashes[j] for j in chosen]
        if n == len(prepared.rows) and (prepared.seq, prepared.prev_hash) == (self.seq,
                                                                               self.hash):
            hashes, text = prepared.hashes, prepared.copy
        else:  # prepared after other rows than the ledger's last: chain them again
            hashes = chain_hashes(self.seq, self.hash, self.recorded_at_us, subjects, sources,
                                  ids, payload_hashes)
            text = None
        prevs = [self.hash, *hashes[:-1]]
        written = n
        refused: _Refused | None = None
        if self.postgres:
            if text is None:
                text = copy_lines(first, self.recorded_at_us, subjects, sources, ids,
                                  payloads, payload_hashes, prevs, hashes)
            try:
                with self._savepoint(), self._driver.cursor() as cursor, \
                        cursor.copy(COPY_SQL) as copy:
                    copy.write(memoryview(text))
            except self._error as err:
                raise _Refused(0, err) from err
        else:
            values = zip(range(first, first + n), repeat(EVENT_KIND, n), subjects.to_pylist(),
                         sources.to_pylist(), ids.to_pylist(), repeat(self.recorded_at_us, n),
                         payloads.to_pylist(), payload_hashes, prevs, hashes, strict=True)
            cursor = self._driver.cursor()
            try:
                cursor.executemany(INSERT_SQL, values)
            except self._error as err:
                # SQLite undoes only the refused row's statement: the rows before it stay.
                last = cursor.execute("SELECT max(seq) FROM entries").fetchone()[0]
                written = int(last or 0) - first + 1
                refused = _Refused(written, err)
            finally:
                cursor.close()
        if written:
            lines = prepared.lines[prepared.rows[chosen[:written]]]
            self._first_seqs.append(first)
            # Consecutive lines (the usual case) are kept as the first one: O(1) a batch.
            consecutive = int(lines[-1] - lines[0]) == written - 1
            self._lines.append(int(lines[0]) if consecutive else lines)
            self.seq, self.hash = first + written - 1, hashes[written - 1]
        if refused is not None:
            raise refused


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
"""The head of PostgreSQL's binary ``COPY`` format: its signature, no flags, no extension."""

_BYTES = pa.binary()


def copy_lines(first: int, recorded_at_us: int, subjects: pa.Array, sources: pa.Array,
               ids: pa.Array, payloads: pa.Array, payload_hashes: list[str],
               prevs: list[str], hashes: list[str]) -> pa.Buffer:
    """The entries from seq ``first`` on in ``COPY``'s binary format, assembled column-wise.

    Each row is the field count, then each field as its length and its bytes (a
    ``bigint`` as 8 big-endian bytes, text as its UTF-8 bytes), as
    :data:`COPY_SQL` reads them; the buffer carries the format's signature and
    trailer. The server parses no text numbers and no text escapes.
    """
    n = len(hashes)

    def fixed(values: np.ndarray, width: int) -> pa.Array:
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), n, [None, pa.py_buffer(values.tobytes())]).cast(_BYTES)

    def field(values: pa.Array) -> tuple[pa.Array, pa.Array]:
        lengths = np.asarray(pc.binary_length(values).to_numpy(zero_copy_only=False),
                             dtype=">i4")
        return fixed(lengths, 4), values.cast(_BYTES)

    def constant(data: bytes) -> pa.Scalar:
        return pa.scalar(data, _BYTES)

    def digest(values: list[str]) -> pa.Array:
        return pa.array(values, pa.string()).cast(_BYTES)

    head = len(COLUMNS).to_bytes(2, "big") + (8).to_bytes(4, "big")
    hashed = (64).to_bytes(4, "big")
    rows = pc.binary_join_element_wise(
        constant(head), fixed(np.arange(first, first + n, dtype=">i8"), 8),
        constant(len(EVENT_KIND).to_bytes(4, "big") + EVENT_KIND.encode()),
        *field(subjects), *field(sources), *field(ids),
        constant((8).to_bytes(4, "big") + recorded_at_us.to_bytes(8, "big", signed=True)),
        *field(payloads), constant(hashed), digest(payload_hashes), constant(hashed),
        digest(prevs), constant(hashed), digest(hashes), constant(b""),
    )
    _, offsets, values = rows.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[[rows.offset, rows.offset + n]]
    body = np.frombuffer(values, dtype=np.uint8)[int(bounds[0]):int(bounds[1])]
    return pa.py_buffer(np.concatenate([np.frombuffer(COPY_SIGNATURE, dtype=np.uint8), body,
                                        np.frombuffer(b"\xff\xff", dtype=np.uint8)]))
