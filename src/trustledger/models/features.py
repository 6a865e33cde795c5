"""Which columns may be a scorecard's features: categories, protected attributes, refusals.

Every feature must be declared, in a *data dictionary*, with a category from
:data:`ALLOWED_CATEGORIES` and a description in words (used in reason codes). A
column is refused as a feature — listed with the reason, never silently — when

* its declared category is a protected attribute (:data:`PROTECTED_CATEGORIES`), or
* its *name* or its *description* says it is one, whatever category it was declared
  with: both are read by the policy linter's stemmed synonym scanner
  (:func:`trustledger.terms.scan`: ``household_status``, ``applicant_years``,
  ``skin_colour``, ``hiv_status``, ``church_attendance``, ``mother_tongue``,
  ``country_of_birth``…), whose categories map onto :data:`PROTECTED_CATEGORIES`, or
* it is not declared at all.

There is no switch to override a refusal. A protected column may still be named as a
*fairness group*: it is then used only to report approval rates and AUC per group.
A name that is not protected but is a well-known *proxy* of a protected attribute
(``postcode``, ``region``, ``neighbourhood``…: :data:`KNOWN_PROXY_WORDS`) is allowed,
flagged on the model card and measured by the proxy screen (:mod:`trustledger.models.audit`).

Identifier-like columns and bad values are refused on their data
(:mod:`trustledger.models.inputs`).

A data dictionary is a JSON document::

    {"columns": {
        "duration_in_month": {"category": "loan_terms",
                              "description": "Duration of the credit in months"},
        "age_in_years": {"category": "age", "description": "Age", "bands": [25, 35, 50, 65]},
        "personal_status_and_sex": {"category": "sex", "description": "Sex and marital status",
                                    "groups": {"male : single": "male"}},
        "months_since_last_late_payment": {"category": "repayment_history",
                                           "description": "Months since the last late payment",
                                           "special_codes": [-1]}}}

``bands`` (numeric fairness groups: lower edges of age bands), ``groups`` (a map
from raw values to the group reported), ``special_codes`` (values binned apart
from the others) and ``kind`` (``numerical`` or ``categorical``, else read from the
data) are optional.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trustledger.errors import InputError, NotFoundError

ALLOWED_CATEGORIES: Mapping[str, str] = {
    "repayment_history": "payments on time, late, missed or defaulted",
    "amounts_owed": "debt outstanding, number of credits, utilisation",
    "credit_history": "length and kind of past credit",
    "loan_terms": "amount, duration, purpose and instalment of the credit asked for",
    "income_and_employment": "employment, income, job",
    "assets": "savings, property, collateral",
    "housing": "tenure and time at the current address",
    "obligations": "guarantors, co-debtors, other instalment plans, dependants to support",
    "contact_and_identity": "verified identity, telephone, address on record",
    "behaviour_record": "a ledger metric over accredited events (e.g. late payments in 12 months)",
}
"""Categories a feature may be declared with, and what each covers."""

PROTECTED_CATEGORIES: Mapping[str, str] = {
    "sex": "sex or gender is a protected attribute: scoring on it is discrimination",
    "marital_status": "marital or family status is a protected attribute",
    "age": "age as such is a protected attribute (it may be used for fairness grouping only)",
    "nationality": "nationality, citizenship or foreign-worker status is a protected attribute",
    "racial_or_ethnic_origin": "racial or ethnic origin is a protected attribute",
    "religion_or_belief": "religious or philosophical belief is a protected attribute",
    "political_opinion": "political opinion is a protected attribute",
    "trade_union_membership": "trade-union membership is a protected attribute",
    "health": "health or disability data is a protected attribute",
    "sexual_orientation": "sex life or sexual orientation is a protected attribute",
    "genetic_or_biometric": "genetic and biometric data are protected attributes",
    "speech_expression": "what someone says, writes or posts is out of bounds",
    "assembly_protest": "taking part in assemblies, demonstrations or protests is out of bounds",
    "association": "whom someone knows or lives with, and other people's conduct, is out of "
                   "bounds",
}
"""Protected attributes: never a feature; each maps to the reason given when refused."""

KNOWN_PROXY_WORDS: Mapping[str, str] = {
    word: "geography is a well-known proxy for racial or ethnic origin and nationality"
    for word in ("postcode", "post_code", "postal_code", "zip", "zipcode", "zip_code",
                 "region", "district", "neighbourhood", "neighborhood", "borough", "county",
                 "municipality", "census_tract", "geography", "geographic", "area_code",
                 "city", "town", "village", "province", "prefecture")
} | {
    word: "first names and surnames are well-known proxies for sex and ethnic origin"
    for word in ("first_name", "forename", "given_name", "surname", "last_name", "family_name")
} | {
    word: "language is a well-known proxy for nationality and ethnic origin"
    for word in ("language", "preferred_language")
}
"""Names that are not protected attributes but are well-known proxies for one: such a
feature is allowed, flagged on the model card, and measured by the proxy screen."""


@dataclass(frozen=True)
class ColumnSpec:
    """One data-dictionary entry: a column's category, description and options."""

    name: str
    category: str
    description: str
    special_codes: tuple[float | str, ...] = ()
    bands: tuple[float, ...] = ()
    groups: Mapping[str, str] = field(default_factory=dict)
    kind: str | None = None
    """``numerical`` or ``categorical`` when declared; else read from the data."""


