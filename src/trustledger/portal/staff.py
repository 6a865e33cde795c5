"""The reviewer's queue and cases, and the operator's policies and population at a glance.

**Reviewer.** The queue is the API's (:func:`trustledger.api.rights.queue`): every
dispute a reviewer may still resolve and every pending human-review request,
earliest due first, with the SLA countdown (DESIGN.md safeguard 6: a dispute's
source has 30 days, 45 with new information; a review is due 30 days after the
request). Every read is access-logged about its subject exactly as the API's
reviewer routes do, by the same functions (:func:`trustledger.api.rights.reviewer_queue`,
:func:`~trustledger.api.rights.read_case`, :func:`~trustledger.api.rights.after_decision`,
committed before the page is sent): the queue, each case opened, each case resolved —
so the subject sees who looked. Resolving calls :func:`~trustledger.rights.resolve_dispute` /
:func:`~trustledger.rights.resolve_review` with the reviewer's written reason.

**Operator.** Published policy versions with the safeguards linter run again on
each; publishing pasted YAML through the API's own handler (a refused policy
shows the linter's messages, rule and location, and nothing is published);
score histograms, tier and measure counts from the service's statistics (cells
under k suppressed: :mod:`trustledger.api.statistics`); events appended and reads
logged per day (:mod:`trustledger.portal.activity`). Never a subject's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic

from fastapi import APIRouter, Path
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from trustledger.api import rights as shown
from trustledger.api.auth import service_of
from trustledger.api.problems import classify
from trustledger.api.rights import CaseT
from trustledger.api.routers import operator as operator_api
from trustledger.api.routers.reviewers import reviewing
from trustledger.api.schemas import PolicySubmission
from trustledger.api.service import Caller, Service
from trustledger.api.view import LedgerView
from trustledger.errors import LintError, NotFoundError, PolicyError, TrustLedgerError
from trustledger.portal.activity import activity
from trustledger.portal.charts import Bar, bar_chart
from trustledger.portal.session import Session
from trustledger.portal.web import (
    Form,
    countdown,
    field_problems,
    page,
    redirect,
    signed_in_form,
    signed_in_page,
)
from trustledger.principals import Role
from trustledger.rights.dispute import Answer, Dispute
from trustledger.rights.review import Review

router = APIRouter(prefix="/portal", include_in_schema=False)
CaseSeq = Annotated[int, Path(ge=1, le=2**62)]


def _queue(request: Request, caller: Caller, session: Session, done: str | None) -> Response:
    service = reviewing(request, caller)
    now = service.now()
    cases = shown.reviewer_queue(service, caller, now)
    disputes = [c.item for c in cases if c.item["kind"] == "dispute"]
    reviews = [c.item for c in cases if c.item["kind"] == "review"]
    for item in (*disputes, *reviews):
        item["left"] = countdown(item["due_at"], now)
    notice = {"dispute": "The dispute was resolved; the subject sees your reason.",
              "review": "The review was decided; the subject sees your reason."}.get(done or "")
    return page("reviewer.html.j2", caller=caller, csrf=session.csrf, title="Review queue",
                disputes=disputes, reviews=reviews, now=now, notice=notice)


@router.get("/reviewer")
async def queue(request: Request, done: str | None = None) -> Response:
    """The reviewer's queue: open disputes with SLA countdowns, pending reviews."""
    return await signed_in_page(request, lambda c, s: _queue(request, c, s, done))


def _dispute_values(service: Service, found: Dispute, now: datetime) -> dict[str, Any]:
    try:
        event = service.ledger.entry(found.event_seq).payload
    except NotFoundError:
        event = None
    return {"d": found, "event": event, "status_now": found.status_at(now).value,
            "left": countdown(found.deadline, now),
            "facts": shown.case_facts(service, found, now), "subject": found.subject,
            "resolvable": found.resolution is None and (
                found.answer is None or found.answer.answer is Answer.VERIFIED)}


def _review_values(service: Service, found: Review, now: datetime) -> dict[str, Any]:
    return {"r": found, "left": countdown(found.due_at, now),
            "facts": shown.case_facts(service, found, now), "subject": found.subject}


@dataclass(frozen=True, slots=True)
class _CasePage(Generic[CaseT]):
    """How the portal shows and decides one kind of case."""

    kind: shown.CaseKind[CaseT]
    """Found, decided and access-logged as the API's reviewer routes do."""
    template: str
    title: str
    """The page's title, before the case's seq."""
    verdict: str
    """The form field naming the verdict."""
    done: str
    """The queue's notice after a decision."""
    values: Callable[[Service, CaseT, datetime], dict[str, Any]]
    """The template's own values for the case."""


_DISPUTE = _CasePage(shown.DISPUTE_CASE, "dispute_case.html.j2", "Dispute", "outcome", "dispute",
                     _dispute_values)
_REVIEW = _CasePage(shown.REVIEW_CASE, "review_case.html.j2", "Human review", "decision",
                    "review", _review_values)


def _case(request: Request, caller: Caller, session: Session, case: _CasePage[CaseT], seq: int,
          error: str | None = None, status: int = 200, form: Form | None = None) -> Response:
    service = reviewing(request, caller)
    found = shown.read_case(service, caller, case.kind, seq)
    now = service.now()
    return page(case.template, status, caller=caller, csrf=session.csrf,
                title=f"{case.title} {seq}", now=now, error=error, form=form or {},
                **case.values(service, found, now))


