"""Issue 21 (hardening): poisoned attribute values and unrepresentable dates.

A schema-valid but extreme attribute value is refused at ingest on every path (HTTP
plain, CloudEvents, batches, event files) with a 422 naming the attribute, and the
ledger's head does not move. An event that faults anyway when its points are computed
(a formula overflowing inside the bounds, or an event stored before the bounds) is
contained by the engine: it counts nothing, its outcome says ``error: ...``, the rest
of the score computes, the incremental and columnar paths agree, and every read stays
200. Dates whose UTC moment falls outside the years 1-9999 are a 422 naming the field
(exit 2 naming the option or line on the command line).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.clock import FixedClock
from tests.governance import domains_of, put_in_force
from tests.policies.support import parse_declared
from trustledger.api import Settings, create_app
from trustledger.api.events import schema_validator
from trustledger.api.service import Service
from trustledger.batch import rescore
from trustledger.batch.sources import duckdb_backend, events_table
from trustledger.engine import Event, evaluate
from trustledger.engine.incremental import SubjectState
from trustledger.errors import InputError
from trustledger.ledger import EventIn, Ledger
from trustledger.ledger.ingest import ingest_file
from trustledger.options import parse_moment
from trustledger.policy import CompiledPolicy, load_policy
from trustledger.principals import Principal, Role, ServiceLedger, add_principal
from trustledger.scoring import publish_policy

ROOT = Path(__file__).resolve().parent.parent
SESAME = ROOT / "policies" / "sesame.yaml"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
HUGE = 9223372036854775807
EARLY = "0001-01-01T00:00:00+01:00"
"""Valid ISO 8601, but its UTC moment is in the year 0."""
LATE = "9999-12-31T23:00:00-05:00"
"""Valid ISO 8601, but its UTC moment is in the year 10000."""

FRAGILE = """\
policy: fragile
title: Formulas that overflow inside the default attribute bounds
effective_from: 2025-01-01
event_types:
  cubed:
    domain: finance
    category: credit_repayment
    gravity: minor
    attributes:
      n: {type: integer}
    points: {formula: "double(attrs.n * attrs.n * attrs.n) / 1e12", min: -40, max: 40}
    decay: {half_life: P180D}
    expiry: {after: P2Y}
    retention: P3Y
  checked:
    domain: finance
    category: bill_payment
    gravity: minor
    attributes:
      k: {type: integer}
    points: 5
    when: "attrs.k * attrs.k * attrs.k > 0"
    retention: P3Y
  paid:
    domain: finance
    category: bill_payment
    gravity: minor
    points: 2
    retention: P3Y
metrics:
  counted:
    aggregate: count
    types: [cubed, checked, paid]
scorecards:
  card:
    events: [cubed, checked, paid]
    base: 500
    floor: 0
    ceiling: 1000
