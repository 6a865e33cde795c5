"""Backup and restore: export, then import into an empty ledger, gives the same chain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from trustledger.errors import InputError, IntegrityError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.schema import entries
from trustledger.ledger.transfer import PARQUET_SCHEMA
from trustledger.ledger.transfer import read_export as read_export_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(n: int, subject: str = "alice", **over: Any) -> EventIn:
    fields: dict[str, Any] = {
        "source": "bank-a", "source_event_id": f"e{n}", "subject": subject,
        "type": "bill_paid", "occurred_at": datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=n),
        "attributes": {"amount": n * 1.5, "tags": ["a", "ü"], "nested": {"ok": True}},
    }
    fields.update(over)
    return EventIn(**fields)


@pytest.fixture
def source(database_url: str) -> Iterator[Ledger]:
    """A ledger with events, records, a correction and a purge, times to the microsecond."""
    ticks = iter(T0 + timedelta(microseconds=7 * i + 1) for i in range(100_000))
    with Ledger.open(database_url, clock=lambda: next(ticks)) as ledger:
        ledger.append_events([event(i, f"s{i % 5}") for i in range(1, 301)])
        ledger.append_record("consent", {"purpose": "loan"}, subject="s1")
        ledger.append_event(event(301, supersedes="e3"))
        ledger.purge_payload(2, "erasure")
        ledger.append_record("policy.published", {"hash": "sha256:1"})
        yield ledger


def stored_rows(url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(entries).order_by(entries.c.seq))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_export_then_import_reproduces_the_chain(
    source: Ledger, database_url: str, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"backup{suffix}"
    seen: list[int] = []
    assert source.export(path, progress=seen.append) == 304
    assert seen[-1] == 304
    target_url = f"sqlite:///{tmp_path / 'restored.db'}"
    with Ledger.open(target_url) as target:
        report = target.import_(path)
        assert (report.entries, report.head_hash) == source.head()
        assert target.head() == source.head()
        assert target.verify() == source.verify()
        assert list(target.records(subject="s1")) == list(source.records(subject="s1"))
        assert target.entry(2).payload is None
    assert stored_rows(target_url) == stored_rows(database_url)


def test_round_trip_of_more_entries_than_one_chunk(database_url: str, tmp_path: Path) -> None:
    from trustledger.ledger.bulk import CHUNK

    with Ledger.open(database_url) as ledger:
        ledger.append_events([event(i, f"s{i % 50}") for i in range(CHUNK + 10)])
        ledger.purge_payload(CHUNK + 3, "erasure")
        for name in ("big.parquet", "big.jsonl"):
            assert ledger.export(tmp_path / name) == CHUNK + 11
            with Ledger.open(f"sqlite:///{tmp_path / name}.db") as target:
                assert target.import_(tmp_path / name).head_hash == ledger.head()[1]
                assert target.verify().entries == CHUNK + 11


def test_import_into_postgres_and_back(
    source: Ledger, postgres_server_url: str, tmp_path: Path
) -> None:
    from tests.postgres import create_database

    path = tmp_path / "backup.parquet"
    source.export(path)
    with Ledger.open(create_database(postgres_server_url)) as target:
        assert target.import_(path).head_hash == source.head()[1]
        again = tmp_path / "again.jsonl"
        target.export(again)
    with Ledger.open(f"sqlite:///{tmp_path / 'third.db'}") as third:
        assert third.import_(again).head_hash == source.head()[1]


def test_export_of_an_empty_ledger(database_url: str, tmp_path: Path) -> None:
    with Ledger.open(database_url) as ledger:
        for name in ("empty.parquet", "empty.jsonl"):
            assert ledger.export(tmp_path / name) == 0
            with Ledger.open(f"sqlite:///{tmp_path / name}.db") as target:
                assert target.import_(tmp_path / name).entries == 0


def test_import_refuses_a_ledger_that_is_not_empty(source: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "backup.jsonl"
    source.export(path)
    before = source.head()
    with pytest.raises(InputError, match="empty ledger"):
        source.import_(path)
    assert source.head() == before


def test_the_parquet_export_has_the_documented_columns(source: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "backup.parquet"
    source.export(path)
    table = pq.read_table(path)
    assert table.schema.equals(PARQUET_SCHEMA, check_metadata=False)
    first = table.slice(0, 1).to_pylist()[0]
    assert first["recorded_at"] == T0 + timedelta(microseconds=1)
    assert orjson.loads(first["payload"])["source_event_id"] == "e1"


def _tampered_jsonl(tmp_path: Path, source: Ledger, line: int, **change: Any) -> Path:
    path = tmp_path / "backup.jsonl"
    source.export(path)
    lines = path.read_bytes().splitlines()
    record = orjson.loads(lines[line - 1])
    record.update(change)
    lines[line - 1] = orjson.dumps(record)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(
    ("line", "change", "seq", "reason"),
    [
        (5, {"subject": "mallory"}, 5, "hash does not match"),
        (6, {"payload": '{"x":1}'}, 6, "payload does not match"),
        (304, {"hash": "0" * 64}, 304, "hash does not match"),
        (3, {"payload": None}, 3, "without a purge entry"),
        (7, {"seq": 8}, 7, "entry missing"),
    ],
)
def test_import_verifies_the_file_and_writes_nothing_if_it_is_broken(
    source: Ledger, tmp_path: Path, line: int, change: dict[str, Any], seq: int, reason: str
) -> None:
    path = _tampered_jsonl(tmp_path, source, line, **change)
    with Ledger.open(f"sqlite:///{tmp_path / 'restored.db'}") as target:
        with pytest.raises(IntegrityError) as caught:
            target.import_(path)
        assert caught.value.seq == seq and reason in caught.value.reason
        assert str(path) in str(caught.value)
        assert target.head()[0] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"seq": 1}\n', "line 1: kind: missing"),
        (b"not json\n", "line 1: invalid JSON"),
        (b"[1, 2]\n", "line 1: not a JSON object"),
        (b'{"seq": 1, "extra": 2}\n', "unknown field"),
    ],
)
def test_import_refuses_malformed_jsonl(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}") as target:
        with pytest.raises(InputError, match=message):
            target.import_(path)
        assert target.head()[0] == 0


def test_import_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.parquet").write_text("not parquet")
    pq.write_table(pa.table({"seq": [1]}), tmp_path / "other.parquet")
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}") as target:
        with pytest.raises(InputError, match="unknown format"):
            target.import_(tmp_path / "notes.txt")
        with pytest.raises(InputError, match="no such file"):
            target.import_(tmp_path / "missing.jsonl")
        with pytest.raises(InputError, match="not a readable Parquet file"):
            target.import_(tmp_path / "fake.parquet")
        with pytest.raises(InputError, match="missing column"):
            target.import_(tmp_path / "other.parquet")
        with pytest.raises(InputError, match="unknown format"):
            target.export(tmp_path / "out.csv")
        assert target.head()[0] == 0


def test_reading_an_export_is_lazy(source: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "backup.parquet"
    source.export(path)
    rows = read_export_rows(path)
    first = next(iter(rows))
    assert first.seq == 1 and first.prev_hash == "0" * 64
