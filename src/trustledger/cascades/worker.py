"""The cascades worker: derive notifications, deliver them, sleep until there is more to do.

``trustledger cascades run`` runs :meth:`Worker.run` until interrupted (or one
round with ``--once``). Any number of workers may run against one database: the
derivation moves a shared cursor with compare-and-set, and delivery claims each
attempt before sending it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from trustledger.cascades.delivery import Delivered, Deliverer
from trustledger.cascades.derive import Derived, Deriver


@dataclass(frozen=True, slots=True)
class Round:
    """What one round did: the derivation and the delivery pass."""

    derived: Derived
    delivered: Delivered


class Worker:
    """Runs a :class:`Deriver` and a :class:`Deliverer` in rounds."""

    def __init__(self, deriver: Deriver, deliverer: Deliverer) -> None:
        """Combine a deriver and a deliverer (over the same ledger)."""
        self.deriver = deriver
        self.deliverer = deliverer

    def round(self, limit: int = 100) -> Round:
        """Derive everything pending, then send what is due (at most ``limit``)."""
        return Round(self.deriver.run(), self.deliverer.pass_(limit))

    def run(self, stop: threading.Event, interval: float = 0.05) -> int:
        """Rounds until ``stop`` is set; waits ``interval`` s when a round found nothing.

        Returns how many notifications were delivered.
        """
        delivered = 0
        while not stop.is_set():
            done = self.round()
            delivered += done.delivered.delivered
            if done.delivered.attempted == 0 and done.derived.notifications == 0:
                stop.wait(interval)
        return delivered
