"""Columnar checks of event batches: the one validation of every bulk path.

``trustledger ingest`` (CSV, JSON Lines, Parquet) and the HTTP batch endpoint hand
their rows to :func:`check_batch` as an :class:`EventBatch` of Arrow columns, so both
refuse the same events with the same messages. The checks run in two steps:

1. **Vectorised** (Arrow compute and NumPy over the whole batch): names are 1-256
   characters without control characters or surrounding space, ``occurred_at`` is an
   aware moment within the years 1-9999 in UTC, ``attributes`` is a plain JSON object,
   a retraction names what it withdraws and carries no attributes, nothing supersedes
   itself, the event type is one of the policy's and its attributes fit the type's
   schema and bounds, the source is accredited for the type. Work that cannot be done
   column-wise (parsing an ``attributes`` text, checking it against the policy) is done
   once per *distinct* value in the batch, not once per row.
2. **Exact**, only for the rows step 1 flags: the per-event rule functions every path
   shares (:class:`~trustledger.ledger.EventIn`, the policy's
   :meth:`~trustledger.policy.compiled.CompiledEventType.normalise`, the accreditation
   rule :func:`accreditation_problem`) name each problem's field and reason. Step 1
   flags a superset of the rows step 2 refuses, so a row is refused exactly when the
   per-event rules refuse it, with exactly their message.

Clean rows get their canonical payload text (the encoding of
:mod:`trustledger.ledger.chain`) assembled column-wise by :func:`payload_texts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from trustledger.events import RETRACTION
from trustledger.ledger.chain import CANONICAL, EPOCH, json_problems, to_us
from trustledger.ledger.models import EventIn, validation_problems

if TYPE_CHECKING:
    from trustledger.ledger.store import Validator
    from trustledger.policy import CompiledPolicy

NAMES = ("source", "source_event_id", "subject", "type")
"""The required name columns."""

FIELDS = (*NAMES, "occurred_at", "attributes", "supersedes")
"""Every field of an event row, in column order."""

MIN_US = to_us(datetime(1, 1, 1, tzinfo=EPOCH.tzinfo))
"""The earliest ``occurred_at`` the ledger stores (0001-01-01T00:00:00Z), in µs."""

MAX_US = to_us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=EPOCH.tzinfo))
"""The latest ``occurred_at`` the ledger stores (9999-12-31T23:59:59.999999Z), in µs."""

# A conservative form of models._TEXT_PATTERN in RE2: every name it accepts, pydantic's
# pattern accepts too; names it refuses (non-ASCII at either end, say) go to step 2.
_SAFE_NAME = r"^[!-~](?:[^\x00-\x1f\x7f]*[!-~])?$"
_AWARE = TypeAdapter(list[AwareDatetime])
_US = timedelta(microseconds=1)
_DEEP = 120  # shorter JSON text cannot nest 64 deep (json_problems' limit): 2 chars a level


# -- the problems ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem with one row: where (line, row or item number), which field, why, rule."""

    line: int
    field: str
    reason: str
    unit: str = "line"
    rule: str = ""
    """The rule broken: ``name``, ``required``, ``unknown-field``, ``timestamp``,
    ``attributes``, ``event-type``, ``attribute-schema``, ``accreditation``,
    ``retraction``, ``supersedes``, ``duplicate`` or ``row`` (unreadable row)."""

    def __str__(self) -> str:
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{self.unit} {self.line}: {self.field}: {self.reason}{rule}"


def rule_of(field: str, reason: str) -> str:
    """The rule a ``(field, reason)`` problem of the per-event checks breaks."""
    if field == "occurred_at":
        return "timestamp"
    if field.startswith("attributes"):
        return "attributes"
    if field == "supersedes":
        return "retraction" if RETRACTION in reason else "supersedes"
    if reason == "required":
        return "required"
    if reason == "unknown field":
        return "unknown-field"
    if field == "(row)":
        return "row"
    return "name"


