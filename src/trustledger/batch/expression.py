"""The population as one Ibis expression: every subject's scores, tiers and metrics.

Input: a table of events with the columns of :data:`EVENT_COLUMNS` (times as integer
microseconds since the epoch, UTC; ``subject`` and ``type`` names or integer surrogate
keys). The expression is plain relational algebra and arithmetic — joins, ``CASE``,
``exp``, window ``sum``/``row_number`` and ``GROUP BY`` ``sum`` — with no user-defined
function, so the same expression runs on DuckDB and on Spark:

1. join each event to its type's constants (a small table built from the :class:`Plan`:
   thresholds and decay rates computed once, and every per-type decision as a column);
   points that depend on attributes come from a table of distinct ``(type, attributes)``
   computed by the compiled policy itself;
2. an event is an *entry* when known (``recorded_at <= known_at``), occurred by
   ``valid_at``, not withdrawn or corrected, of a policy type, with fitting attributes
   and, for a type with a vectorised ``when``, among the first that count (a
   ``row_number``); it *counts* at ``valid_at`` when its anchors pass the thresholds;
3. caps: per scorecard, one running sum per cap (per subject and calendar period, in
   ``occurred_at`` order), each clipped at the cap; nested caps compose stage by stage;
4. per subject: ``Σ capped·exp(-λ·age)`` per scorecard, counts and sums per metric,
   and flags saying whether the subject must take the per-subject path;
5. the total is clamped to the floor and ceiling; the tier is a ``CASE`` over the
   thresholds in force at ``valid_at``; an opt-in scorecard without consent gives NULL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from trustledger.batch.plan import NEVER, CapStage, CardPlan, Plan, TypePlan
from trustledger.policy.models import Anchor, CapPeriod

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


def card_flag(index: int) -> str:
    """Constants column: whether the type is on the ``index``-th scorecard."""
    return f"t_in_{index}"


def metric_flag(index: int) -> str:
    """Constants column: whether the ``index``-th metric selects the type."""
    return f"t_m_{index}"


def cap_flag(card: int, stage: int) -> str:
    """Constants column: whether a cap stage of the ``card``-th scorecard applies to the type."""
    return f"t_cap_{card}_{stage}"


def types_table(plan: Plan, codes: Mapping[str, Any] | None = None) -> pa.Table:
    """The per-type constants as a small table (joined to every event).

    ``codes`` maps each type name to its key in the events table (integer surrogate
    keys; then every key of ``codes`` gets a row, so the events join it with an inner
    join); by default the events table holds the names themselves. Every per-type
    decision (scorecard, metric and cap membership, which types send their subjects to
    the per-subject path, vectorised ``when``) is a column here, so the query never
    compares type names row by row.
    """
    rows = list(plan.types)
    if codes is None:
        keys = pa.array([t.name for t in rows], pa.string())
    else:
        # Every type of the events gets a row, the policy's or not (those never fit), so
        # the join to the events is an inner one.
        known = {t.name for t in rows}
        rows += [TypePlan(name, None, 0.0, NEVER, NEVER, NEVER, Anchor.OCCURRED_AT, None,
                          False, "") for name in sorted(codes) if name not in known]
        keys = pa.array([codes.get(t.name, -1) for t in rows], pa.int64())
    direct = plan.conditional_types | plan.sequential_types
    columns: dict[str, pa.Array] = {
        "t_type": keys,
        "t_simple": pa.array([t.constant is not None for t in rows], pa.bool_()),
        "t_points": pa.array([t.constant or 0.0 for t in rows], pa.float64()),
        "t_lam": pa.array([t.lam / 1e6 for t in rows], pa.float64()),  # per microsecond
        "t_occ_from": pa.array([t.occurred_from for t in rows], pa.int64()),
        "t_rec_from": pa.array([t.recorded_from for t in rows], pa.int64()),
        "t_overhang": pa.array([t.overhang_from is not None for t in rows], pa.bool_()),
        "t_exp_from": pa.array([t.expiry_from for t in rows], pa.int64()),
        "t_by_recorded": pa.array([t.expiry_anchor == Anchor.RECORDED_AT for t in rows],
                                  pa.bool_()),
        "t_ovh_from": pa.array([t.overhang_from or 0 for t in rows], pa.int64()),
        "t_direct": pa.array([t.name in direct for t in rows], pa.bool_()),
        "t_when_first": pa.array([t.when.first if t.when else -1 for t in rows], pa.int64()),
        "t_when_life": pa.array([t.when.life_us if t.when else 0 for t in rows], pa.int64()),
        "t_when_rec": pa.array([bool(t.when and t.when.by_recorded) for t in rows],
                               pa.bool_()),
    }
    for i, card in enumerate(plan.cards):
        columns[card_flag(i)] = pa.array([t.name in card.types for t in rows], pa.bool_())
        for j, stage in enumerate(card.stages):
            columns[cap_flag(i, j)] = pa.array([t.name in stage.types for t in rows],
                                               pa.bool_())
    for i, metric in enumerate(plan.metrics):
        columns[metric_flag(i)] = pa.array([t.name in metric.types for t in rows], pa.bool_())
    return pa.table(columns)


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
               consents: ir.Table | None = None, consent_all: bool = False,
               every_type: bool = False) -> ir.Table:
    """The expression: one row per subject of ``events``.

    ``constants`` is :func:`types_table` in the same backend (keyed like ``events.type``).
    ``points``: ``(p_type, p_attributes, p_points)`` for the types of
    :attr:`Plan.computed_types` (rows only for fitting attributes). ``superseded``:
    ``(w_subject, w_source, w_target)`` of every known correction or withdrawal.
    ``consents``: ``(c_subject, c_scorecard)`` opt-ins in force; ``consent_all``: every
    subject consented to every opt-in scorecard. ``every_type``: ``constants`` has a row
    for every type in ``events`` (keyed input), so the join is an inner one.
    """
    if every_type:
        t = events.join(constants, events.type == constants.t_type)
    else:
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
    # The value as a column: past the union in `_whens`, only columns can be referred to.
    t = t.mutate(e_pre=entry, e_value=value)
    if plan.whens:
        t = _whens(t)
        entry = t.e_pre & ~t.e_refused
    else:
        entry = t.e_pre
    alive = entry & (t.occurred_us >= t.t_occ_from)
    if any(x.recorded_from != NEVER for x in plan.types):  # else recorded_us is not read
        alive = alive & (t.recorded_us >= t.t_rec_from)
    t = t.mutate(
        e_entry=entry, e_alive=alive.fill_null(False),
        e_points=ibis.ifelse(entry, t.e_value, 0.0).fill_null(0.0),
        e_decay=((t.occurred_us - plan.v_us) * t.t_lam.fill_null(0.0)).exp(),
        e_day=t.occurred_us // _DAY_US,
        **_flags(plan, t),
    )
    for i, card in enumerate(plan.cards):
        t = _capped(t, i, card)
    aggregates: dict[str, Any] = {}
    for i, card in enumerate(plan.cards):
        inside = t.e_alive & t[card_flag(i)].fill_null(False)
        aggregates[f"sum__{card.name}"] = ibis.ifelse(
            inside, t[f"capped__{card.name}"] * t.e_decay, 0.0).sum()
    for i, metric in enumerate(plan.metrics):
        val = t[f"capped__{metric.scorecard}"] if metric.scorecard else t.e_points
        member = t.e_alive & t[metric_flag(i)].fill_null(False) & (
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
    flags = _flag_names(plan)
    for flag in flags:
        aggregates[flag] = t[flag].max()
    per_subject = t.group_by("subject").aggregate(**aggregates)
    needs: ir.BooleanValue = ibis.literal(False)
    if "f_direct" in flags:
        needs = per_subject.f_direct
    if "f_kept" in flags:
        needs = needs | (per_subject.f_kept & per_subject.f_late)
    per_subject = per_subject.mutate(needs_subject_pass=needs)
    return _finish(plan, per_subject, consents, consent_all)


def _whens(t: ir.Table) -> ir.Table:
    """Decide the vectorised ``when`` conditions (see :class:`~trustledger.batch.plan.WhenPlan`).

    Per subject and conditional type, in the engine's order: ``e_refused`` for an entry
    past the first ``t_when_first``; ``f_when`` when an earlier entry may have stopped
    counting before a later one occurred (then the subject takes the per-subject path).
    """
    first = t.t_when_first.fill_null(-1)
    key = ibis.ifelse(t.e_pre & (first >= 0), t.type, ibis.null(t.type.type()))
    t = t.mutate(w_key=key)
    # The windows get the entries of those types only (a window sorts every row it is
    # given); the other rows pass by them, with no rank.
    keyed = t.filter(t.w_key.notnull())
    ordered = ibis.window(group_by=[keyed.subject, keyed.w_key],
                          order_by=[keyed[c] for c in ORDER])
    whole = ibis.window(group_by=[keyed.subject, keyed.w_key])
    anchor = ibis.ifelse(keyed.t_when_rec.fill_null(False),
                         ibis.least(keyed.occurred_us, keyed.recorded_us), keyed.occurred_us)
    keyed = keyed.mutate(w_rank=ibis.row_number().over(ordered),
                         w_n=keyed.occurred_us.count().over(whole),
                         w_last=keyed.occurred_us.max().over(whole),
                         w_anchor=anchor.min().over(whole))
    rest = t.filter(t.w_key.isnull()).mutate(
        w_rank=ibis.null(keyed.w_rank.type()), w_n=ibis.null(keyed.w_n.type()),
        w_last=ibis.null(keyed.w_last.type()), w_anchor=ibis.null(keyed.w_anchor.type()))
    t = keyed.union(rest.select(*keyed.columns))
    first = t.t_when_first.fill_null(-1)
    on = t.w_key.notnull()
    spread = t.w_last >= t.w_anchor + t.t_when_life
    return t.mutate(
        e_refused=(on & (t.w_rank >= first)).fill_null(False),
        f_when=(on & (first > 0) & (t.w_n > first) & spread).fill_null(False),
    ).drop("w_key", "w_rank", "w_n", "w_last", "w_anchor")


def _flag_names(plan: Plan) -> tuple[str, ...]:
    names = []
    if plan.conditional_types or plan.sequential_types or plan.whens:
        names.append("f_direct")
    if any(x.overhang_from is not None for x in plan.types):
        names += ["f_kept", "f_late"]
    return tuple(names)


def _flags(plan: Plan, t: ir.Table) -> dict[str, ir.BooleanValue]:
    """Per event: whether it sends its subject to the per-subject path (see :mod:`plan`).

    ``f_direct``: an entry of a type with a ``when`` the query cannot decide, or on a
    scorecard whose caps do not nest, or of a vectorised ``when`` whose entries may have
    stopped counting (``f_when``). ``f_kept``: an entry past its expiry that an overhang
    could keep counting; it matters only when the subject also has an entry recorded
    after it occurred (``f_late``). Both look at entries before any ``when`` is decided,
    as the engine's overhang witnesses do.
    """
    names = _flag_names(plan)
    entry = t.e_pre
    out: dict[str, ir.BooleanValue] = {}
    if "f_direct" in names:
        direct = entry & t.t_direct.fill_null(False)
        if plan.whens:
            direct = direct | t.f_when
        out["f_direct"] = direct.fill_null(False)
    if "f_kept" in names:
        anchor = ibis.ifelse(t.t_by_recorded, t.recorded_us, t.occurred_us)
        kept = t.t_overhang & (anchor < t.t_exp_from) & (anchor >= t.t_ovh_from)
        out["f_kept"] = (entry & kept).fill_null(False)
        out["f_late"] = (entry & (t.recorded_us > t.occurred_us)).fill_null(False)
    return out


def _capped(t: ir.Table, index: int, card: CardPlan) -> ir.Table:
    """Add ``capped__<card>``: each event's points after the card's caps."""
    column = f"capped__{card.name}"
    if not card.stages:
        return t.mutate(**{column: t.e_points})
    amount = f"amount__{card.name}"
    t = t.mutate(**{amount: t.e_points.abs()})
    for j, stage in enumerate(card.stages):
        t = _stage(t, stage, amount, t[cap_flag(index, j)].fill_null(False))
    return t.mutate(**{column: ibis.ifelse(t.e_points < 0, -t[amount], t[amount])}).drop(amount)


def _stage(t: ir.Table, stage: CapStage, amount: str, member: ir.BooleanValue) -> ir.Table:
    """One cap: a running sum per subject and period in event order, clipped at the cap."""
    direction = t.e_points > 0 if stage.gains else t.e_points < 0
    applies = (t.e_entry & direction & member).fill_null(False)
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
