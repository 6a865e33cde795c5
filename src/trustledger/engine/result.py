"""What an evaluation returns: frozen records that explain every number they carry.

An :class:`Evaluation` is a versioned decision record: it names the policy hash,
the valid time, the knowledge time and the highest ledger position it used, so
it can be reproduced. Every score lists every event's contribution, and every
score and measure carries up to four specific principal reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from trustledger.policy.models import MeasureKind
from trustledger.policy.taxonomy import Gravity

EventKey = tuple[str, str]
"""An event's identity: ``(source, source_event_id)``."""

MAX_REASONS = 4
"""At most this many principal reasons per score and per measure."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One specific reason, in words, with the event and points it is about when it has them."""

    text: str
    event: EventKey | None = None
    points: float | None = None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What became of one event the evaluation saw (known and occurred by ``valid_at``).

    ``points`` are the event's own points (after its ``when`` condition, before
    any scorecard cap); ``points_now`` the same decayed to ``valid_at`` (0 when
    not counted). ``counts_until`` is when it stops counting (expiry, overhang
    or retention), ``None`` when it never counted.
    """

    event: EventKey
    type: str
    occurred_at: datetime
    recorded_at: datetime
    seq: int | None
    points: float
    points_now: float
    counted: bool
    why_not: str | None
    counts_until: datetime | None


@dataclass(frozen=True, slots=True)
class Contribution:
    """One event's contribution to one scorecard.

    ``points`` are the event's original points, ``capped`` what the scorecard's
    caps let through, ``points_now`` the capped points decayed to ``valid_at``
    (0 when not counted). ``notes`` say what a cap or an overhang did.
    """

    event: EventKey
    type: str
    label: str
    occurred_at: datetime
    points: float
    capped: float
    points_now: float
    counts_until: datetime | None
    counted: bool
    why_not: str | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PointsSetBack:
    """Points set back on a scorecard because a measure's prerequisite had not been given.

    ``measure`` was reached on ``at`` without ``prerequisite`` having been given, so the
    points were set to ``to``: ``points`` is the change (``to`` minus the total then). It
    counts until ``counts_until``, when the last entry it reduced stops counting
    (``None``: never); ``counted`` says whether it counts at ``valid_at``.
    """

    measure: str
    prerequisite: str
    at: datetime
    to: float
    points: float
    counts_until: datetime | None
    counted: bool
    text: str


@dataclass(frozen=True, slots=True)
class FeatureScore:
    """One feature of a statistical score: where its value came from, its bin and points.

    ``source`` is ``metric <name>`` or ``attribute <name>``; ``value`` ``None`` when
    missing (it then scores as the model's missing bin).
    """

    feature: str
    description: str
    source: str
    value: float | int | str | None
    bin: str
    points: float
    max_points: float


@dataclass(frozen=True, slots=True)
class ScorecardResult:
    """A scorecard's score at ``valid_at``, its tier, its contributions and reasons.

    An opt-in scorecard without the subject's consent has ``consented=False``
    and produces nothing: no score, no tier, no contributions.
    ``total`` is ``base + Σ points_now`` (plus the ``set_backs`` counting at ``valid_at``)
    before the floor and ceiling.
    A statistical scorecard names its ``model`` (``sha256:…``), has no contributions
    and lists its ``features`` instead; its score and total are the model's points.
    """

    name: str
    consented: bool
    score: float | None
    tier: str | None
    total: float | None
    contributions: tuple[Contribution, ...]
    reasons: tuple[Reason, ...]
    model: str | None = None
    features: tuple[FeatureScore, ...] = ()
    set_backs: tuple[PointsSetBack, ...] = ()


class MeasureState(StrEnum):
    """The state of a measure at ``valid_at``."""

    GRANTED = "granted"
    DENIED = "denied"
    ACTIVE = "active"
    INACTIVE = "inactive"
    SET_BACK = "set_back"


@dataclass(frozen=True, slots=True)
class MeasureResult:
    """A privilege or restriction at ``valid_at``: state, since when, and why.

    ``in_force`` is true for a granted privilege or an active restriction.
    ``since`` is when the current state began (``None``: it has held from the
    start of the subject's history). ``held_until`` is set while a minimum
    holding time keeps the measure in force although its condition no longer holds.
    """

    name: str
    label: str
    kind: MeasureKind
    domain: str
    severity: Gravity | None
    state: MeasureState
    in_force: bool
    since: datetime | None
    held_until: datetime | None
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of :func:`~trustledger.engine.evaluate`: a reproducible decision record.

    ``known_at`` is ``None`` when no knowledge limit was applied;
    ``subject`` and ``ledger_seq`` (the highest ledger position) come from the known
    events only, so a record is the same as if later-recorded events had not been given.
    ``metrics`` holds each metric's value (``None`` when it is scoped to an
    opt-in scorecard without consent).
    """

    policy: str
    policy_hash: str
    subject: str | None
    valid_at: datetime
    known_at: datetime | None
    ledger_seq: int | None
    scorecards: Mapping[str, ScorecardResult]
    metrics: Mapping[str, float | None]
    measures: Mapping[str, MeasureResult]
    events: tuple[EventOutcome, ...]
    attributes: Mapping[str, float | int | str | None] = field(default_factory=dict)
    """The decision-time attributes the evaluation was given (statistical scorecards)."""
