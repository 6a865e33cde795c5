"""What it takes, by new events: the positive paths to a tier or a measure.

Every path is proven by the one engine: its events, added in a what-if, reach the target
(and a direct ``evaluate`` of the same history agrees), one event fewer on the same
schedule does not, the schedule keeps within the scorecard's caps, and only types the
policy rewards, in categories a policy may score, are ever suggested. Then the same
through the command line (``whatif --reach``, the suggested events sent back with
``--add``) and the API (``paths`` in the what-if response, sent back as ``add``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.clock import FixedClock
from tests.governance import put_in_force
from tests.test_api import World, build_world
from tests.test_api import event as api_event
from tests.test_rights_helpers import SESAME_FILE, cli_app, driving, event, sesame
from tests.test_whatif import BOB, _opt_in
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.ledger import EventIn, Ledger
from trustledger.policy.taxonomy import ALLOWED_CATEGORIES, OUT_OF_BOUNDS_CATEGORIES
from trustledger.rights import grant_opt_in
from trustledger.rights.whatif import (
    PositivePath,
    WhatItTakes,
    parse_target,
    reached,
    what_if,
    what_it_takes,
)
from trustledger.scoring import Assessment, assess, publish_policy

SESAME = sesame()
DRIVING = driving()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# 534.27 (poor): a late repayment and a late rental weigh on one repayment and one rental
# on time.
AMY = [event("bob", "r1", "repayment_on_time", d("2025-03-01"), seq=1, amount=1000.0),
       event("bob", "l1", "repayment_late", d("2025-06-01"), seq=2, days_late=20,
             amount=100.0),
       event("bob", "t1", "rental_returned", d("2025-07-01"), seq=3, late_hours=30),
       event("bob", "t2", "rental_returned", d("2025-08-01"), seq=4, late_hours=0)]


def _opted(events: list[Event] = AMY) -> Assessment:
    return assess(SESAME, "bob", events, [_opt_in()], NOW)


def _engine(base: Assessment, path: PositivePath) -> Evaluation:
    """The same history and the path's events, straight through ``evaluate``."""
    added = [Event("elsewhere", f"p{i}", "bob", h.type, h.occurred_at, h.occurred_at,
                   dict(h.attributes)) for i, h in enumerate(path.events)]
    return evaluate(base.policy, [*base.scored, *added], path.reached_at,
                    opt_ins=base.opt_ins)


def _check_path(base: Assessment, takes: WhatItTakes, path: PositivePath) -> None:
    policy, target = base.policy, takes.target
    etype = policy.event_types[path.type]
    assert etype.category in ALLOWED_CATEGORIES
    assert etype.category not in OUT_OF_BOUNDS_CATEGORIES
    # The suggested events, added in a what-if, reach the target; so does the engine directly.
    after = what_if(base, add=path.events, at=path.reached_at).after
    assert reached(policy, target, after) and reached(policy, target, path.evaluation)
    assert reached(policy, target, _engine(base, path))
    # One fewer on the same schedule does not (with none, it is not reached now).
    fewer = path.events[:-1]
    if fewer:
        assert not reached(policy, target,
                           what_if(base, add=fewer, at=fewer[-1].occurred_at).after)
    assert path.events[0].occurred_at == base.valid_at
    assert path.reached_at == path.events[-1].occurred_at
    gaps = {b.occurred_at - a.occurred_at for a, b in zip(path.events, path.events[1:],
                                                           strict=False)}
    assert gaps <= {path.every}


@pytest.mark.parametrize("text", ["sesame:good", "sesame:very good", "sesame:EXCELLENT",
                                  "deposit_free_rental"])
def test_every_positive_path_reaches_the_target_and_one_fewer_does_not(text: str) -> None:
    base = _opted()
    target = parse_target(SESAME, text)
    assert not reached(SESAME, target, base.evaluation)
    takes = what_it_takes(base, target)
    assert {p.type for p in takes.paths} == {"repayment_on_time", "rental_returned",
                                             "bill_paid"}
    card = SESAME.scorecards["sesame"]
    for path in takes.paths:
        _check_path(base, takes, path)
        assert path.type in card.events and path.points > 0
        # Paced to the cap (20 points gained a month): no month holds more than counts.
        months = Counter((h.occurred_at.year, h.occurred_at.month) for h in path.events)
        assert max(months.values()) * path.points <= 20 + 1e-9
        assert "20 points gained a month" in path.paced_by
    assert [p.reached_at for p in takes.paths] == sorted(p.reached_at for p in takes.paths)
    # The subject's own attributes where they have them: amount 1000 gives +4 (2 + 1000/500).
    repay = next(p for p in takes.paths if p.type == "repayment_on_time")
    assert repay.attributes == {"amount": 1000.0} and repay.points == 4.0
    rental = next(p for p in takes.paths if p.type == "rental_returned")
    assert rental.attributes == {"late_hours": 0} and rental.points == 3.0
    assert rental.label == "rental returned (in your favour)"
    # Identity verification helps (+30 once) but cannot get there alone.
    assert any(n.startswith("identity verified (+30 each) helps") for n in takes.notes)
    lines = takes.summary()
    assert lines[1].startswith("by new events: ") and any(
        line.startswith("by decay and expiry alone") for line in lines)


