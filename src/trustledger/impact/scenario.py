"""Scenarios: who the simulated population is and how it behaves.

A scenario (YAML or JSON) says, per event type of the policy, how many such events a
subject has a month — a *propensity* drawn once per subject from a distribution, which
may differ per group — which attributes those events carry (variants with shares), and
how measures feed back into behaviour (a restriction in force multiplies some
propensities). Groups are labels for the report: they choose a subject's propensity
distribution and nothing else; the policy never sees them (the simulation passes the
policy only event counts per type and attributes).

Every problem is an :class:`~trustledger.errors.InputError` naming the field, e.g.
``scenario s.yaml: events.repayment_late.rate.mean: must be a number > 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from trustledger.errors import InputError
from trustledger.policy.compiled import CompiledPolicy
from trustledger.policy.models import AttributeType

DISTRIBUTIONS = {
    "fixed": ("value",),
    "gamma": ("mean", "shape"),
    "lognormal": ("median", "sigma"),
    "uniform": ("low", "high"),
}
"""Propensity distributions (events per subject per month) and their parameters."""

MAX_RATE = 200.0
"""A propensity (events a month) is capped here, also after feedback factors."""


@dataclass(frozen=True)
class Distribution:
    """A distribution of monthly event rates over subjects."""

    kind: str
    params: Mapping[str, float]

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` rates (float64, ≥ 0, ≤ :data:`MAX_RATE`)."""
        p = self.params
        if self.kind == "fixed":
            out = np.full(size, p["value"], dtype=np.float64)
        elif self.kind == "gamma":
            out = rng.gamma(p["shape"], p["mean"] / p["shape"], size)
        elif self.kind == "lognormal":
            out = p["median"] * np.exp(p["sigma"] * rng.standard_normal(size))
        else:
            out = rng.uniform(p["low"], p["high"], size)
        return np.minimum(out, MAX_RATE)

    def mean(self) -> float:
        """The distribution's mean rate (before the cap)."""
        p = self.params
        if self.kind == "fixed":
            return p["value"]
        if self.kind == "gamma":
            return p["mean"]
        if self.kind == "lognormal":
            return p["median"] * math.exp(p["sigma"] ** 2 / 2)
        return (p["low"] + p["high"]) / 2


@dataclass(frozen=True)
class Variant:
    """Events of one type with one set of attributes, a share of that type's events."""

    share: float
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Behaviour:
    """One event type's propensity (default and per group) and its variants."""

    type: str
    rate: Distribution
    groups: Mapping[str, Distribution]
    variants: tuple[Variant, ...]

    def rate_for(self, group: str) -> Distribution:
        """The group's own distribution, or the default."""
        return self.groups.get(group, self.rate)


@dataclass(frozen=True)
class Feedback:
    """While ``measure`` is in force (``on``) or not (``off``), multiply propensities."""

    measure: str
    on: bool
    multiply: Mapping[str, float]


@dataclass(frozen=True)
class Group:
    """A label for the report, with its share of the population."""

    name: str
    share: float


@dataclass(frozen=True)
class Scenario:
    """A validated scenario (see the module docstring and ``docs/impact.md``)."""

    name: str
    start: datetime
    groups: tuple[Group, ...]
    events: Mapping[str, Behaviour]
    feedback: tuple[Feedback, ...]
    opt_in: Mapping[str, float]
    source: str

    @property
    def group_names(self) -> tuple[str, ...]:
        """Group labels in the scenario's order."""
        return tuple(g.name for g in self.groups)


def load_scenario(path: str | Path, policy: CompiledPolicy) -> Scenario:
    """Read a YAML or JSON scenario file and validate it against ``policy``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read scenario file {file}: {exc}") from exc
    return parse_scenario(text, policy, str(file))


def parse_scenario(text: str, policy: CompiledPolicy, name: str = "<scenario>") -> Scenario:
    """Validate scenario text (YAML, of which JSON is a subset) against ``policy``."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise InputError(f"scenario {name}: not valid YAML or JSON: {exc}") from exc
    return scenario_from_dict(data, policy, name)


