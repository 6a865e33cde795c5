"""Scoring from the ledger: published policy versions, and one subject's evaluation.

This is the one place that joins storage and the pure engine: it reads a
subject's events and rights records from the ledger and calls
:func:`trustledger.engine.evaluate`; every path that scores a subject from the
ledger (CLI, service, report, what-if) goes through :func:`assess_subject` (or
:func:`evaluate_subject`, its evaluation alone).

Subject rights are applied around the one ``evaluate`` call, never inside the
engine and never by editing events (:func:`assess`):

* an erased subject is not scored at all (:class:`~trustledger.errors.ErasedError`);
* opt-ins in force at the moment asked about choose the opt-in scorecards;
* disputed adverse events (open, lapsed unverified, or found invalid) are left out
  of the events handed to ``evaluate`` — so the score while disputed *is* a fresh
  evaluation of the history without them — and the assessment says why per event;
* human reviews are laid over the resulting measures (a lifted restriction is no
  longer in force, with the reviewer's written reason).

Rights are taken as recorded by ``known_at`` (or ``valid_at`` when there is no
knowledge limit), so an evaluation of the past is reproducible.

A policy version is published by appending a :data:`PUBLISHED` record holding
its full YAML text, content hash, ``effective_from`` and the hash of the event-type
register it was compiled against (the register in force then, :mod:`trustledger.registry`);
the version in force at a moment is the published one with the latest
``effective_from`` at or before it (of two with the same date, the later published).
A published version is always compiled again against its own register, read from the
ledger by hash, so approving a new register changes no published version: a policy that
should use the new declarations is published as a new version. Publications recorded
before the register existed (no ``register`` in the record) are refused when compiled
(:class:`~trustledger.errors.ConfigError`): there is no production data from before the
register, and such a ledger (an old demo data folder) is rebuilt, not patched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from trustledger.engine import Evaluation, Event, evaluate
from trustledger.errors import ConfigError, ConflictError, ErasedError, InputError, NotFoundError
from trustledger.ledger import Entry, Ledger
from trustledger.policy import CompiledPolicy, load_policy, parse_policy
from trustledger.policy.register import Register
from trustledger.registry import compiled, register_by_hash, register_in_force, registers
from trustledger.rights.consent import active_consents
from trustledger.rights.dispute import Dispute, fold_disputes, split_disputed
from trustledger.rights.erasure import erased_at
from trustledger.rights.review import Review, apply_reviews, fold_reviews

PUBLISHED = "policy.published"
"""Record kind of a policy publication."""


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    """A policy version as recorded in the ledger, with the register it was published under.

    ``register`` is ``None`` only for a publication recorded before the register existed.
    """

    seq: int
    name: str
    hash: str
    effective_from: datetime
    published_at: datetime
    source: str
    register_hash: str | None = None
    register: Register | None = field(default=None, compare=False, repr=False)

    def compile(self) -> CompiledPolicy:
        """Compile (and lint) the recorded text again, against its recorded register.

        :class:`~trustledger.errors.ConfigError` for a publication without a register.
        """
        if self.register is None:
            raise ConfigError(
                f"ledger entry seq={self.seq}: policy {self.name} ({self.hash}) was published "
                "before the event-type register and names none, so it cannot be compiled; "
                "a ledger recorded before the register (such as an old demo data folder) "
                "must be rebuilt: its publications cannot be bound to a register afterwards")
        return parse_policy(self.source, f"ledger:{self.seq}:{self.name}",
                            register=self.register)


def publish_policy(ledger: Ledger, path: str | Path) -> PublishedPolicy:
    """Validate, lint and publish a policy file against the register in force.

    The earlier record if this version was already published under the same register.
    Raises :class:`~trustledger.errors.PolicyError` or
    :class:`~trustledger.errors.LintError` (nothing is recorded then), and
    :class:`~trustledger.registry.NoRegisterError` when no register is in force.
    """
    register = register_in_force(ledger)
    policy = load_policy(path, register=register)
    text = Path(path).read_text(encoding="utf-8")
    return publish_compiled(ledger, policy, text)


def publish_compiled(ledger: Ledger, policy: CompiledPolicy, text: str) -> PublishedPolicy:
    """Record the publication of ``policy`` (compiled from ``text`` against its register).

    The one way a publication is written (the CLI from a file, the HTTP service from a
    request body): the earlier record if this version was published under the same
    register; a :class:`~trustledger.errors.ConflictError` if it was published under
    another one (a version means one thing: publish a new version for the new register).
    """
    register_hash = policy.register_hash
    for known in published_policies(ledger):
        if known.hash != policy.hash:
            continue
        if known.register_hash == register_hash:
            return known
        raise ConflictError(
            f"hash: policy {policy.name} ({policy.hash}) was published (seq={known.seq}) "
            f"under register {known.register_hash}; the register in force is "
            f"{register_hash}: publish it as a new version (another effective_from) to bind "
            "it to this register")
    entry = ledger.append_record(
        PUBLISHED,
        {
            "name": policy.name,
            "hash": policy.hash,
            "effective_from": policy.effective_from.isoformat(),
            "source": text,
            "register": register_hash,
        },
    )
    published = _published(entry, {register_hash: register_by_hash(ledger, register_hash)})
    assert published is not None  # the payload was written just above
    return published


def published_policies(ledger: Ledger) -> list[PublishedPolicy]:
    """Every published policy version, in publication order, each with its register."""
    recorded = list(ledger.records(kind=PUBLISHED))
    wanted = {str(e.payload["register"]) for e in recorded
              if e.payload is not None and e.payload.get("register") is not None}
    known = {p.hash: p for p in registers(ledger)} if wanted else {}
    found: dict[str, Register] = {}
    for register_hash in sorted(wanted):
        if register_hash not in known:
            raise ConfigError(f"a policy publication names register {register_hash}, which "
                              "is not recorded in this ledger")
        found[register_hash] = compiled(known[register_hash])
    return [p for e in recorded if (p := _published(e, found)) is not None]


def policy_in_force(ledger: Ledger, at: datetime) -> PublishedPolicy:
    """The published version in force at ``at``; :class:`NotFoundError` if none is."""
    candidates = [p for p in published_policies(ledger) if p.effective_from <= at]
    if not candidates:
        raise NotFoundError(f"no published policy is in force at {at.isoformat()}")
    return max(candidates, key=lambda p: (p.effective_from, p.seq))


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An event scoring leaves out because of a dispute, and why in words."""

    event: Event
    dispute: Dispute
    note: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """One subject's evaluation with its rights applied, and what was applied.

    ``events`` are all the subject's known events; ``scored`` those handed to
    :func:`~trustledger.engine.evaluate` (``left_out`` says why the others are
    not); ``engine`` is ``evaluate``'s own result and ``evaluation`` the same with
    human reviews laid over its measures. ``as_of`` is the moment rights were
    taken at: ``known_at``, or ``valid_at`` without a knowledge limit.
    """

    subject: str
    policy: CompiledPolicy
    valid_at: datetime
    known_at: datetime | None
    as_of: datetime
    events: tuple[Event, ...]
    scored: tuple[Event, ...]
    left_out: tuple[LeftOut, ...]
    opt_ins: frozenset[str]
    disputes: tuple[Dispute, ...]
    reviews: tuple[Review, ...]
    engine: Evaluation
    evaluation: Evaluation


