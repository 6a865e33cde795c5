"""The worked example of docs/policy-language.md (policies/examples/flensburg.yaml), at every
boundary date: expiry from the reported date a decision became final, the overhang, notices
judged on what was known, set-backs of points, and a deduction earned once per five years."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policies.support import POLICIES, d, ev
from trustledger.engine import Evaluation, Event, evaluate
from trustledger.policy import load_policy

POLICY = load_policy(POLICIES / "examples" / "flensburg.yaml")


def offence(key: str, points: int, occurred: str, final: str, recorded: str | None = None,
            ) -> Event:
    """An offence decided final on ``final``; recorded then, unless backfilled later."""
    return ev(key, f"offence_{points}", occurred, recorded or final, final_on=final)


def at(events: list[Event], day: str, *, as_known_then: bool = True) -> Evaluation:
    """The evaluation on ``day``, by default with what the ledger knew that day."""
    return evaluate(POLICY, events, d(day), d(day) if as_known_then else None)


def score(events: list[Event], day: str, **kw: Any) -> float | None:
    return at(events, day, **kw).scorecards["points"].score


def states(events: list[Event], day: str, **kw: Any) -> dict[str, tuple[str, str | None]]:
    return {name: (m.state.value, m.since.date().isoformat() if m.since else None)
            for name, m in at(events, day, **kw).measures.items()}


# --- expiry from the day the decision became final, and the overhang -------------------------

# Committed 2024-03-01, final 2024-05-01, imported (backfilled) on 2026-06-01.
OLD = offence("e1", 2, "2024-03-01", "2024-05-01", recorded="2026-06-01")


@pytest.mark.parametrize(("day", "points"), [
    ("2029-04-30", 2.0), ("2029-05-01", 0.0), ("2029-05-02", 0.0)])
def test_expiry_counts_five_years_from_the_final_decision(day: str, points: float) -> None:
    # 2024-05-01 + 5 years; the import date (2026-06-01) would give 2031-06-01
    assert score([OLD], day, as_known_then=False) == points


def test_the_contribution_says_until_when_it_counts() -> None:
    contribution = at([OLD], "2029-04-30", as_known_then=False) \
        .scorecards["points"].contributions[0]
    assert contribution.counts_until == d("2029-05-01")


# Committed 2029-04-01 (before e1's expiry), final 2029-06-15 (after it).
LATE = offence("e2", 1, "2029-04-01", "2029-06-15", recorded="2029-07-01")


@pytest.mark.parametrize(("day", "points"), [
    ("2030-04-30", 3.0), ("2030-05-01", 1.0), ("2030-05-02", 1.0)])
def test_overhang_keeps_the_entry_a_year_after_expiry(day: str, points: float) -> None:
    assert score([OLD, LATE], day, as_known_then=False) == points


def test_overhang_is_explained() -> None:
    reasons = at([OLD, LATE], "2029-12-01", as_known_then=False).scorecards["points"].reasons
    assert reasons[0].text == (
        "offence (2 points) on 2024-03-01: +2; counts until 2030-05-01 (expired 2029-05-01, "
        "kept through its overhang: offence (1 point) on 2029-04-01 was committed before and "
        "known after the expiry)")


def test_a_backfilled_offence_final_before_the_expiry_keeps_nothing() -> None:
    # Final 2029-04-01, before e1's expiry, but imported 2031-01-10: by its reported date
    # it was known in time, so e1 is not kept (by recorded_at it falsely would be).
    backfilled = offence("e4", 1, "2029-03-01", "2029-04-01", recorded="2031-01-10")
    result = at([OLD, backfilled], "2029-05-01", as_known_then=False)
    assert result.scorecards["points"].score == 1.0
    assert result.events[0].counts_until == d("2029-05-01")


def test_an_offence_committed_after_the_expiry_keeps_nothing() -> None:
    after = offence("e3", 1, "2029-05-01", "2029-06-01")
    assert score([OLD, after], "2029-05-02", as_known_then=False) == 1.0


# --- notices in order: admonition at 4, warning at 6, revocation at 8 --------------------------

IN_ORDER = [offence("o1", 3, "2025-01-10", "2025-02-10"),
            offence("o2", 1, "2025-03-01", "2025-04-01"),    # 4: admonition
            offence("o3", 2, "2025-05-01", "2025-06-01"),    # 6: warning, admonition given
            offence("o4", 3, "2025-07-01", "2025-08-01")]    # 9: revocation, warning given


@pytest.mark.parametrize(("day", "points", "expected"), [
    ("2025-03-31", 3.0, {"admonition": ("inactive", None)}),
    ("2025-04-01", 4.0, {"admonition": ("active", "2025-04-01")}),
    ("2025-05-31", 4.0, {"warning": ("inactive", None)}),
    ("2025-06-01", 6.0, {"warning": ("active", "2025-06-01")}),
    ("2025-07-31", 6.0, {"licence_revoked": ("inactive", None)}),
    ("2025-08-01", 9.0, {"licence_revoked": ("active", "2025-08-01"),
                         "warning": ("active", "2025-06-01")}),
])
def test_notices_are_given_when_the_decisions_become_final(
        day: str, points: float, expected: dict[str, tuple[str, str | None]]) -> None:
    assert score(IN_ORDER, day) == points
    found = states(IN_ORDER, day)
    assert {k: found[k] for k in expected} == expected


# --- set-backs: a step reached without the notice before it ------------------------------------

JUMPS = [offence("o1", 3, "2025-01-10", "2025-02-10"),       # 3
         offence("o2", 3, "2025-03-01", "2025-04-01"),       # 6 without admonition: 5
         offence("o3", 3, "2025-05-01", "2025-06-01"),       # 8 without warning: 7
         offence("o4", 1, "2025-07-01", "2025-08-01")]       # 8 with warning: revoked


@pytest.mark.parametrize(("day", "points", "expected"), [
    ("2025-03-31", 3.0, {"admonition": ("inactive", None), "warning": ("inactive", None)}),
    ("2025-04-01", 5.0, {"admonition": ("active", "2025-04-01"),
                         "warning": ("inactive", None)}),
    ("2025-05-31", 5.0, {"warning": ("inactive", None)}),
    ("2025-06-01", 7.0, {"warning": ("active", "2025-06-01"),
                         "licence_revoked": ("inactive", None)}),
    ("2025-07-31", 7.0, {"licence_revoked": ("inactive", None)}),
    ("2025-08-01", 8.0, {"licence_revoked": ("active", "2025-08-01")}),
])
def test_set_backs_at_each_step(day: str, points: float,
                                expected: dict[str, tuple[str, str | None]]) -> None:
    assert score(JUMPS, day) == points
    found = states(JUMPS, day)
    assert {k: found[k] for k in expected} == expected


def test_a_set_back_is_in_the_score_its_reasons_and_the_measures_reasons() -> None:
    result = at(JUMPS, "2025-06-01")
    card = result.scorecards["points"]
    assert [(s.measure, s.prerequisite, s.at, s.to, s.points, s.counts_until, s.counted)
            for s in card.set_backs] == [
        ("warning", "admonition", d("2025-04-01"), 5.0, -1.0, d("2035-04-01"), True),
        ("licence_revoked", "warning", d("2025-06-01"), 7.0, -1.0, d("2035-06-01"), True)]
    assert card.total == 7.0 and sum(c.points_now for c in card.contributions) == 9.0
    assert [r.text for r in card.reasons[:2]] == [
        "set back to 5 points on 2025-04-01 because admonition had not been given when "
        "warning was reached: \u22121; counts until 2035-04-01",
        "set back to 7 points on 2025-06-01 because warning had not been given when "
        "licence revoked was reached: \u22121; counts until 2035-06-01"]
    revoked = result.measures["licence_revoked"]
    assert revoked.reasons[0].text == card.reasons[1].text
    assert revoked.reasons[1].text == ("condition `points.score >= 8.0` is false on "
                                       "2025-06-01: points.score = 7 (tier warned)")


@pytest.mark.parametrize(("day", "points"), [
    ("2035-03-31", 4.0), ("2035-04-01", 2.0), ("2035-05-31", 2.0), ("2035-06-01", 0.0)])
def test_a_set_back_lapses_with_the_last_entry_it_reduced(day: str, points: float) -> None:
    # 2035-02-10 o1 expires; 2035-04-01 o2 and the first set-back; 2035-06-01 o3 and the
    # second (o4 expired 2028-02-01); the floor keeps the score at 0.
    assert score(JUMPS, day) == points


def test_no_set_back_when_the_notice_had_been_given() -> None:
    assert at(IN_ORDER, "2025-08-01").scorecards["points"].set_backs == ()


def test_revocation_does_not_fire_by_itself_after_a_set_back() -> None:
    # 7 points after the set-back of 2025-06-01 and no new offence: never revoked.
    assert states(JUMPS[:3], "2027-01-01")["licence_revoked"] == ("inactive", None)
    assert score(JUMPS[:3], "2027-01-01") == 7.0


# --- prerequisites are judged on what was known, not on offence dates --------------------------

def test_notice_not_given_before_both_offences_became_known_together() -> None:
    # By offence dates the admonition level came 2025-02-01 and the warning level 2025-03-01;
    # but both decisions became final on 2025-04-01, so no admonition had been given.
    events = [offence("a", 3, "2025-01-10", "2025-02-10"),
              offence("b", 1, "2025-02-01", "2025-04-01"),
              offence("c", 2, "2025-03-01", "2025-04-01")]
    assert score(events, "2025-03-31") == 3.0
    assert score(events, "2025-04-01") == 5.0
    assert states(events, "2025-04-01") == {"admonition": ("active", "2025-04-01"),
                                            "warning": ("inactive", None),
                                            "licence_revoked": ("inactive", None)}


def test_notice_given_in_time_although_the_offences_were_committed_together() -> None:
    # By offence dates 6 points came at once (2025-01-10); but the admonition was given on
    # 2025-03-01 (4 points known), before the warning level became known on 2025-04-01.
    events = [offence("a", 3, "2025-01-10", "2025-02-10"),
              offence("c", 2, "2025-01-01", "2025-04-01"),
              offence("b", 1, "2025-01-10", "2025-03-01")]
    assert score(events, "2025-04-01") == 6.0
    assert states(events, "2025-04-01") == {"admonition": ("active", "2025-03-01"),
                                            "warning": ("active", "2025-04-01"),
                                            "licence_revoked": ("inactive", None)}


def test_backfilled_history_decides_as_the_register_did() -> None:
    # The same offences imported on 2031-01-15: the same points and notices.
    imported = [offence(e.source_event_id, int(e.type[-1]), e.occurred_at.date().isoformat(),
                        e.attributes["final_on"], recorded="2031-01-15") for e in JUMPS]
    for day in ("2025-04-01", "2025-06-01", "2025-08-01", "2030-01-01"):
        assert score(imported, day, as_known_then=False) == score(JUMPS, day)
        assert states(imported, day, as_known_then=False) == states(JUMPS, day)


# --- a seminar deducts one point, at 1 to 5 points, once in five years -------------------------

SEMINARS = [*JUMPS[:2],                                    # 5 points after the set-back
            ev("s1", "seminar", "2025-05-15"),             # 4
            ev("s2", "seminar", "2030-05-14"),             # within five years: refused
            ev("s3", "seminar", "2030-05-15")]             # five years on: counts


@pytest.mark.parametrize(("day", "points", "counted"), [
    ("2025-05-14", 5.0, {}),
    ("2025-05-15", 4.0, {"s1": True}),
    ("2030-05-14", 4.0, {"s1": True, "s2": False}),
    ("2030-05-15", 4.0, {"s1": False, "s2": False, "s3": True}),
])
def test_seminar_deduction_once_per_five_years(day: str, points: float,
                                               counted: dict[str, bool]) -> None:
    result = at(SEMINARS, day)
    assert result.scorecards["points"].score == points
    outcome = {o.event[1]: o.counted for o in result.events if o.type == "seminar"}
    assert outcome == counted


def test_a_refused_seminar_says_why() -> None:
    result = at(SEMINARS, "2030-05-14")
    refused = next(o for o in result.events if o.event[1] == "s2")
    assert refused.why_not == ("condition `points.score >= 1.0 && points.score <= 5.0 && "
                               "seminars_5y == 0` was false when it occurred (points = 4, "
                               "seminars_5y = 1)")


def test_the_seminar_sees_the_set_back() -> None:
    # 6 points by the offences, 5 after the set-back of 2025-04-01: the seminar counts;
    # without the set-back (admonition given in time) 6 points are too many.
    assert at(SEMINARS, "2025-05-15").events[-1].counted is True
    given = [offence("a", 3, "2025-01-10", "2025-02-10"),
             offence("b", 1, "2025-02-01", "2025-03-01"),
             offence("c", 2, "2025-03-01", "2025-04-01"),
             ev("s", "seminar", "2025-05-15")]
    result = at(given, "2025-05-15")
    assert result.scorecards["points"].score == 6.0
    assert result.events[-1].counted is False


def test_the_subjects_scores_list_each_set_back() -> None:
    # The API's derivation (GET /v1/subjects/{s}/scores) lists set-backs beside contributions,
    # so the total it shows is explained item by item.
    from trustledger.api.render import subject_scores
    from trustledger.api.schemas import SubjectScores
    from trustledger.scoring import assess

    assessment = assess(POLICY, "s", [e for e in JUMPS], [], d("2025-06-01"), d("2025-06-01"))
    card = SubjectScores.model_validate(subject_scores(assessment, "s")).scorecards["points"]
    assert card.total == 7.0
    assert [(b.measure, b.to, b.points, b.counted) for b in card.set_backs] == [
        ("warning", 5.0, -1.0, True), ("licence_revoked", 7.0, -1.0, True)]
    assert card.set_backs[0].text.startswith("set back to 5 points on 2025-04-01")
