"""Signed checkpoints: a truncated or rewritten chain fails against a kept checkpoint.

``verify`` alone checks the chain against itself and its head row, so removing the
last entry and fixing the head, or rewriting every hash, passes it (each tamper test
first shows that). A checkpoint kept outside the ledger catches both. Tampering is
done on the stored rows directly, as someone with database access would, on SQLite
and PostgreSQL. Every time in these tests is fixed; none comes from the system clock.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from trustledger.cli import app
from trustledger.errors import ConfigError, InputError, IntegrityError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.chain import canonical, digest, entry_hash
from trustledger.ledger.checkpoint import (
    Checkpoint,
    PublicKey,
    SigningKey,
    checkpoint_head,
    read_checkpoint,
    verify_with_checkpoints,
    write_checkpoint,
)
from trustledger.ledger.schema import entries, head

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SIGNED_AT = datetime(2026, 1, 1, 12, tzinfo=UTC)

runner = CliRunner()


def event(n: int) -> EventIn:
    return EventIn(
        source="bank-a", source_event_id=f"e{n}", subject=f"s{n % 3}", type="bill_paid",
        occurred_at=datetime(2025, 6, n, tzinfo=UTC), attributes={"amount": 10 * n},
    )


def clock(start: datetime = T0) -> Any:
    """A clock that moves one minute each time it is read."""
    ticks = iter(start + timedelta(minutes=i) for i in range(10_000))
    return lambda: next(ticks)


def fill(ledger: Ledger) -> Ledger:
    """Six entries: events, a record and another event."""
    ledger.append_events([event(n) for n in range(1, 5)])
    ledger.append_record("consent", {"purpose": "loan", "relying_party": "lender-x"}, "s1")
    ledger.append_event(event(5))
    assert ledger.verify().entries == 6
    return ledger


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """Six entries written at fixed times."""
    with Ledger.open(database_url, clock=clock()) as opened:
        yield fill(opened)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """Raw access to the ledger's tables, as a tamperer with database access has."""
    raw = sa.create_engine(database_url)
    yield raw
    raw.dispose()


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    """The operator's signing key, in a folder of its own."""
    (tmp_path / "keys").mkdir()
    return SigningKey.create(tmp_path / "keys" / "checkpoint.key")


def keep(ledger: Ledger, key: SigningKey, path: Path) -> tuple[str, Checkpoint]:
    """Checkpoint the head into ``path``, then read it back as an auditor does."""
    write_checkpoint(path, checkpoint_head(ledger, key, SIGNED_AT))
    return str(path), read_checkpoint(path, key.public_key)


def stored_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(entries).order_by(entries.c.seq))]


def set_head(conn: sa.Connection, row: dict[str, Any]) -> None:
    conn.execute(sa.update(head).where(head.c.id == 1).values(
        seq=row["seq"], hash=row["hash"], recorded_at_us=row["recorded_at_us"]))


def truncate_last(engine: sa.Engine) -> None:
    """Remove the last entry and make the head row name the one before it."""
    rows = stored_rows(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(entries).where(entries.c.seq == rows[-1]["seq"]))
        set_head(conn, rows[-2])


def rewrite_from(engine: sa.Engine, first: int) -> None:
    """Change entry ``first``'s payload and re-hash it and every later entry: a consistent chain."""
    rows = stored_rows(engine)
    prev = rows[first - 2]["hash"] if first > 1 else "0" * 64
    with engine.begin() as conn:
        for row in rows[first - 1:]:
            if row["seq"] == first:
                payload = orjson.loads(row["payload"])
                payload["attributes"] = {"amount": 1_000_000}
                row["payload"] = canonical(payload)
                row["payload_hash"] = digest(row["payload"])
            row["prev_hash"] = prev
            row["hash"] = entry_hash(row["seq"], row["kind"], row["subject"],
                                     row["recorded_at_us"], row["source"],
                                     row["source_event_id"], row["payload_hash"], prev)
            prev = row["hash"]
            conn.execute(sa.update(entries).where(entries.c.seq == row["seq"]).values(
                payload=row["payload"], payload_hash=row["payload_hash"],
                prev_hash=row["prev_hash"], hash=row["hash"]))
        set_head(conn, rows[-1])


# -- tamper evidence --------------------------------------------------------------------------


