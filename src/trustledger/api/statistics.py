"""Aggregate statistics for the operator: score histograms, tier and measure counts.

Computed over every subject with each subject's rights applied (opt-ins, the items
open disputes freeze, human reviews), in a background thread, by one of three paths:

* **maintained** (:class:`MaintainedPopulation`): each subject's
  :class:`~trustledger.engine.maintained.MaintainedEvaluation` is kept between
  computations, and a computation re-reads only the subjects with entries appended since
  the last one (:meth:`~trustledger.principals.ServiceLedger.changes_after`), then reads
  every subject at the new moment — a read moves the measures' replay forward, it never
  replays history. A subject whose opt-ins leave it no scorecard and block every measure
  (:func:`constant_for`) has nothing to read: no score, no tier, no measure in force at
  any moment. Equal to the reference (tests check it). Used when the policy is
  :func:`~trustledger.engine.maintained.maintainable` and the population small enough
  to keep (:data:`MAINTAIN_UP_TO`).
* **columnar** (:func:`columnar_population`): the batch job of :mod:`trustledger.batch`
  over the ledger read column-wise, with the opt-ins in force; subjects with a dispute,
  a review or an erasure go through the per-subject path instead (the batch job applies
  opt-ins only). For larger populations.
* **reference** (:func:`population`): :func:`trustledger.scoring.assess` per subject,
  for policies the maintained evaluation cannot serve (set-backs, statistical
  scorecards) and as the oracle the others are tested against.

The latest statistics are cached for the ledger's data version; a request while none is
ready gets HTTP 202 with progress and a ``retry_after`` from the rates measured so far
(:class:`Progress`). Never a subject name: only counts, and every cell under ``k``
subjects (DESIGN.md safeguard 4, k = 10) is suppressed — with a second cell whenever a
group has exactly one suppressed cell, so it cannot be recovered from the group's total.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from trustledger.aggregates import suppress
from trustledger.api.settings import Settings
from trustledger.api.view import (
    NOT_SUBJECT_STATE,
    CurrentScores,
    Incremental,
    LedgerView,
    SubjectRecord,
    current_scores,
    reference_scores,
)
from trustledger.engine import Event
from trustledger.engine.maintained import MaintainedEvaluation, maintainable
from trustledger.engine.result import MeasureState
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import Entry, event_of
from trustledger.ledger.chain import EVENT_KIND, PURGE_KIND
from trustledger.policy import CompiledPolicy
from trustledger.principals import ServiceLedger
from trustledger.rights.consent import GRANTED, WITHDRAWN
from trustledger.rights.dispute import ANSWERED, INFORMATION_ADDED, OPENED
from trustledger.rights.dispute import RESOLVED as DISPUTE_RESOLVED
from trustledger.rights.erasure import ERASED, erased_at
from trustledger.rights.review import REQUESTED
from trustledger.rights.review import RESOLVED as REVIEW_RESOLVED
from trustledger.scoring import rights_at

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("trustledger.api")


class Scored(Protocol):
    """One subject's scores, tiers and measures in force (what the statistics count)."""

    @property
    def scores(self) -> Mapping[str, float | None]:
        """Score per scorecard (``None``: no score, e.g. no opt-in)."""

    @property
    def tiers(self) -> Mapping[str, str | None]:
        """Tier per scorecard (``None``: no score, or below every tier)."""

    @property
    def in_force(self) -> Mapping[str, bool]:
        """Whether each measure is in force."""


