"""Fitting one scorecard: regularised bins, evidence for every bin, logistic regression, points.

1. **Bins** — optbinning's ``BinningProcess`` (optimal bins found by its CP-SAT
   solver, fixed seed, one worker). Regularised by default: every bin holds at least
   :data:`MIN_BIN_SHARE` of the rows; numerical features are monotonic
   (:data:`MONOTONIC_TREND`); a categorical feature's categories rarer than
   :func:`category_cutoff` are pooled into one "others" bin *before* categories are
   ordered by bad rate, so a rare category cannot carry extreme points.
2. **Evidence** — the weight of evidence of every bin, the special and the missing bin
   included: ``ln((good_b + 0.5) / G) - ln((bad_b + 0.5) / B)``.
3. **Logistic regression** (scikit-learn, lbfgs, L2 with ``C = 1``) on the WoE of
   every bin the rows fall in, missing and special included.
4. **Special and missing bins** earn their points from evidence like any bin, with
   two rules, recorded per feature in the artifact and shown on the card:

   * a special or missing bin with fewer rows than the minimum bin size gets the
     feature's *least favourable* points (too little evidence to earn more);
   * the missing bin never scores above the feature's least favourable points: a
     blank field can never be worth more than any value that was reported, so leaving
     a field blank is never a strategy.

5. **Points** — scaled to the score range (by default the lowest possible score is
   the range minimum and the highest the maximum), rounded to integers; the intercept
   is 0: the range minimum is shared among the features (each gets a whole number of
   points on every bin), so the features' points add up to the score.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustledger.errors import InputError
from trustledger.models.artifact import FeatureBins, Json
from trustledger.models.features import ColumnSpec

MIN_BIN_SHARE = 0.05
"""Every bin, the special and missing bins included, needs this share of the rows to
earn points of its own."""

MIN_CATEGORY_ROWS = 50
"""A category with fewer training rows than this is pooled into the "others" bin."""

MAX_CATEGORY_SHARE = 0.05
"""…and so is one under this share of the rows (whichever cut-off is lower)."""

MONOTONIC_TREND = "auto_asc_desc"
"""Numerical features' bins are monotonic: points only rise, or only fall, with the value."""

SMOOTHING = 0.5
"""Added to the good and bad counts of every bin, so that a pure bin has a finite WoE."""

BINNING_SAMPLE_ROWS = 400_000
"""Above this many rows the bins are found on a fixed random sample of this size (the
evidence, the regression and the points always use every row): memory and time stay
bounded on millions of rows. A category missing from the sample joins the "others"
bin (or, without one, the largest bin) — it is never left to the missing bin."""

ESTIMATOR = "sklearn LogisticRegression(C=1.0, lbfgs, max_iter=1000) on bin WoE"
"""The estimator, in words (recorded in the artifact)."""

RULE_EVIDENCE = "evidence"
RULE_TOO_FEW = "too few rows: least favourable"
RULE_CAPPED = "capped at least favourable"
RULE_NO_CODES = "no special codes: least favourable"

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def category_cutoff(rows: int) -> float:
    """The share of rows under which a category is pooled into "others"."""
    return min(MAX_CATEGORY_SHARE, MIN_CATEGORY_ROWS / rows) if rows else MAX_CATEGORY_SHARE


@dataclass(frozen=True)
class FittedFeature:
    """One feature as fitted: its artifact bins and the evidence behind every bin.

    Arrays run over the regular bins, then the special bin, then the missing bin.
    """

    bins: FeatureBins
    rows: Ints
    bad: Ints
    woe: Floats
    coefficient: float
    iv: float


@dataclass(frozen=True)
class FittedScorecard:
    """A fitted scorecard: features with evidence and points, intercept, scaling."""

    features: tuple[FittedFeature, ...]
    intercept: float
    scaling: dict[str, Json]
    min_bin_rows: int
    process: Any
    """optbinning's fitted ``BinningProcess`` (for the reference scorer; never saved)."""

    @property
    def feature_bins(self) -> tuple[FeatureBins, ...]:
        """The artifact's features."""
        return tuple(f.bins for f in self.features)


