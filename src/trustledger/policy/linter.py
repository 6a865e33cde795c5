"""The safeguards linter (DESIGN.md safeguards 1 to 3). It runs on every load and cannot be skipped.

:func:`lint_register` checks an event-type register's declarations (what a type *is*:
its words, category, domain and gravity); :func:`lint` checks a policy compiled against
a register (what it does with the types). Rules, each refusal naming the rule, the
offending element (key path) and why; ``docs/safeguards.md`` says which checks are
structural, which run on the register, and what a word check cannot catch.

``out-of-bounds-category`` (safeguard 1)
    a registered event type (or a policy's metric filter) uses a category the law puts
    out of bounds.
``out-of-bounds-name`` (safeguard 1)
    the name, label or description of a registered event type, an attribute, an enum
    value (register), a metric or a scorecard (policy) names something out of bounds
    (comments, churches, relatives, a union…: :func:`trustledger.terms.scan`, stemmed,
    with synonyms), whatever category it claims.
``protected-attribute`` (safeguard 1)
    a statistical scorecard's feature, or the attribute feeding it, is a protected
    attribute (sex, marital status, age as such, nationality…), or the model declares
    it so; or such a trait names an event type, attribute, enum value, metric or scorecard.
``unknown-category`` (safeguard 1)
    a category that is not in the fixed taxonomy.
``category-domain`` (safeguards 1, 2; register)
    a registered event type's domain is not one its category belongs to
    (:data:`~trustledger.policy.taxonomy.CATEGORY_RULES`): a court judgement cannot be
    filed under ``transport``, nor every event put into one umbrella domain.
``gravity-cap`` (safeguard 3; register)
    a registered event type's gravity is above the highest its category may carry.
``reserved-name`` (register)
    a register declaring the type ``retraction`` (reserved for withdrawals).
``context-firewall`` (safeguard 2)
    a restriction (or an inverted privilege, see below) in domain D is fed, through any
    path, by events of another domain.
``cross-domain-consent`` (safeguard 2)
    a scorecard spanning domains is not opt-in; a metric spanning domains is not
    scoped to an opt-in scorecard; a measure combining domains reads no opt-in input.
``cross-domain-restriction`` (safeguard 2)
    a restriction (or inverted privilege) depends on a scorecard or metric that spans
    domains.
``purpose-firewall`` (safeguard 2)
    a purpose discloses a measure of another domain, or a scorecard whose events are
    not of its domain (an opt-in scorecard may span domains if one of them is the
    purpose's: the subject's opt-in covers the crossing).
``set-back`` (safeguard 3)
    a measure's ``requires.set_back.to`` is a score at which its condition still holds
    (:func:`_set_backs`): the set-back would lift nothing, and the measure would apply at
    its next decision although it reads as set back.
``proportionality`` (safeguard 3)
    a restriction is in force for a subject with no events, or the worst history of
    lesser events around a single one brings it into force
    (:mod:`trustledger.policy.proportionality`); an inverted privilege declares no
    severity.

An *inverted privilege* holds for a subject with no events (and no consent) and is
taken away by events: it is a restriction in effect, and every rule above that applies
to restrictions applies to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from trustledger.errors import LintError, PolicyError, PolicyProblem
from trustledger.policy.compiled import CompiledMeasure, CompiledPolicy
from trustledger.policy.conditions import string_literals
from trustledger.policy.literals import folded_constants
from trustledger.policy.loader import Locator
from trustledger.policy.models import Aggregate, FormulaPoints, MeasureKind
from trustledger.policy.proportionality import ProbeBudgetExceeded, Prober, Restricting
from trustledger.policy.reach import Reach, Reached
from trustledger.policy.register import Register
from trustledger.policy.taxonomy import (
    ALLOWED_CATEGORIES,
    CATEGORY_RULES,
    FEATURE_DOMAINS,
    OUT_OF_BOUNDS_CATEGORIES,
)
from trustledger.terms import POLICY_CATEGORY, TermMatch, scan

_KeyPath = tuple[str | int, ...]


def lint(policy: CompiledPolicy) -> None:
    """Check the safeguards; raise :class:`LintError` listing every refusal.

    What an event type is (its words, category, domain and gravity) was checked when its
    register was read (:func:`lint_register`); this checks what the policy does with it.
    """
    reach = Reach(policy)
    problems = [*_bounds(policy), *_firewall(policy, reach), *_purposes(policy),
                *_set_backs(policy)]
    prober = Prober(policy, reach)
    try:
        inverted = prober.inverted()
        problems += _inverted_firewall(policy, reach, inverted)
        problems += _undeclared_severity(policy, inverted)
        problems += _unaudited_models(policy, reach, inverted)
        if not problems:
            problems += _proportionality(policy, prober, inverted)
    except PolicyError as exc:
        problems += exc.problems
    except ProbeBudgetExceeded as exc:
        problems.append(_problem(policy, ("measures",), "proportionality",
                                 f"safeguard 3: {exc}; the policy has too many event types, "
                                 "attributes or restrictions to be probed on load: split it "
                                 "into smaller policies (one per domain)"))
    if problems:
        raise LintError(problems)


def _problem(policy: CompiledPolicy, path: _KeyPath, rule: str, message: str) -> PolicyProblem:
    return policy.locator.problem(path, rule, message)


# --- safeguard 1: categories and words -----------------------------------------------------

def lint_register(register: Register) -> None:
    """Check an event-type register's declarations; raise :class:`LintError` listing every refusal.

    Rules ``out-of-bounds-category``, ``unknown-category``, ``out-of-bounds-name``,
    ``protected-attribute`` (names, labels, descriptions, attributes, enum values),
    ``category-domain``, ``gravity-cap`` and ``reserved-name``, each at the register's
    file, line and key path.
    """
    from trustledger.engine.events import RETRACTION

    locator = register.locator
    problems = []
    for name, et in register.event_types.items():
        if name == RETRACTION:
            problems.append(locator.problem(("event_types", name), "reserved-name",
                                            f"`{RETRACTION}` is the reserved type of "
                                            "withdrawals"))
        problems.extend(_category(locator, ("event_types", name, "category"),
                                  f"event type `{name}`", et.category, "in the taxonomy",
                                  sorted(ALLOWED_CATEGORIES)))
    problems += _words(locator, _register_texts(register))
    problems += _declarations(register)
    if problems:
        raise LintError(problems)


def _bounds(policy: CompiledPolicy) -> list[PolicyProblem]:
    out = _statistical_bounds(policy)
    for name, metric in policy.model.metrics.items():
        for i, category in enumerate(metric.categories or ()):
            if category in OUT_OF_BOUNDS_CATEGORIES:
                out.append(_problem(policy, ("metrics", name, "categories", i),
                                    "out-of-bounds-category",
                                    f"safeguard 1: metric `{name}` selects `{category}`: "
                                    f"{OUT_OF_BOUNDS_CATEGORIES[category]}"))
    out.extend(_words(policy.locator, _texts(policy)))
    return out


def _register_texts(register: Register) -> Iterator[tuple[_KeyPath, str, str, bool]]:
    """Every text of a register: (path, what it is, text, is a name).

    Type names, labels, descriptions, attribute names and descriptions, enum values.
    """
    for name, et in register.event_types.items():
        path: _KeyPath = ("event_types", name)
        yield path, f"event type `{name}`", name, True
        if et.label:
            yield (*path, "label"), f"the label of event type `{name}`", et.label, False
        if et.description:
            yield ((*path, "description"), f"the description of event type `{name}`",
                   et.description, False)
        for attr, spec in et.attributes.items():
            where: _KeyPath = (*path, "attributes", attr)
            yield where, f"attribute `{attr}` of `{name}`", attr, True
            if spec.description:
                yield ((*where, "description"), f"the description of attribute `{attr}`",
                       spec.description, False)
            for i, value in enumerate(spec.values or ()):
                yield ((*where, "values", i),
                       f"the value `{value}` of attribute `{name}.{attr}`", value, True)


def _texts(policy: CompiledPolicy) -> Iterator[tuple[_KeyPath, str, str, bool]]:
    """Every text of the policy that says what is scored: (path, what it is, text, is a name).

    The event types' own texts are the register's (:func:`_register_texts`). Measures,
    tiers and purposes say what is *decided*, not what is scored, and are not read (a
    privilege to "comment everywhere" grants speech, it does not score it).
    """
    model = policy.model
    for name, et in model.event_types.items():
        # the texts a `when` condition or points formula compares attributes with
        expressions = [("when", et.when)]
        if isinstance(et.points, FormulaPoints):
            expressions.append(("points.formula", et.points.formula))
        for key, source in expressions:
            for text in string_literals(source or ""):
                yield (("event_types", name, *key.split(".")),
                       f"a text in the `{key}` of event type `{name}`", text, False)
    for name, metric in model.metrics.items():
        yield ("metrics", name), f"metric `{name}`", name, True
        if metric.description:
            yield (("metrics", name, "description"), f"the description of metric `{name}`",
                   metric.description, False)
    for name, card in model.scorecards.items():
        yield ("scorecards", name), f"scorecard `{name}`", name, True
        if card.label:
            yield (("scorecards", name, "label"), f"the label of scorecard `{name}`",
                   card.label, False)
        if card.description:
            yield (("scorecards", name, "description"),
                   f"the description of scorecard `{name}`", card.description, False)


def _words(locator: Locator,
           texts: Iterable[tuple[_KeyPath, str, str, bool]]) -> list[PolicyProblem]:
    from trustledger.terms import FEATURE_CATEGORY

    out = []
    for path, what, text, is_name in texts:
        for match in _unique(scan(text)):
            named = f"{what} is named for `{match.word}`" if is_name else \
                f"{what} (\"{_short(text)}\") mentions `{match.word}`"
            category = POLICY_CATEGORY[match.category]
            if category is not None:
                out.append(locator.problem(path, "out-of-bounds-name",
                                    f"safeguard 1: {named}, which records "
                                    f"{category.replace('_', ' ')} (`{match.term}`); whatever "
                                    f"its declared category, {OUT_OF_BOUNDS_CATEGORIES[category]}"))
            else:
                # The models package (NumPy) is imported only when a trait is named.
                from trustledger.models.features import PROTECTED_CATEGORIES

                trait = FEATURE_CATEGORY[match.category]
                assert trait is not None
                out.append(locator.problem(path, "protected-attribute",
                                    f"safeguard 1: {named}, which is a protected attribute "
                                    f"(`{match.term}`): {PROTECTED_CATEGORIES[trait]}"))
    return out


def _unique(matches: list[TermMatch]) -> list[TermMatch]:
    seen: set[str] = set()
    out = []
    for m in matches:
        if m.category not in seen:
            seen.add(m.category)
            out.append(m)
    return out


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _statistical_bounds(policy: CompiledPolicy) -> list[PolicyProblem]:
    # A model is trained with protected attributes refused; the artifact could still be
    # hand-made, and a policy could feed a feature from an attribute named for one. The
    # models' protected categories and the one word scanner (trustledger.terms) apply.
    from trustledger.models.features import (
        ALLOWED_CATEGORIES as FEATURE_CATEGORIES,
    )
    from trustledger.models.features import PROTECTED_CATEGORIES
    from trustledger.terms import FEATURE_CATEGORY

    traits = {c for c in FEATURE_CATEGORY.values() if c is not None}
    out = []
    for name, card in policy.scorecards.items():
        if card.model is None:
            continue
        out.extend(_model_domain(policy, name))
        for f in card.model.features:
            path: _KeyPath = ("scorecards", name, "features", f.name)
            # speech, assembly and association are the policy taxonomy's out-of-bounds
            # categories (with their legal reason), whichever vocabulary a model uses
            if f.category in PROTECTED_CATEGORIES and (
                    f.category in traits or f.category not in OUT_OF_BOUNDS_CATEGORIES):
                out.append(_problem(policy, path, "protected-attribute",
                                    f"safeguard 1: feature `{f.name}` of scorecard `{name}` is "
                                    f"declared by its model as `{f.category}`: "
                                    f"{PROTECTED_CATEGORIES[f.category]}"))
            else:
                out.extend(_category(policy.locator, path,
                                     f"feature `{f.name}` of scorecard `{name}`",
                                     f.category, "a feature category", list(FEATURE_CATEGORIES)))
            names = [(path, f.name, "feature")]
            if f.attribute is not None:
                names.append(((*path, "attribute"), f.attribute, "attribute"))
            for where, word_of, what in names:
                for match in _unique(scan(word_of))[:1]:
                    trait = FEATURE_CATEGORY[match.category]
                    if trait is not None:
                        out.append(_problem(policy, where, "protected-attribute",
                                            f"safeguard 1: {what} `{word_of}` of scorecard "
                                            f"`{name}` is a protected attribute (named for "
                                            f"`{match.word}`): {PROTECTED_CATEGORIES[trait]}"))
                        continue
                    category = POLICY_CATEGORY[match.category]
                    assert category is not None
                    out.append(_problem(policy, where, "out-of-bounds-name",
                                        f"safeguard 1: {what} `{word_of}` of scorecard `{name}` "
                                        f"is named for `{match.word}`, which records "
                                        f"{category.replace('_', ' ')}: "
                                        f"{OUT_OF_BOUNDS_CATEGORIES[category]}"))
    return out


def _model_domain(policy: CompiledPolicy, name: str) -> list[PolicyProblem]:
    # A statistical scorecard's domain is the policy's word; its attribute-fed features'
    # categories say what the model weighs (a credit model is finance or commerce).
    spec = policy.model.scorecards[name]
    card = policy.scorecards[name]
    assert card.model is not None
    domain = getattr(spec, "domain", None)
    for f in card.model.features:
        allowed = FEATURE_DOMAINS.get(f.category)
        if f.attribute is None or allowed is None or domain in allowed:
            continue
        return [_problem(policy, ("scorecards", name, "domain"), "category-domain",
                         f"safeguard 2: statistical scorecard `{name}` declares the domain "
                         f"`{domain}`, but its feature `{f.name}` is `{f.category}`, which "
                         f"belongs to {_either(sorted(allowed))}: the model weighs that "
                         "domain's record, and declaring it another domain would carry it "
                         "across the firewall")]
    return []


def _category(locator: Locator, path: _KeyPath, what: str, category: str,
              known_as: str, allowed: list[str]) -> list[PolicyProblem]:
    # A declared category: out of bounds (never scored), or not among those allowed.
    if category in OUT_OF_BOUNDS_CATEGORIES:
        return [locator.problem(path, "out-of-bounds-category",
                         f"safeguard 1: {what} has category `{category}`, which may never be "
                         f"scored: {OUT_OF_BOUNDS_CATEGORIES[category]}")]
    if category not in allowed:
        return [locator.problem(path, "unknown-category",
                         f"safeguard 1: {what} has category `{category}`, which is not "
                         f"{known_as}; allowed: {', '.join(allowed)}")]
    return []


# --- declarations bounded by the taxonomy ---------------------------------------------------

def _declarations(register: Register) -> list[PolicyProblem]:
    # The register declares each type's domain and gravity; the taxonomy bounds both, so a
    # declaration cannot carry an event across the firewall or up the gravity scale.
    out = []
    locator = register.locator
    for name, et in register.event_types.items():
        rule = CATEGORY_RULES.get(et.category)
        if rule is None:
            continue
        if et.domain not in rule.domains:
            out.append(locator.problem(("event_types", name, "domain"), "category-domain",
                                f"safeguard 2: event type `{name}` is `{et.category}` but "
                                f"declares the domain `{et.domain}`; `{et.category}` belongs "
                                f"to {_either(sorted(rule.domains))}, so its events cannot be "
                                "moved into another domain's restrictions"))
        if et.gravity.rank > rule.max_gravity.rank:
            out.append(locator.problem(("event_types", name, "gravity"), "gravity-cap",
                                f"safeguard 3: event type `{name}` declares gravity "
                                f"{et.gravity.value}, above the {rule.max_gravity.value} "
                                f"that `{et.category}` ({rule.description}) may carry; an "
                                "inflated gravity would let one event bring graver "
                                "restrictions into force"))
    return out


def _either(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


# --- safeguard 2 ---------------------------------------------------------------------------

def _firewall(policy: CompiledPolicy, graph: Reach) -> list[PolicyProblem]:
    out = []
    spanning = _spanning(policy, graph)
    for name, card in policy.scorecards.items():
        if name in spanning and not card.opt_in:
            out.append(_problem(policy, ("scorecards", name), "cross-domain-consent",
                                f"safeguard 2: scorecard `{name}` spans the domains "
                                f"{', '.join(sorted(spanning[name]))} but is not "
                                "`opt_in: true`; a score combining domains needs the "
                                "subject's consent"))
    for name, metric in policy.metrics.items():
        if name in spanning:
            scope = policy.scorecards.get(metric.scorecard or "")
            if scope is None or not scope.opt_in:
                out.append(_problem(policy, ("metrics", name), "cross-domain-consent",
                                    f"safeguard 2: metric `{name}` spans the domains "
                                    f"{', '.join(sorted(spanning[name]))}; combine domains "
                                    "only in a metric scoped to an opt-in scorecard "
                                    "(`scorecard:`)"))
    for name, measure in policy.measures.items():
        reach = graph.reach(name)
        if measure.kind is MeasureKind.RESTRICTION:
            out.extend(_restriction_firewall(policy, measure, reach, set(spanning),
                                             f"restriction `{name}`"))
        elif len(graph.domains(reach.types)) > 1 and not _consent_gated(policy, measure):
            out.append(_problem(policy, ("measures", name, "condition"), "cross-domain-consent",
                                f"safeguard 2: privilege `{name}` combines the domains "
                                f"{', '.join(sorted(graph.domains(reach.types)))} without "
                                "reading an opt-in scorecard, so no consent covers it"))
        elif reach.types and measure.domain not in graph.domains(reach.types) and \
                not _consent_gated(policy, measure):
            # Named for one domain, decided by another: its state (disclosed to the
            # declared domain's purposes) would carry that other domain's record there.
            out.append(_problem(policy, ("measures", name, "domain"), "context-firewall",
                                f"safeguard 2: privilege `{name}` is declared in domain "
                                f"{measure.domain} but decided only by events of "
                                f"{', '.join(sorted(graph.domains(reach.types)))}; its state "
                                f"would disclose that record to {measure.domain}'s decisions "
                                "without the subject's opt-in: declare it in its own domain"))
    return out


def _spanning(policy: CompiledPolicy, graph: Reach) -> dict[str, set[str]]:
    """The scorecards and metrics whose events span several domains, with the domains."""
    out = {}
    for name, card in policy.scorecards.items():
        domains = graph.domains(graph.reach(name).types)
        if card.model is not None:
            domains |= card.domains
        if len(domains) > 1:
            out[name] = domains
    for name in policy.metrics:
        domains = graph.domains(graph.reach(name).types)
        if len(domains) > 1:
            out[name] = domains
    return out


def _inverted_firewall(policy: CompiledPolicy, graph: Reach,
                       inverted: dict[str, str]) -> list[PolicyProblem]:
    spanning = set(_spanning(policy, graph))
    out = []
    for name, witness in inverted.items():
        what = (f"privilege `{name}` (in force for a subject with no adverse events and taken away "
                f"by {witness}, so a restriction)")
        out.extend(_restriction_firewall(policy, policy.measures[name], graph.reach(name),
                                         spanning, what))
    return out


def _restriction_firewall(policy: CompiledPolicy, measure: CompiledMeasure, reach: Reached,
                          spanning: set[str], what: str) -> list[PolicyProblem]:
    path = ("measures", measure.name)
    crossing = [v for v in reach.via if v in spanning]
    if crossing:
        return [_problem(policy, (*path, "condition"), "cross-domain-restriction",
                         f"safeguard 2: {what} (domain {measure.domain}) "
                         f"depends on `{crossing[0]}`, which spans domains; a cross-domain "
                         "score may only grant privileges, never restrict")]
    foreign = sorted(t for t in reach.types
                     if policy.event_types[t].domain != measure.domain)
    for ref in reach.via:
        card = policy.scorecards.get(ref)
        if card is not None and card.model is not None and card.domains != {measure.domain}:
            return [_problem(policy, (*path, "condition"), "context-firewall",
                             f"safeguard 2: {what} in domain "
                             f"{measure.domain} reads the statistical scorecard `{ref}` of "
                             f"domain {', '.join(sorted(card.domains))}; a restriction may "
                             "only use its own domain")]
    if not foreign:
        return []
    shown = ", ".join(f"`{t}` ({policy.event_types[t].domain})" for t in foreign[:4])
    more = f" and {len(foreign) - 4} more" if len(foreign) > 4 else ""
    return [_problem(policy, (*path, "condition"), "context-firewall",
                     f"safeguard 2: {what} in domain {measure.domain} is "
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

def _undeclared_severity(policy: CompiledPolicy, inverted: dict[str, str]) -> list[PolicyProblem]:
    out = []
    for name, witness in inverted.items():
        if policy.measures[name].severity is None:
            out.append(_problem(policy, ("measures", name), "proportionality",
                                f"safeguard 3: privilege `{name}` is in force for a subject "
                                f"with no adverse events and taken away by {witness}: it "
                                "restricts "
                                "like a restriction, so it must declare its `severity` "
                                "(minor .. grave) to be weighed against the events that take "
                                "it away"))
    return out


def _unaudited_models(policy: CompiledPolicy, graph: Reach,
                      inverted: dict[str, str]) -> list[PolicyProblem]:
    """Restrictions (inverted privileges too) that read a model never audited for fairness."""
    from trustledger.models.audit import audit_status

    out = []
    for name, measure in policy.measures.items():
        if measure.kind is not MeasureKind.RESTRICTION and name not in inverted:
            continue
        for via in graph.reach(name).via:
            card = policy.scorecards.get(via)
            if card is None or card.model is None:
                continue
            status = audit_status(card.model.scorer.artifact)
            if not status.audited:
                out.append(_problem(
                    policy, ("measures", name, "condition"), "unaudited-model",
                    f"safeguard 1: `{name}` restricts on statistical scorecard `{via}`, whose "
                    f"model {card.model.hash} is {status.reason}; a model may restrict anyone "
                    "only once it has been audited against protected attributes (train it "
                    "with --audit FILE --id COLUMN)"))
    return out


def _proportionality(policy: CompiledPolicy, prober: Prober,
                     inverted: dict[str, str]) -> list[PolicyProblem]:
    restricting = [Restricting(n, m.severity, n in inverted)
                   for n, m in policy.measures.items()
                   if m.severity is not None and
                   (m.kind is MeasureKind.RESTRICTION or n in inverted)]
    if not restricting:
        return []
    out = []
    moments = [*prober.moments(edges=True), prober.t0 + timedelta(days=1)]
    refused = set()
    for m in restricting:
        if m.inverted:
            continue
        if any(prober.baseline(at, True)[m.name] for at in moments):
            refused.add(m.name)
            out.append(_problem(policy, ("measures", m.name, "condition"), "proportionality",
                                f"safeguard 3: restriction `{m.name}` is in force for a subject "
                                "with no events at all; a restriction must follow from conduct"))
    for finding in prober.probe(m for m in restricting if m.name not in refused):
        out.append(_problem(policy, ("measures", finding.measure, "condition"),
                            "proportionality", finding.message))
    return out



# --- set-backs -----------------------------------------------------------------------------

SET_BACK_CONTEXTS = 256
"""At most this many values of a condition's other inputs are tried per set-back."""