@dataclass(frozen=True, slots=True)
class Figures:
    """A population's scores, tiers and measures as columns (one entry per subject)."""

    subjects: int
    scores: dict[str, list[float | None]]
    tiers: dict[str, list[str | None]]
    in_force: dict[str, list[bool]]

    @classmethod
    def of(cls, results: Sequence[Scored], policy: CompiledPolicy) -> Figures:
        """The columns of per-subject results."""
        return cls(len(results),
                   {c: [r.scores[c] for r in results] for c in policy.scorecards},
                   {c: [r.tiers[c] for r in results] for c in policy.scorecards},
                   {m: [r.in_force[m] for r in results] for m in policy.measures})

    @classmethod
    def of_table(cls, table: pa.Table, policy: CompiledPolicy) -> Figures:
        """The columns of a batch job's result (``score__``, ``tier__``, ``measure__``)."""
        return cls(table.num_rows,
                   {c: table.column(f"score__{c}").to_pylist() for c in policy.scorecards},
                   {c: table.column(f"tier__{c}").to_pylist() for c in policy.scorecards},
                   {m: [bool(x) for x in table.column(f"measure__{m}").to_pylist()]
                    for m in policy.measures})

    def extended(self, other: Figures) -> Figures:
        """These subjects' columns followed by ``other``'s."""
        return Figures(self.subjects + other.subjects,
                       {c: v + other.scores[c] for c, v in self.scores.items()},
                       {c: v + other.tiers[c] for c, v in self.tiers.items()},
                       {m: v + other.in_force[m] for m, v in self.in_force.items()})


def _cells(labels: Sequence[str], counts: Sequence[int], k: int) -> list[dict[str, Any]]:
    return [{"label": label, "subjects": shown, "suppressed": shown is None and count > 0}
            for label, count, shown in zip(labels, counts, suppress(counts, k), strict=True)]


