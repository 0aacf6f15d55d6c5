"""Valuations in the cloud: the policy texts, the weekly demand snapshots, the proposals the
terminals send, the social workers' queue and decisions, auto-approval, and what the rules learn.

- **Policies** are stored whole, by version (``valuation_policies``, immutable). The newest is
  current; a proposal names the version it was computed under, so it can be recomputed — and is,
  when it arrives: a proposal that does not come out the same under its stored policy is refused.
- **Demand** is snapshotted once a week per community (``demand_snapshots``, immutable): per
  category, ``sqrt((reserved in the last 28 days + 2) / (listed now + 2))`` — more wanted than
  offered raises it, a glut lowers it; the rules engine bounds it. A snapshot cannot be gamed day
  to day: it changes once a week.
- **Decisions** (``valuation_decisions``, immutable, one per item) are written in the same
  transaction as the approval or rejection they record, with the proposal's points beside them:
  the calibration data the per-category correction is learned from
  (:mod:`valuation_terminal.core.learning`).
- **Auto-approval** is off unless ``auto_approve_below`` is set: then a proposal at or below it,
  with confidence at least ``auto_approve_confidence``, inside the locker, is approved by the
  community's *auto-approval* account (a disabled staff person, so the ledger's insider rules and
  per-actor caps apply to it as to anyone), at most ``auto_approve_per_day`` per donor per day.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from cloud_api.accounts.service import Person, hash_secret
from cloud_api.errors import Conflict, Invalid, NotFound
from cloud_api.items.service import ItemService
from cloud_api.settings import CloudSettings
from cloud_api.store import StorePort
from cloud_api.transparency import COMMUNITY_TZ
from linli.clock import Clock
from valuation_terminal.core.learning import error_report, learned_correction
from valuation_terminal.core.rules import (
    Inputs,
    PolicyError,
    Proposal,
    load_policy,
    value,
)

DEFAULT_POLICY_TEXT = (
    resources.files("valuation_terminal").joinpath("policy/default.toml").read_text("utf-8")
)
DEMAND_WINDOW_MS = 28 * 86_400_000
DEMAND_SMOOTHING = 2
AUTO_APPROVER = "auto_"
"""Prefix of each community's auto-approval person id (``auto_<community>``)."""
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Decision:
    """A social worker's word on a proposal."""

    decision: str  # approve | adjust | reject
    points: int | None
    reason: str


def week_of(wall_ms: int) -> str:
    """The community's ISO week of a moment, e.g. ``2026-W47``."""
    day = datetime.fromtimestamp(wall_ms / 1000, COMMUNITY_TZ).isocalendar()
    return f"{day.year}-W{day.week:02d}"


def _policy_version(text: str) -> str:
    try:
        return load_policy(text).version
    except PolicyError as exc:
        raise Invalid(
            f"the policy is not valid: {exc}", field="text", code="policy_invalid"
        ) from exc


