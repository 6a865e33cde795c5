"""What the service knows of the ledger, kept current by reading only what was appended.

Every request first calls :meth:`LedgerView.sync`, which reads the entries
appended since the last sync (one query on the primary key; usually a handful of
rows) and drops whatever they make stale: a subject's cached events, consents and
evaluation, the compiled policies, the principals' key cache. So a consent
withdrawn, a key revoked or an event appended — by this process or any other —
counts from the next request on, while a request that finds nothing new reads
nothing else.

Subjects are loaded on demand with one indexed query (their events and every
rights record: consents, disputes, reviews, erasure; not the access log) and kept
in a bounded LRU. Two functions score a subject for the service:

* :func:`current_assessment` — the subject's assessment now, equal to
  :func:`trustledger.scoring.assess` (the reference engine with the subject's rights
  applied): the full derivation, reasons and measure histories. Decisions, the
  subject's scores, what-if and reviews use it: each of them shows reasons
  (safeguard 5). It reads the subject's
  :class:`~trustledger.engine.maintained.MaintainedEvaluation` (the history built once
  per set of events, opt-ins and disputes; the measures' replay resumed from the last
  read, never replayed) when :func:`maintained_assessment` can serve it, and calls
  ``assess`` otherwise — both named in :attr:`SubjectRecord.answered_by`.
* :func:`current_scores` — scores, tiers and measure states only, read from the
  incremental engine (:class:`trustledger.engine.incremental.SubjectState`) kept
  per cached subject, in O(1) amortized time, falling back to the reference where
  the incremental state cannot answer (measures with a holding time or a
  prerequisite, human reviews, statistical scorecards). The operator's statistics
  use it. Both are equal to the reference evaluation (tests check it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

from trustledger.api.access import ACCESS_READ
from trustledger.engine import Event
from trustledger.engine.incremental import SubjectState, stateless_measures
from trustledger.engine.maintained import MaintainedEvaluation, maintainable
from trustledger.errors import ErasedError, NotFoundError
from trustledger.ledger import Entry, event_of
from trustledger.ledger.chain import EVENT_KIND
from trustledger.policy import CompiledPolicy
from trustledger.principals import KINDS as PRINCIPAL_KINDS
from trustledger.principals import Change, ServiceLedger
from trustledger.principals.ledger import CHANGES_PAGE
from trustledger.rights.consent import Consent, active_consents
from trustledger.rights.dispute import fold_disputes, split_disputed
from trustledger.rights.erasure import erased_at
from trustledger.rights.review import fold_reviews
from trustledger.scoring import (
    PUBLISHED,
    Assessment,
    PublishedPolicy,
    assess,
    assessed,
    published_policies,
    rights_at,
)

NOT_SUBJECT_STATE = frozenset({ACCESS_READ, *PRINCIPAL_KINDS})
"""Kinds of entries about a subject that do not change its evaluation (the rest do)."""

_MAX_TRACKED = 200_000


def _settle(future: asyncio.Future[None], failure: BaseException | None) -> None:
    if future.done():
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(None)


class NoPolicyError(NotFoundError):
    """No published policy is in force (the operator must publish one)."""


@dataclass
class SubjectRecord:
    """One subject as the service caches it, as of ledger position ``loaded_at``.

    Its events, its rights records (consents, disputes, reviews, purges) and its last
    assessment.
    """

    subject: str
    loaded_at: int
    events: tuple[Event, ...]
    records: tuple[Entry, ...]
    assessment: Assessment | None = field(default=None)
    incremental: Incremental | None = field(default=None, repr=False)
    """The incremental engine state of the subject's scored events (:func:`current_scores`)."""
    maintained: Maintained | None = field(default=None, repr=False)
    """The subject's maintained evaluation (:func:`maintained_assessment`)."""
    answered_by: Literal["maintained", "reference"] | None = None
    """Which engine gave the last :func:`current_assessment` (``None``: none yet)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Held while the incremental or maintained state is read or rebuilt (reading either
    moves its clock)."""

    @cached_property
    def erased(self) -> bool:
        """Whether the subject was erased on request (then there is no data to show)."""
        return erased_at(self.records) is not None

    @cached_property
    def latest_occurred(self) -> datetime | None:
        """When the subject's latest event occurred (``None``: no events)."""
        return max((e.occurred_at for e in self.events), default=None)

    def consents(self, at: datetime) -> list[Consent]:
        """The consents in force at ``at``."""
        return active_consents(self.records, at)

    def opt_ins(self, at: datetime, policy: CompiledPolicy) -> frozenset[str]:
        """The policy's scorecards the subject has opted in to at ``at``."""
        return frozenset(c.scorecard for c in self.consents(at)
                         if c.scope == "scorecard" and c.scorecard is not None
                         and c.scorecard in policy.scorecards)


