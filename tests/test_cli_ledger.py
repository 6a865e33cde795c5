"""The ledger's commands: init, ingest, import, export, verify, stats, and how they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from trustledger.cli import app
from trustledger.errors import InputError, IntegrityError
from trustledger.ledger import Ledger
from trustledger.ledger.schema import entries

HEADER = "source,source_event_id,subject,type,occurred_at,attributes,supersedes\n"
GOOD = HEADER + "".join(
    f'bank-a,e{i},s{i % 2},bill_paid,2025-03-01T10:00:0{i}Z,"{{""amount"": {i}}}",\n'
    for i in range(3)
)
BAD = GOOD + "bank-a,e9,s1,bill_paid,2025-03-01T10:00:00,,\n"  # line 5: no UTC offset

runner = CliRunner()


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(GOOD)
    return path


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(BAD)
    return path


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def head(url: str) -> tuple[int, str]:
    with Ledger.open(url) as ledger:
        return ledger.head()


@pytest.mark.parametrize("command", ["init", "ingest", "import", "export", "verify", "stats"])
def test_every_command_has_help(command: str) -> None:
    code, output, _ = invoke(command, "--help")
    assert code == 0
    assert "--database-url" in output
    assert "Usage" in output


def test_the_root_help_lists_the_ledger_commands() -> None:
    code, output, _ = invoke("--help")
    assert code == 0
    for command in ("init", "ingest", "import", "export", "verify", "stats"):
        assert command in output


def test_init_ingest_verify_stats(database_url: str, good_csv: Path) -> None:
    code, output, _ = invoke("init", "--database-url", database_url)
    assert code == 0 and "ledger ready" in output and "seq=0" in output
    code, output, _ = invoke("ingest", str(good_csv), "--database-url", database_url)
    assert code == 0, output
    assert "3 rows read: 3 appended, 0 already in the ledger, 0 rejected" in output
    seq, hash_ = head(database_url)
    assert seq == 3 and hash_ in output
    code, output, _ = invoke("ingest", str(good_csv), "--database-url", database_url)
    assert "0 appended, 3 already in the ledger" in output
    code, output, _ = invoke("verify", "--database-url", database_url)
    assert code == 0 and f"ok: 3 entries verified; head hash {hash_}" in output
    code, output, _ = invoke("stats", "--database-url", database_url)
    assert code == 0
    assert "entries of kind event" in output and "subjects" in output and hash_ in output


def test_a_bad_file_is_refused_naming_line_and_field(database_url: str, bad_csv: Path) -> None:
    code, _, error = invoke("ingest", str(bad_csv), "--database-url", database_url)
    assert code != 0
    assert isinstance(error, InputError)
    assert "line 5: occurred_at: must include a UTC offset" in str(error)
    assert "nothing appended" in str(error)
    assert head(database_url)[0] == 0


def test_rejects_option(tmp_path: Path, bad_csv: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    rejects = tmp_path / "rejects.jsonl"
    code, output, _ = invoke("ingest", str(bad_csv), "--rejects", str(rejects),
                             "--database-url", url)
    assert code == 0, output
    assert "4 rows read: 3 appended, 0 already in the ledger, 1 rejected" in output
    assert str(rejects) in output
    assert '"line":5' in rejects.read_text()
    assert head(url)[0] == 3


def test_format_option(tmp_path: Path) -> None:
    path = tmp_path / "events.data"
    path.write_text(GOOD)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    code, _, error = invoke("ingest", str(path), "--database-url", url)
    assert isinstance(error, InputError) and "cannot tell the format" in str(error)
    code, output, _ = invoke("ingest", str(path), "--format", "csv", "--database-url", url)
    assert code == 0 and "3 appended" in output


def test_export_then_import_gives_the_same_head(
    database_url: str, good_csv: Path, tmp_path: Path
) -> None:
    invoke("ingest", str(good_csv), "--database-url", database_url)
    original = head(database_url)
    for name in ("backup.parquet", "backup.jsonl"):
        code, output, _ = invoke("export", str(tmp_path / name), "--database-url", database_url)
        assert code == 0 and f"exported 3 entries to {tmp_path / name}" in output
        target = f"sqlite:///{tmp_path / name}.db"
        code, output, _ = invoke("import", str(tmp_path / name), "--database-url", target)
        assert code == 0 and f"imported 3 entries; head hash {original[1]}" in output
        assert head(target) == original


def test_import_failures_change_nothing(good_csv: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    invoke("ingest", str(good_csv), "--database-url", url)
    backup = tmp_path / "backup.jsonl"
    invoke("export", str(backup), "--database-url", url)
    code, _, error = invoke("import", str(backup), "--database-url", url)
    assert code != 0 and isinstance(error, InputError) and "empty ledger" in str(error)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(backup.read_text().replace('"subject":"s1"', '"subject":"s9"', 1))
    target = f"sqlite:///{tmp_path / 't.db'}"
    code, _, error = invoke("import", str(broken), "--database-url", target)
    assert isinstance(error, IntegrityError) and error.seq == 2
    assert head(target)[0] == 0
    code, _, error = invoke("export", str(tmp_path / "out.xml"), "--database-url", url)
    assert isinstance(error, InputError) and "unknown format" in str(error)
    code, _, error = invoke("import", str(tmp_path / "missing.jsonl"), "--database-url", target)
    assert isinstance(error, InputError) and "no such file" in str(error)


def test_verify_names_the_tampered_entry(database_url: str, good_csv: Path) -> None:
    invoke("ingest", str(good_csv), "--database-url", database_url)
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(entries).where(entries.c.seq == 2).values(subject="mallory"))
    finally:
        engine.dispose()
    code, _, error = invoke("verify", "--database-url", database_url)
    assert code != 0
    assert isinstance(error, IntegrityError) and error.seq == 2
    assert "seq=2: hash does not match" in str(error)


def test_database_url_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, good_csv: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("TRUSTLEDGER_DATABASE_URL", url)
    code, output, _ = invoke("ingest", str(good_csv))
    assert code == 0 and "3 appended" in output
    assert head(url)[0] == 3


def test_errors_exit_2_with_the_message_on_stderr(tmp_path: Path, bad_csv: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    trustledger = Path(sys.executable).parent / "trustledger"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [str(trustledger), "ingest", str(bad_csv), "--database-url", url],
        capture_output=True, text=True, env=env, check=False,
    )
    assert done.returncode == 2
    assert "error:" in done.stderr and "line 5: occurred_at" in done.stderr
    done = subprocess.run(
        [str(trustledger), "stats", "--database-url", "mysql://nope/db"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert done.returncode == 2 and "only sqlite:/// and postgresql+psycopg://" in done.stderr
