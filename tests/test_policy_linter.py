"""The safeguards linter: each refusal names the rule, the offending element and why."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.policies.support import HERE, example, parse_declared, policy_file
from trustledger.cli import app
from trustledger.errors import LintError, PolicyError, PolicyProblem
from trustledger.policy import load_policy, load_register, parse_policy, parse_register

REFUSED = HERE / "refused"
REGISTERS = REFUSED / "registers"


def refusal(source: Path | str) -> list[PolicyProblem]:
    """The problems of a refused policy or register file, or of an old-style inline policy
    (its declarations become its register: a declaration is refused in that register)."""
    with pytest.raises(LintError) as info:
        if isinstance(source, Path) and source.parent == REGISTERS:
            load_register(source)
        elif isinstance(source, Path):
            load_policy(source)
        else:
            parse_declared(source, "inline.yaml")
    return info.value.problems


def rules(problems: list[PolicyProblem]) -> set[str]:
    return {p.rule for p in problems}


# --- the four refused example policies --------------------------------------------------------

def test_scoring_online_comments_is_refused() -> None:
    problems = refusal(REGISTERS / "scoring_comments.yaml")
    first = problems[0]
    assert first.rule == "out-of-bounds-category"
    assert "`online_comment`" in first.message and "speech_expression" in first.message
    assert "ECHR Art. 10" in first.message
    assert (first.location.path, first.location.line) == ("event_types.online_comment.category", 8)
    assert "out-of-bounds-name" in rules(problems)


def test_lowering_a_score_for_whom_someone_knows_is_refused() -> None:
    problems = refusal(REGISTERS / "whom_someone_knows.yaml")
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
    assert (problem.location.line, problem.location.column) == (25, 5)
    assert str(problem).startswith(
        f"{problem.location.file}:25:5: measures.ride_ban.condition: [context-firewall]")
    declared = refusal(REGISTERS / "misdeclared_jaywalking_grave.yaml")[0]
    assert str(declared).startswith(
        f"{declared.location.file}:9:5: event_types.jaywalking.gravity: [gravity-cap]")


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
  paids: {aggregate: count, types: [paid]}
  damages: {aggregate: count, types: [damaged]}
measures:
  premium:
    kind: privilege
    domain: rental
    condition: "paids >= 3 && damages == 0"
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
    category: credit_repayment
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
    policy = parse_declared(OVERDUE.format(gravity="serious"), "ok.yaml")
    assert "credit_freeze" in policy.measures


SET_BACK = """
policy: t
title: t
effective_from: 2026-01-01
event_types:
  offence: {domain: transport, category: traffic_conduct, gravity: minor, points: 9,
            retention: P2Y}
  remedial_course: {domain: transport, category: driver_training, gravity: minor,
                    points: -1, retention: P2Y}
scorecards:
  pts: {events: [offence, remedial_course], higher_is: worse, base: 0}
measures:
  warning: {kind: restriction, domain: transport, severity: minor,
            condition: "pts.score >= 6.0"}
  revoked: {kind: restriction, domain: transport, severity: grave,
            condition: "pts.score >= 8.0", requires: {measure: warning, notice: P30D}}
"""


def test_a_set_back_restriction_waits_for_a_new_event_after_its_notice() -> None:
    # one offence puts the warning in force and sets `revoked` back to it; after the
    # notice `revoked` applies only at a new event, so one offence alone cannot revoke
    course = SET_BACK.index("  remedial_course:")
    only_offences = (SET_BACK[:course] + SET_BACK[SET_BACK.index("scorecards:"):]).replace(
        "[offence, remedial_course]", "[offence]")
    assert "revoked" in parse_declared(only_offences, "ok.yaml").measures


def test_a_harmless_event_after_the_notice_cannot_complete_a_set_back() -> None:
    # a remedial course (in the subject's favour) after the notice would revoke the licence
    problems = refusal(SET_BACK)
    assert rules(problems) == {"proportionality"}
    message = problems[0].message
    assert "a single `offence` event" in message and "`revoked`" in message
    assert "`remedial_course`" in message and "after the notice period" in message


# --- structural safeguards: inversion, declarations, worst histories ------------------------

TICKETS = """
policy: t
title: t
effective_from: 2026-01-01
event_types:
  ticket: {domain: transport, category: traffic_conduct, gravity: minor, points: -10,
           retention: P2Y}
  ride: {domain: transport, category: contract_performance, gravity: minor, points: 1,
         retention: P2Y}
