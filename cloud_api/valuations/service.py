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
- **Switches per community**: auto-approval's threshold, daily cap and minimum confidence, and
  the learned correction on or off, are the deployment's settings unless a social worker changed
  them for the community (``setting_changes``, immutable: who, when, the new value and why; the
  latest row wins). :func:`effective_settings` is the one place they are read.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from importlib import resources
from typing import Any

from cloud_api.accounts.service import Person, hash_secret
from cloud_api.errors import Conflict, Forbidden, Invalid, NotFound
from cloud_api.items.service import ItemService
from cloud_api.settings import CloudSettings
from cloud_api.store import StorePort
from cloud_api.transparency import COMMUNITY_TZ
from linli.clock import Clock
from linli.ids import new_id
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


@dataclass(frozen=True)
class Switches:
    """The valuation switches in force for one community.

    Attributes:
        auto_approve_below: proposals at or below this many points are approved by themselves
            (0: auto-approval off).
        auto_approve_per_day: at most this many automatic approvals per donor and day.
        auto_approve_confidence: the terminal's confidence an automatic approval needs (0..1).
        corrections_enabled: whether the learned per-category correction is applied.
    """

    auto_approve_below: int
    auto_approve_per_day: int
    auto_approve_confidence: float
    corrections_enabled: bool


SWITCH_RANGES: Mapping[str, tuple[type, float, float]] = {
    "auto_approve_below": (int, 0, 500),
    "auto_approve_per_day": (int, 0, 20),
    "auto_approve_confidence": (float, 0.0, 1.0),
    "corrections_enabled": (bool, 0, 1),
}
"""Each switch a social worker may change: its type and the range a change must fall in."""

SwitchValue = int | float | bool


