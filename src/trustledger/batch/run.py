"""Running a population job: the columnar query, then the per-subject pass, then measures.

:func:`rescore` takes an events table already in a backend (see
:mod:`trustledger.batch.sources`), builds the :class:`~trustledger.batch.plan.Plan` and
the expression of :mod:`trustledger.batch.expression`, and runs it in three steps:

1. two small queries first: the distinct ``(type, attributes)`` of types whose points
   depend on attributes (their points computed by the compiled policy itself, once per
   distinct value) and the known corrections and withdrawals;
2. the population query, streamed in record batches;
3. the subjects the query flags are evaluated one by one with the reference
   :func:`~trustledger.engine.evaluate` (``when`` conditions, overhangs, caps that do not
   nest, measures with a history), and stateless measures are decided per subject from
   the query's values by their compiled CEL conditions.

The result has one row per subject: ``score__<card>``, ``total__<card>``,
``tier__<card>``, ``metric__<name>``, ``measure__<name>`` (when asked for) and ``path``
(``columnar`` or ``per-subject``). It is the material the service stores per subject; no
interface ranks or filters it by score (safeguard 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any

import ibis.expr.types as ir
import orjson
import pyarrow as pa

from trustledger.batch.expression import metric_column, population, score_column, types_table
from trustledger.batch.plan import Plan, from_us, make_plan
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.engine.history import scorecard_value
from trustledger.engine.incremental import measure_states
from trustledger.errors import InputError
from trustledger.policy.compiled import CompiledPolicy

Progress = Callable[[str, int, int | None], None]
"""Called with (stage, done, total or ``None``) as the job advances."""

COLUMNAR = "columnar"
PER_SUBJECT = "per-subject"


@dataclass(frozen=True, slots=True)
class Rescore:
    """A finished job: the per-subject table and how many subjects took each path."""

    table: pa.Table
    policy_hash: str
    valid_at: datetime
    known_at: datetime | None
    subjects: int
    per_subject: int


def _quiet(stage: str, done: int, total: int | None) -> None:
    del stage, done, total


def rescore(policy: CompiledPolicy, events: ir.Table, valid_at: datetime,
            known_at: datetime | None = None, *,
            consents: Mapping[str, frozenset[str]] | None = None, consent_all: bool = False,
            measures: bool = True, progress: Progress | None = None,
            batch_rows: int = 250_000) -> Rescore:
    """Evaluate every subject of ``events`` at ``valid_at``.

    ``events`` has the columns of :data:`~trustledger.batch.expression.EVENT_COLUMNS`.
    ``consents`` maps a subject to the opt-in scorecards it consented to (absent: none);
    ``consent_all`` treats every subject as consenting to every opt-in scorecard.
    ``measures``: also decide the policy's measures. Raises
    :class:`~trustledger.errors.InputError` for naive times or a ``valid_at`` before the
    policy's ``effective_from``.
    """
    report = progress or _quiet
    for name, moment in (("valid_at", valid_at), ("known_at", known_at)):
        if moment is not None and moment.tzinfo is None:
            raise InputError(f"{name} must be timezone-aware (UTC)")
    if valid_at < policy.effective_from:
        raise InputError(f"policy {policy.name} is effective from "
                         f"{policy.effective_from.isoformat()}, after valid_at "
                         f"{valid_at.isoformat()}")
    plan = make_plan(policy, valid_at, known_at)
    backend = events._find_backend()
    report("preparing", 0, None)
    points = _points_table(plan, events, backend)
    superseded = _superseded(plan, events, backend)
    consent_table = None
    if consents is not None and not consent_all:
        rows = [(s, c) for s, cards in consents.items() for c in sorted(cards)]
        consent_table = small_table(backend, "consents", pa.table({
            "c_subject": pa.array([r[0] for r in rows] or [""], pa.string()),
            "c_scorecard": pa.array([r[1] for r in rows] or [""], pa.string())}))
    constants = small_table(backend, "constants", types_table(plan))
    expr = population(plan, events, constants, points=points, superseded=superseded,
                      consents=consent_table, consent_all=consent_all)
    stateful = bool(plan.stateful_measures()) and measures
    batches: list[pa.RecordBatch] = []
    flagged: list[str] = []
    done = 0
    report("scoring", 0, None)
    for batch in stream(backend, expr, batch_rows):
        batches.append(batch)
        subjects = batch.column("subject").to_pylist()
        flags = batch.column("needs_subject_pass").to_pylist()
        flagged += [s for s, f in zip(subjects, flags, strict=True) if f or stateful]
        done += batch.num_rows
        report("scoring", done, None)
    table = pa.Table.from_batches(batches, schema=batches[0].schema) if batches else \
        execute(backend, expr.limit(0))
    table = table.drop_columns(["needs_subject_pass"])
    evaluations = _per_subject(plan, events, backend, flagged, stateful, consents,
                               consent_all, report)
    table = _assemble(plan, table, evaluations, consents, consent_all, measures, report)
    return Rescore(table, policy.hash, valid_at, known_at, table.num_rows, len(evaluations))


_names = count()


def small_table(backend: Any, stem: str, table: pa.Table) -> ir.Table:
    """A small Arrow table as a table of ``backend`` (a temporary view on Spark)."""
    name = f"tl_{stem}_{next(_names)}"
    if backend.name == "pyspark":
        backend._session.createDataFrame(table).createOrReplaceTempView(name)
        return backend.table(name)
    return backend.create_table(name, table, temp=True, overwrite=True)


def execute(backend: Any, expr: ir.Table) -> pa.Table:
    """Run ``expr`` and return an Arrow table (Spark: SQL to Arrow, no pandas)."""
    if backend.name == "pyspark":
        result: pa.Table = backend._session.sql(backend.compile(expr)).toArrow()
        return result
    out: pa.Table = backend.to_pyarrow(expr)
    return out


def stream(backend: Any, expr: ir.Table, rows: int) -> Iterator[pa.RecordBatch]:
    """Run ``expr``, yielding record batches of about ``rows`` rows."""
    if backend.name == "pyspark":
        yield from execute(backend, expr).to_batches(max_chunksize=rows)
        return
    yield from backend.to_pyarrow_batches(expr, chunk_size=rows)


def _points_table(plan: Plan, events: ir.Table, backend: Any) -> ir.Table | None:
    """Points of the attribute-dependent types, per distinct attributes that fit."""
    computed = sorted(plan.computed_types)
    if not computed:
        return None
    query = events.filter(events.type.isin(computed)).select("type", "attributes").distinct()
    distinct = execute(backend, query)
    types, texts, values = [], [], []
    for kind, text in zip(distinct.column("type").to_pylist(),
                          distinct.column("attributes").to_pylist(), strict=True):
        etype = plan.policy.event_types[kind]
        try:
            attributes = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            continue  # not an object: the event does not fit, as the engine would say
        if not isinstance(attributes, dict):
            continue
        fitted = etype.fit(attributes)
        if isinstance(fitted, str):
            continue  # does not fit, or its points fault: it counts nothing, as in the engine
        types.append(kind)
        texts.append(text)
        values.append(fitted[1])
    return small_table(backend, "points", pa.table({
        "p_type": pa.array(types or ["\x00"], pa.string()),
        "p_attributes": pa.array(texts or ["\x00"], pa.string()),
        "p_points": pa.array(values or [0.0], pa.float64())}))


def _superseded(plan: Plan, events: ir.Table, backend: Any) -> ir.Table | None:
    """The known corrections and withdrawals, or ``None`` when there are none."""
    known = events.supersedes.notnull()
    if plan.known_us is not None:
        known = known & (events.recorded_us <= plan.known_us)
    query = events.filter(known).select(
        w_subject=events.subject, w_source=events.source, w_target=events.supersedes).distinct()
    found = execute(backend, query)
    if found.num_rows == 0:
        return None
    return small_table(backend, "superseded", found)


def _per_subject(plan: Plan, events: ir.Table, backend: Any, subjects: list[str],
                 everyone: bool, consents: Mapping[str, frozenset[str]] | None,
                 consent_all: bool, report: Progress) -> dict[str, Evaluation]:
    """Evaluate the flagged subjects with the reference engine.

    One query streams their events ordered by subject (every event when ``everyone``),
    so each subject is evaluated as soon as its events are complete.
    """
    out: dict[str, Evaluation] = {}
    if not subjects:
        return out
    report("per-subject", 0, len(subjects))
    query = events
    if not everyone:
        names = small_table(backend, "wanted", pa.table({"q_subject": pa.array(subjects,
                                                                                pa.string())}))
        query = events.semi_join(names, events.subject == names.q_subject)
    current: str | None = None
    history: list[Event] = []

    def finish() -> None:
        if current is not None:
            out[current] = evaluate(plan.policy, history, plan.valid_at, plan.known_at,
                                    opt_ins=_opt_ins(plan, current, consents, consent_all))
            if len(out) % 10_000 == 0:
                report("per-subject", len(out), len(subjects))

    for batch in stream(backend, query.order_by("subject"), 100_000):
        for record in batch.to_pylist():
            if record["subject"] != current:
                finish()
                current, history = record["subject"], []
            history.append(_event(record))
    finish()
    report("per-subject", len(out), len(subjects))
    return out


def _event(record: Mapping[str, Any]) -> Event:
    text = record["attributes"]
    try:
        attributes = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        attributes = {"": text}  # does not fit any schema, as intended
    if not isinstance(attributes, dict):
        attributes = {"": attributes}
    return Event(record["source"], record["source_event_id"], record["subject"],
                 record["type"], from_us(record["occurred_us"]), from_us(record["recorded_us"]),
                 attributes, record["supersedes"])


def _opt_ins(plan: Plan, subject: str, consents: Mapping[str, frozenset[str]] | None,
             consent_all: bool) -> frozenset[str]:
    opt_in = frozenset(c.name for c in plan.cards if c.opt_in)
    if consent_all:
        return opt_in
    return (consents or {}).get(subject, frozenset()) & opt_in


def _assemble(plan: Plan, table: pa.Table, evaluations: Mapping[str, Evaluation],
              consents: Mapping[str, frozenset[str]] | None, consent_all: bool,
              measures: bool, report: Progress) -> pa.Table:
    """Overlay the per-subject results; decide measures; add the ``path`` column."""
    policy = plan.policy
    names = list(policy.measures) if measures else []
    if not evaluations and not names:
        return table.append_column("path", pa.array([COLUMNAR] * table.num_rows, pa.string()))
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    subjects = columns["subject"]
    decided: dict[str, list[bool | None]] = {n: [] for n in names}
    path: list[str] = []
    stateless = [m for n, m in policy.measures.items() if n in plan.stateless]
    full = frozenset().union(*(m.condition.beyond_score for m in stateless))
    v = plan.valid_at.timestamp()
    report("measures", 0, len(subjects))
    for i, subject in enumerate(subjects):
        found = evaluations.get(subject)
        if found is not None:
            path.append(PER_SUBJECT)
            for name, result in found.scorecards.items():
                columns[score_column(name)][i] = result.score
                columns[f"total__{name}"][i] = result.total
                columns[f"tier__{name}"][i] = result.tier
            for metric, value in found.metrics.items():
                columns[metric_column(metric)][i] = value
            for n in names:
                decided[n].append(found.measures[n].in_force)
            continue
        path.append(COLUMNAR)
        if not names:
            continue
        context: dict[str, Any] = {}
        for card_name, card in policy.scorecards.items():
            score = columns[score_column(card_name)][i]
            if score is not None:
                context[card_name] = scorecard_value(card, score, v, card_name in full)
        for metric in policy.metrics:
            value = columns[metric_column(metric)][i]
            if value is not None:
                context[metric] = value
        states = measure_states(stateless, context)
        for n in names:
            decided[n].append(states.get(n))
    out = {name: pa.array(values, table.schema.field(name).type)
           for name, values in columns.items()}
    for n in names:
        out[f"measure__{n}"] = pa.array(decided[n], pa.bool_())
    out["path"] = pa.array(path, pa.string())
    report("measures", len(subjects), len(subjects))
    del consents, consent_all
    return pa.table(out)