async def _decide(request: Request, case: _CasePage[CaseT], seq: int) -> Response:
    def work(caller: Caller, session: Session, form: Form) -> Response:
        service = reviewing(request, caller)
        try:
            decided = case.kind.resolve(service.ledger, seq, caller.principal.name,
                                        form.get(case.verdict, ""), form.get("reason", ""))
        except TrustLedgerError as exc:
            return _case(request, caller, session, case, seq, str(exc), classify(exc)[0], form)
        shown.after_decision(service, caller, case.kind, decided)
        return redirect(f"/portal/reviewer?done={case.done}")

    return await signed_in_form(request, work)


@router.get("/reviewer/disputes/{seq}")
async def dispute_case(request: Request, seq: CaseSeq) -> Response:
    """One dispute (its read is access-logged) and the form resolving it."""
    return await signed_in_page(request, lambda c, s: _case(request, c, s, _DISPUTE, seq))


@router.post("/reviewer/disputes/{seq}")
async def resolve_dispute_form(request: Request, seq: CaseSeq) -> Response:
    """Resolve a dispute: ``outcome`` valid or invalid, and a written ``reason``."""
    return await _decide(request, _DISPUTE, seq)


@router.get("/reviewer/reviews/{seq}")
async def review_case(request: Request, seq: CaseSeq) -> Response:
    """One human-review request (its read is access-logged) and the form deciding it."""
    return await signed_in_page(request, lambda c, s: _case(request, c, s, _REVIEW, seq))


@router.post("/reviewer/reviews/{seq}")
async def resolve_review_form(request: Request, seq: CaseSeq) -> Response:
    """Decide a review: ``decision`` confirmed or lifted, and a written ``reason``."""
    return await _decide(request, _REVIEW, seq)


# -- operator ------------------------------------------------------------------------------


_LINTED: dict[str, str] = {}
"""Each published version's linter verdict by its hash: a version never changes, and neither
does the linter while the process runs, so it is linted once, not on every page load."""


def _lint_result(view: LedgerView, policy_hash: str) -> str:
    found = _LINTED.get(policy_hash)
    if found is None:
        from trustledger.policy.linter import lint

        try:
            lint(view.compiled(policy_hash))
            found = "passes every safeguard rule"
        except LintError as exc:
            found = "refused now: " + "; ".join(str(p) for p in exc.problems)
        _LINTED[policy_hash] = found
    return found


def _statistics(request: Request) -> tuple[int, dict[str, Any]]:
    service = service_of(request)
    service.view.policy_in_force(service.now())
    return service.statistics.get()


def _operator(request: Request, caller: Caller, session: Session, *, done: str | None = None,
              error: str | None = None, problems: list[str] | None = None,
              source: str = "", status: int = 200) -> Response:
    caller.require(Role.OPERATOR)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    view = service.view
    try:
        current: str | None = view.policy_in_force(now).hash
    except NotFoundError:
        current = None
    versions = [{"p": p, "in_force": p.hash == current,
                 "lint": _lint_result(view, p.hash)} for p in view.policies()]
    register = next((p for p in view.proposals() if p.status == "in_force"), None)
    pending = [p for p in view.proposals() if p.status == "pending"]
    stats_status, stats = 0, dict[str, Any]()
    stats_error = None
    try:
        stats_status, stats = _statistics(request)
    except NotFoundError as exc:
        stats_error = str(exc)
    k = service.settings.suppress_below
    cards = []
    if stats_status == 200:
        for name, card in stats["scorecards"].items():
            bars = [Bar(f"{b['low']:g}", b["subjects"]) for b in card["histogram"]]
            cards.append({"name": name, "card": card,
                          "svg": bar_chart(bars, f"{name}: subjects per score band",
                                           f"hist-{name}", k)})
    days = activity(service.ledger, now)
    events_svg = bar_chart([Bar(d.day.isoformat()[5:], d.events) for d in days],
                           "events appended per day", "ingest")
    reads_svg = bar_chart([Bar(d.day.isoformat()[5:], d.reads) for d in days],
                          "reads logged per day", "reads")
    notice = {"published": "The policy version was published.",
              "known": "This exact policy version was published before; nothing changed."
              }.get(done or "")
    return page("operator.html.j2", status, caller=caller, csrf=session.csrf,
                title="Operator", versions=versions, stats=stats, stats_status=stats_status,
                stats_error=stats_error, cards=cards, k=k, days=days, events_svg=events_svg,
                reads_svg=reads_svg, notice=notice, error=error, problems=problems or [],
                source=source, now=now, register=register, pending=pending)


@router.get("/operator")
async def operator(request: Request, done: str | None = None) -> Response:
    """Policy versions, statistics (small cells suppressed), ingest and reads over time."""
    return await signed_in_page(request, lambda c, s: _operator(request, c, s, done=done))


@router.post("/operator/policies")
async def publish(request: Request) -> Response:
    """Publish pasted YAML through the API's handler; a refused one shows the linter's words."""

    def work(caller: Caller, session: Session, form: Form) -> Response:
        caller.require(Role.OPERATOR)
        text = form.get("source", "")
        try:
            try:
                body = PolicySubmission(source=text)
            except ValidationError as exc:
                raise field_problems(exc) from None
            response = operator_api.publish(request, caller, body)
        except PolicyError as exc:
            what = "breaks a safeguard" if isinstance(exc, LintError) else "is not valid"
            return _operator(request, caller, session, status=422, source=text,
                             error=f"Refused: the policy {what}; nothing was published.",
                             problems=[str(p) for p in exc.problems])
        except TrustLedgerError as exc:
            return _operator(request, caller, session, status=classify(exc)[0], source=text,
                             error=str(exc))
        return redirect("/portal/operator?done=" +
                        ("published" if response.status_code == 201 else "known"))

    return await signed_in_form(request, work)

