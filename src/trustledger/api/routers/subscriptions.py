"""The relying parties' subscriptions: be told when one subject's decision for a purpose changes.

``POST /v1/subscriptions`` needs what ``POST /v1/decisions`` needs — a relying party
accredited for the purpose and the subject's active consent for this party and
purpose — plus a webhook URL; the response carries the signing secret once.
Notifications are derived and delivered by ``trustledger cascades run``
(docs/cascades.md). A party sees and cancels only its own subscriptions; the
list holds no decision data (the subject ids are those the party named itself).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import AnyUrl, BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from trustledger.api.auth import CallerDep, json_response, service_of
from trustledger.api.problems import responses
from trustledger.api.schemas import Ident, Text
from trustledger.cascades import Subscription, list_subscriptions, subscribe, unsubscribe
from trustledger.principals import Role

router = APIRouter(prefix="/v1/subscriptions", tags=["relying parties"])

SubscriptionId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^sub_[0-9a-f]+$",
                                     description="the subscription's id (sub_...)")]


class SubscriptionRequest(BaseModel):
    """A subscription to one subject's decision changes for one purpose."""

    model_config = ConfigDict(extra="forbid")

    subject: Text
    purpose: Ident
    url: AnyUrl = Field(description="where notifications are POSTed (http or https)")
    secret: Annotated[str, StringConstraints(min_length=6, max_length=128)] | None = Field(
        default=None, description="a Standard Webhooks secret (whsec_ + base64 of 24-64 "
                                  "bytes); generated when left out")


class SubscriptionOut(BaseModel):
    """A subscription: whom it is about, for which purpose, where, and whether it ended."""

    model_config = ConfigDict(extra="forbid")

    id: str
    subject: str
    purpose: str
    url: str
    created_at: datetime
    active: bool
    ended_at: datetime | None
    end_reason: str | None


class SubscriptionCreated(SubscriptionOut):
    """A new subscription with its signing secret (shown only now)."""

    secret: str


def _out(s: Subscription) -> dict[str, Any]:
    return {"id": s.id, "subject": s.subject, "purpose": s.purpose, "url": s.url,
            "created_at": s.created_at, "active": s.active, "ended_at": s.ended_at,
            "end_reason": s.end_reason}


@router.post("", status_code=201, response_model=SubscriptionCreated,
             responses=responses(401, 403, 409, 413, 422, 429, 503))
async def create(request: Request, caller: CallerDep,
                 body: Annotated[SubscriptionRequest, Body()]) -> Response:
    """Subscribe to a subject's decision changes for a purpose (needs the subject's consent).

    403 if the party is not accredited for the purpose or the subject's consent for
    this party and purpose is not active; 409 if the party already subscribed.
    """
    caller.require(Role.RELYING_PARTY)
    service = service_of(request)
    await service.begin_async(caller)
    created = await run_in_threadpool(
        subscribe, service.ledger, caller.principal, body.subject, body.purpose,
        str(body.url), service.now(), secret=body.secret)
    return json_response({**_out(created.subscription), "secret": created.secret}, 201)


@router.get("", response_model=list[SubscriptionOut],
            responses=responses(401, 403, 422, 429, 503))
def list_(request: Request, caller: CallerDep,
          include_ended: Annotated[bool, Query(description="also ended ones")] = False
          ) -> Response:
    """Your subscriptions (active ones unless ``include_ended``), oldest first."""
    caller.require(Role.RELYING_PARTY)
    service = service_of(request)
    service.begin(caller)
    found = list_subscriptions(service.ledger, caller.principal.name,
                               include_ended=include_ended)
    return json_response([_out(s) for s in found])


@router.delete("/{subscription_id}", response_model=SubscriptionOut,
               responses=responses(401, 403, 404, 422, 429, 503))
def delete(request: Request, caller: CallerDep, subscription_id: SubscriptionId) -> Response:
    """Cancel one of your subscriptions at once (404 for another party's)."""
    caller.require(Role.RELYING_PARTY)
    service = service_of(request)
    service.begin(caller)
    return json_response(_out(unsubscribe(service.ledger, caller.principal, subscription_id)))
