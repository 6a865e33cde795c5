"""The committed impact summaries (docs/impact/*.md) are what `make impact-docs` writes.

The summaries are regenerated here at the size the Makefile uses (IMPACT_SIZE), by the same
functions the command calls; a change to the policy, the scenario or the simulation that
changes a figure fails this test until `make impact-docs` is run and the result committed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.policies.support import example
from trustledger.impact import default_scenario, simulate
from trustledger.impact.report import markdown

ROOT = Path(__file__).parent.parent


def _size() -> tuple[int, int, int]:
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines()
                if x.startswith("IMPACT_SIZE"))
    found = re.search(r"--subjects (\d+) --months (\d+) --seed (\d+)", line)
    assert found is not None, line
    subjects, months, seed = (int(g) for g in found.groups())
    return subjects, months, seed


@pytest.mark.parametrize("name", ["sesame", "rongcheng", "reputation"])
def test_committed_summary_is_what_make_impact_docs_writes(name: str) -> None:
    subjects, months, seed = _size()
    policy = example(name)
    report = simulate(policy, default_scenario(policy), subjects=subjects, months=months,
                      seed=seed)
    command = f"trustledger impact policies/{name}.yaml --subjects {subjects} " \
              f"--months {months} --seed {seed} --markdown docs/impact/{name}.md"
    committed = (ROOT / "docs" / "impact" / f"{name}.md").read_text(encoding="utf-8")
    assert committed == markdown(report, command), \
        f"docs/impact/{name}.md is stale: run `make impact-docs` and commit it"


def test_every_example_policy_has_a_summary() -> None:
    policies = sorted(p.stem for p in (ROOT / "policies").glob("*.yaml")
                      if p.name != "register.yaml")   # the event-type register, no policy
    summaries = sorted(p.stem for p in (ROOT / "docs" / "impact").glob("*.md"))
    assert policies == summaries
