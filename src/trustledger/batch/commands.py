"""The ``trustledger rescore`` command: the whole population, as one job, with progress.

Events come from an events Parquet file (``trustledger synth`` writes one), a ledger
export (``trustledger export``: its events and opt-in consents) or, without a file, from
the ledger itself (its events and opt-in consents, written to a temporary Parquet file
first). The policy is a file, or the published version in force at ``--at``. The
result is a Parquet file with one row per subject (what the service stores); the
terminal (or ``--json``) shows only aggregates: each scorecard's tier distribution,
subjects and share per tier, cells under 10 subjects suppressed
(:func:`trustledger.aggregates.suppress`, safeguard 4).
"""

from __future__ import annotations

import enum
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trustledger.aggregates import SMALLEST_CELL, suppress
from trustledger.errors import InputError
from trustledger.options import (
    AtOption,
    DatabaseOption,
    JsonFlag,
    KnownAtOption,
    print_json,
    text_column,
)
from trustledger.options import table as terminal_table

if TYPE_CHECKING:
    import pyarrow as pa

    from trustledger.policy import CompiledPolicy


class Engine(enum.StrEnum):
    """Where the population job runs."""

    DUCKDB = "duckdb"
    SPARK = "spark"


def rescore(
    events: Annotated[Path | None, typer.Argument(
        help="Events Parquet file or ledger export (default: the ledger itself).")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Policy file (default: the published version in force at --at).")] = None,
    engine: Annotated[Engine, typer.Option(help="duckdb (embedded) or spark (local).")] =
        Engine.DUCKDB,
    at: AtOption = None,
    known_at: KnownAtOption = None,
    output: Annotated[Path, typer.Option(help="Parquet file of per-subject results.")] =
        Path("rescore.parquet"),
    consent_all: Annotated[bool, typer.Option(
        "--consent-all", help="Treat every subject as opted in (synthetic data only).")] =
        False,
    measures: Annotated[bool, typer.Option(help="Also decide measures.")] = True,
    memory_limit: Annotated[str, typer.Option(help="DuckDB memory limit (spills beyond).")] =
        "6GB",
    json_out: JsonFlag = False,
    database_url: DatabaseOption = None,
) -> None:
    """Re-evaluate every subject as one columnar job (DuckDB or Spark); write the results."""
    import pyarrow.parquet as pq

    from trustledger.batch.run import rescore as run
    from trustledger.options import parse_moment
    from trustledger.policy import load_policy

    # With --json, standard output carries the JSON alone; progress goes to standard error.
    console = Console(stderr=json_out)
    valid = parse_moment(at, "--at")
    known = parse_moment(known_at, "--known-at") if known_at else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, _progress(console) as bar:
        task = bar.add_task("preparing", total=None)
        consents: dict[str, frozenset[str]] | None = None
        if events is None:
            events, compiled, consents = _from_ledger(database_url, policy, valid, known,
                                                      Path(scratch), bar, task)
        else:
            from trustledger.batch.sources import export_consents, is_export

            if policy is None:
                raise InputError("--policy: give a policy file with an events file")
            compiled = load_policy(policy)
            if is_export(events) and not consent_all:
                consents = export_consents(events, known or valid, compiled.scorecards)
        backend, session = _backend(engine, memory_limit, scratch)
        try:
            from trustledger.batch.sources import read_events

            table = read_events(backend, events)

            def progress(stage: str, done: int, total: int | None) -> None:
                bar.update(task, description=f"{stage} ({done:,} subjects)", completed=done,
                           total=total)

            job = run(compiled, table, valid, known, consents=consents,
                      consent_all=consent_all, measures=measures, progress=progress)
        finally:
            if session is not None:
                session.stop()
            else:
                backend.disconnect()
        pq.write_table(job.table.replace_schema_metadata({
            "trustledger.policy_hash": compiled.hash, "trustledger.valid_at": valid.isoformat(),
        }), output)
    elapsed = time.perf_counter() - started
    shares = distribution(compiled, job.table)
    if json_out:
        print_json({"subjects": job.subjects, "per_subject": job.per_subject,
                    "policy": {"name": compiled.name, "hash": compiled.hash},
                    "valid_at": valid, "known_at": known, "engine": engine.value,
                    "output": str(output), "seconds": round(elapsed, 3),
                    "smallest_cell": SMALLEST_CELL, "tiers": shares})
        return
    console.print(f"{job.subjects:,} subjects scored at {valid.isoformat()} with policy "
                  f"{compiled.name} {compiled.hash[:19]}… on {engine.value} in {elapsed:.1f} s "
                  f"({job.per_subject:,} by the per-subject path); results in {output}")
    for card, rows in shares.items():
        console.print(f"{card}: subjects by tier (cells under {SMALLEST_CELL} hidden)")
        grid = terminal_table()
        text_column(grid, "tier")
        grid.add_column("subjects", justify="right", no_wrap=True)
        grid.add_column("share", justify="right", no_wrap=True)
        for row in rows:
            n, share = row["subjects"], row["share"]
            grid.add_row(row["tier"] or "no tier", f"<{SMALLEST_CELL}" if n is None else f"{n:,}",
                         "—" if share is None else f"{share:.1%}")
        console.print(grid)


def distribution(policy: CompiledPolicy, results: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Each scorecard's tier distribution: subjects and share per tier, small cells hidden.

    Tiers in the policy's order (lowest first), then "no tier" (``None``: no score, or
    below every tier). A cell of 1 to ``SMALLEST_CELL - 1`` subjects shows ``None`` for
    both count and share (:func:`trustledger.aggregates.suppress`).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for name, card in policy.scorecards.items():
        counts = Counter(results.column(f"tier__{name}").to_pylist())
        order: list[str | None] = [tier.name for tier in card.tiers]
        order += sorted((t for t in counts if t not in order and t is not None), key=str)
        order.append(None)
        total = sum(counts.values())
        shown = suppress([counts.get(tier, 0) for tier in order])
        out[name] = [{"tier": tier, "subjects": n,
                      "share": None if n is None or not total else n / total}
                     for tier, n in zip(order, shown, strict=True)
                     if counts.get(tier, 0) or tier is not None]
    return out


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _backend(engine: Engine, memory_limit: str, scratch: str) -> tuple[Any, Any]:
    from trustledger.batch.sources import (
        duckdb_backend,
        spark_backend,
        spark_session,
    )

    if engine is Engine.SPARK:
        session = spark_session()
        session.sparkContext.setLogLevel("ERROR")
        return spark_backend(session), session
    return duckdb_backend(memory_limit=memory_limit, temp_directory=scratch), None


def _from_ledger(url: str | None, policy: Path | None, valid: Any, known: Any, scratch: Path,
                 bar: Progress, task: Any) -> tuple[Path, Any, dict[str, frozenset[str]]]:
    from trustledger.batch.sources import write_events
    from trustledger.ledger import Ledger
    from trustledger.policy import load_policy
    from trustledger.rights import opt_ins
    from trustledger.scoring import policy_in_force

    path = scratch / "ledger-events.parquet"
    with Ledger.open(url) as ledger:
        compiled = load_policy(policy) if policy is not None else \
            policy_in_force(ledger, valid).compile()
        bar.update(task, description="reading the ledger")
        write_events(ledger.events(known_at=known), path,
                     progress=lambda n: bar.update(task, description=f"reading the ledger "
                                                   f"({n:,} events)"))
        names = set(compiled.scorecards)
        consents = {s: opt_ins(ledger, s, known or valid) & names for s in ledger.subjects()}
    return path, compiled, consents


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command()(rescore)
