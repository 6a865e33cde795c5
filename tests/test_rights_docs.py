"""docs/rights.md is checked against the code, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

import trustledger.rights as rights
from tests.test_rights_helpers import cli_app
from trustledger.rights import access, dispute, erasure, retention, review, whatif
from trustledger.rights import report as report_module

DOC = (Path(__file__).resolve().parent.parent / "docs" / "rights.md").read_text()


def test_every_public_name_is_documented() -> None:
    what_if_names = ["what_if", "what_it_takes", "parse_target", "remove_event", "add_event",
                     "at_date", "modified_history", "evaluate_history", "Hypothetical",
                     "TierTarget", "MeasureTarget", "WhatIf", "WhatItTakes"]
    assert all(hasattr(whatif, n) for n in what_if_names)
    names = [*rights.__all__, *what_if_names, "assess", "assess_subject", "evaluate_subject",
             "Assessment", "build_report", "report_html", "history_dates", "ErasedError"]
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", DOC)]
    assert not missing, f"docs/rights.md does not mention {missing}"


def test_every_record_kind_is_documented() -> None:
    kinds = [*dispute.KINDS, *review.KINDS, access.READ, retention.MAINTAINED, erasure.ERASED,
             "consent.granted", "consent.withdrawn", "purge"]
    missing = [k for k in kinds if f"`{k}`" not in DOC]
    assert not missing, f"docs/rights.md does not mention the record kinds {missing}"


def test_every_command_and_option_is_documented() -> None:
    group = typer.main.get_group(cli_app())
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None) or {"": command}
        for sub, leaf in subcommands.items():
            line = f"trustledger {name}{' ' + sub if sub else ''}"
            assert line in DOC, f"docs/rights.md does not show `{line}`"
            for param in leaf.params:
                for option in param.opts:
                    if option.startswith("--") and option not in ("--database-url", "--help"):
                        assert option in DOC, f"docs/rights.md does not mention {line} {option}"


def test_the_report_fields_are_described() -> None:
    for field in ("to_json", "to_dict", "policy hash", "ledger position"):
        assert field in DOC
    assert report_module.MAX_POINTS == 120 and "120 points" in DOC
    assert f"{dispute.SLA.days} days" in DOC
    assert f"{dispute.SLA_WITH_NEW_INFORMATION.days} days" in DOC
