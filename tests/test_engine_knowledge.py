"""Bitemporal evaluation: known_at, corrections and withdrawals, the decision record, bad input."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.policies.support import d, ev, parse_declared
from trustledger.engine import RETRACTION, Event, evaluate
from trustledger.errors import InputError

POLICY = parse_declared("""
policy: knowledge
title: knowledge
effective_from: 2026-01-01
event_types:
  late:
    domain: finance
    category: credit_repayment
    gravity: moderate
    attributes:
      days: {type: integer, minimum: 1}
    points: {formula: "-2.0 * double(attrs.days)"}
    retention: P5Y
  paid: {domain: finance, category: credit_repayment, gravity: minor, points: 5, retention: P5Y}
scorecards:
  s: {events: [late, paid], base: 600}
""", "knowledge.yaml")


def score(events: list[Event], at: str, known: str | None = None) -> float | None:
    return evaluate(POLICY, events, d(at), d(known) if known else None).scorecards["s"].score


def test_known_at_hides_events_recorded_later() -> None:
    late = ev("1", "late", "2026-02-01", "2026-04-01", days=5)   # -10, recorded 2 months late
    assert score([late], "2026-03-01", known="2026-03-01") == 600   # not known yet
    assert score([late], "2026-03-01", known="2026-04-01") == 590   # known now, about March
    assert score([late], "2026-03-01") == 590                        # no knowledge limit


def test_withdrawal_takes_effect_only_once_known() -> None:
    late = ev("1", "late", "2026-02-01", "2026-02-01", days=5)
    withdrawal = ev("2", RETRACTION, "2026-05-01", "2026-05-01", supersedes="1")
    events = [late, withdrawal]
    assert score(events, "2026-03-01", known="2026-04-01") == 590   # withdrawal not known
    assert score(events, "2026-03-01", known="2026-05-01") == 600   # known: as if never
    result = evaluate(POLICY, events, d("2026-03-01"), d("2026-05-01"))
    row = result.scorecards["s"].contributions[0]
    assert (row.counted, row.why_not) == (False, "withdrawn by src:2 (recorded 2026-05-01)")


def test_correction_replaces_the_earlier_event() -> None:
    late = ev("1", "late", "2026-02-01", days=5)                    # -10
    fixed = ev("2", "late", "2026-02-01", "2026-02-10", supersedes="1", days=2)   # -4
    assert score([late, fixed], "2026-03-01") == 596
    assert score([late, fixed], "2026-03-01", known="2026-02-05") == 590
    result = evaluate(POLICY, [late, fixed], d("2026-03-01"))
    assert result.events[0].why_not == "corrected by src:2 (recorded 2026-02-10)"


def test_supersedes_only_within_the_same_source() -> None:
    late = ev("1", "late", "2026-02-01", days=5)
    other = ev("9", RETRACTION, "2026-02-02", source="someone-else", supersedes="1")
    assert score([late, other], "2026-03-01") == 590


def test_decision_record_names_policy_times_and_ledger_position() -> None:
    events = [ev("1", "paid", "2026-02-01", seq=7), ev("2", "paid", "2026-02-02", seq=9),
              ev("3", "paid", "2026-02-03", "2026-06-01", seq=12)]
    result = evaluate(POLICY, events, d("2026-03-01"), d("2026-04-01"))
    assert result.policy == "knowledge"
    assert result.policy_hash == POLICY.hash and POLICY.hash.startswith("sha256:")
    assert (result.valid_at, result.known_at) == (d("2026-03-01"), d("2026-04-01"))
    assert result.ledger_seq == 9        # seq 12 was recorded after known_at
    assert result.subject == "alice"


def test_events_after_valid_at_are_not_seen() -> None:
    events = [ev("1", "paid", "2026-02-01"), ev("2", "paid", "2026-04-01")]
    result = evaluate(POLICY, events, d("2026-03-01"))
    assert [o.event for o in result.events] == [("src", "1")]
    assert result.scorecards["s"].score == 605


def test_unknown_type_and_bad_attributes_do_not_count_and_say_why() -> None:
    events = [ev("1", "mystery", "2026-02-01"), ev("2", "late", "2026-02-02", days=0),
              ev("3", "late", "2026-02-03", days=1, colour="red"),
              ev("4", "late", "2026-02-04")]
    result = evaluate(POLICY, events, d("2026-03-01"))
    why = {o.event[1]: o.why_not for o in result.events}
    assert why == {
        "1": "event type mystery is not in policy knowledge",
        "2": "attributes do not fit the policy: days=0 is below its minimum 1",
        "3": "attributes do not fit the policy: unknown attribute(s) colour",
        "4": "attributes do not fit the policy: attribute days is missing",
    }
    assert result.scorecards["s"].score == 600


@pytest.mark.parametrize(("events", "valid_at", "message"), [
    ([ev("1", "paid", "2026-02-01"), ev("2", "paid", "2026-02-01", subject="bob")],
     d("2026-03-01"), "one subject"),
    ([ev("1", "paid", "2026-02-01"), ev("1", "paid", "2026-02-02")],
     d("2026-03-01"), "given twice"),
    ([], datetime(2026, 3, 1), "timezone-aware"),
    ([], d("2025-12-31"), "effective from"),
])
def test_bad_input_is_refused(events: list[Event], valid_at: datetime, message: str) -> None:
    with pytest.raises(InputError, match=message):
        evaluate(POLICY, events, valid_at)


def test_unknown_opt_in_is_refused() -> None:
    with pytest.raises(InputError, match="no scorecard"):
        evaluate(POLICY, [], d("2026-03-01"), opt_ins={"sesame"})