def test_honest_growth_and_purges_after_a_checkpoint_pass(
    ledger: Ledger, key: SigningKey, tmp_path: Path
) -> None:
    kept = [keep(ledger, key, tmp_path / "cp6.json")]
    ledger.append_events([event(n) for n in range(6, 9)])
    ledger.purge_payload(2, "erasure request")  # the chain keeps the payload's hash
    kept.append(keep(ledger, key, tmp_path / "cp10.json"))
    ledger.append_record("consent", {"purpose": "rent", "relying_party": "flat-y"}, "s2")
    report = verify_with_checkpoints(ledger, kept)
    assert (report.entries, report.head_hash) == (11, ledger.head()[1])


def test_truncating_the_last_entry_and_fixing_the_head_fails(
    ledger: Ledger, key: SigningKey, engine: sa.Engine, tmp_path: Path
) -> None:
    kept = [keep(ledger, key, tmp_path / "cp.json")]
    truncate_last(engine)
    assert ledger.verify().entries == 5  # the chain alone cannot tell
    with pytest.raises(IntegrityError) as caught:
        verify_with_checkpoints(ledger, kept)
    assert caught.value.seq == 6
    assert "entry missing" in caught.value.reason
    assert f"checkpoint {tmp_path / 'cp.json'}" in caught.value.reason
    assert "names seq=6, the chain ends at seq=5" in caught.value.reason
    # A substitute appended in its place gets the seq back, not the hash.
    ledger.append_record("consent", {"purpose": "other", "relying_party": "x"}, "s1")
    assert ledger.verify().entries == 6
    with pytest.raises(IntegrityError) as caught:
        verify_with_checkpoints(ledger, kept)
    assert caught.value.seq == 6 and "rewritten at or before this entry" in caught.value.reason


@pytest.mark.parametrize(("first", "failing", "unchanged"), [(1, 3, None), (4, 6, 3), (6, 6, 3)])
def test_a_full_rewrite_with_a_consistent_new_chain_fails(
    database_url: str, key: SigningKey, engine: sa.Engine, tmp_path: Path,
    first: int, failing: int, unchanged: int | None,
) -> None:
    with Ledger.open(database_url, clock=clock()) as ledger:
        ledger.append_events([event(n) for n in range(1, 4)])
        kept = [keep(ledger, key, tmp_path / "cp3.json")]
        ledger.append_events([event(n) for n in range(4, 7)])
        kept.append(keep(ledger, key, tmp_path / "cp6.json"))
        verify_with_checkpoints(ledger, kept)
        rewrite_from(engine, first)
        assert ledger.verify().entries == 6  # consistent: the chain alone cannot tell
        with pytest.raises(IntegrityError) as caught:
            verify_with_checkpoints(ledger, kept[::-1])  # the order given does not matter
    error = caught.value
    assert error.seq == failing
    assert f"as in checkpoint {tmp_path / f'cp{failing}.json'}" in error.reason
    assert ("unchanged" in error.reason) == (unchanged is not None)
    if unchanged is not None:
        assert f"entries up to seq={unchanged} are unchanged (checkpoint " in error.reason


def test_a_checkpoint_of_a_broken_chain_is_never_signed(
    ledger: Ledger, engine: sa.Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(entries).where(entries.c.seq == 3).values(subject="mallory"))
    path = tmp_path / "new.key"
    with pytest.raises(IntegrityError) as caught:
        checkpoint_head(ledger, path, SIGNED_AT)
    assert caught.value.seq == 3
    assert not path.exists()  # the key is made only for a chain that verifies


def test_an_empty_ledger_has_nothing_to_checkpoint(database_url: str, key: SigningKey) -> None:
    with Ledger.open(database_url, clock=clock()) as ledger, pytest.raises(InputError) as caught:
        checkpoint_head(ledger, key, SIGNED_AT)
    assert "is empty: nothing to checkpoint" in str(caught.value)


# -- the checkpoint document and its signature ------------------------------------------------


def signed(key: SigningKey, tmp_path: Path, name: str = "cp.json", **changes: Any) -> Path:
    """A checkpoint file of seq 6, with some fields changed after signing."""
    checkpoint = key.sign(6, "ab" * 32, SIGNED_AT)
    document = orjson.loads(checkpoint.to_json())
    document.update(changes)
    path = tmp_path / name
    path.write_bytes(orjson.dumps(document))
    return path


def test_a_checkpoint_round_trips_through_its_file(key: SigningKey, tmp_path: Path) -> None:
    checkpoint = key.sign(6, "ab" * 32, SIGNED_AT)
    path = tmp_path / "cp.json"
    write_checkpoint(path, checkpoint)
    assert read_checkpoint(path, key.public_key) == checkpoint
    with pytest.raises(InputError, match="already exists; nothing written"):
        write_checkpoint(path, key.sign(7, "cd" * 32, SIGNED_AT))
    assert read_checkpoint(path, key.public_key) == checkpoint


