"""The safeguards linter (DESIGN.md safeguards 1 to 3). It runs on every load and cannot be skipped.

Rules, each refusal naming the rule, the offending element and why:

``out-of-bounds-category`` (safeguard 1)
    an event type (or a metric filter) uses a category the law puts out of bounds.
``out-of-bounds-name`` (safeguard 1)
    an event type or attribute is *named* for something out of bounds (comments,
    posts, religion, friends…) whatever category it claims.
``unknown-category`` (safeguard 1)
    a category that is not in the fixed taxonomy.
``context-firewall`` (safeguard 2)
    a restriction in domain D is fed, through any path, by events of another domain.
``cross-domain-consent`` (safeguard 2)
    a scorecard spanning domains is not opt-in; a metric spanning domains is not
    scoped to an opt-in scorecard; a measure combining domains reads no opt-in input.
``cross-domain-restriction`` (safeguard 2)
    a restriction depends on a scorecard or metric that spans domains.
``purpose-firewall`` (safeguard 2)
    a purpose discloses a measure of another domain, or a scorecard whose events are
    not of its domain (an opt-in scorecard may span domains if one of them is the
    purpose's: the subject's opt-in covers the crossing).
``protected-attribute`` (safeguard 1)
    a statistical scorecard's feature, or the attribute feeding it, is a protected
    attribute (sex, marital status, age as such, nationality…: the models area's one
    list, :mod:`trustledger.models.features`), or the model declares it so.
``proportionality`` (safeguard 3)
    a restriction is in force for a subject with no events, or a single event of
    lower gravity than the restriction's severity can bring it into force. This
    is checked by evaluating, with the real engine, one event of each such type
    with probing attribute values, at the event's time and after any notice period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from trustledger.engine.events import Event
from trustledger.errors import LintError, PolicyError, PolicyProblem
from trustledger.policy.compiled import CompiledMeasure, CompiledPolicy
from trustledger.policy.compiler import probe_attributes
from trustledger.policy.models import MeasureKind
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, OUT_OF_BOUNDS_CATEGORIES

OUT_OF_BOUNDS_WORDS = {
    "speech_expression": ("comment", "comments", "commented", "post", "posts", "posted",
                          "posting", "tweet", "tweets", "tweeted", "message", "messages",
                          "speech", "opinion", "opinions", "blog", "petition", "criticism"),
    "assembly_protest": ("protest", "protests", "protested", "demonstration", "rally",
                         "assembly"),
    "religious_belief": ("religion", "religious", "church", "mosque", "temple", "synagogue",
                         "prayer", "faith", "worship"),
    "political_opinion": ("political", "politics", "dissent", "ideology"),
    "association": ("friend", "friends", "acquaintance", "acquaintances", "contacts",
                    "relatives", "associates", "follower", "followers", "kin"),
    "trade_union": ("trade_union", "labour_union", "labor_union", "unionised", "unionized"),
    "racial_ethnic_origin": ("race", "racial", "ethnic", "ethnicity"),
    "health": ("health", "diagnosis", "illness", "disease", "disability", "pregnancy",
               "medical", "medication"),
    "genetic_biometric": ("genetic", "dna", "genome", "biometric", "fingerprint"),
    "sex_life_orientation": ("sexual", "sexuality", "orientation", "gay", "lesbian"),
}
"""Words (or ``_``-joined phrases) that, as whole parts of an event type or attribute name,
mark it as recording something out of bounds, whatever category it declares."""

_WORD_CATEGORY = {word: cat for cat, words in OUT_OF_BOUNDS_WORDS.items() for word in words}


@dataclass(frozen=True)
class _Reach:
    """The event types that can reach an element, and the scorecards/metrics on the way."""

    types: frozenset[str]
    via: tuple[str, ...]


def lint(policy: CompiledPolicy) -> None:
    """Check the safeguards; raise :class:`LintError` listing every refusal."""
    problems = [*_bounds(policy), *_firewall(policy), *_purposes(policy)]
    if not problems:
        problems.extend(_proportionality(policy))
    if problems:
        raise LintError(problems)


def _problem(policy: CompiledPolicy, path: tuple[str | int, ...], rule: str,
             message: str) -> PolicyProblem:
    return policy.locator.problem(path, rule, message)


# --- safeguard 1 ---------------------------------------------------------------------------

def _bounds(policy: CompiledPolicy) -> list[PolicyProblem]:
    out = _statistical_bounds(policy)
    for name, et in policy.event_types.items():
        out.extend(_category(policy, ("event_types", name, "category"), f"event type `{name}`",
                             et.category, "in the taxonomy", sorted(ALLOWED_CATEGORIES)))
        named = [("event_types", name)] + [("event_types", name, "attributes", a.name)
                                           for a in et.attributes]
        for where in named:
            word = _out_of_bounds_word(str(where[-1]))
            if word is not None:
                category = _WORD_CATEGORY[word]
                what = "event type" if len(where) == 2 else f"attribute of `{name}`"
                out.append(_problem(policy, where, "out-of-bounds-name",
                                    f"safeguard 1: {what} `{where[-1]}` is named for "
                                    f"`{word}`, which records {category.replace('_', ' ')}; "
                                    f"whatever its declared category, "
                                    f"{OUT_OF_BOUNDS_CATEGORIES[category]}"))
    for name, metric in policy.model.metrics.items():
        for i, category in enumerate(metric.categories or ()):
            if category in OUT_OF_BOUNDS_CATEGORIES:
                out.append(_problem(policy, ("metrics", name, "categories", i),
                                    "out-of-bounds-category",
                                    f"safeguard 1: metric `{name}` selects `{category}`: "
                                    f"{OUT_OF_BOUNDS_CATEGORIES[category]}"))
    return out


def _statistical_bounds(policy: CompiledPolicy) -> list[PolicyProblem]:
    # A model is trained with protected attributes refused; the artifact could still be
    # hand-made, and a policy could feed a feature from an attribute named for one. The
    # models' list of protected attributes and this linter's out-of-bounds words both apply.
    from trustledger.models.features import (
        ALLOWED_CATEGORIES as FEATURE_CATEGORIES,
    )
    from trustledger.models.features import (
        PROTECTED_CATEGORIES,
        protected_by_name,
    )

    out = []
    for name, card in policy.scorecards.items():
        if card.model is None:
            continue
        for f in card.model.features:
            path: tuple[str | int, ...] = ("scorecards", name, "features", f.name)
            if f.category in PROTECTED_CATEGORIES:
                out.append(_problem(policy, path, "protected-attribute",
                                    f"safeguard 1: feature `{f.name}` of scorecard `{name}` is "
                                    f"declared by its model as `{f.category}`: "
                                    f"{PROTECTED_CATEGORIES[f.category]}"))
            else:
                out.extend(_category(policy, path, f"feature `{f.name}` of scorecard `{name}`",
                                     f.category, "a feature category", list(FEATURE_CATEGORIES)))
            names = [(path, f.name, "feature")]
            if f.attribute is not None:
                names.append(((*path, "attribute"), f.attribute, "attribute"))
            for where, word_of, what in names:
                found = protected_by_name(word_of)
                if found:
                    out.append(_problem(policy, where, "protected-attribute",
                                        f"safeguard 1: {what} `{word_of}` of scorecard `{name}` "
                                        f"is a protected attribute: "
                                        f"{'; '.join(PROTECTED_CATEGORIES[c] for c in found)}"))
                    continue
                word = _out_of_bounds_word(word_of)
                if word is not None:
                    category = _WORD_CATEGORY[word]
                    out.append(_problem(policy, where, "out-of-bounds-name",
                                        f"safeguard 1: {what} `{word_of}` of scorecard `{name}` "
                                        f"is named for `{word}`, which records "
                                        f"{category.replace('_', ' ')}: "
                                        f"{OUT_OF_BOUNDS_CATEGORIES[category]}"))
    return out


def _category(policy: CompiledPolicy, path: tuple[str | int, ...], what: str, category: str,
              known_as: str, allowed: list[str]) -> list[PolicyProblem]:
    # A declared category: out of bounds (never scored), or not among those allowed.
    if category in OUT_OF_BOUNDS_CATEGORIES:
        return [_problem(policy, path, "out-of-bounds-category",
                         f"safeguard 1: {what} has category `{category}`, which may never be "
                         f"scored: {OUT_OF_BOUNDS_CATEGORIES[category]}")]
    if category not in allowed:
        return [_problem(policy, path, "unknown-category",
                         f"safeguard 1: {what} has category `{category}`, which is not "
                         f"{known_as}; allowed: {', '.join(allowed)}")]
    return []


def _out_of_bounds_word(name: str) -> str | None:
    padded = f"_{name}_"
    for word in _WORD_CATEGORY:
        if f"_{word}_" in padded:
            return word
    return None


# --- safeguard 2 ---------------------------------------------------------------------------

class _Graph:
    """Which event types reach each scorecard, metric and measure (through ``when`` too)."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        self._types: dict[str, frozenset[str]] = {}

    def type_reach(self, name: str, stack: tuple[str, ...] = ()) -> frozenset[str]:
        """Event type ``name`` and every type its ``when`` condition reads."""
        if name in self._types:
            return self._types[name]
        et = self.policy.event_types[name]
        found = {name}
        if et.when is not None and name not in stack:
            for ref in sorted(et.when.names - {"attrs"}):
                found |= self.reach(ref, (*stack, name)).types
        result = frozenset(found)
        if not stack:
            self._types[name] = result
        return result

    def reach(self, name: str, stack: tuple[str, ...] = ()) -> _Reach:
        """The types reaching a scorecard, metric or measure, and the inputs on the way."""
        policy = self.policy
        if name in policy.scorecards:
            card = policy.scorecards[name]
            types = frozenset().union(*(self.type_reach(t, stack)
                                        for t in card.events if t in policy.event_types))
            if card.model is not None:
                types |= frozenset().union(*(self.reach(m, stack).types
                                             for m in card.model.metrics))
            return _Reach(types, (name,))
        if name in policy.metrics:
            types = frozenset().union(*(self.type_reach(t, stack)
                                        for t in policy.metrics[name].types))
            return _Reach(types, (name,))
        if name in policy.measures and name not in stack:
            measure = policy.measures[name]
            refs = [*measure.scorecards, *measure.metrics, *measure.measures]
            if measure.requires:
                refs.append(measure.requires)
            parts = [self.reach(ref, (*stack, name)) for ref in refs]
            types = frozenset().union(*(p.types for p in parts))
            via = tuple(dict.fromkeys(v for p in parts for v in p.via))
            return _Reach(types, via)
        return _Reach(frozenset(), ())

    def domains(self, types: Iterable[str]) -> set[str]:
        """The domains of a set of event types."""
        return {self.policy.event_types[t].domain for t in types}


