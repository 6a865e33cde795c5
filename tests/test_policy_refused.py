"""Disguised forbidden policies and registers are refused with their named rule; shipped ones
are accepted.

Each file in ``tests/policies/refused/`` (a policy, scored against the honest
``refused/register.yaml``) and in ``tests/policies/refused/registers/`` (an event-type
register) says in its header comment what it disguises and ``expect: <rule> at <key path>``:
the refusal it must get (among any others). What a type *is* (its words, domain, category,
gravity) is refused in the register; what a policy does with it, in the policy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.policies.support import HERE, POLICIES
from trustledger.errors import LintError, PolicyError
from trustledger.policy import load_policy, load_register
from trustledger.policy.taxonomy import CATEGORY_RULES, Gravity, category_table

CORPUS = HERE / "refused"
REFUSED = sorted(p for p in CORPUS.glob("*.yaml") if p.name != "register.yaml")
REFUSED_REGISTERS = sorted((CORPUS / "registers").glob("*.yaml"))
SHIPPED = sorted([*(p for p in POLICIES.glob("*.yaml") if p.name != "register.yaml"),
                  *(POLICIES / "examples").glob("*.yaml"),
                  *(p for p in HERE.glob("*.yaml")
                    if p.stem not in ("german_credit", "register"))])
REGISTERS = [POLICIES / "register.yaml", HERE / "register.yaml", CORPUS / "register.yaml"]
EXPECT = re.compile(r"expect: ([a-z-]+) at ([a-z0-9_.]+(?:\[\d+\])?[a-z0-9_.]*)")
ROOT = Path(__file__).resolve().parent.parent
DECLARATION_RULES = {"out-of-bounds-name", "out-of-bounds-category", "protected-attribute",
                     "category-domain", "gravity-cap", "unknown-category"}
"""Rules on what a type is: they refuse registers, never policies (which cannot declare)."""
COMPILER_RULES = {"register-declares", "unregistered-type", "unknown-reference", "attribute-read"}
"""Rules the compiler applies (a PolicyError before the linter runs), not the linter."""


def expectation(path: Path) -> tuple[str, str]:
    header = "".join(line for line in path.read_text(encoding="utf-8").splitlines(True)
                     if line.startswith("#"))
    found = EXPECT.search(header)
    assert found is not None, f"{path.name} has no `expect: <rule> at <path>` header"
    return found.group(1), found.group(2)


def _refused_with(path: Path, error: PolicyError, rule: str, where: str) -> None:
    found = [(p.rule, p.location.path) for p in error.problems]
    assert any(r == rule and (at == where or at.startswith(where + "."))
               for r, at in found), f"{path.name}: expected [{rule}] at {where}, got {found}"
    assert all(p.location.file == str(path) and p.location.line for p in error.problems)


def test_the_corpus_is_large_and_varied() -> None:
    assert len(REFUSED) + len(REFUSED_REGISTERS) >= 60
    assert len(REFUSED) >= 20 and len(REFUSED_REGISTERS) >= 40
    kinds = {p.stem.split("_")[0] for p in [*REFUSED, *REFUSED_REGISTERS]}
    assert {"inversion", "misdeclared", "synonym", "plural", "label", "description", "enum",
            "precondition", "window", "trait", "redeclare", "unregistered", "attribute",
            "literal", "privilege", "agent", "compound", "unicode", "spaced"} <= kinds


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.stem)
def test_disguised_policy_is_refused_with_its_rule(path: Path) -> None:
    rule, where = expectation(path)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    _refused_with(path, info.value, rule, where)
    if rule not in COMPILER_RULES:
        assert isinstance(info.value, LintError)


@pytest.mark.parametrize("path", REFUSED_REGISTERS, ids=lambda p: p.stem)
def test_disguised_register_is_refused_with_its_rule(path: Path) -> None:
    rule, where = expectation(path)
    with pytest.raises(PolicyError) as info:
        load_register(path)
    _refused_with(path, info.value, rule, where)
    if rule in DECLARATION_RULES:
        assert isinstance(info.value, LintError)


def test_declaration_rules_are_tested_on_registers_only() -> None:
    # A policy cannot declare what a type is, so these rules refuse a policy only for its
    # own metrics and scorecards (their names and labels) and the texts its own `when`
    # conditions and formulas compare with, never for what an event type is.
    assert not any(expectation(p)[1].startswith("event_types.") and
                   not expectation(p)[1].endswith((".when", ".points.formula"))
                   for p in REFUSED if expectation(p)[0] in DECLARATION_RULES)
    assert {expectation(p)[0] for p in REFUSED_REGISTERS} >= DECLARATION_RULES - {
        "unknown-category"}


def test_an_unregistered_type_names_the_nearest_registered_ones() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(CORPUS / "unregistered_type_near_miss.yaml")
    problem = info.value.problems[0]
    assert problem.rule == "unregistered-type"
    assert "refused_corpus" in problem.message and "nearest registered: traffic_ticket" in \
        problem.message


def test_a_redeclaration_says_the_register_declares_it() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(CORPUS / "redeclare_judgement_domain.yaml")
    [problem] = info.value.problems
    assert (problem.rule, problem.location.path, problem.location.line) == \
        ("register-declares", "event_types.debt_judgement.domain", 9)
    assert "register" in problem.message and "unknown key" not in problem.message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_policy_is_accepted(path: Path) -> None:
    assert load_policy(path).event_types


@pytest.mark.parametrize("path", REGISTERS, ids=lambda p: p.parent.name)
def test_shipped_registers_are_accepted(path: Path) -> None:
    register = load_register(path)
    assert register.event_types and register.hash.startswith("sha256:")


def test_every_shipped_event_type_fits_its_category() -> None:
    for path in SHIPPED:
        for name, et in load_policy(path).event_types.items():
            rule = CATEGORY_RULES[et.category]
            assert et.domain in rule.domains, (path.name, name)
            assert et.gravity.rank <= rule.max_gravity.rank, (path.name, name)


def test_the_documented_category_table_is_generated_from_the_taxonomy() -> None:
    doc = (ROOT / "docs" / "safeguards.md").read_text(encoding="utf-8")
    start, end = "<!-- categories:start -->\n", "<!-- categories:end -->"
    assert doc.split(start, 1)[1].split(end, 1)[0] == category_table()


def test_only_a_conviction_may_be_a_grave_traffic_event() -> None:
    assert CATEGORY_RULES["traffic_conduct"].max_gravity is Gravity.SERIOUS
    assert CATEGORY_RULES["traffic_crime"].max_gravity is Gravity.GRAVE
    assert CATEGORY_RULES["court_judgement"].domains.isdisjoint({"transport", "community"})
