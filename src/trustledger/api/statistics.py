"""Aggregate statistics for the operator: score histograms, tier and measure counts.

Computed over every subject with each subject's rights applied — by the
incremental engine, its states kept from one computation to the next, where the
policy allows and the ledger is small enough to keep them
(:func:`trustledger.api.view.current_scores`), else by
the reference :func:`trustledger.scoring.assess` — in a background thread, and
cached for the ledger's data version; a request while none is ready gets HTTP 202
with progress and a ``retry_after`` from the rate measured so far (:func:`retry_after`).
Never a subject name: only counts, and every cell under ``k`` subjects (DESIGN.md
safeguard 4, k = 10) is suppressed — with a second cell whenever a group has exactly
one suppressed cell, so it cannot be recovered from the group's total.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from trustledger.aggregates import suppress
from trustledger.api.settings import Settings
from trustledger.api.view import (
    NOT_SUBJECT_STATE,
    CurrentScores,
    Incremental,
    LedgerView,
    SubjectRecord,
    current_scores,
    reference_scores,
)
from trustledger.engine import Event
from trustledger.errors import ErasedError
from trustledger.ledger import Entry
from trustledger.ledger.chain import EVENT_KIND
from trustledger.policy import CompiledPolicy
from trustledger.principals import ServiceLedger

log = logging.getLogger("trustledger.api")


def _cells(labels: Sequence[str], counts: Sequence[int], k: int) -> list[dict[str, Any]]:
    return [{"label": label, "subjects": shown, "suppressed": shown is None and count > 0}
            for label, count, shown in zip(labels, counts, suppress(counts, k), strict=True)]


def aggregate(results: Sequence[CurrentScores], policy: CompiledPolicy, settings: Settings
              ) -> dict[str, Any]:
    """The statistics of a population's scores (no names, small cells suppressed).

    A scorecard without a score (an opt-in one without consent) counts as not consented.
    """
    k, width = settings.suppress_below, settings.histogram_width
    cards: dict[str, Any] = {}
    for name, card in policy.scorecards.items():
        scored = [s for r in results if (s := r.scores[name]) is not None]
        bins: list[dict[str, Any]] = []
        if scored:
            low = card.floor if card.floor is not None else math.floor(min(scored) / width) * width
            high = card.ceiling if card.ceiling is not None else \
                (math.floor(max(scored) / width) + 1) * width
            edges = [low + i * width for i in range(max(1, math.ceil((high - low) / width)))]
            counts = [0] * len(edges)
            for s in scored:
                counts[min(len(edges) - 1, max(0, int((s - low) // width)))] += 1
            for edge, count, shown in zip(edges, counts, suppress(counts, k), strict=True):
                bins.append({"low": edge, "high": min(edge + width, high), "subjects": shown,
                             "suppressed": shown is None and count > 0})
        tiers = [t.name for t in card.tiers]
        tier_counts = [sum(1 for r in results if r.scores[name] is not None
                           and r.tiers[name] == t) for t in tiers]
        no_tier = len(scored) - sum(tier_counts)
        labels = tiers + (["(below every tier)"] if no_tier else [])
        counts_all = tier_counts + ([no_tier] if no_tier else [])
        head = suppress([len(scored), len(results) - len(scored)], k)
        cards[name] = {"scored": head[0], "not_consented": head[1], "histogram": bins,
                       "tiers": _cells(labels, counts_all, k) if tiers else []}
    measures = list(policy.measures)
    in_force = [sum(1 for r in results if r.in_force[m]) for m in measures]
    return {"policy": policy.name, "policy_hash": policy.hash, "subjects": len(results),
            "suppress_below": k, "scorecards": cards,
            "measures": [{"label": f"{m} in force", "subjects": c if not 0 < c < k else None,
                          "suppressed": 0 < c < k} for m, c in zip(measures, in_force,
                                                                   strict=True)]}


def suppress_erased() -> contextlib.suppress:
    """Skip an erased subject: it has no data, so it is in no cell."""
    return contextlib.suppress(ErasedError)


ASSUMED_RATE = 200.0
"""Subjects scored per second assumed before any is done (the reference on a busy 2-core
machine); once some are, the computation's own rate is used."""


def retry_after(done: int, total: int, elapsed: float) -> int:
    """Seconds to wait for the statistics: what is left at the rate measured so far.

    ``done`` of ``total`` subjects scored in ``elapsed`` seconds (``total`` 0: the
    ledger is still being read). Before any subject is scored the rate is
    :data:`ASSUMED_RATE`. Between 1 and 30 s: a client asks again at most that late
    and sees how far it got.
    """
    rate = done / elapsed if done > 0 and elapsed > 0 else ASSUMED_RATE
    left = (total - done) if total else 1_000
    return max(1, min(30, math.ceil(left / rate)))