def _set_backs(policy: CompiledPolicy) -> list[PolicyProblem]:
    """Rule ``set-back``: a ``requires.set_back.to`` at which the measure's condition holds.

    A set-back lowers the scorecard's points to ``to`` when a step is reached without its
    prerequisite (a driver at 8 points never warned is set back to 7); if the condition
    still holds at ``to``, nothing is lifted: the prerequisite is put in force and the
    measure applies at its next decision. The condition is evaluated with the scorecard
    at ``to`` and at the numbers the condition names (and either side of them), and its
    other inputs (metrics, other scorecards, measures) at every combination of 0, the
    numbers it names and either side (measures true and false), up to
    :data:`SET_BACK_CONTEXTS`: refused if, for some inputs, the condition depends on the
    score, holds at a score worse than ``to`` and still holds at ``to``.
    """
    out = []
    at = policy.effective_from.timestamp()
    for name, measure in policy.measures.items():
        if measure.set_back is None:
            continue
        card_name, to = measure.set_back
        card = policy.scorecards[card_name]
        condition = measure.condition
        numbers = {x for v in folded_constants(condition.source) for x in (v - 1, v, v + 1)}
        scores = sorted({card.clamp(v) for v in {*numbers, to, card.base, to - 1e6, to + 1e6}})
        worse = [v for v in scores if (v - to) * card.adverse_sign > 0]
        others = sorted(condition.names - {card_name})
        choices = [_input_values(policy, other, numbers, at) for other in others]
        for combo in itertools.islice(itertools.product(*choices), SET_BACK_CONTEXTS):
            inputs = dict(zip(others, combo, strict=True))
            holds = {v: _holds(policy, measure, inputs, card_name, v, at) for v in scores}
            if holds[to] and any(holds[v] for v in worse) and not all(holds.values()):
                given = ", ".join(f"{k} = {_shown(v)}" for k, v in inputs.items())
                out.append(_problem(
                    policy, ("measures", name, "requires", "set_back", "to"), "set-back",
                    f"`{name}`'s condition `{condition.source}` still holds with "
                    f"`{card_name}` at {to:g}{f' (and {given})' if given else ''}: setting "
                    f"the points back to {to:g} lifts nothing, and `{name}` applies at its "
                    f"next decision after `{measure.requires}` is put in force, as without "
                    "a set-back; set back to a score at which the condition fails"))
                break
    return out


