"""Contributions: hours given and skills used, confirmed by both parties, approved like items.

A resident records what they gave (or a social worker records it for them, ``on_behalf_of``);
the points come from the published rule (``cloud_api.core.contributions``, policy
``cloud_api/policy/contributions.toml``) and are stored with their breakdown. Then:

1. **Both parties confirm.** The provider's confirmation is implied when they record it
   themselves; when a worker recorded it for them, they confirm it themselves. The other party
   is the beneficiary resident, or, for the community as beneficiary, a social worker. A social
   worker may also confirm for a beneficiary resident who is not online (points.md, "Proxy":
   ``beneficiary_confirmed_by`` keeps who did it, ``beneficiary_id`` for whom). Both confirmed →
   ``confirmed``. A worker who recorded it for the provider may confirm it for the community:
   the provider still confirms it themselves, and another worker approves it.
2. **A social worker approves** (or rejects, with a reason). Approval credits the provider once,
   ``time_credit`` / ``skill_credit`` from issuance, through :meth:`PointsService.move_in` in
   the same write transaction as the status change (key ``contribution:{id}``), exactly as
   ``ItemService.approve`` credits a donor: the insider rules, the daily cap and the second
   approver apply. The approving worker may be none of the people who vouched for it: not the
   provider, not the worker who recorded it for the provider, not the one who confirmed it for
   the beneficiary (four eyes: one worker cannot both attest and pay).
3. The provider may **withdraw** it before a decision.

Every change runs in one write transaction on the store's one writer and moves the status only
from the status it read (``UPDATE … WHERE status = ?``), so two approvals at once credit once:
the second finds it ``approved`` and is refused (409 ``invalid_transition``).

Example:
    >>> svc = ContributionService(store, clock, points)
    >>> c = svc.create(resident, kind="time", description="陪王阿姨看病", hours=2.5,
    ...                intensity="heavy", slot="daytime")
    >>> svc.confirm(worker, c["id"])["status"], svc.approve(chen, c["id"], "ok")["status"]
    ('confirmed', 'approved')
"""

from __future__ import annotations

import json
import sqlite3
from functools import cache
from importlib import resources
from typing import Any

from cloud_api.core.contributions import (
    LEDGER_KINDS,
    ContributionError,
    InvalidTransition,
    Policy,
    Valuation,
    load_policy,
    next_status,
    value_skill,
    value_time,
)
from cloud_api.errors import Conflict, Forbidden, Invalid, NotFound
from cloud_api.notify.outbox import enqueue
from cloud_api.points.service import Movement
from cloud_api.store import StorePort
from linli.clock import Clock
from linli.ids import new_id

POLICY_RESOURCE = "policy/contributions.toml"
"""The published policy, package data of ``cloud_api``."""


def policy_text() -> str:
    """The text of the published contributions policy."""
    return resources.files("cloud_api").joinpath(POLICY_RESOURCE).read_text(encoding="utf-8")


@cache
def default_policy() -> Policy:
    """The published contributions policy, parsed once (a bad file stops the cloud at start-up
    with :class:`~cloud_api.core.contributions.PolicyError` naming the field)."""
    return load_policy(policy_text())


def contribution_json(row: sqlite3.Row, *, for_staff: bool) -> dict[str, Any]:
    """A contribution as API data; who recorded, confirmed for the beneficiary and decided are
    for staff only (as an item's history is)."""
    data: dict[str, Any] = {
        key: row[key]
        for key in (
            "id",
            "kind",
            "provider_id",
            "beneficiary_id",
            "description",
            "hours",
            "points",
            "status",
            "provider_confirmed_ms",
            "beneficiary_confirmed_ms",
            "decided_ms",
            "reason",
            "created_ms",
            "updated_ms",
        )
    }
    data["inputs"] = json.loads(row["inputs"])
    data["breakdown"] = json.loads(row["breakdown"])
    if for_staff:
        data |= {
            "created_by": row["created_by"],
            "beneficiary_confirmed_by": row["beneficiary_confirmed_by"],
            "decided_by": row["decided_by"],
        }
    return data


