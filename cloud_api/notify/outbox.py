"""The notification outbox: a message is queued in the same transaction as what caused it.

A message is queued once per ``key`` (``new_code:<grant id>``, ``loan_due:<item id>:<due>``…):
a repeated cause queues nothing new. Its ``params`` never hold a code, a PIN or a phone number:
a code is derived from its grant when the message is sent, the phone is read from the resident's
profile by the adapter.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from cloud_api.core.notify import KINDS
from linli.ids import new_id


def enqueue(
    db: sqlite3.Connection,
    *,
    person_id: str,
    kind: str,
    key: str,
    params: dict[str, Any],
    now_ms: int,
    is_urgent: bool = False,
) -> str | None:
    """Queue a message (idempotent on ``key``); return its id, or None if it was queued before."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind}")
    message_id = new_id("ntf")
    inserted = db.execute(
        "INSERT INTO notifications (id, key, person_id, kind, params, is_urgent, status,"
        " next_attempt_ms, created_ms) VALUES (?,?,?,?,?,?, 'queued', ?,?) ON CONFLICT DO NOTHING",
        (
            message_id,
            key,
            person_id,
            kind,
            json.dumps(params, ensure_ascii=False, sort_keys=True),
            int(is_urgent),
            now_ms,
            now_ms,
        ),
    ).rowcount
    return message_id if inserted else None
