"""What the service knows of the ledger, kept current by reading only what was appended.

Every request first calls :meth:`LedgerView.sync`, which reads the entries
appended since the last sync (one query on the primary key; usually a handful of
rows) and drops whatever they make stale: a subject's cached events, consents and
evaluation, the compiled policies, the register in force, the principals' key cache. So a consent
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
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal, overload

from trustledger.api.access import ACCESS_READ
from trustledger.engine import Evaluation, Event
from trustledger.engine.decided import pack_evaluation, unpack_evaluation
from trustledger.engine.incremental import SubjectState, stateless_measures
from trustledger.engine.maintained import Declared, MaintainedEvaluation, maintainable
from trustledger.engine.packed import PackedState
from trustledger.errors import ErasedError, InputError, NotFoundError
from trustledger.ledger import Entry, event_of
from trustledger.ledger.chain import EVENT_KIND, PURGE_KIND
from trustledger.ledger.states import (
    Snapshot,
    StateWriter,
    StoredState,
    SubjectStates,
    fingerprint,
)
from trustledger.policy import CompiledPolicy
from trustledger.policy.register import Register
from trustledger.principals import KINDS as PRINCIPAL_KINDS
from trustledger.principals import Change, ServiceLedger
from trustledger.principals.ledger import CHANGES_PAGE
from trustledger.registry import KINDS as REGISTER_KINDS
from trustledger.registry import (
    NoRegisterError,
    Proposal,
    compiled,
    in_force,
    registers,
)
from trustledger.rights.consent import Consent, active_consents, fold_consents
from trustledger.rights.dispute import fold_disputes, split_disputed
from trustledger.rights.erasure import ERASED, erased_at
from trustledger.rights.review import fold_reviews
from trustledger.scoring import (
    PUBLISHED,
    Assessment,
    PublishedPolicy,
    Rights,
    assess,
    assessed,
    published_policies,
    rights_at,
)

NOT_SUBJECT_STATE = frozenset({ACCESS_READ, *PRINCIPAL_KINDS})
"""Kinds of entries about a subject that do not change its evaluation (the rest do)."""

_MAX_TRACKED = 200_000
_REMOVES_DATA = frozenset({PURGE_KIND, ERASED})
"""Entry kinds that remove a subject's data: its stored states are deleted when seen."""


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
    """The subject's maintained evaluation built from its events, for full reads
    (:func:`maintained_assessment`); decisions read :attr:`packed`."""
    packed: Packed | None = field(default=None, repr=False)
    """The subject's maintained evaluation for decisions, kept packed (a few hundred
    bytes, not tens of KB of objects): built from its events or read from the database."""
    answered_by: Literal["maintained", "persisted", "reference"] | None = None
    """Which engine gave the last assessment (``None``: none yet): ``persisted`` is a
    maintained evaluation read from the database (:class:`PersistedStates`), not built."""
    read_packed: bool = False
    """Whether the last maintained read came from :attr:`packed` (not a fresh build)."""
    assessment_partial: bool = False
    """Whether :attr:`assessment` came from a packed state (decisions only: its
    contributions and event outcomes list only the events still counting)."""
    assessment_parts: frozenset[str] | None = None
    """What :attr:`assessment` holds when it was read for a decision only
    (:func:`decision_parts` of the purpose: its scorecards and measures; no metrics, no
    event outcomes); ``None``: the whole evaluation."""
    persisted: PersistedStates | None = field(default=None, repr=False, compare=False)
    """Where the subject's states are stored (``None``: not stored)."""
    light_basis: int | None = None
    """Set on a record loaded without its events (:meth:`LedgerView.decision_subject`):
    the seq of the subject's last entry, which its restored state reflects."""
    stored: StoredState | None = field(default=None, repr=False, compare=False)
    """A light record's stored row, when its stored decision answered first: the state
    is restored from it (into :attr:`packed`) only once a read needs it."""
    loader: Callable[[], SubjectRecord] | None = field(default=None, repr=False,
                                                        compare=False)
    """For a record without its events: loads the subject in full."""

    @property
    def light(self) -> bool:
        """Whether the record was loaded without its events (decisions from its state only)."""
        return self.light_basis is not None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Held while the incremental or maintained state is read or rebuilt (reading either
    moves its clock)."""

    @cached_property
    def erased(self) -> bool:
        """Whether the subject was erased on request (then there is no data to show)."""
        return erased_at(self.records) is not None

    @cached_property
    def basis_seq(self) -> int:
        """The ledger seq of the subject's last entry that can change its evaluation."""
        if self.light_basis is not None:
            return self.light_basis
        return max((*(e.seq or 0 for e in self.events), *(r.seq for r in self.records)),
                   default=0)

    @cached_property
    def latest_occurred(self) -> datetime | None:
        """When the subject's latest event occurred (``None``: no events)."""
        return max((e.occurred_at for e in self.events), default=None)

    @cached_property
    def _consents_folded(self) -> tuple[datetime | None, list[Consent]]:
        """Every consent of the records (folded once) and the latest record's time."""
        latest = max((r.recorded_at for r in self.records), default=None)
        return latest, fold_consents(self.records)

    def consents(self, at: datetime) -> list[Consent]:
        """The consents in force at ``at``: :func:`active_consents` of the records.

        Folded once per record (a decision asks on every request): at or after the
        latest record, the records recorded by ``at`` are all of them; before it, folded
        again as of ``at``.
        """
        latest, folded = self._consents_folded
        if latest is None or at >= latest:
            return [c for c in folded if c.active_at(at)]
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
class Packed:
    """A :class:`~trustledger.engine.packed.PackedState` and what it was built for.

    ``key`` as :class:`Maintained`'s; ``restored``: read from the database
    (:class:`PersistedStates`), not built in this process.
    """

    key: tuple[str, frozenset[str], frozenset[tuple[str, str]]]
    state: PackedState
    restored: bool


