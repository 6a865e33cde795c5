"""The hash chain: canonical encoding of entries, their hashes, and the walk that checks them.

The encoding, once and for all (format ``trustledger/1``)::

    payload bytes  = JSON of the payload object, UTF-8, keys sorted, no whitespace
                     (orjson with OPT_SORT_KEYS; date-times as RFC 3339 with "Z")
    payload_hash   = hex(SHA-256(payload bytes))
    header bytes   = JSON array ["trustledger/1", seq, kind, subject, recorded_at_us,
                                 source, source_event_id, payload_hash]
    hash           = hex(SHA-256(header bytes || prev_hash as 64 ASCII hex digits))

``recorded_at_us`` is microseconds since the Unix epoch (UTC). ``source`` and
``source_event_id`` are ``null`` for entries that are not events. The first
entry's ``prev_hash`` is :data:`GENESIS`. Because the header carries only the
payload's hash, a payload can be purged (stored as NULL) and the chain still
verifies; the purge itself is a later entry of kind ``purge`` naming the seq.

The walk proves a chain consistent, not that it is the chain there was: a truncated
or wholly re-hashed chain is consistent too. Signed checkpoints of the head, kept
outside the ledger (:mod:`trustledger.ledger.checkpoint`), catch those.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from trustledger.errors import IntegrityError

FORMAT = "trustledger/1"
"""Version tag at the head of every entry header; a new encoding gets a new tag."""

GENESIS = "0" * 64
"""The ``prev_hash`` of the first entry (and the head hash of an empty ledger)."""

EVENT_KIND = "event"
"""Entry kind of a source's event."""

PURGE_KIND = "purge"
"""Entry kind recording that an earlier entry's payload was purged."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Origin of ``recorded_at_us``."""

_US = timedelta(microseconds=1)
CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z
"""orjson options of the canonical payload encoding."""

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_MAX_DEPTH = 64
_sha256 = hashlib.sha256


class StoredEntry(NamedTuple):
    """One row of the ``entries`` table, column for column (also the export record)."""

    seq: int
    kind: str
    subject: str | None
    source: str | None
    source_event_id: str | None
    recorded_at_us: int
    payload: str | None
    payload_hash: str
    prev_hash: str
    hash: str


COLUMNS: tuple[str, ...] = StoredEntry._fields
"""Column names of the ``entries`` table, in table (and export) order."""


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of a timezone-aware date-time."""
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The UTC date-time ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def iso(moment: datetime) -> str:
    """A UTC date-time as RFC 3339 text with microseconds and ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_problems(value: Any, path: str) -> list[tuple[str, str]]:
    """Why ``value`` is not a plain JSON value: ``(path, reason)`` pairs, empty when it is.

    Plain JSON means: ``None``, ``bool``, ``int`` within 64 bits, finite ``float``,
    ``str`` (valid Unicode), lists and dicts with ``str`` keys, nested at most 64 deep.
    Anything else would be changed or refused by the canonical encoding.
    """
    if type(value) is dict:
        # Fast path for the usual flat object of ASCII text and numbers: one loop, no calls.
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or not (
                (kind is str and item.isascii())
                or (kind is float and item - item == 0.0)  # false for NaN and infinities
                or (kind is int and _INT_MIN <= item <= _INT_MAX)
                or kind is bool
                or item is None
            ):
                break
        else:
            return []
    return _json_problems(value, path, 0)


def _json_problems(value: Any, path: str, depth: int) -> list[tuple[str, str]]:
    kind = type(value)
    if value is None or kind is bool or (kind is str and value.isascii()):
        return []
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [(path, "text is not valid Unicode (lone surrogate)")]
        return []
    if kind is int:
        return [] if _INT_MIN <= value <= _INT_MAX else [(path, "integer out of 64-bit range")]
    if kind is float:
        return [] if math.isfinite(value) else [(path, "number must be finite (no NaN/Infinity)")]
    if depth >= _MAX_DEPTH:
        return [(path, f"nested deeper than {_MAX_DEPTH} levels")]
    if kind is dict:
        problems: list[tuple[str, str]] = []
        for key, item in value.items():
            if type(key) is not str:
                problems.append((path, f"key {key!r} is not text"))
                continue
            problems.extend(_json_problems(item, f"{path}.{key}", depth + 1))
        return problems
    if kind is list or kind is tuple:
        problems = []
        for index, item in enumerate(value):
            problems.extend(_json_problems(item, f"{path}[{index}]", depth + 1))
        return problems
    return [(path, f"not a JSON value (a {kind.__name__})")]