KEEP_STATES_UP_TO = 100_000
"""Keep incremental states between computations for at most this many events.

A state holds about 2.2 KiB per event (measured: 43.5 KiB for a subject with 20
events), so keeping them costs memory in the server process; building one costs
more than one reference evaluation, so without keeping them the reference is used.
"""


class Cancelled(Exception):
    """The statistics computation was stopped because the service is closing."""


def population(ledger: ServiceLedger, policy: CompiledPolicy, at: datetime,
               progress: list[int], states: dict[str, Incremental] | None = None,
               keep_up_to: int = KEEP_STATES_UP_TO,
               stop: threading.Event | None = None) -> list[CurrentScores]:
    """Every subject's scores at ``at`` with its rights applied.

    Erased subjects are left out (they have no data). ``states``: each subject's
    incremental state from the previous run, updated in place — a subject with only
    new events since then gets just those applied, not its whole history again
    (:func:`current_scores`). Without ``states``, or with more than ``keep_up_to``
    events in the ledger, every subject is evaluated by the reference
    (:func:`reference_scores`) and no state is kept. ``stop``, once set, ends the
    computation with :class:`Cancelled` (checked between pages read and subjects scored),
    so no read is left holding a connection of a ledger being closed.
    """
    def check() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled

    by_subject: dict[str, list[Event]] = defaultdict(list)
    for number, event in enumerate(ledger.events()):
        if number % 1024 == 0:
            check()
        by_subject[event.subject].append(event)
    records: dict[str, list[Entry]] = defaultdict(list)
    for number, entry in enumerate(ledger.records()):
        if number % 1024 == 0:
            check()
        if (entry.subject is not None and entry.kind != EVENT_KIND
                and entry.kind not in NOT_SUBJECT_STATE):
            records[entry.subject].append(entry)
    progress[1] = len(by_subject)
    previous = dict(states or {})
    if states is not None:
        states.clear()  # refilled with the subjects scored now (not the erased, not the gone)
        if sum(len(events) for events in by_subject.values()) > keep_up_to:
            states = None
    score = current_scores if states is not None else reference_scores
    results = []
    for subject in sorted(by_subject):
        check()
        record = SubjectRecord(subject, 0, tuple(by_subject[subject]),
                               tuple(records.get(subject, ())),
                               incremental=previous.pop(subject, None))
        with suppress_erased():
            results.append(score(record, policy, at))
            if states is not None and record.incremental is not None:
                states[subject] = record.incremental
        progress[0] += 1
    return results


class StatisticsCache:
    """The latest statistics and the background computation of the next."""

    def __init__(self, ledger: ServiceLedger, view: LedgerView, settings: Settings) -> None:
        """Nothing is computed until statistics are first asked for."""
        self._ledger, self._view, self._settings = ledger, view, settings
        self._lock = threading.Lock()
        self._ready: tuple[int, dict[str, Any]] | None = None
        self._running: threading.Thread | None = None
        self._progress = [0, 0]
        self._started = time.monotonic()
        self._states: dict[str, Incremental] = {}
        """Each subject's incremental state after the last computation (its thread's only)."""
        self._stop = threading.Event()

    def get(self) -> tuple[int, dict[str, Any]]:
        """``(200, statistics)`` (maybe ``stale``, then refreshed), or ``(202, progress)``."""
        version = self._view.data_version
        with self._lock:
            ready = self._ready
            if ((ready is None or ready[0] != version) and self._running is None
                    and not self._stop.is_set()):
                self._start(version)
            if ready is not None:
                return 200, {**ready[1], "stale": ready[0] != version}
            done, total = self._progress
            elapsed = time.monotonic() - self._started
        return 202, {"status": "computing", "done": done, "total": total or None,
                     "retry_after": retry_after(done, total, elapsed)}

    def _start(self, version: int) -> None:
        self._progress = [0, 0]
        self._started = time.monotonic()
        self._running = threading.Thread(target=self._compute, args=(version,),
                                         name="statistics", daemon=True)
        self._running.start()

    def _compute(self, version: int) -> None:
        try:
            at = self._settings.clock()
            policy = self._view.policy_in_force(at)
            results = population(self._ledger, policy, at, self._progress, self._states,
                                 stop=self._stop)
            body = {"status": "ready", "computed_at": at, "ledger_seq": version,
                    **aggregate(results, policy, self._settings)}
            with self._lock:
                self._ready = (version, body)
        except Cancelled:
            log.info("statistics: computation stopped, the service is closing")
        except Exception:
            log.exception("statistics: computation failed")
        finally:
            with self._lock:
                self._running = None

    def close(self, timeout: float = 30.0) -> None:
        """Stop a running computation and wait for it (before the ledger is closed).

        No computation starts afterwards; one still running after ``timeout`` seconds
        is left to end at its next check.
        """
        self._stop.set()
        thread = self._running
        if thread is not None:
            thread.join(timeout)

    def wait(self, timeout: float) -> None:
        """Wait for a running computation (tests and benchmarks)."""
        thread = self._running
        if thread is not None:
            thread.join(timeout)
