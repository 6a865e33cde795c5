"""Training a statistical scorecard with optbinning, validated and checked for fairness.

``train`` takes a table with a binary outcome (did the person repay?), keeps only
the columns a data dictionary declares with an allowed category (protected
attributes are refused, see :mod:`trustledger.models.features`), and fits
optbinning's ``Scorecard``: a ``BinningProcess`` (optimal bins, monotonic trend for
numerical features) then a logistic regression, scaled to the score range.

Validation, all deterministic for a given seed:

* stratified k-fold out-of-fold scores → AUC, Gini, KS;
* a stratified holdout → PSI between training and holdout score distributions;
* a fairness report on the out-of-fold scores, grouped by the protected columns.

The final model is fitted on all rows and turned into a JSON artifact (never a
pickle) that :class:`~trustledger.models.compiled.CompiledScorecard` scores.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustledger.errors import InputError, NotFoundError
from trustledger.models.artifact import FeatureBins, Json, ScorecardArtifact
from trustledger.models.fairness import FairnessReport, fairness_report
from trustledger.models.features import ColumnSpec, FeatureSelection, select_features
from trustledger.models.metrics import auc, gini, ks, psi

DEFAULT_TIERS: tuple[float, ...] = (550.0, 600.0, 650.0, 700.0)
"""Tier thresholds of the fairness report when none are given (Sesame-style bands)."""

DEFAULT_AGE_BANDS: tuple[float, ...] = (25.0, 35.0, 50.0, 65.0)
"""Lower edges of the age bands used to group a numerical age column for fairness."""

MONOTONIC_TREND = "auto_asc_desc"
"""Numerical features' bins are monotonic: points only rise, or only fall, with the value."""

_BAD_WORDS = {frozenset({"0", "1"}): "1", frozenset({"good", "bad"}): "bad"}

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PdoScaling:
    """Explicit points-to-double-odds scaling.

    ``points`` at good:bad ``odds``, and ``pdo`` more points each time the odds double.
    """

    pdo: float
    odds: float
    points: float


@dataclass(frozen=True)
class TrainingOptions:
    """What to train: target, range, features, fairness groups, validation settings.

    ``features=None`` takes every allowed column; ``groups=None`` groups the fairness
    report by every protected column found in the data. By default the scale is
    fitted to the range (lowest possible score = range minimum, highest = maximum),
    which is points-to-double-odds scaling with the PDO and anchor chosen to fill
    the range; the implied PDO is reported. ``pdo`` sets them explicitly instead.
    """

    target: str
    bad: str | None = None
    score_range: tuple[int, int] = (350, 950)
    features: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    tiers: tuple[float, ...] = DEFAULT_TIERS
    folds: int = 5
    seed: int = 0
    holdout: float = 0.3
    pdo: PdoScaling | None = None

    def __post_init__(self) -> None:
        low, high = self.score_range
        if not (isinstance(low, int) and isinstance(high, int)) or low < 0 or low >= high:
            raise InputError(f"range: {low} {high} is invalid: need two integers "
                             "0 <= min < max")
        if self.folds < 2:
            raise InputError(f"folds: {self.folds} is invalid: at least 2 are needed")
        if not 0.0 < self.holdout < 1.0:
            raise InputError(f"holdout: {self.holdout} is invalid: a fraction in (0, 1)")
        if not self.tiers:
            raise InputError("tiers: at least one tier threshold is needed")
        outside = [t for t in self.tiers if not low < t <= high]
        if outside:
            raise InputError(f"tiers: {', '.join(f'{t:g}' for t in outside)} outside the "
                             f"range {low}-{high}")
        if self.pdo is not None and (self.pdo.pdo <= 0 or self.pdo.odds <= 0):
            raise InputError("pdo: points-to-double-odds and odds must be positive")


@dataclass(frozen=True)
class DataSource:
    """Where the training data came from: a name and the SHA-256 of its bytes."""

    name: str
    sha256: str


