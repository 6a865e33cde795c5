"""Which columns may be a scorecard's features: categories, protected attributes, refusals.

Every feature must be declared, in a *data dictionary*, with a category from
:data:`ALLOWED_CATEGORIES` and a description in words (used in reason codes). A
column is refused as a feature — listed with the reason, never silently — when

* its declared category is a protected attribute (:data:`PROTECTED_CATEGORIES`), or
* its *name* says it is one (``sex``, ``gender``, ``marital``, ``age``-as-such,
  ``nationality``, ``foreign``, ``ethnicity``, ``religion``, ``health``…), whatever
  category it was declared with, or
* it is not declared at all.

There is no switch to override a refusal. A protected column may still be named as a
*fairness group*: it is then used only to report approval rates and AUC per group.

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
from raw values to the group reported) and ``special_codes`` (values binned apart
from the others) are optional.
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
}
"""Protected attributes: never a feature; each maps to the reason given when refused."""

# Name tokens that mark a column as a protected attribute whatever it was declared as.
_NAME_TOKENS: Mapping[str, str] = {
    "sex": "sex", "gender": "sex", "female": "sex", "male": "sex",
    "marital": "marital_status", "married": "marital_status", "spouse": "marital_status",
    "nationality": "nationality", "citizenship": "nationality", "citizen": "nationality",
    "foreigner": "nationality", "immigrant": "nationality", "immigration": "nationality",
    "migrant": "nationality", "ethnicity": "racial_or_ethnic_origin",
    "ethnic": "racial_or_ethnic_origin", "race": "racial_or_ethnic_origin",
    "racial": "racial_or_ethnic_origin", "religion": "religion_or_belief",
    "religious": "religion_or_belief", "faith": "religion_or_belief",
    "political": "political_opinion", "health": "health", "disability": "health",
    "disabled": "health", "pregnancy": "health", "pregnant": "health", "diagnosis": "health",
    "orientation": "sexual_orientation", "sexuality": "sexual_orientation",
    "genetic": "genetic_or_biometric", "biometric": "genetic_or_biometric",
    "dob": "age", "birth": "age", "birthday": "age", "birthdate": "age",
}
# Multi-word names (compared as joined tokens) that the single tokens above miss.
_NAME_PHRASES: Mapping[str, str] = {
    "personal_status": "marital_status", "family_status": "marital_status",
    "foreign_worker": "nationality", "foreign_national": "nationality",
    "foreign_born": "nationality", "trade_union": "trade_union_membership",
    "union_member": "trade_union_membership",
}
# "age" alone, or with only these words around it, is a person's age; "account_age" is not.
_AGE_FILLERS = frozenset({"in", "years", "year", "yrs", "of", "the", "applicant", "customer",
                          "client", "borrower", "person", "subject", "age"})


@dataclass(frozen=True)
class ColumnSpec:
    """One data-dictionary entry: a column's category, description and options."""

    name: str
    category: str
    description: str
    special_codes: tuple[float | str, ...] = ()
    bands: tuple[float, ...] = ()
    groups: Mapping[str, str] = field(default_factory=dict)


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


def protected_by_name(name: str) -> tuple[str, ...]:
    """The protected categories a column's name reveals (empty when none)."""
    tokens = _tokens(name)
    joined = "_".join(tokens)
    found = [category for phrase, category in _NAME_PHRASES.items() if phrase in joined]
    found += [_NAME_TOKENS[t] for t in tokens if t in _NAME_TOKENS]
    if "age" in tokens and set(tokens) <= _AGE_FILLERS:
        found.append("age")
    return tuple(dict.fromkeys(found))


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
    return None


def select_features(
    columns: Iterable[str],
    dictionary: Mapping[str, ColumnSpec],
    *,
    target: str,
    requested: Sequence[str] | None = None,
) -> FeatureSelection:
    """Check every column; return the features and each refusal with its reason.

    ``requested`` narrows the features to those named; naming a refused column
    raises :class:`InputError` with the column and the reason.
    """
    present = [c for c in columns if c != target]
    unknown = sorted(set(dictionary) - set(present) - {target})
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
    unknown = set(raw) - {"category", "description", "special_codes", "bands", "groups"}
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
    return ColumnSpec(
        name=name, category=str(category), description=description.strip(),
        special_codes=tuple(specials), bands=tuple(float(b) for b in bands), groups=dict(groups),
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
