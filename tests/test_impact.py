"""Impact simulation: figures computed by hand, determinism, groups, feedback, bad input, CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.policies.support import POLICIES, example, parse_declared
from trustledger.cli import app
from trustledger.errors import InputError
from trustledger.impact import default_scenario, parse_scenario, simulate
from trustledger.impact.html import html_page
from trustledger.impact.scenario import scenario_from_dict
from trustledger.impact.simulate import instant, nearest_rank
from trustledger.impact.vector import VariantKey, VectorReading
from trustledger.policy import CompiledPolicy

HALF_LIFE_DAYS = 180.0

ONE_TYPE = f"""
policy: one_type
title: one adverse event type, decay only
effective_from: 2025-01-01
event_types:
  late:
    label: late payment
    domain: finance
    category: credit_repayment
    gravity: moderate
    points: -100
    decay: {{half_life: P{int(HALF_LIFE_DAYS)}D}}
    retention: P20Y
scorecards:
  card:
    label: card
    events: [late]
    base: 600
    tiers:
      - {{name: low, label: low}}
      - {{name: ok, label: ok, min: 550}}
"""


def _one_type() -> CompiledPolicy:
    return parse_declared(ONE_TYPE, "one_type.yaml")


def _scenario(policy: CompiledPolicy, **extra: Any) -> Any:
    data = {"events": {"late": {"rate": {"distribution": "fixed", "value": 0.04}}}, **extra}
    return scenario_from_dict(data, policy, "test")


def test_recovery_time_is_the_time_decay_takes_to_lift_the_score_over_the_threshold() -> None:
    """No feedback, one event type (-100, half-life 180 days), tier `ok` from 550, base 600.

    A subject whose earlier events weigh D points at the probe instant p is in `ok` when
    D <= 50; one more event puts it at 500 - D, and it is back in `ok` once
    (D + 100)·2^(-t/h) <= 50, i.e. t >= h·log2((D + 100)/50). The report's months are the
    first monthly instant after p at or beyond that.
    """
    policy = _one_type()
    size, months = 600, 24
    times: list[list[datetime]] = [[] for _ in range(size)]

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        for i in np.flatnonzero(counts[("late", 0)]):
            times[i] += [moment] * int(counts[("late", 0)][i])

    scenario = _scenario(policy)
    report = simulate(policy, scenario, subjects=size, months=months, seed=3,
                      probe_months=36, observer=observe)
    h = HALF_LIFE_DAYS * 86400
    probe = instant(scenario.start, months)
    expected = []
    for events in times:
        weight = sum(100 * 2 ** (-(probe - o).total_seconds() / h) for o in events)
        if weight > 50:
            continue  # already below `ok`: not pushed down by one more event
        needed = h * math.log2((weight + 100) / 50)
        k = next(k for k in range(1, 37)
                 if (instant(scenario.start, months + k) - probe).total_seconds() >= needed)
        expected.append(k)
    assert len(expected) > 100 and len(set(expected)) > 1
    result = report["probes"]["late"]
    assert result["pushed_down"] == len(expected)
    assert result["crossings"]["card"]["ok"] == {"down": len(expected), "up": 0}
    recovery = result["recovery"]
    assert recovery["subjects"] == len(expected)
    assert recovery["median_months"] == nearest_rank(np.array(expected, float), 0.5)
    assert recovery["p90_months"] == nearest_rank(np.array(expected, float), 0.9)
    assert recovery["not_back_within_horizon"] == 0.0
    # A subject with no earlier event needs exactly one half-life: 180 days, the sixth
    # monthly instant (181 to 184 days later).
    assert min(expected) == 6


def test_score_distribution_by_hand_with_one_fixed_rate() -> None:
    """Every subject's score is 600 - Σ 100·2^(-age/h): the median matches the events."""
    policy = _one_type()
    scores: list[float] = []
    finals: dict[str, Any] = {}

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        finals.setdefault("times", [[] for _ in range(200)])
        for i in np.flatnonzero(counts[("late", 0)]):
            finals["times"][i] += [moment] * int(counts[("late", 0)][i])
        finals["at"] = moment

    report = simulate(policy, _scenario(policy), subjects=200, months=12, seed=5,
                      probe_months=1, observer=observe)
    h = HALF_LIFE_DAYS * 86400
    for events in finals["times"]:
        scores.append(600 - sum(100 * 2 ** (-(finals["at"] - o).total_seconds() / h)
                                for o in events))
    last = report["scorecards"]["card"]["months"][-1]
    assert last["quantiles"]["p50"] == pytest.approx(float(np.quantile(scores, 0.5)), abs=1e-4)
    assert last["mean"] == pytest.approx(float(np.mean(scores)), abs=1e-4)
    x = np.sort(np.array(scores))
    gini = (2 * np.sum(np.arange(1, len(x) + 1) * x) / (len(x) * x.sum())) - (len(x) + 1) / len(x)
    assert last["gini"] == pytest.approx(gini, abs=1e-6)


