"""HTTP routes for items: the listing, proposals and drop-offs, reservations, loans, approval.

Access is declared on every route (cloud_api/access.py); ownership is checked by the service
(another resident's item, or another community's, is 404).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.access import allow
from cloud_api.accounts.service import Person
from cloud_api.core.items import STATUSES
from cloud_api.deps import AnyPerson, Resident, ServicesDep, SocialWorker

router = APIRouter(prefix="/api/v1", tags=["items"])

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=200)]
Status = Literal[STATUSES]  # type: ignore[valid-type]
ResidentOrWorker = Annotated[Person, allow("resident", "social_worker", scope="own")]
"""A resident for themselves, or a social worker for a resident of the community."""


class Proposal(BaseModel):
    """An item a resident offers (or a worker offers for a resident)."""

    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, Field(min_length=1, max_length=80)]
    category: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z_]+$")]
    description: Annotated[str, Field(max_length=500)] = ""
    kind: Literal["give", "lend"] = "give"
    size: Literal["S", "M", "L"] = "M"
    points: Annotated[int, Field(ge=0, le=10_000)] = 0
    deposit_points: Annotated[int, Field(ge=0, le=10_000)] = 0
    loan_days: Annotated[int, Field(ge=1, le=90)] | None = None
    on_behalf_of: Id | None = None


class Place(BaseModel):
    """Optionally, which locker bank."""

    model_config = ConfigDict(extra="forbid")
    device_id: Id | None = None


class WithReason(BaseModel):
    """A decision with its reason."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason


class Approval(BaseModel):
    """Approve an item at a number of points."""

    model_config = ConfigDict(extra="forbid")
    points: Annotated[int, Field(ge=0, le=10_000)]
    reason: Reason


class Reservation(BaseModel):
    """Reserve; a worker names the resident."""

    model_config = ConfigDict(extra="forbid")
    for_person: Id | None = None


class Check(BaseModel):
    """A returned item, checked."""

    model_config = ConfigDict(extra="forbid")
    ok: bool
    reason: Reason


class Review(BaseModel):
    """What an item under review becomes."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["relist", "confirm_gone", "return_to_donor", "withdraw"]
    reason: Reason


class Problem(BaseModel):
    """A problem with an item picked up."""

    model_config = ConfigDict(extra="forbid")
    problem: Literal["not_as_described", "damaged", "missing", "other"]
    note: Annotated[str, Field(max_length=500)] = ""


@router.get("/items")
def items(
    person: AnyPerson,
    svc: ServicesDep,
    status: Status | None = None,
    q: Annotated[str | None, Query(max_length=80)] = None,
    category: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
    mine: bool = False,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Items of the caller's community, newest first (residents: the listing, or ``mine``)."""
    return svc.items.search(
        person, status=status, q=q, category=category, mine=mine, offset=offset, limit=limit
    )


@router.get("/items/{item_id}")
def item(item_id: IdPath, person: AnyPerson, svc: ServicesDep) -> dict[str, Any]:
    """One item with its history."""
    return svc.items.get(person, item_id)


@router.post("/items", status_code=201)
def propose(body: Proposal, person: ResidentOrWorker, svc: ServicesDep) -> dict[str, Any]:
    """Propose an item (status ``proposed``)."""
    fields = body.model_dump(exclude={"on_behalf_of"})
    item_id = svc.items.propose(person, fields, body.on_behalf_of)
    return {"item_id": item_id, "status": "proposed"}


@router.post("/items/{item_id}/dropoff", status_code=201)
def dropoff(item_id: IdPath, body: Place, person: Resident, svc: ServicesDep) -> dict[str, Any]:
    """The donor at the station: keep a fitting compartment, issue the drop-off code."""
    return svc.items.request_dropoff(person, item_id, body.device_id)


@router.post("/items/{item_id}/withdraw")
def withdraw(
    item_id: IdPath, body: WithReason, person: Resident, svc: ServicesDep
) -> dict[str, Any]:
    """The donor withdraws a proposal (or a drop-off not made yet)."""
    return svc.items.withdraw(person, item_id, body.reason)


@router.post("/items/{item_id}/reservation", status_code=201)
def reserve(
    item_id: IdPath, body: Reservation, person: ResidentOrWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Reserve a listed item: points held, a pickup code issued."""
    return svc.items.reserve(person, item_id, body.for_person)


@router.post("/items/{item_id}/reservation/cancel", status_code=202)
def cancel(item_id: IdPath, body: WithReason, person: Resident, svc: ServicesDep) -> dict[str, Any]:
    """Cancel one's reservation: the code is withdrawn now, the points return once the locker
    confirms the code was not used."""
    return svc.items.cancel(person, item_id, body.reason)


@router.post("/items/{item_id}/return", status_code=201)
def give_back(item_id: IdPath, body: Place, person: Resident, svc: ServicesDep) -> dict[str, Any]:
    """A borrower brings a lent item back: a return code for a fitting compartment."""
    return svc.items.request_return(person, item_id, body.device_id)


@router.post("/items/{item_id}/problem", status_code=201)
def problem(item_id: IdPath, body: Problem, person: Resident, svc: ServicesDep) -> dict[str, Any]:
    """Report a problem with an item picked up, within the dispute window."""
    return svc.items.report_problem(person, item_id, body.problem, body.note)


@router.post("/items/{item_id}/approve")
def approve(
    item_id: IdPath, body: Approval, person: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """List an item known to be inside and credit its donor once."""
    return svc.items.approve(person, item_id, body.points, body.reason)


@router.post("/items/{item_id}/reject")
def reject(
    item_id: IdPath, body: WithReason, person: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Refuse an item: its donor gets a code to take it back."""
    return svc.items.reject(person, item_id, body.reason)


@router.post("/items/{item_id}/check")
def check(item_id: IdPath, body: Check, person: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """A returned loan, checked: in good order (deposit released) or damaged (under review)."""
    return svc.items.check(person, item_id, body.ok, body.reason)


@router.post("/items/{item_id}/review")
def review(item_id: IdPath, body: Review, person: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Decide what an item under review becomes."""
    return svc.items.review(person, item_id, body.decision, body.reason)
