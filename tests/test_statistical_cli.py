"""Decision-time attributes on ``trustledger explain`` and ``trustledger whatif``.

Both take ``--attribute NAME=VALUE`` (repeatable) and ``--attributes FILE.json`` as
``trustledger score`` does (one reader, :func:`trustledger.options.parse_attributes`).
The ledger is real SQLite with the German Credit example policy published; the model is
trained once per module by ``tests/test_policy_statistical.py``'s ``german`` fixture.
Expected values come from the engine (:func:`trustledger.engine.evaluate`) and the
Python what-if API, never from the commands' own output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests import test_policy_statistical as statistical
from tests.governance import TEST_PROGRAMMES, put_in_force
from tests.test_policy_statistical import EXAMPLE, German, V
from tests.test_statistical_surfaces import ROW_25, TWO_CREDITS, card_of, trustledger
from trustledger.cli import app
from trustledger.engine import evaluate
from trustledger.engine.reasons import plain
from trustledger.ledger import EventIn, Ledger
from trustledger.models.artifact import MODELS_DIR_ENV
from trustledger.rights.whatif import parse_target, what_it_takes
from trustledger.scoring import assess_subject, publish_policy

german = statistical.german
"""The trained German Credit model and the example policy (module-scoped fixture)."""

AT = V.date().isoformat()


@pytest.fixture
def ledger_url(german: German, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ledger with the example policy published and alice's two credits and a late payment."""
    # The published policy is compiled again from the ledger: it finds its model here.
    monkeypatch.setenv(MODELS_DIR_ENV, str(german.models))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        put_in_force(ledger, TEST_PROGRAMMES)   # the test programmes' register, two operators
        publish_policy(ledger, EXAMPLE)
        ledger.append_events([EventIn.model_validate({
            "source": "bank", "source_event_id": e.source_event_id, "subject": "alice",
            "type": e.type, "occurred_at": e.occurred_at.isoformat(), "attributes": {}})
            for e in TWO_CREDITS])
    return url


def seq_of(url: str, source_event_id: str) -> int:
    with Ledger.open(url) as ledger:
        (seq,) = [e.seq for e in ledger.events("alice") if e.source_event_id == source_event_id]
    assert seq is not None  # events read from the ledger carry their seq
    return seq


def row_file(tmp_path: Path, **override: Any) -> Path:
    file = tmp_path / "applicant.json"
    file.write_text(json.dumps({**ROW_25, **override}), encoding="utf-8")
    return file


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return " ".join(result.output.split())


def test_explain_scores_with_the_attributes_given(
        german: German, ledger_url: str, tmp_path: Path) -> None:
    file = row_file(tmp_path, amount=999)
    out = invoke("explain", "alice", "--at", AT, "--database-url", ledger_url,
                 "--attributes", str(file), "--attribute", "amount=5951.5",
                 "--attribute", "job=")
    # --attribute wins over the file; a number is a number; an empty VALUE is missing.
    given = {**ROW_25, "amount": 5951.5, "job": None}
    expected = card_of(evaluate(german.policy, TWO_CREDITS, V, attributes=given))
    without = card_of(evaluate(german.policy, TWO_CREDITS, V))
    assert expected.score != without.score
    assert f"credit_model: {expected.score:g} tier {expected.tier}" in out
    assert f"credit_model: {without.score:g} " not in out
    assert "amount = 5951.50" in out and "job = missing" in out
    for reason in expected.reasons:
        assert " ".join(reason.text.split()) in out
    # Without the options, explain is what it was: every feature missing but the metric.
    plain_out = invoke("explain", "alice", "--at", AT, "--database-url", ledger_url)
    assert f"credit_model: {without.score:g} tier {without.tier}" in plain_out
    assert "decision-time attributes" not in plain_out


def test_whatif_keeps_the_attributes_before_and_after(
        german: German, ledger_url: str, tmp_path: Path) -> None:
    second = seq_of(ledger_url, "c2")
    out = invoke("whatif", "alice", "--at", AT, "--database-url", ledger_url,
                 "--attributes", str(row_file(tmp_path)), "--remove", str(second))
    before = card_of(evaluate(german.policy, TWO_CREDITS, V, attributes=ROW_25))
    after = card_of(evaluate(german.policy, [TWO_CREDITS[0], TWO_CREDITS[2]], V,
                             attributes=ROW_25))
    assert (before.tier, after.tier) == ("B", "A")
    assert f"credit_model: {plain(before.score)} → {plain(after.score)}" in out
    assert "tier B → A" in out
    assert f"credit_model: {after.score:g} tier A" in out
    assert "• attribute " not in out  # the same attributes on both sides: none changed
    # Without attributes the features are missing: other scores.
    bare = invoke("whatif", "alice", "--at", AT, "--database-url", ledger_url,
                  "--remove", str(second))
    assert f"credit_model: {plain(before.score)} →" not in bare


def test_whatif_reach_with_attributes_and_a_policy_file(
        german: German, ledger_url: str, tmp_path: Path) -> None:
    out = invoke("whatif", "alice", "--at", AT, "--database-url", ledger_url,
                 "--policy", str(EXAMPLE), "--reach", "credit_model:A",
                 *(a for name, value in ROW_25.items()
                   for a in ("--attribute", f"{name}={value}")))
    with Ledger.open(ledger_url) as ledger:
        assessment = assess_subject(ledger, "alice", german.policy, V, attributes=ROW_25)
    summary = what_it_takes(assessment, parse_target(german.policy, "credit_model:A")).summary()
    assert len(summary) > 1
    for line in summary:
        assert " ".join(line.split()) in out


@pytest.mark.parametrize("command", [
    ["explain", "alice"],
    ["whatif", "alice"],
    ["whatif", "alice", "--policy", str(EXAMPLE)],
])
@pytest.mark.parametrize(("args", "message"), [
    (["--attribute", "duration_months=forty"],
     "--attribute duration_months: 'forty' is not a number (feature "
     "credit_model.duration_in_month is numerical"),
    (["--attribute", "sex=female"], "attributes: sex is not used by any statistical scorecard"),
    (["--attribute", "housing"], "--attribute 'housing': expected NAME=VALUE"),
    (["--attribute", "amount=1", "--attribute", "amount=2"],
     "--attribute amount: given more than once"),
    (["--attributes", "{missing}"], "--attributes: cannot read"),
    (["--attributes", "{list}"], "must hold one JSON object of NAME: VALUE, not list"),
])
def test_bad_attributes_exit_2_naming_them_and_change_nothing(
        german: German, ledger_url: str, tmp_path: Path, command: list[str], args: list[str],
        message: str) -> None:
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    args = [a.format(missing=tmp_path / "absent.json", list=tmp_path / "list.json")
            for a in args]
    with Ledger.open(ledger_url) as ledger:
        head = ledger.head()
    done = trustledger([*command, "--at", AT, "--database-url", ledger_url, *args],
                       german.models)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in " ".join(done.stderr.split()), done.stderr
    assert done.stdout == ""
    with Ledger.open(ledger_url) as ledger:
        assert ledger.head() == head
