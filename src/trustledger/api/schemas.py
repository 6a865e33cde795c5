"""The shapes of requests and responses: the API's OpenAPI schema is generated from these.

Requests refuse unknown fields. Responses are built as plain JSON by the routers
(see :mod:`trustledger.api.render`) and match these models; the schemathesis test
checks every response against the published schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from trustledger.engine.events import in_utc
from trustledger.principals import Role

Text = Annotated[str, StringConstraints(min_length=1, max_length=256,
                                        pattern=r"^\S(?:.*\S)?$")]
"""A name or id: 1-256 characters, no surrounding whitespace."""


def _representable(moment: datetime) -> datetime:
    in_utc(moment)  # a ValueError (HTTP 422 naming the field) outside the years 1-9999 in UTC
    return moment


Moment = Annotated[AwareDatetime, AfterValidator(_representable)]
"""A date-time with a UTC offset whose UTC moment is representable (years 1-9999)."""

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""An identifier of the policy language (event type, purpose, scorecard)."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- sources ----------------------------------------------------------------------------------

class EventSubmission(_In):
    """An event as a source sends it (the plain form). ``source`` defaults to the caller."""

    source_event_id: Text = Field(description="the source's own id: the idempotency key")
    subject: Text
    type: Text = Field(description="an event type of the policy in force the source is "
                                   "accredited for")
    occurred_at: Moment = Field(description="when it happened, with a UTC offset")
    attributes: dict[str, Any] = Field(default_factory=dict,
                                       description="as the event type's schema says")
    supersedes: Text | None = Field(None, description="an earlier event of this source that "
                                                      "this one corrects")
    source: Text | None = Field(None, description="must be the caller's name if given")


class CloudEvent(_In):
    """A CloudEvents 1.0 event in structured JSON mode (``application/cloudevents+json``).

    ``id`` is the source's event id, ``type`` the event type, ``time`` when it
    happened, ``data`` the attributes; ``supersedes`` is an extension attribute.
    """

    specversion: Literal["1.0"]
    id: Text
    source: Text = Field(description="must be the caller's name")
    type: Text
    subject: Text
    time: Moment
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = None
    data: dict[str, Any] | None = None
    supersedes: Text | None = None


class EventBatch(_In):
    """A batch of events in the plain form: all are appended, or none."""

    events: list[EventSubmission] = Field(min_length=1)


class Retraction(_In):
    """Withdraw one of the caller's events: a new event of type ``retraction``."""

    source_event_id: Text = Field(description="the retraction's own id (idempotency key)")
    occurred_at: Moment | None = Field(None, description="default: now")


class Correction(_In):
    """Correct one of the caller's events: a new event that supersedes it."""

    source_event_id: Text = Field(description="the correction's own id (idempotency key)")
    type: Text
    occurred_at: Moment
    attributes: dict[str, Any] = Field(default_factory=dict)


class Appended(_Out):
    """One event in the ledger: newly ``appended``, or ``existing`` (sent before)."""

    status: Literal["appended", "existing"]
    seq: int
    hash: str
    recorded_at: datetime
    source: str
    source_event_id: str
    subject: str


class BatchAppended(_Out):
    """A batch in the ledger: how many events were new, and the chain's head after it.

    ``existing`` counts the events appended before and those repeated within the batch.
    """

    appended: int
    existing: int
    head_seq: int
    head_hash: str


# -- decisions and subjects --------------------------------------------------------------------

class DecisionRequest(_In):
    """A relying party's question: this subject's decision for this declared purpose."""

    subject: Text
    purpose: Ident
    attributes: dict[Ident, StrictInt | StrictFloat | StrictStr | StrictBool | None] | None = None
    """Values for the policy's statistical scorecards' features, supplied at decision time
    (one not given scores as the model's missing bin)."""


class EventRef(_Out):
    """An event's identity."""

    source: str
    source_event_id: str


class ReasonOut(_Out):
    """One principal reason, in words, with the event and points it is about."""

    text: str
    event: EventRef | None = None
    points: float | None = None


class ScoreOut(_Out):
    """A scorecard's score and tier with its principal reasons (nothing without opt-in)."""

    label: str
    consented: bool
    score: float | None
    tier: str | None
    reasons: list[ReasonOut]


class MeasureOut(_Out):
    """A privilege or restriction: its state, since when, and why."""

    label: str
    kind: Literal["privilege", "restriction"]
    domain: str
    state: Literal["granted", "denied", "active", "inactive", "set_back"]
    in_force: bool
    since: datetime | None
    held_until: datetime | None
    reasons: list[ReasonOut]