def flipped(signature: str) -> str:
    raw = bytearray(base64.b64decode(signature))
    raw[10] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("change", ["signature", "seq", "hash", "time"])
def test_a_tampered_checkpoint_fails_its_signature(
    key: SigningKey, tmp_path: Path, change: str
) -> None:
    original = orjson.loads(key.sign(6, "ab" * 32, SIGNED_AT).to_json())
    changes: dict[str, Any] = {
        "signature": flipped(original["signature"]),
        "seq": 5,  # e.g. to match a truncated chain
        "hash": "cd" * 32,  # e.g. to match a rewritten chain
        "time": "2026-01-01T12:00:00.000001Z",
    }
    path = signed(key, tmp_path, **{change: changes[change]})
    with pytest.raises(InputError) as caught:
        read_checkpoint(path, key.public_key)
    assert str(caught.value).startswith(f"checkpoint {path}: bad signature")


def test_a_checkpoint_signed_with_another_key_fails(key: SigningKey, tmp_path: Path) -> None:
    other = SigningKey.create(tmp_path / "other.key")
    path = signed(other, tmp_path)
    with pytest.raises(InputError) as caught:
        read_checkpoint(path, key.public_key)
    assert str(caught.value) == (
        f"checkpoint {path}: signed by key {other.public_key.key_id}, not by the trusted "
        f"public key {key.public_key.key_id}"
    )
    # Claiming the trusted key's id does not help: the signature is still the other key's.
    path = signed(other, tmp_path, key_id=key.public_key.key_id)
    with pytest.raises(InputError, match="bad signature"):
        read_checkpoint(path, key.public_key)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"seq": 6}', "format: missing"),
    (b'{"seq": 6, "extra": 1}', "extra: unknown field"),
])
def test_a_garbled_checkpoint_file_is_refused(
    key: SigningKey, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "cp.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_checkpoint(path, key.public_key)
    assert str(caught.value).startswith(f"checkpoint {path}: {message}")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("format", "trustledger-checkpoint/2",
     "'trustledger-checkpoint/2' is not 'trustledger-checkpoint/1'"),
    ("seq", 0, "must be a whole number of at least 1"),
    ("seq", True, "must be a whole number of at least 1"),
    ("seq", "6", "must be a whole number of at least 1"),
    ("hash", "AB" * 32, "must be 64 lower-case hex digits"),
    ("key_id", "ab", "must be 64 lower-case hex digits"),
    ("time", "2026-01-01T12:00:00", "must carry a UTC offset"),
    ("time", "noon", "must be an RFC 3339 date-time"),
    ("signature", "not base64!", "must be base64"),
    ("signature", base64.b64encode(b"short").decode(), "must be 64 bytes, not 5"),
])
def test_a_malformed_field_is_named(
    key: SigningKey, tmp_path: Path, field: str, value: Any, message: str
) -> None:
    path = signed(key, tmp_path, **{field: value})
    with pytest.raises(InputError) as caught:
        read_checkpoint(path, key.public_key)
    assert str(caught.value) == f"checkpoint {path}: {field}: {message}"


