"""The model artifact: a scorecard as deterministic JSON, named and verified by its hash.

An artifact holds everything scoring needs and nothing executable: per feature its
bin edges (numerical) or category lists (categorical), the points of every bin, of
the special and the missing bin (and the rule that gave those two their points), the
feature's name, category and description in words; the score range and scaling; the
target; training metadata, with the audit (:mod:`trustledger.models.audit`). It is
never a pickle.

Its *content hash* is the SHA-256 of its canonical JSON (keys sorted, no spaces,
UTF-8, floats in shortest round-trip form), so the same model always has the same
hash. It is stored as ``<hash>.json`` in a models folder; :func:`load_artifact`
recomputes the hash and refuses a file whose content does not match its name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from trustledger.errors import InputError, IntegrityError, NotFoundError, TrustLedgerError

FORMAT = "trustledger.scorecard/1"
"""The artifact format this module writes and reads."""

_HASH = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{8,64}")

Kind = Literal["numerical", "categorical"]
"""How a feature is binned: by edges on a number, or by lists of categories."""

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
"""A JSON value."""


class ArtifactIntegrityError(IntegrityError):
    """A model artifact's content does not match the hash it is named by."""

    def __init__(self, path: Path, reason: str) -> None:
        # IntegrityError's constructor words its message for ledger entries.
        TrustLedgerError.__init__(self, f"model artifact {path}: {reason}")
        self.seq = -1
        self.reason = reason
        self.path = path


@dataclass(frozen=True)
class FeatureBins:
    """One feature of a scorecard: how values fall into bins and the points of each bin.

    Numerical: bin ``i`` holds ``splits[i-1] <= x < splits[i]`` (the first bin is
    open below, the last open above). Categorical: bin ``i`` holds the categories
    ``categories[i]``; a category seen in no bin scores as missing. Special codes
    fall in the special bin, ``None``/NaN in the missing bin.
    """

    name: str
    description: str
    category: str
    kind: Kind
    splits: tuple[float, ...]
    categories: tuple[tuple[str, ...], ...]
    labels: tuple[str, ...]
    """Each bin in words, for reason codes and the model card."""
    points: tuple[float, ...]
    special_codes: tuple[float | str, ...]
    special_points: float
    missing_points: float
    special_rule: str = ""
    """How the special bin got its points (``evidence``, ``too few rows: least favourable``…);
    empty in artifacts that do not say."""
    missing_rule: str = ""
    """How the missing bin got its points (``evidence``, ``capped at least favourable``…)."""

    @property
    def n_bins(self) -> int:
        """Number of regular bins (without the special and missing bins)."""
        return len(self.points)

    @property
    def max_points(self) -> float:
        """The most points this feature can give."""
        return max((*self.points, self.special_points, self.missing_points))

    @property
    def min_points(self) -> float:
        """The fewest points this feature can give."""
        return min((*self.points, self.special_points, self.missing_points))

    def label(self, bin_index: int) -> str:
        """Words for a bin index (``n_bins`` is the special bin, ``n_bins + 1`` missing)."""
        if bin_index < self.n_bins:
            return self.labels[bin_index]
        if bin_index == self.n_bins:
            codes = ", ".join(str(s) for s in self.special_codes)
            return f"a special value ({codes})" if codes else "a special value"
        return "not reported"


