"""The cascades' tables (SQLAlchemy Core); Alembic revision ``0003`` creates exactly these.

* ``cascade_subscriptions``: one row per subscription of a relying party to one
  subject's decision for one purpose, with the webhook URL and signing secret, the
  decision last told (``state``, JSON) and when time alone may next change it
  (``next_check_us``, indexed: the schedule);
* ``cascade_notifications``: the outbox, one row per notification, with its
  delivery state (``pending``, ``delivered``, ``dead``), attempts and next attempt;
* ``cascade_cursor``: the single row naming the last ledger position the cascades
  have derived notifications from.
"""

from __future__ import annotations

import sqlalchemy as sa

from trustledger.ledger.schema import metadata

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

subscriptions = sa.Table(
    "cascade_subscriptions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
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
    sa.Index(None, "subject"),
    sa.Index(None, "party"),
    sa.Index(None, "next_check_us"),
)
"""Subscriptions; rows are never deleted (ending one sets ``ended_at_us``)."""

notifications = sa.Table(
    "cascade_notifications",
    metadata,
    sa.Column("serial", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
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
    sa.Index(None, "status", "next_attempt_us"),
    sa.Index(None, "subscription_id"),
)
"""The outbox: one row per notification, in the order they were derived (``serial``)."""

cursor = sa.Table(
    "cascade_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
"""The last ledger position notifications were derived from (one row)."""
