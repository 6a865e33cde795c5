"""Where "now" comes from: the one clock type the edges take, and the system clock.

The engine never reads a clock: time is an argument. The edges do — the ledger's
``recorded_at``, the service's answers, the cascade worker and deliverer — and each
takes a :data:`Clock`, so tests and replays inject one; :func:`system_clock` is the
default everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A source of "now" (timezone-aware)."""


def system_clock() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)
