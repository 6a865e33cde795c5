"""The ``trustledger`` command line (Typer; Rich output).

Each area owns its commands in its own module: the ledger (``init``, ``ingest``,
``import``, ``export``, ``verify``, ``checkpoint``, ``stats``), the policy language
(``policy check|schema|publish``), scoring (``score``, ``explain``), subject rights,
the HTTP service (``serve``) and its API keys (``principal add|list|revoke``), batch
rescoring, impact simulation, statistical models and cascades.

An area's module is imported only when one of its commands runs (or its help is
shown), so ``trustledger --help`` loads neither the policy stack nor the database:
:class:`LazyGroup` lists every command from :data:`AREAS` and their one-line summaries
from :data:`SUMMARIES` (``tests/test_cli_startup.py`` checks both against the
commands themselves and guards the import graph).
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer import _click as click  # Typer's own (vendored) Click: its commands' classes
from typer.core import TyperArgument, TyperGroup, TyperOption

from trustledger.errors import TrustLedgerError
from trustledger.options import (
    AtOption,
    AttributeOption,
    AttributesOption,
    DatabaseOption,
    JsonFlag,
    KnownAtOption,
    parse_attributes,
    parse_moment,
    print_json,
)

AREAS: dict[str, str] = {
    "init": "trustledger.ledger.commands",
    "ingest": "trustledger.ledger.commands",
    "import": "trustledger.ledger.commands",
    "export": "trustledger.ledger.commands",
    "verify": "trustledger.ledger.commands",
    "checkpoint": "trustledger.ledger.commands",
    "stats": "trustledger.ledger.commands",
    "report": "trustledger.rights.commands",
    "whatif": "trustledger.rights.commands",
    "maintain": "trustledger.rights.commands",
    "erase": "trustledger.rights.commands",
    "serve": "trustledger.api.serve",
    "rescore": "trustledger.batch.commands",
    "impact": "trustledger.impact.commands",
    "policy": "trustledger.policy.commands",
    "register": "trustledger.register_commands",
    "model": "trustledger.models.commands",
    "dispute": "trustledger.rights.commands",
    "review": "trustledger.rights.commands",
    "principal": "trustledger.principals.commands",
    "cascades": "trustledger.cascades.commands",
}
"""Each area command (or group) and the module whose ``register(app)`` adds it."""

SUMMARIES: dict[str, str] = {
    "init": "Create the ledger (or bring its schema up to date) and show where it is.",
    "ingest": "Append the events of a file as one atomic batch; bad rows are named by line.",
    "import": "Restore an export into an empty ledger: same entries, same head hash.",
    "export": "Write every entry, exactly as stored, to a Parquet or JSON Lines file.",
    "verify": "Walk the hash chain; name the first entry changed, removed or reordered.",
    "checkpoint": "Verify the chain and write a signed checkpoint of its head, for auditors "
                  "to keep.",
    "stats": "Show aggregate figures about the ledger (never a list of subjects).",
    "report": "Everything about a subject: events, contributions, scores over time, reasons, "
              "rights.",
    "whatif": "The score, tier and measures if events were removed or added, or at another "
              "date.",
    "maintain": "Purge the payloads of events past their type's retention; the chain still "
                "verifies.",
    "erase": "Erase a subject on a valid request: purge every payload about them; no more "
             "scores.",
    "serve": "Run the HTTP API (FastAPI on uvicorn); with --demo, set up the demo and print "
             "keys.",
    "rescore": "Re-evaluate every subject as one columnar job (DuckDB or Spark); show a "
               "sample, write all.",
    "impact": "Simulate a policy on a synthetic (or exported real) population and report its "
              "impact.",
    "policy": "Check, publish and describe policy documents.",
    "register": "The event-type register: propose a version, approve another operator's, show, "
                "list.",
    "model": "Statistical scorecards: train, inspect, verify, score.",
    "dispute": "Disputes: open, add information, answer, resolve, list.",
    "review": "Human review of adverse measures: request, resolve, list.",
    "principal": "Issue, list and revoke API keys (principals) of the HTTP service.",
    "cascades": "Deliver decision changes to subscribed relying parties (signed webhooks).",
}
"""The one-line summary ``trustledger --help`` shows for each area command, unimported."""


def summary(help_text: str | None) -> str:
    """A command's one-line summary: the first paragraph of its help, on one line."""
    return " ".join((help_text or "").strip().split("\n\n")[0].split())


_METAVARS = {"str": "TEXT", "path": "PATH", "file": "FILE", "int": "N", "float": "NUMBER"}


def metavar(param: click.Parameter, ctx: click.Context) -> str | None:
    """A readable metavar for a parameter that has none.

    An argument's is its name in capitals (``SUBJECT``); an option's comes from its type
    (``TEXT``, ``PATH``, ``N``, ``[duckdb|spark]``) where Typer would show ``<str>``,
    ``<list[int]>`` or ``<duckdb|spark>``. ``None`` for flags and for parameters given a
    metavar of their own.
    """
    if param.metavar is not None:
        return None
    if isinstance(param, TyperArgument) and param.name:
        return param.name.upper()
    if not isinstance(param, TyperOption) or param.is_flag:
        return None
    shown = param.display_type(ctx).strip("<>")
    if shown.startswith("list[") and shown.endswith("]"):
        shown = shown[5:-1]
    if "|" in shown:
        return f"[{shown}]"
    return _METAVARS.get(shown, shown.upper().replace(",", " "))


