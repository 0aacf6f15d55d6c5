"""Items: the lifecycle (core/items.py) carried out on the store, with its points and grants.

Every change of status goes through :func:`move`, which checks the transition against the
lifecycle, refuses a stale one (the item moved meanwhile), records the history with who did it
and for whom, and then carries out the transition's effects in the same transaction
(:func:`_effects`): holds posted or voided, compartments released, grants revoked or re-issued.

Holds: a reservation holds the item's points (``redemption``) and, for a loan, its deposit (a
pending ``penalty``: posted only if the item comes back damaged or not at all); the keys are
kept on the item (``hold_key``, ``deposit_key``) so that settlement resolves exactly the holds of
the current reservation.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud_api.cases import open_case
from cloud_api.core.items import InvalidTransition, next_status
from cloud_api.core.ledger import PENALTIES, REDEMPTION, PostRequest, TransferRequest, VoidRequest
from cloud_api.errors import Conflict, Forbidden, Invalid, NotFound
from cloud_api.grants.service import code_of, end_grant, free_compartments, issue_grant
from cloud_api.keys import CloudKeys
from cloud_api.ledger import SqlLedger
from cloud_api.notify.outbox import enqueue
from cloud_api.points.service import Movement
from linli.ids import new_id

log = logging.getLogger(__name__)

MINUTE_MS = 60 * 1000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
PICKUP_VALID_MS = 48 * HOUR_MS


@dataclass(frozen=True)
class Policy:
    """Time limits of the item lifecycle (CloudSettings can shorten them for tests and demos).

    Attributes:
        pickup_valid_ms: how long a pickup or return-to-donor code is valid.
        dropoff_valid_ms: how long a drop-off code is valid (the donor is at the station).
        return_valid_ms: how long a borrower's return code is valid.
        maintenance_valid_ms: how long a maintenance code is valid.
        dispute_ms: how long after a pickup a resident may report a problem.
        proposal_ms: how long a proposal waits for its drop-off before it lapses.
        due_grace_ms: how long after its due time a loan becomes overdue.
        staleness_ms: how long the cloud waits for a silent device's reports before settling
            an expired or cancelled grant without them.
        replacement_min_ms: the least validity of a code re-issued after an item was left in.
    """

    pickup_valid_ms: int = PICKUP_VALID_MS
    dropoff_valid_ms: int = 30 * MINUTE_MS
    return_valid_ms: int = 48 * HOUR_MS
    maintenance_valid_ms: int = 30 * MINUTE_MS
    dispute_ms: int = 72 * HOUR_MS
    proposal_ms: int = 7 * DAY_MS
    due_grace_ms: int = DAY_MS
    staleness_ms: int = DAY_MS
    replacement_min_ms: int = 15 * MINUTE_MS


DEFAULT_POLICY = Policy()


# --- moving an item ---------------------------------------------------------------------------


def item_row(db: sqlite3.Connection, item_id: str) -> sqlite3.Row | None:
    """The item's row."""
    row: sqlite3.Row | None = db.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
    return row


def move(
    db: sqlite3.Connection,
    item: sqlite3.Row,
    action: str,
    *,
    cause: str,
    actor: str,
    now_ms: int,
    on_behalf_of: str | None = None,
) -> str:
    """Move an item by ``action``; return its new status.

    Raises:
        Conflict: the action is not valid for the item's status (code ``invalid_transition``),
            or the item moved meanwhile.
    """
    try:
        to_status = next_status(item["status"], action, item["kind"])
    except InvalidTransition as exc:
        raise Conflict(str(exc), code=exc.code) from exc
    changed = db.execute(
        "UPDATE items SET status = ?, updated_ms = ? WHERE id = ? AND status = ?",
        (to_status, now_ms, item["id"], item["status"]),
    ).rowcount
    if changed != 1:
        raise Conflict(f"item {item['id']} is no longer {item['status']}")
    db.execute(
        "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause, actor,"
        " on_behalf_of) VALUES (?,?,?,?,?,?,?)",
        (item["id"], now_ms, item["status"], to_status, cause, actor, on_behalf_of),
    )
    return to_status


def set_item_status(
    db: sqlite3.Connection, item_id: str, from_status: str, to_status: str, cause: str, now_ms: int
) -> None:
    """Move an item between two statuses directly (demo seeding and tests of old stores)."""
    changed = db.execute(
        "UPDATE items SET status = ?, updated_ms = ? WHERE id = ? AND status = ?",
        (to_status, now_ms, item_id, from_status),
    ).rowcount
    if changed != 1:
        raise Conflict(f"item {item_id} is not {from_status}")
    db.execute(
        "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause) VALUES (?,?,?,?,?)",
        (item_id, now_ms, from_status, to_status, cause),
    )