def accreditation_problem(source: str, kind: str,
                          sources: Mapping[str, frozenset[str]]) -> tuple[str, str] | None:
    """Why ``source`` may not report an event of type ``kind`` (``(field, reason)``), if so.

    The one accreditation rule of every path: the HTTP API (the caller's principal) and
    file ingest (the source principals registered in the ledger). A retraction needs no
    accreditation: a source may always withdraw its own event.
    """
    if kind == RETRACTION:
        return None
    accredited = sources.get(source)
    if accredited is None:
        return "source", (f"{source!r} is not a registered source; register it with "
                          f"`trustledger principal add {source} --role source --accredit TYPE "
                          "--domain DOMAIN`")
    if kind in accredited:
        return None
    return "type", (f"{source!r} is not accredited for event type {kind!r} (or the type's "
                    "domain in the event-type register is not one of the source's); "
                    f"accredited: {', '.join(sorted(accredited))}")


def policy_problem(event: EventIn, policy: CompiledPolicy,
                   recorded_at: datetime | None = None) -> tuple[str, str] | None:
    """Why an event does not fit the policy's type and attribute schema, if it does not.

    The one policy check of an event on every ingest path (see
    :func:`trustledger.ledger.ingest.schema_validator`); with ``recorded_at`` (the
    moment of appending) the type's reported dates are checked too
    (:meth:`~trustledger.policy.compiled.CompiledEventType.check_dates`).
    """
    if event.type == RETRACTION:
        if event.attributes:
            return "attributes", "a retraction carries no attributes"
        return None
    spec = policy.event_types.get(event.type)
    if spec is None:
        return "type", f"{event.type!r} is not an event type of policy {policy.name}"
    normal = spec.normalise(event.attributes, occurred_at=event.occurred_at,
                            recorded_at=recorded_at)
    return ("attributes", normal) if isinstance(normal, str) else None


def _plain_types(policy: CompiledPolicy) -> frozenset[str]:
    """Event types whose attributes are checked by value alone (no ``date`` attribute).

    A reported date is checked against the event's ``occurred_at`` and the moment of
    appending, so rows of types with one are checked row by row; so are the rows of
    any attribute type this module does not know.
    """
    from trustledger.policy.models import AttributeType

    by_value = {AttributeType.INTEGER, AttributeType.NUMBER, AttributeType.STRING,
                AttributeType.BOOLEAN, AttributeType.ENUM}
    return frozenset(name for name, spec in policy.event_types.items()
                     if all(a.type in by_value for a in spec.attributes))


def _policy_rule(field: str) -> str:
    return "event-type" if field == "type" else "attribute-schema"


@dataclass(frozen=True)
class EventRules:
    """What events must satisfy beyond the ledger's own rules.

    ``policy``: the event type must be one of the policy's and the attributes fit its
    schema (and its reported dates, given ``recorded_at``). ``sources``: source name ->
    the event types it is accredited for (``None``: no accreditation check).
    ``validate``: any other per-event check (run per row).
    """

    policy: CompiledPolicy | None = None
    sources: Mapping[str, frozenset[str]] | None = None
    validate: Validator | None = None
    recorded_at: datetime | None = None
    """The moment of appending, for the policy's reported dates (``None``: not checked)."""


# -- the batch ---------------------------------------------------------------------------------