def bin_indices(bins: FeatureBins, column: pd.Series | npt.NDArray[Any]) -> Ints:
    """The bin of every value: regular bins, then ``n_bins`` special, ``n_bins + 1`` missing.

    A category never seen in training falls in the missing bin, as when scoring.
    """
    missing, special = bins.n_bins + 1, bins.n_bins
    if bins.kind == "numerical":
        x = np.asarray(column, dtype=np.float64)
        idx = np.searchsorted(np.asarray(bins.splits, dtype=np.float64), x, side="right")
        out: Ints = idx.astype(np.int64)
        if bins.special_codes:
            out[np.isin(x, np.asarray(bins.special_codes, dtype=np.float64))] = special
        out[np.isnan(x)] = missing
        return out
    codes, uniques = pd.factorize(pd.Series(np.asarray(column, dtype=object)), sort=False)
    bin_of = {c: i for i, cats in enumerate(bins.categories) for c in cats}
    bin_of.update({str(s): special for s in bins.special_codes})
    lut = np.asarray([bin_of.get(str(u), missing) for u in uniques] + [missing], dtype=np.int64)
    result: Ints = lut[np.where(codes < 0, len(uniques), codes)]
    return result


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


def _category_labels(categories: Sequence[Sequence[str]], pooled: frozenset[str]) -> list[str]:
    labels = []
    for cats in categories:
        if len(cats) > 5 or (cats and set(cats) <= pooled and len(cats) > 1):
            labels.append(f"one of {len(cats)} less common values" if set(cats) <= pooled
                          else f"{' or '.join(cats[:3])} or {len(cats) - 3} other values")
        else:
            labels.append(" or ".join(cats))
    return labels


def _binning(x: pd.DataFrame, y: Ints, specs: Sequence[ColumnSpec],
             kinds: Mapping[str, str]) -> Any:
    from optbinning import BinningProcess

    names = [s.name for s in specs]
    params: dict[str, dict[str, Any]] = {}
    for s in specs:
        p: dict[str, Any] = {"min_bin_size": MIN_BIN_SHARE}
        if kinds[s.name] == "numerical":
            p["monotonic_trend"] = MONOTONIC_TREND
        else:
            p["cat_cutoff"] = category_cutoff(int(y.size))
        if s.special_codes:
            p["special_codes"] = [float(c) for c in s.special_codes] \
                if kinds[s.name] == "numerical" else [str(c) for c in s.special_codes]
        params[s.name] = p
    process = BinningProcess(
        variable_names=names,
        categorical_variables=[n for n in names if kinds[n] == "categorical"],
        binning_fit_params=params,
    )
    from trustledger.models.train import quiet_optbinning

    with quiet_optbinning():
        process.fit(x, y)
    return process


def _woe(rows: Ints, bad: Ints) -> Floats:
    good = rows - bad
    total_good, total_bad = float(good.sum()), float(bad.sum())
    woe: Floats = np.log((good + SMOOTHING) / total_good) - np.log((bad + SMOOTHING) / total_bad)
    return woe


def _rules(goodness: Floats, rows: Ints, n_bins: int, min_rows: int,
           has_codes: bool) -> tuple[Floats, str, str]:
    """Apply the special and missing rules to a feature's log-odds contributions."""
    g = goodness.copy()
    regular = float(g[:n_bins].min())
    special_ok = has_codes and rows[n_bins] >= min_rows
    least = min(regular, float(g[n_bins])) if special_ok else regular
    if special_ok:
        special_rule = RULE_EVIDENCE
    else:
        g[n_bins] = least
        special_rule = RULE_TOO_FEW if has_codes else RULE_NO_CODES
    if rows[n_bins + 1] < min_rows:
        g[n_bins + 1], missing_rule = least, RULE_TOO_FEW
    elif g[n_bins + 1] > least:
        g[n_bins + 1], missing_rule = least, RULE_CAPPED
    else:
        missing_rule = RULE_EVIDENCE
    return g, special_rule, missing_rule


def _spread(points: list[Floats], base: int) -> list[Floats]:
    """Share a whole number of base points among the features, so the intercept stays 0.

    Every feature gets ``base // k`` more points on every bin, and the first
    ``base % k`` features one more: the features' points add up to the score.
    """
    share, extra = divmod(base, len(points))
    return [p + share + (1 if j < extra else 0) for j, p in enumerate(points)]


