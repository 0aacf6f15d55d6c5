"""HTTP routes of the foundation: a resident's pickups, items, devices and commands.

Authorization is role + community + ownership on every route: a resident sees only their own
grants and codes; staff see only their own community's devices and items.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from cloud_api import ledger
from cloud_api.deps import AnyPerson, Me, Resident, ResidentSelf, ServicesDep, Staff
from cloud_api.devices.router import devices_of
from cloud_api.errors import NotFound
from cloud_api.grants.router import open_grant
from cloud_api.grants.service import code_of

router = APIRouter(prefix="/api/v1")

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("/me")
def me(person: Me, svc: ServicesDep) -> dict[str, object]:
    """Who is signed in, and (for residents) their points."""
    result: dict[str, object] = {
        "id": person.id,
        "role": person.role,
        "display_name": person.display_name,
        "language": person.language,
    }
    if person.role == "resident":
        with svc.store.snapshot() as db:  # both sums from one consistent state
            posted, pending = ledger.balances(db, f"mem:{person.id}")
        result |= {"balance": posted, "held": pending, "available": posted - pending}
    return result


@router.get("/me/pickups")
def my_pickups(person: ResidentSelf, svc: ServicesDep) -> list[dict[str, object]]:
    """The signed-in resident's live pickup codes, shown again whenever they sign in."""
    now = svc.clock.now().wall_ms
    rows = svc.store.read(
        "SELECT g.id, g.code_counter, g.device_id, g.compartment, g.valid_until_ms, i.title,"
        " d.name AS locker, d.location FROM grants g JOIN items i ON i.id = g.item_id"
        " JOIN devices d ON d.id = g.device_id WHERE g.person_id = ? AND g.purpose = 'pickup'"
        " AND g.status = 'active' AND g.valid_until_ms > ? ORDER BY g.created_ms",
        (person.id, now),
    )
    return [
        {
            "grant_id": r["id"],
            "item": r["title"],
            "code": code_of(svc.keys, r["id"], r["code_counter"]),
            "locker": r["locker"],
            "location": r["location"],
            "device_id": r["device_id"],
            "compartment": r["compartment"],
            "valid_until_ms": r["valid_until_ms"],
        }
        for r in rows
    ]


@router.post("/me/pickups/{grant_id}/open", status_code=202)
def open_my_pickup(grant_id: IdPath, person: Resident, svc: ServicesDep) -> dict[str, str]:
    """ "Open now" from the signed-in phone page: a signed command to the locker (pickups;
    ``/me/grants/{id}/open`` opens any of the resident's codes)."""
    return {"command_id": open_grant(svc, person, grant_id, ("pickup",))}


@router.get("/devices")
def devices(person: Staff, svc: ServicesDep) -> list[dict[str, object]]:
    """Every device of the caller's community: status, version, compartments."""
    return devices_of(svc, person.community_id)


@router.get("/devices/{device_id}/events")
def device_events(device_id: IdPath, person: Staff, svc: ServicesDep) -> list[dict[str, object]]:
    """The device's stored events (codes never appear in them)."""
    if (
        svc.store.read_one(
            "SELECT 1 FROM devices WHERE id = ? AND community_id = ?",
            (device_id, person.community_id),
        )
        is None
    ):
        raise NotFound("no such device")
    return svc.devices.stored_events(device_id)


@router.get("/commands/{command_id}")
def command(command_id: IdPath, person: AnyPerson, svc: ServicesDep) -> dict[str, object]:
    """A command's result; residents see only their own."""
    row = svc.store.read_one(
        "SELECT c.id, c.device_id, c.name, c.compartment, c.requested_by, c.reason, c.issued_ms,"
        " c.expires_ms, c.result_ok, c.result_reason, c.result_ms, d.community_id"
        " FROM commands c JOIN devices d ON d.id = c.device_id WHERE c.id = ?",
        (command_id,),
    )
    if row is None or row["community_id"] != person.community_id:
        raise NotFound("no such command")
    if person.role == "resident" and row["requested_by"] != person.id:
        raise NotFound("no such command")
    result = dict(row)
    result.pop("community_id")
    result["result_ok"] = None if row["result_ok"] is None else bool(row["result_ok"])
    return result