def _input_values(policy: CompiledPolicy, name: str, numbers: set[float],
                  at: float) -> list[Any]:
    """The values a condition's input is tried at (see :func:`_set_backs`)."""
    if name in policy.measures:
        return [False, True]
    values = sorted({0.0, *numbers})
    if name in policy.scorecards:
        card = policy.scorecards[name]
        return [_card_value(policy, name, card.clamp(v), at)
                for v in sorted({card.base, *values})]
    metric = policy.metrics[name]
    if metric.aggregate is Aggregate.COUNT:
        return sorted({int(v) for v in values if v >= 0})
    return values


def _card_value(policy: CompiledPolicy, name: str, score: float, at: float) -> dict[str, Any]:
    tier = policy.scorecards[name].tier_at(score, at)
    return {"score": score, "tier": tier[1].name if tier else "",
            "rank": tier[0] if tier else -1}


def _holds(policy: CompiledPolicy, measure: CompiledMeasure, inputs: dict[str, Any],
           card: str, score: float, at: float) -> bool:
    context = {**inputs, card: _card_value(policy, card, score, at)}
    try:
        return measure.condition.run_bool(context)
    except PolicyError:  # inputs no subject can have (a type the condition does not take)
        return False


def _shown(value: Any) -> str:
    return f"{value['score']:g}" if isinstance(value, dict) else \
        str(value).lower() if isinstance(value, bool) else f"{value:g}"
