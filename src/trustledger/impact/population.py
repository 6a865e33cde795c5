"""An exported real population for the impact simulation: histories, propensities, groups.

``trustledger impact POLICY --population FILE`` starts each subject of a ledger export
(the Parquet or JSON Lines file ``trustledger export`` writes) from their recorded
history instead of from nothing:

* :func:`load_population` reads the export (through the ledger's own reader, which
  checks every column) and keeps each subject's events; an event whose payload was
  erased or purged is skipped and counted, other entries (consents, disputes, ...) are
  not events and are counted too. Group labels, from a CSV or Parquet file of
  ``subject,group`` (:func:`read_groups`), are for the report only; a subject without one
  is in group ``unlabelled``.
* :func:`resolve_history` does what the reference evaluator does before its fold —
  supersession (corrections and withdrawals), event types the policy does not know,
  attributes that do not fit, and each entry's end (expiry from the recorded or
  occurred time, overhang, retention, by the engine's own interval rule) — and lists the
  distinct attribute sets per event type, which become the simulation's variants.
* :func:`replay_history` applies the entries to a :class:`VectorState` instant by
  instant (a subject's k-th entry at an instant in the k-th pass, in the reference
  order), so the state at the first simulated month equals
  :func:`~trustledger.engine.evaluate` on the subject's real events.
* :func:`estimate_rates`: each subject's monthly propensity per event type, from their
  own history with shrinkage toward the population's mean (see its docstring).

Subject ids stay in here and in the arrays the simulation keeps; the report carries
aggregates only.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from trustledger.engine.events import RETRACTION, Event
from trustledger.engine.history import Entry, order_key, set_counting_interval, ts
from trustledger.errors import InputError
from trustledger.impact.scenario import MAX_RATE
from trustledger.impact.vector import VectorState
from trustledger.ledger.chain import EVENT_KIND, from_us
from trustledger.policy.compiled import CompiledPolicy

UNLABELLED = "unlabelled"
"""The group of a subject the labels file does not name."""

PRIOR_MONTHS = 12.0
"""Default weight of the population's mean rate in a subject's propensity, in months."""

DAYS_PER_MONTH = 365.2425 / 12
"""Observed months are days / this."""

MAX_VARIANTS = 16
"""A type's forward draws use its this many most frequent attribute sets."""


@dataclass(frozen=True)
class RealPopulation:
    """The subjects of a ledger export, their events and their group labels.

    ``subjects`` are sorted; ``events[i]`` are subject i's events with a payload, as the
    engine takes them; ``groups[i]`` indexes ``group_names``. ``erased`` counts event
    entries whose payload was erased or purged (skipped); ``other_entries`` the entries
    that are not events.
    """

    source: str
    subjects: tuple[str, ...]
    events: tuple[tuple[Event, ...], ...]
    groups: np.ndarray
    group_names: tuple[str, ...]
    erased: int
    other_entries: int
    labelled: int

    def __len__(self) -> int:
        """How many subjects."""
        return len(self.subjects)


def _event(path: Path, where: str, row: Any) -> Event:
    """One event entry's payload as the engine's :class:`Event`; the field named if bad."""
    try:
        payload = orjson.loads(row.payload)
    except orjson.JSONDecodeError as err:
        raise InputError(f"{path}: {where}: payload: not JSON ({err})") from err
    if not isinstance(payload, dict):
        raise InputError(f"{path}: {where}: payload: not a JSON object")
    for name, kind in (("type", str), ("occurred_at", str), ("attributes", dict)):
        if not isinstance(payload.get(name), kind):
            raise InputError(f"{path}: {where}: payload.{name}: missing or of the wrong type")
    supersedes = payload.get("supersedes")
    if supersedes is not None and not isinstance(supersedes, str):
        raise InputError(f"{path}: {where}: payload.supersedes: not a text")
    try:
        occurred = datetime.fromisoformat(payload["occurred_at"])
    except ValueError as err:
        raise InputError(f"{path}: {where}: payload.occurred_at: {err}") from err
    if occurred.tzinfo is None:
        raise InputError(f"{path}: {where}: payload.occurred_at: no UTC offset")
    for name in ("subject", "source", "source_event_id"):
        if not getattr(row, name):
            raise InputError(f"{path}: {where}: {name}: missing on an event entry")
    return Event(row.source, row.source_event_id, row.subject, payload["type"],
                 occurred.astimezone(UTC), from_us(row.recorded_at_us),
                 payload["attributes"], supersedes, row.seq)