def transition(
    db: sqlite3.Connection,
    keys: CloudKeys,
    item: sqlite3.Row,
    action: str,
    *,
    cause: str,
    actor: str,
    now_ms: int,
    policy: Policy = DEFAULT_POLICY,
    on_behalf_of: str | None = None,
) -> set[str]:
    """:func:`move` and carry out the transition's effects; return devices whose grant list
    changed (their configuration must be published after the transaction)."""
    new_status = move(
        db, item, action, cause=cause, actor=actor, now_ms=now_ms, on_behalf_of=on_behalf_of
    )
    return _effects(db, keys, item, new_status, action, actor=actor, now_ms=now_ms, policy=policy)


def _effects(
    db: sqlite3.Connection,
    keys: CloudKeys,
    item: sqlite3.Row,
    new_status: str,
    action: str,
    *,
    actor: str,
    now_ms: int,
    policy: Policy,
) -> set[str]:
    old = item["status"]
    changed: set[str] = set()
    if new_status in ("picked_up", "on_loan"):
        resolve_hold(db, item["hold_key"], post=True, actor=actor, now_ms=now_ms)
        changed |= end_item_grants(db, item["id"], reason="superseded", by=actor, now_ms=now_ms)
        if new_status == "picked_up":
            db.execute(
                "UPDATE items SET dispute_until_ms = ? WHERE id = ?",
                (now_ms + policy.dispute_ms, item["id"]),
            )
        else:
            days = item["loan_days"] or 14
            db.execute(
                "UPDATE items SET due_ms = ?, hold_key = NULL WHERE id = ?",
                (now_ms + days * DAY_MS, item["id"]),
            )
    elif old == "reserved" and new_status == "listed":  # the reservation ended unused
        _end_reservation(db, item, actor=actor, now_ms=now_ms, reason="not collected")
    elif old == "returned_pending_check" and new_status == "listed":  # back in good order
        resolve_hold(
            db,
            item["deposit_key"],
            post=False,
            actor=actor,
            now_ms=now_ms,
            reason="returned in good order",
        )
        db.execute(
            "UPDATE items SET reserved_by = NULL, deposit_key = NULL, due_ms = NULL WHERE id = ?",
            (item["id"],),
        )
    elif new_status in ("proposed", "on_loan") and old in ("awaiting_dropoff", "awaiting_return"):
        db.execute(  # the compartment kept for it is free again
            "UPDATE items SET device_id = NULL, compartment = NULL WHERE id = ?", (item["id"],)
        )
        changed |= end_item_grants(db, item["id"], reason="superseded", by=actor, now_ms=now_ms)
    elif new_status in ("withdrawn", "returned_to_donor"):
        changed |= end_item_grants(db, item["id"], reason="withdrawn", by=actor, now_ms=now_ms)
    if action in ("item_left", "dropoff_empty") and new_status in ("reserved", "awaiting_return"):
        changed |= _replace_consumed_grant(
            db, keys, item, actor=actor, now_ms=now_ms, policy=policy
        )
    return changed


def _end_reservation(
    db: sqlite3.Connection, item: sqlite3.Row, *, actor: str, now_ms: int, reason: str
) -> None:
    for key in (item["hold_key"], item["deposit_key"]):
        resolve_hold(db, key, post=False, actor=actor, now_ms=now_ms, reason=reason)
    db.execute(
        "UPDATE items SET reserved_by = NULL, hold_key = NULL, deposit_key = NULL WHERE id = ?",
        (item["id"],),
    )


def end_item_grants(
    db: sqlite3.Connection, item_id: str, *, reason: str, by: str, now_ms: int
) -> set[str]:
    """Revoke every active grant of an item; return their devices."""
    devices = set()
    for row in db.execute(
        "SELECT id, device_id FROM grants WHERE item_id = ? AND status = 'active'", (item_id,)
    ).fetchall():
        end_grant(db, row["id"], reason=reason, by=by, now_ms=now_ms)
        devices.add(str(row["device_id"]))
    if reason in ("superseded", "withdrawn"):
        # Nothing waits on these: the item's outcome is already decided.
        db.execute(
            "UPDATE grants SET settled_ms = ?, outcome = COALESCE(outcome, 'replaced')"
            " WHERE item_id = ? AND status = 'revoked' AND settled_ms IS NULL"
            " AND end_reason = ?",
            (now_ms, item_id, reason),
        )
    return devices