@dataclass
class EventBatch:
    """Rows of events as columns, with their line (row, item) numbers.

    ``occurred_us`` is ``occurred_at`` in µs since the epoch (UTC) where it could be
    read; ``suspect`` marks rows already known to need the exact check (step 2);
    ``raw(i)`` gives row ``i`` as it was read, for the exact check and for a rejects file.
    """

    lines: np.ndarray
    source: pa.Array
    source_event_id: pa.Array
    subject: pa.Array
    type: pa.Array
    occurred_us: np.ndarray
    attributes: pa.Array
    supersedes: pa.Array
    suspect: np.ndarray
    raw: Callable[[int], Any]
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    """Problems found while reading: ``(index, field, reason)``."""
    json_text: bool = True
    """Whether ``raw`` rows hold ``attributes`` as JSON text (CSV, Parquet)."""

    def __len__(self) -> int:
        return len(self.lines)

    def piece(self, start: int, stop: int) -> EventBatch:
        """Rows ``start`` to ``stop`` (exclusive) as a batch of their own, checked alike.

        Its columns are copies, not slices: a slice would carry (and pickle) the
        whole batch's buffers.
        """
        raw = self.raw
        rows = pa.array(np.arange(start, stop, dtype=np.int64))

        def own(values: pa.Array) -> pa.Array:
            return values.take(rows)

        return EventBatch(
            self.lines[start:stop].copy(), own(self.source), own(self.source_event_id),
            own(self.subject), own(self.type), self.occurred_us[start:stop].copy(),
            own(self.attributes), own(self.supersedes), self.suspect[start:stop].copy(),
            lambda i: raw(i + start),
            [(index - start, name, reason) for index, name, reason in self.problems
             if start <= index < stop],
            self.json_text,
        )


