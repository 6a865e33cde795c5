"""The policy document as Pydantic models: the shape of the language.

These models check the *shape* of a policy (keys, types, value ranges) and are
the source of its JSON Schema. Cross-references (an event type a scorecard
names, a metric a condition uses) are checked when the policy is compiled
(:mod:`trustledger.policy.compiled`), and the safeguards by the linter
(:mod:`trustledger.policy.linter`). Every model refuses unknown keys.

``docs/policy-language.md`` documents every key below; a test keeps them in step.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    Tag,
    WithJsonSchema,
    model_validator,
)

from trustledger.policy.durations import DURATION_REGEX, Duration
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, Gravity

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""An identifier: lower-case letters, digits and underscores, starting with a letter."""

TierName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+\-]{0,31}$")]
"""A tier's name: letters, digits, ``_``, ``+`` and ``-`` (``AAA``, ``B``, ``650-699``)."""

Number = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite number written as a YAML number (``"5"`` in quotes, ``.inf`` and ``.nan`` are
refused)."""

Expression = Annotated[
    str,
    StringConstraints(min_length=1),
    WithJsonSchema({"type": "string", "description": "A CEL expression"}),
]
"""A CEL expression, compiled once when the policy is loaded."""


def _parse_duration(value: Any) -> Duration:
    if isinstance(value, Duration):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration is written as an ISO 8601 string, e.g. P5Y, P30D, PT12H")
    return Duration.parse(value)


DurationField = Annotated[
    Duration,
    PlainValidator(_parse_duration),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_REGEX, "examples": ["P5Y", "P30D"]}),
]
"""An ISO 8601 duration such as ``P5Y``, ``P6M``, ``P30D`` or ``PT12H``."""


def _parse_instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a date-time needs a time zone, e.g. 2026-01-01T00:00:00Z")
        return datetime.fromtimestamp(value.timestamp(), UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date or date-time") from exc
        if parsed.tzinfo is None and "T" in value:
            raise ValueError("a date-time needs a time zone, e.g. 2026-01-01T00:00:00Z")
        return _parse_instant(parsed.date() if parsed.tzinfo is None else parsed)
    raise ValueError("expected a date (2026-01-01) or a date-time with a time zone")


Instant = Annotated[
    datetime,
    PlainValidator(_parse_instant),
    PlainSerializer(lambda v: v.isoformat(), return_type=str),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date"},
                              {"type": "string", "format": "date-time"}]}),
]
"""A date (midnight UTC) or a time-zone-aware date-time, normalised to UTC."""

Category = Annotated[
    str,
    WithJsonSchema({"type": "string", "enum": sorted(ALLOWED_CATEGORIES)}),
]
"""A category of the fixed taxonomy; checked by the linter (safeguard 1), not here."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AttributeType(StrEnum):
    """The type of an event attribute."""

    INTEGER = "integer"
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    ENUM = "enum"
    DATE = "date"


class Attribute(_Model):
    """One attribute of an event type: its type, bounds and whether it must be present."""

    type: AttributeType
    description: str = ""
    required: bool = True
    minimum: Number | None = None
    maximum: Number | None = None
    values: tuple[Annotated[str, StringConstraints(min_length=1)], ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Attribute:
        numeric = self.type in (AttributeType.INTEGER, AttributeType.NUMBER)
        if (self.minimum is not None or self.maximum is not None) and not numeric:
            raise ValueError("minimum/maximum apply only to integer and number attributes")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        if self.type is AttributeType.ENUM and not self.values:
            raise ValueError("an enum attribute needs its values")
        if self.type is not AttributeType.ENUM and self.values is not None:
            raise ValueError("values apply only to enum attributes")
        return self


class LookupPoints(_Model):
    """Points chosen from a table by an enum attribute (e.g. -5 to -50 by severity)."""

    lookup: Name
    values: dict[str, Number]


class FormulaPoints(_Model):
    """Points computed by a CEL formula over ``attrs``, optionally clamped to [min, max]."""

    formula: Expression
    min: Number | None = None
    max: Number | None = None


class PerStartedPoints(_Model):
    """``each`` points per started ``per_started`` units of a numeric attribute ``of``."""

    each: Number
    per_started: Annotated[float, Strict(), AllowInfNan(False), Field(gt=0)]
    of: Name
    max_periods: Annotated[int, Strict(), Field(gt=0)] | None = None


def _points_form(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "points:constant"
    if isinstance(value, dict):
        for key, tag in (("lookup", "points:lookup"), ("formula", "points:formula"),
                         ("each", "points:per_started")):
            if key in value:
                return tag
    if isinstance(value, LookupPoints | FormulaPoints | PerStartedPoints):
        return {LookupPoints: "points:lookup", FormulaPoints: "points:formula",
                PerStartedPoints: "points:per_started"}[type(value)]
    return None


Points = Annotated[
    Annotated[Number, Tag("points:constant")]
    | Annotated[LookupPoints, Tag("points:lookup")]
    | Annotated[FormulaPoints, Tag("points:formula")]
    | Annotated[PerStartedPoints, Tag("points:per_started")],
    Discriminator(
        _points_form,
        custom_error_type="points_form",
        custom_error_message=(
            "points must be a number, or a mapping with `lookup` (table by attribute), "
            "`formula` (CEL over attrs) or `each` (per started period)"
        ),
    ),
]
"""The four forms of event points."""


class Decay(_Model):
    """Exponential decay: points halve every ``half_life`` (an exact length: weeks, days, hours)."""

    half_life: DurationField


class Anchor(StrEnum):
    """What an expiry is counted from."""

    OCCURRED_AT = "occurred_at"
    RECORDED_AT = "recorded_at"


def _parse_anchor(value: Any) -> Anchor | str:
    if isinstance(value, Anchor):
        return value
    if isinstance(value, str):
        if value in Anchor.__members__.values():
            return Anchor(value)
        if re.fullmatch(NAME_PATTERN, value):
            return value
    raise ValueError("`from` is occurred_at, recorded_at or the name of a date attribute of "
                     "the event type")


ExpiryAnchor = Annotated[
    Anchor | str,
    PlainValidator(_parse_anchor),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "string", "enum": [a.value for a in Anchor]},
                              {"type": "string", "pattern": NAME_PATTERN,
                               "description": "a date attribute of the event type"}]}),
]
"""What an expiry counts from: ``occurred_at``, ``recorded_at`` or a ``date`` attribute."""


