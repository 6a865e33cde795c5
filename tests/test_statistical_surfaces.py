"""Statistical scorecards on every surface: ``trustledger score`` with decision-time
attributes, the feature table the command line prints, what-if and "what it takes" with
attributes (in Python and over HTTP).

The German Credit model is trained once per module by ``tests/test_policy_statistical.py``'s
``german`` fixture (its hash is the one ``tests/policies/german_credit.yaml`` names).
Expected values come from the engine (:func:`trustledger.engine.evaluate`) or the
compiled model, never from these surfaces themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from tests import test_policy_statistical as statistical
from tests.clock import examples
from tests.policies.support import HERE, d, ev
from tests.test_policy_statistical import (
    CREDITS,
    EXAMPLE,
    German,
    V,
    all_attributes,
    reasons_match,
)
from trustledger import render
from trustledger.cli import app
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.engine.reasons import plain, value_text
from trustledger.errors import InputError
from trustledger.ledger import EventIn, Ledger
from trustledger.models.artifact import MODELS_DIR_ENV
from trustledger.options import parse_attributes
from trustledger.policy import CompiledPolicy, load_policy, parse_policy, parse_register
from trustledger.principals import ServiceLedger
from trustledger.rights.whatif import (
    DAY,
    Hypothetical,
    TierTarget,
    parse_target,
    what_if,
    what_it_takes,
)
from trustledger.scoring import assess, assess_subject, evaluate_subject

german = statistical.german
"""The trained German Credit model and the example policy (module-scoped fixture)."""
service = statistical.service
"""The HTTP service over the example policy, alice with two credits (fixture)."""

# Row 25 of the German Credit data, with an instalment rate of 3 (it is 1 in the data): tier A
# with at most one credit at this bank, B with two (the model's bins split 1 from 2 credits;
# the tests check it through the engine).
ROW_25: dict[str, Any] = {
    "checking_account": "... < 0 DM", "duration_months": 6,
    "credit_history": "existing credits paid back duly till now",
    "purpose": "furniture/equipment", "amount": 1374, "savings": "... < 100 DM",
    "employed_since": "1 <= ... < 4 years", "instalment_rate": 3, "guarantors": "none",
    "residence_years": 2, "property": "real estate", "other_instalment_plans": "bank",
    "housing": "own", "job": "unskilled - resident", "people_maintained": 1,
    "telephone": "yes, registered under the customers name"}
REGISTER = HERE / "register.yaml"
"""The register of the test programmes (German credit declares its types there)."""

TWO_CREDITS = [ev("c1", "credit_opened", "2026-02-01", seq=1),
               ev("c2", "credit_opened", "2026-03-01", seq=2),
               ev("l1", "repayment_late", "2026-04-01", seq=3)]


def card_of(result: Evaluation) -> Any:
    return result.scorecards["credit_model"]


# --- trustledger score --attribute / --attributes --------------------------------------------

@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        ledger.append_events([EventIn.model_validate({
            "source": "bank", "source_event_id": e.source_event_id, "subject": "alice",
            "type": e.type, "occurred_at": e.occurred_at.isoformat(), "attributes": {}})
            for e in TWO_CREDITS])
    return url


def trustledger(args: list[str], models: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``trustledger`` command, as a user runs it."""
    command = Path(sys.executable).parent / "trustledger"
    env = {**os.environ, "COLUMNS": "250", MODELS_DIR_ENV: str(models)}
    return subprocess.run([str(command), *args], capture_output=True, text=True, env=env,
                          check=False, timeout=120)


