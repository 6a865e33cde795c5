"""A compiled policy: the validated model, its compiled expressions and its content hash.

:func:`load_policy` and :func:`parse_policy` are the only ways to get a
:class:`CompiledPolicy`; both validate the document, compile every expression
and run the safeguards linter, every time. There is no option to skip a step.

Times inside a compiled policy are POSIX seconds (``float``) so the engine's
arithmetic is plain float arithmetic; a policy's durations stay calendar-aware
through :class:`~trustledger.policy.durations.Duration`.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustledger.errors import InputError, NotFoundError, PolicyError
from trustledger.policy.conditions import Expression
from trustledger.policy.durations import Duration
from trustledger.policy.loader import Locator, read_document, read_yaml, validate
from trustledger.policy.models import (
    Aggregate,
    Anchor,
    AttributeType,
    CapDirection,
    CapPeriod,
    MeasureKind,
    MetricValue,
    Policy,
    Sign,
)
from trustledger.policy.taxonomy import Gravity

if TYPE_CHECKING:
    from trustledger.models.compiled import CompiledScorecard as ModelScorer
    from trustledger.models.compiled import FeatureValue, ScoreResult
    from trustledger.policy.register import Register

PointsFunction = Callable[[Mapping[str, Any]], float]
"""Computes an event's points from its (normalised) attributes.

A compiled points function raises only :class:`~trustledger.errors.PolicyError`: a CEL
error of its formula (``expression-error``), or a ``points-fault`` for an overflow, a
division by zero or a result that is not a finite number within :data:`POINTS_LIMIT`;
never a bare ``OverflowError``. :meth:`CompiledEventType.fit` turns either into a
:class:`PointsFault`.
"""

ATTRIBUTE_LIMIT = 2**53 - 1
"""The default bound of integer and number attributes: ``|value| <= 2^53 - 1``.

An attribute that declares no ``minimum`` (``maximum``) is refused below
``-ATTRIBUTE_LIMIT`` (above ``ATTRIBUTE_LIMIT``): the largest integer a JSON number
keeps exactly in every implementation (I-JSON, RFC 7493), far beyond any real count of
hours, days or money, and small enough that a points formula's ``int`` arithmetic
(64 bits in CEL) has room to work. A declared bound replaces the default on its side.
"""

POINTS_LIMIT = float(2**53 - 1)
"""The largest magnitude an event's points may have (after a formula's ``min``/``max``).

Beyond it an event's points are a fault, not a number: sums of many events then stay
finite, and so do the incremental state's forward-decay accumulators.
"""


class PointsFault(str):
    """Why attributes do not fit because their points cannot be computed (an error).

    A ``str``, so every caller that treats a misfit as text keeps working; the engine
    tells it from a schema misfit to report it as an error on the subject's record.
    """

    __slots__ = ()


Fitted = tuple[dict[str, Any], float]
"""An event's normalised attributes and its points (before ``when``, caps and decay)."""


@dataclass(frozen=True, slots=True)
class CompiledAttribute:
    """An attribute's type and bounds, ready to check event attributes against."""

    name: str
    type: AttributeType
    required: bool
    minimum: float | None
    maximum: float | None
    values: frozenset[str] | None

    @property
    def low(self) -> float:
        """The effective lower bound: ``minimum``, or ``-ATTRIBUTE_LIMIT`` without one."""
        return self.minimum if self.minimum is not None else -ATTRIBUTE_LIMIT

    @property
    def high(self) -> float:
        """The effective upper bound: ``maximum``, or ``ATTRIBUTE_LIMIT`` without one."""
        return self.maximum if self.maximum is not None else ATTRIBUTE_LIMIT


