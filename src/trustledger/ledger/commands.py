"""Command-line commands of the ledger area.

``init``, ``ingest``, ``import``, ``export``, ``verify``, ``checkpoint`` and ``stats``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from trustledger import config
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger.chain import iso
from trustledger.ledger.columnar import EventRules
from trustledger.ledger.ingest import BATCH, FORMATS, file_rows, ingest_file
from trustledger.ledger.store import Ledger
from trustledger.options import JsonFlag, print_json, table, text_column

if TYPE_CHECKING:
    from trustledger.principals import ServiceLedger

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", metavar="URL",
        help="SQLAlchemy URL of the ledger (default: $TRUSTLEDGER_DATABASE_URL, "
        "else SQLite in $TRUSTLEDGER_DATA or ./data).",
        show_default=False,
    ),
]

_out = Console(soft_wrap=True)
_err = Console(stderr=True)


@contextmanager
def _bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields a callback taking the number of rows done."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_err, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int) -> None:
            bar.update(task, completed=done)

        yield advance


def init(database_url: DatabaseUrl = None) -> None:
    """Create the ledger (or bring its schema up to date) and show where it is."""
    with Ledger.open(database_url) as ledger:
        seq, hash_ = ledger.head()
        _out.print(f"ledger ready: {ledger.url}")
        _out.print(f"head: seq={seq} hash={hash_}")


def ingest(
    file: Annotated[Path, typer.Argument(help="Events as CSV, JSON Lines or Parquet.")],
    rejects: Annotated[
        Path | None,
        typer.Option(help="Write bad rows here (JSON Lines) and append the rest; without "
                          "it, one bad row means nothing is appended."),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help=f"One of {', '.join(FORMATS)} (default: by the file's suffix)."
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Rows checked and inserted at a time (the "
                     "memory an ingest holds is a few batches)."),
    ] = BATCH,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show a progress bar on stderr "
                     "(default: when stderr is a terminal; never with --json).",
                     show_default=False),
    ] = None,
    json_out: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Append the events of a file as one atomic batch; bad rows are named by line.

    Columns: source, source_event_id, subject, type, occurred_at (ISO 8601 with a UTC
    offset), optional attributes (a JSON object) and supersedes; docs/ingest.md has the
    formats. Each row gets the checks of the HTTP batch endpoint, with the same messages:
    once a policy is published, its event types, attribute schemas and bounds; once
    an event-type register is in force (or source principals are registered), each
    row's source must be a source principal accredited for the row's type.
    """
    from trustledger.principals import ServiceLedger  # the principals: only when ingesting

    shown = not json_out and (progress if progress is not None else _err.is_terminal)
    with ServiceLedger.open(database_url) as ledger, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=_err, transient=_err.is_terminal, disable=not shown,
    ) as bar:
        task = bar.add_task(f"ingesting {file.name}", total=file_rows(file, format))
        report = ingest_file(
            ledger, file, rejects=rejects, format=format, batch_size=batch_size,
            rules=_rules(ledger), progress=lambda done: bar.update(task, completed=done),
        )
    if json_out:
        print_json({"file": str(file), "rows": report.rows, "appended": report.appended,
                    "existing": report.existing, "rejected": report.rejected,
                    "rejects": None if rejects is None else str(rejects),
                    "head_seq": report.head_seq, "head_hash": report.head_hash})
        return
    _out.print(
        f"{report.rows:,} rows read: {report.appended:,} appended, "
        f"{report.existing:,} already in the ledger, {report.rejected:,} rejected"
        + (f" (written to {rejects})" if rejects is not None else "")
    )
    _out.print(f"head: seq={report.head_seq} hash={report.head_hash}")


def _rules(ledger: ServiceLedger) -> EventRules:
    """What the HTTP API checks of a source's events, for a file of many sources' events.

    The policy in force (none before one is published: only the ledger's own rules
    apply then) and, per registered source principal, the event types it may report:
    its accreditations whose domain in the event-type register in force is one of its
    domains (:func:`trustledger.registry.source_types`). Checked once per file, before
    a row is read.

    Once a register is in force the ledger's events are typed and scored, so every row
    must come from a source accredited for its type: a ledger with a register and no
    active source principal is refused outright (:class:`InputError` on ``source``,
    nothing appended), and one with source principals but no register needs one. Only
    a ledger with neither (a plain store: a first bulk load, a restore) takes any source.
    """
    from trustledger.principals import Role, list_principals
    from trustledger.registry import NoRegisterError, register_in_force, source_types
    from trustledger.scoring import policy_in_force  # the policy stack, only when ingesting

    now = ledger.now()
    try:
        policy = policy_in_force(ledger, now).compile()
    except NotFoundError:
        policy = None
    sources = [p for p in list_principals(ledger) if p.role is Role.SOURCE]
    try:
        register = register_in_force(ledger)
    except NoRegisterError:
        if sources:
            raise  # accreditations name the register's types and domains
        return EventRules(policy=policy, sources=None, recorded_at=now)
    if not sources:
        raise InputError(
            f"source: the event-type register {register.name} ({register.hash[:19]}…) is in "
            "force in this ledger, so every event must come from a source accredited for "
            "its type, and no source principal is registered (or every one is revoked); "
            "register each source of the file with `trustledger principal add NAME --role "
            "source --accredit TYPE --domain DOMAIN`, then ingest again; nothing was appended")
    return EventRules(policy=policy, sources=source_types(register, sources), recorded_at=now)


