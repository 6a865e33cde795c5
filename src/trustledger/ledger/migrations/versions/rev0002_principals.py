"""Principals: the service's API keys (hashed), roles and accreditations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("accreditations", sa.Text, nullable=False),
        sa.Column("subject", sa.String(256), nullable=True),
        sa.Column("rate_limit", sa.Float, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_principals"),
        sa.UniqueConstraint("key_hash", name="uq_principals_key_hash"),
    )
    op.create_index("ix_principals_name", "principals", ["name"])


def downgrade() -> None:
    op.drop_index("ix_principals_name", table_name="principals")
    op.drop_table("principals")
