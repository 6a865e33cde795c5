"""The event-type register: read and linted like a policy; policies refer to it, never re-declare.

Real register documents throughout (the refused corpus is tests/test_policy_refused.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.policies.support import POLICIES, d
from trustledger.cli import app
from trustledger.engine import Event, evaluate
from trustledger.errors import InputError, LintError, NotFoundError, PolicyError, PolicyProblem
from trustledger.policy import (
    Register,
    load_policy,
    load_register,
    parse_policy,
    parse_register,
)
from trustledger.policy.models import DECLARED_KEYS
from trustledger.policy.register import find_register

REGISTER = """\
register: city
title: City programme
event_types:
  fare_evaded:
    label: fare evaded
    domain: transport
    category: contract_performance
    gravity: moderate
  ticket:
    label: parking ticket
    domain: transport
    category: traffic_conduct
    gravity: minor
    attributes:
      final_on: {type: date, description: the day the ticket became final}
  loan_default:
    domain: finance
    category: debt_default
    gravity: serious
"""

POLICY = """\
policy: rides
title: Rides
effective_from: 2026-01-01
event_types:
  fare_evaded:
    points: -10
    expiry: {after: P1Y}
    retention: P2Y
  ticket:
    points: -5
    expiry: {after: P2Y, from: final_on}
    retention: P3Y
scorecards:
  rider: {events: [fare_evaded, ticket], base: 100}
