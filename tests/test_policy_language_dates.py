"""Reported dates and set-backs in the language: `date` attributes, `expiry.from: <attribute>`,
`requires.set_back` — what loads, what is refused (file, line, key path, rule), the JSON
Schema, and the one rule every path applies to reported dates."""

from __future__ import annotations

import pytest

from tests.policies.support import d, ev, parse_declared
from trustledger.engine import evaluate
from trustledger.engine.incremental import SubjectState
from trustledger.errors import InputError, PolicyError, PolicyProblem
from trustledger.policy.models import json_schema
from trustledger.policy.register import register_json_schema

BASE = """\
policy: t
title: reported dates
effective_from: 2026-01-01
event_types:
  fine:
    domain: transport
    category: traffic_conduct
    gravity: minor
    attributes:
      final_on: {type: date}
      note: {type: string, required: false}
    points: 1
    expiry: {after: P2Y, from: final_on, overhang: P1Y}
    retention: P10Y
scorecards:
  points: {events: [fine], higher_is: worse, floor: 0}
measures:
  notice:
    kind: restriction
    domain: transport
    severity: minor
    condition: "points.score >= 2.0"
  ban:
    kind: restriction
    domain: transport
    severity: moderate
    condition: "points.score >= 4.0"
    requires: {measure: notice, set_back: {scorecard: points, to: 3}}
"""

POLICY = parse_declared(BASE, "t.yaml")