def resident_in(db: sqlite3.Connection, person: Any, person_id: str, field: str) -> None:
    """``person_id`` is a resident of the caller's community, or NotFound (another community's
    resident is not revealed)."""
    row = db.execute("SELECT community_id, role FROM people WHERE id = ?", (person_id,)).fetchone()
    if row is None or row["community_id"] != person.community_id or row["role"] != "resident":
        raise NotFound(f"no resident {person_id}", field=field)


class ContributionService:
    """The people-facing operations on contributions; each runs in one write transaction.

    ``points`` is the cloud's :class:`~cloud_api.points.service.PointsService` (its
    ``move_in`` credits the provider inside the approval's transaction).
    """

    def __init__(
        self, store: StorePort, clock: Clock, points: Any, policy: Policy | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.points = points
        self.policy = policy or default_policy()

    def _now(self) -> int:
        return int(self.clock.now().wall_ms)

    # --- reading ----------------------------------------------------------------------------

    def _row(self, db: sqlite3.Connection, person: Any, contribution_id: str) -> sqlite3.Row:
        """The contribution if the person may see it: staff of its community, a resident who is
        its provider or beneficiary. Otherwise NotFound (its existence is not revealed)."""
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM contributions WHERE id = ?", (contribution_id,)
        ).fetchone()
        if row is None or row["community_id"] != person.community_id:
            raise NotFound("no such contribution")
        if person.role == "resident" and person.id not in (
            row["provider_id"],
            row["beneficiary_id"],
        ):
            raise NotFound("no such contribution")
        return row

    def get(self, person: Any, contribution_id: str) -> dict[str, Any]:
        """One contribution with its breakdown."""
        with self.store.snapshot() as db:
            row = self._row(db, person, contribution_id)
        return contribution_json(row, for_staff=person.role != "resident")

    def search(
        self,
        person: Any,
        *,
        status: str | None,
        kind: str | None,
        offset: int,
        limit: int,
    ) -> dict[str, Any]:
        """Contributions of the caller's community, newest first, paginated; a resident sees
        only those they gave or received."""
        where = ["community_id = ?"]
        params: list[Any] = [person.community_id]
        if person.role == "resident":
            where.append("(provider_id = ? OR beneficiary_id = ?)")
            params += [person.id, person.id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = " AND ".join(where)
        with self.store.snapshot() as db:
            total = db.execute(
                f"SELECT COUNT(*) FROM contributions WHERE {clause}",  # noqa: S608
                params,
            ).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM contributions WHERE {clause}"  # noqa: S608
                " ORDER BY updated_ms DESC, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        staff = person.role != "resident"
        return {
            "contributions": [contribution_json(r, for_staff=staff) for r in rows],
            "total": int(total),
            "offset": offset,
            "limit": limit,
        }

    # --- recording --------------------------------------------------------------------------

    def valuation(
        self,
        kind: str,
        *,
        hours: float,
        intensity: str | None,
        slot: str | None,
        skill: str | None,
        is_certified: bool,
    ) -> Valuation:
        """The points of a contribution under the policy, or Invalid naming the field."""
        try:
            if kind == "time":
                if skill is not None or is_certified:
                    field = "skill" if skill is not None else "certified"
                    raise Invalid("a time contribution names no skill", field=field)
                if intensity is None:
                    raise Invalid("a time contribution needs its intensity", field="intensity")
                if slot is None:
                    raise Invalid("a time contribution needs its time slot", field="slot")
                return value_time(self.policy, hours=hours, intensity=intensity, slot=slot)
            if kind == "skill":
                if intensity is not None or slot is not None:
                    field = "intensity" if intensity is not None else "slot"
                    raise Invalid("a skill contribution has no intensity or time slot", field=field)
                if skill is None:
                    raise Invalid("a skill contribution names its skill", field="skill")
                return value_skill(self.policy, hours=hours, skill=skill, is_certified=is_certified)
        except ContributionError as exc:
            raise Invalid(str(exc), field=exc.field, code=exc.code) from exc
        raise Invalid(f"unknown contribution kind {kind!r}", field="kind")

    def create(
        self,
        person: Any,
        *,
        kind: str,
        description: str,
        hours: float,
        intensity: str | None = None,
        slot: str | None = None,
        skill: str | None = None,
        is_certified: bool = False,
        beneficiary_id: str | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Record a contribution of the caller (a resident), or of the resident a social worker
        names in ``on_behalf_of``; ``beneficiary_id`` None means the community itself."""
        now = self._now()
        contribution_id = new_id("ctb")
        with self.store.write() as db:
            if person.role == "resident":
                if on_behalf_of not in (None, person.id):
                    raise Forbidden("residents record only their own contributions")
                provider = str(person.id)
            else:
                if on_behalf_of is None:
                    raise Invalid("staff record for a resident: name them", field="on_behalf_of")
                resident_in(db, person, on_behalf_of, "on_behalf_of")
                provider = on_behalf_of
            if beneficiary_id is not None:
                resident_in(db, person, beneficiary_id, "beneficiary_id")
                if beneficiary_id == provider:
                    raise Invalid(
                        "the provider cannot be the beneficiary: name another resident, or"
                        " none for the community",
                        field="beneficiary_id",
                        code="provider_is_beneficiary",
                    )
            valued = self.valuation(
                kind,
                hours=hours,
                intensity=intensity,
                slot=slot,
                skill=skill,
                is_certified=is_certified,
            )
            db.execute(
                "INSERT INTO contributions (id, community_id, kind, provider_id, beneficiary_id,"
                " description, hours, inputs, points, breakdown, status, provider_confirmed_ms,"
                " created_by, created_ms, updated_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?, 'proposed', ?,?,?,?)",
                (
                    contribution_id,
                    person.community_id,
                    kind,
                    provider,
                    beneficiary_id,
                    description,
                    valued.inputs.hours,
                    json.dumps(valued.inputs.to_json(), sort_keys=True),
                    valued.points,
                    json.dumps(valued.to_json(), ensure_ascii=False, sort_keys=True),
                    now if provider == person.id else None,
                    person.id,
                    now,
                    now,
                ),
            )
            row = self._row(db, person, contribution_id)
        return contribution_json(row, for_staff=person.role != "resident")

    # --- confirming -------------------------------------------------------------------------

    def confirm(self, person: Any, contribution_id: str) -> dict[str, Any]:
        """The other party confirms: the beneficiary resident (or a social worker for the
        community, or for a beneficiary resident not online), or the provider when a worker
        recorded it for them. Both confirmed → ``confirmed``."""
        now = self._now()
        with self.store.write() as db:
            row = self._row(db, person, contribution_id)
            if row["status"] != "proposed":
                raise Conflict(
                    f"a contribution that is {row['status']} cannot be confirmed",
                    code="invalid_transition",
                )
            provider_done = row["provider_confirmed_ms"] is not None
            beneficiary_done = row["beneficiary_confirmed_ms"] is not None
            if person.role == "resident":
                if person.id == row["beneficiary_id"] and not beneficiary_done:
                    side = "beneficiary"
                elif person.id == row["provider_id"] and not provider_done:
                    side = "provider"
                else:
                    raise Conflict(
                        "you have confirmed this already; it waits for the other party",
                        code="already_confirmed",
                    )
            else:
                if beneficiary_done:
                    raise Conflict(
                        "the provider confirms this themselves", code="awaiting_provider"
                    )
                side = "beneficiary"
            if side == "beneficiary":
                db.execute(
                    "UPDATE contributions SET beneficiary_confirmed_ms = ?,"
                    " beneficiary_confirmed_by = ?, updated_ms = ? WHERE id = ?",
                    (now, person.id, now, contribution_id),
                )
                beneficiary_done = True
            else:
                db.execute(
                    "UPDATE contributions SET provider_confirmed_ms = ?, updated_ms = ?"
                    " WHERE id = ?",
                    (now, now, contribution_id),
                )
                provider_done = True
            if provider_done and beneficiary_done:
                self._move(db, row, "both_confirmed", now)
            row = self._row(db, person, contribution_id)
        return contribution_json(row, for_staff=person.role != "resident")

    # --- deciding ---------------------------------------------------------------------------

    def _move(
        self,
        db: sqlite3.Connection,
        row: sqlite3.Row,
        action: str,
        now: int,
        *,
        decided_by: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Move the contribution by ``action`` from the status it was read in; Conflict if the
        action is not valid there or it moved meanwhile."""
        try:
            to_status = next_status(row["status"], action)
        except InvalidTransition as exc:
            raise Conflict(str(exc), code=exc.code) from exc
        changed = db.execute(
            "UPDATE contributions SET status = ?, updated_ms = ?, decided_by = ?, decided_ms = ?,"
            " reason = COALESCE(?, reason) WHERE id = ? AND status = ?",
            (
                to_status,
                now,
                decided_by,
                None if decided_by is None else now,
                reason,
                row["id"],
                row["status"],
            ),
        ).rowcount
        if changed != 1:
            raise Conflict(
                f"contribution {row['id']} is no longer {row['status']}",
                code="invalid_transition",
            )
        return to_status

    def _community_row(
        self, db: sqlite3.Connection, worker: Any, contribution_id: str
    ) -> sqlite3.Row:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM contributions WHERE id = ?", (contribution_id,)
        ).fetchone()
        if row is None or row["community_id"] != worker.community_id:
            raise NotFound("no such contribution")
        return row

    def approve(self, worker: Any, contribution_id: str, reason: str) -> dict[str, Any]:
        """Approve a confirmed contribution and credit its provider once (insider rules apply)."""
        now = self._now()
        with self.store.write() as db:
            row = self._community_row(db, worker, contribution_id)
            try:
                next_status(row["status"], "approve")
            except InvalidTransition as exc:
                raise Conflict(str(exc), code=exc.code) from exc
            if worker.id in (
                row["provider_id"],
                row["beneficiary_id"],
                row["created_by"],
                row["beneficiary_confirmed_by"],
            ):
                raise Forbidden(
                    "you recorded, confirmed or benefit from this contribution: another social"
                    " worker approves it"
                )
            if row["beneficiary_id"] == row["provider_id"]:
                raise Invalid("the provider cannot be the beneficiary", field="beneficiary_id")
            credit: dict[str, Any] = {"status": "none"}
            if row["points"] > 0:
                credit = self.points.move_in(
                    db,
                    worker,
                    Movement(
                        key=f"contribution:{contribution_id}",
                        kind=LEDGER_KINDS[row["kind"]],
                        member=row["provider_id"],
                        amount=row["points"],
                        refs=(("contribution", contribution_id),),
                    ),
                    now,
                )
                if credit["status"] == "awaiting_second_approver":
                    # Parked until another social worker approves the same points.
                    return {
                        "id": contribution_id,
                        "status": "awaiting_second_approver",
                        "points": row["points"],
                        "credit": credit,
                    }
                if credit["status"] not in ("recorded", "approved"):
                    raise Conflict(f"the credit is {credit['status']}", code="credit_refused")
            status = self._move(db, row, "approve", now, decided_by=worker.id, reason=reason)
            self._notify(db, row, "approved", reason, now)
        return {"id": contribution_id, "status": status, "points": row["points"], "credit": credit}

    def reject(self, worker: Any, contribution_id: str, reason: str) -> dict[str, Any]:
        """Refuse a contribution (before or after both confirmed); nothing is credited."""
        now = self._now()
        with self.store.write() as db:
            row = self._community_row(db, worker, contribution_id)
            status = self._move(db, row, "reject", now, decided_by=worker.id, reason=reason)
            self._notify(db, row, "rejected", reason, now)
        return {"id": contribution_id, "status": status}

    def withdraw(self, person: Any, contribution_id: str, reason: str) -> dict[str, Any]:
        """The provider withdraws their contribution before a decision."""
        now = self._now()
        with self.store.write() as db:
            row = self._row(db, person, contribution_id)
            if row["provider_id"] != person.id:
                raise Forbidden("only its provider withdraws a contribution")
            status = self._move(db, row, "withdraw", now, reason=reason)
        return {"id": contribution_id, "status": status}

    def _notify(
        self, db: sqlite3.Connection, row: sqlite3.Row, decision: str, reason: str, now: int
    ) -> None:
        enqueue(
            db,
            person_id=row["provider_id"],
            kind="contribution_decision",
            key=f"contribution_decision:{row['id']}",
            now_ms=now,
            params={
                "contribution_id": row["id"],
                "decision": decision,
                "hours": row["hours"],
                "description": row["description"],
                "points": row["points"] if decision == "approved" else 0,
                "reason": reason,
            },
        )
