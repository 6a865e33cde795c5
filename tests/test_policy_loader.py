"""Loading policies: errors name file, line, column, key path and rule; hash; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.policies.support import POLICIES
from trustledger.cli import app
from trustledger.errors import NotFoundError, PolicyError, PolicyProblem
from trustledger.policy import load_policy, parse_policy, parse_register
from trustledger.policy.durations import Duration
from trustledger.policy.models import Policy

REGISTER_TEXT = """\
register: r
title: a test register
event_types:
  paid:
    domain: finance
    category: bill_payment
    gravity: minor
  paid_by_kind:
    domain: finance
    category: bill_payment
    gravity: minor
    attributes:
      kind: {type: enum, values: [a, b]}
      n: {type: integer}
"""
REGISTER = parse_register(REGISTER_TEXT, "r.yaml")

GOOD = """\
policy: t
title: a test policy
effective_from: 2026-01-01
event_types:
  paid:
    points: 5
    retention: P2Y
scorecards:
  s:
    events: [paid]
    base: 500
"""


def problems(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml", register=REGISTER)
    return info.value.problems


def one(text: str) -> PolicyProblem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def where(problem: PolicyProblem) -> tuple[str, int | None, int | None, str]:
    loc = problem.location
    return (problem.rule, loc.line, loc.column, loc.path)


def test_good_policy_loads() -> None:
    policy = parse_policy(GOOD, "p.yaml", register=REGISTER)
    assert policy.name == "t"
    assert list(policy.event_types) == ["paid"]
    assert policy.register_hash == REGISTER.hash
    assert policy.event_types["paid"].domain == "finance"   # declared by the register


def test_unknown_key_is_refused_at_its_line() -> None:
    problem = one(GOOD.replace("    points: 5\n", "    points: 5\n    pionts: 6\n"))
    assert where(problem) == ("schema", 7, 5, "event_types.paid.pionts")
    assert problem.message == "unknown key `pionts`"
    assert str(problem) == "p.yaml:7:5: event_types.paid.pionts: [schema] unknown key `pionts`"


def test_missing_key_is_reported_at_its_parent() -> None:
    problem = one(GOOD.replace("    retention: P2Y\n", ""))
    assert where(problem) == ("schema", 5, 3, "event_types.paid.retention")
    assert problem.message == "required key `retention` is missing"


def test_wrong_type_is_reported_at_the_value() -> None:
    problem = one(GOOD.replace("base: 500", "base: '500'"))
    assert where(problem)[:3] == ("schema", 11, 5)
    assert problem.location.path == "scorecards.s.base"


def test_points_form_errors_point_into_the_form() -> None:
    problem = one(GOOD.replace("points: 5", "points: {lookup: kind, values: {a: x}}"))
    assert problem.location.path == "event_types.paid.points.values.a"
    problem = one(GOOD.replace("points: 5", "points: {bogus: 1}"))
    assert problem.location.path == "event_types.paid.points"
    assert "lookup" in problem.message and "formula" in problem.message


def test_duplicate_keys_are_refused() -> None:
    problem = one(GOOD.replace("    base: 500\n", "    base: 500\n    base: 600\n"))
    assert problem.rule == "duplicate-key"
    assert (problem.location.line, problem.location.column) == (12, 5)
    assert 'duplicate key "base"' in problem.message


def test_yaml_syntax_error() -> None:
    problem = one(GOOD.replace("events: [paid]", "events: [paid"))
    assert problem.rule == "yaml-syntax"
    assert problem.location.line is not None


def test_cel_syntax_error_names_the_expression() -> None:
    problem = one(GOOD + """measures:
  m:
    kind: privilege
    domain: finance
    condition: "s.score >= "
""")
    assert where(problem) == ("expression-syntax", 16, 5, "measures.m.condition")
    assert "`s.score >= ` is not valid CEL" in problem.message


@pytest.mark.parametrize(("extra", "rule", "path"), [
    ("metrics:\n  m: {aggregate: count, types: [unpaid]}\n", "unknown-reference",
     "metrics.m.types[0]"),
    ("measures:\n  m: {kind: privilege, domain: finance, condition: 'x.score > 1.0'}\n",
     "unknown-name", "measures.m.condition"),
    ("measures:\n  m: {kind: privilege, domain: finance, condition: 'm'}\n",
     "cycle", "measures.m"),
    ("metrics:\n  s: {aggregate: count}\n", "name-clash", "scorecards.s"),
    ("metrics:\n  size: {aggregate: count}\n", "reserved-name", "metrics.size"),
    ("measures:\n  m: {kind: restriction, domain: finance, condition: 's.score < 1.0'}\n",
     "schema", "measures.m"),
])
def test_reference_problems(extra: str, rule: str, path: str) -> None:
    found = problems(GOOD + extra)
    assert (found[0].rule, found[0].location.path) == (rule, path)


def test_half_life_must_be_exact() -> None:
    problem = one(GOOD.replace("points: 5", "points: 5\n    decay: {half_life: P6M}"))
    assert where(problem)[0::3] == ("half-life", "event_types.paid.decay.half_life")


def test_tier_thresholds_must_rise_at_every_date() -> None:
    problem = one(GOOD + """    tiers:
      - {name: C}
      - {name: B, min: 850, changes: [{from: 2027-01-01, min: 990}]}
      - {name: A, min: 960}
