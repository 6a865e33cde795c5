"""Entries are indexed by subject and kind.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A decision's first read of a stored subject (``SubjectStates.snapshot``) asks for the
subject's rights records among its events and for its last entry of the kinds that
change its state. By ``(subject, seq)`` alone, the database reads every one of the
subject's rows to learn its kind; by ``(subject, kind, seq)`` it finds them in the index.
"""

from __future__ import annotations

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_entries_subject_kind_seq", "entries", ["subject", "kind", "seq"])


def downgrade() -> None:
    op.drop_index("ix_entries_subject_kind_seq", table_name="entries")
