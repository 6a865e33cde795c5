"""Subject states: one packed maintained evaluation per subject and policy version.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Derived data, never the record: a row says which of the subject's entries it reflects
(``basis_seq``) and a fingerprint of the inputs it was built from (``inputs``); a
reader that finds either moved builds the state again from the ledger.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "subject_states",
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("policy_hash", sa.String(80), nullable=False),
        sa.Column("basis_seq", sa.BigInteger, nullable=False),
        sa.Column("inputs", sa.String(64), nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("written_at_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("subject", "policy_hash", name="pk_subject_states"),
    )


def downgrade() -> None:
    op.drop_table("subject_states")
