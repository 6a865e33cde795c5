"""The suite's own fixtures: ledgers copied from a migrated one; property-test sizes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.clock import MOVED_EXAMPLES_SHARE, SHIFT_ENV, FixedClock, examples
from tests.test_api import event
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.database import schema_head


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _version(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                       .scalar_one())
    finally:
        engine.dispose()


def _original(database_url: str, request: pytest.FixtureRequest) -> str:
    """The migrated database ``database_url`` was copied from."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{request.getfixturevalue('migrated_sqlite')}"
    name: str = request.getfixturevalue("migrated_postgres")
    return database_url.rsplit("/", 1)[0] + "/" + name


def test_a_database_is_a_fresh_copy_at_the_newest_schema(
        database_url: str, request: pytest.FixtureRequest) -> None:
    """At the newest schema, with nothing in it, and not the migrated original itself."""
    original = _original(database_url, request)
    assert original != database_url
    assert _version(database_url) == _version(original) == schema_head()
    with Ledger.open(database_url) as ledger:
        assert ledger.head()[0] == 0
        assert ledger.verify().entries == 0


def test_what_one_test_writes_reaches_neither_the_original_nor_the_next_copy(
        database_url: str, request: pytest.FixtureRequest,
        migrated_copy: Callable[[str], str]) -> None:
    with Ledger.open(database_url, clock=FixedClock()) as ledger:
        ledger.append_events([EventIn.model_validate(event(1))])
        assert ledger.head()[0] == 1
    with Ledger.open(_original(database_url, request)) as ledger:
        assert ledger.head()[0] == 0
    again = migrated_copy("sqlite" if database_url.startswith("sqlite") else "postgres")
    assert again != database_url
    with Ledger.open(again) as ledger:
        assert ledger.head()[0] == 0


def test_an_empty_database_has_no_schema(empty_database_url: str) -> None:
    """A test of the migrations themselves gets a database nothing has migrated."""
    assert _tables(empty_database_url) == set()


def test_property_tests_draw_every_example_unless_the_clock_is_moved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ordinary run draws them all; under ``--system-clock``, a share, at least 5."""
    monkeypatch.delenv(SHIFT_ENV, raising=False)
    assert [examples(n) for n in (3, 40, 150)] == [3, 40, 150]
    monkeypatch.setenv(SHIFT_ENV, "157680000.0")
    assert [examples(n) for n in (3, 40, 150)] == [3, 40 // MOVED_EXAMPLES_SHARE,
                                                   150 // MOVED_EXAMPLES_SHARE]
