"""What staff and residents do with points, on the ledger (cloud_api/ledger.py) and its rules.

Every movement runs in one write transaction (``BEGIN IMMEDIATE`` on the store's one writer):
the insider checks read the actor's issuance today under the same lock that records the
transfer, so two requests at once cannot both slip under the daily cap. Above the second-approver
threshold a movement is not made: it waits in ``ledger_requests`` until a *different* social
worker approves it, and is then recorded with both names.

Example:
    >>> svc = PointsService(store, keys, clock)
    >>> svc.move(worker, Movement(key="credit:itm_1", kind="valuation_credit", member="per_1",
    ...                           amount=12))
    {'status': 'recorded', 'transfer': {...}}
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from cloud_api.accounts.service import Person
from cloud_api.core.ledger import (
    CAPPED_KINDS,
    CONTROLLED_KINDS,
    FLOWS,
    MEMBER,
    InsiderPolicy,
    LimitRequest,
    PostRequest,
    Refused,
    ReversalRequest,
    Tombstone,
    Transfer,
    TransferRequest,
    VoidRequest,
    check_insider,
    check_insider_limit,
)
from cloud_api.core.transparency import consistency_between
from cloud_api.errors import Conflict, NotFound
from cloud_api.keys import CloudKeys
from cloud_api.ledger import SqlLedger
from cloud_api.store import StorePort
from cloud_api.transparency import (
    COMMUNITY_TZ,
    inclusion_for,
    leaves,
    local_day,
    signed_json,
    signed_roots,
)
from linli.clock import Clock
from linli.ids import new_id

STAFF_KINDS = frozenset(
    {
        "valuation_credit",
        "time_credit",
        "skill_credit",
        "subsidy_grant",
        "subsidy_funding",
        "refund",
        "penalty",
        "expiry",
    }
)
"""What staff may record directly (redemptions come from reservations, reversals have their
own call; time and skill credits are recorded by approving a contribution)."""

_CAPPED = tuple(sorted(CAPPED_KINDS))
_CAPPED_IN = "(" + ", ".join("?" for _ in _CAPPED) + ")"
"""``IN (?, ?, …)`` over :data:`~cloud_api.core.ledger.CAPPED_KINDS`, for the issuance queries:
one list of the kinds that count against a worker's cap, in the core."""


@dataclass(frozen=True)
class Movement:
    """A staff request to move points to or from a member (or fund the subsidy pool)."""

    key: str
    kind: str
    amount: int
    member: str | None = None
    refs: tuple[tuple[str, str], ...] = ()
    on_behalf_of: str | None = None
    hold: bool = False


def transfer_json(t: Transfer) -> dict[str, Any]:
    """A transfer as JSON-ready data."""
    data = asdict(t)
    data["refs"] = [list(p) for p in t.refs]
    return data