@dataclass(frozen=True, eq=False)
class CompiledEventType:
    """An event type with its points rule compiled and its durations resolved."""

    name: str
    label: str
    domain: str
    category: str
    gravity: Gravity
    attributes: tuple[CompiledAttribute, ...]
    points: PointsFunction
    points_rule: str
    when: Expression | None
    half_life: float | None
    half_life_text: Duration | None
    expiry: Duration | None
    expiry_from: Anchor
    overhang: Duration | None
    retention: Duration
    scorecards: tuple[str, ...]
    expiry_attribute: str | None = None
    """The ``date`` attribute the expiry counts from (``expiry.from: <name>``); when set,
    ``expiry_from`` is meaningless and every path must use :meth:`expiry_anchor`."""
    probe_values: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    """Numbers the ``when`` condition or points formula compares each numeric attribute
    with (and one either side): probing tries them, so an event that counts only at
    ``attrs.days == 13`` is not hidden from the proportionality probe."""
    formality: bool = False
    """The register declares the type a formality (``formality: true``): the probe counts
    it as neutral whatever its points."""

    def normalise(self, attributes: Mapping[str, Any], *, occurred_at: datetime | None = None,
                  recorded_at: datetime | None = None) -> dict[str, Any] | str:
        """Attributes checked and typed by the schema, or why they do not fit.

        Integers stay ``int``, numbers become ``float``; each numeric value must lie in
        its declared bounds, or within :data:`ATTRIBUTE_LIMIT` on a side with none.
        Attributes whose points cannot be computed (an arithmetic fault in the points
        rule, see :data:`PointsFunction`) do not fit either, so every path that checks
        an event (ingest, the engines, disputes, what-if) refuses it the same way. Given
        ``occurred_at`` and ``recorded_at``, reported dates are checked too (see
        :meth:`check_dates`; at ingest ``recorded_at`` is the moment of appending).
        """
        fitted = self.fit(attributes, occurred_at=occurred_at, recorded_at=recorded_at)
        return fitted if isinstance(fitted, str) else fitted[0]

    def fit(self, attributes: Mapping[str, Any], *, occurred_at: datetime | None = None,
            recorded_at: datetime | None = None) -> Fitted | str:
        """The normalised attributes and the points they give, or why they do not fit.

        :meth:`normalise` and the points in one step (each computed once): the one
        check every ingest path and every engine makes of an event's attributes.
        Given the event's ``occurred_at`` and ``recorded_at`` (at ingest: the moment
        of appending), its reported dates are checked too (:meth:`check_dates`).
        """
        normal = self._schema(attributes)
        if isinstance(normal, str):
            return normal
        if occurred_at is not None and recorded_at is not None:
            problem = self.check_dates(normal, occurred_at, recorded_at)
            if problem is not None:
                return problem
        try:
            return normal, self.points(normal)
        except PolicyError as exc:
            return PointsFault(f"its points cannot be computed ({exc.problems[0].message})")

    def check_dates(self, normal: Mapping[str, Any], occurred_at: datetime,
                    recorded_at: datetime) -> str | None:
        """Why the reported dates of normalised attributes cannot be true, or ``None``.

        A ``date`` attribute is something the source reports about the past: it is
        never later than the event's ``recorded_at`` (the ledger's clock when it was
        appended). The date the expiry counts from (``expiry.from``) is moreover never
        earlier than ``occurred_at``: a decision about an offence becomes final after
        the offence. The ingest validators and every engine apply this one rule.
        """
        for spec in self.attributes:
            if spec.type is not AttributeType.DATE or spec.name not in normal:
                continue
            moment = parse_reported(normal[spec.name])
            if moment > recorded_at:
                return (f"{spec.name}={normal[spec.name]} is later than the event's recorded_at "
                        f"{recorded_at.astimezone(UTC).isoformat()}; a reported date cannot "
                        "be in the future of the ledger")
            if spec.name == self.expiry_attribute and moment < occurred_at:
                return (f"{spec.name}={normal[spec.name]} is earlier than the event's "
                        f"occurred_at {occurred_at.astimezone(UTC).isoformat()}; the date "
                        "the expiry counts from cannot precede the event")
        return None

    def expiry_anchor(self, occurred_at: datetime, recorded_at: datetime,
                      attributes: Mapping[str, Any]) -> datetime:
        """The moment an event's expiry counts from.

        ``occurred_at``, ``recorded_at`` or the reported date named by ``expiry.from``
        (the event must fit the type).
        """
        if self.expiry_attribute is not None:
            return parse_reported(attributes[self.expiry_attribute])
        return occurred_at if self.expiry_from is Anchor.OCCURRED_AT else recorded_at

    def known_instant(self, recorded_at: datetime, attributes: Mapping[str, Any]) -> datetime:
        """When the fact an event reports became known, as measures and overhangs judge it.

        The reported date the expiry counts from (e.g. the day a decision became final),
        when the type has one; otherwise the ledger's ``recorded_at``. Backfilled
        history (all recorded on the day of an import) thus keeps its real dates.
        """
        if self.expiry_attribute is not None and self.expiry_attribute in attributes:
            return parse_reported(attributes[self.expiry_attribute])
        return recorded_at

    def _schema(self, attributes: Mapping[str, Any]) -> dict[str, Any] | str:
        declared = {a.name for a in self.attributes}
        unknown = sorted(set(attributes) - declared)
        if unknown:
            return f"unknown attribute(s) {', '.join(unknown)}"
        out: dict[str, Any] = {}
        for spec in self.attributes:
            raw = attributes.get(spec.name)
            if raw is None:
                if spec.required:
                    return f"attribute {spec.name} is missing"
                continue
            problem, value = _check_attribute(spec, raw)
            if problem is not None:
                return problem
            out[spec.name] = value
        return out


