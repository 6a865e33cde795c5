"""The ledger's tables (SQLAlchemy Core). Migrations in ``migrations/`` create exactly these.

``entries`` holds the chain, one row per entry, columns in :data:`chain.COLUMNS` order;
rows are only ever inserted, except that a purge sets one row's ``payload`` to NULL.
``ledger_head`` is a single row naming the last entry: appenders lock it (PostgreSQL
``SELECT ... FOR UPDATE``; SQLite takes its write lock with ``BEGIN IMMEDIATE``) so
the chain is extended by one writer at a time, and ``verify`` compares it with the
chain's end so a removed tail does not go unnoticed.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""All of the ledger's tables."""

# SQLite makes an INTEGER PRIMARY KEY the rowid itself: no second index on seq.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

entries = sa.Table(
    "entries",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(256), nullable=True),
    sa.Column("source", sa.String(256), nullable=True),
    sa.Column("source_event_id", sa.String(256), nullable=True),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("payload_hash", sa.String(64), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("source", "source_event_id"),
    sa.Index(None, "subject", "seq"),
    # A subject's entries of some kinds, found in the index alone: its rights records
    # among its events and its last entry of the kinds that change its state
    # (SubjectStates.snapshot, a decision's first read), without reading every row.
    sa.Index(None, "subject", "kind", "seq"),
)
"""The chain: one row per entry (see :mod:`trustledger.ledger.chain` for the hashes)."""

head = sa.Table(
    "ledger_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
"""The one row naming the chain's last entry (seq 0 and the genesis hash when empty)."""


subject_states = sa.Table(
    "subject_states",
    metadata,
    sa.Column("subject", sa.String(256), primary_key=True),
    sa.Column("policy_hash", sa.String(80), primary_key=True),
    sa.Column("basis_seq", sa.BigInteger, nullable=False),
    sa.Column("inputs", sa.String(64), nullable=False),
    sa.Column("state", sa.LargeBinary, nullable=False),
    sa.Column("written_at_us", sa.BigInteger, nullable=False),
    sa.Column("decision", sa.LargeBinary, nullable=True),
)
"""Derived, not the record: one packed maintained evaluation per subject and policy version
(:mod:`trustledger.ledger.states`), with the subject's last entry it reflects and a
fingerprint of its inputs; a stale row is built again, never served. ``decision``: the
latest decision read from that state (:mod:`trustledger.engine.decided`), reused by any
worker while it is fresh (``decision_max_age``), cleared whenever the state is written
without one."""
