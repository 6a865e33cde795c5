"""Create the ledger: the entries chain and its head row.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("source", sa.String(256), nullable=True),
        sa.Column("source_event_id", sa.String(256), nullable=True),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_entries"),
        sa.UniqueConstraint(
            "source", "source_event_id", name="uq_entries_source_source_event_id"
        ),
    )
    op.create_index("ix_entries_subject_seq", "entries", ["subject", "seq"])
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_head"),
        sa.CheckConstraint("id = 1", name="ck_ledger_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": _GENESIS, "recorded_at_us": 0}])


def downgrade() -> None:
    op.drop_table("ledger_head")
    op.drop_index("ix_entries_subject_seq", table_name="entries")
    op.drop_table("entries")
