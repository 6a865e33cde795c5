"""The ledger as the service uses it: several records in one commit, and cheap change feeds.

:class:`ServiceLedger` is a :class:`~trustledger.ledger.Ledger` with three more
operations the HTTP service needs and the file-oriented ledger API does not have:

* :meth:`ServiceLedger.write` runs a piece of work on the service's own tables
  (principals) and appends the ledger records that audit it, in **one**
  transaction, so a table change is never without its audit record;
* :meth:`ServiceLedger.append_records` appends many records with one commit
  (the access log's group commit: one fsync for every read logged meanwhile);
* :meth:`ServiceLedger.changes_after` and :meth:`ServiceLedger.subject_entries`
  read what was appended since a position, and one subject's entries of some kinds,
  each with one indexed query.

The chain is extended exactly as :meth:`Ledger.append_record` does it (same lock,
same hashing, same ``recorded_at`` rule); these belong in ``Ledger`` itself and
can move there unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc

from trustledger.clock import Clock
from trustledger.errors import ConfigError, InputError
from trustledger.ledger import RESERVED_KINDS, Entry, Ledger, entry_of
from trustledger.ledger import database as _database
from trustledger.ledger.chain import (
    StoredEntry,
    canonical,
    digest,
    entry_hash,
    json_problems,
    to_us,
)
from trustledger.ledger.database import unreadable
from trustledger.ledger.schema import entries, head

T = TypeVar("T")

_e = entries.c
CHANGES_PAGE = 10_000
"""At most this many entries per :meth:`ServiceLedger.changes_after`."""
_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


@dataclass(frozen=True, slots=True)
class Record:
    """A state change to append: its kind, payload (a JSON object) and subject, if any."""

    kind: str
    payload: dict[str, Any]
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One entry appended since a position: enough to know what it invalidates."""

    seq: int
    kind: str
    subject: str | None


Work = Callable[[sa.Connection, int], tuple[T, Sequence[Record]]]
"""Work run inside a write transaction: gets the connection and ``recorded_at`` (µs);
returns its result and the records that audit it."""


def check_record(record: Record) -> None:
    """Refuse a record ``append_record`` would refuse (kind, subject, payload)."""
    kind = record.kind
    if (not 0 < len(kind) <= 64 or not kind[0].isalpha() or not set(kind) <= _KIND_CHARS
            or kind in RESERVED_KINDS):
        raise InputError(f"kind: {kind!r} is not a record kind")
    subject = record.subject
    if subject is not None and not (0 < len(subject) <= 256 and subject.strip() == subject):
        raise InputError("subject: must be 1-256 characters without surrounding spaces")
    problems = json_problems(record.payload, "payload")
    if problems:
        raise InputError("; ".join(f"{path}: {reason}" for path, reason in problems))


