"""The rights commands end to end on a real SQLite ledger, and every refusal a user can reach."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.governance import TEST_PROGRAMMES, put_in_force
from tests.test_rights_helpers import DRIVING_FILE, cli_app, offence, seqs
from trustledger.errors import ErasedError, InputError, NotFoundError, TrustLedgerError
from trustledger.ledger import Ledger
from trustledger.scoring import publish_policy

APP = cli_app()
RUNNER = CliRunner()
DAY = timedelta(days=1)


def _run(url: str, *args: str, input: str | None = None) -> Result:
    return RUNNER.invoke(APP, [*args, "--database-url", url], input=input)


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, text
    return int(found.group(1))


@pytest.fixture
def url(tmp_path: Path, now: datetime) -> str:
    """A ledger whose offences are dated back from ``now``: the commands read the system clock."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        put_in_force(ledger, TEST_PROGRAMMES)
        publish_policy(ledger, DRIVING_FILE)
        ledger.append_events([
            offence("bob", "m1", "minor", now - 300 * DAY),
            offence("bob", "s1", "serious", now - 200 * DAY),
            offence("bob", "m2", "minor", now - 100 * DAY),
            offence("ann", "a1", "minor", now - 10 * DAY),
        ])
    return url


def _ids(url: str) -> dict[str, int]:
    with Ledger.open(url) as ledger:
        return {**seqs(ledger, "bob"), **seqs(ledger, "ann")}


def test_the_rights_commands_end_to_end(url: str, tmp_path: Path, now: datetime) -> None:
    ids = _ids(url)
    opened = _run(url, "dispute", "open", "bob", str(ids["s1"]), "--reason", "not me",
                  "--new-information")
    assert opened.exit_code == 0, opened.output
    dispute = _number(r"dispute (\d+) opened", opened.output)
    assert "until" in opened.output
    listed = _run(url, "dispute", "list", "bob")
    assert f"│ {dispute} " in listed.output and "│ open " in listed.output
    info = _run(url, "dispute", "add-info", str(dispute), "--subject", "bob", "--text", "receipt")
    assert info.exit_code == 0, info.output
    answered = _run(url, "dispute", "answer", str(dispute), "--source", "police", "--answer",
                    "verified", "--note", "camera")
    assert "verified by police" in answered.output
    resolved = _run(url, "dispute", "resolve", str(dispute), "--reviewer", "rev-1", "--outcome",
                    "valid", "--reason", "the photo shows the car")
    assert "is valid" in resolved.output
    requested = _run(url, "review", "request", "bob", "admonition", "--statement", "please")
    assert requested.exit_code == 0, requested.output
    review = _number(r"review (\d+) requested", requested.output)
    lifted = _run(url, "review", "resolve", str(review), "--reviewer", "rev-2", "--decision",
                  "lifted", "--reason", "a parking error")
    assert "admonition lifted" in lifted.output
    assert "lifted" in _run(url, "review", "list", "bob").output
    removed = _run(url, "whatif", "bob", "--remove", str(ids["s1"]))
    assert removed.exit_code == 0, removed.output
    assert "driving: 4 → 2 (\u22122)" in removed.output
    added = _run(url, "whatif", "bob", "--add", json.dumps(
        {"type": "offence_grave", "occurred_at": now.date().isoformat()}),
        "--date", (now + DAY).isoformat())
    assert "driving: 4 → 7 (+3)" in added.output
    reach = _run(url, "whatif", "bob", "--reach", "driving:noted")
    assert "what it takes to reach tier noted on driving" in reach.output
    assert "smallest set of removals reaching it now (1)" in reach.output
    clear = _run(url, "whatif", "bob", "--reach", "driving:clear")
    # The serious offence was disputed already (found valid): it is no candidate.
    assert "no set of disputable adverse events (2) would reach it" in clear.output
    report = _run(url, "report", "bob", "--json", str(tmp_path / "r.json"), "--html",
                  str(tmp_path / "r.html"))
    assert report.exit_code == 0, report.output
    assert json.loads((tmp_path / "r.json").read_text())["subject"] == "bob"
    assert "<!DOCTYPE html>" in (tmp_path / "r.html").read_text()
    erased = _run(url, "erase", "ann", "--yes")
    assert "erased: 1 payload(s) purged" in erased.output
    assert isinstance(_run(url, "report", "ann").exception, ErasedError)
    maintained = _run(url, "maintain", "--at", (now + 5000 * DAY).isoformat())
    assert "3 event(s) and 4 dispute record(s) purged" in maintained.output
    assert _run(url, "maintain").exit_code == 0
    with Ledger.open(url) as ledger:
        ledger.verify()


