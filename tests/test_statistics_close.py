"""Closing the service stops the operator statistics' background computation first.

The computation runs in a thread that reads the whole ledger; left running while the
ledger is closed, it would hold a database connection past the engine's disposal
(a connection garbage-collected open, and a slow shutdown on PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.clock import FixedClock
from tests.test_api import World, build_world
from tests.test_api_incremental import service
from trustledger.api.statistics import Cancelled, population


@pytest.fixture
def world(database_url: str, clock: FixedClock) -> Iterator[World]:
    yield from build_world(database_url, clock=clock)


def test_a_stopped_computation_ends_before_scoring_anyone(world: World,
                                                          clock: FixedClock) -> None:
    svc = service(world)
    policy = svc.view.policy_in_force(clock.now)
    progress = [0, 0]
    stop = threading.Event()
    assert population(world.ledger, policy, clock.now, progress, stop=stop)  # runs unstopped
    stop.set()
    progress = [0, 0]
    with pytest.raises(Cancelled):
        population(world.ledger, policy, clock.now, progress, stop=stop)
    assert progress == [0, 0]


def test_closing_the_service_joins_the_statistics_thread(world: World) -> None:
    svc = service(world)
    status, _ = svc.statistics.get()  # starts the computation in the background
    assert status == 202
    thread = svc.statistics._running
    svc.statistics.close()
    assert thread is None or not thread.is_alive()
    # Once closed, asking again starts nothing: no thread outlives the ledger.
    status, body = svc.statistics.get()
    assert svc.statistics._running is None
    assert status in (200, 202), body
