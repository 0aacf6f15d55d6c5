"""Devices as maintainers see them: the community's devices with their health, a bank's live
state, and the service open (a signed ``open`` command, with a reason).

The reads here serve both the API and the maintainer's console (``cloud_api/pages/maint.py``):
:func:`devices_of` is the body of ``GET /api/v1/devices``, :func:`live_view` what the live view
streams.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, StringConstraints

from cloud_api.accounts.service import Person
from cloud_api.deps import Maintainer, Services, ServicesDep
from cloud_api.grants.router import refuse_if_occupied
from linli.ids import COMPARTMENT_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["devices"])

IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
CompartmentPath = Annotated[str, Path(pattern=COMPARTMENT_PATTERN)]
ServiceReason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]

RATED_RELAY_CYCLES = 100_000
"""Switching operations a latch relay is rated for under load (docs: /work/shared/design/
hardware.md, "Relay modules are rated around 100 000 switching operations"); each
``latch_pulsed`` event is one."""
RECENT_COMMANDS = 5
"""Commands of a bank the live view shows (newest first)."""
UNDER_VOLTAGE_NOW = 1 << 0
UNDER_VOLTAGE_SINCE_BOOT = 1 << 16
"""Bits of the Raspberry Pi's ``get_throttled`` (telemetry ``throttled``)."""


class ServiceOpen(BaseModel):
    """A maintainer's service open of one compartment."""

    model_config = ConfigDict(extra="forbid")
    reason: ServiceReason
    confirm_occupied: bool = False


# --- reads ------------------------------------------------------------------------------------


def devices_of(svc: Services, community_id: str) -> list[dict[str, Any]]:
    """Every device of a community: status, version, configuration, the latest telemetry, event
    gaps and compartments (the body of ``GET /api/v1/devices``)."""
    with svc.store.snapshot() as db:
        rows = db.execute(
            "SELECT id, role, name, location, status, boot_id, software_version, status_ms,"
            " last_seen_ms, cfg_version, cfg_applied_version, reported_through_ms, cfg_reported"
            " FROM devices WHERE community_id = ? ORDER BY id",
            (community_id,),
        ).fetchall()
        compartments = {
            r["id"]: db.execute(
                "SELECT name, size, latch, door, occupancy, needs_attention, attention, epoch,"
                " state_ms FROM compartments WHERE device_id = ? ORDER BY name",
                (r["id"],),
            ).fetchall()
            for r in rows
        }
    result = []
    for r in rows:
        entry = dict(r)
        entry["cfg_reported"] = json.loads(r["cfg_reported"]) if r["cfg_reported"] else None
        entry["telemetry"] = svc.devices.telemetry.get(r["id"])
        entry["event_gaps"] = svc.devices.gaps(r["id"])
        entry["compartments"] = [
            dict(c) | {"needs_attention": bool(c["needs_attention"])} for c in compartments[r["id"]]
        ]
        result.append(entry)
    return result


def relay_cycles(svc: Services, community_id: str) -> dict[str, dict[str, int]]:
    """Latch pulses per device and compartment (``latch_pulsed`` events the cloud holds)."""
    rows = svc.store.read(
        "SELECT e.device_id, e.compartment, COUNT(*) AS n FROM device_events e"
        " JOIN devices d ON d.id = e.device_id WHERE d.community_id = ?"
        " AND e.type = 'latch_pulsed' AND e.compartment IS NOT NULL"
        " GROUP BY e.device_id, e.compartment",
        (community_id,),
    )
    found: dict[str, dict[str, int]] = {}
    for r in rows:
        found.setdefault(r["device_id"], {})[r["compartment"]] = int(r["n"])
    return found


def under_voltage(throttled: object) -> str:
    """``now``, ``since_boot``, ``none`` or ``unknown`` from the telemetry's throttled bits."""
    if not isinstance(throttled, int) or isinstance(throttled, bool):
        return "unknown"
    if throttled & UNDER_VOLTAGE_NOW:
        return "now"
    if throttled & UNDER_VOLTAGE_SINCE_BOOT:
        return "since_boot"
    return "none"


