"""Cascades: relying parties' subscriptions, the notification outbox, the ledger cursor.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cascade_subscriptions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("party", sa.String(128), nullable=False),
        sa.Column("principal_id", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("consent_seq", sa.BigInteger, nullable=False),
        sa.Column("since_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("ended_at_us", sa.BigInteger, nullable=True),
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.Column("state", sa.Text, nullable=True),
        sa.Column("next_check_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cascade_subscriptions"),
    )
    op.create_index("ix_cascade_subscriptions_subject", "cascade_subscriptions", ["subject"])
    op.create_index("ix_cascade_subscriptions_party", "cascade_subscriptions", ["party"])
    op.create_index("ix_cascade_subscriptions_next_check_us", "cascade_subscriptions",
                    ["next_check_us"])
    op.create_table(
        "cascade_notifications",
        sa.Column("serial", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("cause", sa.String(64), nullable=False),
        sa.Column("cause_seq", sa.BigInteger, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("finished_at_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("serial", name="pk_cascade_notifications"),
        sa.UniqueConstraint("id", name="uq_cascade_notifications_id"),
    )
    op.create_index("ix_cascade_notifications_status_next_attempt_us",
                    "cascade_notifications", ["status", "next_attempt_us"])
    op.create_index("ix_cascade_notifications_subscription_id", "cascade_notifications",
                    ["subscription_id"])
    op.create_table(
        "cascade_cursor",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_cascade_cursor_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_cascade_cursor"),
    )
    # The cursor starts at the ledger's end: nothing before any subscription matters.
    op.execute("INSERT INTO cascade_cursor (id, seq) SELECT 1, seq FROM ledger_head WHERE id = 1")


def downgrade() -> None:
    op.drop_table("cascade_cursor")
    op.drop_index("ix_cascade_notifications_subscription_id", table_name="cascade_notifications")
    op.drop_index("ix_cascade_notifications_status_next_attempt_us",
                  table_name="cascade_notifications")
    op.drop_table("cascade_notifications")
    op.drop_index("ix_cascade_subscriptions_next_check_us", table_name="cascade_subscriptions")
    op.drop_index("ix_cascade_subscriptions_party", table_name="cascade_subscriptions")
    op.drop_index("ix_cascade_subscriptions_subject", table_name="cascade_subscriptions")
    op.drop_table("cascade_subscriptions")

