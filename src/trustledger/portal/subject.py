"""The subject's page: score, tier, chart, contributions, reasons, what-if, disputes, consents.

Everything is read and written through the functions the API and the CLI use —
:func:`trustledger.rights.report.build_report` for what the page shows,
:func:`trustledger.api.view.current_assessment` (the service's one scoring path)
for the what-if panel and review requests, :mod:`trustledger.rights` for disputes
and reviews, and the API's own consent handlers — so the page shows exactly what
``GET /v1/subjects/{subject}/...`` would. Only the subject themself may open it
(:meth:`~trustledger.api.service.Caller.require_subject`: anyone else gets 403).
A subject's reads of their own data are not access-logged, as in the API: the
access log is what others read — and what the operator did about the subject
(each key issued or revoked for them), shown in the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from trustledger.api.auth import service_of
from trustledger.api.problems import classify
from trustledger.api.routers import subjects as subjects_api
from trustledger.api.schemas import ConsentRequest
from trustledger.api.service import Caller, Service
from trustledger.api.view import current_assessment
from trustledger.engine import Evaluation, Event
from trustledger.errors import InputError, NotFoundError, TrustLedgerError
from trustledger.policy import CompiledPolicy
from trustledger.portal.charts import Mark, score_chart
from trustledger.portal.session import Session, new_session
from trustledger.portal.web import (
    Form,
    field_problems,
    page,
    redirect,
    sessions_of,
    signed_in_form,
    signed_in_page,
)
from trustledger.rights import (
    access_log,
    add_dispute_information,
    consents,
    is_adverse_measure,
    open_dispute,
    request_review,
)
from trustledger.rights.dispute import is_adverse
from trustledger.rights.report import Report, build_report, history_dates
from trustledger.rights.whatif import WhatIf, WhatItTakes, parse_target, what_if, what_it_takes
from trustledger.scoring import Assessment, assess

router = APIRouter(prefix="/portal/subjects/{subject}", include_in_schema=False)
CHART_POINTS = 24
"""At most this many past dates in the score chart (plus now)."""
SubjectPath = Annotated[str, Path(min_length=1, max_length=256)]

NOTICES = {
    "disputed": "Your dispute was recorded. If the event works against you, it does not count "
                "while it is under review (the scores below already leave it out).",
    "informed": "Your information was added to the dispute; the source has to consider it.",
    "review": "Your request for human review was recorded; a reviewer will confirm or lift "
              "the measure and tell you why.",
    "granted": "Your consent was recorded.",
    "withdrawn": "Your consent was withdrawn; it stopped counting at once.",
}
"""What the page says after each form succeeded (``?done=...``)."""


@dataclass(frozen=True, slots=True)
class WhatIfForm:
    """The what-if panel's question (query parameters) and its answers."""

    remove: str = ""
    at: str = ""
    target: str = ""
    result: WhatIf | None = None
    takes: WhatItTakes | None = None
    error: str | None = None

    @property
    def asked(self) -> bool:
        """Whether anything was asked."""
        return bool(self.remove or self.at or self.target)


def _page_of(subject: str) -> str:
    return f"/portal/subjects/{quote(subject, safe='')}"


def _seq(field: str, text: str) -> int:
    if not text.strip():
        raise InputError(f"{field}: required: choose one")
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{field}: {text!r} is not a ledger seq (a positive integer)") \
            from None
    if value < 1:
        raise InputError(f"{field}: must be a positive integer")
    return value