class Expiry(_Model):
    """Hard expiry ``after`` a duration from an anchor, with an optional overhang.

    ``from`` is ``occurred_at``, ``recorded_at`` or the name of a ``date`` attribute of
    the event type: a date the source reports (e.g. when a decision became final).
    """

    after: DurationField
    from_: ExpiryAnchor = Field(default=Anchor.OCCURRED_AT, alias="from")
    overhang: DurationField | None = None


DECLARED_KEYS = ("label", "description", "domain", "category", "gravity", "attributes",
                 "formality")
"""What the event-type register declares of a type; a policy writing one is refused
(rule ``register-declares``)."""


class EventType(_Model):
    """How a policy scores a registered event type: points, condition and life span.

    What the type *is* (label, description, domain, category, gravity, attributes) is
    declared once in the event-type register (:mod:`trustledger.policy.register`).
    """

    points: Points
    when: Expression | None = None
    decay: Decay | None = None
    expiry: Expiry | None = None
    retention: DurationField


class Aggregate(StrEnum):
    """How a metric aggregates the events it selects."""

    COUNT = "count"
    SUM = "sum"


class Sign(StrEnum):
    """Selects events by the sign of their points."""

    NEGATIVE = "negative"
    POSITIVE = "positive"


class MetricValue(StrEnum):
    """Which points a ``sum`` metric adds up."""

    CURRENT = "current"
    ORIGINAL = "original"


class Metric(_Model):
    """A count or sum over counted events, in a rolling window, filtered."""

    description: str = ""
    aggregate: Aggregate
    value: MetricValue = MetricValue.CURRENT
    window: DurationField | None = None
    scorecard: Name | None = None
    types: tuple[Name, ...] | None = None
    domains: tuple[Name, ...] | None = None
    categories: tuple[str, ...] | None = None
    min_gravity: Gravity | None = None
    sign: Sign | None = None


class CapPeriod(StrEnum):
    """A calendar period (UTC) over which a cap counts."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class CapDirection(StrEnum):
    """Whether a cap limits gains (positive points) or losses (negative points)."""

    GAINS = "gains"
    LOSSES = "losses"


class Cap(_Model):
    """At most ``max`` points gained (or lost) per calendar ``period``, except ``exempt`` types."""

    period: CapPeriod
    max: Annotated[float, Strict(), AllowInfNan(False), Field(gt=0)]
    applies_to: CapDirection = CapDirection.GAINS
    exempt: tuple[Name, ...] = ()


class ThresholdChange(_Model):
    """A tier's lower bound that applies from a date on."""

    from_: Instant = Field(alias="from")
    min: Number


class Tier(_Model):
    """A band of a scorecard: from ``min`` (inclusive) up to the next tier's ``min``."""

    name: TierName
    label: str | None = None
    min: Number | None = None
    changes: tuple[ThresholdChange, ...] = ()


class Polarity(StrEnum):
    """Whether a higher score is better for the subject (trust) or worse (penalty points)."""

    BETTER = "better"
    WORSE = "worse"