def read_groups(path: Path) -> dict[str, str]:
    """Group labels from a CSV (header ``subject,group``) or Parquet file with those columns.

    Refused, naming the file, row and column: a missing file or column, an unknown
    suffix, an empty subject or group, a subject given two different groups.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file (--groups)")
    suffix = path.suffix.lower()
    rows: list[tuple[str, Any, Any]] = []
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("subject", "group") if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {missing}; the header must "
                                 "name subject and group")
            rows = [(f"row {n}", r["subject"], r["group"])
                    for n, r in enumerate(reader, start=2)]
    elif suffix in {".parquet", ".pq"}:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except pa.ArrowException as err:
            raise InputError(f"{path}: not a readable Parquet file: {err}") from err
        missing = [c for c in ("subject", "group") if c not in table.column_names]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}")
        rows = [(f"row {n}", s, g) for n, (s, g) in enumerate(
            zip(table.column("subject").to_pylist(), table.column("group").to_pylist(),
                strict=True), start=1)]
    else:
        raise InputError(f"{path}: unknown format {suffix!r}; use .csv or .parquet")
    labels: dict[str, str] = {}
    for where, subject, group in rows:
        for name, value in (("subject", subject), ("group", group)):
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{path}: {where}: {name}: missing or not a text")
        if labels.setdefault(subject, group) != group:
            raise InputError(f"{path}: {where}: group: this subject already has another "
                             "group")
    return labels


def load_population(path: Path, groups: Path | None = None) -> RealPopulation:
    """The subjects of a ledger export (``.parquet`` or ``.jsonl``), labelled from ``groups``.

    :class:`~trustledger.errors.InputError`, naming the file, row and field, for a file
    that is not a readable export, an event whose payload lacks a field, an export without
    any event, or a bad labels file. A label that is also a subject id of the export is
    refused: a group's name is printed in the report, a subject's id never is.
    """
    from trustledger.ledger.transfer import read_export

    by_subject: dict[str, list[Event]] = {}
    erased = other = 0
    for n, row in enumerate(read_export(path), start=1):
        if row.kind != EVENT_KIND:
            other += 1
            continue
        if row.payload is None:
            erased += 1
            continue
        event = _event(path, f"entry seq={row.seq} (record {n})", row)
        by_subject.setdefault(event.subject, []).append(event)
    if not by_subject:
        raise InputError(f"{path}: no event with a payload; nothing to simulate")
    subjects = tuple(sorted(by_subject))
    labels = read_groups(groups) if groups is not None else {}
    known = set(subjects)
    for label in set(labels.values()):
        if label in known:
            raise InputError(f"{groups}: group: a label is also a subject id of {path}; "
                             "labels are printed in the report and must not name a person")
    names = sorted({labels[s] for s in subjects if s in labels})
    if any(s not in labels for s in subjects) and UNLABELLED not in names:
        names.append(UNLABELLED)
    index = {g: i for i, g in enumerate(names)}
    group_of = np.array([index[labels.get(s, UNLABELLED)] for s in subjects], dtype=np.int64)
    return RealPopulation(str(path), subjects, tuple(tuple(by_subject[s]) for s in subjects),
                          group_of, tuple(names), erased, other,
                          sum(s in labels for s in subjects))


@dataclass(frozen=True)
class HistoryEntry:
    """One of a subject's events that the policy counts (before caps and ``when``)."""

    subject: int
    event: Event
    variant: int
    end: float


@dataclass(frozen=True)
class ResolvedHistory:
    """Each subject's countable entries, the attribute sets per type, and what was left out.

    ``variants[type]`` lists raw attribute sets (one per distinct normalised set), in
    order of first appearance; ``uses[type][v]`` how many entries have variant ``v``.
    ``not_counted`` counts events superseded, withdrawing, of a type the policy does not
    have, or with attributes that do not fit.
    """

    entries: tuple[HistoryEntry, ...]
    variants: Mapping[str, tuple[Mapping[str, Any], ...]]
    uses: Mapping[str, tuple[int, ...]]
    first: np.ndarray
    latest: datetime
    not_counted: int


def resolve_history(policy: CompiledPolicy, population: RealPopulation) -> ResolvedHistory:
    """The reference evaluator's steps before its fold, for every subject (module docstring)."""
    entries: list[HistoryEntry] = []
    variants: dict[str, list[Mapping[str, Any]]] = {}
    keys: dict[str, dict[str, int]] = {}
    uses: dict[str, Counter[int]] = {}
    first = np.full(len(population), np.inf)
    latest = max(max(max(e.occurred_at, e.recorded_at) for e in events)
                 for events in population.events)
    not_counted = 0
    for i, events in enumerate(population.events):
        ordered = sorted(events, key=order_key)
        first[i] = ts(ordered[0].occurred_at)
        superseded = {(e.source, e.supersedes) for e in ordered if e.supersedes is not None}
        live: list[Entry] = []
        chosen: list[int] = []
        for e in ordered:
            etype = policy.event_types.get(e.type)
            if e.key in superseded or e.type == RETRACTION or etype is None:
                not_counted += 1
                continue
            attrs = etype.normalise(e.attributes)
            if isinstance(attrs, str):
                not_counted += 1
                continue
            entry = Entry(e, etype, ts(e.occurred_at), ts(e.recorded_at))
            entry.attrs = attrs
            entry.base_points = entry.points = etype.points(attrs)
            entry.counted = True
            live.append(entry)
            key = json.dumps(attrs, sort_keys=True, default=str)
            seen = keys.setdefault(e.type, {})
            if key not in seen:
                seen[key] = len(seen)
                variants.setdefault(e.type, []).append(dict(e.attributes))
            chosen.append(seen[key])
            uses.setdefault(e.type, Counter())[seen[key]] += 1
        for entry, v in zip(live, chosen, strict=True):
            # The engine's own interval rule (expiry anchor, overhang witness, retention):
            # one implementation of when an entry stops counting.
            set_counting_interval(entry, live)
            entries.append(HistoryEntry(i, entry.event, v, entry.end))
    return ResolvedHistory(
        tuple(entries), {t: tuple(v) for t, v in variants.items()},
        {t: tuple(c[v] for v in range(len(variants[t]))) for t, c in uses.items()},
        first, latest, not_counted)


