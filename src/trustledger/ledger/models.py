"""The ledger's values: an event as a source submits it, an entry as the ledger stores it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from trustledger.events import RETRACTION, in_utc
from trustledger.ledger.chain import json_problems

_TEXT_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_TEXT_PATTERN)]
"""An identifier: 1-256 characters, no control characters, no surrounding whitespace."""


def _problem(field: str, reason: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("event", "{reason}", {"reason": reason}), loc=(field,), input=value
    )


class EventIn(BaseModel):
    """An event as a source submits it; validated, nothing else accepted.

    ``occurred_at`` must carry a UTC offset (naive date-times are refused; the
    ledger stores it in UTC). ``attributes`` is a JSON object. ``supersedes`` names
    an earlier event of the same source by its ``source_event_id``: this event
    corrects it, or, when ``type`` is :data:`trustledger.engine.RETRACTION`,
    withdraws it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Name
    source_event_id: Name
    subject: Name
    type: Name
    occurred_at: AwareDatetime
    attributes: dict[str, Any] = Field(default_factory=dict)
    supersedes: Name | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # One Python call per event for every check pydantic cannot make itself.
        if isinstance(data, dict) and type(data.get("occurred_at")) in (int, float):
            # Lax pydantic would read 1700000000 as a Unix time; a source must say what it means.
            raise ValidationError.from_exception_data(cls.__name__, [_problem(
                "occurred_at", "must be an ISO 8601 date-time with a UTC offset, not a number",
                data["occurred_at"],
            )])
        event = handler(data)
        problems = [_problem(field, reason, None)
                    for field, reason in json_problems(event.attributes, "attributes")]
        if event.occurred_at.year in (1, 9999):  # only these can leave the range in UTC
            try:
                in_utc(event.occurred_at)
            except ValueError as exc:
                problems.append(_problem("occurred_at", str(exc), None))
        if event.type == RETRACTION and event.supersedes is None:
            problems.append(_problem(
                "supersedes", f"a {RETRACTION!r} event must name the event it withdraws", None
            ))
        if event.supersedes == event.source_event_id:
            problems.append(_problem("supersedes", "an event cannot supersede itself",
                                     event.supersedes))
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return event

    @property
    def key(self) -> tuple[str, str]:
        """The event's identity and idempotency key: ``(source, source_event_id)``."""
        return (self.source, self.source_event_id)


_REASONS = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "timezone_aware": "must include a UTC offset (e.g. 2024-01-31T12:00:00Z); "
    "naive date-times are refused",
    "string_pattern_mismatch": "must be text without control characters or surrounding spaces",
}


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, reason)`` pairs of a pydantic error on :class:`EventIn`, field names dotted."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"])
        problems.append((field or "(event)", _REASONS.get(error["type"], error["msg"])))
    return problems


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry: an event or another recorded state change.

    ``payload`` is ``None`` once purged; ``payload_hash``, ``prev_hash`` and ``hash``
    stay, so the chain still verifies (see :mod:`trustledger.ledger.chain`).
    ``recorded_at`` is when the ledger accepted the entry (UTC).
    """

    seq: int
    kind: str
    subject: str | None
    recorded_at: datetime
    payload: dict[str, Any] | None
    payload_hash: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """A verified chain: how many entries, and the hash of the last one."""

    entries: int
    head_hash: str