def live_view(svc: Services, community_id: str, device_id: str) -> dict[str, Any] | None:
    """What the live view shows of one bank, read in one snapshot; None if the device is not
    of the community. Only what the view shows is in it (not the times of the last message),
    so a message that changes nothing visible sends nothing."""
    now = svc.clock.now().wall_ms
    with svc.store.snapshot() as db:
        device = db.execute(
            "SELECT id, name, location, role, status, software_version FROM devices"
            " WHERE id = ? AND community_id = ?",
            (device_id, community_id),
        ).fetchone()
        if device is None:
            return None
        compartments = db.execute(
            "SELECT name, size, latch, door, occupancy, fact_occupancy, needs_attention,"
            " attention FROM compartments WHERE device_id = ? ORDER BY name",
            (device_id,),
        ).fetchall()
        commands = db.execute(
            "SELECT id, name, compartment, requested_by, issued_ms, expires_ms, result_ok,"
            " result_reason, result_ms FROM commands WHERE device_id = ?"
            " ORDER BY issued_ms DESC, seq DESC LIMIT ?",
            (device_id, RECENT_COMMANDS),
        ).fetchall()
    return {
        "device": {
            "id": device["id"],
            "name": device["name"],
            "location": device["location"],
            "role": device["role"],
            "status": device["status"],
            "software_version": device["software_version"],
        },
        "compartments": {
            c["name"]: {
                "size": c["size"],
                "latch": c["latch"],
                "door": c["door"],
                "occupancy": c["occupancy"],
                "is_occupied": "present" in (c["occupancy"], c["fact_occupancy"]),
                "needs_attention": bool(c["needs_attention"]),
                "attention": c["attention"],
            }
            for c in compartments
        },
        "commands": [command_view(dict(c), now) for c in commands],
    }


def command_view(row: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A command and where it stands: ``pending``, ``done``, ``refused`` (with the device's
    reason) or ``unanswered`` (expired without an answer)."""
    if row["result_ok"] is not None:
        outcome = "done" if row["result_ok"] else "refused"
    elif row["expires_ms"] < now_ms:
        outcome = "unanswered"
    else:
        outcome = "pending"
    return {
        "id": row["id"],
        "name": row["name"],
        "compartment": row["compartment"],
        "issued_ms": row["issued_ms"],
        "outcome": outcome,
        "reason": row["result_reason"],
    }


# --- the service open -------------------------------------------------------------------------


def service_open(
    svc: Services,
    person: Person,
    device_id: str,
    compartment: str,
    *,
    reason: str,
    confirm_occupied: bool,
) -> str:
    """Send the signed ``open`` command for one compartment of the maintainer's community;
    return the command id.

    Raises:
        NotFound: no such compartment in the caller's community.
        Conflict: ``occupied`` (a resident's item is inside and it was not confirmed).
        DeviceUnavailable: the cloud is not connected to the broker.
    """
    with svc.store.snapshot() as db:
        refuse_if_occupied(db, person, device_id, compartment, is_confirmed=confirm_occupied)
    command_id = svc.devices.send_command(
        device_id, "open", compartment=compartment, requested_by=person.id, reason=reason
    )
    # The reason travels in the signed command; it is free text, so it is not logged.
    log.info(
        "service open of %s %s by %s: command %s", device_id, compartment, person.id, command_id
    )
    return command_id


@router.post("/devices/{device_id}/compartments/{compartment}/open", status_code=202)
def open_compartment(
    device_id: IdPath,
    compartment: CompartmentPath,
    body: ServiceOpen,
    person: Maintainer,
    svc: ServicesDep,
) -> dict[str, str]:
    """Open one compartment now, with a reason (a signed command to the locker; its result is
    at ``GET /api/v1/commands/{id}``). An occupied compartment needs ``confirm_occupied``."""
    command_id = service_open(
        svc,
        person,
        device_id,
        compartment,
        reason=body.reason,
        confirm_occupied=body.confirm_occupied,
    )
    return {"command_id": command_id}