class ValuationService:
    """Policies, demand, proposals, the queue, decisions, learning and auto-approval."""

    def __init__(
        self, store: StorePort, clock: Clock, items: ItemService, settings: CloudSettings
    ) -> None:
        self.store = store
        self.clock = clock
        self.items = items
        self.settings = settings

    def _now(self) -> int:
        return self.clock.now().wall_ms

    # --- policies ------------------------------------------------------------------------------

    def ensure_default_policy(self) -> None:
        """Store the packaged default policy if no policy is stored yet (at start-up)."""
        version = _policy_version(DEFAULT_POLICY_TEXT)
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM valuation_policies LIMIT 1").fetchone() is None:
                self._insert_policy(db, version, DEFAULT_POLICY_TEXT, "linli", self._now())

    @staticmethod
    def _insert_policy(db: sqlite3.Connection, version: str, text: str, by: str, now: int) -> None:
        db.execute(
            "INSERT INTO valuation_policies (version, text, sha256, created_by, created_ms)"
            " VALUES (?,?,?,?,?)",
            (version, text, hashlib.sha256(text.encode()).hexdigest(), by, now),
        )

    def current_policy(self, db: sqlite3.Connection) -> tuple[str, str]:
        """The current (newest) policy's version and text."""
        row = db.execute(
            "SELECT version, text FROM valuation_policies ORDER BY created_ms DESC, rowid DESC"
            " LIMIT 1"
        ).fetchone()
        if row is None:
            raise NotFound("no valuation policy is stored")
        return str(row["version"]), str(row["text"])

    def policy_text(self, db: sqlite3.Connection, version: str) -> str | None:
        row = db.execute(
            "SELECT text FROM valuation_policies WHERE version = ?", (version,)
        ).fetchone()
        return None if row is None else str(row["text"])

    def add_policy(self, worker: Person, text: str) -> dict[str, Any]:
        """A social worker publishes a new policy version (the text is checked whole)."""
        version = _policy_version(text)
        with self.store.write() as db:
            if self.policy_text(db, version) is not None:
                raise Conflict(
                    f"policy version {version} exists; give the new text a new version",
                    code="policy_exists",
                    field="text",
                )
            self._insert_policy(db, version, text, worker.id, self._now())
        return {"version": version}

    def policies(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.store.read(
                "SELECT version, sha256, created_by, created_ms FROM valuation_policies"
                " ORDER BY created_ms DESC, rowid DESC"
            )
        ]

    # --- demand --------------------------------------------------------------------------------

    def snapshot(self, db: sqlite3.Connection, community_id: str, now: int) -> sqlite3.Row:
        """This week's demand snapshot of the community (made on first need)."""
        week = week_of(now)
        snapshot_id = f"{community_id}:{week}"
        row = db.execute("SELECT * FROM demand_snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is not None:
            return row
        _, text = self.current_policy(db)
        counts: dict[str, dict[str, int]] = {}
        factors: dict[str, float] = {}
        for category in sorted(load_policy(text).categories):
            listed = db.execute(
                "SELECT COUNT(*) FROM items WHERE community_id = ? AND category = ?"
                " AND status = 'listed'",
                (community_id, category),
            ).fetchone()[0]
            wanted = db.execute(
                "SELECT COUNT(*) FROM item_history h JOIN items i ON i.id = h.item_id"
                " WHERE i.community_id = ? AND i.category = ? AND h.to_status = 'reserved'"
                " AND h.at_ms > ?",
                (community_id, category, now - DEMAND_WINDOW_MS),
            ).fetchone()[0]
            counts[category] = {"listed": listed, "reserved_28d": wanted}
            factors[category] = round(
                math.sqrt((wanted + DEMAND_SMOOTHING) / (listed + DEMAND_SMOOTHING)), 3
            )
        db.execute(
            "INSERT INTO demand_snapshots (id, community_id, week, factors, counts, created_ms)"
            " VALUES (?,?,?,?,?,?)",
            (snapshot_id, community_id, week, json.dumps(factors), json.dumps(counts), now),
        )
        found = db.execute("SELECT * FROM demand_snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        assert found is not None
        return found

    def snapshot_weekly(self, now: int) -> int:
        """The scheduler's job: this week's snapshot for every community that lacks it (a quiet
        run writes nothing); return how many were made."""
        week = week_of(now)
        missing = self.store.read(
            "SELECT c.id FROM communities c WHERE NOT EXISTS (SELECT 1 FROM demand_snapshots s"
            " WHERE s.community_id = c.id AND s.week = ?)",
            (week,),
        )
        for row in missing:
            with self.store.write() as db:
                self.snapshot(db, row["id"], now)
        return len(missing)

    # --- learning ------------------------------------------------------------------------------

    def _pairs(self, db: sqlite3.Connection, community_id: str) -> dict[str, list[tuple[int, int]]]:
        pairs: dict[str, list[tuple[int, int]]] = {}
        for row in db.execute(
            "SELECT d.category, d.proposed, d.points FROM valuation_decisions d"
            " JOIN items i ON i.id = d.item_id WHERE i.community_id = ?"
            " AND d.decision IN ('approve', 'adjust') AND d.proposed IS NOT NULL"
            " ORDER BY d.decided_ms",
            (community_id,),
        ):
            pairs.setdefault(row["category"], []).append((row["proposed"], row["points"]))
        return pairs

    def corrections(self, db: sqlite3.Connection, community_id: str) -> dict[str, Any]:
        """The learned correction of every category with decisions (empty when switched off)."""
        if not self.settings.corrections_enabled:
            return {}
        return {
            category: learned_correction(pairs, bound=self.settings.correction_bound).to_json()
            for category, pairs in sorted(self._pairs(db, community_id).items())
        }

    def report(self, worker: Person) -> dict[str, Any]:
        """Proposal-vs-decision error per category and overall, with the corrections in use."""
        with self.store.snapshot() as db:
            pairs = self._pairs(db, worker.community_id)
            corrections = self.corrections(db, worker.community_id)
            counts = {
                r["decision"] + ("_auto" if r["automatic"] else ""): r["n"]
                for r in db.execute(
                    "SELECT d.decision, d.automatic, COUNT(*) AS n FROM valuation_decisions d"
                    " JOIN items i ON i.id = d.item_id WHERE i.community_id = ?"
                    " GROUP BY d.decision, d.automatic",
                    (worker.community_id,),
                )
            }
        return {
            "categories": [vars(r) for r in error_report(pairs)],
            "corrections": corrections,
            "corrections_enabled": self.settings.corrections_enabled,
            "decisions": counts,
        }

    # --- what a terminal needs -----------------------------------------------------------------

    def context(self, community_id: str) -> dict[str, Any]:
        """Policy text, this week's demand snapshot and the corrections, for a terminal."""
        now = self._now()
        with self.store.write() as db:
            version, text = self.current_policy(db)
            snap = self.snapshot(db, community_id, now)
            corrections = self.corrections(db, community_id)
        return {
            "policy_version": version,
            "policy_text": text,
            "demand": {"snapshot_id": snap["id"], "factors": json.loads(snap["factors"])},
            "corrections": corrections,
            "corrections_enabled": self.settings.corrections_enabled,
            "photos_min": self.settings.photos_min,
        }

    def checked_proposal(
        self, db: sqlite3.Connection, community_id: str, inputs: dict[str, Any], claimed: Any
    ) -> Proposal:
        """Recompute a terminal's proposal under its stored policy and demand snapshot; refuse
        it unless it comes out the same (422 with the reason)."""
        try:
            parsed = Inputs.from_json(inputs)
            proposal = Proposal.from_json(claimed)
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(
                f"the inputs or the proposal are malformed: {exc}",
                field="inputs",
                code="inputs_malformed",
            ) from exc
        text = self.policy_text(db, proposal.policy_version)
        if text is None:
            raise Invalid(
                f"policy {proposal.policy_version} is not known here",
                field="proposal",
                code="policy_unknown",
            )
        snap = db.execute(
            "SELECT factors FROM demand_snapshots WHERE id = ? AND community_id = ?",
            (parsed.demand.snapshot_id, community_id),
        ).fetchone()
        factor = None if snap is None else json.loads(snap["factors"]).get(parsed.category)
        if factor is not None and factor != parsed.demand.factor:
            raise Invalid(
                "the demand factor is not the snapshot's", field="inputs", code="demand_mismatch"
            )
        if snap is None:
            raise Invalid("unknown demand snapshot", field="inputs", code="demand_unknown")
        bound = self.settings.correction_bound
        if parsed.correction is not None and not (
            1 - bound <= parsed.correction.factor <= 1 + bound
        ):
            raise Invalid(
                "the correction is out of bounds", field="inputs", code="correction_bound"
            )
        recomputed = value(load_policy(text), parsed)
        if recomputed.to_json() != proposal.to_json():
            raise Invalid(
                "the proposal does not come out the same under its policy",
                field="proposal",
                code="proposal_mismatch",
            )
        return recomputed

    # --- the queue and decisions ---------------------------------------------------------------

    def queue(self, worker: Person, offset: int, limit: int) -> dict[str, Any]:
        """Items waiting for a decision (inside a locker), oldest first, with their valuation."""
        with self.store.snapshot() as db:
            total = db.execute(
                "SELECT COUNT(*) FROM items i"
                " WHERE i.community_id = ? AND i.status = 'pending_approval'",
                (worker.community_id,),
            ).fetchone()[0]
            rows = db.execute(
                _QUEUE_SELECT + " WHERE i.community_id = ? AND i.status = 'pending_approval'"
                " ORDER BY i.updated_ms, i.id LIMIT ? OFFSET ?",
                (worker.community_id, limit, offset),
            ).fetchall()
        return {
            "items": [_queue_entry(r) for r in rows],
            "total": int(total),
            "offset": offset,
            "limit": limit,
        }

    def valuation(self, worker: Person, item_id: str) -> dict[str, Any]:
        """One item's valuation and decision (staff of its community)."""
        with self.store.snapshot() as db:
            row = db.execute(
                _QUEUE_SELECT + " WHERE i.id = ? AND i.community_id = ? AND v.item_id IS NOT NULL",
                (item_id, worker.community_id),
            ).fetchone()
            if row is None:
                raise NotFound("no such valuation")
            decision = db.execute(
                "SELECT decision, points, proposed, decided_by, automatic, reason, decided_ms"
                " FROM valuation_decisions WHERE item_id = ?",
                (item_id,),
            ).fetchone()
        entry = _queue_entry(row)
        entry["status"] = row["status"]
        entry["decision"] = None if decision is None else dict(decision)
        return entry

    def decide(self, worker: Person, item_id: str, decision: Decision) -> dict[str, Any]:
        """Approve (the proposed points), adjust (other points) or reject, with a reason.

        The decision is recorded in the same transaction as the approval or rejection; a second
        decision on the same item finds it no longer pending (409 ``invalid_transition``), so
        two workers deciding at once credit the donor once.
        """
        if decision.decision == "reject":
            return self.items.reject(
                worker, item_id, decision.reason, also=self._recorder(worker, decision)
            )
        with self.store.snapshot() as db:
            if (
                db.execute(
                    "SELECT 1 FROM items WHERE id = ? AND community_id = ?",
                    (item_id, worker.community_id),
                ).fetchone()
                is None
            ):
                raise NotFound("no such item")
            row = db.execute(
                "SELECT points, abstained FROM valuations WHERE item_id = ?", (item_id,)
            ).fetchone()
        if decision.decision == "approve":
            if row is None or row["points"] is None:
                raise Invalid(
                    "there are no proposed points to approve: adjust with the points you decide",
                    field="points",
                    code="points_needed",
                )
            points = int(row["points"])
        else:
            if decision.points is None:
                raise Invalid("adjusting needs the points you decide", field="points")
            points = decision.points
        return self.items.approve(
            worker, item_id, points, decision.reason, also=self._recorder(worker, decision, points)
        )

    def _recorder(
        self, worker: Person, decision: Decision, points: int = 0, *, automatic: bool = False
    ) -> Callable[[sqlite3.Connection, sqlite3.Row, int], None]:
        def record(db: sqlite3.Connection, item: sqlite3.Row, now: int) -> None:
            proposed = db.execute(
                "SELECT points FROM valuations WHERE item_id = ?", (item["id"],)
            ).fetchone()
            db.execute(
                "INSERT INTO valuation_decisions (item_id, decision, points, proposed, category,"
                " decided_by, automatic, reason, decided_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    item["id"],
                    decision.decision,
                    points,
                    None if proposed is None else proposed["points"],
                    item["category"],
                    worker.id,
                    int(automatic),
                    decision.reason,
                    now,
                ),
            )

        return record

    # --- auto-approval -------------------------------------------------------------------------

    def auto_approve(self, now: int) -> int:
        """Approve what the settings allow (nothing when off); return how many."""
        threshold = self.settings.auto_approve_below
        if threshold <= 0:
            return 0
        candidates = self.store.read(
            "SELECT i.id, i.donor_id, i.community_id, v.points FROM items i"
            " JOIN valuations v ON v.item_id = i.id"
            " WHERE i.status = 'pending_approval' AND v.abstained IS NULL"
            " AND v.points IS NOT NULL AND v.points <= ? AND v.confidence >= ?"
            " ORDER BY i.updated_ms, i.id",
            (threshold, self.settings.auto_approve_confidence),
        )
        done = 0
        for row in candidates:
            day_start = now - now % DAY_MS
            (today,) = self.store.read_one(
                "SELECT COUNT(*) FROM valuation_decisions d JOIN items i ON i.id = d.item_id"
                " WHERE i.donor_id = ? AND d.automatic = 1 AND d.decided_ms >= ?",
                (row["donor_id"], day_start),
            ) or (0,)
            if today >= self.settings.auto_approve_per_day:
                continue
            approver = self._auto_approver(row["community_id"], now)
            reason = f"automatic: {row['points']} ≤ {threshold} points"
            try:
                self.items.approve(
                    approver,
                    row["id"],
                    int(row["points"]),
                    reason,
                    also=self._recorder(
                        approver,
                        Decision("approve", row["points"], reason),
                        int(row["points"]),
                        automatic=True,
                    ),
                )
            except Conflict:
                continue  # decided meanwhile, or above the ledger's caps: a worker decides
            done += 1
        return done

    def _auto_approver(self, community_id: str, now: int) -> Person:
        person_id = f"{AUTO_APPROVER}{community_id}"[:64]
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM people WHERE id = ?", (person_id,)).fetchone():
                return _auto_person(person_id, community_id)
            db.execute(
                "INSERT INTO people (id, community_id, role, display_name, login, secret_hash,"
                " status, created_ms) VALUES (?,?, 'social_worker', ?, ?, ?, 'disabled', ?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    person_id,
                    community_id,
                    "自动批准 auto-approval",
                    f"auto-approval:{community_id}",
                    hash_secret(secrets.token_hex(16)),
                    now,
                ),
            )
        return _auto_person(person_id, community_id)


