"""The event-type register's commands: ``trustledger register propose|approve|show|list``.

Two operators change the register: one proposes a version (validated and linted like a
policy; nothing is recorded if it is refused), another approves it. ``--by`` names the
operator acting: an active operator principal of the ledger (``trustledger principal add
NAME --role operator``). Everything is recorded in the ledger
(:mod:`trustledger.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from trustledger.errors import InputError, NotFoundError
from trustledger.options import DatabaseOption, JsonFlag, id_column, print_json, table, text_column

register_app = typer.Typer(
    name="register",
    help="The event-type register: propose a version, approve another operator's, show, list.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ByOption = Annotated[str, typer.Option(
    "--by", metavar="OPERATOR", help="The operator acting: the name of an active operator "
                                     "principal of the ledger.")]


@register_app.command("propose")
def propose(
    file: Annotated[Path, typer.Argument(help="The register document (YAML).")],
    by: ByOption,
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Validate, lint and propose a register version; another operator must approve it."""
    from trustledger.principals import ServiceLedger
    from trustledger.registry import propose_register

    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(f"register file {file} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read register file {file}: {exc}") from exc
    with ServiceLedger.open(database_url) as ledger:
        before = ledger.position()
        proposal = propose_register(ledger, text, by, str(file))
    new = proposal.seq > before
    if json_out:
        print_json({"status": proposal.status, "new": new, "seq": proposal.seq,
                    "name": proposal.name, "hash": proposal.hash,
                    "proposed_by": proposal.proposed_by})
        return
    if new:
        typer.echo(f"proposed register {proposal.name} {proposal.hash} (seq {proposal.seq}) "
                   f"by {by!r}")
    else:
        typer.echo(f"register {proposal.name} {proposal.hash} already awaits approval "
                   f"(proposed by {proposal.proposed_by!r}, seq {proposal.seq}); nothing recorded")
    typer.echo(f"a second operator approves it: trustledger register approve {proposal.hash} "
               "--by OTHER")


@register_app.command("approve")
def approve(
    register_hash: Annotated[str, typer.Argument(
        metavar="HASH", help="The proposal's hash (sha256:..., as `register list` shows it).")],
    by: ByOption,
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Approve another operator's pending proposal: it is the register in force from now on."""
    from trustledger.principals import ServiceLedger
    from trustledger.registry import approve_register

    with ServiceLedger.open(database_url) as ledger:
        approved = approve_register(ledger, register_hash, by)
    if json_out:
        print_json({"status": approved.status, "seq": approved.seq, "name": approved.name,
                    "hash": approved.hash, "proposed_by": approved.proposed_by,
                    "approved_by": approved.approved_by, "approved_at": approved.approved_at})
        return
    typer.echo(f"approved register {approved.name} {approved.hash} (proposed by "
               f"{approved.proposed_by!r}, approved by {by!r}): in force now")


@register_app.command("show")
def show(
    register_hash: Annotated[str | None, typer.Argument(
        metavar="HASH", help="A recorded version's hash (default: the register in force).",
        show_default=False)] = None,
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Print a register version's YAML text as recorded (default: the register in force)."""
    from trustledger.ledger import Ledger
    from trustledger.registry import register_by_hash, register_in_force

    with Ledger.open(database_url) as ledger:
        found = (register_in_force(ledger) if register_hash is None
                 else register_by_hash(ledger, register_hash))
    if json_out:
        print_json({"name": found.name, "hash": found.hash, "source": found.source,
                    "event_types": {name: t.model_dump(mode="json", exclude_none=True)
                                    for name, t in found.event_types.items()}})
        return
    typer.echo(f"# register {found.name} {found.hash}")
    typer.echo(found.source.rstrip("\n"))


@register_app.command("list")
def list_(
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """List every proposed register version with its status, oldest first."""
    from trustledger.ledger import Ledger
    from trustledger.registry import registers

    with Ledger.open(database_url) as ledger:
        found = registers(ledger)
    if json_out:
        print_json([{"seq": p.seq, "name": p.name, "hash": p.hash, "status": p.status,
                     "proposed_by": p.proposed_by, "proposed_at": p.proposed_at,
                     "approved_by": p.approved_by, "approved_at": p.approved_at,
                     "superseded_by": p.superseded_by} for p in found])
        return
    grid = table(title=f"{len(found)} register proposal(s)")
    id_column(grid, "hash", [p.hash for p in found])
    for column in ("name", "status", "proposed by", "approved by"):
        text_column(grid, column)
    grid.add_column("proposed", no_wrap=True)
    for p in found:
        grid.add_row(p.hash, p.name, p.status.replace("_", " "), p.proposed_by,
                     p.approved_by or "—", p.proposed_at.date().isoformat())
    Console().print(grid)  # made now: as wide as the terminal is now


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.add_typer(register_app)
