"""``trustledger serve``: run the HTTP service with uvicorn, with the demo set up first if asked.

``--demo`` (what ``make run`` uses) builds the demo ledger on first start — a
deterministic synthetic population, ``policies/register.yaml`` proposed by one demo
operator and approved by another, ``policies/sesame.yaml`` published against it (see
:mod:`trustledger.demo`) — records opt-ins for a share of the population, and
issues one fresh demo API key per actor (revoking the previous demo keys), then
prints the API docs' URL and the keys. ``--cascades`` runs the cascades' webhook
worker in the server process (started and stopped with it; see docs/cascades.md).

Two streams, as servers keep them: **stdout** is for people — the demo's set-up
progress, then the banner (URLs, demo keys, a curl line), flushed before uvicorn
starts — and **stderr** holds only the JSON log lines (the service's, uvicorn's,
alembic's), in every worker process; with one worker, Python warnings too. ``2>server.log``
or a log collector on stderr gets pure JSON; stdout never carries a log line.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer

from trustledger.config import DATABASE_URL_ENV

DEMO_OPT_INS = 2_000
"""How many demo subjects opt in to the opt-in scorecards (so statistics have cells)."""
DEMO_PARTY = "demo-rentals"
DEMO_SUBJECT_INDEX = 0


@dataclass(frozen=True)
class DemoKey:
    """One demo principal and its key."""

    role: str
    name: str
    key: str
    note: str


def prepare_demo(database_url: str, policy: Path, subjects: int, events: int,
                 status: Callable[[str], None] = print) -> list[DemoKey]:
    """Set up the demo ledger (first start only) and issue fresh demo keys; return them."""
    from trustledger.config import data_dir
    from trustledger.demo import DEMO_APPROVER, DEMO_POPULATION, DEMO_PROPOSER, run_demo
    from trustledger.principals import (
        Record,
        Role,
        ServiceLedger,
        add_principal,
        list_principals,
        revoke_principal,
    )
    from trustledger.rights import consents, grant_decision_consent
    from trustledger.rights.consent import GRANTED
    from trustledger.synth import subject_id

    # The calibrated demo (seed, years of history) at the size asked for.
    population = replace(DEMO_POPULATION, subjects=subjects, events=events)
    with ServiceLedger.open(database_url) as ledger:
        report = run_demo(ledger, policy, data_dir(), population=population,
                          shown=min(10, subjects), status=status)
        compiled = report.policy.compile()
        cards = [n for n, c in compiled.scorecards.items() if c.opt_in]
        share = min(DEMO_OPT_INS, subjects)
        if cards and not consents(ledger, subject_id(share - 1)):
            status(f"recording opt-ins of {share:,} demo subjects")
            ledger.append_records([
                Record(GRANTED, {"scope": "scorecard", "scorecard": card}, subject_id(i))
                for i in range(min(10, subjects), share) for card in cards])
        purposes = tuple(compiled.purposes)
        sources = tuple(sorted({t for t in compiled.event_types}))
        domains = tuple(sorted({compiled.event_types[t].domain for t in sources}))
        subject = subject_id(DEMO_SUBJECT_INDEX)
        wanted: list[tuple[Role, str, tuple[str, ...], tuple[str, ...], str | None, str]] = [
            (Role.OPERATOR, DEMO_PROPOSER, (), (), None,
             "publishes policies, manages keys, proposes registers"),
            (Role.OPERATOR, DEMO_APPROVER, (), (), None,
             "approves the other operator's register proposals"),
            (Role.SOURCE, "bank-a", sources, domains, None,
             f"appends events (all types; domains {', '.join(domains)})"),
            (Role.RELYING_PARTY, DEMO_PARTY, purposes, (), None,
             f"asks decisions for {', '.join(purposes) or 'no purpose'}"),
            (Role.SUBJECT, subject, (), (), subject, "sees and manages their own data"),
            (Role.REVIEWER, "demo-reviewer", (), (), None, "reviews (nothing to review yet)"),
        ]
        names = {(role, name) for role, name, *_ in wanted}
        for old in list_principals(ledger):
            if (old.role, old.name) in names:
                revoke_principal(ledger, old.id)
        keys = []
        for role, name, accredited, in_domains, speaks_for, note in wanted:
            issued = add_principal(ledger, name, role, accreditations=accredited,
                                   domains=in_domains, subject=speaks_for,
                                   rate_limit=2_000.0 if role is Role.RELYING_PARTY else None)
            keys.append(DemoKey(role.value.replace("_", " "), name, issued.key, note))
        now = ledger.now()
        if purposes and not any(c.party == DEMO_PARTY and c.active_at(now)
                                for c in consents(ledger, subject)):
            grant_decision_consent(ledger, subject, DEMO_PARTY, purposes[0])
    return keys


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] =
    "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (limits and caches are "
                                              "per process).")] = 1,
    demo: Annotated[bool, typer.Option(help="Set up the demo ledger and print demo keys "
                                            "first.")] = False,
    policy: Annotated[Path, typer.Option(help="With --demo: the policy to publish.")] = Path(
        "policies/sesame.yaml"),
    demo_subjects: Annotated[int, typer.Option(
        envvar="TRUSTLEDGER_DEMO_SUBJECTS", help="With --demo: subjects of the synthetic "
        "population (first start only).")] = 10_000,
    demo_events: Annotated[int, typer.Option(
        envvar="TRUSTLEDGER_DEMO_EVENTS", help="With --demo: events of the synthetic "
        "population (first start only).")] = 200_000,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="Ledger database URL (default: $TRUSTLEDGER_DATABASE_URL or "
        "SQLite in the data folder).")] = None,
    cascades: Annotated[bool, typer.Option(
        "--cascades", help="Also derive and deliver the subscriptions' webhooks in the "
        "background, as `trustledger cascades run` does (one worker per process).")] = False,
) -> None:
    """Run the HTTP API (FastAPI on uvicorn); with --demo, set up the demo and print keys."""
    import uvicorn

    from trustledger.api.middleware import log_config
    from trustledger.api.settings import Settings
    from trustledger.cascades.egress import Egress
    from trustledger.cascades.worker import BACKGROUND_ENV
    from trustledger.config import database_url as default_url
    from trustledger.ledger.database import describe
    from trustledger.principals import ServiceLedger

    url = database_url or default_url()
    os.environ[DATABASE_URL_ENV] = url
    settings = Settings.from_env()  # refuse bad TRUSTLEDGER_* settings before anything starts
    if cascades:
        Egress.from_env()  # a bad TRUSTLEDGER_WEBHOOK_ALLOW too
        os.environ[BACKGROUND_ENV] = "1"  # the app's lifespan starts the worker
    ServiceLedger.open(url).close()  # an unusable database fails here, plainly; migrates once
    logging.config.dictConfig(log_config())
    logging.captureWarnings(True)  # a warning is a JSON line too, not free text on stderr
    keys: list[DemoKey] = []
    if demo:
        keys = prepare_demo(url, policy, demo_subjects, demo_events,
                            status=lambda text: typer.echo(f"demo: {text}"))
    base = f"http://{host}:{port}"
    typer.echo(f"trustledger serves {base} on the ledger {describe(url)}")
    typer.echo(f"API docs: {base}/docs")
    typer.echo(f"portal (sign in with a key): {base}/portal")
    if cascades:
        typer.echo("cascades: the webhook worker runs in the background")
    if keys:
        typer.echo("demo API keys (shown once, stored only hashed; new ones at every start):")
        width = max(len(k.name) for k in keys)
        for k in keys:
            typer.echo(f"  {k.role:<14} {k.name:<{width}}  {k.key}   {k.note}")
        party = next(k for k in keys if k.name == DEMO_PARTY)
        typer.echo("try a decision:")
        typer.echo(f"  curl -s {base}/v1/decisions -H 'Authorization: Bearer {party.key}' "
                   "-H 'Content-Type: application/json' "
                   "-d '{\"subject\": \"subject-0000000\", \"purpose\": \"rental_deposit\"}'")
    sys.stdout.flush()  # the whole banner before the server's first log line
    uvicorn.run("trustledger.api.app:create_app_from_env", factory=True, host=host, port=port,
                workers=workers, log_config=log_config(), access_log=False, timeout_keep_alive=5,
                server_header=False,
                # X-Forwarded-For/-Proto are believed only from proxies the operator names:
                # the failed-authentication limits count the client's address.
                proxy_headers=bool(settings.forwarded_allow),
                forwarded_allow_ips=settings.forwarded_allow or None)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root CLI."""
    app.command("serve")(serve)
