"""The same population expression on a real local Spark session (Java 17) equals ``evaluate``.

This module never skips itself: if Spark cannot start, it fails. One session is shared by
the module (starting one takes seconds).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import d, ev, policy_file
from tests.test_batch import check_population, populations, run
from trustledger.batch import (
    COLUMNAR,
    duckdb_backend,
    events_table,
    read_events,
    read_keyed,
    rescore,
    spark_backend,
    spark_session,
    write_events,
    write_keyed,
)

# PySpark's Arrow collection leaves its local result socket to the garbage collector.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session(memory="1g", partitions=2)
    session.sparkContext.setLogLevel("ERROR")
    yield spark_backend(session)
    session.stop()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def test_spark_session_really_runs(spark: Any) -> None:
    assert spark.name == "pyspark"
    assert spark._session.sparkContext.master.startswith("local")
    assert spark._session.range(3).count() == 3


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_spark_equals_evaluate(spark: Any, folder: Path, data: st.DataObject) -> None:
    policy, people = data.draw(populations())
    job, consents, known_at = run(spark, folder, policy, people, data)
    check_population(policy, people, job, consents, known_at)


def test_spark_and_duckdb_give_the_same_table(spark: Any, folder: Path) -> None:
    policy = policy_file("driving")
    events = [ev("a", "offence_serious", "2021-02-01"), ev("b", "offence_grave", "2022-03-01"),
              ev("c", "offence_minor", "2022-04-01", subject="bob"),
              ev("w", "retraction", "2022-05-01", subject="bob", supersedes="c")]
    on_spark = rescore(policy, events_table(spark, events, folder), d("2023-01-01"),
                       measures=False).table
    con = duckdb_backend(memory_limit="512MB")
    on_duckdb = rescore(policy, events_table(con, events, folder), d("2023-01-01"),
                        measures=False).table
    con.disconnect()
    assert on_spark.sort_by("subject").to_pylist() == on_duckdb.sort_by("subject").to_pylist()
    rows = {r["subject"]: r for r in on_spark.to_pylist()}
    assert rows["bob"]["score__driving"] == 0.0 and rows["alice"]["score__driving"] == 5.0
    assert set(on_spark.column("path").to_pylist()) == {COLUMNAR}


def test_spark_reads_a_keyed_export(spark: Any, folder: Path) -> None:
    """The keyed export (integer subject and type keys) on Spark gives the named table
    DuckDB gives from the events file, Sesame's vectorised ``when`` included."""
    from trustledger.policy import load_policy

    policy = load_policy(Path(__file__).resolve().parent.parent / "policies" / "sesame.yaml")
    events = [ev("r1", "repayment_on_time", "2025-03-01", subject="ann", amount=900.0),
              ev("i1", "identity_verified", "2025-04-01", subject="ann", method="passport"),
              ev("i2", "identity_verified", "2025-05-01", subject="ann", method="bank"),
              ev("l1", "repayment_late", "2025-06-01", subject="bo", days_late=9, amount=1.0),
              ev("x1", "unknown_type", "2025-06-02", subject="cy")]
    path = folder / "keyed-source.parquet"
    write_events(events, path)
    con = duckdb_backend(memory_limit="512MB")
    write_keyed(con, path, folder / "keyed")
    at = d("2026-01-01")
    expected = rescore(policy, read_events(con, path), at, consent_all=True).table
    con.disconnect()
    table, keys = read_keyed(spark, folder / "keyed")
    got = rescore(policy, table, at, consent_all=True, keys=keys).table
    assert got.sort_by("subject").to_pylist() == expected.sort_by("subject").to_pylist()
    rows = {r["subject"]: r for r in got.to_pylist()}
    assert rows["ann"]["metric__identity_checks"] == 1
    assert rows["cy"]["score__sesame"] == 550.0


