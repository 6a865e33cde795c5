"""The access log: every read of a subject's data by anyone but the subject, in the ledger.

Each read is a ledger record of kind :data:`ACCESS_READ` about the subject, naming
the principal (id, name, role), the purpose, what was read and the request id;
its time is the entry's ``recorded_at``. The subject sees them all
(``GET /v1/subjects/{subject}/access-log``).

Records are appended by one writer thread in **group commits**: every read logged
while the previous commit was running goes into the next one (one transaction,
one fsync). :meth:`AccessLog.append` returns only once its record is committed,
so a response is never sent before its read is in the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from trustledger.api import pauses
from trustledger.api.problems import UnavailableError
from trustledger.ledger import Entry
from trustledger.principals import Principal, Record, ServiceLedger
from trustledger.rights.access import READ, access_payload

ACCESS_READ = READ
"""Record kind of one read of a subject's data by someone other than the subject."""

_MAX_GROUP = 1_000
_STOP = None

Deliver = Callable[[Entry | None, BaseException | None], None]
"""Called from the writer thread with the committed entry, or with the failure."""
log = logging.getLogger("trustledger.api")


def access_record(principal: Principal, subject: str, purpose: str, read: str,
                  request_id: str | None, details: dict[str, Any] | None = None) -> Record:
    """The record of one read: who (principal), about whom, for what purpose, what."""
    return Record(ACCESS_READ, access_payload(principal.id, principal.name,
                                              principal.role.value, purpose, read, request_id,
                                              details), subject)


class AccessLog:
    """Appends access records in group commits from one writer thread."""

    def __init__(self, ledger: ServiceLedger) -> None:
        """Start the writer thread."""
        self._ledger = ledger
        self._queue: queue.SimpleQueue[tuple[Record, Deliver] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self.commits = 0
        """How many group commits were made (for metrics)."""
        self.records = 0
        """How many records they held."""
        self._thread.start()

    def append(self, record: Record, timeout: float = 30.0) -> Entry:
        """Append one record; return its entry once it is committed.

        Raises what the ledger raised (the read must then not be answered), or
        :class:`TimeoutError` if no commit came in ``timeout`` seconds.
        """
        future: Future[Entry] = Future()

        def deliver(entry: Entry | None, failure: BaseException | None) -> None:
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(entry)  # type: ignore[arg-type]

        self._queue.put((record, deliver))
        return future.result(timeout)

    def append_all(self, records: list[Record], timeout: float = 30.0) -> list[Entry]:
        """Append several records (one read of several subjects); once all are committed.

        They usually go into one group commit. Raises what the ledger raised, as
        :meth:`append`; the read must then not be answered.
        """
        futures: list[Future[Entry]] = []
        for record in records:
            future: Future[Entry] = Future()

            def deliver(entry: Entry | None, failure: BaseException | None,
                        future: Future[Entry] = future) -> None:
                if failure is not None:
                    future.set_exception(failure)
                else:
                    future.set_result(entry)  # type: ignore[arg-type]

            futures.append(future)
            self._queue.put((record, deliver))
        return [future.result(timeout) for future in futures]

    async def append_async(self, record: Record, timeout: float = 30.0) -> Entry:
        """:meth:`append` for the event loop: awaits the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Entry] = loop.create_future()

        def settle(entry: Entry | None, failure: BaseException | None) -> None:
            if future.done():
                return
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(entry)  # type: ignore[arg-type]

        def deliver(entry: Entry | None, failure: BaseException | None) -> None:
            loop.call_soon_threadsafe(settle, entry, failure)

        self._queue.put((record, deliver))
        return await asyncio.wait_for(future, timeout)

    def close(self) -> None:
        """Stop the writer after the records already queued are committed."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            group = [item]
            stop = False
            while len(group) < _MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                group.append(more)
            self._commit([g for g in group if g is not None])
            if stop:
                return

    def _commit(self, group: list[tuple[Record, Deliver]]) -> None:
        started = time.perf_counter()
        try:
            entries = self._ledger.append_records([record for record, _ in group])
        except Exception as exc:
            # Whatever failed (the database, the disk), each waiting read must not be
            # answered: it gets a 503 naming the cause; the writer goes on for later reads.
            log.error("access log: group commit of %d records failed: %s", len(group), exc)
            failure = UnavailableError(
                f"the access log could not be written ({type(exc).__name__}), so the data "
                "was not released; try again shortly", retry_after=2)
            for _, deliver in group:
                deliver(None, failure)
            return
        self.commits += 1
        self.records += len(entries)
        recorder = pauses.recorder()
        if recorder is not None:
            took = time.perf_counter() - started
            recorder.note("commit", time.time() - took, 1000 * took, records=len(entries))
        for (_, deliver), entry in zip(group, entries, strict=True):
            deliver(entry, None)
