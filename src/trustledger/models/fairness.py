"""Fairness report: approval rate per group at each tier threshold, adverse impact, AUC.

For every grouping column (a protected attribute, supplied for this report only)
and every group in it:

* the approval rate at each tier threshold (share of the group scoring at least
  the threshold),
* the adverse-impact ratio: that rate divided by the highest rate of any group of
  the same column at the same threshold; below 0.8 breaks the *four-fifths rule*
  and is flagged (:func:`below_four_fifths`, on the unrounded ratio),
* the AUC within the group (how well the score ranks goods above bads there).

Groups smaller than :data:`MIN_GROUP` are listed with their size only: their rates
are suppressed and they are not a reference for the ratio.

Every text that shows a ratio writes it with :func:`ratio_text`: three decimals, or
as many more as it takes for the number shown to fall on the same side of 0.8 as the
ratio itself — a flagged 0.79996 reads ``0.79996``, never ``0.800``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trustledger.aggregates import FOUR_FIFTHS, below_four_fifths, ratio_text
from trustledger.errors import InputError
from trustledger.models.metrics import auc

MIN_GROUP = 10
"""Groups with fewer members than this have their rates suppressed."""

@dataclass(frozen=True)
class GroupRow:
    """One group of one grouping column."""

    column: str
    group: str
    n: int
    suppressed: bool
    bad_rate: float | None
    auc: float | None
    approval: Mapping[float, float | None]
    """Approval rate at each threshold."""
    impact_ratio: Mapping[float, float | None]
    """Adverse-impact ratio at each threshold (None when suppressed or undefined)."""


@dataclass(frozen=True)
class Flag:
    """A breach of the four-fifths rule: column, group, threshold and ratio."""

    column: str
    group: str
    threshold: float
    ratio: float

    def __str__(self) -> str:
        return (f"{self.column}={self.group}: approval at {self.threshold:g} is "
                f"{ratio_text(self.ratio)} of the best group's (< {FOUR_FIFTHS})")


@dataclass(frozen=True)
class FairnessReport:
    """The whole report: thresholds, one row per group, and the flags."""

    thresholds: tuple[float, ...]
    rows: tuple[GroupRow, ...]
    flags: tuple[Flag, ...]
    scores: str
    """Which scores the report is computed on (e.g. out-of-fold)."""

    def to_document(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {
            "scores": self.scores,
            "thresholds": list(self.thresholds),
            "min_group": MIN_GROUP,
            "four_fifths": FOUR_FIFTHS,
            "groups": [
                {
                    "column": r.column, "group": r.group, "n": r.n,
                    "suppressed": r.suppressed, "bad_rate": r.bad_rate, "auc": r.auc,
                    "approval": {f"{t:g}": v for t, v in r.approval.items()},
                    "impact_ratio": {f"{t:g}": v for t, v in r.impact_ratio.items()},
                }
                for r in self.rows
            ],
            "flags": [
                {"column": f.column, "group": f.group, "threshold": f.threshold,
                 "ratio": f.ratio} for f in self.flags
            ],
        }


def fairness_report(
    scores: npt.NDArray[np.float64],
    bad: npt.NDArray[np.int64],
    groups: Mapping[str, Sequence[str] | npt.NDArray[np.object_]],
    thresholds: Sequence[float],
    *,
    scores_name: str = "scores",
) -> FairnessReport:
    """Compute the report; ``groups`` maps each grouping column to one label per row."""
    if not thresholds:
        raise InputError("thresholds: at least one tier threshold is required")
    ts = tuple(sorted({float(t) for t in thresholds}))
    rows: list[GroupRow] = []
    flags: list[Flag] = []
    for column, labels in groups.items():
        lab = np.asarray(labels, dtype=object)
        if lab.shape[0] != scores.shape[0]:
            raise InputError(f"{column}: {lab.shape[0]} labels for {scores.shape[0]} scores")
        column_rows = [_group_row(column, str(g), scores[lab == g], bad[lab == g], ts)
                       for g in sorted({str(v) for v in lab})]
        best = {t: max((r.approval[t] or 0.0 for r in column_rows if not r.suppressed),
                       default=0.0) for t in ts}
        for r in column_rows:
            ratios: dict[float, float | None] = {}
            for t in ts:
                rate = r.approval[t]
                ratios[t] = None if rate is None or best[t] <= 0 else rate / best[t]
                ratio = ratios[t]
                if ratio is not None and below_four_fifths(ratio):
                    flags.append(Flag(column, r.group, t, ratio))
            rows.append(GroupRow(r.column, r.group, r.n, r.suppressed, r.bad_rate, r.auc,
                                 r.approval, ratios))
    return FairnessReport(ts, tuple(rows), tuple(flags), scores_name)


def _group_row(
    column: str, group: str, s: npt.NDArray[np.float64], b: npt.NDArray[np.int64],
    thresholds: tuple[float, ...],
) -> GroupRow:
    n = int(s.shape[0])
    if n < MIN_GROUP:
        return GroupRow(column, group, n, True, None, None, dict.fromkeys(thresholds),
                        dict.fromkeys(thresholds))
    n_bad = int(b.sum())
    group_auc = auc(s, b) if 0 < n_bad < n else None
    approval: dict[float, float | None] = {t: float(np.mean(s >= t)) for t in thresholds}
    return GroupRow(column, group, n, False, n_bad / n, group_auc, approval,
                    dict.fromkeys(thresholds))
