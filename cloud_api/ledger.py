"""The smallest ledger one pickup needs: double-entry transfers with two-phase holds.

Append-only (triggers refuse UPDATE/DELETE), integer points, idempotency keys unique forever.
A reservation creates a *pending* transfer (member → redemption); the confirmed pickup *posts* it;
expiry *voids* it. Available balance = posted − pending debits. The full ledger (limits,
reversals, Merkle roots, insider controls) is issue #6; it replaces this module behind the same
calls.
"""

from __future__ import annotations

import sqlite3

from cloud_api.errors import Conflict
from linli.ids import new_id

ISSUANCE = "sys:issuance"
REDEMPTION = "sys:redemption"


def transfer(
    db: sqlite3.Connection,
    *,
    key: str,
    debit: str,
    credit: str,
    amount: int,
    kind: str,
    actor: str,
    now_ms: int,
    item_id: str | None = None,
    phase: str = "single",
    pending_id: str | None = None,
) -> str:
    """Record one transfer (idempotent on ``key``); return its id."""
    existing = db.execute(
        "SELECT id, debit_account, credit_account, amount, phase, pending_id, kind, item_id"
        " FROM transfers WHERE idempotency_key = ?",
        (key,),
    ).fetchone()
    if existing is not None:
        if tuple(existing)[1:] != (debit, credit, amount, phase, pending_id, kind, item_id):
            raise Conflict("idempotency key reused with a different transfer")
        return str(existing["id"])
    transfer_id = new_id("trf")
    db.execute(
        "INSERT INTO transfers (id, idempotency_key, debit_account, credit_account, amount, phase,"
        " pending_id, kind, item_id, actor, created_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (transfer_id, key, debit, credit, amount, phase, pending_id, kind, item_id, actor, now_ms),
    )
    return transfer_id


def post_pending(db: sqlite3.Connection, pending_id: str, *, actor: str, now_ms: int) -> str:
    """Post a pending transfer (once; never after a void)."""
    pending = db.execute(
        "SELECT debit_account, credit_account, amount, kind, item_id FROM transfers"
        " WHERE id = ? AND phase = 'pending'",
        (pending_id,),
    ).fetchone()
    if pending is None:
        raise Conflict("no such pending transfer")
    resolved = db.execute(
        "SELECT phase FROM transfers WHERE pending_id = ?", (pending_id,)
    ).fetchone()
    if resolved is not None and resolved["phase"] == "void":
        raise Conflict("a voided hold cannot be posted")
    return transfer(
        db,
        key=f"post:{pending_id}",
        debit=pending["debit_account"],
        credit=pending["credit_account"],
        amount=pending["amount"],
        kind=pending["kind"],
        actor=actor,
        now_ms=now_ms,
        item_id=pending["item_id"],
        phase="post",
        pending_id=pending_id,
    )


def balances(db: sqlite3.Connection, account: str) -> tuple[int, int]:
    """(posted balance, pending debits) of an account."""
    posted = db.execute(
        "SELECT COALESCE(SUM(CASE WHEN credit_account = :a THEN amount ELSE -amount END), 0)"
        " FROM transfers WHERE phase IN ('single', 'post')"
        " AND (credit_account = :a OR debit_account = :a)",
        {"a": account},
    ).fetchone()[0]
    pending = db.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM transfers t WHERE phase = 'pending'"
        " AND debit_account = ? AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)",
        (account,),
    ).fetchone()[0]
    return int(posted), int(pending)