def parse_reported(value: Any) -> datetime:
    """A reported date as an aware UTC datetime.

    ``2027-03-01`` (midnight UTC) or a date-time with a zone. Raises
    :class:`ValueError` saying what is expected.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a date-time needs a time zone")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date (2027-03-01) or a date-time with a zone")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time") from None
    if parsed.tzinfo is None:
        if "T" in value or " " in value.strip():
            raise ValueError(f"{value!r} has no time zone (write e.g. {value}Z)")
        return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(f"{value!r} falls outside the years 1-9999 in UTC") from None


def reported_text(moment: datetime) -> str:
    """The canonical text of a reported date: UTC, ``2027-03-01T00:00:00Z``.

    Normalised ``date`` attributes carry this text (they anchor expiries; a policy's
    conditions and formulas may not read them: rule ``attribute-read``).
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check_attribute(spec: CompiledAttribute, value: Any) -> tuple[str | None, Any]:
    name = spec.name
    if spec.type is AttributeType.DATE:
        if isinstance(value, bool) or not isinstance(value, str | datetime | date):
            return f"{name} must be an ISO 8601 date or date-time with a zone", None
        try:
            return None, reported_text(parse_reported(value))
        except ValueError as exc:
            return f"{name}: {exc}", None
    if spec.type is AttributeType.BOOLEAN:
        return (None, value) if isinstance(value, bool) else (f"{name} must be true/false", None)
    if spec.type in (AttributeType.STRING, AttributeType.ENUM):
        if not isinstance(value, str):
            return f"{name} must be a string", None
        if spec.values is not None and value not in spec.values:
            return f"{name}={value!r} is not one of {', '.join(sorted(spec.values))}", None
        return None, value
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (isinstance(value, float) and not math.isfinite(value)):
        return f"{name} must be a number", None
    if spec.type is AttributeType.INTEGER and isinstance(value, float) \
            and not value.is_integer():
        return f"{name} must be a whole number", None
    # Bounds are compared before any conversion: float() of a huge int overflows.
    shown = str(value) if abs(value) < 1e21 else f"{value:.6g}" if isinstance(value, float) \
        else f"(an integer of {abs(value).bit_length()} bits)"
    if value < spec.low:
        default = "" if spec.minimum is not None else " (the default bound; the " \
                                                      "register declares no minimum)"
        return f"{name}={shown} is below its minimum {_bound(spec.low)}{default}", None
    if value > spec.high:
        default = "" if spec.maximum is not None else " (the default bound; the " \
                                                      "register declares no maximum)"
        return f"{name}={shown} is above its maximum {_bound(spec.high)}{default}", None
    number: int | float = int(value) if spec.type is AttributeType.INTEGER else float(value)
    return None, number


