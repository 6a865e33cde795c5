"""Events from sources: the plain form and CloudEvents 1.0, accreditation and schema checks.

A source appends events in its own name (``source`` is the principal's name), only
of the event types it is accredited for and whose domain in the event-type register in
force is one of its domains (HTTP 403 otherwise, each item named), and
only events that fit the attribute schema of the policy in force (the ledger's
``validate`` hook; HTTP 422 with each item's index, field and reason). A batch is
atomic: all of it or none; a repeated event (same ``source_event_id``, same
content) is ``existing``, not appended again.

Accepted bodies: ``application/json`` (an event, or ``{"events": [...]}`` for a
batch; a JSON object with ``specversion`` is read as a CloudEvent),
``application/cloudevents+json`` (one structured CloudEvent) and
``application/cloudevents-batch+json`` (a JSON array of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from trustledger.api.problems import ItemsForbiddenError, ProblemItem, UnsupportedMediaTypeError
from trustledger.api.schemas import CloudEvent
from trustledger.api.service import Caller, Service
from trustledger.errors import BatchError, ConflictError, InputError, ItemProblem, NotFoundError
from trustledger.events import RETRACTION
from trustledger.ledger import Entry, EventIn
from trustledger.ledger.columnar import EventRules, accreditation_problem, check_batch, from_rows
from trustledger.ledger.ingest import schema_validator
from trustledger.principals import PermissionDeniedError
from trustledger.registry import allowed_types, domain_problem

JSON = "application/json"
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENT_BATCH = "application/cloudevents-batch+json"

_cloud_event = TypeAdapter(CloudEvent)

__all__ = ["append_batch", "append_one", "load_json", "media_type", "schema_validator",
           "supersede", "type_problem"]


def media_type(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` header, lower case, parameters dropped."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def load_json(body: bytes) -> Any:
    """The JSON value of a request body; :class:`InputError` saying where it is broken."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}") from exc


def _from_cloud_event(raw: Any, index: int, problems: list[ItemProblem]) -> dict[str, Any] | None:
    try:
        event = _cloud_event.validate_python(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in error["loc"]) or "(event)"
            reason = ("unknown attribute: trustledger reads only the CloudEvents core "
                      "attributes and the extension `supersedes`"
                      if error["type"] == "extra_forbidden" else str(error["msg"]))
            problems.append(ItemProblem(index, field, reason))
        return None
    return {
        "source": event.source, "source_event_id": event.id, "subject": event.subject,
        "type": event.type, "occurred_at": event.time, "attributes": event.data or {},
        "supersedes": event.supersedes,
    }


def _items(body: bytes, content_type: str | None, *, batch: bool,
           max_items: int) -> list[Any]:
    kind = media_type(content_type)
    accepted = (JSON, CLOUDEVENT_BATCH) if batch else (JSON, CLOUDEVENT)
    if kind not in accepted:
        wanted = " or ".join(accepted)
        raise UnsupportedMediaTypeError(
            f"Content-Type {kind or '(none)'!r} is not read here; send {wanted}")
    value = load_json(body)
    problems: list[ItemProblem] = []
    if not batch:
        if not isinstance(value, dict):
            raise InputError("the body must be a JSON object: one event")
        if kind == CLOUDEVENT or "specversion" in value:
            item = _from_cloud_event(value, 0, problems)
            if item is None:
                raise BatchError(problems)
            return [item]
        return [value]
    if kind == CLOUDEVENT_BATCH:
        if not isinstance(value, list):
            raise InputError("a CloudEvents batch is a JSON array of events")
        raw_items = value
    else:
        if not isinstance(value, dict) or set(value) != {"events"} \
                or not isinstance(value["events"], list):
            raise InputError('a batch is a JSON object {"events": [...]} and nothing else')
        raw_items = value["events"]
    if not raw_items:
        raise InputError("the batch is empty: send at least one event")
    if len(raw_items) > max_items:
        raise InputError(f"the batch has {len(raw_items)} events; at most {max_items} per "
                         "request: split it")
    items: list[Any] = []
    for index, raw in enumerate(raw_items):
        if kind == CLOUDEVENT_BATCH or (isinstance(raw, dict) and "specversion" in raw):
            items.append(_from_cloud_event(raw, index, problems))
        else:
            items.append(raw)
    if problems:
        raise BatchError(problems)
    return items


def _accredited(service: Service, caller: Caller) -> dict[str, frozenset[str]]:
    """The caller as the one source it may append for, with the event types it may report.

    Its accreditations whose domain in the register in force is one of its domains
    (:func:`~trustledger.registry.allowed_types`); 404 if no register is in force.
    """
    register = service.view.register_in_force()
    return {caller.principal.name: allowed_types(register, caller.principal)}


def type_problem(service: Service, caller: Caller, kind: str) -> tuple[str, str] | None:
    """Why the caller may not report an event of type ``kind`` (``(field, reason)``), if so.

    The one accreditation rule of the HTTP paths (appends, corrections, dispute answers):
    the type's registered domain must be one of the source's domains (the message names
    both), and the type one it is accredited for.
    """
    if kind == RETRACTION:
        return None
    outside = domain_problem(service.view.register_in_force(), caller.principal, kind)
    if outside is not None:
        return "type", outside
    return accreditation_problem(caller.principal.name, kind, _accredited(service, caller))


