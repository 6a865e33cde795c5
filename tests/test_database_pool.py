"""A ledger's engine keeps the connections a busy server uses (SQLite file, PostgreSQL server).

The service reads from many worker threads at once. A connection taken past the pool's
size is opened for one use and closed after it (a cold SQLite page cache and its pragmas,
or a new PostgreSQL server process, on every first read of a subject); so rounds of
:data:`~trustledger.ledger.database.POOL_SIZE` concurrent reads open that many
connections once, not again in every round.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from trustledger.ledger.database import POOL_SIZE, create_engine, fetch_all


def read(engine: sa.Engine, select: str, barrier: threading.Barrier,
         results: list[object]) -> None:
    """One read on a pooled connection, held until every thread of the round has one."""
    conn = engine.raw_connection()
    try:
        barrier.wait(timeout=30)
        cursor = conn.cursor()
        cursor.execute(select)
        results.append(cursor.fetchall())
        cursor.close()
    finally:
        conn.close()


def test_concurrent_reads_reuse_the_pooled_connections(database_url: str) -> None:
    engine = create_engine(database_url)
    opened = 0

    @sa.event.listens_for(engine, "connect")
    def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    select = "SELECT 1" if engine.dialect.name == "sqlite" else "SELECT pg_sleep(0.01)"
    try:
        for _ in range(3):
            # Every thread holds its connection until all have one: POOL_SIZE at once.
            barrier = threading.Barrier(POOL_SIZE)
            results: list[object] = []
            threads = [threading.Thread(target=read, args=(engine, select, barrier, results))
                       for _ in range(POOL_SIZE)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert len(results) == POOL_SIZE
        assert opened == POOL_SIZE
        # And a plain read after them takes one of the pooled connections.
        assert fetch_all(engine, "SELECT 1", ()) == [(1,)]
        assert opened == POOL_SIZE
    finally:
        engine.dispose()