def canonical(payload: Mapping[str, Any]) -> str:
    """The canonical JSON text of a payload object (see the module docstring)."""
    # Decoded at once: keeping many orjson bytes objects alive is slow with glibc's allocator.
    return orjson.dumps(payload, option=CANONICAL).decode()


def digest(text: str) -> str:
    """``hex(SHA-256(text as UTF-8))``: the hash of a canonical payload."""
    return _sha256(text.encode()).hexdigest()


def entry_hash(
    seq: int,
    kind: str,
    subject: str | None,
    recorded_at_us: int,
    source: str | None,
    source_event_id: str | None,
    payload_hash: str,
    prev_hash: str,
) -> str:
    """The hash of an entry: SHA-256 over its canonical header followed by ``prev_hash``."""
    header = orjson.dumps(
        [FORMAT, seq, kind, subject, recorded_at_us, source, source_event_id, payload_hash]
    )
    return _sha256(header + prev_hash.encode()).hexdigest()


def link(
    seq: int,
    prev_hash: str,
    kind: str,
    recorded_at_us: int,
    items: Iterable[tuple[str | None, str | None, str | None, str, str]],
) -> list[tuple[Any, ...]]:
    """Chain new entries after ``(seq, prev_hash)``: rows in :data:`COLUMNS` order.

    ``items`` are ``(subject, source, source_event_id, payload, payload_hash)``; all
    get the same ``kind`` and ``recorded_at_us``. The same hashes as
    :func:`entry_hash`, in one tight loop for bulk appends.
    """
    rows: list[tuple[Any, ...]] = []
    append, dumps, sha256 = rows.append, orjson.dumps, _sha256
    for subject, source, source_event_id, payload, payload_hash in items:
        seq += 1
        header = dumps(
            [FORMAT, seq, kind, subject, recorded_at_us, source, source_event_id, payload_hash]
        )
        hashed = sha256(header + prev_hash.encode()).hexdigest()
        append((seq, kind, subject, source, source_event_id, recorded_at_us, payload,
                payload_hash, prev_hash, hashed))
        prev_hash = hashed
    return rows


class ChainWalk:
    """Checks entries one by one, in seq order, and names the first that does not fit.

    Used by ``verify`` over the stored ledger and by ``import`` over an export file,
    so both apply exactly the same rules: consecutive seqs from 1, each ``prev_hash``
    equal to the previous entry's hash, each payload matching its ``payload_hash``,
    each hash matching the entry's content, ``recorded_at`` never going backwards,
    and every purged (NULL) payload accounted for by a later ``purge`` entry.
    """

    def __init__(self, where: str = "") -> None:
        self.entries = 0
        self.head_hash = GENESIS
        self.head_recorded_at_us = 0
        self._where = where
        self._purged: set[int] = set()

    def _fail(self, seq: int, reason: str) -> IntegrityError:
        return IntegrityError(seq, f"{reason}{self._where}")

    def step(self, row: StoredEntry) -> None:
        """Check the next entry; raise :class:`IntegrityError` naming it if it is wrong."""
        expected = self.entries + 1
        if row.seq != expected:
            if row.seq > expected:
                raise self._fail(expected, f"entry missing (the next entry found is seq={row.seq})")
            raise self._fail(row.seq, f"out of order (expected seq={expected})")
        if row.prev_hash != self.head_hash:
            raise self._fail(row.seq, "prev_hash does not match the previous entry's hash")
        if row.payload is None:
            self._purged.add(row.seq)
        elif digest(row.payload) != row.payload_hash:
            raise self._fail(row.seq, "payload does not match payload_hash")
        recomputed = entry_hash(
            row.seq, row.kind, row.subject, row.recorded_at_us, row.source,
            row.source_event_id, row.payload_hash, row.prev_hash,
        )
        if recomputed != row.hash:
            raise self._fail(row.seq, "hash does not match the entry's content")
        if row.recorded_at_us < self.head_recorded_at_us:
            raise self._fail(row.seq, "recorded_at is earlier than the previous entry's")
        if row.kind == PURGE_KIND and row.payload is not None:
            target = orjson.loads(row.payload).get("seq")
            if type(target) is not int or not 0 < target < row.seq:
                raise self._fail(row.seq, "purge entry does not name an earlier entry")
            self._purged.discard(target)
        self.entries = row.seq
        self.head_hash = row.hash
        self.head_recorded_at_us = row.recorded_at_us

    def finish(self) -> None:
        """Check what can only be checked at the end: every purge was recorded."""
        if self._purged:
            raise self._fail(min(self._purged), "payload removed without a purge entry")
