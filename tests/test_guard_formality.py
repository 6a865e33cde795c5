"""Registered formalities: a privilege everyone holds once a formality is done is an entitlement.

A formality given a token point in the subject's favour (a rail card issued: +1) made a
privilege look earned, so one minor ticket could take away what everyone has. The register
(two operators) may declare a type ``formality: true``; the probe then counts it as neutral
whatever its points, and taking the privilege away is weighed as a restriction. Privileges
earned by favourable conduct (reputation, repayments) stay rewards. Real register and policy
files, real loader, compiler and linter; a real SQLite ledger for the governance path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.governance import put_in_force
from tests.policies.support import HERE, POLICIES
from trustledger.errors import LintError, PolicyError
from trustledger.ledger import Ledger
from trustledger.policy import load_policy, load_register, parse_register
from trustledger.policy.register import register_json_schema
from trustledger.principals import ServiceLedger
from trustledger.registry import register_in_force
from trustledger.scoring import publish_policy

CORPUS = HERE / "refused"
FLAGGED = (CORPUS / "register.yaml").read_text(encoding="utf-8")
UNFLAGGED = FLAGGED.replace("    formality: true\n", "")
ENTITLEMENT = CORPUS / "inversion_after_a_registered_formality.yaml"


def _pair(tmp_path: Path, register: str, severity: str | None = None) -> Path:
    folder = tmp_path / ("flagged" if "formality: true" in register else "unflagged")
    folder.mkdir(exist_ok=True)
    (folder / "register.yaml").write_text(register, encoding="utf-8")
    text = ENTITLEMENT.read_text(encoding="utf-8")
    if severity is not None:
        text = text.replace("    domain: transport\n    condition",
                            f"    domain: transport\n    severity: {severity}\n    condition")
    path = folder / "rail.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_register_declares_a_formality_and_only_then_is_the_hash_new() -> None:
    assert "formality: true" in FLAGGED and UNFLAGGED != FLAGGED
    flagged, unflagged = parse_register(FLAGGED), parse_register(UNFLAGGED)
    assert flagged.event_types["rail_card_issued"].formality
    assert not unflagged.event_types["rail_card_issued"].formality
    assert flagged.hash != unflagged.hash
    # `formality: false` is the default and hashes as a register written before the flag
    explicit = UNFLAGGED.replace("    gravity: minor\n",
                                 "    gravity: minor\n    formality: false\n")
    assert explicit != UNFLAGGED and parse_register(explicit).hash == unflagged.hash
    assert "formality" in register_json_schema()["$defs"]["RegisteredType"]["properties"]


def test_a_formality_must_be_a_boolean() -> None:
    with pytest.raises(PolicyError) as info:
        parse_register(FLAGGED.replace("formality: true", "formality: maybe"), "r.yaml")
    [problem] = info.value.problems
    assert problem.location.path == "event_types.rail_card_issued.formality"


def test_an_entitlement_after_a_registered_formality_is_weighed_as_a_restriction(
        tmp_path: Path) -> None:
    # The gap: without the register's word, the token point makes it a reward.
    assert load_policy(_pair(tmp_path, UNFLAGGED)).measures["may_ride_rail"]
    with pytest.raises(LintError) as info:
        load_policy(_pair(tmp_path, FLAGGED))
    [problem] = info.value.problems
    assert (problem.rule, problem.location.path) == ("proportionality", "measures.may_ride_rail")
    assert "taken away by one `traffic_ticket` event after `rail_card_issued` (formalities)" \
        in problem.message and "must declare its `severity`" in problem.message
    with pytest.raises(LintError) as info:
        load_policy(_pair(tmp_path, FLAGGED, "serious"))
    [problem] = info.value.problems
    assert (problem.rule, problem.location.path) == ("proportionality",
                                                      "measures.may_ride_rail.condition")
    assert "a single `traffic_ticket` event (gravity minor" in problem.message
    assert "severity serious" in problem.message
    # as minor as the ticket that takes it away: proportionate
    assert load_policy(_pair(tmp_path, FLAGGED, "minor")).measures["may_ride_rail"]


def test_a_policy_cannot_declare_a_formality(tmp_path: Path) -> None:
    path = _pair(tmp_path, UNFLAGGED)
    path.write_text(path.read_text().replace("    points: 1\n", "    formality: true\n"
                                             "    points: 1\n", 1), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    [problem] = info.value.problems
    assert (problem.rule, problem.location.path) == (
        "register-declares", "event_types.rail_card_issued.formality")


def test_rewards_earned_by_conduct_stay_rewards() -> None:
    # Stack Overflow-style privileges, earned by upvotes and lost by downvotes: no severity
    assert load_policy(POLICIES / "reputation.yaml").measures["vote_down"].severity is None
    assert not any(t.formality for t in load_register(POLICIES / "register.yaml")
                   .event_types.values())


def test_two_operators_put_the_formality_in_force_and_publication_is_linted_under_it(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    policy = _pair(tmp_path, FLAGGED)
    with ServiceLedger.open(url) as ledger:
        put_in_force(ledger, UNFLAGGED)
        assert publish_policy(ledger, policy)  # a reward under the register in force
        put_in_force(ledger, FLAGGED)          # proposed by one operator, approved by another
        assert register_in_force(ledger).event_types["rail_card_issued"].formality
        head = ledger.head()
        renamed = tmp_path / "rail-v2.yaml"
        renamed.write_text(policy.read_text().replace("policy: p\n", "policy: p2\n"),
                           encoding="utf-8")
        with pytest.raises(LintError) as info:
            publish_policy(ledger, renamed)
        assert info.value.problems[0].location.path == "measures.may_ride_rail"
        assert ledger.head() == head
    with Ledger.open(url) as ledger:
        assert ledger.verify().entries == head[0]
