"""Cascades: decision changes reach subscribed relying parties, reliably and only with consent.

A relying party subscribes to one subject's decision for one purpose
(:func:`subscribe`; the subject's active consent is required, and the
subscription ends with it). Whenever that purpose's tiers or measures change —
through any ledger entry or through time alone — a notification is derived into
the outbox (:class:`Deriver`) and delivered as a signed webhook with retries
(:class:`Deliverer`, only to addresses the operator allows: :class:`Egress`);
:class:`Worker` runs both, in ``trustledger cascades run`` or in the background of
``trustledger serve --cascades``. See docs/cascades.md.
"""

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
