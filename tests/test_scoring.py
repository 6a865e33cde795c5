"""Scoring from the ledger: publication, the version in force, one subject's evaluation, CLI."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.governance import put_in_force
from trustledger.cli import app
from trustledger.demo import run_demo
from trustledger.engine import evaluate
from trustledger.errors import LintError, NotFoundError
from trustledger.ledger import EventIn, Ledger
from trustledger.policy import load_policy
from trustledger.rights import grant_opt_in
from trustledger.scoring import (
    evaluate_subject,
    policy_in_force,
    publish_policy,
    published_policies,
)
from trustledger.synth import Population

ROOT = Path(__file__).resolve().parent.parent
SESAME = ROOT / "policies" / "sesame.yaml"
REFUSED = ROOT / "tests" / "policies" / "refused"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A ledger with the shipped register in force (two operators put it there)."""
    with Ledger.open(database_url, clock=lambda: NOW) as opened:
        put_in_force(opened)
        yield opened


def _late(subject: str, n: int, when: datetime) -> EventIn:
    return EventIn(source="bank-a", source_event_id=f"{subject}-{n}", subject=subject,
                   type="repayment_late", occurred_at=when,
                   attributes={"days_late": 10, "amount": 100.0})


def test_publish_is_recorded_once_and_in_force_from_its_date(ledger: Ledger) -> None:
    first = publish_policy(ledger, SESAME)
    again = publish_policy(ledger, SESAME)
    assert again == first
    assert [p.hash for p in published_policies(ledger)] == [load_policy(SESAME).hash]
    assert policy_in_force(ledger, NOW).hash == first.hash
    assert first.compile().hash == first.hash  # the recorded text reproduces the version
    with pytest.raises(NotFoundError, match="no published policy"):
        policy_in_force(ledger, first.effective_from - timedelta(seconds=1))


def test_later_effective_version_takes_over_on_its_date(ledger: Ledger, tmp_path: Path) -> None:
    publish_policy(ledger, SESAME)
    newer = tmp_path / "sesame-2027.yaml"
    newer.write_text(SESAME.read_text().replace("effective_from: 2025-01-01",
                                                "effective_from: 2027-01-01"))
    second = publish_policy(ledger, newer)
    assert policy_in_force(ledger, datetime(2026, 12, 31, tzinfo=UTC)).hash != second.hash
    assert policy_in_force(ledger, datetime(2027, 1, 1, tzinfo=UTC)).hash == second.hash


def test_refused_policy_is_not_published(ledger: Ledger, tmp_path: Path) -> None:
    put_in_force(ledger, REFUSED / "register.yaml")
    path = REFUSED / "travel_ban_for_a_ticket.yaml"
    before = ledger.head()
    with pytest.raises(LintError, match=r"\[proportionality\]"):
        publish_policy(ledger, path)
    assert ledger.head() == before


def test_evaluate_subject_equals_the_engine_on_the_same_events(ledger: Ledger) -> None:
    ledger.append_events([_late("alice", i, NOW - timedelta(days=30 * i)) for i in range(1, 4)])
    grant_opt_in(ledger, "alice", "sesame")
    policy = load_policy(SESAME)
    result = evaluate_subject(ledger, "alice", policy, NOW + timedelta(days=1))
    direct = evaluate(policy, list(ledger.events("alice")), NOW + timedelta(days=1),
                      opt_ins={"sesame"})
    assert result == direct
    assert result.scorecards["sesame"].score is not None


def test_without_opt_in_the_opt_in_scorecard_produces_nothing(ledger: Ledger) -> None:
    ledger.append_events([_late("bob", 1, NOW - timedelta(days=3))])
    result = evaluate_subject(ledger, "bob", load_policy(SESAME), NOW)
    card = result.scorecards["sesame"]
    assert (card.consented, card.score, card.tier, card.contributions) == (False, None, None, ())


def test_unknown_subject_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFoundError, match="nobody"):
        evaluate_subject(ledger, "nobody", load_policy(SESAME), NOW)


def test_demo_builds_once_and_scores_its_subjects(tmp_path: Path) -> None:
    small = Population(subjects=30, events=600, seed=5)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    with Ledger.open(url) as ledger:
        report = run_demo(ledger, SESAME, tmp_path, population=small, shown=3)
        # events, two demo operators issued, the register proposed and approved, the
        # policy published, three opt-ins
        assert report.created and report.verified.entries == 600 + 2 + 2 + 1 + 3
        assert all(e.scorecards["sesame"].score is not None for e in report.evaluations)
        again = run_demo(ledger, SESAME, tmp_path, population=small, shown=3)
        assert not again.created and again.verified.entries == report.verified.entries


def test_cli_score_and_explain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    # The opt-in is recorded on NOW (not today): scoring at 2026-12-01 must see it given.
    with Ledger.open(url, clock=lambda: NOW) as ledger:
        ledger.append_events([_late("carol", 1, datetime(2026, 3, 2, tzinfo=UTC))])
        grant_opt_in(ledger, "carol", "sesame")
    runner = CliRunner()
    scored = runner.invoke(app, ["score", "carol", "--policy", str(SESAME), "--at",
                                 "2026-12-01", "--database-url", url])
    assert scored.exit_code == 0, scored.output
    assert "late repayment on 2026-03-02" in scored.output
    unpublished = runner.invoke(app, ["explain", "carol", "--database-url", url])
    assert unpublished.exit_code != 0
    assert "no published policy" in str(unpublished.exception)
    with Ledger.open(url, clock=lambda: NOW) as ledger:
        put_in_force(ledger)
        publish_policy(ledger, SESAME)
    explained = runner.invoke(app, ["explain", "carol", "--at", "2026-12-01",
                                    "--database-url", url])
    assert explained.exit_code == 0, explained.output
    assert "contributions to sesame" in explained.output
    bad = runner.invoke(app, ["score", "carol", "--policy", str(SESAME), "--at", "soon",
                              "--database-url", url])
    assert "--at" in str(bad.exception)


def test_cli_policy_publish_records_once_and_refuses_a_linted_policy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pub.db'}"
    runner = CliRunner()
    ungoverned = runner.invoke(app, ["policy", "publish", str(SESAME), "--database-url", url])
    assert ungoverned.exit_code != 0
    assert "no event-type register is in force" in (ungoverned.output
                                                    + str(ungoverned.exception))
    with Ledger.open(url) as ledger:
        put_in_force(ledger)
    first = runner.invoke(app, ["policy", "publish", str(SESAME), "--database-url", url])
    assert first.exit_code == 0, first.output
    assert load_policy(SESAME).hash in first.output
    with Ledger.open(url) as ledger:  # a register declaring the travel ticket
        put_in_force(ledger, REFUSED / "register.yaml")
    travel = REFUSED / "travel_ban_for_a_ticket.yaml"
    bad = runner.invoke(app, ["policy", "publish", str(travel), "--database-url", url])
    assert bad.exit_code == 2
    assert "[proportionality]" in bad.output
    with Ledger.open(url) as ledger:
        assert [p.hash for p in published_policies(ledger)] == [load_policy(SESAME).hash]
