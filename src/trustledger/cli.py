"""The ``trustledger`` command line (Typer, Rich output).

Each area registers its own commands: the ledger (``init``, ``ingest``,
``import``, ``export``, ``verify``, ``stats``), the policy language
(``policy check|schema|publish``), scoring (``score``, ``explain``), the HTTP
service (``serve``) and its API keys (``principal add|list|revoke``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from trustledger.errors import TrustLedgerError
from trustledger.options import AttributeOption, AttributesOption, parse_attributes, parse_moment

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
        # Messages carry "[rule]" names: escape them so Rich does not read them as markup.
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
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
    profile: Annotated[str, typer.Option(
        help="Event mix: sesame (policies/sesame.yaml) or wide (20 types, benchmarks).")] =
        "sesame",
) -> None:
    """Write a deterministic synthetic population's events to a Parquet file."""
    from trustledger.synth import Population, write_parquet

    population = Population(subjects=subjects, events=events, seed=seed, profile=profile)
    with console.status(f"generating {events:,} events for {subjects:,} subjects"):
        rows = write_parquet(population, output)
    console.print(f"wrote {rows:,} events to {output}")


DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Ledger database URL (default: $TRUSTLEDGER_DATABASE_URL "
                 "or SQLite in the data folder)."),
]
AtOption = Annotated[
    str | None, typer.Option("--at", help="Valid time, ISO 8601 (default: now, UTC).")
]
KnownAtOption = Annotated[
    str | None,
    typer.Option("--known-at", help="Only events recorded by then count (default: all)."),
]


@app.command()
def score(
    subject: Annotated[str, typer.Argument(help="The subject to score.")],
    policy: Annotated[Path, typer.Option(help="Policy file to score with.")],
    attribute: AttributeOption = None,
    attributes: AttributesOption = None,
    at: AtOption = None,
    known_at: KnownAtOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Score one subject from the ledger with a policy file: score, tier, measures, reasons."""
    from trustledger import render
    from trustledger.ledger import Ledger
    from trustledger.policy import load_policy
    from trustledger.scoring import evaluate_subject

    compiled = load_policy(policy)
    supplied = parse_attributes(compiled, attribute or [], attributes)
    valid = parse_moment(at, "--at")
    known = parse_moment(known_at, "--known-at") if known_at else None
    with Ledger.open(database_url) as ledger:
        result = evaluate_subject(ledger, subject, compiled, valid, known, attributes=supplied)
    console.print(render.evaluation(result))


@app.command()
def explain(
    subject: Annotated[str, typer.Argument(help="The subject to explain.")],
    attribute: AttributeOption = None,
    attributes: AttributesOption = None,
    at: AtOption = None,
    known_at: KnownAtOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Explain one subject's evaluation under the published policy in force, event by event."""
    from trustledger import render
    from trustledger.ledger import Ledger
    from trustledger.scoring import evaluate_subject, policy_in_force

    valid = parse_moment(at, "--at")
    known = parse_moment(known_at, "--known-at") if known_at else None
    with Ledger.open(database_url) as ledger:
        compiled = policy_in_force(ledger, valid).compile()
        supplied = parse_attributes(compiled, attribute or [], attributes)
        result = evaluate_subject(ledger, subject, compiled, valid, known, attributes=supplied)
    console.print(render.evaluation(result, detail=True))


@app.command()
def demo(
    policy: Annotated[Path, typer.Option(help="Policy to publish and score with.")] = Path(
        "policies/sesame.yaml"),
    at: AtOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Build the demo ledger on first run (synthetic population), verify it and score it."""
    from trustledger import render
    from trustledger.config import data_dir
    from trustledger.demo import run_demo
    from trustledger.ledger import Ledger

    valid = parse_moment(at, "--at") if at else None
    with Ledger.open(database_url) as ledger, console.status("demo") as status:
        report = run_demo(ledger, policy, data_dir(), valid,
                          status=lambda text: status.update(text))
        console.print(f"ledger {ledger.url}: {report.verified.entries:,} entries, chain verified, "
                      f"head {report.verified.head_hash[:16]}…")
    console.print(f"policy {report.policy.name} {report.policy.hash[:19]}… "
                  f"effective from {report.policy.effective_from.date()}")
    # One subject at a time, as that subject would see it: never a list of names with scores
    # (DESIGN.md safeguard 4).
    console.print(f"{len(report.evaluations)} demo subjects opted in and were scored; the first, "
                  "explained (`trustledger explain SUBJECT` for another):")
    console.print(render.evaluation(report.evaluations[0], detail=True))


def _register_areas() -> None:
    # Imported here so each area owns its commands in its own module.
    from trustledger.api import serve as serve_command
    from trustledger.batch import commands as batch_commands
    from trustledger.cascades import commands as cascades_commands
    from trustledger.impact import commands as impact_commands
    from trustledger.ledger import commands as ledger_commands
    from trustledger.models import commands as models_commands
    from trustledger.policy import commands as policy_commands
    from trustledger.principals import commands as principal_commands
    from trustledger.rights import commands as rights_commands

    ledger_commands.register(app)
    policy_commands.register(app)
    models_commands.register(app)
    rights_commands.register(app)
    serve_command.register(app)
    principal_commands.register(app)
    batch_commands.register(app)
    impact_commands.register(app)
    cascades_commands.register(app)


_register_areas()
