"""Which event types can reach each scorecard, metric and measure of a policy.

The context firewall (safeguard 2) and the proportionality probe (safeguard 3) both
ask the same question of a compiled policy: through any path — a scorecard's events, a
metric's filter, another measure, a prerequisite, an event type's ``when`` condition —
which event types can change this element? :class:`Reach` answers it once per policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trustledger.policy.compiled import CompiledPolicy


@dataclass(frozen=True)
class Reached:
    """The event types that can reach an element, and the scorecards/metrics on the way."""

    types: frozenset[str]
    via: tuple[str, ...]


class Reach:
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

    def reach(self, name: str, stack: tuple[str, ...] = ()) -> Reached:
        """The types reaching a scorecard, metric or measure, and the inputs on the way."""
        policy = self.policy
        if name in policy.scorecards:
            card = policy.scorecards[name]
            types = frozenset().union(*(self.type_reach(t, stack)
                                        for t in card.events if t in policy.event_types))
            if card.model is not None:
                types |= frozenset().union(*(self.reach(m, stack).types
                                             for m in card.model.metrics))
            return Reached(types, (name,))
        if name in policy.metrics:
            types = frozenset().union(*(self.type_reach(t, stack)
                                        for t in policy.metrics[name].types))
            return Reached(types, (name,))
        if name in policy.measures and name not in stack:
            measure = policy.measures[name]
            refs = [*measure.scorecards, *measure.metrics, *measure.measures]
            if measure.requires:
                refs.append(measure.requires)
            parts = [self.reach(ref, (*stack, name)) for ref in refs]
            types = frozenset().union(*(p.types for p in parts))
            via = tuple(dict.fromkeys(v for p in parts for v in p.via))
            return Reached(types, via)
        return Reached(frozenset(), ())

    def domains(self, types: Iterable[str]) -> set[str]:
        """The domains of a set of event types."""
        return {self.policy.event_types[t].domain for t in types}
