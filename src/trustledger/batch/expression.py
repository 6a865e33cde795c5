"""The population as one Ibis expression: every subject's scores, tiers and metrics.

Input: a table of events with the columns of :data:`EVENT_COLUMNS` (times as integer
microseconds since the epoch, UTC). The expression is plain relational algebra and
arithmetic — joins, ``CASE``, ``exp``, window ``sum`` and ``GROUP BY`` ``sum`` — with no
user-defined function, so the same expression runs on DuckDB and on Spark:

1. join each event to its type's constants (a small table built from the :class:`Plan`);
   points that depend on attributes come from a table of distinct ``(type, attributes)``
   computed by the compiled policy itself;
2. an event is an *entry* when known (``recorded_at <= known_at``), occurred by
   ``valid_at``, not withdrawn or corrected, of a policy type, with fitting attributes;
   it *counts* at ``valid_at`` when its anchors pass the type's thresholds;
3. caps: per scorecard, one running sum per cap (per subject and calendar period, in
   ``occurred_at`` order), each clipped at the cap; nested caps compose stage by stage;
4. per subject: ``Σ capped·exp(-λ·age)`` per scorecard, counts and sums per metric,
   and flags saying whether the subject must take the per-subject path;
5. the total is clamped to the floor and ceiling; the tier is a ``CASE`` over the
   thresholds in force at ``valid_at``; an opt-in scorecard without consent gives NULL.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from trustledger.batch.plan import CapStage, CardPlan, Plan
from trustledger.policy.models import CapPeriod

EVENT_COLUMNS = ("subject", "source", "source_event_id", "type", "occurred_us", "recorded_us",
                 "attributes", "supersedes")
"""Columns the batch expression reads (``occurred_us``, ``recorded_us``: int64 µs, UTC)."""

ORDER = ("occurred_us", "recorded_us", "source", "source_event_id")
"""The engine's order of events, as columns."""

_DAY_US = 86_400_000_000
_EMPTY = "{}"


def score_column(card: str) -> str:
    """Output column of a scorecard's score (``total__``, ``tier__`` likewise)."""
    return f"score__{card}"


def metric_column(metric: str) -> str:
    """Output column of a metric's value."""
    return f"metric__{metric}"


def types_table(plan: Plan) -> pa.Table:
    """The per-type constants as a small table (joined to every event)."""
    rows = plan.types
    return pa.table({
        "t_type": pa.array([t.name for t in rows], pa.string()),
        "t_simple": pa.array([t.constant is not None for t in rows], pa.bool_()),
        "t_points": pa.array([t.constant or 0.0 for t in rows], pa.float64()),
        "t_lam": pa.array([t.lam for t in rows], pa.float64()),
        "t_occ_from": pa.array([t.occurred_from for t in rows], pa.int64()),
        "t_rec_from": pa.array([t.recorded_from for t in rows], pa.int64()),
        "t_overhang": pa.array([t.overhang_from is not None for t in rows], pa.bool_()),
        "t_exp_from": pa.array([t.expiry_from for t in rows], pa.int64()),
        "t_by_recorded": pa.array([t.expiry_anchor.value == "recorded_at" for t in rows],
                                  pa.bool_()),
        "t_ovh_from": pa.array([t.overhang_from or 0 for t in rows], pa.int64()),
    })