@dataclass(frozen=True, slots=True)
class PersistedStates:
    """The database's subject states (:mod:`trustledger.ledger.states`) and their writer."""

    store: SubjectStates
    writer: StateWriter

    def restore(self, record: SubjectRecord, policy: CompiledPolicy, inputs: str,
                now: datetime) -> PackedState | None:
        """The subject's stored state if it is current and serves ``now``; else ``None``.

        Current: stored for this policy version (the key), reflecting the subject's last
        entry (``basis_seq``) and built from the same inputs (``inputs``), of the
        packed format this version reads. Anything else is stale: built again, never
        served.
        """
        row = self.store.load(record.subject, policy.hash)
        return self.current(row, record, policy, inputs, now)

    @staticmethod
    def current(row: StoredState | None, record: SubjectRecord, policy: CompiledPolicy,
                inputs: str, now: datetime) -> PackedState | None:
        """``row``'s state if it is current for ``record`` and serves ``now``; else ``None``."""
        if row is None or row.basis_seq != record.basis_seq or row.inputs != inputs:
            return None
        try:
            state = PackedState.restore(policy, row.state)
        except InputError:
            return None  # another format or policy: stale
        return state if state.serves(now) else None

    def save(self, record: SubjectRecord, policy: CompiledPolicy, inputs: str,
             state: PackedState, decision: bytes | None = None) -> None:
        """Queue ``state`` (packed after a read) for writing, reflecting the record as loaded.

        ``decision``: the decision read from it (:func:`pack_evaluation`), kept with it
        for reuse by a restart or another worker (:meth:`stored_decision`).
        """
        self.writer.submit(StoredState(record.subject, policy.hash, record.basis_seq, inputs,
                                       state.data, decision))

    @staticmethod
    def stored_decision(row: StoredState, record: SubjectRecord, policy: CompiledPolicy,
                        inputs: str, now: datetime) -> Assessment | None:
        """The decision stored with ``row``'s state, as an assessment; ``None`` if none serves.

        It serves when the row is current for ``record`` (as :meth:`current`), was read
        for this policy version and subject at or before ``now``, and the subject's
        rights then had the opt-ins they have now (``inputs``). The assessment is
        rebuilt as the reading worker made it (the rights as of its ``valid_at`` laid
        over it); whether it is still fresh enough to reuse is :func:`reusable`'s to say.
        """
        if row.decision is None or row.basis_seq != record.basis_seq or row.inputs != inputs:
            return None
        try:
            engine = unpack_evaluation(row.decision)
        except InputError:
            return None
        if engine.policy_hash != policy.hash or engine.subject != record.subject \
                or engine.valid_at > now:
            return None
        rights = rights_at(policy, (), record.records, engine.valid_at)
        if rights.disputes or fingerprint(policy.hash, rights.opt_ins, ()) != inputs:
            return None
        return assessed(policy, record.subject, (), rights, engine, engine.valid_at)


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


