"""Disguised forbidden policies are refused with their named rule; shipped ones are accepted.

Each file in ``tests/policies/refused/`` says in its header comment what it disguises and
``expect: <rule> at <key path>``: the refusal it must get (among any others).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.policies.support import HERE, POLICIES
from trustledger.errors import LintError
from trustledger.policy import load_policy
from trustledger.policy.taxonomy import CATEGORY_RULES, Gravity, category_table

REFUSED = sorted((HERE / "refused").glob("*.yaml"))
SHIPPED = sorted([*POLICIES.glob("*.yaml"), *(POLICIES / "examples").glob("*.yaml"),
                  *(p for p in HERE.glob("*.yaml") if p.stem != "german_credit")])
EXPECT = re.compile(r"expect: ([a-z-]+) at ([a-z0-9_.]+(?:\[\d+\])?[a-z0-9_.]*)")
ROOT = Path(__file__).resolve().parent.parent


def expectation(path: Path) -> tuple[str, str]:
    header = "".join(line for line in path.read_text(encoding="utf-8").splitlines(True)
                     if line.startswith("#"))
    found = EXPECT.search(header)
    assert found is not None, f"{path.name} has no `expect: <rule> at <path>` header"
    return found.group(1), found.group(2)


def test_the_corpus_is_large_and_varied() -> None:
    assert len(REFUSED) >= 44
    kinds = {p.stem.split("_")[0] for p in REFUSED}
    assert {"inversion", "misdeclared", "synonym", "plural", "label", "description", "enum",
            "precondition", "window", "trait"} <= kinds


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: p.stem)
def test_disguised_policy_is_refused_with_its_rule(path: Path) -> None:
    rule, where = expectation(path)
    with pytest.raises(LintError) as info:
        load_policy(path)
    found = [(p.rule, p.location.path) for p in info.value.problems]
    assert any(r == rule and (at == where or at.startswith(where + "."))
               for r, at in found), f"{path.name}: expected [{rule}] at {where}, got {found}"
    assert all(p.location.file == str(path) and p.location.line for p in info.value.problems)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_policy_is_accepted(path: Path) -> None:
    assert load_policy(path).event_types


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