@dataclass(slots=True)
class Incremental:
    """A :class:`~trustledger.engine.incremental.SubjectState` and what it was built for.

    ``key``: the policy hash, the opt-ins and the events disputes leave out; when any
    of them differs at a read, the state is rebuilt from the subject's events.
    ``applied`` events of the subject's (in seq order) were given to it, the last at
    ``last_seq``: a later read with more events applies only the new ones.
    """

    key: tuple[str, frozenset[str], frozenset[tuple[str, str]]]
    state: SubjectState
    applied: int
    last_seq: int | None

    def extends(self, events: tuple[Event, ...]) -> bool:
        """Whether ``events`` are the ones applied (none removed) followed by newer ones."""
        if self.applied > len(events):
            return False
        if self.applied and events[self.applied - 1].seq != self.last_seq:
            return False  # an earlier event is gone (purged): the ledger only appends
        newer = self.last_seq if self.last_seq is not None else 0
        for event in events[self.applied:]:
            if event.seq is None or event.seq <= newer:
                return False
            newer = event.seq
        return True

    def apply(self, events: tuple[Event, ...]) -> None:
        """Apply the events after the ones applied (see :meth:`extends`), but the left-out."""
        gone = self.key[2]
        for event in events[self.applied:]:
            if event.key not in gone:
                self.state.apply(event)
        if len(events) > self.applied:
            self.applied, self.last_seq = len(events), events[-1].seq


@dataclass(frozen=True, slots=True)
class Maintained:
    """A :class:`~trustledger.engine.maintained.MaintainedEvaluation` and what it was built for.

    ``key``: the policy hash, the opt-ins and the events disputes leave out; when any
    of them differs at a read, it is built again from the subject's events.
    """

    key: tuple[str, frozenset[str], frozenset[tuple[str, str]]]
    evaluation: MaintainedEvaluation


@dataclass(frozen=True, slots=True)
class CurrentScores:
    """A subject's scores, tiers and measures in force now, without their derivation.

    What the incremental engine answers in O(1) amortized time: equal to the
    reference assessment's (``scoring.assess``) scores, tiers and measure states.
    ``path`` says which engine answered: ``incremental``, or ``reference`` where the
    incremental state cannot (see :func:`current_scores`).
    """

    policy_hash: str
    valid_at: datetime
    scores: Mapping[str, float | None]
    totals: Mapping[str, float | None]
    """Base plus every contribution, before the floor and ceiling."""
    tiers: Mapping[str, str | None]
    in_force: Mapping[str, bool]
    path: Literal["incremental", "reference"]


def incremental_allowed(policy: CompiledPolicy) -> bool:
    """Whether the incremental state answers every score and measure of ``policy``.

    Not when a measure depends on its own past (a holding time, a prerequisite: the
    reference fold decides those) or a scorecard is statistical (it needs attributes
    given at decision time).
    """
    if any(getattr(card, "model", None) is not None for card in policy.scorecards.values()):
        return False
    return stateless_measures(policy) == frozenset(policy.measures)


