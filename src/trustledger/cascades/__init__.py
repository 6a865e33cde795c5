"""Cascades: decision changes reach subscribed relying parties, reliably and only with consent.

A relying party subscribes to one subject's decision for one purpose
(:func:`subscribe`; the subject's active consent is required, and the
subscription ends with it). Whenever that purpose's tiers or measures change —
through any ledger entry or through time alone — a notification is derived into
the outbox (:class:`Deriver`) and delivered as a signed webhook with retries
(:class:`Deliverer`, only to addresses the operator allows: :class:`Egress`);
:class:`Worker` runs both, in ``trustledger cascades run`` or in the background of
``trustledger serve --cascades``. See docs/cascades.md.

The names below are imported on first use, so the command line does not load the
decision code (engine, policy stack) until a cascades command runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustledger.cascades.decision import Policies, View, changed, decide
    from trustledger.cascades.delivery import Delivered, Deliverer, RetryPolicy, sign
    from trustledger.cascades.derive import (
        CHANGED,
        DEAD,
        DELIVERED,
        ENDED,
        PENDING,
        REVOKED_REASON,
        Derived,
        Deriver,
    )
    from trustledger.cascades.egress import ALLOW_ENV, Egress, EgressRefusedError
    from trustledger.cascades.records import NOTIFIED, Notice, fold_notices
    from trustledger.cascades.store import (
        ConsentRequiredError,
        Created,
        Subscription,
        get_subscription,
        list_subscriptions,
        new_secret,
        subscribe,
        unsubscribe,
    )
    from trustledger.cascades.timing import next_change
    from trustledger.cascades.worker import Round, Worker

_WHERE = {
    "ALLOW_ENV": "trustledger.cascades.egress",
    "CHANGED": "trustledger.cascades.derive",
    "ConsentRequiredError": "trustledger.cascades.store",
    "Created": "trustledger.cascades.store",
    "DEAD": "trustledger.cascades.derive",
    "DELIVERED": "trustledger.cascades.derive",
    "Delivered": "trustledger.cascades.delivery",
    "Deliverer": "trustledger.cascades.delivery",
    "Derived": "trustledger.cascades.derive",
    "Deriver": "trustledger.cascades.derive",
    "ENDED": "trustledger.cascades.derive",
    "Egress": "trustledger.cascades.egress",
    "EgressRefusedError": "trustledger.cascades.egress",
    "NOTIFIED": "trustledger.cascades.records",
    "Notice": "trustledger.cascades.records",
    "PENDING": "trustledger.cascades.derive",
    "Policies": "trustledger.cascades.decision",
    "REVOKED_REASON": "trustledger.cascades.derive",
    "RetryPolicy": "trustledger.cascades.delivery",
    "Round": "trustledger.cascades.worker",
    "Subscription": "trustledger.cascades.store",
    "View": "trustledger.cascades.decision",
    "Worker": "trustledger.cascades.worker",
    "changed": "trustledger.cascades.decision",
    "decide": "trustledger.cascades.decision",
    "fold_notices": "trustledger.cascades.records",
    "get_subscription": "trustledger.cascades.store",
    "list_subscriptions": "trustledger.cascades.store",
    "new_secret": "trustledger.cascades.store",
    "next_change": "trustledger.cascades.timing",
    "sign": "trustledger.cascades.delivery",
    "subscribe": "trustledger.cascades.store",
    "unsubscribe": "trustledger.cascades.store",
}

__all__ = [
    "ALLOW_ENV",
    "CHANGED",
    "DEAD",
    "DELIVERED",
    "ENDED",
    "NOTIFIED",
    "PENDING",
    "REVOKED_REASON",
    "ConsentRequiredError",
    "Created",
    "Delivered",
    "Deliverer",
    "Derived",
    "Deriver",
    "Egress",
    "EgressRefusedError",
    "Notice",
    "Policies",
    "RetryPolicy",
    "Round",
    "Subscription",
    "View",
    "Worker",
    "changed",
    "decide",
    "fold_notices",
    "get_subscription",
    "list_subscriptions",
    "new_secret",
    "next_change",
    "sign",
    "subscribe",
    "unsubscribe",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