class _Prepared:
    """A statement compiled once for a dialect, run straight through the driver."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.defaults = dict(compiled.params)
        self.positional = tuple(compiled.positiontup or ()) if dialect.positional else None

    def run(self, engine: sa.Engine, **given: Any) -> list[Any]:
        """All rows, from a pooled driver connection (one statement: one snapshot).

        ``given`` are values for named bind parameters; the others are as compiled.
        """
        values = {**self.defaults, **given}
        params: Any = (tuple(values[name] for name in self.positional)
                       if self.positional is not None else values)
        return _database.fetch_all(engine, self.sql, params)


class _GroupWrite:
    """The statements of a group commit, compiled once for the dialect.

    The same protocol as the ledger's own appends: lock the head row (SQLite: the
    transaction starts with ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR
    UPDATE``), insert the entries, move the head.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        sqlite = dialect.name == "sqlite"
        self.begin = "BEGIN IMMEDIATE" if sqlite else None
        lock = sa.select(head.c.seq, head.c.hash, head.c.recorded_at_us).where(head.c.id == 1)
        if not sqlite:
            lock = lock.with_for_update()
        self.lock = str(lock.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        insert = entries.insert().compile(dialect=dialect)
        self.insert = str(insert)
        self._insert_names = tuple(insert.positiontup or ()) if dialect.positional else None
        save = sa.update(head).where(head.c.id == 1).values(
            seq=sa.bindparam("seq"), hash=sa.bindparam("hash"),
            recorded_at_us=sa.bindparam("recorded_at_us"))
        compiled = save.compile(dialect=dialect, compile_kwargs={"literal_binds": False})
        self.save = str(compiled)
        self._save_names = tuple(compiled.positiontup or ()) if dialect.positional else None
        self._save_defaults = dict(compiled.params)

    def row(self, entry: StoredEntry) -> Any:
        """Driver parameters of one entry."""
        values = entry._asdict()
        if self._insert_names is None:
            return values
        return tuple(values[name] for name in self._insert_names)

    def head(self, seq: int, hash_: str, recorded_at_us: int) -> Any:
        """Driver parameters of the head update."""
        values = {**self._save_defaults, "seq": seq, "hash": hash_,
                  "recorded_at_us": recorded_at_us}
        if self._save_names is None:
            return values
        return tuple(values[name] for name in self._save_names)


class ServiceLedger(Ledger):
    """A :class:`Ledger` with transactional audit, group commit and change feeds."""

    _changes: _Prepared | None = None
    _group: _GroupWrite | None = None

    @classmethod
    def open(cls, url: str | None = None, *, clock: Clock | None = None) -> ServiceLedger:
        """Open (creating and migrating if needed) the ledger at ``url`` (:meth:`Ledger.open`)."""
        ledger = super().open(url, clock=clock)
        assert isinstance(ledger, ServiceLedger)
        return ledger

    @classmethod
    def of(cls, ledger: Ledger) -> ServiceLedger:
        """``ledger`` as a :class:`ServiceLedger`: the same database, engine and clock.

        For code handed a plain :class:`Ledger` that must record with audit (the demo
        proposing its register); closing either closes both.
        """
        if isinstance(ledger, ServiceLedger):
            return ledger
        return cls(ledger._engine, ledger._url, ledger._clock)

    def write(self, work: Work[T]) -> tuple[T, list[Entry]]:
        """Run ``work`` and append the records it returns, all in one transaction.

        The chain's head is locked first, so ``work`` sees and changes the service's
        tables serialised with every other writer. If ``work`` raises, nothing is
        written.
        """
        with _database.writing(self._engine) as conn:
            tip = self._lock(conn)
            recorded_at_us = self._now_us(tip)
            result, records = work(conn, recorded_at_us)
            for record in records:
                check_record(record)
            rows = []
            for record in records:
                text = canonical(record.payload)
                rows.append(tip.extend(record.kind, record.subject, recorded_at_us, text,
                                       digest(text)))
            if rows:
                self._insert(conn, rows)
                self._save(conn, tip)
        return result, [entry_of(row) for row in rows]

    def append_records(self, records: Sequence[Record]) -> list[Entry]:
        """Append several records with one commit; all of them or none.

        The access log's group commit runs this for every decision, so it talks to the
        driver directly (statements compiled once): few round trips through Python keep
        the writer thread from holding the interpreter lock the requests need. The chain
        is extended exactly as :meth:`write` does it.
        """
        if not records:
            return []
        for record in records:
            check_record(record)
        texts = [canonical(record.payload) for record in records]
        if self._group is None:
            self._group = _GroupWrite(self._engine.dialect)
        group = self._group
        try:
            conn = self._engine.raw_connection()
        except exc.DBAPIError as err:
            raise unreadable(self._engine, err) from err
        try:
            cursor = conn.cursor()
            try:
                if group.begin is not None:
                    cursor.execute(group.begin)
                cursor.execute(group.lock)
                tip = cursor.fetchone()
                assert tip is not None  # the head row always exists
                seq, prev, last_us = tip
                now = self._clock()
                if now.tzinfo is None or now.utcoffset() is None:
                    raise ConfigError("the ledger's clock returned a naive date-time")
                recorded_at_us = max(to_us(now), last_us)
                rows = []
                for record, text in zip(records, texts, strict=True):
                    seq += 1
                    payload_hash = digest(text)
                    hashed = entry_hash(seq, record.kind, record.subject, recorded_at_us, None,
                                        None, payload_hash, prev)
                    rows.append(StoredEntry(seq, record.kind, record.subject, None, None,
                                            recorded_at_us, text, payload_hash, prev, hashed))
                    prev = hashed
                cursor.executemany(group.insert, [group.row(r) for r in rows])
                cursor.execute(group.save, group.head(seq, prev, recorded_at_us))
                conn.commit()
            except self._engine.dialect.loaded_dbapi.Error as err:
                conn.rollback()
                raise unreadable(self._engine, err) from err
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
        finally:
            conn.close()
        return [entry_of(row) for row in rows]

    def reading(self) -> Any:
        """A read transaction over one snapshot (a context manager giving the connection)."""
        return _database.reading(self._engine)

    def changes_after(self, seq: int) -> list[Change]:
        """Entries appended after position ``seq`` (at most 10,000), oldest first.

        Called before every request, so it skips SQLAlchemy's per-statement work: the
        statement is compiled once and handed to the driver with its parameters.
        """
        if self._changes is None:
            query = (sa.select(_e.seq, _e.kind, _e.subject)
                     .where(_e.seq > sa.bindparam("after"))
                     .order_by(_e.seq).limit(CHANGES_PAGE))
            self._changes = _Prepared(query, self._engine.dialect)
        return [Change(*row) for row in self._changes.run(self._engine, after=seq)]

    def appends(self) -> _database.Appends:
        """The count of commits this process made that append to the ledger, and a wait for more."""
        return _database.appends(self._engine)

    def position(self) -> int:
        """The head's ``seq`` (0 for an empty ledger)."""
        with _database.reading(self._engine) as conn:
            return int(conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar_one())

    def find_event(self, source: str, source_event_id: str) -> Entry | None:
        """The event a source appended under ``source_event_id`` (the unique key), if any."""
        query = sa.select(*entries.c).where(_e.source == source,
                                            _e.source_event_id == source_event_id)
        with _database.reading(self._engine) as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else entry_of(row)

    def subject_entries(self, subject: str, *, exclude: Collection[str] = ()
                        ) -> tuple[int, list[Entry]]:
        """The subject's entries (but ``exclude`` kinds) in seq order, and the head then.

        One snapshot, one query on the ``(subject, seq)`` index.
        """
        query = sa.select(*entries.c).where(_e.subject == subject).order_by(_e.seq)
        if exclude:
            query = query.where(_e.kind.not_in(sorted(exclude)))
        return self._subject_query(query)

    def subject_page(self, subject: str, kinds: Collection[str], after: int,
                     limit: int) -> list[Entry]:
        """At most ``limit`` of the subject's entries of ``kinds`` after ``after``, in order."""
        query = (sa.select(*entries.c)
                 .where(_e.subject == subject, _e.kind.in_(sorted(kinds)), _e.seq > after)
                 .order_by(_e.seq).limit(limit))
        return self._subject_query(query)[1]

    def _subject_query(self, query: sa.Select[Any]) -> tuple[int, list[Entry]]:
        with _database.reading(self._engine) as conn:
            at = int(conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar_one())
            rows = conn.execute(query).all()
        return at, [entry_of(row) for row in rows]

