import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from trustledger.errors import InputError, IntegrityError, NotFoundError
from trustledger.models import (
    ArtifactIntegrityError,
    CompiledScorecard,
    FeatureBins,
    ScorecardArtifact,
    load_artifact,
    save_artifact,
)
from trustledger.models.artifact import artifact_from_document, list_artifacts, resolve_hash
from trustledger.models.compiled import FeatureValue, FeatureValueError

LATE = FeatureBins(
    name="late_payments_12m", description="Late payments in the last 12 months",
    category="behaviour_record", kind="numerical", splits=(1.0, 3.0),
    categories=(), labels=("less than 1", "1 to less than 3", "3 or more"),
    points=(120.0, 60.0, 10.0), special_codes=(-1.0,), special_points=50.0,
    missing_points=40.0,
)
HOUSING = FeatureBins(
    name="housing", description="Housing", category="housing", kind="categorical",
    splits=(), categories=(("own",), ("rent", "free")), labels=("own", "rent or free"),
    points=(90.0, 70.0), special_codes=("withheld",), special_points=75.0, missing_points=80.0,
)
AMOUNT = FeatureBins(
    name="amount", description="Credit amount", category="loan_terms", kind="numerical",
    splits=(1000.5,), categories=(), labels=("less than 1000.5", "1000.5 or more"),
    points=(100.0, 100.0), special_codes=(), special_points=100.0, missing_points=100.0,
)


def artifact() -> ScorecardArtifact:
    return ScorecardArtifact(
        features=(LATE, HOUSING, AMOUNT), intercept=0.0, score_range=(350, 950),
        scaling={"method": "range", "min": 350, "max": 950},
        target={"column": "bad", "bad": "1", "good": "0"}, training={"note": "hand-made"},
    )


def test_single_row_points_bins_and_reasons() -> None:
    card = CompiledScorecard(artifact())
    r = card.score({"late_payments_12m": 2, "housing": "rent", "amount": 5000.0, "extra": 1})
    assert r.points == 60 + 70 + 100
    assert r.feature_points == {"late_payments_12m": 60.0, "housing": 70.0, "amount": 100.0}
    assert [x.feature for x in r.reasons] == ["late_payments_12m", "housing"]
    assert r.reasons[0].shortfall == 60
    assert r.reasons[0].text == "Late payments in the last 12 months: 1 to less than 3"
    assert r.model == artifact().content_hash


@pytest.mark.parametrize(
    ("late", "housing", "late_pts", "housing_pts"),
    [
        (0.999, "own", 120, 90), (1.0, "own", 60, 90), (3.0, "own", 10, 90),
        (-1, "own", 50, 90), (None, None, 40, 80), (math.nan, math.nan, 40, 80),
        (0, "withheld", 120, 75), (0, "castle", 120, 80),
    ],
)
def test_edges_specials_missing_and_unknown_categories(
    late: float | None, housing: str | float | None, late_pts: float, housing_pts: float
) -> None:
    card = CompiledScorecard(artifact())
    row = {"late_payments_12m": late, "housing": housing, "amount": 1.0}
    r = card.score(row)
    assert (r.feature_points["late_payments_12m"], r.feature_points["housing"]) == (
        late_pts, housing_pts)
    batch = card.score_batch({k: [v] for k, v in row.items()})
    assert batch.points[0] == r.points
    assert batch.reasons(0) == r.reasons


def test_batch_equals_single_rows_on_many_rows() -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    late = rng.integers(-1, 6, n).astype(float)
    late[rng.random(n) < 0.1] = np.nan
    housing = rng.choice(np.array(["own", "rent", "free", "withheld", "castle", None],
                                  dtype=object), n)
    amount = rng.uniform(0, 2000, n)
    card = CompiledScorecard(artifact())
    batch = card.score_batch({"late_payments_12m": late, "housing": housing, "amount": amount})
    for i in range(n):
        v = None if np.isnan(late[i]) else float(late[i])
        single = card.score({"late_payments_12m": v, "housing": housing[i],
                             "amount": float(amount[i])})
        assert batch.points[i] == single.points
        assert card.points({"late_payments_12m": v, "housing": housing[i],
                            "amount": float(amount[i])}) == single.points
        assert batch.reasons(i) == single.reasons
    arrow = card.score_batch({"late_payments_12m": pa.array(late, from_pandas=True),
                              "housing": pa.array(housing).dictionary_encode(),
                              "amount": pa.chunked_array([amount[:7], amount[7:]])},
                             explain=False)
    assert np.array_equal(arrow.points, batch.points)
    assert arrow.feature_points is None
    with pytest.raises(InputError, match="without explain"):
        arrow.reasons(0)


@pytest.mark.parametrize("infinite", [math.inf, -math.inf, float("inf"), np.float64("-inf")])
def test_infinite_values_are_refused_naming_feature_and_row(infinite: float) -> None:
    card = CompiledScorecard(artifact())
    row: dict[str, FeatureValue] = {"late_payments_12m": 2.0, "housing": "own",
                                    "amount": infinite}
    for method in (card.score, card.points):
        with pytest.raises(FeatureValueError, match=r"^amount: -?inf is not a finite number"):
            method(row)
    amounts = np.array([1.0, np.nan, 5.0, infinite, infinite])
    columns = {"late_payments_12m": [0, 1, 2, 3, 4], "housing": ["own"] * 5, "amount": amounts}
    for explain in (True, False):
        with pytest.raises(FeatureValueError, match=r"^amount\[3\]: -?inf is not a finite") as info:
            card.score_batch(columns, explain=explain)
        assert (info.value.feature, info.value.row) == ("amount", 3)
    with pytest.raises(FeatureValueError, match=r"amount\[3\]"):
        card.score_batch({**columns, "amount": pa.array(amounts)})


