"""Per-principal limits (rate, requests in flight) and per-address failed authentications.

One principal sending too much gets HTTP 429 with ``Retry-After``; the others are
not slowed down, because each principal has its own bucket and its own share of
requests in progress.

Requests with unknown or revoked keys have no principal to charge, so
:class:`FailureLimiter` charges their client address instead: each failed
authentication takes a token from the address's bucket, and an address with an
empty bucket is refused (429) before its key is looked up -- a flood of made-up
keys then costs the server a dictionary look-up per request, not a database query.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


class FailureLimiter:
    """Failed authentications per client address: a token bucket each, few addresses tracked.

    An address may fail ``burst`` times in a row, then ``rate`` times per second.
    At most ``max_clients`` addresses are tracked; beyond that the one that failed
    least recently is forgotten (its bucket has usually refilled by then), so
    memory stays bounded however many addresses a flood comes from.
    """

    def __init__(self, rate: float, burst: int, max_clients: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``rate`` failures/s earned back, up to ``burst``; ``max_clients`` buckets at most."""
        self._rate = rate
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many client addresses are tracked now."""
        return len(self._buckets)

    def _refilled(self, client: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(client)
        if bucket is not None:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        return bucket

    def check(self, client: str) -> None:
        """:class:`RateLimitedError` if ``client`` has used up its failed authentications."""
        now = self._clock()
        with self._lock:
            bucket = self._refilled(client, now)
            if bucket is None or bucket.tokens >= 1.0:
                return
            wait = max(1, math.ceil((1.0 - bucket.tokens) / self._rate))
        raise RateLimitedError(
            f"too many failed authentications from {client} (at most {self._burst:g} in a "
            f"row, then {self._rate:g} per second); check the API key and retry after "
            f"{wait} s", retry_after=wait)

    def fail(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        now = self._clock()
        with self._lock:
            bucket = self._refilled(client, now)
            if bucket is None:
                while len(self._buckets) >= self._max_clients:
                    self._buckets.popitem(last=False)
                bucket = self._buckets[client] = _Bucket(self._burst, now)
            else:
                self._buckets.move_to_end(client)
            bucket.tokens = max(0.0, bucket.tokens - 1.0)


def client_of(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI request, as the failure limits count it.

    The connection's peer (``scope["client"]``; the server puts a proxy's
    ``X-Forwarded-For`` there only for proxies it was told to believe). An IPv6
    client counts by its /64 network: one host usually holds a whole /64.
    """
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host or "(no address)"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
