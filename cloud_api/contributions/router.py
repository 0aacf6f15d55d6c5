"""HTTP routes for time and skills contributions.

Access is declared on every route (cloud_api/access.py); ownership is checked by the service: a
resident reaches only contributions they gave or received, staff only their community's
(another's is 404, never 403). Maintainers are not admitted: who helped whom is social work, not
upkeep of the lockers.

Wiring: ``install(app, services)`` includes :data:`router` and gives ``services`` its
``contributions`` (a :class:`ContributionService`), each only once, so it is safe to call from
the app's lifespan and again from a test on a running app.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.access import allow
from cloud_api.accounts.service import Person
from cloud_api.contributions.service import ContributionService
from cloud_api.core.contributions import KINDS, STATUSES
from cloud_api.deps import SocialWorker

router = APIRouter(prefix="/api/v1", tags=["contributions"])

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Choice = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=200)]
Status = Literal[STATUSES]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]

ResidentOrWorker = Annotated[Person, allow("resident", "social_worker", scope="own")]
"""A resident about their own contributions, or a social worker about the community's."""
ResidentOrWorkerList = Annotated[Person, allow("resident", "social_worker", scope="community")]
"""The community's contributions (a resident: those they gave or received)."""
Provider = Annotated[Person, allow("resident", scope="own")]
"""A resident, about a contribution they gave."""


def contributions(request: Request) -> ContributionService:
    """The app's contribution service (``services.contributions``)."""
    found: ContributionService = request.app.state.services.contributions
    return found


Contributions = Annotated[ContributionService, Depends(contributions)]


class NewContribution(BaseModel):
    """Hours a resident gave (or a worker records for a resident, ``on_behalf_of``).

    ``time``: ``intensity`` and ``slot``; ``skill``: ``skill`` and ``certified`` (names from the
    published policy). ``hours`` in quarter hours, 0.25–12. ``beneficiary_id``: another resident
    of the community, or null for the community itself.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Kind
    description: Annotated[str, Field(min_length=1, max_length=200)]
    hours: Annotated[float, Field(gt=0, le=24)]
    intensity: Choice | None = None
    slot: Choice | None = None
    skill: Choice | None = None
    certified: bool = False
    beneficiary_id: Id | None = None
    on_behalf_of: Id | None = None


class WithReason(BaseModel):
    """A decision (or a withdrawal) with its reason."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason


@router.get("/contributions")
def list_contributions(
    person: ResidentOrWorkerList,
    svc: Contributions,
    status: Status | None = None,
    kind: Kind | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Contributions of the caller's community, newest first (residents: their own, given or
    received)."""
    return svc.search(person, status=status, kind=kind, offset=offset, limit=limit)


@router.get("/contributions/{contribution_id}")
def get_contribution(
    contribution_id: IdPath, person: ResidentOrWorker, svc: Contributions
) -> dict[str, Any]:
    """One contribution with its points breakdown."""
    return svc.get(person, contribution_id)


@router.post("/contributions", status_code=201)
def create(body: NewContribution, person: ResidentOrWorker, svc: Contributions) -> dict[str, Any]:
    """Record a contribution (status ``proposed``): its points are computed by the published
    policy and stored with their breakdown."""
    return svc.create(
        person,
        kind=body.kind,
        description=body.description,
        hours=body.hours,
        intensity=body.intensity,
        slot=body.slot,
        skill=body.skill,
        is_certified=body.certified,
        beneficiary_id=body.beneficiary_id,
        on_behalf_of=body.on_behalf_of,
    )


@router.post("/contributions/{contribution_id}/confirm")
def confirm(
    contribution_id: IdPath, person: ResidentOrWorker, svc: Contributions
) -> dict[str, Any]:
    """The other party confirms (both confirmed → ``confirmed``)."""
    return svc.confirm(person, contribution_id)


@router.post("/contributions/{contribution_id}/approve")
def approve(
    contribution_id: IdPath, body: WithReason, person: SocialWorker, svc: Contributions
) -> dict[str, Any]:
    """Approve a confirmed contribution: its provider is credited once."""
    return svc.approve(person, contribution_id, body.reason)


@router.post("/contributions/{contribution_id}/reject")
def reject(
    contribution_id: IdPath, body: WithReason, person: SocialWorker, svc: Contributions
) -> dict[str, Any]:
    """Refuse a contribution; nothing is credited."""
    return svc.reject(person, contribution_id, body.reason)


@router.post("/contributions/{contribution_id}/withdraw")
def withdraw(
    contribution_id: IdPath, body: WithReason, person: Provider, svc: Contributions
) -> dict[str, Any]:
    """The provider withdraws a contribution before it is decided."""
    return svc.withdraw(person, contribution_id, body.reason)


def install(app: FastAPI, services: Any) -> None:
    """Serve the contribution routes on ``app`` and give ``services`` its ``contributions``
    (built from its store, clock and points service), each only if not done already.

    Example:
        >>> install(app, app.state.services)   # in the lifespan, once services exist
    """
    if not _serves(app):
        app.include_router(router)
    if getattr(services, "contributions", None) is None:
        services.contributions = ContributionService(
            services.store, services.clock, services.points
        )


def _serves(app: FastAPI) -> bool:
    """Whether :data:`router` is already included: as flattened routes (FastAPI before 0.16x)
    or as one included-router entry (later versions)."""
    return any(
        getattr(route, "original_router", None) is router
        or str(getattr(route, "path", "")).startswith("/api/v1/contributions")
        for route in app.routes
    )
