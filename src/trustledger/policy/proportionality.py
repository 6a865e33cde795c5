"""Safeguard 3 and privilege inversion, checked by running the engine on probe histories.

A *restricting* measure is a restriction, or an *inverted privilege*: a privilege that
holds for a subject with no events (who has consented to nothing) and that events can
take away. Taking away what everyone has is a restriction, whatever the policy calls
it ("may book flights: condition `court_debtor_listings == 0`"), so the linter treats
it as one for the firewall and for proportionality.

Proportionality (DESIGN.md safeguard 3): a restricting measure of severity *S* may not
follow from a single event of lower gravity. The probe looks for the worst history the
policy allows around that single event, and refuses if any brings the measure into
force (or takes the inverted privilege away):

* the *decisive* event: one event of a type of gravity below *S* that can reach the
  measure, with probing attribute values (bounds, 0, 1, large values, every enum value);
* *harmless companions*: any number of events (:func:`companion_count`, and
  :data:`MANY_COMPANIONS`) of types
  below *S* whose points are never adverse (0, or in the subject's favour on every
  scorecard that counts them) — the "precondition" events a condition may demand so
  that one event does not look like one event; placed just before the decisive event,
  or before the longest metric window so that they sit at its far edge, and, when a
  measure has a prerequisite, just after it and after each notice period (where a later
  event completes a set-back);
* *moments*: the decisive event's instant, a day later, the end of every notice period,
  both sides of the window and expiry edges of the history's types, every tier
  threshold change, and just after the last companion.

A reported date (``type: date``) is set to the event's own instant. A history of
harmless companions alone must not bring a restriction into force either. Accumulation
stays allowed: several *adverse* events of lower gravity may bring a restriction into
force (a points system), which is why only harmless events are multiplied. Every probe
runs the one engine (:func:`trustledger.engine.evaluate`), and the probe is bounded
(:data:`SUBSET`, :data:`COMPANION_SUBSET`, :data:`MAX_COMPANIONS`, :data:`MAX_MOMENTS`,
:data:`MAX_EVALUATIONS`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from trustledger.engine.events import Event
from trustledger.policy.compiled import CompiledPolicy, reported_text
from trustledger.policy.compiler import probe_attributes
from trustledger.policy.durations import Duration
from trustledger.policy.literals import folded_constants
from trustledger.policy.models import AttributeType, MeasureKind
from trustledger.policy.reach import Reach
from trustledger.policy.taxonomy import Gravity

SUBSET = 8
"""Attribute sets per event type tried at every edge moment (the single-event probe tries
every set :func:`~trustledger.policy.compiler.probe_attributes` gives at the first moments)."""

COMPANION_SUBSET = 3
"""Attribute sets per decisive event type tried in histories with companions."""

MAX_EVALUATIONS = 10_000
"""At most this many engine evaluations per policy; a policy needing more is refused
(``proportionality``) rather than accepted unprobed."""

MIN_COMPANIONS = 3
MAX_COMPANIONS = 25
"""Bounds of the number of copies of each harmless companion type in a probe history."""

MANY_COMPANIONS = 100
"""Copies of each harmless type always tried as well: a condition's threshold need not be
written as a whole number (``rides >= 10.0``, ``rides > 3 * 3``, ``double(rides) / 10.0
>= 1.0``), and a threshold up to this many is found however it is written."""

EXACT_COMPANIONS = 200
"""Exact counts of each harmless type tried as well, up to this many: every whole number a
condition singles out (``rides == 3 * 17`` needs exactly 51, ``rides >= 5 && rides < 8``
one of 5 to 7), however its arithmetic is written."""

MAX_EXACT_COUNTS = 16
"""At most this many exact counts per policy (the smallest, after the usual ones)."""

MAX_MOMENTS = 32
"""At most this many evaluation instants per probe history."""

FORMALITY_CATEGORIES = frozenset({"identity_verification"})
"""Categories whose events are formalities whatever points a policy gives them: a
privilege everyone holds once verified is an entitlement, even if verifying earns a
token point."""

HORIZON = timedelta(days=366 * 200)
"""Windows, expiries and notices longer than this are probed as if endless."""

_SECOND = timedelta(seconds=1)


class ProbeBudgetExceeded(Exception):
    """The probe needed more than :data:`MAX_EVALUATIONS` engine evaluations."""

    def __init__(self, budget: int) -> None:
        super().__init__(f"the proportionality probe needs more than {budget} evaluations")
        self.budget = budget


@dataclass(frozen=True)
class Restricting:
    """A measure the probe weighs as a restriction: its severity, and whether it is inverted."""

    name: str
    severity: Gravity
    inverted: bool


@dataclass(frozen=True)
class Finding:
    """A restricting measure a probe history brings into force (or takes away)."""

    measure: str
    message: str


@dataclass(frozen=True)
class _Probe:
    type: str
    attributes: dict[str, Any]


@dataclass
class _History:
    decisive: _Probe | None
    companions: list[tuple[_Probe, datetime]] = field(default_factory=list)
    placement: str = ""

    def types(self) -> set[str]:
        """The event types in the history."""
        found = {p.type for p, _ in self.companions}
        if self.decisive is not None:
            found.add(self.decisive.type)
        return found

    def events(self, policy: CompiledPolicy, at: datetime) -> list[Event]:
        """The history's events, the decisive one at ``at``."""
        out = [_event(policy, f"probe-c{i}", p, when)
               for i, (p, when) in enumerate(self.companions)]
        if self.decisive is not None:
            out.append(_event(policy, "probe-d", self.decisive, at))
        return out


