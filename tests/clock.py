"""The test suite's clocks: fixed clocks to inject, and the whole session moved in time.

No test may mix the real clock with fixed dates. A test that writes at fixed dates
injects a :class:`FixedClock` (``Ledger.open(url, clock=clock)``,
``Settings(clock=clock)``, ``Deliverer(..., clock=clock)``); a test that must go
through a path that reads the system clock (a server in another process, a command
line run, a browser's cookies) asks for the ``now`` fixture and derives every date
it uses from it.

``pytest --system-clock 2031-06-01`` runs the whole session, and every Python
process it starts, with the clock moved to that date (time-machine; it ticks on from
there). ``.ci/run`` does it once more after the ordinary run, so a test that hides a
dependency on today's date fails in CI, not on the day the calendar passes it.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

SHIFT_ENV = "TRUSTLEDGER_TEST_CLOCK_SHIFT"
"""Seconds between the real clock and the session's moved clock (read by sitecustomize.py)."""
SITE = Path(__file__).parent / "clockshift"
START = datetime(2026, 11, 27, tzinfo=UTC)
"""Where the ``clock`` fixture starts: a fixed date, whatever the calendar says (the day
the suite's fixed dates were written against, when tests still read the real clock)."""
"""The folder whose ``sitecustomize.py`` moves the clock of processes the tests start."""


MOVED_EXAMPLES_SHARE = 5
"""Under ``--system-clock`` a property test draws one in this many of its examples."""


def examples(count: int) -> int:
    """How many examples a property test draws: ``count``, or a share of it when moved.

    Under ``--system-clock`` (:data:`SHIFT_ENV` set, in the session and in every worker)
    it is ``count // MOVED_EXAMPLES_SHARE``, at least 5 (never more than ``count``): the
    clock is moved by the same amount for every example, so a hidden dependency on
    today's date shows in the first few, and the ordinary run has drawn them all.
    """
    if SHIFT_ENV not in os.environ:
        return count
    return min(count, max(5, count // MOVED_EXAMPLES_SHARE))


class FixedClock:
    """A clock that stands still until a test moves it: inject it wherever a clock is taken."""

    def __init__(self, now: datetime = START) -> None:
        """Stand at ``now`` (timezone-aware)."""
        if now.tzinfo is None:
            raise ValueError("a FixedClock needs a timezone-aware date-time")
        self.now = now

    def __call__(self) -> datetime:
        """The clock's time."""
        return self.now

    def advance(self, days: float = 0.0, **delta: float) -> datetime:
        """Move the clock forward (days, or ``timedelta`` keywords) and return the new time."""
        self.now += timedelta(days=days, **delta)
        return self.now

    def set(self, moment: datetime) -> datetime:
        """Put the clock at ``moment`` and return it."""
        self.now = moment
        return moment


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--system-clock DATE``: run the session with the clock moved to DATE."""
    parser.addoption(
        "--system-clock", metavar="DATE", default=None,
        help="run the session, and every Python process it starts, with the clock moved to "
             "DATE (ISO 8601, e.g. 2031-06-01; UTC when no zone is given)")


def pytest_configure(config: pytest.Config) -> None:
    """Start the clock shift before any test module is imported."""
    given = config.getoption("--system-clock")
    if not given:
        return
    if SHIFT_ENV in os.environ:
        # A worker the session started (pytest-xdist): tests/clockshift moved its clock
        # before pytest started, and its environment already carries the shift on.
        return
    try:
        target = datetime.fromisoformat(given)
    except ValueError as error:
        raise pytest.UsageError(f"--system-clock: not an ISO 8601 date: {given!r}") from error
    if target.tzinfo is None:
        target = target.replace(tzinfo=UTC)
    shift = target.timestamp() - time.time()
    os.environ[SHIFT_ENV] = repr(shift)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    traveller = time_machine.travel(target, tick=True)
    traveller.start()
    config.add_cleanup(traveller.stop)


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say in the header when the session's clock is moved."""
    given = config.getoption("--system-clock")
    return f"system clock moved to {given} (time-machine)" if given else None


@pytest.fixture
def clock() -> FixedClock:
    """A fixed clock at :data:`START` for the test to inject and move."""
    return FixedClock(START)


@pytest.fixture
def now() -> datetime:
    """The present, read once from the (possibly moved) system clock.

    For tests that cannot inject a clock because the path under test reads the system
    clock itself; every date such a test uses is derived from this value.
    """
    return datetime.now(UTC)