def reference_scores(record: SubjectRecord, policy: CompiledPolicy,
                     now: datetime) -> CurrentScores:
    """The subject's scores, tiers and measures now from the reference assessment.

    :func:`trustledger.scoring.assess` itself: a one-off read (the operator's statistics
    over records made for one run) gains nothing from building a maintained evaluation.
    Raises as ``assess`` does.
    """
    result = assess(policy, record.subject, record.events, record.records, now).evaluation
    return CurrentScores(
        result.policy_hash, now, {n: c.score for n, c in result.scorecards.items()},
        {n: c.total for n, c in result.scorecards.items()},
        {n: c.tier for n, c in result.scorecards.items()},
        {n: m.in_force for n, m in result.measures.items()}, "reference")


def current_scores(record: SubjectRecord, policy: CompiledPolicy,
                   now: datetime) -> CurrentScores:
    """The subject's scores, tiers and measures now, read from the incremental state.

    The state holds the subject's events minus those disputes leave out now, with the
    opt-ins in force now; it is built once per subject record (and again when the
    policy, the opt-ins or the disputed events change, or an event was purged); a
    record whose events extend those applied (``record.incremental`` carried over from
    an earlier record of the subject) gets only the new ones, each in O(1) amortized
    time; each read costs O(1) amortized and never replays history. Equal to
    :func:`current_assessment`'s evaluation (a test checks it after appends in and out
    of order). The reference assessment answers instead when
    :func:`incremental_allowed` says no, when a human review applies (it rewrites a
    measure), or an event occurs after ``now``.
    Raises as :func:`current_assessment` does.
    """
    if record.erased:
        raise ErasedError(record.subject)
    if not record.events:
        raise NotFoundError(f"subject {record.subject!r} has no events in the ledger")
    latest = record.latest_occurred
    future = latest is not None and latest > now
    if future or fold_reviews(record.records, now) or not incremental_allowed(policy):
        return reference_scores(record, policy, now)
    opt_ins = record.opt_ins(now, policy)
    disputes = fold_disputes(record.records, now)
    left: list[Event] = []
    if disputes:
        _, out = split_disputed(policy, record.events, disputes, now)
        left = [event for event, _ in out]
    key = (policy.hash, opt_ins, frozenset(e.key for e in left))
    with record.lock:
        built = record.incremental
        if built is None or built.key != key or not built.extends(record.events):
            built = record.incremental = Incremental(key, SubjectState.empty(policy, opt_ins),
                                                     0, None)
        built.apply(record.events)
        reading = built.state.read(now)
    return CurrentScores(policy.hash, now, dict(reading.scores), dict(reading.totals),
                         dict(reading.tiers), dict(reading.measures), "incremental")


def current_assessment(state: SubjectRecord, policy: CompiledPolicy, now: datetime,
                       max_age: float) -> Assessment:
    """The subject's assessment for now: the one function the service scores through.

    :func:`maintained_assessment` where it can answer, else
    :func:`trustledger.scoring.assess` over the subject's events and rights records;
    both equal to :func:`trustledger.scoring.assess_subject` at ``valid_at`` (a test
    checks it). An assessment at most ``max_age`` seconds old is reused when the
    policy, the opt-ins and the subject's entries are unchanged — nothing the
    ledger knows differs, so it is the reference evaluation at its ``valid_at``.
    Raises :class:`NotFoundError` for a subject with no events
    (:class:`~trustledger.errors.ErasedError` for an erased one).
    """
    cached = reusable(state, policy, now, max_age)
    if cached is not None:
        return cached
    result = maintained_assessment(state, policy, now)
    if result is None:
        result = assess(policy, state.subject, state.events, state.records, now, None)
        state.answered_by = "reference"
    else:
        state.answered_by = "maintained"
    state.assessment = result
    return result