def _period(day: ir.IntegerValue, period: CapPeriod) -> ir.IntegerValue:
    """The calendar period (UTC) of a day number, as one integer; pure arithmetic."""
    if period is CapPeriod.DAY:
        return day
    if period is CapPeriod.WEEK:
        return (day - 4) // 7  # 1970-01-05 was a Monday; ISO weeks start on Mondays
    # Civil date from a day number (H. Hinnant's algorithm), integer arithmetic only.
    z = day + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    year = yoe + era * 400 + mp // 10
    if period is CapPeriod.YEAR:
        return year
    month = mp + 3 - 12 * (mp // 10)
    return year * 12 + month


def population(plan: Plan, events: ir.Table, constants: ir.Table, *,
               points: ir.Table | None = None, superseded: ir.Table | None = None,
               consents: ir.Table | None = None, consent_all: bool = False) -> ir.Table:
    """The expression: one row per subject of ``events``.

    ``constants`` is :func:`types_table` in the same backend.
    ``points``: ``(p_type, p_attributes, p_points)`` for the types of
    :attr:`Plan.computed_types` (rows only for fitting attributes). ``superseded``:
    ``(w_subject, w_source, w_target)`` of every known correction or withdrawal.
    ``consents``: ``(c_subject, c_scorecard)`` opt-ins in force; ``consent_all``: every
    subject consented to every opt-in scorecard.
    """
    t = events.left_join(constants, events.type == constants.t_type)
    if superseded is not None:
        t = t.left_join(superseded, [t.subject == superseded.w_subject,
                                     t.source == superseded.w_source,
                                     t.source_event_id == superseded.w_target])
    if points is not None:
        t = t.left_join(points, [t.type == points.p_type, t.attributes == points.p_attributes])
    simple = t.t_simple.fill_null(False)
    fits = simple & (t.attributes.isnull() | (t.attributes == _EMPTY))
    value = t.t_points
    if points is not None:
        fits = fits | (~simple & t.p_points.notnull())
        value = ibis.ifelse(simple, t.t_points, t.p_points)
    entry = t.occurred_us <= plan.v_us
    if plan.known_us is not None:
        entry = entry & (t.recorded_us <= plan.known_us)
    if superseded is not None:
        entry = entry & t.w_target.isnull()
    entry = (entry & fits).fill_null(False)
    alive = entry & (t.occurred_us >= t.t_occ_from) & (t.recorded_us >= t.t_rec_from)
    v_seconds = plan.v_us / 1_000_000
    t = t.mutate(
        e_entry=entry, e_alive=alive.fill_null(False),
        e_points=ibis.ifelse(entry, value, 0.0).fill_null(0.0),
        e_decay=(-(v_seconds - t.occurred_us / 1_000_000) * t.t_lam.fill_null(0.0)).exp(),
        e_day=t.occurred_us // _DAY_US,
        **_flags(plan, t, entry),
    )
    for card in plan.cards:
        t = _capped(t, card)
    aggregates: dict[str, Any] = {}
    for card in plan.cards:
        inside = t.e_alive & t.type.isin(sorted(card.types))
        aggregates[f"sum__{card.name}"] = ibis.ifelse(
            inside, t[f"capped__{card.name}"] * t.e_decay, 0.0).sum()
    for metric in plan.metrics:
        val = t[f"capped__{metric.scorecard}"] if metric.scorecard else t.e_points
        member = t.e_alive & t.type.isin(sorted(metric.types)) & (
            t.occurred_us >= metric.window_from)
        if metric.sign == "negative":
            member = member & (val < 0)
        elif metric.sign == "positive":
            member = member & (val > 0)
        if metric.count:
            # COUNT(...) FILTER: a BIGINT on every backend (DuckDB's SUM of ints is INT128)
            aggregates[f"m__{metric.name}"] = t.subject.count(where=member)
        else:
            amount = val * t.e_decay if metric.decays else val
            aggregates[f"m__{metric.name}"] = ibis.ifelse(member, amount, 0.0).sum()
    overhangs = any(x.overhang_from is not None for x in plan.types)
    for flag in ("f_direct", "f_kept", "f_late") if overhangs else ("f_direct",):
        aggregates[flag] = t[flag].max()
    per_subject = t.group_by("subject").aggregate(**aggregates)
    needs = per_subject.f_direct
    if overhangs:
        needs = needs | (per_subject.f_kept & per_subject.f_late)
    per_subject = per_subject.mutate(needs_subject_pass=needs)
    return _finish(plan, per_subject, consents, consent_all)


def _flags(plan: Plan, t: ir.Table, entry: ir.BooleanValue) -> dict[str, ir.BooleanValue]:
    """Per event: whether it sends its subject to the per-subject path (see :mod:`plan`).

    ``f_direct``: an entry of a type with a ``when`` or on a scorecard whose caps do not
    nest. ``f_kept``: an entry past its expiry that an overhang could keep counting; it
    matters only when the subject also has an entry recorded after it occurred (``f_late``).
    """
    one_by_one = sorted(plan.conditional_types | plan.sequential_types)
    direct: ir.BooleanValue = ibis.literal(False)
    if one_by_one:
        direct = (entry & t.type.isin(one_by_one)).fill_null(False)
    out = {"f_direct": direct}
    if any(x.overhang_from is not None for x in plan.types):
        anchor = ibis.ifelse(t.t_by_recorded, t.recorded_us, t.occurred_us)
        kept = t.t_overhang & (anchor < t.t_exp_from) & (anchor >= t.t_ovh_from)
        out["f_kept"] = (entry & kept).fill_null(False)
        out["f_late"] = (entry & (t.recorded_us > t.occurred_us)).fill_null(False)
    return out


def _capped(t: ir.Table, card: CardPlan) -> ir.Table:
    """Add ``capped__<card>``: each event's points after the card's caps."""
    column = f"capped__{card.name}"
    if not card.stages:
        return t.mutate(**{column: t.e_points})
    amount = f"amount__{card.name}"
    t = t.mutate(**{amount: t.e_points.abs()})
    for stage in card.stages:
        t = _stage(t, stage, amount)
    return t.mutate(**{column: ibis.ifelse(t.e_points < 0, -t[amount], t[amount])}).drop(amount)


def _stage(t: ir.Table, stage: CapStage, amount: str) -> ir.Table:
    """One cap: a running sum per subject and period in event order, clipped at the cap."""
    direction = t.e_points > 0 if stage.gains else t.e_points < 0
    applies = (t.e_entry & direction & t.type.isin(sorted(stage.types))).fill_null(False)
    key = f"k{stage.index}"
    t = t.mutate(**{f"{key}_on": applies, f"{key}_period": _period(t.e_day, stage.period)})
    window = ibis.window(group_by=[t.subject, t[f"{key}_on"], t[f"{key}_period"]],
                         order_by=[t[c] for c in ORDER], rows=(None, 0))
    running = t[amount].sum().over(window)
    before = running - t[amount]
    clipped = ibis.greatest(0.0, ibis.least(t[amount], stage.max - before))
    t = t.mutate(**{amount: ibis.ifelse(t[f"{key}_on"], clipped, t[amount])})
    return t.drop(f"{key}_on", f"{key}_period")


def _finish(plan: Plan, t: ir.Table, consents: ir.Table | None,
            consent_all: bool) -> ir.Table:
    opt_in = [c.name for c in plan.cards if c.opt_in]
    if opt_in and consents is not None and not consent_all:
        pivot = consents.group_by("c_subject").aggregate(**{
            f"ok__{c}": (consents.c_scorecard == c).max() for c in opt_in})
        t = t.left_join(pivot, t.subject == pivot.c_subject)
    columns: dict[str, Any] = {"subject": t.subject}
    available: dict[str, ir.BooleanValue] = {}
    for card in plan.cards:
        ok: ir.BooleanValue = ibis.literal(True)
        if card.opt_in and not consent_all:
            ok = t[f"ok__{card.name}"].fill_null(False) if consents is not None \
                else ibis.literal(False)
        available[card.name] = ok
        total = card.base + t[f"sum__{card.name}"]
        score = total
        if card.floor is not None:
            score = ibis.greatest(score, card.floor)
        if card.ceiling is not None:
            score = ibis.least(score, card.ceiling)
        columns[score_column(card.name)] = ibis.ifelse(ok, score, ibis.null("float64"))
        columns[f"total__{card.name}"] = ibis.ifelse(ok, total, ibis.null("float64"))
        columns[f"tier__{card.name}"] = ibis.ifelse(ok, _tier(card, score),
                                                    ibis.null("string"))
    for metric in plan.metrics:
        value = t[f"m__{metric.name}"]
        ok = available[metric.scorecard] if metric.scorecard else ibis.literal(True)
        columns[metric_column(metric.name)] = ibis.ifelse(
            ok, value, ibis.null("int64" if metric.count else "float64"))
    columns["needs_subject_pass"] = t.needs_subject_pass.fill_null(False)
    return t.select(**columns)


def _tier(card: CardPlan, score: ir.FloatingValue) -> ir.StringValue:
    branches = []
    for name, low in card.tiers:  # highest first
        if low is None:
            branches.append((ibis.literal(True), ibis.literal(name)))
            break
        branches.append((score >= low, ibis.literal(name)))
    if not branches:
        return ibis.null("string")
    return ibis.cases(*branches, else_=ibis.null("string"))
