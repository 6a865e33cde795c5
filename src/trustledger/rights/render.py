"""Rich renderings of subject rights for the command line: report, what-if, disputes, reviews."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trustledger import render as evaluation_render
from trustledger.engine.reasons import plain
from trustledger.policy import CompiledPolicy
from trustledger.rights import fields
from trustledger.rights.dispute import Dispute
from trustledger.rights.report import Report
from trustledger.rights.review import Review
from trustledger.rights.whatif import WhatIf, WhatItTakes


def _day(value: datetime | None) -> str:
    return "—" if value is None else fields.day(value)


def _num(value: float | None) -> str:
    return "—" if value is None else plain(value)


def report(r: Report) -> Group:
    """The whole report: scores, measures, history, events, disputes, reviews, consents, reads."""
    parts: list[RenderableType] = [Text.assemble(
        (r.subject, "bold"), f" · as of {r.as_of.isoformat()} · policy {r.policy} "
        f"({r.policy_hash[:19]}…) · ledger seq {r.ledger_seq}")]
    for card in r.scorecards:
        if not card.consented:
            parts.append(Text(f"{card.name}: no score — opt-in scorecard without consent"))
            continue
        tier = card.tier or "—"
        if card.tier_label and card.tier_label != card.tier:
            tier = f"{card.tier_label} ({card.tier})"
        parts.append(Text.assemble((f"{card.name}: ", "bold"), (_num(card.score), "bold cyan"),
                                   f"  tier {tier}"))
        parts.extend(Text(f"  • {reason.text}") for reason in card.reasons)
        if card.next_tier is not None:
            first, *rest = card.next_tier.lines
            parts.append(Text(f"  {first}", style="bold"))
            parts.extend(Text(f"    - {line}") for line in rest)
    measures = Table(title="privileges and restrictions")
    for column in ("measure", "kind", "state", "since", "reasons"):
        measures.add_column(column)
    for m in r.measures:
        measures.add_row(m.label, m.kind, m.state, _day(m.since) if m.since else "from the start",
                         "\n".join(reason.text for reason in m.reasons))
    parts.append(measures)
    history = Table(title="scores over time (as the ledger knew it on each date)")
    history.add_column("date")
    for card in r.scorecards:
        history.add_column(card.name, justify="right")
    history.add_column("in force")
    for point in r.history:
        history.add_row(_day(point.at), *(
            f"{_num(point.scores.get(c.name))} ({point.tiers.get(c.name) or '—'})"
            for c in r.scorecards), ", ".join(point.in_force) or "—")
    parts.append(history)
    events = Table(title=f"events ({len(r.events)})")
    for column in ("seq", "event", "source", "occurred", "recorded", "points", "now", "status"):
        events.add_column(column)
    for e in r.events:
        events.add_row(str(e.seq), e.label or e.type, f"{e.source}:{e.source_event_id}",
                       _day(e.occurred_at),
                       _day(e.recorded_at), _num(e.points),
                       _num(e.points_now) if e.counts else "—", e.status)
    parts.append(events)
    if r.purged_events:
        parts.append(Text(f"{r.purged_events} event(s) purged after their retention period"))
    parts.append(disputes([d.dispute for d in r.disputes], r.as_of))
    parts.append(reviews([v.review for v in r.reviews], r.as_of))
    consents = Table(title="consents")
    for column in ("seq", "consent", "given", "expires", "withdrawn", "in force"):
        consents.add_column(column)
    for c in r.consents:
        consents.add_row(str(c.consent.seq), c.description, _day(c.consent.granted_at),
                         _day(c.consent.expires_at), _day(c.consent.withdrawn_at),
                         "yes" if c.active else "no")
    parts.append(consents)
    reads = Table(title="who read this subject's data")
    for column in ("when", "who", "role", "purpose", "what"):
        reads.add_column(column)
    for a in r.access_log:
        reads.add_row(a.at.isoformat(), a.name, a.role, a.purpose, a.read)
    parts.append(reads)
    told = Table(title="notifications sent about this subject")
    for column in ("when", "to", "purpose", "what", "cause", "outcome", "attempts"):
        told.add_column(column)
    for n in r.notifications:
        told.add_row(n.at.isoformat(), n.party, n.purpose, n.type, n.cause, n.status,
                     str(n.attempts))
    parts.append(told)
    return Group(*parts)


def disputes(items: Sequence[Dispute], at: datetime) -> Table:
    """Disputes with their status and deadline at ``at``."""
    table = Table(title="disputes")
    for column in ("seq", "event", "opened", "deadline", "status", "where it stands"):
        table.add_column(column)
    for d in items:
        table.add_row(str(d.seq), str(d.event_seq), _day(d.opened_at), _day(d.deadline),
                      d.status_at(at).value, d.describe(at))
    return table


def reviews(items: Sequence[Review], at: datetime) -> Table:
    """Requests for human review and where they stand at ``at``."""
    table = Table(title="human reviews")
    for column in ("seq", "measure", "requested", "state", "note"):
        table.add_column(column)
    for v in items:
        decision = v.decision_at(at)
        table.add_row(str(v.seq), v.label, _day(v.requested_at),
                      "pending" if decision is None else decision.value, v.describe(at))
    return table


def what_if(result: WhatIf, policy: CompiledPolicy | None = None) -> Group:
    """A what-if: what changed, then the modified decision in full.

    With ``policy`` (the one evaluated with), tiers are shown by label and name.
    """
    lines: list[RenderableType] = []
    for event in result.removed:
        lines.append(Text(f"removed: {event.type} on {_day(event.occurred_at)} "
                          f"({event.source}:{event.source_event_id})"))
    for event in result.added:
        lines.append(Text(f"added: {event.type} on {_day(event.occurred_at)}"))
    lines.append(Text(f"at {result.valid_at.isoformat()}:", style="bold"))
    changes = result.changes()
    lines.extend(Text(f"  • {line}") for line in changes)
    if not changes:
        lines.append(Text("  • nothing changes"))
    lines.append(evaluation_render.evaluation(result.after, policy=policy))
    return Group(*lines)


def what_it_takes(result: WhatItTakes) -> Group:
    """What it takes to reach a target, in words."""
    first, *rest = result.summary()
    return Group(Text(first, style="bold"), *(Text(f"  • {line}") for line in rest))
