"""The access log as the subject sees it: who read their data, when, for what purpose.

Every read of a subject's data by someone other than the subject is an
``access.read`` ledger record about the subject (safeguards 5 and 7), and so is
everything an operator does about the subject: issuing or revoking their key
(purpose :data:`KEY_PURPOSE`), since whoever holds that key can read all of it
and consent in their name. The HTTP service writes reads (``trustledger.api.access``,
in group commits); a key's records are appended in the key change's own
transaction (:func:`key_logged`). This module reads them for the subject's report,
and :func:`record_access` writes one for a read made outside the service. Every
writer builds the payload with :func:`access_payload` (``principal``, ``name``,
``role``, ``purpose``, ``read``, ``request_id``, details). An erased subject's log
is purged with everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trustledger.ledger import Entry, Ledger
from trustledger.principals import Principal, Record, Role
from trustledger.rights import fields
from trustledger.rights.records import recorded

READ = "access.read"
"""Record kind of one read of a subject's data (or of an operator's action about them)."""
KEY_PURPOSE = "key management"
"""Access-log purpose of an operator issuing or revoking a subject's key."""
ISSUED = "subject key issued"
"""What the access record of a subject key issued says."""
REVOKED = "subject key revoked"
"""What the access record of a subject key revoked says."""


def access_payload(principal: str, name: str, role: str, purpose: str, read: str,
                   request_id: str | None, details: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The payload of an access record: who (principal id, name, role), why, what, and more."""
    payload: dict[str, Any] = {"principal": principal, "name": name, "role": role,
                               "purpose": purpose, "read": read, "request_id": request_id}
    if details:
        payload.update(details)
    return payload


def key_logged(by: str, name: str, role: str, what: str,
               request_id: str | None = None) -> Callable[[Principal], list[Record]]:
    """The records of ``by``'s action ``what`` on a key, for :func:`add_principal`'s ``audit``.

    A subject key's issue or revocation is an access record about that subject (the
    key, not its secret, named); other principals' keys are about no subject: none.
    """

    def records(key: Principal) -> list[Record]:
        if key.role is not Role.SUBJECT or key.subject is None:
            return []
        return [Record(READ, access_payload(by, name, role, KEY_PURPOSE, what, request_id,
                                            {"key": key.id, "key_name": key.name}),
                       key.subject)]

    return records


@dataclass(frozen=True, slots=True)
class Access:
    """One read of a subject's data: who (principal id, name, role), what, and why."""

    seq: int
    subject: str
    at: datetime
    principal: str
    name: str
    role: str
    purpose: str
    read: str
    request_id: str | None = None


def fold_access(entries: Iterable[Entry], at: datetime | None = None) -> list[Access]:
    """The reads among ``entries`` (in ledger order) recorded by ``at``; purged ones left out."""
    out = []
    for entry, payload in recorded(entries, (READ,), at):
        if entry.subject is None:
            continue
        principal = str(payload.get("principal", ""))
        request_id = payload.get("request_id")
        out.append(Access(
            seq=entry.seq, subject=entry.subject, at=entry.recorded_at, principal=principal,
            name=str(payload.get("name") or principal), role=str(payload.get("role", "")),
            purpose=str(payload.get("purpose", "")), read=str(payload.get("read", "")),
            request_id=request_id if isinstance(request_id, str) else None,
        ))
    return out


def record_access(
    ledger: Ledger, subject: str, principal: str, role: str, purpose: str, read: str
) -> Access:
    """Record a read of ``subject``'s data made outside the HTTP service; returns it.

    ``principal`` names who read (also used as the name), ``role`` their role
    (``operator``, ``reviewer``, ...), ``read`` what was read (``report``,
    ``decision``, ...). Raises :class:`~trustledger.errors.InputError` naming a bad
    field; nothing is recorded then.
    """
    payload = access_payload(fields.name("principal", principal), principal,
                             fields.name("role", role), fields.name("purpose", purpose),
                             fields.name("read", read), None)
    fields.name("subject", subject)
    entry = ledger.append_record(READ, payload, subject=subject)
    (access,) = fold_access([entry])
    return access


def access_log(ledger: Ledger, subject: str, at: datetime | None = None) -> list[Access]:
    """Every recorded read of the subject's data, oldest first, as recorded by ``at``."""
    return fold_access(ledger.records(kind=READ, subject=subject), at)
