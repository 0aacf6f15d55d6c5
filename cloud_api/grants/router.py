"""HTTP routes for grants and codes: a resident's live codes and remote open; re-issue and
revocation by a social worker; maintenance codes for a maintainer; cases."""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud_api.accounts.service import Person
from cloud_api.cases import case_json
from cloud_api.deps import Maintainer, Resident, ResidentSelf, ServicesDep, SocialWorker, Staff
from cloud_api.errors import Conflict, NotFound
from cloud_api.grants.service import end_grant, issue_grant
from cloud_api.items.service import grant_view, item_row
from linli.ids import COMPARTMENT_PATTERN

router = APIRouter(prefix="/api/v1", tags=["grants"])

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CompartmentPath = Annotated[str, Path(pattern=COMPARTMENT_PATTERN)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=200)]

WAITING_ON = {
    "pickup": ("reserved", "awaiting_return_to_donor"),
    "dropoff": ("awaiting_dropoff",),
    "return": ("awaiting_return",),
}
"""Item statuses that wait on a grant of each purpose (a re-issue is meaningful only then)."""


class WithReason(BaseModel):
    """A decision with its reason."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason


class MaintenanceRequest(BaseModel):
    """A maintenance code for one compartment."""

    model_config = ConfigDict(extra="forbid")
    reason: Reason
    confirm_occupied: bool = False


class Resolution(BaseModel):
    """How a case was resolved."""

    model_config = ConfigDict(extra="forbid")
    resolution: Annotated[str, Field(min_length=1, max_length=500)]


# --- a resident's codes -----------------------------------------------------------------------


@router.get("/me/grants")
def my_grants(person: ResidentSelf, svc: ServicesDep) -> list[dict[str, Any]]:
    """The signed-in resident's live codes (pickups, drop-offs, returns), shown again."""
    now = svc.clock.now().wall_ms
    with svc.store.snapshot() as db:
        ids = [
            r["id"]
            for r in db.execute(
                "SELECT id FROM grants WHERE person_id = ? AND status = 'active'"
                " AND valid_until_ms > ? ORDER BY created_ms, id",
                (person.id, now),
            )
        ]
        return [grant_view(db, svc.keys, grant_id, with_code=True) for grant_id in ids]


def open_grant(svc: Any, person: Person, grant_id: str, purposes: tuple[str, ...]) -> str:
    """A signed "open" command for the holder's own live grant; return the command id."""
    grant = svc.store.read_one(
        "SELECT device_id, compartment, status, valid_until_ms, purpose FROM grants"
        " WHERE id = ? AND person_id = ?",
        (grant_id, person.id),
    )
    if grant is None or grant["purpose"] not in purposes:
        raise NotFound("no such code")
    if grant["status"] != "active" or grant["valid_until_ms"] <= svc.clock.now().wall_ms:
        raise Conflict("this code can no longer open the door", code="grant_not_active")
    command_id: str = svc.devices.send_command(
        grant["device_id"],
        "open",
        requested_by=person.id,
        compartment=grant["compartment"],
        grant_id=grant_id,
    )
    return command_id


@router.post("/me/grants/{grant_id}/open", status_code=202)
def open_my_grant(grant_id: IdPath, person: Resident, svc: ServicesDep) -> dict[str, str]:
    """ "Open now" for a resident standing at the locker (the keypad may be throttled): a signed
    command; the controller checks it as it checks a code, and it uses the grant's pulses."""
    return {"command_id": open_grant(svc, person, grant_id, ("pickup", "dropoff", "return"))}


# --- social workers ---------------------------------------------------------------------------


