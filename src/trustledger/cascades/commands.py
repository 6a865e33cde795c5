"""Command-line commands for cascades: ``trustledger cascades run|status``.

``run`` derives notifications from the ledger and the schedule and delivers them
as signed webhooks until interrupted (``--once``: one round). ``status`` prints
aggregate counts only (subscriptions, the outbox by state), never a subject.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

# The cascades' modules (decision code: engine, policy stack) and the database are
# imported inside each command, so ``trustledger --help`` does not load them.

cascades_app = typer.Typer(
    name="cascades",
    help="Deliver decision changes to subscribed relying parties (signed webhooks).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", metavar="URL", help="Ledger database URL (default: "
                 "$TRUSTLEDGER_DATABASE_URL or SQLite in the data folder)."),
]


@cascades_app.command("run")
def run(
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    interval: Annotated[float, typer.Option(
        min=0.01, help="Seconds to wait when a round found nothing to do.")] = 0.1,
    max_attempts: Annotated[int, typer.Option(
        min=1, max=100, help="Attempts before a notification is dead.")] = 8,
    backoff: Annotated[float, typer.Option(
        min=0.001, help="First retry delay in seconds (doubling, with jitter).")] = 1.0,
    timeout: Annotated[float, typer.Option(
        min=0.01, help="Seconds to wait for a receiver's answer.")] = 10.0,
    senders: Annotated[int, typer.Option(
        min=1, max=256, help="Webhook requests in flight at once (sender threads).")] = 16,
    only: Annotated[str | None, typer.Option(
        "--only", metavar="derive|deliver",
        help="Only derive notifications, or only deliver them (one process of each; "
             "on SQLite one process doing both is faster); default both.")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Derive and deliver notifications until interrupted (Ctrl-C stops after the round)."""
    from trustledger.cascades.delivery import Deliverer, RetryPolicy
    from trustledger.cascades.derive import Deriver
    from trustledger.cascades.worker import Worker
    from trustledger.principals import ServiceLedger

    if only not in (None, "derive", "deliver"):
        raise typer.BadParameter("derive or deliver", param_hint="--only")
    retry = RetryPolicy(max_attempts=max_attempts, base=backoff, timeout=timeout)
    with ServiceLedger.open(database_url) as ledger:
        deliverer = Deliverer(ledger, retry=retry, concurrency=senders)
        worker = Worker(Deriver(ledger), deliverer)
        try:
            if once:
                done = worker.round()
                typer.echo(f"derived {done.derived.notifications} notification(s) "
                           f"({done.derived.evaluated} subscription(s) evaluated); "
                           f"delivered {done.delivered.delivered}, retrying "
                           f"{done.delivered.retrying}, dead {done.delivered.dead}")
                return
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            try:
                delivered = worker.run(stop, interval, derive=only != "deliver",
                                       deliver=only != "derive")
            except KeyboardInterrupt:
                stop.set()
                delivered = 0
            typer.echo(f"stopped; delivered {delivered} notification(s)")
        finally:
            deliverer.close()


@cascades_app.command("status")
def status(
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print JSON (full ids, ISO 8601 times) instead of a table.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Counts: active and ended subscriptions, notifications by state (no subjects)."""
    import sqlalchemy as sa

    from trustledger.cascades.schema import notifications, subscriptions
    from trustledger.principals import ServiceLedger

    with ServiceLedger.open(database_url) as ledger, ledger.reading() as conn:
        subs = conn.execute(sa.select(
            sa.func.count().filter(subscriptions.c.ended_at_us.is_(None)),
            sa.func.count().filter(subscriptions.c.ended_at_us.is_not(None)))).one()
        states = dict(conn.execute(sa.select(notifications.c.status, sa.func.count())
                                   .group_by(notifications.c.status)).all())
    counts = {name: states.get(name, 0) for name in ("pending", "delivered", "dead")}
    if json_out:
        from trustledger.options import print_json

        print_json({"subscriptions": {"active": subs[0], "ended": subs[1]},
                    "notifications": counts})
        return
    typer.echo(f"subscriptions: {subs[0]} active, {subs[1]} ended")
    typer.echo("notifications: " + ", ".join(f"{n} {name}" for name, n in counts.items()))


def register(app: typer.Typer) -> None:
    """Add ``trustledger cascades ...`` to the main CLI."""
    app.add_typer(cascades_app)
