"""Fairness by data: protected attributes beside the training data, the proxy screen, audit status.

*Audit attributes* are protected attributes (sex, age, ethnic origin…) known for the
training rows. They come from an **audit file** — a CSV or Parquet file with a row-id
column and one column per attribute, joined to the training data by that id
(``trustledger model train DATA --audit FILE --id COLUMN``) — or from protected
columns found in the training data itself (refused as features). Either way they are
**never features**: they are used for the fairness report (adverse-impact ratios per
group) and for the proxy screen, and then only their group labels and counts are kept.

**Proxy screen.** For every feature and every audit attribute, the association
between the feature's bins (what the model sees, the special and missing bins
included) and the attribute's groups: bias-corrected Cramér's V (Bergsma 2013; 0 = no
association, 1 = the bin determines the group) and the mutual information in bits. A
feature with V at or above :data:`PROXY_THRESHOLD` for an attribute is *flagged* as a
proxy of it: listed on the card and by the CLI, for a person to judge (a feature can
be both predictive and a proxy; the screen says so, it does not decide).

**Audit status.** A model is *audited* when at least one audit attribute had at least
two groups of :data:`~trustledger.models.fairness.MIN_GROUP` or more rows; otherwise it
is *unaudited*, and says so on its card, in the CLI, and to the policy linter through
:func:`audit_status` (a policy may not restrict anyone with an unaudited model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trustledger.errors import InputError
from trustledger.models.artifact import Json, ScorecardArtifact
from trustledger.models.fairness import MIN_GROUP

if TYPE_CHECKING:  # pandas loads only where audit data is read: the linter imports this module
    import pandas as pd

PROXY_THRESHOLD = 0.3
"""A feature whose bins have a Cramér's V at or above this with a protected attribute is
flagged as a proxy of it (0.3 is the usual lower bound of a *moderate* association)."""

NOT_REPORTED = "not reported"
"""The group of a row whose attribute is blank, or that the audit file does not list."""

AUDITED = "audited"
UNAUDITED = "unaudited"

Ints = npt.NDArray[np.int64]
GroupLabels = Sequence[str] | npt.NDArray[np.object_]
"""One group label per row."""


@dataclass(frozen=True)
class ProxyRow:
    """One feature against one protected attribute."""

    feature: str
    attribute: str
    cramers_v: float
    mutual_information_bits: float
    rows: int
    """Rows with the attribute reported (the others are left out of the measure)."""

    @property
    def flagged(self) -> bool:
        """Whether the feature is a proxy of the attribute by :data:`PROXY_THRESHOLD`."""
        return self.cramers_v >= PROXY_THRESHOLD

    def __str__(self) -> str:
        return (f"{self.feature} is a proxy of {self.attribute}: Cramér's V "
                f"{self.cramers_v:.3f} (>= {PROXY_THRESHOLD}), mutual information "
                f"{self.mutual_information_bits:.3f} bits")


@dataclass(frozen=True)
class ProxyScreen:
    """Every feature against every audit attribute, and the flagged pairs."""

    rows: tuple[ProxyRow, ...]

    @property
    def flagged(self) -> tuple[ProxyRow, ...]:
        """The pairs at or above the threshold, strongest first."""
        return tuple(sorted((r for r in self.rows if r.flagged),
                            key=lambda r: (-r.cramers_v, r.feature, r.attribute)))

    def to_document(self) -> dict[str, Json]:
        """The screen as JSON-ready data."""
        return {
            "measure": "bias-corrected Cramér's V between the feature's bins and the "
                       "attribute's groups; mutual information in bits",
            "threshold": PROXY_THRESHOLD,
            "pairs": [{"feature": r.feature, "attribute": r.attribute,
                       "cramers_v": round(r.cramers_v, 6),
                       "mutual_information_bits": round(r.mutual_information_bits, 6),
                       "rows": r.rows, "flagged": r.flagged} for r in self.rows],
        }


def _codes(labels: Sequence[object]) -> tuple[Ints, int]:
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=True)
    return np.asarray(codes, dtype=np.int64), len(uniques)


def _table(a: Ints, b: Ints) -> npt.NDArray[np.float64]:
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    counts = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    kept: npt.NDArray[np.float64] = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    return kept


def cramers_v(a: Ints, b: Ints) -> float:
    """Bias-corrected Cramér's V of two code arrays (0 when either has one value)."""
    if a.size < 2:
        return 0.0
    table = _table(a, b)
    r, k = table.shape
    if r < 2 or k < 2:
        return 0.0
    n = float(table.sum())
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    r_corr = r - (r - 1) ** 2 / (n - 1)
    k_corr = k - (k - 1) ** 2 / (n - 1)
    denominator = min(r_corr - 1, k_corr - 1)
    return 0.0 if denominator <= 0 else min(1.0, math.sqrt(phi2 / denominator))


def mutual_information_bits(a: Ints, b: Ints) -> float:
    """Mutual information of two code arrays, in bits."""
    if a.size == 0:
        return 0.0
    table = _table(a, b)
    p = table / table.sum()
    outer = np.outer(p.sum(axis=1), p.sum(axis=0))
    nz = p > 0
    return float(max(0.0, (p[nz] * np.log2(p[nz] / outer[nz])).sum()))


