"""Compile a validated :class:`Policy` into a :class:`CompiledPolicy`.

Checks every cross-reference (types a scorecard or metric names, names a
condition uses, prerequisites, tier order, half-lives, retention) and compiles
every expression once. All problems are collected and raised together as one
:class:`~trustledger.errors.PolicyError`, each at its file, line and key path.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustledger.engine.events import RETRACTION
from trustledger.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyError,
    PolicyProblem,
    SourceLocation,
)
from trustledger.policy.compiled import (
    POINTS_LIMIT,
    CompiledAttribute,
    CompiledCap,
    CompiledEventType,
    CompiledFeature,
    CompiledMeasure,
    CompiledMetric,
    CompiledPolicy,
    CompiledPurpose,
    CompiledScorecard,
    CompiledTier,
    PointsFunction,
    StatisticalModel,
)
from trustledger.policy.conditions import (
    Expression,
    attribute_reads,
    compile_expression,
)
from trustledger.policy.literals import literal_probe_values
from trustledger.policy.loader import Locator, PathPart
from trustledger.policy.models import (
    Anchor,
    AttributeType,
    EventType,
    FormulaPoints,
    LookupPoints,
    Metric,
    PerStartedPoints,
    Polarity,
    Policy,
    Scorecard,
    SetBack,
    StatisticalScorecard,
)
from trustledger.policy.register import Register, RegisteredType
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, DOMAINS, OUT_OF_BOUNDS_CATEGORIES

RESERVED_NAMES = frozenset({
    "attrs", "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
    "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void",
    "while", "has", "size", "int", "uint", "double", "string", "bytes", "bool", "timestamp",
    "duration", "dyn", "type", "list", "map",
})
"""Names a metric, scorecard or measure may not take: CEL keywords, built-ins and ``attrs``."""

MINUS = "\u2212"
"""The minus sign used in texts shown to people."""

MODEL_REFERENCE = re.compile(r"sha256:([0-9a-f]{64})")
"""How a statistical scorecard names its model artifact: ``sha256:`` and the full hash."""

PROBE_DATE = "2000-01-01T00:00:00Z"
"""The value probing gives a ``date`` attribute (points rules cannot read dates as numbers).