def test_score_takes_attributes_from_options_and_a_file(
        german: German, ledger_url: str, tmp_path: Path) -> None:
    file = tmp_path / "applicant.json"
    file.write_text(json.dumps({"purpose": "car (used)", "housing": "own", "amount": 999}),
                    encoding="utf-8")
    done = trustledger(
        ["score", "alice", "--policy", str(EXAMPLE), "--at", "2026-06-01",
         "--database-url", ledger_url, "--attributes", str(file),
         "--attribute", "duration_months=48", "--attribute", "amount=5951.5",
         "--attribute", "checking_account=0 <= ... < 200 DM", "--attribute", "job="],
        german.models)
    assert done.returncode == 0, done.stderr
    # --attribute wins over the file; numbers are numbers; an empty VALUE is missing.
    given = {"purpose": "car (used)", "housing": "own", "amount": 5951.5,
             "duration_months": 48, "checking_account": "0 <= ... < 200 DM", "job": None}
    with Ledger.open(ledger_url) as ledger:
        expected = evaluate_subject(ledger, "alice", german.policy, V, attributes=given)
        without = evaluate_subject(ledger, "alice", german.policy, V)
    card = card_of(expected)
    assert card.score != card_of(without).score  # the attributes make a difference
    assert f"credit_model: {card.score:g}  tier {card.tier}" in done.stdout
    assert f"sha256:{german.scorer.hash}" in done.stdout
    assert "decision-time attributes: purpose = car (used), housing = own, amount = 5951.50, "\
        "duration_months = 48, checking_account = 0 <= ... < 200 DM, job = missing" \
        in done.stdout
    for reason in card.reasons:
        assert reason.text in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--attribute", "duration_months=forty"],
     "--attribute duration_months: 'forty' is not a number (feature "
     "credit_model.duration_in_month"),
    (["--attribute", "sex=female"], "attributes: sex is not used by any statistical scorecard"),
    (["--attribute", "housing"], "--attribute 'housing': expected NAME=VALUE"),
])
def test_score_refuses_bad_attributes_with_exit_2(
        german: German, ledger_url: str, args: list[str], message: str) -> None:
    done = trustledger(["score", "alice", "--policy", str(EXAMPLE), "--database-url",
                        ledger_url, *args], german.models)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in " ".join(done.stderr.split()), done.stderr
    assert done.stdout == ""


def test_every_bad_attribute_input_is_named(german: German, tmp_path: Path) -> None:
    policy = german.policy
    for pairs, message in (
            (["=5"], "--attribute '=5': expected NAME=VALUE"),
            (["amount=1", "amount=2"], "--attribute amount: given more than once"),
            (["amount=nan"], "--attribute amount: 'nan' is not a number"),
            (["amount=1e999"], "--attribute amount: '1e999' is not a number"),
            (["amount=12abc"], "--attribute amount: '12abc' is not a number (feature "
                               "credit_model.credit_amount is numerical")):
        with pytest.raises(InputError) as caught:
            parse_attributes(policy, pairs, None)
        assert message in str(caught.value)
    missing = tmp_path / "nowhere.json"
    with pytest.raises(InputError, match=r"--attributes: cannot read .*nowhere\.json"):
        parse_attributes(policy, [], missing)
    for text, message in (("{\"amount\": ", "is not JSON (line 1, column 12"),
                          ("[1, 2]", "must hold one JSON object of NAME: VALUE, not list")):
        missing.write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as caught:
            parse_attributes(policy, [], missing)
        assert message in str(caught.value)
    # A categorical feature keeps the text as given (a number-like text included); an
    # attribute no scorecard uses is passed on for the engine to refuse by name.
    assert parse_attributes(policy, ["housing=12", "people_maintained=2", "sex=f"], None) == \
        {"housing": "12", "people_maintained": 2, "sex": "f"}
    assert parse_attributes(policy, [], None) is None