def test_the_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    policy = example("sesame")
    scenario = default_scenario(policy)
    one = simulate(policy, scenario, subjects=500, months=12, seed=11, probe_months=6)
    two = simulate(policy, scenario, subjects=500, months=12, seed=11, probe_months=6)
    three = simulate(policy, scenario, subjects=500, months=12, seed=12, probe_months=6)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert json.dumps(one, sort_keys=True) != json.dumps(three, sort_keys=True)


def _scores(policy: CompiledPolicy, scenario: Any, size: int, months: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        out.append(np.concatenate([reading.scores[c] for c in policy.scorecards]))

    simulate(policy, scenario, subjects=size, months=months, seed=4, probe_months=1,
             observer=observe)
    return out


def test_groups_never_reach_the_policy() -> None:
    """Same behaviour, other group labels and partition: every subject's scores are equal.

    With fixed propensities a subject's events do not depend on its group; if the group
    reached the policy in any other way, the two runs would differ.
    """
    policy = example("rongcheng")
    events = {"bank_arrears": {"rate": {"distribution": "fixed", "value": 0.05},
                               "variants": [{"share": 1, "attributes": {"cycles": 2}}]},
              "late_public_fees": {"rate": {"distribution": "fixed", "value": 0.05}}}
    one = scenario_from_dict({"events": events, "groups": [{"name": "all", "share": 1}],
                              "opt_in": {"civic": 1.0}}, policy)
    split = scenario_from_dict({"events": events, "opt_in": {"civic": 1.0},
                                "groups": [{"name": "north", "share": 0.3},
                                           {"name": "south", "share": 0.7}]}, policy)
    a, b = _scores(policy, one, 300, 18), _scores(policy, split, 300, 18)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))


def test_groups_with_different_behaviour_show_in_the_report_only_as_aggregates() -> None:
    policy = example("rongcheng")
    report = simulate(policy, default_scenario(policy), subjects=3000, months=24, seed=2,
                      probe_months=3)
    review = report["measures"]["credit_line_review"]["groups"]
    # The scenario gives rural residents twice the arrears propensity.
    assert review["rural"]["share"] > review["urban"]["share"]
    text = json.dumps(report)
    assert "subject-" not in text


def _late_total(factor: float) -> tuple[int, float]:
    policy = example("sesame")
    base = default_scenario(policy)
    data = json.loads(json.dumps({
        "events": {t: {"rate": {"distribution": b.rate.kind, **b.rate.params},
                       "variants": [{"share": v.share, "attributes": dict(v.attributes)}
                                    for v in b.variants]}
                   for t, b in base.events.items()},
        "feedback": [{"measure": "pay_later", "while": "off",
                      "multiply": {"repayment_late": factor}}]}))
    report = simulate(policy, scenario_from_dict(data, policy), subjects=2000, months=24,
                      seed=9, probe_months=1)
    return report["events"]["repayment_late"], \
        report["scorecards"]["sesame"]["months"][-1]["mean"]


