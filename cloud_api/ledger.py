"""The points ledger on the cloud's SQLite store: the ledger port over the pure core's rules.

Every rule — allowed flows, limits on the available balance, two-phase holds, reversals never
above what remains, idempotency keys kept forever, insider controls — is decided by the pure
core (:mod:`cloud_api.core.ledger`); this adapter loads what a decision needs inside the caller's
write transaction (``BEGIN IMMEDIATE``, one writer: :class:`~cloud_api.store.Store`), records
what the core returns, and keeps three things in the same transaction:

- **balance snapshots** (``account_balances``), changed only through the core's ``effects``;
- a **hash chain** over every transfer row (``chain_hash`` = SHA-256 of the previous row's chain
  hash and this row's canonical fields), so an edited, removed or reordered row is found by
  ``linli ledger verify`` (:mod:`cloud_api.ledger_verify`);
- the row's **body hash**, so a re-used key with another body is a conflict forever.

Transfers, limit changes, tombstones and signed roots are append-only (triggers refuse UPDATE
and DELETE). Example:

    >>> with store.write() as db:
    ...     SqlLedger(db).transfer(TransferRequest(key="credit:itm_1", kind="valuation_credit",
    ...         debit=ISSUANCE, credit="mem:per_1", amount=12, actor="per_9"), now_ms)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from cloud_api.core.ledger import (
    ISSUANCE,
    PENALTIES,
    REDEMPTION,
    SUBSIDY_POOL,
    SYSTEM_ACCOUNTS,
    AccountKind,
    AccountState,
    LedgerError,
    LedgerRecord,
    LimitArg,
    LimitChange,
    LimitRequest,
    NotFound,
    PostRequest,
    ReversalRequest,
    Tombstone,
    Transfer,
    TransferRequest,
    VoidRequest,
    effects,
    plan_limit,
    plan_open,
    plan_post,
    plan_reversal,
    plan_transfer,
    plan_void,
)
from cloud_api.errors import Conflict as CloudConflict
from cloud_api.store import StorePort
from linli.ids import new_id

__all__ = [
    "ISSUANCE",
    "PENALTIES",
    "REDEMPTION",
    "SUBSIDY_POOL",
    "SYSTEM_ACCOUNTS",
    "SqlLedger",
    "StoreLedger",
    "balances",
    "chain_hash",
    "post_pending",
    "row_fields",
    "transfer",
]

TRANSFER_COLUMNS = (
    "id, idempotency_key, kind, debit_account, credit_account, amount, phase, pending_id,"
    " reverses_id, refs, actor, approved_by, on_behalf_of, reason, body_hash, created_ms"
)


TOMBSTONE_COLUMNS = ("original_key", "reversal_key", "actor", "reason", "body_hash", "created_ms")
"""Columns of ``ledger_tombstones`` in :class:`~cloud_api.core.ledger.Tombstone` field order."""
LIMIT_COLUMNS = (
    "id",
    "idempotency_key",
    "account_id",
    "old_limit",
    "new_limit",
    "actor",
    "reason",
    "created_ms",
    "body_hash",
)
"""Columns of ``limit_changes`` in :class:`~cloud_api.core.ledger.LimitChange` field order."""


def tombstone_row(t: Tombstone) -> tuple[Any, ...]:
    """A tombstone's values in :data:`TOMBSTONE_COLUMNS` order."""
    return (t.key, t.reversal_key, t.actor, t.reason, t.body_hash, t.created_ms)


def limit_row(c: LimitChange) -> tuple[Any, ...]:
    """A limit change's values in :data:`LIMIT_COLUMNS` order."""
    return (
        c.id,
        c.key,
        c.account,
        c.old_limit,
        c.new_limit,
        c.actor,
        c.reason,
        c.created_ms,
        c.body_hash,
    )


