"""Issue 17, ingest: whole batches checked column-wise, every bad row named, nothing written.

Real SQLite files and the real PostgreSQL server (``database_url``); the HTTP batch
endpoint through the real app. Each bad-row rule is reported with its row, field and
rule; the CLI (``trustledger ingest``) and ``POST /v1/events/batch`` refuse the same
event with the same message; files larger than one batch stream; the chain verifies
and equals the one the per-event path writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.clock import FixedClock, examples
from tests.test_hardening_events import NOW, SESAME, World, open_world
from trustledger.cli import app
from trustledger.errors import ConflictError, InputError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.chain import canonical, iso
from trustledger.ledger.columnar import (
    EventRules,
    check_batch,
    from_arrow,
    from_rows,
    payload_texts,
)
from trustledger.ledger.commands import _rules as cli_rules
from trustledger.ledger.ingest import SHOWN, ingest_file
from trustledger.policy import load_policy
from trustledger.principals import ServiceLedger

STAMP = pa.timestamp("us", tz="UTC")
WHEN = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
POLICY = load_policy(SESAME)
SOURCES = {"rentals": frozenset({"rental_returned"}), "bank": frozenset({"bill_paid"})}


def row(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": "rentals", "source_event_id": f"r{i}", "subject": f"s{i % 4}",
        "type": "rental_returned", "occurred_at": WHEN + timedelta(minutes=i),
        "attributes": json.dumps({"late_hours": i}),
    }
    base.update(over)
    return base


def parquet(path: Path, rows: list[dict[str, Any]], **types: pa.DataType) -> Path:
    names = dict.fromkeys(name for r in rows for name in r)
    columns = {name: [r.get(name) for r in rows] for name in names}
    schema = {name: types.get(name, STAMP if name == "occurred_at" else pa.string())
              for name in columns}
    pq.write_table(pa.table({n: pa.array(v, schema[n]) for n, v in columns.items()}), path)
    return path


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=FixedClock(NOW)) as opened:
        yield opened


# -- every bad-row rule: row, field, rule; nothing written ------------------------------------


BAD_ROWS: list[tuple[dict[str, Any], dict[str, pa.DataType], str, str, str]] = [
    ({"type": "gossip_reported", "attributes": "{}"}, {}, "type", "event-type",
     "'gossip_reported' is not an event type of policy sesame"),
    ({"source": "bank"}, {}, "type", "accreditation",
     "'bank' is not accredited for event type 'rental_returned' (or the type's domain in "
     "the event-type register is not one of the source's); accredited: bill_paid"),
    ({"source": "telco"}, {}, "source", "accreditation", "'telco' is not a registered source"),
    ({"attributes": json.dumps({"late_hours": -1})}, {}, "attributes", "attribute-schema",
     "late_hours=-1 is below its minimum 0"),
    ({"attributes": json.dumps({"late_hours": 2**60})}, {}, "attributes", "attribute-schema",
     "is above its maximum 9007199254740991 (the default bound"),
    ({"occurred_at": "2026-05-01T12:00:00"}, {"occurred_at": pa.string()}, "occurred_at",
     "timestamp", "must include a UTC offset"),
    ({"occurred_at": "yesterday"}, {"occurred_at": pa.string()}, "occurred_at", "timestamp",
     "Input should be a valid datetime"),
    ({"subject": " padded"}, {}, "subject", "name", "without control characters"),
    ({"attributes": "{oops"}, {}, "attributes", "attributes", "invalid JSON"),
    ({"type": "retraction", "attributes": None}, {}, "supersedes", "retraction",
     "must name the event it withdraws"),
]


@pytest.mark.parametrize(("change", "types", "field", "rule", "reason"), BAD_ROWS)
def test_each_bad_row_rule_names_row_field_and_rule(
    ledger: Ledger, tmp_path: Path, change: dict[str, Any], types: dict[str, pa.DataType],
    field: str, rule: str, reason: str,
) -> None:
    good = [row(i) for i in range(5)]
    if "occurred_at" in types:
        good = [{**r, "occurred_at": r["occurred_at"].isoformat()} for r in good]
    rows = [*good[:3], {**good[3], **change}, good[4]]
    path = parquet(tmp_path / "events.parquet", rows, **types)
    before = ledger.head()
    with pytest.raises(InputError) as refused:
        ingest_file(ledger, path, rules=EventRules(policy=POLICY, sources=SOURCES,
                                                   recorded_at=NOW))
    message = str(refused.value)
    assert f"row 4: {field}: " in message and f"[{rule}]" in message, message
    assert reason in message, message
    assert "1 invalid row(s), nothing appended" in message
    assert "row 1:" not in message and "row 5:" not in message
    assert ledger.head() == before


def test_a_key_repeated_with_other_content_names_the_first_row(ledger: Ledger,
                                                                tmp_path: Path) -> None:
    rows = [row(0), row(1), {**row(0), "subject": "someone-else"}, row(1)]
    path = parquet(tmp_path / "events.parquet", rows)
    for size in (10, 1):  # within one batch, and across batches
        with pytest.raises(InputError) as refused:
            ingest_file(ledger, path, batch_size=size)
        assert "row 3: source_event_id: repeats row 1's key with different content " \
               "[duplicate]" in str(refused.value)
        assert "row 4" not in str(refused.value)  # the same event again: not a problem
        assert ledger.head()[0] == 0


@pytest.mark.parametrize(("columns", "message"), [
    ({"subject": None}, "missing column(s) subject"),
    ({"subject": pa.array([7], pa.int64())}, "subject: must be a string column, not int64"),
    ({"occurred_at": pa.array([1], pa.int64())}, "occurred_at: must be a timestamp column"),
    ({"attributes": pa.array([{"a": 1}])}, "attributes: must be a string column of JSON"),
])
def test_missing_and_mistyped_columns_refuse_the_file(
    ledger: Ledger, tmp_path: Path, columns: dict[str, Any], message: str
) -> None:
    table = {"source": ["rentals"], "source_event_id": ["r1"], "subject": ["s1"],
             "type": ["rental_returned"], "occurred_at": pa.array([WHEN], STAMP)}
    for name, value in columns.items():
        if value is None:
            del table[name]
        else:
            table[name] = value
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest_file(ledger, path)
    assert ledger.head()[0] == 0


@pytest.mark.parametrize("name", ["empty.parquet", "empty.jsonl", "empty.csv"])
def test_a_file_without_events_is_refused(ledger: Ledger, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.table({"source": pa.array([], pa.string()),
                                 "source_event_id": pa.array([], pa.string()),
                                 "subject": pa.array([], pa.string()),
                                 "type": pa.array([], pa.string()),
                                 "occurred_at": pa.array([], STAMP)}), path)
    elif name.endswith(".csv"):
        path.write_text("source,source_event_id,subject,type,occurred_at\n")
    else:
        path.write_text("\n\n")
    with pytest.raises(InputError, match="no events in the file; nothing appended"):
        ingest_file(ledger, path)
    assert ledger.head()[0] == 0


def test_every_bad_row_is_counted_and_the_list_is_capped(ledger: Ledger,
                                                         tmp_path: Path) -> None:
    rows = [row(i, subject="" if i % 2 else f"s{i}") for i in range(2 * SHOWN + 10)]
    path = parquet(tmp_path / "events.parquet", rows)
    with pytest.raises(InputError) as refused:
        ingest_file(ledger, path, batch_size=7)
    message = str(refused.value)
    assert f"{SHOWN + 5} invalid row(s), nothing appended" in message
    assert message.count("\n  row ") == SHOWN
    assert "... and 5 more problem(s)" in message
    assert ledger.head()[0] == 0


def test_rejects_carry_row_field_and_rule(ledger: Ledger, tmp_path: Path) -> None:
    rows = [row(0), row(1, attributes='{"late_hours": -3}'), row(2, supersedes="r9"),
            row(3, supersedes="r0")]
    path = parquet(tmp_path / "events.parquet", rows)
    rejects = tmp_path / "rejects.jsonl"
    report = ingest_file(ledger, path, rejects=rejects, batch_size=2,
                         rules=EventRules(policy=POLICY, recorded_at=NOW))
    assert (report.rows, report.appended, report.rejected) == (4, 2, 2)
    written = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["row"], [(p["field"], p["rule"]) for p in r["problems"]]) for r in written] == [
        (2, [("attributes", "attribute-schema")]), (3, [("supersedes", "supersedes")])]
    assert written[1]["values"]["supersedes"] == "r9"
    assert ledger.verify().entries == 2


# -- the same message from the CLI and from HTTP ------------------------------------------------


@pytest.mark.parametrize(("event", "field"), [
    ({"type": "rental_returned", "attributes": {"late_hours": 2**62}}, "attributes"),
    ({"type": "rental_returned", "attributes": {"late_hours": 1, "colour": "red"}},
     "attributes"),
    ({"type": "bill_paid", "attributes": {}}, "type"),
    ({"type": "rental_returned", "attributes": {"late_hours": 1},
      "occurred_at": "2026-05-01T10:00:00"}, "occurred_at"),
    ({"type": "rental_returned", "attributes": {"late_hours": 1}, "subject": ""}, "subject"),
])
def test_cli_and_http_batch_refuse_an_event_with_the_same_message(
    tmp_path: Path, event: dict[str, Any], field: str
) -> None:
    base = {"source_event_id": "x1", "subject": "alice",
            "occurred_at": (NOW - timedelta(days=3)).isoformat()}
    item = {**base, **event}
    with open_world(f"sqlite:///{tmp_path / 'world.db'}") as world:
        before = world.ledger.head()
        status, http = _http_problem(world, item)
        file = tmp_path / "events.jsonl"
        file.write_text(json.dumps({"source": "rentals", **item}) + "\n")
        with ServiceLedger.open(world.url, clock=FixedClock(NOW)) as ledger, \
                pytest.raises(InputError) as refused:
            ingest_file(ledger, file, rules=cli_rules(ledger))
        assert world.ledger.head() == before
    assert http[0] == field
    assert f"line 1: {http[0]}: {http[1]} [" in str(refused.value), (http, str(refused.value))
    assert status == (403 if field == "type" else 422)


def _http_problem(world: World, item: dict[str, Any]) -> tuple[int, tuple[str, str]]:
    r = world.call("rentals", "POST", "/v1/events/batch",
                   json={"events": [_ok_item(), item]})
    assert r.status_code in (403, 422), r.text
    (error,) = r.json()["errors"]
    assert error["index"] == 1
    return r.status_code, (error["field"], error["reason"])


def _ok_item() -> dict[str, Any]:
    return {"source_event_id": "ok-batch", "subject": "alice", "type": "rental_returned",
            "occurred_at": (NOW - timedelta(days=2)).isoformat(),
            "attributes": {"late_hours": 0}}


def test_the_http_batch_appends_and_replays_idempotently(database_url: str) -> None:
    with open_world(database_url) as world:
        items = [{**_ok_item(), "source_event_id": f"b{i}", "attributes": {"late_hours": i}}
                 for i in range(5)]
        first = world.call("rentals", "POST", "/v1/events/batch", json={"events": items})
        assert first.status_code == 200, first.text
        assert first.json()["appended"] == 5
        again = world.call("rentals", "POST", "/v1/events/batch", json={"events": items})
        assert (again.json()["appended"], again.json()["existing"]) == (0, 5)
        changed = [{**items[0], "attributes": {"late_hours": 9}}]
        r = world.call("rentals", "POST", "/v1/events/batch", json={"events": changed})
        assert r.status_code == 409, r.text
        assert world.ledger.verify().entries == world.ledger.head()[0]


# -- streaming, chain and idempotency on both backends -----------------------------------------


def test_a_file_larger_than_a_batch_streams_and_verifies(ledger: Ledger, tmp_path: Path) -> None:
    rows = [row(i, source_event_id=f"q\"\\{i}", subject=f"süb\\{i % 3}") for i in range(23)]
    rows.append(row(23, type="retraction", supersedes='q"\\2', attributes=None))
    rows.append(row(24, supersedes='q"\\20'))
    path = parquet(tmp_path / "events.parquet", rows)
    done: list[int] = []
    report = ingest_file(ledger, path, batch_size=4, progress=done.append)
    assert (report.rows, report.appended, report.existing) == (25, 25, 0)
    assert done == [4, 8, 12, 16, 20, 24, 25]
    assert ledger.verify().entries == 25
    again = ingest_file(ledger, path, batch_size=5)
    assert (again.appended, again.existing, again.head_seq) == (0, 25, 25)
    more = parquet(tmp_path / "more.parquet", [*rows, row(99)])
    third = ingest_file(ledger, more, batch_size=6)
    assert (third.appended, third.existing, third.head_seq) == (1, 25, 26)
    assert ledger.verify().head_hash == ledger.head()[1]


def test_the_chain_is_the_one_the_per_event_path_writes(database_url: str,
                                                        tmp_path: Path) -> None:
    rows = [row(i, subject=f"ü\"{i}", attributes=json.dumps(
        {"late_hours": i, "note": "tab\there", "z": 1.5, "a": [1, {"b": None}]}))
        for i in range(6)]
    rows[3]["occurred_at"] = datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows[4]["occurred_at"] = datetime(2026, 1, 1, tzinfo=UTC)
    path = parquet(tmp_path / "events.parquet", rows)
    other = database_url.replace("ledger.db", "reference.db") if database_url.startswith(
        "sqlite") else None
    with Ledger.open(database_url, clock=FixedClock(NOW)) as ledger:
        ingest_file(ledger, path, batch_size=4)
        ours = [(e.payload_hash, e.hash) for e in ledger.records()]
    reference_url = other or f"sqlite:///{tmp_path / 'reference.db'}"
    with Ledger.open(reference_url, clock=FixedClock(NOW)) as reference:
        reference.append_events([EventIn.model_validate(
            {**r, "attributes": json.loads(r["attributes"])}) for r in rows])
        theirs = [(e.payload_hash, e.hash) for e in reference.records()]
    assert ours == theirs


def test_a_conflict_with_the_ledger_writes_nothing(ledger: Ledger, tmp_path: Path) -> None:
    ingest_file(ledger, parquet(tmp_path / "a.parquet", [row(0)]))
    path = parquet(tmp_path / "b.parquet", [row(1), {**row(0), "subject": "moved"}])
    with pytest.raises(ConflictError, match="'r0'"):
        ingest_file(ledger, path)
    assert ledger.head()[0] == 1


# -- the column-wise pass agrees with the per-event rules --------------------------------------

NAMES = st.text(st.characters(codec="utf-8"), max_size=6)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "source": st.sampled_from(["rentals", "bank", "telco", 'q"\\']),
    "source_event_id": NAMES, "subject": NAMES,
    "type": st.sampled_from(["rental_returned", "bill_paid", "retraction", "nope"]),
    "occurred_at": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat()),
        st.text(max_size=4), st.integers()),
    "attributes": st.one_of(st.none(), st.dictionaries(
        st.sampled_from(["late_hours", "x"]),
        st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=3)),
        max_size=2)),
    "supersedes": st.one_of(st.none(), NAMES),
}), min_size=1, max_size=8))
def test_the_columnar_pass_refuses_exactly_what_the_event_rules_refuse(
    items: list[dict[str, Any]],
) -> None:
    rules = EventRules(policy=POLICY, sources=SOURCES, recorded_at=NOW)
    checked = check_batch(from_rows(range(len(items)), items), rules)
    refused = {index for index, *_ in checked.problems}
    for index, item in enumerate(items):
        assert (index in refused) == (not _per_event_ok(item, rules)), item
    rows = np.flatnonzero(checked.ok)
    texts = payload_texts(checked, rows).to_pylist() if len(rows) else []
    for index, text in zip(rows.tolist(), texts, strict=True):
        event = EventIn.model_validate(items[index])
        assert text == canonical({
            "source": event.source, "source_event_id": event.source_event_id,
            "subject": event.subject, "type": event.type,
            "occurred_at": event.occurred_at.astimezone(UTC), "attributes": event.attributes,
            "supersedes": event.supersedes})


def _per_event_ok(item: dict[str, Any], rules: EventRules) -> bool:
    from pydantic import ValidationError

    from trustledger.ledger.columnar import accreditation_problem, policy_problem

    try:
        event = EventIn.model_validate(item)
    except ValidationError:
        return False
    assert rules.policy is not None and rules.sources is not None
    return accreditation_problem(event.source, event.type, rules.sources) is None and \
        policy_problem(event, rules.policy, rules.recorded_at) is None


def test_parquet_timestamps_of_every_unit_and_zone_read_as_the_same_moment(
    tmp_path: Path,
) -> None:
    moments = [datetime(2026, 3, 1, 9, 30, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
               datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    for unit in ("s", "ms", "us"):
        for zone in ("UTC", "Europe/Paris"):
            batch = pa.record_batch({
                "source": ["a"] * 3, "source_event_id": ["1", "2", "3"], "subject": ["s"] * 3,
                "type": ["t"] * 3,
                "occurred_at": pa.array(moments, pa.timestamp("us", tz="UTC")).cast(
                    pa.timestamp(unit, tz=zone))})
            checked = check_batch(from_arrow(batch, 1), EventRules())
            assert checked.ok.all()
            stamps = payload_texts(checked, np.arange(3))
            assert [orjson.loads(t)["occurred_at"] for t in stamps.to_pylist()] == [
                iso(m).replace(".000000Z", "Z") for m in moments]


def test_a_timestamp_beyond_the_year_9999_is_a_row_problem(ledger: Ledger,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({
        "source": ["a", "a"], "source_event_id": ["1", "2"], "subject": ["s", "s"],
        "type": ["t", "t"],
        "occurred_at": pa.array([0, 300_000_000_000], pa.timestamp("s", tz="UTC"))}), path)
    with pytest.raises(InputError) as refused:
        ingest_file(ledger, path)
    message = str(refused.value)
    assert "row 2: occurred_at: 300000000000" in message, message
    assert "after 1970-01-01T00:00:00Z is outside the representable range" in message


# -- the command line -----------------------------------------------------------------------


def test_the_command_shows_progress_on_stderr_and_never_in_json(tmp_path: Path,
                                                               now: datetime) -> None:
    path = parquet(tmp_path / "events.parquet", [
        row(i, occurred_at=now - timedelta(days=1, minutes=i)) for i in range(30)])
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    done = runner.invoke(app, ["ingest", str(path), "--json", "--progress", "--batch-size",
                               "7", "--database-url", url])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["appended"] == 30
    shown = runner.invoke(app, ["ingest", str(path), "--progress", "--database-url", url])
    assert shown.exit_code == 0, shown.output
    assert "0 appended, 30 already in the ledger" in shown.stdout
    assert "ingesting events.parquet" in shown.stderr
    quiet = runner.invoke(app, ["ingest", str(path), "--database-url", url])
    assert "ingesting" not in quiet.stderr


def test_attributes_nested_too_deep_are_refused_as_the_event_rules_refuse(
    ledger: Ledger, tmp_path: Path
) -> None:
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    path = parquet(tmp_path / "events.parquet", [row(0), row(1, attributes=json.dumps(
        {"late_hours": 1, "deep": deep}))])
    with pytest.raises(InputError) as refused:
        ingest_file(ledger, path)
    assert "row 2: attributes.deep" in str(refused.value)
    assert "nested deeper than 64 levels [attributes]" in str(refused.value)


DATED = """\
policy: dated
title: A reported date
effective_from: 2025-01-01
event_types:
  fine_final:
    domain: finance
    category: credit_repayment
    gravity: minor
    attributes:
      final_on: {type: date}
    points: -5
    expiry: {after: P2Y, from: final_on}
    retention: P3Y
