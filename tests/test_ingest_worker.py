"""Issue 17, ingest: a worker process reads, checks and hashes batches while the writer writes.

``ingest_file(worker=True)`` must write exactly what the writer alone writes
(``worker=False``): the same entries and chain, the same problems named by row (line),
field and rule, nothing written on error, on SQLite and on the real PostgreSQL server.
The reference run is always a SQLite file: the chain does not depend on the backend.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import FixedClock
from tests.test_hardening_events import NOW
from tests.test_ingest_columnar import POLICY, SOURCES, WHEN, parquet, row
from trustledger.errors import ConflictError, InputError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.appender import prepare
from trustledger.ledger.chain import GENESIS
from trustledger.ledger.columnar import EventBatch, EventRules, check_batch
from trustledger.ledger.ingest import batches, ingest_file
from trustledger.ledger.ingest_worker import SLOT_BYTES, SLOTS, prepared_by_worker, ramped

RULES = EventRules(policy=POLICY, sources=SOURCES, recorded_at=NOW)

Outcome = tuple[Any, list[tuple[Any, ...]]]


def run(url: str, path: Path, *, worker: bool, before: Path | None = None,
        **options: Any) -> Outcome:
    """Ingest ``path`` (after ``before``, if given) into the ledger at ``url``.

    Returns what the ingest reported (its report, or the error's type and message) and
    every entry the ledger then holds, column for column.
    """
    with Ledger.open(url, clock=FixedClock(NOW)) as ledger:
        if before is not None:
            ingest_file(ledger, before, worker=False)
        done: Any
        try:
            done = ingest_file(ledger, path, worker=worker, **options)
        except (InputError, ConflictError) as err:
            done = (type(err).__name__, str(err))
        entries = [(e.seq, e.kind, e.subject, e.recorded_at, e.payload, e.payload_hash,
                    e.prev_hash, e.hash) for e in ledger.records()]
        assert ledger.verify().entries == len(entries)
    return done, entries


def both(database_url: str, tmp_path: Path, path: Path, **options: Any,
         ) -> tuple[Outcome, Outcome]:
    """The same ingest with a worker (into ``database_url``) and without (a SQLite file)."""
    with_worker = run(database_url, path, worker=True, **options)
    alone = run(f"sqlite:///{tmp_path / 'alone.db'}", path, worker=False, **options)
    return with_worker, alone


def test_the_worker_writes_the_chain_the_writer_alone_writes(database_url: str,
                                                            tmp_path: Path) -> None:
    rows = [row(i, source_event_id=f'q"\\{i}', subject=f"süb\\{i % 3}",
                attributes=json.dumps({"late_hours": i % 5}))
            for i in range(22)]
    rows.append(row(22, type="retraction", supersedes='q"\\2', attributes=None))
    rows.append(row(23, supersedes='q"\\20'))
    path = parquet(tmp_path / "events.parquet", rows)
    (report, entries), (alone_report, alone_entries) = both(
        database_url, tmp_path, path, batch_size=4, rules=RULES)
    assert not isinstance(report, tuple), report
    assert (report.rows, report.appended, report.existing, report.rejected) == (24, 24, 0, 0)
    assert report == alone_report
    assert entries == alone_entries and len(entries) == 24


def test_bad_rows_found_by_the_worker_are_named_and_nothing_is_written(
    database_url: str, tmp_path: Path
) -> None:
    rows = [row(i) for i in range(14)]
    rows[1] = row(1, attributes='{"late_hours": -1}')  # attribute bounds
    rows[4] = row(4, type="bill_paid", attributes="{}")  # not accredited
    rows[6] = row(6, subject="")  # a name
    rows[9] = {**row(0), "subject": "elsewhere"}  # repeats row 1's key (found by the writer)
    rows[12] = row(12, supersedes="nowhere")  # names no earlier event (found by the writer)
    path = parquet(tmp_path / "events.parquet", rows)
    (refused, entries), (alone, alone_entries) = both(database_url, tmp_path, path,
                                                      batch_size=3, rules=RULES)
    assert refused == alone
    kind, message = refused
    assert kind == "InputError" and "5 invalid row(s), nothing appended" in message
    for expected in ("row 2: attributes: ", "[attribute-schema]", "row 5: type: ",
                     "[accreditation]", "row 7: subject: ", "[name]",
                     "row 10: source_event_id: repeats row 1's key with different content "
                     "[duplicate]", "row 13: supersedes: ", "[supersedes]"):
        assert expected in message, message
    assert entries == alone_entries == []


def test_rows_the_ledger_refuses_make_the_writer_chain_later_batches_again(
    database_url: str, tmp_path: Path
) -> None:
    # Rows 1-4 are already stored: the worker hashed batches 2 and 3 as if they followed
    # the first batch's rows, which were not written again.
    before = parquet(tmp_path / "before.parquet", [row(i) for i in range(4)])
    rows = [row(i) for i in range(10)]
    rows.insert(6, row(5))  # the same event again, within the file
    path = parquet(tmp_path / "events.parquet", rows)
    (report, entries), (alone_report, alone_entries) = both(
        database_url, tmp_path, path, before=before, batch_size=3)
    assert not isinstance(report, tuple), report
    assert (report.rows, report.appended, report.existing) == (11, 6, 5)
    assert report == alone_report
    assert entries == alone_entries and len(entries) == 10


def test_a_conflict_with_the_ledger_writes_nothing_with_a_worker(database_url: str,
                                                                 tmp_path: Path) -> None:
    before = parquet(tmp_path / "before.parquet", [row(0)])
    path = parquet(tmp_path / "events.parquet",
                   [*[row(i) for i in range(1, 7)], {**row(0), "subject": "moved"}])
    (refused, entries), (alone, alone_entries) = both(database_url, tmp_path, path,
                                                      before=before, batch_size=2)
    assert refused == alone
    assert refused[0] == "ConflictError" and "('rentals', 'r0')" in refused[1]
    assert entries == alone_entries and len(entries) == 1


def test_a_fault_deep_in_the_file_is_raised_from_the_worker_and_nothing_is_written(
    ledger_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    lines = ["source,source_event_id,subject,type,occurred_at,attributes"]
    lines += [f"rentals,r{i},s{i},rental_returned,{(WHEN + timedelta(minutes=i)).isoformat()},"
              '"{""late_hours"": 1}"' for i in range(12)]
    path.write_bytes("\n".join(lines).encode() + b"\nrentals,r\xff,s,rental_returned,x,\n")
    refused, entries = run(ledger_url, path, worker=True, batch_size=2)
    assert refused == ("InputError", f"{path}: line 14: not UTF-8 text")
    assert entries == []


def test_a_file_fault_found_before_the_first_batch_is_raised_from_the_worker(
    ledger_url: str, tmp_path: Path
) -> None:
    path = parquet(tmp_path / "events.parquet", [{**row(0), "colour": "red"}])
    refused, entries = run(ledger_url, path, worker=True)
    assert refused[0] == "InputError" and "unknown column(s) colour" in refused[1]
    assert entries == []


def dies(event: EventIn) -> list[tuple[str, str]]:
    """A check that ends the (worker) process running it at the ninth row."""
    if event.source_event_id == "r8":
        os._exit(3)
    return []


def fails(event: EventIn) -> list[tuple[str, str]]:
    """A check with a fault at the ninth row."""
    if event.source_event_id == "r8":
        raise ArithmeticError("a fault in the check")
    return []


def test_a_worker_that_dies_is_an_error_and_nothing_is_written(ledger_url: str,
                                                               tmp_path: Path) -> None:
    path = parquet(tmp_path / "events.parquet", [row(i) for i in range(12)])
    with Ledger.open(ledger_url, clock=FixedClock(NOW)) as ledger:
        with pytest.raises(RuntimeError, match=r"ended unexpectedly \(exit code 3\)"):
            ingest_file(ledger, path, validate=dies, worker=True, batch_size=4)
        assert ledger.head()[0] == 0
        with pytest.raises(RuntimeError, match="ArithmeticError: a fault in the check"):
            ingest_file(ledger, path, validate=fails, worker=True, batch_size=4)
        assert ledger.head()[0] == 0


def test_a_rejects_file_needs_the_rows_as_read_and_no_worker(ledger_url: str,
                                                             tmp_path: Path) -> None:
    path = parquet(tmp_path / "events.parquet", [row(0)])
    with Ledger.open(ledger_url, clock=FixedClock(NOW)) as ledger, \
            pytest.raises(ValueError, match="rejects file"):
        ingest_file(ledger, path, rejects=tmp_path / "rejects.jsonl", worker=True)
    assert not (tmp_path / "rejects.jsonl").exists()


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


# -- the first batch in pieces, and the shared-memory slots ------------------------------------


def lines_and_problems(batch: EventBatch, rules: EventRules) -> tuple[list[int], list[Any]]:
    """A checked batch's line numbers, and its problems with each row named by its line."""
    checked = check_batch(batch, rules)
    return ([int(line) for line in batch.lines],
            [(int(batch.lines[i]), *rest) for i, *rest in checked.problems])


def test_the_first_batch_in_pieces_is_checked_as_the_whole_batch(tmp_path: Path) -> None:
    rows = [row(i) for i in range(40)]
    rows[0] = row(0, subject="")  # in the first piece
    rows[3] = row(3, attributes='{"late_hours": -1}')  # in the second
    rows[33] = row(33, type="bill_paid", attributes="{}")  # in the fifth
    path = parquet(tmp_path / "events.parquet", rows)
    csv_path = tmp_path / "events.csv"
    lines = ["source,source_event_id,subject,type,occurred_at,attributes"]
    lines += [f"rentals,r{i},s{i},rental_returned,{(WHEN + timedelta(minutes=i)).isoformat()},"
              '"{""late_hours"": 1}"' for i in range(40)]
    lines[6] = "rentals,r5,too,many,cells,here,x"  # a row unreadable as read (line 7)
    csv_path.write_text("\n".join(lines) + "\n")
    for file, kind in ((path, "parquet"), (csv_path, "csv")):
        whole = next(batches(file, kind, 64))
        pieces = list(ramped([whole], smallest=1))
        assert [len(piece) for piece in pieces] == [2, 2, 5, 10, 20, 1]
        found = [lines_and_problems(piece, RULES) for piece in pieces]
        all_lines, all_problems = lines_and_problems(whole, RULES)
        assert [line for piece_lines, _ in found for line in piece_lines] == all_lines
        assert [p for _, problems in found for p in problems] == all_problems
        assert len(all_problems) == (3 if kind == "parquet" else 1)
    # Later batches and small first batches are not cut.
    small = next(batches(path, "parquet", 8))
    assert [len(b) for b in ramped([small, small], smallest=1)] == [8, 8]
    assert [len(b) for b in ramped([whole], smallest=16)] == [40]


def big_file(tmp_path: Path, count: int, **bad: dict[str, Any]) -> Path:
    """``count`` events in one Parquet file; ``bad`` maps ``r<i>`` to what row ``i`` changes."""
    rows = [row(i, subject=f"s{i % 97}", attributes=json.dumps({"late_hours": i % 7}))
            for i in range(count)]
    for key, over in bad.items():
        rows[int(key[1:])] = row(int(key[1:]), **over)
    return parquet(tmp_path / "big.parquet", rows)


def test_a_large_file_through_the_shared_slots_writes_the_writer_alones_chain(
    database_url: str, tmp_path: Path
) -> None:
    # The first batch (16,384 rows) goes as six pieces and the second as one: seven
    # batches through three slots, so each slot is filled again while another is written.
    path = big_file(tmp_path, 17_000)
    (report, entries), (alone_report, alone_entries) = both(
        database_url, tmp_path, path, batch_size=16_384, rules=RULES)
    assert not isinstance(report, tuple), report
    assert (report.rows, report.appended, report.existing, report.rejected) == (
        17_000, 17_000, 0, 0)
    assert report == alone_report
    assert entries == alone_entries and len(entries) == 17_000


def test_a_bad_row_in_the_second_batch_through_the_slots_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    path = big_file(tmp_path, 17_000, r16900={"attributes": '{"late_hours": -1}'},
                    r3={"subject": " padded"})
    (refused, entries), (alone, alone_entries) = both(
        database_url, tmp_path, path, batch_size=16_384, rules=RULES)
    assert refused == alone
    kind, message = refused
    assert kind == "InputError" and "2 invalid row(s), nothing appended" in message
    assert "row 4: subject: " in message and "[name]" in message
    assert "row 16901: attributes: " in message and "[attribute-schema]" in message
    assert entries == alone_entries == []


def test_batches_too_large_for_a_slot_travel_whole_through_the_pipe(tmp_path: Path) -> None:
    path = big_file(tmp_path, 300)

    def prepared(slot_bytes: int) -> list[tuple[Any, ...]]:
        made = prepared_by_worker(lambda: batches(path, "parquet", 40), RULES, 0, GENESIS,
                                  1_000, copy=True, slot_bytes=slot_bytes)
        with closing(made):
            return [(ready.seq, ready.prev_hash, list(ready.lines), ready.hashes,
                     ready.payloads.to_pylist(), ready.subjects.to_pylist(),
                     None if ready.copy is None else ready.copy.to_pybytes())
                    for ready in made]

    here = []
    seq, prev = 0, GENESIS
    for batch in batches(path, "parquet", 40):
        ready = prepare(check_batch(batch, RULES), seq, prev, 1_000, copy=True)
        seq, prev = ready.end
        here.append((ready.seq, ready.prev_hash, list(ready.lines), ready.hashes,
                     ready.payloads.to_pylist(), ready.subjects.to_pylist(),
                     None if ready.copy is None else ready.copy.to_pybytes()))
    assert len(here) == 8 and here[-1][0] == 280
    assert prepared(SLOT_BYTES) == here  # through the slots
    assert prepared(1024) == here  # every batch too large for a slot: through the pipe


def test_closing_early_stops_a_worker_waiting_for_a_free_slot(tmp_path: Path) -> None:
    path = big_file(tmp_path, 300)
    made = prepared_by_worker(lambda: batches(path, "parquet", 10), RULES, 0, GENESIS, 1_000,
                              copy=False)
    first = next(made)
    assert list(first.lines) == list(range(1, 11))
    made.close()  # the worker waits for a slot the writer never frees: it is ended
    assert multiprocessing.active_children() == []


def test_a_batch_in_hand_is_not_overwritten_while_the_worker_runs_ahead(tmp_path: Path,
                                                                        ) -> None:
    path = big_file(tmp_path, 300)
    asked = multiprocessing.get_context("fork").Event()

    def counted() -> Iterator[EventBatch]:
        for number, batch in enumerate(batches(path, "parquet", 10)):
            if number == SLOTS + 1:  # only once the slot of batch 0 was taken again
                asked.set()
            yield batch

    expected = prepare(check_batch(next(batches(path, "parquet", 10)), RULES), 0, GENESIS,
                       1_000)
    made = prepared_by_worker(counted, RULES, 0, GENESIS, 1_000, copy=False)
    with closing(made):
        first = next(made)
        assert not asked.wait(2)  # the worker waits for the slot the writer holds
        assert list(first.lines) == list(range(1, 11))
        assert first.subjects.to_pylist() == expected.subjects.to_pylist()
        assert first.payloads.to_pylist() == expected.payloads.to_pylist()
        assert first.hashes == expected.hashes
