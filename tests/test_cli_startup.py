"""The command line starts light: the import graph is guarded, not timed.

``trustledger --help`` and ``import trustledger.cli`` load no area, and ``import
trustledger.ledger`` loads no part of the policy stack (the ledger takes ``Event``
from :mod:`trustledger.events`). Opening a ledger whose schema is current loads no
Alembic, a policy loads no CEL command line (prompt_toolkit) and a DuckDB job loads one
of Ibis's SQL compilers, not all of them. Each test runs a fresh interpreter with
``-X importtime`` and reads the modules it imported; figures live in bench/, never here.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from trustledger.cli import AREAS, SUMMARIES, LazyGroup, app, summary
from trustledger.ledger import Ledger
from trustledger.ledger.database import schema_head

ROOT = Path(__file__).resolve().parent.parent

POLICY_STACK = ("cel", "celpy", "trustledger.cel_runtime", "trustledger.policy",
                "trustledger.engine", "trustledger.scoring",
                "pandas", "sklearn", "optbinning", "pyspark", "ibis", "duckdb")
"""Packages the ledger must not load: the policy language, the engine and the analytics."""
HEAVY = (*POLICY_STACK, "trustledger.ledger", "trustledger.rights", "trustledger.api",
         "sqlalchemy", "alembic", "pydantic", "numpy", "pyarrow", "fastapi", "uvicorn")
"""What ``trustledger --help`` must not load: no area, no database, no web stack."""


def _run(code: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    names = {m.group(1) for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", done.stderr,
                                             re.MULTILINE)}
    assert names, done.stderr[-2000:]
    return names, done


@functools.cache
def _at_start() -> frozenset[str]:
    """What an empty interpreter imports here (with ``--system-clock``, the clock shift's
    ``sitecustomize`` brings time-machine and part of pytest, pygments included)."""
    return frozenset(_run("pass")[0])


def imported(code: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules a fresh interpreter imports running ``code`` (from ``-X importtime``),
    beyond those an empty interpreter imports in the same environment."""
    names, done = _run(code)
    return names - _at_start(), done


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


def test_the_schema_head_read_from_the_migrations_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location",
                           str(ROOT / "src" / "trustledger" / "ledger" / "migrations"))
    assert schema_head() == ScriptDirectory.from_config(config).get_current_head()


def test_opening_a_current_ledger_loads_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    code = f"from trustledger.ledger import Ledger\nLedger.open({url!r}).close()"
    names, done = imported(code)  # a new database: migrated by Alembic
    assert done.returncode == 0, done.stderr[-2000:]
    assert "alembic" in names
    names, done = imported(code)  # now current: its version is read, nothing migrated
    assert done.returncode == 0, done.stderr[-2000:]
    assert loaded(names, ("alembic",)) == []
    with Ledger.open(url) as ledger:
        assert ledger.verify().entries == 0


def test_a_policy_loads_without_the_cel_command_line() -> None:
    code = ("from trustledger.policy import load_policy\n"
            "policy = load_policy('policies/sesame.yaml')\n"
            "import sys\nassert 'cel.cel' in sys.modules and 'cel.cli' not in sys.modules")
    names, done = imported(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trustledger.cel_runtime" in names
    assert loaded(names, ("cel.cli", "prompt_toolkit", "pygments")) == []


def test_cel_imported_afterwards_is_the_same_runtime() -> None:
    code = ("from trustledger.cel_runtime import cel as runtime\nimport cel\n"
            "assert cel.compile is runtime.compile\n"
            "assert cel.compile('a + 1').execute({'a': 1}) == 2")
    _, done = imported(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_duckdb_job_loads_the_duckdb_compiler_only() -> None:
    # importlib.import_module does not show in -X importtime: the child checks sys.modules.
    code = ("import sys\nfrom trustledger.batch import duckdb_backend\n"
            "con = duckdb_backend()\n"
            "assert con.sql('SELECT 41 + 1 AS x').to_pyarrow().column('x')[0].as_py() == 42\n"
            "found = [m for m in sys.modules if m.startswith(('ibis.backends.sql.compilers.', "
            "'sqlglot.dialects.'))]\n"
            "assert 'ibis.backends.sql.compilers.duckdb' in found, found\n"
            "assert not [m for m in found if m.endswith(('.trino', '.athena', '.bigquery', "
            "'.snowflake'))], found")
    _, done = imported(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_sql_compiler_name_still_resolves_on_demand() -> None:
    # A submodule by attribute, a class by name (which runs the package's own __init__),
    # and an unknown name failing as it would have.
    code = ("from trustledger.batch.sources import compilers_on_demand\n"
            "compilers_on_demand()\n"
            "import ibis.backends.sql.compilers as sc\n"
            "assert sc.duckdb.DuckDBCompiler.__name__ == 'DuckDBCompiler'\n"
            "assert sc.PostgresCompiler.__module__.endswith('.postgres')\n"
            "from ibis.backends.sql.compilers import SQLiteCompiler, TrinoCompiler\n"
            "try:\n    sc.NoSuchCompiler\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('an unknown name resolved')")
    _, done = imported(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_rescore_process_never_imports_pandas(tmp_path: Path) -> None:
    from trustledger.synth import Population, write_parquet

    events = tmp_path / "events.parquet"
    write_parquet(Population(subjects=30, events=400, seed=3), events)
    out = tmp_path / "scores.csv"
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('pandas', 'pandas' in sys.modules, file=sys.stderr))\n"
            "sys.argv = ['trustledger', 'rescore', sys.argv[1], '--policy', "
            "'policies/sesame.yaml', '--at', '2026-11-01', '--consent-all', '--output', "
            "sys.argv[2], '--json']\nfrom trustledger.cli import main\nmain()")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(events),
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set(re.findall(r"^import time:.*\|\s*(\S+)\s*$", done.stderr, re.MULTILINE))
    assert "pyarrow" in names and "duckdb" in names
    assert done.stderr.rstrip().endswith("pandas False")  # pyarrow's look for it refused
    assert [n for n in loaded(names, ("pandas",)) if n != "pandas"] == []
    subjects = json.loads(done.stdout)["subjects"]
    assert 0 < subjects <= 30
    assert len(out.read_text().splitlines()) == subjects + 1  # a header and every subject


def test_pyarrow_still_converts_pandas_after_a_job_spared_its_import() -> None:
    code = ("import sys\nfrom trustledger.batch.commands import arrow_without_pandas\n"
            "arrow_without_pandas()\nimport pyarrow as pa\n"
            "assert pa.table({'a': [1, None]}).column('a').null_count == 1\n"
            "assert 'pandas' not in sys.modules\n"
            "import numpy as np\nimport pandas as pd\n"
            "frame = pd.DataFrame({'a': [1.0, np.nan]})\n"
            "assert pa.Table.from_pandas(frame).column('a').null_count == 1\n"
            "assert pa.array(frame['a']).null_count == 1  # a pandas object, recognised\n"
            "assert pa.table({'a': [2]}).to_pandas()['a'].tolist() == [2]")
    _, done = imported(code)
    assert done.returncode == 0, done.stderr[-2000:]