@dataclass
class TrainedModel:
    """The outcome of training: the artifact, the model card, and what was measured."""

    artifact: ScorecardArtifact
    card: dict[str, Any]
    selection: FeatureSelection
    fairness: FairnessReport
    oof_scores: Floats
    bad: Ints
    features: pd.DataFrame
    """The prepared feature columns of every row (as the model saw them)."""
    reference: Any = field(repr=False)
    """optbinning's fitted ``Scorecard`` (for comparison; never saved)."""


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; every failure is an :class:`InputError` naming it."""
    if not path.is_file():
        raise NotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt"):
            frame = pd.read_csv(path)
        else:
            raise InputError(f"{path}: unsupported data file type {suffix!r} (CSV or Parquet)")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read data: {exc}") from exc
    if frame.empty or frame.shape[1] < 2:
        raise InputError(f"{path}: no data rows, or fewer than two columns")
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise InputError(f"{path}: duplicate column(s) {', '.join(duplicated)}")
    return frame


def binary_target(frame: pd.DataFrame, target: str, bad: str | None) -> tuple[Ints, str, str]:
    """The outcome as 1 (bad) / 0 (good), with the bad and good labels as texts."""
    if target not in frame.columns:
        raise InputError(f"target column {target!r} not in the data "
                         f"(columns: {', '.join(map(str, frame.columns))})")
    column = frame[target]
    if column.isna().any():
        raise InputError(f"target {target}: {int(column.isna().sum())} missing value(s)")
    labels = column.map(_label)
    values = sorted(set(labels))
    if len(values) != 2:
        shown = ", ".join(values[:5]) + (" …" if len(values) > 5 else "")
        raise InputError(f"target {target}: not binary: {len(values)} distinct value(s) "
                         f"({shown})")
    if bad is None:
        bad = _BAD_WORDS.get(frozenset(v.lower() for v in values))
        if bad is None:
            raise InputError(f"target {target}: values {values[0]!r} and {values[1]!r}: "
                             "say which is the bad outcome (--bad)")
        bad = next(v for v in values if v.lower() == bad)
    if bad not in values:
        raise InputError(f"target {target}: bad outcome {bad!r} is not one of {values}")
    good = next(v for v in values if v != bad)
    y: Ints = (labels == bad).to_numpy(dtype=np.int64)
    return y, bad, good


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _prepare_features(frame: pd.DataFrame, specs: Sequence[ColumnSpec]) -> pd.DataFrame:
    out: dict[str, pd.Series] = {}
    for spec in specs:
        column = frame[spec.name]
        if column.dtype.kind in "iuf":
            if any(isinstance(s, str) for s in spec.special_codes):
                raise InputError(f"columns.{spec.name}.special_codes: numbers expected")
            out[spec.name] = column.astype(np.float64)
        else:
            # Texts, with missing values kept missing.
            out[spec.name] = column.map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    return pd.DataFrame(out, index=frame.index)


def group_labels(frame: pd.DataFrame, column: str, spec: ColumnSpec | None) -> list[str]:
    """One fairness-group label per row: mapped by ``groups``, banded by ``bands``, or raw."""
    if column not in frame.columns:
        raise InputError(f"fairness group column {column!r} not in the data")
    values = frame[column]
    if spec is not None and spec.groups:
        return ["not reported" if pd.isna(v) else spec.groups.get(str(v), str(v))
                for v in values]
    if values.dtype.kind in "iuf":
        bands = spec.bands if spec is not None and spec.bands else ()
        if not bands and ((spec is not None and spec.category == "age")
                          or "age" in column.lower().split("_")):
            bands = DEFAULT_AGE_BANDS
        if bands:
            return [_band(float(v), bands) for v in values]
        if values.nunique() > 20:
            raise InputError(f"fairness group column {column!r} is numerical with many values: "
                             "declare its bands in the data dictionary")
    return ["not reported" if pd.isna(v) else _label(v) for v in values]


def _band(value: float, bands: Sequence[float]) -> str:
    if math.isnan(value):
        return "not reported"
    if value < bands[0]:
        return f"under {bands[0]:g}"
    for low, high in itertools.pairwise(bands):
        if value < high:
            return f"{low:g} to under {high:g}"
    return f"{bands[-1]:g} or over"


def _fit(x: pd.DataFrame, y: Ints, specs: Sequence[ColumnSpec], options: TrainingOptions) -> Any:
    from optbinning import BinningProcess, Scorecard
    from sklearn.linear_model import LogisticRegression

    names = [s.name for s in specs]
    numerical = [s.name for s in specs if x[s.name].dtype.kind == "f"]
    params: dict[str, dict[str, Any]] = {n: {"monotonic_trend": MONOTONIC_TREND}
                                         for n in numerical}
    for s in specs:
        if s.special_codes:
            codes = [float(c) for c in s.special_codes] if s.name in numerical \
                else [str(c) for c in s.special_codes]
            params.setdefault(s.name, {})["special_codes"] = codes
    process = BinningProcess(
        variable_names=names,
        categorical_variables=[n for n in names if n not in numerical],
        binning_fit_params=params,
    )
    if options.pdo is None:
        low, high = options.score_range
        method, method_params = "min_max", {"min": float(low), "max": float(high)}
    else:
        method = "pdo_odds"
        method_params = {"pdo": options.pdo.pdo, "odds": options.pdo.odds,
                         "scorecard_points": options.pdo.points}
    scorecard = Scorecard(
        binning_process=process,
        estimator=LogisticRegression(max_iter=1000),
        scaling_method=method,
        scaling_method_params=method_params,
        rounding=True,
    )
    with quiet_optbinning():
        scorecard.fit(x, y)
    return scorecard


@contextmanager
def quiet_optbinning() -> Iterator[None]:
    """Silence pandas 3's deprecation warnings about optbinning 1.0's own pandas calls.

    Only :class:`pandas.errors.Pandas4Warning` raised from optbinning's modules is
    silenced; everything else still warns (and fails the tests).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=pd.errors.Pandas4Warning,
                                module=r"optbinning\.")
        yield