class PointsService:
    """Points for one cloud: movements, holds, reversals, limits, histories, proofs, roots."""

    def __init__(
        self,
        store: StorePort,
        keys: CloudKeys,
        clock: Clock,
        policy: InsiderPolicy | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.policy = policy or InsiderPolicy()

    # --- staff --------------------------------------------------------------------------------

    def move(self, worker: Person, movement: Movement) -> dict[str, Any]:
        """Record a movement, or park it for a second approver when it is above the threshold."""
        with self.store.write() as db:
            return self.move_in(db, worker, movement, self.clock.now().wall_ms)

    def move_in(
        self, db: sqlite3.Connection, worker: Person, movement: Movement, now: int
    ) -> dict[str, Any]:
        """:meth:`move` inside the caller's write transaction (an approval that lists an item
        and credits its donor in one step)."""
        if movement.kind not in STAFF_KINDS:
            raise Refused("flow", f"staff do not record {movement.kind} directly")
        req = self._request(db, worker, movement, approved_by=None)
        if movement.amount > self.policy.second_approver_over and req.kind in CONTROLLED_KINDS:
            pending = db.execute(
                "SELECT * FROM ledger_requests WHERE key = ?", (req.key,)
            ).fetchone()
            if pending is not None and pending["body"] != _movement_json(movement):
                raise Conflict(
                    "this key was first asked for other points (a second approver's request)",
                    code="second_approval_differs",
                )
            if (
                pending is not None
                and pending["status"] == "awaiting_second_approver"
                and pending["requested_by"] != worker.id
            ):
                # A different worker approving the same movement is its second approver.
                return self._approve_parked(db, worker, pending, now)
            if pending is None:
                request_id = new_id("lrq")
                db.execute(
                    "INSERT INTO ledger_requests (id, key, body, requested_by, requested_ms,"
                    " status) VALUES (?,?,?,?,?, 'awaiting_second_approver')",
                    (request_id, req.key, _movement_json(movement), worker.id, now),
                )
                return {"status": "awaiting_second_approver", "request_id": request_id}
            return {"status": pending["status"], "request_id": pending["id"]}
        transfer = self._record(db, worker, req, now)
        return {"status": "recorded", "transfer": transfer_json(transfer)}

    def approve(self, approver: Person, request_id: str) -> dict[str, Any]:
        """A second social worker approves a parked movement; it is recorded with both names."""
        now = self.clock.now().wall_ms
        with self.store.write() as db:
            row = db.execute("SELECT * FROM ledger_requests WHERE id = ?", (request_id,)).fetchone()
            if row is None:
                raise NotFound(f"no ledger request {request_id}")
            requester = _person_in(db, row["requested_by"])
            if requester.community_id != approver.community_id:
                raise NotFound(f"no ledger request {request_id}")
            if row["status"] != "awaiting_second_approver":
                return {"status": row["status"], "transfer_id": row["transfer_id"]}
            return self._approve_parked(db, approver, row, now)

    def _approve_parked(
        self, db: sqlite3.Connection, approver: Person, row: sqlite3.Row, now: int
    ) -> dict[str, Any]:
        requester = _person_in(db, row["requested_by"])
        movement = _movement_of(row["body"])
        req = self._request(db, requester, movement, approved_by=approver.id)
        transfer = self._record(db, requester, req, now, approver=approver)
        db.execute(
            "UPDATE ledger_requests SET status = 'approved', decided_by = ?, decided_ms = ?,"
            " transfer_id = ? WHERE id = ?",
            (approver.id, now, transfer.id, row["id"]),
        )
        return {"status": "recorded", "transfer": transfer_json(transfer)}

    def resolve_hold(
        self, worker: Person, pending_id: str, key: str, *, post: bool, reason: str = ""
    ) -> dict[str, Any]:
        """Post or void a hold in the worker's community."""
        now = self.clock.now().wall_ms
        with self.store.write() as db:
            self._check_transfer_in_community(db, worker, pending_id)
            ledger = SqlLedger(db)
            transfer = (
                ledger.post(PostRequest(key, pending_id, worker.id), now)
                if post
                else ledger.void(VoidRequest(key, pending_id, worker.id, reason), now)
            )
        return {"status": "recorded", "transfer": transfer_json(transfer)}

    def reverse(
        self, worker: Person, key: str, original_key: str, reason: str, amount: int | None
    ) -> dict[str, Any]:
        """Reverse (part of) a transfer by its key; an unknown key is tombstoned."""
        now = self.clock.now().wall_ms
        with self.store.write() as db:
            original = db.execute(
                "SELECT id FROM transfers WHERE idempotency_key = ?", (original_key,)
            ).fetchone()
            if original is not None:
                self._check_transfer_in_community(db, worker, original["id"])
            result = SqlLedger(db).reverse(
                ReversalRequest(key, original_key, worker.id, reason, amount), now
            )
        if isinstance(result, Tombstone):
            return {"status": "tombstoned", "original_key": result.key}
        return {"status": "recorded", "transfer": transfer_json(result)}

    def set_limit(
        self, worker: Person, key: str, member: str, limit: int, reason: str
    ) -> dict[str, Any]:
        """Change a member's limit (logged); never the worker's own."""
        now = self.clock.now().wall_ms
        with self.store.write() as db:
            account = self._member_account(db, worker, member)
            req = LimitRequest(key, account, limit, worker.id, reason)
            check_insider_limit(req, actor_accounts=self._own_accounts(worker))
            change = SqlLedger(db).set_limit(req, now)
        return {"status": "recorded", "limit_change": asdict(change)}

    # --- residents ------------------------------------------------------------------------------

    def history(self, resident: Person, limit: int = 200) -> dict[str, Any]:
        """A resident's balance and movements, newest first, each with what it was for."""
        account = f"mem:{resident.id}"
        with self.store.snapshot() as db:
            state = SqlLedger(db).account(account)
            rows = db.execute(
                "SELECT id, kind, debit_account, credit_account, amount, phase, refs, reason,"
                " created_ms FROM transfers WHERE debit_account = ? OR credit_account = ?"
                " ORDER BY rowid DESC LIMIT ?",
                (account, account, limit),
            ).fetchall()
        return {
            "balance": state.posted,
            "held": state.pending_debits,
            "available": state.available,
            "limit": state.limit,
            "movements": [
                {
                    "id": r["id"],
                    "kind": r["kind"],
                    "phase": r["phase"],
                    "points": r["amount"] if r["credit_account"] == account else -r["amount"],
                    "for": dict(json.loads(r["refs"])),
                    "reason": r["reason"],
                    "at_ms": r["created_ms"],
                }
                for r in rows
            ],
        }

    def proof(self, resident: Person, transfer_id: str) -> dict[str, Any]:
        """The inclusion proof of one of the resident's own entries (not anyone else's)."""
        account = f"mem:{resident.id}"
        with self.store.snapshot() as db:
            own = db.execute(
                "SELECT 1 FROM transfers WHERE id = ? AND (debit_account = ? OR credit_account = ?)",
                (transfer_id, account, account),
            ).fetchone()
            if own is None:
                raise NotFound(f"no entry {transfer_id} of yours")
            found = inclusion_for(db, self.keys, transfer_id)
        if found is None:
            raise NotFound("no signed root covers this entry yet (roots are signed daily)")
        return found

    # --- public ---------------------------------------------------------------------------------

    def roots(self) -> list[dict[str, Any]]:
        """Every signed daily root, oldest first."""
        with self.store.snapshot() as db:
            return [signed_json(r) for r in signed_roots(db)]

    def issuance(self, worker: Person) -> list[dict[str, Any]]:
        """Points each social worker of the community issued (the capped kinds: valuation,
        time and skill credits, subsidy grants) per day, against the cap — the report the
        insider controls promise."""
        rows = self.store.read(
            "SELECT t.actor, p.display_name, t.created_ms, t.amount FROM transfers t"  # noqa: S608
            " JOIN people p ON p.id = t.actor WHERE p.community_id = ?"
            f" AND t.kind IN {_CAPPED_IN}"
            " AND t.phase IN ('single', 'pending')",
            (worker.community_id, *_CAPPED),
        )
        totals: dict[tuple[str, str, str], int] = {}
        for actor, name, created_ms, amount in rows:
            key = (local_day(created_ms), actor, name)
            totals[key] = totals.get(key, 0) + amount
        return [
            {
                "day": day,
                "worker": actor,
                "name": name,
                "issued": issued,
                "cap": self.policy.daily_issuance_cap,
            }
            for (day, actor, name), issued in sorted(totals.items())
        ]

    def consistency(self, from_day: str, to_day: str) -> dict[str, Any]:
        """The consistency proof between two published days' logs: anyone holding both roots
        can check that the later log extends the earlier one unchanged."""
        with self.store.snapshot() as db:
            published = {r.body.day: r for r in signed_roots(db)}
            old, new = published.get(from_day), published.get(to_day)
            if old is None or new is None:
                raise NotFound("no signed root for one of those days")
            if old.body.log_size > new.body.log_size:
                raise Refused("order", "from_day must not be later than to_day")
            proof = consistency_between(
                old.body, new.body, leaves(db, self.keys.ledger_salt_secret)
            )
        return {
            "from": signed_json(old),
            "to": signed_json(new),
            "proof": [p.hex() for p in proof],
        }

    def totals(self) -> list[dict[str, Any]]:
        """Points moved per community day and kind (subsidies as totals, never per person)."""
        rows = self.store.read(
            "SELECT created_ms, kind, amount FROM transfers WHERE phase IN ('single', 'post')"
        )
        totals: dict[tuple[str, str], list[int]] = {}
        for created_ms, kind, amount in rows:  # days in Python: portable SQL (a second adapter)
            entry = totals.setdefault((local_day(created_ms), kind), [0, 0])
            entry[0] += 1
            entry[1] += amount
        return [
            {"day": day, "kind": kind, "transfers": n, "points": points}
            for (day, kind), (n, points) in sorted(totals.items())
        ]

    # --- inside ---------------------------------------------------------------------------------

    def _own_accounts(self, person: Person, acting_for: str | None = None) -> frozenset[str]:
        """The person's own account, and the resident they act for in this request (a proxy
        may not give points to the resident whose place they are taking)."""
        own = {f"mem:{person.id}"}
        if acting_for is not None:
            own.add(f"mem:{acting_for}")
        return frozenset(own)

    def _member_account(self, db: sqlite3.Connection, worker: Person, member: str) -> str:
        person = _person_in(db, member)
        if person.community_id != worker.community_id or person.role != "resident":
            raise NotFound(f"no resident {member}")
        return f"mem:{member}"

    def _request(
        self,
        db: sqlite3.Connection,
        worker: Person,
        movement: Movement,
        *,
        approved_by: str | None,
    ) -> TransferRequest:
        debit_side, credit_side = FLOWS[movement.kind]
        if MEMBER in (debit_side, credit_side):
            if movement.member is None:
                raise Refused("account", f"{movement.kind} needs a member")
            member = self._member_account(db, worker, movement.member)
        elif movement.member is not None:
            raise Refused("account", f"{movement.kind} moves points between system accounts")
        debit = member if debit_side == MEMBER else debit_side
        credit = member if credit_side == MEMBER else credit_side
        return TransferRequest(
            key=movement.key,
            kind=movement.kind,
            debit=debit,
            credit=credit,
            amount=movement.amount,
            actor=worker.id,
            refs=movement.refs,
            approved_by=approved_by,
            on_behalf_of=movement.on_behalf_of,
            pending=movement.hold,
        )

    def _record(
        self,
        db: sqlite3.Connection,
        actor: Person,
        req: TransferRequest,
        now_ms: int,
        approver: Person | None = None,
    ) -> Transfer:
        day_start = _day_start_ms(now_ms)
        issued = db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE actor = ?"  # noqa: S608
            f" AND kind IN {_CAPPED_IN} AND phase IN ('single', 'pending')"
            " AND created_ms >= ? AND created_ms < ?",
            (actor.id, *_CAPPED, day_start, day_start + _DAY_MS),
        ).fetchone()[0]
        check_insider(
            req,
            policy=self.policy,
            actor_accounts=self._own_accounts(actor, req.on_behalf_of),
            issued_today_by_actor=int(issued),
            approver_accounts=self._own_accounts(approver) if approver else frozenset(),
        )
        return SqlLedger(db).transfer(req, now_ms)

    def _check_transfer_in_community(
        self, db: sqlite3.Connection, worker: Person, transfer_id: str
    ) -> None:
        row = db.execute(
            "SELECT debit_account, credit_account FROM transfers WHERE id = ?", (transfer_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no transfer {transfer_id}")
        for account in (row[0], row[1]):
            if account.startswith("mem:"):
                person = _person_in(db, account.removeprefix("mem:"))
                if person.community_id != worker.community_id:
                    raise NotFound(f"no transfer {transfer_id}")


_DAY_MS = 24 * 60 * 60 * 1000


def _day_start_ms(wall_ms: int) -> int:
    offset = int(COMMUNITY_TZ.utcoffset(None).total_seconds() * 1000)
    return (wall_ms + offset) // _DAY_MS * _DAY_MS - offset


def _person_in(db: sqlite3.Connection, person_id: str) -> Person:
    row = db.execute(
        "SELECT id, community_id, role, display_name, language FROM people WHERE id = ?",
        (person_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no person {person_id}")
    return Person(id=row[0], community_id=row[1], role=row[2], display_name=row[3], language=row[4])


def _movement_json(m: Movement) -> str:
    data = asdict(m)
    data["refs"] = [list(p) for p in m.refs]
    return json.dumps(data, sort_keys=True)


def _movement_of(text: str) -> Movement:
    data = json.loads(text)
    data["refs"] = tuple((str(a), str(b)) for a, b in data["refs"])
    return Movement(**data)


__all__ = ["STAFF_KINDS", "Movement", "PointsService", "transfer_json"]
