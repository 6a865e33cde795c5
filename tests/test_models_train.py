"""Training on the real German Credit data, once per module, and everything built on it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from trustledger.errors import InputError, NotFoundError
from trustledger.models import ArtifactIntegrityError, CompiledScorecard, save_artifact
from trustledger.models.card import render_markdown
from trustledger.models.commands import register
from trustledger.models.features import load_dictionary
from trustledger.models.metrics import auc, ks, psi
from trustledger.models.train import (
    PdoScaling,
    TrainedModel,
    TrainingOptions,
    read_table,
    train,
    train_file,
)

DATA = Path(__file__).parent / "data" / "german_credit.csv"
DICTIONARY = DATA.with_name("german_credit.columns.json")
PROTECTED = {"personal_status_and_sex", "age_in_years", "foreign_worker"}


@pytest.fixture(scope="module")
def german() -> TrainedModel:
    return train_file(DATA, load_dictionary(DICTIONARY), TrainingOptions(target="creditability"))


def columns_of(x: pd.DataFrame) -> dict[str, object]:
    return {c: x[c].to_numpy() for c in x.columns}


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Root."""

    register(app)
    return app


def test_out_of_fold_auc_meets_the_reference(german: TrainedModel) -> None:
    v = german.artifact.training["validation"]
    assert isinstance(v, dict)
    assert v["folds"] == 5
    auc, gini, ks_, psi_ = (v[k] for k in ("oof_auc", "oof_gini", "oof_ks", "psi_train_holdout"))
    assert isinstance(auc, float) and isinstance(gini, float)
    assert isinstance(ks_, float) and isinstance(psi_, float)
    assert auc >= 0.78
    assert gini == pytest.approx(2 * auc - 1)
    assert 0.3 < ks_ < 0.7
    assert 0 <= psi_ < 0.1


def test_protected_columns_are_refused_and_reported_for_fairness(german: TrainedModel) -> None:
    assert PROTECTED.isdisjoint(german.artifact.feature_names)
    refused = {r.column: r for r in german.selection.refused}
    assert set(refused) == PROTECTED
    assert "sex or gender" in refused["personal_status_and_sex"].reason
    assert "foreign-worker" in refused["foreign_worker"].reason
    assert "age as such" in refused["age_in_years"].reason
    groups = {(r.column, r.group) for r in german.fairness.rows}
    assert ("personal_status_and_sex", "female") in groups
    assert ("personal_status_and_sex", "male") in groups
    assert ("foreign_worker", "yes") in groups
    assert ("age_in_years", "under 25") in groups
    for row in german.fairness.rows:
        assert not row.suppressed and row.auc is not None
        assert set(row.approval) == {550.0, 600.0, 650.0, 700.0}
        assert max(r or 0 for r in row.impact_ratio.values()) <= 1.0
    flagged = {(f.column, f.group, f.threshold) for f in german.fairness.flags}
    assert flagged == {(r.column, r.group, t) for r in german.fairness.rows
                       for t, ratio in r.impact_ratio.items()
                       if ratio is not None and ratio < 0.8}


def test_scores_span_the_range(german: TrainedModel) -> None:
    features = german.artifact.features
    # The intercept is 0 (the features' points add up to the score); points are rounded to
    # integers, so the top lands within a point or two of the maximum, never above it.
    intercept = german.artifact.intercept
    assert intercept == 0.0
    assert intercept + sum(f.min_points for f in features) == 350
    assert 948 <= intercept + sum(f.max_points for f in features) <= 950
    assert german.artifact.scaling["method"] == "range"


def test_compiled_path_equals_optbinning_on_every_row(german: TrainedModel) -> None:
    compiled = CompiledScorecard(german.artifact)
    expected = german.reference.score(german.features)
    batch = compiled.score_batch(columns_of(german.features))
    assert np.array_equal(batch.points, expected)
    for i, row in enumerate(german.features.to_dict(orient="records")):
        single = compiled.score(row)
        assert single.points == expected[i]
        assert single.reasons == batch.reasons(i)
        assert len(single.reasons) <= 4


def test_compiled_path_equals_optbinning_with_missing_and_unseen_values(
    german: TrainedModel,
) -> None:
    rng = np.random.default_rng(1)
    x = german.features.copy()
    for c in x.columns:
        holes = rng.random(len(x)) < 0.15
        if x[c].dtype.kind == "f":
            x.loc[holes, c] = np.nan
        else:
            x.loc[holes, c] = None
    x.loc[x.index[:5], "purpose"] = "a category never seen"
    expected = german.reference.score(x)
    compiled = CompiledScorecard(german.artifact)
    assert np.array_equal(compiled.score_batch(columns_of(x)).points, expected)
    for i, row in enumerate(x.to_dict(orient="records")):
        assert compiled.score(row).points == expected[i]


