"""Rule ``set-back``: a ``requires.set_back.to`` at which the step's condition still holds.

Such a set-back lifts nothing: the prerequisite is put in force and the measure applies at
its next decision, as without a set-back. Real policy and register files go through the real
loader, compiler and linter; the engine shows what the refused policy would have done.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.policies.support import HERE, POLICIES, d, ev
from trustledger.engine import evaluate
from trustledger.errors import LintError
from trustledger.policy import load_policy, load_register
from trustledger.policy.compiled import CompiledPolicy
from trustledger.policy.compiler import compile_policy
from trustledger.policy.loader import read_yaml
from trustledger.policy.models import Policy

REGISTER = load_register(HERE / "refused" / "register.yaml")
POLICY = """\
policy: points
title: penalty points
effective_from: 2026-01-01
event_types:
  traffic_ticket:
    points: 2
    expiry: {{after: P2Y}}
    retention: P5Y
  fare_evasion:
    points: 3
    expiry: {{after: P2Y}}
    retention: P5Y
scorecards:
  points: {{events: [traffic_ticket, fare_evasion], base: 0, floor: 0, higher_is: worse}}
metrics:
  evasions: {{aggregate: count, types: [fare_evasion], window: P1Y}}
measures:
  warning:
    kind: restriction
    domain: transport
    severity: minor
    condition: "points.score >= 4.0"
  licence_revoked:
    kind: restriction
    domain: transport
    severity: grave
    condition: "{condition}"
    requires: {{measure: warning, set_back: {{scorecard: points, to: {to}}}}}
"""


def _write(tmp_path: Path, condition: str, to: float) -> Path:
    path = tmp_path / "points.yaml"
    path.write_text(POLICY.format(condition=condition, to=to), encoding="utf-8")
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(LintError) as info:
        load_policy(path, register=REGISTER)
    found = [p for p in info.value.problems if p.rule == "set-back"]
    assert [p.location.path for p in found] == ["measures.licence_revoked.requires.set_back.to"]
    assert found[0].location.file == str(path) and found[0].location.line == 28
    return found[0].message


@pytest.mark.parametrize("to", [8, 9, 12.5])
def test_a_set_back_to_where_the_condition_holds_is_refused(tmp_path: Path, to: float) -> None:
    message = _refusal(_write(tmp_path, "points.score >= 8.0", to))
    assert f"`licence_revoked`'s condition `points.score >= 8.0` still holds with `points` " \
           f"at {to:g}" in message
    assert "lifts nothing" in message and "`warning` is put in force" in message


def test_a_set_back_below_the_step_is_accepted(tmp_path: Path) -> None:
    assert load_policy(_write(tmp_path, "points.score >= 8.0", 7), register=REGISTER)
    assert load_policy(_write(tmp_path, "points.score > 8.0", 8), register=REGISTER)


def test_the_other_inputs_are_tried_and_named(tmp_path: Path) -> None:
    # reached only with two evasions in the year: at 9 points it still holds with them
    message = _refusal(_write(tmp_path, "points.score >= 8.0 && evasions >= 2", 9))
    assert "(and evasions = 2)" in message
    assert load_policy(_write(tmp_path, "points.score >= 8.0 && evasions >= 2", 7),
                       register=REGISTER)


def test_inputs_that_hold_the_measure_whatever_the_score_are_not_the_set_backs_fault(
        tmp_path: Path) -> None:
    # With five evasions the step holds at any score: no set-back could lift it, and the
    # set-back to 7 still lifts the step reached by points alone.
    assert load_policy(_write(tmp_path, "points.score >= 8.0 || evasions >= 5", 7),
                       register=REGISTER)


def test_a_tier_condition_is_read_at_the_set_back_score(tmp_path: Path) -> None:
    path = _write(tmp_path, "points.tier == 'revoked'", 9)
    tiers = "higher_is: worse, tiers: [{name: clear}, {name: revoked, min: 8}]}"
    path.write_text(path.read_text().replace("higher_is: worse}", tiers), encoding="utf-8")
    assert "condition `points.tier == 'revoked'` still holds" in _refusal(path)
    path.write_text(path.read_text().replace("to: 9}", "to: 7}"), encoding="utf-8")
    assert load_policy(path, register=REGISTER)


def test_the_shipped_set_backs_lift_their_step() -> None:
    flensburg = load_policy(POLICIES / "examples" / "flensburg.yaml")
    assert {n: m.set_back for n, m in flensburg.measures.items() if m.set_back} == {
        "warning": ("points", 5.0), "licence_revoked": ("points", 7.0)}
    assert load_policy(HERE / "driving.yaml").measures


def _unlinted(text: str) -> CompiledPolicy:
    # the compiler alone (no linter), to show what a refused set-back would do
    root, locator = read_yaml(text, "unlinted.yaml", kind="policy")
    return compile_policy(Policy.model_validate(root), locator, "sha256:" + "0" * 64,
                          register=REGISTER)


@pytest.mark.parametrize(("to", "lifted"), [(7, True), (9, False)])
def test_what_the_rule_refuses_is_a_set_back_that_lifts_nothing(to: int, lifted: bool) -> None:
    policy = _unlinted(POLICY.format(condition="points.score >= 8.0", to=to))
    # 3 evasions at once take an unwarned driver to 9 points; a ticket follows later
    events = [ev(f"e{i}", "fare_evasion", "2026-03-01") for i in range(3)]
    events.append(ev("t1", "traffic_ticket", "2026-03-10"))
    result = evaluate(policy, events, d("2026-03-05"))
    assert result.measures["warning"].in_force
    assert result.measures["licence_revoked"].in_force is not lifted
    # either way the next offence brings it (the warning has been given by then)
    assert evaluate(policy, events, d("2026-03-11")).measures["licence_revoked"].in_force
