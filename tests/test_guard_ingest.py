"""`trustledger ingest` takes events only from accredited sources once a register is in force.

Before, a ledger without source principals took any source: with the event-type register
in force the type had to be registered and in the policy, but who reported it was never
checked. Now a ledger with a register in force and no active source principal refuses the
whole file (``source``, nothing appended); with source principals each row's source must be
one, accredited for the row's type; a ledger with no register (a plain store) takes any
source, as before. Real SQLite ledgers, real principals, the real command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.governance import put_in_force
from trustledger.cli import app
from trustledger.errors import InputError
from trustledger.ledger import Ledger
from trustledger.principals import Role, ServiceLedger, add_principal, revoke_principal

runner = CliRunner()
ROWS = [{"source": "bank", "source_event_id": f"b{i}", "subject": "alice", "type": "bill_paid",
         "occurred_at": "2026-05-01T00:00:00Z", "attributes": {}} for i in range(3)]


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite ledger with the shipped register in force (two operators) and no source."""
    found = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ServiceLedger.open(found) as ledger:
        put_in_force(ledger)
    return found


def _file(tmp_path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _ingest(url: str, path: Path, *options: str) -> Result:
    return runner.invoke(app, ["ingest", str(path), "--json", *options, "--database-url", url])


def _head(url: str) -> tuple[int, str]:
    with Ledger.open(url) as ledger:
        return ledger.head()


def test_a_governed_ledger_without_sources_refuses_the_file(url: str, tmp_path: Path) -> None:
    before = _head(url)
    rejects = tmp_path / "rejects.jsonl"
    for options in ((), ("--rejects", str(rejects))):
        done = _ingest(url, _file(tmp_path, ROWS), *options)
        assert isinstance(done.exception, InputError), done.output
        message = str(done.exception)
        assert message.startswith("source: the event-type register shipped (sha256:")
        assert "no source principal is registered" in message
        assert "trustledger principal add NAME --role source --accredit TYPE --domain DOMAIN" \
            in message and "nothing was appended" in message
    assert _head(url) == before and not rejects.exists()


def test_the_refusal_exits_2_with_the_message_on_stderr(url: str, tmp_path: Path) -> None:
    trustledger = Path(sys.executable).parent / "trustledger"
    done = subprocess.run([str(trustledger), "ingest", str(_file(tmp_path, ROWS)),
                           "--database-url", url], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "source: the event-type register shipped" in done.stderr


def test_revoking_every_source_does_not_open_the_ledger_to_any(url: str,
                                                               tmp_path: Path) -> None:
    with ServiceLedger.open(url) as ledger:
        bank = add_principal(ledger, "bank", Role.SOURCE, accreditations=("bill_paid",),
                             domains=("finance",))
    assert json.loads(_ingest(url, _file(tmp_path, ROWS[:1])).output)["appended"] == 1
    with ServiceLedger.open(url) as ledger:
        revoke_principal(ledger, bank.principal.id)
    before = _head(url)
    done = _ingest(url, _file(tmp_path, ROWS[1:]))
    assert isinstance(done.exception, InputError)
    assert "no source principal is registered (or every one is revoked)" in str(done.exception)
    assert _head(url) == before


def test_with_sources_each_row_must_come_from_an_accredited_one(url: str,
                                                                tmp_path: Path) -> None:
    with ServiceLedger.open(url) as ledger:
        add_principal(ledger, "bank", Role.SOURCE, accreditations=("bill_paid",),
                      domains=("finance",))
    rows = [*ROWS[:2], {**ROWS[2], "source": "stranger"}]
    rejects = tmp_path / "rejects.jsonl"
    done = _ingest(url, _file(tmp_path, rows), "--rejects", str(rejects))
    assert done.exit_code == 0, done.output
    assert (json.loads(done.output)["appended"], json.loads(done.output)["rejected"]) == (2, 1)
    [rejected] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert "'stranger' is not a registered source" in json.dumps(rejected)


def test_a_plain_store_without_register_takes_any_source(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    done = _ingest(url, _file(tmp_path, ROWS))
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["appended"] == 3
