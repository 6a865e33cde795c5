"""Rich renderings of an evaluation for the command line."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trustledger.engine import Evaluation, ScorecardResult


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:+.0f}"


def headline(result: Evaluation) -> Text:
    """One line naming subject, policy version, times and ledger position."""
    known = result.known_at.isoformat() if result.known_at else "everything recorded"
    return Text.assemble(
        (result.subject or "?", "bold"),
        f" · policy {result.policy} ({result.policy_hash[:19]}…)",
        f" · valid at {result.valid_at.isoformat()} · known at {known}",
        f" · ledger seq {result.ledger_seq}",
    )


def scorecard(card: ScorecardResult) -> RenderableType:
    """A scorecard's score, tier and principal reasons."""
    if not card.consented:
        return Text(f"{card.name}: no score — opt-in scorecard without the subject's consent")
    title = Text.assemble((f"{card.name}: ", "bold"),
                          (f"{card.score:g}" if card.score is not None else "—", "bold cyan"),
                          f"  tier {card.tier or '—'}")
    reasons = [Text(f"  • {reason}") for reason in card.reasons]
    return Group(title, *reasons)


def measures(result: Evaluation) -> Table:
    """Every privilege and restriction with its state and reasons."""
    table = Table(title="measures", show_lines=False)
    for column in ("measure", "kind", "domain", "state", "since", "reasons"):
        table.add_column(column)
    for m in result.measures.values():
        table.add_row(
            m.label, m.kind, m.domain, m.state.value,
            m.since.date().isoformat() if m.since else "—",
            "\n".join(str(r) for r in m.reasons),
        )
    return table


def contributions(card: ScorecardResult) -> Table:
    """Every event's contribution to one scorecard: points then and now, and until when."""
    table = Table(title=f"contributions to {card.name}")
    for column in ("occurred", "event", "points", "capped", "now", "counts until", "note"):
        table.add_column(column)
    for c in sorted(card.contributions, key=lambda c: c.occurred_at):
        note = "; ".join((*c.notes, *([c.why_not] if c.why_not else [])))
        table.add_row(
            c.occurred_at.date().isoformat(), c.label, _num(c.points), _num(c.capped),
            _num(c.points_now), c.counts_until.date().isoformat() if c.counts_until else "—",
            note,
        )
    return table


def evaluation(result: Evaluation, *, detail: bool = False) -> Group:
    """The whole evaluation: headline, scorecards and measures; contributions with ``detail``."""
    parts: list[RenderableType] = [headline(result)]
    for card in result.scorecards.values():
        parts.append(scorecard(card))
        if detail and card.consented:
            parts.append(contributions(card))
    parts.append(measures(result))
    return Group(*parts)