def test_erase_asks_first(url: str) -> None:
    with Ledger.open(url) as ledger:
        before = ledger.head()
    declined = _run(url, "erase", "ann", input="n\n")
    assert declined.exit_code != 0 and "Aborted" in declined.output
    with Ledger.open(url) as ledger:
        assert ledger.head() == before


@pytest.mark.parametrize(("args", "error", "message"), [
    (["report", "bob", "--at", "soon"], InputError, "--at: 'soon' is not an ISO 8601"),
    (["report", "nobody"], NotFoundError, "'nobody' has no events"),
    (["dispute", "open", "bob", "9999", "--reason", "x"], NotFoundError, "event_seq"),
    (["dispute", "open", "bob", "<a1>", "--reason", "x"], NotFoundError,
     "event_seq: subject 'bob' has no event"),
    (["dispute", "open", "bob", "<m1>", "--reason", " "], InputError, "reason: required"),
    (["dispute", "answer", "9999", "--source", "police", "--answer", "verified"], NotFoundError,
     "dispute_seq"),
    (["dispute", "resolve", "<m1>", "--reviewer", "r", "--outcome", "valid", "--reason", "x"],
     NotFoundError, "dispute_seq"),
    (["dispute", "answer", "1", "--source", "police", "--answer", "corrected", "--event",
      "@/nonexistent.json"], InputError, "--event: cannot read"),
    (["dispute", "list", "bob", "--at", "2026-13-01"], InputError, "--at"),
    (["review", "request", "bob", "warning"], InputError, "measure: warning is inactive"),
    (["review", "request", "bob", "curfew"], NotFoundError, "measure"),
    (["review", "resolve", "9999", "--reviewer", "r", "--decision", "lifted", "--reason", "x"],
     NotFoundError, "request_seq"),
    (["whatif", "bob", "--add", "{bad"], InputError, r"--add\[0\]: not valid JSON"),
    (["whatif", "bob", "--add", "[]"], InputError, r"--add\[0\]: must be a JSON object"),
    (["whatif", "bob", "--add", '{"type": "offence_minor"}'], InputError,
     r"--add\[0\]\.occurred_at: required"),
    (["whatif", "bob", "--add", '{"type": "x", "occurred_at": "2026-01-01", "speed": 1}'],
     InputError, r"--add\[0\]: unknown field\(s\) speed"),
    (["whatif", "bob", "--add", '{"type": "parking", "occurred_at": "2026-01-01"}'],
     NotFoundError, r"add\[0\]\.type"),
    (["whatif", "bob", "--remove", "9999"], NotFoundError, r"remove\[0\]"),
    (["whatif", "bob", "--reach", "driving:gold"], NotFoundError, "target"),
    (["whatif", "bob", "--date", "tomorrow"], InputError, "--date"),
    (["erase", "nobody", "--yes"], NotFoundError, "subject"),
    (["maintain", "--at", "2019-01-01"], NotFoundError, "no published policy"),
])
def test_refusals_name_the_field_and_change_nothing(
        url: str, args: list[str], error: type[TrustLedgerError], message: str) -> None:
    ids = _ids(url)
    with Ledger.open(url) as ledger:
        before = ledger.head()
    result = _run(url, *(str(ids[a[1:-1]]) if a[:1] + a[-1:] == "<>" else a for a in args))
    assert result.exit_code != 0
    assert isinstance(result.exception, error), result.output
    assert re.search(message, str(result.exception)), str(result.exception)
    with Ledger.open(url) as ledger:
        assert ledger.head() == before


def test_twice_is_refused(url: str) -> None:
    ids = _ids(url)
    dispute = _number(r"dispute (\d+) opened", _run(
        url, "dispute", "open", "bob", str(ids["m1"]), "--reason", "x").output)
    resolve = ["dispute", "resolve", str(dispute), "--reviewer", "r", "--outcome", "invalid",
               "--reason", "wrong plate"]
    assert _run(url, *resolve).exit_code == 0
    again = _run(url, *resolve)
    assert isinstance(again.exception, InputError) and "already resolved" in str(again.exception)
    assert _run(url, "erase", "ann", "--yes").exit_code == 0
    twice = _run(url, "erase", "ann", "--yes")
    assert isinstance(twice.exception, InputError) and "already erased" in str(twice.exception)
