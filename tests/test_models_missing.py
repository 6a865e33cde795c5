"""Blank fields earn no reward; missing and special bins earn points from evidence; accuracy holds.

The planted data set leaves ``income`` and ``derogatory_records`` blank mostly for risky
applicants (informative missingness), so the evidence itself says blanks are bad; the
German Credit data has no blanks at all, so its missing bins are the least favourable.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.test_models_train import DATA, DICTIONARY
from trustledger.models import CompiledScorecard
from trustledger.models.features import load_dictionary, parse_dictionary
from trustledger.models.fitting import (
    MIN_BIN_SHARE,
    RULE_CAPPED,
    RULE_EVIDENCE,
    RULE_NO_CODES,
    RULE_TOO_FEW,
    bin_indices,
)
from trustledger.models.synthetic import planted_credit
from trustledger.models.train import (
    AuditData,
    TrainedModel,
    TrainingOptions,
    logistic_baseline_auc,
    train,
    train_file,
)


@pytest.fixture(scope="module")
def planted() -> TrainedModel:
    p = planted_credit(8000, seed=1, neighbourhoods=600)
    return train(p.data, parse_dictionary(p.dictionary),
                 TrainingOptions(target="default", folds=3, row_id="row_id"),
                 audit=AuditData(p.audit, "audit file"))


@pytest.fixture(scope="module")
def german() -> TrainedModel:
    return train_file(DATA, load_dictionary(DICTIONARY), TrainingOptions(target="creditability"))


def columns(x: pd.DataFrame) -> dict[str, object]:
    return {c: x[c].to_numpy() for c in x.columns}


def observed_groups(model: TrainedModel) -> dict[str, np.ndarray]:
    """Every observed bad-rate group: each bin of each feature, each outcome, everyone."""
    x, y = model.features, model.bad
    groups: dict[str, np.ndarray] = {"everyone": np.ones(y.size, dtype=bool),
                                     "bad": y == 1, "good": y == 0}
    for f in model.artifact.features:
        idx = bin_indices(f, x[f.name])
        for b in np.unique(idx):
            groups[f"{f.name}={f.label(int(b))}"] = idx == b
    return groups


def check_blanking(model: TrainedModel, blanked: tuple[str, ...]) -> None:
    scorer = CompiledScorecard(model.artifact)
    x = model.features
    before = scorer.score_batch(columns(x), explain=False).points
    holed = x.copy()
    for name in blanked:
        holed[name] = np.nan if holed[name].dtype.kind == "f" else None
    after = scorer.score_batch(columns(holed), explain=False).points
    for name, rows in observed_groups(model).items():
        if rows.any():
            assert after[rows].mean() <= before[rows].mean(), (blanked, name)
    assert np.all(after <= before), blanked  # row by row, not only on average


def test_blanking_any_subset_never_raises_any_groups_expected_score(
        planted: TrainedModel) -> None:
    names = planted.artifact.feature_names
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(names, k):
            check_blanking(planted, subset)


@settings(max_examples=examples(25), deadline=None)
@given(st.sets(st.integers(0, 16), min_size=1))
def test_blanking_german_credit_fields_never_pays(german: TrainedModel,
                                                  chosen: set[int]) -> None:
    names = german.artifact.feature_names
    check_blanking(german, tuple(names[i % len(names)] for i in sorted(chosen)))


def test_an_all_blank_applicant_gets_the_lowest_possible_score(
        planted: TrainedModel, german: TrainedModel) -> None:
    for model in (planted, german):
        scorer = CompiledScorecard(model.artifact)
        blank = scorer.score(dict.fromkeys(scorer.features)).points
        assert blank == model.artifact.score_range[0]
        assert blank <= scorer.score_batch(columns(model.features), explain=False).points.min()


def test_informative_missingness_earns_its_evidence(planted: TrainedModel) -> None:
    card = planted.card["binning"]
    for name in ("income", "derogatory_records"):
        f = next(f for f in planted.artifact.features if f.name == name)
        missing = card[name][-1]
        assert missing["bin"] == "not reported"
        assert missing["count"] >= MIN_BIN_SHARE * planted.bad.size
        assert missing["bad_rate"] > planted.bad.mean() + 0.1
        assert missing["woe"] < -0.5
        # Blank rows are about as risky as the riskiest reported bin, or riskier: they get
        # the lowest points either way, by their own evidence or by the cap.
        assert f.missing_rule in (RULE_EVIDENCE, RULE_CAPPED)
        assert f.missing_points == f.min_points
        assert missing["rule"] == f.missing_rule
        assert f.special_rule == RULE_NO_CODES
    derogatory = next(f for f in planted.artifact.features if f.name == "derogatory_records")
    assert derogatory.missing_rule == RULE_EVIDENCE  # riskier than any reported value
    assert derogatory.missing_points < min(derogatory.points)


def test_sparse_missing_bins_get_the_least_favourable_points(german: TrainedModel) -> None:
    for f in german.artifact.features:
        assert f.missing_rule == RULE_TOO_FEW
        assert f.missing_points == min(f.points)
        row = german.card["binning"][f.name][-1]
        assert row["rule"].startswith(f"{RULE_TOO_FEW} (0 rows < minimum bin size 50)")


def test_missing_evidence_better_than_a_reported_value_is_capped() -> None:
    # Here blank rows are the *safest*: evidence would reward blanking, so it is capped.
    p = planted_credit(5000, seed=2, neighbourhoods=100)
    data = p.data.copy()
    safest = data["default"].to_numpy() == 0
    rng = np.random.default_rng(0)
    data["income"] = data["income"].astype(float)
    data.loc[safest & (rng.random(len(data)) < 0.3), "income"] = np.nan
    document = p.dictionary
    for audit_only in ("ethnicity", "sex"):
        del document["columns"][audit_only]  # type: ignore[union-attr,arg-type]
    trained = train(data, parse_dictionary(document),
                    TrainingOptions(target="default", folds=2, row_id="row_id"))
    income = next(f for f in trained.artifact.features if f.name == "income")
    assert income.missing_rule == RULE_CAPPED
    assert income.missing_points == income.min_points
    assert trained.card["binning"]["income"][-1]["woe"] > 0.5
    assert RULE_CAPPED in trained.card["binning"]["income"][-1]["rule"]


def test_special_codes_earn_evidence_when_frequent_and_least_favourable_when_rare(
        tmp_path: Path) -> None:
    frame = pd.read_csv(DATA)
    rng = np.random.default_rng(4)
    frame.loc[rng.random(len(frame)) < 0.12, "duration_in_month"] = -1
    frame.loc[rng.random(len(frame)) < 0.01, "credit_amount"] = -1
    document = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    document["columns"]["duration_in_month"]["special_codes"] = [-1]
    document["columns"]["credit_amount"]["special_codes"] = [-1]
    trained = train(frame, parse_dictionary(document),
                    TrainingOptions(target="creditability", folds=2))
    by_name = {f.name: f for f in trained.artifact.features}
    assert by_name["duration_in_month"].special_rule == RULE_EVIDENCE
    assert by_name["credit_amount"].special_rule == RULE_TOO_FEW
    assert by_name["credit_amount"].special_points == by_name["credit_amount"].min_points


def test_default_training_reaches_logistic_regression_on_the_same_folds(
        planted: TrainedModel, german: TrainedModel) -> None:
    for model in (german, planted):
        v = model.artifact.training["validation"]
        assert isinstance(v, dict)
        ours = v["oof_auc"]
        assert isinstance(ours, float)
        baseline = logistic_baseline_auc(model)
        assert ours >= baseline - 0.01, (ours, baseline)