def test_score_in_process_raises_the_engines_refusal(german: German, ledger_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(german.models))
    result = CliRunner().invoke(app, ["score", "alice", "--policy", str(EXAMPLE),
                                      "--database-url", ledger_url,
                                      "--attribute", "telephone=0", "--attribute",
                                      "residence_years=2.5", "--attribute", "housing=1"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["score", "alice", "--policy", str(EXAMPLE),
                                      "--database-url", ledger_url, "--attributes",
                                      str(Path(ledger_url.removeprefix("sqlite:///")).parent /
                                          "absent.json")])
    assert isinstance(result.exception, InputError)
    assert "--attributes: cannot read" in str(result.exception)


# --- the feature table --------------------------------------------------------------------

def rendered(result: Evaluation, *, detail: bool) -> str:
    console = Console(width=300, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render.evaluation(result, detail=detail))
    console.file.close()
    return console.export_text()


@pytest.mark.parametrize("detail", [False, True])
def test_a_statistical_scorecard_is_shown_by_its_features(german: German, detail: bool) -> None:
    given = {**ROW_25, "purpose": None, "amount": 5951}
    result = evaluate(german.policy, TWO_CREDITS, V, attributes=given)
    card = card_of(result)
    text = rendered(result, detail=detail)
    assert f"features of credit_model (model sha256:{german.scorer.hash})" in text
    assert "contributions to credit_model" not in text
    lines = text.splitlines()
    assert len(card.features) == len(german.scorer.features)
    for f in card.features:
        value = "missing" if f.value is None else value_text(f.value)
        row = next((line for line in lines if line.startswith(f"│ {f.feature} ")), None)
        assert row is not None, (f.feature, text)
        cells = [c.strip() for c in row.strip("│ ").split("│")]
        assert cells == [f.feature, f.source, value, f.bin, plain(f.points),
                         plain(f.max_points)], row
    by = {f.feature: f for f in card.features}
    assert by[CREDITS].source == "metric credits_at_this_bank" and by[CREDITS].value == 2.0
    assert by["purpose"].value is None
    # The footer is the score: the features' points add up to it.
    assert sum(f.points for f in card.features) == pytest.approx(card.score)
    footer = next(line for line in lines if "│ score " in line)
    assert plain(card.score) in footer
    # Then the reason codes, in order, each once.
    start = lines.index(next(line for line in lines if "reason codes of credit_model:" in line))
    assert reasons_match(card.reasons, german.scorer.score(
        {**{f: None for f in german.scorer.features},
         **{f: given.get(a) for f, a in german.attributes.items()}, CREDITS: 2.0}).reasons)
    for rank, reason in enumerate(card.reasons, 1):
        assert lines[start + rank].strip() == f"{rank}. {reason.text}"
        assert text.count(reason.text) == 1 + sum(
            reason.text in str(r) for m in result.measures.values() for r in m.reasons)


def test_bins_and_values_are_not_read_as_markup(german: German) -> None:
    result = evaluate(german.policy, [], V, attributes={"housing": "[bold]own[/bold]"})
    text = rendered(result, detail=True)
    assert "[bold]own[/bold]" in text  # shown as given, not swallowed as Rich markup


# --- what-if with decision-time attributes ------------------------------------------------

def test_what_if_keeps_the_assessments_attributes(german: German) -> None:
    assessment = assess(german.policy, "alice", TWO_CREDITS, [], V, attributes=ROW_25)
    same = what_if(assessment)
    score = plain(card_of(assessment.evaluation).score)
    assert same.changes() == (f"credit_model: {score} → {score} (unchanged)",)
    assert card_of(same.after) == card_of(assessment.evaluation)
    assert same.after.attributes == ROW_25
    # Removing a credit is a fresh evaluation of that history with the same attributes.
    fewer = what_if(assessment, remove=[2])
    fresh = evaluate(german.policy, TWO_CREDITS[:1] + TWO_CREDITS[2:], V, attributes=ROW_25)
    assert card_of(fewer.after) == card_of(fresh)
    assert card_of(fresh).tier == "A" and card_of(assessment.evaluation).tier == "B"
    assert any(c.startswith("credit_model: ") and "tier B → A" in c for c in fewer.changes())


def test_what_if_with_other_attributes(german: German) -> None:
    assessment = assess(german.policy, "alice", TWO_CREDITS, [], V, attributes=ROW_25)
    result = what_if(assessment, attributes={"duration_months": 60, "telephone": None})
    expected = evaluate(german.policy, TWO_CREDITS, V,
                        attributes={**ROW_25, "duration_months": 60, "telephone": None})
    assert card_of(result.after) == card_of(expected)
    assert card_of(result.after).score != card_of(assessment.evaluation).score
    assert result.before is assessment.evaluation
    assert "attribute duration_months: 6 → 60" in result.changes()
    assert "attribute telephone: yes, registered under the customers name → missing" in \
        result.changes()
    with pytest.raises(InputError, match=r"attributes\.duration_months: a number is expected"):
        what_if(assessment, attributes={"duration_months": "long"})
    with pytest.raises(InputError, match="attributes: sex is not used"):
        what_if(assessment, attributes={"sex": "female"})
    with pytest.raises(InputError, match="attributes: must be an object"):
        what_if(assessment, attributes=["duration_months"])  # type: ignore[arg-type]


ATTRIBUTE_CHOICES = st.fixed_dictionaries({}, optional={
    "duration_months": st.sampled_from([6, 24, 48, None]),
    "housing": st.sampled_from(["own", "rent", "for free", None]),
    "amount": st.floats(100, 20_000),
    "savings": st.sampled_from(["... < 100 DM", "unknown/ no savings account"]),
})


@st.composite
def statistical_cases(draw: st.DrawFn) -> tuple[list[Event], dict[str, Any], list[int],
                                                list[Hypothetical], dict[str, Any], datetime]:
    events = [Event("bank", f"e{i}", "alice",
                    draw(st.sampled_from(["credit_opened", "repayment_late"])),
                    d("2026-01-01") + timedelta(days=draw(st.integers(0, 150))),
                    d("2026-05-31"), {}, None, i + 1)
              for i in range(draw(st.integers(1, 6)))]
    removed = draw(st.lists(st.sampled_from([e.seq for e in events if e.seq]), max_size=3))
    at = V + timedelta(days=draw(st.integers(0, 1500)))
    added = [Hypothetical(draw(st.sampled_from(["credit_opened", "repayment_late"])),
                          at - timedelta(days=draw(st.integers(0, 400))))
             for _ in range(draw(st.integers(0, 2)))]
    return (events, draw(ATTRIBUTE_CHOICES), removed, added, draw(ATTRIBUTE_CHOICES), at)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=statistical_cases())
