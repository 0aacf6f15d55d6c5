"""HTTP routes for points. Authorization on every route: staff act within their community (and
never for their own account); a resident sees only their own history and proofs; roots and
totals are public (totals per kind and day, never per person)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.deps import Public, Resident, ResidentSelf, ServicesDep, SocialWorker
from cloud_api.points.service import Movement

router = APIRouter(prefix="/api/v1")

Key = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Points = Annotated[int, Field(gt=0, le=1_000_000)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
PersonId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class MovementBody(BaseModel):
    """A movement of points by a social worker."""

    model_config = ConfigDict(extra="forbid")
    key: Key
    kind: Literal[
        "valuation_credit", "subsidy_grant", "subsidy_funding", "refund", "penalty", "expiry"
    ]
    amount: Points
    member: PersonId | None = None
    item: PersonId | None = None
    hold: bool = False


class ResolveBody(BaseModel):
    """Post or void a hold."""

    model_config = ConfigDict(extra="forbid")
    key: Key
    reason: Text | None = None


class ReversalBody(BaseModel):
    """Reverse (part of) a transfer named by its idempotency key."""

    model_config = ConfigDict(extra="forbid")
    key: Key
    original_key: Key
    reason: Text
    amount: Points | None = None


class LimitBody(BaseModel):
    """Change a member's lowest allowed available balance."""

    model_config = ConfigDict(extra="forbid")
    key: Key
    member: PersonId
    limit: Annotated[int, Field(ge=-100_000, le=0)]
    reason: Text


@router.post("/ledger/movements")
def move(body: MovementBody, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Credit, grant, refund, penalize, expire or fund; above the threshold it waits for a
    second social worker."""
    refs = (("item", body.item),) if body.item else ()
    movement = Movement(
        key=body.key,
        kind=body.kind,
        amount=body.amount,
        member=body.member,
        refs=refs,
        hold=body.hold,
    )
    return svc.points.move(worker, movement)


@router.post("/ledger/requests/{request_id}/approve")
def approve(request_id: IdPath, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """A second social worker approves a parked movement."""
    return svc.points.approve(worker, request_id)


@router.post("/ledger/holds/{transfer_id}/post")
def post_hold(
    transfer_id: IdPath, body: ResolveBody, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Post a hold (no post after a void)."""
    return svc.points.resolve_hold(worker, transfer_id, body.key, post=True)


@router.post("/ledger/holds/{transfer_id}/void")
def void_hold(
    transfer_id: IdPath, body: ResolveBody, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Void a hold (no void after a post)."""
    return svc.points.resolve_hold(
        worker, transfer_id, body.key, post=False, reason=body.reason or "voided"
    )


@router.post("/ledger/reversals")
def reverse(body: ReversalBody, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Reverse by the original's key (never more than remains; an unknown key is tombstoned)."""
    return svc.points.reverse(worker, body.key, body.original_key, body.reason, body.amount)


@router.post("/ledger/limits")
def set_limit(body: LimitBody, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Change a member's limit; every change is logged with its reason."""
    return svc.points.set_limit(worker, body.key, body.member, body.limit, body.reason)


@router.get("/ledger/issuance")
def issuance(worker: SocialWorker, svc: ServicesDep) -> list[dict[str, Any]]:
    """Points each social worker issued per day, against the daily cap."""
    return svc.points.issuance(worker)


@router.get("/me/ledger")
def my_ledger(resident: ResidentSelf, svc: ServicesDep) -> dict[str, Any]:
    """The resident's balance and movements, each with what it was for."""
    return svc.points.history(resident)


@router.get("/me/ledger/{transfer_id}/proof")
def my_proof(transfer_id: IdPath, resident: Resident, svc: ServicesDep) -> dict[str, Any]:
    """The inclusion proof of one of the resident's own entries under a signed daily root."""
    return svc.points.proof(resident, transfer_id)


@router.get("/ledger/roots", dependencies=[Public])
def roots(svc: ServicesDep) -> list[dict[str, Any]]:
    """Every signed daily root (public)."""
    return svc.points.roots()


Day = Annotated[str, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")]


@router.get("/ledger/consistency", dependencies=[Public])
def consistency(from_day: Day, to_day: Day, svc: ServicesDep) -> dict[str, Any]:
    """The consistency proof between two published days (public)."""
    return svc.points.consistency(from_day, to_day)


@router.get("/ledger/totals", dependencies=[Public])
def totals(svc: ServicesDep) -> list[dict[str, Any]]:
    """Points moved per day and kind (public; never per person)."""
    return svc.points.totals()
