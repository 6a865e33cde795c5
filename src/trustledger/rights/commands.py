"""Command-line commands of subject rights: report, whatif, dispute, review, maintain, erase.

Every command reads the published policy in force at the moment asked about
(``--policy FILE`` overrides it where scoring is involved) and prints what it
did; every refusal is a :class:`~trustledger.errors.TrustLedgerError` naming the
field, and nothing is written then.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trustledger.errors import InputError
from trustledger.ledger import Ledger
from trustledger.options import (
    AttributeOption,
    AttributesOption,
    JsonFlag,
    jsonable,
    parse_attributes,
    parse_moment,
    print_json,
)
from trustledger.policy import CompiledPolicy, load_policy
from trustledger.rights import fields

_out = Console(soft_wrap=True)


def _page() -> Console:
    """A console for reports and tables: wraps text to the terminal's width as it is now.

    One-line messages go to ``_out``, which never wraps (ids and hashes stay whole).
    """
    return Console()

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", metavar="URL", help="Ledger database URL (default: "
                 "$TRUSTLEDGER_DATABASE_URL or SQLite in the data folder).", show_default=False),
]
At = Annotated[str | None, typer.Option("--at", metavar="WHEN",
                                        help="The moment, ISO 8601 (default: now, UTC).")]
PolicyFile = Annotated[
    Path | None,
    typer.Option("--policy", metavar="FILE",
                 help="Policy file to use instead of the published one in force."),
]

dispute_app = typer.Typer(name="dispute", help="Disputes: open, add information, answer, "
                          "resolve, list.", no_args_is_help=True, rich_markup_mode=None)
review_app = typer.Typer(name="review", help="Human review of adverse measures: request, "
                         "resolve, list.", no_args_is_help=True, rich_markup_mode=None)


def _policy(ledger: Ledger, file: Path | None, at: datetime) -> CompiledPolicy:
    if file is not None:
        return load_policy(file)
    from trustledger.scoring import policy_in_force

    return policy_in_force(ledger, at).compile()


def _json_object(value: str, option: str) -> dict[str, Any]:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{option}: cannot read {value[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{option}: must be a JSON object")
    return data


# -- report and what-if -------------------------------------------------------------------


def report(
    subject: Annotated[str, typer.Argument(help="The subject the report is about.")],
    at: At = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the report "
                                                   "as JSON to this file.")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="Also write the report as "
                                                   "a printable HTML page to this file.")] = None,
    policy: PolicyFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Everything about a subject: events, contributions, scores over time, reasons, rights."""
    from trustledger.rights.html import report_html
    from trustledger.rights.render import report as render_report
    from trustledger.rights.report import build_report

    moment = parse_moment(at, "--at")
    with Ledger.open(database_url) as ledger:
        compiled = load_policy(policy) if policy is not None else None
        built = build_report(ledger, subject, moment, policy=compiled)
    _page().print(render_report(built))
    if json_file is not None:
        json_file.write_text(built.to_json() + "\n", encoding="utf-8")
        _out.print(f"wrote {json_file}")
    if html_file is not None:
        html_file.write_text(report_html(built), encoding="utf-8")
        _out.print(f"wrote {html_file}")


