"""The proportionality probe finds values and counts hidden in arithmetic.

A severe measure from a single minor act, hidden behind an attribute value written as
deeper arithmetic (``(2 + 3) * 2 + 3``) or behind an exact number of harmless companions
(``rides == 3 * 17``), is refused. Real policy files through the real loader, compiler and
linter (the probe runs the one engine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policies.support import HERE, POLICIES
from trustledger.errors import LintError
from trustledger.policy import load_policy, load_register
from trustledger.policy.compiled import CompiledAttribute
from trustledger.policy.literals import folded_constants, literal_probe_values
from trustledger.policy.models import AttributeType
from trustledger.policy.proportionality import EXACT_COMPANIONS, Prober
from trustledger.policy.reach import Reach

REGISTER = load_register(HERE / "refused" / "register.yaml")
KMH = {"kmh_over": CompiledAttribute("kmh_over", AttributeType.INTEGER, True, 0, None, None)}


@pytest.mark.parametrize(("source", "expected"), [
    ("attrs.kmh_over == (2 + 3) * 2 + 3", {2, 3, 5, 10, 13}),
    ("tickets_1y >= 1 && rides == 3 * 17", {1, 3, 17, 51}),
    ("attrs.kmh_over == 27 / 2", {2, 13, 27}),  # CEL's integer division
    ("attrs.kmh_over == -(7 % 3) + 14", {3, 7, 1, -1, 13, 14}),
    ("attrs.kmh_over == 1.5 * 4.0", {1.5, 4.0, 6.0}),
    ("((((6))))", {6}),
])
def test_literal_arithmetic_is_folded(source: str, expected: set[float]) -> None:
    assert expected <= folded_constants(source)


@pytest.mark.parametrize(("source", "absent"), [
    ("tickets_1y >= 0", 1.0),                 # a name's digits are no number
    ("attrs.note == '1 + 12'", 13.0),         # a text is read as written, never folded
    ("attrs.kmh_over / 0 == 1", float("inf")),  # a division by zero folds to nothing
])
def test_names_texts_and_faults_are_not_folded(source: str, absent: float) -> None:
    assert absent not in folded_constants(source)


def test_values_behind_deeper_arithmetic_are_probed() -> None:
    found = set(literal_probe_values(["attrs.kmh_over == (2 + 3) * 2 + 3"], KMH)["kmh_over"])
    assert {12.0, 13.0, 14.0} <= found
    # one side's arithmetic, the other side a sum: kmh_over + 3 == (2 + 3) * 2 needs 7
    assert 7.0 in literal_probe_values(["attrs.kmh_over + 3 == (2 + 3) * 2"], KMH)["kmh_over"]


def _policy(tmp_path: Path, when: str, condition: str) -> Path:
    path = tmp_path / "hidden.yaml"
    path.write_text(f"""\
policy: hidden
title: a travel ban hidden behind arithmetic
effective_from: 2026-01-01
event_types:
  speeding_ticket:
    points: 10
    when: "{when}"
    retention: P5Y
  ride_paid:
    points: 1
    retention: P2Y
scorecards:
  points: {{events: [speeding_ticket], base: 0, higher_is: worse}}
  rider: {{events: [ride_paid], base: 0}}
metrics:
  rides: {{aggregate: count, types: [ride_paid]}}
measures:
  travel_ban:
    kind: restriction
    domain: transport
    severity: grave
    condition: "{condition}"
""", encoding="utf-8")
    return path


@pytest.mark.parametrize(("when", "condition"), [
    ("attrs.kmh_over == (2 + 3) * 2 + 3", "points.score >= 10.0"),
    ("attrs.kmh_over == 130 / (5 * 2)", "points.score >= 10.0"),
    ("attrs.kmh_over >= 0", "points.score >= 10.0 && rides == 3 * 17"),
    ("attrs.kmh_over >= 0", "points.score >= 10.0 && rides == 150"),
    ("attrs.kmh_over >= 0", "points.score >= 10.0 && rides >= 5 && rides < 8 && "
                            "rider.score < 60.0"),
])
def test_a_severe_measure_from_one_minor_act_hidden_in_arithmetic_is_refused(
        tmp_path: Path, when: str, condition: str) -> None:
    path = _policy(tmp_path, when, condition)
    with pytest.raises(LintError) as info:
        load_policy(path, register=REGISTER)
    [problem] = [p for p in info.value.problems if p.rule == "proportionality"]
    assert problem.location.path == "measures.travel_ban.condition"
    assert "a single `speeding_ticket` event (gravity minor" in problem.message
    assert "restriction `travel_ban`" in problem.message and "grave" in problem.message


def test_an_exact_count_beyond_the_probe_is_a_documented_limit(tmp_path: Path) -> None:
    # more harmless events than the probe ever tries: docs/safeguards.md says so
    path = _policy(tmp_path, "attrs.kmh_over >= 0",
                   f"points.score >= 10.0 && rides == {EXACT_COMPANIONS + 1}")
    assert load_policy(path, register=REGISTER).measures


def test_the_exact_counts_are_the_whole_numbers_the_conditions_single_out() -> None:
    policy = load_policy(POLICIES / "examples" / "flensburg.yaml")
    prober = Prober(policy, Reach(policy))
    # 1, the usual count (the largest number plus one: 9) and 100 are tried anyway
    assert prober.companion_count() == 9
    assert prober.exact_counts() == [4, 5, 6, 8]