def import_(
    file: Annotated[Path, typer.Argument(help="An export (.parquet or .jsonl).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Restore an export into an empty ledger: same entries, same head hash."""
    with Ledger.open(database_url) as ledger, _bar("importing") as progress:
        report = ledger.import_(file, progress=progress)
    _out.print(f"imported {report.entries:,} entries; head hash {report.head_hash}")


def export(
    file: Annotated[Path, typer.Argument(help="Where to write: .parquet or .jsonl.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write every entry, exactly as stored, to a Parquet or JSON Lines file."""
    with Ledger.open(database_url) as ledger:
        seq, _ = ledger.head()
        with _bar("exporting", total=seq) as progress:
            count = ledger.export(file, progress=progress)
    _out.print(f"exported {count:,} entries to {file}")


def verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="A kept checkpoint (from `trustledger checkpoint`): "
                     "its entry must still have its hash, so a truncated or rewritten chain "
                     "fails. Repeatable; needs --public-key.", show_default=False),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="The trusted public key (PEM) the checkpoints "
                     "must be signed with.", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Walk the hash chain; name the first entry changed, removed or reordered.

    With --checkpoint, also check that the chain still extends each kept checkpoint.
    """
    kept = []
    if checkpoint:
        from trustledger.ledger.checkpoint import PublicKey, read_checkpoint

        if public_key is None:
            raise InputError("--checkpoint needs --public-key: the key the checkpoints "
                             "must be signed with")
        trusted = PublicKey.load(public_key)
        # Every file is read and its signature checked before the ledger is opened.
        kept = [(str(path), read_checkpoint(path, trusted)) for path in checkpoint]
    with Ledger.open(database_url) as ledger:
        seq, _ = ledger.head()
        with _bar("verifying", total=seq) as progress:
            if kept:
                from trustledger.ledger.checkpoint import verify_with_checkpoints

                report = verify_with_checkpoints(ledger, kept, progress)
            else:
                report = ledger.verify(progress=progress)
    _out.print(f"ok: {report.entries:,} entries verified; head hash {report.head_hash}")
    for name, held in kept:
        _out.print(f"ok: checkpoint {name}: entry seq={held.seq} still has hash {held.hash} "
                   f"(signed {iso(held.time)})")


def checkpoint(
    file: Annotated[Path, typer.Argument(help="Where to write the checkpoint (a new file).")],
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The Ed25519 signing key (PEM), created with mode 0600 if "
                     "missing (default: $TRUSTLEDGER_CHECKPOINT_KEY, else checkpoint.key in "
                     "the data folder).", show_default=False),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Also write the public key (PEM) here, for "
                     "auditors.", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Verify the chain and write a signed checkpoint of its head, for auditors to keep.

    A later `verify --checkpoint FILE` fails if the chain was truncated below, or
    rewritten at or before, the checkpointed entry.
    """
    from trustledger.ledger.checkpoint import SigningKey, checkpoint_head, write_checkpoint

    if file.exists():
        raise InputError(f"checkpoint {file}: already exists; checkpoints are kept, never "
                         "replaced")
    if not file.parent.is_dir():
        raise InputError(f"checkpoint {file}: folder {file.parent} does not exist")
    key_path = key or config.checkpoint_key()
    # An existing key is checked before the walk; a missing one is made only after it.
    signer = SigningKey.load(key_path) if key_path.exists() else key_path
    with Ledger.open(database_url) as ledger:
        seq, _ = ledger.head()
        with _bar("verifying", total=seq) as progress:
            made = checkpoint_head(ledger, signer, datetime.now(UTC), progress)
    if public_key is not None:
        SigningKey.load(key_path).public_key.write(public_key)
    write_checkpoint(file, made)
    _out.print(f"checkpoint {file}: entry seq={made.seq} hash {made.hash}, signed by key "
               f"{made.key_id} ({key_path})")
    if public_key is not None:
        _out.print(f"public key: {public_key}")


def stats(json_out: JsonFlag = False, database_url: DatabaseUrl = None) -> None:
    """Show aggregate figures about the ledger (never a list of subjects)."""
    with Ledger.open(database_url) as ledger:
        figures = ledger.stats()
        url = ledger.url
    if json_out:
        print_json({"ledger": url, **figures})
        return
    grid = table(title=f"ledger {url}", show_header=False)
    text_column(grid, "figure")
    grid.add_column("value", justify="right", overflow="fold")
    for name in ("entries", "events", "purged", "subjects", "sources"):
        grid.add_row(name, f"{figures[name]:,}")
    for kind, count in figures["kinds"].items():
        grid.add_row(f"entries of kind {kind}", f"{count:,}")
    for name in ("first_recorded_at", "last_recorded_at"):
        moment = figures[name]
        grid.add_row(name.replace("_", " "), "-" if moment is None else moment.isoformat())
    out = Console(soft_wrap=True)  # made now: as wide as the terminal is now
    out.print(grid)
    out.print(f"head: seq={figures['head_seq']} hash={figures['head_hash']}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command()(init)
    app.command()(ingest)
    app.command("import")(import_)
    app.command()(export)
    app.command()(verify)
    app.command()(checkpoint)
    app.command()(stats)
