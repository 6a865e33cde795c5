"""Principals: a source's accredited domains (the event-type register's domains).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Sources issued before this revision get no domains, so they report nothing until they
are issued again with their domains (the register's domain check refuses every type).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("domains", sa.Text, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("domains")
