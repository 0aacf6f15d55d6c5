"""HTTP routes for alerts, the on-call roster and staff contacts (docs/decisions/0022-alerts.md).

Staff of the community, both roles: maintainers keep the banks working, social workers answer
for residents' items (an item at risk is theirs too). Another community's alert or shift is 404.
A staff member's phone travels only in the body of ``PUT /staff/me/contact`` and is answered
masked.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.access import STAFF, allow
from cloud_api.accounts.service import Person
from cloud_api.core.alerts import NOTE_MAX_CHARS
from cloud_api.deps import ServicesDep, Staff

router = APIRouter(prefix="/api/v1", tags=["alerts"])

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=200)]
Millis = Annotated[int, Field(ge=0, le=10**14)]
StaffSelf = Annotated[Person, allow(*STAFF, scope="self")]
"""A social worker or maintainer, about their own data."""


class WithNote(BaseModel):
    """An escalation or a resolution, with what the person has to say."""

    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(min_length=1, max_length=NOTE_MAX_CHARS)]


class NewShift(BaseModel):
    """A member of staff on call at ``rank`` (0 first, 1 backup…), from ``starts_ms`` (default
    now) until ``ends_ms`` (default: until ended)."""

    model_config = ConfigDict(extra="forbid")
    person_id: Id
    rank: Annotated[int, Field(ge=0, le=9)] = 0
    starts_ms: Millis | None = None
    ends_ms: Millis | None = None


class Contact(BaseModel):
    """How a member of staff is reached: a mobile phone (SMS), or WeChat with an openid."""

    model_config = ConfigDict(extra="forbid")
    phone: Annotated[str, Field(min_length=5, max_length=24, repr=False)]
    notify_channel: Literal["sms", "wechat"] = "sms"
    wechat_openid: str | None = Field(default=None, min_length=1, max_length=64, repr=False)


# --- alerts -------------------------------------------------------------------------------------


@router.get("/alerts")
def alerts(
    person: Staff,
    svc: ServicesDep,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Literal["red", "yellow", "blue"] | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Alerts of the community, newest first, each with its response clock as of now."""
    items = svc.alerts.list_alerts(
        person, status=status, severity=severity, offset=offset, limit=limit
    )
    return {"items": items, "offset": offset, "limit": limit}


@router.get("/alerts/{alert_id}")
def alert(alert_id: IdPath, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """One alert with every action taken on it."""
    return svc.alerts.get(person, alert_id)


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(alert_id: IdPath, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """I have it: the response clock stops (409 ``already_acknowledged``, ``already_resolved``)."""
    return svc.alerts.acknowledge(person, alert_id)


@router.post("/alerts/{alert_id}/escalate")
def escalate(alert_id: IdPath, body: WithNote, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """Hand the alert to the next person on call, saying why (409 once resolved)."""
    return svc.alerts.escalate(person, alert_id, body.note)


@router.post("/alerts/{alert_id}/resolve")
def resolve(alert_id: IdPath, body: WithNote, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """Close the alert, saying what was done (409 ``already_resolved``)."""
    return svc.alerts.resolve(person, alert_id, body.note)


# --- on call ------------------------------------------------------------------------------------


@router.get("/on-call")
def on_call(person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """Who is on call now or later, by rank (and whether each can be reached)."""
    return {"items": svc.alerts.on_call(person)}


@router.post("/on-call", status_code=201)
def add_on_call(body: NewShift, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """Put a maintainer or social worker of the community on call (409 ``rank_taken``)."""
    return svc.alerts.add_on_call(
        person,
        person_id=body.person_id,
        rank=body.rank,
        starts_ms=body.starts_ms,
        ends_ms=body.ends_ms,
    )


@router.post("/on-call/{shift_id}/end")
def end_on_call(shift_id: IdPath, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """End a shift now (409 ``already_ended``)."""
    return svc.alerts.end_on_call(person, shift_id)


@router.put("/staff/me/contact")
def set_contact(body: Contact, person: StaffSelf, svc: ServicesDep) -> dict[str, Any]:
    """Where the signed-in member of staff is told of alerts; the phone is answered masked."""
    return svc.alerts.set_contact(
        person, phone=body.phone, channel=body.notify_channel, wechat_openid=body.wechat_openid
    )