def _strings(values: Any) -> pa.Array:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_null(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


def string_column(kind: pa.DataType) -> bool:
    """Whether an Arrow column of this type can hold a name or JSON text."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_null(kind))


def from_arrow(batch: pa.RecordBatch, first_line: int) -> EventBatch:
    """An Arrow record batch of a file whose columns were checked (see ingest.py)."""
    n = batch.num_rows
    names = set(batch.schema.names)
    columns = {name: (_strings(batch.column(name)) if name in names
                      else pa.nulls(n, pa.string()))
               for name in (*NAMES, "attributes", "supersedes")}
    stamps = batch.column("occurred_at")
    suspect = np.zeros(n, dtype=bool)
    if pa.types.is_timestamp(stamps.type):
        # Arrow keeps timestamps as UTC instants whatever their zone: the integers are exact.
        values = stamps.cast(pa.int64())
        nulls = _mask(pc.is_null(values))
        occurred = np.asarray(pc.fill_null(values, 0).to_numpy(zero_copy_only=False),
                              dtype=np.int64)
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0}[stamps.type.unit]
        if scale == 0:  # sub-microsecond digits are dropped: the ledger keeps microseconds
            occurred = np.floor_divide(occurred, 1000)
        elif scale > 1:
            beyond = (occurred < MIN_US // scale - 1) | (occurred > MAX_US // scale + 1)
            occurred = np.where(beyond, MAX_US + 1, occurred * np.where(beyond, 1, scale))
        suspect |= nulls | (occurred < MIN_US) | (occurred > MAX_US)
        texts = None
    else:
        texts = _strings(stamps).to_pylist()
        occurred, bad = _parse_moments(texts)
        suspect |= bad

    lines = np.arange(first_line, first_line + n, dtype=np.int64)

    def raw(i: int) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name in batch.schema.names:
            if name == "occurred_at" and texts is None:
                row[name] = _moment(stamps, i, int(occurred[i]))
            else:
                row[name] = batch.column(name)[i].as_py()
        return row

    return EventBatch(lines, columns["source"], columns["source_event_id"], columns["subject"],
                      columns["type"], occurred, columns["attributes"], columns["supersedes"],
                      suspect, raw)


def _moment(stamps: pa.Array, i: int, us: int) -> datetime | _Unreadable | None:
    """Row ``i`` of a timestamp column as a date-time, if Python can hold it."""
    if not stamps[i].is_valid:
        return None
    if MIN_US <= us <= MAX_US:
        return EPOCH + us * _US
    return _Unreadable(f"{stamps.cast(pa.int64())[i].as_py()} {stamps.type.unit} after "
                       "1970-01-01T00:00:00Z")


class _Unreadable(str):
    """A timestamp of a Parquet file no Python date-time can hold (beyond the year 9999)."""

    __slots__ = ()


def _parse_moments(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Aware date-times (ISO 8601 text or ``datetime``) as µs, and which could not be read.

    Text is read by pydantic's ``AwareDatetime``, exactly as :class:`EventIn` reads it;
    numbers are never read as Unix times.
    """
    n = len(values)
    occurred = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    readable: list[Any] = []
    where: list[int] = []
    for i, value in enumerate(values):
        kind = type(value)
        if kind is str or kind is datetime:
            readable.append(value)
            where.append(i)
        else:
            bad[i] = True
    try:
        moments = _AWARE.validate_python(readable)
    except ValidationError as err:
        failed = {error["loc"][0] for error in err.errors(include_url=False)}
        keep = [j for j in range(len(readable)) if j not in failed]
        for j in failed:
            bad[where[int(j)]] = True
        moments = _AWARE.validate_python([readable[j] for j in keep])
        where = [where[j] for j in keep]
    for i, moment in zip(where, moments, strict=True):
        try:
            occurred[i] = (moment - EPOCH) // _US
        except OverflowError:
            bad[i] = True
            continue
        if occurred[i] < MIN_US or occurred[i] > MAX_US:
            bad[i] = True
    return occurred, bad


def from_rows(lines: Sequence[int], rows: Sequence[Any], *, json_text: bool = False
              ) -> EventBatch:
    """Rows read one by one (JSON Lines, CSV, an HTTP batch) as a batch.

    Each row is a mapping of field names to values; anything else, or a value of the
    wrong kind (a number for a name, say), marks the row for the exact check, which
    names the problem. With ``json_text``, ``attributes`` is JSON text (CSV cells).
    """
    n = len(rows)
    suspect = np.zeros(n, dtype=bool)
    columns: dict[str, list[Any]] = {name: [None] * n for name in FIELDS}
    attributes = columns["attributes"]
    dumps = orjson.dumps
    known = set(FIELDS)
    for i, row in enumerate(rows):
        if type(row) is not dict:
            suspect[i] = True
            continue
        if not row.keys() <= known:
            suspect[i] = True
        for name in (*NAMES, "supersedes"):
            value = row.get(name)
            if value is None or type(value) is str:
                columns[name][i] = value
            else:
                suspect[i] = True
        if json_text and row.get("supersedes") == "":
            columns["supersedes"][i] = None  # an empty cell: none
        columns["occurred_at"][i] = row.get("occurred_at")
        value = row.get("attributes")
        if value is None and not json_text and "attributes" in row:
            suspect[i] = True  # JSON null is not an object: the exact check says so
        if value is None or (json_text and value == ""):
            continue
        if json_text:
            attributes[i] = value if type(value) is str else None
            suspect[i] |= type(value) is not str
        elif type(value) is dict:
            try:
                attributes[i] = dumps(value).decode()
            except (orjson.JSONEncodeError, TypeError):
                suspect[i] = True
        else:
            suspect[i] = True
    occurred, bad = _parse_moments(columns["occurred_at"])
    suspect |= bad
    array = [pa.array(columns[name], pa.string()) for name in (*NAMES, "attributes",
                                                                  "supersedes")]
    return EventBatch(np.asarray(lines, dtype=np.int64), array[0], array[1], array[2],
                      array[3], occurred, array[4], array[5], suspect, rows.__getitem__,
                      json_text=json_text)


# -- the checks --------------------------------------------------------------------------------


@dataclass
class Checked:
    """A batch after :func:`check_batch`: which rows are clean, and what is wrong with the rest.

    ``canonical`` holds each clean row's attributes as canonical JSON text, and
    ``occurred_us`` its ``occurred_at``; ``problems`` names every bad row.
    """

    batch: EventBatch
    ok: np.ndarray
    canonical: pa.Array
    occurred_us: np.ndarray
    problems: list[tuple[int, str, str, str]]
    """``(index, field, reason, rule)`` per problem."""


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _names_ok(values: pa.Array, *, optional: bool) -> np.ndarray:
    """Rows whose name surely keeps the name rule: 1-256 characters matching ``_SAFE_NAME``.

    Read byte by byte from the column's buffers (NumPy, no per-row work): the first and
    the last byte an ASCII character from ``!`` to ``~``, no C0 control or DEL byte
    (in UTF-8 these bytes are never part of another character), 1-256 bytes (longer
    ones: 1-256 characters). These are exactly the rows :func:`_names_ok_regex` keeps.
    """
    n = len(values)
    if not pa.types.is_string(values.type) or n == 0:
        return _names_ok_regex(values, optional=optional)
    valid = np.ones(n, dtype=bool) if values.null_count == 0 else _mask(pc.is_valid(values))
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[values.offset:values.offset + n + 1]
    starts, ends = offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64)
    sizes = ends - starts
    ok = valid & (sizes >= 1)
    if ok.any():
        data = np.frombuffer(data_buffer, dtype=np.uint8)
        first, last = data[np.where(ok, starts, 0)], data[np.where(ok, ends - 1, 0)]
        ok &= (first >= 0x21) & (first <= 0x7E) & (last >= 0x21) & (last <= 0x7E)
        region = data[int(offsets[0]):int(offsets[-1])]
        control = np.flatnonzero((region < 0x20) | (region == 0x7F))
        if len(control):
            ok[np.searchsorted(offsets, control + offsets[0], side="right") - 1] = False
        long = ok & (sizes > 256)
        if long.any():
            ok &= ~long | _mask(pc.less_equal(pc.utf8_length(values), 256))
    if optional:
        ok |= ~valid
    return ok


