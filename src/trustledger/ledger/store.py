"""The ledger: an append-only, hash-chained store of events and other state changes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import orjson
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import exc

from trustledger import config
from trustledger.clock import Clock, system_clock
from trustledger.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    ItemProblem,
    NotFoundError,
)
from trustledger.events import Event
from trustledger.ledger import database
from trustledger.ledger.bulk import CHUNK, paused_gc
from trustledger.ledger.chain import (
    CANONICAL,
    COLUMNS,
    EVENT_KIND,
    PURGE_KIND,
    ChainWalk,
    StoredEntry,
    canonical,
    digest,
    entry_hash,
    from_us,
    json_problems,
    link,
    to_us,
)
from trustledger.ledger.models import Entry, EventIn, VerifyReport, validation_problems
from trustledger.ledger.schema import entries, head

if TYPE_CHECKING:
    from trustledger.ledger.appender import ChainAppender

Validator = Callable[[EventIn], list[tuple[str, str]]]
"""An extra check on each event (e.g. a policy's attribute schema): ``(field, reason)`` pairs."""

Progress = Callable[[int], None]
"""Called now and then with the number of rows done so far."""

RESERVED_KINDS = frozenset({EVENT_KIND, PURGE_KIND})
"""Entry kinds only the ledger itself writes (through ``append_events`` and ``purge_payload``)."""

_KIND = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
_PAGE = 5_000
_BULK = 1_000  # batches at least this large pause the cyclic GC
_KEYS_PER_QUERY = 2_000
_e = entries.c


@dataclass(frozen=True, slots=True)
class Appended:
    """What a bulk append did: how many events were new, how many were already there."""

    appended: int
    existing: int
    head_seq: int
    head_hash: str


@dataclass(slots=True)
class _Head:
    """The chain's end while a write transaction extends it."""

    seq: int
    hash: str
    recorded_at_us: int

    def extend(
        self,
        kind: str,
        subject: str | None,
        recorded_at_us: int,
        payload: str,
        payload_hash: str,
        source: str | None = None,
        source_event_id: str | None = None,
    ) -> StoredEntry:
        seq, prev = self.seq + 1, self.hash
        hashed = entry_hash(
            seq, kind, subject, recorded_at_us, source, source_event_id, payload_hash, prev
        )
        self.seq, self.hash, self.recorded_at_us = seq, hashed, recorded_at_us
        return StoredEntry(
            seq, kind, subject, source, source_event_id, recorded_at_us, payload, payload_hash,
            prev, hashed,
        )


@dataclass(slots=True)
class _Batch:
    """A batch of events being appended: the valid ones, their payloads, and what is wrong."""

    events: list[EventIn | None]
    payloads: list[str]
    hashes: list[str]
    problems: list[ItemProblem]
    first: dict[tuple[str, str], int]  # key -> index of its first occurrence
    alias: dict[int, int]  # index of a repeated item -> index of its first occurrence
    targets: dict[tuple[str, str], list[int]]  # supersedes not met earlier in the batch


def entry_of(row: StoredEntry | sa.Row[Any]) -> Entry:
    """The :class:`Entry` of a row of the ``entries`` table (the one row -> Entry conversion)."""
    return Entry(
        seq=row.seq,
        kind=row.kind,
        subject=row.subject,
        recorded_at=from_us(row.recorded_at_us),
        payload=None if row.payload is None else orjson.loads(row.payload),
        payload_hash=row.payload_hash,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def event_of(entry: Entry) -> Event | None:
    """The engine's :class:`Event` for a ledger entry of kind ``event``; ``None`` for any other.

    ``None`` too for a purged event (no payload) or one without a subject. The one
    conversion from the ledger to the engine, for every reader that fetched entries
    itself (the service's subject cache, the cascades); :meth:`Ledger.events` builds
    its events with the same constructor straight from the rows.
    """
    payload = entry.payload
    if payload is None or entry.kind != EVENT_KIND or entry.subject is None:
        return None
    return _event_from(payload, entry.subject, entry.recorded_at, entry.seq)


def _event_from(payload: Mapping[str, Any], subject: str, recorded_at: datetime,
                seq: int) -> Event:
    return Event(
        source=payload["source"],
        source_event_id=payload["source_event_id"],
        subject=subject,
        type=payload["type"],
        occurred_at=datetime.fromisoformat(payload["occurred_at"]),
        recorded_at=recorded_at,
        attributes=payload["attributes"],
        supersedes=payload["supersedes"],
        seq=seq,
    )


def _event(row: sa.Row[Any]) -> Event:
    return _event_from(orjson.loads(row.payload), row.subject, from_us(row.recorded_at_us),
                       row.seq)


def _aware_us(moment: datetime, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"{name}: must be timezone-aware")
    return to_us(moment)


class Ledger:
    """The append-only, hash-chained ledger over SQLite or PostgreSQL.

    Open with :meth:`open`; use as a context manager or call :meth:`close`. Every
    method runs its own transaction; appends are serialised across processes, so
    concurrent appenders never fork the chain, lose or duplicate an event.
    """

    def __init__(self, engine: sa.Engine, url: str, clock: Clock) -> None:
        """Use :meth:`open`; this wraps an engine whose schema is already current."""
        self._engine = engine
        self._url = url
        self._clock = clock
        self._insert_sql: str | None = None
        compiled = entries.insert().compile(dialect=engine.dialect)
        if engine.dialect.positional and tuple(compiled.positiontup or ()) == COLUMNS:
            self._insert_sql = str(compiled)

    @classmethod
    def open(cls, url: str | None = None, *, clock: Clock | None = None) -> Ledger:
        """Open (creating and migrating if needed) the ledger at ``url``.

        ``url`` defaults to :func:`trustledger.config.database_url`; ``clock`` (default:
        the system clock in UTC) gives each entry's ``recorded_at``.
        """
        url = url or config.database_url()
        engine = database.create_engine(url)
        try:
            database.migrate(engine)
        except exc.DBAPIError as err:
            engine.dispose()
            raise database.connect_error(url, err) from err
        except ConfigError:
            engine.dispose()
            raise
        return cls(engine, url, clock or system_clock)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return database.describe(self._url)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def append_event(self, event: EventIn) -> Entry:
        """Append one event; the original entry if the same event was appended before.

        Raises :class:`ConflictError` if its key was used with different content and
        :class:`BatchError` if it is invalid (e.g. ``supersedes`` names no earlier event).
        """
        return self.append_events([event])[0]

    def append_events(
        self,
        items: Sequence[EventIn | Mapping[str, Any]],
        *,
        validate: Validator | None = None,
    ) -> list[Entry]:
        """Append a batch of events atomically: all of them or none.

        Returns one entry per item, in order: the new entry, or the original one
        for an event already in the ledger with the same content (idempotency by
        ``(source, source_event_id)``). Raises :class:`BatchError` listing every bad
        item (invalid fields, problems from ``validate``, ``supersedes`` naming no
        earlier event of the same source), or :class:`ConflictError` naming each key
        already used with different content. Nothing is written in either case.
        """
        found: list[Entry] = []
        self._append(items, validate, found=found)
        return found

    def append_record(
        self, kind: str, payload: Mapping[str, Any], subject: str | None = None
    ) -> Entry:
        """Append a state change that is not an event (consent, dispute, resolution, ...).

        ``kind`` is lower-case (``[a-z][a-z0-9_.-]*``, at most 64 characters) and not
        one the ledger reserves (``event``, ``purge``); ``payload`` is a JSON object.
        """
        if not _KIND.fullmatch(kind) or kind in RESERVED_KINDS:
            raise InputError(
                f"kind: {kind!r} is not a record kind (lower-case letters, digits, '_.-'; "
                f"not {', '.join(sorted(RESERVED_KINDS))})"
            )
        if subject is not None and not (0 < len(subject) <= 256 and subject.strip() == subject):
            raise InputError("subject: must be 1-256 characters without surrounding spaces")
        data = dict(payload)
        problems = json_problems(data, "payload")
        if problems:
            raise InputError("; ".join(f"{path}: {reason}" for path, reason in problems))
        text = canonical(data)
        with database.writing(self._engine) as conn:
            tip = self._lock(conn)
            row = tip.extend(kind, subject, self._now_us(tip), text, digest(text))
            self._insert(conn, [row])
            self._save(conn, tip)
        return entry_of(row)

    def purge_payload(self, seq: int, reason: str) -> Entry:
        """Erase entry ``seq``'s payload, recording the purge as a new entry; returns it.

        The chain still verifies: the header keeps the payload's hash. Raises
        :class:`NotFoundError` for an unknown seq and :class:`InputError` if the
        payload is already purged or the entry is itself a purge record.
        """
        if not reason.strip():
            raise InputError("reason: required")
        with database.writing(self._engine) as conn:
            tip = self._lock(conn)
            target = conn.execute(
                sa.select(_e.kind, _e.subject, _e.payload).where(_e.seq == seq)
            ).one_or_none()
            if target is None:
                raise NotFoundError(f"no ledger entry seq={seq}")
            if target.kind == PURGE_KIND:
                raise InputError(f"entry seq={seq} is a purge record; it cannot be purged")
            if target.payload is None:
                raise InputError(f"entry seq={seq}: payload already purged")
            text = canonical({"seq": seq, "reason": reason})
            row = tip.extend(PURGE_KIND, target.subject, self._now_us(tip), text, digest(text))
            self._insert(conn, [row])
            conn.execute(sa.update(entries).where(_e.seq == seq).values(payload=None))
            self._save(conn, tip)
        return entry_of(row)

    def append_bulk(
        self,
        items: Sequence[EventIn | Mapping[str, Any]],
        *,
        validate: Validator | None = None,
        progress: Progress | None = None,
    ) -> Appended:
        """Append a large batch atomically, like :meth:`append_events`, returning only counts.

        For files of millions of events: no entry objects are built. ``progress``
        gets the number of events written so far.
        """
        return self._append(items, validate, progress=progress)

    @contextmanager
    def bulk_appender(self) -> Iterator[ChainAppender]:
        """One write transaction extending the chain batch by batch (file and HTTP batches).

        Yields a :class:`~trustledger.ledger.appender.ChainAppender`; commits (and moves
        the head) when the block ends, rolls every batch back when it raises. All new
        entries get the same ``recorded_at``.
        """
        from trustledger.ledger.appender import ChainAppender  # pyarrow: only when used

        with paused_gc(), database.writing(self._engine) as conn:
            tip = self._lock(conn)
            appender = ChainAppender(conn, tip.seq, tip.hash, self._now_us(tip),
                                     self._find_keys)
            yield appender
            if appender.seq != tip.seq:
                self._save(conn, _Head(appender.seq, appender.hash, appender.recorded_at_us))

    def _append(
        self,
        items: Sequence[EventIn | Mapping[str, Any]],
        validate: Validator | None,
        *,
        found: list[Entry] | None = None,
        progress: Progress | None = None,
    ) -> Appended:
        """Append a batch (see :meth:`append_events`); fill ``found`` with the entries if given."""
        if len(items) < _BULK:
            return self._append_batch(items, validate, found, progress)
        with paused_gc():
            return self._append_batch(items, validate, found, progress)

    def _append_batch(
        self,
        items: Sequence[EventIn | Mapping[str, Any]],
        validate: Validator | None,
        found: list[Entry] | None,
        progress: Progress | None,
    ) -> Appended:
        batch = _prepare(items, validate)
        if len(batch.first) >= _BULK and not batch.problems:
            # A big batch is usually all new events: skip looking its keys up, and let the
            # unique index refuse a key already stored; then (rolled back) look them up.
            try:
                return self._write_batch(batch, len(items), found, progress, lookup=False)
            except exc.IntegrityError:
                pass
        return self._write_batch(batch, len(items), found, progress, lookup=True)

    def _write_batch(
        self,
        batch: _Batch,
        size: int,
        found: list[Entry] | None,
        progress: Progress | None,
        *,
        lookup: bool,
    ) -> Appended:
        problems = list(batch.problems)
        with database.writing(self._engine) as conn:
            tip = self._lock(conn)
            keys = list(batch.first) if lookup else []
            stored = self._find_keys(conn, keys + list(batch.targets))
            conflicts: list[str] = []
            existing: dict[int, int] = {}  # item index -> seq of the same event already stored
            for key in keys:
                index = batch.first[key]
                if key not in stored:
                    continue
                seq, payload_hash = stored[key]
                if payload_hash == batch.hashes[index]:
                    existing[index] = seq
                else:
                    conflicts.append(f"({key[0]!r}, {key[1]!r}) (recorded as seq={seq})")
            for target, indexes in batch.targets.items():
                if target not in stored:
                    problems.extend(
                        ItemProblem(i, "supersedes", f"names no earlier event {target[1]!r} "
                                    f"of source {target[0]!r}")
                        for i in indexes
                    )
            if problems:
                raise BatchError(sorted(problems, key=lambda p: p.index))
            if conflicts:
                raise ConflictError(
                    f"{len(conflicts)} event key(s) already recorded with different content, "
                    f"nothing written: {'; '.join(conflicts[:20])}"
                    + (f" (and {len(conflicts) - 20} more)" if len(conflicts) > 20 else "")
                )
            new = [i for i in batch.first.values() if i not in existing]
            recorded_at_us = self._now_us(tip) if new else tip.recorded_at_us
            written: dict[int, tuple[Any, ...]] = {}
            events, payloads, hashes = batch.events, batch.payloads, batch.hashes
            for start in range(0, len(new), CHUNK):
                chunk = new[start : start + CHUNK]
                rows = link(tip.seq, tip.hash, EVENT_KIND, recorded_at_us, (
                    (e.subject, e.source, e.source_event_id, payloads[i], hashes[i])
                    for i in chunk if (e := events[i]) is not None
                ))
                self._insert(conn, rows)
                tip.seq, tip.hash, tip.recorded_at_us = rows[-1][0], rows[-1][-1], recorded_at_us
                if found is not None:
                    written.update(zip(chunk, rows, strict=True))
                if progress is not None:
                    progress(start + len(rows))
            if new:
                self._save(conn, tip)
            if found is not None:
                by_seq = self._rows_by_seq(conn, list(existing.values()))
                for i in range(size):
                    first = batch.alias.get(i, i)
                    new_row = written.get(first)
                    found.append(entry_of(
                        by_seq[existing[first]] if new_row is None else StoredEntry(*new_row)
                    ))
        return Appended(len(new), size - len(new), tip.seq, tip.hash)

    def _lock(self, conn: sa.Connection) -> _Head:
        """Lock the head row (the chain's single-writer token) and read it."""
        row = conn.execute(
            sa.select(head.c.seq, head.c.hash, head.c.recorded_at_us)
            .where(head.c.id == 1)
            .with_for_update()
        ).one()
        return _Head(row.seq, row.hash, row.recorded_at_us)

    def _save(self, conn: sa.Connection, tip: _Head) -> None:
        database.head_moved(conn)
        conn.execute(
            sa.update(head)
            .where(head.c.id == 1)
            .values(seq=tip.seq, hash=tip.hash, recorded_at_us=tip.recorded_at_us)
        )

    def _now_us(self, tip: _Head) -> int:
        """``recorded_at`` for new entries: the clock, never earlier than the chain's end."""
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ConfigError("the ledger's clock returned a naive date-time")
        return max(to_us(now), tip.recorded_at_us)

    def _insert(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self._insert_sql is not None:
            # The statement is SQLAlchemy's own compilation of entries.insert(); handing
            # the driver tuples skips Core's per-row parameter processing, which would
            # double the cost of a bulk insert into SQLite.
            conn.exec_driver_sql(self._insert_sql, list(rows))
        else:
            conn.execute(entries.insert(), [dict(zip(COLUMNS, row, strict=True)) for row in rows])

    def _find_keys(
        self, conn: sa.Connection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, str]]:
        """Which event keys are stored: ``key -> (seq, payload_hash)``."""
        by_source: dict[str, list[str]] = {}
        for source, source_event_id in keys:
            by_source.setdefault(source, []).append(source_event_id)
        stored: dict[tuple[str, str], tuple[int, str]] = {}
        for source, ids in by_source.items():
            for start in range(0, len(ids), _KEYS_PER_QUERY):
                rows = conn.execute(
                    sa.select(_e.source_event_id, _e.seq, _e.payload_hash).where(
                        _e.source == source,
                        _e.source_event_id.in_(ids[start : start + _KEYS_PER_QUERY]),
                    )
                )
                for source_event_id, seq, payload_hash in rows:
                    stored[(source, source_event_id)] = (seq, payload_hash)
        return stored

    def _rows_by_seq(self, conn: sa.Connection, seqs: list[int]) -> dict[int, sa.Row[Any]]:
        rows: dict[int, sa.Row[Any]] = {}
        for start in range(0, len(seqs), _KEYS_PER_QUERY):
            chunk = seqs[start : start + _KEYS_PER_QUERY]
            for row in conn.execute(sa.select(*entries.c).where(_e.seq.in_(chunk))):
                rows[row.seq] = row
        return rows

    # -- reading ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The ledger's clock: what it records new entries at (injected by :meth:`open`).

        Code that records through this ledger and then asks "what is in force now" reads
        this clock, never the system's, so an injected clock governs both.
        """
        return self._clock()

    def head(self) -> tuple[int, str]:
        """The last entry's ``(seq, hash)``; ``(0, GENESIS)`` for an empty ledger."""
        with database.reading(self._engine) as conn:
            row = conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
        return (row.seq, row.hash)

    def entry(self, seq: int) -> Entry:
        """The entry at ``seq``; :class:`NotFoundError` if there is none."""
        with database.reading(self._engine) as conn:
            row = conn.execute(sa.select(*entries.c).where(_e.seq == seq)).one_or_none()
        if row is None:
            raise NotFoundError(f"no ledger entry seq={seq}")
        return entry_of(row)

    def events(
        self, subject: str | None = None, *, known_at: datetime | None = None
    ) -> Iterator[Event]:
        """Events in seq order, for one subject or all, as the engine takes them.

        ``known_at`` keeps only events recorded at or before it. Purged events are
        left out. Entries appended after the iteration started are not included.
        """
        where = [_e.kind == EVENT_KIND, _e.payload.is_not(None)]
        if subject is not None:
            where.append(_e.subject == subject)
        if known_at is not None:
            where.append(_e.recorded_at_us <= _aware_us(known_at, "known_at"))
        columns = (_e.seq, _e.subject, _e.source, _e.source_event_id, _e.recorded_at_us,
                   _e.payload)
        for row in self._pages(columns, where):
            yield _event(row)

    def batch_columns(self, kinds: Sequence[str] = (EVENT_KIND,),
                      rows: int = CHUNK) -> Iterator[Any]:
        """Unpurged entries of ``kinds`` as Arrow record batches in seq order, for batch jobs.

        The columns of an export that a columnar job reads: ``seq``, ``kind``,
        ``subject``, ``recorded_at`` and ``payload`` (the stored canonical JSON, which
        also holds an event's ``source`` and ``source_event_id``), so it reads them as it
        reads ``trustledger export``; no engine object is built. One consistent snapshot.
        Pages of ``rows`` entries up to the head when it started; each page's rows come
        straight from the database driver's cursor (plain tuples, no SQLAlchemy row object
        per entry) and go column-wise into Arrow.
        """
        import pyarrow as pa

        types = (pa.int64(), pa.string(), pa.string(), pa.int64(), pa.string())
        names = ("seq", "kind", "subject", "recorded_at", "payload")
        utc = pa.timestamp("us", tz="UTC")
        with database.reading(self._engine) as conn:
            upto = conn.execute(sa.select(sa.func.max(_e.seq))).scalar() or 0
            after = 0
            while after < upto:
                query = sa.select(_e.seq, _e.kind, _e.subject, _e.recorded_at_us,
                                  _e.payload).where(
                    _e.kind.in_(list(kinds)), _e.payload.is_not(None), _e.seq > after,
                    _e.seq <= upto).order_by(_e.seq).limit(rows)
                with conn.execute(query) as result:
                    page = result.cursor.fetchall()  # the driver's own tuples
                if not page:
                    return
                arrays = [pa.array(column, kind)
                          for column, kind in zip(zip(*page, strict=True), types, strict=True)]
                arrays[3] = arrays[3].cast(utc)
                yield pa.record_batch(arrays, names=names)
                if len(page) < rows:
                    return
                after = page[-1][0]

    def records(self, kind: str | None = None, subject: str | None = None) -> Iterator[Entry]:
        """Entries in seq order, optionally of one kind and/or about one subject.

        With no ``kind``, every entry (events included) is returned.
        """
        where = []
        if kind is not None:
            where.append(_e.kind == kind)
        if subject is not None:
            where.append(_e.subject == subject)
        for row in self._pages(tuple(entries.c), where):
            yield entry_of(row)

    def subjects(self) -> Iterator[str]:
        """Every subject with at least one (unpurged) event, in sorted order."""
        after: str | None = None
        while True:
            query = (
                sa.select(_e.subject)
                .where(_e.kind == EVENT_KIND, _e.payload.is_not(None))
                .distinct()
                .order_by(_e.subject)
                .limit(_PAGE)
            )
            if after is not None:
                query = query.where(_e.subject > after)
            with database.reading(self._engine) as conn:
                page = list(conn.execute(query).scalars())
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1]

    def _pages(
        self, columns: Sequence[sa.ColumnElement[Any]], where: list[sa.ColumnElement[bool]]
    ) -> Iterator[sa.Row[Any]]:
        """Rows in seq order, fetched a page at a time, up to the head when it started."""
        upto, _ = self.head()
        after = 0
        while after < upto:
            query = (
                sa.select(*columns)
                .where(*where, _e.seq > after, _e.seq <= upto)
                .order_by(_e.seq)
                .limit(_PAGE)
            )
            with database.reading(self._engine) as conn:
                page = conn.execute(query).all()
            yield from page
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    def stats(self) -> dict[str, Any]:
        """Aggregate figures about the whole ledger; never a list of subjects.

        Keys: ``database``, ``entries``, ``events``, ``kinds`` (entries per kind),
        ``purged``, ``subjects``, ``sources``, ``first_recorded_at``,
        ``last_recorded_at``, ``head_seq``, ``head_hash``.
        """
        with database.reading(self._engine) as conn:
            kinds = {
                kind: count
                for kind, count in conn.execute(
                    sa.select(_e.kind, sa.func.count()).group_by(_e.kind).order_by(_e.kind)
                )
            }
            totals = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(_e.payload.is_(None)),
                    sa.func.min(_e.recorded_at_us),
                    sa.func.max(_e.recorded_at_us),
                )
            ).one()
            subjects, sources = conn.execute(
                sa.select(
                    sa.func.count(sa.distinct(_e.subject)), sa.func.count(sa.distinct(_e.source))
                ).where(_e.kind == EVENT_KIND)
            ).one()
            tip = conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
        entries_n, purged, first_us, last_us = totals
        return {
            "database": self._engine.dialect.name,
            "entries": entries_n,
            "events": kinds.get(EVENT_KIND, 0),
            "kinds": kinds,
            "purged": purged,
            "subjects": subjects,
            "sources": sources,
            "first_recorded_at": None if first_us is None else from_us(first_us),
            "last_recorded_at": None if last_us is None else from_us(last_us),
            "head_seq": tip.seq,
            "head_hash": tip.hash,
        }

    # -- integrity, backup and restore -------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Walk the whole chain; raise :class:`IntegrityError` naming the first bad entry.

        Finds any entry changed (any column), removed (also at the end: the head row
        must match the last entry) or reordered. ``progress`` gets the entries checked.
        """
        walk = ChainWalk()
        with database.reading(self._engine) as conn:
            tip = conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
            # Closed even when a bad entry interrupts the walk: an open SQLite statement
            # would keep this pooled connection's old snapshot alive for later reads.
            with conn.execution_options(yield_per=CHUNK).execute(
                sa.select(*entries.c).order_by(_e.seq)
            ) as rows:
                for row in rows:
                    walk.step(StoredEntry._make(row))
                    if progress is not None and walk.entries % CHUNK == 0:
                        progress(walk.entries)
        if progress is not None:
            progress(walk.entries)
        if tip.seq > walk.entries:
            raise IntegrityError(
                walk.entries + 1,
                f"entry missing: the head names seq={tip.seq}, the chain ends at "
                f"seq={walk.entries}",
            )
        if (tip.seq, tip.hash) != (walk.entries, walk.head_hash):
            raise IntegrityError(tip.seq, "the head row does not match the chain's last entry")
        # After the head check: a removed tail also removes the purge entries it held.
        walk.finish()
        return VerifyReport(walk.entries, walk.head_hash)

    def export(self, path: str | Path, progress: Progress | None = None) -> int:
        """Write every entry, as stored, to ``path`` (``.parquet`` or ``.jsonl``).

        Returns how many; one consistent snapshot, even while others append.
        """
        from trustledger.ledger import transfer

        writer = transfer.writer_for(Path(path))
        query = sa.select(*entries.c).order_by(_e.seq)
        with database.reading(self._engine) as conn, conn.execution_options(
            yield_per=CHUNK
        ).execute(query) as rows:
            return writer(Path(path), (StoredEntry._make(row) for row in rows), progress)

    def import_(self, path: str | Path, progress: Progress | None = None) -> VerifyReport:
        """Restore an export into this ledger, which must be empty: same entries, same head.

        The file's chain is verified while it is read (:class:`IntegrityError` names
        the first bad entry); all or nothing.
        """
        from trustledger.ledger import transfer

        rows = transfer.read_export(Path(path))
        walk = ChainWalk(where=f" (in {path})")
        with paused_gc(), database.writing(self._engine) as conn:
            tip = self._lock(conn)
            if tip.seq != 0:
                raise InputError(
                    f"import needs an empty ledger; {self.url} has {tip.seq} entries"
                )
            chunk: list[StoredEntry] = []
            try:
                for row in rows:
                    walk.step(row)
                    chunk.append(row)
                    if len(chunk) == CHUNK:
                        self._insert(conn, chunk)
                        chunk = []
                        if progress is not None:
                            progress(walk.entries)
                self._insert(conn, chunk)
            except exc.IntegrityError as err:
                raise InputError(f"{path}: the ledger refuses an entry: {err.orig}") from err
            walk.finish()
            self._save(conn, _Head(walk.entries, walk.head_hash, walk.head_recorded_at_us))
        if progress is not None:
            progress(walk.entries)
        return VerifyReport(walk.entries, walk.head_hash)


def _prepare(items: Sequence[EventIn | Mapping[str, Any]], validate: Validator | None) -> _Batch:
    """Validate a batch and encode its payloads; everything that needs no database."""
    batch = _Batch([], [], [], [], {}, {}, {})
    # Bound once: this loop runs once per event of files with millions of them.
    dumps, sha256, utc = orjson.dumps, hashlib.sha256, UTC
    add_event, add_payload = batch.events.append, batch.payloads.append
    add_hash, first_of, hashes = batch.hashes.append, batch.first, batch.hashes
    for index, item in enumerate(items):
        event = item if type(item) is EventIn else _parse(index, item, batch.problems)
        if event is not None and validate is not None:
            checks = validate(event)
            if checks:
                batch.problems.extend(ItemProblem(index, f, reason) for f, reason in checks)
                event = None
        add_event(event)
        if event is None:
            add_payload("")
            add_hash("")
            continue
        source, supersedes = event.source, event.supersedes
        text = dumps({
            "source": source,
            "source_event_id": event.source_event_id,
            "subject": event.subject,
            "type": event.type,
            "occurred_at": event.occurred_at.astimezone(utc),
            "attributes": event.attributes,
            "supersedes": supersedes,
        }, option=CANONICAL).decode()
        payload_hash = sha256(text.encode()).hexdigest()
        add_payload(text)
        add_hash(payload_hash)
        if supersedes is not None and (source, supersedes) not in first_of:
            batch.targets.setdefault((source, supersedes), []).append(index)
        key = (source, event.source_event_id)
        first = first_of.get(key)
        if first is None:
            first_of[key] = index
        elif hashes[first] == payload_hash:
            batch.alias[index] = first
        else:
            batch.problems.append(
                ItemProblem(index, "source_event_id",
                            f"repeats item {first}'s key with different content")
            )
    return batch


def _parse(index: int, item: Any, problems: list[ItemProblem]) -> EventIn | None:
    """An item that is not yet an :class:`EventIn`, validated; None (and problems) if bad."""
    if isinstance(item, EventIn):
        return item
    if not isinstance(item, Mapping):
        problems.append(ItemProblem(index, "(event)", f"not an event (a {type(item).__name__})"))
        return None
    try:
        return EventIn.model_validate(item)
    except ValidationError as err:
        problems.extend(
            ItemProblem(index, field, reason) for field, reason in validation_problems(err)
        )
        return None
