"""Checks of the fields a subject, source or reviewer gives, each error naming its field.

Every write in :mod:`trustledger.rights` checks all of its input first and only
then appends to the ledger, so a refused request changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from trustledger.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from trustledger.ledger import Ledger

MAX_NAME = 256
"""Longest name (subject, source, party, purpose, reviewer), as the ledger's columns allow."""

MAX_TEXT = 4000
"""Longest free text (a dispute's reason, a reviewer's written reason, a statement)."""


def name(field: str, value: str) -> str:
    """``value`` if it is a usable name: 1-256 characters, no surrounding spaces."""
    if not isinstance(value, str) or not value or value.strip() != value:
        raise InputError(f"{field}: must be a non-empty name without surrounding spaces")
    if len(value) > MAX_NAME or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InputError(f"{field}: must be at most {MAX_NAME} characters, no control characters")
    return value


def text(field: str, value: str, *, required: bool = True) -> str:
    """``value`` stripped, if it is usable free text (required unless ``required=False``)."""
    if not isinstance(value, str):
        raise InputError(f"{field}: must be text")
    stripped = value.strip()
    if required and not stripped:
        raise InputError(f"{field}: required (a few words saying why)")
    if len(stripped) > MAX_TEXT:
        raise InputError(f"{field}: at most {MAX_TEXT} characters")
    if "\x00" in stripped:
        raise InputError(f"{field}: must not contain NUL characters")
    return stripped


def moment(field: str, value: datetime) -> datetime:
    """``value`` in UTC, if it is a timezone-aware date-time."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InputError(f"{field}: must be a timezone-aware date-time")
    return value.astimezone(UTC)


def seq(field: str, value: int) -> int:
    """``value`` if it is a ledger position (a positive integer)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{field}: must be a ledger seq (a positive integer)")
    return value


def day(value: datetime) -> str:
    """``YYYY-MM-DD`` (UTC) of a moment, as reasons and notes show dates."""
    return value.astimezone(UTC).date().isoformat()


def case_subject(ledger: Ledger, field: str, value: int, kind: str, what: str) -> str:
    """The subject of the entry at ``value`` if it opened a case of ``kind``.

    Used to find a dispute or review request by its seq; raises :class:`NotFoundError`
    naming ``field`` when there is no such entry, it is of another kind, or it has no subject.
    """
    seq(field, value)
    try:
        entry = ledger.entry(value)
    except NotFoundError:
        entry = None
    if entry is None or entry.kind != kind or entry.subject is None:
        raise NotFoundError(f"{field}: there is no {what} {value}")
    return entry.subject