class Decision(_Out):
    """A decision for one purpose: only the measures and scorecards the purpose discloses.

    A versioned record: it names the policy hash, the time it is for and the ledger
    position it used; ``access_seq`` is the access-log entry that recorded this read.
    """

    subject: str
    purpose: str
    purpose_label: str
    party: str
    policy: str
    policy_hash: str
    valid_at: datetime
    ledger_seq: int | None
    access_seq: int
    scorecards: dict[str, ScoreOut]
    measures: dict[str, MeasureOut]


class ContributionOut(_Out):
    """One event's contribution to one scorecard: points then, capped, now, until when."""

    event: EventRef
    type: str
    label: str
    occurred_at: datetime
    points: float
    capped: float
    points_now: float
    counts_until: datetime | None
    counted: bool
    why_not: str | None
    notes: list[str]


class SetBackOut(_Out):
    """Points set back because a measure was reached before its prerequisite notice was given."""

    measure: str
    prerequisite: str
    at: datetime
    to: float
    points: float
    counts_until: datetime | None
    counted: bool
    text: str


class ScoreDetail(ScoreOut):
    """A scorecard with its full derivation: every contribution and every set-back."""

    total: float | None
    contributions: list[ContributionOut]
    set_backs: list[SetBackOut]


class LeftOutOut(_Out):
    """An event scoring leaves out while it is disputed, and why."""

    event: EventRef
    note: str


class SubjectScores(_Out):
    """Everything the subject's current evaluation says, derivation included."""

    subject: str
    policy: str
    policy_hash: str
    valid_at: datetime
    ledger_seq: int | None
    scorecards: dict[str, ScoreDetail]
    measures: dict[str, MeasureOut]
    metrics: dict[str, float | None]
    left_out: list[LeftOutOut]


class EventOut(_Out):
    """One of the subject's events as recorded."""

    seq: int
    source: str
    source_event_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    attributes: dict[str, Any]
    supersedes: str | None


class EventPage(_Out):
    """A page of events in ledger order; ask again with ``after=next_after`` for more."""

    events: list[EventOut]
    next_after: int | None


class DecisionConsent(_In):
    """Consent for one relying party to ask for decisions for one purpose."""

    scope: Literal["decision"]
    party: Text
    purpose: Ident
    expires_at: Moment | None = None


class ScorecardOptIn(_In):
    """Opt-in to an opt-in scorecard (it produces nothing without it)."""

    scope: Literal["scorecard"]
    scorecard: Ident
    expires_at: Moment | None = None


ConsentRequest = Annotated[DecisionConsent | ScorecardOptIn, Field(discriminator="scope")]
"""A consent to grant: a decision consent or a scorecard opt-in."""


class ConsentOut(_Out):
    """A consent as recorded, with its withdrawal if any."""

    seq: int
    scope: Literal["decision", "scorecard"]
    party: str | None
    purpose: str | None
    scorecard: str | None
    granted_at: datetime
    expires_at: datetime | None
    withdrawn_at: datetime | None
    active: bool


class AccessOut(_Out):
    """One read of the subject's data by someone else."""

    seq: int
    at: datetime
    principal: str
    name: str
    role: str
    purpose: str
    read: str


class AccessPage(_Out):
    """A page of the access log; ask again with ``after=next_after`` for more."""

    reads: list[AccessOut]
    next_after: int | None


# -- subject rights: report, what-if, disputes, human review, erasure --------------------------

Reason = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
"""Free text a person writes (a dispute's reason, a reviewer's written reason): 1-4000."""

Note = Annotated[str, StringConstraints(max_length=4000)]
"""Optional free text (a statement, a source's note): at most 4000 characters."""


class SubjectReport(BaseModel):
    """The subject's full report (see docs/rights.md): every event, score, reason and right.

    The same document as ``trustledger report SUBJECT --json``; a section the report
    gains (as ``notifications`` did) is passed on, hence no ``additionalProperties: false``.
    """

    model_config = ConfigDict(extra="allow")

    subject: str
    as_of: datetime
    policy: str
    policy_hash: str
    ledger_seq: int
    ledger_hash: str
    scorecards: list[dict[str, Any]]
    measures: list[dict[str, Any]]
    events: list[dict[str, Any]]
    history: list[dict[str, Any]]
    disputes: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    access_log: list[dict[str, Any]]
    purged_events: int
    notifications: list[dict[str, Any]] = Field(
        default_factory=list, description="every notification sent about you (cascades)")