@dataclass(frozen=True)
class ScorecardArtifact:
    """A statistical scorecard: features with their bins and points, range, metadata."""

    features: tuple[FeatureBins, ...]
    intercept: float
    score_range: tuple[int, int]
    scaling: Mapping[str, Json]
    target: Mapping[str, Json]
    training: Mapping[str, Json] = field(default_factory=dict)

    def to_document(self) -> dict[str, Json]:
        """The artifact as a JSON-ready document (the form that is hashed)."""
        return {
            "format": FORMAT,
            "features": [_feature_document(f) for f in self.features],
            "intercept": self.intercept,
            "range": list(self.score_range),
            "scaling": dict(self.scaling),
            "target": dict(self.target),
            "training": dict(self.training),
        }

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_document`."""
        return hashlib.sha256(canonical_json(self.to_document())).hexdigest()

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features' names, in scoring order."""
        return tuple(f.name for f in self.features)


def canonical_json(document: Json) -> bytes:
    """The canonical bytes of a JSON document: sorted keys, no spaces, UTF-8, no NaN."""
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError as exc:
        raise InputError(f"artifact: not representable as JSON: {exc}") from exc
    return text.encode("utf-8")


def _feature_document(f: FeatureBins) -> dict[str, Json]:
    bins: list[Json] = []
    for i, (label, points) in enumerate(zip(f.labels, f.points, strict=True)):
        entry: dict[str, Json] = {"label": label, "points": points}
        if f.kind == "categorical":
            entry["categories"] = list(f.categories[i])
        bins.append(entry)
    document: dict[str, Json] = {
        "name": f.name,
        "description": f.description,
        "category": f.category,
        "kind": f.kind,
        "splits": list(f.splits),
        "bins": bins,
        "special_codes": list(f.special_codes),
        "special_points": f.special_points,
        "missing_points": f.missing_points,
    }
    # Written only when known, so artifacts made before the rules existed keep their hash.
    if f.special_rule:
        document["special_rule"] = f.special_rule
    if f.missing_rule:
        document["missing_rule"] = f.missing_rule
    return document


def _get(obj: Mapping[str, Json], key: str, where: str) -> Json:
    if key not in obj:
        raise InputError(f"{where}.{key}: missing")
    return obj[key]


def _number(value: Json, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: must be a finite number")
    return float(value)


def _text(value: Json, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: must be a text")
    return value


def _list(value: Json, where: str) -> list[Json]:
    if not isinstance(value, list):
        raise InputError(f"{where}: must be a list")
    return value


def _object(value: Json, where: str) -> dict[str, Json]:
    if not isinstance(value, dict):
        raise InputError(f"{where}: must be an object")
    return value


def _feature_from(doc: Json, where: str) -> FeatureBins:
    obj = _object(doc, where)
    kind = _text(_get(obj, "kind", where), f"{where}.kind")
    if kind not in ("numerical", "categorical"):
        raise InputError(f"{where}.kind: must be numerical or categorical")
    bins = [_object(b, f"{where}.bins[{i}]")
            for i, b in enumerate(_list(_get(obj, "bins", where), f"{where}.bins"))]
    if not bins:
        raise InputError(f"{where}.bins: at least one bin is required")
    splits = tuple(_number(s, f"{where}.splits[{i}]")
                   for i, s in enumerate(_list(_get(obj, "splits", where), f"{where}.splits")))
    categories: tuple[tuple[str, ...], ...] = ()
    if kind == "numerical":
        if len(splits) != len(bins) - 1 or list(splits) != sorted(set(splits)):
            raise InputError(f"{where}.splits: must be {len(bins) - 1} increasing edges")
    else:
        if splits:
            raise InputError(f"{where}.splits: a categorical feature has no edges")
        categories = tuple(
            tuple(_text(c, f"{where}.bins[{i}].categories")
                  for c in _list(_get(b, "categories", f"{where}.bins[{i}]"),
                                 f"{where}.bins[{i}].categories"))
            for i, b in enumerate(bins)
        )
        flat = [c for cats in categories for c in cats]
        if len(flat) != len(set(flat)):
            raise InputError(f"{where}.bins: a category is in more than one bin")
    specials: list[float | str] = []
    for i, s in enumerate(_list(_get(obj, "special_codes", where), f"{where}.special_codes")):
        if kind == "numerical":
            specials.append(_number(s, f"{where}.special_codes[{i}]"))
        else:
            specials.append(_text(s, f"{where}.special_codes[{i}]"))
    return FeatureBins(
        name=_text(_get(obj, "name", where), f"{where}.name"),
        description=_text(_get(obj, "description", where), f"{where}.description"),
        category=_text(_get(obj, "category", where), f"{where}.category"),
        kind=cast(Kind, kind),
        splits=splits,
        categories=categories,
        labels=tuple(_text(_get(b, "label", f"{where}.bins[{i}]"), f"{where}.bins[{i}].label")
                     for i, b in enumerate(bins)),
        points=tuple(_number(_get(b, "points", f"{where}.bins[{i}]"),
                             f"{where}.bins[{i}].points") for i, b in enumerate(bins)),
        special_codes=tuple(specials),
        special_points=_number(_get(obj, "special_points", where), f"{where}.special_points"),
        missing_points=_number(_get(obj, "missing_points", where), f"{where}.missing_points"),
        special_rule=_text(obj.get("special_rule", ""), f"{where}.special_rule"),
        missing_rule=_text(obj.get("missing_rule", ""), f"{where}.missing_rule"),
    )


def artifact_from_document(document: Json) -> ScorecardArtifact:
    """Validate a parsed artifact document; each problem names its key path."""
    obj = _object(document, "artifact")
    if obj.get("format") != FORMAT:
        raise InputError(f"artifact.format: expected {FORMAT!r}, got {obj.get('format')!r}")
    features = tuple(_feature_from(f, f"features[{i}]")
                     for i, f in enumerate(_list(_get(obj, "features", "artifact"), "features")))
    names = [f.name for f in features]
    if not features or len(names) != len(set(names)):
        raise InputError("features: at least one, with distinct names, is required")
    score_range = _list(_get(obj, "range", "artifact"), "range")
    if len(score_range) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in score_range
    ):
        raise InputError("range: must be two integers")
    low, high = cast(list[int], score_range)
    return ScorecardArtifact(
        features=features,
        intercept=_number(_get(obj, "intercept", "artifact"), "intercept"),
        score_range=(low, high),
        scaling=_object(_get(obj, "scaling", "artifact"), "scaling"),
        target=_object(_get(obj, "target", "artifact"), "target"),
        training=_object(_get(obj, "training", "artifact"), "training"),
    )


MODELS_DIR_ENV = "TRUSTLEDGER_MODELS"
"""The environment variable naming the models folder."""


def default_models_dir() -> Path:
    """The models folder: ``$TRUSTLEDGER_MODELS``, else ``$TRUSTLEDGER_DATA/models``.

    The CLI's ``--models`` and a policy's statistical scorecards both use it.
    """
    named = os.environ.get(MODELS_DIR_ENV)
    if named:
        return Path(named)
    from trustledger.config import data_dir

    return data_dir() / "models"


def artifact_path(models_dir: Path, content_hash: str) -> Path:
    """Where the artifact with this hash lives in a models folder."""
    return models_dir / f"{content_hash}.json"


def save_artifact(artifact: ScorecardArtifact, models_dir: Path) -> Path:
    """Write the artifact as ``<hash>.json`` (canonical bytes) and return its path."""
    models_dir.mkdir(parents=True, exist_ok=True)
    data = canonical_json(artifact.to_document())
    path = artifact_path(models_dir, hashlib.sha256(data).hexdigest())
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def resolve_hash(models_dir: Path, reference: str) -> str:
    """The full hash of the one artifact whose hash is or starts with ``reference``."""
    ref = reference.strip().lower()
    if not _PREFIX.fullmatch(ref):
        raise InputError(f"model hash {reference!r}: expected 8 to 64 hexadecimal digits")
    if _HASH.fullmatch(ref):
        if not artifact_path(models_dir, ref).is_file():
            raise NotFoundError(f"no model artifact {ref} in {models_dir}")
        return ref
    matches = sorted(p.stem for p in models_dir.glob(f"{ref}*.json") if _HASH.fullmatch(p.stem))
    if not matches:
        raise NotFoundError(f"no model artifact starting with {ref} in {models_dir}")
    if len(matches) > 1:
        raise InputError(f"model hash prefix {ref} is ambiguous: {', '.join(matches)}")
    return matches[0]


def list_artifacts(models_dir: Path) -> list[str]:
    """The hashes of the artifacts in a models folder, sorted (not verified)."""
    if not models_dir.is_dir():
        return []
    return sorted(p.stem for p in models_dir.glob("*.json") if _HASH.fullmatch(p.stem))


def load_artifact(models_dir: Path, content_hash: str) -> ScorecardArtifact:
    """Load the artifact named by its full hash, verifying that its content matches it.

    Raises :class:`NotFoundError` when there is none, :class:`ArtifactIntegrityError`
    when the content's hash differs from the name (a tampered or corrupted file) or
    the file is not valid JSON.
    """
    if not _HASH.fullmatch(content_hash):
        raise InputError(f"model hash {content_hash!r}: expected 64 hexadecimal digits")
    path = artifact_path(models_dir, content_hash)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"no model artifact {content_hash} in {models_dir}") from exc
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactIntegrityError(path, f"not valid JSON ({exc})") from exc
    try:
        actual = hashlib.sha256(canonical_json(document)).hexdigest()
    except InputError as exc:
        raise ArtifactIntegrityError(path, str(exc)) from exc
    if actual != content_hash:
        raise ArtifactIntegrityError(path, f"content hash is {actual}, not {content_hash}")
    return artifact_from_document(document)

