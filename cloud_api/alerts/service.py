"""Alerts: opened and cleared by what devices say, acknowledged, escalated and resolved by people.

What a device message means is decided by the pure rules of :mod:`cloud_api.core.alerts`; this
service applies it to the store (docs/decisions/0022-alerts.md):

- **Device messages** reach :meth:`AlertService.on_device` (a ``DeviceService`` listener, on the
  bridge's worker thread, after the message is stored). Events arrive again after reconnects and
  replays: an alarm opens nothing if an alert of its cause already recorded that very event
  (``detail.event`` = ``boot:seq``), and an alarm or a clear of the same boot older than the
  last event applied to an alert (``detail.last_event``) changes nothing. Telemetry, every few seconds, touches the store only when a condition changes
  (the last condition applied per cause is kept in memory; after a restart a read says what
  holds).
- **One live alert per cause** (the unique index ``alerts_one_live_per_cause``). A condition
  that clears sets ``cleared_ms`` (action ``cleared``), and comes back as ``recurred`` while
  the alert is live; the alert stays until a person resolves it. An alert resolved while its
  condition still held opens again only after the condition has cleared once (a person decided;
  the same figures in the next heartbeat must not page again). Rules that never clear
  (``occupancy_unexplained``, ``impossible_transition``) open once per alarm.
- **Offline** comes from a scheduled job: a device ``offline`` or ``lost`` for longer than the
  grace (5 min) — a restart pages nobody.
- **Who is told**: opening queues a notification (kind ``alert``, key ``alert:<id>:<level>``) in
  the same transaction, for the person on call at rank = escalation level
  (:func:`~cloud_api.core.alerts.choose_recipient`); red is urgent (quiet hours do not hold it).
  The message names the alert, never a code or a phone.
- **Escalation** by a person (with a note) or by the ``alerts_escalate`` job: a red alert not
  acknowledged in 30 min, or any alert not acknowledged by its due time, goes up one level per
  threshold (an action by nobody, ``by_person`` NULL).

Every action is a row of the immutable ``alert_actions``. Staff phones live in
``staff_contacts``; they are never logged and never shown in full.

Example:
    >>> alerts = AlertService(store, clock)
    >>> devices.listen(alerts.on_device)
    >>> alerts.acknowledge(maintainer, alert_id)["status"]
    'acknowledged'
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from datetime import date
from typing import Any

from cloud_api.accounts.service import Person, mask_phone, normalize_phone
from cloud_api.core.alerts import (
    HOLIDAYS,
    OFFLINE_GRACE_MS,
    RULES,
    AlertStateError,
    Cleared,
    Opened,
    Signal,
    auto_level,
    cause_key,
    choose_recipient,
    clock_of,
    due_at,
    event_signals,
    is_more_severe,
    is_offline_due,
    is_older_event,
    local_day_bounds,
    next_status,
    telemetry_signals,
    tracking_code,
)
from cloud_api.errors import Conflict, Invalid, NotFound
from cloud_api.notify.outbox import enqueue
from cloud_api.scheduler import Job
from cloud_api.store import StorePort
from linli.clock import Clock
from linli.contract import ConfigBody, Event, Status, Telemetry
from linli.ids import new_id

log = logging.getLogger(__name__)

DEFAULT_STALE_AFTER_S: int = ConfigBody.model_fields["stale_after_s"].default
"""The cloud's bound on a grant list's age (``ConfigBody.stale_after_s``) when a device's stored
configuration does not say."""
STAFF_ROLES = ("maintainer", "social_worker")
_UNSET = object()


class AlertService:
    """Alerts of every community, the on-call roster and staff contacts.

    Args:
        store: the cloud's store.
        clock: the cloud's clock (opening, actions, clocks shown).
        offline_grace_ms: how long a device may be offline or lost before it is an alert.
        holidays: local dates that are not working days (the yellow clock).
    """

    def __init__(
        self,
        store: StorePort,
        clock: Clock,
        *,
        offline_grace_ms: int = OFFLINE_GRACE_MS,
        holidays: Sequence[date] = HOLIDAYS,
    ) -> None:
        self._store = store
        self._clock = clock
        self.offline_grace_ms = offline_grace_ms
        self._holidays = tuple(holidays)
        self._applied: dict[str, str | None] = {}
        """cause → the condition last applied from telemetry (a severity, or None: clear)."""
        self._told_nobody: set[str] = set()

    def _now(self) -> int:
        return self._clock.now().wall_ms

    # --- device messages ---------------------------------------------------------------------

    def on_device(self, device_id: str, what: str, message: object) -> None:
        """The device listener (``DeviceService.listen``): alarms, telemetry, coming back."""
        if what == "evt" and isinstance(message, Event):
            signals = event_signals(message.type, message.reason, message.compartment, message.data)
            if signals:
                detail = {
                    "event": f"{message.boot_id}:{message.seq}",
                    "reason": message.reason,
                    "wall_ms": message.wall_ms,
                    "data": dict(message.data),
                }
                self.apply(device_id, signals, event=(message.boot_id, message.seq), detail=detail)
        elif what == "tele" and isinstance(message, Telemetry):
            self._on_telemetry(device_id, message)
        elif (what == "status" and isinstance(message, Status) and message.state == "online") or (
            what == "heard_again"
        ):
            self.apply(device_id, (Cleared("offline"),))

    def _on_telemetry(self, device_id: str, tele: Telemetry) -> None:
        signals = telemetry_signals(
            throttled=tele.throttled,
            disk_free_pct=tele.disk_free_pct,
            grant_list_age_s=tele.grant_list_age_s,
            stale_after_s=self._stale_after_s(device_id)
            if tele.grant_list_age_s is not None
            else DEFAULT_STALE_AFTER_S,
        )
        changed = []
        for signal in signals:
            cause = cause_key(signal.rule, device_id, signal.compartment)
            held = signal.severity if isinstance(signal, Opened) else None
            if self._applied.get(cause, _UNSET) != held:
                changed.append((cause, held, signal))
        if not changed:
            return
        self.apply(device_id, [signal for _, _, signal in changed])
        for cause, held, _ in changed:
            self._applied[cause] = held

    def _stale_after_s(self, device_id: str) -> int:
        """The bound in the device's current configuration (read in SQL: the body also holds
        the whole grant list, too much to parse in Python on every heartbeat)."""
        row = self._store.read_one(
            "SELECT CASE WHEN json_valid(cfg_body)"
            " THEN json_extract(cfg_body, '$.stale_after_s') END AS bound"
            " FROM devices WHERE id = ?",
            (device_id,),
        )
        bound = None if row is None else row["bound"]
        return bound if isinstance(bound, int) else DEFAULT_STALE_AFTER_S

    def apply(
        self,
        device_id: str,
        signals: Sequence[Signal],
        *,
        event: tuple[str, int] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Open and clear alerts of a device as ``signals`` say; return how many changed.

        Reads first: a signal that changes nothing (a clear with nothing to clear, a condition
        already alerted) takes no write transaction.
        """
        if not any(self._may_change(device_id, s, event) for s in signals):
            return 0
        now = self._now()
        changed = 0
        with self._store.write() as db:
            device = db.execute(
                "SELECT id, community_id FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            if device is None:
                return 0
            for signal in signals:
                if isinstance(signal, Opened):
                    changed += self._open(db, device, signal, now, event, detail or {})
                else:
                    changed += self._clear(db, device_id, signal, now, event)
        return changed

    def _may_change(self, device_id: str, signal: Signal, event: tuple[str, int] | None) -> bool:
        cause = cause_key(signal.rule, device_id, signal.compartment)
        if isinstance(signal, Cleared):
            return (
                self._store.read_one(
                    "SELECT 1 FROM alerts WHERE cause_key = ? AND cleared_ms IS NULL LIMIT 1",
                    (cause,),
                )
                is not None
            )
        if event is not None:
            return True  # an alarm (rare): decided in the transaction, by the event's key
        held = self._store.read_one(
            "SELECT severity, status FROM alerts WHERE cause_key = ? AND cleared_ms IS NULL"
            " ORDER BY status = 'resolved', opened_ms DESC LIMIT 1",
            (cause,),
        )
        if held is None:
            return True
        return held["status"] != "resolved" and is_more_severe(signal.severity, held["severity"])

    def _open(
        self,
        db: sqlite3.Connection,
        device: sqlite3.Row,
        signal: Opened,
        now: int,
        event: tuple[str, int] | None,
        detail: dict[str, Any],
    ) -> int:
        cause = cause_key(signal.rule, device["id"], signal.compartment)
        if (
            event is not None
            and db.execute(
                "SELECT 1 FROM alerts WHERE cause_key = ? AND json_extract(detail, '$.event') = ?",
                (cause, f"{event[0]}:{event[1]}"),
            ).fetchone()
        ):
            return 0  # this very alarm, sent again
        detail = detail | ({"figure": signal.figure} if signal.figure is not None else {})
        live = db.execute(
            "SELECT * FROM alerts WHERE cause_key = ? AND status != 'resolved'", (cause,)
        ).fetchone()
        if live is not None:
            return self._again(db, live, signal, now, event, detail)
        if (
            RULES[signal.rule].clears is not None
            and db.execute(
                "SELECT 1 FROM alerts WHERE cause_key = ? AND cleared_ms IS NULL LIMIT 1", (cause,)
            ).fetchone()
        ):
            return 0  # resolved by a person while the condition held: it must clear first
        code = tracking_code(signal.severity, now, self._sequence(db, now))
        alert_id = new_id("alr")
        db.execute(
            "INSERT INTO alerts (id, community_id, tracking_code, rule, severity, cause_key,"
            " device_id, compartment, status, escalation_level, detail, opened_ms, due_ms)"
            " VALUES (?,?,?,?,?,?,?,?, 'open', 0, ?,?,?)",
            (
                alert_id,
                device["community_id"],
                code,
                signal.rule,
                signal.severity,
                cause,
                device["id"],
                signal.compartment,
                json.dumps(detail, ensure_ascii=False, sort_keys=True),
                now,
                due_at(signal.severity, now, holidays=self._holidays),
            ),
        )
        _action(db, alert_id, "opened", None, None, now)
        self._tell(db, alert_id, 0, now)
        log.warning(
            "alert %s opened: %s %s on %s %s",
            code,
            signal.severity,
            signal.rule,
            device["id"],
            signal.compartment or "(bank)",
        )
        return 1

    def _again(
        self,
        db: sqlite3.Connection,
        live: sqlite3.Row,
        signal: Opened,
        now: int,
        event: tuple[str, int] | None,
        detail: dict[str, Any],
    ) -> int:
        """The condition of a live alert holds (again): ``recurred`` if it had cleared, and a
        higher severity (disk space going from low to nearly none) raises the alert. An alarm
        replayed from before the last event applied to the alert changes nothing."""
        if event is not None and is_older_event(event, _last_event(live["detail"])):
            return 0
        changed = 0
        if live["cleared_ms"] is not None:
            merged = json.loads(live["detail"]) | {"recurred": detail} | _marked(event)
            db.execute(
                "UPDATE alerts SET cleared_ms = NULL, detail = ? WHERE id = ?",
                (json.dumps(merged, ensure_ascii=False, sort_keys=True), live["id"]),
            )
            _action(db, live["id"], "recurred", None, None, now)
            changed = 1
        if is_more_severe(signal.severity, live["severity"]):
            due = min(live["due_ms"], due_at(signal.severity, now, holidays=self._holidays))
            db.execute(
                "UPDATE alerts SET severity = ?, due_ms = ? WHERE id = ?",
                (signal.severity, due, live["id"]),
            )
            _action(db, live["id"], "raised", None, None, now)
            self._tell(
                db,
                live["id"],
                live["escalation_level"],
                now,
                key=f"alert:{live['id']}:{live['escalation_level']}:{signal.severity}",
            )
            log.warning("alert %s raised to %s", live["tracking_code"], signal.severity)
            changed = 1
        return changed

    def _clear(
        self,
        db: sqlite3.Connection,
        device_id: str,
        signal: Cleared,
        now: int,
        event: tuple[str, int] | None,
    ) -> int:
        cause = cause_key(signal.rule, device_id, signal.compartment)
        changed = 0
        for row in db.execute(
            "SELECT id, tracking_code, detail FROM alerts WHERE cause_key = ?"
            " AND cleared_ms IS NULL",
            (cause,),
        ).fetchall():
            if event is not None and is_older_event(event, _last_event(row["detail"])):
                continue  # a replayed clear, older than the last alarm of this alert
            merged = json.loads(row["detail"]) | _marked(event)
            db.execute(
                "UPDATE alerts SET cleared_ms = ?, detail = ? WHERE id = ?",
                (now, json.dumps(merged, ensure_ascii=False, sort_keys=True), row["id"]),
            )
            _action(db, row["id"], "cleared", None, None, now)
            log.info("alert %s: condition cleared", row["tracking_code"])
            changed += 1
        return changed

    @staticmethod
    def _sequence(db: sqlite3.Connection, now: int) -> int:
        """The next number of the local day: one more than the alerts opened today, skipping
        any number a past year's same day already took (the column is unique)."""
        start, end = local_day_bounds(now)
        sequence = 1 + int(
            db.execute(
                "SELECT COUNT(*) FROM alerts WHERE opened_ms >= ? AND opened_ms < ?",
                (start, end),
            ).fetchone()[0]
        )
        month_day = tracking_code("red", now, 1)[2:6]
        while db.execute(
            "SELECT 1 FROM alerts WHERE tracking_code LIKE ?", (f"_-{month_day}-{sequence:03d}",)
        ).fetchone():
            sequence += 1
        return sequence

    def _tell(
        self, db: sqlite3.Connection, alert_id: str, level: int, now: int, key: str | None = None
    ) -> str | None:
        """Queue the alert's message for the person on call at rank ``level`` (in the caller's
        transaction) and record them as ``assigned_to``; return who, or None."""
        alert = db.execute(
            "SELECT id, community_id, severity, tracking_code FROM alerts WHERE id = ?",
            (alert_id,),
        ).fetchone()
        roster = [
            (int(r["rank"]), str(r["person_id"]))
            for r in db.execute(
                "SELECT o.rank, o.person_id FROM on_call o JOIN people p ON p.id = o.person_id"
                " WHERE o.community_id = ? AND o.starts_ms <= ? AND (o.ends_ms IS NULL"
                " OR o.ends_ms > ?) AND p.status = 'active' AND p.role IN (?, ?)"
                " ORDER BY o.rank, o.starts_ms DESC, o.id",
                (alert["community_id"], now, now, *STAFF_ROLES),
            )
        ]
        maintainers = [
            str(r["id"])
            for r in db.execute(
                "SELECT id FROM people WHERE community_id = ? AND role = 'maintainer'"
                " AND status = 'active' ORDER BY created_ms, id",
                (alert["community_id"],),
            )
        ]
        person = choose_recipient(roster, level, maintainers)
        if person is None:
            if alert["community_id"] not in self._told_nobody:
                self._told_nobody.add(alert["community_id"])
                log.warning(
                    "alert %s: community %s has nobody on call and no maintainer to tell",
                    alert["tracking_code"],
                    alert["community_id"],
                )
            return None
        enqueue(
            db,
            person_id=person,
            kind="alert",
            key=key or f"alert:{alert_id}:{level}",
            params={"alert_id": alert_id, "level": level},
            now_ms=now,
            is_urgent=alert["severity"] == "red",
        )
        db.execute("UPDATE alerts SET assigned_to = ? WHERE id = ?", (person, alert_id))
        return person

    # --- scheduled jobs ----------------------------------------------------------------------

    def jobs(self, period_s: float) -> list[Job]:
        """The alert jobs: devices offline past the grace, escalation of unanswered alerts."""
        return [
            Job("alerts_offline", max(period_s, 15.0), self.check_offline),
            Job("alerts_escalate", max(period_s, 30.0), self.escalate_due),
        ]

    def check_offline(self, now_ms: int) -> int:
        """Open ``offline`` for devices offline or lost past the grace; clear it for devices
        online again (a listener missed across a restart). Return how many changed."""
        changed = 0
        for row in self._store.read(
            "SELECT id, status, status_ms FROM devices WHERE status IN ('offline', 'lost')"
        ):
            if is_offline_due(row["status"], row["status_ms"], now_ms, self.offline_grace_ms):
                detail = {"status": row["status"], "since_ms": row["status_ms"]}
                changed += self.apply(row["id"], (Opened("offline", "yellow"),), detail=detail)
        for row in self._store.read(
            "SELECT DISTINCT a.device_id FROM alerts a JOIN devices d ON d.id = a.device_id"
            " WHERE a.rule = 'offline' AND a.cleared_ms IS NULL AND d.status = 'online'"
        ):
            changed += self.apply(row["device_id"], (Cleared("offline"),))
        return changed

    def escalate_due(self, now_ms: int) -> int:
        """Escalate alerts nobody acknowledged: red after 30 min, any past its due time; one
        level per threshold, each an action by nobody. Return how many alerts went up."""
        changed = 0
        for row in self._store.read(
            "SELECT id, severity, opened_ms, due_ms, escalation_level FROM alerts"
            " WHERE status = 'open'"
        ):
            target = auto_level(
                row["severity"], opened_ms=row["opened_ms"], due_ms=row["due_ms"], now_ms=now_ms
            )
            if target <= row["escalation_level"]:
                continue
            with self._store.write() as db:
                current = db.execute(
                    "SELECT status, escalation_level, tracking_code FROM alerts WHERE id = ?",
                    (row["id"],),
                ).fetchone()
                if current["status"] != "open" or current["escalation_level"] >= target:
                    continue
                for level in range(current["escalation_level"] + 1, target + 1):
                    db.execute(
                        "UPDATE alerts SET escalation_level = ? WHERE id = ?", (level, row["id"])
                    )
                    _action(db, row["id"], "escalated", None, None, now_ms)
                    self._tell(db, row["id"], level, now_ms)
            log.warning(
                "alert %s escalated to level %d: not acknowledged", current["tracking_code"], target
            )
            changed += 1
        return changed

    # --- people's actions --------------------------------------------------------------------

    def list_alerts(
        self,
        person: Person,
        *,
        status: str | None = None,
        severity: str | None = None,
        live: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Alerts of the caller's community, newest first (``live``: open or acknowledged)."""
        rows = self._store.read(
            f"{_SELECT} WHERE a.community_id = ? AND (? IS NULL OR a.status = ?)"
            " AND (? IS NULL OR a.severity = ?) AND (? = 0 OR a.status != 'resolved')"
            " ORDER BY a.opened_ms DESC, a.id LIMIT ? OFFSET ?",
            (
                person.community_id,
                status,
                status,
                severity,
                severity,
                int(live),
                limit,
                offset,
            ),
        )
        now = self._now()
        return [alert_json(row, now) for row in rows]

    def get(self, person: Person, alert_id: str) -> dict[str, Any]:
        """One alert of the caller's community with its actions, oldest first."""
        with self._store.snapshot() as db:
            row = _visible(db, person, alert_id)
            actions = db.execute(
                "SELECT x.*, p.display_name AS by_name FROM alert_actions x"
                " LEFT JOIN people p ON p.id = x.by_person WHERE x.alert_id = ?"
                " ORDER BY x.at_ms, x.rowid",
                (alert_id,),
            ).fetchall()
        return alert_json(row, self._now(), actions)

    def acknowledge(self, person: Person, alert_id: str) -> dict[str, Any]:
        """Acknowledge an open alert: its clock stops (409 ``already_acknowledged`` /
        ``already_resolved``)."""
        now = self._now()
        with self._store.write() as db:
            row = _visible(db, person, alert_id)
            _transition(row["status"], "acknowledge")
            db.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_ms = ?,"
                " acknowledged_by = ? WHERE id = ?",
                (now, person.id, alert_id),
            )
            _action(db, alert_id, "acknowledged", person.id, None, now)
        log.info("alert %s acknowledged by %s", row["tracking_code"], person.id)
        return self.get(person, alert_id)

    def escalate(self, person: Person, alert_id: str, note: str) -> dict[str, Any]:
        """Hand an alert that is not resolved to the next person on call, with a note."""
        note = _note(note)
        now = self._now()
        with self._store.write() as db:
            row = _visible(db, person, alert_id)
            _transition(row["status"], "escalate")
            level = row["escalation_level"] + 1
            db.execute("UPDATE alerts SET escalation_level = ? WHERE id = ?", (level, alert_id))
            _action(db, alert_id, "escalated", person.id, note, now)
            self._tell(db, alert_id, level, now)
        log.info("alert %s escalated to level %d by %s", row["tracking_code"], level, person.id)
        return self.get(person, alert_id)

    def resolve(self, person: Person, alert_id: str, note: str) -> dict[str, Any]:
        """Close an alert with a note saying what was done (its clock stops, if running)."""
        note = _note(note)
        now = self._now()
        with self._store.write() as db:
            row = _visible(db, person, alert_id)
            _transition(row["status"], "resolve")
            db.execute(
                "UPDATE alerts SET status = 'resolved', resolved_ms = ?, resolved_by = ?,"
                " resolution = ? WHERE id = ?",
                (now, person.id, note, alert_id),
            )
            _action(db, alert_id, "resolved", person.id, note, now)
        log.info("alert %s resolved by %s", row["tracking_code"], person.id)
        return self.get(person, alert_id)

    # --- the on-call roster and staff contacts -----------------------------------------------

    def on_call(self, person: Person) -> list[dict[str, Any]]:
        """The community's roster: who is on call now or later, by rank."""
        rows = self._store.read(
            "SELECT o.*, p.display_name, p.role, s.person_id IS NOT NULL AS has_contact"
            " FROM on_call o JOIN people p ON p.id = o.person_id"
            " LEFT JOIN staff_contacts s ON s.person_id = o.person_id"
            " WHERE o.community_id = ? AND (o.ends_ms IS NULL OR o.ends_ms > ?)"
            " ORDER BY o.rank, o.starts_ms, o.id",
            (person.community_id, self._now()),
        )
        return [_on_call_json(row) for row in rows]

    def add_on_call(
        self,
        person: Person,
        *,
        person_id: str,
        rank: int,
        starts_ms: int | None = None,
        ends_ms: int | None = None,
    ) -> dict[str, Any]:
        """Put a member of staff of the community on call at ``rank`` (0 first, 1 backup…).

        Raises:
            NotFound: no such person in the caller's community.
            Invalid: the person is not staff (``not_staff``), or the shift ends before it starts.
            Conflict: ``rank_taken``: someone holds that rank in an overlapping shift.
        """
        now = self._now()
        starts = now if starts_ms is None else starts_ms
        if ends_ms is not None and ends_ms <= max(starts, now):
            raise Invalid("a shift must end after it starts, and in the future", field="ends_ms")
        with self._store.write() as db:
            target = db.execute(
                "SELECT role, status FROM people WHERE id = ? AND community_id = ?",
                (person_id, person.community_id),
            ).fetchone()
            if target is None:
                raise NotFound("no such person", field="person_id")
            if target["role"] not in STAFF_ROLES or target["status"] != "active":
                raise Invalid(
                    "only active maintainers and social workers can be on call",
                    field="person_id",
                    code="not_staff",
                )
            overlapping = db.execute(
                "SELECT 1 FROM on_call WHERE community_id = ? AND rank = ? AND starts_ms < ?"
                " AND (ends_ms IS NULL OR ends_ms > ?) AND (ends_ms IS NULL OR ends_ms > ?)",
                (
                    person.community_id,
                    rank,
                    ends_ms if ends_ms is not None else 2**62,
                    starts,
                    now,
                ),
            ).fetchone()
            if overlapping:
                raise Conflict(
                    "someone is on call at this rank then; end that shift first",
                    field="rank",
                    code="rank_taken",
                )
            shift_id = new_id("onc")
            db.execute(
                "INSERT INTO on_call (id, community_id, person_id, rank, starts_ms, ends_ms,"
                " created_by, created_ms) VALUES (?,?,?,?,?,?,?,?)",
                (shift_id, person.community_id, person_id, rank, starts, ends_ms, person.id, now),
            )
        log.info("%s on call at rank %d (set by %s)", person_id, rank, person.id)
        return self._shift(person, shift_id)

    def end_on_call(self, person: Person, shift_id: str) -> dict[str, Any]:
        """End a shift now (a shift not yet begun ends before it begins)."""
        now = self._now()
        with self._store.write() as db:
            row = db.execute(
                "SELECT starts_ms, ends_ms FROM on_call WHERE id = ? AND community_id = ?",
                (shift_id, person.community_id),
            ).fetchone()
            if row is None:
                raise NotFound("no such shift")
            if row["ends_ms"] is not None and row["ends_ms"] <= now:
                raise Conflict("the shift has ended", code="already_ended")
            db.execute(
                "UPDATE on_call SET ends_ms = ? WHERE id = ?",
                (max(now, row["starts_ms"]), shift_id),
            )
        log.info("on-call shift %s ended by %s", shift_id, person.id)
        return self._shift(person, shift_id)

    def _shift(self, person: Person, shift_id: str) -> dict[str, Any]:
        row = self._store.read_one(
            "SELECT o.*, p.display_name, p.role, s.person_id IS NOT NULL AS has_contact"
            " FROM on_call o JOIN people p ON p.id = o.person_id"
            " LEFT JOIN staff_contacts s ON s.person_id = o.person_id"
            " WHERE o.id = ? AND o.community_id = ?",
            (shift_id, person.community_id),
        )
        if row is None:
            raise NotFound("no such shift")
        return _on_call_json(row)

    def set_contact(
        self, person: Person, *, phone: str, channel: str, wechat_openid: str | None
    ) -> dict[str, Any]:
        """Where a member of staff is reached (SMS, or WeChat with an openid); the answer shows
        the phone masked (``138****0001``)."""
        normalized = normalize_phone(phone)
        if normalized is None:
            raise Invalid("not a mobile phone number", field="phone")
        with self._store.write() as db:
            db.execute(
                "INSERT INTO staff_contacts (person_id, phone, notify_channel, wechat_openid)"
                " VALUES (?,?,?,?) ON CONFLICT (person_id) DO UPDATE SET phone = excluded.phone,"
                " notify_channel = excluded.notify_channel,"
                " wechat_openid = excluded.wechat_openid",
                (person.id, normalized, channel, wechat_openid),
            )
        log.info("%s changed how they are reached (%s)", person.id, channel)
        return {
            "phone": mask_phone(normalized),
            "notify_channel": channel,
            "has_wechat": bool(wechat_openid),
        }


# --- rows and their JSON ----------------------------------------------------------------------

_SELECT = (
    "SELECT a.*, d.name AS device_name, ack.display_name AS acknowledged_by_name,"
    " res.display_name AS resolved_by_name, asg.display_name AS assigned_to_name"
    " FROM alerts a LEFT JOIN devices d ON d.id = a.device_id"
    " LEFT JOIN people ack ON ack.id = a.acknowledged_by"
    " LEFT JOIN people res ON res.id = a.resolved_by"
    " LEFT JOIN people asg ON asg.id = a.assigned_to"
)


def _visible(db: sqlite3.Connection, person: Person, alert_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute(
        f"{_SELECT} WHERE a.id = ? AND a.community_id = ?",
        (alert_id, person.community_id),
    ).fetchone()
    if row is None:
        raise NotFound("no such alert")
    return row


def _transition(status: str, action: str) -> str:
    try:
        return next_status(status, action)
    except AlertStateError as exc:
        raise Conflict(str(exc), code=exc.code) from exc


def _note(note: str) -> str:
    cleaned = note.strip()
    if not cleaned:
        raise Invalid("a note is needed", field="note", code="note_required")
    return cleaned


def _action(
    db: sqlite3.Connection,
    alert_id: str,
    action: str,
    by_person: str | None,
    note: str | None,
    now: int,
) -> None:
    db.execute(
        "INSERT INTO alert_actions (id, alert_id, action, by_person, note, at_ms)"
        " VALUES (?,?,?,?,?,?)",
        (new_id("alx"), alert_id, action, by_person, note, now),
    )


def _marked(event: tuple[str, int] | None) -> dict[str, str]:
    """The detail recording the last event applied to an alert (none: nothing to record)."""
    return {} if event is None else {"last_event": f"{event[0]}:{event[1]}"}


def _last_event(detail: str) -> tuple[str, int] | None:
    """(boot, seq) of the last event applied to an alert (``detail.last_event``, else the
    alarm that opened it: ``detail.event``)."""
    try:
        loaded = json.loads(detail)
    except ValueError:
        return None
    found = loaded.get("last_event") or loaded.get("event")
    if not isinstance(found, str) or ":" not in found:
        return None
    boot, _, seq = found.partition(":")
    return (boot, int(seq)) if seq.isdigit() else None


def alert_json(
    row: sqlite3.Row, now_ms: int, actions: Sequence[sqlite3.Row] | None = None
) -> dict[str, Any]:
    """An alert as API data, its response clock as of ``now_ms``."""
    data: dict[str, Any] = {
        key: row[key]
        for key in (
            "id",
            "tracking_code",
            "rule",
            "severity",
            "status",
            "device_id",
            "device_name",
            "compartment",
            "escalation_level",
            "assigned_to",
            "assigned_to_name",
            "opened_ms",
            "due_ms",
            "acknowledged_ms",
            "acknowledged_by",
            "acknowledged_by_name",
            "cleared_ms",
            "resolved_ms",
            "resolved_by",
            "resolved_by_name",
            "resolution",
        )
    }
    data["is_cleared"] = row["cleared_ms"] is not None
    data["detail"] = json.loads(row["detail"])
    data["clock"] = clock_of(
        due_ms=row["due_ms"],
        acknowledged_ms=row["acknowledged_ms"],
        resolved_ms=row["resolved_ms"],
        now_ms=now_ms,
    ).to_json()
    if actions is not None:
        data["actions"] = [
            {
                "id": a["id"],
                "action": a["action"],
                "by_person": a["by_person"],
                "by_name": a["by_name"],
                "note": a["note"],
                "at_ms": a["at_ms"],
            }
            for a in actions
        ]
    return data


def _on_call_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "person_id": row["person_id"],
        "display_name": row["display_name"],
        "role": row["role"],
        "rank": row["rank"],
        "starts_ms": row["starts_ms"],
        "ends_ms": row["ends_ms"],
        "has_contact": bool(row["has_contact"]),
    }
