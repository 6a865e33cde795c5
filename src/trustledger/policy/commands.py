"""Command-line commands of the policy area: ``trustledger policy check|schema|publish``.

``check`` loads a policy exactly as the engine does (validation, compilation and
the safeguards linter, which has no switch) and prints its name and hash; any
problem ends the command with exit code 2 and one line per problem
(``file:line:column: key.path: [rule] message``). ``publish`` does the same
checks and then records the version in the ledger; a refused policy records nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from trustledger.errors import LintError, PolicyError
from trustledger.policy.compiled import CompiledPolicy, load_policy
from trustledger.policy.models import json_schema

policy_app = typer.Typer(
    name="policy",
    help="Check, publish and describe policy documents.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@policy_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The policy YAML file to check.")],
) -> None:
    """Validate, compile and lint a policy; print its name, hash and contents."""
    policy = _load_or_exit(file)
    model = policy.model
    lines = [
        f"ok: {file}",
        f"  policy          {policy.name} ({model.title})",
        f"  hash            {policy.hash}",
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
    """Check a policy and record the version in the ledger (refused if the linter fails)."""
    from trustledger.ledger import Ledger
    from trustledger.scoring import publish_policy

    _load_or_exit(file)
    with Ledger.open(database_url) as ledger:
        published = publish_policy(ledger, file)
    typer.echo(f"published {published.name} {published.hash} effective from "
               f"{published.effective_from.isoformat()} (ledger seq {published.seq})")


def _load_or_exit(file: Path) -> CompiledPolicy:
    try:
        return load_policy(file)
    except PolicyError as exc:
        # One plain line per problem: "[rule]" must not be read as console markup.
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        kind = "safeguard" if isinstance(exc, LintError) else "policy"
        typer.echo(f"{file}: refused, {len(exc.problems)} {kind} problem(s)", err=True)
        raise typer.Exit(2) from exc


@policy_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of policy documents (for editors and validation)."""
    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.add_typer(policy_app)