def maintained_assessment(record: SubjectRecord, policy: CompiledPolicy,
                          now: datetime) -> Assessment | None:
    """The subject's assessment now from its maintained evaluation; ``None`` if it cannot.

    Equal to :func:`trustledger.scoring.assess` at ``now`` (tests check it, and a
    property test the engine part):
    the same rights applied (opt-ins, disputes and reviews as of ``now``) to a
    :class:`~trustledger.engine.maintained.MaintainedEvaluation` of the events kept,
    built on the first read and again when the policy, the opt-ins or the disputed
    events change (a new record of the subject — any change to it — starts afresh).
    ``None`` — the reference answers — when the policy is not
    :func:`~trustledger.engine.maintained.maintainable` (set-backs of points, statistical
    scorecards), the subject is erased or has no events (``assess`` raises), or an event
    occurred or became known after ``now`` (:meth:`MaintainedEvaluation.serves`).
    """
    if not maintainable(policy) or record.erased or not record.events:
        return None
    rights = rights_at(policy, record.events, record.records, now)
    key = (policy.hash, rights.opt_ins, frozenset(e.key for e, _ in rights.left))
    with record.lock:
        built = record.maintained
        if built is None or built.key != key or not built.evaluation.serves(now):
            fresh = MaintainedEvaluation(policy, rights.kept, now, rights.opt_ins)
            if not fresh.serves(now):
                return None
            built = record.maintained = Maintained(key, fresh)
        engine = built.evaluation.evaluation(now)
    return assessed(policy, record.subject, record.events, rights, engine, now)


def reusable(state: SubjectRecord, policy: CompiledPolicy, now: datetime,
             max_age: float) -> Assessment | None:
    """The subject's cached assessment if :func:`current_assessment` may return it now."""
    cached = state.assessment
    if cached is None or max_age <= 0 or cached.policy.hash != policy.hash:
        return None
    age = (now - cached.valid_at).total_seconds()
    if 0 <= age <= max_age and cached.opt_ins == state.opt_ins(now, policy):
        return cached
    return None