"""
"""A policy whose ``cubed`` points and ``checked`` condition overflow CEL's 64-bit ints for
attribute values far inside the default bound (3,000,000 cubed is 2.7e19)."""

ROLES: dict[str, tuple[Role, tuple[str, ...], str | None]] = {
    "operator": (Role.OPERATOR, (), None),
    "bank": (Role.SOURCE, ("repayment_on_time", "repayment_late", "bill_paid", "bill_overdue",
                           "debt_default", "identity_verified"), None),
    "rentals": (Role.SOURCE, ("rental_returned",), None),
    "alice": (Role.SUBJECT, (), "alice"),
    "party": (Role.RELYING_PARTY, ("rental_deposit",), None),
}


@dataclass
class World:
    """A ledger with Sesame published, a key per role, and the app over it at a fixed time."""

    url: str
    ledger: ServiceLedger
    client: TestClient
    keys: dict[str, str]
    principals: dict[str, Principal]
    service: Service

    def call(self, role: str, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        """One request as ``role``."""
        headers = {"Authorization": f"Bearer {self.keys[role]}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def reads(self) -> dict[str, int]:
        """The status of every read about alice, hers and others' (and the operator's)."""
        paths: dict[str, tuple[str, str, str, dict[str, Any]]] = {
            "scores": ("alice", "GET", "/v1/subjects/alice/scores", {}),
            "events": ("alice", "GET", "/v1/subjects/alice/events", {}),
            "report": ("alice", "GET", "/v1/subjects/alice/report", {}),
            "report.html": ("alice", "GET", "/v1/subjects/alice/report.html", {}),
            "whatif": ("alice", "POST", "/v1/subjects/alice/whatif", {"json": {}}),
            "decision": ("party", "POST", "/v1/decisions",
                         {"json": {"subject": "alice", "purpose": "rental_deposit"}}),
        }
        out = {name: self.call(role, method, path, **kw).status_code
               for name, (role, method, path, kw) in paths.items()}
        out["statistics"] = self.fresh_statistics()
        out["portal"] = self.portal_page()
        return out

    def portal_page(self) -> int:
        """Sign alice in to the portal and open her page; its status (0: not her page)."""
        form = self.client.get("/portal/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None, form.text
        self.client.post("/portal/sign-in",
                         data={"csrf_token": token.group(1), "api_key": self.keys["alice"]})
        page = self.client.get("/portal/subjects/alice", follow_redirects=False)
        return page.status_code if page.status_code != 200 or "sesame" in page.text.lower() else 0

    def fresh_statistics(self) -> int:
        """Ask for the operator's statistics, let the computation finish, ask again: the
        status, or 0 when they are still stale (a failed computation leaves them so)."""
        first = self.call("operator", "GET", "/v1/statistics")
        if first.status_code not in (200, 202):
            return first.status_code
        self.service.statistics.wait(120)
        again = self.call("operator", "GET", "/v1/statistics")
        if again.status_code == 200 and again.json()["stale"]:
            self.service.statistics.wait(120)  # a computation begun before the last write
            again = self.call("operator", "GET", "/v1/statistics")
        if again.status_code != 200 or again.json()["stale"]:
            return 0
        return 200


@contextmanager
def open_world(url: str) -> Iterator[World]:
    """A :class:`World` on ``url``: alice opted in and consenting, one good event of hers."""
    clock = FixedClock(NOW)
    ledger = ServiceLedger.open(url, clock=clock)
    put_in_force(ledger)
    publish_policy(ledger, SESAME)
    keys, found = {}, {}
    for role, (kind, accredited, subject) in ROLES.items():
        issued = add_principal(ledger, role, kind, accreditations=accredited, subject=subject,
                               domains=domains_of(accredited) if kind is Role.SOURCE else ())
        keys[role], found[role] = issued.key, issued.principal
    settings = Settings(database_url=url, clock=clock)
    service = Service(ledger, settings)
    try:
        with TestClient(create_app(settings, service=service),
                        raise_server_exceptions=False) as client:
            world = World(url, ledger, client, keys, found, service)
            for consent in ({"scope": "scorecard", "scorecard": "sesame"},
                            {"scope": "decision", "party": "party",
                             "purpose": "rental_deposit"}):
                r = world.call("alice", "POST", "/v1/subjects/alice/consents", json=consent)
                assert r.status_code == 201, r.text
            r = world.call("bank", "POST", "/v1/events", json=_event("ok1", "bill_paid", {}))
            assert r.status_code == 201, r.text
            yield world
    finally:
        service.close()


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    with open_world(database_url) as opened:
        yield opened


def _event(key: str, kind: str, attributes: dict[str, Any], *,
           occurred_at: str | None = None) -> dict[str, Any]:
    return {"source_event_id": key, "subject": "alice", "type": kind,
            "occurred_at": occurred_at or (NOW - timedelta(days=10)).isoformat(),
            "attributes": attributes}


def _cloud(key: str, kind: str, data: dict[str, Any], *, time: str | None = None,
           source: str = "rentals") -> dict[str, Any]:
    return {"specversion": "1.0", "id": key, "source": source, "type": kind,
            "subject": "alice", "time": time or (NOW - timedelta(days=10)).isoformat(),
            "data": data}


def _store_unchecked(world: World, key: str, kind: str, attributes: dict[str, Any],
                     source: str = "rentals") -> None:
    """Append straight to the ledger, with no schema check: an event stored before the
    bounds existed, or by a path that does not check (``trustledger ingest`` today)."""
    world.ledger.append_events([EventIn.model_validate(
        {**_event(key, kind, attributes), "source": source})])


# -- 1. poisoned event: refused at ingest on every path ----------------------------------------

def test_poisoned_late_hours_is_refused_on_every_http_path(world: World) -> None:
    before = world.ledger.head()
    r = world.call("rentals", "POST", "/v1/events",
                   json=_event("p1", "rental_returned", {"late_hours": HUGE}))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "attributes"
    reason = r.json()["errors"][0]["reason"]
    assert "late_hours=9223372036854775807 is above its maximum 9007199254740991" in reason
    assert "default bound" in reason
    r = world.call("rentals", "POST", "/v1/events", content=json.dumps(
        _cloud("p2", "rental_returned", {"late_hours": HUGE})),
        headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 422 and "late_hours" in r.json()["errors"][0]["reason"], r.text
    good = _event("g1", "rental_returned", {"late_hours": 3})
    r = world.call("rentals", "POST", "/v1/events/batch", json={"events": [
        good, _event("p3", "rental_returned", {"late_hours": -HUGE})]})
    assert r.status_code == 422, r.text
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(1, "attributes")]
    assert "below its minimum 0" in r.json()["errors"][0]["reason"]
    r = world.call("rentals", "POST", "/v1/events/batch", content=json.dumps(
        [_cloud("p4", "rental_returned", {"late_hours": 2**60})]),
        headers={"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 0, r.text
    r = world.call("bank", "POST", "/v1/events",
                   json=_event("p5", "repayment_on_time", {"amount": 1e300}))
    assert r.status_code == 422 and "amount=1e+300 is above" in r.text, r.text
    assert world.ledger.head() == before  # nothing written
    assert set(world.reads().values()) == {200}
    # Values at the bound are accepted, and score (the formula has room at 2^53 - 1).
    r = world.call("rentals", "POST", "/v1/events",
                   json=_event("edge", "rental_returned", {"late_hours": 2**53 - 1}))
    assert r.status_code == 201, r.text
    assert set(world.reads().values()) == {200}


def test_a_correction_with_poisoned_attributes_is_refused(world: World) -> None:
    r = world.call("rentals", "POST", "/v1/events",
                   json=_event("r1", "rental_returned", {"late_hours": 0}))
    assert r.status_code == 201
    before = world.ledger.head()
    r = world.call("rentals", "POST", "/v1/events/r1/correction", json={
        "source_event_id": "r1-fixed", "type": "rental_returned",
        "occurred_at": (NOW - timedelta(days=9)).isoformat(),
        "attributes": {"late_hours": HUGE}})
    assert r.status_code == 422 and "late_hours" in r.text, r.text
    assert world.ledger.head() == before


def test_event_files_are_checked_by_the_same_function(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    rows = [{"source": "rentals", "source_event_id": f"f{i}", "subject": "alice",
             "type": "rental_returned", "occurred_at": "2026-05-01T00:00:00Z",
             "attributes": {"late_hours": hours}} for i, hours in enumerate((1, HUGE, 5))]
    file = tmp_path / "events.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    policy = load_policy(SESAME)
    with Ledger.open(url, clock=FixedClock(NOW)) as ledger:
        before = ledger.head()
        with pytest.raises(InputError) as refused:
            ingest_file(ledger, file, validate=schema_validator(policy))
        assert "line 2: attributes: late_hours=9223372036854775807 is above its maximum" in \
            str(refused.value)
        assert ledger.head() == before
        report = ingest_file(ledger, file, validate=schema_validator(policy),
                             rejects=tmp_path / "rejects.jsonl")
        assert (report.appended, report.rejected) == (2, 1)
    rejected = json.loads((tmp_path / "rejects.jsonl").read_text())
    assert rejected["line"] == 2 and rejected["problems"][0]["field"] == "attributes"


# -- 1. poisoned event already stored: contained, and disputes and retractions work ---------

def test_a_stored_poisoned_event_does_not_break_any_read(world: World) -> None:
    _store_unchecked(world, "p1", "rental_returned", {"late_hours": HUGE})
    assert set(world.reads().values()) == {200}
    events = world.call("alice", "GET", "/v1/subjects/alice/report").json()
    assert "late_hours=9223372036854775807 is above its maximum" in json.dumps(events)
    scores = world.call("alice", "GET", "/v1/subjects/alice/scores").json()
    assert "sesame" in json.dumps(scores)


def test_disputing_or_retracting_a_stored_poisoned_event_works(world: World) -> None:
    _store_unchecked(world, "p1", "rental_returned", {"late_hours": HUGE})
    seq = world.ledger.head()[0]
    r = world.call("alice", "POST", "/v1/subjects/alice/disputes",
                   json={"event_seq": seq, "reason": "I returned it on time"})
    assert r.status_code == 201, r.text
    assert set(world.reads().values()) == {200}
    r = world.call("rentals", "POST", "/v1/events/p1/retraction",
                   json={"source_event_id": "p1-retracted"})
    assert r.status_code == 201, r.text
    assert set(world.reads().values()) == {200}
    report = world.call("alice", "GET", "/v1/subjects/alice/report").json()
    assert "withdrawn by rentals:p1-retracted" in json.dumps(report)


def test_the_command_line_report_and_explain_survive_a_stored_poisoned_event(
        world: World, tmp_path: Path) -> None:
    _store_unchecked(world, "p1", "rental_returned", {"late_hours": HUGE})
    for args in (["explain", "alice", "--at", "2026-06-01"],
                 ["report", "alice", "--at", "2026-06-01"]):
        done = _cli(*args, "--database-url", world.url)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr


# -- evaluation is total: a points or condition fault is contained ----------------------------

def _fragile() -> CompiledPolicy:
    return parse_declared(FRAGILE, "fragile.yaml")


def _fragile_events() -> list[Event]:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    return [Event("s", "1", "a", "cubed", t, t, {"n": 3_000_000}),
            Event("s", "2", "a", "checked", t + timedelta(days=1), t + timedelta(days=1),
                  {"k": 3_000_000}),
            Event("s", "3", "a", "paid", t + timedelta(days=2), t + timedelta(days=2), {}),
            Event("s", "4", "a", "cubed", t + timedelta(days=3), t + timedelta(days=3),
                  {"n": 1000}),
            Event("s", "5", "a", "checked", t + timedelta(days=4), t + timedelta(days=4),
                  {"k": 2})]


def test_a_fault_in_one_event_is_an_error_reason_and_the_rest_still_scores() -> None:
    policy = _fragile()
    valid_at = datetime(2026, 4, 1, tzinfo=UTC)
    result = evaluate(policy, _fragile_events(), valid_at)
    outcome = {e.event[1]: e for e in result.events}
    assert not outcome["1"].counted and outcome["1"].points == 0.0
    assert outcome["1"].why_not is not None and outcome["1"].why_not.startswith(
        "error: its points cannot be computed (points of cubed failed: OverflowError")
    assert not outcome["2"].counted
    assert outcome["2"].why_not is not None and outcome["2"].why_not.startswith(
        "error: condition `attrs.k * attrs.k * attrs.k > 0` cannot be evaluated")
    assert all(outcome[k].counted for k in ("3", "4", "5"))
    # The faulty events count 0 and nothing else: the same as leaving them out.
    without = evaluate(policy, _fragile_events()[2:], valid_at)
    assert result.scorecards["card"].score == without.scorecards["card"].score
    assert result.metrics == without.metrics == {"counted": 3}


def test_incremental_and_columnar_paths_agree_on_faulty_events(tmp_path: Path) -> None:
    policy = _fragile()
    events = _fragile_events()
    valid_at = datetime(2026, 4, 1, tzinfo=UTC)
    expected = evaluate(policy, events, valid_at)
    for order in (events, events[::-1]):
        state = SubjectState.empty(policy, ())
        for e in order:
            state.apply(e)
        reading = state.read(valid_at)
        assert reading.scores["card"] == pytest.approx(expected.scorecards["card"].score,
                                                       abs=1e-9)
        assert reading.metrics == expected.metrics
    con = duckdb_backend(memory_limit="512MB", threads=1)
    try:
        job = rescore(policy, events_table(con, events, tmp_path), valid_at)
    finally:
        con.disconnect()
    row = job.table.to_pylist()[0]
    assert row["score__card"] == pytest.approx(expected.scorecards["card"].score, abs=1e-9)
    assert row["metric__counted"] == expected.metrics["counted"]


def test_a_formula_overflowing_at_a_declared_bound_is_refused_at_load() -> None:
    text = FRAGILE.replace("n: {type: integer}", "n: {type: integer, maximum: 4000000}")
    with pytest.raises(InputError) as refused:
        parse_declared(text, "fragile.yaml")
    assert "[points-fault]" in str(refused.value) and "cubed" in str(refused.value)


def test_non_finite_policy_numbers_are_refused_at_load() -> None:
    text = FRAGILE.replace("points: 2\n", "points: .inf\n")
    with pytest.raises(InputError) as refused:
        parse_declared(text, "fragile.yaml")
    assert "finite" in str(refused.value)


# -- 6. dates outside the representable range ---------------------------------------------------

@pytest.mark.parametrize("moment", [EARLY, LATE])
def test_unrepresentable_dates_are_422_naming_the_field(world: World, moment: str) -> None:
    before = world.ledger.head()
    r = world.call("bank", "POST", "/v1/events",
                   json=_event("d1", "bill_paid", {}, occurred_at=moment))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "occurred_at"
    assert "outside the representable range" in r.json()["errors"][0]["reason"]
    r = world.call("bank", "POST", "/v1/events/batch", json={"events": [
        _event("d2", "bill_paid", {}), _event("d3", "bill_paid", {}, occurred_at=moment)]})
    assert r.status_code == 422 and r.json()["errors"][0]["index"] == 1, r.text
    r = world.call("rentals", "POST", "/v1/events", content=json.dumps(
        _cloud("d4", "rental_returned", {"late_hours": 0}, time=moment)),
        headers={"Content-Type": "application/cloudevents+json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "time", r.text
    r = world.call("bank", "POST", "/v1/events/ok1/correction", json={
        "source_event_id": "ok1-fixed", "type": "bill_paid", "occurred_at": moment,
        "attributes": {}})
    assert r.status_code == 422 and "occurred_at" in r.text, r.text
    assert world.ledger.head() == before
    r = world.call("alice", "POST", "/v1/subjects/alice/whatif", json={"at": moment})
    assert r.status_code == 422 and "at" in r.text, r.text
    r = world.call("alice", "POST", "/v1/subjects/alice/whatif", json={
        "add": [{"type": "bill_paid", "occurred_at": moment}]})
    assert r.status_code == 422 and "occurred_at" in r.text, r.text
    assert set(world.reads().values()) == {200}


def test_unrepresentable_command_line_dates_exit_2_naming_the_option(tmp_path: Path) -> None:
    for moment in (EARLY, LATE):
        with pytest.raises(InputError, match=r"--at: .* outside the representable range"):
            parse_moment(moment, "--at")
    url = f"sqlite:///{tmp_path / 'l.db'}"
    done = _cli("explain", "alice", "--at", EARLY, "--database-url", url)
    assert done.returncode == 2, done.stderr
    assert "--at:" in done.stderr and "outside the representable range" in done.stderr
    file = tmp_path / "events.csv"
    file.write_text("source,source_event_id,subject,type,occurred_at,attributes\n"
                    f"bank,e1,alice,bill_paid,{LATE},\n")
    done = _cli("ingest", str(file), "--database-url", url)
    assert done.returncode == 2, done.stderr
    assert "line 2: occurred_at" in done.stderr and "representable" in done.stderr


def test_events_at_the_ends_of_the_calendar_evaluate() -> None:
    """Representable dates whose retention, expiry or window end lies past the year 9999."""
    policy = load_policy(SESAME)
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, tzinfo=UTC)
    events = [Event("s", "1", "a", "repayment_late", last, last, {"days_late": 3, "amount": 1}),
              Event("s", "2", "a", "bill_overdue", last, last, {"days_overdue": 40}),
              Event("s", "3", "a", "identity_verified", last, last, {"method": "x"})]
    result = evaluate(policy, events, datetime.max.replace(tzinfo=UTC), opt_ins={"sesame"})
    assert all(e.counted for e in result.events)
    assert result.scorecards["sesame"].score is not None
    state = SubjectState.empty(policy, {"sesame"})
    for e in events:
        state.apply(e)
    reading = state.read(datetime.max.replace(tzinfo=UTC))
    assert reading.scores["sesame"] == pytest.approx(result.scorecards["sesame"].score)
    early = [Event("s", "4", "a", "bill_paid", first, first, {})]
    assert evaluate(policy, early, NOW, opt_ins={"sesame"}).events[0].why_not is not None


def test_the_ingest_command_checks_events_as_the_api_does(tmp_path: Path) -> None:
    """Once a policy is published, `trustledger ingest` refuses what the HTTP API refuses."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    with ServiceLedger.open(url, clock=FixedClock(NOW)) as ledger:
        put_in_force(ledger)
        publish_policy(ledger, SESAME)
        add_principal(ledger, "rentals", Role.SOURCE, accreditations=("rental_returned",),
                      domains=("rental",))
        add_principal(ledger, "bank", Role.SOURCE, accreditations=("bill_paid",),
                      domains=("finance",))
        before = ledger.head()
    rows = [{"source": "rentals", "source_event_id": "r1", "subject": "alice",
             "type": "rental_returned", "occurred_at": "2026-05-01T00:00:00Z",
             "attributes": {"late_hours": 9223372036854775807}},
            {"source": "bank", "source_event_id": "b1", "subject": "alice",
             "type": "gossip_reported", "occurred_at": "2026-05-01T00:00:00Z",
             "attributes": {}},
            {"source": "bank", "source_event_id": "b2", "subject": "alice",
             "type": "bill_paid", "occurred_at": "2026-05-01T00:00:00Z", "attributes": {}}]
    file = tmp_path / "events.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = _cli("ingest", str(file), "--database-url", url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "line 1: attributes" in done.stderr and "late_hours" in done.stderr, done.stderr
    assert "line 2: type" in done.stderr and "gossip_reported" in done.stderr, done.stderr
    assert "line 3" not in done.stderr
    with Ledger.open(url, clock=FixedClock(NOW)) as ledger:
        assert ledger.head() == before


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59.999999Z",
                                         "0001-01-01T00:00:00Z"])
def test_the_portal_draws_events_at_the_ends_of_the_calendar(world: World,
                                                             occurred_at: str) -> None:
    """Found by the fuzz test: the chart's last date, as a float timestamp, rounded into
    the year 10000 and the subject's portal page answered 500."""
    r = world.call("bank", "POST", "/v1/events", json={**_event("end", "bill_paid", {}),
                                                       "occurred_at": occurred_at})
    assert r.status_code == 201, r.text
    assert world.portal_page() == 200


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    trustledger = Path(sys.executable).parent / "trustledger"
    env = {**os.environ, "COLUMNS": "200"}
    with tempfile.TemporaryDirectory() as data:
        env["TRUSTLEDGER_DATA"] = data
        return subprocess.run([str(trustledger), *args], capture_output=True, text=True,
                              env=env, check=False)
