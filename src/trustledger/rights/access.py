"""The access log as the subject sees it: who read their data, when, for what purpose.

Every read of a subject's data by someone other than the subject is an
``access.read`` ledger record about the subject (safeguards 5 and 7). The HTTP
service writes them (``trustledger.api.access``, in group commits); this module
reads them for the subject's report, and :func:`record_access` writes one for a
read made outside the service (the same payload: ``principal``, ``name``,
``role``, ``purpose``, ``read``, ``request_id``). An erased subject's log is
purged with everything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from trustledger.ledger import Entry, Ledger
from trustledger.rights import fields
from trustledger.rights.records import recorded

READ = "access.read"
"""Record kind of one read of a subject's data."""


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
    payload = {
        "principal": fields.name("principal", principal),
        "name": principal,
        "role": fields.name("role", role),
        "purpose": fields.name("purpose", purpose),
        "read": fields.name("read", read),
        "request_id": None,
    }
    fields.name("subject", subject)
    entry = ledger.append_record(READ, payload, subject=subject)
    (access,) = fold_access([entry])
    return access


def access_log(ledger: Ledger, subject: str, at: datetime | None = None) -> list[Access]:
    """Every recorded read of the subject's data, oldest first, as recorded by ``at``."""
    return fold_access(ledger.records(kind=READ, subject=subject), at)
