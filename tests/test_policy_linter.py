"""The safeguards linter: each refusal names the rule, the offending element and why."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.policies.support import HERE
from trustledger.cli import app
from trustledger.errors import LintError, PolicyError, PolicyProblem
from trustledger.policy import load_policy, parse_policy

REFUSED = HERE / "refused"


def refusal(source: Path | str) -> list[PolicyProblem]:
    with pytest.raises(LintError) as info:
        if isinstance(source, Path):
            load_policy(source)
        else:
            parse_policy(source, "inline.yaml")
    return info.value.problems


def rules(problems: list[PolicyProblem]) -> set[str]:
    return {p.rule for p in problems}


# --- the four refused example policies --------------------------------------------------------

def test_scoring_online_comments_is_refused() -> None:
    problems = refusal(REFUSED / "scoring_comments.yaml")
    first = problems[0]
    assert first.rule == "out-of-bounds-category"
    assert "`online_comment`" in first.message and "speech_expression" in first.message
    assert "ECHR Art. 10" in first.message
    assert (first.location.path, first.location.line) == ("event_types.online_comment.category", 9)
    assert "out-of-bounds-name" in rules(problems)


def test_lowering_a_score_for_whom_someone_knows_is_refused() -> None:
    problems = refusal(REFUSED / "whom_someone_knows.yaml")
    # refused for its category, and for its name (`acquaintance`) too
    assert rules(problems) == {"out-of-bounds-category", "out-of-bounds-name"}
    assert "`low_scoring_acquaintance`" in problems[0].message
    assert "association" in problems[0].message and "whom someone knows" in problems[0].message


def test_travel_ban_triggered_by_a_single_traffic_ticket_is_refused() -> None:
    problems = refusal(REFUSED / "travel_ban_for_a_ticket.yaml")
    assert rules(problems) == {"proportionality"}
    message = problems[0].message
    assert "`traffic_ticket`" in message and "gravity minor" in message
    assert "`travel_ban`" in message and "severity serious" in message
    assert problems[0].location.path == "measures.travel_ban.condition"


def test_transport_restriction_fed_by_financial_events_is_refused() -> None:
    problems = refusal(REFUSED / "transport_fed_by_finance.yaml")
    assert rules(problems) == {"context-firewall"}
    message = problems[0].message
    assert "`ride_ban` in domain transport" in message
    assert "`loan_default` (finance)" in message and "defaults_5y" in message


def test_refusals_name_file_line_and_column() -> None:
    problem = refusal(REFUSED / "transport_fed_by_finance.yaml")[0]
    assert problem.location.file.endswith("transport_fed_by_finance.yaml")
    assert (problem.location.line, problem.location.column) == (31, 5)
    assert str(problem).startswith(
        f"{problem.location.file}:31:5: measures.ride_ban.condition: [context-firewall]")


# --- more refusals, inline ------------------------------------------------------------------

HEAD = """
policy: t
title: t
effective_from: 2026-01-01
event_types:
  paid: {domain: finance, category: bill_payment, gravity: minor, points: 5, retention: P2Y}
  late: {domain: finance, category: bill_payment, gravity: moderate, points: -20,
         retention: P2Y}
  returned: {domain: rental, category: rental_conduct, gravity: minor, points: 3,
             retention: P2Y}
  damaged: {domain: rental, category: rental_conduct, gravity: serious, points: -50,
            retention: P2Y}
"""


def test_cross_domain_scorecard_without_opt_in_is_refused() -> None:
    problems = refusal(HEAD + """
scorecards:
  overall: {events: [paid, returned], base: 500}
""")
    assert rules(problems) == {"cross-domain-consent"}
    assert "`overall` spans the domains finance, rental" in problems[0].message


def test_cross_domain_scorecard_carrying_a_restriction_is_refused() -> None:
    problems = refusal(HEAD + """
scorecards:
  overall: {events: [paid, late, returned, damaged], base: 500, opt_in: true}
measures:
  no_rentals:
    kind: restriction
    domain: rental
    severity: serious
    condition: "overall.score < 300.0"
""")
    assert rules(problems) == {"cross-domain-restriction"}
    assert "`no_rentals`" in problems[0].message and "`overall`" in problems[0].message


def test_privilege_combining_domains_without_consent_is_refused() -> None:
    problems = refusal(HEAD + """
metrics:
  lates: {aggregate: count, types: [late]}
  damages: {aggregate: count, types: [damaged]}
measures:
  premium:
    kind: privilege
    domain: rental
    condition: "lates == 0 && damages == 0"
""")
    assert rules(problems) == {"cross-domain-consent"}
    assert "privilege `premium` combines the domains finance, rental" in problems[0].message


def test_metric_spanning_domains_must_be_scoped_to_an_opt_in_scorecard() -> None:
    problems = refusal(HEAD + """
metrics:
  negatives: {aggregate: count, sign: negative}
