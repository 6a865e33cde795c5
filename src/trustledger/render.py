"""Rich renderings of an evaluation for the command line.

Numbers are shown by the one display rule (:func:`trustledger.engine.reasons.plain`,
:func:`~trustledger.engine.reasons.signed`: two decimals, whole numbers plain), as in the
report and the portal; contributions are listed by date.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from trustledger.engine import Evaluation, ScorecardResult
from trustledger.engine.reasons import plain, signed, value_text
from trustledger.policy import CompiledPolicy


def score_text(value: float | None) -> str:
    """A score, metric value or total as shown everywhere: ``588.31``, ``650``; ``—`` for none."""
    return "—" if value is None else plain(value)


def points_text(value: float | None) -> str:
    """Points as shown everywhere: ``+3``, ``-14.14`` (with a true minus sign); ``—`` for none."""
    return "—" if value is None else signed(value)


def headline(result: Evaluation) -> Text:
    """One line naming subject, policy version, times and ledger position."""
    known = result.known_at.isoformat() if result.known_at else "everything recorded"
    return Text.assemble(
        (result.subject or "?", "bold"),
        f" · policy {result.policy} ({result.policy_hash[:19]}…)",
        f" · valid at {result.valid_at.isoformat()} · known at {known}",
        f" · ledger seq {result.ledger_seq}",
    )


def tier_text(tier: str | None, policy: CompiledPolicy | None = None,
              scorecard_name: str | None = None) -> str:
    """A tier as shown everywhere: ``very good (650-699)`` with the policy, else its name."""
    if tier is None:
        return "—"
    card = policy.scorecards.get(scorecard_name or "") if policy is not None else None
    label = next((t.label for t in card.tiers if t.name == tier), tier) if card else tier
    return tier if label == tier else f"{label} ({tier})"


def scorecard(card: ScorecardResult, policy: CompiledPolicy | None = None) -> RenderableType:
    """A scorecard's score, tier and principal reasons.

    With ``policy``, the tier is shown by its label and name (:func:`tier_text`).

    For a statistical scorecard, the model it names, its feature table and its
    reason codes (:func:`features`): its points come from features, not events.
    """
    if not card.consented:
        return Text(f"{card.name}: no score — opt-in scorecard without the subject's consent")
    title = Text.assemble((f"{card.name}: ", "bold"),
                          (score_text(card.score), "bold cyan"),
                          f"  tier {tier_text(card.tier, policy, card.name)}",
                          f"  statistical, model {card.model}" if card.model else "")
    if card.model is not None:
        return Group(title, features(card))
    reasons = [Text(f"  • {reason}") for reason in card.reasons]
    return Group(title, *reasons)


def measures(result: Evaluation) -> Table:
    """Every privilege and restriction with its state and reasons."""
    table = Table(title="measures", show_lines=False)
    for column in ("measure", "kind", "domain", "state", "since"):
        table.add_column(column, overflow="fold")
    table.add_column("reasons", overflow="fold", ratio=1)
    for m in result.measures.values():
        table.add_row(
            m.label, m.kind, m.domain, m.state.value,
            m.since.date().isoformat() if m.since else "—",
            "\n".join(str(r) for r in m.reasons),
        )
    return table


def contributions(card: ScorecardResult,
                  seqs: Mapping[tuple[str, str], int | None] | None = None) -> Table:
    """Every event's contribution to one scorecard: points then and now, and until when.

    By date: ``occurred_at``, then ledger seq (``seqs``: event key to seq), then key.
    """
    table = Table(title=f"contributions to {card.name}")
    for column in ("occurred", "seq", "event", "points", "capped", "now", "counts until",
                   "note"):
        table.add_column(column)
    known = seqs or {}
    for c in sorted(card.contributions,
                    key=lambda c: (c.occurred_at, known.get(c.event) or 0, c.event)):
        note = "; ".join((*c.notes, *([c.why_not] if c.why_not else [])))
        seq = known.get(c.event)
        table.add_row(
            c.occurred_at.date().isoformat(), "—" if seq is None else str(seq),
            Text(c.label), points_text(c.points), points_text(c.capped),
            points_text(c.points_now),
            c.counts_until.date().isoformat() if c.counts_until else "—", Text(note),
        )
    return table


def features(card: ScorecardResult) -> RenderableType:
    """A statistical scorecard's derivation: each feature's source, value, bin and points.

    The table's points add up to the score (its footer); the model's reason codes
    (the features furthest below their maximum, in words) follow it.
    """
    table = Table(title=Text(f"features of {card.name} (model {card.model})"),
                  show_footer=True)
    table.add_column("feature", footer="score")
    table.add_column("source")
    table.add_column("value")
    table.add_column("bin")
    table.add_column("points", justify="right",
                     footer=plain(card.score) if card.score is not None else "—")
    table.add_column("max points", justify="right")
    for f in card.features:
        # Text cells: bins and supplied values are data, never Rich markup.
        table.add_row(Text(f.feature), Text(f.source),
                      Text("missing" if f.value is None else value_text(f.value)),
                      Text(f.bin), plain(f.points), plain(f.max_points))
    codes = [Text(f"  {rank}. {reason}") for rank, reason in enumerate(card.reasons, 1)]
    return Group(table, Text(f"reason codes of {card.name}:", style="bold"), *codes)


def evaluation(result: Evaluation, *, detail: bool = False,
               policy: CompiledPolicy | None = None) -> Group:
    """The whole evaluation: headline, scorecards and measures; contributions with ``detail``.

    With ``policy`` (the one evaluated with), tiers are shown by label and name.

    A statistical scorecard has no contributions: its feature table (:func:`features`)
    is its derivation, shown always with its score (it is as long as the model has features).
    """
    parts: list[RenderableType] = [headline(result)]
    if result.attributes:
        given = ", ".join(f"{name} = {'missing' if value is None else value_text(value)}"
                          for name, value in result.attributes.items())
        parts.append(Text(f"decision-time attributes: {given}"))
    for card in result.scorecards.values():
        parts.append(scorecard(card, policy))
        if detail and card.consented and card.model is None:
            parts.append(contributions(card, {o.event: o.seq for o in result.events}))
    parts.append(measures(result))
    return Group(*parts)

