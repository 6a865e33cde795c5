"""A deterministic synthetic population: subjects and the financial events sources report.

The same ``(subjects, events, seed, end)`` always yields the same rows, so demos,
tests and benchmarks are reproducible. Each subject has a reliability drawn from a
Beta distribution; each event is drawn from the subject's reliability. The event
types and attributes are those of ``policies/sesame.yaml``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
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


@dataclass(frozen=True)
class Population:
    """Sizes and seed of a synthetic population."""

    subjects: int
    events: int
    seed: int = 0
    end: datetime = DEFAULT_END
    years: float = 3.0

    def __post_init__(self) -> None:
        if self.subjects < 1:
            raise InputError("subjects: must be at least 1")
        if self.events < 0:
            raise InputError("events: must not be negative")
        if self.end.tzinfo is None:
            raise InputError("end: must be timezone-aware")


def subject_id(index: int) -> str:
    """The id of the synthetic subject with this index."""
    return f"subject-{index:07d}"


def generate(population: Population, *, chunk: int = 1_000_000) -> list[pa.Table]:
    """Generate the population's events as Arrow tables of at most ``chunk`` rows each."""
    rng = np.random.default_rng(population.seed)
    reliability = rng.beta(8.0, 2.0, size=population.subjects)
    tables: list[pa.Table] = []
    start = 0
    while start < population.events:
        n = min(chunk, population.events - start)
        tables.append(_chunk(rng, population, reliability, start, n))
        start += n
    return tables


def write_parquet(population: Population, path: Path) -> int:
    """Write the population's events to a Parquet file; returns the number of rows."""
    rows = 0
    with pq.ParquetWriter(path, EVENT_SCHEMA) as writer:
        for table in generate(population):
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
    family = rng.choice(len(_FAMILIES), size=n, p=[f[2] for f in _FAMILIES])
    good = rng.random(n) < reliability[subject_idx]
    span_us = int(population.years * 365.25 * 86400 * 1_000_000)
    offset_us = rng.integers(0, span_us, size=n)
    amount = np.round(rng.lognormal(6.0, 1.0, size=n), 2)
    days_late = rng.integers(1, 120, size=n)
    late_hours = rng.integers(1, 72, size=n)
    defaulted = rng.random(n) < 0.05

    end_us = int(population.end.timestamp() * 1_000_000)
    sources, types, attributes = [], [], []
    for i in range(n):
        fam = int(family[i])
        sources.append(_FAMILIES[fam][1])
        kind, attrs = _event(fam, bool(good[i]), bool(defaulted[i]), float(amount[i]),
                             int(days_late[i]), int(late_hours[i]))
        types.append(kind)
        attributes.append(json.dumps(attrs, separators=(",", ":"), sort_keys=True))
    occurred = pa.array(end_us - offset_us, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    ids = [f"syn-{start + i:010d}" for i in range(n)]
    subjects = [subject_id(int(s)) for s in subject_idx]
    return pa.Table.from_arrays(
        [pa.array(sources), pa.array(ids), pa.array(subjects), pa.array(types), occurred,
         pa.array(attributes)],
        schema=EVENT_SCHEMA,
    )


def _event(
    family: int, good: bool, defaulted: bool, amount: float, days_late: int, late_hours: int
) -> tuple[str, dict[str, object]]:
    name = _FAMILIES[family][0]
    if name == "repayment":
        if good:
            return "repayment_on_time", {"amount": amount}
        if defaulted:
            return "debt_default", {"amount": amount}
        return "repayment_late", {"days_late": days_late, "amount": amount}
    if name == "bill":
        return ("bill_paid", {}) if good else ("bill_overdue", {"days_overdue": days_late})
    if name == "rental":
        return "rental_returned", {"late_hours": 0 if good else late_hours}
    return "identity_verified", {"method": "document" if good else "video"}


def horizon(population: Population) -> tuple[datetime, datetime]:
    """The time span the population's events occur in: ``(start, end)``."""
    return population.end - timedelta(days=population.years * 365.25), population.end