def _polish(command: click.Command) -> click.Command:
    # Click cuts a summary at 45 characters ("..."); the whole first paragraph reads better.
    if command.short_help is None:
        command.short_help = summary(command.help)
    ctx = click.Context(command)
    for param in command.params:
        shown = metavar(param, ctx)
        if shown is not None:
            param.metavar = shown
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _polish(sub)
    return command


@cache
def _area(module: str) -> TyperGroup:
    """The click commands one area module registers (imported once, on first use)."""
    area = typer.Typer(rich_markup_mode=None)
    import_module(module).register(area)
    group = typer.main.get_group(area)
    for command in group.commands.values():
        _polish(command)
    return group


class LazyGroup(TyperGroup):
    """The root group: area commands are imported when they run or their help is shown."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands defined here, then every area's, in :data:`AREAS` order."""
        return [*super().list_commands(ctx), *AREAS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command named ``cmd_name``, importing its area's module if needed."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return _polish(command)
        if cmd_name not in AREAS:
            return None
        return _area(AREAS[cmd_name]).commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with summaries, without importing any area."""
        rows = []
        for name in self.list_commands(ctx):
            if name in AREAS:
                rows.append((name, SUMMARIES[name]))
            else:
                command = super().get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, summary(command.help)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="trustledger",
    help="Trust scores with reasons, consent and contestability built in.",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain Click help: wraps to the terminal, shows metavars as given, no "<bool>"
    # for flags; and `make docs` writes the help text as it is (no HTML entities).
    rich_markup_mode=None,
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
    output: Annotated[Path, typer.Argument(help="Parquet file to write.", metavar="FILE")],
    subjects: Annotated[int, typer.Option(help="Number of subjects.", metavar="N")] = 10_000,
    events: Annotated[int, typer.Option(help="Number of events.", metavar="N")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.",
                                      metavar="N")] = 0,
    profile: Annotated[str, typer.Option(
        help="Event mix: sesame (policies/sesame.yaml) or wide (20 types, benchmarks).",
        metavar="NAME")] = "sesame",
) -> None:
    """Write a deterministic synthetic population's events to a Parquet file."""
    from trustledger.synth import Population, write_parquet

    population = Population(subjects=subjects, events=events, seed=seed, profile=profile)
    with console.status(f"generating {events:,} events for {subjects:,} subjects"):
        rows = write_parquet(population, output)
    console.print(f"wrote {rows:,} events to {output}")


@app.command()
def score(
    subject: Annotated[str, typer.Argument(help="The subject to score.", metavar="SUBJECT")],
    policy: Annotated[Path | None, typer.Option(
        help="Policy file to score with (default: the published version in force at --at).",
        metavar="FILE")] = None,
    attribute: AttributeOption = None,
    attributes: AttributesOption = None,
    at: AtOption = None,
    known_at: KnownAtOption = None,
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Score one subject from the ledger: score, tier, measures, reasons.

    The policy is the published version in force at --at, or --policy FILE.
    """
    _evaluate(subject, policy, attribute, attributes, at, known_at, database_url,
              json_out=json_out, detail=False)


@app.command()
def explain(
    subject: Annotated[str, typer.Argument(help="The subject to explain.", metavar="SUBJECT")],
    attribute: AttributeOption = None,
    attributes: AttributesOption = None,
    at: AtOption = None,
    known_at: KnownAtOption = None,
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Explain one subject's evaluation under the published policy in force, event by event."""
    _evaluate(subject, None, attribute, attributes, at, known_at, database_url,
              json_out=json_out, detail=True)


def _evaluate(subject: str, policy: Path | None, attribute: list[str] | None,
              attributes: Path | None, at: str | None, known_at: str | None,
              database_url: str | None, *, json_out: bool, detail: bool) -> None:
    from trustledger.ledger import Ledger
    from trustledger.policy import load_policy
    from trustledger.scoring import evaluate_subject, policy_in_force

    valid = parse_moment(at, "--at")
    known = parse_moment(known_at, "--known-at") if known_at else None
    compiled = load_policy(policy) if policy is not None else None
    with Ledger.open(database_url) as ledger:
        if compiled is None:
            compiled = policy_in_force(ledger, valid).compile()
        supplied = parse_attributes(compiled, attribute or [], attributes)
        result = evaluate_subject(ledger, subject, compiled, valid, known, attributes=supplied)
    if json_out:
        print_json(result)
        return
    from trustledger import render

    Console().print(render.evaluation(result, detail=detail))  # as wide as the terminal now


@app.command()
def demo(
    policy: Annotated[Path, typer.Option(help="Policy to publish and score with.")] = Path(
        "policies/sesame.yaml"),
    at: AtOption = None,
    database_url: DatabaseOption = None,
    distribution: Annotated[bool, typer.Option(
        "--distribution", help="Instead: print the tiers and measures of the demo population "
        "under each shipped policy found next to --policy, rescored at --at (default: the "
        "population's end); aggregates only, cells under 10 suppressed; no ledger is used.")] =
        False,
    subjects: Annotated[int, typer.Option(
        help="With --distribution: subjects of each demo population.")] = 10_000,
) -> None:
    """Build the demo ledger on first run (synthetic population), verify it and score it."""
    if distribution:
        from trustledger.demo import print_distributions

        print_distributions(console, policy.parent, subjects,
                            parse_moment(at, "--at") if at else None)
        return
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