def aggregate(results: Sequence[Scored] | Figures, policy: CompiledPolicy, settings: Settings
              ) -> dict[str, Any]:
    """The statistics of a population's scores (no names, small cells suppressed).

    A scorecard without a score (an opt-in one without consent) counts as not consented.
    """
    figures = results if isinstance(results, Figures) else Figures.of(results, policy)
    k, width = settings.suppress_below, settings.histogram_width
    cards: dict[str, Any] = {}
    for name, card in policy.scorecards.items():
        scores, card_tiers = figures.scores[name], figures.tiers[name]
        scored = [s for s in scores if s is not None]
        bins: list[dict[str, Any]] = []
        if scored:
            low = card.floor if card.floor is not None else math.floor(min(scored) / width) * width
            high = card.ceiling if card.ceiling is not None else \
                (math.floor(max(scored) / width) + 1) * width
            edges = [low + i * width for i in range(max(1, math.ceil((high - low) / width)))]
            counts = [0] * len(edges)
            for s in scored:
                counts[min(len(edges) - 1, max(0, int((s - low) // width)))] += 1
            for edge, count, shown in zip(edges, counts, suppress(counts, k), strict=True):
                bins.append({"low": edge, "high": min(edge + width, high), "subjects": shown,
                             "suppressed": shown is None and count > 0})
        tiers = [t.name for t in card.tiers]
        per_tier = dict.fromkeys(tiers, 0)
        for score, tier in zip(scores, card_tiers, strict=True):
            if score is not None and tier in per_tier:
                per_tier[tier] += 1
        tier_counts = [per_tier[t] for t in tiers]
        no_tier = len(scored) - sum(tier_counts)
        labels = tiers + (["(below every tier)"] if no_tier else [])
        counts_all = tier_counts + ([no_tier] if no_tier else [])
        head = suppress([len(scored), figures.subjects - len(scored)], k)
        cards[name] = {"scored": head[0], "not_consented": head[1], "histogram": bins,
                       "tiers": _cells(labels, counts_all, k) if tiers else []}
    measures = []
    for name in policy.measures:
        # In force and not in force are one group: a small "not in force" is hidden too,
        # else it could be worked out from the population's size.
        in_force = sum(figures.in_force[name])
        shown = suppress([in_force, figures.subjects - in_force], k)[0]
        measures.append({"label": f"{name} in force", "subjects": shown,
                         "suppressed": shown is None})
    return {"policy": policy.name, "policy_hash": policy.hash, "subjects": figures.subjects,
            "suppress_below": k, "scorecards": cards, "measures": measures}


def suppress_erased() -> contextlib.suppress:
    """Skip an erased subject: it has no data, so it is in no cell."""
    return contextlib.suppress(ErasedError)


# -- progress ---------------------------------------------------------------------------------

READING, QUERY, SCORING, MEASURES = "reading", "query", "scoring", "measures"
"""The stages of a computation: the ledger read (units: entries), the columnar query
(units: entries; one step, the columnar path only), the subjects scored one by one
(units: subjects), then the columnar path's measures decided from the query's values
(units: subjects; one step)."""

ASSUMED_RATES = {READING: 20_000.0, QUERY: 1_000_000.0, SCORING: 200.0, MEASURES: 100_000.0}
"""Units per second assumed for a stage before any rate is measured (the reference on a
busy 2-core machine); once a stage has advanced, its own rate is used, and a later
computation starts from the rates the previous one measured."""

EVENTS_PER_SUBJECT = 20.0
"""Entries per subject assumed to guess the subjects still to score while reading."""


class Progress:
    """How far a computation got, and how long what is left should take.

    ``done``/``total`` count the subjects scored (``total`` 0 while the ledger is being
    read); ``read``/``entries`` the entries read of the ledger's (``entries`` is the
    ledger's position when the computation began, an upper bound).
    """

    def __init__(self, rates: Mapping[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """A computation just begun; ``rates``: those a previous one measured."""
        self._clock = clock
        self.rates = dict(ASSUMED_RATES) | dict(rates or {})
        self.stage = READING
        self.started = self.stage_started = clock()
        self.read = self.entries = 0
        self.counted = [0, 0]
        """``[done, total]``: the list :func:`population` advances."""
        self.deciding = 0
        """Subjects whose measures the columnar path decides in its last step."""
        self.cost_done = 0
        self.cost_total: int | None = None
        """The subjects that cost time to score, when not all do (``None``: all do); the
        scoring rate and what is left are measured in these."""

    @property
    def done(self) -> int:
        """Subjects scored so far."""
        return self.counted[0]

    @done.setter
    def done(self, value: int) -> None:
        self.counted[0] = value

    @property
    def total(self) -> int:
        """Subjects to score (0: not known yet, the ledger is being read)."""
        return self.counted[1]

    @total.setter
    def total(self, value: int) -> None:
        self.counted[1] = value

    def begin(self, stage: str, total: int | None = None) -> None:
        """Move to ``stage`` (``total`` subjects to score); record the finished stage's rate."""
        now = self._clock()
        self._measure(now)
        self.stage, self.stage_started = stage, now
        if total is not None:
            self.done, self.total = 0, total
            self.cost_done, self.cost_total = 0, None

    def _measure(self, now: float) -> None:
        elapsed = now - self.stage_started
        done = {READING: self.read, QUERY: self.entries, MEASURES: self.deciding
                }.get(self.stage, self._scored())
        if done > 0 and elapsed > 0:
            self.rates[self.stage] = done / elapsed

    def finish(self) -> dict[str, float]:
        """The rates this computation measured (for the next one)."""
        self._measure(self._clock())
        return dict(self.rates)

    def seconds_left(self) -> float:
        """What is left at the rates measured so far (or assumed, or the previous run's)."""
        now = self._clock()
        elapsed = now - self.stage_started
        read_rate, score_rate = self.rates[READING], self.rates[SCORING]
        if self.stage == READING and self.total:  # population() counts without begin()
            self.begin(SCORING)
            elapsed = 0.0
        if self.stage == READING:
            if self.read > 0 and elapsed > 0:
                read_rate = self.read / elapsed
            left_entries = max(0, self.entries - self.read)
            subjects = (self.entries or EVENTS_PER_SUBJECT) / EVENTS_PER_SUBJECT
            return left_entries / read_rate + subjects / score_rate
        if self.stage in (QUERY, MEASURES):
            # One step: what the rate gives, less what has passed; once overrun, half as
            # long again as it has taken so far (never "in a second" over and over).
            units = self.entries if self.stage == QUERY else self.deciding
            expected = units / self.rates[self.stage]
            return expected - elapsed if elapsed < expected else max(1.0, elapsed / 2)
        scored = self._scored()
        if scored > 0 and elapsed > 0:
            score_rate = scored / elapsed
        left = self.total - self.done if self.cost_total is None else \
            self.cost_total - self.cost_done
        return max(0, left) / score_rate

    def _scored(self) -> int:
        return self.done if self.cost_total is None else self.cost_done

    def body(self) -> dict[str, Any]:
        """The HTTP 202 body: the stage, entries read, subjects scored and when to ask again."""
        return {"status": "computing", "stage": self.stage, "entries_read": self.read,
                "entries": self.entries or None, "done": self.done,
                "total": self.total or None, "retry_after": retry_after(self.seconds_left())}


def retry_after(seconds_left: float) -> int:
    """Seconds to wait before asking again: what is left, between 1 and 30 s.

    A client asks again at most 30 s later and sees how far it got (a longer wait is
    reported as progress, not promised as one number).
    """
    if not math.isfinite(seconds_left):
        return 30
    return max(1, min(30, math.ceil(seconds_left)))


KEEP_STATES_UP_TO = 100_000
"""Keep incremental states between computations for at most this many events (the
reference path's :func:`population`; see :class:`MaintainedPopulation` for the kept one).

A state holds about 2.2 KiB per event (measured: 43.5 KiB for a subject with 20
events), so keeping them costs memory in the server process; building one costs
more than one reference evaluation, so without keeping them the reference is used.
"""


class Cancelled(Exception):
    """The statistics computation was stopped because the service is closing."""


def _checker(stop: threading.Event | None) -> Any:
    def check() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled
    return check


def population(ledger: ServiceLedger, policy: CompiledPolicy, at: datetime,
               progress: list[int], states: dict[str, Incremental] | None = None,
               keep_up_to: int = KEEP_STATES_UP_TO,
               stop: threading.Event | None = None) -> list[CurrentScores]:
    """Every subject's scores at ``at`` with its rights applied: the reference path.

    Erased subjects are left out (they have no data). ``progress`` is ``[scored,
    subjects]``. ``states``: each subject's incremental state from the previous run,
    updated in place — a subject with only new events since then gets just those
    applied, not its whole history again (:func:`current_scores`). Without ``states``, or
    with more than ``keep_up_to`` events in the ledger, every subject is evaluated by the
    reference (:func:`reference_scores`) and no state is kept. ``stop``, once set, ends
    the computation with :class:`Cancelled` (checked between pages read and subjects
    scored), so no read is left holding a connection of a ledger being closed.
    """
    check = _checker(stop)
    by_subject, records = _read_all(ledger, check)
    progress[1] = len(by_subject)
    previous = dict(states or {})
    if states is not None:
        states.clear()  # refilled with the subjects scored now (not the erased, not the gone)
        if sum(len(events) for events in by_subject.values()) > keep_up_to:
            states = None
    score = current_scores if states is not None else reference_scores
    results = []
    for subject in sorted(by_subject):
        check()
        record = SubjectRecord(subject, 0, tuple(by_subject[subject]),
                               tuple(records.get(subject, ())),
                               incremental=previous.pop(subject, None))
        with suppress_erased():
            results.append(score(record, policy, at))
            if states is not None and record.incremental is not None:
                states[subject] = record.incremental
        progress[0] += 1
    return results


def _read_all(ledger: ServiceLedger, check: Any, counted: Progress | None = None
              ) -> tuple[dict[str, list[Event]], dict[str, list[Entry]]]:
    """Every subject's events and rights records (one pass each), counted in ``counted``."""
    by_subject: dict[str, list[Event]] = defaultdict(list)
    for number, event in enumerate(ledger.events()):
        if number % 1024 == 0:
            check()
            if counted is not None:
                counted.read = number
        by_subject[event.subject].append(event)
    records: dict[str, list[Entry]] = defaultdict(list)
    for number, entry in enumerate(ledger.records()):
        if number % 1024 == 0:
            check()
        if (entry.subject is not None and entry.kind != EVENT_KIND
                and entry.kind not in NOT_SUBJECT_STATE):
            records[entry.subject].append(entry)
    return by_subject, records


# -- the maintained path ----------------------------------------------------------------------

def constant_for(policy: CompiledPolicy, opt_ins: frozenset[str]) -> bool:
    """Whether a subject with these opt-ins has no score and no measure in force, ever.

    True when every scorecard is an opt-in one not consented to (no score, no tier), and
    every measure reads a scorecard or a metric that is unavailable then: the engine
    blocks such a measure (its condition is false) at every instant, so it is never in
    force, whatever the subject's events (a holding time starts only from a true
    condition).
    """
    def available(name: str) -> bool:
        if name in policy.scorecards:
            card = policy.scorecards[name]
            return not card.opt_in or name in opt_ins
        scope = policy.metrics[name].scorecard if name in policy.metrics else None
        return scope is None or available(scope)

    if any(available(name) for name in policy.scorecards):
        return False
    return all(any(not available(n) for n in (*m.scorecards, *m.metrics))
               for m in policy.measures.values())


@dataclass(frozen=True, slots=True)
class SubjectFigures:
    """One subject's scores, tiers and measures in force at one moment."""

    scores: Mapping[str, float | None]
    tiers: Mapping[str, str | None]
    in_force: Mapping[str, bool]


def _nothing(policy: CompiledPolicy) -> SubjectFigures:
    return SubjectFigures(dict.fromkeys(policy.scorecards), dict.fromkeys(policy.scorecards),
                          dict.fromkeys(policy.measures, False))


def read_state(state: MaintainedEvaluation, at: datetime) -> SubjectFigures:
    """Scores, tiers and measures in force of a maintained evaluation at ``at``.

    All three are :meth:`~MaintainedEvaluation.standing`'s: the score is the clamped sum
    its tier is read from, the reference's score (no set-back: the evaluation is of a
    maintainable policy).
    """
    standing = state.standing(at)
    in_force = {name: state_ in (MeasureState.GRANTED, MeasureState.ACTIVE)
                for name, state_ in standing.states.items()}
    return SubjectFigures(standing.scores, standing.tiers, in_force)


RightsKey = tuple[frozenset[str], frozenset[tuple[str, str]]]


@dataclass(slots=True)
class _Kept:
    """One subject as the maintained path keeps it between computations."""

    records: tuple[Entry, ...]
    events: tuple[Event, ...] | None
    """``None``: not kept (a subject with no records whose figures are constant); loaded
    again from the ledger if it is ever needed."""
    key: RightsKey | None = None
    state: MaintainedEvaluation | None = field(default=None, repr=False)


MAINTAIN_UP_TO = 2_000_000
"""The maintained path is chosen for a ledger of at most this many entries (its position
when statistics are first computed); beyond it the columnar path computes them. A kept
evaluation holds about 20 KiB for a subject with 20 events (measured on the demo
population); a subject whose figures are constant holds none."""


class MaintainedPopulation:
    """Every subject's maintained evaluation, brought up to date computation by computation.

    Not thread-safe: one computation at a time (the statistics thread's).
    """

    def __init__(self) -> None:
        """Empty: the first :meth:`figures` reads the whole ledger."""
        self._subjects: dict[str, _Kept] = {}
        self._policy_hash: str | None = None
        self._position = 0
        self.loaded = False
        """Whether the population is loaded (the next computation reads only changes)."""
        self.loads = 0
        """How many times the whole ledger was read."""

    def figures(self, ledger: ServiceLedger, policy: CompiledPolicy, at: datetime,
                progress: Progress, stop: threading.Event | None = None) -> Figures:
        """Every subject's figures at ``at``, with its rights applied, and their columns.

        Reads the whole ledger the first time and for a new policy; otherwise only the
        subjects with entries appended since the last computation. Raises
        :class:`Cancelled` once ``stop`` is set.
        """
        check = _checker(stop)
        if not self.loaded or self._policy_hash != policy.hash or not self._follow(ledger):
            self._load(ledger, policy, at, progress, check)
        constant_empty = constant_for(policy, frozenset())
        free = [not kept.records and constant_empty for kept in self._subjects.values()]
        progress.begin(SCORING, len(self._subjects))
        progress.cost_total = len(free) - sum(free)  # the free cost no time
        nothing = _nothing(policy)
        results: list[SubjectFigures] = []
        gone = []
        for number, (subject, kept) in enumerate(self._subjects.items()):
            if number % 256 == 0:
                check()
                progress.done = number
            if free[number]:
                results.append(nothing)
                continue
            progress.cost_done += 1
            found = self._read(ledger, subject, kept, policy, at, nothing)
            if found is None:
                gone.append(subject)
            else:
                results.append(found)
        progress.done = len(self._subjects)
        for subject in gone:
            del self._subjects[subject]
        return Figures.of(results, policy)

    def _load(self, ledger: ServiceLedger, policy: CompiledPolicy, at: datetime,
              progress: Progress, check: Any) -> None:
        self._subjects.clear()
        self.loaded = False
        position = ledger.position()
        progress.entries = position
        by_subject, records = _read_all(ledger, check, progress)
        constant_empty = constant_for(policy, frozenset())
        for subject in sorted(by_subject):
            held = tuple(records.get(subject, ()))
            events = tuple(by_subject[subject])
            self._subjects[subject] = _Kept(held, None if constant_empty and not held else events)
        self._position, self._policy_hash, self.loaded = position, policy.hash, True
        self.loads += 1

    def _follow(self, ledger: ServiceLedger) -> bool:
        """Reload the subjects changed since the last computation; ``False``: reload all."""
        changed: set[str] = set()
        while True:
            changes = ledger.changes_after(self._position)
            if not changes:
                break
            for change in changes:
                if change.subject is None and change.kind == PURGE_KIND:
                    return False  # a purge over many subjects: read everything again
                if change.subject is not None and change.kind not in NOT_SUBJECT_STATE:
                    changed.add(change.subject)
            self._position = changes[-1].seq
        for subject in sorted(changed):
            self._reload(ledger, subject)
        return True

    def _reload(self, ledger: ServiceLedger, subject: str) -> _Kept | None:
        _, entries = ledger.subject_entries(subject, exclude=NOT_SUBJECT_STATE)
        events = tuple(e for entry in entries if (e := event_of(entry)) is not None)
        records = tuple(e for e in entries if e.kind != EVENT_KIND)
        if not events:
            self._subjects.pop(subject, None)
            return None
        kept = _Kept(records, events)
        self._subjects[subject] = kept
        return kept

    def _read(self, ledger: ServiceLedger, subject: str, kept: _Kept, policy: CompiledPolicy,
              at: datetime, nothing: SubjectFigures) -> SubjectFigures | None:
        """The subject's figures at ``at``; ``None``: erased or without events now."""
        if kept.records and erased_at(kept.records) is not None:
            return None
        if kept.events is None:
            reloaded = self._reload(ledger, subject)
            if reloaded is None:
                return None
            kept = reloaded
        assert kept.events is not None
        # Without a dispute nothing is left out: the events need not be split (the costly
        # part of rights_at), only the opt-ins and reviews read.
        disputed = any(r.kind == OPENED for r in kept.records)
        rights = rights_at(policy, kept.events if disputed else (), kept.records, at)
        scored = rights.kept if disputed else kept.events
        if rights.reviews:  # a review rewrites a measure: the reference applies it
            return _of(reference_scores(SubjectRecord(subject, 0, kept.events, kept.records),
                                        policy, at))
        if constant_for(policy, rights.opt_ins):
            return nothing
        key = (rights.opt_ins, frozenset(event.key for event, _ in rights.left))
        state = kept.state
        if state is None or kept.key != key or not state.serves(at):
            state = MaintainedEvaluation(policy, scored, at, rights.opt_ins)
            if not state.serves(at):  # an event occurs after ``at``: the reference decides
                kept.state = kept.key = None
                return _of(reference_scores(SubjectRecord(subject, 0, kept.events,
                                                          kept.records), policy, at))
            kept.state, kept.key = state, key
        return read_state(state, at)


def _of(scores: CurrentScores) -> SubjectFigures:
    return SubjectFigures(scores.scores, scores.tiers, scores.in_force)


# -- the columnar path ------------------------------------------------------------------------

CONSENT_KINDS = (GRANTED, WITHDRAWN)
PER_SUBJECT_KINDS = (OPENED, INFORMATION_ADDED, ANSWERED, DISPUTE_RESOLVED, REQUESTED,
                     REVIEW_RESOLVED, ERASED, PURGE_KIND)
"""Records of rights the batch job does not apply (disputes, reviews, erasure, purges):
their subjects take the per-subject path."""


def columnar_table(policy: CompiledPolicy, events: Any, at: datetime,
                   consents: Mapping[str, frozenset[str]], progress: Progress,
                   stop: threading.Event | None = None) -> pa.Table:
    """The batch job's per-subject result at ``at`` (scores, tiers, measures), with progress.

    ``events``: the job's input table (:mod:`trustledger.batch.sources`); ``consents``:
    each subject's opt-ins in force at ``at``. The columnar query is one step; the
    subjects it sends to the per-subject path are counted in ``progress`` as they are
    scored.
    """
    from trustledger.batch.run import rescore

    check = _checker(stop)

    def report(stage: str, done: int, total: int | None) -> None:
        check()
        if stage == "per-subject" and total:
            if progress.stage != SCORING:
                progress.begin(SCORING, total)
            progress.done = done
        elif stage == "measures" and progress.stage != MEASURES:
            progress.deciding = total or 0
            progress.begin(MEASURES)

    progress.begin(QUERY, 0)
    return rescore(policy, events, at, consents=consents, progress=report).table


def columnar_population(ledger: ServiceLedger, policy: CompiledPolicy, at: datetime,
                        progress: Progress, stop: threading.Event | None = None,
                        memory_limit: str = "2GB") -> Figures:
    """Every subject's figures at ``at`` from the columnar batch job, rights applied.

    The ledger is read column-wise (:meth:`~trustledger.ledger.Ledger.batch_columns`)
    into DuckDB; the batch job applies the opt-ins in force at ``at``
    (:func:`~trustledger.batch.sources.ledger_consents`). A subject with a dispute, a
    review or a purge record (an erasure purges) is taken out of the job's result and
    evaluated by the reference (:func:`reference_scores`) with its rights (an erased one
    is left out).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from trustledger.batch.sources import duckdb_backend, ledger_consents, read_ledger

    check = _checker(stop)
    progress.entries = ledger.position()

    def entries() -> Iterable[Any]:
        for batch in ledger.batch_columns((EVENT_KIND, *CONSENT_KINDS, *PER_SUBJECT_KINDS),
                                          rows=20_000):
            check()
            progress.read += batch.num_rows
            yield batch

    backend = duckdb_backend(memory_limit=memory_limit)
    try:
        table, records = read_ledger(backend, entries(), "")
        consents = ledger_consents(records, at, policy.scorecards)
        kinds = records.column("kind").to_pylist()
        others = sorted({s for s, kind in zip(records.column("subject").to_pylist(), kinds,
                                              strict=True)
                         if s is not None and kind in PER_SUBJECT_KINDS})
        check()
        result = columnar_table(policy, table, at, consents, progress, stop)
    finally:
        backend.disconnect()
    if others:
        result = result.filter(pc.invert(pc.is_in(result.column("subject"),
                                                  pa.array(others, pa.string()))))
    figures = Figures.of_table(result, policy)
    rows: list[SubjectFigures] = []
    for subject in others:
        check()
        _, found = ledger.subject_entries(subject, exclude=NOT_SUBJECT_STATE)
        events = tuple(e for entry in found if (e := event_of(entry)) is not None)
        held = tuple(e for e in found if e.kind != EVENT_KIND)
        with suppress_erased(), contextlib.suppress(NotFoundError):
            rows.append(_of(reference_scores(SubjectRecord(subject, 0, events, held),
                                             policy, at)))
    return figures.extended(Figures.of(rows, policy))


# -- the cache --------------------------------------------------------------------------------

FRESH_WAIT = 2.0
"""A request waits this long for a computation expected to take no longer (the previous
one did not), so a warm page shows fresh statistics instead of the previous ones (on the
demo population a warm computation takes about 0.35 s of CPU; the wait covers a busy
machine)."""


class StatisticsCache:
    """The latest statistics and the background computation of the next."""

    def __init__(self, ledger: ServiceLedger, view: LedgerView, settings: Settings) -> None:
        """Nothing is computed until statistics are first asked for."""
        self._ledger, self._view, self._settings = ledger, view, settings
        self._lock = threading.Lock()
        self._ready: tuple[int, dict[str, Any]] | None = None
        self._running: threading.Thread | None = None
        self._rates: dict[str, float] = {}
        self._progress = Progress()
        self._last_seconds: float | None = None
        """How long the last computation took (``None``: none finished yet)."""
        self.maintained = MaintainedPopulation()
        """The maintained path's population (kept between computations)."""
        self._stop = threading.Event()
        self.maintain_up_to = MAINTAIN_UP_TO
        """Ledger positions up to which the maintained path is used (else the columnar)."""
        self.path: str | None = None
        """The path of the last computation: ``maintained``, ``columnar`` or ``reference``."""

    def get(self) -> tuple[int, dict[str, Any]]:
        """``(200, statistics)`` (maybe ``stale``, then refreshed), or ``(202, progress)``.

        When the previous computation took at most :data:`FRESH_WAIT`, a request that
        starts one waits for it (up to that long), so it answers with fresh statistics.
        """
        version = self._view.data_version
        with self._lock:
            ready = self._ready
            started = None
            if ((ready is None or ready[0] != version) and self._running is None
                    and not self._stop.is_set()):
                started = self._start(version)
            quick = self._last_seconds is not None and self._last_seconds <= FRESH_WAIT
            running = self._running
        if quick and running is not None and (started is not None or ready is None
                                              or ready[0] != version):
            running.join(FRESH_WAIT)
        with self._lock:
            ready = self._ready
            if ready is not None:
                return 200, {**ready[1], "stale": ready[0] != version}
            return 202, self._progress.body()

    def _start(self, version: int) -> threading.Thread:
        self._progress = Progress(self._rates)
        self._progress.entries = self._ledger.position()  # the first estimate's size
        self._running = threading.Thread(target=self._compute, args=(version, self._progress),
                                         name="statistics", daemon=True)
        self._running.start()
        return self._running

    def _compute(self, version: int, progress: Progress) -> None:
        try:
            at = self._settings.clock()
            policy = self._view.policy_in_force(at)
            figures, path = self._figures(policy, at, progress)
            body = {"status": "ready", "computed_at": at, "ledger_seq": version,
                    **aggregate(figures, policy, self._settings)}
            with self._lock:
                self._ready = (version, body)
                self._rates = progress.finish()
                self._last_seconds = time.monotonic() - progress.started
                self.path = path
        except Cancelled:
            log.info("statistics: computation stopped, the service is closing")
        except Exception:
            log.exception("statistics: computation failed")
        finally:
            with self._lock:
                self._running = None

    def _figures(self, policy: CompiledPolicy, at: datetime, progress: Progress
                 ) -> tuple[Figures, str]:
        stop = self._stop
        if not maintainable(policy):
            progress.entries = self._ledger.position()
            results = population(self._ledger, policy, at, progress.counted, stop=stop)
            return Figures.of(results, policy), "reference"
        if self.maintained.loaded or self._ledger.position() <= self.maintain_up_to:
            return self.maintained.figures(self._ledger, policy, at, progress, stop), \
                "maintained"
        return columnar_population(self._ledger, policy, at, progress, stop), "columnar"

    def close(self, timeout: float = 30.0) -> None:
        """Stop a running computation and wait for it (before the ledger is closed).

        No computation starts afterwards; one still running after ``timeout`` seconds
        is left to end at its next check.
        """
        self._stop.set()
        thread = self._running
        if thread is not None:
            thread.join(timeout)

    def wait(self, timeout: float) -> None:
        """Wait for a running computation (tests and benchmarks)."""
        thread = self._running
        if thread is not None:
            thread.join(timeout)
