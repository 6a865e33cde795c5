"""Statistical scorecards in policies: a model artifact by hash, features from metrics and
decision-time attributes, every refusal at load, and a decision over HTTP.

The German Credit model is trained once per module into a temporary models folder
(training is deterministic, so its hash is the one ``tests/policies/german_credit.yaml``
names); refusals use the small hand-made artifact of ``tests/test_models_compiled.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.clock import FixedClock
from tests.governance import TEST_PROGRAMMES, put_in_force
from tests.policies.support import HERE, d, ev, parse_declared, shipped_register
from tests.test_models_compiled import artifact as small_artifact
from tests.test_models_train import DATA, DICTIONARY
from trustledger.api import Settings, create_app
from trustledger.batch import make_plan
from trustledger.engine import evaluate
from trustledger.engine.incremental import SubjectState
from trustledger.errors import InputError, LintError, PolicyError, PolicyProblem
from trustledger.ledger import EventIn
from trustledger.models import CompiledScorecard, save_artifact
from trustledger.models.artifact import MODELS_DIR_ENV, Json
from trustledger.models.features import load_dictionary
from trustledger.models.train import TrainingOptions, train_file
from trustledger.policy import CompiledPolicy, load_policy, load_register, parse_policy
from trustledger.principals import Role, ServiceLedger, add_principal
from trustledger.scoring import assess_subject, publish_policy

EXAMPLE = HERE / "german_credit.yaml"
CREDITS = "number_of_existing_credits_at_this_bank"
V = d("2026-06-01")


@dataclass(frozen=True)
class German:
    """The trained German Credit model, its folder, and the example policy over it."""

    models: Path
    scorer: CompiledScorecard
    policy: CompiledPolicy
    attributes: dict[str, str]
    """Model feature → the attribute the example policy feeds it from."""


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> German:
    models = tmp_path_factory.mktemp("models")
    trained = train_file(DATA, load_dictionary(DICTIONARY),
                         TrainingOptions(target="creditability"))
    save_artifact(trained.artifact, models)
    named = EXAMPLE.read_text(encoding="utf-8")
    assert f"sha256:{trained.artifact.content_hash}" in named, (
        "training is deterministic, but this model's hash differs from the one "
        f"{EXAMPLE.name} names (library versions changed?): {trained.artifact.content_hash}")
    policy = load_policy(EXAMPLE, models_dir=models)
    model = policy.scorecards["credit_model"].model
    assert model is not None
    attributes = {f.name: f.attribute for f in model.features if f.attribute is not None}
    return German(models, CompiledScorecard.load(models, trained.artifact.content_hash),
                  policy, attributes)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    frame = pd.read_csv(DATA)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame.to_dict(orient="records")]


def reasons_match(reasons: Any, codes: Any) -> bool:
    """The evaluation's reasons are the model's reason codes, in order, in words."""
    if not codes:
        return len(reasons) == 1 and "gives its highest points" in reasons[0].text
    texts = [r["text"] if isinstance(r, dict) else r.text for r in reasons]
    return len(texts) == len(codes) and all(
        t.startswith(f"{c.text} (") and t.endswith(
            f"{c.points:g} of at most {c.max_points:g} points".replace("-", "\u2212"))
        for t, c in zip(texts, codes, strict=True))


def all_attributes(german: German) -> CompiledPolicy:
    """The example with the one metric-fed feature supplied as an attribute instead."""
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        f"{CREDITS}: {{metric: credits_at_this_bank}}", f"{CREDITS}: {{attribute: credits}}")
    return parse_policy(text, "all_attributes.yaml", register=load_register(HERE / "register.yaml"),
                        models_dir=german.models)


# --- the score is the compiled scorecard's ------------------------------------------------

def test_policy_score_is_the_compiled_scorecards_on_every_german_credit_row(
        german: German, rows: list[dict[str, Any]]) -> None:
    policy = all_attributes(german)
    mapping = {**german.attributes, CREDITS: "credits"}
    for i, row in enumerate(rows):
        features = {f: row[f] for f in german.scorer.features}
        # Every 7th row leaves one attribute out: it scores as the missing bin.
        dropped = german.scorer.features[i % len(german.scorer.features)] if i % 7 == 0 else None
        if dropped is not None:
            features[dropped] = None
        given = {mapping[f]: v for f, v in features.items() if v is not None}
        expected = german.scorer.score(features)
        card = evaluate(policy, [], V, attributes=given).scorecards["credit_model"]
        assert card.score == expected.points, (i, row)
        assert reasons_match(card.reasons, expected.reasons), (i, card.reasons)
        assert [f.points for f in card.features] == \
            [expected.feature_points[f] for f in german.scorer.features]


def test_result_names_the_model_and_explains_each_feature(german: German) -> None:
    result = evaluate(german.policy, [ev("c1", "credit_opened", "2026-02-01")], V,
                      attributes={"duration_months": 48, "housing": "rent"})
    card = result.scorecards["credit_model"]
    assert card.model == f"sha256:{german.scorer.hash}"
    assert card.contributions == () and card.total == card.score
    by = {f.feature: f for f in card.features}
    assert by[CREDITS].source == "metric credits_at_this_bank" and by[CREDITS].value == 1.0
    assert by["duration_in_month"].value == 48 and by["duration_in_month"].bin == "43.5 or more"
    assert by["purpose"].value is None and by["purpose"].bin == "not reported"
    assert 1 <= len(card.reasons) <= 4
    first = card.reasons[0]
    assert first.text.startswith("Duration of the credit in months: 43.5 or more "
                                 "(attribute duration_months = 48): ")
    assert first.points is not None and first.points < 0
    assert card.tier == german.policy.tier("credit_model", card.score or 0.0, V)
    assert result.attributes == {"duration_months": 48, "housing": "rent"}
    # A privilege the score denies names the model's reasons as its evidence.
    offer = result.measures["credit_offer"]
    assert not offer.in_force and card.score is not None and card.score < 600
    assert [r.text for r in offer.reasons[1:]] == \
        [f"credit_model: {r.text}" for r in card.reasons[:len(offer.reasons) - 1]]


def test_a_metric_fed_feature_follows_the_ledger(german: German) -> None:
    attributes = {"duration_months": 12, "housing": "own",
                  "checking_account": "no checking account"}
    base: dict[str, Any] = {f: None for f in german.scorer.features}
    base.update(duration_in_month=12, housing="own",
                status_of_existing_checking_account="no checking account")

    def score(events: list[Any], at: datetime = V) -> float | None:
        return evaluate(german.policy, events, at, attributes=attributes) \
            .scorecards["credit_model"].score

    one = [ev("c1", "credit_opened", "2026-02-01")]
    two = [*one, ev("c2", "credit_opened", "2026-03-01")]
    assert score([]) == german.scorer.score({**base, CREDITS: 0.0}).points
    assert score(one) == german.scorer.score({**base, CREDITS: 1.0}).points
    assert score(two) == german.scorer.score({**base, CREDITS: 2.0}).points
    assert score(two) != score(one)  # the model's bins split 1 from 2 credits
    # A credit counts for three years; a withdrawn one stops counting at once.
    assert score(two, d("2029-02-15")) == score(one)
    withdrawn = [*two, ev("w", "retraction", "2026-04-01", supersedes="c2")]
    assert score(withdrawn) == score(one)


def test_measures_read_the_statistical_score_over_time(german: German) -> None:
    good = {"checking_account": "no checking account", "credit_history":
            "critical account/ other credits existing (not at this bank)",
            "duration_months": 6, "savings": "unknown/ no savings account",
            "purpose": "car (used)", "property": "real estate", "housing": "own"}
    late = [ev("l1", "repayment_late", "2026-03-01")]
    clean = evaluate(german.policy, [], V, attributes=good)
    assert clean.scorecards["credit_model"].score is not None
    assert clean.scorecards["credit_model"].score >= 600
    assert clean.measures["credit_offer"].in_force
    with_late = evaluate(german.policy, late, V, attributes=good)
    assert not with_late.measures["credit_offer"].in_force
    # The late payment leaves the 12-month window on 2027-03-01: the offer is back since then.
    later = evaluate(german.policy, late, d("2027-06-01"), attributes=good)
    assert later.measures["credit_offer"].in_force
    assert later.measures["credit_offer"].since == d("2027-03-01")


# --- decision-time attributes ---------------------------------------------------------------

def test_decision_time_attributes_are_checked_and_named(german: German) -> None:
    with pytest.raises(InputError, match=r"attributes\.duration_months: a number is expected "
                                         r"\(feature credit_model\.duration_in_month\), got str"):
        evaluate(german.policy, [], V, attributes={"duration_months": "48"})
    with pytest.raises(InputError, match=r"attributes\.duration_months: a number .* got bool"):
        evaluate(german.policy, [], V, attributes={"duration_months": True})
    with pytest.raises(InputError, match=r"attributes\.housing: a text is expected"):
        evaluate(german.policy, [], V, attributes={"housing": 1})
    with pytest.raises(InputError, match=r"attributes\.amount: 1{1}0{19}… is too large "
                                         r"for a number \(feature credit_model"):
        evaluate(german.policy, [], V, attributes={"amount": 10**400})
    with pytest.raises(InputError, match="attributes: sex is not used by any statistical "
                                         "scorecard of policy german_credit"):
        evaluate(german.policy, [], V, attributes={"sex": "female"})
    missing = evaluate(german.policy, [], V, attributes={"housing": None, "amount": math.nan})
    nothing = evaluate(german.policy, [], V)
    assert missing.scorecards["credit_model"].score == nothing.scorecards["credit_model"].score
    # An unseen category scores as the missing bin, as optbinning does.
    unseen = evaluate(german.policy, [], V, attributes={"housing": "castle"})
    assert unseen.scorecards["credit_model"].score == nothing.scorecards["credit_model"].score


def test_batch_and_incremental_paths_refuse_statistical_scorecards(german: German) -> None:
    with pytest.raises(InputError, match="batch rescoring does not compute statistical "
                                         "scorecards \\(credit_model"):
        make_plan(german.policy, V)
    with pytest.raises(InputError, match="the incremental state does not compute statistical"):
        SubjectState.empty(german.policy)


# --- refusals at load -------------------------------------------------------------------------

BASE = """\
policy: lending
title: Lending
effective_from: 2026-01-01
event_types:
  repayment_late:
    domain: finance
    category: credit_repayment
    gravity: moderate
    points: -20
    retention: P6Y
