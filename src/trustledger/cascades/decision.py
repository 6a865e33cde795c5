"""What a relying party is told: one purpose's part of a subject's decision, and its changes.

A subscription is for one purpose, so the cascades only ever look at what that
purpose discloses (the policy's ``purposes``: its measures and scorecards) — the
context firewall of DESIGN.md safeguard 2 holds for notifications as it does for
``POST /v1/decisions``. :func:`decide` evaluates the subject through
:func:`trustledger.scoring.assess` (the one scoring path) and keeps only that
part; :func:`changed` says whether two such views differ in a tier or a measure's
state (a score moving inside its tier is not a change).

:class:`Decisions` evaluates one subject once per policy and moment however many
subscriptions (parties, purposes) ask, and reads later moments of the same events —
the schedule's probes (:mod:`trustledger.cascades.timing`) — from a
:class:`~trustledger.engine.maintained.MaintainedEvaluation` instead of evaluating
again; each answer equals :func:`~trustledger.scoring.assess` at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trustledger.engine import Event
from trustledger.engine.history import History
from trustledger.engine.maintained import MaintainedEvaluation, Standing, maintainable
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import Entry
from trustledger.policy import CompiledPolicy
from trustledger.rights.erasure import erased_at
from trustledger.rights.review import fold_reviews
from trustledger.scoring import Assessment, PublishedPolicy, Rights, assess, assessed, rights_at

View = dict[str, Any]
"""One purpose's part of a decision: ``{"status", "scorecards", "measures"}`` (JSON values)."""


@dataclass(frozen=True, slots=True)
class Decided:
    """A purpose's view of the subject at ``at``, its reasons, and the assessment behind it."""

    at: datetime
    view: View
    reasons: tuple[str, ...]
    assessment: Assessment | None


_COMPILED: dict[str, CompiledPolicy] = {}
_COMPILED_MAX = 64


def _compiled(policy: PublishedPolicy) -> CompiledPolicy:
    """A published version, compiled once per process (compiling YAML costs ~0.1 s).

    A policy is named by its content hash, so the compiled form of a hash never changes.
    """
    found = _COMPILED.get(policy.hash)
    if found is None:
        found = policy.compile()
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[policy.hash] = found
    return found


class Policies:
    """Published policy versions, each compiled once (by content hash)."""

    def __init__(self) -> None:
        """An empty cache; :meth:`load` fills it."""
        self._published: list[PublishedPolicy] = []
        self._compiled: dict[str, CompiledPolicy] = {}

    def load(self, published: Sequence[PublishedPolicy]) -> None:
        """Take the ledger's published versions (compiling the ones not seen before)."""
        for policy in published:
            if policy.hash not in self._compiled:
                self._compiled[policy.hash] = _compiled(policy)
        self._published = list(published)

    def in_force(self, at: datetime) -> CompiledPolicy | None:
        """The version in force at ``at`` (as :func:`trustledger.scoring.policy_in_force`)."""
        candidates = [p for p in self._published if p.effective_from <= at]
        if not candidates:
            return None
        chosen = max(candidates, key=lambda p: (p.effective_from, p.seq))
        return self._compiled[chosen.hash]

    def changes_after(self, at: datetime) -> list[datetime]:
        """When a published version takes effect after ``at``."""
        return sorted({p.effective_from for p in self._published if p.effective_from > at})


def view_of(assessment: Assessment, purpose: str) -> tuple[View, tuple[str, ...]]:
    """The purpose's scorecards and measures from an assessment, and their reasons."""
    policy = assessment.policy
    declared = policy.purposes[purpose]
    result = assessment.evaluation
    cards: dict[str, Any] = {}
    reasons: list[str] = []
    for name in declared.scorecards:
        card = result.scorecards[name]
        cards[name] = {"score": card.score, "tier": card.tier}
        reasons.extend(str(r) for r in card.reasons)
    measures: dict[str, Any] = {}
    for name in declared.measures:
        measure = result.measures[name]
        measures[name] = {"state": measure.state.value, "in_force": measure.in_force}
        reasons.extend(str(r) for r in measure.reasons)
    view: View = {"status": "decided", "policy_hash": policy.hash, "scorecards": cards,
                  "measures": measures}
    return view, tuple(dict.fromkeys(reasons))


def decide(policies: Policies, subject: str, purpose: str, events: Sequence[Event],
           records: Sequence[Entry], at: datetime) -> Decided:
    """The purpose's view of the subject at ``at`` from its events and rights records.

    A subject with no events, or whose policy declares no such purpose, has the view
    ``{"status": "no_decision"}``; an erased subject ``{"status": "erased"}``.
    """
    return Decisions(policies, subject, events, records).decide(purpose, at)


_ERASED, _NONE = "erased", "no_decision"