def _bound(value: float) -> str:
    """A bound as people read it: ``9007199254740991``, ``0``, ``2.5``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class CompiledMetric:
    """A metric with its event-type filter resolved to the set of types it can select."""

    name: str
    aggregate: Aggregate
    value: MetricValue
    window: Duration | None
    scorecard: str | None
    sign: Sign | None
    types: frozenset[str]


@dataclass(frozen=True, slots=True)
class CompiledCap:
    """A cap on points gained (or lost) per calendar period."""

    period: CapPeriod
    max: float
    applies_to: CapDirection
    exempt: frozenset[str]

    def period_key(self, moment: datetime) -> tuple[int, int]:
        """The calendar period (UTC) ``moment`` falls in: (year, day/week/month number)."""
        if self.period is CapPeriod.DAY:
            return (moment.year, moment.timetuple().tm_yday)
        if self.period is CapPeriod.WEEK:
            iso = moment.isocalendar()
            return (iso.year, iso.week)
        if self.period is CapPeriod.MONTH:
            return (moment.year, moment.month)
        return (moment.year, 0)


@dataclass(frozen=True, slots=True)
class CompiledTier:
    """A tier with its lower bound over time: ``(from, min)`` pairs, oldest first."""

    name: str
    label: str
    thresholds: tuple[tuple[float, float | None], ...]

    def min_at(self, at: float) -> float | None:
        """The lower bound in force at POSIX time ``at`` (``None``: no lower bound)."""
        current = self.thresholds[0][1]
        for start, value in self.thresholds[1:]:
            if start <= at:
                current = value
        return current


@dataclass(frozen=True, slots=True)
class CompiledFeature:
    """One feature of a statistical scorecard and where its value comes from."""

    name: str
    description: str
    category: str
    numerical: bool
    metric: str | None
    attribute: str | None

    @property
    def source(self) -> str:
        """Where the value comes from, in words: ``metric late_12m`` or ``attribute housing``."""
        return f"metric {self.metric}" if self.metric is not None else \
            f"attribute {self.attribute}"


@dataclass(frozen=True, eq=False)
class StatisticalModel:
    """A statistical scorecard's verified model artifact and the source of each feature.

    ``scorer`` is the models area's compiled scoring path, loaded (and its hash
    verified) once when the policy is loaded; scoring is pure arithmetic.
    """

    hash: str
    scorer: ModelScorer
    features: tuple[CompiledFeature, ...]
    score_range: tuple[int, int]

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the model's features read, in feature order, without repeats."""
        return tuple(dict.fromkeys(f.metric for f in self.features if f.metric is not None))

    def inputs(self, metrics: Mapping[str, float | int | None],
               attributes: Mapping[str, FeatureValue]) -> dict[str, FeatureValue]:
        """Each feature's value: its metric's value, or its attribute (``None``: missing)."""
        out: dict[str, FeatureValue] = {}
        for f in self.features:
            if f.metric is not None:
                value = metrics.get(f.metric)
                out[f.name] = float(value) if value is not None else None
            else:
                assert f.attribute is not None
                out[f.name] = attributes.get(f.attribute)
        return out

    def score(self, metrics: Mapping[str, float | int | None],
              attributes: Mapping[str, FeatureValue]) -> ScoreResult:
        """The model's points, per-feature points and reason codes for these inputs."""
        return self.scorer.score(self.inputs(metrics, attributes))

    def points(self, metrics: Mapping[str, float | int | None],
               attributes: Mapping[str, FeatureValue]) -> float:
        """The model's points alone for these inputs (equal to :meth:`score`'s)."""
        return self.scorer.points(self.inputs(metrics, attributes))


