"""Checked batches of events appended to the chain: one pass of hashing, one statement a batch.

:class:`ChainAppender` extends the chain with the clean rows of
:func:`trustledger.ledger.columnar.check_batch`, one batch at a time, inside the one
write transaction of :meth:`trustledger.ledger.Ledger.bulk_appender`. Each batch is
inserted under a savepoint with one ``executemany`` (SQLite) or one ``COPY ... FROM
STDIN`` (PostgreSQL, psycopg 3). The hashes are those of
:mod:`trustledger.ledger.chain`: headers assembled column-wise, then hashed in order.
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

COPY_SQL = f"COPY entries ({', '.join(COLUMNS)}) FROM STDIN"
"""The PostgreSQL statement loading entries (text format), columns in the same order."""


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


class ChainAppender:
    """Appends checked batches of events to the chain inside one write transaction.

    If the unique key refuses a row (an event already in the ledger, or written
    earlier in this transaction), the batch is rolled back to its savepoint, its keys
    are looked up, and the rest is inserted again: the same event again counts as
    ``existing``; the same key with other content is a conflict (recorded before) or a
    refused row (written earlier in this transaction).
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
        self._postgres = conn.dialect.name == "postgresql"
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
        out = BatchOutcome()
        self._unit = unit
        batch = checked.batch
        rows = np.flatnonzero(checked.ok)
        if len(rows) == 0:
            return out
        payloads = payload_texts(checked, rows)
        payload_hashes = sha256_hex(payloads)
        sources, ids, targets = batch.source, batch.source_event_id, batch.supersedes
        if len(rows) != len(batch):
            take = pa.array(rows, pa.int64())
            sources, ids, targets = sources.take(take), ids.take(take), targets.take(take)
        keep = np.ones(len(rows), dtype=bool)
        if targets.null_count < len(targets):
            self._targets(targets, sources, ids, rows, keep, out)
        repeats_checked = False
        while True:
            chosen = np.flatnonzero(keep)
            if len(chosen) == 0:
                break
            try:
                with self._savepoint():
                    whole = len(chosen) == len(rows)
                    self._insert(checked, rows[chosen],
                                 payloads if whole else payloads.take(pa.array(chosen)),
                                 payload_hashes if whole else
                                 [payload_hashes[j] for j in chosen])
            except self._error:
                # Rolled back to the savepoint. The unique key refused a row: a key repeated
                # within the batch, or one already stored. Sort them out, insert the rest.
                if not repeats_checked:
                    repeats_checked = True
                    self._repeats(sources, ids, payload_hashes, rows, batch.lines, keep, out)
                self._known(sources, ids, payload_hashes, np.flatnonzero(keep), rows, keep,
                            out)
                continue
            out.appended += len(chosen)
            break
        out.problems.sort(key=lambda problem: problem[0])
        return out

    def _repeats(self, sources: pa.Array, ids: pa.Array, payload_hashes: list[str],
                 rows: np.ndarray, lines: np.ndarray, keep: np.ndarray,
                 out: BatchOutcome) -> None:
        """Keys repeated within the batch: the same event again is ``existing``, else refused."""
        codes = pc.binary_join_element_wise(sources, ids, "\x1f").dictionary_encode().indices
        numbers = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
        repeated = np.bincount(numbers)[numbers] > 1
        first: dict[int, int] = {}
        for j in np.flatnonzero(repeated):
            earlier = first.setdefault(int(numbers[j]), int(j))
            if earlier == j:
                continue
            keep[j] = False
            if payload_hashes[earlier] == payload_hashes[j]:
                out.existing += 1
            else:
                out.problems.append((int(rows[j]), "source_event_id",
                                     f"repeats {self._unit} {int(lines[rows[earlier]])}'s key "
                                     "with different content", "duplicate"))

    def _targets(self, supersedes: pa.Array, sources: pa.Array, ids: pa.Array,
                 rows: np.ndarray, keep: np.ndarray, out: BatchOutcome) -> None:
        """``supersedes`` must name an event of the same source written before this row."""
        wanted = np.flatnonzero(np.asarray(
            pc.is_valid(supersedes).to_numpy(zero_copy_only=False), dtype=bool))
        if len(wanted) == 0:
            return
        source_list, id_list = sources.to_pylist(), ids.to_pylist()
        targets = supersedes.to_pylist()
        stored = self._find(self._conn, {(source_list[j], targets[j]) for j in wanted})
        superseding = set(wanted.tolist())
        changed = True
        while changed:  # a refused row takes the rows superseding it along
            changed = False
            seen: set[tuple[str, str]] = set()
            for j in range(len(rows)):
                if keep[j] and j in superseding:
                    target = (source_list[j], targets[j])
                    if target not in seen and target not in stored:
                        keep[j] = False
                        changed = True
                        out.problems.append((int(rows[j]), "supersedes",
                                             f"names no earlier event {target[1]!r} of "
                                             f"source {target[0]!r}", "supersedes"))
                if keep[j]:
                    seen.add((source_list[j], id_list[j]))

    def _known(self, sources: pa.Array, ids: pa.Array, payload_hashes: list[str],
               chosen: np.ndarray, rows: np.ndarray, keep: np.ndarray,
               out: BatchOutcome) -> None:
        """Sort out the rows whose key is already stored: the same event, or a refusal."""
        source_list, id_list = sources.to_pylist(), ids.to_pylist()
        stored = self._find(self._conn, [(source_list[j], id_list[j]) for j in chosen])
        for j in chosen:
            found = stored.get((source_list[j], id_list[j]))
            if found is None:
                continue
            keep[j] = False
            seq, payload_hash = found
            if payload_hash == payload_hashes[j]:
                out.existing += 1
            elif seq > self.start_seq:
                out.problems.append((int(rows[j]), "source_event_id",
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

    def _insert(self, checked: Checked, rows: np.ndarray, payloads: pa.Array,
                payload_hashes: list[str]) -> None:
        """Chain and insert the rows (indexes into the batch) with one statement."""
        batch = checked.batch
        subjects, sources, ids = batch.subject, batch.source, batch.source_event_id
        if len(rows) != len(batch):
            take = pa.array(rows, pa.int64())
            subjects, sources, ids = subjects.take(take), sources.take(take), ids.take(take)
        hashes = chain_hashes(self.seq, self.hash, self.recorded_at_us, subjects, sources,
                              ids, payload_hashes)
        first, n = self.seq + 1, len(hashes)
        prevs = [self.hash, *hashes[:-1]]
        if self._postgres:
            self._copy(first, subjects, sources, ids, payloads, payload_hashes, prevs, hashes)
        else:
            values = zip(range(first, first + n), repeat(EVENT_KIND, n),
                         subjects.to_pylist(), sources.to_pylist(), ids.to_pylist(),
                         repeat(self.recorded_at_us, n), payloads.to_pylist(),
                         payload_hashes, prevs, hashes, strict=True)
            cursor = self._driver.cursor()
            try:
                cursor.executemany(INSERT_SQL, values)
            finally:
                cursor.close()
        written = batch.lines[rows]
        self._first_seqs.append(first)
        # Consecutive lines (the usual case) are kept as the first one: O(1) a batch.
        consecutive = int(written[-1] - written[0]) == n - 1
        self._lines.append(int(written[0]) if consecutive else written)
        self.seq, self.hash = first + n - 1, hashes[-1]

    def _copy(self, first: int, subjects: pa.Array, sources: pa.Array, ids: pa.Array,
              payloads: pa.Array, payload_hashes: list[str], prevs: list[str],
              hashes: list[str]) -> None:
        """``COPY entries FROM STDIN`` in text format, its lines assembled column-wise."""
        n = len(hashes)
        lines = pc.binary_join_element_wise(
            pa.array(np.arange(first, first + n, dtype=np.int64)).cast(pa.string()),
            EVENT_KIND, copy_text(subjects), copy_text(sources), copy_text(ids),
            str(self.recorded_at_us), copy_text(payloads),
            pa.array(payload_hashes, pa.string()), pa.array(prevs, pa.string()),
            pc.binary_join_element_wise(pa.array(hashes, pa.string()), "\n", ""), "\t",
        )
        _, offsets, values = lines.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + n]]
        data = memoryview(values)[int(bounds[0]):int(bounds[1])]  # the lines, end to end
        with self._driver.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            copy.write(data)


def copy_text(values: pa.Array) -> pa.Array:
    """Values for COPY's text format: backslashes doubled.

    No value of an event entry holds a tab, a newline or a carriage return: names
    refuse control characters and canonical JSON escapes them.
    """
    return pc.replace_substring(values, "\\", "\\\\")