def test_what_if_equals_a_fresh_evaluation_with_attributes(
        german: German,
        case: tuple[list[Event], dict[str, Any], list[int], list[Hypothetical],
                    dict[str, Any], datetime]) -> None:
    events, given, removed, added, changed, at = case
    assessment = assess(german.policy, "alice", events, [], V, attributes=given)
    result = what_if(assessment, remove=removed, add=added, at=at, attributes=changed)
    kept = [e for e in events if e.seq not in removed] + list(result.added)
    fresh = evaluate(german.policy, kept, at, attributes={**given, **changed})
    assert result.after.scorecards == fresh.scorecards
    assert result.after.measures == fresh.measures
    assert result.after.metrics == fresh.metrics
    assert result.after.attributes == fresh.attributes


# --- what it takes: a statistical score does not decay ------------------------------------

def first_reaching_day(policy: CompiledPolicy, events: list[Event], given: dict[str, Any],
                       tier: str, until: datetime) -> datetime | None:
    """The reference answer: every day evaluated by the engine, the first one in ``tier``."""
    ranks = [t.name for t in policy.scorecards["credit_model"].tiers]
    moment = V + DAY
    while moment <= until:
        found = card_of(evaluate(policy, events, moment, attributes=given)).tier
        if found is not None and ranks.index(found) >= ranks.index(tier):
            return moment
        moment += DAY
    return None


