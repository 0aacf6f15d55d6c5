"""Items and reservations, and how device events settle them (rules in core/settlement.py)."""

from __future__ import annotations

import json
import sqlite3

from cloud_api import ledger
from cloud_api.core.settlement import settle_pickup
from cloud_api.errors import Conflict
from cloud_api.grants.service import issue_grant
from cloud_api.keys import CloudKeys
from linli.contract import Event

PICKUP_VALID_MS = 48 * 60 * 60 * 1000


def set_item_status(
    db: sqlite3.Connection, item_id: str, from_status: str, to_status: str, cause: str, now_ms: int
) -> None:
    """Move an item from one status to another, recording why; refuse if it moved meanwhile."""
    cursor = db.execute(
        "UPDATE items SET status = ?, updated_ms = ? WHERE id = ? AND status = ?",
        (to_status, now_ms, item_id, from_status),
    )
    if cursor.rowcount != 1:
        raise Conflict(f"item {item_id} is not {from_status}")
    db.execute(
        "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause) VALUES (?,?,?,?,?)",
        (item_id, now_ms, from_status, to_status, cause),
    )


def reserve(
    db: sqlite3.Connection, keys: CloudKeys, item_id: str, person_id: str, now_ms: int
) -> str:
    """Reserve a listed item in a locker: hold its points, issue a pickup grant; return its id."""
    item = db.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
    if item is None or item["status"] != "listed" or item["device_id"] is None:
        raise Conflict("item is not available for reservation")
    account = f"mem:{person_id}"
    posted, pending = ledger.balances(db, account)
    if posted - pending < item["points"]:
        raise Conflict("not enough points")
    set_item_status(db, item_id, "listed", "reserved", "reserved", now_ms)
    db.execute("UPDATE items SET reserved_by = ? WHERE id = ?", (person_id, item_id))
    if item["points"] > 0:
        ledger.transfer(
            db,
            key=f"hold:{item_id}:{person_id}",
            debit=account,
            credit=ledger.REDEMPTION,
            amount=item["points"],
            kind="redemption",
            actor=person_id,
            now_ms=now_ms,
            item_id=item_id,
            phase="pending",
        )
    return issue_grant(
        db,
        keys,
        device_id=item["device_id"],
        compartment=item["compartment"],
        purpose="pickup",
        valid_from_ms=now_ms,
        valid_until_ms=now_ms + PICKUP_VALID_MS,
        now_ms=now_ms,
        item_id=item_id,
        person_id=person_id,
    )


def apply_event(db: sqlite3.Connection, event: Event, now_ms: int) -> bool:
    """Settle what a newly stored event means for grants, items and holds.

    Returns:
        True if the device's grant list changed (a grant was consumed) and must be re-pushed.
    """
    if event.type == "door_closed" and event.compartment is not None:
        epoch = event.data.get("epoch")
        if isinstance(epoch, int):
            db.execute(
                "UPDATE compartments SET epoch = MAX(epoch, ?) WHERE device_id = ? AND name = ?",
                (epoch, event.device_id, event.compartment),
            )
    grant = None
    if event.grant_id is not None:
        grant = db.execute(
            "SELECT * FROM grants WHERE id = ? AND device_id = ?", (event.grant_id, event.device_id)
        ).fetchone()
    if grant is not None and grant["item_id"] is not None:
        item = db.execute("SELECT * FROM items WHERE id = ?", (grant["item_id"],)).fetchone()
    elif event.compartment is not None and event.grant_id is None:
        # An item sensor can report the item gone after the door closed (no grant id then).
        # An event naming another grant (a drop-off into this compartment) settles nothing here.
        item = db.execute(
            "SELECT * FROM items WHERE device_id = ? AND compartment = ?"
            " AND status IN ('reserved', 'collecting')",
            (event.device_id, event.compartment),
        ).fetchone()
    else:
        item = None
    if item is None:
        return False
    settlement = settle_pickup(
        item["status"], grant["status"] if grant else None, event.type, dict(event.data)
    )
    cause = f"{event.type} {event.device_id}/{event.boot_id}/{event.seq}"
    changed_grants = False
    if settlement.consume_grant and grant is not None:
        db.execute(
            "UPDATE grants SET status = 'consumed', consumed_ms = ? WHERE id = ? AND status = 'active'",
            (event.wall_ms, grant["id"]),
        )
        changed_grants = True
    if settlement.item_status is not None:
        set_item_status(db, item["id"], item["status"], settlement.item_status, cause, now_ms)
    if settlement.post_hold and item["reserved_by"] is not None:
        hold = db.execute(
            "SELECT id FROM transfers WHERE idempotency_key = ?",
            (f"hold:{item['id']}:{item['reserved_by']}",),
        ).fetchone()
        if hold is not None:
            ledger.post_pending(db, hold["id"], actor=f"device:{event.device_id}", now_ms=now_ms)
    return changed_grants


def event_json(event: Event) -> str:
    """The stored form of an event."""
    return json.dumps(event.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