metrics:
  late_12m: {aggregate: count, types: [repayment_late], window: P1Y}
scorecards:
  credit:
    kind: statistical
    model: sha256:HASH
    domain: finance
    range: [350, 950]
    features:
      late_payments_12m: {metric: late_12m}
      housing: {attribute: housing}
      amount: {attribute: amount}
"""


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, str]:
    models = tmp_path / "models"
    path = save_artifact(small_artifact(), models)
    return models, path.stem


AUDIT: dict[str, Json] = {
    "status": "audited", "reason": "audited on sex: fairness report and proxy screen",
    "attributes": [{"name": "sex", "source": "audit file", "usable": True}]}


@pytest.fixture
def audited(tmp_path: Path) -> tuple[Path, str]:
    """The small artifact with an audit section, as training with --audit writes it."""
    models = tmp_path / "models"
    made = small_artifact()
    path = save_artifact(dataclasses.replace(made, training={**made.training, "audit": AUDIT}),
                         models)
    return models, path.stem


def refused(text: str, models: Path) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as caught:
        parse_declared(text, "lending.yaml", models_dir=models)
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def only(problems: list[PolicyProblem], rule: str, text: str, needle: str) -> PolicyProblem:
    assert [p.rule for p in problems] == [rule], [str(p) for p in problems]
    problem = problems[0]
    assert problem.location.file == "lending.yaml"
    assert problem.location.line == line_of(text, needle), str(problem)
    return problem


def test_the_small_policy_loads_and_scores_its_windowed_metric(small: tuple[Path, str]) -> None:
    models, digest = small
    policy = parse_declared(BASE.replace("HASH", digest), "lending.yaml", models_dir=models)
    scorer = CompiledScorecard.load(models, digest)
    late = [ev(f"l{i}", "repayment_late", f"2026-0{i}-01") for i in (2, 3, 4)]
    for n in range(4):
        result = evaluate(policy, late[:n], V, attributes={"housing": "rent", "amount": 500})
        expected = scorer.score({"late_payments_12m": float(n), "housing": "rent",
                                 "amount": 500})
        assert result.scorecards["credit"].score == expected.points
        assert reasons_match(result.scorecards["credit"].reasons, expected.reasons)
    # A year on, all three have left the window.
    after = evaluate(policy, late, d("2027-04-02"), attributes={"housing": "rent",
                                                               "amount": 500})
    assert after.scorecards["credit"].score == scorer.score(
        {"late_payments_12m": 0.0, "housing": "rent", "amount": 500}).points


def test_malformed_and_unknown_model_hashes(small: tuple[Path, str]) -> None:
    models, digest = small
    text = BASE.replace("sha256:HASH", digest)  # the hash without its sha256: prefix
    problem = only(refused(text, models), "model-artifact", text, "model:")
    assert "`sha256:` and 64 hexadecimal digits" in problem.message
    text = BASE.replace("    model: sha256:HASH\n", "")
    problem = only(refused(text, models), "schema", text, "credit:")
    assert problem.message == "required key `model` is missing"
    text = BASE.replace("HASH", "0" * 64)
    problem = only(refused(text, models), "model-artifact", text, "model:")
    assert f"no model artifact {'0' * 64} in the models folder {models}" in problem.message


def test_a_tampered_artifact_is_refused(small: tuple[Path, str]) -> None:
    models, digest = small
    path = models / f"{digest}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["features"][0]["bins"][0]["points"] = 500.0
    path.write_text(json.dumps(document), encoding="utf-8")
    text = BASE.replace("HASH", digest)
    problem = only(refused(text, models), "model-integrity", text, "model:")
    assert "does not match its hash" in problem.message
    assert "trustledger model verify" in problem.message


def test_features_must_match_the_model(small: tuple[Path, str]) -> None:
    models, digest = small
    base = BASE.replace("HASH", digest)
    text = base.replace("      amount: {attribute: amount}\n", "")
    problem = only(refused(text, models), "model-features", text, "features:")
    assert "does not map: amount" in problem.message
    text = base + "      income: {attribute: income}\n"
    problem = only(refused(text, models), "model-features", text, "income:")
    assert "has no feature `income`" in problem.message
    text = base.replace("housing: {attribute: housing}", "housing: {metric: late_12m}")
    problem = only(refused(text, models), "model-features", text, "housing: {metric")
    assert "feature `housing`" in problem.message and "categorical" in problem.message
    text = base.replace("amount: {attribute: amount}", "amount: {attribute: housing}")
    problem = only(refused(text, models), "model-features", text, "amount: {attribute")
    assert "attribute `housing` is a number for `credit.amount` but a text" in problem.message
    text = base.replace("{metric: late_12m}", "{metric: late_24m}")
    problem = only(refused(text, models), "unknown-reference", text, "late_payments_12m:")
    assert "no metric `late_24m`" in problem.message
    text = base.replace("{metric: late_12m}", "{metric: late_12m, attribute: late}")
    problem = only(refused(text, models), "schema", text, "late_payments_12m:")
    assert "exactly one of `metric` or `attribute`" in problem.message


def test_range_must_be_the_models(small: tuple[Path, str]) -> None:
    models, digest = small
    text = BASE.replace("HASH", digest).replace("range: [350, 950]", "range: [300, 850]")
    problem = only(refused(text, models), "model-range", text, "range:")
    assert "scores from 350 to 950" in problem.message


@pytest.mark.parametrize(("attribute", "rule", "words"), [
    ("sex", "protected-attribute", "sex or gender is a protected attribute"),
    ("foreign_worker", "protected-attribute", "foreign-worker status"),
    ("age_in_years", "protected-attribute", "age as such"),
    ("marital_status", "protected-attribute", "marital or family status"),
    ("friends_count", "out-of-bounds-name", "association"),
])
def test_protected_and_out_of_bounds_attributes_are_refused(
        small: tuple[Path, str], attribute: str, rule: str, words: str) -> None:
    models, digest = small
    text = BASE.replace("HASH", digest).replace("{attribute: housing}",
                                                f"{{attribute: {attribute}}}")
    with pytest.raises(LintError) as caught:
        parse_declared(text, "lending.yaml", models_dir=models)
    problem = only(caught.value.problems, rule, text, "housing:")
    assert problem.location.path == "scorecards.credit.features.housing.attribute"
    assert words in problem.message and "safeguard 1" in problem.message


@pytest.mark.parametrize(("category", "rule", "words"), [
    ("nationality", "protected-attribute", "declared by its model as `nationality`"),
    ("speech_expression", "out-of-bounds-category", "may never be scored"),
    ("star_sign", "unknown-category", "not a feature category"),
])
def test_a_model_feature_of_a_refused_category_is_refused(
        tmp_path: Path, category: str, rule: str, words: str) -> None:
    # An artifact made by hand (training would have refused the column) with a feature
    # of a refused category under an innocuous name.
    base = small_artifact()
    hidden = dataclasses.replace(base.features[1], name="origin_code", category=category)
    models = tmp_path / "models"
    digest = save_artifact(dataclasses.replace(
        base, features=(base.features[0], hidden, base.features[2])), models).stem
    text = BASE.replace("HASH", digest).replace("housing: {attribute: housing}",
                                                "origin_code: {attribute: origin}")
    with pytest.raises(LintError) as caught:
        parse_declared(text, "lending.yaml", models_dir=models)
    problem = only(caught.value.problems, rule, text, "origin_code:")
    assert words in problem.message


def test_when_conditions_and_metric_scopes_cannot_use_a_statistical_scorecard(
        small: tuple[Path, str]) -> None:
    models, digest = small
    base = BASE.replace("HASH", digest)
    text = base.replace("    points: -20\n",
                        "    points: -20\n    when: \"credit.score < 600.0\"\n")
    problem = only(refused(text, models), "statistical-when", text, "when:")
    assert "supplied at decision time" in problem.message
    text = base.replace("metrics:\n", "metrics:\n  scoped: {aggregate: count, scorecard: credit}\n")
    problem = only(refused(text, models), "unknown-reference", text, "scoped:")
    assert "`credit` is a statistical scorecard" in problem.message


def test_kind_must_be_known_and_rule_based_scorecards_keep_their_hash(
        small: tuple[Path, str]) -> None:
    models, digest = small
    text = BASE.replace("HASH", digest).replace("kind: statistical", "kind: neural")
    problem = only(refused(text, models), "schema", text, "credit:")
    assert "`rules` (the default) or `statistical`" in problem.message
    sesame = (HERE.parent.parent / "policies" / "sesame.yaml").read_text(encoding="utf-8")
    explicit = sesame.replace("  sesame:\n", "  sesame:\n    kind: rules\n", 1)
    assert explicit != sesame
    register = shipped_register()
    assert parse_policy(explicit, register=register).hash == \
        parse_policy(sesame, register=register).hash


def test_a_restriction_cannot_read_a_statistical_score_of_another_domain(
        audited: tuple[Path, str]) -> None:
    models, digest = audited
    text = BASE.replace("HASH", digest) + """\