class LedgerView:
    """The service's cache of the ledger: policies, subjects, and change tracking."""

    def __init__(self, ledger: ServiceLedger, *, subject_cache: int = 20_000) -> None:
        """Read the published policies and start following the ledger at its head."""
        self.ledger = ledger
        self._capacity = subject_cache
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._waiting: list[tuple[float, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiting_lock = threading.Lock()
        self._wake = threading.Event()
        self._follower: threading.Thread | None = None
        self._position = ledger.position()
        self._synced_started = time.monotonic()
        self._subjects: OrderedDict[str, SubjectRecord] = OrderedDict()
        self._last_change: dict[str, int] = {}
        self._floor = self._position
        self.principal_epoch = 0
        """Bumped whenever a principal changes: cached keys must be checked again."""
        self.data_version = self._position
        """Position of the last change to any subject's data or the policies."""
        self._policies: list[PublishedPolicy] = []
        self._compiled: dict[str, CompiledPolicy] = {}
        self._reload_policies()

    @property
    def position(self) -> int:
        """The ledger position the view is current with."""
        return self._position

    # -- following the ledger ----------------------------------------------------------------

    def sync(self, arrived: float | None = None) -> None:
        """Take in every entry appended since the last sync.

        ``arrived`` (``time.monotonic()`` when the request arrived): a sync that
        started after it already covers this request, so none is run again.
        """
        with self._sync_lock:
            if arrived is not None and self._synced_started >= arrived:
                return
            started = time.monotonic()
            while True:
                changes = self.ledger.changes_after(self._position)
                if changes:
                    self._apply(changes)
                if len(changes) < CHANGES_PAGE:
                    break
            self._synced_started = started

    async def sync_async(self, arrived: float) -> None:
        """:meth:`sync` for the event loop, which it never blocks on the database.

        A follower thread runs the syncs; every request waiting when one starts is
        answered by it (one query for all of them, as a group commit does for writes).
        """
        if self._synced_started >= arrived:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiting_lock:
            self._waiting.append((arrived, loop, future))
            if self._follower is None:
                self._follower = threading.Thread(target=self._follow, name="ledger-follower",
                                                  daemon=True)
                self._follower.start()
        self._wake.set()
        await future

    def _follow(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._waiting_lock:
                waiting, self._waiting = self._waiting, []
            if not waiting:
                continue
            failure: BaseException | None = None
            try:
                self.sync()
            except Exception as exc:
                # Not hidden: every waiting request raises it (a database failure is a 503).
                failure = exc
            for _, loop, future in waiting:
                loop.call_soon_threadsafe(_settle, future, failure)

    def _apply(self, changes: Iterable[Change]) -> None:
        policies = False
        with self._lock:
            for change in changes:
                seq, kind, subject = change.seq, change.kind, change.subject
                if subject is not None and kind not in NOT_SUBJECT_STATE:
                    self._subjects.pop(subject, None)
                    self._last_change[subject] = seq
                    self.data_version = seq
                elif kind == PUBLISHED:
                    policies = True
                    self.data_version = seq
                if kind in PRINCIPAL_KINDS:
                    self.principal_epoch += 1
                self._position = seq
            if len(self._last_change) > _MAX_TRACKED:
                self._last_change.clear()
                self._floor = self._position
        if policies:
            self._reload_policies()

    # -- policies ----------------------------------------------------------------------------

    def _reload_policies(self) -> None:
        published = published_policies(self.ledger)
        compiled = dict(self._compiled)
        for policy in published:
            if policy.hash not in compiled:
                compiled[policy.hash] = policy.compile()
        with self._lock:
            self._policies, self._compiled = published, compiled

    def policies(self) -> list[PublishedPolicy]:
        """Every published policy version, in publication order."""
        with self._lock:
            return list(self._policies)

    def policy_in_force(self, at: datetime) -> CompiledPolicy:
        """The compiled policy version in force at ``at`` (as :func:`scoring.policy_in_force`)."""
        with self._lock:
            candidates = [p for p in self._policies if p.effective_from <= at]
            if not candidates:
                raise NoPolicyError(f"no published policy is in force at {at.isoformat()}: "
                                    "the operator must publish one (POST /v1/policies)")
            chosen = max(candidates, key=lambda p: (p.effective_from, p.seq))
            return self._compiled[chosen.hash]

    def compiled(self, policy_hash: str) -> CompiledPolicy:
        """The compiled version of a published policy."""
        with self._lock:
            return self._compiled[policy_hash]

    def add_policy(self, published: PublishedPolicy, compiled: CompiledPolicy) -> None:
        """Remember a policy this process just published (saves recompiling it)."""
        with self._lock:
            self._compiled.setdefault(published.hash, compiled)

    # -- subjects ----------------------------------------------------------------------------

    def cached(self, subject: str) -> SubjectRecord | None:
        """The subject's state if it is in memory and current (no database access)."""
        with self._lock:
            state = self._subjects.get(subject)
            if state is not None:
                self._subjects.move_to_end(subject)
            return state

    def subject(self, subject: str) -> SubjectRecord:
        """The subject's events and rights records, current as of the last sync."""
        state = self.cached(subject)
        if state is not None:
            return state
        loaded_at, entries = self.ledger.subject_entries(subject, exclude=NOT_SUBJECT_STATE)
        events = tuple(e for entry in entries if (e := event_of(entry)) is not None)
        records = tuple(e for e in entries if e.kind != EVENT_KIND)
        state = SubjectRecord(subject, loaded_at, events, records)
        with self._lock:
            # A sync may have seen a change newer than this snapshot meanwhile: then the
            # state serves this request but is not kept.
            fresh = loaded_at >= self._floor and self._last_change.get(subject, 0) <= loaded_at
            if fresh:
                self._subjects[subject] = state
                while len(self._subjects) > self._capacity:
                    self._subjects.popitem(last=False)
        return state

    def forget(self, subject: str) -> None:
        """Drop a subject from the cache (after this process changed it)."""
        with self._lock:
            self._subjects.pop(subject, None)
