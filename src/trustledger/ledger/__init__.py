"""The ledger: an append-only, hash-chained store of events and every other state change.

SQLite (WAL) by default, PostgreSQL when ``TRUSTLEDGER_DATABASE_URL`` names one; the
schema is migrated on open. The public surface::

    with Ledger.open(url, clock=...) as ledger:
        ledger.append_events([EventIn(...), {...}])   # atomic, idempotent
        ledger.verify()                               # names the first broken entry
        for event in ledger.events("subject-1"): ...  # trustledger.engine.Event values

File ingest (CSV, JSON Lines, Parquet) is :func:`read_events` / :func:`ingest_file`;
backups are :meth:`Ledger.export` and :meth:`Ledger.import_`.
"""

from trustledger.ledger.chain import GENESIS
from trustledger.ledger.ingest import (
    IngestReport,
    IngestResult,
    RowProblem,
    ingest_file,
    read_events,
)
from trustledger.ledger.models import Entry, EventIn, VerifyReport
from trustledger.ledger.store import RESERVED_KINDS, Appended, Ledger, entry_of, event_of

__all__ = [
    "GENESIS",
    "RESERVED_KINDS",
    "Appended",
    "Entry",
    "EventIn",
    "IngestReport",
    "IngestResult",
    "Ledger",
    "RowProblem",
    "VerifyReport",
    "entry_of",
    "event_of",
    "ingest_file",
    "read_events",
]
