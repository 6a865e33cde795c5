"""The command line starts light: the import graph is guarded, not timed.

``trustledger --help`` and ``import trustledger.cli`` load no area, and ``import
trustledger.ledger`` loads no part of the policy stack (the ledger takes ``Event``
from :mod:`trustledger.events`). Each test runs a fresh interpreter with
``-X importtime`` and reads the modules it imported; figures live in bench/, never here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from trustledger.cli import AREAS, SUMMARIES, LazyGroup, app, summary

ROOT = Path(__file__).resolve().parent.parent

POLICY_STACK = ("cel", "celpy", "trustledger.policy", "trustledger.engine", "trustledger.scoring",
                "pandas", "sklearn", "optbinning", "pyspark", "ibis", "duckdb")
"""Packages the ledger must not load: the policy language, the engine and the analytics."""
HEAVY = (*POLICY_STACK, "trustledger.ledger", "trustledger.rights", "trustledger.api",
         "sqlalchemy", "alembic", "pydantic", "numpy", "pyarrow", "fastapi", "uvicorn")
"""What ``trustledger --help`` must not load: no area, no database, no web stack."""


def imported(code: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules a fresh interpreter imports running ``code`` (from ``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    names = {m.group(1) for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", done.stderr,
                                             re.MULTILINE)}
    assert names, done.stderr[-2000:]
    return names, done


def loaded(names: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules of ``names`` that are, or are inside, one of ``packages``."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_the_import_guard_sees_what_it_guards() -> None:
    # The guard itself must be able to fail: the engine does load the policy stack.
    names, _ = imported("import trustledger.engine")
    assert loaded(names, ("cel", "trustledger.policy"))


def test_importing_the_ledger_loads_no_policy_stack() -> None:
    names, done = imported("import trustledger.ledger")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trustledger.events" in names
    assert loaded(names, POLICY_STACK) == []


def test_importing_the_cli_loads_no_area() -> None:
    names, done = imported("import trustledger.cli")
    assert done.returncode == 0, done.stderr[-2000:]
    assert loaded(names, HEAVY) == []


def test_help_lists_every_command_without_importing_any_area() -> None:
    code = ("import sys; sys.argv = ['trustledger', '--help']\n"
            "from trustledger.cli import main\nmain()")
    names, done = imported(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert loaded(names, HEAVY) == []
    listed = re.findall(r"^  (\S+)\s", done.stdout.split("Commands:")[1], re.MULTILINE)
    assert listed == ["synth", "score", "explain", "demo", *AREAS]


@pytest.mark.parametrize("name", list(AREAS))
def test_each_area_command_is_registered_with_the_summary_help_shows(name: str) -> None:
    group = get_command(app)
    assert isinstance(group, LazyGroup)
    with CliRunner().isolation():
        command = group.get_command(group.make_context("trustledger", ["--help"],
                                                       resilient_parsing=True), name)
    assert command is not None, f"{AREAS[name]} does not register {name!r}"
    assert SUMMARIES[name] == summary(command.help), (
        f"SUMMARIES[{name!r}] in cli.py differs from the command's own help")


def test_every_command_runs_its_help() -> None:
    runner = CliRunner()
    for name in ["synth", "score", "explain", "demo", *AREAS]:
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (name, result.output)
        assert "<bool>" not in result.output
        assert max(len(line) for line in result.output.splitlines()) <= 80, name


def test_the_cli_reference_has_whole_summaries_and_readable_metavars() -> None:
    reference = (ROOT / "docs" / "cli.md").read_text()
    assert "&#" not in reference  # no HTML entities (`'` was `&#x27;`)
    assert "<bool>" not in reference
    summaries = re.findall(r"^\* `[a-z-]+`: (.*)$", reference, re.MULTILINE)
    assert len(summaries) > len(AREAS)
    assert [s for s in summaries if s.endswith("...")] == []
    assert re.findall(r"^\* `--[^`]*<[^`]*>`", reference, re.MULTILINE) == []