def problems(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        parse_declared(text, "t.yaml")
    return info.value.problems


def where(problem: PolicyProblem) -> tuple[str, int | None, str]:
    return problem.rule, problem.location.line, problem.location.path


def test_expiry_from_a_date_attribute_loads() -> None:
    fine = POLICY.event_types["fine"]
    assert fine.expiry_attribute == "final_on"
    assert POLICY.attribute_anchored_types == frozenset({"fine"})
    assert POLICY.set_back_scorecards == frozenset({"points"})
    assert POLICY.replay_types == frozenset({"fine"})
    assert POLICY.measures["ban"].set_back == ("points", 3.0)
    assert POLICY.measures["ban"].notice is None


@pytest.mark.parametrize(("change", "rule", "line", "path", "words"), [
    ("from: final_on,", "unknown-reference", 13, "event_types.fine.expiry.from", "`final_ox`"),
    ("final_on: {type: date}", "expiry-from", 13, "event_types.fine.expiry.from",
     "of type string"),
    ("final_on: {type: date}", "expiry-from", 13, "event_types.fine.expiry.from", "optional"),
])
def test_expiry_from_must_name_a_required_date_attribute(change: str, rule: str, line: int,
                                                          path: str, words: str) -> None:
    text = BASE
    if words == "`final_ox`":
        text = BASE.replace("from: final_on,", "from: final_ox,")
    elif words == "of type string":
        text = BASE.replace("final_on: {type: date}", "final_on: {type: string}")
    else:
        text = BASE.replace("final_on: {type: date}", "final_on: {type: date, required: false}")
    found = problems(text)
    assert where(found[0]) == (rule, line, path)
    assert words in found[0].message
    assert str(found[0]).startswith(f"t.yaml:{line}:")


def test_expiry_from_refuses_a_value_that_is_no_name() -> None:
    found = problems(BASE.replace("from: final_on,", "from: Final-On,"))
    assert (found[0].rule, found[0].location.path) == ("schema", "event_types.fine.expiry.from")
    assert "occurred_at, recorded_at or the name of a date attribute" in found[0].message


@pytest.mark.parametrize(("change", "path", "words"), [
    ("{scorecard: points, to: 3}", "measures.ban.requires.set_back.scorecard",
     "no scorecard `pointz`"),
    ("{scorecard: points, to: 3}", "measures.ban.requires.set_back.to",
     "outside the scorecard's floor"),
])
def test_set_back_references_are_checked(change: str, path: str, words: str) -> None:
    replacement = "{scorecard: pointz, to: 3}" if "pointz" in words else \
        "{scorecard: points, to: -1}"
    found = problems(BASE.replace(change, replacement))
    assert found[0].location.path == path
    assert words in found[0].message
    assert found[0].location.line == 28


def test_set_back_needs_a_scorecard_the_condition_reads_without_decay() -> None:
    text = BASE.replace("scorecards:\n", "scorecards:\n  other: {events: [fine]}\n")
    text = text.replace("{scorecard: points, to: 3}", "{scorecard: other, to: 3}")
    found = problems(text)
    assert (found[0].rule, found[0].location.path) == (
        "set-back", "measures.ban.requires.set_back.scorecard")
    assert "does not read `other`" in found[0].message
    decaying = BASE.replace("    retention: P10Y\n",
                            "    retention: P10Y\n    decay: {half_life: P30D}\n")
    found = problems(decaying)
    assert found[0].rule == "set-back" and "decaying events (fine)" in found[0].message


def test_json_schema_knows_dates_anchors_and_set_backs() -> None:
    assert "date" in register_json_schema()["$defs"]["AttributeType"]["enum"]
    schema = json_schema()
    defs = schema["$defs"]
    assert "AttributeType" not in defs   # a policy declares no attributes: the register does
    anchor = defs["Expiry"]["properties"]["from"]
    assert any(option.get("pattern") for option in anchor["anyOf"])   # an attribute name
    assert set(defs["SetBack"]["required"]) == {"scorecard", "to"}
    assert "set_back" in defs["Prerequisite"]["properties"]
    assert defs["Prerequisite"]["required"] == ["measure"]


# --- the one rule for reported dates ---------------------------------------------------------

FINE = POLICY.event_types["fine"]


@pytest.mark.parametrize(("value", "normal"), [
    ("2026-03-01", "2026-03-01T00:00:00Z"),
    ("2026-03-01T10:00:00+02:00", "2026-03-01T08:00:00Z"),
    ("2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z"),
])
def test_date_attributes_are_normalised_to_utc(value: str, normal: str) -> None:
    assert FINE.normalise({"final_on": value}) == {"final_on": normal}


@pytest.mark.parametrize(("value", "words"), [
    ("2026-03-01T10:00:00", "has no time zone"),
    ("01/03/2026", "is not an ISO 8601 date"),
    (20260301, "must be an ISO 8601 date"),
    (True, "must be an ISO 8601 date"),
    ("0001-01-01T00:00:00+01:00", "outside the years 1-9999"),
])
def test_bad_dates_do_not_fit_and_say_why(value: object, words: str) -> None:
    problem = FINE.normalise({"final_on": value})
    assert isinstance(problem, str) and problem.startswith("final_on") and words in problem


def test_a_reported_date_is_never_later_than_recorded_at() -> None:
    attrs = {"final_on": "2026-05-02"}
    assert not isinstance(FINE.fit(attrs, occurred_at=d("2026-03-01"),
                                   recorded_at=d("2026-05-02")), str)
    problem = FINE.fit(attrs, occurred_at=d("2026-03-01"), recorded_at=d("2026-05-01"))
    assert problem == ("final_on=2026-05-02T00:00:00Z is later than the event's recorded_at "
                       "2026-05-01T00:00:00+00:00; a reported date cannot be in the future of "
                       "the ledger")
    early = FINE.fit(attrs | {"final_on": "2026-02-28"}, occurred_at=d("2026-03-01"),
                     recorded_at=d("2026-05-01"))
    assert isinstance(early, str) and "earlier than the event's occurred_at" in early


def test_the_engine_does_not_count_an_event_whose_date_is_after_its_recording() -> None:
    bad = ev("1", "fine", "2026-03-01", "2026-04-01", final_on="2026-04-02")
    good = ev("2", "fine", "2026-03-01", "2026-04-01", final_on="2026-03-20")
    result = evaluate(POLICY, [bad, good], d("2026-06-01"))
    outcome = {o.event[1]: o for o in result.events}
    assert outcome["2"].counted and not outcome["1"].counted
    assert outcome["1"].why_not is not None and "later than the event's recorded_at" in \
        outcome["1"].why_not
    assert result.scorecards["points"].score == 1.0


def test_a_missing_anchor_date_does_not_fit() -> None:
    result = evaluate(POLICY, [ev("1", "fine", "2026-03-01")], d("2026-06-01"))
    assert result.events[0].why_not == "attributes do not fit the policy: attribute final_on " \
                                       "is missing"


def test_expiry_counts_from_the_reported_date_not_the_ledger_clock() -> None:
    # Backfilled on 2030-01-15: decided final 2026-04-01, so it expires 2028-04-01.
    backfilled = ev("1", "fine", "2026-03-01", "2030-01-15", final_on="2026-04-01")
    assert evaluate(POLICY, [backfilled], d("2028-03-31")).scorecards["points"].score == 1.0
    after = evaluate(POLICY, [backfilled], d("2028-04-01"))
    assert after.scorecards["points"].score == 0.0
    assert after.events[0].counts_until == d("2028-04-01")


def test_the_incremental_state_refuses_set_backs_but_keeps_reported_expiry() -> None:
    with pytest.raises(InputError, match="does not compute set-backs of points"):
        SubjectState.empty(POLICY)
    plain = parse_declared(BASE.split("measures:")[0], "plain.yaml")
    state = SubjectState.empty(plain)
    state.apply(ev("1", "fine", "2026-03-01", "2030-01-15", final_on="2026-04-01"))
    assert state.read(d("2030-02-01")).scores["points"] == 0.0


def test_normalise_checks_reported_dates_when_given_the_event_times() -> None:
    attrs = {"final_on": "2026-05-02"}
    assert FINE.normalise(attrs) == {"final_on": "2026-05-02T00:00:00Z"}
    refused = FINE.normalise(attrs, occurred_at=d("2026-03-01"), recorded_at=d("2026-05-01"))
    assert isinstance(refused, str) and refused.startswith("final_on=2026-05-02T00:00:00Z is "
                                                           "later than")