metrics:
  tickets_1y: {aggregate: count, types: [ticket], window: P1Y}
  rides: {aggregate: count, types: [ride]}
"""


def test_a_privilege_everyone_has_until_an_event_must_declare_its_severity() -> None:
    problems = refusal(TICKETS + """
measures:
  may_fly: {kind: privilege, domain: transport, condition: "tickets_1y == 0"}
""")
    assert rules(problems) == {"proportionality"}
    message = problems[0].message
    assert "privilege `may_fly` is in force for a subject with no adverse events" in message
    assert "taken away by one `ticket` event" in message and "`severity`" in message


def test_an_inverted_privilege_is_weighed_as_a_restriction() -> None:
    problems = refusal(TICKETS + """
measures:
  may_fly: {kind: privilege, domain: transport, severity: serious,
            condition: "tickets_1y == 0"}
""")
    assert rules(problems) == {"proportionality"}
    assert "a single `ticket` event (gravity minor" in problems[0].message
    assert "takes away privilege `may_fly`" in problems[0].message
    # declared as minor as the ticket, losing it to one ticket is proportionate
    accepted = parse_declared(TICKETS + """
measures:
  may_fly: {kind: privilege, domain: transport, severity: minor,
            condition: "tickets_1y == 0"}
""", "ok.yaml")
    assert accepted.measures["may_fly"].severity is not None


def test_a_privilege_of_an_opt_in_score_is_a_reward_not_an_inversion() -> None:
    # without consent the score does not exist and the privilege is not held, so losing
    # it leaves a participant where every non-participant is (the Rongcheng grade A)
    policy = parse_declared(TICKETS + """
scorecards:
  civic: {events: [ticket, ride], base: 1000, opt_in: true}
measures:
  perks: {kind: privilege, domain: transport, condition: "civic.score >= 1000.0"}
""", "ok.yaml")
    assert policy.measures["perks"].severity is None


def test_a_privilege_no_event_can_take_away_is_not_an_inversion() -> None:
    policy = parse_declared(TICKETS + """
measures:
  welcome: {kind: privilege, domain: transport, condition: "rides >= 0"}
""", "ok.yaml")
    assert "welcome" in policy.measures


def test_accumulating_adverse_events_may_bring_a_graver_restriction() -> None:
    # a points system: three minor tickets in a year, not one, bring a serious measure
    policy = parse_declared(TICKETS + """
measures:
  ban: {kind: restriction, domain: transport, severity: serious,
        condition: "tickets_1y >= 3"}
""", "ok.yaml")
    assert "ban" in policy.measures


def test_harmless_companions_cannot_stand_in_for_conduct() -> None:
    problems = refusal(TICKETS + """
measures:
  ban: {kind: restriction, domain: transport, severity: serious,
        condition: "tickets_1y >= 1 && rides >= 4"}
""")
    assert rules(problems) == {"proportionality"}
    message = problems[0].message
    assert "a single `ticket` event" in message and "4 `ride`" in message
    assert "harmless events cannot stand in for conduct" in message


def test_category_fixes_the_domain_and_caps_the_gravity() -> None:
    problems = refusal("""
policy: t
title: t
effective_from: 2026-01-01
event_types:
  judgement: {domain: transport, category: court_judgement, gravity: grave, points: -50,
              retention: P5Y}
  jaywalking: {domain: transport, category: traffic_conduct, gravity: grave, points: -5,
               retention: P1Y}