"""


def register(text: str = REGISTER, name: str = "register.yaml") -> Register:
    return parse_register(text, name)


def refused(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        parse_register(text, "register.yaml")
    return info.value.problems


def where(problem: PolicyProblem) -> tuple[str, int | None, str]:
    return problem.rule, problem.location.line, problem.location.path


# --- reading a register -----------------------------------------------------------------------

def test_a_register_is_named_by_the_hash_of_its_content() -> None:
    city = register()
    assert (city.name, city.document.title, list(city.event_types)) == \
        ("city", "City programme", ["fare_evaded", "ticket", "loan_default"])
    assert city.hash.startswith("sha256:") and len(city.hash) == 71
    assert city.source == REGISTER
    relaid = "# a comment\n" + REGISTER.replace("  loan_default:\n", "\n  loan_default:\n")
    assert register(relaid).hash == city.hash
    assert register(REGISTER.replace("gravity: serious", "gravity: moderate")).hash != city.hash


def test_domain_of_a_type_and_of_an_unknown_one() -> None:
    city = register()
    assert city.domain_of("loan_default") == "finance"
    with pytest.raises(NotFoundError, match="'jaywalking' is not in register city"):
        city.domain_of("jaywalking")


def test_shape_errors_name_file_line_and_key_path() -> None:
    [problem] = refused(REGISTER.replace("    gravity: minor\n", "    gravity: minor\n"
                                                                 "    colour: red\n"))
    assert where(problem) == ("schema", 14, "event_types.ticket.colour")
    assert str(problem).startswith("register.yaml:14:5: event_types.ticket.colour: [schema]")
    [problem] = refused(REGISTER.replace("    domain: finance\n", ""))
    assert where(problem) == ("schema", 16, "event_types.loan_default.domain")
    assert problem.message == "required key `domain` is missing"
    [problem] = refused("register: empty\ntitle: t\nevent_types: {}\n")
    assert problem.location.path == "event_types"


def test_yaml_problems_and_bounds_are_a_policys() -> None:
    [problem] = refused(REGISTER.replace("    gravity: minor\n",
                                         "    gravity: minor\n    gravity: grave\n"))
    assert (problem.rule, problem.location.line) == ("duplicate-key", 14)
    assert refused("register: [unclosed\n")[0].rule == "yaml-syntax"
    [problem] = refused("- a list\n")
    assert problem.rule == "schema" and "a register document is a YAML mapping" in \
        problem.message
    assert refused("a: " + "x" * (1024 * 1024))[0].rule == "policy-too-large"


def test_scoring_in_the_register_is_refused_as_the_policys() -> None:
    [problem] = refused(REGISTER.replace("    gravity: moderate\n",
                                         "    gravity: moderate\n    points: -10\n"))
    assert where(problem) == ("policy-scores", 9, "event_types.fare_evaded.points")
    assert "write it in the policy" in problem.message


@pytest.mark.parametrize(("change", "rule", "path"), [
    (("domain: finance", "domain: transport"), "category-domain",
     "event_types.loan_default.domain"),
    (("gravity: serious", "gravity: grave"), "gravity-cap", "event_types.loan_default.gravity"),
    (("category: debt_default", "category: health"), "out-of-bounds-category",
     "event_types.loan_default.category"),
    (("category: debt_default", "category: gossip"), "unknown-category",
     "event_types.loan_default.category"),
    (("label: parking ticket", "label: ticket at a protest"), "out-of-bounds-name",
     "event_types.ticket.label"),
    (("the day the ticket became final", "the day of the sermon"), "out-of-bounds-name",
     "event_types.ticket.attributes.final_on.description"),
    (("  loan_default:", "  retraction:"), "reserved-name", "event_types.retraction"),
])
def test_declarations_are_linted(change: tuple[str, str], rule: str, path: str) -> None:
    with pytest.raises(LintError) as info:
        parse_register(REGISTER.replace(*change), "register.yaml")
    assert (rule, path) in {(p.rule, p.location.path) for p in info.value.problems}


def test_enum_values_are_read() -> None:
    text = REGISTER.replace("      final_on:", "      kind: {type: enum, values: [meter, "
                                                "mosques]}\n      final_on:")
    with pytest.raises(LintError) as info:
        parse_register(text, "register.yaml")
    assert where(info.value.problems[0]) == \
        ("out-of-bounds-name", 15, "event_types.ticket.attributes.kind.values[1]")


def test_load_register_refuses_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"register file .* does not exist"):
        load_register(tmp_path / "nothing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"register: caf\xe9\n")
    with pytest.raises(InputError, match="cannot read register file"):
        load_register(tmp_path / "latin1.yaml")


def test_the_register_next_to_a_policy_or_above_it_is_found(tmp_path: Path) -> None:
    nested = tmp_path / "programme" / "versions"
    nested.mkdir(parents=True)
    (tmp_path / "programme" / "register.yaml").write_text(REGISTER)
    (nested / "rides.yaml").write_text(POLICY)
    assert find_register(nested / "rides.yaml").resolve() == \
        (tmp_path / "programme" / "register.yaml").resolve()
    assert load_policy(nested / "rides.yaml").register_hash == register().hash
    (nested / "register.yaml").write_text(REGISTER.replace("title: City programme",
                                                           "title: nearer"))
    assert find_register(nested / "rides.yaml").resolve() == (nested / "register.yaml").resolve()
    alone = tmp_path / "alone"
    alone.mkdir()
    with pytest.raises(NotFoundError, match=r"no register\.yaml next to policy .*--register"):
        find_register(alone / "rides.yaml")


# --- policies against the register ------------------------------------------------------------

def test_the_compiled_types_join_the_declaration_and_the_scoring() -> None:
    policy = parse_policy(POLICY, "rides.yaml", register=register())
    ticket = policy.event_types["ticket"]
    assert (ticket.label, ticket.domain, ticket.category, ticket.gravity.value) == \
        ("parking ticket", "transport", "traffic_conduct", "minor")
    assert ticket.expiry_attribute == "final_on" and ticket.points({}) == -5
    assert policy.register_hash == register().hash
    events = [Event("src", "t1", "ann", "ticket", d("2026-02-01"), d("2026-03-01"),
                    {"final_on": "2026-02-20"})]
    result = evaluate(policy, events, d("2026-04-01"))
    assert result.scorecards["rider"].score == 95
    assert "parking ticket" in result.scorecards["rider"].reasons[0].text


def test_the_policy_hash_is_the_policys_alone() -> None:
    relabelled = register(REGISTER.replace("label: parking ticket", "label: ticket"))
    a = parse_policy(POLICY, "rides.yaml", register=register())
    b = parse_policy(POLICY, "rides.yaml", register=relabelled)
    assert a.hash == b.hash and a.register_hash != b.register_hash
    assert b.event_types["ticket"].label == "ticket"


@pytest.mark.parametrize("key", DECLARED_KEYS)
def test_a_policy_cannot_declare_what_a_type_is(key: str) -> None:
    value = {"attributes": "{x: {type: integer}}", "gravity": "minor"}.get(key, "transport")
    text = POLICY.replace("    points: -10\n", f"    {key}: {value}\n    points: -10\n")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "rides.yaml", register=register())
    [problem] = info.value.problems
    assert where(problem) == ("register-declares", 6, f"event_types.fare_evaded.{key}")
    assert "register" in problem.message and "unknown key" not in problem.message


def test_an_unregistered_type_is_refused_naming_the_nearest() -> None:
    text = POLICY.replace("  ticket:\n", "  tickets:\n").replace("[fare_evaded, ticket]",
                                                                  "[fare_evaded, tickets]")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "rides.yaml", register=register())
    [problem] = info.value.problems
    assert where(problem) == ("unregistered-type", 9, "event_types.tickets")
    assert "register `city`" in problem.message and "nearest registered: ticket" in \
        problem.message


def test_expiry_from_names_a_date_the_register_declares() -> None:
    text = POLICY.replace("from: final_on", "from: paid_on")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "rides.yaml", register=register())
    assert where(info.value.problems[0]) == \
        ("unknown-reference", 11, "event_types.ticket.expiry.from")


def test_the_register_decides_the_firewall() -> None:
    # The same policy: a transport restriction fed by `fare_evaded`. Declared transport, it
    # may; declared finance by another register, it may not. The policy has no say.
    text = POLICY + """\