def row_fields(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """A transfer row (in :data:`TRANSFER_COLUMNS` order) as the core's field names."""
    (
        id_,
        key,
        kind,
        debit,
        credit,
        amount,
        phase,
        pending_id,
        reverses_id,
        refs,
        actor,
        approved_by,
        on_behalf_of,
        reason,
        body,
        created_ms,
    ) = tuple(row)
    return {
        "id": id_,
        "key": key,
        "kind": kind,
        "debit": debit,
        "credit": credit,
        "amount": amount,
        "phase": phase,
        "pending_id": pending_id,
        "reverses_id": reverses_id,
        "refs": [list(pair) for pair in json.loads(refs)],
        "actor": actor,
        "approved_by": approved_by,
        "on_behalf_of": on_behalf_of,
        "reason": reason,
        "body_hash": body,
        "created_ms": created_ms,
    }


def chain_hash(previous: str, fields: dict[str, Any]) -> str:
    """The chain hash of one row: SHA-256 over the previous row's hash and this row's fields."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{previous}|{canonical}".encode()).hexdigest()


def _transfer_of(row: sqlite3.Row | tuple[Any, ...]) -> Transfer:
    f = row_fields(row)
    return Transfer(
        id=f["id"],
        key=f["key"],
        kind=f["kind"],
        debit=f["debit"],
        credit=f["credit"],
        amount=f["amount"],
        phase=f["phase"],
        pending_id=f["pending_id"],
        reverses_id=f["reverses_id"],
        refs=tuple((str(a), str(b)) for a, b in f["refs"]),
        actor=f["actor"],
        approved_by=f["approved_by"],
        on_behalf_of=f["on_behalf_of"],
        reason=f["reason"],
        body_hash=f["body_hash"] or "",
        created_ms=f["created_ms"],
    )


class SqlLedger:
    """The ledger port on one connection, inside the caller's write transaction.

    Args:
        db: the store's connection inside ``Store.write()`` (reads work in ``snapshot()`` too).
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # --- accounts ---------------------------------------------------------------------------

    def open_account(
        self,
        account_id: str,
        kind: AccountKind,
        limit: LimitArg = "default",
        *,
        person_id: str | None = None,
        name: str = "",
    ) -> AccountState:
        """Open an account with a zero balance (idempotent; see ``plan_open``)."""
        existing = self._state(account_id)
        state = plan_open(account_id, kind, limit, existing=existing)
        if existing is None:
            self._db.execute(
                "INSERT INTO accounts (id, kind, person_id, name, limit_points) VALUES (?,?,?,?,?)",
                (account_id, kind, person_id, name or account_id, state.limit),
            )
            self._db.execute("INSERT INTO account_balances (account_id) VALUES (?)", (account_id,))
        return state

    def account(self, account_id: str) -> AccountState:
        """The account's snapshot balances and limit.

        Raises:
            NotFound: no such account.
        """
        state = self._state(account_id)
        if state is None:
            raise NotFound("account", f"no account {account_id}")
        return state

    def _state(self, account_id: str) -> AccountState | None:
        row = self._db.execute(
            "SELECT a.kind, a.limit_points, b.posted, b.pending_debits, b.pending_credits"
            " FROM accounts a JOIN account_balances b ON b.account_id = a.id WHERE a.id = ?",
            (account_id,),
        ).fetchone()
        if row is None:
            return None
        return AccountState(
            id=account_id,
            kind=row[0],
            posted=int(row[2]),
            pending_debits=int(row[3]),
            pending_credits=int(row[4]),
            limit=None if row[1] is None else int(row[1]),
        )

    def derived(self, account_id: str) -> AccountState:
        """The account's balances recomputed from the transfers alone (for verification)."""
        snapshot = self.account(account_id)
        posted = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN credit_account = :a THEN amount ELSE -amount END), 0)"
            " FROM transfers WHERE phase IN ('single', 'post')"
            " AND (credit_account = :a OR debit_account = :a)",
            {"a": account_id},
        ).fetchone()[0]
        open_pending = (
            "SELECT COALESCE(SUM(amount), 0) FROM transfers t WHERE phase = 'pending'"
            " AND {side} = ? AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)"
        )
        debits = self._db.execute(
            open_pending.format(side="debit_account"), (account_id,)
        ).fetchone()[0]
        credits = self._db.execute(
            open_pending.format(side="credit_account"), (account_id,)
        ).fetchone()[0]
        limit_row = self._db.execute(
            "SELECT new_limit FROM limit_changes WHERE account_id = ? ORDER BY rowid DESC LIMIT 1",
            (account_id,),
        ).fetchone()
        return AccountState(
            id=account_id,
            kind=snapshot.kind,
            posted=int(posted),
            pending_debits=int(debits),
            pending_credits=int(credits),
            limit=snapshot.limit if limit_row is None else limit_row[0],
        )

    def accounts(self) -> list[str]:
        """Every account id."""
        return [r[0] for r in self._db.execute("SELECT id FROM accounts ORDER BY id")]

    def transfers(self) -> list[Transfer]:
        """Every transfer, in the order it was recorded."""
        rows = self._db.execute(f"SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY rowid")  # noqa: S608
        return [_transfer_of(r) for r in rows]

    # --- movements --------------------------------------------------------------------------

    def transfer(self, req: TransferRequest, now_ms: int) -> Transfer:
        """Record a single or pending transfer (idempotent on ``req.key``)."""
        existing = self._held_under(req.key)
        planned = plan_transfer(
            req,
            existing=existing,
            debit=self._state(req.debit),
            credit=self._state(req.credit),
            is_tombstoned=self._is_tombstoned(req.key),
            new_id=new_id("trf"),
            now_ms=now_ms,
        )
        return self._record(planned, existing)

    def post(self, req: PostRequest, now_ms: int) -> Transfer:
        """Post a pending transfer (never after a void)."""
        return self._resolve(req, plan_post, now_ms)

    def void(self, req: VoidRequest, now_ms: int) -> Transfer:
        """Void a pending transfer (never after a post)."""
        return self._resolve(req, plan_void, now_ms)

    def _resolve(
        self, req: PostRequest | VoidRequest, plan: Callable[..., Transfer], now_ms: int
    ) -> Transfer:
        existing = self._held_under(req.key)
        pending, resolution = self._pending(req.pending_id)
        planned = plan(
            req,
            existing=existing,
            is_tombstoned=self._is_tombstoned(req.key),
            pending=pending,
            resolution=resolution,
            new_id=new_id("trf"),
            now_ms=now_ms,
        )
        return self._record(planned, existing)

    def reverse(self, req: ReversalRequest, now_ms: int) -> Transfer | Tombstone:
        """Reverse (part of) a transfer named by its idempotency key; a key not yet seen is
        tombstoned, so its late original is refused."""
        existing = self._held_under(req.key)
        original = self._held_under(req.original_key)
        reversed_so_far = 0
        debit = credit = None
        if isinstance(original, Transfer):
            reversed_so_far = int(
                self._db.execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE reverses_id = ?",
                    (original.id,),
                ).fetchone()[0]
            )
            debit, credit = self._state(original.credit), self._state(original.debit)
        planned = plan_reversal(
            req,
            existing=existing,
            is_tombstoned=self._is_tombstoned(req.key),
            original=original,
            original_is_tombstoned=self._is_tombstoned(req.original_key),
            reversed_so_far=reversed_so_far,
            debit=debit,
            credit=credit,
            new_id=new_id("trf"),
            now_ms=now_ms,
        )
        if isinstance(planned, Tombstone):
            if planned != existing:
                self._append("ledger_tombstones", TOMBSTONE_COLUMNS, tombstone_row(planned))
            return planned
        return self._record(planned, existing)

    def set_limit(self, req: LimitRequest, now_ms: int) -> LimitChange:
        """Change an account's lowest allowed available balance; every change is logged."""
        existing = self._held_under(req.key)
        change = plan_limit(
            req,
            existing_change=existing,
            is_tombstoned=self._is_tombstoned(req.key),
            account=self._state(req.account),
            new_id=new_id("lim"),
            now_ms=now_ms,
        )
        if change == existing:
            return change
        self._append("limit_changes", LIMIT_COLUMNS, limit_row(change))
        self._db.execute(
            "UPDATE accounts SET limit_points = ? WHERE id = ?", (change.new_limit, change.account)
        )
        return change

    # --- storage ----------------------------------------------------------------------------

    def _held_under(self, key: str) -> LedgerRecord | None:
        """Whatever the one key space holds under ``key``: a transfer, a limit change, or a
        tombstone (held under its reversal's key)."""
        row = self._db.execute(
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = ?",  # noqa: S608
            (key,),
        ).fetchone()
        if row is not None:
            return _transfer_of(row)
        row = self._db.execute(
            f"SELECT {', '.join(TOMBSTONE_COLUMNS)} FROM ledger_tombstones"  # noqa: S608
            " WHERE reversal_key = ?",
            (key,),
        ).fetchone()
        if row is not None:
            return Tombstone(*tuple(row))
        row = self._db.execute(
            f"SELECT {', '.join(LIMIT_COLUMNS)} FROM limit_changes"  # noqa: S608
            " WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        return None if row is None else LimitChange(*tuple(row))

    def _is_tombstoned(self, key: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM ledger_tombstones WHERE original_key = ?", (key,)
            ).fetchone()
            is not None
        )

    def _by_id(self, transfer_id: str) -> Transfer | None:
        row = self._db.execute(
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = ?",  # noqa: S608
            (transfer_id,),
        ).fetchone()
        return None if row is None else _transfer_of(row)

    def _pending(self, pending_id: str) -> tuple[Transfer | None, Transfer | None]:
        row = self._db.execute(
            f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE pending_id = ?",  # noqa: S608
            (pending_id,),
        ).fetchone()
        return self._by_id(pending_id), None if row is None else _transfer_of(row)

    def _append(self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> None:
        """Insert one row into an append-only, hash-chained table (limit changes, tombstones)."""
        previous = self._db.execute(
            f'SELECT chain_hash FROM "{table}" ORDER BY rowid DESC LIMIT 1'  # noqa: S608
        ).fetchone()
        chained = chain_hash(
            previous[0] if previous else "", dict(zip(columns, values, strict=True))
        )
        names = ", ".join((*columns, "chain_hash"))
        marks = ", ".join("?" * (len(columns) + 1))
        self._db.execute(
            f'INSERT INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608
            (*values, chained),
        )

    def _record(self, planned: Transfer, existing: LedgerRecord | None) -> Transfer:
        if planned == existing:
            return planned  # an idempotent repeat: nothing new
        previous = self._db.execute(
            "SELECT chain_hash FROM transfers WHERE chain_hash IS NOT NULL"
            " ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        fields = _fields_of(planned)
        self._db.execute(
            "INSERT INTO transfers (id, idempotency_key, kind, debit_account, credit_account,"
            " amount, phase, pending_id, reverses_id, refs, actor, approved_by, on_behalf_of,"
            " reason, body_hash, created_ms, chain_hash)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                planned.id,
                planned.key,
                planned.kind,
                planned.debit,
                planned.credit,
                planned.amount,
                planned.phase,
                planned.pending_id,
                planned.reverses_id,
                json.dumps([list(p) for p in planned.refs]),
                planned.actor,
                planned.approved_by,
                planned.on_behalf_of,
                planned.reason,
                planned.body_hash,
                planned.created_ms,
                chain_hash(previous[0] if previous else "", fields),
            ),
        )
        for delta in effects(planned):
            self._db.execute(
                "UPDATE account_balances SET posted = posted + ?,"
                " pending_debits = pending_debits + ?, pending_credits = pending_credits + ?"
                " WHERE account_id = ?",
                (delta.d_posted, delta.d_pending_debits, delta.d_pending_credits, delta.account),
            )
        return planned


class StoreLedger:
    """The ledger port on a whole store: each call is its own write transaction (a refused
    request rolls back and records nothing). For standalone ledger operations and tests; the
    services use :class:`SqlLedger` inside their own transactions.

    Example:
        >>> ledger = StoreLedger(store)
        >>> ledger.account(ISSUANCE).posted
        0
    """

    def __init__(self, store: StorePort) -> None:
        self.store = store

    def open_account(
        self, account_id: str, kind: AccountKind, limit: LimitArg = "default"
    ) -> AccountState:
        with self.store.write() as db:
            return SqlLedger(db).open_account(account_id, kind, limit)

    def transfer(self, req: TransferRequest, now_ms: int) -> Transfer:
        with self.store.write() as db:
            return SqlLedger(db).transfer(req, now_ms)

    def post(self, req: PostRequest, now_ms: int) -> Transfer:
        with self.store.write() as db:
            return SqlLedger(db).post(req, now_ms)

    def void(self, req: VoidRequest, now_ms: int) -> Transfer:
        with self.store.write() as db:
            return SqlLedger(db).void(req, now_ms)

    def reverse(self, req: ReversalRequest, now_ms: int) -> Transfer | Tombstone:
        with self.store.write() as db:
            return SqlLedger(db).reverse(req, now_ms)

    def set_limit(self, req: LimitRequest, now_ms: int) -> LimitChange:
        with self.store.write() as db:
            return SqlLedger(db).set_limit(req, now_ms)

    def account(self, account_id: str) -> AccountState:
        with self.store.snapshot() as db:
            return SqlLedger(db).account(account_id)

    def transfers(self) -> list[Transfer]:
        with self.store.snapshot() as db:
            return SqlLedger(db).transfers()

    def derived(self, account_id: str) -> AccountState:
        with self.store.snapshot() as db:
            return SqlLedger(db).derived(account_id)

    def close(self) -> None:
        self.store.close()


def _fields_of(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "key": t.key,
        "kind": t.kind,
        "debit": t.debit,
        "credit": t.credit,
        "amount": t.amount,
        "phase": t.phase,
        "pending_id": t.pending_id,
        "reverses_id": t.reverses_id,
        "refs": [list(p) for p in t.refs],
        "actor": t.actor,
        "approved_by": t.approved_by,
        "on_behalf_of": t.on_behalf_of,
        "reason": t.reason,
        "body_hash": t.body_hash,
        "created_ms": t.created_ms,
    }


# --- the calls the services made before issue #6, kept as thin wrappers ----------------------


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
    """Record one single or pending transfer (idempotent on ``key``); return its id.

    Raises:
        cloud_api.errors.Conflict: a ledger rule refused it (the core's code in the message).
    """
    if phase not in ("single", "pending") or pending_id is not None:
        raise CloudConflict("post and void go through SqlLedger.post / SqlLedger.void")
    refs = (("item", item_id),) if item_id else ()
    req = TransferRequest(
        key=key,
        kind=kind,
        debit=debit,
        credit=credit,
        amount=amount,
        actor=actor,
        refs=refs,
        pending=phase == "pending",
    )
    try:
        return SqlLedger(db).transfer(req, now_ms).id
    except LedgerError as exc:
        raise CloudConflict(f"{exc.code}: {exc}") from exc


def post_pending(db: sqlite3.Connection, pending_id: str, *, actor: str, now_ms: int) -> str:
    """Post a pending transfer (once; never after a void)."""
    try:
        return (
            SqlLedger(db)
            .post(PostRequest(key=f"post:{pending_id}", pending_id=pending_id, actor=actor), now_ms)
            .id
        )
    except LedgerError as exc:
        raise CloudConflict(f"{exc.code}: {exc}") from exc


def balances(db: sqlite3.Connection, account: str) -> tuple[int, int]:
    """(posted balance, pending debits) of an account, from its snapshot."""
    try:
        state = SqlLedger(db).account(account)
    except LedgerError:
        return 0, 0
    return state.posted, state.pending_debits
