"""Documentation is checked by tests, so it cannot drift from the code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli_reference(out: Path) -> str:
    """The CLI reference exactly as `make docs` writes it."""
    typer_bin = Path(sys.executable).parent / "typer"
    subprocess.run(
        [str(typer_bin), "trustledger.cli", "utils", "docs", "--name", "trustledger",
         "--output", str(out)],
        check=True, capture_output=True, text=True,
    )
    return out.read_text()


def test_cli_reference_is_current(tmp_path: Path) -> None:
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == cli_reference(tmp_path / "cli.md"), "docs/cli.md is stale: run `make docs`"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first = readme.index("make run")
    assert first < readme.index("make test") < first + 400
