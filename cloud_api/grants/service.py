"""Grants and their codes, and the signed grant lists pushed to controllers.

A grant binds one compartment, one purpose and one content epoch to a validity window. Its code is
derived (HMAC of the code secret and the grant id), never stored, shown again to the signed-in
owner, and unique among the live codes of its bank: on a collision the cloud bumps the grant's
``code_counter`` and derives again (docs/decisions/0006-codes.md).
"""

from __future__ import annotations

import json
import sqlite3

from cloud_api.core.items import IN_LOCKER
from cloud_api.errors import Conflict, NotFound
from cloud_api.keys import CloudKeys
from cloud_api.notify.outbox import enqueue
from linli.codes import derive_code, guard_hash, hash_code, phone_digits
from linli.contract import CompartmentPolicy, ConfigBody, Grant, sign_body
from linli.ids import new_id

MAX_COUNTER = 100
SIZES = ("S", "M", "L")


def code_of(keys: CloudKeys, grant_id: str, counter: int) -> str:
    """The 8-digit code of a grant."""
    return derive_code(keys.code_secret, grant_id, counter)


def issue_grant(
    db: sqlite3.Connection,
    keys: CloudKeys,
    *,
    device_id: str,
    compartment: str,
    purpose: str,
    valid_from_ms: int,
    valid_until_ms: int,
    now_ms: int,
    item_id: str | None = None,
    person_id: str | None = None,
    created_by: str | None = None,
    replaces_id: str | None = None,
    notify: bool | None = None,
) -> str:
    """Create an active grant bound to the compartment's current epoch; return its id.

    ``notify``: send the holder the code as a message; by default for pickups and returns (a
    drop-off's code is shown where it is asked for, except when the valuation terminal could not
    reach the cloud while the resident was there)."""
    row = db.execute(
        "SELECT epoch FROM compartments WHERE device_id = ? AND name = ?", (device_id, compartment)
    ).fetchone()
    if row is None:
        raise LookupError(f"no compartment {compartment} on {device_id}")
    if valid_until_ms <= valid_from_ms:
        raise Conflict("a grant must end after it starts")
    grant_id = new_id("grt")
    live = {
        code_of(keys, r["id"], r["code_counter"])
        for r in db.execute(
            "SELECT id, code_counter FROM grants WHERE device_id = ? AND status = 'active'"
            " AND valid_until_ms > ?",
            (device_id, now_ms),
        )
    }
    counter = next(c for c in range(MAX_COUNTER) if code_of(keys, grant_id, c) not in live)
    db.execute(
        "INSERT INTO grants (id, item_id, person_id, device_id, compartment, purpose, epoch,"
        " valid_from_ms, valid_until_ms, code_counter, status, created_ms, created_by,"
        " replaces_id) VALUES (?,?,?,?,?,?,?,?,?,?, 'active', ?,?,?)",
        (
            grant_id,
            item_id,
            person_id,
            device_id,
            compartment,
            purpose,
            row["epoch"],
            valid_from_ms,
            valid_until_ms,
            counter,
            now_ms,
            created_by,
            replaces_id,
        ),
    )
    if notify is None:
        notify = purpose in ("pickup", "return")
    if person_id is not None and notify:
        # The resident may not be looking at a screen: the code goes out as a message too
        # (derived at send time, never stored; cloud_api/notify/).
        resident = db.execute(
            "SELECT 1 FROM people WHERE id = ? AND role = 'resident'", (person_id,)
        ).fetchone()
        if resident is not None:
            enqueue(
                db,
                person_id=person_id,
                kind="new_code",
                key=f"new_code:{grant_id}",
                params={"grant_id": grant_id},
                now_ms=now_ms,
            )
    return grant_id


def end_grant(
    db: sqlite3.Connection, grant_id: str, *, reason: str, by: str, now_ms: int
) -> sqlite3.Row:
    """Revoke an active grant (``cancelled``, ``reissued``, ``withdrawn``…); return its row.

    The device learns it with its next configuration; until the device has applied that version
    (``revoked_cfg_version``) and reported every event up to then, the cloud does not settle
    what the grant held (a code entered offline may still have opened the door). A grant
    replaced by a re-issue is settled at once: its successor carries the reservation on.
    """
    row = db.execute("SELECT * FROM grants WHERE id = ?", (grant_id,)).fetchone()
    if row is None:
        raise NotFound(f"no grant {grant_id}")
    if row["status"] != "active":
        raise Conflict(f"the grant is {row['status']}, not active")
    device = db.execute(
        "SELECT cfg_version FROM devices WHERE id = ?", (row["device_id"],)
    ).fetchone()
    replaced = reason == "reissued"
    db.execute(
        "UPDATE grants SET status = 'revoked', ended_ms = ?, ended_by = ?, end_reason = ?,"
        " revoked_cfg_version = ?, settled_ms = ?, outcome = ? WHERE id = ? AND status = 'active'",
        (
            now_ms,
            by,
            reason,
            device["cfg_version"] + 1,
            now_ms if replaced else None,
            "replaced" if replaced else None,
            grant_id,
        ),
    )
    updated: sqlite3.Row = db.execute("SELECT * FROM grants WHERE id = ?", (grant_id,)).fetchone()
    return updated


