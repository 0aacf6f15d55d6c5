"""HTTP routes of the approval queue: proposals waiting for a social worker, decisions, the
policy texts, and the proposal-vs-decision report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.deps import ServicesDep, SocialWorker, Staff
from cloud_api.errors import NotFound
from cloud_api.uploads import community_photo
from cloud_api.valuations.service import Decision

router = APIRouter(prefix="/api/v1", tags=["valuations"])

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class DecisionBody(BaseModel):
    """Approve the proposed points, adjust to other points, or reject — with a reason."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "adjust", "reject"]
    points: Annotated[int, Field(ge=0, le=10_000)] | None = None
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class PolicyBody(BaseModel):
    """A whole new policy text (TOML), with a new ``version`` inside."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=100_000)]


@router.get("/valuations")
def queue(
    worker: SocialWorker,
    svc: ServicesDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Items inside a locker waiting for a decision, oldest first, with their valuation."""
    result: dict[str, Any] = svc.valuations.queue(worker, offset, limit)
    return result


@router.get("/valuations/report")
def report(worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """How far proposals were from decisions, per category, and the corrections in use."""
    result: dict[str, Any] = svc.valuations.report(worker)
    return result


@router.get("/valuations/{item_id}")
def valuation(item_id: IdPath, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """One item's valuation, inputs, breakdown, photos and decision."""
    result: dict[str, Any] = svc.valuations.valuation(worker, item_id)
    return result


@router.post("/valuations/{item_id}/decision")
def decide(
    item_id: IdPath, body: DecisionBody, worker: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Approve, adjust or reject; the donor is credited once."""
    result: dict[str, Any] = svc.valuations.decide(
        worker, item_id, Decision(body.decision, body.points, body.reason)
    )
    return result


@router.get("/valuation-policies")
def policies(worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Every stored policy version, newest (current) first."""
    return {"items": svc.valuations.policies()}


@router.post("/valuation-policies", status_code=201)
def add_policy(body: PolicyBody, worker: SocialWorker, svc: ServicesDep) -> dict[str, Any]:
    """Publish a new policy version (checked whole; versions are never overwritten)."""
    result: dict[str, Any] = svc.valuations.add_policy(worker, body.text)
    return result


@router.get("/photos/{digest}")
def photo(
    digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], worker: Staff, svc: ServicesDep
) -> FileResponse:
    """A stored photo by its hash (staff judging a proposal or a problem report)."""
    found = community_photo(svc.store, svc.data_dir, digest, worker.community_id)
    if found is None:
        raise NotFound("no such photo")
    return FileResponse(found[0], media_type=found[1], headers={"Cache-Control": "private"})