class Scorecard(_Model):
    """A score: ``base`` plus the points of the events it uses, clamped to [floor, ceiling]."""

    # Excluded from dumps so rule-based scorecards hash as they did before `kind` existed.
    kind: Literal["rules"] = Field(default="rules", exclude=True)
    label: str | None = None
    description: str = ""
    events: tuple[Name, ...] = Field(min_length=1)
    higher_is: Polarity = Polarity.BETTER
    base: Number = 0.0
    floor: Number | None = None
    ceiling: Number | None = None
    opt_in: bool = False
    caps: tuple[Cap, ...] = ()
    tiers: tuple[Tier, ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> Scorecard:
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ValueError("floor is greater than ceiling")
        return self


class FeatureSource(_Model):
    """Where a statistical scorecard's feature comes from: a metric, or a decision-time attribute.

    ``metric`` names a metric of the policy (its value at ``valid_at``); ``attribute``
    names a value the relying party supplies with the decision request.
    """

    metric: Name | None = None
    attribute: Name | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FeatureSource:
        if (self.metric is None) == (self.attribute is None):
            raise ValueError("a feature comes from exactly one of `metric` or `attribute`")
        return self


class StatisticalScorecard(_Model):
    """A score given by a trained model artifact (``trustledger model train``), named by hash.

    Every feature of the model is mapped to a metric of the policy or to an attribute
    supplied at decision time; the score is the model's points for those values.
    """

    kind: Literal["statistical"]
    label: str | None = None
    description: str = ""
    model: Annotated[str, StringConstraints(min_length=1)]
    domain: Name
    range: tuple[Annotated[int, Strict()], Annotated[int, Strict()]]
    features: dict[Annotated[str, StringConstraints(min_length=1)], FeatureSource] = Field(
        min_length=1)
    opt_in: bool = False
    tiers: tuple[Tier, ...] = ()


def _scorecard_kind(value: Any) -> str | None:
    kind = value.get("kind", "rules") if isinstance(value, dict) else getattr(value, "kind", None)
    return {"rules": "scorecard:rules", "statistical": "scorecard:statistical"}.get(str(kind))


AnyScorecard = Annotated[
    Annotated[Scorecard, Tag("scorecard:rules")]
    | Annotated[StatisticalScorecard, Tag("scorecard:statistical")],
    Discriminator(
        _scorecard_kind,
        custom_error_type="scorecard_kind",
        custom_error_message="`kind` of a scorecard is `rules` (the default) or `statistical`",
    ),
]
"""A rule-based scorecard (the default) or a statistical one (``kind: statistical``)."""


class MeasureKind(StrEnum):
    """A privilege (granted or denied) or a restriction (active or inactive)."""

    PRIVILEGE = "privilege"
    RESTRICTION = "restriction"


class SetBack(_Model):
    """Points set back to a stated value when a step is reached without its prerequisite.

    The score of ``scorecard`` is set to ``to`` (when it is worse than ``to`` for the
    subject), as the German driving register sets 8 points back to 7 when no warning
    had been given.
    """

    scorecard: Name
    to: Number


class Prerequisite(_Model):
    """Another measure that must have been given (in force, for ``notice``) before this one.

    Without ``notice`` the prerequisite must merely have been in force before the
    decision instant. ``set_back`` sets the points back instead of letting the
    measure wait for a new event after the notice.
    """

    measure: Name
    notice: DurationField | None = None
    set_back: SetBack | None = None


class Measure(_Model):
    """A privilege or restriction decided by a CEL condition over metrics, scores and measures."""

    kind: MeasureKind
    label: str | None = None
    description: str = ""
    domain: Name
    severity: Gravity | None = None
    condition: Expression
    requires: Prerequisite | None = None
    hold: DurationField | None = None

    @model_validator(mode="after")
    def _severity(self) -> Measure:
        if self.kind is MeasureKind.RESTRICTION and self.severity is None:
            raise ValueError("a restriction must declare its severity (minor..grave)")
        return self


class Purpose(_Model):
    """A declared purpose a relying party asks decisions for, and what a decision discloses.

    A decision for a purpose returns only the measures (and scorecards) listed here;
    the linter keeps every disclosed measure inside the purpose's domain.
    """

    label: str
    description: str = ""
    domain: Name
    measures: tuple[Name, ...] = Field(min_length=1)
    scorecards: tuple[Name, ...] = ()


class Policy(_Model):
    """A policy document: one version of a scoring programme's rules."""

    policy: Name
    title: str
    description: str = ""
    effective_from: Instant
    event_types: dict[Name, EventType] = Field(min_length=1)
    metrics: dict[Name, Metric] = Field(default_factory=dict)
    scorecards: dict[Name, AnyScorecard] = Field(default_factory=dict)
    measures: dict[Name, Measure] = Field(default_factory=dict)
    purposes: dict[Name, Purpose] = Field(default_factory=dict)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy document, for editors and publishing."""
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://trustledger.example/schema/policy.json"
    schema["title"] = "trustledger policy"
    return schema