def _auto_person(person_id: str, community_id: str) -> Person:
    return Person(
        id=person_id,
        community_id=community_id,
        role="social_worker",
        display_name="auto-approval",
        language="zh-CN",
    )


_QUEUE_SELECT = (
    "SELECT i.id, i.title, i.category, i.size, i.kind, i.donor_id, i.device_id,"
    " i.compartment, i.updated_ms, i.status, p.display_name AS donor,"
    " v.points AS proposed, v.confidence, v.abstained, v.inputs, v.proposal,"
    " v.photos, v.weight_mg, v.policy_version, v.terminal_id, v.created_ms"
    " FROM items i JOIN people p ON p.id = i.donor_id"
    " LEFT JOIN valuations v ON v.item_id = i.id"
)


def _queue_entry(row: sqlite3.Row) -> dict[str, Any]:
    has_valuation = row["proposal"] is not None
    photos = json.loads(row["photos"]) if has_valuation else []
    return {
        "item_id": row["id"],
        "title": row["title"],
        "category": row["category"],
        "size": row["size"],
        "kind": row["kind"],
        "donor_id": row["donor_id"],
        "donor": row["donor"],
        "device_id": row["device_id"],
        "compartment": row["compartment"],
        "since_ms": row["updated_ms"],
        "valuation": None
        if not has_valuation
        else {
            "proposed": row["proposed"],
            "confidence": row["confidence"],
            "abstained": row["abstained"],
            "inputs": json.loads(row["inputs"]),
            "proposal": json.loads(row["proposal"]),
            "photos": [{"hash": h, "url": f"/api/v1/photos/{h}"} for h in photos],
            "weight_g": None if row["weight_mg"] is None else row["weight_mg"] / 1000,
            "policy_version": row["policy_version"],
            "terminal_id": row["terminal_id"],
            "proposed_ms": row["created_ms"],
        },
    }