measures:
  no_rental:
    kind: restriction
    domain: rental
    severity: grave
    condition: "credit.score < 100.0"
"""
    with pytest.raises(LintError) as caught:
        parse_declared(text, "lending.yaml", models_dir=models)
    problem = only(caught.value.problems, "context-firewall", text, "condition:")
    assert "statistical scorecard `credit` of domain finance" in problem.message


def test_a_credit_model_cannot_be_declared_in_another_domain(
        audited: tuple[Path, str]) -> None:
    # The model weighs housing and the loan's terms (a credit model): declared `transport`,
    # it would restrict travel on a credit record that only looks like transport's own.
    models, digest = audited
    text = BASE.replace("HASH", digest).replace(
        "    domain: finance\n    range", "    domain: transport\n    range") + """\
measures:
  no_rail:
    kind: restriction
    domain: transport
    severity: grave
    condition: "credit.score < 100.0"
"""
    with pytest.raises(LintError) as caught:
        parse_declared(text, "lending.yaml", models_dir=models)
    problem = next(p for p in caught.value.problems if p.rule == "category-domain")
    assert problem.location.path == "scorecards.credit.domain"
    assert problem.location.line == line_of(text, "domain: transport")
    assert "`housing`" in problem.message and "`finance`" in problem.message


def test_feature_domains_cover_every_feature_category() -> None:
    from trustledger.models.features import ALLOWED_CATEGORIES as FEATURE_CATEGORIES
    from trustledger.policy.taxonomy import DOMAINS, FEATURE_DOMAINS

    assert set(FEATURE_DOMAINS) == set(FEATURE_CATEGORIES)
    assert all(domains <= DOMAINS for domains in FEATURE_DOMAINS.values())


RESTRICT = """\
measures:
  no_credit:
    kind: restriction
    domain: finance
    severity: serious
    condition: "credit.score < 100.0"
