"""The operator statistics' cache: the path it takes, fresh answers, honest progress.

The service's statistics equal the reference path's aggregate after new events (the
maintained population follows the changes), the columnar path is taken beyond the
maintained path's size, and the 202 answer's ``retry_after`` comes from the rates
measured so far (an injected monotonic clock, never the real one).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from tests.clock import FixedClock
from tests.test_api import World, build_world, event
from tests.test_api_incremental import service
from trustledger.api.statistics import (
    ASSUMED_RATES,
    QUERY,
    READING,
    SCORING,
    Figures,
    Progress,
    aggregate,
    population,
    retry_after,
)


@pytest.fixture
def world(database_url: str, clock: FixedClock) -> Iterator[World]:
    yield from build_world(database_url, clock=clock)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fresh(world: World) -> dict[str, object]:
    """The service's statistics once its computation for the ledger as it is has finished."""
    svc = service(world)
    for _ in range(3):
        status, body = svc.statistics.get()
        if status == 200 and not body["stale"]:
            return body
        svc.statistics.wait(120)
    raise AssertionError(f"no fresh statistics: {status} {body}")


def reference_body(world: World) -> dict[str, object]:
    svc = service(world)
    policy = svc.view.policy_in_force(world.clock.now)
    results = population(world.ledger, policy, world.clock.now, [0, 0])
    return aggregate(Figures.of(results, policy), policy, svc.settings)


def test_new_events_are_counted_from_the_maintained_population(world: World) -> None:
    svc = service(world)
    first = fresh(world)
    assert svc.statistics.path == "maintained"
    assert {k: first[k] for k in reference_body(world)} == reference_body(world)
    r = world.call("source", "POST", "/v1/events",
                   json=event(50, "carol", "bill_overdue", 2, days_overdue=70))
    assert r.status_code == 201, r.text
    world.clock.advance(days=3)
    svc.view.sync()
    after = fresh(world)
    assert svc.statistics.path == "maintained"
    assert after["ledger_seq"] == svc.view.data_version > first["ledger_seq"]  # type: ignore[operator]
    assert after["subjects"] == first["subjects"] + 1  # type: ignore[operator]
    assert svc.statistics.maintained.loads == 1  # carol was read alone, not the ledger again
    assert {k: after[k] for k in reference_body(world)} == reference_body(world)


def test_beyond_the_maintained_size_the_columnar_path_answers(world: World) -> None:
    svc = service(world)
    svc.statistics.maintain_up_to = 0
    body = fresh(world)
    assert svc.statistics.path == "columnar"
    assert {k: body[k] for k in reference_body(world)} == reference_body(world)


def test_the_first_answer_is_progress_with_a_measured_wait(world: World) -> None:
    status, body = service(world).statistics.get()
    service(world).statistics.wait(120)
    assert status == 202, body
    assert body["status"] == "computing"
    assert isinstance(body["retry_after"], int) and 1 <= body["retry_after"] <= 30
    # Where it is: the stage, and the entries read of the ledger's position when it began.
    assert body["stage"] in {READING, QUERY, SCORING, "measures"}
    assert body["entries"] == service(world).ledger.position()
    assert 0 <= body["entries_read"] <= body["entries"]


def test_reading_the_ledger_estimates_from_the_read_rate() -> None:
    ticks = Ticks()
    progress = Progress(clock=ticks)
    progress.entries = 10_000
    ticks.now, progress.read = 1.0, 2_000
    # 8,000 entries left at 2,000/s, then about 500 subjects at the assumed 200/s.
    assert progress.seconds_left() == pytest.approx(4.0 + 500 / ASSUMED_RATES[SCORING])
    body = progress.body()
    assert body == {"status": "computing", "stage": READING, "entries_read": 2_000,
                    "entries": 10_000, "done": 0, "total": None, "retry_after": 7}


def test_scoring_estimates_from_the_subjects_scored_so_far() -> None:
    ticks = Ticks()
    progress = Progress(clock=ticks)
    progress.entries, progress.read = 4_000, 4_000
    ticks.now = 2.0
    progress.begin(SCORING, 1_000)
    assert progress.rates[READING] == pytest.approx(2_000.0)
    assert progress.seconds_left() == pytest.approx(1_000 / ASSUMED_RATES[SCORING])
    ticks.now, progress.done = 4.0, 100  # 50 subjects a second
    assert progress.seconds_left() == pytest.approx(18.0)
    assert progress.body() == {"status": "computing", "stage": SCORING, "entries_read": 4_000,
                               "entries": 4_000, "done": 100, "total": 1_000,
                               "retry_after": 18}
    ticks.now, progress.done = 22.0, 1_000
    rates = progress.finish()
    assert rates[SCORING] == pytest.approx(50.0)
    # The next computation starts from the rates this one measured.
    later = Progress(rates, clock=ticks)
    later.begin(SCORING, 1_000)
    assert later.seconds_left() == pytest.approx(20.0)


def test_subjects_that_cost_nothing_do_not_speed_up_the_estimate() -> None:
    """Subjects with constant figures are counted done at once; the rate is of the others."""
    ticks = Ticks()
    progress = Progress(clock=ticks)
    progress.begin(SCORING, 10_000)
    progress.cost_total = 2_000
    ticks.now, progress.done, progress.cost_done = 2.0, 5_000, 500  # 250 a second
    assert progress.seconds_left() == pytest.approx(6.0)
    assert progress.body() == {"status": "computing", "stage": SCORING, "entries_read": 0,
                               "entries": None, "done": 5_000, "total": 10_000,
                               "retry_after": 6}


def test_the_columnar_query_is_one_step_estimated_from_its_rate() -> None:
    ticks = Ticks()
    progress = Progress({QUERY: 500_000.0}, clock=ticks)
    progress.entries = 2_000_000
    progress.begin(QUERY, 0)
    ticks.now = 1.5
    assert progress.seconds_left() == pytest.approx(2.5)
    ticks.now = 10.0  # slower than last time: half as long again as it took so far
    assert progress.seconds_left() == pytest.approx(5.0)
    ticks.now = 100.0
    assert progress.body()["retry_after"] == 30


def test_retry_after_is_between_one_and_thirty_seconds() -> None:
    assert retry_after(0.0) == 1
    assert retry_after(2.2) == 3
    assert retry_after(45.0) == 30
    assert retry_after(math.inf) == 30
