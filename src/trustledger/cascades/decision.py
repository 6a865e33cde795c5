"""What a relying party is told: one purpose's part of a subject's decision, and its changes.

A subscription is for one purpose, so the cascades only ever look at what that
purpose discloses (the policy's ``purposes``: its measures and scorecards) — the
context firewall of DESIGN.md safeguard 2 holds for notifications as it does for
``POST /v1/decisions``. :func:`decide` evaluates the subject through
:func:`trustledger.scoring.assess` (the one scoring path) and keeps only that
part; :func:`changed` says whether two such views differ in a tier or a measure's
state (a score moving inside its tier is not a change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trustledger.engine import Event
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import Entry
from trustledger.policy import CompiledPolicy
from trustledger.scoring import Assessment, PublishedPolicy, assess

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
    policy = policies.in_force(at)
    if policy is None or purpose not in policy.purposes:
        return Decided(at, {"status": "no_decision"}, (), None)
    try:
        assessment = assess(policy, subject, events, records, at)
    except ErasedError:
        return Decided(at, {"status": "erased"}, (), None)
    except NotFoundError:
        return Decided(at, {"status": "no_decision"}, (), None)
    view, reasons = view_of(assessment, purpose)
    return Decided(at, view, reasons, assessment)


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
