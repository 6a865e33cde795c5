"""`trustledger register propose|approve|show|list`, and `trustledger ingest` under the register.

The register commands are run from their own Typer app (``register_commands.register``,
the way the root CLI adds an area), on real SQLite ledgers with real operator principals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from tests.governance import APPROVER, PROPOSER, SHIPPED, operators, put_in_force
from trustledger.cli import app as root
from trustledger.errors import ConflictError, LintError, NotFoundError
from trustledger.ledger import Ledger
from trustledger.principals import (
    PermissionDeniedError,
    Role,
    ServiceLedger,
    add_principal,
    principals,
)
from trustledger.register_commands import register
from trustledger.registry import NoRegisterError, registers

runner = CliRunner()
TEXT = SHIPPED.read_text(encoding="utf-8")
MOVED = TEXT.replace("  bill_paid:\n    label: bill paid\n    domain: finance",
                     "  bill_paid:\n    label: bill paid\n    domain: utilities")


def cli(*args: str) -> Result:
    """Run ``trustledger register ARGS`` as the root CLI runs an area's commands."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """The root, so ``register`` stays a group."""

    return runner.invoke(app, ["register", *args])


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite ledger with the two operators the register needs."""
    found = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ServiceLedger.open(found) as ledger:
        operators(ledger, PROPOSER, APPROVER)
    return found


def test_propose_then_a_second_operator_approves(url: str, tmp_path: Path) -> None:
    proposed = cli("propose", str(SHIPPED), "--by", PROPOSER, "--json", "--database-url", url)
    assert proposed.exit_code == 0, proposed.output
    body = json.loads(proposed.output)
    assert (body["status"], body["new"], body["proposed_by"]) == ("pending", True, PROPOSER)
    again = cli("propose", str(SHIPPED), "--by", APPROVER, "--database-url", url)
    assert again.exit_code == 0 and "already awaits approval" in again.output
    own = cli("approve", body["hash"], "--by", PROPOSER, "--database-url", url)
    assert isinstance(own.exception, ConflictError)
    assert str(own.exception).startswith("approved_by: 'register-proposer' proposed this")
    approved = cli("approve", body["hash"], "--by", APPROVER, "--database-url", url)
    assert approved.exit_code == 0, approved.output
    assert "in force now" in approved.output
    listed = json.loads(cli("list", "--json", "--database-url", url).output)
    assert [(p["hash"], p["status"], p["approved_by"]) for p in listed] == [
        (body["hash"], "in_force", APPROVER)]
    table = cli("list", "--database-url", url)
    assert table.exit_code == 0 and body["hash"] in table.output
    shown = cli("show", "--database-url", url)
    assert shown.exit_code == 0 and TEXT.rstrip("\n") in shown.output
    assert shown.output.startswith(f"# register shipped {body['hash']}")
    by_hash = json.loads(cli("show", body["hash"], "--json", "--database-url", url).output)
    assert by_hash["source"] == TEXT and by_hash["event_types"]["bill_paid"]["domain"] == \
        "finance"


def test_refusals_name_the_field_and_record_nothing(url: str, tmp_path: Path) -> None:
    with Ledger.open(url) as ledger:
        before = ledger.head()
    missing = cli("propose", str(tmp_path / "none.yaml"), "--by", PROPOSER, "--database-url", url)
    assert isinstance(missing.exception, NotFoundError)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEXT.replace("    category: credit_repayment\n",
                                "    category: political_opinion\n", 1), encoding="utf-8")
    linted = cli("propose", str(bad), "--by", PROPOSER, "--database-url", url)
    assert isinstance(linted.exception, LintError)
    assert f"{bad}:" in str(linted.exception)  # file and line of each problem
    nobody = cli("propose", str(SHIPPED), "--by", "nobody", "--database-url", url)
    assert isinstance(nobody.exception, PermissionDeniedError)
    assert "proposed_by: 'nobody' is not an active operator principal" in str(nobody.exception)
    unknown = cli("approve", "sha256:" + "0" * 64, "--by", APPROVER, "--database-url", url)
    assert isinstance(unknown.exception, NotFoundError)
    none = cli("show", "--database-url", url)
    assert isinstance(none.exception, NoRegisterError)
    assert "trustledger register propose FILE --by OPERATOR" in str(none.exception)
    assert cli("approve", "--database-url", url).exit_code == 2  # HASH and --by are required
    with Ledger.open(url) as ledger:
        assert ledger.head() == before
        assert registers(ledger) == []


def _ingest(tmp_path: Path, url: str, rows: Sequence[Mapping[str, Any]]) -> tuple[Result, Path]:
    file, rejects = tmp_path / "events.jsonl", tmp_path / "rejects.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    done = runner.invoke(root, ["ingest", str(file), "--rejects", str(rejects), "--json",
                                "--database-url", url])
    return done, rejects


def test_ingest_refuses_a_type_outside_the_sources_domains(url: str, tmp_path: Path) -> None:
    with ServiceLedger.open(url) as ledger:
        put_in_force(ledger)
        add_principal(ledger, "bank", Role.SOURCE, accreditations=("bill_paid", "bill_overdue"),
                      domains=("finance",))
        put_in_force(ledger, MOVED)  # bill_paid moves to utilities: bank may not report it
    rows = [{"source": "bank", "source_event_id": f"b{i}", "subject": "alice", "type": kind,
             "occurred_at": "2026-05-01T00:00:00Z", "attributes": attributes}
            for i, (kind, attributes) in enumerate((("bill_overdue", {"days_overdue": 3}),
                                                    ("bill_paid", {})))]
    done, rejects = _ingest(tmp_path, url, rows)
    assert done.exit_code == 0, done.output
    assert (json.loads(done.output)["appended"], json.loads(done.output)["rejected"]) == (1, 1)
    (rejected,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert "bill_paid" in json.dumps(rejected) and "accredit" in json.dumps(rejected)


def test_a_source_from_before_the_register_reports_nothing_until_reissued(
        url: str, tmp_path: Path) -> None:
    """A source issued before revision 0004 has no domains: ingest needs a register in force,
    and then refuses its rows until the source is issued again with its domains."""
    old = principals.insert().values(
        id="pr_old", name="bank", role="source", key_hash="0" * 64,
        accreditations='["bill_paid"]', domains="[]", subject=None, rate_limit=None,
        created_at_us=0, revoked_at_us=None)
    with ServiceLedger.open(url) as ledger:
        ledger.write(lambda conn, _now: (conn.execute(old), []))
    row = {"source": "bank", "source_event_id": "b1", "subject": "alice", "type": "bill_paid",
           "occurred_at": "2026-05-01T00:00:00Z", "attributes": {}}
    ungoverned, _ = _ingest(tmp_path, url, [row])
    assert isinstance(ungoverned.exception, NoRegisterError)
    with ServiceLedger.open(url) as ledger:
        put_in_force(ledger)
    refused, rejects = _ingest(tmp_path, url, [row])
    assert json.loads(refused.output)["rejected"] == 1
    assert "bank" in rejects.read_text()
    with ServiceLedger.open(url) as ledger:
        add_principal(ledger, "bank", Role.SOURCE, accreditations=("bill_paid",),
                      domains=("finance",))
    accepted, _ = _ingest(tmp_path, url, [row])
    assert json.loads(accepted.output)["appended"] == 1
