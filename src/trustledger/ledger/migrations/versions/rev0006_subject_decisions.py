"""Subject states keep the latest decision read from them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Derived data, never the record: ``subject_states.decision`` is the packed evaluation of
the latest decision read from the row's state (:mod:`trustledger.engine.decided`), so
that a restart or another worker reuses it while it is fresh instead of reading the
state again. Written with its state (same ``basis_seq`` and ``inputs``); a row written
without one clears it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("subject_states") as batch:
        batch.add_column(sa.Column("decision", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subject_states") as batch:
        batch.drop_column("decision")
