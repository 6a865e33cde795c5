"""Principals: who may call the service, in which role, with which accreditations.

A principal is one API key: a random 32-byte token (``tl_`` + URL-safe base64),
shown once when it is issued and stored only as its SHA-256 hash. Each has a
role (DESIGN.md, *Actors*), a name (a source's name is the ``source`` of the
events it appends; a relying party's is the ``party`` subjects consent to), and:

* a **source** is accredited for named event types and for one or more domains: it
  may report a type only while the event-type register in force puts the type in one
  of its domains (a court reports the legal domain only; :mod:`trustledger.registry`);
* a **relying party** is accredited for named purposes;
* a **subject** principal speaks for exactly one subject id.

Principals live in the ``principals`` table (Alembic revision ``0002``; ``domains``
since ``0004``); every
change is also appended to the ledger (kinds :data:`ADDED`, :data:`REVOKED`,
never any key material) in the same transaction, so the table cannot change
without an audit record.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
import sqlalchemy as sa

from trustledger.errors import ConflictError, InputError, NotFoundError, TrustLedgerError
from trustledger.ledger.chain import from_us, to_us
from trustledger.ledger.schema import metadata
from trustledger.policy.models import NAME_PATTERN
from trustledger.principals.ledger import Record, ServiceLedger

ADDED = "principal.added"
"""Record kind of a principal issued (its id, name, role, accreditations; no key)."""
REVOKED = "principal.revoked"
"""Record kind of a principal's key revoked."""
KINDS = frozenset({ADDED, REVOKED})
"""Every record kind this module appends."""

KEY_PREFIX = "tl_"
"""Every API key starts with this, so a key is recognisable in a leaked file."""
_KEY_BYTES = 32
_KEY_LENGTH = len(KEY_PREFIX) + 43  # 32 bytes in unpadded URL-safe base64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}")
_IDENT = re.compile(NAME_PATTERN)


class AuthenticationError(TrustLedgerError):
    """No valid API key: missing, malformed, unknown or revoked (HTTP 401)."""


class PermissionDeniedError(TrustLedgerError):
    """The principal is known but may not do this (HTTP 403); says what is missing."""


class Role(StrEnum):
    """What a principal is (DESIGN.md, *Actors and what each may do*)."""

    OPERATOR = "operator"
    SOURCE = "source"
    RELYING_PARTY = "relying_party"
    SUBJECT = "subject"
    REVIEWER = "reviewer"


