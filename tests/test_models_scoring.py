"""`trustledger model score`: files scored in Arrow batches, equal to the per-row path.

The German Credit model is trained once (module fixture); rows are resampled from the
data set with missing values, unseen categories and special codes, written as CSV and
Parquet, scored by :func:`score_file` (small batches, so rows cross batch boundaries)
and by the real CLI, and compared row by row with ``CompiledScorecard.score(mapping)``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from trustledger.cli import app
from trustledger.models import CompiledScorecard, save_artifact
from trustledger.models.batch_scoring import MODEL_METADATA_KEY, score_file
from trustledger.models.features import load_dictionary
from trustledger.models.train import TrainingOptions, train_file

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "german_credit.csv"


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompiledScorecard, Path]:
    trained = train_file(DATA, load_dictionary(DATA.with_name("german_credit.columns.json")),
                         TrainingOptions(target="creditability", folds=2))
    models = tmp_path_factory.mktemp("models")
    save_artifact(trained.artifact, models)
    return CompiledScorecard.load(models, trained.artifact.content_hash), models


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def messy_rows(scorecard: CompiledScorecard, n: int) -> pd.DataFrame:
    """German Credit rows resampled, 10 % of each feature missing, some unseen categories."""
    source = pd.read_csv(DATA)
    rng = np.random.default_rng(11)
    rows = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
    for f in scorecard.artifact.features:
        holes = rng.random(n) < 0.10
        if f.kind == "numerical":
            rows[f.name] = rows[f.name].astype(float).mask(holes)
        else:
            column = rows[f.name].astype(object).mask(holes, None)
            unseen = rng.random(n) < 0.02
            rows[f.name] = column.mask(unseen, "never seen, in training")
    rows.insert(0, "applicant", [f"a-{i:05d}" for i in range(n)])
    return rows


def single_row(scorecard: CompiledScorecard, row: pd.Series) -> tuple[float, list[str]]:
    values = {}
    for f in scorecard.artifact.features:
        v = row[f.name]
        values[f.name] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    result = scorecard.score(values)
    return result.points, [r.text for r in result.reasons]


def reasons_of(table: pd.DataFrame, i: int) -> list[str]:
    return [v for k in range(1, 5) if isinstance(v := table[f"reason_{k}"].iloc[i], str)
            and v != ""]


@pytest.mark.parametrize("source", ["csv", "parquet"])
@pytest.mark.parametrize("target", ["csv", "parquet"])
def test_file_scores_equal_the_single_row_path(
    german: tuple[CompiledScorecard, Path], tmp_path: Path, source: str, target: str
) -> None:
    scorecard, _ = german
    rows = messy_rows(scorecard, 2_500)
    data = tmp_path / f"rows.{source}"
    if source == "csv":
        rows.to_csv(data, index=False)
    else:
        rows.to_parquet(data, index=False)
    out = tmp_path / f"scores.{target}"
    scored = score_file(scorecard, data, out, id_column="applicant", batch_rows=333)
    assert scored.rows == len(rows) and scored.id_column == "applicant"
    table = pd.read_csv(out, keep_default_na=False) if target == "csv" else pd.read_parquet(out)
    assert list(table.columns) == ["applicant", "score", *(f"reason_{k}" for k in range(1, 5))]
    assert table["applicant"].tolist() == rows["applicant"].tolist()
    with_reasons = 0
    for i in range(len(rows)):
        points, reasons = single_row(scorecard, rows.iloc[i])
        assert table["score"].iloc[i] == points, i
        assert reasons_of(table, i) == reasons, i
        with_reasons += len(reasons) == 4
    assert with_reasons > 100  # the comparison covers rows with the full four reasons
    if target == "parquet":
        assert pq.read_schema(out).metadata[MODEL_METADATA_KEY] == scorecard.hash.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([data.name, out.name])


def test_cli_writes_csv_quoted_only_where_needed(
    german: tuple[CompiledScorecard, Path], tmp_path: Path
) -> None:
    scorecard, models = german
    rows = messy_rows(scorecard, 40)
    rows["applicant"] = [f'x,"{i}"' if i == 3 else f"a{i}" for i in range(len(rows))]
    data = tmp_path / "rows.csv"
    rows.to_csv(data, index=False)
    result = run("model", "score", scorecard.hash, str(data), "--id", "applicant",
                 "--models", str(models))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "applicant,score,reason_1,reason_2,reason_3,reason_4"
    assert lines[1].startswith("a0,")
    assert lines[4].startswith('"x,""3""",')
    parsed = list(csv.reader(io.StringIO(result.stdout)))
    assert [r[0] for r in parsed[1:]] == rows["applicant"].tolist()
    for i, r in enumerate(parsed[1:]):
        points, reasons = single_row(scorecard, rows.iloc[i])
        assert float(r[1]) == points
        assert [t for t in r[2:] if t] == reasons
    # Without --id and without an id column, rows are numbered from 1.
    rows.drop(columns="applicant").to_csv(data, index=False)
    numbered = run("model", "score", scorecard.hash[:10], str(data), "--models", str(models))
    assert [line.split(",")[0] for line in numbered.stdout.splitlines()] == [
        "row", *(str(i) for i in range(1, 41))]