def test_metrics_changing_with_time_reach_a_tier_on_the_exact_day(german: German) -> None:
    events = TWO_CREDITS[:2]
    assessment = assess(german.policy, "alice", events, [], V, attributes=ROW_25)
    assert card_of(assessment.evaluation).tier == "B"
    takes = what_it_takes(assessment, parse_target(german.policy, "credit_model:A"))
    # The first credit stops counting after three years: one credit, tier A.
    expected = first_reaching_day(german.policy, events, ROW_25, "A", d("2029-06-01"))
    assert expected == d("2029-02-01")
    assert takes.by_decay_at == expected
    assert takes.by_decay is not None and card_of(takes.by_decay).tier == "A"
    summary = "\n".join(takes.summary())
    assert "by decay and expiry alone: from 2029-02-01" in summary
    assert "credit_model is a statistical score (model sha256:" in summary
    assert "it does not decay; time changes it only when its metrics (credits_at_this_bank) " \
        "do" in summary
    assert "its decision-time attributes (amount, checking_account," in summary
    # Credits opened are not adverse events: nothing to dispute.
    assert takes.removals is None and takes.candidates == ()


def test_attributes_alone_never_change_with_time_and_it_says_so(german: German) -> None:
    policy = all_attributes(german)
    given = {**ROW_25, "credits": 2}
    assessment = assess(policy, "alice", TWO_CREDITS, [], V, attributes=given)
    assert card_of(assessment.evaluation).tier == "B"
    takes = what_it_takes(assessment, TierTarget("credit_model", "A"))
    assert takes.by_decay_at is None and takes.by_decay is None
    assert first_reaching_day(policy, TWO_CREDITS, given, "A", d("2031-05-01")) is None
    summary = takes.summary()
    assert summary[1] == "by decay and expiry alone: never (no new events)"
    assert summary[2].startswith("credit_model is a statistical score (model sha256:")
    assert "of decision-time attributes only: it does not decay, and time alone does not " \
        "change it; its decision-time attributes (amount, checking_account, credit_history, " \
        "credits," in summary[2]
    # Another amount of credits does reach it (what-if with other attributes).
    assert card_of(what_if(assessment, attributes={"credits": 1}).after).tier == "A"


def test_a_decayed_sum_metric_is_searched_day_by_day(german: German) -> None:
    # The credits feature fed by a decayed sum: three credit lines worth a point each,
    # halving every year, fall below the model's 1.5 boundary some day — not at an expiry.
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("  credits_at_this_bank: {aggregate: count, types: [credit_opened]}",
                        "  credits_at_this_bank: {aggregate: sum, value: current, "
                        "types: [credit_line]}")
    text = text.replace("event_types:\n", """event_types:
  credit_line:
    points: 1
    decay: {half_life: P365D}
    expiry: {after: P10Y}
    retention: P11Y
""", 1)
    register = parse_register(REGISTER.read_text(encoding="utf-8") + """\
  credit_line:
    label: credit line at this bank
    domain: finance
    category: credit_repayment
    gravity: minor
""", "decayed-register.yaml")
    policy = parse_policy(text, "decayed.yaml", register=register, models_dir=german.models)
    events = [ev(f"k{i}", "credit_line", f"2026-0{i}-01", seq=i) for i in (2, 3, 4)]
    assessment = assess(policy, "alice", events, [], V, attributes=ROW_25)
    assert card_of(assessment.evaluation).tier == "B"
    takes = what_it_takes(assessment, TierTarget("credit_model", "A"))
    expected = first_reaching_day(policy, events, ROW_25, "A", d("2028-01-01"))
    assert expected is not None and expected not in {e.occurred_at.replace(year=2027)
                                                      for e in events}
    assert takes.by_decay_at == expected