def _event(policy: CompiledPolicy, key: str, probe: _Probe, when: datetime) -> Event:
    # A reported date (``type: date``) is the event's own instant: never after it is
    # recorded, never before it occurred, so an expiry counted from it starts then.
    et = policy.event_types[probe.type]
    attributes = dict(probe.attributes)
    for spec in et.attributes:
        if spec.type is AttributeType.DATE and spec.name in attributes:
            attributes[spec.name] = reported_text(when)
    return Event("linter", key, "probe", probe.type, when, when, attributes)


class Prober:
    """Runs the engine on probe histories of one policy (see the module docstring)."""

    def __init__(self, policy: CompiledPolicy, reach: Reach, *,
                 budget: int = MAX_EVALUATIONS) -> None:
        self.policy = policy
        self.budget = budget
        self.reach = reach
        self.everyone = frozenset(policy.scorecards)
        windows = [m.window for m in policy.metrics.values() if m.window is not None]
        start = policy.effective_from
        ends = [_after(w, start) for w in windows]
        self.longest = min(max((e - start for e in ends if e is not None),
                               default=timedelta(0)), HORIZON)
        self.t0 = start + self.longest + timedelta(days=2)
        self._baseline: dict[tuple[datetime, bool], dict[str, bool]] = {}
        self.evaluations = 0
        """Engine evaluations run so far (at most ``budget``)."""

    # --- evaluation ------------------------------------------------------------------------

    def states(self, events: Sequence[Event], at: datetime, consent: bool) -> dict[str, bool]:
        """Whether each measure is in force for these events at ``at``."""
        from trustledger.engine.evaluate import evaluate  # the probe uses the one engine

        self.evaluations += 1
        if self.evaluations > self.budget:
            raise ProbeBudgetExceeded(self.budget)
        result = evaluate(self.policy, events, at, opt_ins=self.everyone if consent else ())
        return {name: m.in_force for name, m in result.measures.items()}

    def baseline(self, at: datetime, consent: bool) -> dict[str, bool]:
        """The measures in force for a subject with no events at ``at``."""
        key = (at, consent)
        if key not in self._baseline:
            self._baseline[key] = self.states([], at, consent)
        return self._baseline[key]

    def moments(self, edges: bool, types: Iterable[str] | None = None) -> list[datetime]:
        """Evaluation instants after the decisive event at ``t0``.

        With ``edges``, also both sides of the window of every metric counting one of
        ``types`` (every metric when ``None``) and of the expiry of each of ``types``.
        """
        t0, policy = self.t0, self.policy
        chosen = set(policy.event_types) if types is None else set(types)
        out: list[datetime | None] = [t0, t0 + timedelta(days=1)]
        out += [_after(m.notice, t0, _SECOND) for m in policy.measures.values()
                if m.notice is not None]
        if edges:
            for metric in policy.metrics.values():
                if metric.window is not None and metric.types & chosen:
                    out += [_after(metric.window, t0, -_SECOND),
                            _after(metric.window, t0, _SECOND)]
            for name in sorted(chosen):
                et = policy.event_types[name]
                if et.expiry is not None:
                    end = _after(et.expiry, t0)
                    out += [_after(et.expiry, t0, -_SECOND), _after(et.expiry, t0, _SECOND)]
                    if et.overhang is not None and end is not None:
                        out.append(_after(et.overhang, end, _SECOND))
            for card in policy.scorecards.values():
                for tier in card.tiers:
                    out += [datetime.fromtimestamp(start, UTC) + _SECOND
                            for start, _ in tier.thresholds[1:]
                            if datetime.fromtimestamp(start, UTC) > t0]
        return sorted({at for at in out if at is not None})[:MAX_MOMENTS]

    # --- privilege inversion ---------------------------------------------------------------

    def inverted(self) -> dict[str, str]:
        """Privileges in force for a subject with no events and no consent that events take away.

        Each maps to a short description of one history that takes it away.
        """
        # Held at any moment the probe looks at, not just the first: a privilege everyone
        # gets only once a tier threshold moves is an entitlement from then on. And held
        # after neutral formalities alone (0-point events: an identity verification, a
        # card issued): a privilege everyone gets by one is an entitlement too.
        moments = [*self.moments(edges=True), self.t0 + timedelta(days=1)]
        neutral = [t for t in sorted(self.policy.event_types) if self.neutral(t)]
        count = self.companion_count()
        starts: list[tuple[str, list[_Probe]]] = [("", [])]
        if neutral:
            first = {t: probe_attributes(self.policy.event_types[t])[0] for t in neutral}
            starts += [(f" after {_list(neutral)} (formalities)",
                        [_Probe(t, first[t]) for t in neutral]),
                       (f" after {count} of each of {_list(neutral)} (formalities)",
                        [_Probe(t, first[t]) for t in neutral for _ in range(count)])]
        out: dict[str, str] = {}
        for name, measure in self.policy.measures.items():
            types = sorted(self.reach.reach(name).types)
            if measure.kind is not MeasureKind.PRIVILEGE or not types:
                continue
            for after, start in starts:
                base = self._events(start, "probe-n", self.t0 - timedelta(days=1))
                if not any(self._held(name, base, at) for at in moments):
                    continue
                witness = self._taken_away(name, types, base)
                if witness is not None:
                    out[name] = witness + after
                    break
        return out

    def neutral(self, type_name: str) -> bool:
        """Whether the type is a formality (0 points, registered as one, or its category).

        A formality is a type the register declares ``formality: true``, an identity
        verification, whatever its points; or a type every probing attribute set gives
        0 points.
        """
        et = self.policy.event_types[type_name]
        if et.formality or et.category in FORMALITY_CATEGORIES:
            return True
        for attrs in probe_attributes(et):
            fitted = et.fit(attrs)
            if isinstance(fitted, str) or fitted[1] != 0:
                return False
        return True

    def _events(self, probes: list[_Probe], key: str, last: datetime) -> list[Event]:
        return [_event(self.policy, f"{key}{i}", p, last - timedelta(hours=i))
                for i, p in enumerate(probes)]

    def _held(self, name: str, base: list[Event], at: datetime) -> bool:
        if not base:
            return self.baseline(at, False)[name]
        return self.states(base, at, False)[name]

    def _taken_away(self, name: str, types: list[str],
                    base: list[Event] | None = None) -> str | None:
        # Single events at the first moments; many events of a type, then of every
        # type, also at the edges of their windows and expiries.
        count = self.companion_count()
        histories: list[tuple[str, list[_Probe], bool]] = []
        for t in types:
            sets = _subset(probe_attributes(self.policy.event_types[t]))
            histories += [(f"one `{t}` event", [_Probe(t, a)], False) for a in sets]
        for t in types:
            sets = _subset(probe_attributes(self.policy.event_types[t]))
            histories.append((f"{count} `{t}` events",
                              [_Probe(t, sets[i % len(sets)]) for i in range(count)], True))
        every = [_Probe(t, a) for t in types
                 for a in _subset(probe_attributes(self.policy.event_types[t]))[:2]]
        histories.append(("events of every type that reaches it", every * 2, True))
        base = base or []
        for described, probes, edges in histories:
            events = [*base, *self._events(probes, "probe-", self.t0)]
            for at in self.moments(edges, {p.type for p in probes}):
                if self._held(name, base, at) and not self.states(events, at, False)[name]:
                    return described
        return None

    # --- proportionality -------------------------------------------------------------------

    def companion_count(self) -> int:
        """Copies of each harmless type in a probe history: enough for the policy's counts.

        The largest whole number in any condition (``accounts >= 10``) plus one, at
        least :data:`MIN_COMPANIONS` and at most :data:`MAX_COMPANIONS`.
        """
        sources = [m.condition.source for m in self.policy.measures.values()]
        sources += [et.when.source for et in self.policy.event_types.values()
                    if et.when is not None]
        found = [math.floor(float(n)) for s in sources
                 for n in re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])", s)]
        return max(MIN_COMPANIONS, min(MAX_COMPANIONS, max(found, default=0) + 1))

    def exact_counts(self) -> list[int]:
        """Further copies of each harmless type: the whole numbers conditions single out.

        The values of the literal-only arithmetic of every measure and ``when`` condition
        (:func:`~trustledger.policy.literals.folded_constants`), from 2 to
        :data:`EXACT_COMPANIONS`, besides :meth:`companion_count` and
        :data:`MANY_COMPANIONS`; at most :data:`MAX_EXACT_COUNTS` of them.
        """
        sources = [m.condition.source for m in self.policy.measures.values()]
        sources += [et.when.source for et in self.policy.event_types.values()
                    if et.when is not None]
        usual = {1, self.companion_count(), MANY_COMPANIONS}
        found = {int(v) for s in sources for v in folded_constants(s)
                 if v == int(v) and 2 <= v <= EXACT_COMPANIONS and int(v) not in usual}
        return sorted(found)[:MAX_EXACT_COUNTS]

    def harmless(self, type_name: str) -> bool:
        """Whether no attribute values give the type adverse points on a scorecard counting it."""
        et = self.policy.event_types[type_name]
        cards = [self.policy.scorecards[c] for c in et.scorecards]
        for attrs in probe_attributes(et):
            fitted = et.fit(attrs)
            if isinstance(fitted, str):
                continue
            points = fitted[1]
            if any(card.is_adverse(points) for card in cards) or (not cards and points < 0):
                return False
        return True

    def probe(self, measures: Iterable[Restricting]) -> list[Finding]:
        """Every restricting measure some probe history brings into force, with why."""
        chosen = list(measures)
        out: list[Finding] = []
        for inverted in (False, True):
            members = [m for m in chosen if m.inverted is inverted]
            if members:
                out += self._probe_all(inverted, members)
        return out

    def _probe_all(self, inverted: bool, members: list[Restricting]) -> list[Finding]:
        # One pass for every member: a history counts for a member when each of its
        # events is of lower gravity than the member's severity and its decisive event
        # (or, without one, a companion) can reach the member.
        consent = not inverted
        gravity = {t: et.gravity.rank for t, et in self.policy.event_types.items()}
        reach = {m.name: self.reach.reach(m.name).types for m in members}
        low = sorted({t for m in members for t in reach[m.name]
                      if gravity[t] < m.severity.rank})
        harmless = [t for t in low if self.harmless(t)]
        found: dict[str, Finding] = {}
        for history in self._histories(low, harmless):
            types = history.types()
            key = history.decisive.type if history.decisive is not None else None
            pending = [m for m in members if m.name not in found
                       and all(gravity[t] < m.severity.rank for t in types)
                       and (key in reach[m.name] if key is not None
                            else bool(types & reach[m.name]))]
            if not pending:
                continue
            edges = history.decisive is None or bool(history.companions) or \
                history.placement == "edges"
            moments = self.moments(edges, types)
            later = [when for _, when in history.companions if when > self.t0]
            if later:
                # before its companions, a history is its decisive event alone
                moments = sorted({*(at for at in moments if at >= min(later)),
                                  max(later) + _SECOND})
            for at in moments:
                states = self.states(history.events(self.policy, self.t0), at, consent)
                for m in pending:
                    if m.name in found:
                        continue
                    hit = not states[m.name] if inverted else states[m.name]
                    base = self.baseline(at, consent)[m.name]
                    if hit and inverted and not base and history.decisive is not None \
                            and history.companions:
                        # held after the companions alone (neutral formalities), and
                        # taken away by the decisive event
                        alone = _History(None, history.companions, history.placement)
                        base = self.states(alone.events(self.policy, self.t0), at,
                                           consent)[m.name]
                    if hit and (base if inverted else not base):
                        found[m.name] = Finding(m.name, self._message(m, history, at))
            if len(found) == len(members):
                break
        return [found[m.name] for m in members if m.name in found]

    def _histories(self, low: list[str], harmless: list[str]) -> Iterable[_History]:
        policy = self.policy
        # The single-event probe first, with every probing attribute set.
        for t in low:
            every = probe_attributes(policy.event_types[t])
            spread = _subset(every)
            for attrs in spread:
                yield _History(_Probe(t, attrs), placement="edges")
            for attrs in every:
                if attrs not in spread:
                    yield _History(_Probe(t, attrs))
        if not harmless:
            return
        count, exact = self.companion_count(), self.exact_counts()
        sets = {h: _subset(probe_attributes(policy.event_types[h])) for h in harmless}
        groups = [harmless] + ([[h] for h in harmless] if 1 < len(harmless) <= 6 else [])
        hour = timedelta(hours=1)
        placements = [("just before it", self.t0 - hour, -hour)]
        windowed = {t for m in policy.metrics.values() if m.window is not None for t in m.types}
        if self.longest and windowed & set(harmless):
            placements.append(("before the longest window",
                               self.t0 - self.longest - timedelta(days=1), -hour))
        if any(m.requires is not None for m in policy.measures.values()):
            # a measure set back to its prerequisite applies at a later event: after the
            # decisive one, and after each notice period
            placements.append(("just after it", self.t0 + hour, hour))
            notices = sorted({n for m in policy.measures.values() if m.notice is not None
                              if (n := _after(m.notice, self.t0)) is not None})
            placements += [(f"after the notice period ending {n:%Y-%m-%d}", n + hour, hour)
                           for n in notices]
        decisive: list[_Probe | None] = [None] + [
            _Probe(t, a) for t in low if t not in harmless
            for a in _subset(probe_attributes(policy.event_types[t]), COMPANION_SUBSET)]
        for group in groups:
            for label, start, step in placements:
                after = step > timedelta(0)
                # a later event completes a set-back: one is enough, and needs a decisive one
                for copies in [1] if after else sorted({1, count, MANY_COMPANIONS,
                                                        *exact}):
                    companions = [(_Probe(h, sets[h][i % len(sets[h])]),
                                   start + step * (i * len(group) + k))
                                  for i in range(copies) for k, h in enumerate(group)]
                    for d in decisive[1:] if after else decisive:
                        yield _History(d, companions, label)

    def _message(self, m: Restricting, history: _History, at: datetime) -> str:
        policy = self.policy
        kind = (f"privilege `{m.name}` (in force for a subject with no adverse events, so "
                "taking it away is a restriction)" if m.inverted else f"restriction `{m.name}`")
        effect = "takes away" if m.inverted else "brings"
        tail = "" if m.inverted else " into force"
        when = _when(at - self.t0)
        if history.decisive is None:
            verb = "take away" if m.inverted else "bring"
            return (f"safeguard 3: harmless events alone ({_companions(history)}, no adverse "
                    f"points) {verb} {kind}{tail} {when}; a restriction must follow from "
                    "adverse conduct")
        d = history.decisive
        etype = policy.event_types[d.type]
        attrs = _event(policy, "shown", d, self.t0).attributes
        shown = ", ".join(f"{k}={v!r}" for k, v in attrs.items()) or "no attributes"
        single = (f"a single `{d.type}` event (gravity {etype.gravity.value}, e.g. {shown})")
        if history.companions:
            single += (f" with harmless events ({_companions(history)}, placed "
                       f"{history.placement}; no adverse points)")
        return (f"safeguard 3: {single} {effect} {kind}{tail} (severity "
                f"{m.severity.value}) {when}; a restriction may follow from one event only "
                "if that event is at least as grave, and harmless events cannot stand in for "
                "conduct" if history.companions else
                f"safeguard 3: {single} {effect} {kind}{tail} (severity {m.severity.value}) "
                f"{'on its own' if at - self.t0 < timedelta(days=2) else when}; a "
                "restriction may follow from one event only if that event is at least as "
                "grave")


def _after(duration: Duration, moment: datetime,
           shift: timedelta = timedelta(0)) -> datetime | None:
    """``moment`` plus ``duration`` (and ``shift``), or ``None`` past :data:`HORIZON`."""
    try:
        end = duration.after(moment) + shift
    except (ValueError, OverflowError):  # beyond year 9999: there is no such moment
        return None
    return end if end - moment <= HORIZON else None


def _subset(sets: list[dict[str, Any]], size: int = SUBSET) -> list[dict[str, Any]]:
    if len(sets) <= size:
        return sets
    step = (len(sets) - 1) / (size - 1)
    return [sets[round(i * step)] for i in range(size)]


def _list(types: list[str]) -> str:
    return ", ".join(f"`{t}`" for t in types)


def _companions(history: _History) -> str:
    counts: dict[str, int] = {}
    for probe, _ in history.companions:
        counts[probe.type] = counts.get(probe.type, 0) + 1
    return ", ".join(f"{n} `{t}`" for t, n in counts.items())


def _when(delta: timedelta) -> str:
    if delta < timedelta(days=1):
        return "at once"
    days = delta / timedelta(days=1)
    return f"{days:.0f} days later" if days >= 1.5 else "a day later"