metrics:
  evasions: {aggregate: count, types: [fare_evaded]}
measures:
  ride_ban:
    kind: restriction
    domain: transport
    severity: moderate
    condition: "evasions >= 1"
"""
    assert "ride_ban" in parse_policy(text, "rides.yaml", register=register()).measures
    as_finance = REGISTER.replace("    domain: transport\n    category: contract_performance",
                                  "    domain: finance\n    category: contract_performance")
    with pytest.raises(LintError) as info:
        parse_policy(text, "rides.yaml", register=register(as_finance))
    assert "context-firewall" in {p.rule for p in info.value.problems}


def test_an_explicit_register_replaces_the_one_found(tmp_path: Path) -> None:
    (tmp_path / "rides.yaml").write_text(POLICY)
    (tmp_path / "register.yaml").write_text("register: other\ntitle: o\nevent_types:\n"
                                            "  x: {domain: finance, category: debt_default, "
                                            "gravity: minor}\n")
    with pytest.raises(PolicyError, match="unregistered-type"):
        load_policy(tmp_path / "rides.yaml")
    assert load_policy(tmp_path / "rides.yaml", register=register()).name == "rides"


def test_every_shipped_policy_uses_its_folders_register() -> None:
    shipped = load_register(POLICIES / "register.yaml")
    for path in [*POLICIES.glob("*.yaml"), *(POLICIES / "examples").glob("*.yaml")]:
        if path.name != "register.yaml":
            assert load_policy(path).register_hash == shipped.hash, path.name


# --- the command line -------------------------------------------------------------------------

def test_cli_check_register_and_check_with_a_register(tmp_path: Path) -> None:
    runner = CliRunner()
    reg, pol = tmp_path / "city.yaml", tmp_path / "rides.yaml"
    reg.write_text(REGISTER)
    pol.write_text(POLICY)
    result = runner.invoke(app, ["policy", "check-register", str(reg)])
    assert result.exit_code == 0, result.output
    assert f"hash            {register().hash}" in result.output
    assert "event_types     3: fare_evaded, ticket, loan_default" in result.output
    result = runner.invoke(app, ["policy", "check", str(pol), "--register", str(reg)])
    assert result.exit_code == 0, result.output
    assert f"register        {register().hash}" in result.output
    # without --register: no register.yaml next to it, and the command says what to pass
    result = runner.invoke(app, ["policy", "check", str(pol)])
    assert isinstance(result.exception, NotFoundError) and "--register" in str(result.exception)
    reg.write_text(REGISTER.replace("gravity: serious", "gravity: grave"))
    for args in (["policy", "check-register", str(reg)],
                 ["policy", "check", str(pol), "--register", str(reg)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert f"{reg}:19:5: event_types.loan_default.gravity: [gravity-cap]" in result.output
        assert f"{reg}: refused, 1 safeguard problem(s)" in result.output


def test_there_is_no_unlinted_register() -> None:
    # Built by hand around a lint-failing document: the linter runs on construction.
    import dataclasses

    from trustledger.policy.register import RegisterDocument, register_hash

    city = register()
    inflated = RegisterDocument.model_validate(
        {"register": "city", "title": "t", "event_types": {"loan_default": {
            "domain": "finance", "category": "debt_default", "gravity": "grave"}}})
    with pytest.raises(LintError, match="gravity-cap"):
        Register(name="city", hash=register_hash(inflated), source="", document=inflated,
                 event_types=inflated.event_types, locator=city.locator)
    with pytest.raises(ValueError, match="hash and event types"):
        dataclasses.replace(city, event_types={})


def test_cli_publish_checks_against_the_register_in_force(tmp_path: Path) -> None:
    from tests.governance import put_in_force
    from trustledger.ledger import Ledger
    from trustledger.scoring import published_policies

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        put_in_force(ledger)   # the shipped register, by two operators
    # The file lies in a folder with no register.yaml: the ledger's register decides.
    policy = tmp_path / "rides.yaml"
    policy.write_text(POLICY)
    result = CliRunner().invoke(app, ["policy", "publish", str(policy), "--database-url", url])
    assert result.exit_code == 2
    assert f"{policy}:5:3: event_types.fare_evaded: [unregistered-type]" in result.output
    shipped = tmp_path / "sesame.yaml"
    shipped.write_text((POLICIES / "sesame.yaml").read_text(encoding="utf-8"))
    result = CliRunner().invoke(app, ["policy", "publish", str(shipped), "--database-url", url])
    assert result.exit_code == 0, result.output
    with Ledger.open(url) as ledger:
        assert [p.name for p in published_policies(ledger)] == ["sesame"]