A probe that evaluates an event must set its reported dates to the event's own
``occurred_at`` (the engine refuses a date after ``recorded_at``, and an expiry anchor
before ``occurred_at``)."""

PROBE_LIMIT = 512
"""At most this many attribute combinations are tried per event type (load and linter)."""


def probe_attributes(event_type: CompiledEventType) -> list[dict[str, Any]]:
    """Attribute sets that exercise an event type: bounds, zero, large values, every enum value.

    Used at load to run each points formula once per set (so a formula that
    fails on valid input is refused at load) and by the proportionality probe
    of the linter (the worst single event of a type).
    """
    choices: list[list[tuple[str, Any]]] = []
    kept: list[list[tuple[str, Any]]] = []
    for spec in event_type.attributes:
        literal = _inside(spec, event_type.probe_values.get(spec.name, ()))
        options: list[Any] = sorted({*_candidates(spec), *literal}) \
            if spec.type in (AttributeType.INTEGER, AttributeType.NUMBER) else _candidates(spec)
        pairs = [(spec.name, value) for value in options]
        if not spec.required:
            pairs.append((spec.name, None))
        choices.append(pairs)
        kept.append([(spec.name, value) for value in literal])
    total = math.prod(len(c) for c in choices) if choices else 1
    if total > PROBE_LIMIT:
        # the extremes, and the values the policy's expressions compare with
        choices = [c if len(c) <= 2 else list(dict.fromkeys([c[0], c[-1], *k]))
                   for c, k in zip(choices, kept, strict=True)]
    sets = []
    for combo in itertools.islice(itertools.product(*choices), PROBE_LIMIT):
        sets.append({name: value for name, value in combo if value is not None})
    return sets


def _inside(spec: CompiledAttribute, values: Sequence[float]) -> list[Any]:
    # the values within the attribute's bounds, as integers for an integer attribute
    if spec.type not in (AttributeType.INTEGER, AttributeType.NUMBER):
        return []
    out: list[Any] = []
    for v in values:
        if spec.type is AttributeType.INTEGER:
            if v != int(v):
                continue
            v = int(v)
        if spec.low <= v <= spec.high:
            out.append(v)
    return sorted(set(out))


def _candidates(spec: CompiledAttribute) -> list[Any]:
    if spec.type is AttributeType.BOOLEAN:
        return [False, True]
    if spec.type is AttributeType.ENUM:
        return sorted(spec.values or ())
    if spec.type is AttributeType.STRING:
        return ["", "x"]
    if spec.type is AttributeType.DATE:
        return [PROBE_DATE]
    raw = [-1e6, -1.0, 0.0, 1.0, 7.0, 30.0, 100.0, 1000.0, 1e6]
    if spec.minimum is not None:
        raw.append(spec.minimum)
    if spec.maximum is not None:
        raw.append(spec.maximum)
    inside = sorted({
        v for v in raw
        if (spec.minimum is None or v >= spec.minimum)
        and (spec.maximum is None or v <= spec.maximum)
    })
    if spec.type is AttributeType.INTEGER:
        low = math.ceil(spec.minimum) if spec.minimum is not None else None
        high = math.floor(spec.maximum) if spec.maximum is not None else None
        ints = sorted({int(v) for v in inside} | {x for x in (low, high) if x is not None})
        return [v for v in ints if (low is None or v >= low) and (high is None or v <= high)]
    return inside


def _guarded(function: PointsFunction, location: SourceLocation,
             label: str) -> PointsFunction:
    """``function`` made total: every fault is a :class:`PolicyError`, never a bare one.

    A CEL evaluation error stays the formula's own (``expression-error``); an overflow,
    a division by zero or a result that is not a finite number within
    :data:`POINTS_LIMIT` is a ``points-fault``. The engines contain either (the event
    counts nothing and says why) instead of failing the whole evaluation.
    """

    def fault(message: str) -> PolicyError:
        return PolicyError([PolicyProblem(location, "points-fault", message)])

    def points(attrs: Mapping[str, Any]) -> float:
        try:
            value = function(attrs)
        except PolicyError:
            raise  # a CEL error, already located at the formula (expression-error, -type)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise fault(f"points of {label} failed: {type(exc).__name__}: {exc}") from exc
        if not math.isfinite(value) or abs(value) > POINTS_LIMIT:
            raise fault(f"points of {label} gave {value!r}, not a finite number within "
                        f"±{POINTS_LIMIT:.0f}")
        return value

    return points


class _Compiler:
    def __init__(self, model: Policy, locator: Locator, register: Register) -> None:
        self.model = model
        self.locator = locator
        self.register = register
        self.problems: list[PolicyProblem] = []
        self.declared: dict[str, RegisteredType] = {
            name: register.event_types[name] for name in model.event_types
            if name in register.event_types}
        """The register's declaration of each type the policy scores (registered ones)."""

    def problem(self, path: Sequence[PathPart], rule: str, message: str) -> None:
        self.problems.append(self.locator.problem(path, rule, message))

    def expression(self, source: str, path: Sequence[PathPart]) -> Expression | None:
        try:
            return compile_expression(source, self.locator.locate(path))
        except PolicyError as exc:
            self.problems.extend(exc.problems)
            return None

    # --- names -----------------------------------------------------------------------------

    def check_names(self) -> None:
        seen: dict[str, str] = {}
        for section in ("metrics", "scorecards", "measures"):
            names: Mapping[str, Any] = getattr(self.model, section)
            for name in names:
                if name in RESERVED_NAMES:
                    self.problem((section, name), "reserved-name",
                                 f"`{name}` is reserved in conditions; choose another name")
                elif name in seen:
                    self.problem((section, name), "name-clash",
                                 f"`{name}` is already the name of one of the {seen[name]}; "
                                 "metrics, scorecards and measures share one namespace")
                seen.setdefault(name, section)
        if RETRACTION in self.model.event_types:
            self.problem(("event_types", RETRACTION), "reserved-name",
                         f"`{RETRACTION}` is the reserved type of withdrawals")
        registered = list(self.register.event_types)
        for name in self.model.event_types:
            if name in self.declared or name == RETRACTION:
                continue
            near = difflib.get_close_matches(name, registered, n=3, cutoff=0.6)
            hint = f"; nearest registered: {', '.join(near)}" if near else ""
            self.problem(("event_types", name), "unregistered-type",
                         f"event type `{name}` is not in the event-type register "
                         f"`{self.register.name}` ({self.register.hash[:19]}…); a policy scores "
                         f"only registered types, whose domain, category, gravity and "
                         f"attributes the register declares{hint}")

    # --- event types -----------------------------------------------------------------------

    def event_type(self, name: str, spec: EventType) -> CompiledEventType | None:
        path: tuple[PathPart, ...] = ("event_types", name)
        declared = self.declared.get(name)
        if declared is None:
            return None  # unregistered-type, reported by check_names
        attributes = tuple(
            CompiledAttribute(a, s.type, s.required, s.minimum, s.maximum,
                              frozenset(s.values) if s.values is not None else None)
            for a, s in declared.attributes.items()
        )
        by_name = {a.name: a for a in attributes}
        label = declared.display_label(name)
        points = self.points((*path, "points"), spec, by_name, label)
        if points is not None:
            points = _guarded(points[0], self.locator.locate((*path, "points")), label), \
                points[1]
        when = None
        if spec.when is not None:
            when = self.expression(spec.when, (*path, "when"))
            self.attribute_reads(spec.when, (*path, "when"), by_name)
        if isinstance(spec.points, FormulaPoints):
            self.attribute_reads(spec.points.formula, (*path, "points", "formula"), by_name)
        half_life = None
        if spec.decay is not None:
            half_life = spec.decay.half_life.exact_seconds
            if half_life is None:
                self.problem((*path, "decay", "half_life"), "half-life",
                             "a half-life needs an exact length (weeks, days or hours), "
                             f"not calendar years or months: {spec.decay.half_life}")
        self.check_retention(path, spec)
        anchor = self.expiry_anchor(path, spec, by_name)
        if points is None:
            return None
        function, rule = points
        compiled = CompiledEventType(
            name=name, label=label, domain=declared.domain, category=declared.category,
            gravity=declared.gravity, attributes=attributes, points=function, points_rule=rule,
            when=when, half_life=half_life,
            half_life_text=spec.decay.half_life if spec.decay else None,
            expiry=spec.expiry.after if spec.expiry else None,
            expiry_from=Anchor(spec.expiry.from_) if spec.expiry and anchor is None
            else Anchor.OCCURRED_AT,
            expiry_attribute=anchor,
            overhang=spec.expiry.overhang if spec.expiry else None,
            retention=spec.retention,
            probe_values=literal_probe_values(
                [x for x in (spec.when, spec.points.formula
                             if isinstance(spec.points, FormulaPoints) else None) if x],
                by_name),
            scorecards=tuple(s for s, card in self.model.scorecards.items()
                             if isinstance(card, Scorecard) and name in card.events),
            formality=declared.formality,
        )
        for attrs in probe_attributes(compiled):
            try:
                compiled.points(attrs)
            except PolicyError as exc:
                self.problems.extend(exc.problems)
                break
        return compiled

    def attribute_reads(self, source: str, where: tuple[PathPart, ...],
                        attributes: Mapping[str, CompiledAttribute]) -> None:
        """Rule ``attribute-read``: ``attrs.NAME`` only, of declared attributes, never text.

        A ``string`` attribute is free text its source writes: what it says is data, not
        policy, and the register's word check cannot read it. A condition or formula that
        searches it (``attrs.note.contains('church')``) would declare a meaning the
        register does not: it is refused, as is any read of ``attrs`` other than
        ``attrs.NAME`` (``attrs['note']``, a macro over ``attrs``).
        """
        names, other = attribute_reads(source)
        if other:
            self.problem(where, "attribute-read",
                         "read attributes as `attrs.NAME` only (not `attrs[...]`, `in attrs` "
                         "or a macro over `attrs`), so that what the expression reads can be "
                         "checked against the register's declaration")
        for name in sorted(names):
            spec = attributes.get(name)
            if spec is None:
                self.problem(where, "unknown-reference",
                             f"`attrs.{name}`: the register declares no attribute `{name}` "
                             "for this event type")
            elif spec.type is AttributeType.DATE:
                self.problem(where, "attribute-read",
                             f"`attrs.{name}` is a reported date: it says where an expiry "
                             "counts from (`expiry.from`), not whether or how much an event "
                             "counts; a condition on it would make events count by the "
                             "calendar, which the proportionality probe cannot weigh")
            elif spec.type is AttributeType.STRING:
                self.problem(where, "attribute-read",
                             f"`attrs.{name}` is a string attribute: free text written by the "
                             "source, which no safeguard reads; a policy may not score or "
                             "condition on what it says (declare an enum in the register, "
                             "whose values are checked)")

    def expiry_anchor(self, path: tuple[PathPart, ...], spec: EventType,
                      attributes: Mapping[str, CompiledAttribute]) -> str | None:
        """The ``date`` attribute ``expiry.from`` names, ``None`` for occurred/recorded_at."""
        if spec.expiry is None or spec.expiry.from_ in (Anchor.OCCURRED_AT, Anchor.RECORDED_AT):
            return None
        name = str(spec.expiry.from_)
        where = (*path, "expiry", "from")
        attribute = attributes.get(name)
        if attribute is None:
            self.problem(where, "unknown-reference",
                         f"`from` is occurred_at, recorded_at or a date attribute the register "
                         f"declares for this event type; `{name}` is none of them")
        elif attribute.type is not AttributeType.DATE:
            self.problem(where, "expiry-from",
                         f"the expiry counts from attribute `{name}`, which is of type "
                         f"{attribute.type.value}; it must be of type date")
        elif not attribute.required:
            self.problem(where, "expiry-from",
                         f"the expiry counts from attribute `{name}`, which is optional; an "
                         "event without it would have no expiry: declare it required")
        return name

    def check_retention(self, path: tuple[PathPart, ...], spec: EventType) -> None:
        if spec.expiry is None or spec.expiry.from_ is not Anchor.OCCURRED_AT:
            return
        start = self.model.effective_from
        counts_until = spec.expiry.after.after(start)
        if spec.expiry.overhang is not None:
            counts_until = spec.expiry.overhang.after(counts_until)
        if spec.retention.after(start) < counts_until:
            self.problem((*path, "retention"), "retention",
                         f"retention {spec.retention} ends before the entry stops counting "
                         "(expiry plus overhang); the payload would be purged while it counts")

    def points(self, path: tuple[PathPart, ...], spec: EventType,
               attributes: Mapping[str, CompiledAttribute],
               label: str) -> tuple[PointsFunction, str] | None:
        rule = spec.points
        if isinstance(rule, float | int):
            constant = float(rule)
            return (lambda _attrs: constant), _signed(constant)
        if isinstance(rule, LookupPoints):
            return self.lookup_points(path, rule, attributes)
        if isinstance(rule, FormulaPoints):
            return self.formula_points(path, rule, label)
        return self.per_started_points(path, rule, attributes)

    def lookup_points(self, path: tuple[PathPart, ...], rule: LookupPoints,
                      attributes: Mapping[str, CompiledAttribute],
                      ) -> tuple[PointsFunction, str] | None:
        spec = attributes.get(rule.lookup)
        if spec is None or spec.type is not AttributeType.ENUM or spec.values is None:
            self.problem((*path, "lookup"), "unknown-reference",
                         f"`lookup` needs an enum attribute of this event type; "
                         f"`{rule.lookup}` is not one")
            return None
        missing = sorted(spec.values - set(rule.values))
        extra = sorted(set(rule.values) - spec.values)
        if missing or extra:
            self.problem((*path, "values"), "lookup-table",
                         f"the table must give points for exactly the values of "
                         f"{rule.lookup}: missing {missing or 'none'}, unknown {extra or 'none'}")
            return None
        table = {k: float(v) for k, v in rule.values.items()}
        key = rule.lookup
        low, high = min(table.values()), max(table.values())
        return (lambda attrs: table[attrs[key]]), f"{_signed(low)} to {_signed(high)} by {key}"

    def formula_points(self, path: tuple[PathPart, ...], rule: FormulaPoints,
                       label: str) -> tuple[PointsFunction, str] | None:
        expression = self.expression(rule.formula, (*path, "formula"))
        if expression is None:
            return None
        unknown = sorted(expression.names - {"attrs"})
        if unknown:
            self.problem((*path, "formula"), "unknown-name",
                         f"a points formula may only use `attrs`, not {', '.join(unknown)}")
            return None
        low, high = rule.min, rule.max
        compiled = expression

        def formula(attrs: Mapping[str, Any]) -> float:
            value = compiled.run({"attrs": attrs})
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PolicyError([PolicyProblem(
                    compiled.location, "expression-type",
                    f"points formula of {label} gave {value!r}, not a number")])
            points = float(value)
            if not math.isfinite(points):
                raise PolicyError([PolicyProblem(
                    compiled.location, "expression-type",
                    f"points formula of {label} gave {value!r}, not a finite number")])
            if low is not None and points < low:
                points = low
            if high is not None and points > high:
                points = high
            return points

        bounds = ""
        if low is not None or high is not None:
            bounds = f", between {_signed(low) if low is not None else MINUS + '∞'} and " \
                     f"{_signed(high) if high is not None else '+∞'}"
        return formula, f"`{rule.formula}`{bounds}"

    def per_started_points(self, path: tuple[PathPart, ...], rule: PerStartedPoints,
                           attributes: Mapping[str, CompiledAttribute],
                           ) -> tuple[PointsFunction, str] | None:
        spec = attributes.get(rule.of)
        if spec is None or spec.type not in (AttributeType.INTEGER, AttributeType.NUMBER):
            self.problem((*path, "of"), "unknown-reference",
                         f"`of` needs a numeric attribute of this event type; "
                         f"`{rule.of}` is not one")
            return None
        each, size, key, most = rule.each, rule.per_started, rule.of, rule.max_periods

        def per_started(attrs: Mapping[str, Any]) -> float:
            amount = float(attrs.get(key) or 0.0)
            periods = math.ceil(amount / size) if amount > 0 else 0
            if most is not None:
                periods = min(periods, most)
            return each * periods

        limit = f", at most {most} periods" if most is not None else ""
        return per_started, f"{_signed(each)} per started {size:g} of {key}{limit}"

    # --- metrics, scorecards, measures -------------------------------------------------------

    def check_domain(self, where: tuple[PathPart, ...], domain: str) -> None:
        """A domain named by a policy must be one of the taxonomy's (closed) domains."""
        if domain not in DOMAINS:
            self.problem(where, "unknown-reference",
                         f"`{domain}` is not a domain; domains are those of the taxonomy's "
                         f"categories: {', '.join(sorted(DOMAINS))}")

    def metric(self, name: str, spec: Metric) -> CompiledMetric:
        path: tuple[PathPart, ...] = ("metrics", name)
        types = self.declared
        for i, t in enumerate(spec.types or ()):
            if t not in self.model.event_types:
                self.problem((*path, "types", i), "unknown-reference", f"no event type `{t}`")
        for i, domain in enumerate(spec.domains or ()):
            self.check_domain((*path, "domains", i), domain)
        known = set(ALLOWED_CATEGORIES) | set(OUT_OF_BOUNDS_CATEGORIES)
        for i, c in enumerate(spec.categories or ()):
            if c not in known:
                self.problem((*path, "categories", i), "unknown-reference",
                             f"`{c}` is not a category of the taxonomy")
        card: Scorecard | None = None
        if spec.scorecard is not None:
            found = self.model.scorecards.get(spec.scorecard)
            if found is None:
                self.problem((*path, "scorecard"), "unknown-reference",
                             f"no scorecard `{spec.scorecard}`")
            elif isinstance(found, StatisticalScorecard):
                self.problem((*path, "scorecard"), "unknown-reference",
                             f"`{spec.scorecard}` is a statistical scorecard: it has no events "
                             "of its own to scope a metric to")
            else:
                card = found
        selected = frozenset(
            t for t, et in types.items()
            if (spec.types is None or t in spec.types)
            and (spec.domains is None or et.domain in spec.domains)
            and (spec.categories is None or et.category in spec.categories)
            and (spec.min_gravity is None or et.gravity.rank >= spec.min_gravity.rank)
            and (card is None or t in card.events)
        )
        if not selected and not self.problems:
            self.problem(path, "empty-metric", "the filters select no event type")
        return CompiledMetric(name, spec.aggregate, spec.value, spec.window, spec.scorecard,
                              spec.sign, selected)

    def scorecard(self, name: str, spec: Scorecard) -> CompiledScorecard:
        path: tuple[PathPart, ...] = ("scorecards", name)
        types = self.declared
        for i, t in enumerate(spec.events):
            if t not in self.model.event_types:
                self.problem((*path, "events", i), "unknown-reference", f"no event type `{t}`")
        caps = []
        for i, cap in enumerate(spec.caps):
            for j, t in enumerate(cap.exempt):
                if t not in spec.events:
                    self.problem((*path, "caps", i, "exempt", j), "unknown-reference",
                                 f"`{t}` is not one of this scorecard's events")
            caps.append(CompiledCap(cap.period, cap.max, cap.applies_to, frozenset(cap.exempt)))
        return CompiledScorecard(
            name=name, label=spec.label or name.replace("_", " "),
            adverse_sign=-1.0 if spec.higher_is is Polarity.BETTER else 1.0, base=spec.base,
            floor=spec.floor, ceiling=spec.ceiling, opt_in=spec.opt_in,
            events=frozenset(spec.events),
            domains=frozenset(types[t].domain for t in spec.events if t in types),
            caps=tuple(caps), tiers=self.tiers(path, spec),
        )

    def statistical(self, name: str, spec: StatisticalScorecard,
                    models_dir: Path | None) -> CompiledScorecard:
        path: tuple[PathPart, ...] = ("scorecards", name)
        self.check_domain((*path, "domain"), spec.domain)
        for feature, source in spec.features.items():
            if source.metric is not None and source.metric not in self.model.metrics:
                self.problem((*path, "features", feature, "metric"), "unknown-reference",
                             f"no metric `{source.metric}`")
        tiers = self.tiers(path, spec)
        model = self.model_of(path, spec, models_dir)
        return CompiledScorecard(
            name=name, label=spec.label or name.replace("_", " "), adverse_sign=-1.0,
            base=0.0, floor=None, ceiling=None, opt_in=spec.opt_in, events=frozenset(),
            domains=frozenset({spec.domain}), caps=(), tiers=tiers, model=model,
        )

    def model_of(self, path: tuple[PathPart, ...], spec: StatisticalScorecard,
                 models_dir: Path | None) -> StatisticalModel | None:
        from trustledger.models.artifact import default_models_dir
        from trustledger.models.compiled import CompiledScorecard as ModelScorer

        where = (*path, "model")
        match = MODEL_REFERENCE.fullmatch(spec.model)
        if match is None:
            self.problem(where, "model-artifact",
                         f"`model` names an artifact by its full hash, `sha256:` and 64 "
                         f"hexadecimal digits (as `trustledger model list` prints); "
                         f"got {spec.model!r}")
            return None
        digest = match.group(1)
        folder = models_dir if models_dir is not None else default_models_dir()
        try:
            scorer = ModelScorer.load(folder, digest)
        except NotFoundError:
            self.problem(where, "model-artifact",
                         f"no model artifact {digest} in the models folder {folder} "
                         "(`trustledger model list` shows the models there; the folder is "
                         "$TRUSTLEDGER_MODELS, else $TRUSTLEDGER_DATA/models)")
            return None
        except IntegrityError as exc:
            self.problem(where, "model-integrity",
                         f"model artifact {digest} does not match its hash, so it was "
                         f"changed after training (`trustledger model verify` says the "
                         f"same): {exc}")
            return None
        except InputError as exc:
            self.problem(where, "model-artifact",
                         f"model artifact {digest} in {folder} is not a valid scorecard "
                         f"artifact: {exc}")
            return None
        artifact = scorer.artifact
        short = f"sha256:{digest[:12]}…"
        if tuple(spec.range) != tuple(artifact.score_range):
            low, high = artifact.score_range
            self.problem((*path, "range"), "model-range",
                         f"the range [{spec.range[0]}, {spec.range[1]}] is not the model's: "
                         f"{short} scores from {low} to {high}")
        bins = {f.name: f for f in artifact.features}
        unmapped = [f for f in artifact.feature_names if f not in spec.features]
        if unmapped:
            self.problem((*path, "features"), "model-features",
                         f"model {short} has feature(s) this scorecard does not map: "
                         f"{', '.join(unmapped)}; map each to a `metric` or an `attribute`")
        features = []
        for feature, source in spec.features.items():
            at_feature = (*path, "features", feature)
            found = bins.get(feature)
            if found is None:
                self.problem(at_feature, "model-features",
                             f"model {short} has no feature `{feature}`; its features: "
                             f"{', '.join(artifact.feature_names)}")
                continue
            numerical = found.kind == "numerical"
            if source.metric is not None and not numerical:
                self.problem((*at_feature, "metric"), "model-features",
                             f"feature `{feature}` of model {short} is categorical (a text "
                             f"such as {found.labels[0]!r}); a metric gives a number")
            features.append(CompiledFeature(feature, found.description, found.category,
                                            numerical, source.metric, source.attribute))
        if unmapped or len(features) != len(spec.features):
            return None
        return StatisticalModel(digest, scorer, tuple(features),
                                (artifact.score_range[0], artifact.score_range[1]))

    def attribute_types(self, scorecards: Mapping[str, CompiledScorecard]) -> None:
        seen: dict[str, tuple[bool, str]] = {}
        for name, card in scorecards.items():
            if card.model is None:
                continue
            for f in card.model.features:
                if f.attribute is None:
                    continue
                where = f"`{name}.{f.name}`"
                earlier = seen.setdefault(f.attribute, (f.numerical, where))
                if earlier[0] != f.numerical:
                    kinds = ("a number", "a text")
                    self.problem(("scorecards", name, "features", f.name, "attribute"),
                                 "model-features",
                                 f"attribute `{f.attribute}` is {kinds[not f.numerical]} for "
                                 f"{where} but {kinds[not earlier[0]]} for {earlier[1]}; "
                                 "one attribute has one type")

    def statistical_domains(self, card: CompiledScorecard,
                            metrics: Mapping[str, CompiledMetric]) -> CompiledScorecard:
        if card.model is None:
            return card
        types = self.declared
        domains = set(card.domains)
        for name in card.model.metrics:
            if name in metrics:
                domains |= {types[t].domain for t in metrics[name].types}
        return dataclasses.replace(card, domains=frozenset(domains))

    def tiers(self, path: tuple[PathPart, ...],
              spec: Scorecard | StatisticalScorecard) -> tuple[CompiledTier, ...]:
        tiers = []
        names: set[str] = set()
        for i, tier in enumerate(spec.tiers):
            where = (*path, "tiers", i)
            if tier.name in names:
                self.problem((*where, "name"), "tier-order", f"tier `{tier.name}` twice")
            names.add(tier.name)
            if tier.min is None and (i > 0 or tier.changes):
                self.problem(where, "tier-order",
                             "every tier but the lowest (listed first) needs a `min`")
            steps: list[tuple[float, float | None]] = [(-math.inf, tier.min)]
            steps += sorted((c.from_.timestamp(), c.min) for c in tier.changes)
            tiers.append(CompiledTier(tier.name, tier.label or tier.name, tuple(steps)))
        moments = {self.model.effective_from.timestamp()}
        moments |= {start for t in tiers for start, _ in t.thresholds[1:]}
        for moment in sorted(moments):
            lows = [t.min_at(moment) for t in tiers]
            for i in range(1, len(lows)):
                low, high = lows[i - 1], lows[i]
                if low is not None and high is not None and high <= low:
                    when = datetime.fromtimestamp(moment, UTC).date().isoformat() \
                        if moment > self.model.effective_from.timestamp() else "the start"
                    self.problem((*path, "tiers", i), "tier-order",
                                 f"tiers are listed lowest first; `{tiers[i].name}` starts at "
                                 f"{high:g}, not above `{tiers[i - 1].name}` ({low:g}) "
                                 f"from {when}")
                    return tuple(tiers)
        return tuple(tiers)

    def measures(self, scorecards: Mapping[str, CompiledScorecard],
                 metrics: Mapping[str, CompiledMetric]) -> dict[str, CompiledMeasure]:
        compiled: dict[str, CompiledMeasure] = {}
        for name, spec in self.model.measures.items():
            path: tuple[PathPart, ...] = ("measures", name)
            self.check_domain((*path, "domain"), spec.domain)
            condition = self.expression(spec.condition, (*path, "condition"))
            if condition is None:
                continue
            unknown = sorted(condition.names - set(scorecards) - set(metrics)
                             - set(self.model.measures))
            if unknown:
                self.problem((*path, "condition"), "unknown-name",
                             f"`{', '.join(unknown)}` is not a metric, scorecard or measure")
            requires = spec.requires.measure if spec.requires else None
            if requires is not None and (requires not in self.model.measures
                                         or requires == name):
                self.problem((*path, "requires", "measure"), "unknown-reference",
                             f"`{requires}` is not another measure of this policy")
            set_back = self.set_back(path, spec.requires.set_back if spec.requires else None,
                                     scorecards, condition.names)
            compiled[name] = CompiledMeasure(
                name=name, label=spec.label or name.replace("_", " "), kind=spec.kind,
                domain=spec.domain, severity=spec.severity, condition=condition,
                requires=requires, notice=spec.requires.notice if spec.requires else None,
                hold=spec.hold, set_back=set_back,
                metrics=tuple(sorted(condition.names & set(metrics))),
                scorecards=tuple(sorted(condition.names & set(scorecards))),
                measures=tuple(sorted(condition.names & set(self.model.measures))),
            )
        return self.dependency_order(compiled)

    def set_back(self, path: tuple[PathPart, ...], spec: SetBack | None,
                 scorecards: Mapping[str, CompiledScorecard],
                 read: frozenset[str]) -> tuple[str, float] | None:
        """``(scorecard, to)`` of a ``requires.set_back``, checked (rule ``set-back``)."""
        if spec is None:
            return None
        where = (*path, "requires", "set_back")
        card = scorecards.get(spec.scorecard)
        if card is None:
            self.problem((*where, "scorecard"), "unknown-reference",
                         f"no scorecard `{spec.scorecard}`")
            return None
        if spec.scorecard not in read:
            self.problem((*where, "scorecard"), "set-back",
                         f"the condition does not read `{spec.scorecard}`; a set-back sets "
                         "back the points the measure's own condition is reached on")
        if card.model is not None:
            self.problem((*where, "scorecard"), "set-back",
                         f"`{spec.scorecard}` is a statistical scorecard; only a rule-based "
                         "scorecard's points can be set back")
            return None
        decaying = sorted(t for t in card.events if t in self.model.event_types
                          and self.model.event_types[t].decay is not None)
        if decaying:
            self.problem((*where, "scorecard"), "set-back",
                         f"`{spec.scorecard}` uses decaying events ({', '.join(decaying)}); a "
                         "set-back holds points at a stated value, which decay would not keep")
        if (card.floor is not None and spec.to < card.floor) or \
                (card.ceiling is not None and spec.to > card.ceiling):
            self.problem((*where, "to"), "set-back",
                         f"{spec.to:g} is outside the scorecard's floor and ceiling")
        return spec.scorecard, float(spec.to)

    def dependency_order(self, measures: dict[str, CompiledMeasure],
                         ) -> dict[str, CompiledMeasure]:
        ordered: dict[str, CompiledMeasure] = {}
        visiting: list[str] = []

        def visit(name: str) -> bool:
            if name in ordered or name not in measures:
                return True
            if name in visiting:
                cycle = [*visiting[visiting.index(name):], name]
                self.problem(("measures", name), "cycle",
                             f"measures depend on each other in a cycle: {' → '.join(cycle)}")
                return False
            visiting.append(name)
            measure = measures[name]
            deps = list(measure.measures) + ([measure.requires] if measure.requires else [])
            ok = all(visit(dep) for dep in deps)
            visiting.pop()
            if ok:
                ordered[name] = measure
            return ok

        for name in measures:
            if not visit(name):
                break
        return ordered

    def check_when(self, event_types: Mapping[str, CompiledEventType],
                   metrics: Mapping[str, CompiledMetric],
                   scorecards: Mapping[str, CompiledScorecard]) -> None:
        allowed = {"attrs"} | set(metrics) | set(scorecards)
        statistical = {n for n, card in scorecards.items() if card.model is not None}
        for name, et in event_types.items():
            if et.when is None:
                continue
            unknown = sorted(et.when.names - allowed)
            if unknown:
                self.problem(("event_types", name, "when"), "unknown-name",
                             f"a `when` condition may use attrs, metrics and scorecards; "
                             f"`{', '.join(unknown)}` is none of them")
            read = sorted(et.when.names & statistical)
            if read:
                self.problem(("event_types", name, "when"), "statistical-when",
                             f"a `when` condition cannot read the statistical scorecard "
                             f"`{read[0]}`: its attributes are supplied at decision time, not "
                             "when the event occurred, so whether an event counts would change "
                             "with every decision")


    def purposes(self) -> dict[str, CompiledPurpose]:
        compiled: dict[str, CompiledPurpose] = {}
        for name, spec in self.model.purposes.items():
            path: tuple[PathPart, ...] = ("purposes", name)
            self.check_domain((*path, "domain"), spec.domain)
            for section, names, known in (("measures", spec.measures, self.model.measures),
                                          ("scorecards", spec.scorecards,
                                           self.model.scorecards)):
                for i, ref in enumerate(names):
                    if ref not in known:
                        self.problem((*path, section, i), "unknown-reference",
                                     f"no {section[:-1]} `{ref}`")
                    elif ref in names[:i]:
                        self.problem((*path, section, i), "unknown-reference",
                                     f"`{ref}` is listed twice")
            compiled[name] = CompiledPurpose(name, spec.label, spec.domain, spec.measures,
                                             spec.scorecards)
        return compiled