def _firewall(policy: CompiledPolicy) -> list[PolicyProblem]:
    graph = _Graph(policy)
    out = []
    spanning: set[str] = set()
    for name, card in policy.scorecards.items():
        domains = graph.domains(graph.reach(name).types)
        if card.model is not None:
            domains |= card.domains
        if len(domains) > 1:
            spanning.add(name)
            if not card.opt_in:
                out.append(_problem(policy, ("scorecards", name), "cross-domain-consent",
                                    f"safeguard 2: scorecard `{name}` spans the domains "
                                    f"{', '.join(sorted(domains))} but is not `opt_in: true`; "
                                    "a score combining domains needs the subject's consent"))
    for name, metric in policy.metrics.items():
        domains = graph.domains(graph.reach(name).types)
        if len(domains) > 1:
            spanning.add(name)
            scope = policy.scorecards.get(metric.scorecard or "")
            if scope is None or not scope.opt_in:
                out.append(_problem(policy, ("metrics", name), "cross-domain-consent",
                                    f"safeguard 2: metric `{name}` spans the domains "
                                    f"{', '.join(sorted(domains))}; combine domains only in a "
                                    "metric scoped to an opt-in scorecard (`scorecard:`)"))
    for name, measure in policy.measures.items():
        reach = graph.reach(name)
        if measure.kind is MeasureKind.RESTRICTION:
            out.extend(_restriction_firewall(policy, graph, measure, reach, spanning))
        elif len(graph.domains(reach.types)) > 1 and not _consent_gated(policy, measure):
            out.append(_problem(policy, ("measures", name, "condition"), "cross-domain-consent",
                                f"safeguard 2: privilege `{name}` combines the domains "
                                f"{', '.join(sorted(graph.domains(reach.types)))} without "
                                "reading an opt-in scorecard, so no consent covers it"))
    return out


