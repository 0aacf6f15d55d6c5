"""Devices: everything that arrives over MQTT is validated here, then stored and settled.

Every device→cloud payload passes the same gate, in order: a topic of the contract; a device the
cloud knows; a payload within size that parses as the topic's model and contract version; the
same device id in topic and payload (a device never speaks for another; the broker's ACL already
confines it to its own topics). A refusal is logged (never the payload: it may hold codes),
counted, and changes nothing.

Events are stored once by ``(device_id, boot_id, seq)``; the cloud then acknowledges the highest
contiguous ``seq`` of that boot, and only then may the device forget them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from cloud_api.errors import Conflict, DeviceUnavailable, NotFound
from cloud_api.grants.service import build_config, refreshed, signed_config
from cloud_api.items.service import DEFAULT_POLICY, Policy
from cloud_api.items.settlement import (
    advance_horizon,
    apply_event,
    event_json,
    note_config_applied,
)
from cloud_api.keys import CloudKeys
from cloud_api.store import Store
from linli.clock import Clock
from linli.contract import (
    Ack,
    CommandBody,
    CommandResult,
    ConfigReport,
    ContractError,
    Event,
    State,
    Status,
    Telemetry,
    UnknownTopic,
    decode,
    encode,
    parse_topic,
    sign_body,
)
from linli.crash import crash_point
from linli.ids import new_id

log = logging.getLogger(__name__)

COMMAND_TTL_MS = 60_000
LAST_SEEN_EVERY_MS = 60_000
"""How often telemetry refreshes ``devices.last_seen_ms`` in the store (silence is judged in
minutes by the scheduler; seconds by the in-memory watchdog)."""


DeviceListener = Callable[[str, str, object], None]
"""Told, after the store has it, of what a device said or how it went: ``(device_id, what,
message)`` where ``what`` is a topic name (``evt``, ``state``, ``status``, ``tele``,
``cfg/reported``, ``res``) with its parsed message, or ``lost`` / ``heard_again`` (message
``None``). Listeners run on the bridge's worker thread and must be quick (alerts, the live view)."""


class Publisher(Protocol):
    """Where the cloud publishes to devices (the MQTT bridge)."""

    def publish(self, device_id: str, name: str, payload: bytes) -> None:
        """Publish on a device's topic with the contract's QoS and retention."""
        ...

    @property
    def is_connected(self) -> bool:
        """Whether the broker session is up."""
        ...


