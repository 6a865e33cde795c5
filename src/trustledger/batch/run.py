"""Running a population job: the columnar query, then the per-subject pass, then measures.

:func:`rescore` takes an events table already in a backend (see
:mod:`trustledger.batch.sources`), builds the :class:`~trustledger.batch.plan.Plan` and
the expression of :mod:`trustledger.batch.expression`, and runs it in three steps:

1. two small queries first: the distinct ``(type, attributes)`` of types whose points
   depend on attributes (their points computed by the compiled policy itself, once per
   distinct value) and the known corrections and withdrawals;
2. the population query (one row per subject, into Arrow);
3. the subjects the query flags are evaluated one by one with the reference
   :func:`~trustledger.engine.evaluate` (``when`` conditions the query cannot decide,
   overhangs, caps that do not nest; measures with a history, for the subjects whose
   opt-ins do not block them), with progress, and stateless measures are decided per
   subject from the query's values by their compiled CEL conditions.

With integer surrogate keys (:class:`~trustledger.batch.sources.Keys`: a keyed export),
the query groups and joins integers, and the subjects' names are put back on the result
only at the end.

The result has one row per subject, in no particular order (never by score):
``score__<card>``, ``total__<card>``, ``tier__<card>``, ``metric__<name>``,
``measure__<name>`` (when asked for) and ``path`` (``columnar`` or ``per-subject``). It is
the material the service stores per subject; no interface ranks or filters it by score
(safeguard 4).
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
import pyarrow.compute as pc

from trustledger.batch.expression import metric_column, population, score_column, types_table
from trustledger.batch.plan import Plan, from_us, make_plan
from trustledger.batch.sources import Keys
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.engine.evaluate import check_moments
from trustledger.engine.history import scorecard_value
from trustledger.engine.incremental import measure_states
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
            keys: Keys | None = None) -> Rescore:
    """Evaluate every subject of ``events`` at ``valid_at``.

    ``events`` has the columns of :data:`~trustledger.batch.expression.EVENT_COLUMNS`;
    with ``keys`` (a keyed export, :func:`~trustledger.batch.sources.read_keyed`), its
    ``subject`` and ``type`` are integer surrogate keys. ``consents`` maps a subject to
    the opt-in scorecards it consented to (absent: none); ``consent_all`` treats every
    subject as consenting to every opt-in scorecard. ``measures``: also decide the
    policy's measures. Raises :class:`~trustledger.errors.InputError` for naive times or a
    ``valid_at`` before the policy's ``effective_from``.
    """
    report = progress or _quiet
    check_moments(policy, valid_at, known_at)
    plan = make_plan(policy, valid_at, known_at)
    backend = events._find_backend()
    report("preparing", 0, None)
    superseded = _superseded(plan, events, backend)
    consent_table = None
    if consents is not None and not consent_all:
        consent_table = _consent_table(backend, consents, keys)
    points = _points_table(plan, events, backend, keys,
                           None if consent_all else (consent_table,))
    constants = small_table(backend, "constants",
                            types_table(plan, keys.types if keys is not None else None))
    expr = population(plan, events, constants, points=points, superseded=superseded,
                      consents=consent_table, consent_all=consent_all,
                      every_type=keys is not None)
    report("scoring", 0, None)
    table = execute(backend, expr)
    report("scoring", table.num_rows, None)
    wanted = set(pc.filter(table.column("subject"),
                           table.column("needs_subject_pass").fill_null(False)).to_pylist())
    table = table.drop_columns(["needs_subject_pass"])
    replays = _replays(plan, measures, consents, consent_all, keys)
    everyone = replays is None
    wanted |= replays or set()
    evaluations = _per_subject(plan, events, backend, table if everyone else sorted(wanted),
                               consents, consent_all, report, keys)
    table = _assemble(plan, table, evaluations, measures, report)
    if keys is not None:
        where = table.schema.get_field_index("subject")
        table = table.set_column(where, "subject",
                                 pc.take(keys.subjects, table.column("subject")))
    return Rescore(table, policy.hash, valid_at, known_at, table.num_rows, len(evaluations))


def _replays(plan: Plan, measures: bool, consents: Mapping[str, frozenset[str]] | None,
             consent_all: bool, keys: Keys | None) -> set[Any] | None:
    """Subjects (keys) whose measures' history must be replayed; ``None``: every subject.

    Also without ``measures`` when a measure can set a score back (``requires.set_back``).
    """
    if not (measures or plan.sets_back) or not plan.stateful_measures():
        return set()
    if plan.guards() is None or consent_all:
        return None  # a guard names only opt-in scorecards: consent to all passes every one
    opt_in = frozenset(c.name for c in plan.cards if c.opt_in)
    names = [s for s, cards in (consents or {}).items() if plan.replays(cards & opt_in)]
    if keys is None:
        return set(names)
    found = pc.index_in(pa.array(names, pa.string()), keys.subjects)
    return {k for k in found.to_pylist() if k is not None}


_names = count()


def small_table(backend: Any, stem: str, table: pa.Table) -> ir.Table:
    """A small Arrow table as a table of ``backend``: a temporary view.

    On DuckDB, a view of the Arrow table itself (no copy, no catalog table to create).
    """
    name = f"tl_{stem}_{next(_names)}"
    if backend.name == "pyspark":
        backend._session.createDataFrame(table).createOrReplaceTempView(name)
    else:
        backend.con.register(name, table)
    return backend.table(name)


def execute(backend: Any, expr: ir.Table) -> pa.Table:
    """Run ``expr`` and return an Arrow table (Spark: SQL to Arrow, no pandas)."""
    if backend.name == "pyspark":
        result: pa.Table = backend._session.sql(backend.compile(expr)).toArrow()
        return result
    # DuckDB's own Arrow result: Ibis's to_pyarrow converts it once more (a second or more
    # on a million subjects).
    out: pa.Table = backend.con.execute(str(backend.compile(expr))).to_arrow_table()
    return out


def stream(backend: Any, expr: ir.Table, rows: int) -> Iterator[pa.RecordBatch]:
    """Run ``expr``, yielding record batches of about ``rows`` rows."""
    if backend.name == "pyspark":
        yield from execute(backend, expr).to_batches(max_chunksize=rows)
        return
    yield from backend.to_pyarrow_batches(expr, chunk_size=rows)


def _consent_table(backend: Any, consents: Mapping[str, frozenset[str]],
                   keys: Keys | None) -> ir.Table:
    rows = [(s, c) for s, cards in consents.items() for c in sorted(cards)]
    names = pa.array([r[0] for r in rows], pa.string())
    subject: pa.Array = names
    if keys is not None:
        subject = pc.index_in(names, keys.subjects).cast(pa.int64())
        if not rows:
            subject = pa.array([-1], pa.int64())
    elif not rows:
        subject = pa.array([""], pa.string())
    return small_table(backend, "consents", pa.table({
        "c_subject": subject,
        "c_scorecard": pa.array([r[1] for r in rows] or [""], pa.string())}))


def _points_table(plan: Plan, events: ir.Table, backend: Any, keys: Keys | None,
                  opted: tuple[ir.Table | None] | None) -> ir.Table | None:
    """Points of the attribute-dependent types, per distinct attributes that fit.

    ``opted``: ``None`` when every subject consented to every opt-in scorecard; else a
    1-tuple of the consents table (``None``: nobody consented). The points of a type that
    only opt-in outputs read (:meth:`~trustledger.batch.plan.Plan.consent_bound_types`)
    are then computed only from the events of subjects with some opt-in: for the others
    those outputs are not produced, whatever the points.
    """
    computed = sorted(plan.computed_types)
    if not computed:
        return None
    codes: dict[str, Any] = {n: n for n in computed}
    if keys is not None:
        codes = {n: keys.types[n] for n in computed if n in keys.types}
    names = {code: name for name, code in codes.items()}
    bound = plan.consent_bound_types() if opted is not None else frozenset()
    free = [codes[n] for n in computed if n in codes and n not in bound]
    query = events.filter(events.type.isin(free)).select("type", "attributes")
    fenced = [codes[n] for n in computed if n in codes and n in bound]
    if fenced and opted is not None and opted[0] is not None:
        consented = opted[0]
        some = events.filter(events.type.isin(fenced))
        some = some.semi_join(consented, some.subject == consented.c_subject)
        query = query.union(some.select("type", "attributes"))
    distinct = execute(backend, query.distinct())
    types, texts, values = [], [], []
    for code, text in zip(distinct.column("type").to_pylist(),
                          distinct.column("attributes").to_pylist(), strict=True):
        etype = plan.policy.event_types[names[code]]
        try:
            attributes = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            continue  # not an object: the event does not fit, as the engine would say
        if not isinstance(attributes, dict):
            continue
        fitted = etype.fit(attributes)
        if isinstance(fitted, str):
            continue  # does not fit, or its points fault: it counts nothing, as in the engine
        types.append(code)
        texts.append(text)
        values.append(fitted[1])
    if keys is not None:
        code_array = pa.array(types or [-1], pa.int64())
    else:
        code_array = pa.array(types or ["\x00"], pa.string())
    return small_table(backend, "points", pa.table({
        "p_type": code_array,
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


def _per_subject(plan: Plan, events: ir.Table, backend: Any, subjects: pa.Table | list[Any],
                 consents: Mapping[str, frozenset[str]] | None, consent_all: bool,
                 report: Progress, keys: Keys | None) -> dict[Any, Evaluation]:
    """Evaluate the flagged subjects (keys) with the reference engine, with progress.

    ``subjects`` is a list of keys, or the whole result table (every subject). One query
    streams their events ordered by subject, so each subject is evaluated as soon as its
    events are complete.
    """
    out: dict[Any, Evaluation] = {}
    everyone = isinstance(subjects, pa.Table)
    total = subjects.num_rows if isinstance(subjects, pa.Table) else len(subjects)
    if not total:
        return out
    report("per-subject", 0, total)
    step = max(1, min(1_000, total // 100))
    query = events
    if not everyone:
        assert isinstance(subjects, list)
        kind = pa.int64() if keys is not None else pa.string()
        names = small_table(backend, "wanted", pa.table({"q_subject": pa.array(subjects, kind)}))
        query = events.semi_join(names, events.subject == names.q_subject)
    type_names = {code: name for name, code in keys.types.items()} if keys is not None else None
    current: Any = None
    name = ""
    history: list[Event] = []

    def finish() -> None:
        if current is not None:
            out[current] = evaluate(plan.policy, history, plan.valid_at, plan.known_at,
                                    opt_ins=_opt_ins(plan, name, consents, consent_all))
            if len(out) % step == 0:
                report("per-subject", len(out), total)

    for batch in stream(backend, query.order_by("subject"), 100_000):
        for record in batch.to_pylist():
            if record["subject"] != current:
                finish()
                current, history = record["subject"], []
                name = current if keys is None else keys.subjects[current].as_py()
            history.append(_event(record, name, type_names))
    finish()
    report("per-subject", len(out), total)
    return out


def _event(record: Mapping[str, Any], subject: str | None = None,
           type_names: Mapping[int, str] | None = None) -> Event:
    """An events-table row as an engine event (names given for a keyed table)."""
    text = record["attributes"]
    try:
        attributes = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        attributes = {"": text}  # does not fit any schema, as intended
    if not isinstance(attributes, dict):
        attributes = {"": attributes}
    kind = record["type"] if type_names is None else type_names.get(record["type"], "")
    return Event(record["source"], record["source_event_id"],
                 record["subject"] if subject is None else subject, kind,
                 from_us(record["occurred_us"]), from_us(record["recorded_us"]),
                 attributes, record["supersedes"])


def _opt_ins(plan: Plan, subject: str, consents: Mapping[str, frozenset[str]] | None,
             consent_all: bool) -> frozenset[str]:
    opt_in = frozenset(c.name for c in plan.cards if c.opt_in)
    if consent_all:
        return opt_in
    return (consents or {}).get(subject, frozenset()) & opt_in


def _assemble(plan: Plan, table: pa.Table, evaluations: Mapping[Any, Evaluation],
              measures: bool, report: Progress) -> pa.Table:
    """Overlay the per-subject results; decide measures; add the ``path`` column.

    A subject not replayed has every measure with a history blocked (see
    :meth:`~trustledger.batch.plan.Plan.guards`): never in force.
    """
    policy = plan.policy
    names = list(policy.measures) if measures else []
    if not evaluations and not names:
        return table.append_column("path", pa.array([COLUMNAR] * table.num_rows, pa.string()))
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    subjects = columns["subject"]
    decided: dict[str, list[bool | None]] = {n: [] for n in names}
    path: list[str] = []
    stateless = [m for n, m in policy.measures.items() if n in plan.stateless]
    blocked = dict.fromkeys(plan.stateful_measures(), False)
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
        states = measure_states(stateless, context) | blocked
        for n in names:
            decided[n].append(states[n])
    out = {name: pa.array(values, table.schema.field(name).type)
           for name, values in columns.items()}
    for n in names:
        out[f"measure__{n}"] = pa.array(decided[n], pa.bool_())
    out["path"] = pa.array(path, pa.string())
    report("measures", len(subjects), len(subjects))
    return pa.table(out)