def _names_ok_regex(values: pa.Array, *, optional: bool) -> np.ndarray:
    """:func:`_names_ok` with Arrow's string kernels, for any string column."""
    length = pc.utf8_length(values)
    fine = pc.and_(pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, 256)),
                   pc.match_substring_regex(values, _SAFE_NAME))
    ok = _mask(fine)
    if optional:
        ok |= _mask(pc.is_null(values))
    return ok


def check_batch(batch: EventBatch, rules: EventRules) -> Checked:
    """Check every row of a batch (see the module docstring); never raises for a bad row."""
    n = len(batch)
    suspect = batch.suspect.copy()
    for name in NAMES:
        suspect |= ~_names_ok(getattr(batch, name), optional=False)
    suspect |= ~_names_ok(batch.supersedes, optional=True)
    has_target = _mask(pc.is_valid(batch.supersedes))
    retraction = _mask(pc.equal(batch.type, RETRACTION))
    suspect |= retraction & ~has_target
    suspect |= _mask(pc.equal(batch.supersedes, batch.source_event_id))

    # Attributes: parsed, checked and made canonical once per distinct text.
    encoded = pc.fill_null(batch.attributes, "{}").dictionary_encode()
    texts = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    canonical: list[str] = []
    parsed: list[dict[str, Any] | None] = []
    loads = orjson.loads
    for text in texts:
        try:
            value = loads(text)
        except orjson.JSONDecodeError:
            value = None
        # orjson reads only plain JSON values (64-bit or float numbers, finite, valid
        # Unicode); only the nesting limit is left to check, where it can be reached.
        if type(value) is not dict or (
            len(text) > _DEEP and json_problems(value, "attributes")
        ):
            parsed.append(None)
            canonical.append("")
            continue
        parsed.append(value)
        canonical.append(orjson.dumps(value, option=CANONICAL).decode())
    bad_text = np.array([value is None for value in parsed] + [False], dtype=bool)
    suspect |= bad_text[codes]
    empty = np.array([value == {} for value in parsed] + [False], dtype=bool)
    suspect |= retraction & ~empty[codes]

    if rules.policy is not None:
        suspect |= _policy_suspects(batch, rules.policy, codes, parsed, suspect)
    if rules.sources is not None:
        suspect |= _accreditation_suspects(batch, rules.sources)

    occurred = batch.occurred_us.copy()
    extra_texts: list[str] = []
    ok = ~suspect
    problems: list[tuple[int, str, str, str]] = []
    codes = codes.astype(np.int64)
    preset = {index for index, _, _ in batch.problems}
    cleared: dict[int, EventIn] = {}  # rows step 1 flagged and step 2 found valid
    for i in np.flatnonzero(suspect):
        if int(i) in preset:
            ok[i] = False
            continue
        found, event = _exact(batch.raw(int(i)), rules, batch.json_text)
        if found:
            problems.extend((int(i), f, reason, rule) for f, reason, rule in found)
            continue
        assert event is not None
        ok[i] = True
        occurred[i] = to_us(event.occurred_at)
        codes[i] = len(canonical) + len(extra_texts)
        extra_texts.append(orjson.dumps(event.attributes, option=CANONICAL).decode())
        cleared[int(i)] = event
    if cleared:
        _take_values(batch, cleared)
    if rules.validate is not None:
        for i in np.flatnonzero(ok):
            event = event_of_row(batch.raw(int(i)), batch.json_text)
            found_extra = rules.validate(event)
            if found_extra:
                ok[i] = False
                problems.extend((int(i), f, reason, "validate") for f, reason in found_extra)
    for index, name, reason in batch.problems:
        ok[index] = False
        problems.append((index, name, reason, "row"))
    problems.sort(key=lambda problem: problem[0])
    table = pa.array(canonical + extra_texts, pa.string())
    return Checked(batch, ok, table.take(pa.array(codes)) if n else table, occurred, problems)