def _scale(goodness: Sequence[Floats], lr_intercept: float, score_range: tuple[int, int],
           pdo: tuple[float, float, float] | None) -> tuple[list[Floats], float,
                                                            dict[str, Json]]:
    """Per-feature points and the intercept (0); the scaling as recorded in the artifact."""
    low, high = score_range
    if pdo is not None:
        p, odds, anchor = pdo
        factor = p / math.log(2)
        offset = anchor - factor * math.log(odds)
        points = [np.round(factor * g) for g in goodness]
        return _spread(points, round(offset - factor * lr_intercept)), 0.0, {
            "method": "pdo_odds", "pdo": p, "odds": odds, "points": anchor}
    lows = [float(g.min()) for g in goodness]
    span = sum(float(g.max()) - lo for g, lo in zip(goodness, lows, strict=True))
    if span <= 0:
        raise InputError("no feature separates good from bad outcomes: every bin has the "
                         "same evidence, there is nothing to score")
    scale = (high - low) / span
    for _ in range(20):
        points = [np.round(scale * (g - lo)) for g, lo in zip(goodness, lows, strict=True)]
        excess = sum(float(p.max()) for p in points) - (high - low)
        if excess <= 0:
            break
        scale *= (high - low - excess) / (high - low)
    at_lowest = -lr_intercept + sum(lows)
    return _spread(points, low), 0.0, {
        "method": "range", "min": low, "max": high,
        "implied_pdo": round(scale * math.log(2), 6),
        "score_at_even_odds": round(low - scale * at_lowest, 6),
    }


def _column(x: pd.DataFrame, name: str, rows: Ints | None) -> npt.NDArray[Any]:
    values: npt.NDArray[Any] = x[name].to_numpy()
    return values if rows is None else values[rows]


def _with_unsampled(categories: tuple[tuple[str, ...], ...], pooled: frozenset[str],
                    values: npt.NDArray[Any], specials: Sequence[str],
                    rows_per_bin: Ints) -> tuple[tuple[tuple[str, ...], ...], frozenset[str]]:
    """Put the categories the binning sample did not hold into "others" (or the largest bin)."""
    known = {c for cats in categories for c in cats} | set(specials)
    present = pd.unique(pd.Series(values, dtype=object).dropna())
    unseen = sorted(str(v) for v in present if str(v) not in known)
    if not unseen:
        return categories, pooled
    if pooled:
        target = next(i for i, cats in enumerate(categories) if set(cats) <= pooled)
    else:
        target = int(np.argmax(rows_per_bin[:len(categories)]))
    merged = tuple((*cats, *unseen) if i == target else cats for i, cats in enumerate(categories))
    return merged, pooled | frozenset(unseen) if pooled else pooled