def decision_parts(declared: Declared) -> frozenset[str]:
    """The parts a decision for a purpose reads: ``scorecard:NAME`` and ``measure:NAME``."""
    return _part_names(declared.scorecards, declared.measures)


def _part_names(scorecards: Iterable[str], measures: Iterable[str]) -> frozenset[str]:
    return frozenset((*(f"scorecard:{n}" for n in scorecards),
                      *(f"measure:{n}" for n in measures)))


def decision_assessment(state: SubjectRecord, policy: CompiledPolicy, now: datetime,
                        max_age: float, *, declared: Declared | None = None) -> Assessment:
    """The subject's assessment for a decision: :func:`current_assessment`, or a persisted state.

    A decision shows the declared scorecards (score, tier, reasons) and measures
    (state, since, holding time, reasons) only, so on a subject's first read it may come
    from the subject's state stored in the database (:class:`PersistedStates`) instead
    of a build from the events — after a restart, in another worker, or for a subject
    not in memory. Those parts equal :func:`trustledger.scoring.assess`'s exactly; the
    per-event derivation (contributions of events that stopped counting, event outcomes)
    is left out (:attr:`SubjectRecord.assessment_partial`): never show it but as a
    decision.

    With ``declared`` (the purpose: ``policy.purposes[name]``), a maintained read holds
    only the purpose's scorecards and measures, each equal to ``assess``'s (no metrics,
    no other part, no event outcomes: :attr:`SubjectRecord.assessment_parts`); it is
    reused only for a decision whose parts it holds. Raises as
    :func:`current_assessment` does.
    """
    return _assessment(state, policy, now, max_age, decision=True, declared=declared)


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
    return _assessment(state, policy, now, max_age, decision=False)


def _assessment(state: SubjectRecord, policy: CompiledPolicy, now: datetime, max_age: float,
                decision: bool, declared: Declared | None = None) -> Assessment:
    cached = reusable(state, policy, now, max_age, partial=decision, declared=declared)
    if cached is not None:
        return cached
    parts = None if declared is None else decision_parts(declared)
    if state.light:
        result = _light_assessment(state, policy, now, declared) if decision else None
        if result is None:
            # Its state cannot answer (or the caller needs the derivation): in full.
            assert state.loader is not None
            return _assessment(state.loader(), policy, now, max_age, decision, declared)
        state.assessment, state.assessment_partial = result, True
        state.assessment_parts = parts
        if parts is not None and max_age > 0:
            _store_decision(state, policy, result)
        return result
    stores = parts is not None and max_age > 0
    result = maintained_assessment(state, policy, now, decision=decision, declared=declared,
                                   stores_decision=stores)
    if result is None:
        result = assess(policy, state.subject, state.events, state.records, now, None)
        state.answered_by = "reference"
        parts = None
    state.assessment = result
    # A decision read from a packed state lists only the events still counting.
    state.assessment_partial = state.answered_by != "reference" and state.read_packed
    state.assessment_parts = parts
    if stores and state.answered_by != "reference":
        _store_decision(state, policy, result)
    return result


