"""The ledger's public face: leaves of every transfer, signed daily roots, proofs for residents.

The log is every transfer in the order it was recorded (``rowid``); each leaf commits to the
transfer's public fields and to a salted commitment of its private ones
(:mod:`cloud_api.core.transparency`). Once a day the cloud signs a root over the log so far
(:func:`sign_day`): the day's own tree, the cumulative log's root, the previous root and a
consistency proof between them — signed roots are published where the operator cannot take
them back (a QR code on the notice board, the community group). A resident gets an inclusion
proof for each of their entries (:func:`inclusion_for`), anyone a consistency proof between
two published days.

Example:
    >>> signed = sign_day(store, keys, "2026-11-23", now_ms)
    >>> signed.body.log_size
    42
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cloud_api.core.transparency import (
    DailyRoot,
    SignedRoot,
    daily_root,
    inclusion_proof,
    leaf_salt,
    sign_root,
    split_fields,
    transfer_leaf,
    verify_day,
)
from cloud_api.keys import CloudKeys
from cloud_api.ledger import TRANSFER_COLUMNS, row_fields
from cloud_api.store import Store

COMMUNITY_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Days are the community's local days (China: UTC+8, no daylight saving)."""
LOG_NAME = "linli"
"""The log's name in every root (one log per cloud; a city's several communities share it)."""


def local_day(wall_ms: int) -> str:
    """The community's local day of a wall-clock time, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(wall_ms / 1000, UTC).astimezone(COMMUNITY_TZ).date().isoformat()


def leaves(db: sqlite3.Connection, salt_secret: bytes) -> list[bytes]:
    """Every transfer's leaf, in log order."""
    rows = db.execute(f"SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY rowid")  # noqa: S608
    out: list[bytes] = []
    for row in rows:
        fields = row_fields(tuple(row))
        public, private = split_fields(fields)
        out.append(transfer_leaf(public, private, leaf_salt(salt_secret, str(fields["id"]))))
    return out


def signed_roots(db: sqlite3.Connection) -> list[SignedRoot]:
    """Every published root, oldest first."""
    rows = db.execute("SELECT body FROM ledger_roots ORDER BY day").fetchall()
    return [SignedRoot.from_json(str(r[0]).encode()) for r in rows]


def sign_day(store: Store, keys: CloudKeys, day: str, now_ms: int) -> SignedRoot:
    """Sign and record the root of ``day`` over the log so far (once per day; a repeat returns
    the root already signed).

    Raises:
        ValueError: the log's history differs from the last published root (never publish
            over it: investigate with ``linli ledger verify``).
    """
    with store.write() as db:
        existing = db.execute(
            "SELECT body FROM ledger_roots WHERE community_id = ? AND day = ?", (LOG_NAME, day)
        ).fetchone()
        if existing is not None:
            return SignedRoot.from_json(str(existing[0]).encode())
        published = signed_roots(db)
        previous = published[-1].body if published else None
        body = daily_root(
            LOG_NAME, day, leaves(db, keys.ledger_salt_secret), previous, signed_at_ms=now_ms
        )
        signed = sign_root(body, keys.signing_key, key_id=keys.key_id)
        db.execute(
            "INSERT INTO ledger_roots (community_id, day, body, key_id, signature)"
            " VALUES (?,?,?,?,?)",
            (LOG_NAME, day, signed.to_json().decode(), signed.key_id, signed.signature),
        )
        return signed


def sign_due(store: Store, keys: CloudKeys, now_ms: int) -> SignedRoot | None:
    """Sign yesterday's root if it is not signed yet (the cloud calls this every minute).

    The root signed just after the community's midnight covers the log as recorded until then,
    so nothing is left out; a cloud that was down at midnight signs on its next minute.
    """
    yesterday = local_day(now_ms - 24 * 60 * 60 * 1000)
    signed = store.read_one(
        "SELECT 1 FROM ledger_roots WHERE community_id = ? AND day = ?", (LOG_NAME, yesterday)
    )
    if signed is not None or store.read_one("SELECT 1 FROM transfers LIMIT 1") is None:
        return None
    return sign_day(store, keys, yesterday, now_ms)


def verify_roots(db: sqlite3.Connection, keys: CloudKeys) -> list[str]:
    """Every published root checked against the transfers (signature, day and log roots, the
    chain of roots and their consistency proofs)."""
    all_leaves = leaves(db, keys.ledger_salt_secret)
    public_key = keys.signing_key.public_key()
    problems: list[str] = []
    previous: DailyRoot | None = None
    for signed in signed_roots(db):
        body = signed.body
        through = all_leaves[: body.log_size]
        found = verify_day(
            signed, through[body.previous_log_size :], through, public_key, previous=previous
        )
        problems += [f"root of {body.day}: {p}" for p in found]
        previous = body
    return problems


def inclusion_for(
    db: sqlite3.Connection, keys: CloudKeys, transfer_id: str
) -> dict[str, Any] | None:
    """What a resident needs to check one of their entries: the private fields and salt that
    open its commitment, its leaf, and the inclusion proof under the first published root that
    covers it (None if no root covers it yet)."""
    ordered = [r[0] for r in db.execute("SELECT id FROM transfers ORDER BY rowid")]
    if transfer_id not in ordered:
        return None
    index = ordered.index(transfer_id)
    covering = next((r for r in signed_roots(db) if r.body.log_size > index), None)
    if covering is None:
        return None
    all_leaves = leaves(db, keys.ledger_salt_secret)[: covering.body.log_size]
    row = db.execute(
        f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?",  # noqa: S608
        (transfer_id,),
    ).fetchone()
    public, private = split_fields(row_fields(tuple(row)))
    return {
        "index": index,
        "leaf": all_leaves[index].decode(),
        "public": public,
        "private": private,
        "salt": leaf_salt(keys.ledger_salt_secret, transfer_id).hex(),
        "proof": [p.hex() for p in inclusion_proof(index, all_leaves)],
        "root": signed_json(covering),
    }


def signed_json(signed: SignedRoot) -> dict[str, Any]:
    """A signed root as JSON-ready data."""
    return {"body": signed.body.to_dict(), "key_id": signed.key_id, "signature": signed.signature}
