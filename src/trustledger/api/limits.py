"""Per-principal limits: a request rate (token bucket) and a number of requests in flight.

One principal sending too much gets HTTP 429 with ``Retry-After``; the others are
not slowed down, because each principal has its own bucket and its own share of
requests in progress.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from trustledger.api.problems import RateLimitedError
from trustledger.principals import Principal


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    in_flight: int = 0


class Limiter:
    """Token buckets and in-flight counts, one per principal."""

    def __init__(self, rate: float, burst_seconds: float, max_in_flight: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``rate`` requests/s by default, bursts of ``rate * burst_seconds``."""
        self._rate = rate
        self._burst = burst_seconds
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, principal: Principal) -> None:
        """Count one request in; :class:`RateLimitedError` if over the limit (nothing counted)."""
        rate = principal.rate_limit or self._rate
        capacity = max(1.0, rate * self._burst)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(principal.id)
            if bucket is None:
                bucket = self._buckets[principal.id] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.in_flight >= self._max_in_flight:
                raise RateLimitedError(
                    f"{bucket.in_flight} requests of {principal.name!r} are already in "
                    f"progress (at most {self._max_in_flight}); wait for them to finish",
                    retry_after=1)
            if bucket.tokens < 1.0:
                wait = math.ceil((1.0 - bucket.tokens) / rate)
                raise RateLimitedError(
                    f"{principal.name!r} may send {rate:g} requests per second (bursts of "
                    f"{capacity:g}); slow down and retry after {wait} s", retry_after=wait)
            bucket.tokens -= 1.0
            bucket.in_flight += 1

    def release(self, principal: Principal) -> None:
        """Count one request out."""
        with self._lock:
            bucket = self._buckets.get(principal.id)
            if bucket is not None and bucket.in_flight > 0:
                bucket.in_flight -= 1
