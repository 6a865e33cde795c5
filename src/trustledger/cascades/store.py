"""Subscriptions: a relying party asks to be told when one subject's decision for a purpose changes.

A subscription needs what a decision needs (DESIGN.md safeguard 7): the caller is a
relying party accredited for the purpose, the policy in force declares the purpose,
and the subject's decision consent for this party and purpose is active. It ends
when that consent does (withdrawn or expired), when the subject is erased, or when
the party cancels it. Each start and end is a ledger record about the subject
(:mod:`trustledger.cascades.records`) written in the same transaction as the row,
so the subject sees who subscribed.

Notifications are signed with the subscription's secret, in the Standard Webhooks
form ``whsec_`` + base64 of 24 to 64 random bytes; one is generated unless the
party brings its own. It is shown once, when the subscription is created.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa

from trustledger.cascades.decision import Decided, Decisions, Policies
from trustledger.cascades.egress import Egress
from trustledger.cascades.records import ENDED, NOTIFIED, SUBSCRIBED
from trustledger.cascades.schema import subscriptions
from trustledger.cascades.timing import next_change
from trustledger.engine import Event
from trustledger.errors import ConflictError, InputError, NotFoundError
from trustledger.ledger import Entry, entry_of, event_of
from trustledger.ledger.chain import EVENT_KIND, from_us, to_us
from trustledger.ledger.schema import entries, head
from trustledger.principals import (
    AuthenticationError,
    PermissionDeniedError,
    Principal,
    Record,
    Role,
    ServiceLedger,
    principals,
)
from trustledger.rights import fields
from trustledger.rights.access import READ
from trustledger.rights.consent import Consent, fold_consents
from trustledger.scoring import published_policies

SECRET_PREFIX = "whsec_"
"""Every signing secret starts with this (Standard Webhooks)."""
MAX_URL = 2048
"""The longest webhook URL accepted."""
_s, _e = subscriptions.c, entries.c
_SUBJECTS_PER_QUERY = 500


class ConsentRequiredError(PermissionDeniedError):
    """A subscription without the subject's active consent for this party and purpose (403)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription: who is told about whom, for which purpose, where, and since when."""

    id: str
    party: str
    principal_id: str
    subject: str
    purpose: str
    url: str
    consent_seq: int
    since_seq: int
    created_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    state: dict[str, Any] | None
    next_check: datetime | None

    @property
    def active(self) -> bool:
        """Whether notifications are still derived for it."""
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class Created:
    """A subscription just created, with its signing secret: the only time it is shown."""

    subscription: Subscription
    secret: str


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; :class:`InputError` naming ``secret`` if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise InputError("secret: must start with 'whsec_' (Standard Webhooks)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError) as err:
        raise InputError("secret: after 'whsec_' must come standard base64") from err
    if not 24 <= len(key) <= 64:
        raise InputError(f"secret: must encode 24 to 64 bytes (this one has {len(key)})")
    return key


def check_url(url: str) -> str:
    """A webhook URL: absolute ``http``/``https`` with a host; :class:`InputError` otherwise."""
    if len(url) > MAX_URL:
        raise InputError(f"url: at most {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("url: must be an absolute http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise InputError("url: must not carry a user name or password")
    return url


def subject_data(ledger: ServiceLedger, subject: str,
                 upto: int) -> tuple[list[Event], list[Entry]]:
    """The subject's events and other records up to ledger position ``upto``."""
    return subjects_data(ledger, [subject], upto).get(subject, ([], []))


def subjects_data(ledger: ServiceLedger, subjects: Sequence[str],
                  upto: int) -> dict[str, tuple[list[Event], list[Entry]]]:
    """Several subjects' events and other records up to ``upto``: one query per 500.

    One snapshot, the ``(subject, seq)`` index; the access log and the cascades'
    notices are left out (they change no decision).
    """
    out: dict[str, tuple[list[Event], list[Entry]]] = {s: ([], []) for s in subjects}
    names = sorted(out)
    with ledger.reading() as conn:
        for start in range(0, len(names), _SUBJECTS_PER_QUERY):
            query = (sa.select(*entries.c)
                     .where(_e.subject.in_(names[start:start + _SUBJECTS_PER_QUERY]),
                            _e.seq <= upto, _e.kind.not_in((READ, NOTIFIED)))
                     .order_by(_e.subject, _e.seq))
            for row in conn.execute(query):
                events, records = out[row.subject]
                entry = entry_of(row)
                if row.kind != EVENT_KIND:
                    records.append(entry)
                elif (event := event_of(entry)) is not None:
                    events.append(event)
    return out


def decision_consent(records: Sequence[Entry], party: str, purpose: str,
                     at: datetime) -> Consent | None:
    """The subject's consent for ``party`` and ``purpose`` active at ``at``, if any."""
    for consent in reversed(fold_consents(records, at)):
        if (consent.scope == "decision" and consent.party == party
                and consent.purpose == purpose and consent.active_at(at)):
            return consent
    return None


def schedule(decisions: Decisions, purpose: str, decided: Decided,
             consent: Consent | None) -> datetime | None:
    """When time alone may next change this subscription (:func:`timing.next_change`).

    The probes read ``decisions``, so subscriptions to one subject share them.
    """
    extra = [*decisions.policies.changes_after(decided.at)]
    extra.extend(c.expires_at for c in fold_consents(decisions.records, decided.at)
                 if c.expires_at is not None)
    if consent is not None and consent.expires_at is not None:
        extra.append(consent.expires_at)

    def probe(moment: datetime) -> tuple[Any, ...] | None:
        return decisions.signature(purpose, moment)

    return next_change(decided, decided.at, probe, extra, decisions.history_of(decided))


def subscribe(ledger: ServiceLedger, party: Principal, subject: str, purpose: str, url: str,
              at: datetime, *, secret: str | None = None,
              egress: Egress | None = None) -> Created:
    """Subscribe ``party`` to changes of ``subject``'s decision for ``purpose``.

    Raises :class:`PermissionDeniedError` unless ``party`` is a relying party
    accredited for ``purpose``; :class:`ConsentRequiredError` without the subject's
    active consent; :class:`InputError` naming a bad field (subject, purpose, url,
    secret; a ``url`` reaching an address ``egress`` refuses — by default
    ``$TRUSTLEDGER_WEBHOOK_ALLOW``, see :mod:`trustledger.cascades.egress`);
    :class:`ConflictError` if the party already has an active subscription for this
    subject and purpose; :class:`AuthenticationError` if the party's key was revoked
    meanwhile. Nothing is written in any of these cases.
    """
    if party.role is not Role.RELYING_PARTY:
        raise PermissionDeniedError(f"only a relying party may subscribe; {party.name!r} is "
                                    f"a {party.role.value.replace('_', ' ')}")
    fields.name("subject", subject)
    if purpose not in party.accreditations:
        raise PermissionDeniedError(f"{party.name!r} is not accredited for purpose "
                                    f"{purpose!r}; accredited: {', '.join(party.accreditations)}")
    check_url(url)
    (egress or Egress.from_env()).check_url(url)
    secret = new_secret() if secret is None else secret
    secret_key(secret)
    policies = Policies()
    policies.load(published_policies(ledger))
    policy = policies.in_force(at)
    if policy is None or purpose not in policy.purposes:
        declared = ", ".join(policy.purposes) if policy is not None else "no policy in force"
        raise InputError(f"purpose: {purpose!r} is not declared by the policy in force "
                         f"(declared: {declared or 'none'})")
    for _ in range(5):
        upto = ledger.position()
        events, records = subject_data(ledger, subject, upto)
        consent = decision_consent(records, party.name, purpose, at)
        if consent is None:
            raise ConsentRequiredError(
                f"missing consent: subject {subject!r} has no active consent for party "
                f"{party.name!r} and purpose {purpose!r}; the subject can grant it "
                "(POST /v1/subjects/{subject}/consents)")
        decisions = Decisions(policies, subject, events, records)
        decided = decisions.decide(purpose, at)
        next_check = schedule(decisions, purpose, decided, consent)
        subscription = Subscription(
            id="sub_" + secrets.token_hex(8), party=party.name, principal_id=party.id,
            subject=subject, purpose=purpose, url=url, consent_seq=consent.seq,
            since_seq=upto, created_at=at, ended_at=None, end_reason=None,
            state=decided.view, next_check=next_check)
        created = ledger.write(partial(_insert, subscription=subscription, secret=secret))[0]
        if created is not None:
            return Created(created, secret)
    raise ConflictError("the subject's records kept changing while subscribing; try again")


def _insert(conn: sa.Connection, now_us: int, *, subscription: Subscription,
            secret: str) -> tuple[Subscription | None, list[Record]]:
    s = subscription
    if conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar_one() != s.since_seq:
        return None, []  # something was appended meanwhile: evaluate again
    revoked = conn.execute(sa.select(principals.c.revoked_at_us)
                           .where(principals.c.id == s.principal_id)).scalar()
    if revoked is not None:
        raise AuthenticationError("the API key was revoked: ask the operator for a new key")
    clash = conn.execute(sa.select(_s.id).where(
        _s.party == s.party, _s.subject == s.subject, _s.purpose == s.purpose,
        _s.ended_at_us.is_(None))).first()
    if clash is not None:
        raise ConflictError(f"{s.party!r} already has an active subscription {clash.id} for "
                            f"subject {s.subject!r} and purpose {s.purpose!r}")
    conn.execute(subscriptions.insert().values(
        id=s.id, party=s.party, principal_id=s.principal_id, subject=s.subject,
        purpose=s.purpose, url=s.url, secret=secret, consent_seq=s.consent_seq,
        since_seq=s.since_seq, created_at_us=to_us(s.created_at), ended_at_us=None,
        end_reason=None, state=orjson.dumps(s.state).decode(),
        next_check_us=None if s.next_check is None else to_us(s.next_check)))
    record = Record(SUBSCRIBED, {"id": s.id, "party": s.party, "purpose": s.purpose,
                                 "consent_seq": s.consent_seq}, s.subject)
    return s, [record]


def row_subscription(row: Any) -> Subscription:
    """A :class:`Subscription` from a ``cascade_subscriptions`` row."""
    return Subscription(
        id=row.id, party=row.party, principal_id=row.principal_id, subject=row.subject,
        purpose=row.purpose, url=row.url, consent_seq=row.consent_seq,
        since_seq=row.since_seq, created_at=from_us(row.created_at_us),
        ended_at=None if row.ended_at_us is None else from_us(row.ended_at_us),
        end_reason=row.end_reason,
        state=None if row.state is None else orjson.loads(row.state),
        next_check=None if row.next_check_us is None else from_us(row.next_check_us))


def list_subscriptions(ledger: ServiceLedger, party: str, *,
                       include_ended: bool = False) -> list[Subscription]:
    """The party's subscriptions (active ones unless ``include_ended``), oldest first."""
    query = sa.select(subscriptions).where(_s.party == party).order_by(_s.created_at_us, _s.id)
    if not include_ended:
        query = query.where(_s.ended_at_us.is_(None))
    with ledger.reading() as conn:
        return [row_subscription(row) for row in conn.execute(query)]


def get_subscription(ledger: ServiceLedger, subscription_id: str) -> Subscription:
    """One subscription by id; :class:`NotFoundError` if there is none."""
    with ledger.reading() as conn:
        row = conn.execute(sa.select(subscriptions).where(_s.id == subscription_id)
                           ).one_or_none()
    if row is None:
        raise NotFoundError(f"no subscription {subscription_id!r}")
    return row_subscription(row)


def end_rows(conn: sa.Connection, subscription: Subscription, reason: str,
             at_us: int) -> Record:
    """End a subscription inside a write transaction; the record that audits it."""
    conn.execute(sa.update(subscriptions).where(_s.id == subscription.id)
                 .values(ended_at_us=at_us, end_reason=reason, next_check_us=None))
    return Record(ENDED, {"id": subscription.id, "party": subscription.party,
                          "purpose": subscription.purpose, "reason": reason},
                  subscription.subject)


def unsubscribe(ledger: ServiceLedger, party: Principal, subscription_id: str) -> Subscription:
    """End one of the party's subscriptions at once; the subscription as it is now.

    :class:`NotFoundError` for an unknown id or another party's subscription (the
    same answer, so ids of others cannot be probed). Ending an ended one changes nothing.
    """

    def work(conn: sa.Connection, now_us: int) -> tuple[Subscription, list[Record]]:
        row = conn.execute(sa.select(subscriptions).where(_s.id == subscription_id)
                           ).one_or_none()
        if row is None or row.party != party.name:
            raise NotFoundError(f"no subscription {subscription_id!r} of {party.name!r}")
        found = row_subscription(row)
        if found.ended_at is not None:
            return found, []
        record = end_rows(conn, found, "cancelled by the relying party", now_us)
        ended = row_subscription(conn.execute(
            sa.select(subscriptions).where(_s.id == subscription_id)).one())
        return ended, [record]

    return ledger.write(work)[0]