class DeviceService:
    """Ingest of device messages; configuration and commands to devices."""

    def __init__(
        self,
        store: Store,
        keys: CloudKeys,
        publisher: Publisher,
        clock: Clock,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self._store = store
        self.policy = policy
        self._keys = keys
        self._publisher = publisher
        self._clock = clock
        self._lock = threading.Lock()
        self.refused: Counter[str] = Counter()
        # Liveness, kept in memory: heartbeats must not churn the store.
        self._heard_mono_ms: dict[str, int] = {}
        self._keepalive_s: dict[str, int] = {}
        self._silenced: dict[str, int] = {}  # marked lost by the watchdog: keepalive to restore
        self.telemetry: dict[str, dict[str, object]] = {}
        self._logged_refusals: set[tuple[str, str, str]] = set()
        self._seen_written: dict[str, int] = {}
        self._listeners: list[DeviceListener] = []

    def listen(self, listener: DeviceListener) -> None:
        """Call ``listener`` after each device message is applied (see :data:`DeviceListener`)."""
        self._listeners.append(listener)

    def _tell(self, device_id: str, what: str, message: object) -> None:
        for listener in self._listeners:
            try:
                listener(device_id, what, message)
            except Exception:  # a listener's bug must never stop the ingest of device messages
                log.exception("a device listener failed on %s from %s", what, device_id)

    @property
    def broker_connected(self) -> bool:
        """Whether the cloud's broker session is up."""
        return self._publisher.is_connected

    def _now(self) -> int:
        return self._clock.now().wall_ms

    # --- ingest ----------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """Validate and apply one MQTT message (called on the bridge's worker thread)."""
        try:
            device_id, spec = parse_topic(topic)
        except UnknownTopic as exc:
            self._refuse("?", "?", exc.reason)
            return
        if spec.direction != "device_to_cloud":
            return  # our own publications, or someone else's: never acted upon
        if self._store.read_one("SELECT 1 FROM devices WHERE id = ?", (device_id,)) is None:
            self._refuse(device_id, spec.name, "unknown_device")
            return
        if spec.name == "status" and not payload:
            return  # a retained status being cleared (device removal); nothing to record
        try:
            message = decode(spec.model, payload, device_id)
        except ContractError as exc:
            self._refuse(device_id, spec.name, exc.reason)
            return
        self._heard(device_id, spec.name)
        try:
            if isinstance(message, Event):
                self._on_event(message)
            elif isinstance(message, Status):
                self._on_status(message)
            elif isinstance(message, State):
                self._on_state(message)
            elif isinstance(message, CommandResult):
                self._on_result(message)
            elif isinstance(message, ConfigReport):
                self._on_config_report(message)
            elif isinstance(message, Telemetry):
                self._on_telemetry(message)
        except (Conflict, NotFound) as exc:
            self._refuse(device_id, spec.name, type(exc).__name__.lower())
            return
        self._tell(device_id, spec.name, message)

    def _refuse(self, device_id: str, name: str, reason: str) -> None:
        self.refused[reason] += 1
        key = (device_id, name, reason)
        if key not in self._logged_refusals:  # log once per kind, then count
            self._logged_refusals.add(key)
            log.warning("refused a %s message for device %s: %s", name, device_id, reason)

    def _heard(self, device_id: str, name: str) -> None:
        """Note that a device spoke; a device the watchdog marked lost is back.

        Runs for every message, so it touches the store only for a device marked lost.
        """
        self._heard_mono_ms[device_id] = self._clock.now().mono_ms
        if name == "status":
            return  # a birth or a will sets the status itself
        with self._lock:
            keepalive_s = self._silenced.pop(device_id, None)
            if keepalive_s is None:
                return
            self._keepalive_s[device_id] = keepalive_s
            with self._store.write() as db:
                db.execute(
                    "UPDATE devices SET status = 'online', status_ms = ? WHERE id = ?"
                    " AND status = 'lost'",
                    (self._now(), device_id),
                )
        log.info("device %s is heard from again", device_id)
        self._tell(device_id, "heard_again", None)

    def check_liveness(self) -> list[str]:
        """Mark online devices silent for over 1.5 × keepalive as lost; return them.

        The broker's last will says the same later (Mosquitto 2.0.11 checks keepalives only
        every ~6 s, amqtt never): silence is the cloud's own, faster evidence.
        """
        now_mono = self._clock.now().mono_ms
        silent = [
            device_id
            for device_id, keepalive_s in self._keepalive_s.items()
            if now_mono - self._heard_mono_ms.get(device_id, now_mono) > 1500 * keepalive_s
        ]
        lost = []
        for device_id in silent:
            with self._lock:
                with self._store.write() as db:
                    changed = db.execute(
                        "UPDATE devices SET status = 'lost', status_ms = ? WHERE id = ?"
                        " AND status = 'online'",
                        (self._now(), device_id),
                    ).rowcount
                keepalive_s = self._keepalive_s.pop(device_id)
                if changed:
                    self._silenced[device_id] = keepalive_s
            if changed:
                lost.append(device_id)
                log.warning("device %s lost: silent for over 1.5 × keepalive", device_id)
                self._tell(device_id, "lost", None)
        return lost

    def _on_status(self, status: Status) -> None:
        now = self._now()
        self._silenced.pop(status.device_id, None)
        if status.state == "online":
            self._keepalive_s[status.device_id] = status.keepalive_s
        else:
            self._keepalive_s.pop(status.device_id, None)
        with self._store.write() as db:
            db.execute(
                "UPDATE devices SET status = ?, boot_id = ?, software_version = ?, status_ms = ?,"
                " last_seen_ms = ? WHERE id = ?",
                (status.state, status.boot_id, status.version, now, now, status.device_id),
            )
        self._seen_written[status.device_id] = now
        log.info("device %s is %s (boot %s)", status.device_id, status.state, status.boot_id)
        if status.state == "online":
            self.refresh_config(status.device_id)

    def _on_state(self, state: State) -> None:
        with self._store.write() as db:
            known = {
                r["name"]
                for r in db.execute(
                    "SELECT name FROM compartments WHERE device_id = ?", (state.device_id,)
                )
            }
            if not set(state.compartments) <= known:
                raise Conflict("state names compartments this device does not have")
            for name, c in state.compartments.items():
                db.execute(
                    "UPDATE compartments SET latch = ?, door = ?, occupancy = ?,"
                    " needs_attention = ?, attention = ?, epoch = MAX(epoch, ?), state_ms = ?"
                    " WHERE device_id = ? AND name = ?",
                    (
                        c.latch,
                        c.door,
                        c.occupancy,
                        int(c.needs_attention),
                        c.attention,
                        c.epoch,
                        state.wall_ms,
                        state.device_id,
                        name,
                    ),
                )
            db.execute(
                "UPDATE devices SET last_seen_ms = ? WHERE id = ?", (self._now(), state.device_id)
            )

    def _on_event(self, event: Event) -> None:
        """Store an event once by ``(device, boot, seq)``, settle it, acknowledge the boot.

        The acknowledgement is cumulative: the highest ``seq`` up to which every event of that
        boot is stored (0 when none is), so a device re-sends what the cloud lacks; an ack below
        what it was once told means the cloud lost events (a restore), and the device replays
        them from its archive. A ``booted`` event names the previous boot and its last ``seq``:
        if the cloud lacks that boot's tail it acknowledges what it has of it, which asks for the
        rest (gap detection across reboots).
        """
        now = self._now()
        changed_devices: set[str] = set()
        acks: list[Ack] = []
        with self._store.write() as db:
            inserted = db.execute(
                "INSERT INTO device_events (device_id, boot_id, seq, type, compartment,"
                " grant_id, cmd_id, reason, wall_ms, mono_ms, trust, payload, received_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    event.device_id,
                    event.boot_id,
                    event.seq,
                    event.type,
                    event.compartment,
                    event.grant_id,
                    event.cmd_id,
                    event.reason,
                    event.wall_ms,
                    event.mono_ms,
                    event.trust,
                    event_json(event),
                    now,
                ),
            ).rowcount
            head = _advance_head(db, event.device_id, event.boot_id, event.seq, 0)
            if inserted:
                changed_devices = self._settle_through(db, event.device_id, event.boot_id, head)
                self._advance_horizon_from_events(db, event.device_id, event.boot_id, head)
            acks.append(Ack(device_id=event.device_id, boot_id=event.boot_id, seq=head))
            previous = event.data.get("previous_boot")
            last_seq = event.data.get("previous_last_seq")
            if event.type == "booted" and isinstance(previous, str) and isinstance(last_seq, int):
                held = _advance_head(db, event.device_id, previous, 0, last_seq)
                if held < last_seq:
                    acks.append(Ack(device_id=event.device_id, boot_id=previous, seq=held))
        crash_point("cloud.event_stored")
        for ack in acks:
            self._publisher.publish(event.device_id, "ack", encode(ack))
        for device_id in sorted(changed_devices):
            self.publish_config(device_id)

    def _settle_through(
        self, db: sqlite3.Connection, device_id: str, boot_id: str, head: int
    ) -> set[str]:
        """Apply, in ``seq`` order, every stored and not yet settled event of a boot up to the
        contiguous head: an event that arrived early waits for those before it."""
        changed: set[str] = set()
        now = self._now()
        for row in db.execute(
            "SELECT seq, payload FROM device_events WHERE device_id = ? AND boot_id = ?"
            " AND settled_ms IS NULL AND seq <= ? ORDER BY seq",
            (device_id, boot_id, head),
        ).fetchall():
            event = Event.model_validate_json(row["payload"])
            changed |= apply_event(db, event, now, keys=self._keys, policy=self.policy)
            db.execute(
                "UPDATE device_events SET settled_ms = ? WHERE device_id = ? AND boot_id = ?"
                " AND seq = ?",
                (now, device_id, boot_id, row["seq"]),
            )
        return changed

    def _advance_horizon_from_events(
        self, db: sqlite3.Connection, device_id: str, boot_id: str, head: int
    ) -> None:
        """The device's horizon from its events: with no gap in any boot, every event before
        the head event's (trusted) wall time is stored."""
        if head == 0 or self._has_gaps(db, device_id):
            return
        row = db.execute(
            "SELECT wall_ms, trust FROM device_events WHERE device_id = ? AND boot_id = ?"
            " AND seq = ?",
            (device_id, boot_id, head),
        ).fetchone()
        if row is not None and row["trust"] != "untrusted":
            advance_horizon(db, device_id, int(row["wall_ms"]))

    def settle_stale_events(self, older_than_ms: int) -> int:
        """Apply events held back behind a gap that never filled (the device's archive lost
        them): after the staleness bound they settle in order all the same; return how many."""
        now = self._now()
        count = 0
        with self._store.write() as db:
            boots = db.execute(
                "SELECT DISTINCT device_id, boot_id FROM device_events WHERE settled_ms IS NULL"
                " AND received_ms < ?",
                (now - older_than_ms,),
            ).fetchall()
            changed: set[str] = set()
            for boot in boots:
                rows = db.execute(
                    "SELECT seq, payload FROM device_events WHERE device_id = ? AND boot_id = ?"
                    " AND settled_ms IS NULL ORDER BY seq",
                    (boot["device_id"], boot["boot_id"]),
                ).fetchall()
                for row in rows:
                    event = Event.model_validate_json(row["payload"])
                    changed |= apply_event(db, event, now, keys=self._keys, policy=self.policy)
                    db.execute(
                        "UPDATE device_events SET settled_ms = ? WHERE device_id = ?"
                        " AND boot_id = ? AND seq = ?",
                        (now, boot["device_id"], boot["boot_id"], row["seq"]),
                    )
                    count += 1
        for device_id in sorted(changed):
            self.publish_config(device_id)
        return count

    def gaps(self, device_id: str) -> list[dict[str, object]]:
        """Boots of a device whose events the cloud does not hold contiguously: what it has
        (``have_through``) and the highest ``seq`` it knows exists (``known_through``)."""
        rows = self._store.read(
            "SELECT boot_id, contiguous_seq, MAX(highest_seq, expected_seq) AS known"
            " FROM event_heads WHERE device_id = ? AND MAX(highest_seq, expected_seq)"
            " > contiguous_seq ORDER BY boot_id",
            (device_id,),
        )
        return [
            {
                "boot_id": r["boot_id"],
                "have_through": r["contiguous_seq"],
                "known_through": r["known"],
            }
            for r in rows
        ]

    def _on_result(self, result: CommandResult) -> None:
        if result.cmd_id is None:
            raise NotFound("result without a command id")
        with self._store.write() as db:
            updated = db.execute(
                "UPDATE commands SET result_ok = ?, result_reason = ?, result_ms = ?"
                " WHERE id = ? AND device_id = ? AND result_ms IS NULL",
                (int(result.ok), result.reason, self._now(), result.cmd_id, result.device_id),
            ).rowcount
        if not updated:
            raise NotFound("result for an unknown or already settled command")

    def _on_config_report(self, report: ConfigReport) -> None:
        with self._store.write() as db:
            db.execute(
                "UPDATE devices SET cfg_reported = ? WHERE id = ?",
                (report.model_dump_json(), report.device_id),
            )
            if report.status == "applied":
                note_config_applied(db, report.device_id, report.applied_version, self._now())
        if report.status == "refused":
            log.warning(
                "device %s refused configuration %s: %s",
                report.device_id,
                report.refused_version,
                report.reason,
            )

    def _on_telemetry(self, tele: Telemetry) -> None:
        # Latest figures in memory; history and alarms belong to the maintainers' issue (#10).
        now = self._now()
        self.telemetry[tele.device_id] = tele.model_dump(mode="json") | {"received_ms": now}
        through = tele.reported_through_ms
        # Heartbeats must not churn the store: last_seen_ms is written at most once a minute,
        # and the horizon when it would let an expired or revoked grant settle (or with it).
        is_due = now - self._seen_written.get(tele.device_id, 0) >= LAST_SEEN_EVERY_MS
        unblocks = through is not None and (
            self._store.read_one(
                "SELECT 1 FROM grants g JOIN devices d ON d.id = g.device_id"
                " WHERE g.device_id = ? AND g.settled_ms IS NULL"
                " AND g.status IN ('expired', 'revoked') AND g.settle_after_ms IS NOT NULL"
                " AND g.settle_after_ms > d.reported_through_ms AND g.settle_after_ms <= ?"
                " LIMIT 1",
                (tele.device_id, through),
            )
            is not None
        )
        if not (is_due or unblocks):
            return
        with self._store.write() as db:
            db.execute("UPDATE devices SET last_seen_ms = ? WHERE id = ?", (now, tele.device_id))
            if through is not None and not self._has_gaps(db, tele.device_id):
                advance_horizon(db, tele.device_id, through)
        self._seen_written[tele.device_id] = now

    @staticmethod
    def _has_gaps(db: sqlite3.Connection, device_id: str) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM event_heads WHERE device_id = ? AND MAX(highest_seq, expected_seq)"
                " > contiguous_seq",
                (device_id,),
            ).fetchone()
            is not None
        )

    # --- to devices --------------------------------------------------------------------------

    def publish_config(self, device_id: str) -> int:
        """Build, version, store and publish (retained, signed) a device's configuration."""
        now = self._now()
        with self._lock, self._store.write() as db:
            row = db.execute(
                "SELECT cfg_version FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no device {device_id}")
            version = row["cfg_version"] + 1
            body = build_config(db, self._keys, device_id, version, now)
            db.execute(
                "UPDATE devices SET cfg_version = ?, cfg_body = ? WHERE id = ?",
                (version, body.model_dump_json(), device_id),
            )
        self._publisher.publish(device_id, "cfg/desired", signed_config(self._keys, body))
        return version

    def refresh_config(self, device_id: str) -> None:
        """Re-sign the current configuration with fresh cloud time (same version)."""
        row = self._store.read_one("SELECT cfg_body FROM devices WHERE id = ?", (device_id,))
        if row is None or row["cfg_body"] is None:
            self.publish_config(device_id)
            return
        self._publisher.publish(
            device_id, "cfg/desired", refreshed(self._keys, row["cfg_body"], self._now())
        )

    def send_command(
        self,
        device_id: str,
        name: str,
        *,
        requested_by: str,
        compartment: str | None = None,
        grant_id: str | None = None,
        on_behalf_of: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Sign and publish a command; return its id. The device answers on ``res``."""
        if not self._publisher.is_connected:
            raise DeviceUnavailable("the cloud is not connected to the broker")
        now = self._now()
        cmd_id = new_id("cmd")
        with self._store.write() as db:
            row = db.execute(
                "UPDATE devices SET cmd_seq = cmd_seq + 1 WHERE id = ? RETURNING cmd_seq",
                (device_id,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no device {device_id}")
            body = CommandBody(
                device_id=device_id,
                id=cmd_id,
                seq=row["cmd_seq"],
                name=name,  # type: ignore[arg-type]
                compartment=compartment,
                grant_id=grant_id,
                reason=reason,
                issued_at_ms=now,
                expires_at_ms=now + COMMAND_TTL_MS,
            )
            db.execute(
                "INSERT INTO commands (id, device_id, seq, name, compartment, grant_id,"
                " requested_by, on_behalf_of, reason, issued_ms, expires_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    cmd_id,
                    device_id,
                    body.seq,
                    name,
                    compartment,
                    grant_id,
                    requested_by,
                    on_behalf_of,
                    reason,
                    now,
                    body.expires_at_ms,
                ),
            )
        self._publisher.publish(
            device_id, "cmd", sign_body(self._keys.signing_key, self._keys.key_id, body)
        )
        return cmd_id

    def stored_events(self, device_id: str, limit: int = 200) -> list[dict[str, object]]:
        """The latest stored events of a device, oldest first."""
        rows = self._store.read(
            "SELECT payload, received_ms FROM device_events WHERE device_id = ?"
            " ORDER BY received_ms DESC, boot_id, seq DESC LIMIT ?",
            (device_id, limit),
        )
        return [
            json.loads(r["payload"]) | {"received_ms": r["received_ms"]} for r in reversed(rows)
        ]


def _advance_head(
    db: sqlite3.Connection, device_id: str, boot_id: str, seq: int, expected_seq: int
) -> int:
    """Record that ``seq`` of a boot arrived (0: none) and that ``expected_seq`` exists; return
    the highest seq up to which every event of that boot is stored."""
    row = db.execute(
        "SELECT contiguous_seq FROM event_heads WHERE device_id = ? AND boot_id = ?",
        (device_id, boot_id),
    ).fetchone()
    head = row["contiguous_seq"] if row else 0
    while db.execute(
        "SELECT 1 FROM device_events WHERE device_id = ? AND boot_id = ? AND seq = ?",
        (device_id, boot_id, head + 1),
    ).fetchone():
        head += 1
    db.execute(
        "INSERT INTO event_heads (device_id, boot_id, contiguous_seq, highest_seq, expected_seq)"
        " VALUES (?,?,?,?,?) ON CONFLICT (device_id, boot_id) DO UPDATE SET"
        " contiguous_seq = excluded.contiguous_seq,"
        " highest_seq = MAX(highest_seq, excluded.highest_seq),"
        " expected_seq = MAX(expected_seq, excluded.expected_seq)",
        (device_id, boot_id, head, seq, expected_seq),
    )
    return int(head)
