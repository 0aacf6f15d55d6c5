"""Settlement: what the lockers' events and the passing of time do to items, grants and holds.

Three rules carry the weight (docs/decisions/0016-domain-and-settlement.md):

1. **Events settle in order.** A device's events are applied in ``(boot, seq)`` order, only
   the contiguous prefix the cloud holds; an event that arrives early waits for the ones
   before it. A duplicate is never stored twice, so never applied twice.
2. **Expiry waits for the device.** An expired or cancelled grant is *settled* — its holds
   voided, its item relisted — only once the device's *reporting horizon* (every event it
   recorded before that time is acknowledged: ``devices.reported_through_ms``) has passed the
   moment the grant stopped working on the device: its expiry, or, for a revocation, the
   moment the cloud learnt the device applied it. A device silent for longer than the staleness
   bound is settled without its reports (outcome ``unused_stale``).
3. **A late event never makes a second outcome.** An event about a grant already settled as
   unused is a *late conflict*: it opens a case for a social worker with a recorded correction;
   only safe changes are made automatically (the item is taken off the listing and a second
   reservation of it withdrawn). Points move only by a person's decision.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from cloud_api.cases import open_case, record_correction
from cloud_api.core.items import IN_LOCKER, InvalidTransition, next_status
from cloud_api.core.settlement import Context, fact_of, settle
from cloud_api.items.service import (
    DEFAULT_POLICY,
    Policy,
    end_item_grants,
    item_row,
    move,
    resolve_hold,
    transition,
)
from cloud_api.keys import CloudKeys
from linli.contract import Event

log = logging.getLogger(__name__)

UNUSED_OUTCOMES = ("unused", "unused_stale")


def event_ref(event: Event) -> str:
    """The stable reference of an event: ``device/boot/seq``."""
    return f"{event.device_id}/{event.boot_id}/{event.seq}"


def apply_event(
    db: sqlite3.Connection,
    event: Event,
    now_ms: int,
    *,
    keys: CloudKeys,
    policy: Policy = DEFAULT_POLICY,
) -> set[str]:
    """Settle one stored event (in its device's order); return devices whose grant list changed."""
    if event.type == "door_closed" and event.compartment is not None:
        epoch = event.data.get("epoch")
        if isinstance(epoch, int):
            db.execute(
                "UPDATE compartments SET epoch = MAX(epoch, ?) WHERE device_id = ? AND name = ?",
                (epoch, event.device_id, event.compartment),
            )
    fact = fact_of(event.type, event.data)
    if fact is None:
        return set()
    device = db.execute(
        "SELECT community_id FROM devices WHERE id = ?", (event.device_id,)
    ).fetchone()
    compartment = None
    if event.compartment is not None:
        compartment = db.execute(
            "SELECT CASE fact_occupancy WHEN 'unknown' THEN occupancy ELSE fact_occupancy END"
            " AS fact_occupancy FROM compartments WHERE device_id = ? AND name = ?",
            (event.device_id, event.compartment),
        ).fetchone()
        if compartment is None:
            _mismatch(db, event, device["community_id"], now_ms, "no such compartment here")
            return set()
    grant = None
    if event.grant_id is not None:
        grant = db.execute("SELECT * FROM grants WHERE id = ?", (event.grant_id,)).fetchone()
        if grant is not None and (
            grant["device_id"] != event.device_id
            or (event.compartment is not None and grant["compartment"] != event.compartment)
        ):
            _mismatch(db, event, device["community_id"], now_ms, "the grant is for another place")
            return set()
    if grant is not None:
        item = item_row(db, grant["item_id"]) if grant["item_id"] else None
    elif event.compartment is not None and event.grant_id is None:
        item = db.execute(
            "SELECT * FROM items WHERE device_id = ? AND compartment = ? AND status IN"
            " (SELECT value FROM json_each(?)) ORDER BY updated_ms DESC LIMIT 1",
            (event.device_id, event.compartment, json.dumps(sorted(IN_LOCKER))),
        ).fetchone()
    else:
        item = None
    ctx = Context(
        item_status=item["status"] if item else None,
        item_kind=item["kind"] if item else "give",
        purpose=grant["purpose"] if grant else None,
        grant_status=grant["status"] if grant else None,
        settled_unused=bool(grant and grant["outcome"] in UNUSED_OUTCOMES),
        occupancy=compartment["fact_occupancy"] if compartment else "unknown",
    )
    outcome = settle(ctx, fact)
    actor = f"device:{event.device_id}"
    changed: set[str] = set()
    if outcome.occupancy is not None:
        db.execute(
            "UPDATE compartments SET fact_occupancy = ? WHERE device_id = ? AND name = ?",
            (outcome.occupancy, event.device_id, event.compartment),
        )
    if outcome.conflict and grant is not None:
        return _late_conflict(db, event, grant, item, device["community_id"], now_ms)
    if outcome.consume_grant and grant is not None:
        db.execute(
            "UPDATE grants SET status = 'consumed', consumed_ms = ?, settled_ms = ?,"
            " outcome = 'used' WHERE id = ? AND status IN ('active', 'expired', 'revoked')",
            (event.wall_ms, now_ms, grant["id"]),
        )
        changed.add(event.device_id)
    if outcome.action is not None and item is not None:
        changed |= transition(
            db,
            keys,
            item,
            outcome.action,
            cause=f"{event.type} {event_ref(event)}",
            actor=actor,
            now_ms=now_ms,
            policy=policy,
        )
    if outcome.case is not None:
        open_case(
            db,
            community_id=device["community_id"],
            kind=outcome.case,
            now_ms=now_ms,
            event_ref=event_ref(event),
            item_id=item["id"] if item else None,
            grant_id=grant["id"] if grant else None,
            device_id=event.device_id,
            person_id=grant["person_id"] if grant else None,
            detail={"event": event.type, "compartment": event.compartment, "at_ms": event.wall_ms},
        )
    return changed


def _mismatch(
    db: sqlite3.Connection, event: Event, community_id: str, now_ms: int, why: str
) -> None:
    """An event naming a compartment or grant that is not this device's: recorded, settles
    nothing (a device never speaks for another's compartment)."""
    log.warning("event %s names a place that is not its device's: %s", event_ref(event), why)
    open_case(
        db,
        community_id=community_id,
        kind="device_mismatch",
        now_ms=now_ms,
        event_ref=event_ref(event),
        device_id=event.device_id,
        detail={"event": event.type, "compartment": event.compartment, "why": why},
    )


def _late_conflict(
    db: sqlite3.Connection,
    event: Event,
    grant: sqlite3.Row,
    item: sqlite3.Row | None,
    community_id: str,
    now_ms: int,
) -> set[str]:
    """A device reports using a grant the cloud already settled as unused."""
    actor = f"device:{event.device_id}"
    case_id = open_case(
        db,
        community_id=community_id,
        kind="late_conflict",
        now_ms=now_ms,
        event_ref=f"grant:{grant['id']}",
        item_id=grant["item_id"],
        grant_id=grant["id"],
        device_id=event.device_id,
        person_id=grant["person_id"],
        detail={
            "grant_outcome": grant["outcome"],
            "first_event": event.type,
            "event_at_ms": event.wall_ms,
            "event_trust": event.trust,
        },
    )
    if case_id is None:
        row = db.execute(
            "SELECT id FROM cases WHERE kind = 'late_conflict' AND event_ref = ?",
            (f"grant:{grant['id']}",),
        ).fetchone()
        case_id = row["id"]
    applied: dict[str, Any] = {}
    changed: set[str] = set()
    if item is not None and item["status"] in ("listed", "reserved"):
        try:
            next_status(item["status"], "late_conflict", item["kind"])
        except InvalidTransition:  # pragma: no cover - the table has both
            pass
        else:
            if item["status"] == "reserved":
                changed |= end_item_grants(
                    db, item["id"], reason="withdrawn", by=actor, now_ms=now_ms
                )
                voided = [
                    resolve_hold(
                        db,
                        key,
                        post=False,
                        actor=actor,
                        now_ms=now_ms,
                        reason="late conflict: under review",
                    )
                    for key in (item["hold_key"], item["deposit_key"])
                ]
                db.execute(
                    "UPDATE items SET reserved_by = NULL, hold_key = NULL, deposit_key = NULL"
                    " WHERE id = ?",
                    (item["id"],),
                )
                applied["withdrew_reservation_of"] = item["reserved_by"]
                applied["voided"] = [v for v in voided if v]
            move(
                db,
                item,
                "late_conflict",
                cause=f"late {event.type} {event_ref(event)}",
                actor=actor,
                now_ms=now_ms,
            )
            applied["item"] = {"from": item["status"], "to": "under_review"}
    record_correction(
        db,
        case_id,
        decided={
            "grant": grant["id"],
            "outcome": grant["outcome"],
            "settled_ms": grant["settled_ms"],
        },
        observed={
            "event": event_ref(event),
            "type": event.type,
            "at_ms": event.wall_ms,
            "trust": event.trust,
        },
        applied=applied,
        now_ms=now_ms,
    )
    log.warning(
        "late event %s contradicts the settled grant %s: case %s",
        event_ref(event),
        grant["id"],
        case_id,
    )
    return changed


# --- time: expiry and settlement of unused grants -------------------------------------------------


def expire_grants(db: sqlite3.Connection, now_ms: int) -> int:
    """Mark active grants past their validity as expired (idempotent); return how many."""
    return int(
        db.execute(
            "UPDATE grants SET status = 'expired', ended_ms = valid_until_ms,"
            " end_reason = 'expired', settle_after_ms = valid_until_ms"
            " WHERE status = 'active' AND valid_until_ms <= ?",
            (now_ms,),
        ).rowcount
    )


def settle_unused_grants(
    db: sqlite3.Connection, keys: CloudKeys, now_ms: int, policy: Policy = DEFAULT_POLICY
) -> tuple[int, set[str]]:
    """Settle expired and revoked grants whose device has reported past the moment they stopped
    working (or has been silent beyond the staleness bound); return (how many, devices whose
    grant list changed)."""
    rows = db.execute(
        "SELECT g.*, d.reported_through_ms AS horizon FROM grants g"
        " JOIN devices d ON d.id = g.device_id WHERE g.settled_ms IS NULL"
        " AND g.status IN ('expired', 'revoked') ORDER BY g.ended_ms, g.id"
    ).fetchall()
    settled = 0
    changed: set[str] = set()
    for grant in rows:
        after = grant["settle_after_ms"]
        by_horizon = after is not None and grant["horizon"] >= after
        base = after if after is not None else grant["ended_ms"]
        by_staleness = base is not None and now_ms >= base + policy.staleness_ms
        if not (by_horizon or by_staleness):
            continue
        outcome = "unused" if by_horizon else "unused_stale"
        done = db.execute(
            "UPDATE grants SET settled_ms = ?, outcome = ? WHERE id = ? AND settled_ms IS NULL",
            (now_ms, outcome, grant["id"]),
        ).rowcount
        if not done:
            continue
        settled += 1
        if outcome == "unused_stale":
            log.warning(
                "grant %s settled without its device's reports (silent past the bound)",
                grant["id"],
            )
        item = item_row(db, grant["item_id"]) if grant["item_id"] else None
        if item is None or not _is_current(db, grant, item):
            continue
        changed |= transition(
            db,
            keys,
            item,
            "grant_unused",
            cause=f"{grant['end_reason']} {grant['id']} {outcome}",
            actor="scheduler",
            now_ms=now_ms,
            policy=policy,
        )
    return settled, changed


def _is_current(db: sqlite3.Connection, grant: sqlite3.Row, item: sqlite3.Row) -> bool:
    """Whether the grant is what the item is waiting on (no successor took over)."""
    expected = {"pickup": "reserved", "dropoff": "awaiting_dropoff", "return": "awaiting_return"}
    if item["status"] != expected.get(grant["purpose"]):
        return False
    if grant["purpose"] == "pickup" and item["reserved_by"] != grant["person_id"]:
        return False
    other = db.execute(
        "SELECT 1 FROM grants WHERE item_id = ? AND id != ? AND (status IN ('active', 'consumed')"
        " OR (settled_ms IS NULL AND status IN ('expired', 'revoked'))) AND created_ms >= ?",
        (item["id"], grant["id"], grant["created_ms"]),
    ).fetchone()
    return other is None


def note_config_applied(db: sqlite3.Connection, device_id: str, version: int, now_ms: int) -> int:
    """The device applied configuration ``version``: revocations it carried start waiting for
    the device's reports from now on; return how many."""
    db.execute(
        "UPDATE devices SET cfg_applied_version = MAX(cfg_applied_version, ?) WHERE id = ?",
        (version, device_id),
    )
    return int(
        db.execute(
            "UPDATE grants SET settle_after_ms = ? WHERE device_id = ? AND status = 'revoked'"
            " AND settle_after_ms IS NULL AND settled_ms IS NULL AND revoked_cfg_version <= ?",
            (now_ms, device_id, version),
        ).rowcount
    )


def advance_horizon(db: sqlite3.Connection, device_id: str, through_ms: int) -> None:
    """Every event the device recorded before ``through_ms`` is stored (never moves back)."""
    db.execute(
        "UPDATE devices SET reported_through_ms = MAX(reported_through_ms, ?) WHERE id = ?",
        (through_ms, device_id),
    )


def event_json(event: Event) -> str:
    """The stored form of an event."""
    return json.dumps(event.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