def _parts_of(evaluation: Evaluation) -> frozenset[str]:
    """The decision parts an evaluation read for a purpose holds (:func:`decision_parts`)."""
    return _part_names(evaluation.scorecards, evaluation.measures)


def _store_decision(record: SubjectRecord, policy: CompiledPolicy,
                    assessment: Assessment) -> None:
    """Queue the record's packed state with the decision just read from it (if it persists).

    Another worker, or this one after a restart, then reuses the decision while it is
    fresh (:meth:`PersistedStates.stored_decision`) instead of reading the state again.
    A state just built for the decision is written here, once (``stores_decision`` of
    :func:`maintained_assessment`): with the decision, or alone when the decision
    cannot be packed.
    """
    held, persisted = record.packed, record.persisted
    if held is None or persisted is None:
        return
    persisted.save(record, policy, fingerprint(*held.key), held.state,
                   pack_evaluation(assessment.engine))


def _light_assessment(record: SubjectRecord, policy: CompiledPolicy, now: datetime,
                      declared: Declared | None = None) -> Assessment | None:
    """A decision of a record loaded without its events, from its restored state; or ``None``.

    ``None`` when a dispute is open (what it leaves out depends on the events), the
    opt-ins changed since (a consent expired), or the state does not serve ``now``.
    """
    rights = rights_at(policy, (), record.records, now)
    if rights.disputes:
        return None
    key = (policy.hash, rights.opt_ins, frozenset[tuple[str, str]]())
    with record.lock:
        held = record.packed
        if held is None and record.stored is not None and record.persisted is not None:
            # Its stored decision answered first: its state, restored now.
            restored = record.persisted.current(record.stored, record, policy,
                                                fingerprint(*key), now)
            record.stored = None
            if restored is not None:
                held = record.packed = Packed(key, restored, True)
        if held is None or held.key != key or not held.state.serves(now):
            return None
        engine, kept = held.state.evaluation(now, declared=declared)
        record.packed = Packed(key, kept, held.restored)
        record.answered_by = "persisted" if held.restored else "maintained"
    return assessed(policy, record.subject, (), rights, engine, now)