def fits(item_size: str, compartment_size: str) -> bool:
    """Whether an item of one size fits a compartment of another (S < M < L)."""
    return SIZES.index(compartment_size) >= SIZES.index(item_size)


def free_compartments(
    db: sqlite3.Connection, community_id: str, size: str, device_id: str | None = None
) -> list[sqlite3.Row]:
    """Compartments an item of ``size`` may be put into now, best first.

    Free means: of the community (and of ``device_id`` if given), fitting, reported empty and
    closed by the device's own state, not needing attention, held by no item and named by no
    live grant. Best first: the smallest fitting size, then devices online, then name.
    """
    held = {
        (r["device_id"], r["compartment"])
        for r in db.execute(
            "SELECT device_id, compartment, status FROM items WHERE community_id = ?"
            " AND device_id IS NOT NULL",
            (community_id,),
        )
        if r["status"] in IN_LOCKER
    }
    granted = {
        (r["device_id"], r["compartment"])
        for r in db.execute("SELECT device_id, compartment FROM grants WHERE status = 'active'")
    }
    rows = db.execute(
        "SELECT c.device_id, c.name, c.size, d.status AS device_status FROM compartments c"
        " JOIN devices d ON d.id = c.device_id WHERE d.community_id = ? AND d.role = 'locker'"
        " AND (? IS NULL OR d.id = ?) AND c.needs_attention = 0 AND c.occupancy != 'present'"
        " AND c.fact_occupancy != 'present' AND c.door != 'open'",
        (community_id, device_id, device_id),
    ).fetchall()
    free = [
        r
        for r in rows
        if fits(size, r["size"]) and (r["device_id"], r["name"]) not in held | granted
    ]
    return sorted(
        free,
        key=lambda r: (
            SIZES.index(r["size"]),
            r["device_status"] != "online",
            r["device_id"],
            r["name"],
        ),
    )


def build_config(
    db: sqlite3.Connection, keys: CloudKeys, device_id: str, version: int, now_ms: int
) -> ConfigBody:
    """The configuration a controller should apply: compartments and its live grants."""
    device_key = keys.device_code_key(device_id)
    compartments = {
        r["name"]: CompartmentPolicy(size=r["size"])
        for r in db.execute("SELECT name, size FROM compartments WHERE device_id = ?", (device_id,))
    }
    grants = []
    for r in db.execute(
        "SELECT g.*, p.phone FROM grants g"
        " LEFT JOIN resident_profiles p ON p.person_id = g.person_id"
        " WHERE g.device_id = ? AND g.status = 'active' AND g.valid_until_ms > ?"
        " ORDER BY g.created_ms, g.id",
        (device_id, now_ms),
    ):
        code = code_of(keys, r["id"], r["code_counter"])
        # A resident signs in with their phone number: its last four digits guard the code while
        # the bank is guarded against guessing (docs/security.md).
        digits = phone_digits(r["phone"]) if r["phone"] else None
        grants.append(
            Grant(
                grant_id=r["id"],
                compartment=r["compartment"],
                purpose=r["purpose"],
                valid_from_ms=r["valid_from_ms"],
                valid_until_ms=r["valid_until_ms"],
                code_hash=hash_code(device_key, code),
                epoch=r["epoch"],
                guard_hash=guard_hash(device_key, code, digits) if digits else None,
            )
        )
    # Revoked grants still within their window are named, so the controller tells a resident
    # the code was withdrawn (and does not count the entry as a guess).
    revoked = [
        r["id"]
        for r in db.execute(
            "SELECT id FROM grants WHERE device_id = ? AND status = 'revoked' AND valid_until_ms > ?"
            " ORDER BY created_ms DESC, id LIMIT 1000",
            (device_id, now_ms),
        )
    ]
    return ConfigBody(
        device_id=device_id,
        version=version,
        issued_at_ms=now_ms,
        compartments=compartments,
        grants=grants,
        revoked=revoked,
    )


def signed_config(keys: CloudKeys, body: ConfigBody) -> bytes:
    """Sign a configuration body for ``cfg/desired``."""
    return sign_body(keys.signing_key, keys.key_id, body)


def refreshed(keys: CloudKeys, stored_body: str, now_ms: int) -> bytes:
    """Re-sign the last configuration with a fresh ``issued_at_ms`` (same version): signed time."""
    body = ConfigBody.model_validate(json.loads(stored_body) | {"issued_at_ms": now_ms})
    return signed_config(keys, body)
