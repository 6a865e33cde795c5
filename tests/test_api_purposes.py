"""Purposes in the policy language: what a decision for each discloses, and its firewall."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.policies.support import shipped_register
from trustledger.errors import LintError, PolicyError
from trustledger.policy import CompiledPolicy, load_policy, parse_policy
from trustledger.policy.compiled import content_hash

ROOT = Path(__file__).resolve().parent.parent
SESAME = (ROOT / "policies" / "sesame.yaml").read_text()
REGISTER = shipped_register()


def _parse(text: str, name: str = "<policy>") -> CompiledPolicy:
    """A shipped policy's text (changed) against the shipped register."""
    return parse_policy(text, name, register=REGISTER)


@pytest.mark.parametrize("name", ["sesame", "rongcheng", "reputation"])
def test_example_policies_declare_purposes(name: str) -> None:
    policy = load_policy(ROOT / "policies" / f"{name}.yaml")
    assert policy.purposes
    for purpose in policy.purposes.values():
        assert all(policy.measures[m].domain == purpose.domain for m in purpose.measures)


def test_sesame_purposes() -> None:
    policy = _parse(SESAME)
    rental, credit = policy.purposes["rental_deposit"], policy.purposes["consumer_credit"]
    assert (rental.label, rental.domain, rental.measures) == (
        "deposit-free rental", "rental", ("deposit_free_rental", "priority_service"))
    assert (credit.label, credit.domain, credit.measures) == (
        "pay-later credit", "finance", ("pay_later",))


def test_a_purpose_may_not_disclose_a_measure_of_another_domain() -> None:
    leaky = SESAME.replace("measures: [pay_later]", "measures: [pay_later, deposit_free_rental]")
    with pytest.raises(LintError) as refused:
        _parse(leaky, "leaky.yaml")
    (problem,) = refused.value.problems
    assert problem.rule == "purpose-firewall"
    assert problem.location.path == "purposes.consumer_credit.measures[1]"
    assert problem.location.file == "leaky.yaml" and problem.location.line is not None
    assert "measure `deposit_free_rental` of domain rental" in problem.message


def test_scorecard_disclosure_rules() -> None:
    # An opt-in scorecard spanning domains may be shown for a purpose of one of them...
    _parse(SESAME)
    # ...but not for a purpose of a domain it does not include.
    elsewhere = SESAME.replace("    domain: finance\n    measures: [pay_later]",
                               "    domain: transport\n    measures: []")
    with pytest.raises(PolicyError):
        _parse(elsewhere)
    foreign = SESAME.replace("    label: pay-later credit\n    description: a shop or lender "
                             "asks whether it may offer pay-later credit\n    domain: finance",
                             "    label: pay-later credit\n    domain: identity")
    with pytest.raises(LintError) as refused:
        _parse(foreign)
    rules = {(p.rule, p.location.path) for p in refused.value.problems}
    assert ("purpose-firewall", "purposes.consumer_credit.scorecards[0]") not in rules
    assert ("purpose-firewall", "purposes.consumer_credit.measures[0]") in rules


def test_single_domain_scorecard_of_another_domain_is_refused() -> None:
    text = (ROOT / "policies" / "reputation.yaml").read_text()
    text = text.replace("  participation:\n    label: participation privileges\n"
                        "    domain: community\n",
                        "  participation:\n    label: participation privileges\n"
                        "    domain: housing\n    scorecards: [reputation]\n")
    with pytest.raises(LintError) as refused:
        _parse(text)
    rules = {(p.rule, p.location.path) for p in refused.value.problems}
    assert ("purpose-firewall", "purposes.participation.scorecards[0]") in rules


@pytest.mark.parametrize(("change", "message"), [
    (("measures: [pay_later]", "measures: [pay_sooner]"), "no measure `pay_sooner`"),
    (("measures: [pay_later]", "measures: [pay_later, pay_later]"), "listed twice"),
    (("measures: [pay_later]", "measures: []"), "at least 1"),
    (("    domain: finance\n    measures", "    colour: red\n    domain: finance\n    measures"),
     "unknown key `colour`"),
])
def test_purpose_references_and_shape(change: tuple[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        _parse(SESAME.replace(*change))


def test_a_policy_without_purposes_keeps_its_hash() -> None:
    policy = _parse(SESAME[: SESAME.index("\n# What a relying party may ask for")])
    assert not policy.purposes
    dumped = policy.model.model_dump(mode="json", by_alias=True)
    assert dumped.pop("purposes") == {}
    # The canonical JSON as it was before `purposes` existed: the same name for the version.
    before = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert policy.hash == "sha256:" + hashlib.sha256(before.encode()).hexdigest()
    assert content_hash(policy.model) == policy.hash
    with_purposes = _parse(SESAME)
    assert with_purposes.hash != policy.hash