def default_scenario(policy: CompiledPolicy) -> Scenario:
    """The bundled scenario for an example policy, or one derived from the policy's types.

    The bundled ones (``trustledger/impact/scenarios/<policy>.yaml``) are written for
    ``policies/*.yaml``; for any other policy every event type gets a gamma-distributed
    propensity (0.3 a month for favourable types, 0.03 for adverse ones) and attributes
    at their minimum (or ``sim`` for text).
    """
    bundled = resources.files("trustledger.impact").joinpath(f"scenarios/{policy.name}.yaml")
    if bundled.is_file():
        return parse_scenario(bundled.read_text(encoding="utf-8"), policy,
                              f"trustledger/impact/scenarios/{policy.name}.yaml")
    events: dict[str, Any] = {}
    for tname, etype in policy.event_types.items():
        attrs: dict[str, Any] = {}
        for spec in etype.attributes:
            if spec.type is AttributeType.BOOLEAN:
                attrs[spec.name] = False
            elif spec.type in (AttributeType.STRING, AttributeType.ENUM):
                attrs[spec.name] = sorted(spec.values)[0] if spec.values else "sim"
            else:
                low = spec.minimum if spec.minimum is not None else 1
                attrs[spec.name] = int(low) if spec.type is AttributeType.INTEGER else float(low)
        normal = etype.normalise(attrs)
        if isinstance(normal, str):
            continue
        adverse = etype.points(normal) < 0
        events[tname] = {"rate": {"distribution": "gamma", "mean": 0.03 if adverse else 0.3,
                                  "shape": 2.0},
                         "variants": [{"share": 1.0, "attributes": attrs}]}
    data = {"scenario": f"{policy.name} (derived)", "groups": [{"name": "everyone", "share": 1}],
            "events": events}
    return scenario_from_dict(data, policy, f"derived from policy {policy.name}")


def _fail(name: str, where: str, why: str) -> InputError:
    return InputError(f"scenario {name}: {where}: {why}")


