"""Training a statistical scorecard: checked inputs, regularised bins, validation, fairness.

``train`` takes a table with a binary outcome (did the person repay?), keeps only
the columns a data dictionary declares with an allowed category (protected
attributes are refused, see :mod:`trustledger.models.features`; identifier-like
columns and bad values are refused, see :mod:`trustledger.models.inputs`), and fits
a scorecard (:mod:`trustledger.models.fitting`: optbinning's regularised bins, the
evidence of every bin, missing and special included, logistic regression, points).

Validation, all deterministic for a given seed:

* stratified k-fold out-of-fold scores → AUC, Gini, KS (:func:`fold_indices` gives
  the folds, so a benchmark can fit another model on the very same ones);
* a stratified holdout → PSI between training and holdout score distributions;
* a fairness report on the out-of-fold scores, grouped by the protected attributes
  (in the data, or in an audit file joined by row id: :mod:`trustledger.models.audit`),
  and a proxy screen of every feature against them; without any, the model is
  marked *unaudited*.

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
from trustledger.models.audit import (
    AuditStatus,
    ProxyScreen,
    audit_document,
    audit_status,
    join_audit,
    proxy_screen,
)
from trustledger.models.fairness import FairnessReport, fairness_report
from trustledger.models.features import (
    PROTECTED_CATEGORIES,
    ColumnSpec,
    FeatureSelection,
    known_proxy,
    select_features,
)
from trustledger.models.fitting import (
    ESTIMATOR,
    MIN_BIN_SHARE,
    MONOTONIC_TREND,
    FittedScorecard,
    ReferenceScorecard,
    bin_indices,
    category_cutoff,
    fit_scorecard,
    score_rows,
)
from trustledger.models.inputs import prepare_features
from trustledger.models.metrics import auc, gini, ks, psi

DEFAULT_TIERS: tuple[float, ...] = (550.0, 600.0, 650.0, 700.0)
"""Tier thresholds of the fairness report when none are given (Sesame-style bands)."""

DEFAULT_AGE_BANDS: tuple[float, ...] = (25.0, 35.0, 50.0, 65.0)
"""Lower edges of the age bands used to group a numerical age column for fairness."""

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
    report by every protected attribute found (in the data and the audit file). By
    default the scale is fitted to the range (lowest possible score = range minimum,
    highest = maximum), which is points-to-double-odds scaling with the PDO and anchor
    chosen to fill the range; the implied PDO is reported. ``pdo`` sets them explicitly
    instead. ``row_id`` names the column that identifies a row (never a feature; it
    joins audit data).
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
    row_id: str | None = None

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
        if self.row_id is not None and self.row_id == self.target:
            raise InputError("id: the row id cannot be the target")


@dataclass(frozen=True)
class DataSource:
    """Where the training data came from: a name and the SHA-256 of its bytes."""

    name: str
    sha256: str


@dataclass(frozen=True)
class AuditData:
    """Protected attributes of the training rows, keyed by row id (never features)."""

    frame: pd.DataFrame
    """The id column and one column per attribute."""
    source: str
    """Where they came from, in words (the audit file's name)."""


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
    reference: ReferenceScorecard = field(repr=False)
    """optbinning's bin assignment with the fitted points (for comparison; never saved)."""
    fitted: FittedScorecard = field(repr=False)
    screen: ProxyScreen = field(default_factory=lambda: ProxyScreen(()))
    audit: AuditStatus = field(default_factory=lambda: AuditStatus(False, (), "unaudited"))


def _read(path: Path, what: str, columns: Sequence[str] | None = None,
          header_only: bool = False) -> pd.DataFrame:
    if not path.is_file():
        raise NotFoundError(f"{what} not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            if header_only:
                import pyarrow.parquet as pq

                return pd.DataFrame(columns=pq.read_schema(path).names)
            frame = pd.read_parquet(path, columns=None if columns is None else list(columns))
        elif suffix in (".csv", ".txt"):
            frame = pd.read_csv(path, nrows=0 if header_only else None,
                                usecols=None if columns is None else list(columns))
        else:
            raise InputError(f"{path}: unsupported {what} type {suffix!r} (CSV or Parquet)")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from exc
    return frame


def read_table(path: Path, *, what: str = "data file",
               columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (only ``columns``, when given); failures name the file."""
    frame = _read(path, what, columns)
    # Arrow keeps the read buffers for reuse; give them back before the real work.
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if frame.empty or frame.shape[1] < (1 if columns is not None else 2):
        raise InputError(f"{path}: no data rows, or fewer than two columns")
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise InputError(f"{path}: duplicate column(s) {', '.join(duplicated)}")
    return frame


def column_names(path: Path, *, what: str = "data file") -> list[str]:
    """The column names of a CSV or Parquet file, read from its header alone."""
    return [str(c) for c in _read(path, what, header_only=True).columns]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (a large file is never held in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def group_labels(frame: pd.DataFrame, column: str,
                 spec: ColumnSpec | None) -> npt.NDArray[np.object_]:
    """One fairness-group label per row: mapped by ``groups``, banded by ``bands``, or raw.

    Blank values are ``not reported``. Each distinct label is one Python text shared by
    its rows (a 3-million-row column costs a pointer a row).
    """
    if column not in frame.columns:
        raise InputError(f"fairness group column {column!r} not in the data")
    values = frame[column]
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if spec is not None and spec.groups:
        names = [spec.groups.get(str(u), str(u)) for u in uniques]
    elif values.dtype.kind in "iuf":
        bands = spec.bands if spec is not None and spec.bands else ()
        if not bands and ((spec is not None and spec.category == "age")
                          or "age" in column.lower().split("_")):
            bands = DEFAULT_AGE_BANDS
        if not bands and len(uniques) > 20:
            raise InputError(f"fairness group column {column!r} is numerical with many values: "
                             "declare its bands in the data dictionary")
        names = [_band(float(u), bands) if bands else _label(u) for u in uniques]
    else:
        names = [_label(u) for u in uniques]
    table = np.asarray([*names, "not reported"], dtype=object)
    labels: npt.NDArray[np.object_] = table[np.where(codes < 0, len(names), codes)]
    return labels


def _band(value: float, bands: Sequence[float]) -> str:
    if math.isnan(value):
        return "not reported"
    if value < bands[0]:
        return f"under {bands[0]:g}"
    for low, high in itertools.pairwise(bands):
        if value < high:
            return f"{low:g} to under {high:g}"
    return f"{bands[-1]:g} or over"


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


def _check_within_range(features: Sequence[FeatureBins], intercept: float,
                        score_range: tuple[int, int]) -> None:
    lo = intercept + sum(f.min_points for f in features)
    hi = intercept + sum(f.max_points for f in features)
    if lo < score_range[0] or hi > score_range[1]:
        raise InputError(f"pdo: scores would span {lo:g}-{hi:g}, outside the range "
                         f"{score_range[0]}-{score_range[1]}: change pdo/odds/points or let "
                         "the scale be fitted to the range")



def fold_indices(y: Ints, folds: int, seed: int) -> list[tuple[Ints, Ints]]:
    """The stratified folds of the out-of-fold validation: ``(fit rows, test rows)`` each."""
    from sklearn.model_selection import StratifiedKFold

    kfold = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
            for a, b in kfold.split(np.zeros((y.size, 1)), y)]


Labels = npt.NDArray[np.object_]


def logistic_baseline_auc(model: TrainedModel) -> float:
    """Out-of-fold AUC of plain logistic regression on the model's features and folds.

    The reference the default training is held to (issue 19: at least this minus 0.01):
    scikit-learn's ``LogisticRegression`` with numerical columns median-imputed (with a
    missing indicator) and scaled, categorical ones one-hot encoded, fitted on the same
    folds as the model's own validation.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    v = model.artifact.training["validation"]
    assert isinstance(v, dict)
    numerical = [f.name for f in model.artifact.features if f.kind == "numerical"]
    categorical = [f.name for f in model.artifact.features if f.kind == "categorical"]
    x = model.features.astype({c: str for c in categorical})
    y = model.bad
    oof = np.zeros(y.size)
    for fit_rows, test_rows in fold_indices(y, int(str(v["folds"])), int(str(v["seed"]))):
        lr = make_pipeline(
            ColumnTransformer([
                ("n", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                    StandardScaler()), numerical),
                ("c", OneHotEncoder(handle_unknown="ignore"), categorical)]),
            LogisticRegression(max_iter=2000))
        lr.fit(x.iloc[fit_rows], y[fit_rows])
        oof[test_rows] = -lr.predict_proba(x.iloc[test_rows])[:, 1]
    return auc(oof, y)


def _attributes(frame: pd.DataFrame, dictionary: Mapping[str, ColumnSpec],
                selection: FeatureSelection, options: TrainingOptions,
                audit: AuditData | None) -> tuple[dict[str, Labels], dict[str, str], list[str]]:
    """Fairness groups (labels per row), the source of each, and which are protected."""
    joined: pd.DataFrame | None = None
    audit_columns: list[str] = []
    if audit is not None:
        if options.row_id is None:
            raise InputError("--audit needs --id COLUMN: the row id that joins the audit file")
        joined = join_audit(frame[options.row_id], audit.frame, options.row_id,
                            [str(c) for c in frame.columns], audit.source)
        audit_columns = [str(c) for c in joined.columns]
    names = (list(selection.protected) + audit_columns) if options.groups is None \
        else list(options.groups)
    if options.target in names:
        raise InputError("groups: the target cannot be a fairness group")
    groups: dict[str, Labels] = {}
    sources: dict[str, str] = {}
    protected: list[str] = []
    for name in dict.fromkeys(names):
        if joined is not None and name in joined.columns:
            groups[name] = group_labels(joined, name, dictionary.get(name))
            sources[name] = audit.source if audit is not None else ""
            protected.append(name)
            continue
        groups[name] = group_labels(frame, name, dictionary.get(name))
        sources[name] = "training data"
        spec = dictionary.get(name)
        if name in selection.protected or (spec is not None
                                           and spec.category in PROTECTED_CATEGORIES):
            protected.append(name)
    return groups, sources, protected


def train(
    frame: pd.DataFrame,
    dictionary: Mapping[str, ColumnSpec],
    options: TrainingOptions,
    *,
    source: DataSource | None = None,
    audit: AuditData | None = None,
    unread: Sequence[str] = (),
) -> TrainedModel:
    """Train, validate and check a scorecard; deterministic for a given ``options.seed``.

    ``unread`` names columns of the data file that were not read (the dictionary does
    not declare them): they are refused as undeclared, like any undeclared column.
    """
    from sklearn.model_selection import train_test_split

    from trustledger.models.card import build_card

    y, bad_label, good_label = binary_target(frame, options.target, options.bad)
    if options.row_id is not None and options.row_id not in frame.columns:
        raise InputError(f"--id: the training data has no column {options.row_id!r}")
    audit_columns = [] if audit is None else \
        [str(c) for c in audit.frame.columns if c != options.row_id]
    selection = select_features([*map(str, frame.columns), *unread], dictionary,
                                target=options.target, requested=options.features,
                                row_id=options.row_id, elsewhere=audit_columns)
    prepared = prepare_features(frame, selection.features, options.features)
    specs = [s for s in selection.features if s.name in prepared.kinds]
    selection = FeatureSelection(features=tuple(specs),
                                 refused=(*selection.refused, *prepared.refused),
                                 protected=selection.protected)
    x, kinds = prepared.frame, prepared.kinds
    smallest = int(min(y.sum(), y.size - y.sum()))
    if smallest < options.folds:
        raise InputError(f"target {options.target}: only {smallest} row(s) of one outcome; "
                         f"{options.folds}-fold validation needs at least {options.folds}")
    groups, sources, protected = _attributes(frame, dictionary, selection, options, audit)
    pdo = None if options.pdo is None else (options.pdo.pdo, options.pdo.odds,
                                            options.pdo.points)

    def fit(rows: Ints) -> FittedScorecard:
        return fit_scorecard(x, y, specs, kinds, options.score_range, pdo, rows=rows)

    def scores(fitted: FittedScorecard, rows: Ints) -> Floats:
        return score_rows(fitted.feature_bins, fitted.intercept, x, rows)

    oof = np.zeros(y.size, dtype=np.float64)
    for fit_rows, test_rows in fold_indices(y, options.folds, options.seed):
        oof[test_rows] = scores(fit(fit_rows), test_rows)
    fit_rows, test_rows = (np.asarray(r, dtype=np.int64) for r in train_test_split(
        np.arange(y.size), test_size=options.holdout, stratify=y, random_state=options.seed))
    held = fit(fit_rows)
    holdout_scores = scores(held, test_rows)
    validation: dict[str, Json] = {
        "folds": options.folds, "seed": options.seed,
        "oof_auc": auc(oof, y), "oof_gini": gini(auc(oof, y)), "oof_ks": ks(oof, y),
        "holdout_fraction": options.holdout,
        "holdout_auc": auc(holdout_scores, y[test_rows]),
        "psi_train_holdout": psi(scores(held, fit_rows), holdout_scores),
    }
    del held

    final = fit_scorecard(x, y, specs, kinds, options.score_range, pdo)
    features = list(final.feature_bins)
    if options.pdo is not None:
        _check_within_range(features, final.intercept, options.score_range)
    if source is None:
        digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy()
                                .tobytes()).hexdigest()
        source = DataSource(name="<data frame>", sha256=digest)
    fairness = fairness_report(oof, y, groups, options.tiers,
                               scores_name=f"{options.folds}-fold out-of-fold scores")
    screen = proxy_screen({f.name: bin_indices(f, x[f.name]) for f in features},
                          {name: groups[name] for name in protected})
    known = {f.name: why for f in features if (why := known_proxy(f.name)) is not None}
    training: dict[str, Json] = {
        "data": {"name": source.name, "sha256": source.sha256, "rows": int(y.size),
                 "bad_rate": float(y.mean())},
        "method": {"binning": "optbinning.BinningProcess", "monotonic_trend": MONOTONIC_TREND,
                   "min_bin_share": MIN_BIN_SHARE,
                   "category_cutoff": round(category_cutoff(int(y.size)), 6),
                   "estimator": ESTIMATOR, "points": "rounded to integers",
                   "missing_and_special": "evidence, like any bin; fewer rows than the minimum "
                                          "bin size: least favourable; missing never above "
                                          "least favourable"},
        "validation": validation,
        "refused": [{"column": r.column, "category": r.category, "reason": r.reason}
                    for r in selection.refused],
        "fairness_groups": list(groups),
        "audit": audit_document({n: groups[n] for n in protected}, sources, screen, known),
        "versions": {p: version(p) for p in ("optbinning", "scikit-learn", "numpy", "pandas")},
    }
    artifact = ScorecardArtifact(
        features=tuple(features),
        intercept=final.intercept,
        score_range=options.score_range,
        scaling=final.scaling,
        target={"column": options.target, "bad": bad_label, "good": good_label},
        training=training,
    )
    card = build_card(artifact, final, fairness, screen)
    return TrainedModel(artifact=artifact, card=card, selection=selection, fairness=fairness,
                        oof_scores=oof, bad=y, features=x,
                        reference=ReferenceScorecard(final), fitted=final, screen=screen,
                        audit=audit_status(artifact))


def train_file(data: Path, dictionary: Mapping[str, ColumnSpec], options: TrainingOptions,
               *, audit: Path | None = None) -> TrainedModel:
    """Read a CSV or Parquet file and :func:`train` on it, recording its name and hash.

    ``audit`` names an audit file of protected attributes (joined by ``options.row_id``).
    """
    from trustledger.models.audit import read_audit

    audit_data = None
    if audit is not None:
        if options.row_id is None:
            raise InputError("--audit needs --id COLUMN: the row id that joins the audit file")
        audit_data = AuditData(read_audit(audit, options.row_id), f"audit file {audit.name}")
    # Only the columns training can use are read; the others are named, as undeclared.
    names = column_names(data)
    needed = {*dictionary, options.target, *(options.groups or ()),
              *([options.row_id] if options.row_id else [])}
    unread = [c for c in names if c not in needed]
    source = DataSource(name=data.name, sha256=file_sha256(data))
    return train(read_table(data, columns=[c for c in names if c in needed]), dictionary,
                 options, source=source, audit=audit_data, unread=unread)