def assess(
    policy: CompiledPolicy,
    subject: str,
    events: Sequence[Event],
    records: Iterable[Entry],
    valid_at: datetime,
    known_at: datetime | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
    allow_empty: bool = False,
) -> Assessment:
    """Evaluate one subject's events with its rights applied; pure.

    ``events`` are the subject's events known by ``known_at``; ``records`` its
    ledger entries (``ledger.records(subject=...)``: consents, disputes, reviews,
    purges). ``attributes`` are decision-time values for statistical scorecards
    (checked by the engine: an unknown or mistyped one is an
    :class:`~trustledger.errors.InputError`). Raises
    :class:`~trustledger.errors.ErasedError` for an erased subject and
    :class:`~trustledger.errors.NotFoundError` for one with no events, unless
    ``allow_empty`` (a what-if about someone with no history yet: every event hypothetical).
    """
    if known_at is not None and (known_at.tzinfo is None or known_at.utcoffset() is None):
        raise InputError("known_at: must be timezone-aware (UTC)")
    if valid_at.tzinfo is None or valid_at.utcoffset() is None:
        raise InputError("valid_at: must be timezone-aware (UTC)")
    entries = list(records)
    if erased_at(entries) is not None:
        raise ErasedError(subject)
    if not events and not allow_empty:
        raise NotFoundError(f"subject {subject!r} has no events in the ledger")
    as_of = known_at or valid_at
    rights = rights_at(policy, events, entries, as_of)
    engine = evaluate(policy, rights.kept, valid_at, known_at, opt_ins=rights.opt_ins,
                      attributes=attributes)
    if not events:  # allow_empty: no event names the subject, so the evaluation does
        engine = replace(engine, subject=subject)
    return assessed(policy, subject, events, rights, engine, valid_at, known_at)


