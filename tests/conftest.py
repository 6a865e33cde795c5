"""Shared fixtures: real SQLite files in temp folders and a real PostgreSQL server."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.postgres import create_database, postgres_server
from trustledger.ledger import Ledger

pytest_plugins = ["tests.clock"]


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the session's PostgreSQL server (maintenance database)."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger at the newest schema, migrated once per session (and never written)."""
    path = tmp_path_factory.mktemp("migrated") / "ledger.db"
    Ledger.open(f"sqlite:///{path}").close()
    if path.with_name(path.name + "-wal").exists():  # closing the last connection folds it in
        raise RuntimeError("the migrated SQLite template kept a write-ahead log")
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server_url: str) -> str:
    """Name of a PostgreSQL database at the newest schema, the template of each test's copy."""
    url = create_database(postgres_server_url)
    Ledger.open(url).close()
    return url.rsplit("/", 1)[1]


@pytest.fixture
def migrated_copy(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes fresh ledger databases at the newest schema: ``migrated_copy("sqlite")``, or
    ``"postgres"``; each a copy of one migrated once per session (``Ledger.open`` then finds
    nothing to migrate), as every test would otherwise run the migrations anew."""
    made = itertools.count()

    def copy(kind: str) -> str:
        if kind == "sqlite":
            n = next(made)
            path = tmp_path / ("ledger.db" if n == 0 else f"ledger-{n}.db")
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
            return f"sqlite:///{path}"
        return create_database(request.getfixturevalue("postgres_server_url"),
                               template=request.getfixturevalue("migrated_postgres"))

    return copy


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, migrated_copy: Callable[[str], str]) -> str:
    """A fresh ledger database at the newest schema: once on SQLite, once on PostgreSQL.

    Made by :func:`migrated_copy`; a test of the migrations themselves asks for
    :func:`empty_database_url`.
    """
    return migrated_copy(request.param)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database (no schema): once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    server: str = request.getfixturevalue("postgres_server_url")
    return create_database(server)