class Decisions:
    """One subject's decisions from one set of events and records, each moment evaluated once.

    Every subscription to the subject (any party, any purpose) shares the evaluation
    of a policy version at a moment; a later moment is read from the maintained
    evaluation when it serves (a maintainable policy, the same opt-ins and disputed
    events, no event occurring or becoming known in between), else assessed anew.
    """

    def __init__(self, policies: Policies, subject: str, events: Sequence[Event],
                 records: Sequence[Entry]) -> None:
        """The subject's ``events`` and other ``records`` (consents, disputes, reviews)."""
        self.policies = policies
        self.subject = subject
        self.events = events
        self.records = records
        self._assessed: dict[tuple[str, datetime], Assessment | str] = {}
        self._maintained: tuple[tuple[object, ...], MaintainedEvaluation] | None = None
        self._standings: dict[tuple[str, datetime], Standing] = {}
        self._histories: dict[int, History] = {}
        self.evaluated = {"maintained": 0, "reference": 0, "standing": 0}
        """Moments evaluated, by which engine (each once, however many ask); ``standing``:
        tiers and states only (:meth:`signature`)."""

    def decide(self, purpose: str, at: datetime) -> Decided:
        """The purpose's view at ``at``, as :func:`decide` (whose answer it equals)."""
        policy = self.policies.in_force(at)
        if policy is None or purpose not in policy.purposes:
            return Decided(at, {"status": _NONE}, (), None)
        assessment = self.assessment(policy, at)
        if isinstance(assessment, str):
            return Decided(at, {"status": assessment}, (), None)
        view, reasons = view_of(assessment, purpose)
        return Decided(at, view, reasons, assessment)

    def assessment(self, policy: CompiledPolicy, at: datetime) -> Assessment | str:
        """The subject's assessment at ``at``, or ``"erased"`` / ``"no_decision"``."""
        key = (policy.hash, at)
        found = self._assessed.get(key)
        if found is None:
            try:
                found = self._maintained_assessment(policy, at)
                if found is None:
                    found = assess(policy, self.subject, self.events, self.records, at)
                    self.evaluated["reference"] += 1
                else:
                    self.evaluated["maintained"] += 1
            except ErasedError:
                found = _ERASED
            except NotFoundError:
                found = _NONE
            self._assessed[key] = found
        return found

    def history_of(self, decided: Decided) -> History | None:
        """The history behind ``decided``'s assessment if it was read from a maintained one.

        It is the history :func:`~trustledger.engine.history.build_history` gives for the
        assessment's scored events and opt-ins at ``decided.at``: the maintained
        evaluation served that moment, so every event had occurred by the moment it
        was built, and the history depends on the moment only through which events
        had occurred. ``None`` when the assessment came from the reference.
        """
        if decided.assessment is None:
            return None
        return self._histories.get(id(decided.assessment))

    def signature(self, purpose: str, at: datetime) -> tuple[Any, ...] | None:
        """:func:`signature` of :meth:`decide`'s view at ``at``, reading only what it needs.

        With no review in force, a moment the maintained evaluation serves is read for
        its tiers and measure states alone (:meth:`MaintainedEvaluation.standing`);
        otherwise the view is decided in full.
        """
        policy = self.policies.in_force(at)
        if (policy is None or purpose not in policy.purposes
                or (policy.hash, at) in self._assessed or fold_reviews(self.records, at)):
            return signature(self.decide(purpose, at).view)
        standing = self._standings.get((policy.hash, at))
        if standing is None:
            prepared = self._prepared(policy, at)
            if prepared is None:
                return signature(self.decide(purpose, at).view)
            standing = self._standings[policy.hash, at] = prepared[0].standing(at)
            self.evaluated["standing"] += 1
        declared = policy.purposes[purpose]
        return ("decided",
                tuple(sorted((n, standing.tiers[n]) for n in declared.scorecards)),
                tuple(sorted((n, standing.states[n].value) for n in declared.measures)))

    def _prepared(self, policy: CompiledPolicy,
                  at: datetime) -> tuple[MaintainedEvaluation, Rights] | None:
        """The maintained evaluation serving ``at`` with the rights as of ``at``; or ``None``.

        The rights are taken as :func:`assess` takes them (:func:`rights_at`); ``None``
        when the policy is not maintainable, the subject is erased or has no events
        (``assess`` says so), or no evaluation serves ``at``.
        """
        if not maintainable(policy) or not self.events or erased_at(self.records) is not None:
            return None
        rights = rights_at(policy, self.events, self.records, at)
        key = (policy.hash, rights.opt_ins, frozenset(e.key for e, _ in rights.left))
        built = self._maintained
        if built is None or built[0] != key or not built[1].serves(at):
            fresh = MaintainedEvaluation(policy, rights.kept, at, rights.opt_ins)
            if not fresh.serves(at):
                return None
            built = self._maintained = (key, fresh)
        return built[1], rights

    def _maintained_assessment(self, policy: CompiledPolicy, at: datetime) -> Assessment | None:
        """:func:`assess` at ``at`` read from the maintained evaluation; ``None`` if it cannot.

        The rights are applied as :func:`assess` applies them (:func:`assessed`);
        ``None`` when :meth:`_prepared` says no.
        """
        prepared = self._prepared(policy, at)
        if prepared is None:
            return None
        maintained, rights = prepared
        assessment = assessed(policy, self.subject, self.events, rights,
                              maintained.evaluation(at), at)
        self._histories[id(assessment)] = maintained.history
        return assessment


def signature(view: View | None) -> tuple[Any, ...] | None:
    """What a change is measured on: status, tiers and measure states (not scores)."""
    if view is None:
        return None
    return (
        view.get("status"),
        tuple(sorted((n, c.get("tier")) for n, c in view.get("scorecards", {}).items())),
        tuple(sorted((n, m.get("state")) for n, m in view.get("measures", {}).items())),
    )


def changed(old: View | None, new: View) -> bool:
    """Whether a tier or a measure's state differs between two views of one purpose."""
    return bool(signature(old) != signature(new))
