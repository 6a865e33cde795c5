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
"""

from trustledger.batch.expression import EVENT_COLUMNS, population
from trustledger.batch.plan import Plan, make_plan
from trustledger.batch.run import COLUMNAR, PER_SUBJECT, Progress, Rescore, rescore
from trustledger.batch.sources import (
    EVENTS_SCHEMA,
    duckdb_backend,
    events_table,
    read_events,
    spark_backend,
    spark_session,
    write_events,
)

__all__ = [
    "COLUMNAR",
    "EVENTS_SCHEMA",
    "EVENT_COLUMNS",
    "PER_SUBJECT",
    "Plan",
    "Progress",
    "Rescore",
    "duckdb_backend",
    "events_table",
    "make_plan",
    "population",
    "read_events",
    "rescore",
    "spark_backend",
    "spark_session",
    "write_events",
]