def _score(scorecard: Any, x: pd.DataFrame) -> Floats:
    with quiet_optbinning():
        scores: Floats = np.asarray(scorecard.score(x), dtype=np.float64)
    return scores


def _number_words(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.10g}"


def _numeric_labels(splits: Sequence[float]) -> list[str]:
    if not splits:
        return ["any value"]
    words = [_number_words(s) for s in splits]
    labels = [f"less than {words[0]}"]
    labels += [f"{a} to less than {b}" for a, b in itertools.pairwise(words)]
    labels.append(f"{words[-1]} or more")
    return labels


def _artifact_features(scorecard: Any, specs: Mapping[str, ColumnSpec]) -> list[FeatureBins]:
    with quiet_optbinning():
        table = scorecard.table(style="detailed")
    process = scorecard.binning_process_
    features = []
    for name in process.get_support(names=True):
        name = str(name)
        optb = process.get_binned_variable(name)
        rows = table[table["Variable"] == name].sort_values("Bin id")
        points = [float(p) for p in rows["Points"].to_numpy()]
        spec = specs[name]
        if optb.dtype == "numerical":
            splits = tuple(float(s) for s in optb.splits)
            categories: tuple[tuple[str, ...], ...] = ()
            labels = _numeric_labels(splits)
            specials: tuple[float | str, ...] = tuple(float(c) for c in spec.special_codes)
        else:
            splits = ()
            categories = tuple(tuple(str(c) for c in b) for b in optb.splits)
            labels = [" or ".join(cats) for cats in categories]
            specials = tuple(str(c) for c in spec.special_codes)
        n_bins = len(labels)
        # optbinning's table: the regular bins, one special bin, the missing bin.
        assert len(points) == n_bins + 2, f"{name}: unexpected binning table"
        features.append(FeatureBins(
            name=name, description=spec.description, category=spec.category,
            kind="numerical" if optb.dtype == "numerical" else "categorical",
            splits=splits, categories=categories, labels=tuple(labels),
            points=tuple(points[:n_bins]), special_codes=specials,
            special_points=points[n_bins], missing_points=points[n_bins + 1],
        ))
    return features


def _scaling(scorecard: Any, options: TrainingOptions) -> dict[str, Json]:
    if options.pdo is not None:
        return {"method": "pdo_odds", "pdo": options.pdo.pdo, "odds": options.pdo.odds,
                "points": options.pdo.points}
    # Recompute the unscaled log-odds span that optbinning mapped onto the range.
    process = scorecard.binning_process_
    coefs = scorecard.estimator_.coef_.ravel()
    intercept = float(scorecard.estimator_.intercept_[0])
    lo = hi = intercept
    for c, name in zip(coefs, process.get_support(names=True), strict=True):
        with quiet_optbinning():
            table = process.get_binned_variable(str(name)).binning_table.build(add_totals=False)
        woe = table["WoE"]
        # The special and missing bins (the last two rows) were fitted at WoE 0.
        raw = np.append(np.asarray(woe, dtype=np.float64)[:-2] * float(c), 0.0)
        lo, hi = lo + float(raw.min()), hi + float(raw.max())
    low, high = options.score_range
    per_logit = (high - low) / (hi - lo)
    return {"method": "range", "min": low, "max": high,
            "implied_pdo": round(per_logit * math.log(2), 6),
            "score_at_even_odds": round(high + per_logit * lo, 6)}