"""
INVERTED = """\
measures:
  instant_credit:
    kind: privilege
    domain: finance
    severity: moderate
    condition: "credit.score >= 100.0 && late_12m == 0"
"""


@pytest.mark.parametrize("measures", [RESTRICT, INVERTED], ids=["restriction", "inverted"])
def test_an_unaudited_model_may_not_restrict(small: tuple[Path, str],
                                             audited: tuple[Path, str], measures: str) -> None:
    models, digest = small
    text = BASE.replace("HASH", digest) + measures
    with pytest.raises(LintError) as caught:
        parse_declared(text, "lending.yaml", models_dir=models)
    problem = only(caught.value.problems, "unaudited-model", text, "condition:")
    assert "statistical scorecard `credit`" in problem.message
    assert "unaudited: the artifact records no audit" in problem.message
    # The same model with its audit recorded may restrict (within its own domain).
    models, digest = audited
    parse_declared(BASE.replace("HASH", digest) + measures, "lending.yaml", models_dir=models)


# --- over HTTP ----------------------------------------------------------------------------------

@pytest.fixture
def service(german: German, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            clock: FixedClock) -> Iterator[tuple[TestClient, dict[str, str], ServiceLedger]]:
    # The service finds model artifacts where the CLI puts them: $TRUSTLEDGER_MODELS.
    monkeypatch.setenv(MODELS_DIR_ENV, str(german.models))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = ServiceLedger.open(url, clock=clock)
    put_in_force(ledger, TEST_PROGRAMMES)   # two operators put the test register in force
    publish_policy(ledger, EXAMPLE)
    keys = {
        "bank": add_principal(ledger, "bank", Role.SOURCE,
                              accreditations=("credit_opened", "repayment_late"),
                              domains=("finance",)).key,
        "lender": add_principal(ledger, "lender", Role.RELYING_PARTY,
                                accreditations=("consumer_credit",)).key,
        "alice": add_principal(ledger, "alice", Role.SUBJECT, subject="alice").key,
    }
    t0 = clock() - timedelta(days=30)
    ledger.append_events([EventIn.model_validate({
        "source": "bank", "source_event_id": f"c{i}", "subject": "alice",
        "type": "credit_opened", "occurred_at": (t0 + timedelta(days=i)).isoformat(),
        "attributes": {}}) for i in range(2)])
    with TestClient(create_app(Settings(database_url=url, clock=clock))) as client:
        yield client, keys, ledger
    ledger.close()


def test_a_decision_over_http_with_attributes(
        german: German, service: tuple[TestClient, dict[str, str], ServiceLedger]) -> None:
    client, keys, ledger = service

    def as_(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[who]}"}

    r = client.post("/v1/subjects/alice/consents", headers=as_("alice"),
                    json={"scope": "decision", "party": "lender", "purpose": "consumer_credit"})
    assert r.status_code == 201, r.text
    attributes = {"duration_months": 48, "housing": "rent", "amount": 5951,
                  "checking_account": "0 <= ... < 200 DM"}
    r = client.post("/v1/decisions", headers=as_("lender"),
                    json={"subject": "alice", "purpose": "consumer_credit",
                          "attributes": attributes})
    assert r.status_code == 200, r.text
    body = r.json()
    card = body["scorecards"]["credit_model"]
    features: dict[str, Any] = {f: None for f in german.scorer.features}
    features.update(duration_in_month=48, housing="rent", credit_amount=5951,
                    status_of_existing_checking_account="0 <= ... < 200 DM")
    features[CREDITS] = 2.0  # two credits opened in the ledger
    expected = german.scorer.score(features)
    assert card["score"] == expected.points
    assert reasons_match(card["reasons"], expected.reasons)
    # The same as the one scoring path at the decision's valid_at.
    valid_at = datetime.fromisoformat(body["valid_at"])
    policy = load_policy(EXAMPLE, models_dir=german.models)
    reference = assess_subject(ledger, "alice", policy, valid_at, attributes=attributes)
    assert card["score"] == reference.evaluation.scorecards["credit_model"].score
    # Without attributes the features are missing: another score, and no error.
    r = client.post("/v1/decisions", headers=as_("lender"),
                    json={"subject": "alice", "purpose": "consumer_credit"})
    assert r.status_code == 200 and r.json()["scorecards"]["credit_model"]["score"] != \
        card["score"]
    # Wrong type and unknown attribute: 422 naming it.
    for bad, needle in (({"duration_months": "48"}, "attributes.duration_months"),
                        ({"sex": "female"}, "sex is not used"),
                        ({"housing": ["own"]}, "attributes"),
                        ({"amount": 10**400}, "too large")):
        r = client.post("/v1/decisions", headers=as_("lender"),
                        json={"subject": "alice", "purpose": "consumer_credit",
                              "attributes": bad})
        assert r.status_code == 422, r.text
        assert needle in r.text