@dataclass(frozen=True, slots=True)
class CompiledScorecard:
    """A scorecard ready for evaluation (rule-based; statistical when ``model`` is set)."""

    name: str
    label: str
    adverse_sign: float
    base: float
    floor: float | None
    ceiling: float | None
    opt_in: bool
    events: frozenset[str]
    domains: frozenset[str]
    caps: tuple[CompiledCap, ...]
    tiers: tuple[CompiledTier, ...]
    model: StatisticalModel | None = None

    def is_adverse(self, points: float) -> bool:
        """Whether points work against the subject (negative, or positive on penalty points)."""
        return points * self.adverse_sign > 0

    def clamp(self, total: float) -> float:
        """The score for a total: ``total`` clamped to [floor, ceiling]."""
        if self.floor is not None and total < self.floor:
            return self.floor
        if self.ceiling is not None and total > self.ceiling:
            return self.ceiling
        return total

    def tier_at(self, score: float, at: float) -> tuple[int, CompiledTier] | None:
        """The tier (rank, tier) a score falls in at POSIX time ``at``; ``None`` below all."""
        for rank in range(len(self.tiers) - 1, -1, -1):
            tier = self.tiers[rank]
            low = tier.min_at(at)
            if low is None or score >= low:
                return rank, tier
        return None


@dataclass(frozen=True, eq=False)
class CompiledMeasure:
    """A measure with its condition compiled and its inputs classified."""

    name: str
    label: str
    kind: MeasureKind
    domain: str
    severity: Gravity | None
    condition: Expression
    requires: str | None
    notice: Duration | None
    hold: Duration | None
    metrics: tuple[str, ...]
    scorecards: tuple[str, ...]
    measures: tuple[str, ...]
    set_back: tuple[str, float] | None = None
    """``(scorecard, to)``: the points are set back to ``to`` when the prerequisite had
    not been given (``requires.set_back``)."""


