"""The subjects' router: everything about themselves, and their rights.

Scores, reasons, events, consents and the access log; the full report (JSON or a
printable HTML page), what-if and "what it takes"; disputes, human review,
erasure, and a new key of one's own (the operator's copy of the first stops
working). Every route is for the subject themself (a subject key speaks for one
subject id): any other caller gets 403, so no one reads another's data here.
Reads by the subject are not access-logged; the access log is what *others* read.
The rights are :mod:`trustledger.rights`' functions, as on the command line.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request
from starlette.responses import HTMLResponse, Response

from trustledger.api import render
from trustledger.api import rights as shown
from trustledger.api.access import ACCESS_READ
from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import (
    AccessPage,
    ConsentOut,
    ConsentRequest,
    DecisionConsent,
    DisputeInformation,
    DisputeOut,
    DisputeRequest,
    ErasureOut,
    EventPage,
    IssuedOut,
    ReviewOut,
    ReviewRequest,
    SubjectReport,
    SubjectScores,
    WhatIfOut,
    WhatIfRequest,
)
from trustledger.api.service import Caller, Service
from trustledger.api.view import current_assessment
from trustledger.errors import InputError
from trustledger.ledger import event_of
from trustledger.ledger.chain import EVENT_KIND
from trustledger.principals import Issued, Role, list_principals, rotate_key
from trustledger.rights import (
    add_dispute_information,
    consents,
    disputes,
    erase,
    grant_decision_consent,
    grant_opt_in,
    open_dispute,
    request_review,
    reviews,
    withdraw_consent,
)
from trustledger.rights.erasure import refuse_if_erased
from trustledger.rights.html import report_html
from trustledger.rights.report import build_report
from trustledger.rights.whatif import Hypothetical, parse_target, what_if, what_it_takes
from trustledger.scoring import assess

router = APIRouter(prefix="/v1/subjects/{subject}", tags=["subjects"])

SubjectPath = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^\S(?:.*\S)?$",
                                  description="the subject id your key speaks for")]
After = Annotated[int, Query(ge=0, le=2**62, description="only entries after this seq")]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many")]
_READ = responses(401, 403, 404, 422, 429, 503)


def _own(request: Request, caller: Caller, subject: str) -> Service:
    """The service, once the caller is shown to speak for ``subject`` and the request has begun."""
    caller.require_subject(subject)
    service = service_of(request)
    service.begin(caller)
    return service


@router.get("/scores", response_model=SubjectScores, responses=_READ)
def scores(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Your current scores, tiers, measures and reasons, with every event's contribution."""
    service = _own(request, caller, subject)
    now = service.now()
    policy = service.view.policy_in_force(now)
    assessment = current_assessment(service.view.subject(subject), policy, now,
                                    service.settings.decision_max_age)
    return json_response(render.subject_scores(assessment, subject))


@router.get("/events", response_model=EventPage, responses=_READ)
def subject_events(request: Request, caller: CallerDep, subject: SubjectPath,
                   after: After = 0, limit: Limit = 100) -> Response:
    """Your events as the sources reported them, in ledger order (paged)."""
    service = _own(request, caller, subject)
    page = service.ledger.subject_page(subject, (EVENT_KIND,), after, limit)
    shown = [render.event(e) for entry in page if (e := event_of(entry)) is not None]
    return json_response({"events": shown,
                          "next_after": page[-1].seq if len(page) == limit else None})


