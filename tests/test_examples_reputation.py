"""policies/reputation.yaml reproduces Stack Overflow's published reputation rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tests.policies.support import d, ev, example
from trustledger.engine import Event, MeasureState, evaluate
from trustledger.policy.models import AttributeType

REPUTATION = example("reputation")
AT = "2026-03-01"


def rep(events: list[Event], at: str = AT) -> float:
    score = evaluate(REPUTATION, events, d(at)).scorecards["reputation"].score
    assert score is not None
    return score


@pytest.mark.parametrize(("type_", "attrs", "expected"), [
    ("question_upvoted", {}, 11),          # 1 + 10
    ("answer_upvoted", {}, 11),            # 1 + 10
    ("answer_accepted", {}, 16),           # 1 + 15
    ("accepted_an_answer", {}, 3),         # 1 + 2 to the acceptor
    ("bounty_awarded", {"amount": 100}, 101),
])
def test_gains(type_: str, attrs: dict[str, int], expected: float) -> None:
    assert rep([replace(ev("1", type_, "2026-02-01"), attributes=attrs)]) == expected


def test_losses() -> None:
    events = [ev(f"u{i}", "answer_upvoted", "2026-02-01") for i in range(5)]   # 1 + 50 = 51
    assert rep([*events, ev("d", "downvote_received", "2026-02-02")]) == 49       # - 2
    assert rep([*events, ev("c", "downvote_cast", "2026-02-02")]) == 50           # - 1
    assert rep([*events, ev("b", "bounty_offered", "2026-02-02", amount=50)]) == 1  # - 50


def test_six_spam_flags_cost_100_and_reputation_never_drops_below_1() -> None:
    events = [ev(f"u{i}", "answer_upvoted", "2026-02-01") for i in range(12)]  # 1 + 120 = 121
    assert rep([*events, ev("s", "spam_flags_reached", "2026-02-02")]) == 21   # - 100
    card = evaluate(REPUTATION, [ev("s", "spam_flags_reached", "2026-02-02")],
                    d(AT)).scorecards["reputation"]
    assert (card.total, card.score) == (-99, 1)                               # 1 - 100, floor 1


def test_daily_cap_of_200_with_accepts_and_bounties_exempt() -> None:
    day = [ev(f"u{i:02}", "answer_upvoted", f"2026-02-01T{i % 24:02}:00") for i in range(25)]
    # 25 upvotes = 250, capped at 200 that day: 1 + 200 = 201
    assert rep(day) == 201
    extra = [ev("a1", "answer_accepted", "2026-02-01T23:00"),
             ev("a2", "accepted_an_answer", "2026-02-01T23:10"),
             ev("b1", "bounty_awarded", "2026-02-01T23:20", amount=100)]
    # exempt: 201 + 15 + 2 + 100 = 318
    assert rep(day + extra) == 318
    # the next day has its own 200: +10
    assert rep([*day, ev("n", "question_upvoted", "2026-02-02T09:00")]) == 211


def upvote_days(days: int, per_day: int = 20) -> list[Event]:
    start = d("2025-06-01")
    return [Event("src", f"d{n}u{i}", "alice", "answer_upvoted",
                  start + timedelta(days=n, minutes=i), start + timedelta(days=n, minutes=i))
            for n in range(days) for i in range(per_day)]


PRIVILEGES = [(15, "vote_up"), (50, "comment_everywhere"), (125, "vote_down"),
              (2000, "edit_questions_and_answers"), (3000, "cast_close_and_reopen_votes"),
              (10000, "access_to_moderator_tools"), (20000, "trusted_user")]


@pytest.mark.parametrize(("events", "expected"), [
    ([ev("u", "answer_upvoted", "2026-01-01"), ev("a", "accepted_an_answer", "2026-01-02"),
      ev("b", "accepted_an_answer", "2026-01-03")], 15),                  # 1 + 10 + 2 + 2
    ([ev(f"u{i}", "answer_upvoted", "2026-01-01") for i in range(5)]
     + [ev("c", "downvote_cast", "2026-01-02")], 50),                      # 1 + 50 - 1
    ([ev(f"u{i}", "answer_upvoted", f"2026-01-0{1 + i // 6}") for i in range(12)]
     + [ev("a", "accepted_an_answer", "2026-01-05"),
        ev("b", "accepted_an_answer", "2026-01-06")], 125),                # 1 + 120 + 4
    ([*upvote_days(10), ev("c", "downvote_cast", "2026-01-02")], 2000),    # 1 + 10 · 200 - 1
    ([*upvote_days(15), ev("c", "downvote_cast", "2026-01-02")], 3000),    # 1 + 15 · 200 - 1
    ([*upvote_days(50), ev("c", "downvote_cast", "2026-01-02")], 10000),   # 1 + 50 · 200 - 1
    ([*upvote_days(100), ev("c", "downvote_cast", "2026-01-02")], 20000),  # 1 + 100 · 200 - 1
])
def test_privileges_at_published_thresholds(events: list[Event], expected: float) -> None:
    result = evaluate(REPUTATION, events, d(AT))
    assert result.scorecards["reputation"].score == expected
    for threshold, name in PRIVILEGES:
        state = result.measures[name].state
        assert state is (MeasureState.GRANTED if expected >= threshold else MeasureState.DENIED)
    # one point less loses the privilege at exactly this threshold
    less = evaluate(REPUTATION, [*events, ev("less", "downvote_cast", "2026-01-03")], d(AT))
    name = next(n for t, n in PRIVILEGES if t == expected)
    assert less.measures[name].state is MeasureState.DENIED
    assert f"reputation.score = {expected - 1}" in less.measures[name].reasons[0].text


def test_content_is_never_scored() -> None:
    for name, et in REPUTATION.event_types.items():
        assert et.category in {"peer_rating", "platform_conduct"}, name
        assert all(a.type is not AttributeType.STRING for a in et.attributes), name
    comments = " ".join(line.lstrip("# ") for line in
                        Path(REPUTATION.source).read_text().splitlines() if line.startswith("#"))
    assert "What is NOT scored: the content of what anyone wrote." in comments
