"""The ``trustledger policy`` commands: check, check-register, schema and publish.

``check`` loads a policy exactly as the engine does (validation, compilation against
its event-type register and the safeguards linter, which has no switch) and prints its
name and hash; any problem ends the command with exit code 2 and one line per problem
(``file:line:column: key.path: [rule] message``). ``check-register`` does the same for a
register. ``publish`` checks the policy against the register in force in the ledger and
records the version; a refused policy records nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from trustledger.errors import LintError, PolicyError
from trustledger.policy.compiled import CompiledPolicy, load_policy
from trustledger.policy.models import json_schema
from trustledger.policy.register import Register, load_register, register_json_schema

policy_app = typer.Typer(
    name="policy",
    help="Check, publish and describe policy documents.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


RegisterOption = Annotated[Path | None, typer.Option(
    "--register", metavar="FILE",
    help="The event-type register the policy refers to (default: register.yaml next to the "
         "policy, or in the nearest folder above it).")]


@policy_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The policy YAML file to check.")],
    register: RegisterOption = None,
) -> None:
    """Validate, compile and lint a policy against its register; print its name, hash, contents."""
    policy = _load_or_exit(file, register)
    model = policy.model
    lines = [
        f"ok: {file}",
        f"  policy          {policy.name} ({model.title})",
        f"  hash            {policy.hash}",
        f"  register        {policy.register_hash}",
        f"  effective_from  {policy.effective_from.isoformat()}",
    ]
    for section in ("event_types", "metrics", "scorecards", "measures"):
        names = list(getattr(model, section))
        lines.append(f"  {section:<15} {len(names)}: {', '.join(names)}")
    typer.echo("\n".join(lines))


@policy_app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(help="The policy YAML file to publish.")],
    database_url: Annotated[
        str | None, typer.Option("--database-url", metavar="URL", help="Ledger database URL.")
    ] = None,
) -> None:
    """Check a policy against the ledger's register in force and record the version.

    Refused, nothing recorded, if the policy does not compile against the register in
    force or the linter fails.
    """
    from trustledger.ledger import Ledger
    from trustledger.scoring import publish_policy

    with Ledger.open(database_url) as ledger:
        try:
            published = publish_policy(ledger, file)
        except PolicyError as exc:
            _refused(file, exc, "policy")
    typer.echo(f"published {published.name} {published.hash} effective from "
               f"{published.effective_from.isoformat()} (ledger seq {published.seq})")


@policy_app.command("check-register")
def check_register(
    file: Annotated[Path, typer.Argument(help="The event-type register YAML file to check.")],
) -> None:
    """Validate and lint an event-type register; print its name, hash and event types."""
    register = _register_or_exit(file)
    names = list(register.event_types)
    typer.echo("\n".join([
        f"ok: {file}",
        f"  register        {register.name} ({register.document.title})",
        f"  hash            {register.hash}",
        f"  event_types     {len(names)}: {', '.join(names)}",
    ]))


def _load_or_exit(file: Path, register: Path | None = None) -> CompiledPolicy:
    declared: Register | None = _register_or_exit(register) if register is not None else None
    try:
        return load_policy(file, register=declared)
    except PolicyError as exc:
        _refused(file, exc, "policy")


def _register_or_exit(file: Path) -> Register:
    try:
        return load_register(file)
    except PolicyError as exc:
        _refused(file, exc, "register")


def _refused(file: Path, exc: PolicyError, document: str) -> NoReturn:
    # One plain line per problem: "[rule]" must not be read as console markup.
    for problem in exc.problems:
        typer.echo(f"error: {problem}", err=True)
    kind = "safeguard" if isinstance(exc, LintError) else document
    typer.echo(f"{file}: refused, {len(exc.problems)} {kind} problem(s)", err=True)
    raise typer.Exit(2) from exc


@policy_app.command("schema")
def schema(
    register: Annotated[bool, typer.Option(
        "--register", help="Print the schema of event-type register documents instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of policy documents (for editors and validation)."""
    document = register_json_schema() if register else json_schema()
    typer.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.add_typer(policy_app)