def compile_policy(model: Policy, locator: Locator, content_hash: str, *, register: Register,
                   models_dir: Path | None = None) -> CompiledPolicy:
    """Check cross-references and compile expressions; raise all problems at once.

    Each event type joins the register's declaration (domain, category, gravity,
    attributes, label) with the policy's scoring part.

    Statistical scorecards load and verify their model artifact from ``models_dir``
    (default: :func:`trustledger.models.artifact.default_models_dir`).
    """
    compiler = _Compiler(model, locator, register)
    compiler.check_names()
    event_types = {}
    for name, spec in model.event_types.items():
        compiled = compiler.event_type(name, spec)
        if compiled is not None:
            event_types[name] = compiled
    scorecards = {
        name: (compiler.statistical(name, spec, models_dir)
               if isinstance(spec, StatisticalScorecard) else compiler.scorecard(name, spec))
        for name, spec in model.scorecards.items()
    }
    metrics = {name: compiler.metric(name, spec) for name, spec in model.metrics.items()}
    scorecards = {name: compiler.statistical_domains(card, metrics)
                  for name, card in scorecards.items()}
    compiler.attribute_types(scorecards)
    compiler.check_when(event_types, metrics, scorecards)
    measures = compiler.measures(scorecards, metrics)
    purposes = compiler.purposes()
    if compiler.problems:
        raise PolicyError(compiler.problems)
    return CompiledPolicy(
        model=model, source=locator.file, hash=content_hash,
        effective_from=model.effective_from, event_types=event_types, metrics=metrics,
        scorecards=scorecards, measures=measures, locator=locator, purposes=purposes,
        register_hash=register.hash,
    )


def _signed(value: float) -> str:
    return f"{value:+g}".replace("-", MINUS)
