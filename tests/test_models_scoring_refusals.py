"""`trustledger model score` refuses bad input: a clear error naming option, column, row.

Every refusal leaves the folder as it was: no output file, no temporary file, an
existing output unchanged. The model is the hand-made three-feature artifact of
``test_models_compiled`` (``late_payments_12m`` and ``amount`` numerical, ``housing``
categorical).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.test_models_compiled import artifact
from trustledger.cli import app
from trustledger.errors import InputError, NotFoundError
from trustledger.models import CompiledScorecard, save_artifact
from trustledger.models.batch_scoring import score_file
from trustledger.models.compiled import NOT_A_NUMBER

ROOT = Path(__file__).resolve().parent.parent
HEADER = "id,late_payments_12m,housing,amount\n"
GOOD = "A,1,own,10\nB,2,rent,20\n"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    save_artifact(artifact(), folder)
    return folder


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(tmp_path: Path, models: Path, data: Path, *extra: str,
            error: type[Exception] = InputError) -> str:
    """Run `model score` that must fail; nothing in tmp_path may change. Its message."""
    before = listing(tmp_path)
    result = CliRunner().invoke(app, ["model", "score", artifact().content_hash, str(data),
                                      *extra, "--models", str(models)])
    assert result.exit_code != 0
    assert isinstance(result.exception, error), result.exception
    assert listing(tmp_path) == before
    return str(result.exception)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("cell", "shown"), [
    ("inf", "inf"), ("-inf", "-inf"), ("Infinity", "inf"), ("1e999", "inf"),
])
@pytest.mark.parametrize("target", ["csv", "parquet"])
def test_an_infinite_value_is_refused_naming_column_row_and_id(
    tmp_path: Path, models: Path, cell: str, shown: str, target: str
) -> None:
    data = write(tmp_path / "rows.csv", HEADER + GOOD + f"C,2,own,{cell}\n")
    message = refused(tmp_path, models, data, "--output", str(tmp_path / f"out.{target}"))
    assert message.startswith(f"{data}: column amount, row 3 (id C): {shown} is not a "
                              "finite number"), message


def test_an_infinite_value_in_a_later_batch_names_its_row(
    tmp_path: Path, models: Path
) -> None:
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table({
        "late_payments_12m": [1.0, None, 2.0, 3.0, float("-inf"), 0.0],
        "housing": ["own", None, "rent", "own", "own", "free"],
        "amount": [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0],
    }), data)
    out = tmp_path / "scores.parquet"
    card = CompiledScorecard(artifact())
    with pytest.raises(InputError, match=re.escape(
            f"{data}: column late_payments_12m, row 5: -inf is not a finite number")):
        score_file(card, data, out, batch_rows=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "rows.parquet"]


def test_text_in_a_numerical_csv_column_names_the_first_value(
    tmp_path: Path, models: Path
) -> None:
    rows = "".join(f"r{i},1,own,{i}\n" for i in range(500))
    data = write(tmp_path / "rows.csv",
                 HEADER + rows + "X,1,own,12 EUR\nY,one,own,5\nZ,1,own,n/a!\n")
    message = refused(tmp_path, models, data, "--output", str(tmp_path / "out.csv"))
    assert message.startswith(f"{data}: column amount, row 501 (id X): '12 EUR' is not a "
                              "number"), message


def test_text_in_a_numerical_parquet_column_names_the_first_value(
    tmp_path: Path, models: Path
) -> None:
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"late_payments_12m": ["1", None, "2.5", "three"],
                             "housing": ["own"] * 4, "amount": [1.0] * 4}), data)
    message = refused(tmp_path, models, data, "--output", str(tmp_path / "out.parquet"))
    assert message == (f"{data}: column late_payments_12m, row 4: 'three' is not a number "
                       "(the feature is numerical; None or NaN is missing)")


@pytest.mark.parametrize(("column", "values", "words"), [
    ("housing", [1.5, 2.5], "column housing: texts are expected (a categorical feature), "
                            "the column holds double"),
    ("amount", [True, False], "column amount: numbers are expected (a numerical feature), "
                              "the column holds bool"),
])
def test_a_parquet_column_of_the_wrong_type_is_refused(
    tmp_path: Path, models: Path, column: str, values: list[object], words: str
) -> None:
    columns: dict[str, list[object]] = {"late_payments_12m": [1.0, 2.0],
                                        "housing": ["own", "rent"], "amount": [1.0, 2.0]}
    columns[column] = values
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table(columns), data)
    assert refused(tmp_path, models, data) == f"{data}: {words}"


def test_missing_columns_and_the_id_option(tmp_path: Path, models: Path) -> None:
    data = write(tmp_path / "rows.csv", HEADER + GOOD)
    message = refused(tmp_path, models, data, "--id", "applicant")
    assert message == (f"--id: {data} has no column 'applicant' (columns: id, "
                       "late_payments_12m, housing, amount)")
    thin = write(tmp_path / "thin.csv", "id,housing\nA,own\n")
    assert refused(tmp_path, models, thin) == (
        f"{thin}: missing feature column(s): late_payments_12m, amount")
    twice = write(tmp_path / "twice.csv", HEADER.replace("id,", "amount,") + GOOD)
    assert refused(tmp_path, models, twice) == f"{twice}: duplicate column(s) amount"


def test_the_output_is_checked_before_any_row_is_read(tmp_path: Path, models: Path) -> None:
    data = write(tmp_path / "rows.csv", HEADER + GOOD)
    missing = tmp_path / "no" / "such" / "folder" / "scores.csv"
    assert refused(tmp_path, models, data, "--output", str(missing)) == (
        f"--output {missing}: folder {missing.parent} does not exist")
    under_a_file = data / "scores.csv"
    assert refused(tmp_path, models, data, "--output", str(under_a_file)) == (
        f"--output {under_a_file}: {data} is not a folder")
    folder = tmp_path / "a folder.csv"
    folder.mkdir()
    assert refused(tmp_path, models, data, "--output", str(folder)) == (
        f"--output {folder}: is a folder; give a file name")
    assert refused(tmp_path, models, data, "--output", str(tmp_path / "scores.xlsx")) == (
        f"--output {tmp_path / 'scores.xlsx'}: unknown file type '.xlsx': give a .csv or "
        ".parquet file")
    assert "unknown file type '(none)'" in refused(
        tmp_path, models, data, "--output", str(tmp_path / "scores"))
    assert refused(tmp_path, models, data, "--output", str(data)) == (
        f"--output {data}: is the data file itself")
    # Checked even before the model: a wrong --output is named first.
    result = CliRunner().invoke(app, ["model", "score", "0" * 64, str(data), "--output",
                                      str(missing), "--models", str(models)])
    assert "--output" in str(result.exception)


def test_an_unwritable_output_folder_is_refused(tmp_path: Path, models: Path) -> None:
    data = write(tmp_path / "rows.csv", HEADER + GOOD)
    if os.geteuid() == 0:
        # root writes anywhere a mode bit forbids; sysfs refuses new files even to root.
        folder = Path("/sys")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
    out = folder / "scores.csv"
    try:
        message = refused(tmp_path, models, data, "--output", str(out))
    finally:
        if folder != Path("/sys"):
            folder.chmod(0o700)
    assert message == f"--output {out}: cannot write in {folder}: Permission denied"
    assert not out.exists()


def test_a_failed_run_keeps_the_existing_output(tmp_path: Path, models: Path) -> None:
    good = write(tmp_path / "good.csv", HEADER + GOOD)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["model", "score", artifact().content_hash, str(good),
                                      "--output", str(out), "--models", str(models)])
    assert result.exit_code == 0, result.output
    first = out.read_bytes()
    assert first.startswith(b"id,score,reason_1")
    bad = write(tmp_path / "bad.csv", HEADER + GOOD + "C,1,own,-inf\n")
    refused(tmp_path, models, bad, "--output", str(out))
    assert out.read_bytes() == first


def test_data_files_that_cannot_be_read(tmp_path: Path, models: Path) -> None:
    assert refused(tmp_path, models, tmp_path / "none.csv", error=NotFoundError) == (
        f"data file not found: {tmp_path / 'none.csv'}")
    other = write(tmp_path / "rows.json", "{}")
    assert refused(tmp_path, models, other) == (
        f"data file {other}: unknown file type '.json': give a .csv or .parquet file")
    garbage = tmp_path / "rows.parquet"
    garbage.write_bytes(b"PAR1 not really")
    assert refused(tmp_path, models, garbage).startswith(f"{garbage}: cannot read Parquet")
    empty = write(tmp_path / "empty.csv", "")
    assert refused(tmp_path, models, empty).startswith(f"{empty}: cannot read CSV")
    ragged = write(tmp_path / "ragged.csv", HEADER + GOOD + "C,1\n")
    assert refused(tmp_path, models, ragged).startswith(f"{ragged}: cannot read CSV")


def test_the_console_script_exits_2_with_the_message_and_no_traceback(
    tmp_path: Path, models: Path
) -> None:
    data = write(tmp_path / "rows.csv", HEADER + GOOD + "C,inf,own,1\n")
    out = tmp_path / "scores.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", "from trustledger.cli import main; main()", "model", "score",
         artifact().content_hash, str(data), "--output", str(out), "--models", str(models)],
        capture_output=True, text=True, env=env, check=False, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "column late_payments_12m, row 3 (id C): inf is not a finite number" in " ".join(
        done.stderr.split())
    assert not out.exists() and done.stdout == ""


def test_every_refusal_is_documented() -> None:
    doc = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    section = doc[doc.index("\n## Scoring files\n"):]
    for words in (NOT_A_NUMBER, "is not a finite number (inf and -inf are refused;",
                  "texts are expected (a categorical feature), the column holds",
                  "missing feature column(s)", "duplicate column(s)", "has no column",
                  "does not exist", "is not a folder", "is a folder; give a file name",
                  "cannot write in", "unknown file type", "is the data file itself",
                  "data file not found", "cannot read Parquet", "cannot read CSV",
                  "`inf`, `-inf`, `Infinity`", "exits with code 2"):
        assert words in section, words