def _take_values(batch: EventBatch, events: Mapping[int, EventIn]) -> None:
    """Put the fields of events the exact check read (an empty cell: none) into the batch."""
    for name in (*NAMES, "supersedes"):
        values = getattr(batch, name).to_pylist()
        for index, event in events.items():
            values[index] = getattr(event, name)
        setattr(batch, name, pa.array(values, pa.string()))


def _policy_suspects(batch: EventBatch, policy: CompiledPolicy, codes: np.ndarray,
                     parsed: list[dict[str, Any] | None], suspect: np.ndarray) -> np.ndarray:
    """Rows whose type is not the policy's, or whose attributes do not fit the type."""
    out = np.zeros(len(batch), dtype=bool)
    kinds = pc.fill_null(batch.type, "").dictionary_encode()
    names = kinds.dictionary.to_pylist()
    kind_codes = kinds.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # One check per distinct (type, attributes) pair among the rows not already flagged.
    plain = _plain_types(policy)
    width = len(parsed) + 1
    pairs = kind_codes * width + codes
    fine: dict[int, bool] = {}
    for pair in np.unique(pairs[~suspect]):
        kind, attrs = names[int(pair) // width], parsed[int(pair) % width]
        if kind == RETRACTION:
            fine[int(pair)] = attrs == {}
            continue
        spec = policy.event_types.get(kind)
        fine[int(pair)] = kind in plain and spec is not None and attrs is not None \
            and not isinstance(spec.normalise(attrs), str)
    for pair, good in fine.items():
        if not good:
            out |= pairs == pair
    return out


def _accreditation_suspects(batch: EventBatch, sources: Mapping[str, frozenset[str]],
                            ) -> np.ndarray:
    out = np.zeros(len(batch), dtype=bool)
    retraction = _mask(pc.equal(batch.type, RETRACTION))
    for source in pc.unique(pc.drop_null(batch.source)).to_pylist():
        rows = _mask(pc.equal(batch.source, source))
        accredited = sources.get(source)
        if accredited is None:
            out |= rows & ~retraction
            continue
        allowed = _mask(pc.is_in(batch.type, pa.array(sorted(accredited), pa.string())))
        out |= rows & ~allowed & ~retraction
    return out


def event_of_row(raw: Any, json_text: bool) -> EventIn:
    """The event of a row :func:`check_batch` found clean (``ValueError`` if it is not)."""
    found, event = _exact(raw, EventRules(), json_text)
    if event is None:
        raise ValueError(f"not a valid event: {found}")
    return event


def _exact(raw: Any, rules: EventRules, json_text: bool,
           ) -> tuple[list[tuple[str, str, str]], EventIn | None]:
    """The per-event rules applied to one row: its problems, or the valid event.

    With ``json_text``, ``attributes`` is JSON text (a CSV cell, a Parquet string) and
    empty ``attributes`` and ``supersedes`` cells mean none.
    """
    if not isinstance(raw, dict):
        return [("(event)", f"not an event (a {type(raw).__name__})", "row")], None
    row = dict(raw)
    stamp = row.get("occurred_at")
    if isinstance(stamp, _Unreadable):
        return [("occurred_at", f"{stamp} is outside the representable range "
                 "(0001-01-01 to 9999-12-31 in UTC)", "timestamp")], None
    if json_text:
        for name in ("attributes", "supersedes"):
            if row.get(name) == "":
                row.pop(name)
    text = row.get("attributes")
    if json_text and type(text) is str:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            return [("attributes", f"invalid JSON: {err}", "attributes")], None
        if type(value) is not dict:
            return [("attributes", "must be a JSON object", "attributes")], None
        row["attributes"] = value
    if json_text:
        for name in ("attributes", "supersedes"):
            if row.get(name) is None:
                row.pop(name, None)
    try:
        event = EventIn.model_validate(row)
    except ValidationError as err:
        return [(f, reason, rule_of(f, reason)) for f, reason in validation_problems(err)], None
    found: list[tuple[str, str, str]] = []
    if rules.sources is not None:
        refused = accreditation_problem(event.source, event.type, rules.sources)
        if refused is not None:
            found.append((*refused, "accreditation"))
    if rules.policy is not None:
        misfit = policy_problem(event, rules.policy, rules.recorded_at)
        if misfit is not None:
            found.append((*misfit, _policy_rule(misfit[0])))
    return found, (None if found else event)


# -- payloads ----------------------------------------------------------------------------------


def json_text(values: pa.Array) -> pa.Array:
    r"""Names as the inside of JSON string literals, as orjson writes them.

    Only ``\`` and ``"`` need escaping: names hold no control characters, and orjson
    writes every other character as it is (UTF-8).
    """
    if not _holds(values, b"\\") and not _holds(values, b'"'):
        return values
    return pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')


def _holds(values: pa.Array, byte: bytes) -> bool:
    """Whether any text of a string column (or a null's slot) holds the ASCII ``byte``."""
    if not pa.types.is_string(values.type):
        return bool(pc.any(pc.match_substring(values, byte.decode())).as_py())
    _, offsets, data = values.buffers()
    if data is None or len(values) == 0:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[[values.offset, values.offset + len(values)]]
    return byte in memoryview(data)[int(bounds[0]):int(bounds[1])].tobytes()


def json_string(values: pa.Array) -> pa.Array:
    """Names as JSON string literals, as orjson writes them (see :func:`json_text`)."""
    return pc.binary_join_element_wise('"', json_text(values), '"', "")


def iso_texts(us: np.ndarray) -> pa.Array:
    """µs since the epoch as orjson writes aware UTC date-times (``...T10:00:00.250000Z``).

    Microseconds are written when there are any, and then always six digits.
    """
    text = pa.array(us, pa.timestamp("us")).cast(pa.string())  # 2025-03-01 10:00:00.250000
    text = pc.utf8_replace_slice(text, 10, 11, "T")
    whole = pa.array(us % 1_000_000 == 0)
    return pc.binary_join_element_wise(
        pc.if_else(whole, pc.utf8_slice_codeunits(text, 0, 19), text), "Z", "")


def payload_texts(checked: Checked, rows: np.ndarray) -> pa.Array:
    """The canonical payload text of the rows at ``rows`` (indexes of clean rows)."""
    batch = checked.batch
    take = None if len(rows) == len(batch) else pa.array(rows, pa.int64())

    def pick(values: pa.Array) -> pa.Array:
        return values if take is None else values.take(take)

    def name(values: pa.Array) -> pa.Array:
        return json_text(pick(values))

    supersedes = pc.fill_null(json_string(pick(batch.supersedes)), "null")
    return pc.binary_join_element_wise(
        '{"attributes":', pick(checked.canonical),
        ',"occurred_at":"', iso_texts(checked.occurred_us[rows]),
        '","source":"', name(batch.source),
        '","source_event_id":"', name(batch.source_event_id),
        '","subject":"', name(batch.subject),
        '","supersedes":', supersedes,
        ',"type":"', name(batch.type), '"}', "",
    )