@router.get("/consents", response_model=list[ConsentOut], responses=_READ)
def list_consents(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Every consent you granted, with withdrawals and whether each is active now."""
    service = _own(request, caller, subject)
    now = service.now()
    return json_response([render.consent(c, now) for c in consents(service.ledger, subject)])


@router.post("/consents", status_code=201, response_model=ConsentOut,
             responses=responses(401, 403, 413, 422, 429, 503))
def grant(request: Request, caller: CallerDep, subject: SubjectPath,
          body: Annotated[ConsentRequest, Body()]) -> Response:
    """Grant a consent: a relying party may ask for one purpose, or an opt-in to a scorecard."""
    service = _own(request, caller, subject)
    now = service.now()
    if body.expires_at is not None and body.expires_at <= now:
        raise InputError(f"expires_at: {body.expires_at.isoformat()} is not in the future")
    policy = service.view.policy_in_force(now)
    if isinstance(body, DecisionConsent):
        if body.purpose not in policy.purposes:
            raise InputError(f"purpose: {body.purpose!r} is not declared by policy "
                             f"{policy.name}; declared: {', '.join(policy.purposes) or 'none'}")
        _check_party(service, body.party, body.purpose)
        granted = grant_decision_consent(service.ledger, subject, body.party, body.purpose,
                                         expires_at=body.expires_at)
    else:
        card = policy.scorecards.get(body.scorecard)
        if card is None or not card.opt_in:
            opt_in = [n for n, c in policy.scorecards.items() if c.opt_in]
            raise InputError(f"scorecard: {body.scorecard!r} is not an opt-in scorecard of "
                             f"policy {policy.name}; opt-in: {', '.join(opt_in) or 'none'}")
        granted = grant_opt_in(service.ledger, subject, body.scorecard,
                               expires_at=body.expires_at)
    service.view.forget(subject)
    return json_response(render.consent(granted, service.now()), 201)


def _check_party(service: Service, party: str, purpose: str) -> None:
    parties = [p for p in list_principals(service.ledger)
               if p.role is Role.RELYING_PARTY and p.name == party]
    if not parties:
        raise InputError(f"party: there is no relying party named {party!r}")
    if not any(purpose in p.accreditations for p in parties):
        raise InputError(f"party: {party!r} is not accredited for purpose {purpose!r}, so it "
                         "could not ask for it")


@router.delete("/consents/{consent_seq}", response_model=ConsentOut,
               responses=responses(401, 403, 404, 422, 429, 503))
def withdraw(request: Request, caller: CallerDep, subject: SubjectPath,
             consent_seq: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """Withdraw a consent; it stops counting at once (a relying party's next ask is refused)."""
    service = _own(request, caller, subject)
    withdrawn = withdraw_consent(service.ledger, subject, consent_seq)
    service.view.forget(subject)
    return json_response(render.consent(withdrawn, service.now()))


@router.get("/access-log", response_model=AccessPage, responses=_READ)
def access_log(request: Request, caller: CallerDep, subject: SubjectPath,
               after: After = 0, limit: Limit = 100) -> Response:
    """Who read your data: principal, role, purpose, what and when (paged)."""
    service = _own(request, caller, subject)
    page = service.ledger.subject_page(subject, (ACCESS_READ,), after, limit)
    return json_response({"reads": [render.access(e) for e in page if e.payload is not None],
                          "next_after": page[-1].seq if len(page) == limit else None})


_WRITE = responses(401, 403, 404, 413, 422, 429, 503)
WHATIF_HORIZON = timedelta(days=100 * 365)
"""How far ahead a what-if may ask (dates beyond any event's expiry change nothing more)."""


@router.get("/report", response_model=SubjectReport, responses=_READ)
def report(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Your full report: every event, contributions over time, scores, reasons, rights, reads."""
    service = _own(request, caller, subject)
    return json_response(build_report(service.ledger, subject, service.now()).to_dict())


@router.get("/report.html", response_class=HTMLResponse, responses={
    200: {"description": "the report as one self-contained, printable HTML page",
          "content": {"text/html": {"schema": {"type": "string"}}}}, **_READ})
def report_page(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Your full report as a printable HTML page (print it or save it as PDF)."""
    service = _own(request, caller, subject)
    page = report_html(build_report(service.ledger, subject, service.now()))
    return HTMLResponse(page)


@router.post("/whatif", response_model=WhatIfOut, responses=_WRITE)
def whatif(request: Request, caller: CallerDep, subject: SubjectPath,
           body: WhatIfRequest) -> Response:
    """Your score, tier and measures if events were removed or added, or at another date.

    With ``reach`` (``SCORECARD:TIER``, the tier by name or label, or a measure), also what
    it takes to get there: the events the policy rewards that would (``paths``: how many,
    how often, by when), the day decay alone does, and the fewest of your adverse events
    whose removal (a successful dispute) would. With
    ``attributes``, statistical scorecards are evaluated with them, before and after, as a
    decision given them is (an unknown or mistyped one is a 422 naming it). Nothing
    is recorded.
    """
    service = _own(request, caller, subject)
    now = service.now()
    policy = service.view.policy_in_force(now)
    if body.at is not None and body.at > now + WHATIF_HORIZON:
        raise InputError(f"at: {body.at.isoformat()} is more than "
                         f"{WHATIF_HORIZON.days // 365} years ahead; ask about a nearer date")
    target = parse_target(policy, body.reach) if body.reach is not None else None
    state = service.view.subject(subject)
    # Decision-time attributes make the assessment this request's own, as for a decision.
    assessment = current_assessment(state, policy, now, service.settings.decision_max_age) \
        if body.attributes is None else \
        assess(policy, state.subject, state.events, state.records, now, None,
               attributes=body.attributes)
    added = [Hypothetical(h.type, h.occurred_at, h.attributes, h.recorded_at)
             for h in body.add]
    result = what_if(assessment, remove=body.remove, add=added, at=body.at)
    takes = what_it_takes(assessment, target) if target is not None else None
    answer = shown.what_if(result, policy, takes)
    if takes is not None:
        answer["what_it_takes"]["paths"] = [render.positive_path(p) for p in takes.paths]
    return json_response(answer)


@router.get("/disputes", response_model=list[DisputeOut], responses=_READ)
def list_disputes(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Every dispute you opened: where it stands, the source's answer, the reviewer's reason."""
    service = _own(request, caller, subject)
    now = service.now()
    return json_response([shown.dispute(d, now) for d in disputes(service.ledger, subject)])


@router.post("/disputes", status_code=201, response_model=DisputeOut, responses=_WRITE)
def dispute(request: Request, caller: CallerDep, subject: SubjectPath,
            body: DisputeRequest) -> Response:
    """Dispute one of your events: while open, an adverse event stops counting against you.

    Its source has 30 days to verify it (45 with ``new_information``); unverified by
    then, it is removed from scoring. A reviewer may resolve it at any time.
    """
    service = _own(request, caller, subject)
    opened = open_dispute(service.ledger, subject, body.event_seq, body.reason,
                          new_information=body.new_information)
    service.view.forget(subject)
    return json_response(shown.dispute(opened, service.now()), 201)


@router.post("/disputes/{dispute_seq}/information", response_model=DisputeOut,
             responses=_WRITE)
def dispute_information(request: Request, caller: CallerDep, subject: SubjectPath,
                        dispute_seq: Annotated[int, Path(ge=1, le=2**62)],
                        body: DisputeInformation) -> Response:
    """Add information to your open dispute (within its first 30 days: the SLA becomes 45)."""
    service = _own(request, caller, subject)
    added = add_dispute_information(service.ledger, dispute_seq, subject, body.text)
    service.view.forget(subject)
    return json_response(shown.dispute(added, service.now()))


@router.get("/reviews", response_model=list[ReviewOut], responses=_READ)
def list_reviews(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Every human review you asked for, and the reviewer's decision with its written reason."""
    service = _own(request, caller, subject)
    now = service.now()
    return json_response([shown.review(r, now) for r in reviews(service.ledger, subject)])


@router.post("/reviews", status_code=201, response_model=ReviewOut, responses=_WRITE)
def review(request: Request, caller: CallerDep, subject: SubjectPath,
           body: ReviewRequest) -> Response:
    """Ask for human review of a restriction in force or a privilege denied (GDPR Art. 22(3))."""
    service = _own(request, caller, subject)
    now = service.now()
    policy = service.view.policy_in_force(now)
    # The decision as it stands now (never a reused one): the review is about this one.
    assessment = current_assessment(service.view.subject(subject), policy, now, 0.0)
    requested = request_review(service.ledger, assessment.evaluation, body.measure,
                               statement=body.statement)
    service.view.forget(subject)
    return json_response(shown.review(requested, service.now()), 201)


@router.post("/key", status_code=201, response_model=IssuedOut, responses=_WRITE)
def new_key(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """A new API key for you; the key you called with stops working at once.

    The operator saw the key they issued you: after this, only you hold a key that
    speaks for you. The new key is in this response only. 422 once you were erased
    (nothing new is recorded about an erased subject).
    """
    issued = replace_key(request, caller, subject)
    return json_response({"principal": render.principal(issued.principal),
                          "key": issued.key}, 201)


def replace_key(request: Request, caller: Caller, subject: str) -> Issued:
    """Issue the calling subject a new key and revoke the one they hold (API and portal).

    :class:`~trustledger.errors.InputError` (422) once the subject was erased.
    """
    service = _own(request, caller, subject)
    refuse_if_erased(service.ledger, subject, "no new key")
    issued = rotate_key(service.ledger, caller.principal.id)
    service.view.sync()
    return issued


@router.post("/erasure", status_code=201, response_model=ErasureOut, responses=_WRITE)
def erasure(request: Request, caller: CallerDep, subject: SubjectPath) -> Response:
    """Erase your data: every payload about you is purged; no score is computed any more.

    From then on a relying party gets what it gets for a subject it never heard of (no
    consent: 403), nothing new is recorded about you (consents are refused, so are
    subscriptions), and a second request is 422; the ledger's chain still verifies. The
    erasure is recorded without personal data. It cannot be undone.
    """
    service = _own(request, caller, subject)
    done = erase(service.ledger, subject)
    service.view.forget(subject)
    return json_response({"seq": done.seq, "recorded_at": done.recorded_at,
                          "purged": done.purged, "first_purge_seq": done.first_purge_seq,
                          "last_purge_seq": done.last_purge_seq}, 201)
