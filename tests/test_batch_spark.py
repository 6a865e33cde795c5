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

from tests.policies.support import d, ev, policy_file
from tests.test_batch import check_population, populations, run
from trustledger.batch import (
    COLUMNAR,
    duckdb_backend,
    events_table,
    rescore,
    spark_backend,
    spark_session,
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


@settings(max_examples=8, deadline=None,
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