class HypotheticalEvent(_In):
    """An event that might happen (what-if); ``recorded_at`` defaults to ``occurred_at``."""

    type: Ident
    occurred_at: Moment
    attributes: dict[str, Any] = Field(default_factory=dict)
    recorded_at: Moment | None = None


class WhatIfRequest(_In):
    """A modified history to evaluate, and/or a target to reach.

    ``remove``: ledger seqs of your events to leave out; ``add``: hypothetical events;
    ``at``: the moment to evaluate (default now; usually a future date); ``reach``:
    ``SCORECARD:TIER`` or a measure's name — what it takes to reach it;
    ``attributes``: decision-time values for the policy's statistical scorecards, as a
    decision is given them (``before``, ``after`` and what it takes use them).
    """

    remove: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(default_factory=list,
                                                                 max_length=100)
    add: list[HypotheticalEvent] = Field(default_factory=list, max_length=100)
    at: Moment | None = None
    reach: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    attributes: dict[Ident, StrictInt | StrictFloat | StrictStr | StrictBool | None] | None = None
    """Values for the policy's statistical scorecards' features, as in a decision request
    (one not given scores as the model's missing bin)."""


class WhatIfEventOut(_Out):
    """An event removed or added by a what-if."""

    seq: int | None
    source: str
    source_event_id: str
    type: str
    occurred_at: datetime


class OutcomeOut(_Out):
    """Scores, tiers and measures of one evaluation, with reasons."""

    valid_at: datetime
    scorecards: dict[str, ScoreOut]
    measures: dict[str, MeasureOut]


class PositivePathOut(_Out):
    """A positive path: ``count`` events of one rewarded type, ``every_days`` apart.

    The first on the moment asked about, the last on ``reached_at``, when the history
    with them reaches the target (one fewer on this schedule does not). ``points`` are
    each event's own (full precision), before caps and decay; ``events`` can be sent back
    as ``add`` to see it.
    """

    type: str
    label: str
    attributes: dict[str, Any]
    points: float
    count: int
    every_days: int
    paced_by: str
    first_at: datetime
    reached_at: datetime
    events: list[HypotheticalEvent]
    text: str


class WhatItTakesOut(_Out):
    """What it takes to reach a target: new events, the day decay alone does, fewest removals.

    ``target`` is ``SCORECARD:TIER`` (the tier's name, however it was asked for) or a
    measure's name; ``paths`` are the positive paths, soonest first (empty when none
    reaches it alone within five years; ``summary`` says why).
    """

    target: str
    reached_now: bool
    by_decay_at: datetime | None
    removals: list[WhatIfEventOut] | None
    removals_exact: bool
    candidates: list[WhatIfEventOut]
    summary: list[str]
    paths: list[PositivePathOut] = Field(default_factory=list)


class WhatIfOut(_Out):
    """The current decision and the decision for the modified history (``after``)."""

    valid_at: datetime
    removed: list[WhatIfEventOut]
    added: list[WhatIfEventOut]
    changes: list[str]
    before: OutcomeOut
    after: OutcomeOut
    what_it_takes: WhatItTakesOut | None


class DisputeRequest(_In):
    """Dispute one of your events (by ledger seq), saying why.

    ``new_information``: you give information the source did not have (it then has 45
    days instead of 30 to verify the event).
    """

    event_seq: int = Field(ge=1, le=2**62)
    reason: Reason
    new_information: bool = False


class DisputeInformation(_In):
    """Information added to an open dispute (within 30 days it extends the SLA to 45)."""

    text: Reason


class SourceAnswerOut(_Out):
    """The source's answer to a dispute."""

    at: datetime
    source: str
    answer: Literal["verified", "corrected", "retracted"]
    note: str
    event_seq: int | None


class ResolutionOut(_Out):
    """A reviewer's resolution of a dispute, with the written reason the subject sees."""

    at: datetime
    reviewer: str
    outcome: Literal["valid", "invalid"]
    reason: str


class InformationOut(_Out):
    """Information the subject added to a dispute."""

    seq: int
    at: datetime
    text: str


class DisputeOut(_Out):
    """A dispute: the event, the reason, the deadline, where it stands, and its effect."""

    seq: int
    subject: str
    event_seq: int
    event: EventRef
    reason: str
    opened_at: datetime
    new_information: bool
    information: list[InformationOut]
    deadline: datetime
    status: Literal["open", "verified", "corrected", "retracted", "lapsed", "valid", "invalid"]
    note: str
    answer: SourceAnswerOut | None
    resolution: ResolutionOut | None


