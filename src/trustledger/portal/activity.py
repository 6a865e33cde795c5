"""Ingest and access over time for the operator: entries per day, never a subject.

One ``GROUP BY`` over the ledger's ``entries`` table (through the ledger's own
read transaction): for each of the last :data:`DAYS` days, how many events the
sources appended and how many reads of subjects' data the access log recorded.
These are counts of ledger entries, not of subjects, so nothing here can name or
single out a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from trustledger.api.access import ACCESS_READ
from trustledger.ledger.chain import EVENT_KIND
from trustledger.ledger.schema import entries
from trustledger.principals import ServiceLedger

DAYS = 30
"""How many days the operator's page shows."""
_DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class Day:
    """One day's counts: events appended and reads logged."""

    day: date
    events: int
    reads: int


def activity(ledger: ServiceLedger, now: datetime, days: int = DAYS) -> list[Day]:
    """Events appended and reads logged per day (UTC), for the ``days`` days up to ``now``."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    since_us = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) \
        * 1_000_000
    bucket = (entries.c.recorded_at_us // _DAY_US).label("bucket")
    query = (sa.select(entries.c.kind, bucket, sa.func.count())
             .where(entries.c.kind.in_((EVENT_KIND, ACCESS_READ)),
                    entries.c.recorded_at_us >= since_us)
             .group_by(entries.c.kind, bucket))
    counts: dict[tuple[str, int], int] = {}
    with ledger.reading() as conn:
        for kind, number, count in conn.execute(query):
            counts[(str(kind), int(number))] = int(count)
    epoch = date(1970, 1, 1)
    out = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        number = (day - epoch).days
        out.append(Day(day, counts.get((EVENT_KIND, number), 0),
                       counts.get((ACCESS_READ, number), 0)))
    return out