def test_the_paths_are_ranked_and_described_in_words() -> None:
    takes = what_it_takes(_opted(), parse_target(SESAME, "sesame:good"))
    first = takes.paths[0]
    assert first.type == "repayment_on_time"
    assert first.describe() == (
        f"repayment on time with amount 1000, +4 each: {first.count} times, one every 7 days "
        "(sesame counts at most 20 points gained a month), from 2026-01-01 to "
        f"{first.reached_at.date().isoformat()}")
    assert f"by new events: {first.describe()}" in takes.summary()


def test_a_type_that_counts_once_is_a_path_of_one() -> None:
    # 550 - 25 = 525 (poor): identity verification (+30) alone gets to fair.
    events = [event("bob", "l", "repayment_late", d("2025-12-31"), seq=1, days_late=15,
                    amount=10.0)]
    base = _opted(events)
    takes = what_it_takes(base, parse_target(SESAME, "sesame:fair"))
    verified = next(p for p in takes.paths if p.type == "identity_verified")
    assert verified.count == 1 and verified.reached_at == NOW
    assert verified.describe().endswith(": once, on 2026-01-01")
    _check_path(base, takes, verified)
    # Once verified, another verification adds nothing: it is no path any more.
    again = _opted([*events, event("bob", "i", "identity_verified", d("2025-06-01"), seq=2,
                                   method="passport")])
    assert again.evaluation.scorecards["sesame"].tier == "550-599"
    better = what_it_takes(again, parse_target(SESAME, "sesame:good"))
    assert "identity_verified" not in {p.type for p in better.paths}


def test_without_the_opt_in_no_event_counts_and_it_says_so() -> None:
    base = assess(SESAME, "bob", AMY, [], NOW)
    takes = what_it_takes(base, parse_target(SESAME, "sesame:good"))
    assert takes.paths == ()
    assert "sesame is opt-in and you have not opted in: no event counts on it until you do" \
        in takes.notes
    assert "by new events: no single kind of event the policy rewards reaches it within 5 " \
        "years" in takes.summary()


def test_on_penalty_points_the_path_lowers_the_points() -> None:
    # Bob has 4 points (admonished): one remedial course (-1, once in 5 years) lifts the
    # admonition and brings him down to "noted"; nothing gets him to "clear".
    base = assess(DRIVING, "bob", BOB, [], NOW)
    for text in ("driving:noted", "admonition"):
        takes = what_it_takes(base, parse_target(DRIVING, text))
        (course,) = takes.paths
        assert (course.type, course.count, course.points) == ("remedial_course", 1, -1.0)
        _check_path(base, takes, course)
    clear = what_it_takes(base, parse_target(DRIVING, "driving:clear"))
    assert clear.paths == ()
    assert any(n.startswith("remedial course (\u22121 each) helps") for n in clear.notes)
    # Offences add points: they are never suggested, whatever the target.
    for text in ("driving:noted", "driving:clear", "admonition", "warning"):
        takes = what_it_takes(base, parse_target(DRIVING, text))
        assert all(not p.type.startswith("offence") for p in takes.paths)


def test_a_knowledge_limit_is_not_projected() -> None:
    base = assess(SESAME, "bob", AMY, [_opt_in()], NOW, NOW)
    takes = what_it_takes(base, parse_target(SESAME, "sesame:good"))
    assert takes.paths == () and not takes.paths_searched
    assert [line for line in takes.summary() if line.startswith("by new events")] == [
        "by new events: not projected for a moment with a knowledge limit"]


# -- the command line -----------------------------------------------------------------------


def test_the_cli_lists_the_paths_and_adding_them_reaches_the_tier(
        tmp_path: Path, clock: FixedClock) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    clock.set(d("2025-01-02"))
    with Ledger.open(url, clock=clock) as ledger:
        put_in_force(ledger)   # two operators put the shipped register in force
        publish_policy(ledger, SESAME_FILE)
        grant_opt_in(ledger, "bob", "sesame")
        clock.set(NOW)
        ledger.append_events([EventIn(source="src", source_event_id=e.source_event_id,
                                      subject="bob", type=e.type, occurred_at=e.occurred_at,
                                      attributes=dict(e.attributes)) for e in AMY])
    runner, app = CliRunner(), cli_app()
    at = ["--at", NOW.isoformat(), "--database-url", url]
    out = runner.invoke(app, ["whatif", "bob", "--reach", "sesame:very good", *at])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "what it takes to reach tier very good (650-699) on sesame:" in text
    found = re.search(r"by new events: repayment on time with amount 1000, \+4 each: (\d+) "
                      r"times, one every (\d+) days .*?from 2026-01-01 to (\d{4}-\d\d-\d\d)", text)
    assert found, text
    count, every, until = int(found[1]), int(found[2]), found[3]
    adds = []
    for i in range(count):
        moment = NOW + timedelta(days=every * i)
        adds += ["--add", json.dumps({"type": "repayment_on_time",
                                      "occurred_at": moment.isoformat(),
                                      "attributes": {"amount": 1000}})]
    assert (NOW + timedelta(days=every * (count - 1))).date().isoformat() == until
    last = (NOW + timedelta(days=every * (count - 1))).isoformat()
    with_them = runner.invoke(app, ["whatif", "bob", *adds, "--date", last, *at])
    assert with_them.exit_code == 0, with_them.output
    assert re.search(r"tier 350-549 → (650-699|700-950)", with_them.output), with_them.output
    one_fewer = runner.invoke(app, ["whatif", "bob", *adds[:-2], "--date",
                                    (NOW + timedelta(days=every * (count - 2))).isoformat(),
                                    *at])
    assert not re.search(r"→ (650-699|700-950)", one_fewer.output), one_fewer.output