principals = sa.Table(
    "principals",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("accreditations", sa.Text, nullable=False),
    sa.Column("domains", sa.Text, nullable=False, server_default="[]"),
    sa.Column("subject", sa.String(256), nullable=True),
    sa.Column("rate_limit", sa.Float, nullable=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
    sa.Index(None, "name"),
)
"""One row per API key issued; rows are never deleted (revocation sets ``revoked_at_us``)."""

_p = principals.c


@dataclass(frozen=True, slots=True)
class Principal:
    """One API key's holder: role, name, accreditations, domains, subject, limits, life span."""

    id: str
    name: str
    role: Role
    accreditations: tuple[str, ...]
    subject: str | None
    rate_limit: float | None
    created_at: datetime
    revoked_at: datetime | None
    domains: tuple[str, ...] = ()
    """A source's domains: it reports only registered types of these domains."""

    @property
    def active(self) -> bool:
        """Whether the key still works (not revoked)."""
        return self.revoked_at is None

    def audit(self) -> dict[str, Any]:
        """What the ledger records about this principal: everything but the key."""
        return {
            "id": self.id, "name": self.name, "role": self.role.value,
            "accreditations": list(self.accreditations), "domains": list(self.domains),
            "subject": self.subject, "rate_limit": self.rate_limit,
        }


@dataclass(frozen=True, slots=True)
class Issued:
    """A principal just issued, with its API key: the only time the key is seen."""

    principal: Principal
    key: str


def key_hash(key: str) -> str:
    """The stored form of an API key: hex SHA-256 of its text."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh API key: ``tl_`` and 32 random bytes, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def _row(row: Any) -> Principal:
    return Principal(
        id=row.id, name=row.name, role=Role(row.role),
        accreditations=tuple(orjson.loads(row.accreditations)), subject=row.subject,
        rate_limit=row.rate_limit, created_at=from_us(row.created_at_us),
        revoked_at=None if row.revoked_at_us is None else from_us(row.revoked_at_us),
        domains=tuple(orjson.loads(row.domains)),
    )


def _fetch(conn: sa.Connection, principal_id: str) -> Principal:
    """The principal with ``principal_id``; :class:`NotFoundError` if there is none."""
    row = conn.execute(sa.select(principals).where(_p.id == principal_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no principal {principal_id!r}")
    return _row(row)


def _insert(conn: sa.Connection, principal: Principal, key: str) -> None:
    """Store a new, active principal holding ``key`` (only its hash is kept)."""
    conn.execute(principals.insert().values(
        id=principal.id, name=principal.name, role=principal.role.value,
        key_hash=key_hash(key), accreditations=orjson.dumps(list(principal.accreditations)
                                                           ).decode(),
        domains=orjson.dumps(list(principal.domains)).decode(), subject=principal.subject,
        rate_limit=principal.rate_limit,
        created_at_us=to_us(principal.created_at), revoked_at_us=None))


def _identifiers(field: str, items: tuple[str, ...], named: str, one: str) -> None:
    """Refuse an item of ``field`` that is not an identifier, or one listed twice."""
    for item in items:
        if not _IDENT.fullmatch(item):
            raise InputError(f"{field}: {item!r} is not an identifier (lower-case letters, "
                             f"digits, _; {named})")
    if len(set(items)) != len(items):
        raise InputError(f"{field}: {one} is listed twice")


def _check(name: str, role: Role, accreditations: tuple[str, ...], subject: str | None,
           rate_limit: float | None, domains: tuple[str, ...] = ()) -> None:
    if not _NAME.fullmatch(name):
        raise InputError(f"name: {name!r} must be 1-128 letters, digits or ._:@- "
                         "starting with a letter or digit")
    _identifiers("accreditations", accreditations, "as event types and purposes are named",
                 "a name")
    if role is Role.SOURCE and not accreditations:
        raise InputError("accreditations: a source must be accredited for at least one "
                         "event type")
    if role is Role.RELYING_PARTY and not accreditations:
        raise InputError("accreditations: a relying party must be accredited for at least "
                         "one purpose")
    if role not in (Role.SOURCE, Role.RELYING_PARTY) and accreditations:
        raise InputError(f"accreditations: only sources and relying parties have them, "
                         f"not a {role.value}")
    _identifiers("domains", domains, "as the register names domains", "a domain")
    if role is Role.SOURCE and not domains:
        raise InputError("domains: a source must be accredited for at least one domain (the "
                         "register's domain of the types it reports, e.g. --domain legal)")
    if role is not Role.SOURCE and domains:
        raise InputError(f"domains: only sources have them, not a {role.value}")
    if role is Role.SUBJECT:
        if subject is None or not (0 < len(subject) <= 256 and subject.strip() == subject):
            raise InputError("subject: a subject principal needs the subject id it speaks "
                             "for (1-256 characters, no surrounding spaces)")
    elif subject is not None:
        raise InputError(f"subject: only a subject principal speaks for a subject, "
                         f"not a {role.value}")
    if rate_limit is not None and not 0 < rate_limit <= 1_000_000:
        raise InputError("rate_limit: requests per second, more than 0 and at most 1000000")


Audit = Callable[[Principal], Sequence[Record]]
"""More records to append with a principal's change, in its transaction (e.g. the
subject's access-log entry of an operator issuing their key)."""


def add_principal(
    ledger: ServiceLedger,
    name: str,
    role: Role,
    *,
    accreditations: tuple[str, ...] = (),
    domains: tuple[str, ...] = (),
    subject: str | None = None,
    rate_limit: float | None = None,
    audit: Audit | None = None,
    sole_subject_key: bool = False,
) -> Issued:
    """Issue an API key for a new principal; record it in the ledger (without the key).

    A name stands for one identity: it may be issued again (key rotation) only with
    the same role and subject. Raises :class:`InputError` naming the field at fault.
    A source's ``domains`` and accredited types are checked against the event-type
    register in force (:func:`trustledger.registry.accreditation_problems`): a type must be
    registered in one of the source's domains; with no register in force no source is
    accredited (:class:`ConflictError` saying how to get one).
    ``audit`` gives records appended in the same transaction. With
    ``sole_subject_key``, a subject key is refused (:class:`ConflictError` naming
    ``subject``) while the subject holds another active key: whoever held a second
    one could act in the subject's name beside them.
    """
    _check(name, role, accreditations, subject, rate_limit, domains)
    key = new_key()
    principal_id = "pr_" + secrets.token_hex(8)

    def work(conn: sa.Connection, now_us: int) -> tuple[Principal, list[Record]]:
        if role is Role.SOURCE:
            _check_register(conn, name, accreditations, domains)
        if sole_subject_key and role is Role.SUBJECT:
            held = conn.execute(
                sa.select(_p.id, _p.name).where(_p.role == Role.SUBJECT.value,
                                                _p.subject == subject,
                                                _p.revoked_at_us.is_(None))
            ).first()
            if held is not None:
                raise ConflictError(
                    f"subject: {subject!r} already holds an active key ({held.id}, name "
                    f"{held.name!r}); a subject has one key at a time: revoke it first "
                    f"(DELETE /v1/principals/{held.id}) — the subject sees both in their "
                    "access log")
        clash = conn.execute(
            sa.select(_p.role, _p.subject).where(_p.name == name, _p.revoked_at_us.is_(None))
            .where(sa.or_(_p.role != role.value, _p.subject != subject)
                   if subject is not None else _p.role != role.value)
        ).first()
        if clash is not None:
            raise InputError(f"name: {name!r} is already an active {clash.role}"
                             + (f" for subject {clash.subject!r}" if clash.subject else "")
                             + "; a name stands for one identity")
        principal = Principal(principal_id, name, role, accreditations, subject, rate_limit,
                              from_us(now_us), None, domains)
        _insert(conn, principal, key)
        return principal, [Record(ADDED, principal.audit(), subject),
                           *(audit(principal) if audit is not None else ())]

    principal, _ = ledger.write(work)
    return Issued(principal, key)


def _check_register(conn: sa.Connection, name: str, accreditations: tuple[str, ...],
                    domains: tuple[str, ...]) -> None:
    """Refuse a source's accreditation the register in force does not bear out."""
    from trustledger.registry import (  # the register sits above principals
        HOW_TO,
        NoRegisterError,
        accreditation_problems,
        register_on,
    )

    try:
        register = register_on(conn)
    except NoRegisterError as exc:
        raise ConflictError(f"accreditations: no event-type register is in force, so a "
                            f"source's types cannot be checked against its domains; {HOW_TO}"
                            ) from exc
    problems = accreditation_problems(register, name, accreditations, domains)
    if problems:
        raise InputError("; ".join(problems))


def revoke_principal(ledger: ServiceLedger, principal_id: str, *,
                     audit: Audit | None = None) -> Principal:
    """Revoke a principal's key at once; the principal as it is now.

    Revoking a revoked key changes nothing (and records nothing). Raises
    :class:`NotFoundError` for an unknown id. ``audit`` gives records appended in
    the same transaction (given the revoked principal).
    """

    def work(conn: sa.Connection, now_us: int) -> tuple[Principal, list[Record]]:
        principal = _fetch(conn, principal_id)
        if principal.revoked_at is not None:
            return principal, []
        conn.execute(sa.update(principals).where(_p.id == principal_id)
                     .values(revoked_at_us=now_us))
        revoked = replace(principal, revoked_at=from_us(now_us))
        return revoked, [Record(REVOKED, {"id": principal.id, "name": principal.name},
                                principal.subject),
                         *(audit(revoked) if audit is not None else ())]

    return ledger.write(work)[0]


def rotate_key(ledger: ServiceLedger, principal_id: str) -> Issued:
    """Replace an active principal's key: the old key stops working at once; shown once.

    The new principal has the same name, role, accreditations, subject and limit; the
    revocation and the issue are recorded in one transaction. A subject rotates the
    key the operator gave them so that only they hold one. Raises
    :class:`NotFoundError` for an unknown id and :class:`AuthenticationError` for a
    revoked key.
    """
    key = new_key()
    new_id = "pr_" + secrets.token_hex(8)

    def work(conn: sa.Connection, now_us: int) -> tuple[Principal, list[Record]]:
        old = _fetch(conn, principal_id)
        if old.revoked_at is not None:
            raise AuthenticationError(f"the API key was revoked at "
                                      f"{old.revoked_at.isoformat()}: ask the operator for a "
                                      "new key")
        conn.execute(sa.update(principals).where(_p.id == principal_id)
                     .values(revoked_at_us=now_us))
        fresh = replace(old, id=new_id, created_at=from_us(now_us), revoked_at=None)
        _insert(conn, fresh, key)
        return fresh, [Record(REVOKED, {"id": old.id, "name": old.name}, old.subject),
                       Record(ADDED, fresh.audit(), old.subject)]

    principal, _ = ledger.write(work)
    return Issued(principal, key)


def list_principals(ledger: ServiceLedger, *, include_revoked: bool = False) -> list[Principal]:
    """Every principal (active ones unless ``include_revoked``), oldest first."""
    query = sa.select(principals).order_by(_p.created_at_us, _p.id)
    if not include_revoked:
        query = query.where(_p.revoked_at_us.is_(None))
    with ledger.reading() as conn:
        return [_row(row) for row in conn.execute(query)]


def get_principal(ledger: ServiceLedger, principal_id: str) -> Principal:
    """One principal by id; :class:`NotFoundError` if there is none."""
    with ledger.reading() as conn:
        return _fetch(conn, principal_id)


def authenticate(ledger: ServiceLedger, key: str) -> Principal:
    """The active principal holding ``key``; :class:`AuthenticationError` otherwise."""
    if not well_formed(key):
        raise AuthenticationError("the API key is malformed: keys are 'tl_' followed by 43 "
                                  "URL-safe base64 characters, as issued")
    with ledger.reading() as conn:
        row = conn.execute(sa.select(principals).where(_p.key_hash == key_hash(key))
                           ).one_or_none()
    if row is None:
        raise AuthenticationError("the API key is not known: ask the operator for a key")
    principal = _row(row)
    if principal.revoked_at is not None:
        raise AuthenticationError(f"the API key was revoked at "
                                  f"{principal.revoked_at.isoformat()}: ask the operator "
                                  "for a new key")
    return principal


def well_formed(key: str) -> bool:
    """Whether ``key`` has the shape of an issued key (checked before any lookup)."""
    return (len(key) == _KEY_LENGTH and key.startswith(KEY_PREFIX)
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in key[3:]))
