"""What-if: every answer equals a fresh evaluation of the modified history; "what it takes"
finds the day decay alone reaches a target (exact to a day) and the fewest removals."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import FixedClock, examples
from tests.test_rights_helpers import driving, event, offence, seqs, sesame
from trustledger.engine import Event, evaluate
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Ledger
from trustledger.rights import open_dispute
from trustledger.rights.whatif import (
    Hypothetical,
    MeasureTarget,
    TierTarget,
    add_event,
    at_date,
    parse_target,
    reached,
    remove_event,
    what_if,
    what_it_takes,
)
from trustledger.scoring import Assessment, assess, assess_subject

DRIVING = driving()
SESAME = sesame()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def d(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _pure(events: list[Event], at: datetime = NOW, policy: Any = DRIVING) -> Assessment:
    return assess(policy, "bob", events, [], at)


BOB = [event("bob", "m1", "offence_minor", d("2025-01-01"), seq=1),
       event("bob", "s1", "offence_serious", d("2025-06-01"), seq=2),
       event("bob", "m2", "offence_minor", d("2025-07-01"), seq=3)]


# -- the property: what-if equals a fresh evaluation of the modified history -------------

TYPES = ["offence_minor", "offence_serious", "offence_grave", "offence_reported_late",
         "remedial_course"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Event], list[int], list[Hypothetical], datetime]:
    size = draw(st.integers(1, 8))
    events: list[Event] = []
    for i in range(size):
        occurred = d("2019-01-01") + timedelta(days=draw(st.integers(0, 2500)))
        recorded = occurred + timedelta(days=draw(st.integers(0, 400)))
        supersedes = None
        if len(events) > 0 and draw(st.booleans()) and draw(st.booleans()):
            supersedes = draw(st.sampled_from(events)).source_event_id
        events.append(Event("src", f"e{i}", "bob", draw(st.sampled_from(TYPES)), occurred,
                            min(recorded, NOW), {}, supersedes, i + 1))
    removed = draw(st.lists(st.sampled_from([e.seq for e in events if e.seq]), max_size=3))
    later = timedelta(days=draw(st.integers(0, 2000)))
    added = [Hypothetical(draw(st.sampled_from(TYPES)),
                          NOW - timedelta(days=draw(st.integers(0, 1500))) + later)
             for _ in range(draw(st.integers(0, 2)))]
    return events, removed, added, NOW + later


def _expected_history(events: list[Event], removed: list[int]) -> list[Event]:
    # A removed event takes the events it supersedes (transitively) with it.
    by_key = {e.key: e for e in events}
    gone: set[tuple[str, str]] = set()
    for e in events:
        if e.seq not in removed:
            continue
        current: Event | None = e
        while current is not None and current.key not in gone:
            gone.add(current.key)
            target = current.supersedes
            current = by_key.get((current.source, target)) if target else None
    return [e for e in events if e.key not in gone]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_what_if_equals_a_fresh_evaluation_of_the_modified_history(
        case: tuple[list[Event], list[int], list[Hypothetical], datetime]) -> None:
    events, removed, added, at = case
    result = what_if(_pure(events), remove=removed, add=added, at=at)
    expected_events = _expected_history(events, removed) + list(result.added)
    assert [(e.type, e.occurred_at) for e in result.added] == \
        [(h.type, h.occurred_at) for h in added]
    assert result.after == evaluate(DRIVING, expected_events, at)
    assert result.before == evaluate(DRIVING, events, NOW)


TARGETS = [TierTarget("driving", t) for t in ("clear", "noted", "admonished", "warned")] + \
    [MeasureTarget(m) for m in ("admonition", "warning", "licence_revoked")]


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.sampled_from(TARGETS))
def test_what_it_takes_answers_are_checked_by_the_engine(
        case: tuple[list[Event], list[int], list[Hypothetical], datetime], target: Any) -> None:
    events = case[0]
    answer = what_it_takes(_pure(events), target)
    if answer.by_decay_at is not None:
        assert reached(DRIVING, target, evaluate(DRIVING, events, answer.by_decay_at))
        if answer.by_decay_at - DAY > NOW:
            assert not reached(DRIVING, target, evaluate(DRIVING, events,
                                                         answer.by_decay_at - DAY))
    if answer.removals and answer.removals_exact:
        rest = _expected_history(events, [e.seq for e in answer.removals if e.seq])
        assert reached(DRIVING, target, evaluate(DRIVING, rest, NOW))
        # No smaller set of candidates reaches it.
        for smaller in itertools.combinations(answer.candidates, len(answer.removals) - 1):
            fewer = _expected_history(events, [e.seq for e in smaller if e.seq])
            assert not reached(DRIVING, target, evaluate(DRIVING, fewer, NOW))


def test_the_shortcuts_are_what_if() -> None:
    base = _pure(BOB)
    assert remove_event(base, 2).after == evaluate(DRIVING, [BOB[0], BOB[2]], NOW)
    assert remove_event(base, ("src", "s1")).after == remove_event(base, 2).after
    later = NOW + 600 * DAY
    assert at_date(base, later).after == evaluate(DRIVING, BOB, later)
    added = add_event(base, Hypothetical("offence_grave", NOW - DAY))
    assert added.after.scorecards["driving"].score == 7.0
    assert added.changes() == ("driving: 4 → 7 (+3), tier admonished → warned",
                               "warning: inactive → active")


# -- what it takes --------------------------------------------------------------------------


def test_decay_alone_reaches_a_tier_and_lifts_a_restriction_on_the_exact_day() -> None:
    # 4 points; m1 expires on 2027-07-01 (2 years 6 months), leaving 3: tier noted.
    base = _pure(BOB)
    for target in (TierTarget("driving", "noted"), MeasureTarget("admonition")):
        answer = what_it_takes(base, target)
        assert not answer.reached_now
        assert answer.by_decay_at == d("2027-07-01")
        assert answer.by_decay is not None and reached(DRIVING, target, answer.by_decay)
        day_before = evaluate(DRIVING, BOB, d("2027-06-30"))
        assert not reached(DRIVING, target, day_before)
    clear = what_it_takes(base, TierTarget("driving", "clear"))
    assert clear.by_decay_at == d("2030-06-01")  # the serious offence's 5 years


def test_decay_reaches_a_tier_continuously_exact_to_a_day() -> None:
    # +30 for identity, -150 for a default halving every 730 days: 550 + 30 - 150·2^(-t/730)
    # reaches 550 after 730·log2(5) = 1694.95 days.
    events = [event("bob", "id", "identity_verified", d("2025-06-01"), method="passport"),
              event("bob", "def", "debt_default", d("2025-06-01"), amount=900.0)]
    base = assess(SESAME, "bob", events, [_opt_in()], NOW)
    target = parse_target(SESAME, "sesame:550-599")
    answer = what_it_takes(base, target)
    assert answer.by_decay_at is not None
    crossing = d("2025-06-01") + timedelta(days=730 * math.log2(5))
    assert timedelta(0) <= answer.by_decay_at - crossing < DAY
    opted = {"sesame"}
    at = answer.by_decay_at
    assert reached(SESAME, target, evaluate(SESAME, events, at, opt_ins=opted))
    assert not reached(SESAME, target, evaluate(SESAME, events, at - DAY, opt_ins=opted))
    # Removing the default reaches it at once; deposit-free rental (650) is out of reach.
    assert [e.source_event_id for e in answer.removals or ()] == ["def"]
    rental = what_it_takes(base, parse_target(SESAME, "deposit_free_rental"))
    assert (rental.by_decay_at, rental.removals) == (None, None)


def test_the_fewest_removals_exact_and_greedy() -> None:
    base = _pure(BOB)
    noted = what_it_takes(base, TierTarget("driving", "noted"))
    assert [e.source_event_id for e in noted.removals or ()] == ["s1"] and noted.removals_exact
    assert noted.by_removals == evaluate(DRIVING, [BOB[0], BOB[2]], NOW)
    clear = what_it_takes(base, TierTarget("driving", "clear"))
    assert len(clear.removals or ()) == 3
    greedy = what_it_takes(base, TierTarget("driving", "noted"), exact_limit=0)
    assert [e.source_event_id for e in greedy.removals or ()] == ["s1"]
    assert not greedy.removals_exact
    # Greedy prunes what is not needed: 3 minors + a serious = 5; "noted" (< 4) needs 2 points
    # gone: greedy takes the serious (2) first and stops.
    more = [*BOB, event("bob", "m3", "offence_minor", d("2025-08-01"), seq=4)]
    pruned = what_it_takes(_pure(more), TierTarget("driving", "noted"), exact_limit=0)
    assert [e.source_event_id for e in pruned.removals or ()] == ["s1"]
    already = what_it_takes(base, TierTarget("driving", "admonished"))
    assert already.reached_now and already.removals == ()
    assert "reached already" in already.summary()[0]


# -- with a ledger: disputed events stay out; every refusal names the field -------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path / 'l.db'}", clock=FixedClock(NOW)) as opened:
        yield opened


def test_what_if_starts_from_the_history_scoring_sees(ledger: Ledger) -> None:
    ledger.append_events([offence("bob", e.source_event_id, e.type, e.occurred_at) for e in BOB])
    ids = seqs(ledger, "bob")
    open_dispute(ledger, "bob", ids["s1"], "not me")
    base = assess_subject(ledger, "bob", DRIVING, NOW + DAY)
    result = what_if(base, remove=[ids["m1"]])
    assert [e.source_event_id for e in result.removed] == ["m1"]
    expected = [e for e in ledger.events("bob") if e.source_event_id == "m2"]
    assert result.after == evaluate(DRIVING, expected, NOW + DAY)
    with pytest.raises(InputError, match=r"remove\[0\]: event .* is already left out"):
        what_if(base, remove=[ids["s1"]])
    candidates = what_it_takes(base, TierTarget("driving", "clear")).candidates
    assert "s1" not in {e.source_event_id for e in candidates}  # already disputed


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({"remove": [999]}, NotFoundError, r"remove\[0\]: subject 'bob' has no event 999"),
    ({"remove": ["s1"]}, InputError, r"remove\[0\]"),
    ({"remove": [True]}, InputError, r"remove\[0\]"),
    ({"add": [Hypothetical("parking", NOW)]}, NotFoundError, r"add\[0\]\.type"),
    ({"add": [Hypothetical("bill_paid", NOW)]}, NotFoundError, r"add\[0\]\.type"),
    ({"add": [Hypothetical("offence_minor", NOW, {"speed": 3})]}, InputError,
     r"add\[0\]\.attributes: unknown attribute"),
    ({"add": [Hypothetical("offence_minor", NOW + DAY)]}, InputError, r"add\[0\]\.occurred_at"),
    ({"add": [Hypothetical("offence_minor", datetime(2025, 1, 1))]}, InputError,
     r"add\[0\]\.occurred_at"),
    ({"add": [Hypothetical("offence_minor", NOW, {}, NOW - DAY)]}, InputError,
     r"add\[0\]\.recorded_at"),
    ({"at": datetime(2027, 1, 1)}, InputError, "at: must be a timezone-aware"),
    ({"at": d("2019-01-01")}, InputError, "at: .* is before policy driving's effective_from"),
])
def test_what_if_refusals_name_the_field(kwargs: dict[str, Any], error: type[Exception],
                                         field: str) -> None:
    with pytest.raises(error, match=field):
        what_if(_pure(BOB), **kwargs)


@pytest.mark.parametrize(("text", "field"), [
    ("driving:gold", "target: scorecard driving has no tier 'gold'"),
    ("credit:A", "target: policy driving has no scorecard 'credit'"),
    ("curfew", "target: policy driving has no measure 'curfew'"),
    (" ", "target: required"),
])
def test_target_refusals_name_the_field(text: str, field: str) -> None:
    with pytest.raises((NotFoundError, InputError), match=field):
        parse_target(DRIVING, text)
    with pytest.raises(NotFoundError, match="target"):
        what_it_takes(_pure(BOB), MeasureTarget("curfew"))


def _opt_in() -> Any:
    from trustledger.ledger import Entry

    return Entry(seq=100, kind="consent.granted", subject="bob", recorded_at=d("2025-01-01"),
                 payload={"scope": "scorecard", "scorecard": "sesame"}, payload_hash="",
                 prev_hash="", hash="")


def test_hypothetical_keys_never_clash_with_real_ones() -> None:
    events = [*BOB, Event("what-if", "hypothetical-1", "bob", "offence_minor", d("2025-02-01"),
                          d("2025-02-01"))]
    result = add_event(_pure(events), Hypothetical("offence_minor", NOW))
    assert result.added[0].source_event_id == "hypothetical-2"