def test_compiled_path_equals_optbinning_with_special_values(tmp_path: Path) -> None:
    frame = read_table(DATA)
    rng = np.random.default_rng(2)
    frame.loc[rng.random(len(frame)) < 0.08, "duration_in_month"] = -1
    frame.loc[rng.random(len(frame)) < 0.05, "credit_amount"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.06, "housing"] = "withheld"
    frame.loc[rng.random(len(frame)) < 0.05, "job"] = None
    document = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    document["columns"]["duration_in_month"]["special_codes"] = [-1]
    document["columns"]["housing"]["special_codes"] = ["withheld"]
    path = tmp_path / "dictionary.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    trained = train(frame, load_dictionary(path), TrainingOptions(target="creditability",
                                                                  folds=2))
    duration = next(f for f in trained.artifact.features if f.name == "duration_in_month")
    assert duration.special_codes == (-1.0,)
    x = trained.features
    expected = trained.reference.score(x)
    compiled = CompiledScorecard(trained.artifact)
    batch = compiled.score_batch(columns_of(x))
    assert np.array_equal(batch.points, expected)
    specials = 0
    for i, row in enumerate(x.to_dict(orient="records")):
        r = compiled.score(row)
        assert r.points == expected[i]
        specials += row["duration_in_month"] == -1
    assert specials > 40


def test_reason_codes_name_features_in_words(german: TrainedModel) -> None:
    compiled = CompiledScorecard(german.artifact)
    worst = german.features.iloc[int(np.argmin(german.reference.score(german.features)))]
    r = compiled.score(worst.to_dict())
    assert len(r.reasons) == 4
    shortfalls = [x.shortfall for x in r.reasons]
    assert shortfalls == sorted(shortfalls, reverse=True) and shortfalls[-1] > 0
    others = [f.max_points - r.feature_points[f.name] for f in german.artifact.features
              if f.name not in {x.feature for x in r.reasons}]
    assert max(others) <= shortfalls[-1]
    descriptions = {f.description for f in german.artifact.features}
    assert all(x.text.split(": ")[0] in descriptions for x in r.reasons)


def test_model_card(german: TrainedModel) -> None:
    markdown = render_markdown(german.card)
    for heading in ("## Validation", "## Features", "## Refused as features",
                    "## Binning tables", "## Fairness"):
        assert heading in markdown
    assert "`foreign_worker` (nationality)" in markdown
    assert german.card["model"]["hash"] == german.artifact.content_hash
    assert set(german.card["binning"]) == set(german.artifact.feature_names)
    json.dumps(german.card)


def test_metrics_agree_with_scikit_learn(german: TrainedModel) -> None:
    from sklearn.metrics import roc_auc_score

    assert auc(german.oof_scores, german.bad) == pytest.approx(
        roc_auc_score(german.bad, -german.oof_scores), abs=1e-12)
    assert ks(np.array([1.0, 2, 3, 4]), np.array([1, 1, 0, 0])) == 1.0
    same = np.arange(100, dtype=np.float64)
    assert psi(same, same) == pytest.approx(0.0)
    assert psi(same, same + 50) > 0.25


def test_cli_train_is_deterministic_and_the_other_commands_work(
    german: TrainedModel, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    runner = CliRunner()
    result = runner.invoke(cli(), ["model", "train", str(DATA), "--target", "creditability",
                                   "--range", "350", "950", "--models", str(models)])
    assert result.exit_code == 0, result.output
    h = german.artifact.content_hash
    assert (models / f"{h}.json").is_file()  # same data, same seed: same hash
    assert (models / f"{h}.card.md").is_file() and (models / f"{h}.card.json").is_file()
    assert "refused" in result.output and "foreign_worker" in result.output

    listed = runner.invoke(cli(), ["model", "list", "--models", str(models)])
    assert h in listed.output
    shown = runner.invoke(cli(), ["model", "show", h[:12], "--models", str(models)])
    assert "## Fairness" in shown.output
    verified = runner.invoke(cli(), ["model", "verify", h, "--models", str(models)])
    assert verified.exit_code == 0 and f"ok {h}" in verified.output

    out = tmp_path / "scores.csv"
    scored = runner.invoke(cli(), ["model", "score", h, str(DATA), "--output", str(out),
                                   "--models", str(models)])
    assert scored.exit_code == 0, scored.output
    table = pd.read_csv(out)
    assert np.array_equal(table["score"].to_numpy(), german.reference.score(german.features))
    # No id column in DATA: each row is named by its number (--id COLUMN names another).
    assert list(table.columns) == ["row", "score", "reason_1", "reason_2", "reason_3",
                                   "reason_4"]
    assert table["row"].tolist() == list(range(1, len(table) + 1))

    path = models / f"{h}.json"
    path.write_bytes(path.read_bytes().replace(b'"points":', b'"points": ', 1))
    assert runner.invoke(cli(), ["model", "verify", h, "--models", str(models)]).exit_code == 0
    path.write_bytes(path.read_bytes().replace(b'"intercept":0.0', b'"intercept":5.0', 1))
    tampered = runner.invoke(cli(), ["model", "verify", h, "--models", str(models)])
    assert isinstance(tampered.exception, ArtifactIntegrityError)


def failing(args: list[str], tmp_path: Path) -> BaseException | None:
    result = CliRunner().invoke(cli(), [*args, "--models", str(tmp_path / "models")])
    assert result.exit_code != 0
    return result.exception


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["--range", "950", "350"], InputError, "range: 950 350 is invalid"),
        (["--range", "350", "350"], InputError, "range: 350 350 is invalid"),
        (["--feature", "age_in_years"], InputError, r"age_in_years: refused \(age\)"),
        (["--feature", "foreign_worker"], InputError, "foreign_worker: refused"),
        (["--feature", "personal_status_and_sex"], InputError, "sex or gender"),
        (["--pdo", "20"], InputError, "go together"),
        (["--tier", "2000"], InputError, "outside the range"),
        (["--bad", "ugly"], InputError, "'ugly' is not one of"),
        (["--group", "shoe_size"], InputError, "shoe_size"),
        (["--columns", "/nonexistent.json"], NotFoundError, "data dictionary not found"),
    ],
)
def test_cli_train_refusals(
    extra: list[str], error: type[Exception], message: str, tmp_path: Path
) -> None:
    exc = failing(["model", "train", str(DATA), "--target", "creditability", *extra], tmp_path)
    assert isinstance(exc, error)
    assert exc is not None and __import__("re").search(message, str(exc)), str(exc)