def fit_scorecard(x: pd.DataFrame, y_all: Ints, specs: Sequence[ColumnSpec],
                  kinds: Mapping[str, str], score_range: tuple[int, int],
                  pdo: tuple[float, float, float] | None = None,
                  rows: Ints | None = None) -> FittedScorecard:
    """Bin, weigh, regress and scale: one scorecard from prepared feature columns.

    ``rows`` (positions) restricts the fit to those rows of ``x`` and ``y_all``
    (a fold) without copying the table.
    """
    from sklearn.linear_model import LogisticRegression

    y = y_all if rows is None else y_all[rows]
    if int(y.sum()) == 0 or int(y.sum()) == y.size:
        raise InputError("training rows hold only one outcome: both good and bad are needed")
    positions = np.arange(y_all.size) if rows is None else rows
    sample = positions
    if positions.size > BINNING_SAMPLE_ROWS:
        chosen = np.random.default_rng(0).choice(positions.size, BINNING_SAMPLE_ROWS,
                                                 replace=False)
        sample = positions[np.sort(chosen)]
    process = _binning(x.iloc[sample], y_all[sample], specs, kinds)
    min_rows = math.ceil(MIN_BIN_SHARE * y.size)
    partial: list[FeatureBins] = []
    evidence: list[tuple[Ints, Ints, Floats]] = []
    design = np.empty((y.size, len(specs)), dtype=np.float64)
    for j, spec in enumerate(specs):
        optb = process.get_binned_variable(spec.name)
        if kinds[spec.name] == "numerical":
            splits = tuple(float(s) for s in optb.splits)
            categories: tuple[tuple[str, ...], ...] = ()
            labels = _numeric_labels(splits)
            specials: tuple[float | str, ...] = tuple(float(c) for c in spec.special_codes)
        else:
            splits = ()
            categories = tuple(tuple(str(c) for c in b) for b in optb.splits)
            pooled = frozenset(str(c) for c in (optb._cat_others or ()))
            specials = tuple(str(c) for c in spec.special_codes)
            if sample.size < positions.size:
                from trustledger.models.train import quiet_optbinning

                with quiet_optbinning():
                    table = optb.binning_table.build(add_totals=False)
                sizes = np.asarray(table["Count"], dtype=np.int64)
                categories, pooled = _with_unsampled(
                    categories, pooled, _column(x, spec.name, rows),
                    [str(c) for c in specials], sizes)
            labels = _category_labels(categories, pooled)
        n_bins = len(labels)
        bins = FeatureBins(
            name=spec.name, description=spec.description, category=spec.category,
            kind="numerical" if kinds[spec.name] == "numerical" else "categorical",
            splits=splits, categories=categories, labels=tuple(labels),
            points=(0.0,) * n_bins, special_codes=specials, special_points=0.0,
            missing_points=0.0)
        idx = bin_indices(bins, _column(x, spec.name, rows))
        counts = np.bincount(idx, minlength=n_bins + 2).astype(np.int64)
        bad = np.bincount(idx, weights=y, minlength=n_bins + 2).astype(np.int64)
        woe = _woe(counts, bad)
        design[:, j] = woe[idx]
        partial.append(bins)
        evidence.append((counts, bad, woe))
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(design, y)
    del design
    coefficients = [float(c) for c in model.coef_.ravel()]
    goodness, rules = [], []
    for bins, (counts, _, woe), c in zip(partial, evidence, coefficients, strict=True):
        g, special_rule, missing_rule = _rules(-c * woe, counts, bins.n_bins, min_rows,
                                               bool(bins.special_codes))
        goodness.append(g)
        rules.append((special_rule, missing_rule))
    points, intercept, scaling = _scale(goodness, float(model.intercept_[0]), score_range, pdo)
    features = []
    for bins, (counts, bad, woe), c, p, (special_rule, missing_rule) in zip(
            partial, evidence, coefficients, points, rules, strict=True):
        good = counts - bad
        share_good = (good + SMOOTHING) / float(good.sum())
        share_bad = (bad + SMOOTHING) / float(bad.sum())
        iv = float(np.sum((share_good - share_bad) * woe))
        n = bins.n_bins
        fitted = FeatureBins(
            name=bins.name, description=bins.description, category=bins.category,
            kind=bins.kind, splits=bins.splits, categories=bins.categories, labels=bins.labels,
            points=tuple(float(v) + 0.0 for v in p[:n]), special_codes=bins.special_codes,
            special_points=float(p[n]) + 0.0, missing_points=float(p[n + 1]) + 0.0,
            special_rule=special_rule, missing_rule=missing_rule)
        features.append(FittedFeature(fitted, counts, bad, woe, c, iv))
    return FittedScorecard(tuple(features), intercept, scaling, min_rows, process)


def score_rows(fitted: Sequence[FeatureBins], intercept: float, x: pd.DataFrame,
               rows: Ints | None = None) -> Floats:
    """Points of every row (or of ``rows``) of prepared feature columns."""
    total: Floats = np.zeros(x.shape[0] if rows is None else rows.size, dtype=np.float64)
    for bins in fitted:
        table = np.asarray([*bins.points, bins.special_points, bins.missing_points],
                           dtype=np.float64)
        total += table[bin_indices(bins, _column(x, bins.name, rows))]
    return total + intercept


class ReferenceScorecard:
    """optbinning's own bin assignment with the fitted points: what the compiled path must equal.

    Each feature's bins come from optbinning's ``transform(metric="indices")``, an
    implementation independent of :func:`bin_indices` and of the compiled scorer (a
    category never seen in training is the missing bin, as there).
    """

    def __init__(self, fitted: FittedScorecard) -> None:
        self.fitted = fitted

    def score(self, x: pd.DataFrame) -> Floats:
        """Points of every row of a DataFrame of feature columns."""
        from trustledger.models.train import quiet_optbinning

        total: Floats = np.zeros(x.shape[0], dtype=np.float64)
        for f in self.fitted.features:
            bins = f.bins
            optb = self.fitted.process.get_binned_variable(bins.name)
            with quiet_optbinning():
                idx = np.asarray(optb.transform(x[bins.name].to_numpy(), metric="indices",
                                                metric_special="empirical",
                                                metric_missing="empirical"), dtype=np.int64)
            idx[idx < 0] = bins.n_bins + 1
            table = np.asarray([*bins.points, bins.special_points, bins.missing_points],
                               dtype=np.float64)
            total += table[idx]
        return total + self.fitted.intercept
