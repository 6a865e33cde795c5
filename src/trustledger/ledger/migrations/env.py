"""Alembic environment: runs on the connection the ledger hands over (never from an ini file)."""

from __future__ import annotations

from alembic import context

from trustledger.ledger.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