def _replace_consumed_grant(
    db: sqlite3.Connection,
    keys: CloudKeys,
    item: sqlite3.Row,
    *,
    actor: str,
    now_ms: int,
    policy: Policy,
) -> set[str]:
    """The door was opened and closed without the pickup (or return) happening: the code is
    used up, so the holder gets a new one for the same compartment, valid as long as the old one
    (at least ``replacement_min_ms``)."""
    purpose = "pickup" if item["status"] == "collecting" else "return"
    used = db.execute(
        "SELECT * FROM grants WHERE item_id = ? AND purpose = ? AND status = 'consumed'"
        " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
        (item["id"], purpose),
    ).fetchone()
    if (
        used is None
        or db.execute(
            "SELECT 1 FROM grants WHERE item_id = ? AND status = 'active'", (item["id"],)
        ).fetchone()
    ):
        return set()
    issue_grant(
        db,
        keys,
        device_id=used["device_id"],
        compartment=used["compartment"],
        purpose=purpose,
        valid_from_ms=now_ms,
        valid_until_ms=max(used["valid_until_ms"], now_ms + policy.replacement_min_ms),
        now_ms=now_ms,
        item_id=item["id"],
        person_id=used["person_id"],
        created_by=actor,
        replaces_id=used["id"],
    )
    return {str(used["device_id"])}


# --- holds ------------------------------------------------------------------------------------


def resolve_hold(
    db: sqlite3.Connection,
    key: str | None,
    *,
    post: bool,
    actor: str,
    now_ms: int,
    reason: str = "",
) -> str | None:
    """Post or void the pending transfer recorded under ``key`` (idempotent); return its id."""
    if key is None:
        return None
    hold = db.execute(
        "SELECT id FROM transfers WHERE idempotency_key = ? AND phase = 'pending'", (key,)
    ).fetchone()
    if hold is None:
        return None
    ledger = SqlLedger(db)
    if post:
        return ledger.post(PostRequest(f"post:{hold['id']}", hold["id"], actor), now_ms).id
    void = VoidRequest(f"void:{hold['id']}", hold["id"], actor, reason or "released")
    return ledger.void(void, now_ms).id


def _next_key(db: sqlite3.Connection, base: str) -> str:
    """``base``, or ``base:2``, ``base:3``… for a later reservation by the same person."""
    taken = {
        r[0]
        for r in db.execute(
            "SELECT idempotency_key FROM transfers WHERE idempotency_key = ?"
            " OR idempotency_key LIKE ?",
            (base, base + ":%"),
        )
    }
    if base not in taken:
        return base
    n = 2
    while f"{base}:{n}" in taken:
        n += 1
    return f"{base}:{n}"


# --- reserving --------------------------------------------------------------------------------


def reserve(
    db: sqlite3.Connection,
    keys: CloudKeys,
    item_id: str,
    person_id: str,
    now_ms: int,
    *,
    policy: Policy = DEFAULT_POLICY,
    actor: str | None = None,
    on_behalf_of: str | None = None,
) -> str:
    """Reserve a listed item in a locker: hold its points (and deposit), issue a pickup grant;
    return the grant's id."""
    item = item_row(db, item_id)
    if item is None or item["status"] != "listed" or item["device_id"] is None:
        raise Conflict("item is not available for reservation", code="not_available")
    if item["donor_id"] == person_id:
        raise Conflict("you gave this item; it cannot be reserved by you", code="own_item")
    attention = db.execute(
        "SELECT needs_attention FROM compartments WHERE device_id = ? AND name = ?",
        (item["device_id"], item["compartment"]),
    ).fetchone()
    if attention is not None and attention["needs_attention"]:
        raise Conflict("this compartment is being looked after; try again later", code="attention")
    account = f"mem:{person_id}"
    needed = item["points"] + (item["deposit_points"] if item["kind"] == "lend" else 0)
    state = SqlLedger(db).account(account)
    if state.available < needed:
        raise Conflict("not enough points", code="insufficient_points")
    move(
        db,
        item,
        "reserve",
        cause="reserved",
        actor=actor or person_id,
        now_ms=now_ms,
        on_behalf_of=on_behalf_of,
    )
    hold_key = _next_key(db, f"hold:{item_id}:{person_id}") if item["points"] > 0 else None
    deposit_key = None
    refs = (("item", item_id),)
    ledger = SqlLedger(db)
    if hold_key is not None:
        ledger.transfer(
            TransferRequest(
                hold_key,
                "redemption",
                account,
                REDEMPTION,
                item["points"],
                actor or person_id,
                refs=refs,
                on_behalf_of=on_behalf_of,
                pending=True,
            ),
            now_ms,
        )
    if item["kind"] == "lend" and item["deposit_points"] > 0:
        deposit_key = _next_key(db, f"deposit:{item_id}:{person_id}")
        ledger.transfer(
            TransferRequest(
                deposit_key,
                "penalty",
                account,
                PENALTIES,
                item["deposit_points"],
                actor or person_id,
                refs=refs,
                on_behalf_of=on_behalf_of,
                pending=True,
            ),
            now_ms,
        )
    db.execute(
        "UPDATE items SET reserved_by = ?, hold_key = ?, deposit_key = ? WHERE id = ?",
        (person_id, hold_key, deposit_key, item_id),
    )
    return issue_grant(
        db,
        keys,
        device_id=item["device_id"],
        compartment=item["compartment"],
        purpose="pickup",
        valid_from_ms=now_ms,
        valid_until_ms=now_ms + policy.pickup_valid_ms,
        now_ms=now_ms,
        item_id=item_id,
        person_id=person_id,
        created_by=actor or person_id,
    )


