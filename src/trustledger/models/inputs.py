"""Training data checked before any fitting: values that are not finite, mixed types, identifiers.

The value policy, for training (here) and scoring alike:

* blank, ``NaN``, ``None`` — *missing*: the value is not reported. It falls in the
  feature's missing bin, whose points come from the evidence but never exceed the
  feature's least favourable points (:mod:`trustledger.models.train`).
* ``inf`` / ``-inf`` — refused, naming the column and the row: an infinite amount is a
  data error, never a value to bin.
* a numerical column holding a text (``"12"``, ``"n/a!"``, ``"abc"``) — refused with
  the first offending value and its row, unless the data dictionary declares the
  column ``"kind": "categorical"`` (then every value is read as a text).
* an *identifier-like* column — refused as a feature, and its values are never written
  to the artifact or the card: its name says it is an identifier (``id``,
  ``customer_id``, ``uuid``…), or nearly every row has its own value (a text column
  with more than :data:`ID_DISTINCT_SHARE` of its rows distinct and more than
  :data:`ID_MIN_DISTINCT` values; an integer column that is a run of distinct
  consecutive numbers).

Rows are numbered from 1, as data rows (a CSV's header is line 1, so row ``r`` is on
line ``r + 1``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trustledger.errors import InputError
from trustledger.models.features import ColumnSpec, Refusal

ID_DISTINCT_SHARE = 0.5
"""A text column with more than this share of its rows distinct is identifier-like."""

ID_MIN_DISTINCT = 50
"""…when it also has more than this many distinct values (small tables are spared)."""

_ID_WORDS = frozenset({"id", "ids", "uuid", "guid", "identifier", "ssn", "nin", "iban",
                       "email", "phone_number", "account_number", "customer_number",
                       "application_number", "reference_number", "row_number"})


@dataclass(frozen=True)
class PreparedFeatures:
    """Feature columns as the model sees them, and the columns refused on their data."""

    frame: pd.DataFrame
    """float64 for numerical columns (NaN = missing), texts (None = missing) otherwise."""
    kinds: dict[str, str]
    refused: tuple[Refusal, ...]


def _row(position: int) -> int:
    return position + 1


def _identifier_by_name(name: str) -> bool:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]
    padded = "_" + "_".join(words) + "_"
    return any(f"_{w}_" in padded for w in _ID_WORDS)


def _identifier_by_data(values: pd.Series, kind: str) -> str | None:
    present = values.dropna()
    n = int(present.shape[0])
    if n == 0:
        return None
    distinct = int(present.nunique())
    if kind == "categorical":
        if distinct > ID_MIN_DISTINCT and distinct > ID_DISTINCT_SHARE * n:
            return (f"identifier-like: {distinct:,} distinct values in {n:,} rows (more than "
                    f"{ID_DISTINCT_SHARE:.0%} distinct)")
        return None
    x = present.to_numpy(dtype=np.float64)
    if distinct == n and n > ID_MIN_DISTINCT and bool(np.all(x == np.floor(x))) \
            and float(x.max() - x.min()) == n - 1:
        return f"identifier-like: {n:,} distinct consecutive whole numbers, one per row"
    return None


def _numbers(name: str, column: pd.Series, spec: ColumnSpec) -> pd.Series:
    values = column.astype(np.float64)
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        first = int(np.flatnonzero(infinite)[0])
        raise InputError(f"column {name}, row {_row(first)}: {values.iloc[first]} is not a "
                         f"finite number ({int(infinite.sum())} infinite value(s) in the "
                         "column); leave a value blank when it is not reported")
    if any(isinstance(s, str) for s in spec.special_codes):
        raise InputError(f"columns.{name}.special_codes: numbers expected")
    return values


def _texts(column: pd.Series) -> pd.Series:
    # One Python text per distinct value, shared by its rows: a 3-million-row column
    # costs a pointer a row, not a string object a row.
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    labels = np.asarray([str(u) for u in uniques] + [None], dtype=object)
    return pd.Series(labels[codes], index=column.index, dtype=object)


def _kind_of(name: str, column: pd.Series, spec: ColumnSpec) -> str:
    """``numerical`` or ``categorical``; refuses a numerical column holding texts."""
    if spec.kind == "categorical" or column.dtype.kind == "b":
        return "categorical"
    if column.dtype.kind in "iuf":
        return "numerical"
    # Each distinct value is parsed once (a million rows of a few hundred values: a few
    # hundred parses).
    uniques = pd.Series(column.dropna().unique(), dtype=object)
    if uniques.empty:
        return spec.kind or "categorical"
    text_values = uniques[pd.to_numeric(uniques, errors="coerce").isna().to_numpy()]
    if text_values.empty:
        return "numerical"
    if spec.kind == "numerical" or len(text_values) < len(uniques):
        is_text = column.isin(set(text_values)).to_numpy()
        position = int(np.flatnonzero(is_text)[0])
        texts = int(is_text.sum())
        numbers = int(column.notna().sum()) - texts
        why = ("declared numerical" if spec.kind == "numerical"
               else f"{numbers:,} value(s) are numbers and {texts:,} are texts")
        raise InputError(
            f"column {name}, row {_row(position)}: {str(column.iloc[position])[:40]!r} is not "
            f"a number ({why}); correct the value, leave it blank, or declare the column "
            '"kind": "categorical" in the data dictionary to read every value as a text')
    return "categorical"


def _text_identifier(column: pd.Series, spec: ColumnSpec) -> str | None:
    """An identifier-like text column, judged before any per-value work is done on it."""
    if column.dtype.kind in "iufb" or spec.kind == "numerical":
        return None
    n = int(column.notna().sum())
    distinct = int(column.nunique())
    if not (distinct > ID_MIN_DISTINCT and distinct > ID_DISTINCT_SHARE * n):
        return None
    head = pd.Series(column.dropna().unique()[:1000], dtype=object)
    if spec.kind != "categorical" and pd.to_numeric(head, errors="coerce").notna().any():
        return None  # numbers written as texts: judged as numbers below
    return (f"identifier-like: {distinct:,} distinct values in {n:,} rows (more than "
            f"{ID_DISTINCT_SHARE:.0%} distinct)")


def prepare_features(frame: pd.DataFrame, specs: Sequence[ColumnSpec],
                     requested: Sequence[str] | None = None) -> PreparedFeatures:
    """Check and convert the feature columns; identifier-like ones are refused.

    Raises :class:`InputError` naming column and row for an infinite value or a text
    in a numerical column, and for an identifier-like column named in ``requested``.
    """
    out: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    refused: list[Refusal] = []
    for spec in specs:
        column = frame[spec.name]
        # Judged on the raw column first: a million distinct ids are never parsed or
        # turned into Python texts.
        why = ("identifier-like: its name says it identifies a row"
               if _identifier_by_name(spec.name) else _text_identifier(column, spec))
        numbers = None
        kind = "categorical"
        if why is None:
            kind = _kind_of(spec.name, column, spec)
            if kind == "numerical":
                numbers = _numbers(spec.name, column if column.dtype.kind in "iuf"
                                   else pd.to_numeric(column), spec)
            why = _identifier_by_data(column if numbers is None else numbers, kind)
        if why is not None:
            reason = (f"{why}; an identifier says who someone is, not how they repay (name "
                      "it with --id to join audit data); its values are not recorded")
            if requested is not None and spec.name in requested:
                raise InputError(f"{spec.name}: refused (identifier): {reason}")
            refused.append(Refusal(spec.name, "identifier", reason))
            continue
        out[spec.name] = _texts(column) if numbers is None else numbers
        kinds[spec.name] = kind
    if not out:
        raise InputError("no usable feature: every column was refused or undeclared")
    return PreparedFeatures(pd.DataFrame(out, index=frame.index), kinds, tuple(refused))