def test_cli_train_bad_data_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00\x01" * 100)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    other = tmp_path / "data.xlsx"
    other.write_text("x", encoding="utf-8")
    for path, words in ((garbage, "cannot read"), (empty, "cannot read"),
                        (other, "unsupported")):
        path.with_name(f"{path.stem}.columns.json").write_text(
            DICTIONARY.read_text(encoding="utf-8"), encoding="utf-8")
        exc = failing(["model", "train", str(path), "--target", "creditability"], tmp_path)
        assert isinstance(exc, InputError) and words in str(exc)
    exc = failing(["model", "train", str(tmp_path / "none.csv"), "--target", "y"], tmp_path)
    assert isinstance(exc, NotFoundError)


def test_target_problems(tmp_path: Path) -> None:
    frame = read_table(DATA)
    dictionary = load_dictionary(DICTIONARY)
    with pytest.raises(InputError, match="target column 'outcome' not in the data"):
        train(frame, dictionary, TrainingOptions(target="outcome"))
    three = frame.assign(creditability=["good", "bad", "unknown"] * 333 + ["good"])
    with pytest.raises(InputError, match="not binary: 3 distinct"):
        train(three, dictionary, TrainingOptions(target="creditability"))
    holes = frame.assign(creditability=frame["creditability"].where(frame.index > 3))
    with pytest.raises(InputError, match="4 missing"):
        train(holes, dictionary, TrainingOptions(target="creditability"))
    coded = frame.assign(creditability=frame["creditability"].map({"good": "A", "bad": "B"}))
    with pytest.raises(InputError, match="say which is the bad outcome"):
        train(coded, dictionary, TrainingOptions(target="creditability"))
    rare = frame.assign(creditability=["bad"] * 3 + ["good"] * 997)
    with pytest.raises(InputError, match="5-fold validation needs at least 5"):
        train(rare, dictionary, TrainingOptions(target="creditability"))
    with pytest.raises(InputError, match="target cannot be a fairness group"):
        train(frame, dictionary, TrainingOptions(target="creditability",
                                                 groups=("creditability",)))


def test_explicit_pdo_scaling_must_fit_the_range(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="outside the range"):
        train_file(DATA, load_dictionary(DICTIONARY),
                   TrainingOptions(target="creditability", folds=2,
                                   pdo=PdoScaling(pdo=200, odds=1, points=600)))


def test_unknown_model_hash_on_the_cli(tmp_path: Path) -> None:
    exc = failing(["model", "verify", "ab" * 32], tmp_path)
    assert isinstance(exc, NotFoundError)
    exc = failing(["model", "score", "zz", str(DATA)], tmp_path)
    assert isinstance(exc, InputError)


def test_scoring_a_file_without_the_features(german: TrainedModel, tmp_path: Path) -> None:
    models = tmp_path / "models"
    save_artifact(german.artifact, models)
    thin = tmp_path / "thin.csv"
    thin.write_text("a,b\n1,2\n", encoding="utf-8")
    exc = failing(["model", "score", german.artifact.content_hash, str(thin)], tmp_path)
    assert isinstance(exc, InputError) and "missing feature column" in str(exc)
