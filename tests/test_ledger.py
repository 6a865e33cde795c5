"""The ledger's API on real SQLite and real PostgreSQL: appends, idempotency, reads, purges."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.clock import FixedClock
from trustledger.engine import RETRACTION, Event
from trustledger.errors import (
    BatchError,
    ConfigError,
    ConflictError,
    InputError,
    ItemProblem,
    NotFoundError,
)
from trustledger.ledger import GENESIS, Entry, EventIn, Ledger
from trustledger.ledger.chain import COLUMNS
from trustledger.ledger.schema import entries, metadata

T0 = datetime(2026, 1, 1, tzinfo=UTC)



def event(n: int | str, subject: str = "alice", **over: Any) -> EventIn:
    fields: dict[str, Any] = {
        "source": "bank-a",
        "source_event_id": f"e{n}",
        "subject": subject,
        "type": "repayment_on_time",
        "occurred_at": datetime(2025, 6, 1, 12, tzinfo=UTC),
        "attributes": {"amount": 120.5, "currency": "EUR"},
    }
    fields.update(over)
    return EventIn(**fields)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=clock) as opened:
        yield opened


def test_new_ledger_is_empty_and_verifies(ledger: Ledger) -> None:
    assert ledger.head() == (0, GENESIS)
    report = ledger.verify()
    assert (report.entries, report.head_hash) == (0, GENESIS)
    assert list(ledger.events()) == []
    assert ledger.stats()["entries"] == 0


def test_migrations_create_exactly_the_schema(database_url: str) -> None:
    Ledger.open(database_url).close()
    ours = {"entries", "ledger_head"}  # other areas may add tables of their own

    def ledger_tables(obj: Any, name: str | None, kind: str, *_: Any) -> bool:
        table = obj if kind == "table" else getattr(obj, "table", None)
        return name in ours if kind == "table" else getattr(table, "name", None) in ours

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": ledger_tables})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []
    assert tuple(c.name for c in entries.columns) == COLUMNS


def test_reopening_keeps_the_chain(database_url: str, clock: FixedClock) -> None:
    with Ledger.open(database_url, clock=clock) as ledger:
        first = ledger.append_event(event(1))
    with Ledger.open(database_url, clock=clock) as ledger:
        assert ledger.head() == (1, first.hash)
        assert ledger.entry(1) == first


def test_append_event_returns_the_chained_entry(ledger: Ledger, clock: FixedClock) -> None:
    first = ledger.append_event(event(1))
    clock.advance(minutes=5)
    second = ledger.append_event(event(2, subject="bob"))
    assert (first.seq, first.kind, first.subject) == (1, "event", "alice")
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert first.recorded_at == T0
    assert second.recorded_at == T0 + timedelta(minutes=5)
    assert first.payload == {
        "source": "bank-a", "source_event_id": "e1", "subject": "alice",
        "type": "repayment_on_time", "occurred_at": "2025-06-01T12:00:00Z",
        "attributes": {"amount": 120.5, "currency": "EUR"}, "supersedes": None,
    }
    assert ledger.head() == (2, second.hash)
    assert ledger.verify().head_hash == second.hash


def test_hashes_follow_the_documented_encoding(ledger: Ledger) -> None:
    # Recomputed here with the standard library from trustledger.ledger.chain's docstring,
    # so the encoding cannot change silently (and no database can change it).
    entry = ledger.append_event(event(1))
    payload = json.dumps(entry.payload, sort_keys=True, separators=(",", ":"))
    payload_hash = hashlib.sha256(payload.encode()).hexdigest()
    recorded_at_us = int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    header = json.dumps(
        ["trustledger/1", 1, "event", "alice", recorded_at_us, "bank-a", "e1", payload_hash],
        separators=(",", ":"),
    )
    assert entry.payload_hash == payload_hash
    assert entry.hash == hashlib.sha256(header.encode() + GENESIS.encode()).hexdigest()


def test_recorded_at_never_goes_backwards(ledger: Ledger, clock: FixedClock) -> None:
    ledger.append_event(event(1))
    clock.advance(hours=-3)
    assert ledger.append_event(event(2)).recorded_at == T0


def test_naive_clock_is_refused(database_url: str) -> None:
    with Ledger.open(database_url, clock=lambda: datetime(2026, 1, 1)) as ledger, \
            pytest.raises(ConfigError, match="naive"):
        ledger.append_event(event(1))


def test_same_event_again_returns_the_original(ledger: Ledger, clock: FixedClock) -> None:
    original = ledger.append_event(event(1))
    clock.advance(days=1)
    assert ledger.append_event(event(1)) == original
    # Equal content written differently (offset, key order) is the same event.
    again = event(1, occurred_at=datetime(2025, 6, 1, 14, tzinfo=timezone(timedelta(hours=2))),
                  attributes={"currency": "EUR", "amount": 120.5})
    assert ledger.append_events([again, event(2)])[0] == original
    assert ledger.head()[0] == 2


def test_same_key_different_content_is_a_conflict(ledger: Ledger) -> None:
    ledger.append_event(event(1))
    before = ledger.head()
    with pytest.raises(ConflictError, match=r"\('bank-a', 'e1'\)"):
        ledger.append_events([event(2), event(1, attributes={"amount": 99})])
    assert ledger.head() == before
    assert [e.source_event_id for e in ledger.events()] == ["e1"]


def test_repeats_within_a_batch(ledger: Ledger) -> None:
    entries_ = ledger.append_events([event(1), event(2), event(1)])
    assert [e.seq for e in entries_] == [1, 2, 1]
    with pytest.raises(BatchError) as caught:
        ledger.append_events([event(3), event(3, subject="bob")])
    assert caught.value.problems == [
        ItemProblem(1, "source_event_id", "repeats item 0's key with different content")
    ]
    assert ledger.head()[0] == 2


def test_a_bad_batch_writes_nothing_and_names_every_bad_item(ledger: Ledger) -> None:
    ledger.append_event(event(1))
    before = ledger.head()
    good = event(2).model_dump()
    items: list[Any] = [
        good,
        {**good, "source_event_id": "e3", "occurred_at": "2025-06-01T12:00:00"},  # naive
        {**good, "source_event_id": "e4", "colour": "red"},  # unknown field
        {**good, "source_event_id": "e5", "supersedes": "nope"},  # no such event
        {**good, "source_event_id": "e6", "subject": ""},
        {**good, "source_event_id": "e7", "attributes": {"x": float("nan")}},
        "not an event",
    ]
    with pytest.raises(BatchError) as caught:
        ledger.append_events(items)
    problems = {(p.index, p.field) for p in caught.value.problems}
    assert problems == {
        (1, "occurred_at"), (2, "colour"), (3, "supersedes"), (4, "subject"),
        (5, "attributes.x"), (6, "(event)"),
    }
    naive = next(p for p in caught.value.problems if p.index == 1)
    assert "UTC offset" in naive.reason
    assert ledger.head() == before
    assert "7 invalid item(s)" not in str(caught.value)  # six items, six problems
    assert "6 invalid item(s), nothing written" in str(caught.value)


def test_validate_hook_problems_are_reported_per_item(ledger: Ledger) -> None:
    def amount_positive(e: EventIn) -> list[tuple[str, str]]:
        amount = e.attributes.get("amount", 0)
        return [] if amount > 0 else [("attributes.amount", "must be positive")]

    with pytest.raises(BatchError) as caught:
        ledger.append_events(
            [event(1), event(2, attributes={"amount": -1})], validate=amount_positive
        )
    assert caught.value.problems == [ItemProblem(1, "attributes.amount", "must be positive")]
    assert ledger.head()[0] == 0
    assert len(ledger.append_events([event(1)], validate=amount_positive)) == 1


def test_supersedes_must_name_an_earlier_event_of_the_same_source(ledger: Ledger) -> None:
    ledger.append_event(event(1))
    ledger.append_event(event("x", source="bank-b"))
    correction = ledger.append_event(event(2, supersedes="e1", attributes={"amount": 100}))
    assert correction.payload is not None and correction.payload["supersedes"] == "e1"
    # Earlier in the same batch counts; later in the batch or another source does not.
    ledger.append_events([event(3), event(4, type=RETRACTION, supersedes="e3")])
    with pytest.raises(BatchError) as caught:
        ledger.append_events([
            event(5, supersedes="e6"), event(6), event(7, supersedes="x"),
        ])
    assert [(p.index, p.field) for p in caught.value.problems] == [
        (0, "supersedes"), (2, "supersedes"),
    ]
    assert "of source 'bank-a'" in caught.value.problems[1].reason
    assert ledger.head()[0] == 5


def test_retraction_needs_a_target_and_nothing_supersedes_itself() -> None:
    with pytest.raises(ValueError, match="must name the event it withdraws"):
        event(1, type=RETRACTION)
    with pytest.raises(ValueError, match="cannot supersede itself"):
        event(1, supersedes="e1")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("occurred_at", datetime(2025, 1, 1), "UTC offset"),
        ("occurred_at", 1_700_000_000, "not a number"),
        ("occurred_at", "2025-01-01", "UTC offset"),
        ("subject", " alice", "surrounding spaces"),
        ("source", "a" * 257, "at most 256"),
        ("attributes", {"when": datetime(2025, 1, 1, tzinfo=UTC)}, "not a JSON value"),
        ("attributes", {"n": 2**70}, "64-bit"),
        ("attributes", {"a": [1, {"b": float("inf")}]}, "attributes.a[1].b"),
        ("source_event_id", 17, "valid string"),
    ],
)
def test_event_in_refuses_with_the_field_named(field: str, value: Any, reason: str) -> None:
    from pydantic import ValidationError

    from trustledger.ledger.models import validation_problems

    with pytest.raises(ValidationError) as caught:
        event(1, **{field: value})
    problems = validation_problems(caught.value)
    assert len(problems) == 1
    assert problems[0][0].startswith(field)
    assert reason in f"{problems[0][0]}: {problems[0][1]}"


def test_occurred_at_is_stored_in_utc(ledger: Ledger) -> None:
    parsed = EventIn.model_validate({
        "source": "s", "source_event_id": "1", "subject": "a", "type": "t",
        "occurred_at": "2025-03-01T10:00:00+01:00",
    })
    assert parsed.occurred_at == datetime(2025, 3, 1, 9, tzinfo=UTC)
    assert parsed.attributes == {} and parsed.supersedes is None
    entry = ledger.append_event(parsed)
    assert entry.payload is not None and entry.payload["occurred_at"] == "2025-03-01T09:00:00Z"
    (stored,) = ledger.events()
    assert stored.occurred_at == parsed.occurred_at and stored.occurred_at.tzinfo is UTC


def test_events_as_the_engine_takes_them(ledger: Ledger, clock: FixedClock) -> None:
    ledger.append_events([event(1), event(2, subject="bob")])
    clock.advance(days=1)
    ledger.append_record("consent", {"purpose": "loan"}, subject="alice")
    ledger.append_event(event(3, supersedes="e1", type="repayment_late",
                              attributes={"days_late": 3}))
    alice = list(ledger.events("alice"))
    assert all(isinstance(e, Event) for e in alice)
    assert [(e.seq, e.source_event_id) for e in alice] == [(1, "e1"), (4, "e3")]
    assert alice[1] == Event(
        source="bank-a", source_event_id="e3", subject="alice", type="repayment_late",
        occurred_at=datetime(2025, 6, 1, 12, tzinfo=UTC), recorded_at=T0 + timedelta(days=1),
        attributes={"days_late": 3}, supersedes="e1", seq=4,
    )
    assert [e.seq for e in ledger.events()] == [1, 2, 4]
    assert [e.seq for e in ledger.events(known_at=T0)] == [1, 2]
    assert [e.seq for e in ledger.events("alice", known_at=T0 - timedelta(seconds=1))] == []
    assert list(ledger.events("nobody")) == []
    with pytest.raises(InputError, match="known_at"):
        list(ledger.events(known_at=datetime(2026, 1, 1)))


def test_events_come_in_pages_in_seq_order(ledger: Ledger) -> None:
    ledger.append_events([event(i, subject=f"s{i % 7}") for i in range(12_000)])
    seqs = [e.seq for e in ledger.events()]
    assert seqs == list(range(1, 12_001))
    assert [e.seq for e in ledger.events("s3")] == list(range(4, 12_001, 7))
    assert list(ledger.subjects()) == [f"s{i}" for i in range(7)]


def test_records_and_subjects(ledger: Ledger) -> None:
    ledger.append_event(event(1))
    consent = ledger.append_record("consent", {"purpose": "loan", "until": "2027-01-01"},
                                   subject="alice")
    dispute = ledger.append_record("dispute", {"event_seq": 1}, subject="alice")
    policy = ledger.append_record("policy.published", {"hash": "sha256:abc"})
    ledger.append_event(event(2, subject="bob"))
    assert list(ledger.records("consent")) == [consent]
    assert [r.seq for r in ledger.records(subject="alice")] == [1, 2, 3]
    assert list(ledger.records("policy.published")) == [policy]
    assert [r.kind for r in ledger.records()] == [
        "event", "consent", "dispute", "policy.published", "event",
    ]
    assert dispute.payload == {"event_seq": 1} and policy.subject is None
    assert list(ledger.subjects()) == ["alice", "bob"]
    assert ledger.verify().entries == 5


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("event", {}, "kind"),
        ("purge", {}, "kind"),
        ("Consent", {}, "kind"),
        ("consent", {"x": float("nan")}, "payload.x"),
        ("consent", {1: "x"}, "not text"),
    ],
)
def test_append_record_refuses(ledger: Ledger, kind: str, payload: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ledger.append_record(kind, payload)
    assert ledger.head()[0] == 0


def test_purge_erases_the_payload_and_the_chain_still_verifies(ledger: Ledger) -> None:
    ledger.append_events([event(1), event(2)])
    before = ledger.entry(1)
    purge = ledger.purge_payload(1, "erasure request 2026-17")
    assert (purge.seq, purge.kind, purge.subject) == (3, "purge", "alice")
    assert purge.payload == {"seq": 1, "reason": "erasure request 2026-17"}
    after = ledger.entry(1)
    assert after.payload is None
    assert (after.payload_hash, after.hash) == (before.payload_hash, before.hash)
    assert ledger.verify().entries == 3
    assert [e.seq for e in ledger.events("alice")] == [2]
    assert ledger.stats()["purged"] == 1
    # The key is still taken: the same event again is recognised by its payload hash.
    assert ledger.append_event(event(1)).seq == 1
    with pytest.raises(ConflictError):
        ledger.append_event(event(1, attributes={}))


def test_purge_refusals(ledger: Ledger) -> None:
    ledger.append_event(event(1))
    with pytest.raises(NotFoundError, match="seq=9"):
        ledger.purge_payload(9, "x")
    with pytest.raises(InputError, match="reason"):
        ledger.purge_payload(1, " ")
    ledger.purge_payload(1, "retention")
    with pytest.raises(InputError, match="already purged"):
        ledger.purge_payload(1, "again")
    with pytest.raises(InputError, match="purge record"):
        ledger.purge_payload(2, "the audit trail stays")
    assert ledger.head()[0] == 2
    assert ledger.verify().entries == 2


def test_entry_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFoundError):
        ledger.entry(1)


def test_stats(ledger: Ledger, clock: FixedClock) -> None:
    ledger.append_events([event(1), event(2, subject="bob"), event(3, source="bank-b")])
    clock.advance(hours=1)
    ledger.append_record("consent", {"purpose": "loan"}, subject="bob")
    ledger.purge_payload(2, "erasure")
    stats = ledger.stats()
    assert stats == {
        "database": ledger.stats()["database"],
        "entries": 5, "events": 3, "kinds": {"consent": 1, "event": 3, "purge": 1},
        "purged": 1, "subjects": 2, "sources": 2,
        "first_recorded_at": T0, "last_recorded_at": T0 + timedelta(hours=1),
        "head_seq": 5, "head_hash": ledger.head()[1],
    }


@pytest.mark.parametrize(
    "url",
    ["mysql://x@localhost/db", "not a url", "postgresql://app@127.0.0.1:1/x",
     "postgresql+psycopg://app@127.0.0.1:1/nothing-listens-here"],
)
def test_unusable_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        Ledger.open(url)


def test_missing_sqlite_folder_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        Ledger.open(f"sqlite:///{tmp_path}/no/such/folder/ledger.db")


def test_default_url_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("TRUSTLEDGER_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("TRUSTLEDGER_DATABASE_URL", raising=False)
    with Ledger.open() as ledger:
        ledger.append_event(event(1))
    assert (tmp_path / "data" / "ledger.db").is_file()


def test_entry_is_a_frozen_value(ledger: Ledger) -> None:
    entry = ledger.append_event(event(1))
    assert isinstance(entry, Entry)
    with pytest.raises(AttributeError):
        entry.seq = 2  # type: ignore[misc]


def test_append_bulk_returns_counts(ledger: Ledger) -> None:
    seen: list[int] = []
    first = ledger.append_bulk([event(i) for i in range(1_500)], progress=seen.append)
    assert (first.appended, first.existing, first.head_seq) == (1_500, 0, 1_500)
    assert seen[-1] == 1_500
    # A replay mixed with new events: the first try hits the unique index, the retry
    # looks the keys up and appends only what is new.
    again = ledger.append_bulk([event(i) for i in range(1_000, 2_600)])
    assert (again.appended, again.existing, again.head_seq) == (1_100, 500, 2_600)
    assert (again.head_seq, again.head_hash) == ledger.head()
    with pytest.raises(ConflictError):
        ledger.append_bulk([event(i, subject="bob") for i in range(2_000, 3_500)])
    assert ledger.head()[0] == 2_600
    assert ledger.verify().entries == 2_600


def test_a_schema_newer_than_this_code_is_refused(database_url: str) -> None:
    Ledger.open(database_url).close()
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(ConfigError, match="schema this version does not know"):
        Ledger.open(database_url)
