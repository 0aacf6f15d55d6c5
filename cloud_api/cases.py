"""Cases: tasks for a person, and the immutable corrections that explain them.

A case is opened when something needs a social worker's or maintainer's judgement: a late event
contradicting a decision already taken, an empty drop-off, an item left behind or at risk, an
event naming a grant or compartment of another device, a resident's problem report. A case is
opened once per cause (``(kind, event_ref)`` is unique), so a repeated event opens nothing new.

A *correction* records, for a late conflict, what the cloud had decided, what the device later
reported, and what the cloud changed automatically (only what is safe without a person: taking an
item off the listing, withdrawing a second reservation's code). Points are never moved by a
correction: a social worker decides, through the ledger.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from linli.ids import new_id

log = logging.getLogger(__name__)

CASE_KINDS = (
    "late_conflict",
    "dropoff_empty",
    "item_left_behind",
    "item_at_risk",
    "item_missing",
    "device_mismatch",
    "problem_report",
    "damaged_return",
)


def open_case(
    db: sqlite3.Connection,
    *,
    community_id: str,
    kind: str,
    now_ms: int,
    event_ref: str | None = None,
    item_id: str | None = None,
    grant_id: str | None = None,
    device_id: str | None = None,
    person_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> str | None:
    """Open a case once per ``(kind, event_ref)``; return its id, or None if it existed."""
    if kind not in CASE_KINDS:
        raise ValueError(f"unknown case kind {kind}")
    case_id = new_id("case")
    inserted = db.execute(
        "INSERT INTO cases (id, community_id, kind, status, item_id, grant_id, device_id,"
        " person_id, event_ref, detail, created_ms) VALUES (?,?,?, 'open', ?,?,?,?,?,?,?)"
        " ON CONFLICT DO NOTHING",
        (
            case_id,
            community_id,
            kind,
            item_id,
            grant_id,
            device_id,
            person_id,
            event_ref,
            json.dumps(detail or {}, ensure_ascii=False, sort_keys=True),
            now_ms,
        ),
    ).rowcount
    if not inserted:
        return None
    log.info("case %s opened: %s (item %s, device %s)", case_id, kind, item_id, device_id)
    return case_id


def record_correction(
    db: sqlite3.Connection,
    case_id: str,
    *,
    decided: dict[str, Any],
    observed: dict[str, Any],
    applied: dict[str, Any],
    now_ms: int,
) -> str:
    """Record what was decided, what was observed later, and what was changed because of it."""
    correction_id = new_id("cor")
    db.execute(
        "INSERT INTO corrections (id, case_id, decided, observed, applied, created_ms)"
        " VALUES (?,?,?,?,?,?)",
        (
            correction_id,
            case_id,
            json.dumps(decided, sort_keys=True),
            json.dumps(observed, sort_keys=True),
            json.dumps(applied, sort_keys=True),
            now_ms,
        ),
    )
    return correction_id


def case_json(row: sqlite3.Row, corrections: list[sqlite3.Row] | None = None) -> dict[str, Any]:
    """A case as API data."""
    data: dict[str, Any] = {
        key: row[key]
        for key in (
            "id",
            "kind",
            "status",
            "item_id",
            "grant_id",
            "device_id",
            "person_id",
            "created_ms",
            "resolved_ms",
            "resolved_by",
            "resolution",
        )
    }
    data["detail"] = json.loads(row["detail"])
    if corrections is not None:
        data["corrections"] = [
            {
                "id": c["id"],
                "decided": json.loads(c["decided"]),
                "observed": json.loads(c["observed"]),
                "applied": json.loads(c["applied"]),
                "created_ms": c["created_ms"],
            }
            for c in corrections
        ]
    return data