def _community_grant(db: sqlite3.Connection, person: Person, grant_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute(
        "SELECT g.*, d.community_id FROM grants g JOIN devices d ON d.id = g.device_id"
        " WHERE g.id = ?",
        (grant_id,),
    ).fetchone()
    if row is None or row["community_id"] != person.community_id:
        raise NotFound("no such grant")
    return row


@router.get("/grants")
def grants(
    person: Staff,
    svc: ServicesDep,
    item_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Grants of the community, newest first (never their codes)."""
    rows = svc.store.read(
        "SELECT g.id, g.item_id, g.person_id, g.device_id, g.compartment, g.purpose, g.epoch,"
        " g.valid_from_ms, g.valid_until_ms, g.status, g.created_ms, g.created_by, g.ended_ms,"
        " g.end_reason, g.replaces_id, g.settle_after_ms, g.settled_ms, g.outcome"
        " FROM grants g JOIN devices d ON d.id = g.device_id WHERE d.community_id = ?"
        " AND (? IS NULL OR g.item_id = ?) ORDER BY g.created_ms DESC, g.id LIMIT ? OFFSET ?",
        (person.community_id, item_id, item_id, limit, offset),
    )
    return {"items": [dict(r) for r in rows], "offset": offset, "limit": limit}


@router.post("/grants/{grant_id}/reissue", status_code=201)
def reissue(
    grant_id: IdPath, body: WithReason, person: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """A new code for the same holder and compartment (a lost code, an expired one the item
    still waits on); the old one stops working."""
    now = svc.clock.now().wall_ms
    with svc.store.write() as db:
        old = _community_grant(db, person, grant_id)
        item = item_row(db, old["item_id"]) if old["item_id"] else None
        if item is None or item["status"] not in WAITING_ON.get(old["purpose"], ()):
            raise Conflict("nothing waits on this code any more", code="not_waiting")
        if old["outcome"] in ("unused", "unused_stale"):
            raise Conflict("this code was already settled as not used", code="settled")
        if old["status"] == "active":
            end_grant(db, grant_id, reason="reissued", by=person.id, now_ms=now)
        elif old["settled_ms"] is None:
            db.execute(
                "UPDATE grants SET settled_ms = ?, outcome = 'replaced' WHERE id = ?",
                (now, grant_id),
            )
        validity = {
            "pickup": svc.items.policy.pickup_valid_ms,
            "dropoff": svc.items.policy.dropoff_valid_ms,
            "return": svc.items.policy.return_valid_ms,
        }[old["purpose"]]
        new_id = issue_grant(
            db,
            svc.keys,
            device_id=old["device_id"],
            compartment=old["compartment"],
            purpose=old["purpose"],
            valid_from_ms=now,
            valid_until_ms=now + validity,
            now_ms=now,
            item_id=old["item_id"],
            person_id=old["person_id"],
            created_by=person.id,
            replaces_id=grant_id,
        )
        db.execute(
            "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause, actor)"
            " VALUES (?,?,?,?,?,?)",
            (
                item["id"],
                now,
                item["status"],
                item["status"],
                f"code re-issued: {body.reason}",
                person.id,
            ),
        )
        shown = grant_view(db, svc.keys, new_id, with_code=False)
    svc.devices.publish_config(old["device_id"])
    return shown


@router.post("/grants/{grant_id}/revoke", status_code=202)
def revoke(
    grant_id: IdPath, body: WithReason, person: SocialWorker, svc: ServicesDep
) -> dict[str, Any]:
    """Withdraw a code now; what it held is settled once the locker confirms it was not used."""
    now = svc.clock.now().wall_ms
    with svc.store.write() as db:
        old = _community_grant(db, person, grant_id)
        end_grant(db, grant_id, reason=f"revoked: {body.reason}", by=person.id, now_ms=now)
    svc.devices.publish_config(old["device_id"])
    return {"status": "revoked"}


# --- maintainers ------------------------------------------------------------------------------


def refuse_if_occupied(
    db: sqlite3.Connection,
    person: Person,
    device_id: str,
    compartment: str,
    *,
    is_confirmed: bool,
) -> None:
    """Refuse to open a compartment that is not of the caller's community (404), or one a
    resident's item is in (by the sensor or by the cloud's facts) unless the maintainer
    confirmed it (409 ``occupied``): the rule of maintenance codes and of service opens."""
    row = db.execute(
        "SELECT c.occupancy, c.fact_occupancy FROM compartments c JOIN devices d"
        " ON d.id = c.device_id WHERE c.device_id = ? AND c.name = ? AND d.community_id = ?",
        (device_id, compartment, person.community_id),
    ).fetchone()
    if row is None:
        raise NotFound("no such compartment")
    occupied = "present" in (row["occupancy"], row["fact_occupancy"])
    if occupied and not is_confirmed:
        raise Conflict(
            "a resident's item is inside: confirm to open it anyway",
            code="occupied",
            field="confirm_occupied",
        )


@router.post("/devices/{device_id}/compartments/{compartment}/maintenance", status_code=201)
def maintenance_code(
    device_id: IdPath,
    compartment: CompartmentPath,
    body: MaintenanceRequest,
    person: Maintainer,
    svc: ServicesDep,
) -> dict[str, Any]:
    """A short maintenance code for one compartment, shown to the maintainer; an occupied
    compartment needs ``confirm_occupied`` (a resident's item is inside)."""
    now = svc.clock.now().wall_ms
    with svc.store.write() as db:
        refuse_if_occupied(db, person, device_id, compartment, is_confirmed=body.confirm_occupied)
        grant_id = issue_grant(
            db,
            svc.keys,
            device_id=device_id,
            compartment=compartment,
            purpose="maintenance",
            valid_from_ms=now,
            valid_until_ms=now + svc.items.policy.maintenance_valid_ms,
            now_ms=now,
            person_id=person.id,
            created_by=person.id,
        )
        shown = grant_view(db, svc.keys, grant_id, with_code=True) | {"reason": body.reason}
    svc.devices.publish_config(device_id)
    return shown


# --- cases --------------------------------------------------------------------------------------


@router.get("/cases")
def cases(
    person: Staff,
    svc: ServicesDep,
    status: Literal["open", "resolved"] | None = "open",
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Cases of the community, newest first."""
    rows = svc.store.read(
        "SELECT * FROM cases WHERE community_id = ? AND (? IS NULL OR status = ?)"
        " ORDER BY created_ms DESC, id LIMIT ? OFFSET ?",
        (person.community_id, status, status, limit, offset),
    )
    return {"items": [case_json(r) for r in rows], "offset": offset, "limit": limit}


@router.get("/cases/{case_id}")
def case(case_id: IdPath, person: Staff, svc: ServicesDep) -> dict[str, Any]:
    """A case with its corrections."""
    with svc.store.snapshot() as db:
        row = db.execute(
            "SELECT * FROM cases WHERE id = ? AND community_id = ?",
            (case_id, person.community_id),
        ).fetchone()
        if row is None:
            raise NotFound("no such case")
        corrections = db.execute(
            "SELECT * FROM corrections WHERE case_id = ? ORDER BY created_ms, id", (case_id,)
        ).fetchall()
    return case_json(row, corrections)


@router.post("/cases/{case_id}/resolve")
def resolve_case(
    case_id: IdPath, body: Resolution, person: Staff, svc: ServicesDep
) -> dict[str, Any]:
    """Close a case with a note (points, if any, are moved through the ledger)."""
    now = svc.clock.now().wall_ms
    with svc.store.write() as db:
        changed = db.execute(
            "UPDATE cases SET status = 'resolved', resolved_ms = ?, resolved_by = ?,"
            " resolution = ? WHERE id = ? AND community_id = ? AND status = 'open'",
            (now, person.id, body.resolution, case_id, person.community_id),
        ).rowcount
        if not changed:
            exists = db.execute(
                "SELECT status FROM cases WHERE id = ? AND community_id = ?",
                (case_id, person.community_id),
            ).fetchone()
            if exists is None:
                raise NotFound("no such case")
            raise Conflict("the case is already resolved", code="resolved")
    return {"status": "resolved"}