def test_a_measure_reading_the_score_uses_the_assessments_attributes(german: German) -> None:
    good = {"checking_account": "no checking account", "credit_history":
            "critical account/ other credits existing (not at this bank)",
            "duration_months": 6, "savings": "unknown/ no savings account",
            "purpose": "car (used)", "property": "real estate", "housing": "own"}
    late = [ev("l1", "repayment_late", "2026-03-01", seq=1)]
    assessment = assess(german.policy, "alice", late, [], V, attributes=good)
    assert not assessment.evaluation.measures["credit_offer"].in_force
    takes = what_it_takes(assessment, parse_target(german.policy, "credit_offer"))
    # The late payment leaves the 12-month window on 2027-03-01, and the score is high
    # enough with these attributes.
    assert takes.by_decay_at == d("2027-03-01")
    assert takes.notes == ()
    # With poor attributes the score stays below 600: never. Leaving them out does not help:
    # a missing attribute scores as its feature's least favourable value (issue 19).
    poor = {"checking_account": "... < 0 DM", "duration_months": 48, "amount": 12_000,
            "credit_history": "no credits taken/ all credits paid back duly"}
    bare = assess(german.policy, "alice", late, [], V, attributes=poor)
    score = card_of(bare.evaluation).score
    assert score is not None and score < 600
    missing = card_of(evaluate(german.policy, late, V)).score
    assert missing is not None and missing <= score
    assert what_it_takes(bare, parse_target(german.policy, "credit_offer")).by_decay_at is None
    # A successful dispute of the late payment reaches it now.
    assert takes.removals is not None and [e.key for e in takes.removals] == [("src", "l1")]


# --- over HTTP ----------------------------------------------------------------------------

def test_whatif_over_http_with_attributes(
        german: German, service: tuple[TestClient, dict[str, str], ServiceLedger]) -> None:
    client, keys, ledger = service
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    r = client.post("/v1/subjects/alice/whatif", headers=headers,
                    json={"attributes": ROW_25, "reach": "credit_model:A"})
    assert r.status_code == 200, r.text
    body = r.json()
    valid_at = datetime.fromisoformat(body["valid_at"])
    policy = load_policy(EXAMPLE, models_dir=german.models)
    reference = assess_subject(ledger, "alice", policy, valid_at, attributes=ROW_25)
    card = card_of(reference.evaluation)
    assert card.tier == "B"  # two credits opened in the ledger
    for side in ("before", "after"):
        assert body[side]["scorecards"]["credit_model"]["score"] == card.score
        assert reasons_match(body[side]["scorecards"]["credit_model"]["reasons"],
                             german.scorer.score(
                                 {**{f: ROW_25.get(a) for f, a in german.attributes.items()},
                                  CREDITS: 2.0}).reasons)
    takes = body["what_it_takes"]
    # The first credit was opened 30 days ago and counts for three years.
    first = min(e.occurred_at for e in reference.scored)
    stops = first.replace(year=first.year + 3)
    assert takes["by_decay_at"] is not None, takes
    assert stops <= datetime.fromisoformat(takes["by_decay_at"]) < stops + DAY
    assert any("it does not decay; time changes it only when its metrics" in line
               for line in takes["summary"])
    # Without attributes the features are missing: another score.
    r = client.post("/v1/subjects/alice/whatif", headers=headers, json={})
    assert r.status_code == 200, r.text
    assert r.json()["before"]["scorecards"]["credit_model"]["score"] != card.score
    # Refusals name the attribute; nothing is recorded.
    head = ledger.head()
    for bad, needle in (({"duration_months": "6"}, "attributes.duration_months"),
                        ({"sex": "female"}, "sex is not used"),
                        ({"housing": ["own"]}, "attributes"),
                        ({"amount": 10**400}, "too large")):
        r = client.post("/v1/subjects/alice/whatif", headers=headers,
                        json={"attributes": bad})
        assert r.status_code == 422, r.text
        assert needle in r.text
    assert ledger.head() == head


def test_whatif_refuses_an_unknown_target_before_scoring(
        german: German, service: tuple[TestClient, dict[str, str], ServiceLedger]) -> None:
    client, keys, _ = service
    r = client.post("/v1/subjects/alice/whatif",
                    headers={"Authorization": f"Bearer {keys['alice']}"},
                    json={"attributes": ROW_25, "reach": "credit_model:Z"})
    assert r.status_code == 404, r.text
    assert "scorecard credit_model has no tier 'Z'" in r.text
