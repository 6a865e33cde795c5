"""Issue 21 (hardening), the property: extreme attribute values and dates never give a 5xx.

Hypothesis draws events of every Sesame type with attribute values from the whole range
JSON can carry (64-bit and wider integers, the largest and smallest floats, wrong types,
extra and missing attributes) and dates anywhere in (and just past) the calendar, with
any UTC offset; each goes through a real app (plain, CloudEvents, batch, correction,
retraction, what-if), and after them every read about the subject, the subject's own
and others', must answer 200. No response may be a server error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.test_hardening_events import NOW, World, open_world

# No shrinking: the failure message lists every request and its status already, and
# shrinking a server round trip per step would take minutes.
SETTINGS = settings(max_examples=examples(40), deadline=None,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate),
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "repayment_on_time": ("amount",),
    "repayment_late": ("days_late", "amount"),
    "bill_paid": (),
    "bill_overdue": ("days_overdue",),
    "rental_returned": ("late_hours",),
    "identity_verified": ("method",),
    "debt_default": ("amount",),
}
SOURCE = {kind: "rentals" if kind == "rental_returned" else "bank" for kind in ATTRIBUTES}

EXTREME_NUMBERS: list[Any] = [
    0, 1, -1, 2**31, 2**53 - 1, 2**53, -(2**53), 2**63 - 1, -(2**63), 2**64, -(2**64) - 1,
    10**30, 0.5, -0.0, 5e-324, 1e-300, 1e15, 1e16, 1e300, -1e300, 1.7976931348623157e308,
    -1.7976931348623157e308, float("inf"), float("-inf"), float("nan"),
]
EXTREME_DATES = [
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "0001-01-01T00:59:59+01:00",
    "0001-01-01T01:00:00+01:00", "9999-12-31T23:59:59.999999Z", "9999-12-31T23:00:00-05:00",
    "9999-12-31T18:59:59-05:00", "1970-01-01T00:00:00Z", "2026-05-01T00:00:00+14:00",
    "2026-05-01", "2026-05-01T00:00:00", "1969-12-31T23:59:59.999999-00:01",
    "10000-01-01T00:00:00Z", "not a date", 1700000000,
]

values = st.one_of(
    st.sampled_from(EXTREME_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)


@st.composite
def dates(draw: st.DrawFn) -> Any:
    """An ISO 8601 date-time anywhere in the calendar with any offset, or an extreme one."""
    if draw(st.booleans()):
        return draw(st.sampled_from(EXTREME_DATES))
    offset = timezone(timedelta(minutes=draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))))
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31,
                                                                                23, 59, 59)))
    return moment.replace(tzinfo=offset).isoformat()


@st.composite
def events(draw: st.DrawFn, key: str) -> dict[str, Any]:
    """A plain-form event with extreme attributes and (often) an extreme date."""
    kind = draw(st.sampled_from(sorted(ATTRIBUTES)))
    names = list(ATTRIBUTES[kind])
    attributes = {name: draw(values) for name in names if draw(st.integers(0, 9)) > 0}
    if draw(st.integers(0, 9)) == 0:
        attributes["extra"] = draw(values)
    occurred = draw(dates()) if draw(st.booleans()) else \
        (NOW - timedelta(hours=draw(st.integers(0, 5 * 365 * 24)))).isoformat()
    return {"source_event_id": key, "subject": "alice", "type": kind, "occurred_at": occurred,
            "attributes": attributes}


def _body(value: Any) -> bytes:
    # NaN and infinities are not JSON; sent anyway (as Python writes them), they must be a 4xx.
    return json.dumps(value, allow_nan=True).encode()


def _post(world: World, kind: str, event: dict[str, Any], way: int,
          statuses: list[tuple[str, int]]) -> None:
    role = SOURCE.get(event["type"], "bank")
    if way == 0:
        r = world.call(role, "POST", "/v1/events", content=_body(event),
                       headers={"Content-Type": "application/json"})
    elif way == 1:
        cloud = {"specversion": "1.0", "id": event["source_event_id"], "source": role,
                 "type": event["type"], "subject": "alice", "time": event["occurred_at"],
                 "data": event["attributes"]}
        r = world.call(role, "POST", "/v1/events", content=_body(cloud),
                       headers={"Content-Type": "application/cloudevents+json"})
    else:
        r = world.call(role, "POST", "/v1/events/batch", content=_body({"events": [event]}),
                       headers={"Content-Type": "application/json"})
    statuses.append((f"{kind} {event}", r.status_code))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest,
              migrated_copy: Callable[[str], str]) -> Callable[[], str]:
    """A factory of fresh ledger databases at the newest schema (one per hypothesis example)."""
    return lambda: migrated_copy(request.param)


@SETTINGS
@given(data=st.data())
def test_extreme_attributes_and_dates_never_give_a_server_error(
        fresh_url: Callable[[], str], data: st.DataObject) -> None:
    statuses: list[tuple[str, int]] = []
    with open_world(fresh_url()) as world:
        # What is drawn never depends on the answers (hypothesis replays draws exactly).
        sent: list[dict[str, Any]] = []
        for i in range(data.draw(st.integers(1, 6))):
            event = data.draw(events(f"x{i}"))
            way = data.draw(st.integers(0, 2))
            _post(world, "append", event, way, statuses)
            sent.append(event)
        if data.draw(st.booleans()):
            target = data.draw(st.sampled_from(sent))
            fixed = {**data.draw(events("fix")), "type": target["type"]}
            r = world.call(SOURCE[target["type"]], "POST",
                           f"/v1/events/{target['source_event_id']}/correction",
                           content=_body({"source_event_id": "fix", "type": fixed["type"],
                                          "occurred_at": fixed["occurred_at"],
                                          "attributes": fixed["attributes"]}),
                           headers={"Content-Type": "application/json"})
            statuses.append((f"correction {fixed}", r.status_code))
        if data.draw(st.booleans()):
            target = data.draw(st.sampled_from(sent))
            r = world.call(SOURCE[target["type"]], "POST",
                           f"/v1/events/{target['source_event_id']}/retraction",
                           json={"source_event_id": "gone"})
            statuses.append(("retraction", r.status_code))
        hypothetical = data.draw(events("h"))
        whatif = {"add": [{"type": hypothetical["type"],
                           "occurred_at": hypothetical["occurred_at"],
                           "attributes": hypothetical["attributes"]}]}
        if data.draw(st.booleans()):
            whatif["at"] = data.draw(dates())
        r = world.call("alice", "POST", "/v1/subjects/alice/whatif", content=_body(whatif),
                       headers={"Content-Type": "application/json"})
        statuses.append((f"whatif {whatif}", r.status_code))
        server_errors = [(what, status) for what, status in statuses if status >= 500]
        assert not server_errors, server_errors
        reads = world.reads()
        assert set(reads.values()) == {200}, reads
