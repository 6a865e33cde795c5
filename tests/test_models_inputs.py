"""Every bad training input is refused with the column and row at fault, before anything is written.

Real CSV files in tmp_path, the real CLI (``trustledger model train``), the German Credit
data for the base; each refusal leaves the models folder empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_models_train import DATA, DICTIONARY, cli
from trustledger.errors import InputError, NotFoundError
from trustledger.models.features import load_dictionary, parse_dictionary
from trustledger.models.train import TrainingOptions, train


def german() -> pd.DataFrame:
    return pd.read_csv(DATA)


def write(tmp_path: Path, frame: pd.DataFrame, dictionary: dict[str, object] | None = None,
          name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    document = dictionary or json.loads(DICTIONARY.read_text(encoding="utf-8"))
    path.with_name(f"{path.stem}.columns.json").write_text(json.dumps(document),
                                                           encoding="utf-8")
    return path


def run_train(path: Path, models: Path, *extra: str) -> tuple[int, BaseException | None, str]:
    result = CliRunner().invoke(cli(), ["model", "train", str(path), "--target", "creditability",
                                        "--folds", "2", "--models", str(models), *extra])
    return result.exit_code, result.exception, result.output


def refused(tmp_path: Path, frame: pd.DataFrame, pattern: str,
            dictionary: dict[str, object] | None = None, *extra: str) -> None:
    models = tmp_path / "models"
    code, exc, output = run_train(write(tmp_path, frame, dictionary), models, *extra)
    assert code != 0, output
    assert isinstance(exc, InputError), repr(exc)
    assert re.search(pattern, str(exc)), str(exc)
    assert not list(models.glob("*.json")), "a refused training wrote an artifact"


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinite_number_is_refused_naming_column_and_row(
        tmp_path: Path, value: float) -> None:
    frame = german()
    frame["credit_amount"] = frame["credit_amount"].astype(float)
    frame.loc[41, "credit_amount"] = value
    refused(tmp_path, frame, r"column credit_amount, row 42: -?inf is not a finite number")


def test_a_text_in_a_numerical_column_is_refused_with_the_first_offending_value(
        tmp_path: Path) -> None:
    frame = german().astype({"duration_in_month": object})
    frame.loc[7, "duration_in_month"] = "about a year"
    frame.loc[9, "duration_in_month"] = "n/a!"
    refused(tmp_path, frame, r"column duration_in_month, row 8: 'about a year' is not a number "
            r"\(998 value\(s\) are numbers and 2 are texts\)")


def test_a_column_declared_numerical_may_not_hold_texts(tmp_path: Path) -> None:
    frame = german()
    document = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    document["columns"]["job"]["kind"] = "numerical"
    refused(tmp_path, frame, r"column job, row 1: 'skilled employee / official' is not a "
            r"number \(declared numerical\)", document)


def test_a_column_declared_categorical_reads_numbers_and_texts_as_texts() -> None:
    frame = german().astype({"duration_in_month": object})
    frame.loc[7, "duration_in_month"] = "about a year"
    document = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    document["columns"]["duration_in_month"]["kind"] = "categorical"
    trained = train(frame, parse_dictionary(document),
                    TrainingOptions(target="creditability", folds=2))
    duration = next(f for f in trained.artifact.features if f.name == "duration_in_month")
    assert duration.kind == "categorical"
    assert trained.features["duration_in_month"].iloc[7] == "about a year"


def test_a_bad_kind_is_refused_naming_the_key() -> None:
    with pytest.raises(InputError, match=r"columns\.a\.kind: 'text' is not numerical"):
        parse_dictionary({"columns": {"a": {"category": "assets", "description": "d",
                                            "kind": "text"}}})


def with_column(name: str, values: list[object]) -> tuple[pd.DataFrame, dict[str, object]]:
    frame = german()
    frame[name] = values
    document = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    document["columns"][name] = {"category": "contact_and_identity",
                                 "description": "Customer reference"}
    return frame, document


@pytest.mark.parametrize(("name", "values", "why"), [
    ("customer_ref", [f"C-{i * 7919 % 100003:06d}" for i in range(1000)],
     "1,000 distinct values in 1,000 rows"),
    ("account_serial", [float(5000 + i) for i in range(1000)],
     "distinct consecutive whole numbers"),
    ("customer_id", [f"K{i % 40}" for i in range(1000)], "its name says it identifies"),
])
def test_identifier_like_columns_are_refused_and_never_recorded(
        tmp_path: Path, name: str, values: list[object], why: str) -> None:
    frame, document = with_column(name, values)
    models = tmp_path / "models"
    code, exc, output = run_train(write(tmp_path, frame, document), models)
    assert code == 0, (output, exc)
    assert f"{name}: refused (identifier)" in " ".join(output.split()), output
    assert why in " ".join(output.split())
    files = list(models.glob("*.json")) + list(models.glob("*.md"))
    assert len(files) == 3
    sample = {str(v) for v in values[:50]}
    for path in files:
        text = path.read_text(encoding="utf-8")
        artifact_or_card = json.loads(text) if path.suffix == ".json" else None
        if artifact_or_card is not None and "features" in artifact_or_card:
            names = [f["name"] for f in artifact_or_card["features"]]
            assert name not in names
        leaked = [v for v in sample if re.search(rf"(?<![\w.-]){re.escape(v)}(?![\w.-])", text)]
        assert not leaked, (path.name, leaked[:3])


def test_asking_for_an_identifier_as_a_feature_is_an_error(tmp_path: Path) -> None:
    frame, document = with_column("customer_ref", [f"C{i:05d}x" for i in range(1000)])
    refused(tmp_path, frame, r"customer_ref: refused \(identifier\): identifier-like",
            document, "--feature", "customer_ref", "--feature", "duration_in_month")


def test_an_unwritable_models_folder_is_refused_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    code, exc, _ = run_train(DATA, blocker / "models")
    assert code != 0 and isinstance(exc, InputError)
    assert f"--models {blocker / 'models'}: cannot write there" in str(exc)
    assert "nothing was trained" in str(exc)


def audit_file(tmp_path: Path, frame: pd.DataFrame, name: str = "audit.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def with_ids() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = german().drop(columns=["personal_status_and_sex", "age_in_years", "foreign_worker"])
    frame.insert(0, "applicant", [f"a{i:04d}" for i in range(len(frame))])
    source = german()
    audit = pd.DataFrame({"applicant": frame["applicant"],
                          "sex": source["personal_status_and_sex"].str.split(" ").str[0]})
    return frame, audit


def dictionary_without_protected() -> dict[str, object]:
    document: dict[str, object] = json.loads(DICTIONARY.read_text(encoding="utf-8"))
    for c in ("personal_status_and_sex", "age_in_years", "foreign_worker"):
        del document["columns"][c]  # type: ignore[attr-defined]
    return document


@pytest.mark.parametrize(("change", "args", "error", "pattern"), [
    ("none", ["--audit", "{audit}"], InputError, "--audit needs --id COLUMN"),
    ("none", ["--audit", "{missing}", "--id", "applicant"], NotFoundError,
     "audit file not found"),
    ("duplicate", ["--audit", "{audit}", "--id", "applicant"], InputError,
     r"audit file .*: id 'a0003' is on rows 4 and 5"),
    ("no id column", ["--audit", "{audit}", "--id", "applicant"], InputError,
     "no id column 'applicant'"),
    ("overlap", ["--audit", "{audit}", "--id", "applicant"], InputError,
     r"column\(s\) housing are in both the training data and the audit file"),
    ("unmatched", ["--audit", "{audit}", "--id", "applicant"], InputError,
     "no training row's applicant is in the audit file"),
    ("none", ["--id", "nobody"], InputError, "no column 'nobody'|not in the data"),
])
def test_bad_audit_inputs_are_refused(tmp_path: Path, change: str, args: list[str],
                                      error: type[Exception], pattern: str) -> None:
    frame, audit = with_ids()
    if change == "duplicate":
        audit.loc[4, "applicant"] = "a0003"
    elif change == "no id column":
        audit = audit.rename(columns={"applicant": "who"})
    elif change == "overlap":
        audit["housing"] = "x"
    elif change == "unmatched":
        audit["applicant"] = "z" + audit["applicant"]
    path = write(tmp_path, frame, dictionary_without_protected())
    a = audit_file(tmp_path, audit)
    models = tmp_path / "models"
    filled = [x.format(audit=a, missing=tmp_path / "none.csv") for x in args]
    code, exc, output = run_train(path, models, *filled)
    assert code != 0, output
    assert isinstance(exc, error), repr(exc)
    assert re.search(pattern, str(exc)), str(exc)
    assert not list(models.glob("*.json"))


def test_a_blank_row_id_in_the_training_data_is_refused(tmp_path: Path) -> None:
    frame, audit = with_ids()
    frame.loc[10, "applicant"] = None
    path = write(tmp_path, frame, dictionary_without_protected())
    _code, exc, _ = run_train(path, tmp_path / "models", "--audit",
                             str(audit_file(tmp_path, audit)), "--id", "applicant")
    assert isinstance(exc, InputError) and "row 11: the row id applicant is blank" in str(exc)


def test_the_dictionary_may_describe_audit_columns() -> None:
    frame, audit = with_ids()
    document = dictionary_without_protected()
    document["columns"]["sex"] = {"category": "sex", "description": "Sex"}  # type: ignore[index]
    from trustledger.models.train import AuditData

    trained = train(frame, parse_dictionary(document),
                    TrainingOptions(target="creditability", folds=2, row_id="applicant"),
                    audit=AuditData(audit, "audit file audit.csv"))
    assert "applicant" not in trained.artifact.feature_names
    assert trained.audit.audited and trained.audit.attributes == ("sex",)
    assert {r.group for r in trained.fairness.rows} == {"female", "male"}


def test_load_dictionary_accepts_kind(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"columns": {"a": {"category": "assets", "description": "d",
                                                  "kind": "categorical"}}}), encoding="utf-8")
    assert load_dictionary(path)["a"].kind == "categorical"