def whatif(
    subject: Annotated[str, typer.Argument(help="The subject to ask about.")],
    remove: Annotated[list[int] | None, typer.Option(
        "--remove", metavar="SEQ",
        help="Leave out the event at this ledger seq (repeatable).")] = None,
    add: Annotated[list[str] | None, typer.Option(
        "--add", metavar="JSON",
        help='Add a hypothetical event: JSON {"type": ..., "occurred_at": ..., '
             '"attributes": {...}} or @FILE (repeatable).')] = None,
    date: Annotated[str | None, typer.Option(
        "--date", metavar="WHEN",
        help="Ask about this (usually future) date instead of --at.")] = None,
    reach: Annotated[str | None, typer.Option(
        "--reach", metavar="TARGET",
        help="What it takes to reach SCORECARD:TIER or a measure.")] = None,
    attribute: AttributeOption = None,
    attributes: AttributesOption = None,
    at: At = None,
    policy: PolicyFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The score, tier and measures if events were removed or added, or at another date.

    Decision-time attributes (--attribute, --attributes) feed statistical
    scorecards before and after, as a decision given them would.
    """
    from trustledger.rights import render
    from trustledger.rights.whatif import Hypothetical, parse_target, what_if, what_it_takes
    from trustledger.scoring import assess_subject

    moment = parse_moment(at, "--at")
    when = parse_moment(date, "--date") if date is not None else None
    added = [_hypothetical(text, f"--add[{i}]") for i, text in enumerate(add or [])]
    with Ledger.open(database_url) as ledger:
        compiled = _policy(ledger, policy, moment)
        supplied = parse_attributes(compiled, attribute or [], attributes)
        # A subject with no events yet is asked about too: every event is then hypothetical.
        assessment = assess_subject(ledger, subject, compiled, moment, attributes=supplied,
                                    allow_empty=True)
    target = parse_target(compiled, reach) if reach is not None else None
    if remove or added or when is not None or target is None:
        result = what_if(assessment, remove=remove or [],
                         add=[Hypothetical(**h) for h in added], at=when)
        _page().print(render.what_if(result))
    if target is not None:
        _page().print(render.what_it_takes(what_it_takes(assessment, target)))


def _hypothetical(text: str, option: str) -> dict[str, Any]:
    data = _json_object(text, option)
    unknown = sorted(set(data) - {"type", "occurred_at", "attributes", "recorded_at"})
    if unknown:
        raise InputError(f"{option}: unknown field(s) {', '.join(unknown)}")
    if not isinstance(data.get("type"), str):
        raise InputError(f"{option}.type: required (an event type of the policy)")
    if not isinstance(data.get("occurred_at"), str):
        raise InputError(f"{option}.occurred_at: required (an ISO 8601 date or date-time)")
    out: dict[str, Any] = {
        "type": data["type"],
        "occurred_at": parse_moment(data["occurred_at"], f"{option}.occurred_at"),
        "attributes": data.get("attributes", {}),
    }
    if data.get("recorded_at") is not None:
        out["recorded_at"] = parse_moment(str(data["recorded_at"]), f"{option}.recorded_at")
    return out


# -- disputes -----------------------------------------------------------------------------


@dispute_app.command("open")
def dispute_open(
    subject: Annotated[str, typer.Argument(help="The subject disputing.")],
    event_seq: Annotated[int, typer.Argument(help="Ledger seq of the disputed event.")],
    reason: Annotated[str, typer.Option(help="Why the event is wrong.")],
    new_information: Annotated[bool, typer.Option(
        "--new-information", help="The subject gives information the source did not have "
        "(the source then has 45 days instead of 30).")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """A subject disputes one of its events; while open, an adverse event stops counting."""
    from trustledger.rights.dispute import open_dispute

    with Ledger.open(database_url) as ledger:
        dispute = open_dispute(ledger, subject, event_seq, reason,
                               new_information=new_information)
    _out.print(f"dispute {dispute.seq} opened on event {dispute.event_seq} "
               f"({dispute.source}:{dispute.source_event_id}); its source has until "
               f"{fields.day(dispute.deadline)} to verify it")


@dispute_app.command("add-info")
def dispute_add_info(
    dispute_seq: Annotated[int, typer.Argument(help="The dispute's seq.")],
    subject: Annotated[str, typer.Option(help="The subject who opened it.")],
    text: Annotated[str, typer.Option(help="The new information.")],
    database_url: DatabaseUrl = None,
) -> None:
    """The subject adds information to its open dispute (within 30 days: SLA becomes 45)."""
    from trustledger.rights.dispute import add_dispute_information

    with Ledger.open(database_url) as ledger:
        dispute = add_dispute_information(ledger, dispute_seq, subject, text)
    _out.print(f"dispute {dispute.seq}: information added; deadline "
               f"{fields.day(dispute.deadline)}")


@dispute_app.command("answer")
def dispute_answer(
    dispute_seq: Annotated[int, typer.Argument(help="The dispute's seq.")],
    source: Annotated[str, typer.Option(help="The source answering (the event's source).")],
    answer: Annotated[str, typer.Option(help="verified, corrected or retracted.")],
    note: Annotated[str, typer.Option(help="A note for the subject.")] = "",
    event: Annotated[str | None, typer.Option(
        help="For corrected/retracted: the source's new event superseding the disputed one, "
             "as JSON or @FILE.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The disputed event's source verifies, corrects or retracts it."""
    from trustledger.rights.dispute import answer_dispute

    new_event = _json_object(event, "--event") if event is not None else None
    with Ledger.open(database_url) as ledger:
        dispute = answer_dispute(ledger, dispute_seq, source, answer, note=note, event=new_event)
    assert dispute.answer is not None
    extra = f" (event {dispute.answer.event_seq})" if dispute.answer.event_seq else ""
    _out.print(f"dispute {dispute.seq}: {dispute.answer.answer.value} by {source}{extra}")


@dispute_app.command("resolve")
def dispute_resolve(
    dispute_seq: Annotated[int, typer.Argument(help="The dispute's seq.")],
    reviewer: Annotated[str, typer.Option(help="Who resolves it.")],
    outcome: Annotated[str, typer.Option(
        help="valid (the event counts again) or invalid (removed from scoring).")],
    reason: Annotated[str, typer.Option(help="The written reason the subject sees.")],
    database_url: DatabaseUrl = None,
) -> None:
    """A reviewer resolves a dispute: the event is valid or invalid, with a written reason."""
    from trustledger.rights.dispute import resolve_dispute

    with Ledger.open(database_url) as ledger:
        dispute = resolve_dispute(ledger, dispute_seq, reviewer, outcome, reason)
    assert dispute.resolution is not None
    _out.print(f"dispute {dispute.seq} resolved: event {dispute.event_seq} is "
               f"{dispute.resolution.outcome.value}")


@dispute_app.command("list")
def dispute_list(
    subject: Annotated[str, typer.Argument(help="The subject.")],
    at: At = None,
    json_out: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """A subject's disputes and where they stand."""
    from trustledger.rights.dispute import disputes
    from trustledger.rights.render import disputes as render_disputes

    moment = parse_moment(at, "--at")
    with Ledger.open(database_url) as ledger:
        found = disputes(ledger, subject, moment)
    if json_out:
        print_json([{**jsonable(d), "deadline": d.deadline} for d in found])
        return
    _page().print(render_disputes(found, moment))


# -- human review -------------------------------------------------------------------------


@review_app.command("request")
def review_request(
    subject: Annotated[str, typer.Argument(help="The subject asking.")],
    measure: Annotated[str, typer.Argument(help="The measure to review (its name).")],
    statement: Annotated[str, typer.Option(help="The subject's own words.")] = "",
    at: At = None,
    policy: PolicyFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A subject asks for human review of a restriction in force or a privilege denied."""
    from trustledger.rights.review import request_review
    from trustledger.scoring import evaluate_subject

    moment = parse_moment(at, "--at")
    with Ledger.open(database_url) as ledger:
        compiled = _policy(ledger, policy, moment)
        evaluation = evaluate_subject(ledger, subject, compiled, moment)
        review = request_review(ledger, evaluation, measure, statement=statement)
    _out.print(f"review {review.seq} requested: {review.label} ({review.state.value})")


@review_app.command("resolve")
def review_resolve(
    request_seq: Annotated[int, typer.Argument(help="The review request's seq.")],
    reviewer: Annotated[str, typer.Option(help="Who reviewed it.")],
    decision: Annotated[str, typer.Option(help="confirmed or lifted.")],
    reason: Annotated[str, typer.Option(help="The written reason the subject sees.")],
    database_url: DatabaseUrl = None,
) -> None:
    """A reviewer confirms or lifts a reviewed measure, with a written reason."""
    from trustledger.rights.review import resolve_review

    with Ledger.open(database_url) as ledger:
        review = resolve_review(ledger, request_seq, reviewer, decision, reason)
    assert review.decision is not None
    _out.print(f"review {review.seq}: {review.label} {review.decision.value}")


@review_app.command("list")
def review_list(
    subject: Annotated[str, typer.Argument(help="The subject.")],
    at: At = None,
    json_out: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """A subject's requests for human review and where they stand."""
    from trustledger.rights.render import reviews as render_reviews
    from trustledger.rights.review import reviews

    moment = parse_moment(at, "--at")
    with Ledger.open(database_url) as ledger:
        found = reviews(ledger, subject, moment)
    if json_out:
        print_json(found)
        return
    _page().print(render_reviews(found, moment))


# -- retention and erasure ----------------------------------------------------------------


def maintain(
    at: At = None,
    policy: PolicyFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Purge the payloads of events past their type's retention; the chain still verifies."""
    from trustledger.rights.retention import maintain as run

    moment = parse_moment(at, "--at")
    with Ledger.open(database_url) as ledger:
        compiled = _policy(ledger, policy, moment)
        done = run(ledger, compiled, moment)
    _out.print(f"retention under {done.policy} ({done.policy_hash[:19]}…) at "
               f"{moment.isoformat()}: {done.events_purged} event(s) and "
               f"{done.records_purged} dispute record(s) purged; recorded as seq {done.seq}")


def erase(
    subject: Annotated[str, typer.Argument(help="The subject whose data is erased.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase a subject on a valid request: purge every payload about them; no more scores."""
    from trustledger.rights.erasure import erase as run

    if not yes:
        typer.confirm(f"Erase every payload about {subject!r}? This cannot be undone",
                      abort=True)
    with Ledger.open(database_url) as ledger:
        done = run(ledger, subject)
    _out.print(f"erased: {done.purged} payload(s) purged; recorded as seq {done.seq} "
               "(without personal data)")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command()(report)
    app.command()(whatif)
    app.add_typer(dispute_app)
    app.add_typer(review_app)
    app.command()(maintain)
    app.command()(erase)