def item_json(row: sqlite3.Row, *, for_staff: bool) -> dict[str, Any]:
    """An item as API data (who reserved it only for staff)."""
    data = {
        key: row[key]
        for key in (
            "id",
            "title",
            "category",
            "description",
            "kind",
            "size",
            "points",
            "deposit_points",
            "loan_days",
            "status",
            "device_id",
            "compartment",
            "due_ms",
            "deadline_ms",
            "dispute_until_ms",
            "created_ms",
            "updated_ms",
        )
    }
    if for_staff:
        data |= {"donor_id": row["donor_id"], "reserved_by": row["reserved_by"]}
    return data


# --- what people do, one transaction each ---------------------------------------------------------


class ItemService:
    """The people-facing operations on items; each runs in one write transaction and then
    publishes the configuration of every device whose grant list it changed.

    ``publish`` is the device service's ``publish_config``.
    """

    def __init__(
        self,
        store: Any,
        keys: CloudKeys,
        clock: Any,
        publish: Any,
        points: Any,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.publish = publish
        self.points = points
        self.policy = policy

    def _now(self) -> int:
        return int(self.clock.now().wall_ms)

    def _after(self, devices: set[str]) -> None:
        for device_id in sorted(devices):
            self.publish(device_id)

    # --- reading ------------------------------------------------------------------------------

    def visible(self, db: sqlite3.Connection, person: Any, item_id: str) -> sqlite3.Row:
        """The item if the person may see it: staff of its community; a resident if it is
        listed, theirs, or reserved by or lent to them. Otherwise NotFound."""
        item = item_row(db, item_id)
        if item is None or item["community_id"] != person.community_id:
            raise NotFound("no such item")
        if person.role == "resident" and not (
            item["status"] == "listed"
            or item["donor_id"] == person.id
            or item["reserved_by"] == person.id
        ):
            raise NotFound("no such item")
        return item

    def get(self, person: Any, item_id: str) -> dict[str, Any]:
        """An item with its history (who did what only for staff)."""
        with self.store.snapshot() as db:
            item = self.visible(db, person, item_id)
            history = db.execute(
                "SELECT at_ms, from_status, to_status, cause, actor, on_behalf_of"
                " FROM item_history WHERE item_id = ? ORDER BY at_ms, rowid",
                (item_id,),
            ).fetchall()
        staff = person.role != "resident"
        steps = []
        for h in history:
            step = {
                "at_ms": h["at_ms"],
                "from_status": h["from_status"],
                "to_status": h["to_status"],
                "cause": h["cause"],
            }
            if staff:
                step |= {"actor": h["actor"], "on_behalf_of": h["on_behalf_of"]}
            steps.append(step)
        return item_json(item, for_staff=staff) | {"history": steps}

    def search(
        self,
        person: Any,
        *,
        status: str | None,
        q: str | None,
        category: str | None,
        mine: bool,
        offset: int,
        limit: int,
    ) -> dict[str, Any]:
        """Items of the caller's community, newest first, paginated. Residents see the listing
        (and with ``mine``, what they gave, reserved or borrowed); staff see every status."""
        where = ["community_id = ?"]
        params: list[Any] = [person.community_id]
        if person.role == "resident":
            if mine:
                where.append("(donor_id = ? OR reserved_by = ?)")
                params += [person.id, person.id]
            else:
                where.append("status = 'listed'")
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if category is not None:
            where.append("category = ?")
            params.append(category)
        if q:
            where.append("(title LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\')")
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [pattern, pattern]
        clause = " AND ".join(where)
        with self.store.snapshot() as db:
            total = db.execute(f"SELECT COUNT(*) FROM items WHERE {clause}", params).fetchone()[0]  # noqa: S608
            rows = db.execute(
                f"SELECT * FROM items WHERE {clause} ORDER BY updated_ms DESC, id"  # noqa: S608
                " LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        staff = person.role != "resident"
        return {
            "items": [item_json(r, for_staff=staff) for r in rows],
            "total": int(total),
            "offset": offset,
            "limit": limit,
        }

    # --- the donor's way in -------------------------------------------------------------------

    def propose(self, person: Any, fields: dict[str, Any], on_behalf_of: str | None) -> str:
        """Record a proposed item of the donor (the caller, or the resident a worker acts for)."""
        now = self._now()
        with self.store.write() as db:
            donor = self._donor(db, person, on_behalf_of)
            return self.propose_in(db, person, donor, fields, now, on_behalf_of)

    def propose_in(
        self,
        db: sqlite3.Connection,
        person: Any,
        donor: str,
        fields: dict[str, Any],
        now: int,
        on_behalf_of: str | None = None,
    ) -> str:
        """:meth:`propose` inside the caller's transaction, for a donor already checked (the
        valuation terminal records the item and its valuation together)."""
        item_id = new_id("itm")
        db.execute(
            "INSERT INTO items (id, community_id, donor_id, title, category, description,"
            " kind, size, points, deposit_points, loan_days, status, deadline_ms,"
            " created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?, 'proposed', ?,?,?)",
            (
                item_id,
                person.community_id,
                donor,
                fields["title"],
                fields["category"],
                fields.get("description", ""),
                fields.get("kind", "give"),
                fields.get("size", "M"),
                fields.get("points", 0),
                fields.get("deposit_points", 0) if fields.get("kind") == "lend" else 0,
                fields.get("loan_days") if fields.get("kind") == "lend" else None,
                now + self.policy.proposal_ms,
                now,
                now,
            ),
        )
        db.execute(
            "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause, actor,"
            " on_behalf_of) VALUES (?,?, '', 'proposed', 'proposed', ?, ?)",
            (item_id, now, person.id, on_behalf_of),
        )
        return item_id

    def _donor(self, db: sqlite3.Connection, person: Any, on_behalf_of: str | None) -> str:
        if person.role == "resident":
            if on_behalf_of not in (None, person.id):
                raise Forbidden("residents act only for themselves")
            return str(person.id)
        if on_behalf_of is None:
            raise Invalid("staff act for a resident: name them", field="on_behalf_of")
        resident_of(db, person, on_behalf_of)
        return on_behalf_of

    def _own_item(
        self, db: sqlite3.Connection, person: Any, item_id: str, *, as_donor: bool
    ) -> sqlite3.Row:
        item = item_row(db, item_id)
        if item is None or item["community_id"] != person.community_id:
            raise NotFound("no such item")
        owner = item["donor_id"] if as_donor else item["reserved_by"]
        if person.role == "resident" and owner != person.id:
            raise NotFound("no such item")
        return item

    def request_dropoff(
        self, person: Any, item_id: str, device_id: str | None, *, notify: bool = False
    ) -> dict[str, Any]:
        """Keep a free compartment of a fitting size for a proposed item and issue its drop-off
        grant; return the grant, the place and the code (shown to the donor; also sent as a
        message with ``notify``)."""
        now = self._now()
        with self.store.write() as db:
            item = self._own_item(db, person, item_id, as_donor=True)
            if item["status"] != "proposed":
                raise Conflict(
                    f"an item that is {item['status']} cannot be dropped off",
                    code="invalid_transition",
                )
            place, shown = self._into_free_compartment(
                db,
                person,
                item,
                device_id,
                action="issue_dropoff",
                purpose="dropoff",
                holder=item["donor_id"],
                valid_ms=self.policy.dropoff_valid_ms,
                now=now,
                notify=notify,
            )
        self._after({place["device_id"]})
        return shown

    def _into_free_compartment(
        self,
        db: sqlite3.Connection,
        person: Any,
        item: sqlite3.Row,
        device_id: str | None,
        *,
        action: str,
        purpose: str,
        holder: str,
        valid_ms: int,
        now: int,
        notify: bool | None = None,
    ) -> tuple[sqlite3.Row, dict[str, Any]]:
        """Keep the best free compartment of a fitting size for the item, move it by ``action``
        and issue the holder's grant into it; return the place and the grant as shown."""
        free = free_compartments(db, person.community_id, item["size"], device_id)
        if not free:
            raise Conflict(
                "no free compartment of a fitting size; try again later",
                code="no_free_compartment",
            )
        place = free[0]
        proxy = holder if person.role != "resident" else None
        move(
            db,
            item,
            action,
            cause=f"{purpose} grant",
            actor=person.id,
            now_ms=now,
            on_behalf_of=proxy,
        )
        db.execute(
            "UPDATE items SET device_id = ?, compartment = ? WHERE id = ?",
            (place["device_id"], place["name"], item["id"]),
        )
        grant_id = issue_grant(
            db,
            self.keys,
            device_id=place["device_id"],
            compartment=place["name"],
            purpose=purpose,
            valid_from_ms=now,
            valid_until_ms=now + valid_ms,
            now_ms=now,
            item_id=item["id"],
            person_id=holder,
            created_by=person.id,
            notify=notify,
        )
        return place, grant_view(db, self.keys, grant_id, with_code=person.role == "resident")

    def withdraw(self, person: Any, item_id: str, reason: str) -> dict[str, Any]:
        """The donor (or a worker) withdraws a proposal or a drop-off not made yet."""
        now = self._now()
        with self.store.write() as db:
            item = self._own_item(db, person, item_id, as_donor=True)
            changed = transition(
                db,
                self.keys,
                item,
                "withdraw",
                cause=f"withdrawn: {reason}",
                actor=person.id,
                now_ms=now,
                policy=self.policy,
            )
        self._after(changed)
        return {"status": "withdrawn"}

    def approve(
        self,
        worker: Any,
        item_id: str,
        points: int,
        reason: str,
        *,
        also: Callable[[sqlite3.Connection, sqlite3.Row, int], None] | None = None,
    ) -> dict[str, Any]:
        """List an item known to be inside and credit its donor once (insider rules apply).

        ``also(db, item, now)`` runs in the same transaction once the approval is known to be
        valid (the valuation queue records its decision there)."""
        now = self._now()
        with self.store.write() as db:
            item = self._community_item(db, worker, item_id)
            if item["status"] != "pending_approval":
                raise Conflict(
                    f"an item that is {item['status']} cannot be approved",
                    code="invalid_transition",
                )
            if item["donor_id"] == worker.id:
                raise Forbidden("you may not approve your own item")
            credit: dict[str, Any] = {"status": "none"}
            if points > 0:
                credit = self.points.move_in(
                    db,
                    worker,
                    Movement(
                        key=f"credit:{item_id}",
                        kind="valuation_credit",
                        member=item["donor_id"],
                        amount=points,
                        refs=(("item", item_id),),
                    ),
                    now,
                )
                if credit["status"] == "awaiting_second_approver":
                    # Above the threshold: this approval is parked (committed) until another
                    # social worker approves the same points; the item stays pending.
                    return {"status": "awaiting_second_approver", "credit": credit}
                if credit["status"] not in ("recorded", "approved"):
                    raise Conflict(f"the credit is {credit['status']}", code="credit_refused")
            db.execute("UPDATE items SET points = ? WHERE id = ?", (points, item_id))
            if also is not None:
                also(db, item, now)
            move(db, item, "approve", cause=f"approved: {reason}", actor=worker.id, now_ms=now)
            enqueue(
                db,
                person_id=item["donor_id"],
                kind="valuation_decision",
                key=f"valuation_decision:{item_id}",
                now_ms=now,
                params={
                    "item_id": item_id,
                    "decision": "approved",
                    "points": points,
                    "reason": reason,
                },
            )
        return {"status": "listed", "credit": credit}

    def reject(
        self,
        worker: Any,
        item_id: str,
        reason: str,
        *,
        also: Callable[[sqlite3.Connection, sqlite3.Row, int], None] | None = None,
    ) -> dict[str, Any]:
        """Refuse an item and give its donor a code to take it back (``also`` as
        :meth:`approve`)."""
        now = self._now()
        with self.store.write() as db:
            item = self._community_item(db, worker, item_id)
            if also is not None and item["status"] == "pending_approval":
                also(db, item, now)
            move(db, item, "reject", cause=f"rejected: {reason}", actor=worker.id, now_ms=now)
            enqueue(
                db,
                person_id=item["donor_id"],
                kind="valuation_decision",
                key=f"valuation_decision:{item_id}",
                now_ms=now,
                params={"item_id": item_id, "decision": "rejected", "points": 0, "reason": reason},
            )
            rejected = item_row(db, item_id)
            assert rejected is not None
            grant_id = self._return_to_donor(db, worker, rejected, now, "issue_return_to_donor")
        self._after({item["device_id"]})
        return {"status": "awaiting_return_to_donor", "grant_id": grant_id}

    def _return_to_donor(
        self, db: sqlite3.Connection, worker: Any, item: sqlite3.Row, now: int, action: str
    ) -> str:
        # The donor hears of it once: the new code's message says where to collect it.
        move(db, item, action, cause="return to donor", actor=worker.id, now_ms=now)
        return issue_grant(
            db,
            self.keys,
            device_id=item["device_id"],
            compartment=item["compartment"],
            purpose="pickup",
            valid_from_ms=now,
            valid_until_ms=now + self.policy.pickup_valid_ms,
            now_ms=now,
            item_id=item["id"],
            person_id=item["donor_id"],
            created_by=worker.id,
        )

    def _community_item(self, db: sqlite3.Connection, person: Any, item_id: str) -> sqlite3.Row:
        item = item_row(db, item_id)
        if item is None or item["community_id"] != person.community_id:
            raise NotFound("no such item")
        return item

    # --- a resident's way out -------------------------------------------------------------------

    def reserve(self, person: Any, item_id: str, for_person: str | None) -> dict[str, Any]:
        """Reserve a listed item for the caller (or, for a worker, for a resident)."""
        now = self._now()
        with self.store.write() as db:
            item = self._community_item(db, person, item_id)
            if person.role == "resident":
                if for_person not in (None, person.id):
                    raise Forbidden("residents reserve only for themselves")
                holder, on_behalf = person.id, None
            else:
                if for_person is None:
                    raise Invalid("staff reserve for a resident: name them", field="for_person")
                resident_of(db, person, for_person)
                holder, on_behalf = for_person, for_person
            grant_id = reserve(
                db,
                self.keys,
                item_id,
                holder,
                now,
                policy=self.policy,
                actor=person.id,
                on_behalf_of=on_behalf,
            )
            shown = grant_view(db, self.keys, grant_id, with_code=person.role == "resident")
        self._after({item["device_id"]})
        return shown

    def cancel(self, person: Any, item_id: str, reason: str) -> dict[str, Any]:
        """Cancel a reservation: the code is withdrawn at once; the points come back once the
        locker confirms it was not used (expiry waits for the device)."""
        now = self._now()
        with self.store.write() as db:
            item = self._own_item(db, person, item_id, as_donor=False)
            if item["status"] != "reserved":
                raise Conflict(
                    f"an item that is {item['status']} cannot be cancelled",
                    code="invalid_transition",
                )
            changed = set()
            for grant in db.execute(
                "SELECT id, device_id FROM grants WHERE item_id = ? AND status = 'active'",
                (item_id,),
            ).fetchall():
                end_grant(db, grant["id"], reason="cancelled", by=person.id, now_ms=now)
                changed.add(str(grant["device_id"]))
            db.execute(
                "INSERT INTO item_history (item_id, at_ms, from_status, to_status, cause, actor)"
                " VALUES (?,?, 'reserved', 'reserved', ?, ?)",
                (item_id, now, f"cancel requested: {reason}", person.id),
            )
        self._after(changed)
        return {"status": "cancelling"}

    def request_return(self, person: Any, item_id: str, device_id: str | None) -> dict[str, Any]:
        """A borrower brings a lent item back: a return grant for a free fitting compartment."""
        now = self._now()
        with self.store.write() as db:
            item = self._own_item(db, person, item_id, as_donor=False)
            if item["kind"] != "lend" or item["status"] not in ("on_loan", "due", "overdue"):
                raise Conflict(
                    f"an item that is {item['status']} cannot be returned",
                    code="invalid_transition",
                )
            place, shown = self._into_free_compartment(
                db,
                person,
                item,
                device_id,
                action="request_return",
                purpose="return",
                holder=item["reserved_by"],
                valid_ms=self.policy.return_valid_ms,
                now=now,
            )
        self._after({place["device_id"]})
        return shown

    def check(self, worker: Any, item_id: str, ok: bool, reason: str) -> dict[str, Any]:
        """A returned item checked by a person: in good order (deposit released, listed again)
        or damaged (under review: the deposit stays held until a worker decides)."""
        now = self._now()
        with self.store.write() as db:
            item = self._community_item(db, worker, item_id)
            action = "check_ok" if ok else "check_damaged"
            transition(
                db,
                self.keys,
                item,
                action,
                cause=f"checked: {reason}",
                actor=worker.id,
                now_ms=now,
                policy=self.policy,
            )
            if not ok:
                open_case(
                    db,
                    community_id=worker.community_id,
                    kind="damaged_return",
                    now_ms=now,
                    event_ref=f"check:{item_id}:{now}",
                    item_id=item_id,
                    person_id=item["reserved_by"],
                    detail={"reason": reason},
                )
        return {"status": "listed" if ok else "under_review"}

    def review(self, worker: Any, item_id: str, decision: str, reason: str) -> dict[str, Any]:
        """A social worker decides what an item under review becomes."""
        now = self._now()
        with self.store.write() as db:
            item = self._community_item(db, worker, item_id)
            if decision == "return_to_donor":
                grant_id = self._return_to_donor(db, worker, item, now, "return_to_donor")
                self._after({item["device_id"]})
                return {"status": "awaiting_return_to_donor", "grant_id": grant_id}
            changed = transition(
                db,
                self.keys,
                item,
                decision,
                cause=f"reviewed: {reason}",
                actor=worker.id,
                now_ms=now,
                policy=self.policy,
            )
        self._after(changed)
        return {"status": next_status(item["status"], decision, item["kind"])}

    def report_problem(
        self,
        person: Any,
        item_id: str,
        problem: str,
        note: str,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """A resident reports a problem with an item they picked up, within the dispute window
        (or a social worker for them, ``on_behalf_of``: the case is the resident's and records
        who wrote it)."""
        now = self._now()
        reporter = person.id
        detail: dict[str, Any] = {"problem": problem, "note": note}
        with self.store.write() as db:
            if person.role == "resident":
                if on_behalf_of not in (None, person.id):
                    raise Forbidden("a resident reports only for themselves")
            else:
                if person.role != "social_worker" or on_behalf_of is None:
                    raise Invalid(
                        "staff report a problem for a resident: name them", field="on_behalf_of"
                    )
                reporter = resident_of(db, person, on_behalf_of)["id"]
                detail["recorded_by"] = person.id
            item = self._own_item(db, person, item_id, as_donor=False)
            if item["reserved_by"] != reporter:
                raise NotFound("no such item")
            if item["status"] != "picked_up" or (item["dispute_until_ms"] or 0) < now:
                raise Conflict(
                    "problems can be reported only within the window after a pickup",
                    code="dispute_window_closed",
                )
            case_id = open_case(
                db,
                community_id=person.community_id,
                kind="problem_report",
                now_ms=now,
                event_ref=f"problem:{item_id}:{reporter}",
                item_id=item_id,
                person_id=reporter,
                detail=detail,
            )
        if case_id is None:
            raise Conflict("a problem with this item is already reported", code="already_reported")
        return {"case_id": case_id}


def resident_of(db: sqlite3.Connection, worker: Any, person_id: str) -> sqlite3.Row:
    """A resident of the worker's community, or NotFound."""
    row: sqlite3.Row | None = db.execute(
        "SELECT id, community_id, role FROM people WHERE id = ?", (person_id,)
    ).fetchone()
    if row is None or row["community_id"] != worker.community_id or row["role"] != "resident":
        raise NotFound(f"no resident {person_id}")
    return row


def grant_view(
    db: sqlite3.Connection, keys: CloudKeys, grant_id: str, *, with_code: bool
) -> dict[str, Any]:
    """A grant as shown to its holder: where, until when, and (to the holder only) its code."""
    row = db.execute(
        "SELECT g.*, d.name AS locker, d.location, i.title FROM grants g"
        " JOIN devices d ON d.id = g.device_id LEFT JOIN items i ON i.id = g.item_id"
        " WHERE g.id = ?",
        (grant_id,),
    ).fetchone()
    view: dict[str, Any] = {
        "grant_id": row["id"],
        "purpose": row["purpose"],
        "item_id": row["item_id"],
        "item": row["title"],
        "device_id": row["device_id"],
        "locker": row["locker"],
        "location": row["location"],
        "compartment": row["compartment"],
        "valid_until_ms": row["valid_until_ms"],
        "status": row["status"],
    }
    if with_code:
        view["code"] = code_of(keys, row["id"], row["code_counter"])
    return view