def _restriction_firewall(policy: CompiledPolicy, graph: _Graph, measure: CompiledMeasure,
                          reach: _Reach, spanning: set[str]) -> list[PolicyProblem]:
    path = ("measures", measure.name)
    crossing = [v for v in reach.via if v in spanning]
    if crossing:
        return [_problem(policy, (*path, "condition"), "cross-domain-restriction",
                         f"safeguard 2: restriction `{measure.name}` (domain {measure.domain}) "
                         f"depends on `{crossing[0]}`, which spans domains; a cross-domain "
                         "score may only grant privileges, never restrict")]
    foreign = sorted(t for t in reach.types
                     if policy.event_types[t].domain != measure.domain)
    for ref in reach.via:
        card = policy.scorecards.get(ref)
        if card is not None and card.model is not None and card.domains != {measure.domain}:
            return [_problem(policy, (*path, "condition"), "context-firewall",
                             f"safeguard 2: restriction `{measure.name}` in domain "
                             f"{measure.domain} reads the statistical scorecard `{ref}` of "
                             f"domain {', '.join(sorted(card.domains))}; a restriction may "
                             "only use its own domain")]
    if not foreign:
        return []
    shown = ", ".join(f"`{t}` ({policy.event_types[t].domain})" for t in foreign[:4])
    more = f" and {len(foreign) - 4} more" if len(foreign) > 4 else ""
    return [_problem(policy, (*path, "condition"), "context-firewall",
                     f"safeguard 2: restriction `{measure.name}` in domain {measure.domain} is "
                     f"fed by events of other domains: {shown}{more} (through "
                     f"{', '.join(reach.via) or 'its condition'}); a restriction may only use "
                     "events of its own domain")]