# -- the API --------------------------------------------------------------------------------


@pytest.fixture
def world(database_url: str, clock: FixedClock) -> Any:
    yield from build_world(database_url, clock=clock, decision_max_age=0.0)


def test_the_api_returns_the_paths_and_sending_them_back_reaches_the_tier(
        world: World) -> None:
    world.opt_in("alice")
    r = world.call("source", "POST", "/v1/events",
                   json=api_event(30, "alice", "bill_overdue", 12, days_overdue=65))
    assert r.status_code == 201, r.text
    asked = world.call("alice", "POST", "/v1/subjects/alice/whatif",
                       json={"reach": "sesame:Good"})
    assert asked.status_code == 200, asked.text
    takes = asked.json()["what_it_takes"]
    assert takes["target"] == "sesame:600-649"
    assert takes["paths"], takes
    path = min(takes["paths"], key=lambda p: p["count"])
    assert path["count"] == len(path["events"]) <= 100
    assert path["text"] in " ".join(takes["summary"])
    assert path["first_at"] == path["events"][0]["occurred_at"]
    assert path["reached_at"] == path["events"][-1]["occurred_at"]
    back = world.call("alice", "POST", "/v1/subjects/alice/whatif",
                      json={"add": path["events"], "at": path["events"][-1]["occurred_at"]})
    assert back.status_code == 200, back.text
    tier = back.json()["after"]["scorecards"]["sesame"]["tier"]
    assert tier in ("600-649", "650-699", "700-950")
    before = back.json()["before"]["scorecards"]["sesame"]["tier"]
    assert before not in ("600-649", "650-699", "700-950")


# -- the report -----------------------------------------------------------------------------


def test_the_report_shows_the_next_tier_and_lists_events_by_date(
        database_url: str, clock: FixedClock) -> None:
    from trustledger.rights.html import report_html
    from trustledger.rights.report import build_report

    clock.set(d("2025-01-02"))
    with Ledger.open(database_url, clock=clock) as ledger:
        put_in_force(ledger)   # two operators put the shipped register in force
        publish_policy(ledger, SESAME_FILE)
        grant_opt_in(ledger, "bob", "sesame")
        clock.set(NOW)
        # Appended newest first: ledger order is the reverse of date order.
        ledger.append_events([EventIn(source="src", source_event_id=e.source_event_id,
                                      subject="bob", type=e.type, occurred_at=e.occurred_at,
                                      attributes=dict(e.attributes)) for e in reversed(AMY)])
        report = build_report(ledger, "bob", NOW)
    assert [e.source_event_id for e in report.events] == ["r1", "l1", "t1", "t2"]
    assert [e.label for e in report.events] == [
        "repayment on time", "late repayment", "rental returned (against you)",
        "rental returned (in your favour)"]
    (card,) = report.scorecards
    assert (card.tier, card.tier_label) == ("350-549", "poor")
    nxt = card.next_tier
    assert nxt is not None and (nxt.tier, nxt.label) == ("550-599", "fair")
    takes = what_it_takes(_opted(), parse_target(SESAME, "sesame:fair"))
    assert [p.text for p in nxt.paths] == [p.describe() for p in takes.paths]
    assert nxt.paths and nxt.lines[:-1] == takes.summary()[:-1]  # removals name ledger seqs
    page = report_html(report)
    assert 'id="next-tier-sesame"' in page and "What it takes to reach fair (550-599)" in page
    assert nxt.paths[0].text in page
    assert report.to_dict()["scorecards"][0]["next_tier"]["paths"][0]["count"] == \
        nxt.paths[0].count


@pytest.mark.parametrize("moment", [datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                                    datetime(1, 1, 1, tzinfo=UTC)])
def test_events_at_the_ends_of_the_calendar_still_get_an_answer(moment: datetime) -> None:
    # An event dated at the calendar's end used to overflow the decay search's horizon.
    events = [*AMY, event("bob", "end", "bill_paid", moment, seq=9)]
    takes = what_it_takes(_opted(events), parse_target(SESAME, "sesame:good"))
    assert takes.paths and takes.by_decay_at is None
    for path in takes.paths:
        assert reached(SESAME, takes.target, path.evaluation)