@dataclass(frozen=True)
class Refusal:
    """A column refused as a feature: which, under which category, and why."""

    column: str
    category: str
    reason: str

    def __str__(self) -> str:
        return f"{self.column}: refused ({self.category}): {self.reason}"


@dataclass(frozen=True)
class FeatureSelection:
    """The outcome of checking a data set's columns against a data dictionary."""

    features: tuple[ColumnSpec, ...]
    refused: tuple[Refusal, ...]
    protected: tuple[str, ...]
    """Columns that are protected attributes (usable as fairness groups only)."""


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _protected_in(text: str) -> tuple[str, ...]:
    # The one stemmed synonym scanner of the policy linter (trustledger.terms), its
    # categories mapped onto PROTECTED_CATEGORIES.
    from trustledger.terms import FEATURE_CATEGORY, scan

    found = [FEATURE_CATEGORY[m.category] or m.category for m in scan(text)]
    return tuple(dict.fromkeys(c for c in found if c in PROTECTED_CATEGORIES))


def protected_by_name(name: str) -> tuple[str, ...]:
    """The protected categories a column's name reveals (empty when none)."""
    return _protected_in(name)


def protected_by_description(description: str) -> tuple[str, ...]:
    """The protected categories a data-dictionary description reveals (empty when none)."""
    return _protected_in(description)


def known_proxy(name: str) -> str | None:
    """Why a column's name marks it as a well-known proxy of a protected attribute, or None."""
    padded = "_" + "_".join(_tokens(name)) + "_"
    for word, reason in KNOWN_PROXY_WORDS.items():
        if f"_{word}_" in padded:
            return reason
    return None


def refusal_for(spec: ColumnSpec | None, name: str) -> Refusal | None:
    """Why this column may not be a feature, or ``None`` when it may."""
    by_name = protected_by_name(name)
    if by_name:
        reasons = "; ".join(PROTECTED_CATEGORIES[c] for c in by_name)
        return Refusal(name, by_name[0], f"{reasons} (the column name says so; no declaration "
                       "or option can override this)")
    if spec is None:
        return Refusal(name, "undeclared", "no category declared in the data dictionary")
    if spec.category in PROTECTED_CATEGORIES:
        return Refusal(name, spec.category, PROTECTED_CATEGORIES[spec.category])
    by_description = protected_by_description(spec.description)
    if by_description:
        reasons = "; ".join(PROTECTED_CATEGORIES[c] for c in by_description)
        return Refusal(name, by_description[0], f"{reasons} (its description "
                       f"{spec.description!r} says so; no declaration or option can override "
                       "this)")
    return None


