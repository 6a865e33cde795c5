"""The ledger's entries read by a forked process are those a thread reads, and its failures show.

``trustledger rescore`` on a SQLite ledger reads the entries in a forked child
(:class:`trustledger.batch.reader.ReaderProcess`) while it loads the policy and Ibis.
The child must send exactly what :meth:`Ledger.batch_columns` gives in the parent
(events, purges, consent records, disputes; page by page), its errors must reach the
parent with their message, a child that dies must be an error naming its exit code, and
no child may be left behind (running, or unwaited for as a zombie).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from trustledger.batch.reader import ReaderProcess, forks
from trustledger.batch.sources import LEDGER_SCHEMA
from trustledger.cli import app
from trustledger.errors import ConfigError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.chain import EVENT_KIND
from trustledger.rights import grant_opt_in, withdraw_consent
from trustledger.rights.consent import GRANTED, WITHDRAWN
from trustledger.rights.dispute import OPENED, answer_dispute, open_dispute
from trustledger.rights.erasure import purge

pytestmark = pytest.mark.skipif(not forks("sqlite:///x.db"),
                                reason="this platform reads the ledger in a thread")

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KINDS = (EVENT_KIND, GRANTED, WITHDRAWN)
POLICY = Path(__file__).resolve().parent.parent / "policies" / "sesame.yaml"


def children() -> set[int]:
    """This process's child processes, running or ended and not waited for (zombies)."""
    mine = os.getpid()
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        if int(fields[1]) == mine:
            found.add(int(stat.parent.name))
    return found


def forked(url: str, kinds: tuple[str, ...], rows: int) -> list[pa.RecordBatch]:
    with ReaderProcess(url, kinds, rows) as reader:
        return list(reader.batches())


def test_the_forked_read_is_the_thread_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url, clock=lambda: NOW) as ledger:
        stored = ledger.append_events([
            EventIn(source="bank-a", source_event_id=f"{s}-{i}", subject=s,
                    type="repayment_on_time", occurred_at=datetime(2026, 1 + i, 3, tzinfo=UTC),
                    attributes={"amount": 100.0 * (i + 1), "note": "é \"quoted\""})
            for s in ("ann", "bo", "cy") for i in range(3)])
        ledger.append_events([
            EventIn(source="bank-a", source_event_id="fix", subject="bo",
                    type="repayment_late", occurred_at=datetime(2026, 2, 9, tzinfo=UTC),
                    supersedes="bo-1")])
        gone = stored[4].seq
        purge(ledger, gone, "test")
        grant_opt_in(ledger, "ann", "sesame")
        withdrawn = grant_opt_in(ledger, "bo", "sesame")
        withdraw_consent(ledger, "bo", withdrawn.seq)
        dispute = open_dispute(ledger, "cy", stored[7].seq, "not mine")
        answer_dispute(ledger, dispute.seq, "bank-a", "verified", note="checked")
        every = tuple(sorted({e.kind for e in ledger.records()}))
        before = children()
        for kinds in (KINDS, every):
            for page in (1, 4, 5_000):
                thread = list(ledger.batch_columns(kinds, rows=page))
                child = forked(url, kinds, page)
                assert [b.num_rows for b in child] == [b.num_rows for b in thread], page
                assert (pa.Table.from_batches(child, LEDGER_SCHEMA)
                        .equals(pa.Table.from_batches(thread, LEDGER_SCHEMA))), (kinds, page)
        assert children() == before
    read = pa.Table.from_batches(forked(url, every, 5_000), LEDGER_SCHEMA)
    seqs = read.column("seq").to_pylist()
    kinds_read = read.column("kind").to_pylist()
    assert gone not in seqs and seqs == sorted(seqs)
    assert {EVENT_KIND, GRANTED, WITHDRAWN, OPENED} <= set(kinds_read)
    assert kinds_read.count(EVENT_KIND) == 9  # ten events, one purged


def test_an_empty_ledger_is_an_empty_stream(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Ledger.open(url).close()
    assert forked(url, KINDS, 100) == []


def _corrupt_entries(path: Path) -> None:
    """Overwrite the root page of the ``entries`` table: the schema still opens, the entries
    cannot be read."""
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = con.execute("SELECT rootpage FROM sqlite_master "
                           "WHERE name = 'entries'").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * size)
        file.write(b"\xff" * size)


def test_a_ledger_the_child_cannot_read_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    with Ledger.open(url, clock=lambda: NOW) as ledger:
        ledger.append_events([
            EventIn(source="bank", source_event_id=f"e{i}", subject=f"s{i % 7}",
                    type="repayment_on_time", occurred_at=datetime(2026, 1, 1 + i % 28, tzinfo=UTC),
                    attributes={"amount": 10.0}) for i in range(40)])
    _corrupt_entries(path)
    before = children()
    with pytest.raises(ConfigError, match="cannot read the ledger database") as raised:
        forked(url, KINDS, 100)
    assert str(path) in str(raised.value) and "malformed" in str(raised.value)
    assert children() == before
    # The command: the same error, no output file, no child left.
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(app, ["rescore", "--database-url", url, "--policy", str(POLICY),
                                      "--at", "2026-06-01", "--output", str(out)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError), result.output
    assert str(path) in str(result.exception) and "malformed" in str(result.exception)
    assert not out.exists()
    assert children() == before


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ledger of about 8 MB of payloads: more than the pipe and the child's buffer hold,
    so the child cannot finish before the parent reads."""
    url = f"sqlite:///{tmp_path_factory.mktemp('large') / 'ledger.db'}"
    with Ledger.open(url, clock=lambda: NOW) as ledger:
        ledger.append_events([
            EventIn(source="bank", source_event_id=f"e{i}", subject=f"s{i % 50}",
                    type="bill_paid", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                    attributes={"note": f"{i:08d}" * 250}) for i in range(4_000)])
    yield url


def test_a_child_that_dies_is_an_error_with_its_exit_code(large: str) -> None:
    before = children()
    with ReaderProcess(large, KINDS, 500) as reader:
        os.kill(reader.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=r"ended unexpectedly \(exit code -9\)"):
            list(reader.batches())
    assert children() == before


def test_closing_early_ends_the_child(large: str) -> None:
    before = children()
    reader = ReaderProcess(large, KINDS, 500)
    batches = reader.batches()
    first = next(batches)
    assert first.num_rows == 500
    assert children() == before | {reader.pid}
    reader.close()
    assert children() == before  # ended and waited for: no zombie
    with pytest.raises(ChildProcessError):
        os.waitpid(reader.pid, os.WNOHANG)
    batches.close()


def test_a_whole_large_read_arrives(large: str) -> None:
    with Ledger.open(large) as ledger:
        thread = pa.Table.from_batches(list(ledger.batch_columns(KINDS, rows=500)))
    child = pa.Table.from_batches(forked(large, KINDS, 500))
    assert child.num_rows == 4_000 and child.equals(thread)