class DisputeAnswer(_In):
    """The disputed event's source answers: ``verified``, ``corrected`` or ``retracted``.

    A correction is a new event of yours superseding the disputed one (``source_event_id``,
    ``type``, ``occurred_at``, ``attributes``); a retraction is one of type ``retraction``
    (``source_event_id``; ``occurred_at`` defaults to now). A verification carries none.
    """

    answer: Literal["verified", "corrected", "retracted"]
    note: Note = ""
    source_event_id: Text | None = Field(None, description="the correcting or retracting "
                                                           "event's own id")
    type: Text | None = Field(None, description="the correction's event type")
    occurred_at: Moment | None = None
    attributes: dict[str, Any] | None = None


class DisputeResolution(_In):
    """A reviewer's finding: ``valid`` (the event counts again) or ``invalid`` (removed)."""

    outcome: Literal["valid", "invalid"]
    reason: Reason


class ReviewRequest(_In):
    """Ask for human review of a restriction in force or a privilege denied (its name)."""

    measure: Ident
    statement: Note = ""


class ReviewOut(_Out):
    """A request for human review and, once decided, the reviewer's decision and reason."""

    seq: int
    subject: str
    measure: str
    label: str
    kind: Literal["privilege", "restriction"]
    state: Literal["granted", "denied", "active", "inactive", "set_back"]
    since: datetime | None
    policy_hash: str
    requested_at: datetime
    due_at: datetime
    statement: str
    decision: Literal["confirmed", "lifted"] | None
    reviewer: str | None
    reason: str | None
    resolved_at: datetime | None
    note: str


class ReviewResolution(_In):
    """A reviewer confirms or lifts the reviewed measure, with a written reason."""

    decision: Literal["confirmed", "lifted"]
    reason: Reason


class ErasureOut(_Out):
    """A completed erasure: its record (no personal data) and how many payloads it purged."""

    seq: int
    recorded_at: datetime
    purged: int
    first_purge_seq: int | None
    last_purge_seq: int | None


class QueueItem(_Out):
    """One case waiting for a reviewer: a dispute or a human-review request, and its due date."""

    kind: Literal["dispute", "review"]
    seq: int
    subject: str
    opened_at: datetime
    due_at: datetime
    overdue: bool
    status: str


class ReviewQueue(_Out):
    """Open disputes and pending reviews, earliest due first."""

    as_of: datetime
    items: list[QueueItem]


class CaseDecisionOut(OutcomeOut):
    """The subject's assessment as it stood when a case was opened: what the decision rested on.

    The ledger up to ``ledger_seq`` (just before the case), valid at ``valid_at``, under
    the policy version ``policy_hash``: scores, tiers and measures with their reasons.
    """

    ledger_seq: int
    policy: str
    policy_hash: str


class CaseEventOut(_Out):
    """An event a case is about, and what it did when the case was opened.

    ``role``: ``disputed``, ``superseded`` (the event the disputed one corrected),
    ``correction`` (the source's answer), ``reason`` (named in the reviewed measure's
    reasons) or ``evidence`` (counting in what the measure reads). ``points`` are its
    own points, ``points_then`` decayed to the decision; ``null`` when it did not count.
    A purged event has only its ``seq``.
    """

    seq: int | None
    role: Literal["disputed", "superseded", "correction", "reason", "evidence"]
    source: str | None
    source_event_id: str | None
    type: str | None
    occurred_at: datetime | None
    recorded_at: datetime | None
    attributes: dict[str, Any] | None
    points: float | None
    points_then: float | None
    counted: bool
    note: str


class _CaseFacts(_Out):
    decided: CaseDecisionOut | None = Field(
        description="the assessment when the case was opened (null: nothing to assess)")
    decided_note: str = Field(description="what ``decided`` is, or why there is none")
    events: list[CaseEventOut]
    disputes: list[DisputeOut] = Field(description="every dispute of the subject, as now")
    overdue: bool


class ReviewerDisputeOut(DisputeOut, _CaseFacts):
    """A dispute as a reviewer reads it: the dispute, and what deciding it rests on."""


class ReviewerReviewOut(ReviewOut, _CaseFacts):
    """A human-review request as a reviewer reads it: the request, and what it rests on."""


class SourceDisputes(_Out):
    """Disputes about your events (open ones unless asked for all)."""

    disputes: list[DisputeOut]


# -- operator ----------------------------------------------------------------------------------

