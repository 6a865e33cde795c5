"""The engine's view of events: :class:`~trustledger.events.Event` and its helpers.

They live in :mod:`trustledger.events`, which the ledger imports without loading the
engine; this module keeps the engine's own import path.
"""

from trustledger.events import REPRESENTABLE, RETRACTION, Event, in_utc

__all__ = ["REPRESENTABLE", "RETRACTION", "Event", "in_utc"]
