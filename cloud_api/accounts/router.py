"""HTTP routes for accounts: sign-in and sign-out, a resident's own language and PIN, and the
social worker's residents (search, onboarding, profile with its history, PIN reset, phone change,
flags, status).

Phone numbers and PINs travel only in request bodies (never in a URL) and are never echoed: a
resident is shown with a masked phone. A resident of another community is 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.deps import Me, Public, ResidentSelf, ServicesDep, SocialWorker

router = APIRouter(prefix="/api/v1")

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Pin = Annotated[str, Field(min_length=1, max_length=16, repr=False)]
Phone = Annotated[str, Field(min_length=5, max_length=24, repr=False)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Place = Annotated[str, Field(max_length=64)]
Language = Literal["zh-CN", "en"]
Flag = Literal["elderly", "low_income", "disabled"]

_bearer = HTTPBearer(auto_error=False)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SignIn(BaseModel):
    """Phone + PIN for residents; login + password + authenticator code for staff."""

    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=3, max_length=64)
    secret: str = Field(min_length=4, max_length=128, repr=False)
    totp: str | None = Field(
        default=None, min_length=6, max_length=8, pattern=r"^[0-9]+$", repr=False
    )


class LanguageBody(BaseModel):
    """The language of the resident's pages and messages."""

    model_config = ConfigDict(extra="forbid")
    language: Language


class OwnPinBody(BaseModel):
    """A resident's new PIN, with the current one."""

    model_config = ConfigDict(extra="forbid")
    old_pin: Pin
    new_pin: Pin


class NewResident(BaseModel):
    """A resident a social worker signs up."""

    model_config = ConfigDict(extra="forbid")
    display_name: Name
    phone: Phone
    pin: Pin
    household: Place = ""
    unit: Place = ""
    language: Language = "zh-CN"
    flags: list[Flag] = Field(default_factory=list, max_length=3)
    reason: Reason


class PinReset(BaseModel):
    """A new PIN for a resident who forgot theirs."""

    model_config = ConfigDict(extra="forbid")
    pin: Pin
    reason: Reason


class PhoneChange(BaseModel):
    """A resident's new phone number."""

    model_config = ConfigDict(extra="forbid")
    phone: Phone
    reason: Reason


class FlagsBody(BaseModel):
    """A resident's support flags (sensitive)."""

    model_config = ConfigDict(extra="forbid")
    flags: list[Flag] = Field(max_length=3)
    reason: Reason


class StatusBody(BaseModel):
    """Enable or disable a resident's account."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "disabled"]
    reason: Reason


# --- sessions ----------------------------------------------------------------------------------


@router.post("/session", dependencies=[Public])
def sign_in(body: SignIn, request: Request, svc: ServicesDep) -> dict[str, object]:
    """Sign in; returns a bearer token. Staff also send ``totp``, their authenticator's code."""
    token, person = svc.accounts.sign_in(
        body.login,
        body.secret,
        svc.clock.now().wall_ms,
        address=_address(request),
        totp=body.totp,
    )
    return {"token": token, "role": person.role, "display_name": person.display_name}


@router.delete("/session", status_code=204)
def sign_out(person: Me, credentials: Bearer, svc: ServicesDep) -> Response:
    """End this session."""
    if credentials is not None:
        svc.accounts.sign_out(credentials.credentials)
    return Response(status_code=204)


# --- a resident's own account ---------------------------------------------------------------


@router.patch("/me/language")
def set_my_language(body: LanguageBody, person: ResidentSelf, svc: ServicesDep) -> dict[str, str]:
    """Choose Chinese or English."""
    svc.accounts.set_language(person, body.language)
    return {"language": body.language}


@router.post("/me/pin", status_code=204)
def change_my_pin(
    body: OwnPinBody, request: Request, person: ResidentSelf, credentials: Bearer, svc: ServicesDep
) -> Response:
    """Change one's PIN (the current one is checked, throttled like sign-in); other sessions end."""
    svc.accounts.change_own_pin(
        person,
        body.old_pin,
        body.new_pin,
        svc.clock.now().wall_ms,
        address=_address(request),
        keep_token=credentials.credentials if credentials else None,
    )
    return Response(status_code=204)


# --- residents, for social workers ------------------------------------------------------------


@router.get("/residents")
def list_residents(
    worker: SocialWorker,
    svc: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Residents of the worker's community, by name."""
    items, total = svc.accounts.search(worker, "", offset, limit)
    return {"items": items, "total": total, "offset": offset, "limit": limit}


class ResidentSearch(BaseModel):
    """A search by name, household, unit, or a phone's last four digits (in the body, never in
    the URL: the last four digits guard codes while a bank is under guessing)."""

    model_config = ConfigDict(extra="forbid")
    q: Annotated[str, Field(max_length=64, repr=False)] = ""
    offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    limit: Annotated[int, Field(ge=1, le=200)] = 50


@router.post("/residents/search")
def search_residents(
    body: ResidentSearch, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Residents of the worker's community by name, household, unit or the phone's last four."""
    items, total = svc.accounts.search(worker, body.q, body.offset, body.limit)
    return {"items": items, "total": total, "offset": body.offset, "limit": body.limit}


@router.post("/residents", status_code=201)
def onboard_resident(body: NewResident, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Sign a resident up: their account, profile and points account, in one transaction."""
    person_id = svc.accounts.onboard_resident(
        worker,
        body.display_name,
        body.phone,
        body.pin,
        body.household,
        body.unit,
        body.language,
        body.flags,
        body.reason,
        now_ms=svc.clock.now().wall_ms,
    )
    return svc.accounts.profile(worker, person_id)


@router.get("/residents/{person_id}")
def resident(person_id: IdPath, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """A resident's profile (phone masked) and account changes, newest first."""
    profile = svc.accounts.profile(worker, person_id)
    return profile | {"changes": svc.accounts.history(worker, person_id)}


@router.post("/residents/{person_id}/pin")
def reset_pin(
    person_id: IdPath, body: PinReset, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Give a resident a new PIN; their sessions end."""
    ended = svc.accounts.reset_pin(
        worker, person_id, body.pin, body.reason, now_ms=svc.clock.now().wall_ms
    )
    return svc.accounts.profile(worker, person_id) | {"sessions_ended": ended}


@router.post("/residents/{person_id}/phone")
def change_phone(
    person_id: IdPath, body: PhoneChange, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Change a resident's phone; their sessions end and their live codes are guarded anew by
    the new number's last four digits on every locker holding them."""
    ended = svc.accounts.change_phone(
        worker, person_id, body.phone, body.reason, now_ms=svc.clock.now().wall_ms
    )
    devices = svc.store.read(
        "SELECT DISTINCT device_id FROM grants WHERE person_id = ? AND status = 'active'"
        " ORDER BY device_id",
        (person_id,),
    )
    for row in devices:
        svc.devices.publish_config(row["device_id"])
    return svc.accounts.profile(worker, person_id) | {"sessions_ended": ended}


@router.put("/residents/{person_id}/flags")
def set_flags(
    person_id: IdPath, body: FlagsBody, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Set a resident's support flags."""
    svc.accounts.set_flags(
        worker, person_id, body.flags, body.reason, now_ms=svc.clock.now().wall_ms
    )
    return svc.accounts.profile(worker, person_id)


@router.put("/residents/{person_id}/status")
def set_status(
    person_id: IdPath, body: StatusBody, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Enable or disable a resident's account (disabling ends their sessions)."""
    svc.accounts.set_status(
        worker, person_id, body.status, body.reason, now_ms=svc.clock.now().wall_ms
    )
    return svc.accounts.profile(worker, person_id)