def test_spark_reads_a_ledger_export(spark: Any, folder: Path) -> None:
    """A ledger export on Spark: sources, ids and corrections read from the stored payloads,
    the same table as DuckDB gives from the same file."""
    from datetime import UTC, datetime

    from trustledger.ledger import EventIn, Ledger

    policy = policy_file("driving")
    now = datetime(2023, 1, 1, tzinfo=UTC)
    rows = [("a", "offence_serious", "2021-02-01", "alice", None),
            ("b", "offence_grave", "2022-03-01", "alice", None),
            ("c", "offence_minor", "2022-04-01", "bob", None),
            ("w", "retraction", "2022-05-01", "bob", "c")]
    export = folder / "ledger-export.parquet"
    with Ledger.open(f"sqlite:///{folder / 'spark-ledger.db'}", clock=lambda: now) as ledger:
        ledger.append_events([
            EventIn(source="src", source_event_id=key, subject=subject, type=kind,
                    occurred_at=d(day), supersedes=target)
            for key, kind, day, subject, target in rows])
        ledger.export(export)
    at = d("2023-01-01")
    on_spark = rescore(policy, read_events(spark, export), at, measures=False).table
    con = duckdb_backend(memory_limit="512MB")
    on_duckdb = rescore(policy, read_events(con, export), at, measures=False).table
    con.disconnect()
    assert on_spark.sort_by("subject").to_pylist() == on_duckdb.sort_by("subject").to_pylist()
    scores = {r["subject"]: r["score__driving"] for r in on_spark.to_pylist()}
    assert scores == {"alice": 5.0, "bob": 0.0}  # bob's offence withdrawn by its source


def test_spark_reads_the_ledger_as_duckdb_streams_it(spark: Any, folder: Path) -> None:
    """``read_ledger`` on Spark (through a Parquet file) gives DuckDB's streamed table."""
    from datetime import UTC, datetime

    from trustledger.batch.sources import read_ledger
    from trustledger.ledger import EventIn, Ledger
    from trustledger.rights import grant_opt_in
    from trustledger.rights.consent import GRANTED, WITHDRAWN

    now = datetime(2023, 1, 1, tzinfo=UTC)
    kinds = ("event", GRANTED, WITHDRAWN)
    with Ledger.open(f"sqlite:///{folder / 'streamed.db'}", clock=lambda: now) as ledger:
        ledger.append_events([
            EventIn(source="src", source_event_id=f"{s}{i}", subject=s, type="offence_minor",
                    occurred_at=d(f"2022-0{i + 1}-01"), attributes={"n": i})
            for s in ("alice", "bob") for i in range(3)])
        grant_opt_in(ledger, "bob", "driving")
        on_spark, spark_records = read_ledger(spark, ledger.batch_columns(kinds, rows=2),
                                              folder)
        con = duckdb_backend(memory_limit="512MB")
        on_duckdb, duck_records = read_ledger(con, ledger.batch_columns(kinds), folder)
        expected = on_duckdb.to_pyarrow().sort_by("source_event_id").to_pylist()
        con.disconnect()
    got = spark._session.sql(f"SELECT * FROM {on_spark.get_name()}").toArrow()
    assert got.sort_by("source_event_id").to_pylist() == expected
    assert spark_records.equals(duck_records) and spark_records.num_rows == 1


def test_rescore_command_on_spark_from_the_ledger_equals_duckdb(tmp_path: Path) -> None:
    # The command's own Spark path (its own session, stopped at the end: so a fresh
    # interpreter, not this module's session): the ledger read through a Parquet file
    # gives the table DuckDB's threaded read gives.
    import os
    import subprocess
    import sys
    from datetime import UTC, datetime

    import pyarrow.parquet as pq

    from trustledger.ledger import EventIn, Ledger
    from trustledger.rights import grant_opt_in

    now = datetime(2026, 6, 1, tzinfo=UTC)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url, clock=lambda: now) as ledger:
        ledger.append_events([
            EventIn(source="bank", source_event_id=f"{s}-{i}", subject=s,
                    type="repayment_on_time", occurred_at=datetime(2026, 1 + i, 3, tzinfo=UTC),
                    attributes={"amount": 300.0 * (i + 1)})
            for s in ("ann", "bo", "cy") for i in range(4)])
        grant_opt_in(ledger, "ann", "sesame")
    sesame = Path(__file__).resolve().parent.parent / "policies" / "sesame.yaml"
    cli = "import sys; from trustledger.cli import main; sys.argv[0] = 'trustledger'; main()"
    outputs = {}
    for engine in ("duckdb", "spark"):
        outputs[engine] = tmp_path / f"{engine}.parquet"
        subprocess.run([sys.executable, "-c", cli, "rescore", "--database-url", url,
                        "--policy", str(sesame), "--at", "2026-06-01", "--engine", engine,
                        "--output", str(outputs[engine]), "--sample", "0"],
                       check=True, capture_output=True, text=True,
                       env=dict(os.environ, TRUSTLEDGER_DATA=str(tmp_path / "data")))
    spark_rows = pq.read_table(outputs["spark"]).to_pylist()
    assert spark_rows == pq.read_table(outputs["duckdb"]).to_pylist()
    assert {r["subject"] for r in spark_rows} == {"ann", "bo", "cy"}
    assert [r["score__sesame"] is None for r in spark_rows] == [False, True, True]
