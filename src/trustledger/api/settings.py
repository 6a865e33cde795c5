"""The service's settings: limits, freshness and where the ledger is (all from the environment).

Every limit exists so that one misbehaving client cannot starve the others: a
per-principal request rate and number of requests in flight, bounded request
bodies read within a time limit, and a time limit on handling each request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from trustledger.aggregates import SMALLEST_CELL
from trustledger.clock import Clock, system_clock
from trustledger.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """How the service runs. Each field can be set by ``TRUSTLEDGER_<FIELD>`` (upper case)."""

    database_url: str | None = None
    """The ledger (default: ``$TRUSTLEDGER_DATABASE_URL`` or SQLite in the data folder)."""
    rate_limit: float = 50.0
    """Requests per second per principal, unless the principal has its own limit."""
    burst_seconds: float = 2.0
    """A principal may send ``rate * burst_seconds`` requests at once before it is limited."""
    max_in_flight: int = 32
    """Requests one principal may have in progress at once."""
    max_body_bytes: int = 64 * 1024
    """Largest request body, except on the batch and policy endpoints."""
    max_batch_bytes: int = 16 * 1024 * 1024
    """Largest request body of ``POST /v1/events/batch`` and ``POST /v1/policies``."""
    max_batch_items: int = 10_000
    """Most events in one batch."""
    body_timeout: float = 10.0
    """Seconds a client has to send its whole request body (HTTP 408 after)."""
    request_timeout: float = 30.0
    """Seconds a request may take before the client is told to retry (HTTP 503)."""
    decision_max_age: float = 60.0
    """Seconds an evaluation may be reused for decisions while nothing about the subject
    changed; the decision names the ``valid_at`` it is for. 0: evaluate every time."""
    subject_cache: int = 20_000
    """How many subjects' events and consents are kept in memory."""
    suppress_below: int = SMALLEST_CELL
    """Aggregate cells with fewer subjects than this are suppressed (DESIGN.md, k = 10).

    It may be raised, never lowered below :data:`~trustledger.aggregates.SMALLEST_CELL`:
    the safeguard cannot be switched off by a setting."""
    histogram_width: float = 50.0
    """Score histogram bin width in the operator's statistics."""
    switch_interval: float = 0.0005
    """Python's thread switch interval in the server process (seconds; Python's default is
    0.005). Short, so the threads that talk to the database between requests (the ledger
    follower, the access-log writer) get the interpreter back quickly after each round
    trip, rather than up to 5 ms for the busy event loop each time."""
    gc_young_threshold: int = 50_000
    """The garbage collector's first threshold in the server process (Python's default is
    700): how many container objects a server allocates, net, between two young
    collections. A decision unpacks a subject's state into a few thousand short-lived
    objects, so at Python's default the young collections run hundreds of times a
    second and push the full ones (each a walk of every subject cached since startup,
    75-105 ms with 2,000 subjects: bench/service.py's pause records) to every 1-2 s."""
    auth_failure_rate: float = 0.5
    """Failed authentications per second a client address earns back (a token bucket)."""
    auth_failure_burst: int = 20
    """Failed authentications in a row a client address may make before it is limited: then
    a request whose key is not already known to be valid gets HTTP 429 with ``Retry-After``
    without being looked up (or its body read). A key that worked before still works."""
    auth_failure_clients: int = 10_000
    """Client addresses whose failed authentications are tracked at once (memory is bounded:
    beyond it the least recently failing address is forgotten). IPv6 clients count by /64."""
    forwarded_allow: str = ""
    """Addresses of reverse proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are
    believed (comma-separated, as uvicorn's ``--forwarded-allow-ips``; ``trustledger serve``
    passes it on). Empty: the connection's peer address is the client, whatever it sends."""
    clock: Clock = field(default=system_clock, compare=False)
    """Where "now" comes from."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``TRUSTLEDGER_*`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name == "clock":
                continue
            raw = env.get(f"TRUSTLEDGER_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = type(getattr(cls(), f.name))
            try:
                values[f.name] = raw if f.name == "database_url" else kind(raw)
            except ValueError as exc:
                raise ConfigError(f"TRUSTLEDGER_{f.name.upper()}={raw!r}: not a valid "
                                  f"{kind.__name__}") from exc
        return replace(cls(), **values, **overrides)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse settings that cannot work, naming the setting."""
        positive = ("rate_limit", "burst_seconds", "max_in_flight", "max_body_bytes",
                    "max_batch_bytes", "max_batch_items", "body_timeout", "request_timeout",
                    "subject_cache", "histogram_width", "switch_interval",
                    "gc_young_threshold", "auth_failure_rate", "auth_failure_burst",
                    "auth_failure_clients")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"TRUSTLEDGER_{name.upper()}: must be greater than 0")
        if self.suppress_below < SMALLEST_CELL:
            raise ConfigError(f"TRUSTLEDGER_SUPPRESS_BELOW: must be at least {SMALLEST_CELL} "
                              "(cells smaller than that are always suppressed)")
        if self.decision_max_age < 0:
            raise ConfigError("TRUSTLEDGER_DECISION_MAX_AGE: must not be negative")