def test_batch_reasons_follow_the_single_row_order_on_ties() -> None:
    """Equal shortfalls in several features: the earlier feature first, in both paths."""
    same = [FeatureBins(
        name=f"f{i}", description=f"Feature {i}", category="loan_terms", kind="numerical",
        splits=(1.0, 2.0), categories=(), labels=("low", "middle", "high"),
        points=(30.0, 20.0 + (i % 2), 10.0), special_codes=(9.0,), special_points=20.0,
        missing_points=10.0 + (i % 3)) for i in range(7)]
    card = CompiledScorecard(ScorecardArtifact(
        features=tuple(same), intercept=1.5, score_range=(0, 300), scaling={}, target={}))
    rng = np.random.default_rng(7)
    n = 3_000
    columns = {f"f{i}": rng.choice(np.array([0.0, 1.5, 2.5, 9.0, np.nan]), n) for i in range(7)}
    batch = card.score_batch(columns)
    slim = card.score_batch(columns, per_feature=False)
    assert slim.feature_points is None and slim.reason_codes is not None
    assert batch.reason_codes is not None
    assert np.array_equal(slim.reason_codes, batch.reason_codes)
    for i in range(n):
        single = card.score({k: None if np.isnan(v[i]) else float(v[i])
                             for k, v in columns.items()})
        assert batch.points[i] == single.points
        assert batch.reasons(i) == single.reasons == slim.reasons(i)
        assert batch.reason_features is not None
        names = [card.features[j] for j in batch.reason_features[i] if j >= 0]
        assert names == [r.feature for r in single.reasons]


def test_no_reason_for_a_feature_at_its_maximum() -> None:
    r = CompiledScorecard(artifact()).score(
        {"late_payments_12m": 0, "housing": "own", "amount": 1.0})
    assert r.reasons == ()


def test_bad_inputs_name_the_feature() -> None:
    card = CompiledScorecard(artifact())
    with pytest.raises(InputError, match="housing: missing feature"):
        card.score({"late_payments_12m": 1, "amount": 1})
    with pytest.raises(InputError, match="late_payments_12m: a number"):
        card.score({"late_payments_12m": "two", "housing": "own", "amount": 1})
    with pytest.raises(InputError, match="late_payments_12m: a number"):
        card.score({"late_payments_12m": True, "housing": "own", "amount": 1})
    with pytest.raises(InputError, match="housing: a text"):
        card.score({"late_payments_12m": 1, "housing": 3, "amount": 1})
    with pytest.raises(InputError, match="missing feature column"):
        card.score_batch({"late_payments_12m": [1]})
    with pytest.raises(FeatureValueError, match=r"late_payments_12m\[2\]: 'x' is not a number"):
        card.score_batch({"late_payments_12m": [1, "2", "x"], "housing": ["own"] * 3,
                          "amount": [1] * 3})
    with pytest.raises(InputError, match="housing: texts"):
        card.score_batch({"late_payments_12m": [1], "housing": [1], "amount": [1]})
    with pytest.raises(InputError, match="amount: 2 rows, expected 1"):
        card.score_batch({"late_payments_12m": [1], "housing": ["own"], "amount": [1, 2]})


def test_artifact_round_trip_and_stable_hash(tmp_path: Path) -> None:
    a = artifact()
    path = save_artifact(a, tmp_path)
    assert path.name == f"{a.content_hash}.json"
    assert save_artifact(artifact(), tmp_path) == path
    loaded = load_artifact(tmp_path, a.content_hash)
    assert loaded == a
    assert list_artifacts(tmp_path) == [a.content_hash]
    assert resolve_hash(tmp_path, a.content_hash[:10].upper()) == a.content_hash
    assert CompiledScorecard.load(tmp_path, a.content_hash).hash == a.content_hash
    assert b"pickle" not in path.read_bytes()


def test_tampered_artifacts_are_refused(tmp_path: Path) -> None:
    a = artifact()
    path = save_artifact(a, tmp_path)
    document = json.loads(path.read_bytes())
    document["features"][0]["bins"][2]["points"] = 200.0
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ArtifactIntegrityError, match="content hash is") as info:
        load_artifact(tmp_path, a.content_hash)
    assert isinstance(info.value, IntegrityError)
    path.write_bytes(b"\xff garbage")
    with pytest.raises(ArtifactIntegrityError, match="not valid JSON"):
        load_artifact(tmp_path, a.content_hash)


def test_unknown_and_malformed_hashes(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_artifact(tmp_path, "0" * 64)
    with pytest.raises(InputError, match="64 hexadecimal"):
        load_artifact(tmp_path, "not-a-hash")
    with pytest.raises(NotFoundError):
        resolve_hash(tmp_path, "abcdef12")
    with pytest.raises(InputError, match="8 to 64"):
        resolve_hash(tmp_path, "abc")
    with pytest.raises(NotFoundError):
        resolve_hash(tmp_path, "a" * 64)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("format",), "other/1", "artifact.format"),
        (("features", 0, "kind"), "ordinal", r"features\[0\]\.kind"),
        (("features", 0, "splits"), [3.0, 1.0], r"features\[0\]\.splits"),
        (("features", 0, "bins", 0, "points"), "many", r"features\[0\]\.bins\[0\]\.points"),
        (("features", 1, "bins", 1, "categories"), ["own"], "more than one bin"),
        (("range",), [350], "range"),
        (("features", 0, "special_codes"), ["x"], r"special_codes\[0\]"),
    ],
)
def test_structurally_invalid_documents_name_the_key(
    path: tuple[object, ...], value: object, message: str
) -> None:
    document = artifact().to_document()
    target: object = document
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    with pytest.raises(InputError, match=message):
        artifact_from_document(document)
