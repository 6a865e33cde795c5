"""The ledger read into a DuckDB job as it is read equals the same entries read as an export.

``trustledger rescore`` without a file streams :meth:`Ledger.batch_columns` into the job's
table (:func:`trustledger.batch.sources.read_ledger`): every page of entries, parsed by
DuckDB while the next is read. It must give the table a ledger export gives
(``trustledger export``, read by :func:`read_events`), whatever the page size, and the
consent records the export has (so the same opt-ins), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trustledger.batch import duckdb_backend, read_events
from trustledger.batch.sources import (
    LEDGER_SCHEMA,
    export_consents,
    ledger_consents,
    read_ledger,
)
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.chain import EVENT_KIND
from trustledger.rights import grant_opt_in, withdraw_consent
from trustledger.rights.consent import GRANTED, WITHDRAWN

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KINDS = (EVENT_KIND, GRANTED, WITHDRAWN)


def rows(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: (str(r["source"]), str(r["source_event_id"])))


def test_the_streamed_ledger_is_its_export(tmp_path: Path, database_url: str) -> None:
    with Ledger.open(database_url, clock=lambda: NOW) as ledger:
        ledger.append_events([
            EventIn(source="bank-a", source_event_id=f"{s}-{i}", subject=s,
                    type="repayment_on_time", occurred_at=datetime(2026, 1 + i, 3, tzinfo=UTC),
                    attributes={"amount": 100.0 * (i + 1), "note": "é \"quoted\""})
            for s in ("ann", "bo", "cy") for i in range(3)])
        ledger.append_events([
            EventIn(source="bank-a", source_event_id="fix", subject="bo",
                    type="repayment_late", occurred_at=datetime(2026, 2, 9, tzinfo=UTC),
                    supersedes="bo-1"),
            EventIn(source="id-check", source_event_id="id", subject="cy",
                    type="identity_verified", occurred_at=datetime(2026, 3, 1, tzinfo=UTC))])
        grant_opt_in(ledger, "ann", "sesame")
        withdrawn = grant_opt_in(ledger, "bo", "sesame")
        withdraw_consent(ledger, "bo", withdrawn.seq)
        export = tmp_path / "export.parquet"
        ledger.export(export)
        con = duckdb_backend(memory_limit="512MB")
        try:
            expected = rows(read_events(con, export).to_pyarrow())
            for page in (1, 4, 5_000):
                table, records = read_ledger(con, ledger.batch_columns(KINDS, rows=page),
                                             tmp_path)
                assert rows(table.to_pyarrow()) == expected, page
                assert records.schema == LEDGER_SCHEMA
                assert sorted(records.column("kind").to_pylist()) == [GRANTED, GRANTED,
                                                                      WITHDRAWN]
                consents = ledger_consents(records, NOW, ["sesame"])
                assert consents == export_consents(export, NOW, ["sesame"])
                assert consents == {"ann": frozenset({"sesame"})}
        finally:
            con.disconnect()
    assert len(expected) == 11
    fixed = next(r for r in expected if r["source_event_id"] == "fix")
    assert fixed["supersedes"] == "bo-1" and fixed["subject"] == "bo"
    assert next(r for r in expected if r["source_event_id"] == "id")["attributes"] == "{}"


def test_an_empty_ledger_streams_an_empty_table(tmp_path: Path) -> None:
    con = duckdb_backend(memory_limit="512MB")
    try:
        with Ledger.open(f"sqlite:///{tmp_path / 'empty.db'}") as ledger:
            table, records = read_ledger(con, ledger.batch_columns(KINDS), tmp_path)
        assert table.count().to_pyarrow().as_py() == 0
        assert records.num_rows == 0 and records.schema == LEDGER_SCHEMA
        assert ledger_consents(records, NOW, ["sesame"]) == {}
    finally:
        con.disconnect()


def test_a_payload_s_attributes_read_as_the_stored_json(tmp_path: Path) -> None:
    # A JSON null stays the text "null" (an event that fits no schema), a missing key
    # is no attributes; both come out of one parse of the payload.
    payloads = ['{"attributes":null,"occurred_at":"2026-01-02T03:04:05Z","source":"s",'
                '"source_event_id":"a","subject":"x","type":"t"}',
                '{"occurred_at":"2026-01-02T03:04:05+01:00","source":"s",'
                '"source_event_id":"b","subject":"x","supersedes":"a","type":"t"}',
                '{"attributes":{"k":[1,{"v":"é"}],"n":1.5},"occurred_at":"2026-01-02",'
                '"source":"s","source_event_id":"c","subject":"x","type":"t"}']
    export = tmp_path / "export.parquet"
    pq.write_table(pa.table({
        "seq": pa.array([1, 2, 3], pa.int64()), "kind": [EVENT_KIND] * 3,
        "subject": ["x"] * 3,
        "recorded_at": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")),
        "payload": payloads}, schema=LEDGER_SCHEMA), export)
    con = duckdb_backend(memory_limit="512MB")
    try:
        got = {r["source_event_id"]: r for r in read_events(con, export).to_pyarrow().to_pylist()}
    finally:
        con.disconnect()
    assert got["a"]["attributes"] == "null" and got["a"]["supersedes"] is None
    assert got["b"]["attributes"] is None and got["b"]["supersedes"] == "a"
    assert got["b"]["occurred_us"] == 1767319445_000_000  # 02:04:05 UTC
    assert got["c"]["attributes"] == '{"k":[1,{"v":"é"}],"n":1.5}'


def test_a_policy_that_fails_to_load_while_the_ledger_is_read_stops_the_job(
        tmp_path: Path, database_url: str) -> None:
    # `rescore` reads the ledger in a second thread (fed on SQLite by a forked process)
    # while the policy loads: a policy the loader refuses fails the command with the
    # loader's message naming the formula, writes nothing, leaves the ledger as it was,
    # and leaves no thread reading it and no reading process (running or a zombie).
    import threading

    from typer.testing import CliRunner

    from tests.test_batch_reader import children
    from trustledger.cli import app
    from trustledger.errors import PolicyError

    with Ledger.open(database_url, clock=lambda: NOW) as ledger:
        ledger.append_events([
            EventIn(source="bank", source_event_id=f"e{i}", subject=f"s{i % 7}",
                    type="bill_paid", occurred_at=datetime(2026, 1, 1 + i % 28, tzinfo=UTC))
            for i in range(40)])
        head = ledger.head()
    policies = Path(__file__).resolve().parent.parent / "policies"
    sesame = (policies / "sesame.yaml").read_text()
    (tmp_path / "register.yaml").write_text((policies / "register.yaml").read_text())
    broken = tmp_path / "broken.yaml"
    formula = '"2.0 + attrs.amount / 500.0"'
    assert formula in sesame
    broken.write_text(sesame.replace(formula, '"2.0 + attrs.amount /"'))
    out = tmp_path / "scores.parquet"
    processes = children()
    result = CliRunner().invoke(app, ["rescore", "--database-url", database_url, "--policy",
                                      str(broken), "--at", "2026-06-01", "--output", str(out)])
    assert result.exit_code != 0
    assert isinstance(result.exception, PolicyError)
    message = str(result.exception)
    assert "broken.yaml:24" in message and "repayment_on_time" in message, message
    assert not out.exists()
    # The command's own reader thread (by its name: other tests' threads in this worker
    # may come and go meanwhile, so the count of all threads proves nothing).
    assert not [t.name for t in threading.enumerate() if t.name.startswith("trustledger-read")]
    assert children() == processes
    with Ledger.open(database_url, clock=lambda: NOW) as ledger:
        assert ledger.head() == head


def test_the_ledger_reaches_duckdb_without_ibis(tmp_path: Path) -> None:
    # What lets the command read the ledger while Ibis loads: the read (ledger pages into
    # a DuckDB connection) imports no Ibis, in a fresh interpreter.
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url, clock=lambda: NOW) as ledger:
        ledger.append_events([EventIn(source="s", source_event_id="1", subject="x",
                                      type="bill_paid", occurred_at=NOW)])
    code = ("import sys\n"
            "from trustledger.batch.sources import duckdb_connection, load_ledger\n"
            "from trustledger.ledger import Ledger\n"
            "con = duckdb_connection(memory_limit='256MB')\n"
            "with Ledger.open(sys.argv[1]) as ledger:\n"
            "    name, records = load_ledger(con, ledger.batch_columns(('event',)))\n"
            "rows = con.execute(f'SELECT subject, type FROM {name}').fetchall()\n"
            "ibis = sorted(m for m in sys.modules if m.startswith('ibis'))\n"
            "print(rows, records.num_rows, ibis)\n")
    done = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[('x', 'bill_paid')] 0 []"