def test_a_missing_checkpoint_file_is_named(key: SigningKey, tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_checkpoint(tmp_path / "nope.json", key.public_key)
    assert str(caught.value) == f"checkpoint {tmp_path / 'nope.json'}: No such file or directory"


# -- keys ---------------------------------------------------------------------------------------


def test_the_signing_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.key"
    made = SigningKey.create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKey.create(path).public_key.key_id == made.public_key.key_id
    assert SigningKey.load(path).public_key.key_id == made.public_key.key_id
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.key"]  # no temporary left


def test_a_signing_key_others_can_read_is_refused(key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "checkpoint.key"
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640 lets others read the signing key"):
        SigningKey.load(path)


def test_bad_key_files_are_named(key: SigningKey, tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InputError, match=f"public key {garbled}: not a PEM public key"):
        PublicKey.load(garbled)
    with pytest.raises(InputError, match="holds a private key; give the public key"):
        PublicKey.load(tmp_path / "keys" / "checkpoint.key")
    with pytest.raises(InputError, match="No such file or directory"):
        PublicKey.load(tmp_path / "nope.pem")
    garbled.chmod(0o600)
    with pytest.raises(ConfigError, match=f"checkpoint key {garbled}: not an unencrypted PEM"):
        SigningKey.load(garbled)


def test_the_public_key_is_exported_and_never_replaced(key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "pub.pem"
    key.public_key.write(path)
    key.public_key.write(path)  # the same key again: fine
    assert PublicKey.load(path).key_id == key.public_key.key_id
    other = SigningKey.create(tmp_path / "other.key")
    with pytest.raises(InputError, match="exists and holds a different key"):
        other.public_key.write(path)
    assert PublicKey.load(path).key_id == key.public_key.key_id


# -- the command line -------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def trustledger(*args: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).parent / "trustledger"
    return subprocess.run([str(command), *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "300"}, check=False)


def test_checkpoint_then_verify_on_the_command_line(
    database_url: str, engine: sa.Engine, tmp_path: Path, now: datetime
) -> None:
    # `checkpoint` signs at the system clock's time: the entries are written just before it.
    with Ledger.open(database_url, clock=clock(now - timedelta(hours=1))) as ledger:
        fill(ledger)
        head_now = ledger.head()
    key_path, pub = tmp_path / "signing" / "checkpoint.key", tmp_path / "pub.pem"
    key_path.parent.mkdir()
    cp = tmp_path / "cp.json"
    code, output, error = invoke("checkpoint", str(cp), "--key", str(key_path),
                                 "--public-key", str(pub), "--database-url", database_url)
    assert code == 0, (output, error)
    assert key_path.stat().st_mode & 0o777 == 0o600
    held = read_checkpoint(cp, PublicKey.load(pub))
    assert (held.seq, held.hash) == head_now
    assert f"checkpoint {cp}: entry seq=6 hash {held.hash}" in output
    code, output, error = invoke("verify", "--checkpoint", str(cp), "--public-key", str(pub),
                                 "--database-url", database_url)
    assert code == 0, (output, error)
    assert f"ok: checkpoint {cp}: entry seq=6 still has hash {held.hash}" in output
    # A second checkpoint never replaces the first.
    code, _, error = invoke("checkpoint", str(cp), "--key", str(key_path),
                            "--database-url", database_url)
    assert isinstance(error, InputError) and "already exists" in str(error)

    truncate_last(engine)
    assert invoke("verify", "--database-url", database_url)[0] == 0  # the chain alone passes
    done = trustledger("verify", "--checkpoint", str(cp), "--public-key", str(pub),
                       "--database-url", database_url)
    assert done.returncode == 2
    assert f"ledger entry seq=6: entry missing: checkpoint {cp}" in done.stderr


def test_verify_refuses_bad_checkpoint_input_before_opening_the_ledger(
    key: SigningKey, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    pub = tmp_path / "pub.pem"
    key.public_key.write(pub)
    other = SigningKey.create(tmp_path / "other.key")
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    good = signed(key, tmp_path, "good.json")
    forged = signed(key, tmp_path, "forged.json", seq=5)
    foreign = signed(other, tmp_path, "foreign.json")
    cases = {
        (str(good),): "--checkpoint needs --public-key",
        (str(good), "--public-key", str(tmp_path / "none.pem")):
            f"public key {tmp_path / 'none.pem'}: No such file or directory",
        (str(tmp_path / "none.json"), "--public-key", str(pub)):
            f"checkpoint {tmp_path / 'none.json'}: No such file or directory",
        (str(garbled), "--public-key", str(pub)): f"checkpoint {garbled}: not JSON",
        (str(forged), "--public-key", str(pub)): f"checkpoint {forged}: bad signature",
        (str(foreign), "--public-key", str(pub)):
            f"checkpoint {foreign}: signed by key {other.public_key.key_id}",
        # One bad file among good ones is enough.
        (str(good), "--checkpoint", str(forged), "--public-key", str(pub)):
            f"checkpoint {forged}: bad signature",
    }
    for args, message in cases.items():
        done = trustledger("verify", "--checkpoint", *args, "--database-url", url)
        assert done.returncode == 2, done
        assert message in done.stderr, (message, done.stderr)
    assert not (tmp_path / "never.db").exists()  # nothing was opened, so nothing created


def test_the_commands_have_help() -> None:
    code, output, _ = invoke("checkpoint", "--help")
    assert code == 0 and "--key" in output and "--public-key" in output
    code, output, _ = invoke("verify", "--help")
    assert code == 0 and "--checkpoint" in output and "--public-key" in output


def test_a_signing_key_in_a_missing_folder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "checkpoint.key"
    with pytest.raises(ConfigError) as caught:
        SigningKey.create(path)
    assert str(caught.value) == f"checkpoint key {path}: folder {path.parent} does not exist"
    assert not path.parent.exists()
