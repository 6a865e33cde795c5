"""``verify`` names the first entry that was changed, removed or reordered, on both databases.

Each test tampers with the stored rows directly (as someone with database access
would), checks that ``verify`` names the right entry, then undoes the change and
checks that the ledger verifies again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from trustledger.errors import IntegrityError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.chain import COLUMNS
from trustledger.ledger.schema import entries, head

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(n: int, subject: str, **over: Any) -> EventIn:
    fields: dict[str, Any] = {
        "source": "bank-a", "source_event_id": f"e{n}", "subject": subject,
        "type": "repayment_late", "occurred_at": datetime(2025, 5, n, tzinfo=UTC),
        "attributes": {"days_late": n, "amount": 10.25 * n, "note": "späť"},
    }
    fields.update(over)
    return EventIn(**fields)


@pytest.fixture
def stored(database_url: str) -> Iterator[tuple[Ledger, sa.Engine]]:
    """A small ledger with events, a record and a purge; plus raw access to its tables."""
    ticks = iter(T0 + timedelta(minutes=i) for i in range(1_000))
    ledger = Ledger.open(database_url, clock=lambda: next(ticks))
    ledger.append_events([event(1, "alice"), event(2, "bob"), event(3, "alice")])
    ledger.append_record("consent", {"purpose": "loan", "relying_party": "lender-x"}, "alice")
    ledger.append_record("policy.published", {"hash": "sha256:00ff"})
    ledger.append_event(event(4, "bob", supersedes="e2"))
    ledger.purge_payload(1, "erasure request")
    ledger.append_event(event(5, "carol"))
    assert ledger.verify().entries == 8
    engine = sa.create_engine(database_url)
    try:
        yield ledger, engine
    finally:
        engine.dispose()
        ledger.close()


def rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(entries).order_by(entries.c.seq))]


def run(engine: sa.Engine, *statements: sa.Executable) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def expect_broken(ledger: Ledger, seq: int, reason: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        ledger.verify()
    assert (caught.value.seq, reason in caught.value.reason) == (seq, True), caught.value


def one_byte_changed(value: Any) -> Any:
    """The value with one character (or the number by one) changed; NULL becomes text."""
    if value is None:
        return "x"
    if isinstance(value, int):
        return value + 1
    middle = len(value) // 2
    changed = "0" if value[middle] != "0" else "1"
    return value[:middle] + changed + value[middle + 1:]


def test_a_changed_byte_in_any_column_of_any_entry_is_found(
    stored: tuple[Ledger, sa.Engine],
) -> None:
    ledger, engine = stored
    original = rows(engine)
    checked = 0
    for row in original:
        for column in COLUMNS:
            where = entries.c.seq == row["seq"]
            if column == "seq":
                tampered = row["seq"] + 100_000  # a free value: the entry seems removed
                run(engine, sa.update(entries).where(where).values(seq=tampered))
                expect_broken(ledger, row["seq"], "entry missing")
                run(engine, sa.update(entries).where(entries.c.seq == tampered)
                    .values(seq=row["seq"]))
            else:
                run(engine, sa.update(entries).where(where)
                    .values({column: one_byte_changed(row[column])}))
                with pytest.raises(IntegrityError) as caught:
                    ledger.verify()
                assert caught.value.seq == row["seq"], (column, caught.value)
                run(engine, sa.update(entries).where(where).values({column: row[column]}))
            checked += 1
            assert rows(engine) == original
    assert checked == 8 * len(COLUMNS)
    assert ledger.verify().entries == 8


REASONS = {
    "payload": "payload does not match payload_hash",
    "payload_hash": "payload does not match payload_hash",
    "prev_hash": "prev_hash does not match",
    "hash": "hash does not match",
    "subject": "hash does not match",
    "kind": "hash does not match",
    "source": "hash does not match",
    "source_event_id": "hash does not match",
    "recorded_at_us": "hash does not match",
}


def test_the_reason_says_what_does_not_fit(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, engine = stored
    row = rows(engine)[2]
    where = entries.c.seq == 3
    for column, reason in REASONS.items():
        run(engine, sa.update(entries).where(where).values({column: one_byte_changed(row[column])}))
        expect_broken(ledger, 3, reason)
        run(engine, sa.update(entries).where(where).values({column: row[column]}))


def test_a_removed_entry_is_named(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, engine = stored
    for row in rows(engine):
        run(engine, sa.delete(entries).where(entries.c.seq == row["seq"]))
        reason = "the head names seq=8" if row["seq"] == 8 else "entry missing"
        expect_broken(ledger, row["seq"], reason)
        run(engine, sa.insert(entries).values(row))
    assert ledger.verify().entries == 8


def test_swapped_entries_are_found(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, engine = stored
    e = entries.c
    run(engine,
        sa.update(entries).where(e.seq == 4).values(seq=-4),
        sa.update(entries).where(e.seq == 5).values(seq=4),
        sa.update(entries).where(e.seq == -4).values(seq=5))
    expect_broken(ledger, 4, "prev_hash does not match")


def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(
    stored: tuple[Ledger, sa.Engine],
) -> None:
    from trustledger.ledger.chain import digest, entry_hash

    ledger, engine = stored
    row = rows(engine)[3]  # the consent record
    payload = row["payload"].replace("lender-x", "lender-y")
    payload_hash = digest(payload)
    forged = entry_hash(row["seq"], row["kind"], row["subject"], row["recorded_at_us"], None,
                        None, payload_hash, row["prev_hash"])
    run(engine, sa.update(entries).where(entries.c.seq == 4)
        .values(payload=payload, payload_hash=payload_hash, hash=forged))
    expect_broken(ledger, 5, "prev_hash does not match")


def test_a_payload_erased_without_a_purge_entry_is_found(
    stored: tuple[Ledger, sa.Engine],
) -> None:
    ledger, engine = stored
    run(engine, sa.update(entries).where(entries.c.seq == 6).values(payload=None))
    expect_broken(ledger, 6, "without a purge entry")


def test_a_forged_purge_entry_is_found(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, engine = stored
    row = rows(engine)[6]
    assert row["kind"] == "purge"
    run(engine, sa.update(entries).where(entries.c.seq == 7)
        .values(payload=row["payload"].replace('"seq":1', '"seq":3')))
    expect_broken(ledger, 7, "payload does not match")


def test_a_removed_tail_is_found_through_the_head_row(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, engine = stored
    run(engine, sa.delete(entries).where(entries.c.seq >= 7))
    expect_broken(ledger, 7, "the head names seq=8")


def test_a_changed_head_row_is_found(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, engine = stored
    run(engine, sa.update(head).values(hash="f" * 64))
    expect_broken(ledger, 8, "head row")


def test_verify_reports_progress(stored: tuple[Ledger, sa.Engine]) -> None:
    ledger, _ = stored
    seen: list[int] = []
    report = ledger.verify(progress=seen.append)
    assert seen[-1] == report.entries == 8