""")
    assert [(p.rule, p.location.path) for p in problems] == [
        ("category-domain", "event_types.judgement.domain"),
        ("gravity-cap", "event_types.jaywalking.gravity")]
    assert "`court_judgement` belongs to `commerce`, `finance`, `housing`, `rental` or " \
           "`utilities`" in problems[0].message
    assert "gravity grave, above the serious that `traffic_conduct`" in problems[1].message


def test_labels_descriptions_and_enum_values_are_read() -> None:
    problems = refusal("""
policy: t
title: t
effective_from: 2026-01-01
event_types:
  survey:
    label: answers about the mayor's politics
    description: filed after the Sunday sermon
    domain: finance
    category: credit_repayment
    gravity: minor
    attributes:
      answer: {type: enum, values: [absent, protesters_present], description: "its tweets"}
    points: -1
    retention: P1Y
""")
    assert [(p.rule, p.location.path) for p in problems] == [
        ("out-of-bounds-name", "event_types.survey.label"),
        ("out-of-bounds-name", "event_types.survey.description"),
        ("out-of-bounds-name", "event_types.survey.attributes.answer.description"),
        ("out-of-bounds-name", "event_types.survey.attributes.answer.values[1]")]
    assert "mentions `politics`" in problems[0].message
    assert "political opinion" in problems[0].message


def test_what_a_measure_decides_is_not_read_for_words() -> None:
    # Stack Overflow's privilege to comment everywhere grants speech, it scores none
    policy = example("reputation")
    assert "comment_everywhere" in policy.measures


def test_the_probe_is_bounded_and_says_so_when_a_policy_exceeds_it() -> None:
    from trustledger.policy.proportionality import (
        MAX_EVALUATIONS,
        ProbeBudgetExceeded,
        Prober,
        Restricting,
    )
    from trustledger.policy.reach import Reach
    from trustledger.policy.taxonomy import Gravity

    policy = policy_file("driving")
    prober = Prober(policy, Reach(policy), budget=5)
    with pytest.raises(ProbeBudgetExceeded, match="more than 5 evaluations"):
        prober.probe([Restricting("licence_revoked", Gravity.GRAVE, False)])
    assert prober.evaluations == 6
    # the shipped policies stay far inside the default budget
    full = Prober(policy, Reach(policy))
    assert full.probe([Restricting("licence_revoked", Gravity.GRAVE, False)]) == []
    assert 0 < full.evaluations < MAX_EVALUATIONS // 20


def test_windows_beyond_the_calendar_are_probed_as_endless() -> None:
    # a 200-year window (the longest duration) from a policy effective in 9900 ends after the
    # year 9999: the probe treats it as endless and still finds the single ticket, rather
    # than failing on the date
    problems = refusal(TICKETS.replace("window: P1Y", "window: P200Y")
                       .replace("effective_from: 2026-01-01", "effective_from: 9900-01-01") + """
measures:
  ban: {kind: restriction, domain: transport, severity: serious,
        condition: "tickets_1y >= 1"}