@dataclass(frozen=True, slots=True)
class CompiledPurpose:
    """A purpose: the measures and scorecards a decision for it discloses, in its domain."""

    name: str
    label: str
    domain: str
    measures: tuple[str, ...]
    scorecards: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    """A validated, compiled and linted policy version, named by its content hash.

    Build one with :func:`load_policy` or :func:`parse_policy`. ``measures`` is
    in dependency order (a measure comes after every measure it uses).
    """

    model: Policy
    source: str
    hash: str
    effective_from: datetime
    event_types: Mapping[str, CompiledEventType]
    metrics: Mapping[str, CompiledMetric]
    scorecards: Mapping[str, CompiledScorecard]
    measures: Mapping[str, CompiledMeasure]
    locator: Locator
    register_hash: str
    """The hash of the event-type register the policy was compiled against."""
    purposes: Mapping[str, CompiledPurpose] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The programme's name (the document's ``policy`` key)."""
        return self.model.policy

    @property
    def statistical_scorecards(self) -> tuple[str, ...]:
        """The names of the statistical scorecards (``kind: statistical``)."""
        return tuple(n for n, card in self.scorecards.items() if card.model is not None)

    @property
    def attribute_anchored_types(self) -> frozenset[str]:
        """Event types whose expiry counts from a reported ``date`` attribute.

        Their expiry, their overhang witnesses and the moment they become known to the
        measures come from an attribute, not from ``occurred_at``/``recorded_at``: a
        columnar path that compares only those columns must send a subject with such
        an event to the reference :func:`~trustledger.engine.evaluate`.
        """
        return frozenset(n for n, et in self.event_types.items()
                         if et.expiry_attribute is not None)

    @property
    def set_back_scorecards(self) -> frozenset[str]:
        """Scorecards whose points a measure's ``requires.set_back`` can set back.

        Their score depends on the measures' history (the reference replay), so no
        closed form over events gives it.
        """
        return frozenset(m.set_back[0] for m in self.measures.values()
                         if m.set_back is not None)

    @property
    def replay_types(self) -> frozenset[str]:
        """Event types a subject must be evaluated with the reference engine for.

        :attr:`attribute_anchored_types` and every type on a
        :attr:`set_back_scorecards` scorecard: a batch or incremental path sends a
        subject with an event of one of these types to :func:`evaluate`.
        """
        cards = self.set_back_scorecards
        return self.attribute_anchored_types | frozenset(
            n for n, et in self.event_types.items() if cards & set(et.scorecards))

    def require_rule_based(self, path: str) -> None:
        """Refuse a scoring path that cannot compute statistical scorecards.

        Statistical scorecards need attributes supplied at decision time, which
        population and incremental paths do not have; raises
        :class:`~trustledger.errors.InputError` naming them and the path.
        """
        names = self.statistical_scorecards
        if names:
            raise InputError(
                f"{path} does not compute statistical scorecards ({', '.join(names)} of "
                f"policy {self.name}): their features include attributes supplied at "
                "decision time; evaluate such a policy per subject (trustledger score, "
                "POST /v1/decisions with attributes)")

    def tier(self, scorecard: str, score: float, at: datetime) -> str | None:
        """The name of the tier ``score`` falls in on ``scorecard`` at ``at``."""
        if scorecard not in self.scorecards:
            raise NotFoundError(f"policy {self.name} has no scorecard {scorecard!r}")
        found = self.scorecards[scorecard].tier_at(score, at.timestamp())
        return found[1].name if found else None


def content_hash(policy: Policy) -> str:
    """``sha256:<hex>`` of the policy's canonical JSON (comments and layout do not count)."""
    document = policy.model_dump(mode="json", by_alias=True)
    if not document["purposes"]:
        # A policy without purposes keeps the hash it had before purposes existed.
        del document["purposes"]
    canonical = json.dumps(document, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


KEEP_COMPILED = 64
"""How many compiled policies :func:`parse_policy` keeps (by text, file name and register)."""
_compiled: dict[tuple[str, str, str], CompiledPolicy] = {}
_compiled_lock = threading.Lock()


def parse_policy(text: str, name: str = "<policy>", *, register: Register,
                 models_dir: Path | None = None) -> CompiledPolicy:
    """Validate, compile and lint a policy document given as YAML text.

    ``name`` is used as the file name in error locations. Every event type the policy
    scores must be in ``register`` (rule ``unregistered-type``), which declares what the
    type is; the compiled event types join the register's declaration and the policy's
    scoring (:attr:`CompiledPolicy.register_hash` names the register). Statistical scorecards'
    model artifacts are read (and verified) from ``models_dir``, by default
    ``$TRUSTLEDGER_MODELS`` or ``$TRUSTLEDGER_DATA/models``; a policy without
    statistical scorecards reads nothing. Raises
    :class:`~trustledger.errors.PolicyError` (shape, references, expressions) or
    :class:`~trustledger.errors.LintError` (safeguards), each problem naming
    file, line, column, key path and rule.

    A compiled policy is immutable and, without statistical scorecards, a pure function
    of its text, file name and register, so the last :data:`KEEP_COMPILED` of those are
    kept: publishing or loading the same version again skips the parse, the compilation
    and the linter's probes. A policy with statistical scorecards is compiled every time
    (its model artifacts are read and verified again); errors are never kept.
    """
    from trustledger.policy.compiler import compile_policy
    from trustledger.policy.linter import lint

    key = (text, name, register.hash)
    with _compiled_lock:
        found = _compiled.get(key)
    if found is not None:
        return found
    root, locator = read_yaml(text, name)
    model = validate(root, locator)
    compiled = compile_policy(model, locator, content_hash(model), register=register,
                              models_dir=models_dir)
    lint(compiled)
    if not compiled.statistical_scorecards:
        with _compiled_lock:
            if len(_compiled) >= KEEP_COMPILED:
                del _compiled[next(iter(_compiled))]
            _compiled[key] = compiled
    return compiled


def load_policy(path: str | Path, *, register: Register | None = None,
                models_dir: Path | None = None) -> CompiledPolicy:
    """Read a policy file and :func:`parse_policy` it (validation and linter always run).

    Without ``register``, the ``register.yaml`` next to the file (or in the nearest folder
    above it) is loaded (:func:`~trustledger.policy.register.find_register`).
    """
    from trustledger.policy.register import find_register, load_register

    file = Path(path)
    text = read_document(file, "policy")
    if register is None:
        register = load_register(find_register(file))
    return parse_policy(text, str(file), register=register, models_dir=models_dir)
