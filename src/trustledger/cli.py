"""The ``trustledger`` command line (Typer, Rich output).

Each area registers its own commands: the ledger (``init``, ``ingest``,
``import``, ``export``, ``verify``, ``stats``), the policy language
(``policy check|schema|publish``) and scoring (``score``, ``explain``).
"""

from __future__ import annotations

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


def _register_areas() -> None:
    # Imported here so each area owns its commands in its own module.
    from trustledger.ledger import commands as ledger_commands
    from trustledger.policy import commands as policy_commands

    ledger_commands.register(app)
    policy_commands.register(app)


_register_areas()