""")
    assert rules(problems) == {"proportionality"}
    assert "a single `ticket` event" in problems[0].message


# --- the linter cannot be switched off ------------------------------------------------------

def test_no_parameter_skips_the_linter() -> None:
    # `models_dir` only says where statistical scorecards' artifacts are read from, and
    # `register` which register declares the event types (itself always linted).
    assert list(inspect.signature(load_policy).parameters) == ["path", "register",
                                                               "models_dir"]
    assert list(inspect.signature(parse_policy).parameters) == ["text", "name", "register",
                                                                "models_dir"]
    assert list(inspect.signature(load_register).parameters) == ["path"]
    assert list(inspect.signature(parse_register).parameters) == ["text", "name"]


def test_no_cli_option_skips_the_linter() -> None:
    result = CliRunner().invoke(app, ["policy", "check", "--help"])
    assert result.exit_code == 0
    assert set(re.findall(r"--[a-z][a-z-]*", result.output)) == {"--help", "--register"}
    result = CliRunner().invoke(app, ["policy", "check-register", "--help"])
    assert set(re.findall(r"--[a-z][a-z-]*", result.output)) == {"--help"}
    refused = CliRunner().invoke(app, ["policy", "check-register",
                                       str(REGISTERS / "misdeclared_jaywalking_grave.yaml")])
    assert refused.exit_code == 2
    assert "[gravity-cap]" in refused.output
    refused = CliRunner().invoke(app, ["policy", "check",
                                       str(REFUSED / "travel_ban_for_a_ticket.yaml")])
    assert refused.exit_code == 2
    assert "[proportionality]" in refused.output


def test_lint_error_is_a_policy_error() -> None:
    assert issubclass(LintError, PolicyError)


# --- expressions cannot re-declare what an attribute means ------------------------------------

def test_expressions_read_attributes_by_name_and_their_texts_are_known() -> None:
    from trustledger.policy.conditions import attribute_reads, string_literals

    assert attribute_reads("double(attrs.days_late) + (has(attrs.x) ? 1.0 : 0.0)") == (
        frozenset({"days_late", "x"}), False)
    assert attribute_reads("attrs['note'].size() > 3")[1]
    assert attribute_reads("'note' in attrs")[1]
    assert attribute_reads("attrs.all(k, k != 'x')")[1]
    # a literal naming `attrs` is text, not a read
    assert attribute_reads("attrs.kind == 'attrs'") == (frozenset({"kind"}), False)
    assert string_literals(r"""x == 'A' || y == "\u0063hurch" || z == r'\u0063'""") == [
        "A", "church", r"\u0063"]


NOTED = """\
policy: noted
title: noted loans
effective_from: 2026-01-01
event_types:
  loan_noted:
    label: loan noted
    domain: finance
    category: credit_repayment
    gravity: minor
    attributes:
      note: {type: string, required: false}
      days: {type: integer, minimum: 0}
    points: -5
    when: "WHEN"
    retention: P5Y
scorecards:
  credit: {events: [loan_noted], base: 600}
"""


@pytest.mark.parametrize(("when", "rule", "words"), [
    ("has(attrs.note) && attrs.note.contains('mosque')", "attribute-read", "`attrs.note` is a "
     "string attribute"),
    ("attrs.note.matches('ch.rch')", "attribute-read", "free text"),
    ("attrs['days'] > 3", "attribute-read", "`attrs.NAME` only"),
    ("attrs.day > 3", "unknown-reference", "no attribute `day`"),
])
def test_a_condition_cannot_read_free_text_or_hide_what_it_reads(when: str, rule: str,
                                                                 words: str) -> None:
    text = NOTED.replace("WHEN", when.replace('"', '\\"'))
    with pytest.raises(PolicyError) as info:
        parse_declared(text, "noted.yaml")
    [problem] = info.value.problems
    assert (problem.rule, problem.location.path) == (rule, "event_types.loan_noted.when")
    assert problem.location.line == 14 and words in problem.message


def test_a_condition_on_numbers_and_enums_is_accepted() -> None:
    policy = parse_declared(NOTED.replace("WHEN", "attrs.days > 3"), "noted.yaml")
    assert policy.event_types["loan_noted"].when is not None


def test_probing_tries_the_numbers_an_expression_singles_out() -> None:
    from trustledger.policy.compiled import CompiledAttribute
    from trustledger.policy.literals import literal_probe_values
    from trustledger.policy.models import AttributeType

    days = {"days": CompiledAttribute("days", AttributeType.INTEGER, True, 0, None, None)}
    found = literal_probe_values(["attrs.days == 1300 / 100"], days)["days"]
    assert {12.0, 13.0, 14.0} <= set(found)
    assert 13.0 in literal_probe_values(["string(attrs.days) == '13'"], days)["days"]
    # deeper arithmetic is folded (tests/test_guard_probe.py)
    assert 13.0 in literal_probe_values(["attrs.days == (2 + 3) * 2 + 3"], days)["days"]
