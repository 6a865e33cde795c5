"""The cascades worker: derive notifications, deliver them, sleep until there is more to do.

``trustledger cascades run`` runs :meth:`Worker.run` until interrupted (or one
round with ``--once``); ``trustledger serve --cascades`` runs it in a thread of the
server process (:class:`Background`), started and stopped with the application.
Any number of workers may run against one database: the derivation moves a shared
cursor with compare-and-set, and delivery claims each attempt before sending it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from trustledger.cascades.delivery import Delivered, Deliverer
from trustledger.cascades.derive import Derived, Deriver
from trustledger.cascades.egress import Egress
from trustledger.errors import InputError
from trustledger.principals import ServiceLedger

BACKGROUND_ENV = "TRUSTLEDGER_CASCADES"
"""Set to ``1`` (``trustledger serve --cascades`` does) to run the worker in the server."""
RESTART_S = 5.0
"""A background worker that failed (the database unreachable, say) starts again after this."""
STOP_CHECK_S = 0.1
"""An idle derivation waiting for appends looks at its stop event at least this often."""
PASS_LIMIT = 500
"""At most this many attempts in flight (one per subscription) in :meth:`Worker.run`."""
log = logging.getLogger("trustledger.cascades")


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

    def run(self, stop: threading.Event, interval: float = 0.05, *, derive: bool = True,
            deliver: bool = True) -> int:
        """Derive and deliver concurrently until ``stop`` is set; returns how many were delivered.

        Derivation runs in the calling thread and delivery in a second one
        (:meth:`Deliverer.pump`), so a step's evaluation and a receiver's round trip
        overlap (a receiver never slows the derivation, nor a derivation step the
        sending). Each waits ``interval`` s when it found nothing to do — derivation less
        when this process appends to the ledger meanwhile (:meth:`ServiceLedger.appends`);
        derivation wakes delivery as soon as it wrote notifications. The two share nothing but
        the database, so they may also run in two processes (``derive=False`` in one,
        ``deliver=False`` in the other: ``trustledger cascades run --only``).
        """
        if not (derive or deliver):
            raise InputError("only: a worker derives, delivers, or both")
        wake, halt = threading.Event(), threading.Event()
        delivered = [0]
        failure: list[BaseException] = []

        def send() -> None:
            try:
                delivered[0] = self.deliverer.pump(halt, wake, interval, PASS_LIMIT)
            except BaseException as err:  # re-raised in the calling thread below
                failure.append(err)
                halt.set()

        sender = threading.Thread(target=send, name="cascades-delivery", daemon=True)
        if deliver:
            sender.start()
        appends = self.deriver.ledger.appends()
        try:
            while not (stop.is_set() or halt.is_set()):
                seen = appends.count  # before the step: an append during it is not missed
                if derive and self.deriver.run().notifications:
                    wake.set()
                elif derive:
                    # Caught up: until this process appends (derived at once) or the
                    # interval passes (appends by other processes, time-driven changes).
                    deadline = time.monotonic() + interval
                    while appends.count == seen and not (stop.is_set() or halt.is_set()):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        appends.wait(seen, min(left, STOP_CHECK_S))
                else:
                    stop.wait(interval)
        finally:
            halt.set()
            wake.set()
            if deliver:
                sender.join()
        if failure:
            raise failure[0]
        return delivered[0]


class Background:
    """A :class:`Worker` in a daemon thread of the server process, until :meth:`stop`.

    A failure (the database gone, say) is logged and the worker starts again
    :data:`RESTART_S` seconds later, so the service keeps serving meanwhile;
    nothing is lost, derivation resumes at the cursor.
    """

    def __init__(self, ledger: ServiceLedger, *, interval: float = 0.1,
                 egress: Egress | None = None) -> None:
        """Derive and deliver from ``ledger``, waiting ``interval`` s when idle."""
        self.deliverer = Deliverer(ledger, egress=egress)
        self.worker = Worker(Deriver(ledger), self.deliverer)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cascades-worker", daemon=True)

    @classmethod
    def from_env(cls, ledger: ServiceLedger,
                 environ: Mapping[str, str] | None = None) -> Background | None:
        """A started worker if ``$TRUSTLEDGER_CASCADES`` is ``1``; ``None`` if unset or ``0``."""
        env = os.environ if environ is None else environ
        if env.get(BACKGROUND_ENV, "0") in ("", "0"):
            return None
        background = cls(ledger, egress=Egress.from_env(env))
        background.start()
        return background

    @property
    def running(self) -> bool:
        """Whether the worker's thread is alive."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()
        log.info("cascades: background worker started")

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the round under way, stop the thread, close the sender threads."""
        self._stop.set()
        self._thread.join(timeout)
        self.deliverer.close()
        log.info("cascades: background worker stopped")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.worker.run(self._stop, self.interval)
            except Exception:
                log.exception("cascades: the background worker failed; starting again in "
                              "%g s", RESTART_S)
                self._stop.wait(RESTART_S)
