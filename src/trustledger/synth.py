"""A deterministic synthetic population: subjects and the financial events sources report.

The same ``(subjects, events, seed, end)`` always yields the same rows, so demos,
tests and benchmarks are reproducible. Each subject has a reliability drawn from a
Beta distribution; each event is drawn from the subject's reliability. The event
types and attributes are those of ``policies/sesame.yaml`` (profile ``sesame``), or the
20 attribute-free types of :data:`WIDE_POLICY` (profile ``wide``, for benchmarks).
Rows are made column by column (NumPy and Arrow compute, no per-row Python), so
100,000,000 events are generated in chunks at millions of rows per second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trustledger.errors import InputError

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
"""The default end of the simulated history (events occur in the years before it)."""

EVENT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("source_event_id", pa.string()),
        ("subject", pa.string()),
        ("type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("attributes", pa.string()),
    ]
)
"""Columns of a synthetic event table; ``attributes`` holds a JSON object per row."""

# (family, source): the good and the bad outcome of each kind of behaviour.
_FAMILIES: tuple[tuple[str, str, float], ...] = (
    ("repayment", "bank-a", 0.40),
    ("bill", "utility-a", 0.30),
    ("rental", "rentals-a", 0.25),
    ("identity", "id-check-a", 0.05),
)


WIDE_TYPES = tuple(f"kind_{i:02d}" for i in range(20))
"""The 20 event types of the ``wide`` profile (no attributes; see :data:`WIDE_POLICY`)."""

_WIDE_WEIGHTS = np.arange(20, 0, -1) / np.arange(20, 0, -1).sum()
_WIDE_SOURCES = ("bank-a", "utility-a", "rentals-a", "telco-a")
PROFILES = ("sesame", "wide")
"""The event mixes :func:`generate` can produce."""


def _wide_policy() -> str:
    lines = ["# Twenty event types, each with its own points, half-life and expiry:",
             "# the benchmark policy of bench/batch.py (trustledger synth --profile wide).",
             "policy: wide", "title: Twenty event types (benchmark)",
             "effective_from: 2023-01-01", "event_types:"]
    for i, name in enumerate(WIDE_TYPES):
        points = (5 + 3 * i) * (-1 if i % 3 == 0 else 1) / (2 if i % 4 == 1 else 1)
        half_life = (30, 90, 180, 365, 730)[i % 5]
        expiry = ("P1Y", "P18M", "P2Y", "P3Y", "P540D", "P5Y")[i % 6]
        lines += [f"  {name}:", "    domain: finance", "    category: credit_repayment",
                  f"    gravity: {'moderate' if i % 3 == 0 else 'minor'}",
                  f"    points: {points:g}", f"    decay: {{half_life: P{half_life}D}}",
                  f"    expiry: {{after: {expiry}}}", "    retention: P6Y"]
    lines += ["scorecards:", "  wide:", f"    events: [{', '.join(WIDE_TYPES)}]",
              "    base: 600", "    floor: 350", "    ceiling: 950"]
    return "\n".join(lines) + "\n"


WIDE_POLICY = _wide_policy()
"""The policy of the ``wide`` profile: 20 types, constant points, decay and expiry each,
one scorecard clamped to 350-950 (no caps, conditions or measures: the columnar path)."""


@dataclass(frozen=True)
class Population:
    """Sizes and seed of a synthetic population."""

    subjects: int
    events: int
    seed: int = 0
    end: datetime = DEFAULT_END
    years: float = 3.0
    profile: str = "sesame"
    """``sesame`` (the types of ``policies/sesame.yaml``) or ``wide`` (the 20 types of
    :data:`WIDE_POLICY`, for benchmarks)."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InputError(f"profile: {self.profile!r} is not one of {', '.join(PROFILES)}")
        if self.subjects < 1:
            raise InputError("subjects: must be at least 1")
        if self.events < 0:
            raise InputError("events: must not be negative")
        if self.end.tzinfo is None:
            raise InputError("end: must be timezone-aware")


def subject_id(index: int) -> str:
    """The id of the synthetic subject with this index."""
    return f"subject-{index:07d}"


def chunks(population: Population, *, chunk: int = 1_000_000) -> Iterator[pa.Table]:
    """The population's events as Arrow tables of at most ``chunk`` rows, one at a time.

    Only one chunk is in memory at once, so any number of events can be written.
    """
    rng = np.random.default_rng(population.seed)
    reliability = rng.beta(8.0, 2.0, size=population.subjects)
    start = 0
    while start < population.events:
        n = min(chunk, population.events - start)
        yield _chunk(rng, population, reliability, start, n)
        start += n


