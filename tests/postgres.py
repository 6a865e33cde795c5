"""A throwaway PostgreSQL 15 server for the test session.

Uses ``$TRUSTLEDGER_TEST_POSTGRES_URL`` when CI already started one; otherwise
starts its own as the ``postgres`` user (the server refuses to run as root) on
127.0.0.1 with its socket in a temp folder, and stops it at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

URL_ENV = "TRUSTLEDGER_TEST_POSTGRES_URL"
_ADMIN: dict[str, sa.Engine] = {}
"""One engine (one pooled connection) per server that creates the test databases."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return list(args)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a PostgreSQL server's maintenance database ``postgres``."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL's initdb/pg_ctl are not on PATH; install PostgreSQL 15")
    root = Path(tempfile.mkdtemp(prefix="tl-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(
        _as_postgres(initdb, "-D", str(data), "-U", "app", "--auth=trust", "-E", "UTF8",
                     "--locale=C.UTF-8", "-N"),
        check=True, capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off " \
           "-c synchronous_commit=off -c max_connections=200"
    subprocess.run(
        _as_postgres(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-o", opts,
                     "start"),
        check=True, capture_output=True,
    )
    url = f"postgresql+psycopg://app@127.0.0.1:{port}/postgres"
    try:
        yield url
    finally:
        admin = _ADMIN.pop(url, None)
        if admin is not None:
            admin.dispose()
        subprocess.run(_as_postgres(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"),
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, template: str | None = None) -> str:
    """Create a fresh database on the server and return its URL.

    Empty, or a copy of the database ``template`` names (which nobody may be connected
    to meanwhile: PostgreSQL copies its files).
    """
    name = f"tl_{uuid.uuid4().hex[:12]}"
    copied = "" if template is None else f' TEMPLATE "{template}"'
    engine = _ADMIN.get(server_url)
    if engine is None:  # one pooled connection per server, not a connect per database
        engine = _ADMIN[server_url] = sa.create_engine(
            server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.SingletonThreadPool,
            pool_pre_ping=True)
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copied}'))
    return server_url.rsplit("/", 1)[0] + "/" + name

