"""Deriving notifications: the ledger is the outbox of causes, read with a durable cursor.

Every cause of a decision change — an event, a retraction or correction, a dispute
outcome, a review, an erasure, a consent granted or withdrawn, a policy published —
is already a ledger entry, committed atomically by whoever wrote it (the service,
the CLI, another process). :meth:`Deriver.step` reads the entries after the
cascades' cursor (``cascade_cursor``) about subjects with an active subscription,
evaluates each such subscription's purpose now (the step's clock; one evaluation per
subject and moment, shared by its subscriptions:
:class:`~trustledger.cascades.decision.Decisions`), and in
**one transaction** writes a notification for every changed view into the outbox
(``cascade_notifications``), stores the new view and the next time-driven check,
and moves the cursor. A crash before that commit loses nothing (the next step
reads the same entries again); after it, nothing is derived twice. Writers of the
ledger pay nothing, whether or not anyone subscribes.

Time alone is handled by the schedule: each subscription stores ``next_check_us``
(:mod:`trustledger.cascades.timing`); a step evaluates the subscriptions due by
its clock — an indexed range query, never a scan of the population.

A subscription also ends when the relying party's key that created it is revoked
(the ledger records each revocation): no notice is sent, since nothing more about
the subject may reach that party.

The ledger's ``seq`` is committed in order (every writer holds the head row's lock
until it commits), so a cursor on ``seq`` never skips an entry committed late.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from trustledger.cascades.decision import Decided, Decisions, Policies, View, changed
from trustledger.cascades.records import KINDS as CASCADE_KINDS
from trustledger.cascades.schema import cursor, notifications, subscriptions
from trustledger.cascades.store import (
    Subscription,
    decision_consent,
    end_rows,
    row_subscription,
    schedule,
    subjects_data,
)
from trustledger.clock import Clock, system_clock
from trustledger.errors import TrustLedgerError
from trustledger.ledger import Entry
from trustledger.ledger.chain import from_us, iso, to_us
from trustledger.ledger.schema import entries
from trustledger.ledger.schema import head as ledger_head
from trustledger.principals import KINDS as PRINCIPAL_KINDS
from trustledger.principals import REVOKED, Record, ServiceLedger, principals
from trustledger.rights.access import READ
from trustledger.rights.consent import fold_consents
from trustledger.scoring import PUBLISHED, published_policies

IGNORED_KINDS = frozenset({READ, *PRINCIPAL_KINDS, *CASCADE_KINDS})
"""Entry kinds about a subject that never change a decision (reads, keys, the cascades')."""
CHANGED = "decision.changed"
"""Notification type: a tier or a measure of the subscribed purpose changed."""
ENDED = "subscription.ended"
"""Notification type: the subscription ended (the reason says why); no decision data."""
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
"""Outbox states of a notification."""
RETRY_S = 60
"""A subscription whose evaluation failed is looked at again after this many seconds."""
ERASED_REASON = "the subject's data was erased"
"""Why a subscription ended when its subject was erased."""
REVOKED_REASON = "the relying party's key was revoked"
"""Why a subscription ended when the key that created it was revoked (no notice is sent)."""
_BATCH = 10_000
_e, _s = entries.c, subscriptions.c
log = logging.getLogger("trustledger.cascades")


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a subscription is evaluated: a ledger entry (kind, seq, when recorded) or ``time``."""

    kind: str
    seq: int | None
    at: datetime


@dataclass(slots=True)
class _Plan:
    """What one step writes: notifications, subscription updates, ended subscriptions."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    ended: list[tuple[Subscription, str, int]] = field(default_factory=list)
    erased: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Derived:
    """What a derivation run did: entries read past, subscriptions evaluated, notifications."""

    cursor: int
    evaluated: int
    notifications: int


class Deriver:
    """Derives notifications from the ledger and the schedule into the outbox."""

    def __init__(self, ledger: ServiceLedger, clock: Clock | None = None) -> None:
        """Work on ``ledger``; ``clock`` (default: system UTC) decides what is due."""
        self.ledger = ledger
        self.clock = clock or system_clock
        self.policies = Policies()
        self._policies_loaded = False
        self._revocations_swept = False

    def run(self, now: datetime | None = None) -> Derived:
        """Step until the cursor is at the ledger's head and nothing scheduled is due."""
        evaluated = written = 0
        while True:
            position, done, count, made = self.step(now)
            evaluated += count
            written += made
            if done:
                return Derived(position, evaluated, written)

    def step(self, now: datetime | None = None) -> tuple[int, bool, int, int]:
        """One transaction's worth: ``(cursor, finished, evaluated, notifications)``."""
        now = now or self.clock()
        with self.ledger.reading() as conn:
            start = int(conn.execute(sa.select(cursor.c.seq).where(cursor.c.id == 1))
                        .scalar_one())
            # The head from this snapshot: one read later might name entries this
            # snapshot cannot see, and the cursor would skip them.
            head = int(conn.execute(sa.select(ledger_head.c.seq)
                                    .where(ledger_head.c.id == 1)).scalar_one())
            upto = min(head, start + _BATCH)
            causes = self._causes(conn, start, upto)
            policy_changed = conn.execute(sa.select(sa.func.max(_e.seq)).where(
                _e.seq > start, _e.seq <= upto, _e.kind == PUBLISHED)).scalar()
            touched = [row_subscription(r) for r in conn.execute(
                sa.select(subscriptions).where(_s.ended_at_us.is_(None),
                                               _s.subject.in_(list(causes))))] if causes else []
            due_query = sa.select(subscriptions).where(
                _s.ended_at_us.is_(None), _s.next_check_us <= to_us(now))
            if policy_changed is not None:
                # A policy published after a subscription began may change its view now.
                due_query = sa.select(subscriptions).where(
                    _s.ended_at_us.is_(None),
                    sa.or_(_s.next_check_us <= to_us(now), _s.since_seq < policy_changed))
            due = [row_subscription(r) for r in conn.execute(due_query.limit(_BATCH))]
            revoked = self._revoked(conn, start, upto)
        if policy_changed is not None or not self._policies_loaded:
            self.policies.load(published_policies(self.ledger))
            self._policies_loaded = True
        work: dict[str, tuple[Subscription, Cause]] = {}
        for sub in touched:
            cause = causes[sub.subject]
            if cause.seq is not None and cause.seq > sub.since_seq:
                work[sub.id] = (sub, cause)
        for sub in due:
            if sub.id not in work:
                work[sub.id] = (sub, Cause("time", None, now))
        for sub, _ in revoked:
            work.pop(sub.id, None)
        if not work and not revoked and upto == start:
            # Nothing new and nothing due: no write transaction (an idle worker polls).
            self._revocations_swept = True
            return start, True, 0, 0
        plan = self._plan(list(work.values()), upto, now)
        # The party's key is revoked: the subscription ends, and nothing more about the
        # subject reaches the party, not even the notice that it ended.
        plan.ended.extend((sub, REVOKED_REASON, at_us) for sub, at_us in revoked)
        now_us = to_us(now)
        finished = upto == head and len(due) < _BATCH and not any(
            next_us is not None and next_us <= now_us for _, _, next_us in plan.updates)
        if not self._commit(start, upto, plan):
            return start, False, 0, 0
        self._revocations_swept = True
        return upto, finished, len(work), len(plan.notifications)

    def _revoked(self, conn: sa.Connection, start: int,
                 upto: int) -> list[tuple[Subscription, int]]:
        """Active subscriptions whose key was revoked, with the revocation's time.

        Those revoked in ``(start, upto]`` (the ledger records each revocation); on a
        deriver's first step, every one (keys revoked before this worker ran).
        """
        query = (sa.select(subscriptions, principals.c.revoked_at_us.label("revoked_us"))
                 .join(principals, principals.c.id == _s.principal_id)
                 .where(_s.ended_at_us.is_(None), principals.c.revoked_at_us.is_not(None)))
        if self._revocations_swept:
            if upto <= start:
                return []
            names = {str(orjson.loads(payload).get("name")) for payload in conn.execute(
                sa.select(_e.payload).where(_e.seq > start, _e.seq <= upto,
                                            _e.kind == REVOKED)).scalars()
                     if payload is not None}
            if not names:
                return []
            query = query.where(_s.party.in_(sorted(names)))
        return [(row_subscription(r), int(r.revoked_us)) for r in conn.execute(query)]

    def _causes(self, conn: sa.Connection, start: int, upto: int) -> dict[str, Cause]:
        """The latest relevant entry per subscribed subject in ``(start, upto]``."""
        if upto <= start:
            return {}
        active = sa.select(_s.subject).where(_s.ended_at_us.is_(None)).scalar_subquery()
        rows = conn.execute(
            sa.select(_e.seq, _e.kind, _e.subject, _e.recorded_at_us)
            .where(_e.seq > start, _e.seq <= upto, _e.subject.in_(active),
                   _e.kind.not_in(sorted(IGNORED_KINDS)))
            .order_by(_e.seq))
        causes: dict[str, Cause] = {}
        for seq, kind, subject, recorded_at_us in rows:
            causes[subject] = Cause(kind, seq, from_us(recorded_at_us))
        return causes

    def _plan(self, work: Sequence[tuple[Subscription, Cause]], upto: int,
              now: datetime) -> _Plan:
        plan = _Plan()
        by_subject: dict[str, list[tuple[Subscription, Cause]]] = {}
        for item in work:
            by_subject.setdefault(item[0].subject, []).append(item)
        data = subjects_data(self.ledger, list(by_subject), upto)
        for subject, items in by_subject.items():
            # One subject's subscriptions share its evaluations (same policy, same moment).
            decisions = Decisions(self.policies, subject, *data[subject])
            for sub, cause in items:
                try:
                    self._evaluate(plan, sub, cause, now, decisions)
                except TrustLedgerError as err:
                    # One subscription that cannot be evaluated must not hold up the
                    # cursor for everyone: it keeps its last view and is tried again.
                    log.error("cascades: subscription %s could not be evaluated (%s); "
                              "trying again in %d s", sub.id, err, RETRY_S)
                    state = None if sub.state is None else orjson.dumps(sub.state).decode()
                    plan.updates.append((sub.id, state, to_us(now) + RETRY_S * 1_000_000))
        return plan

    def _evaluate(self, plan: _Plan, sub: Subscription, cause: Cause, now: datetime,
                  decisions: Decisions) -> None:
        # Evaluated now (never at the cause's own time, which may be older than a view
        # already told): the party learns the current decision, and time only moves on.
        at = max(now, cause.at)
        records = decisions.records
        consent = decision_consent(records, sub.party, sub.purpose, at)
        decided = decisions.decide(sub.purpose, at)
        reason = None
        if decided.view.get("status") == "erased":
            reason = ERASED_REASON
            plan.erased.add(sub.subject)
        elif consent is None:
            reason = _consent_end(records, sub, at)
        if reason is not None:
            plan.ended.append((sub, reason, to_us(at)))
            plan.notifications.append(_notification(sub, ENDED, cause, at, {
                "reason": reason}))
            return
        next_check = schedule(decisions, sub.purpose, decided, consent)
        if changed(sub.state, decided.view):
            plan.notifications.append(_notification(sub, CHANGED, cause, at, _change(
                sub.state, decided)))
        plan.updates.append((sub.id, orjson.dumps(decided.view).decode(),
                             None if next_check is None else to_us(next_check)))

    def _commit(self, start: int, upto: int, plan: _Plan) -> bool:
        """Write the plan and move the cursor, if no other worker moved it meanwhile."""

        def work(conn: sa.Connection, now_us: int) -> tuple[bool, list[Record]]:
            current = conn.execute(sa.select(cursor.c.seq).where(cursor.c.id == 1)
                                   ).scalar_one()
            if current != start:
                return False, []
            # A subscription the party cancelled meanwhile gets nothing more.
            touched = {n["subscription_id"] for n in plan.notifications}
            touched.update(sub_id for sub_id, _, _ in plan.updates)
            touched.update(sub.id for sub, _, _ in plan.ended)
            gone = set(conn.execute(sa.select(_s.id).where(
                _s.id.in_(sorted(touched)), _s.ended_at_us.is_not(None))).scalars())
            plan.notifications[:] = [n for n in plan.notifications
                                     if n["subscription_id"] not in gone]
            plan.updates[:] = [u for u in plan.updates if u[0] not in gone]
            plan.ended[:] = [e for e in plan.ended if e[0].id not in gone]
            records = [end_rows(conn, sub, reason, at_us) for sub, reason, at_us in plan.ended]
            for subject in plan.erased:
                _forget(conn, subject, now_us)
            if plan.updates:  # one executemany, not a statement per subscription
                conn.execute(
                    sa.update(subscriptions).where(_s.id == sa.bindparam("b_id"))
                    .values(state=sa.bindparam("b_state"),
                            next_check_us=sa.bindparam("b_next")),
                    [{"b_id": sub_id, "b_state": state, "b_next": next_us}
                     for sub_id, state, next_us in plan.updates])
            if plan.notifications:
                conn.execute(notifications.insert(), plan.notifications)
            if upto != start:
                conn.execute(sa.update(cursor).where(cursor.c.id == 1).values(seq=upto))
            return True, records

        return self.ledger.write(work)[0]


def _forget(conn: sa.Connection, subject: str, now_us: int) -> None:
    """An erased subject: no decision kept, nothing about them sent any more.

    Stored views and notification bodies are copies of the subject's data, so they
    go as the ledger's payloads went; pending notifications are not sent.
    """
    erased = orjson.dumps({"erased": True}).decode()
    conn.execute(sa.update(subscriptions).where(_s.subject == subject).values(state=None))
    conn.execute(sa.update(notifications)
                 .where(notifications.c.subject == subject,
                        notifications.c.status == PENDING)
                 .values(status=DEAD, last_error="the subject's data was erased",
                         finished_at_us=now_us))
    conn.execute(sa.update(notifications).where(notifications.c.subject == subject)
                 .values(body=erased))


def _consent_end(records: Sequence[Entry], sub: Subscription, at: datetime) -> str:
    grant = next((c for c in fold_consents(records, at) if c.seq == sub.consent_seq), None)
    if grant is not None and grant.withdrawn_at is not None:
        return "the subject withdrew consent"
    if grant is not None and grant.expires_at is not None and at >= grant.expires_at:
        return "the subject's consent expired"
    return "the subject's consent is no longer active"


def _change(old: View | None, decided: Decided) -> dict[str, Any]:
    return {"old": old, "new": decided.view, "reasons": list(decided.reasons)}


def _notification(sub: Subscription, kind: str, cause: Cause, at: datetime,
                  data: dict[str, Any]) -> dict[str, Any]:
    """An outbox row: the body is fixed now, so every retry sends the same bytes."""
    notification_id = "msg_" + secrets.token_hex(12)
    body = {
        "type": kind,
        "timestamp": iso(at),
        "data": {
            "id": notification_id, "subscription": sub.id, "party": sub.party,
            "subject": sub.subject, "purpose": sub.purpose,
            "cause": {"kind": cause.kind, "seq": cause.seq, "recorded_at": iso(cause.at)},
            "at": iso(at), **data,
        },
    }
    at_us = to_us(at)
    return {
        "id": notification_id, "subscription_id": sub.id, "subject": sub.subject,
        "type": kind, "cause": cause.kind, "cause_seq": cause.seq, "created_at_us": at_us,
        "body": orjson.dumps(body).decode(), "status": PENDING, "attempts": 0,
        "next_attempt_us": at_us, "last_error": None, "finished_at_us": None,
    }