def test_feedback_moves_outcomes_in_the_configured_direction() -> None:
    neutral, worse, better = _late_total(1.0), _late_total(3.0), _late_total(0.3)
    assert worse[0] > neutral[0] > better[0]
    assert worse[1] < neutral[1] < better[1]


@pytest.mark.parametrize(("patch", "field"), [
    ({"events": {"no_such_type": {"rate": {"distribution": "fixed", "value": 1}}}},
     "events.no_such_type"),
    ({"events": {"bill_paid": {"rate": {"distribution": "gamma", "mean": -1, "shape": 2}}}},
     "events.bill_paid.rate.mean"),
    ({"events": {"bill_paid": {"rate": {"distribution": "poisson", "mean": 1}}}},
     "events.bill_paid.rate.distribution"),
    ({"events": {"bill_paid": {"rate": {"distribution": "fixed", "value": 1},
                               "groups": {"martians": {"distribution": "fixed", "value": 1}}}}},
     "events.bill_paid.groups.martians"),
    ({"events": {"bill_overdue": {"rate": {"distribution": "fixed", "value": 1},
                                  "variants": [{"share": 1, "attributes": {"days": 3}}]}}},
     "events.bill_overdue.variants[0].attributes"),
    ({"feedback": [{"measure": "nope", "while": "off", "multiply": {"bill_paid": 2}}]},
     "feedback[0].measure"),
    ({"feedback": [{"measure": "pay_later", "while": "sometimes",
                    "multiply": {"bill_paid": 2}}]}, "feedback[0].while"),
    ({"feedback": [{"measure": "pay_later", "while": "off",
                    "multiply": {"debt_default": 2}}]}, "feedback[0].multiply.debt_default"),
    ({"groups": [{"name": "a", "share": 0}]}, "groups[0].share"),
    ({"start": "2019-01"}, "start"),
    ({"opt_in": {"civic": 0.5}}, "opt_in.civic"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_scenarios_are_refused_naming_the_field(patch: dict[str, Any], field: str) -> None:
    policy = example("sesame")
    data: dict[str, Any] = {"events": {"bill_paid": {"rate": {"distribution": "fixed",
                                                              "value": 1}}}}
    for key, value in patch.items():
        if key == "events":
            data["events"] = {**data["events"], **value}
        else:
            data[key] = value
    with pytest.raises(InputError, match="scenario s\\.yaml: " + re.escape(field) + ":"):
        scenario_from_dict(data, policy, "s.yaml")


def test_feedback_on_a_measure_the_simulation_cannot_evaluate_is_refused() -> None:
    policy = example("sesame")
    scenario = scenario_from_dict({
        "events": {"bill_paid": {"rate": {"distribution": "fixed", "value": 1}}},
        "feedback": [{"measure": "priority_service", "while": "on",
                      "multiply": {"bill_paid": 2}}]}, policy, "s.yaml")
    with pytest.raises(InputError, match=r"feedback\[0\]\.measure: priority_service"):
        simulate(policy, scenario, subjects=10, months=1)


def test_duplicate_keys_and_broken_yaml_are_refused() -> None:
    policy = example("sesame")
    with pytest.raises(InputError, match=r"scenario d\.yaml"):
        parse_scenario("events:\n  bill_paid: {rate: {distribution: fixed, value: 1}}\n"
                       "events: {}\n", policy, "d.yaml")
    with pytest.raises(InputError, match=r"scenario b\.yaml"):
        parse_scenario("events: [", policy, "b.yaml")


def test_small_populations_suppress_cells_under_ten() -> None:
    policy = example("sesame")
    report = simulate(policy, default_scenario(policy), subjects=15, months=3, seed=1,
                      probe_months=2)
    sizes = [g["subjects"] for g in report["groups"]]
    assert None in sizes  # a group of fewer than 10 subjects is not shown
    for row in report["scorecards"]["sesame"]["months"]:
        assert all(c is None or c == 0 or c >= 10 for c in row["tiers"].values())
    for probe in report["probes"].values():
        for tiers in probe["crossings"].values():
            assert all(n is None or n == 0 or n >= 10 for c in tiers.values()
                       for n in c.values())


def test_html_page_is_self_contained() -> None:
    policy = example("sesame")
    report = simulate(policy, default_scenario(policy), subjects=300, months=13, seed=1,
                      probe_months=3)
    page = html_page(report)
    assert page.count("<svg") >= 5
    for forbidden in ("<script", "<link", "src=", "https://", "@import"):
        assert forbidden not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_cli_one_policy_writes_json_and_html(tmp_path: Path) -> None:
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    result = CliRunner().invoke(app, ["impact", str(POLICIES / "rongcheng.yaml"),
                                      "--subjects", "400", "--months", "13", "--seed", "2",
                                      "--probe-months", "3", "--json", str(out),
                                      "--html", str(page)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["subjects"] == 400 and report["policy"]["name"] == "rongcheng"
    assert "credit_line_review" in result.output
    assert page.read_text().startswith("<!doctype html>")


def test_cli_compare_runs_two_policies_on_one_population(tmp_path: Path) -> None:
    text = (POLICIES / "sesame.yaml").read_text()
    assert 'condition: "sesame.score >= 650.0"' in text
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(text.replace('condition: "sesame.score >= 650.0"',
                                    'condition: "sesame.score >= 610.0"'))
    shutil.copy(POLICIES / "register.yaml", tmp_path)   # the register found next to it
    out = tmp_path / "c.json"
    result = CliRunner().invoke(app, ["impact", "--compare", str(POLICIES / "sesame.yaml"),
                                      str(lenient), "--subjects", "1500", "--months", "13",
                                      "--probe-months", "2", "--json", str(out)],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "A: sesame" in result.output and "B: sesame" in result.output
    both = json.loads(out.read_text())
    a, b = both["a"], both["b"]
    assert a["groups"] == b["groups"]
    # Same people, same luck: what feedback does not touch is drawn identically.
    for untouched in ("bill_paid", "rental_returned", "identity_verified"):
        assert a["events"][untouched] == b["events"][untouched]
    share = [r["measures"]["deposit_free_rental"]["in_force_share_by_month"][-1] for r in (a, b)]
    assert share[1] > share[0]


@pytest.mark.parametrize("args", [
    [],
    [str(POLICIES / "sesame.yaml"), "--compare", str(POLICIES / "sesame.yaml"),
     str(POLICIES / "sesame.yaml")],
    [str(POLICIES / "sesame.yaml"), "--subjects", "0"],
    [str(POLICIES / "sesame.yaml"), "--scenario", "/nonexistent/scenario.yaml"],
])
def test_cli_refuses_bad_invocations(args: list[str], tmp_path: Path) -> None:
    from trustledger.cli import main

    argv = sys.argv
    sys.argv = ["trustledger", "impact", *args, "--json", str(tmp_path / "x.json")]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = argv
    assert exit_.value.code == 2
    assert not (tmp_path / "x.json").exists()


def test_cli_bad_scenario_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from trustledger.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"events": {"bill_paid": {"rate": {"distribution": "gamma",
                                                                 "mean": 1}}}}))
    argv = sys.argv
    sys.argv = ["trustledger", "impact", str(POLICIES / "sesame.yaml"), "--scenario", str(bad)]
    try:
        with pytest.raises(SystemExit):
            main()
    finally:
        sys.argv = argv
    assert "events.bill_paid.rate.shape: is required" in capsys.readouterr().err


def test_statistical_scorecards_are_refused_naming_them(tmp_path: Path) -> None:
    """Their features include attributes given at decision time, which a simulated
    population does not have: the simulation refuses rather than guess."""
    from tests.test_models_compiled import artifact
    from tests.test_policy_statistical import BASE
    from trustledger.models import save_artifact

    models = tmp_path / "models"
    digest = save_artifact(artifact(), models).stem
    policy = parse_declared(BASE.replace("HASH", digest), "lending.yaml", models_dir=models)
    scenario = scenario_from_dict(
        {"events": {"repayment_late": {"rate": {"distribution": "fixed", "value": 0.1}}}},
        policy)
    with pytest.raises(InputError, match=r"the impact simulation does not compute statistical "
                                         r"scorecards \(credit"):
        simulate(policy, scenario, subjects=10, months=2)


def test_poisson_draws_have_the_right_mean_and_cap() -> None:
    from trustledger.impact.simulate import poisson

    rng = np.random.default_rng(0)
    for lam in (0.02, 1.5, 40.0, 200.0):
        n = poisson(rng.random(100_000), np.full(100_000, lam))
        assert abs(n.mean() - lam) < 5 * math.sqrt(lam / 100_000)
    policy = _one_type()
    scenario = scenario_from_dict({
        "events": {"late": {"rate": {"distribution": "fixed", "value": 150}}},
        "feedback": []}, policy)
    report = simulate(policy, scenario, subjects=50, months=1, probe_months=1)
    assert abs(report["events"]["late"] / 50 - 150) < 10
    # Feedback cannot push a rate past the cap (where e^-rate would underflow to no event).
    sesame = example("sesame")
    boosted = scenario_from_dict({
        "events": {"bill_paid": {"rate": {"distribution": "fixed", "value": 150}}},
        "feedback": [{"measure": "pay_later", "while": "off",
                      "multiply": {"bill_paid": 100}}]}, sesame)
    report = simulate(sesame, boosted, subjects=50, months=1, probe_months=1)
    assert abs(report["events"]["bill_paid"] / 50 - 200) < 10


def test_measures_with_a_holding_time_are_the_reference_evaluators_on_a_sample() -> None:
    """Sesame's priority_service has a 90-day hold: with the whole population as the
    sample, the report's counts are those of evaluate on every subject's events."""
    from trustledger.engine import evaluate
    from trustledger.impact.simulate import events_of
    from trustledger.impact.vector import VectorPlan

    policy = example("sesame")
    data = {"events": {
        "repayment_on_time": {"rate": {"distribution": "gamma", "mean": 4, "shape": 2},
                              "variants": [{"share": 1, "attributes": {"amount": 3000}}]},
        "bill_paid": {"rate": {"distribution": "fixed", "value": 3}},
        "repayment_late": {"rate": {"distribution": "uniform", "low": 0, "high": 0.3},
                           "variants": [{"share": 1, "attributes": {"days_late": 3,
                                                                    "amount": 1}}]}},
        "groups": [{"name": "a", "share": 1}, {"name": "b", "share": 1}]}
    scenario = scenario_from_dict(data, policy)
    plan = VectorPlan(policy, {t: [v.attributes for v in b.variants]
                               for t, b in scenario.events.items()})
    size = 60
    history: list[list[Any]] = [[] for _ in range(size)]
    last: dict[str, datetime] = {}

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        for i in range(size):
            history[i].extend(events_of(plan, m, moment, counts, i))
        last["at"] = moment

    report = simulate(policy, scenario, subjects=size, months=20, seed=8, probe_months=1,
                      sample=size, observer=observe)
    held = sum(evaluate(policy, h, last["at"], opt_ins={"sesame"})
               .measures["priority_service"].in_force for h in history)
    entry = report["measures"]["priority_service"]
    assert entry["estimated_from_sample"] == size
    shown = [g["in_force"] for g in entry["groups"].values()]
    assert None not in shown and held >= 20
    assert sum(shown) == held
    with pytest.raises(InputError, match="sample must be at least 0"):
        simulate(policy, scenario, subjects=10, months=1, sample=-1)