def _consent_gated(policy: CompiledPolicy, measure: CompiledMeasure) -> bool:
    for name in measure.scorecards:
        if policy.scorecards[name].opt_in:
            return True
    for name in measure.metrics:
        scope = policy.metrics[name].scorecard
        if scope is not None and policy.scorecards[scope].opt_in:
            return True
    return False


def _purposes(policy: CompiledPolicy) -> list[PolicyProblem]:
    out = []
    for name, purpose in policy.purposes.items():
        for i, measure_name in enumerate(purpose.measures):
            measure = policy.measures.get(measure_name)
            if measure is not None and measure.domain != purpose.domain:
                out.append(_problem(
                    policy, ("purposes", name, "measures", i), "purpose-firewall",
                    f"safeguard 2: purpose `{name}` (domain {purpose.domain}) discloses "
                    f"measure `{measure_name}` of domain {measure.domain}; a decision for a "
                    "purpose may only disclose measures of the purpose's own domain"))
        for i, card_name in enumerate(purpose.scorecards):
            card = policy.scorecards.get(card_name)
            if card is None:
                continue
            domains = card.domains
            if domains == {purpose.domain} or (card.opt_in and purpose.domain in domains):
                continue
            out.append(_problem(
                policy, ("purposes", name, "scorecards", i), "purpose-firewall",
                f"safeguard 2: purpose `{name}` (domain {purpose.domain}) discloses scorecard "
                f"`{card_name}` over the domains {', '.join(sorted(domains))}; a purpose may "
                "disclose a scorecard of its own domain, or an opt-in scorecard that "
                "includes its domain"))
    return out


# --- safeguard 3 ---------------------------------------------------------------------------

def _proportionality(policy: CompiledPolicy) -> list[PolicyProblem]:
    from trustledger.engine.evaluate import evaluate  # the probe uses the one engine

    restrictions = {n: m for n, m in policy.measures.items()
                    if m.kind is MeasureKind.RESTRICTION}
    if not restrictions:
        return []
    graph = _Graph(policy)
    everyone = set(policy.scorecards)
    start = policy.effective_from + timedelta(days=1)
    notices = {m.notice for m in policy.measures.values() if m.notice is not None}
    moments = [start, start + timedelta(days=1)] + [
        n.after(start) + timedelta(seconds=1) for n in sorted(notices, key=str)]
    out = []
    try:
        baseline = evaluate(policy, [], moments[-1], opt_ins=everyone)
    except PolicyError as exc:
        return list(exc.problems)
    for name, state in baseline.measures.items():
        if name in restrictions and state.in_force:
            out.append(_problem(policy, ("measures", name, "condition"), "proportionality",
                                f"safeguard 3: restriction `{name}` is in force for a subject "
                                "with no events at all; a restriction must follow from conduct"))
    candidates: dict[str, list[str]] = {}
    for name, measure in restrictions.items():
        assert measure.severity is not None
        for t in sorted(graph.reach(name).types):
            if policy.event_types[t].gravity.rank < measure.severity.rank:
                candidates.setdefault(t, []).append(name)
    refused: set[str] = set()
    for type_name in sorted(candidates):
        etype = policy.event_types[type_name]
        for attrs in probe_attributes(etype):
            event = Event("linter", "probe", "probe", type_name, start, start, attrs)
            hits = []
            for moment in moments:
                try:
                    result = evaluate(policy, [event], moment, opt_ins=everyone)
                except PolicyError as exc:
                    return list(exc.problems)
                hits += [n for n in candidates[type_name]
                         if result.measures[n].in_force and n not in refused]
            for name in dict.fromkeys(hits):
                refused.add(name)
                severity = restrictions[name].severity
                assert severity is not None
                shown = ", ".join(f"{k}={v!r}" for k, v in attrs.items()) or "no attributes"
                out.append(_problem(
                    policy, ("measures", name, "condition"), "proportionality",
                    f"safeguard 3: a single `{type_name}` event (gravity "
                    f"{etype.gravity.value}, e.g. {shown}) brings restriction `{name}` "
                    f"(severity {severity.value}) into force on its own; a restriction may "
                    "follow from one event only if that event is at least as grave"))
    return out