scorecards:
  card:
    events: [fine_final]
    base: 500
    floor: 0
    ceiling: 1000
"""


def test_a_reported_date_after_the_moment_of_appending_is_refused(
    ledger: Ledger, tmp_path: Path
) -> None:
    from tests.policies.support import parse_declared

    policy = parse_declared(DATED, "dated.yaml")
    occurred = NOW - timedelta(days=30)
    rows = [row(i, type="fine_final", occurred_at=occurred, attributes=json.dumps(
        {"final_on": day})) for i, day in enumerate(
        ["2026-05-20", "2026-07-01", (occurred - timedelta(days=1)).date().isoformat()])]
    path = parquet(tmp_path / "events.parquet", rows)
    with pytest.raises(InputError) as refused:
        ingest_file(ledger, path, rules=EventRules(policy=policy, recorded_at=NOW))
    message = str(refused.value)
    assert "row 2: attributes: final_on=2026-07-01T00:00:00Z is later than the event's " \
           "recorded_at" in message, message
    assert "row 3: attributes: final_on=" in message and "earlier than the event's " \
           "occurred_at" in message, message
    assert "row 1:" not in message
    assert ledger.head()[0] == 0
    assert ingest_file(ledger, parquet(tmp_path / "one.parquet", rows[:1]),
                       rules=EventRules(policy=policy, recorded_at=NOW)).appended == 1


def test_a_repeat_names_the_row_it_repeats_across_gaps_and_batches(
    ledger: Ledger, tmp_path: Path
) -> None:
    rows = [row(0), row(1, subject=""), row(2), {**row(2), "subject": "other"},
            {**row(0), "subject": "other"}, row(5)]
    path = parquet(tmp_path / "events.parquet", rows)
    rejects = tmp_path / "rejects.jsonl"
    report = ingest_file(ledger, path, rejects=rejects, batch_size=3)
    assert (report.appended, report.rejected) == (3, 3)
    reasons = {r["row"]: r["problems"][0]["reason"]
               for r in map(orjson.loads, rejects.read_bytes().splitlines())}
    assert reasons[4] == "repeats row 3's key with different content"
    assert reasons[5] == "repeats row 1's key with different content"
    assert ledger.verify().entries == 3


def test_row_numbers_run_on_across_row_groups(ledger: Ledger, tmp_path: Path) -> None:
    rows = [row(i, subject="" if i == 7 else f"s{i}") for i in range(10)]
    path = tmp_path / "events.parquet"
    table = pa.Table.from_pylist(rows, schema=pa.schema(
        [(name, STAMP if name == "occurred_at" else pa.string()) for name in rows[0]]))
    pq.write_table(table, path, row_group_size=3)
    assert pq.ParquetFile(path).num_row_groups == 4
    with pytest.raises(InputError) as refused:
        ingest_file(ledger, path, batch_size=2)
    assert "1 invalid row(s)" in str(refused.value)
    assert "row 8: subject: " in str(refused.value)
