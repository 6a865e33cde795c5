"""Command-line commands for principals: ``trustledger principal add|list|revoke``.

``add`` prints the new API key once; only its SHA-256 hash is stored. Every
change is also recorded in the ledger (without the key).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from trustledger.options import (
    DatabaseOption,
    JsonFlag,
    id_column,
    print_json,
    table,
    text_column,
)
from trustledger.principals.ledger import ServiceLedger
from trustledger.principals.store import Role, add_principal, list_principals, revoke_principal
from trustledger.rights.access import ISSUED, REVOKED, key_logged
from trustledger.rights.erasure import refuse_if_erased

principal_app = typer.Typer(
    name="principal",
    help="Issue, list and revoke API keys (principals) of the HTTP service.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
console = Console()

_OPERATOR = ("cli", "operator (command line)", "operator")
"""Who a command's key change is attributed to in the subject's access log (id, name, role)."""

@principal_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The principal's name: a source's name is the "
                                             "`source` of its events, a relying party's the "
                                             "`party` subjects consent to.")],
    role: Annotated[Role, typer.Option(help="What the principal is.")],
    accredit: Annotated[list[str] | None, typer.Option(
        "--accredit", help="An event type (source) or purpose (relying party) it is "
                           "accredited for; repeat for several.")] = None,
    domain: Annotated[list[str] | None, typer.Option(
        "--domain", help="A domain a source reports in (required for a source): it may "
                         "report only the accredited types the event-type register in force "
                         "puts in its domains; repeat for several.")] = None,
    subject: Annotated[str | None, typer.Option(
        help="The subject id a subject principal speaks for.")] = None,
    rate_limit: Annotated[float | None, typer.Option(
        help="Requests per second (default: the service's limit).")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Issue an API key for a new principal and print it (once: it is stored hashed)."""
    with ServiceLedger.open(database_url) as ledger:
        if role is Role.SUBJECT and subject is not None:
            refuse_if_erased(ledger, subject, "no key: give the person a new id")
        issued = add_principal(ledger, name, role, accreditations=tuple(accredit or ()),
                               domains=tuple(domain or ()), subject=subject, rate_limit=rate_limit,
                               audit=key_logged(*_OPERATOR, ISSUED), sole_subject_key=True)
    p = issued.principal
    typer.echo(f"added {p.role.value} {p.name!r} ({p.id})")
    typer.echo(f"API key (shown once, keep it safe): {issued.key}")


@principal_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include revoked principals.")] = False,
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """List principals (never their keys), with the full ids `principal revoke` takes."""
    with ServiceLedger.open(database_url) as ledger:
        found = list_principals(ledger, include_revoked=all_)
    if json_out:
        print_json([{"id": p.id, "name": p.name, "role": p.role.value,
                     "accreditations": list(p.accreditations), "domains": list(p.domains),
                     "subject": p.subject,
                     "rate_limit": p.rate_limit, "created_at": p.created_at,
                     "revoked_at": p.revoked_at} for p in found])
        return
    grid = table(title=f"{len(found)} principal(s)")
    # The id is never cut: `principal revoke` takes it whole. Other cells fold.
    id_column(grid, "id", [p.id for p in found])
    for column in ("name", "role", "accredited for", "domains", "subject"):
        text_column(grid, column)
    grid.add_column("created", no_wrap=True)
    if all_:
        grid.add_column("revoked", no_wrap=True)
    for p in found:
        grid.add_row(p.id, p.name, p.role.value, ", ".join(p.accreditations) or "—",
                     ", ".join(p.domains) or "—", p.subject or "—", p.created_at.date().isoformat(),
                     *([p.revoked_at.date().isoformat() if p.revoked_at else "—"] if all_
                       else []))
    Console().print(grid)  # made now: as wide as the terminal is now


@principal_app.command("revoke")
def revoke(
    principal_id: Annotated[str, typer.Argument(help="The principal's id (pr_...).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a principal's API key at once (a running service refuses it from its next request)."""
    with ServiceLedger.open(database_url) as ledger:
        p = revoke_principal(ledger, principal_id, audit=key_logged(*_OPERATOR, REVOKED))
    assert p.revoked_at is not None
    typer.echo(f"revoked {p.role.value} {p.name!r} ({p.id}) at {p.revoked_at.isoformat()}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.add_typer(principal_app)
