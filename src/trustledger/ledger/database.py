"""Connections to the ledger's database: SQLite (WAL) or PostgreSQL (psycopg 3).

One engine per :class:`~trustledger.ledger.Ledger`. Write transactions are serialised:
on SQLite they start with ``BEGIN IMMEDIATE`` (the database's one write lock, taken
up front so two writers never both read the same head); on PostgreSQL the writer
locks the single ``ledger_head`` row (``SELECT ... FOR UPDATE``) before reading it.
Read transactions see one consistent snapshot (SQLite WAL readers always do;
PostgreSQL runs them REPEATABLE READ).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url

from trustledger.errors import ConfigError

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a SQLite writer waits for another writer's transaction before giving up."""

POOL_SIZE = 16
"""Connections a ledger's engine keeps open (SQLAlchemy's default is 5). The service reads
from up to 40 worker threads at once, besides its writer threads; a connection taken
past the pool's size is opened for that one use and closed after it — on SQLite a
fresh page cache and three pragmas each time, on PostgreSQL a new server process — so
the pool holds what a busy server keeps using. ``max_overflow`` stays SQLAlchemy's 10:
with ``--workers N`` PostgreSQL sees at most ``26 * N`` connections."""

_WRITE = "trustledger_write"
_HEAD_MOVED = "trustledger_head_moved"
# Any 64-bit number unique to this purpose: serialises migrations across processes.
_MIGRATION_LOCK = 0x7472_7573_746C_6564


def unreadable(engine: sa.Engine, err: BaseException) -> ConfigError:
    """The error for a database that failed under the service (it answers 503)."""
    detail = getattr(err, "orig", None) or err
    return ConfigError(f"the ledger database ({engine.dialect.name}) failed: {detail}")


def fetch_all(engine: sa.Engine, sql: str, params: Any) -> list[Any]:
    """All rows of one statement (SQL in the driver's parameter style), through the driver.

    On a pooled connection: one statement is one snapshot, and no SQLAlchemy row object
    is built. A driver failure is :func:`unreadable`.
    """
    try:
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        finally:
            conn.close()  # back to the pool, which ends the driver's transaction
    except (engine.dialect.loaded_dbapi.Error, exc.DBAPIError) as err:
        raise unreadable(engine, err) from err


def describe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparsable URL>"


def create_engine(url: str) -> sa.Engine:
    """An engine for a ledger URL (``sqlite:///...`` or ``postgresql+psycopg://...``)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise ConfigError(f"database URL {url!r} is not a valid URL: {err}") from err
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ConfigError(
                f"database URL {describe(url)}: use the psycopg 3 driver "
                "(postgresql+psycopg://...)"
            )
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=POOL_SIZE)
    raise ConfigError(
        f"database URL {describe(url)}: only sqlite:/// and postgresql+psycopg:// are supported"
    )


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
                              pool_size=POOL_SIZE)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # The driver's own transaction handling cannot say BEGIN IMMEDIATE: take it over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit that returned survives a crash of the process and of the machine.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA cache_size=-65536")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_WRITERS: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def _writer(engine: sa.Engine) -> threading.RLock:
    """The lock this process's SQLite writers on ``engine`` queue on (see :func:`writing`)."""
    with _WRITERS_LOCK:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = threading.RLock()
        return lock


def _fresh_writers() -> None:
    """A forked child starts with no writer locks (a parent's thread may have held one)."""
    global _WRITERS_LOCK
    _WRITERS_LOCK = threading.Lock()
    _WRITERS.clear()
    _APPENDS.clear()


os.register_at_fork(after_in_child=_fresh_writers)


@contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction, committed when the block ends without an exception.

    The caller must lock the head row first thing (see :mod:`.schema`); on SQLite
    the transaction already holds the write lock. On SQLite the writers of one
    process also queue on a lock first: they hand over as each commits, instead of
    polling the database's lock in the driver's busy handler (sleeps of 1 to
    100 ms, which turn a few concurrent writers into long stalls).
    """
    queue: AbstractContextManager[object] = (
        _writer(engine) if engine.dialect.name == "sqlite" else nullcontext())
    with queue, engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        try:
            with conn.begin():
                yield conn
        except BaseException:
            conn.info.pop(_HEAD_MOVED, None)  # rolled back: nothing was appended
            raise
        if conn.info.pop(_HEAD_MOVED, False):
            appends(engine).note()


def head_moved(conn: sa.Connection) -> None:
    """Say that ``conn``'s write transaction appends entries (:func:`appends` counts its commit)."""
    conn.info[_HEAD_MOVED] = True


class Appends:
    """How many commits of this process appended to a ledger, and a wait for the next one.

    The cascades' derivation waits here when it has caught up, so an entry appended
    in this process (``trustledger serve --cascades``: the events the API takes) is
    derived at once instead of at the next poll; appends by other processes are still
    found by polling.
    """

    def __init__(self) -> None:
        """Start at 0 commits."""
        self._changed = threading.Condition()
        self.count = 0
        """Commits that appended entries so far (read it before the work you wait after)."""

    def note(self) -> None:
        """Count one commit that appended entries and wake every waiter."""
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Until :attr:`count` is no longer ``seen``, at most ``timeout`` s; the count then."""
        with self._changed:
            self._changed.wait_for(lambda: self.count != seen, timeout)
            return self.count


_APPENDS: weakref.WeakKeyDictionary[sa.Engine, Appends] = weakref.WeakKeyDictionary()


def appends(engine: sa.Engine) -> Appends:
    """The :class:`Appends` of this process's writers on ``engine``."""
    with _WRITERS_LOCK:
        found = _APPENDS.get(engine)
        if found is None:
            found = _APPENDS[engine] = Appends()
        return found


@contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only transaction over one consistent snapshot of the ledger."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest version (``alembic upgrade head``), once per database.

    A ledger already at :func:`schema_head` is left as it is, without loading Alembic
    (about 0.1 s of every command's start-up).
    Otherwise the upgrade runs in one write transaction; concurrent openers of a new
    database wait for the first one and then find nothing to do. A schema newer than
    this version knows raises :class:`ConfigError`.
    """
    if revisions(engine) == {schema_head()}:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    location = resources.files("trustledger.ledger") / "migrations"
    config = Config()
    config.set_main_option("script_location", str(location))
    try:
        with writing(engine) as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except CommandError as err:
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigError(f"ledger database {shown} has a schema this version does not "
                          f"know: {err}") from err


_REVISION = re.compile(r'^(down_revision|revision): str(?: \| None)? = (None|"([^"]+)")$',
                       re.MULTILINE)


@cache
def schema_head() -> str | None:
    """The newest migration's revision, read from ``migrations/versions`` without Alembic.

    Each migration file states its ``revision`` and ``down_revision`` as the template
    writes them; the head is the one revision no other revises (``None`` if not exactly
    one: Alembic then decides). ``tests/test_cli_startup.py`` checks it is Alembic's head.
    """
    revised: dict[str, str | None] = {}
    for script in (resources.files("trustledger.ledger") / "migrations" / "versions").iterdir():
        if not script.name.endswith(".py"):
            continue
        found = {m.group(1): m.group(3) for m in _REVISION.finditer(script.read_text())}
        if found.get("revision") is None:
            return None
        revised[found["revision"]] = found.get("down_revision")
    heads = set(revised) - set(revised.values())
    return heads.pop() if len(heads) == 1 else None


def revisions(engine: sa.Engine) -> set[str]:
    """The schema revisions the database records (empty for a new database)."""
    with reading(engine) as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return set()
        return set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def connect_error(url: str, err: exc.DBAPIError) -> ConfigError:
    """A :class:`ConfigError` for a database that cannot be opened, naming it."""
    detail: Any = err.orig if err.orig is not None else err
    return ConfigError(f"cannot open the ledger database {describe(url)}: {detail}")
