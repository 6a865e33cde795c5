"""Event files (CSV, JSON Lines, Parquet) into the ledger: validated, line-numbered, atomic."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trustledger.errors import ConflictError, InputError
from trustledger.ledger import EventIn, Ledger, ingest_file, read_events

HEADER = "source,source_event_id,subject,type,occurred_at,attributes,supersedes\n"


def csv_file(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def good_rows(n: int, start: int = 0) -> list[str]:
    return [
        f'bank-a,e{i},s{i % 3},repayment_late,2025-03-0{1 + i % 9}T10:00:00Z,'
        f'"{{""days_late"": {i}, ""amount"": 12.5}}",'
        for i in range(start, start + n)
    ]


def jsonl_file(tmp_path: Path, *lines: Any, name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def record(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": "bank-a", "source_event_id": f"e{i}", "subject": f"s{i % 3}",
        "type": "bill_paid", "occurred_at": "2025-03-01T10:00:00+01:00",
        "attributes": {"amount": i},
    }
    base.update(over)
    return base


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    with Ledger.open(database_url) as opened:
        yield opened


# -- reading ---------------------------------------------------------------------------------


def test_csv_rows_become_events_with_their_line_numbers(tmp_path: Path) -> None:
    path = csv_file(tmp_path, *good_rows(2),
                    'bank-a,e9,s1,retraction,2025-03-02T00:00:00+02:00,,e0')
    result = read_events(path)
    assert result.problems == [] and result.format == "csv"
    assert result.lines == [2, 3, 4]
    first, _, last = result.events
    assert first == EventIn(source="bank-a", source_event_id="e0", subject="s0",
                            type="repayment_late", occurred_at=datetime(2025, 3, 1, 10, tzinfo=UTC),
                            attributes={"days_late": 0, "amount": 12.5})
    assert last.attributes == {} and last.supersedes == "e0"
    assert last.occurred_at == datetime(2025, 3, 1, 22, tzinfo=UTC)


def test_csv_problems_name_line_and_field(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        *good_rows(1),                                                            # line 2
        'bank-a,e1,s1,bill_paid,2025-03-01T10:00:00,,',                           # 3: naive
        'bank-a,e2,s1,bill_paid,2025-03-01T10:00:00Z,{not json},',                # 4
        'bank-a,e3,s1,bill_paid,2025-03-01T10:00:00Z,"[1, 2]",',                  # 5
        'bank-a,e4,s1',                                                           # 6
        'bank-a,e5,"multi\nline subject",bill_paid,2025-03-01T10:00:00Z,,',       # 7-8
        'bank-a,e6,,bill_paid,2025-03-01T10:00:00Z,,',                            # 9: empty
        'bank-a,e7,s1,bill_paid,tomorrow,,',                                      # 10
        *good_rows(1, start=8),                                                   # 11
    )
    result = read_events(path)
    found = [(p.line, p.field) for p in result.problems]
    assert found == [
        (3, "occurred_at"), (4, "attributes"), (5, "attributes"), (6, "(row)"),
        (7, "subject"), (9, "subject"), (10, "occurred_at"),
    ]
    assert result.lines == [2, 11]
    assert "UTC offset" in result.problems[0].reason
    assert "invalid JSON" in result.problems[1].reason
    assert "JSON object" in result.problems[2].reason
    assert "3 cells" in result.problems[3].reason
    assert str(result.problems[0]).startswith("line 3: occurred_at: ")
    assert result.rows == 9


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("source,source_event_id,subject,type,occurred_at,colour\n", "unknown column(s) colour"),
        ("source,subject,type,occurred_at\n", "missing column(s) source_event_id"),
        ("source,source,source_event_id,subject,type,occurred_at\n", "repeated column(s) source"),
    ],
)
def test_csv_header_problems_refuse_the_file(tmp_path: Path, header: str, message: str) -> None:
    path = csv_file(tmp_path, header=header)
    with pytest.raises(InputError, match=rf"line 1: .*{re.escape(message)}"):
        read_events(path)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + b"bank-a,e1,s\xe9,t,x,,\n")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "events.txt").write_text("x")
    with pytest.raises(InputError, match="line 2: not UTF-8"):
        read_events(tmp_path / "latin1.csv")
    with pytest.raises(InputError, match="empty file"):
        read_events(tmp_path / "empty.csv")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_events(tmp_path / "fake.parquet")
    with pytest.raises(InputError, match="cannot tell the format"):
        read_events(tmp_path / "events.txt")
    with pytest.raises(InputError, match="no such file"):
        read_events(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="format: 'xml'"):
        read_events(tmp_path / "events.txt", format="xml")
    assert read_events(tmp_path / "events.txt", format="jsonl").problems[0].line == 1


def test_jsonl_lines(tmp_path: Path) -> None:
    path = jsonl_file(
        tmp_path,
        record(1),                                   # line 1
        "",                                          # 2: blank, skipped
        "{broken",                                   # 3
        "[1, 2]",                                    # 4
        record(2, occurred_at="2025-03-01T10:00"),   # 5: naive
        record(3, extra=True),                       # 6
        record(4, attributes="{\"a\": 1}"),          # 7: text, not an object
        record(5, occurred_at=1_700_000_000),        # 8: a number
        record(6, supersedes="e1"),                  # 9
    )
    result = read_events(path)
    assert [(p.line, p.field) for p in result.problems] == [
        (3, "(row)"), (4, "(row)"), (5, "occurred_at"), (6, "extra"), (7, "attributes"),
        (8, "occurred_at"),
    ]
    assert result.lines == [1, 9]
    assert result.problems[3].reason == "unknown field"
    assert "not a number" in result.problems[5].reason


def test_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    table = pa.table({
        "source": ["bank-a", "bank-a", "bank-a"],
        "source_event_id": ["e1", "e2", "e3"],
        "subject": ["s1", "", "s2"],
        "type": ["bill_paid", "bill_paid", "retraction"],
        "occurred_at": pa.array([datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)] * 3,
                                pa.timestamp("us", tz="UTC")),
        "attributes": ['{"amount": 1}', None, None],
        "supersedes": [None, None, "e1"],
    })
    pq.write_table(table, path)
    result = read_events(path)
    assert [(p.line, p.field, p.unit) for p in result.problems] == [(2, "subject", "row")]
    assert str(result.problems[0]).startswith("row 2: subject: ")
    assert result.lines == [1, 3]
    assert result.events[0].occurred_at == datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert result.events[0].attributes == {"amount": 1}
    assert result.events[1].supersedes == "e1"


def test_parquet_nanosecond_and_string_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    stamps = pa.array([1_740_823_200_000_000_000], pa.timestamp("ns", tz="Europe/Paris"))
    pq.write_table(pa.table({
        "source": ["a"], "source_event_id": ["1"], "subject": ["s"], "type": ["t"],
        "occurred_at": stamps,
    }), path)
    assert read_events(path).events[0].occurred_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
    pq.write_table(pa.table({
        "source": ["a"], "source_event_id": ["1"], "subject": ["s"], "type": ["t"],
        "occurred_at": ["2025-03-01T10:00:00Z"],
    }), path)
    assert read_events(path).events[0].occurred_at == datetime(2025, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"occurred_at": pa.array([datetime(2025, 1, 1)], pa.timestamp("us"))}, "no time zone"),
        ({"attributes": pa.array([{"a": 1}])}, "string column of JSON"),
        ({"colour": pa.array(["red"])}, "unknown column"),
    ],
)
def test_parquet_column_problems_refuse_the_file(
    tmp_path: Path, columns: dict[str, Any], message: str
) -> None:
    base: dict[str, Any] = {
        "source": ["a"], "source_event_id": ["1"], "subject": ["s"], "type": ["t"],
        "occurred_at": pa.array([datetime(2025, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
    }
    base.update(columns)
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table(base), path)
    with pytest.raises(InputError, match=message):
        read_events(path)


# -- ingesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_a_malformed_file_appends_nothing(ledger: Ledger, tmp_path: Path, kind: str) -> None:
    ledger.append_event(EventIn.model_validate(record(100)))
    before = ledger.head()
    if kind == "csv":
        path = csv_file(tmp_path, *good_rows(3), "bank-a,e7,s1,bill_paid,2025-03-01,,")
        where = "line 5: occurred_at"
    elif kind == "jsonl":
        path = jsonl_file(tmp_path, record(1), record(2), record(3, subject=""))
        where = "line 3: subject"
    else:
        path = tmp_path / "events.parquet"
        pq.write_table(pa.Table.from_pylist(
            [{**record(i), "attributes": json.dumps(record(i)["attributes"])} for i in range(3)]
            + [{**record(3), "attributes": "{oops"}]
        ), path)
        where = "row 4: attributes"
    with pytest.raises(InputError, match="nothing appended") as caught:
        ingest_file(ledger, path)
    assert where in str(caught.value)
    assert ledger.head() == before
    assert ledger.verify().entries == 1


def test_ingest_appends_a_file_atomically_and_idempotently(
    ledger: Ledger, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, *good_rows(1200))
    done: list[int] = []
    report = ingest_file(ledger, path, progress=done.append, batch_size=500)
    assert (report.rows, report.appended, report.existing, report.rejected) == (1200, 1200, 0, 0)
    assert done == [500, 1000, 1200]
    assert (report.head_seq, report.head_hash) == ledger.head()
    again = ingest_file(ledger, path)
    assert (again.appended, again.existing, again.head_seq) == (0, 1200, 1200)
    more = csv_file(tmp_path, *good_rows(1500), name="more.csv")  # 1200 known, 300 new
    third = ingest_file(ledger, more)
    assert (third.appended, third.existing, third.head_seq) == (300, 1200, 1500)
    assert ledger.verify().entries == 1500


def test_ingest_conflict_appends_nothing(ledger: Ledger, tmp_path: Path) -> None:
    ingest_file(ledger, jsonl_file(tmp_path, record(1)))
    changed = jsonl_file(tmp_path, record(2), record(1, subject="someone-else"), name="b.jsonl")
    with pytest.raises(ConflictError, match="'e1'"):
        ingest_file(ledger, changed)
    assert ledger.head()[0] == 1


def test_ingest_names_the_line_of_an_append_time_problem(ledger: Ledger, tmp_path: Path) -> None:
    path = jsonl_file(tmp_path, record(1), record(2, supersedes="e9"), record(3))

    def positive(event: EventIn) -> list[tuple[str, str]]:
        return [] if event.attributes["amount"] != 3 else [("attributes.amount", "not 3")]

    with pytest.raises(InputError) as caught:
        ingest_file(ledger, path, validate=positive)
    message = str(caught.value)
    assert "line 2: supersedes: names no earlier event 'e9'" in message
    assert "line 3: attributes.amount: not 3" in message
    assert ledger.head()[0] == 0


def test_rejects_file_takes_the_bad_rows_and_the_rest_is_appended(
    ledger: Ledger, tmp_path: Path
) -> None:
    path = jsonl_file(
        tmp_path,
        record(1),
        record(2, occurred_at="2025-03-01T10:00:00"),      # naive: refused when read
        record(3, supersedes="e2"),                        # e2 refused: refused when appended
        record(4, supersedes="e3", type="retraction"),     # e3 refused: refused next round
        "{broken",
        record(6, supersedes="e1"),
    )
    rejects = tmp_path / "rejects.jsonl"
    report = ingest_file(ledger, path, rejects=rejects)
    assert (report.rows, report.appended, report.rejected) == (6, 2, 4)
    assert [e.source_event_id for e in ledger.events()] == ["e1", "e6"]
    written = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["line"], [p["field"] for p in r["problems"]]) for r in written] == [
        (2, ["occurred_at"]), (3, ["supersedes"]), (4, ["supersedes"]), (5, ["(row)"]),
    ]
    assert written[0]["row"]["source_event_id"] == "e2"
    assert written[1]["row"]["supersedes"] == "e2"
    assert written[3]["row"] == "{broken"


def test_rejects_with_nothing_valid(ledger: Ledger, tmp_path: Path) -> None:
    path = csv_file(tmp_path, "bank-a,e1,s1,t,never,,")
    report = ingest_file(ledger, path, rejects=tmp_path / "rejects.jsonl")
    assert (report.appended, report.rejected, report.head_seq) == (0, 1, 0)
    (line,) = (tmp_path / "rejects.jsonl").read_bytes().splitlines()
    assert orjson.loads(line)["row"]["occurred_at"] == "never"


def test_the_synthetic_population_ingests(ledger: Ledger, tmp_path: Path) -> None:
    from trustledger.synth import Population, write_parquet

    path = tmp_path / "synth.parquet"
    write_parquet(Population(subjects=50, events=2_000, seed=3), path)
    report = ingest_file(ledger, path)
    assert report.appended == 2_000
    assert len(list(ledger.subjects())) <= 50
    assert ledger.verify().entries == 2_000