@dataclass(frozen=True, slots=True)
class Rights:
    """A subject's rights as of one moment, as scoring applies them.

    ``opt_ins``: the scorecards consented to; ``kept`` the events scored and ``left``
    those a dispute leaves out (with it); ``reviews`` the human reviews to lay over the
    measures.
    """

    as_of: datetime
    opt_ins: frozenset[str]
    disputes: tuple[Dispute, ...]
    kept: tuple[Event, ...]
    left: tuple[tuple[Event, Dispute], ...]
    reviews: tuple[Review, ...]


def rights_at(policy: CompiledPolicy, events: Sequence[Event], records: Sequence[Entry],
              as_of: datetime) -> Rights:
    """The subject's rights as of ``as_of`` from its ``records``; pure.

    The one place opt-ins, disputes and reviews are read for scoring: :func:`assess` and
    the maintained paths (the service's decisions, the cascades) all take them from here.
    """
    opt_ins = frozenset(
        c.scorecard for c in active_consents(records, as_of)
        if c.scope == "scorecard" and c.scorecard is not None and c.scorecard in policy.scorecards
    )
    disputes = fold_disputes(records, as_of)
    kept, left = split_disputed(policy, events, disputes, as_of)
    return Rights(as_of, opt_ins, tuple(disputes), tuple(kept), tuple(left),
                  tuple(fold_reviews(records, as_of)))


def assessed(policy: CompiledPolicy, subject: str, events: Sequence[Event], rights: Rights,
             engine: Evaluation, valid_at: datetime,
             known_at: datetime | None = None) -> Assessment:
    """The :class:`Assessment` of ``engine``, the evaluation of ``rights.kept``.

    The rights are applied: reviews laid over its measures, the events left out named.
    """
    return Assessment(
        subject=subject, policy=policy, valid_at=valid_at, known_at=known_at,
        as_of=rights.as_of, events=tuple(events), scored=rights.kept,
        left_out=tuple(LeftOut(e, d, d.describe(rights.as_of)) for e, d in rights.left),
        opt_ins=rights.opt_ins, disputes=rights.disputes, reviews=rights.reviews,
        engine=engine, evaluation=apply_reviews(engine, rights.reviews, rights.as_of),
    )


def assess_subject(
    ledger: Ledger,
    subject: str,
    policy: CompiledPolicy,
    valid_at: datetime,
    known_at: datetime | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
    allow_empty: bool = False,
) -> Assessment:
    """Evaluate one subject from the ledger with its rights applied (see :func:`assess`).

    Events are those recorded by ``known_at`` (all, if ``None``). Raises
    :class:`~trustledger.errors.ErasedError` for an erased subject and
    :class:`~trustledger.errors.NotFoundError` for a subject with no events.
    """
    records = list(ledger.records(subject=subject))
    events = [] if erased_at(records) else list(ledger.events(subject, known_at=known_at))
    return assess(policy, subject, events, records, valid_at, known_at, attributes=attributes,
                  allow_empty=allow_empty)


def evaluate_subject(
    ledger: Ledger,
    subject: str,
    policy: CompiledPolicy,
    valid_at: datetime,
    known_at: datetime | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate one subject from the ledger with its rights applied (an assessment's evaluation).

    Events are those recorded by ``known_at`` (all, if ``None``); opt-ins, disputes
    and reviews those recorded by ``known_at`` (or ``valid_at`` if ``known_at`` is
    ``None``). Raises :class:`~trustledger.errors.ErasedError` for an erased
    subject and :class:`~trustledger.errors.NotFoundError` for a subject with no events.
    """
    return assess_subject(ledger, subject, policy, valid_at, known_at,
                          attributes=attributes).evaluation


def _published(entry: Entry, registers: Mapping[str, Register]) -> PublishedPolicy | None:
    payload = entry.payload
    if payload is None:
        return None
    register_hash = payload.get("register")
    return PublishedPolicy(
        seq=entry.seq,
        name=str(payload["name"]),
        hash=str(payload["hash"]),
        effective_from=datetime.fromisoformat(str(payload["effective_from"])),
        published_at=entry.recorded_at,
        source=str(payload["source"]),
        register_hash=None if register_hash is None else str(register_hash),
        register=None if register_hash is None else registers[str(register_hash)],
    )