def _date(field: str, text: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _ask(assessment: Assessment | None, remove: str, at: str, target: str) -> WhatIfForm:
    form = WhatIfForm(remove.strip(), at.strip(), target.strip())
    if not form.asked:
        return form
    try:
        if assessment is None:
            raise NotFoundError("what-if: there is no score to change yet")
        result = None
        if form.remove or form.at:
            result = what_if(assessment,
                             remove=[_seq("remove", form.remove)] if form.remove else [],
                             at=_date("at", form.at) if form.at else None)
        takes = None
        if form.target:
            takes = what_it_takes(assessment, parse_target(assessment.policy, form.target))
        return WhatIfForm(form.remove, form.at, form.target, result, takes)
    except TrustLedgerError as exc:
        return WhatIfForm(form.remove, form.at, form.target, error=str(exc))


def score_series(service: Service, assessment: Assessment) -> list[Evaluation]:
    """The subject's evaluation at each month start since its first event, and now.

    At most :data:`CHART_POINTS` dates (every few months for a long history, always
    ending with the last month start): each is a full evaluation.

    Each is :func:`trustledger.scoring.assess` valid at that date and known as of
    now — every event known today (one recorded late still shows when it happened),
    with today's consents, disputes and reviews — under the policy in force then;
    dates before any policy was in force are left out.
    The report's own history (what the ledger knew on each date) is the table.
    """
    if not assessment.events:
        return [assessment.evaluation]
    first = min(e.occurred_at for e in assessment.events)
    records = service.view.subject(assessment.subject).records
    out = []
    dates = history_dates(first, assessment.valid_at)
    step = max(1, -(-len(dates) // CHART_POINTS))
    for moment in dates[::-1][::step][::-1]:
        try:
            policy = service.view.policy_in_force(moment)
        except NotFoundError:
            continue
        out.append(assess(policy, assessment.subject, assessment.events, records,
                          moment, assessment.valid_at).evaluation)
    out.append(assessment.evaluation)
    return out


def _charts(report: Report, policy: CompiledPolicy, series: list[Evaluation],
            now: datetime, service: Service) -> list[dict[str, Any]]:
    versions = [(p.effective_from, p.name) for p in service.view.policies()]
    out = []
    for line in report.scorecards:
        card = policy.scorecards.get(line.name)
        if card is None or not line.consented:
            continue
        points = [(e.valid_at, e.scorecards[line.name].score if line.name in e.scorecards
                   else None) for e in series]
        marks = [Mark(e.occurred_at, e.seq, e.type, e.points,
                      card.is_adverse(e.points) if e.points is not None else None, e.counts)
                 for e in report.events if e.type in card.events]
        out.append({"name": line.name, "label": card.label or line.name,
                    "svg": score_chart(card, points, marks, now, f"chart-{line.name}",
                                       versions)})
    return out


def _disputable(assessment: Assessment) -> list[tuple[Event, bool]]:
    disputed = {d.event_seq for d in assessment.disputes}
    return [(e, is_adverse(assessment.policy, e)) for e in assessment.events
            if e.seq is not None and e.seq not in disputed]


def subject_view(request: Request, caller: Caller, session: Session, subject: str, *,
                 remove: str = "", at: str = "", target: str = "", done: str | None = None,
                 error: str | None = None, status: int = 200,
                 form: Form | None = None) -> Response:
    """The subject's page (``error``: a refused form, shown with ``status``)."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    now = service.now()
    policy: CompiledPolicy | None = None
    report: Report | None = None
    assessment: Assessment | None = None
    missing = None
    try:
        policy = service.view.policy_in_force(now)
        report = build_report(service.ledger, subject, now)
        assessment = current_assessment(service.view.subject(subject), policy, now, 0)
    except NotFoundError as exc:
        missing = str(exc)
    asked = _ask(assessment, remove, at, target)
    if asked.error and status == 200:
        status = 422
    targets: list[tuple[str, str]] = []
    if policy is not None:
        targets = [(f"{n}:{t.name}", f"tier {t.label or t.name} on {c.label or n}")
                   for n, c in policy.scorecards.items() for t in c.tiers]
        targets += [(n, m.label) for n, m in policy.measures.items()]
    return page(
        "subject.html.j2", status, caller=caller, csrf=session.csrf,
        title=f"Your trust record: {subject}", subject=subject, now=now, report=report,
        policy=policy, missing=missing,
        charts=_charts(report, policy, score_series(service, assessment), now, service)
        if report is not None and policy is not None and assessment is not None else [],
        disputable=_disputable(assessment) if assessment is not None else [],
        reviewable=[m for m in assessment.evaluation.measures.values()
                    if is_adverse_measure(m)] if assessment is not None else [],
        opt_in_cards=[(n, c.label or n) for n, c in policy.scorecards.items() if c.opt_in]
        if policy is not None else [],
        purposes=sorted(policy.purposes) if policy is not None else [],
        consents=[(c, c.active_at(now)) for c in consents(service.ledger, subject)],
        reads=access_log(service.ledger, subject), whatif=asked, targets=targets,
        notice=NOTICES.get(done or ""), error=error, form=form or {},
        base=_page_of(subject))


@router.get("")
async def subject_page(request: Request, subject: SubjectPath, remove: str = "", at: str = "",
                       target: str = "", done: str | None = None) -> Response:
    """The subject's own page; ``remove``, ``at``, ``target`` ask the what-if panel."""
    return await signed_in_page(request, lambda caller, session: subject_view(
        request, caller, session, subject, remove=remove, at=at, target=target, done=done))


async def _act(request: Request, subject: str, action: Any, done: str, anchor: str) -> Response:
    """Run a subject's form: the page again with the error if refused, else back with a notice."""

    def work(caller: Caller, session: Session, form: Form) -> Response:
        caller.require_subject(subject)
        service = service_of(request)
        service.begin(caller)
        try:
            action(caller, form)
        except TrustLedgerError as exc:
            status, _ = classify(exc)
            return subject_view(request, caller, session, subject, error=str(exc),
                                status=status, form=form)
        service.view.forget(subject)
        return redirect(f"{_page_of(subject)}?done={done}#{anchor}")

    return await signed_in_form(request, work)


@router.post("/disputes")
async def dispute(request: Request, subject: SubjectPath) -> Response:
    """Dispute one of your events, saying why (``event_seq``, ``reason``, ``new_information``)."""

    def action(caller: Caller, form: Form) -> None:
        seq = _seq("event_seq", form.get("event_seq", ""))
        open_dispute(service_of(request).ledger, subject, seq, form.get("reason", ""),
                     new_information=form.get("new_information") == "yes")

    return await _act(request, subject, action, "disputed", "disputes")


@router.post("/disputes/{dispute_seq}/information")
async def add_information(request: Request, subject: SubjectPath,
                          dispute_seq: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """Add information to an open dispute (``text``); within 30 days it extends the SLA to 45."""

    def action(caller: Caller, form: Form) -> None:
        add_dispute_information(service_of(request).ledger, dispute_seq, subject,
                                form.get("text", ""))

    return await _act(request, subject, action, "informed", "disputes")


@router.post("/reviews")
async def review(request: Request, subject: SubjectPath) -> Response:
    """Ask for human review of an adverse measure (``measure``, ``statement``)."""

    def action(caller: Caller, form: Form) -> None:
        service = service_of(request)
        now = service.now()
        assessment = current_assessment(service.view.subject(subject),
                                        service.view.policy_in_force(now), now, 0)
        measure = form.get("measure", "")
        if not measure:
            raise InputError("measure: required: choose the measure to be reviewed")
        request_review(service.ledger, assessment.evaluation, measure,
                       statement=form.get("statement", ""))

    return await _act(request, subject, action, "review", "reviews")


_CONSENT = TypeAdapter(ConsentRequest)


@router.post("/consents")
async def grant(request: Request, subject: SubjectPath) -> Response:
    """Grant a consent (``scope`` scorecard or decision) through the API's own handler."""

    def action(caller: Caller, form: Form) -> None:
        scope = form.get("scope", "")
        body: dict[str, Any] = {"scope": scope}
        if scope == "scorecard":
            body["scorecard"] = form.get("scorecard", "")
        elif scope == "decision":
            body["party"] = form.get("party", "").strip()
            body["purpose"] = form.get("purpose", "")
        else:
            raise InputError("scope: choose an opt-in to a scorecard or a decision consent")
        if form.get("expires_on"):
            body["expires_at"] = _date("expires_on", form["expires_on"])
        try:
            parsed = _CONSENT.validate_python(body)
        except ValidationError as exc:
            raise field_problems(exc) from None
        subjects_api.grant(request, caller, subject, parsed)

    return await _act(request, subject, action, "granted", "consents")


@router.post("/consents/{consent_seq}/withdraw")
async def withdraw(request: Request, subject: SubjectPath,
                   consent_seq: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """Withdraw a consent through the API's own handler."""

    def action(caller: Caller, form: Form) -> None:
        subjects_api.withdraw(request, caller, subject, consent_seq)

    return await _act(request, subject, action, "withdrawn", "consents")


@router.post("/key")
async def new_key(request: Request, subject: SubjectPath) -> Response:
    """Replace your API key: the new one is shown on this page only, the old one stops at once.

    The API's own handler issues it (:func:`trustledger.api.routers.subjects.replace_key`).
    Revoking the old key ends its sessions, so this answer starts a session for the new
    key (a new CSRF token). The page is never cached (``Cache-Control: no-store``).
    """

    def work(caller: Caller, session: Session, form: Form) -> Response:
        caller.require_subject(subject)
        try:
            issued = subjects_api.replace_key(request, caller, subject)
        except TrustLedgerError as exc:
            status, _ = classify(exc)
            return subject_view(request, caller, session, subject, error=str(exc),
                                status=status, form=form)
        fresh = new_session(issued.principal.id)
        holder = Caller(issued.principal, caller.epoch, None, 0.0)
        response = page("new_key.html.j2", title="Your new API key", caller=holder,
                        csrf=fresh.csrf, key=issued.key, base=_page_of(subject))
        response.headers["Cache-Control"] = "no-store"
        sessions_of(request).write(request, response, fresh)
        return response

    return await signed_in_form(request, work)
