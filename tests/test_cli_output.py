"""What the terminal shows: --json on list and report commands, full ids, 80 columns.

Every command runs on a real ledger (SQLite, and PostgreSQL where ``database_url`` is
used). Commands read the system clock, so every date here is derived from ``now``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner, Result

from tests.governance import TEST_PROGRAMMES, put_in_force
from tests.policies.support import split_declarations
from tests.test_rights_helpers import DRIVING_FILE, offence
from trustledger.aggregates import SMALLEST_CELL
from trustledger.batch.commands import distribution
from trustledger.cli import app
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Ledger
from trustledger.ledger.ingest import FORMATS, OPTIONAL, REQUIRED
from trustledger.policy import load_policy
from trustledger.scoring import publish_policy

ROOT = Path(__file__).resolve().parent.parent
RUNNER = CliRunner()
DAY = timedelta(days=1)


def run(*args: str, url: str | None = None, columns: int = 80) -> Result:
    """``trustledger ARGS`` at a terminal ``columns`` wide."""
    extra = ["--database-url", url] if url is not None else []
    return RUNNER.invoke(app, [*args, *extra], env={"COLUMNS": str(columns)})


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fits(result: Result, columns: int = 80, whole: tuple[str, ...] = ()) -> None:
    """Every line of the output fits ``columns``, but those carrying a ``whole`` value."""
    assert result.exit_code == 0, result.output
    wide = [line for line in result.output.splitlines()
            if len(line) > columns and not any(value in line for value in whole)]
    assert wide == [], f"lines wider than {columns} columns:\n" + "\n".join(wide)


@pytest.fixture
def ledger_url(database_url: str, now: datetime) -> str:
    """The driving policy published and offences dated back from ``now``."""
    with Ledger.open(database_url) as ledger:
        put_in_force(ledger, TEST_PROGRAMMES)
        publish_policy(ledger, DRIVING_FILE)
        ledger.append_events([
            offence("bob", "m1", "minor", now - 300 * DAY),
            offence("bob", "s1", "serious", now - 200 * DAY),
            offence("ann", "a1", "minor", now - 10 * DAY),
        ])
    return database_url


def test_principal_list_shows_whole_ids_at_80_columns_and_as_json(database_url: str) -> None:
    with Ledger.open(database_url) as ledger:
        put_in_force(ledger)
    operators = [p["id"] for p in as_json(run("principal", "list", "--json", url=database_url))]
    long_name = "a-relying-party-with-a-rather-long-name-" + "x" * 40
    for name, role, accredited, domains in (
            (long_name, "relying_party", ["rental", "lending"], []),
            ("bank-a", "source", ["bill_paid"], ["finance"])):
        added = run("principal", "add", name, "--role", role,
                    *[x for a in accredited for x in ("--accredit", a)],
                    *[x for d in domains for x in ("--domain", d)], url=database_url)
        assert added.exit_code == 0, added.output
    listed = [p for p in as_json(run("principal", "list", "--json", url=database_url))
              if p["id"] not in operators]  # the two who put the register in force
    assert [(p["name"], p["role"], p["accreditations"], p["revoked_at"]) for p in listed] == [
        (long_name, "relying_party", ["rental", "lending"], None),
        ("bank-a", "source", ["bill_paid"], None)]
    for width in (80, 60):
        table = run("principal", "list", url=database_url, columns=width)
        fits(table, width)
        for p in listed:  # whole, on one line: `principal revoke` takes it as shown
            assert any(line.startswith(p["id"] + " ") for line in table.output.splitlines())
    revoked = run("principal", "revoke", listed[1]["id"], url=database_url)
    assert revoked.exit_code == 0, revoked.output
    assert [p["id"] for p in as_json(run("principal", "list", "--json", url=database_url))] \
        == [*operators, listed[0]["id"]]
    every = as_json(run("principal", "list", "--all", "--json", url=database_url))
    assert every[3]["id"] == listed[1]["id"] and every[3]["revoked_at"] is not None


def test_score_uses_the_published_policy_unless_given_one(ledger_url: str) -> None:
    published = as_json(run("score", "bob", "--json", url=ledger_url))
    from_file = as_json(run("score", "bob", "--policy", str(DRIVING_FILE), "--json",
                            url=ledger_url))
    explained = as_json(run("explain", "bob", "--json", url=ledger_url))
    assert published["policy_hash"] == load_policy(DRIVING_FILE).hash
    assert published["scorecards"]["driving"]["score"] == 3
    for other in (from_file, explained):
        assert other["scorecards"] == published["scorecards"]
        assert other["measures"] == published["measures"]
    fits(run("score", "bob", url=ledger_url))
    fits(run("explain", "bob", url=ledger_url))


def test_score_without_a_published_policy_says_so(database_url: str, now: datetime) -> None:
    with Ledger.open(database_url) as ledger:
        ledger.append_events([offence("bob", "m1", "minor", now - DAY)])
    refused = run("score", "bob", url=database_url)
    assert isinstance(refused.exception, NotFoundError)
    assert "polic" in str(refused.exception)


def test_whatif_answers_for_a_subject_with_no_events(ledger_url: str, now: datetime) -> None:
    added = run("whatif", "carol", "--add", json.dumps(
        {"type": "offence_grave", "occurred_at": (now - DAY).isoformat()}), url=ledger_url)
    assert added.exit_code == 0, added.output
    assert "offence_grave" in added.output and "0 → 3" in added.output
    unchanged = run("whatif", "carol", url=ledger_url)
    assert unchanged.exit_code == 0, unchanged.output
    assert as_json(run("stats", "--json", url=ledger_url))["subjects"] == 2  # nothing written


def test_dispute_and_review_lists_as_json(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        seq = next(e.seq for e in ledger.events("bob") if e.source_event_id == "s1")
    opened = run("dispute", "open", "bob", str(seq), "--reason", "not me", url=ledger_url)
    assert opened.exit_code == 0, opened.output
    [dispute] = as_json(run("dispute", "list", "bob", "--json", url=ledger_url))
    assert (dispute["subject"], dispute["event_seq"], dispute["source_event_id"],
            dispute["reason"], dispute["resolution"]) == ("bob", seq, "s1", "not me", None)
    assert datetime.fromisoformat(dispute["deadline"]) > datetime.fromisoformat(
        dispute["opened_at"])
    assert as_json(run("review", "list", "bob", "--json", url=ledger_url)) == []
    assert as_json(run("dispute", "list", "ann", "--json", url=ledger_url)) == []


def test_stats_as_json_and_at_80_columns(ledger_url: str) -> None:
    stats = as_json(run("stats", "--json", url=ledger_url))
    with Ledger.open(ledger_url) as ledger:
        head_seq, head_hash = ledger.head()
    assert (stats["events"], stats["subjects"], stats["head_seq"], stats["head_hash"]) == (
        3, 2, head_seq, head_hash)
    # The URL and the head hash are never cut (to be copied whole); the table fits.
    fits(run("stats", url=ledger_url, columns=80), whole=(ledger_url, head_hash))
    status = as_json(run("cascades", "status", "--json", url=ledger_url))
    assert status == {"subscriptions": {"active": 0, "ended": 0},
                      "notifications": {"pending": 0, "delivered": 0, "dead": 0}}


def test_rescore_distribution_has_shares_and_hides_small_cells() -> None:
    policy = load_policy(ROOT / "policies" / "sesame.yaml")
    tiers = [t.name for t in policy.scorecards["sesame"].tiers]
    column = [tiers[0]] * 30 + [tiers[1]] * 60 + [tiers[2]] * 3 + [None] * 7
    results = pa.table({f"tier__{name}": column for name in policy.scorecards})
    shown = distribution(policy, results)["sesame"]
    cells = {row["tier"]: (row["subjects"], row["share"]) for row in shown}
    assert cells[tiers[0]] == (30, 0.3) and cells[tiers[1]] == (60, 0.6)
    # 3 and 7 are under k = 10: both hidden, count and share.
    assert cells[tiers[2]] == (None, None) and cells[None] == (None, None)
    assert [row["tier"] for row in shown] == [*tiers, None]  # the policy's order, then none
    assert cells[tiers[3]] == (0, 0.0)
    assert SMALLEST_CELL == 10


def test_rescore_json_reports_the_distribution(tmp_path: Path, now: datetime) -> None:
    from trustledger.synth import WIDE_POLICY, Population, write_parquet

    events, policy, out = tmp_path / "wide.parquet", tmp_path / "wide.yaml", tmp_path / "r.pq"
    write_parquet(Population(subjects=30, events=400, seed=2, profile="wide"), events)
    register, declared = split_declarations(WIDE_POLICY)
    (tmp_path / "register.yaml").write_text(register)  # found next to the policy
    policy.write_text(declared)
    report = as_json(run("rescore", str(events), "--policy", str(policy), "--at",
                         now.date().isoformat(), "--output", str(out), "--json"))
    assert report["subjects"] == 30 and report["smallest_cell"] == SMALLEST_CELL
    assert report["policy"]["hash"] == load_policy(policy).hash
    assert sum(row["subjects"] or 0 for rows in report["tiers"].values() for row in rows) == 30


def test_model_score_carries_an_id_column(tmp_path: Path) -> None:
    from trustledger.models.artifact import save_artifact
    from trustledger.models.features import load_dictionary
    from trustledger.models.train import TrainingOptions, train_file

    data = ROOT / "tests" / "data" / "german_credit.csv"
    models = tmp_path / "models"
    trained = train_file(data, load_dictionary(data.with_name("german_credit.columns.json")),
                         TrainingOptions(target="creditability", folds=2,
                                         features=("duration_in_month", "credit_amount")))
    save_artifact(trained.artifact, models)
    h = trained.artifact.content_hash
    rows = pd.read_csv(data).head(5)
    rows.insert(0, "applicant", [f"app-{i}" for i in range(5)])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    scored = run("model", "score", h, str(tmp_path / "rows.csv"), "--id", "applicant",
                 "--models", str(models))
    assert scored.exit_code == 0, scored.output
    assert scored.stdout.splitlines()[0].startswith("applicant,score,reason_1")
    assert [line.split(",")[0] for line in scored.stdout.splitlines()[1:]] == [
        f"app-{i}" for i in range(5)]
    missing = run("model", "score", h, str(tmp_path / "rows.csv"), "--id", "nope",
                  "--models", str(models))
    assert isinstance(missing.exception, InputError) and "--id" in str(missing.exception)
    listed = as_json(run("model", "list", "--json", "--models", str(models)))
    assert [m["hash"] for m in listed] == [h]
    fits(run("model", "list", "--models", str(models)), whole=(h,))


def test_the_ingest_formats_are_documented() -> None:
    doc = (ROOT / "docs" / "ingest.md").read_text()
    for column in (*REQUIRED, *OPTIONAL):
        assert f"| `{column}` |" in doc, column
    for name in ("CSV", "JSON Lines", "Parquet", "retraction", "time zone", "--rejects"):
        assert name in doc, name
    assert len(FORMATS) == 3
    assert "docs/ingest.md" in (ROOT / "README.md").read_text()