class PolicySubmission(_In):
    """A policy version to publish: the YAML document as text."""

    source: str = Field(min_length=1, description="the policy document (YAML)")


class PurposeOut(_Out):
    """A purpose a policy declares."""

    label: str
    domain: str
    measures: list[str]
    scorecards: list[str]


class PolicyOut(_Out):
    """A published policy version."""

    seq: int
    name: str
    hash: str
    effective_from: datetime
    published_at: datetime
    in_force: bool
    register_hash: str | None = Field(description="the event-type register the version was "
                                                  "published under (null: published before "
                                                  "the register existed)")
    purposes: dict[str, PurposeOut]


class RegisterSubmission(_In):
    """A register version to propose: the YAML document as text."""

    source: str = Field(min_length=1, description="the event-type register document (YAML)")


class RegisteredTypeOut(_Out):
    """One event type as the register declares it (and any further keys it declares)."""

    model_config = ConfigDict(extra="allow")

    label: str | None = None
    description: str = ""
    domain: str
    category: str
    gravity: str
    attributes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RegisterOut(_Out):
    """The event-type register in force: what each type is (policies give it points)."""

    name: str
    hash: str
    seq: int = Field(description="ledger position of its proposal")
    proposed_by: str
    approved_by: str
    approved_at: datetime
    event_types: dict[str, RegisteredTypeOut]


class ProposalOut(_Out):
    """A proposed register version and where it stands."""

    seq: int
    name: str
    hash: str
    status: Literal["pending", "in_force", "replaced", "superseded"] = Field(
        description="pending: awaits a second operator's approval; in_force: approved, the "
                    "register in force; replaced: approved, then replaced by a later "
                    "approval; superseded: another register was approved after it was "
                    "proposed (propose it again)")
    proposed_by: str
    proposed_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    superseded_by: str | None


class PrincipalRequest(_In):
    """A principal to issue a key for."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}$")]
    role: Role
    accreditations: list[Ident] = Field(default_factory=list,
                                        description="event types (source) or purposes "
                                                    "(relying party)")
    domains: list[Ident] = Field(default_factory=list,
                                 description="a source's domains: it reports only the types "
                                             "the register in force puts in these (required "
                                             "for a source, none for other roles)")
    subject: Text | None = Field(None, description="the subject a subject principal "
                                                   "speaks for")
    rate_limit: float | None = Field(None, gt=0, le=1_000_000,
                                     description="requests per second (default: the "
                                                 "service's)")


class PrincipalOut(_Out):
    """A principal (never its key)."""

    id: str
    name: str
    role: Role
    accreditations: list[str]
    domains: list[str]
    subject: str | None
    rate_limit: float | None
    created_at: datetime
    revoked_at: datetime | None


class IssuedOut(_Out):
    """A principal just issued and its API key: shown this once, stored only hashed."""

    principal: PrincipalOut
    key: str


class Cell(_Out):
    """One cell of an aggregate: a count of subjects, or ``null`` when suppressed."""

    label: str
    subjects: int | None
    suppressed: bool


class Bin(_Out):
    """One histogram bin [low, high): a count of subjects, or ``null`` when suppressed."""

    low: float
    high: float
    subjects: int | None
    suppressed: bool


class ScorecardStatistics(_Out):
    """One scorecard over the population."""

    scored: int | None
    not_consented: int | None
    histogram: list[Bin]
    tiers: list[Cell]


class Statistics(_Out):
    """Aggregates over every subject; cells under ``suppress_below`` subjects are suppressed."""

    status: Literal["ready"]
    computed_at: datetime
    ledger_seq: int
    stale: bool
    policy: str
    policy_hash: str
    subjects: int
    suppress_below: int
    scorecards: dict[str, ScorecardStatistics]
    measures: list[Cell]


class StatisticsPending(_Out):
    """Statistics are being computed; ask again after ``retry_after`` seconds."""

    status: Literal["computing"]
    stage: Literal["reading", "query", "scoring", "measures"]
    """What the computation is doing: reading the ledger, the columnar query, scoring
    subjects one by one, or deciding the columnar path's measures."""
    entries_read: int
    """Ledger entries read so far."""
    entries: int | None
    """The ledger's position when the computation began (``None`` until known)."""
    done: int
    """Subjects scored so far."""
    total: int | None
    """Subjects to score (``None`` while the ledger is being read)."""
    retry_after: int


# -- system ------------------------------------------------------------------------------------

class Health(_Out):
    """The service is up and reads its ledger."""

    status: Literal["ok"]
    database: str
    ledger_seq: int