def check_switch(name: str, value: object) -> SwitchValue:
    """``value`` as the switch ``name`` takes it, or :class:`Invalid` (unknown switch, wrong
    type, out of range, not finite)."""
    if name not in SWITCH_RANGES:
        raise Invalid(f"no switch {name!r}", field=name)
    kind, low, high = SWITCH_RANGES[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise Invalid(f"{name} is on or off", field=name)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{name} must be a number", field=name)
    if kind is int and not (isinstance(value, int) or float(value).is_integer()):
        raise Invalid(f"{name} must be a whole number", field=name)
    number = int(value) if kind is int else float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise Invalid(f"{name} must be between {low:g} and {high:g}", field=name)
    return number


def _same(current: object, value: object) -> bool:
    """The same switch value (``True`` is not ``1`` here; ``120`` is ``120.0``)."""
    return isinstance(current, bool) == isinstance(value, bool) and current == value


def deployment_switches(settings: CloudSettings) -> Switches:
    """The switches as the deployment set them (``LINLI_*``), before any change in a community."""
    return Switches(**{f.name: getattr(settings, f.name) for f in fields(Switches)})


def effective_settings(
    db: sqlite3.Connection, community_id: str, settings: CloudSettings
) -> Switches:
    """The switches in force for a community: for each, the latest ``setting_changes`` row of
    the community, else the deployment's setting (a stored value that no longer checks out is
    ignored: the deployment's stands)."""
    values: dict[str, SwitchValue] = vars(deployment_switches(settings)).copy()
    marks = ",".join("?" for _ in SWITCH_RANGES)
    for row in db.execute(
        "SELECT name, value FROM setting_changes WHERE community_id = ?"  # noqa: S608
        f" AND name IN ({marks}) ORDER BY changed_ms, rowid",
        (community_id, *SWITCH_RANGES),
    ):
        try:
            values[row["name"]] = check_switch(row["name"], json.loads(row["value"]))
        except (Invalid, ValueError):
            continue
    return Switches(
        auto_approve_below=int(values["auto_approve_below"]),
        auto_approve_per_day=int(values["auto_approve_per_day"]),
        auto_approve_confidence=float(values["auto_approve_confidence"]),
        corrections_enabled=bool(values["corrections_enabled"]),
    )


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

    # --- switches ------------------------------------------------------------------------------

    def effective_settings(self, db: sqlite3.Connection, community_id: str) -> Switches:
        """The switches in force for a community (:func:`effective_settings`)."""
        return effective_settings(db, community_id, self.settings)

    def change_settings(
        self, worker: Person, changes: Mapping[str, object], reason: str
    ) -> list[str]:
        """A social worker changes switches of their community, with a reason; each switch whose
        value differs is recorded (who, when, the new value, why). Returns the names changed.

        Raises:
            Forbidden: not a social worker.
            Invalid: an unknown switch, a value out of range, no reason, or nothing to change;
                nothing is recorded then.
        """
        if worker.role != "social_worker":
            raise Forbidden("only a social worker changes the valuation switches")
        why = reason.strip()
        if not 1 <= len(why) <= 200:
            raise Invalid("a reason of 1 to 200 characters is needed", field="reason")
        unknown = sorted(set(changes) - set(SWITCH_RANGES))
        if unknown:
            raise Invalid(f"no switch {unknown[0]!r}", field=unknown[0])
        now = self._now()
        with self.store.write() as db:
            current = vars(self.effective_settings(db, worker.community_id))
            # A value left as it is passes even if the deployment set it beyond a worker's range.
            checked = {
                name: check_switch(name, value)
                for name, value in changes.items()
                if not _same(current[name], value)
            }
            changed = sorted(checked)
            if not changed:
                raise Invalid("these are the values in force already", code="unchanged")
            for name in changed:
                db.execute(
                    "INSERT INTO setting_changes (id, community_id, name, old_value, value,"
                    " reason, changed_by, changed_ms) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        new_id("set"),
                        worker.community_id,
                        name,
                        json.dumps(current[name]),
                        json.dumps(checked[name]),
                        why,
                        worker.id,
                        now,
                    ),
                )
        return changed

    def setting_history(self, worker: Person) -> list[dict[str, Any]]:
        """Every change of the community's switches, newest first: who, when, old → new, why
        (``old`` is the value in force when the change was made, recorded with it)."""
        marks = ",".join("?" for _ in SWITCH_RANGES)
        rows = self.store.read(
            "SELECT s.id, s.name, s.old_value, s.value, s.reason, s.changed_by, s.changed_ms,"  # noqa: S608
            " p.display_name AS changed_by_name FROM setting_changes s"
            " JOIN people p ON p.id = s.changed_by"
            f" WHERE s.community_id = ? AND s.name IN ({marks}) ORDER BY s.changed_ms, s.rowid",
            (worker.community_id, *SWITCH_RANGES),
        )
        history = []
        for row in rows:
            history.append(
                {
                    "name": row["name"],
                    "old": json.loads(row["old_value"]),
                    "new": json.loads(row["value"]),
                    "reason": row["reason"],
                    "changed_by": row["changed_by"],
                    "changed_by_name": row["changed_by_name"],
                    "changed_ms": row["changed_ms"],
                }
            )
        return history[::-1]

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
        if not self.effective_settings(db, community_id).corrections_enabled:
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
            enabled = self.effective_settings(db, worker.community_id).corrections_enabled
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
            "corrections_enabled": enabled,
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
            enabled = self.effective_settings(db, community_id).corrections_enabled
        return {
            "policy_version": version,
            "policy_text": text,
            "demand": {"snapshot_id": snap["id"], "factors": json.loads(snap["factors"])},
            "corrections": corrections,
            "corrections_enabled": enabled,
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
        """Approve what each community's switches allow (nothing where off); return how many."""
        done = 0
        for community in self.store.read("SELECT id FROM communities ORDER BY id"):
            with self.store.snapshot() as db:
                switches = self.effective_settings(db, community["id"])
            if switches.auto_approve_below > 0:
                done += self._auto_approve_in(community["id"], switches, now)
        return done

    def _auto_approve_in(self, community_id: str, switches: Switches, now: int) -> int:
        threshold = switches.auto_approve_below
        candidates = self.store.read(
            "SELECT i.id, i.donor_id, i.community_id, v.points FROM items i"
            " JOIN valuations v ON v.item_id = i.id"
            " WHERE i.community_id = ? AND i.status = 'pending_approval'"
            " AND v.abstained IS NULL AND v.points IS NOT NULL AND v.points <= ?"
            " AND v.confidence >= ? ORDER BY i.updated_ms, i.id",
            (community_id, threshold, switches.auto_approve_confidence),
        )
        done = 0
        for row in candidates:
            day_start = now - now % DAY_MS
            (today,) = self.store.read_one(
                "SELECT COUNT(*) FROM valuation_decisions d JOIN items i ON i.id = d.item_id"
                " WHERE i.donor_id = ? AND d.automatic = 1 AND d.decided_ms >= ?",
                (row["donor_id"], day_start),
            ) or (0,)
            if today >= switches.auto_approve_per_day:
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