def _own(service: Service, caller: Caller, items: list[Any], *,
         accreditation: bool = True) -> list[Any]:
    """Fill in the caller as source; refuse other sources (and unaccredited types) with 403.

    A type outside the caller's domains is refused here always; without
    ``accreditation`` the other types are left to the batch checks
    (:func:`~trustledger.ledger.columnar.check_batch`), which apply the same rule.
    """
    principal = caller.principal
    register = service.view.register_in_force()
    forbidden: list[ProblemItem] = []
    out: list[Any] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            out.append(item)  # the ledger names it as "not an event"
            continue
        source = item.get("source")
        if source is not None and source != principal.name:
            forbidden.append(ProblemItem(index=index, field="source", reason=(
                f"{source!r} is not you: a source appends events only in its own name "
                f"({principal.name!r})")))
        kind = item.get("type")
        if isinstance(kind, str):
            outside = domain_problem(register, principal, kind)
            refused = (("type", outside) if outside is not None
                       else type_problem(service, caller, kind) if accreditation else None)
            if refused is not None:
                forbidden.append(ProblemItem(index=index, field=refused[0], reason=refused[1]))
        out.append({**item, "source": principal.name} if source is None else item)
    if forbidden:
        raise _forbidden(principal.name, forbidden)
    return out


def _forbidden(name: str, items: list[ProblemItem]) -> ItemsForbiddenError:
    return ItemsForbiddenError(
        f"{len(items)} item(s) may not be appended by {name!r}, nothing was written; each "
        "is listed in `errors`", items)


def _entry_json(entry: Entry, status: str) -> dict[str, Any]:
    payload = entry.payload or {}
    return {"status": status, "seq": entry.seq, "hash": entry.hash,
            "recorded_at": entry.recorded_at, "source": payload.get("source"),
            "source_event_id": payload.get("source_event_id"), "subject": entry.subject}


def _append(service: Service, items: Sequence[Mapping[str, Any] | EventIn]) -> tuple[
        int, list[Entry]]:
    now = service.now()
    policy = service.view.policy_in_force(now)
    before = service.ledger.position()
    entries = service.ledger.append_events(list(items), validate=schema_validator(policy, now))
    return before, entries


def append_one(service: Service, caller: Caller, body: bytes,
               content_type: str | None) -> tuple[int, dict[str, Any]]:
    """Append one event; ``(201, entry)`` if new, ``(200, entry)`` if it was there already."""
    items = _own(service, caller, _items(body, content_type, batch=False, max_items=1))
    before, entries = _append(service, items)
    entry = entries[0]
    new = entry.seq > before
    return (201 if new else 200), _entry_json(entry, "appended" if new else "existing")


def append_batch(service: Service, caller: Caller, body: bytes,
                 content_type: str | None) -> dict[str, Any]:
    """Append a batch atomically; how many events were new, and the chain's head after.

    Checked by :func:`~trustledger.ledger.columnar.check_batch`, the checks ``trustledger
    ingest`` makes of event files, with the same messages: an unaccredited type is a
    403 naming each item, any other problem a 422 naming each item, field and reason.
    The new events are the ``appended`` ones before ``head_seq``, in batch order.
    """
    items = _own(service, caller, _items(body, content_type, batch=True,
                                         max_items=service.settings.max_batch_items),
                 accreditation=False)
    now = service.now()
    rules = EventRules(policy=service.view.policy_in_force(now),
                       sources=_accredited(service, caller), recorded_at=now)
    checked = check_batch(from_rows(range(len(items)), items), rules)
    forbidden = [ProblemItem(index=index, field=name, reason=reason)
                 for index, name, reason, rule in checked.problems if rule == "accreditation"]
    if forbidden:
        raise _forbidden(caller.principal.name, forbidden)
    with service.ledger.bulk_appender() as appender:
        done = appender.append(checked, "item")
        problems = sorted(checked.problems + done.problems, key=lambda problem: problem[0])
        if problems:
            raise BatchError([ItemProblem(index, name, reason)
                              for index, name, reason, _ in problems])
        if done.conflicts:
            raise ConflictError(
                f"{len(done.conflicts)} event key(s) already recorded with different content, "
                f"nothing written: {'; '.join(done.conflicts[:20])}"
                + (f" (and {len(done.conflicts) - 20} more)" if len(done.conflicts) > 20
                   else ""))
        head_seq, head_hash = appender.seq, appender.hash
    return {"appended": done.appended, "existing": done.existing, "head_seq": head_seq,
            "head_hash": head_hash}


def supersede(service: Service, caller: Caller, target_id: str, new_id: str, kind: str,
              occurred_at: datetime, attributes: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Append an event of the caller's that corrects (or, as a retraction, withdraws) another.

    The target must be one of the caller's own events (404 otherwise: another
    source's event is not visible to it).
    """
    principal = caller.principal
    original = service.ledger.find_event(principal.name, target_id)
    if original is None or original.subject is None:
        raise NotFoundError(f"{principal.name!r} has appended no event {target_id!r}; a source "
                            "may retract or correct only its own events")
    refused = type_problem(service, caller, kind)
    if refused is not None:
        raise PermissionDeniedError(refused[1])
    event = {"source": principal.name, "source_event_id": new_id, "subject": original.subject,
             "type": kind, "occurred_at": occurred_at, "attributes": attributes,
             "supersedes": target_id}
    before, entries = _append(service, [event])
    entry = entries[0]
    new = entry.seq > before
    return (201 if new else 200), _entry_json(entry, "appended" if new else "existing")
