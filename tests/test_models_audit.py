"""Fairness by data: an audit file of protected attributes, the proxy screen, the audit status.

The planted data set (:mod:`trustledger.models.synthetic`) hides a proxy of ethnicity
(``shopping_segment``) among ordinary features; ethnicity itself is only in the audit
file. The screen must find it, and only it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_models_train import DATA, DICTIONARY, cli
from trustledger.models import audit_status, is_audited
from trustledger.models.artifact import load_artifact
from trustledger.models.audit import (
    PROXY_THRESHOLD,
    cramers_v,
    mutual_information_bits,
    proxy_screen,
)
from trustledger.models.card import render_markdown
from trustledger.models.features import parse_dictionary
from trustledger.models.synthetic import planted_credit
from trustledger.models.train import AuditData, TrainedModel, TrainingOptions, train


@pytest.fixture(scope="module")
def planted() -> TrainedModel:
    p = planted_credit(6000, seed=3, neighbourhoods=400)
    return train(p.data, parse_dictionary(p.dictionary),
                 TrainingOptions(target="default", folds=3, row_id="row_id"),
                 audit=AuditData(p.audit, "audit file planted_audit.csv"))


def test_the_planted_proxy_is_flagged_and_nothing_else(planted: TrainedModel) -> None:
    flagged = {(r.feature, r.attribute) for r in planted.screen.flagged}
    assert flagged == {("shopping_segment", "ethnicity")}
    pairs = {(r.feature, r.attribute): r for r in planted.screen.rows}
    assert pairs["shopping_segment", "ethnicity"].cramers_v > 0.6
    assert pairs["shopping_segment", "sex"].cramers_v < 0.05
    for (feature, _), row in pairs.items():
        if feature != "shopping_segment":
            assert row.cramers_v < PROXY_THRESHOLD / 2, row
    assert {name for name, _ in pairs} == set(planted.artifact.feature_names)


def test_audit_attributes_are_never_features_and_the_model_is_audited(
        planted: TrainedModel) -> None:
    assert {"ethnicity", "sex", "row_id", "customer_ref"}.isdisjoint(
        planted.artifact.feature_names)
    status = audit_status(planted.artifact)
    assert status.audited and status.attributes == ("ethnicity", "sex")
    assert is_audited(planted.artifact)
    audit = planted.artifact.training["audit"]
    assert isinstance(audit, dict)
    assert audit["proxies"] == [{"feature": "shopping_segment", "attribute": "ethnicity",
                                 "cramers_v": round(planted.screen.flagged[0].cramers_v, 6)}]
    known = audit["known_proxies"]
    assert isinstance(known, list)
    assert [k["feature"] for k in known if isinstance(k, dict)] == ["neighbourhood"]
    groups = {(r.column, r.group) for r in planted.fairness.rows}
    assert groups == {("ethnicity", "group_a"), ("ethnicity", "group_b"), ("sex", "female"),
                      ("sex", "male")}


def test_the_card_shows_the_screen_and_the_known_proxy(planted: TrainedModel) -> None:
    text = render_markdown(planted.card)
    assert "UNAUDITED" not in text
    assert "## Proxy screen" in text and "**Proxies flagged:** 1" in text
    line = next(x for x in text.splitlines()
                if x.startswith("| `shopping_segment` | `ethnicity` |"))
    assert "⚠" in line
    assert "- `neighbourhood`: geography is a well-known proxy" in text


def test_the_proxy_screen_measures_codes_exactly() -> None:
    a = np.repeat(np.arange(4, dtype=np.int64), 250)
    assert cramers_v(a, a.copy()) == pytest.approx(1.0)
    assert mutual_information_bits(a, a.copy()) == pytest.approx(2.0)
    independent = np.tile(np.arange(2, dtype=np.int64), 500)
    assert cramers_v(a, independent) == 0.0
    assert mutual_information_bits(a, independent) == pytest.approx(0.0, abs=1e-12)
    from scipy.stats.contingency import (  # type: ignore[import-untyped]
        association,
        crosstab,
    )

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 20_000)
    y = np.where(rng.random(20_000) < 0.4, x % 3, rng.integers(0, 3, 20_000))
    plain = association(crosstab(x, y).count, method="cramer")
    assert cramers_v(x, y) == pytest.approx(plain, abs=0.005)  # the correction is tiny here
    screen = proxy_screen({"f": x}, {"g": [str(v) for v in y]})
    assert screen.rows[0].cramers_v == cramers_v(x, y)
    assert screen.flagged == (screen.rows[0],) if cramers_v(x, y) >= PROXY_THRESHOLD else True


def test_rows_without_the_attribute_are_left_out_of_the_screen() -> None:
    bins = np.asarray([0, 1] * 50 + [0] * 100, dtype=np.int64)
    labels = ["x", "y"] * 50 + ["not reported"] * 100
    row = proxy_screen({"f": bins}, {"g": labels}).rows[0]
    assert row.rows == 100 and row.cramers_v == pytest.approx(1.0, abs=0.03)


def test_without_protected_attributes_the_model_is_unaudited_everywhere(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA).drop(columns=["personal_status_and_sex", "age_in_years",
                                            "foreign_worker"])
    document = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    for c in ("personal_status_and_sex", "age_in_years", "foreign_worker"):
        del document["columns"][c]
    path = tmp_path / "plain.csv"
    frame.to_csv(path, index=False)
    path.with_name("plain.columns.json").write_text(json.dumps(document), encoding="utf-8")
    models = tmp_path / "models"
    result = CliRunner().invoke(cli(), ["model", "train", str(path), "--target", "creditability",
                                        "--folds", "2", "--models", str(models)])
    assert result.exit_code == 0, result.output
    assert "UNAUDITED unaudited: no protected attribute was available" in \
        " ".join(result.output.split())
    (artifact_file,) = [p for p in models.glob("*.json") if ".card." not in p.name]
    artifact = load_artifact(models, artifact_file.stem)
    status = audit_status(artifact)
    assert not status.audited and not is_audited(artifact)
    assert "no protected attribute" in status.reason
    card = (models / f"{artifact_file.stem}.card.md").read_text(encoding="utf-8")
    assert card.splitlines()[2].startswith("> **UNAUDITED.**")
    assert "**Not audited:** no protected attribute" in card
    assert "Not measured: no protected attribute was available." in card
    shown = CliRunner().invoke(cli(), ["model", "show", artifact_file.stem[:12],
                                       "--models", str(models)])
    assert "UNAUDITED" in shown.output
    listed = CliRunner().invoke(cli(), ["model", "list", "--models", str(models)])
    assert listed.output.splitlines()[1].endswith("· UNAUDITED")
    as_json = CliRunner().invoke(cli(), ["model", "list", "--json", "--models", str(models)])
    assert json.loads(as_json.output)[0]["audited"] is False


def test_an_artifact_without_an_audit_section_is_unaudited() -> None:
    from tests.test_models_compiled import artifact as hand_made

    assert not is_audited(hand_made())
    assert audit_status(hand_made()).reason == "unaudited: the artifact records no audit"


def test_an_audit_attribute_with_one_large_group_does_not_audit(tmp_path: Path) -> None:
    p = planted_credit(1500, seed=5, neighbourhoods=50)
    audit = p.audit.assign(ethnicity="group_a", sex=["female"] * 1495 + ["male"] * 5)
    trained = train(p.data, parse_dictionary(p.dictionary),
                    TrainingOptions(target="default", folds=2, row_id="row_id"),
                    audit=AuditData(audit, "audit file one.csv"))
    assert not trained.audit.audited
    assert "fewer than two groups of 10 or more rows" in trained.audit.reason
