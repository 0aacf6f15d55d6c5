"""HTTP routes of the valuation terminal (docs/terminal-api.md). Every route is the terminal's
own (:func:`cloud_api.access.terminal_device`); those made for a resident also need the
resident's ticket in ``Linli-Ticket``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from cloud_api.access import terminal_device
from cloud_api.deps import ServicesDep
from cloud_api.errors import Invalid
from cloud_api.terminal.service import MAX_TERMINAL_PHOTO_BYTES, Terminal

router = APIRouter(prefix="/api/v1/terminal", tags=["terminal"])

TerminalDep = Annotated[Terminal, terminal_device()]
Ticket = Annotated[str | None, Header(alias="Linli-Ticket", max_length=512)]
Digest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
ProposalId = Annotated[str, Field(pattern=r"^prp_[A-Za-z0-9_-]{20,40}$")]


class SignIn(BaseModel):
    """A resident's phone and PIN, typed at the kiosk."""

    model_config = ConfigDict(extra="forbid")
    phone: Annotated[str, Field(min_length=5, max_length=32)]
    pin: Annotated[str, Field(min_length=6, max_length=6, pattern=r"^\d{6}$")]


class ProposalBody(BaseModel):
    """A confirmed proposal (``inputs`` and ``proposal`` as the rules engine writes them)."""

    model_config = ConfigDict(extra="forbid")
    proposal_id: ProposalId
    title: Annotated[str, Field(min_length=1, max_length=80)]
    category: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z_]+$")]
    size: Literal["S", "M", "L"]
    inputs: dict[str, Any]
    proposal: dict[str, Any]
    photos: Annotated[list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]], Field(max_length=8)]
    weight_mg: Annotated[int, Field(ge=0, le=1_000_000_000)]
    open_now: bool = False


@router.post("/signin")
def signin(body: SignIn, terminal: TerminalDep, svc: ServicesDep) -> dict[str, Any]:
    """Check a resident's phone and PIN (throttled) and return a ticket for this terminal."""
    result: dict[str, Any] = svc.terminal.signin(terminal, body.phone, body.pin)
    return result


@router.get("/context")
def context(terminal: TerminalDep, svc: ServicesDep) -> dict[str, Any]:
    """The policy text, this week's demand snapshot and the learned corrections."""
    result: dict[str, Any] = svc.valuations.context(terminal.community_id)
    return result


@router.get("/space")
def space(
    size: Annotated[Literal["S", "M", "L"], Query()],
    terminal: TerminalDep,
    svc: ServicesDep,
    ticket: Ticket = None,
) -> dict[str, Any]:
    """Whether a free compartment fits an item of this size now."""
    svc.terminal.resident(terminal, ticket)
    result: dict[str, Any] = svc.terminal.space(terminal, size)
    return result


@router.put("/photos/{digest}", status_code=201)
async def put_photo(
    digest: Digest,
    request: Request,
    response: Response,
    terminal: TerminalDep,
    svc: ServicesDep,
    ticket: Ticket = None,
) -> dict[str, str]:
    """Store one photo (JPEG, at most 2 MiB) under its SHA-256."""
    resident = svc.terminal.resident(terminal, ticket)
    data = b""
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_TERMINAL_PHOTO_BYTES:
                raise Invalid(
                    "the photo is larger than 2 MiB", field="body", code="photo_too_large"
                )
    except ClientDisconnect:
        # The terminal went away mid-upload (it re-sends the whole photo later): nothing stored.
        raise Invalid("the upload was cut off", field="body", code="upload_incomplete") from None
    if not svc.terminal.put_photo(resident, digest, data):
        response.status_code = 200
    return {"hash": digest}


@router.post("/proposals", status_code=201)
def submit(
    body: ProposalBody,
    response: Response,
    terminal: TerminalDep,
    svc: ServicesDep,
    ticket: Ticket = None,
) -> dict[str, Any]:
    """Record a proposal and issue its drop-off grant (idempotent on ``proposal_id``)."""
    resident = svc.terminal.resident(terminal, ticket)
    new, answer = svc.terminal.submit(terminal, resident, body.model_dump())
    if not new:
        response.status_code = 200
    return answer


@router.get("/proposals/{proposal_id}")
def proposal_status(
    proposal_id: Annotated[str, Path(pattern=r"^prp_[A-Za-z0-9_-]{20,40}$")],
    terminal: TerminalDep,
    svc: ServicesDep,
) -> dict[str, Any]:
    """Where the proposal's item is now, and the decision once made."""
    result: dict[str, Any] = svc.terminal.status(terminal, proposal_id)
    return result