def first_instant(history: ResolvedHistory, policy: CompiledPolicy) -> datetime:
    """The first monthly instant (15th, 12:00 UTC) after every event of the export.

    Not before the policy's ``effective_from`` either, so that it can be evaluated.
    """
    latest = max(history.latest, policy.effective_from).astimezone(UTC)
    start = datetime(latest.year, latest.month, 15, 12, tzinfo=UTC)
    while start <= latest:
        index = start.year * 12 + start.month
        start = datetime(index // 12, index % 12 + 1, 15, 12, tzinfo=UTC)
    return start


def replay_history(state: VectorState, history: ResolvedHistory) -> None:
    """Apply every subject's entries to ``state``, in the reference evaluator's order.

    One pass per (instant, position among the subject's entries at that instant, end):
    a subject has at most one entry in a pass, so caps and ``when`` conditions see
    exactly that subject's earlier entries, as in the reference fold.
    """
    passes: dict[tuple[float, int, float], list[HistoryEntry]] = {}
    seen: Counter[tuple[int, float]] = Counter()
    for entry in history.entries:  # per subject, already in the reference order
        o = ts(entry.event.occurred_at)
        k = seen[(entry.subject, o)]
        seen[(entry.subject, o)] += 1
        passes.setdefault((o, k, entry.end), []).append(entry)
    for (_, _, end), group in sorted(passes.items(), key=lambda item: item[0]):
        counts: dict[tuple[str, int], np.ndarray] = {}
        for entry in group:
            key = (entry.event.type, entry.variant)
            if key not in counts:
                counts[key] = np.zeros(state.size, dtype=np.int64)
            counts[key][entry.subject] = 1
        state.apply(group[0].event.occurred_at, counts, end=end)


def estimate_rates(policy: CompiledPolicy, history: ResolvedHistory, size: int,
                   start: datetime, prior_months: float) -> dict[str, np.ndarray]:
    """Each subject's monthly propensity per event type, from their own history.

    ``rate = (n + a·μ) / (T + a)``: ``n`` the subject's countable events of the type,
    ``T`` the months from their first event to ``start`` (at least 1), ``μ`` the
    population's rate (all such events over all observed months) and ``a`` =
    ``prior_months`` — the mean of a gamma-Poisson posterior whose prior is worth ``a``
    months at the population's rate, so one event in a month is not a propensity of 1.
    Capped at :data:`~trustledger.impact.scenario.MAX_RATE`.
    """
    months = np.maximum(1.0, (ts(start) - history.first) / (86_400 * DAYS_PER_MONTH))
    counts = {t: np.zeros(size) for t in history.variants}
    for entry in history.entries:
        counts[entry.event.type][entry.subject] += 1
    total_months = float(months.sum())
    rates = {}
    for tname in policy.event_types:
        if tname not in counts:
            continue
        n = counts[tname]
        mean = float(n.sum()) / total_months
        rates[tname] = np.minimum((n + prior_months * mean) / (months + prior_months),
                                  MAX_RATE)
    return rates


def forward_variants(history: ResolvedHistory) -> dict[str, tuple[tuple[int, float], ...]]:
    """Per type, the attribute sets drawn forward, with their shares in the history.

    The :data:`MAX_VARIANTS` most frequent (ties: first seen), shares renormalised.
    """
    out = {}
    for tname, used in history.uses.items():
        top = sorted(range(len(used)), key=lambda v: (-used[v], v))[:MAX_VARIANTS]
        total = sum(used[v] for v in top)
        out[tname] = tuple((v, used[v] / total) for v in sorted(top))
    return out


__all__ = ["DAYS_PER_MONTH", "MAX_VARIANTS", "PRIOR_MONTHS", "UNLABELLED", "HistoryEntry",
           "RealPopulation", "ResolvedHistory", "estimate_rates", "first_instant",
           "forward_variants", "load_population", "read_groups",
           "replay_history", "resolve_history"]