def maintained_assessment(record: SubjectRecord, policy: CompiledPolicy,
                          now: datetime, *, decision: bool = False,
                          declared: Declared | None = None,
                          stores_decision: bool = False) -> Assessment | None:
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

    With ``decision`` (see :func:`decision_assessment`), a subject's first read may
    restore its state from the database (:meth:`PersistedStates.restore`) instead of
    building it; a state built here is written there (after this read, in a group
    commit: :class:`~trustledger.ledger.states.StateWriter`) — unless
    ``stores_decision``: the caller then writes it once, with the decision read from it
    (:func:`_store_decision`). Sets :attr:`SubjectRecord.answered_by` (``maintained`` or
    ``persisted``). ``declared`` (decisions only) reads only a purpose's parts (see
    :func:`decision_assessment`).
    """
    if declared is not None and not decision:
        raise ValueError("declared parts are read for a decision only")
    if not maintainable(policy) or record.erased or not record.events or record.light:
        return None
    rights = rights_at(policy, record.events, record.records, now)
    key = (policy.hash, rights.opt_ins, frozenset(e.key for e, _ in rights.left))
    with record.lock:
        built = record.maintained
        if built is not None and (built.key != key or not built.evaluation.serves(now)):
            built = record.maintained = None
        if built is not None or not decision:
            # A full read (or a decision on a subject whose pages built it): in objects.
            if built is None:
                made = _build(record, policy, rights, now, declared, save=True)
                if made is None:
                    return None
                fresh, engine, _ = made
                built = record.maintained = Maintained(key, fresh)
            else:
                engine = built.evaluation.evaluation(now, declared=declared)
            record.answered_by, record.read_packed = "maintained", False
            return assessed(policy, record.subject, record.events, rights, engine, now)
        decided = _decision_read(record, policy, rights, key, now, declared,
                                 save=not stores_decision)
        if decided is None:
            return None
    return assessed(policy, record.subject, record.events, rights, decided, now)


def _inputs(policy: CompiledPolicy, rights: Rights) -> str:
    return fingerprint(policy.hash, rights.opt_ins, (e.key for e, _ in rights.left))


def _build(record: SubjectRecord, policy: CompiledPolicy, rights: Rights, now: datetime,
           declared: Declared | None, *, save: bool,
           ) -> tuple[MaintainedEvaluation, Evaluation, PackedState | None] | None:
    """The record's maintained evaluation built from its events and read at ``now``.

    Its packed state (after the read) is made when the view persists states, queued for
    writing if ``save``, and returned; ``None`` when no maintained evaluation serves
    ``now``.
    """
    fresh = MaintainedEvaluation(policy, rights.kept, now, rights.opt_ins)
    if not fresh.serves(now):
        return None
    engine = fresh.evaluation(now, declared=declared)
    packed = None
    if record.persisted is not None:
        packed = PackedState.of(fresh)
        if save:
            record.persisted.save(record, policy, _inputs(policy, rights), packed)
    return fresh, engine, packed


def _decision_read(record: SubjectRecord, policy: CompiledPolicy, rights: Rights,
                   key: tuple[str, frozenset[str], frozenset[tuple[str, str]]], now: datetime,
                   declared: Declared | None, *, save: bool) -> Evaluation | None:
    """A decision read of a full record from its packed state (held, stored or built).

    Called with the record's lock held. Sets :attr:`SubjectRecord.packed` and
    :attr:`SubjectRecord.answered_by`; ``None`` when no maintained state serves ``now``.
    A state built here is queued for writing if ``save`` (:func:`_build`).
    """
    persisted = record.persisted
    held = record.packed
    record.read_packed = True
    if held is not None and held.key == key and held.state.serves(now):
        engine, kept = held.state.evaluation(now, declared=declared)
        record.packed = Packed(key, kept, held.restored)
    else:
        stored = None if persisted is None else persisted.restore(
            record, policy, _inputs(policy, rights), now)
        if stored is not None:
            engine, kept = stored.evaluation(now, declared=declared)
            record.packed = held = Packed(key, kept, True)
        else:
            made = _build(record, policy, rights, now, declared, save=save)
            if made is None:
                return None
            fresh, engine, packed = made
            record.read_packed = False
            record.packed = held = Packed(key, packed or PackedState.of(fresh), False)
    record.answered_by = "persisted" if held.restored else "maintained"
    return engine


def reusable(state: SubjectRecord, policy: CompiledPolicy, now: datetime,
             max_age: float, *, partial: bool = False,
             declared: Declared | None = None) -> Assessment | None:
    """The subject's cached assessment if :func:`current_assessment` may return it now.

    It may be as old as the subject's :func:`reuse_limit` (at most ``max_age`` seconds).

    With ``partial``, also one from a persisted state (:func:`decision_assessment` may
    return it; nothing else may); with ``declared`` as well, one read for a decision
    that holds at least the purpose's parts (:attr:`SubjectRecord.assessment_parts`).
    """
    cached = state.assessment
    if cached is None or max_age <= 0 or cached.policy.hash != policy.hash:
        return None
    if state.assessment_partial and not partial:
        return None
    held = state.assessment_parts
    if held is not None and (declared is None or not partial
                             or not decision_parts(declared) <= held):
        return None
    age = (now - cached.valid_at).total_seconds()
    if 0 <= age <= reuse_limit(state.subject, max_age) \
            and cached.opt_ins == state.opt_ins(now, policy):
        return cached
    return None


def reuse_limit(subject: str, max_age: float) -> float:
    """How long the subject's assessment may be reused: from half ``max_age`` to all of it.

    A fixed share per subject (a CRC-32 of its name), so subjects first read together (a
    restart, a burst) are not all read again together ``max_age`` later: the refreshes
    spread over half the period instead of landing as one burst that holds up every
    request queued behind it (bench/service.py's open-loop phases). Never more than
    ``max_age``.
    """
    return max_age * (0.5 + 0.5 * zlib.crc32(subject.encode()) / 0xFFFF_FFFF)


_MAX_SNAPSHOTS = 256
"""At most this many subjects' snapshots are read in one statement (:class:`_SnapshotReader`)."""


class _SnapshotReader:
    """Subjects' snapshots asked for by decisions, read by one thread in group reads.

    :meth:`read` queues the subject and awaits; the reader thread takes every subject
    queued while its last statement ran into the next one (at most
    :data:`_MAX_SNAPSHOTS` a statement), as the access log's writer does with rows. So
    a busy event loop hands each group to the thread once, not each request, and keeps
    serving while the statement runs. A failed read fails every request waiting on it,
    as a failed sync does (a 503).
    """

    def __init__(self, store: SubjectStates) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._waiting: list[tuple[str, str, asyncio.AbstractEventLoop,
                                  asyncio.Future[Snapshot]]] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def read(self, subject: str, policy_hash: str) -> Snapshot:
        """The subject's snapshot (:meth:`SubjectStates.snapshots`) under a policy version."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Snapshot] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the ledger view is closed")
            self._waiting.append((subject, policy_hash, loop, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="decision-snapshots",
                                                daemon=True)
                self._thread.start()
        self._wake.set()
        return await future

    def close(self) -> None:
        """Stop the reader thread once the reads queued are answered."""
        with self._lock:
            self._closed, thread = True, self._thread
        self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                waiting, self._waiting = self._waiting, []
                closed = self._closed
            groups: dict[str, list[tuple[str, asyncio.AbstractEventLoop,
                                         asyncio.Future[Snapshot]]]] = {}
            for subject, policy_hash, loop, future in waiting:
                groups.setdefault(policy_hash, []).append((subject, loop, future))
            for policy_hash, asked in groups.items():
                for start in range(0, len(asked), _MAX_SNAPSHOTS):
                    self._answer(policy_hash, asked[start:start + _MAX_SNAPSHOTS])
            if closed:
                return

    def _answer(self, policy_hash: str, asked: list[tuple[
            str, asyncio.AbstractEventLoop, asyncio.Future[Snapshot]]]) -> None:
        found: dict[str, Snapshot] = {}
        failure: BaseException | None = None
        try:
            found = self._store.snapshots({s for s, _, _ in asked}, policy_hash,
                                          NOT_SUBJECT_STATE)
        except Exception as exc:
            failure = exc  # not hidden: every waiting request raises it (a 503)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Snapshot],
                                                            Snapshot | None]]] = {}
        for subject, loop, future in asked:
            by_loop.setdefault(loop, []).append((future, found.get(subject)))
        for loop, answers in by_loop.items():  # one wake-up of each loop for the group
            loop.call_soon_threadsafe(_deliver, answers, failure)


def _deliver(answers: list[tuple[asyncio.Future[Snapshot], Snapshot | None]],
             failure: BaseException | None) -> None:
    for future, snapshot in answers:
        if future.done():  # abandoned meanwhile (a timeout)
            continue
        if failure is not None:
            future.set_exception(failure)
        else:
            assert snapshot is not None
            future.set_result(snapshot)


class LedgerView:
    """The service's cache of the ledger: policies, subjects, and change tracking."""

    def __init__(self, ledger: ServiceLedger, *, subject_cache: int = 20_000,
                 persist_states: bool = True) -> None:
        """Read the published policies and start following the ledger at its head.

        ``persist_states``: keep subjects' maintained states in the database
        (:class:`PersistedStates`) for decisions after a restart or in another worker.
        """
        self.ledger = ledger
        self.persisted: PersistedStates | None = None
        if persist_states:
            # The ledger's own engine: the states live in its database.
            store = SubjectStates(ledger._engine)
            clock = ledger._clock
            self.persisted = PersistedStates(store, StateWriter(
                store, lambda: round(clock().timestamp() * 1_000_000)))
        self._snapshots = None if self.persisted is None else _SnapshotReader(
            self.persisted.store)
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
        self._proposals: list[Proposal] = []
        self._register: Register | None = None
        self._reload_registers()
        self._reload_policies()

    def close(self) -> None:
        """Write the subject states still queued and stop their writer and snapshot reader."""
        if self._snapshots is not None:
            self._snapshots.close()
        if self.persisted is not None:
            self.persisted.writer.close()

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
        policies = register = False
        removed: set[str] = set()
        with self._lock:
            for change in changes:
                seq, kind, subject = change.seq, change.kind, change.subject
                if subject is not None and kind in _REMOVES_DATA:
                    removed.add(subject)
                if subject is not None and kind not in NOT_SUBJECT_STATE:
                    self._subjects.pop(subject, None)
                    self._last_change[subject] = seq
                    self.data_version = seq
                elif kind == PUBLISHED:
                    policies = True
                    self.data_version = seq
                elif kind in REGISTER_KINDS:
                    register = True
                if kind in PRINCIPAL_KINDS:
                    self.principal_epoch += 1
                self._position = seq
            if len(self._last_change) > _MAX_TRACKED:
                self._last_change.clear()
                self._floor = self._position
        if register:
            self._reload_registers()
        if policies:
            self._reload_policies()
        if removed and self.persisted is not None:
            # A purge or an erasure: no derived copy of the data it removed stays behind.
            for subject in sorted(removed):
                self.persisted.store.forget(subject)

    # -- the event-type register -------------------------------------------------------------

    def _reload_registers(self) -> None:
        proposals = registers(self.ledger)
        try:
            current: Register | None = compiled(in_force(proposals))
        except NoRegisterError:
            current = None
        with self._lock:
            self._proposals, self._register = proposals, current

    def proposals(self) -> list[Proposal]:
        """Every proposed register version with its status, in proposal order."""
        with self._lock:
            return list(self._proposals)

    def register_in_force(self) -> Register:
        """The register in force (:func:`trustledger.registry.register_in_force`)."""
        with self._lock:
            current = self._register
        if current is None:
            raise NoRegisterError
        return current

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

    def cached(self, subject: str, *, light: bool = False) -> SubjectRecord | None:
        """The subject's state if it is in memory and current (no database access).

        With ``light``, also one loaded without its events (for decisions only:
        :meth:`decision_subject`).
        """
        with self._lock:
            state = self._subjects.get(subject)
            if state is None or (state.light and not light):
                return None
            self._subjects.move_to_end(subject)
            return state

    @overload
    def decision_subject(self, subject: str, policy: CompiledPolicy, now: datetime,
                         *, load: Literal[True] = ...) -> SubjectRecord: ...

    @overload
    def decision_subject(self, subject: str, policy: CompiledPolicy, now: datetime,
                         *, load: bool) -> SubjectRecord | None: ...

    def decision_subject(self, subject: str, policy: CompiledPolicy, now: datetime,
                         *, load: bool = True) -> SubjectRecord | None:
        """The subject for a decision: without its events when its stored state is current.

        A subject in memory is returned as it is. Otherwise its rights records, the seq
        of its last entry and its stored state under ``policy`` are read in one snapshot
        (:meth:`SubjectStates.snapshots`, no event is read or parsed); when the state is
        current (:meth:`PersistedStates.current`), no dispute is open and the subject is
        not erased, the record holds that state and no events
        (:attr:`SubjectRecord.light`): :func:`decision_assessment` answers from it, and
        loads the subject in full if it cannot. Else the subject is loaded in full
        (:meth:`subject`) — or, with ``load=False``, the snapshot's record is returned
        without a state (and not kept): :func:`decision_assessment` loads the subject in
        full from it (its ``loader``), where reading every event may block (a worker
        thread); ``None`` when the view persists no states (there is no snapshot).
        """
        state = self.cached(subject, light=True)
        if state is not None:
            return state
        persisted = self.persisted
        if persisted is None:
            return self.subject(subject) if load else None
        snapshot = persisted.store.snapshots((subject,), policy.hash, NOT_SUBJECT_STATE)
        return self._decision_record(subject, policy, now, snapshot[subject], load=load)

    async def decision_subject_async(self, subject: str, policy: CompiledPolicy,
                                     now: datetime) -> SubjectRecord | None:
        """:meth:`decision_subject` with ``load=False``, for the event loop.

        The snapshot is read by one thread for every subject waiting (:class:`_SnapshotReader`:
        one statement for the group, one hand-over of the group to the thread and back),
        so a busy loop neither blocks on the database nor pays a worker-thread trip per
        request; the record is then made on the loop. ``None`` when the view persists no
        states (there is no snapshot).
        """
        state = self.cached(subject, light=True)
        if state is not None:
            return state
        if self._snapshots is None:
            return None
        snapshot = await self._snapshots.read(subject, policy.hash)
        return self._decision_record(subject, policy, now, snapshot, load=False)

    def _decision_record(self, subject: str, policy: CompiledPolicy, now: datetime,
                         snapshot: Snapshot, *, load: bool) -> SubjectRecord:
        """The record :meth:`decision_subject` makes of a subject's snapshot."""
        persisted = self.persisted
        assert persisted is not None
        row = snapshot.stored
        light = SubjectRecord(subject, snapshot.at, (), tuple(snapshot.records),
                              persisted=persisted, light_basis=snapshot.basis,
                              loader=lambda: self.subject(subject))
        if row is None or light.erased:
            return self.subject(subject) if load else light
        rights = rights_at(policy, (), light.records, now)
        if rights.disputes:
            return self.subject(subject) if load else light
        inputs = fingerprint(policy.hash, rights.opt_ins, ())
        decided = persisted.stored_decision(row, light, policy, inputs, now)
        if decided is not None:
            # The decision a worker read from this state, reused while fresh (reusable);
            # the state itself is restored only when a read needs it (_light_assessment).
            light.assessment, light.assessment_partial = decided, True
            light.assessment_parts = _parts_of(decided.engine)
            light.answered_by = "persisted"
            light.stored = row
        else:
            restored = persisted.current(row, light, policy, inputs, now)
            if restored is None:
                return self.subject(subject) if load else light
            light.packed = Packed((policy.hash, rights.opt_ins, frozenset()), restored, True)
        self._keep(light)
        return light

    def subject(self, subject: str) -> SubjectRecord:
        """The subject's events and rights records, current as of the last sync."""
        state = self.cached(subject)
        if state is not None:
            return state
        loaded_at, entries = self.ledger.subject_entries(subject, exclude=NOT_SUBJECT_STATE)
        events = tuple(e for entry in entries if (e := event_of(entry)) is not None)
        records = tuple(e for e in entries if e.kind != EVENT_KIND)
        state = SubjectRecord(subject, loaded_at, events, records, persisted=self.persisted)
        if state.erased and self.persisted is not None:
            self.persisted.store.forget(subject)  # erased: no derived data stays
        self._keep(state)
        return state

    def _keep(self, state: SubjectRecord) -> None:
        """Cache a record just loaded, unless a change newer than its snapshot was seen."""
        subject, loaded_at = state.subject, state.loaded_at
        with self._lock:
            # A sync may have seen a change newer than this snapshot meanwhile: then the
            # state serves this request but is not kept.
            fresh = loaded_at >= self._floor and self._last_change.get(subject, 0) <= loaded_at
            if fresh:
                self._subjects[subject] = state
                while len(self._subjects) > self._capacity:
                    self._subjects.popitem(last=False)

    def forget(self, subject: str) -> None:
        """Drop a subject from the cache (after this process changed it)."""
        with self._lock:
            self._subjects.pop(subject, None)