def _keys(data: Any, where: str, name: str, allowed: set[str], required: set[str]) -> None:
    if not isinstance(data, Mapping):
        raise _fail(name, where or "(top level)", "must be a mapping")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _fail(name, f"{where}.{unknown[0]}" if where else unknown[0],
                    f"unknown field (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(data))
    if missing:
        raise _fail(name, f"{where}.{missing[0]}" if where else missing[0], "is required")


def _number(value: Any, where: str, name: str, *, low: float = 0.0,
            strict: bool = False, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, where, "must be a number")
    number = float(value)
    if number < low or (strict and number == low) or (high is not None and number > high):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        if high is not None:
            bound += f" and <= {high:g}"
        raise _fail(name, where, f"must be a number {bound} (got {number:g})")
    return number


def _distribution(data: Any, where: str, name: str) -> Distribution:
    if not isinstance(data, Mapping):
        raise _fail(name, where, "must be a mapping with `distribution` and its parameters")
    kind = data.get("distribution")
    if kind not in DISTRIBUTIONS:
        raise _fail(name, f"{where}.distribution",
                    f"must be one of {', '.join(DISTRIBUTIONS)} (got {kind!r})")
    params = DISTRIBUTIONS[kind]
    _keys(data, where, name, {"distribution", *params}, set(params))
    values: dict[str, float] = {}
    for p in params:
        strict = p in ("mean", "shape", "median")
        values[p] = _number(data[p], f"{where}.{p}", name, strict=strict, high=MAX_RATE)
    if kind == "uniform" and values["high"] < values["low"]:
        raise _fail(name, f"{where}.high", "must be at least `low`")
    return Distribution(kind, values)


def _start(value: Any, name: str, policy: CompiledPolicy) -> datetime:
    if value is None:
        first = policy.effective_from.astimezone(UTC)
        start = datetime(first.year, first.month, 15, 12, tzinfo=UTC)
        if start < first:
            start = datetime(first.year + first.month // 12, first.month % 12 + 1, 15, 12,
                             tzinfo=UTC)
        return start
    text = str(value)
    try:
        year, month = (int(x) for x in text.split("-")[:2])
        start = datetime(year, month, 15, 12, tzinfo=UTC)
    except ValueError as exc:
        raise _fail(name, "start", f"must be a month YYYY-MM (got {text!r})") from exc
    if start < policy.effective_from:
        raise _fail(name, "start", f"{start.date()} is before the policy's effective_from "
                    f"{policy.effective_from.date()}")
    return start


def scenario_from_dict(data: Any, policy: CompiledPolicy, name: str = "<scenario>") -> Scenario:
    """Validate a parsed scenario document against ``policy``."""
    _keys(data, "", name, {"scenario", "description", "policy", "start", "groups", "events",
                           "feedback", "opt_in"}, {"events"})
    if data.get("policy") not in (None, policy.name):
        raise _fail(name, "policy", f"the scenario is written for policy {data['policy']!r}, "
                    f"not {policy.name!r}")
    groups_data = data.get("groups", [{"name": "everyone", "share": 1}])
    if not isinstance(groups_data, list) or not groups_data:
        raise _fail(name, "groups", "must be a non-empty list of {name, share}")
    groups: list[Group] = []
    for i, g in enumerate(groups_data):
        _keys(g, f"groups[{i}]", name, {"name", "share", "description"}, {"name", "share"})
        if not isinstance(g["name"], str) or not g["name"]:
            raise _fail(name, f"groups[{i}].name", "must be a non-empty text")
        if g["name"] in {x.name for x in groups}:
            raise _fail(name, f"groups[{i}].name", f"{g['name']!r} appears twice")
        groups.append(Group(g["name"], _number(g["share"], f"groups[{i}].share", name,
                                               strict=True)))
    total = sum(g.share for g in groups)
    groups = [Group(g.name, g.share / total) for g in groups]
    names = {g.name for g in groups}

    events_data = data["events"]
    if not isinstance(events_data, Mapping) or not events_data:
        raise _fail(name, "events", "must map event types of the policy to behaviour")
    events: dict[str, Behaviour] = {}
    for tname, spec in events_data.items():
        where = f"events.{tname}"
        etype = policy.event_types.get(tname)
        if etype is None:
            raise _fail(name, where, f"policy {policy.name} has no event type {tname!r}")
        _keys(spec, where, name, {"rate", "groups", "variants"}, {"rate"})
        rate = _distribution(spec["rate"], f"{where}.rate", name)
        per_group: dict[str, Distribution] = {}
        for gname, gspec in (spec.get("groups") or {}).items():
            if gname not in names:
                raise _fail(name, f"{where}.groups.{gname}", "is not one of the scenario's "
                            f"groups ({', '.join(sorted(names))})")
            per_group[gname] = _distribution(gspec, f"{where}.groups.{gname}", name)
        variants_data = spec.get("variants", [{"share": 1.0, "attributes": {}}])
        if not isinstance(variants_data, list) or not variants_data:
            raise _fail(name, f"{where}.variants", "must be a non-empty list")
        variants: list[Variant] = []
        for i, v in enumerate(variants_data):
            vwhere = f"{where}.variants[{i}]"
            _keys(v, vwhere, name, {"share", "attributes"}, {"share"})
            attrs = v.get("attributes") or {}
            if not isinstance(attrs, Mapping):
                raise _fail(name, f"{vwhere}.attributes", "must be a mapping")
            problem = etype.normalise(attrs)
            if isinstance(problem, str):
                raise _fail(name, f"{vwhere}.attributes", f"do not fit event type {tname}: "
                            f"{problem}")
            variants.append(Variant(_number(v["share"], f"{vwhere}.share", name, strict=True),
                                    dict(attrs)))
        vtotal = sum(v.share for v in variants)
        events[tname] = Behaviour(tname, rate, per_group,
                                  tuple(Variant(v.share / vtotal, v.attributes)
                                        for v in variants))

    feedback: list[Feedback] = []
    for i, f in enumerate(data.get("feedback") or []):
        where = f"feedback[{i}]"
        _keys(f, where, name, {"measure", "while", "multiply"}, {"measure", "while",
                                                                 "multiply"})
        if f["measure"] not in policy.measures:
            raise _fail(name, f"{where}.measure", f"policy {policy.name} has no measure "
                        f"{f['measure']!r}")
        state = f["while"]
        if state not in ("on", "off") and not isinstance(state, bool):
            raise _fail(name, f"{where}.while", f"must be `on` or `off` (got {state!r})")
        if not isinstance(f["multiply"], Mapping) or not f["multiply"]:
            raise _fail(name, f"{where}.multiply", "must map event types to factors")
        factors: dict[str, float] = {}
        for tname, factor in f["multiply"].items():
            if tname not in events:
                raise _fail(name, f"{where}.multiply.{tname}", "is not an event type of the "
                            "scenario's `events`")
            factors[tname] = _number(factor, f"{where}.multiply.{tname}", name, high=100.0)
        feedback.append(Feedback(f["measure"], state in ("on", True), factors))

    opt_in: dict[str, float] = {c: 1.0 for c, card in policy.scorecards.items() if card.opt_in}
    for card, share in (data.get("opt_in") or {}).items():
        if card not in opt_in:
            raise _fail(name, f"opt_in.{card}", f"policy {policy.name} has no opt-in "
                        f"scorecard {card!r}")
        opt_in[card] = _number(share, f"opt_in.{card}", name, high=1.0)
    return Scenario(str(data.get("scenario") or name), _start(data.get("start"), name, policy),
                    tuple(groups), events, tuple(feedback), opt_in, name)


def scenario_json(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data (for the report)."""
    data: dict[str, Any] = json.loads(json.dumps({
        "name": scenario.name, "start": scenario.start.date().isoformat(),
        "groups": [{"name": g.name, "share": g.share} for g in scenario.groups],
        "events": {t: {"rate": {"distribution": b.rate.kind, **b.rate.params},
                       "groups": {g: {"distribution": d.kind, **d.params}
                                  for g, d in b.groups.items()},
                       "variants": [{"share": v.share, "attributes": dict(v.attributes)}
                                    for v in b.variants]}
                   for t, b in scenario.events.items()},
        "feedback": [{"measure": f.measure, "while": "on" if f.on else "off",
                      "multiply": dict(f.multiply)} for f in scenario.feedback],
        "opt_in": dict(scenario.opt_in),
    }))
    return data


__all__ = ["DISTRIBUTIONS", "MAX_RATE", "Behaviour", "Distribution", "Feedback", "Group",
           "Scenario", "Variant", "default_scenario", "load_scenario", "parse_scenario",
           "scenario_from_dict", "scenario_json"]
