"""The ``trustledger`` command line (Typer, Rich output).

Each area registers its own commands: the ledger (``init``, ``ingest``,
``import``, ``export``, ``verify``, ``stats``), the policy language
(``policy check|schema|publish``) and scoring (``score``, ``explain``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from trustledger.errors import TrustLedgerError

app = typer.Typer(
    name="trustledger",
    help="Trust scores with reasons, consent and contestability built in.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def main() -> None:
    """Run the CLI, turning trustledger errors into a clear message and exit code 2."""
    try:
        app()
    except TrustLedgerError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise SystemExit(2) from exc


@app.callback()
def _root() -> None:
    """Trust scores with reasons, consent and contestability built in."""


@app.command()
def synth(
    output: Annotated[Path, typer.Argument(help="Parquet file to write.")],
    subjects: Annotated[int, typer.Option(help="Number of subjects.")] = 10_000,
    events: Annotated[int, typer.Option(help="Number of events.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 0,
) -> None:
    """Write a deterministic synthetic population's events to a Parquet file."""
    from trustledger.synth import Population, write_parquet

    with console.status(f"generating {events:,} events for {subjects:,} subjects"):
        rows = write_parquet(Population(subjects=subjects, events=events, seed=seed), output)
    console.print(f"wrote {rows:,} events to {output}")


def _register_areas() -> None:
    # Imported here so each area owns its commands in its own module.
    from trustledger.ledger import commands as ledger_commands
    from trustledger.policy import commands as policy_commands

    ledger_commands.register(app)
    policy_commands.register(app)


_register_areas()