""")
    assert problem.rule == "tier-order"
    assert problem.location.path == "scorecards.s.tiers[2]"
    assert "from 2027-01-01" in problem.message


def test_lookup_table_must_cover_the_enum() -> None:
    problem = one(GOOD.replace("paid", "paid_by_kind").replace(
        "points: 5", "points: {lookup: kind, values: {a: 1}}"))
    assert problem.rule == "lookup-table"
    assert "missing ['b']" in problem.message


def test_formula_that_fails_on_valid_input_is_refused_at_load() -> None:
    problem = one(GOOD.replace("paid", "paid_by_kind").replace(
        "points: 5", 'points: {formula: "attrs.n * 2.0"}'))
    assert problem.rule == "expression-error"
    assert problem.location.path == "event_types.paid_by_kind.points.formula"


def test_several_problems_are_reported_together() -> None:
    found = problems(GOOD.replace("retention: P2Y", "retention: forever").replace(
        "base: 500", "base: many"))
    assert {p.location.path for p in found} == {"event_types.paid.retention",
                                                "scorecards.s.base"}


def test_missing_file() -> None:
    with pytest.raises(NotFoundError):
        load_policy("/nonexistent/policy.yaml", register=REGISTER)


def test_content_hash_ignores_comments_and_layout_but_not_content() -> None:
    base = parse_policy(GOOD, "a.yaml", register=REGISTER).hash
    commented = parse_policy("# a comment\n" + GOOD.replace("events: [paid]",
                                                            "events:\n      - paid"), "b.yaml",
                             register=REGISTER)
    assert commented.hash == base
    assert parse_policy(GOOD.replace("base: 500", "base: 501"), "c.yaml",
                        register=REGISTER).hash != base
    assert base.startswith("sha256:") and len(base) == len("sha256:") + 64


def test_dates_and_date_times() -> None:
    policy = parse_policy(GOOD.replace("2026-01-01", "2026-01-01T08:00:00+02:00"), "p.yaml",
                          register=REGISTER)
    assert policy.effective_from.isoformat() == "2026-01-01T06:00:00+00:00"
    problem = one(GOOD.replace("2026-01-01", "'2026-01-01T08:00:00'"))
    assert "time zone" in problem.message


def test_durations() -> None:
    assert Duration.parse("P1Y6M") == Duration(months=18)
    assert str(Duration.parse("P2W3DT12H")) == "P17DT12H"
    assert Duration.parse("P1Y").after(
        parse_policy(GOOD, "p", register=REGISTER).effective_from.replace(
            year=2024, month=2, day=29)
    ).date().isoformat() == "2025-02-28"
    with pytest.raises(ValueError, match="ISO 8601"):
        Duration.parse("5 years")
    with pytest.raises(ValueError, match="zero"):
        Duration.parse("P0D")
    assert Duration.parse("P200Y") == Duration(months=2400)
    with pytest.raises(ValueError, match="longer than 200 years"):
        Duration.parse("P201Y")
    with pytest.raises(ValueError, match="longer than 200 years"):
        Duration.parse("P80000D")


@pytest.mark.parametrize("field", ["retention: P7000Y", "expiry: {after: P7000Y}"])
def test_a_duration_past_the_calendar_is_refused_naming_the_key(field: str) -> None:
    problem = one(GOOD.replace("    retention: P2Y\n", f"    retention: P2Y\n    {field}\n"
                               if field.startswith("expiry") else f"    {field}\n"))
    assert problem.location.path.startswith("event_types.paid.")
    assert "longer than 200 years" in problem.message


# --- CLI ------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_check_prints_name_and_hash() -> None:
    result = runner.invoke(app, ["policy", "check", str(POLICIES / "sesame.yaml")])
    assert result.exit_code == 0, result.output
    assert "sesame" in result.output
    assert load_policy(POLICIES / "sesame.yaml").hash in result.output


def test_cli_check_reports_every_problem_with_rule_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("    points: 5\n", "    points: 5\n    pionts: 6\n"))
    (tmp_path / "register.yaml").write_text(REGISTER_TEXT)
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:7:5: event_types.paid.pionts: [schema] unknown key `pionts`" in result.output


def test_cli_schema_is_json_schema_of_every_top_level_key() -> None:
    result = runner.invoke(app, ["policy", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == {f.alias or n for n, f in Policy.model_fields.items()}
    assert schema["additionalProperties"] is False
    # a policy scores a type; what the type is (category…) is the register's schema
    assert set(schema["$defs"]["EventType"]["properties"]) == {
        "points", "when", "decay", "expiry", "retention"}
    result = runner.invoke(app, ["policy", "schema", "--register"])
    assert result.exit_code == 0
    register = json.loads(result.output)
    category = register["$defs"]["RegisteredType"]["properties"]["category"]
    assert "speech_expression" not in category["enum"] and "bill_payment" in category["enum"]
    assert set(register["properties"]) == {"register", "title", "description", "event_types"}