def _check_within_range(features: Sequence[FeatureBins], intercept: float,
                        score_range: tuple[int, int]) -> None:
    lo = intercept + sum(f.min_points for f in features)
    hi = intercept + sum(f.max_points for f in features)
    if lo < score_range[0] or hi > score_range[1]:
        raise InputError(f"pdo: scores would span {lo:g}-{hi:g}, outside the range "
                         f"{score_range[0]}-{score_range[1]}: change pdo/odds/points or let "
                         "the scale be fitted to the range")


def train(
    frame: pd.DataFrame,
    dictionary: Mapping[str, ColumnSpec],
    options: TrainingOptions,
    *,
    source: DataSource | None = None,
) -> TrainedModel:
    """Train, validate and check a scorecard; deterministic for a given ``options.seed``."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from trustledger.models.card import build_card

    y, bad_label, good_label = binary_target(frame, options.target, options.bad)
    selection = select_features([str(c) for c in frame.columns], dictionary,
                                target=options.target, requested=options.features)
    smallest = int(min(y.sum(), y.size - y.sum()))
    if smallest < options.folds:
        raise InputError(f"target {options.target}: only {smallest} row(s) of one outcome; "
                         f"{options.folds}-fold validation needs at least {options.folds}")
    group_columns = selection.protected if options.groups is None else options.groups
    if options.target in group_columns:
        raise InputError("groups: the target cannot be a fairness group")
    groups = {c: group_labels(frame, c, dictionary.get(c)) for c in group_columns}
    x = _prepare_features(frame, selection.features)
    specs = list(selection.features)

    oof = np.zeros(y.size, dtype=np.float64)
    kfold = StratifiedKFold(n_splits=options.folds, shuffle=True, random_state=options.seed)
    for fit_rows, test_rows in kfold.split(x, y):
        model = _fit(x.iloc[fit_rows], y[fit_rows], specs, options)
        oof[test_rows] = _score(model, x.iloc[test_rows])
    fit_rows, test_rows = train_test_split(np.arange(y.size), test_size=options.holdout,
                                           stratify=y, random_state=options.seed)
    model = _fit(x.iloc[fit_rows], y[fit_rows], specs, options)
    holdout_scores = _score(model, x.iloc[test_rows])
    validation: dict[str, Json] = {
        "folds": options.folds, "seed": options.seed,
        "oof_auc": auc(oof, y), "oof_gini": gini(auc(oof, y)), "oof_ks": ks(oof, y),
        "holdout_fraction": options.holdout,
        "holdout_auc": auc(holdout_scores, y[test_rows]),
        "psi_train_holdout": psi(_score(model, x.iloc[fit_rows]), holdout_scores),
    }

    reference = _fit(x, y, specs, options)
    features = _artifact_features(reference, {s.name: s for s in specs})
    intercept = float(getattr(reference, "intercept_", 0.0))
    if options.pdo is not None:
        _check_within_range(features, intercept, options.score_range)
    if source is None:
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy()
                                .tobytes()).hexdigest()
        source = DataSource(name="<data frame>", sha256=digest)
    fairness = fairness_report(oof, y, groups, options.tiers,
                               scores_name=f"{options.folds}-fold out-of-fold scores")
    training: dict[str, Json] = {
        "data": {"name": source.name, "sha256": source.sha256, "rows": int(y.size),
                 "bad_rate": float(y.mean())},
        "method": {"binning": "optbinning.BinningProcess", "monotonic_trend": MONOTONIC_TREND,
                   "estimator": "sklearn LogisticRegression(max_iter=1000)",
                   "points": "rounded to integers"},
        "validation": validation,
        "refused": [{"column": r.column, "category": r.category, "reason": r.reason}
                    for r in selection.refused],
        "fairness_groups": list(group_columns),
        "versions": {p: version(p) for p in ("optbinning", "scikit-learn", "numpy", "pandas")},
    }
    artifact = ScorecardArtifact(
        features=tuple(features),
        intercept=intercept,
        score_range=options.score_range,
        scaling=_scaling(reference, options),
        target={"column": options.target, "bad": bad_label, "good": good_label},
        training=training,
    )
    card = build_card(artifact, reference, selection, fairness)
    return TrainedModel(artifact=artifact, card=card, selection=selection, fairness=fairness,
                        oof_scores=oof, bad=y, features=x, reference=reference)


def train_file(data: Path, dictionary: Mapping[str, ColumnSpec],
               options: TrainingOptions) -> TrainedModel:
    """Read a CSV or Parquet file and :func:`train` on it, recording its name and hash."""
    frame = read_table(data)
    source = DataSource(name=data.name, sha256=hashlib.sha256(data.read_bytes()).hexdigest())
    return train(frame, dictionary, options, source=source)
