"""Whole-population evaluation: one columnar job over every subject's events.

The population is evaluated as one Ibis expression (joins, arithmetic, window and group
``sum``; no user-defined function), embedded on DuckDB by default and, for populations
beyond one machine, the same expression on Spark. What the expression cannot compute
(``when`` conditions, overhangs, caps that do not nest, measures with a history) is
evaluated per subject by the reference engine afterwards. ``docs/scale.md`` says which
feature takes which path::

    from trustledger.batch import duckdb_backend, read_events, rescore
    con = duckdb_backend()
    job = rescore(policy, read_events(con, "events.parquet"), valid_at, consent_all=True)
    job.table  # one row per subject

    events, keys = read_keyed(con, "keyed/")  # a keyed export: integer subject and type keys
    job = rescore(policy, events, valid_at, consent_all=True, keys=keys)

Names are imported on first use, so the command line does not load Ibis until a job runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustledger.batch.expression import EVENT_COLUMNS, population
    from trustledger.batch.plan import Plan, make_plan
    from trustledger.batch.run import COLUMNAR, PER_SUBJECT, Progress, Rescore, rescore
    from trustledger.batch.sources import (
        EVENTS_SCHEMA,
        Keys,
        duckdb_backend,
        events_table,
        is_keyed,
        read_events,
        read_keyed,
        spark_backend,
        spark_session,
        write_events,
        write_keyed,
    )

_WHERE = {
    "EVENT_COLUMNS": "expression", "population": "expression",
    "Plan": "plan", "make_plan": "plan",
    "COLUMNAR": "run", "PER_SUBJECT": "run", "Progress": "run", "Rescore": "run",
    "rescore": "run",
    "EVENTS_SCHEMA": "sources", "duckdb_backend": "sources", "events_table": "sources",
    "read_events": "sources", "spark_backend": "sources", "spark_session": "sources",
    "write_events": "sources", "Keys": "sources", "is_keyed": "sources",
    "read_keyed": "sources", "write_keyed": "sources",
}

__all__ = [
    "COLUMNAR",
    "EVENTS_SCHEMA",
    "EVENT_COLUMNS",
    "PER_SUBJECT",
    "Keys",
    "Plan",
    "Progress",
    "Rescore",
    "duckdb_backend",
    "events_table",
    "is_keyed",
    "make_plan",
    "population",
    "read_events",
    "read_keyed",
    "rescore",
    "spark_backend",
    "spark_session",
    "write_events",
    "write_keyed",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"trustledger.batch.{_WHERE[name]}"), name)