def generate(population: Population, *, chunk: int = 1_000_000) -> list[pa.Table]:
    """Generate the population's events as Arrow tables of at most ``chunk`` rows each."""
    return list(chunks(population, chunk=chunk))


def write_parquet(population: Population, path: Path) -> int:
    """Write the population's events to a Parquet file, chunk by chunk; returns the rows."""
    rows = 0
    with pq.ParquetWriter(path, EVENT_SCHEMA) as writer:
        for table in chunks(population):
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _chunk(
    rng: np.random.Generator,
    population: Population,
    reliability: np.ndarray,
    start: int,
    n: int,
) -> pa.Table:
    subject_idx = rng.integers(0, population.subjects, size=n)
    span_us = int(population.years * 365.25 * 86400 * 1_000_000)
    end_us = int(population.end.timestamp() * 1_000_000)
    if population.profile == "wide":
        kinds = rng.choice(len(WIDE_TYPES), size=n, p=_WIDE_WEIGHTS)
        offset_us = rng.integers(0, span_us, size=n)
        types = _strings(kinds, WIDE_TYPES)
        sources = _strings(kinds % 4, _WIDE_SOURCES)
        attributes = _strings(np.zeros(n, np.int32), ["{}"])
    else:
        family = rng.choice(len(_FAMILIES), size=n, p=[f[2] for f in _FAMILIES])
        good = rng.random(n) < reliability[subject_idx]
        offset_us = rng.integers(0, span_us, size=n)
        amount = np.round(rng.lognormal(6.0, 1.0, size=n), 2)
        days_late = rng.integers(1, 120, size=n)
        late_hours = rng.integers(1, 72, size=n)
        defaulted = rng.random(n) < 0.05
        sources, types, attributes = _sesame(family, good, defaulted, amount, days_late,
                                             late_hours)
    occurred = pa.array(end_us - offset_us, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    ids = _numbered("syn-", np.arange(start, start + n), 10)
    subjects = _numbered("subject-", subject_idx, 7)
    return pa.Table.from_arrays([sources, ids, subjects, types, occurred, attributes],
                                schema=EVENT_SCHEMA)


def _numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, vectorised (``subject-0000042``)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


_SESAME_TYPES = ("repayment_on_time", "debt_default", "repayment_late", "bill_paid",
                 "bill_overdue", "rental_returned", "identity_verified")


def _strings(codes: np.ndarray, values: tuple[str, ...] | list[str]) -> pa.Array:
    """``values[codes]`` as an Arrow string array, without Python strings per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                          pa.array(values, pa.string())).cast(pa.string())


def _sesame(family: np.ndarray, good: np.ndarray, defaulted: np.ndarray, amount: np.ndarray,
            days_late: np.ndarray, late_hours: np.ndarray,
            ) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Sources, types and JSON attributes of the Sesame event types, column by column."""
    repayment, bill, rental = family == 0, family == 1, family == 2
    kind = np.select([repayment & good, repayment & ~good & defaulted, repayment & ~good,
                      bill & good, bill & ~good, rental], [0, 1, 2, 3, 4, 5], default=6)
    text = pc.cast(pa.array(amount), pa.string())
    days = pc.cast(pa.array(days_late), pa.string())
    money = pc.binary_join_element_wise('{"amount":', text, "}", "")
    late = pc.binary_join_element_wise('{"amount":', text, ',"days_late":', days, "}", "")
    overdue = pc.binary_join_element_wise('{"days_overdue":', days, "}", "")
    hours = pc.cast(pa.array(np.where(good, 0, late_hours)), pa.string())
    returned = pc.binary_join_element_wise('{"late_hours":', hours, "}", "")
    method = _strings(good.astype(np.int32), ['{"method":"video"}', '{"method":"document"}'])
    empty = _strings(np.zeros(len(kind), np.int32), ["{}"])
    attributes = pc.case_when(
        pc.make_struct(*(pa.array(kind == k) for k in (0, 1, 2, 4, 5, 6))),
        money, money, late, overdue, returned, method, empty)
    sources = _strings(family.astype(np.int32), [f[1] for f in _FAMILIES])
    return sources, _strings(kind.astype(np.int32), _SESAME_TYPES), attributes


def horizon(population: Population) -> tuple[datetime, datetime]:
    """The time span the population's events occur in: ``(start, end)``."""
    return population.end - timedelta(days=population.years * 365.25), population.end