def proxy_screen(feature_bins: Mapping[str, Ints],
                 attributes: Mapping[str, GroupLabels]) -> ProxyScreen:
    """Measure every feature's bins (one index per row) against every attribute's groups."""
    rows = []
    for attribute, labels in attributes.items():
        label_array = np.asarray(labels, dtype=object)
        reported = label_array != NOT_REPORTED
        groups, _ = _codes(label_array[reported])
        for feature, bins in feature_bins.items():
            if bins.shape[0] != label_array.shape[0]:
                raise InputError(f"proxy screen: {feature} has {bins.shape[0]} rows, "
                                 f"{attribute} {label_array.shape[0]}")
            b = np.asarray(bins, dtype=np.int64)[reported]
            rows.append(ProxyRow(feature, attribute, cramers_v(b, groups),
                                 mutual_information_bits(b, groups), int(b.size)))
    return ProxyScreen(tuple(rows))


def read_audit(path: Path, id_column: str) -> pd.DataFrame:
    """Read an audit file: the id column (unique) and at least one attribute column."""
    from trustledger.models.train import read_table

    frame = read_table(path, what="audit file")
    if id_column not in frame.columns:
        raise InputError(f"audit file {path}: no id column {id_column!r} (columns: "
                         f"{', '.join(map(str, frame.columns))})")
    _check_ids(frame[id_column], f"audit file {path}", "id", id_column)
    return frame


def _check_ids(ids: pd.Series, where: str, noun: str, column: str) -> None:
    """Refuse a blank id or one given twice, naming the rows (counted from 1)."""
    if ids.isna().any():
        raise InputError(f"{where}, row {int(np.flatnonzero(ids.isna())[0]) + 1}: "
                         f"the {noun} {column} is blank")
    duplicated = ids.duplicated(keep=False).to_numpy()
    if duplicated.any():
        first = np.flatnonzero(duplicated)[:2]
        raise InputError(f"{where}: {noun} {ids.iloc[int(first[0])]!r} is on rows "
                         f"{int(first[0]) + 1} and {int(first[1]) + 1}: each id once")


def join_audit(ids: pd.Series, audit: pd.DataFrame, id_column: str,
               data_columns: Sequence[str], source: str) -> pd.DataFrame:
    """The audit attributes of every training row, in training order (missing: blank).

    Refuses an audit column that is also a training column (which would be used?), a
    training id given twice, and an audit file that matches no training row.
    """
    import pandas as pd

    both = sorted((set(map(str, audit.columns)) - {id_column}) & set(data_columns))
    if both:
        raise InputError(f"{source}: column(s) {', '.join(both)} are in both the training data "
                         "and the audit file: keep each protected attribute in one place")
    _check_ids(ids, "training data", "row id", id_column)
    # Ids compared as texts (compact string columns: no Python object per row).
    position = pd.Index(audit[id_column].astype(str)).get_indexer(ids.astype(str))
    found = position >= 0
    if not found.any():
        raise InputError(f"{source}: no training row's {id_column} is in the audit file")
    attributes = audit.drop(columns=[id_column])
    joined = attributes.iloc[np.where(found, position, 0)].reset_index(drop=True)
    joined = joined.where(pd.Series(found))
    joined.index = ids.index
    return joined


@dataclass(frozen=True)
class AuditStatus:
    """Whether a model was audited against protected attributes, and on which."""

    audited: bool
    attributes: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return self.reason


def audit_document(attributes: Mapping[str, GroupLabels], sources: Mapping[str, str],
                   screen: ProxyScreen, known_proxies: Mapping[str, str]) -> dict[str, Json]:
    """The ``training.audit`` section of an artifact: status, attributes, flagged proxies."""
    import pandas as pd

    usable = []
    for name, labels in attributes.items():
        counts = pd.Series(np.asarray(labels, dtype=object)).value_counts()
        counts = counts[counts.index != NOT_REPORTED]
        if int((counts >= MIN_GROUP).sum()) >= 2:
            usable.append(name)
    if usable:
        status, reason = AUDITED, (f"audited on {', '.join(usable)}: fairness report and "
                                   "proxy screen on protected attributes")
    elif attributes:
        status, reason = UNAUDITED, (f"unaudited: {', '.join(attributes)} had fewer than two "
                                     f"groups of {MIN_GROUP} or more rows")
    else:
        status, reason = UNAUDITED, ("unaudited: no protected attribute was available (give "
                                     "an audit file with --audit FILE --id COLUMN)")
    return {
        "status": status,
        "reason": reason,
        "attributes": [{"name": n, "source": sources.get(n, "training data"),
                        "usable": n in usable} for n in attributes],
        "proxy_threshold": PROXY_THRESHOLD,
        "proxies": [{"feature": r.feature, "attribute": r.attribute,
                     "cramers_v": round(r.cramers_v, 6)} for r in screen.flagged],
        "known_proxies": [{"feature": f, "reason": why} for f, why in known_proxies.items()],
    }


def audit_status(artifact: ScorecardArtifact) -> AuditStatus:
    """A model's audit status, read from its artifact (an artifact without one is unaudited).

    The policy linter calls this: a restriction may not depend on an unaudited model.
    """
    audit = artifact.training.get("audit")
    if not isinstance(audit, dict) or audit.get("status") != AUDITED:
        reason = audit.get("reason") if isinstance(audit, dict) else None
        return AuditStatus(False, (), reason if isinstance(reason, str)
                           else "unaudited: the artifact records no audit")
    listed = audit.get("attributes")
    names = tuple(str(a["name"]) for a in listed if isinstance(a, dict) and a.get("usable")) \
        if isinstance(listed, list) else ()
    reason = audit.get("reason")
    return AuditStatus(True, names, reason if isinstance(reason, str) else AUDITED)


def is_audited(artifact: ScorecardArtifact) -> bool:
    """Whether the model was audited against protected attributes (see :func:`audit_status`)."""
    return audit_status(artifact).audited