def test_a_parquet_id_keeps_its_type(german: tuple[CompiledScorecard, Path],
                                     tmp_path: Path) -> None:
    scorecard, models = german
    rows = messy_rows(scorecard, 30).drop(columns="applicant")
    rows.insert(0, "id", np.arange(1000, 1030, dtype=np.int64))
    data = tmp_path / "rows.parquet"
    rows.to_parquet(data, index=False)
    out = tmp_path / "scores.parquet"
    result = run("model", "score", scorecard.hash, str(data), "--output", str(out),
                 "--models", str(models))
    assert result.exit_code == 0, result.output
    assert "scored 30 rows" in result.stdout
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == list(range(1000, 1030))


def test_parquet_column_types_a_model_reads(tmp_path: Path) -> None:
    """Integers, decimals, dictionary-encoded and textual numbers; integer-coded categories."""
    from decimal import Decimal

    from tests.test_models_compiled import AMOUNT, LATE
    from trustledger.models import FeatureBins, ScorecardArtifact

    grade = FeatureBins(
        name="grade", description="Grade", category="credit_history", kind="categorical",
        splits=(), categories=(("1",), ("2", "3")), labels=("1", "2 or 3"),
        points=(50.0, 20.0), special_codes=(), special_points=10.0, missing_points=15.0)
    amount = FeatureBins(**{**AMOUNT.__dict__, "points": (100.0, 40.0)})
    card = CompiledScorecard(ScorecardArtifact(
        features=(LATE, amount, grade), intercept=0.0, score_range=(0, 300), scaling={},
        target={}))
    late = [0, 1, None, 5, -1, 3]
    amounts = ["5", "2000.5", None, "1e3", "7", "1000.5"]
    grades = [1, 2, 3, None, 4, 1]
    expected = [card.score({"late_payments_12m": lp, "amount": None if a is None else float(a),
                            "grade": None if g is None else str(g)})
                for lp, a, g in zip(late, amounts, grades, strict=True)]
    variants = {
        "ints and texts": {"late_payments_12m": pa.array(late, pa.int16()),
                           "amount": pa.array(amounts, pa.large_string()),
                           "grade": pa.array(grades, pa.int64())},
        "decimals and dictionaries": {
            "late_payments_12m": pa.array([None if v is None else Decimal(v) for v in late],
                                          pa.decimal128(5, 1)),
            "amount": pa.array([None if a is None else float(a) for a in amounts]
                               ).dictionary_encode(),
            "grade": pa.array([None if g is None else str(g) for g in grades]
                              ).dictionary_encode()},
    }
    for name, columns in variants.items():
        data = tmp_path / "rows.parquet"
        pq.write_table(pa.table({"id": pa.array([f"r{i}" for i in range(6)],
                                                pa.large_string()), **columns}), data)
        out = tmp_path / "scores.parquet"
        score_file(card, data, out)
        table = pq.read_table(out).to_pylist()
        assert [r["id"] for r in table] == [f"r{i}" for i in range(6)], name
        for row, single in zip(table, expected, strict=True):
            assert row["score"] == single.points, name
            assert [row[f"reason_{k}"] for k in range(1, 5) if row[f"reason_{k}"]] == [
                r.text for r in single.reasons], name