""")
    assert rules(problems) == {"cross-domain-consent"}
    assert "metric `negatives`" in problems[0].message


def test_restriction_fed_through_a_when_condition_of_another_domain_is_refused() -> None:
    problems = refusal(HEAD + """
  fine:
    domain: rental
    category: rental_conduct
    gravity: serious
    points: -10
    when: "finance_lates >= 1"
    retention: P2Y
metrics:
  finance_lates: {aggregate: count, types: [late]}
  fines: {aggregate: count, types: [fine]}
measures:
  deposit_required:
    kind: restriction
    domain: rental
    severity: moderate
    condition: "fines >= 2"
""")
    # `fine` points depend on finance events, so `fines` spans domains and the rental
    # restriction reading it crosses the firewall
    assert rules(problems) == {"cross-domain-consent", "cross-domain-restriction"}
    assert any("`deposit_required`" in p.message and "`fines`" in p.message for p in problems)


def test_speech_in_disguise_is_refused_by_its_name() -> None:
    problems = refusal("""
policy: t
title: t
effective_from: 2026-01-01
event_types:
  post_reported:
    domain: community
    category: platform_conduct
    gravity: minor
    points: -5
    retention: P1Y
""")
    assert rules(problems) == {"out-of-bounds-name"}
    assert "`post_reported` is named for `post`" in problems[0].message


def test_unknown_category_is_refused() -> None:
    problems = refusal("""
policy: t
title: t
effective_from: 2026-01-01
event_types:
  x: {domain: d, category: vibes, gravity: minor, points: 1, retention: P1Y}
""")
    assert rules(problems) == {"unknown-category"}


def test_restriction_in_force_without_any_event_is_refused() -> None:
    problems = refusal(HEAD + """
scorecards:
  bills: {events: [paid, late], base: 500}
measures:
  everyone_watched:
    kind: restriction
    domain: finance
    severity: minor
    condition: "bills.score <= 500.0"
""")
    assert rules(problems) == {"proportionality"}
    assert "no events at all" in problems[0].message


OVERDUE = """
policy: t
title: t
effective_from: 2026-01-01
event_types:
  bill_overdue:
    domain: finance
    category: bill_payment
    gravity: {gravity}
    attributes:
      days_overdue: {{type: integer, minimum: 1}}
    points: {{each: -10, per_started: 30, of: days_overdue}}
    retention: P2Y
metrics:
  overdue_points: {{aggregate: sum, types: [bill_overdue]}}
measures:
  credit_freeze:
    kind: restriction
    domain: finance
    severity: serious
    condition: "overdue_points <= -100.0"
"""


def test_single_event_with_unbounded_attribute_can_trigger_and_is_refused() -> None:
    # one bill 1,000 days overdue is -340 on its own: a minor event, a serious restriction
    problems = refusal(OVERDUE.format(gravity="minor"))
    assert rules(problems) == {"proportionality"}
    assert "`bill_overdue`" in problems[0].message and "days_overdue=" in problems[0].message


def test_single_event_as_grave_as_the_restriction_is_accepted() -> None:
    policy = parse_policy(OVERDUE.format(gravity="serious"), "ok.yaml")
    assert "credit_freeze" in policy.measures


def test_single_event_reaching_a_restriction_after_a_set_back_notice_is_refused() -> None:
    problems = refusal("""
policy: t
title: t
effective_from: 2026-01-01
event_types:
  offence: {domain: transport, category: traffic_conduct, gravity: minor, points: 9,
            retention: P2Y}
scorecards:
  pts: {events: [offence], higher_is: worse, base: 0}
measures:
  warning: {kind: restriction, domain: transport, severity: minor,
            condition: "pts.score >= 6.0"}
  revoked: {kind: restriction, domain: transport, severity: grave,
            condition: "pts.score >= 8.0", requires: {measure: warning, notice: P30D}}
""")
    assert rules(problems) == {"proportionality"}
    assert "`revoked`" in problems[0].message


# --- the linter cannot be switched off ------------------------------------------------------

def test_no_parameter_skips_the_linter() -> None:
    # `models_dir` only says where statistical scorecards' artifacts are read from.
    assert list(inspect.signature(load_policy).parameters) == ["path", "models_dir"]
    assert list(inspect.signature(parse_policy).parameters) == ["text", "name", "models_dir"]


def test_no_cli_option_skips_the_linter() -> None:
    result = CliRunner().invoke(app, ["policy", "check", "--help"])
    assert result.exit_code == 0
    assert set(re.findall(r"--[a-z][a-z-]*", result.output)) == {"--help"}
    refused = CliRunner().invoke(app, ["policy", "check",
                                       str(REFUSED / "travel_ban_for_a_ticket.yaml")])
    assert refused.exit_code == 2
    assert "[proportionality]" in refused.output


def test_lint_error_is_a_policy_error() -> None:
    assert issubclass(LintError, PolicyError)