def select_features(
    columns: Iterable[str],
    dictionary: Mapping[str, ColumnSpec],
    *,
    target: str,
    requested: Sequence[str] | None = None,
    row_id: str | None = None,
    elsewhere: Sequence[str] = (),
) -> FeatureSelection:
    """Check every column; return the features and each refusal with its reason.

    ``requested`` narrows the features to those named; naming a refused column
    raises :class:`InputError` with the column and the reason. The target and the
    ``row_id`` column (which joins audit data) are never features nor refusals;
    ``elsewhere`` are columns of the audit file, which the dictionary may describe.
    """
    if row_id is not None and requested is not None and row_id in requested:
        raise InputError(f"{row_id}: refused (identifier): the row id joins audit data; "
                         "it is never a feature")
    present = [c for c in columns if c not in (target, row_id)]
    known = {*present, target, *elsewhere, *([row_id] if row_id is not None else [])}
    unknown = sorted(set(dictionary) - known)
    if unknown:
        raise InputError(f"data dictionary names column(s) not in the data: {', '.join(unknown)}")
    refusals = {c: r for c in present if (r := refusal_for(dictionary.get(c), c)) is not None}
    protected = tuple(c for c, r in refusals.items() if r.category in PROTECTED_CATEGORIES)
    if requested is None:
        chosen = [c for c in present if c not in refusals]
    else:
        missing = [c for c in requested if c not in present]
        if missing:
            raise InputError(f"feature column(s) not in the data: {', '.join(missing)}")
        refused = [str(refusals[c]) for c in requested if c in refusals]
        if refused:
            raise InputError("refused as feature(s): " + "; ".join(refused))
        chosen = list(dict.fromkeys(requested))
    if not chosen:
        raise InputError("no usable feature: every column was refused or undeclared")
    return FeatureSelection(
        features=tuple(dictionary[c] for c in chosen),
        refused=tuple(refusals.values()),
        protected=protected,
    )


def _spec(name: str, raw: object) -> ColumnSpec:
    where = f"columns.{name}"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be an object")
    unknown = set(raw) - {"category", "description", "special_codes", "bands", "groups", "kind"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    category, description = raw.get("category"), raw.get("description")
    if category not in ALLOWED_CATEGORIES and category not in PROTECTED_CATEGORIES:
        allowed = ", ".join([*ALLOWED_CATEGORIES, *PROTECTED_CATEGORIES])
        raise InputError(f"{where}.category: {category!r} is not one of: {allowed}")
    if not isinstance(description, str) or not description.strip():
        raise InputError(f"{where}.description: a non-empty text is required")
    specials = raw.get("special_codes", [])
    if not isinstance(specials, list) or not all(
        isinstance(s, str | int | float) and not isinstance(s, bool) for s in specials
    ):
        raise InputError(f"{where}.special_codes: must be a list of numbers or texts")
    bands = raw.get("bands", [])
    if not isinstance(bands, list) or not all(
        isinstance(b, int | float) and not isinstance(b, bool) for b in bands
    ) or list(bands) != sorted(set(bands)):
        raise InputError(f"{where}.bands: must be a strictly increasing list of numbers")
    groups = raw.get("groups", {})
    if not isinstance(groups, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in groups.items()
    ):
        raise InputError(f"{where}.groups: must map texts to texts")
    kind = raw.get("kind")
    if kind is not None and kind not in ("numerical", "categorical"):
        raise InputError(f"{where}.kind: {kind!r} is not numerical or categorical")
    return ColumnSpec(
        name=name, category=str(category), description=description.strip(),
        special_codes=tuple(specials), bands=tuple(float(b) for b in bands), groups=dict(groups),
        kind=kind,
    )


def parse_dictionary(document: object) -> dict[str, ColumnSpec]:
    """Validate a parsed data-dictionary document; each problem names its key path."""
    if not isinstance(document, dict) or set(document) != {"columns"}:
        raise InputError('data dictionary: must be an object with the single key "columns"')
    columns = document["columns"]
    if not isinstance(columns, dict) or not columns:
        raise InputError("columns: must be a non-empty object")
    return {name: _spec(name, raw) for name, raw in columns.items()}


def load_dictionary(path: Path) -> dict[str, ColumnSpec]:
    """Read and validate a data dictionary (JSON; duplicate keys refused)."""
    if not path.is_file():
        raise NotFoundError(f"data dictionary not found: {path}")

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise InputError(f"{path}: duplicate key(s) {', '.join(dupes)}")
        return dict(pairs)

    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return parse_dictionary(document)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
