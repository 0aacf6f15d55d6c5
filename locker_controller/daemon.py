"""The locker controller daemon: one thread runs the core; adapters only enqueue.

Order of effects for every input (system.md, "Non-negotiables"):
1. ``decide`` computes the new state and the outputs;
2. if a latch moves or a grant is spent (a pulse, a consumption), the durable state document is
   persisted first (grant uses, replay window, time floor), then the events are committed to the
   outbox, then the latch is pulsed (bounded): a crash can lose a pulse or a report, never open
   for a code twice. Otherwise (a sensed fact), the events are committed *before* the state that
   reflects them: a crash in between makes the restarted controller see the fact again
   (reported twice, settled once), never lose it;
3. events are published after they are committed; other outputs run in order.

At start-up every latch output is switched off before anything else; at stop, again. The core
thread wakes at least every ``TICK_S`` and exactly at the core's next deadline (debounce, pulse
bound, ajar, pulse window), and polls the lock bus every ``BUS_POLL_MS`` (a missed edge, an
output stuck on, a board that stopped answering).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linli import __version__
from linli.clock import Clock, SystemClock
from linli.contract import (
    Ack,
    CommandResult,
    CompartmentState,
    ConfigReport,
    ContractError,
    Event,
    State,
    Telemetry,
    decode,
    encode,
)
from linli.contract.models import Trust
from linli.crash import crash_point
from linli.identity import DeviceIdentity
from linli.ids import new_boot_id
from locker_controller.core.decide import decide, is_guarded, next_deadline, trusted_time
from locker_controller.core.model import (
    BusReadFailed,
    CodeEntered,
    CommandArrived,
    ConfigArrived,
    ControllerState,
    Identity,
    Input,
    Output,
    PublishState,
    PulseLatch,
    ReadBus,
    RecordEvent,
    ReplyToCommand,
    ReportConfig,
    ShowMessage,
    SwitchAllOff,
    Ticked,
)
from locker_controller.core.persist import from_document, to_document
from locker_controller.core.table import lock_word
from locker_controller.health import HealthProbe
from locker_controller.link import (
    BrokerAddress,
    DeviceLink,
    DeviceSession,
    LinkConnected,
    LinkMessage,
)
from locker_controller.lockbus import LockBus, LockBusError
from locker_controller.outbox import Outbox
from locker_controller.statestore import StateStore

log = logging.getLogger(__name__)

TICK_S = 0.25
RESEND_AFTER_MS = 5_000
TELEMETRY_EVERY_MS = 30_000
BUS_POLL_MS = 1_000
SEND_WINDOW = 100
RESEND_ON_CONFIG_AFTER_MS = 1_000
"""A fresh signed list re-sends events in flight for longer than this (the cloud is back)."""
"""Events in flight at most: a backlog after an outage drains as the cloud acknowledges."""
PRUNE_EVERY_MS = 60 * 60 * 1000


@dataclass(frozen=True)
class _CodeRequest:
    event: Input
    reply: Callable[[ShowMessage | None], None]


@dataclass(frozen=True)
class _Stop:
    pass


class LockerDaemon:
    """The controller of one locker bank.

    Example:
        >>> daemon = LockerDaemon(identity, board.compartment_names(), bus_factory, data_dir, broker)
        >>> daemon.start()
        >>> daemon.submit_code("12345678", channel="keypad")
    """

    def __init__(
        self,
        identity: DeviceIdentity,
        compartment_names: list[str],
        make_bus: Callable[[Callable[[Input], None]], LockBus],
        data_dir: Path,
        broker: BrokerAddress,
        *,
        clock: Clock | None = None,
        keepalive_s: int = 10,
        telemetry_every_ms: int | None = None,
        version: str = __version__,
    ) -> None:
        self.device_id = identity.device_id
        self.boot_id = new_boot_id()
        self._clock = clock or SystemClock()
        self._inbox: queue.Queue[object] = queue.Queue()
        self._bus = make_bus(self._inbox.put)
        self._bus.all_off()  # first thing: nothing energized, whatever happened before
        self._data_dir = data_dir
        self._outbox = Outbox(data_dir / "outbox.sqlite3")
        self._previous_boot = self._outbox.begin_boot(self.boot_id)
        self._store = StateStore(data_dir / "state.json")
        core_identity = Identity(
            device_id=identity.device_id,
            cloud_keys=dict(identity.cloud_keys),
            code_hash_key=identity.code_hash_key,
        )
        self._state = from_document(
            core_identity, compartment_names, self._store.load(), self._bus.capabilities
        )
        self._seq = 0
        self._started_mono_ms = self._clock.now().mono_ms
        self._last_resend_ms = 0
        self._last_tele_ms = 0
        self._last_poll_ms = 0
        self._last_prune_ms: int | None = None
        # Telemetry doubles as the heartbeat the cloud's liveness watchdog listens for.
        self._telemetry_every_ms = telemetry_every_ms or min(TELEMETRY_EVERY_MS, keepalive_s * 500)
        self._link = DeviceLink(
            DeviceSession(identity.device_id, "locker", self.boot_id, version, keepalive_s),
            broker,
            self._inbox.put,
            keepalive_s=keepalive_s,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"core-{self.device_id}", daemon=True
        )
        self._stopped = threading.Event()
        self._logged_ack_refusals: set[str] = set()
        # The Pi's temperature, throttling bits and free disk, sampled off the core thread.
        self._health = HealthProbe(data_dir)

    # --- public, thread-safe --------------------------------------------------------------

    @property
    def state(self) -> ControllerState:
        """The latest state (immutable snapshot)."""
        return self._state

    @property
    def link(self) -> DeviceLink:
        """The MQTT session."""
        return self._link

    def start(self) -> None:
        """Read the sensors, record the boot, connect, start the core thread."""
        self._inbox.put(self._read_bus())
        previous = self._previous_boot
        self._execute(
            [
                RecordEvent(
                    "booted",
                    data={
                        "version": __version__,
                        # the cloud checks it holds that boot's tail (gap detection)
                        "previous_boot": previous.boot_id if previous else None,
                        "previous_last_seq": previous.last_seq if previous else None,
                    },
                )
            ]
        )
        self._thread.start()
        self._health.start()
        self._link.start()
        log.info("controller %s started (boot %s)", self.device_id, self.boot_id)

    def submit(self, event: Input) -> None:
        """Enqueue an input (sensor edge, keypad code, ...)."""
        self._inbox.put(event)

    def submit_code(self, code: str, channel: str, timeout_s: float = 10.0) -> ShowMessage | None:
        """Enter a code as a resident would; wait for what the resident would be told."""
        answer: queue.Queue[ShowMessage | None] = queue.Queue(maxsize=1)
        self._inbox.put(_CodeRequest(CodeEntered(channel, code), answer.put))
        try:
            return answer.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def stop(self) -> None:
        """Latches off, say offline, stop the core thread, close the stores."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._bus.all_off()
        self._inbox.put(_Stop())
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._link.stop()
        self._health.stop()
        self._bus.close()
        self._outbox.close()
        self._store.close()
        log.info("controller %s stopped", self.device_id)

    def outbox_depth(self) -> int:
        """Events not yet acknowledged by the cloud."""
        return self._outbox.depth()

    # --- the core thread -------------------------------------------------------------------

    def _read_bus(self) -> Input:
        try:
            return self._bus.read_all()
        except LockBusError as exc:
            return BusReadFailed(str(exc)[:64] or type(exc).__name__)

    def _wait_s(self) -> float:
        deadline = next_deadline(self._state)
        if deadline is None:
            return TICK_S
        return max(0.0, min(TICK_S, (deadline - self._clock.now().mono_ms) / 1000))

    def _run(self) -> None:
        while True:
            try:
                item = self._inbox.get(timeout=self._wait_s())
            except queue.Empty:
                item = Ticked()
            if isinstance(item, _Stop):
                return
            try:
                self._handle(item)
                self._periodic()
            except Exception:
                log.exception("controller core failed on %s; latches off", type(item).__name__)
                self._bus.all_off()

    def _handle(self, item: object) -> None:
        if isinstance(item, LinkConnected):
            self._publish_state()
            self._outbox.forget_sending()  # nothing is in flight on a new connection
            self._send_due()
            return
        if isinstance(item, LinkMessage):
            if item.name == "ack":
                self._on_ack(item.payload)
                return
            if item.name == "cmd":
                item = CommandArrived(item.payload)
            elif item.name == "cfg/desired":
                item = ConfigArrived(item.payload)
            else:
                return
        reply: Callable[[ShowMessage | None], None] | None = None
        if isinstance(item, _CodeRequest):
            reply, item = item.reply, item.event
        previous = self._state
        state, outputs = decide(previous, item, self._clock.now())  # type: ignore[arg-type]
        self._state = state
        spends = state.uses is not previous.uses or any(isinstance(o, PulseLatch) for o in outputs)
        if state is not previous and not spends:
            # A sensed fact that spends no grant: its events are committed before the state that
            # already reflects it, so a crash between the two makes the restarted controller see
            # the fact again (reported twice, settled once) instead of never reporting it.
            rows = self._commit([o for o in outputs if isinstance(o, RecordEvent)])
            self._store.save(to_document(state))
            crash_point("state.persisted")
            self._publish_events(rows)
            outputs = [o for o in outputs if not isinstance(o, RecordEvent)]
        elif state is not previous:  # handlers return the same object when nothing changed
            # A latch moves or a grant is spent: the use is persisted before anything else, so a
            # crash can lose a pulse or a report, never open for a code twice.
            self._store.save(to_document(state))
            crash_point("state.persisted")
        shown = self._execute(outputs)
        if reply is not None:
            reply(shown)
        if isinstance(item, ConfigArrived) and self._outbox.in_flight():
            # The cloud signs a list when it (re)connects and sees us online: it is back, and
            # what it had not acknowledged a while ago was lost with its session. Send that
            # again now (not what was sent a moment ago: the lists that follow a birth would
            # otherwise repeat the boot's first events several times).
            now_ms = self._clock.now().mono_ms
            self._send_due(resend_before_mono_ms=now_ms - RESEND_ON_CONFIG_AFTER_MS)

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = decode(Ack, payload, self.device_id)
        except ContractError as exc:
            if exc.reason not in self._logged_ack_refusals:  # once per kind: no log flood
                self._logged_ack_refusals.add(exc.reason)
                log.warning("ignored an ack: %s", exc.reason)
            return
        crash_point("ack.received")
        archived = self._outbox.acknowledge(ack.boot_id, ack.seq)
        crash_point("ack.applied")
        if archived < 0:
            log.warning(
                "the cloud holds boot %s only up to %d: replaying %d archived events",
                ack.boot_id,
                ack.seq,
                -archived,
            )
        if archived > 0:
            log.debug("cloud acknowledged %d events up to %s/%d", archived, ack.boot_id, ack.seq)
        if archived:
            self._send_due()  # acknowledgements pace the replay of a backlog

    def _execute(self, outputs: list[Output]) -> ShowMessage | None:
        shown: ShowMessage | None = None
        pending: list[RecordEvent] = []
        for i, output in enumerate(outputs):
            if isinstance(output, RecordEvent):
                pending.append(output)
                if i + 1 < len(outputs) and isinstance(outputs[i + 1], RecordEvent):
                    continue  # consecutive events are committed together
                self._record(pending)
                pending = []
            elif isinstance(output, PulseLatch):
                crash_point("latch.before_pulse")
                self._bus.unlock(output.compartment, output.pulse_ms)
                crash_point("latch.pulsed")
            elif isinstance(output, SwitchAllOff):
                self._bus.all_off()
                log.error("a latch output was on past its bound: every output switched off")
            elif isinstance(output, ReadBus):
                self._inbox.put(self._read_bus())
            elif isinstance(output, ReplyToCommand):
                result = CommandResult(
                    device_id=self.device_id,
                    cmd_id=output.cmd_id,
                    ok=output.ok,
                    reason=output.reason,
                )
                self._link.publish("res", encode(result))
            elif isinstance(output, ReportConfig):
                report = ConfigReport(
                    device_id=self.device_id,
                    status=output.status,
                    applied_version=self._state.cfg_version,
                    refused_version=output.refused_version,
                    reason=output.reason,
                    grants=len(self._state.grants),
                    grant_list_age_s=self._grant_list_age_s(),
                )
                self._link.publish("cfg/reported", encode(report))
            elif isinstance(output, PublishState):
                self._publish_state()
            elif isinstance(output, ShowMessage):
                shown = output
        return shown

    def _record(self, records: list[RecordEvent]) -> None:
        """Commit events to the outbox in one transaction, then publish them (in order)."""
        self._publish_events(self._commit(records))

    def _commit(self, records: list[RecordEvent]) -> list[tuple[str, int, bytes, int]]:
        """Stamp and commit events to the outbox in one transaction; return the rows."""
        if not records:
            return []
        now = self._clock.now()
        wall_ms, trust = trusted_time(self._state, now)
        rows: list[tuple[str, int, bytes, int]] = []
        for output in records:
            self._seq += 1
            event = Event(
                device_id=self.device_id,
                boot_id=self.boot_id,
                seq=self._seq,
                type=output.type,  # type: ignore[arg-type]
                mono_ms=now.mono_ms,
                wall_ms=wall_ms,
                trust=trust,
                compartment=output.compartment,
                grant_id=output.grant_id,
                cmd_id=output.cmd_id,
                reason=output.reason,
                data=dict(output.data),
            )
            rows.append((self.boot_id, self._seq, encode(event), wall_ms))
        self._outbox.append_all(rows, trust=trust)
        crash_point("outbox.appended")
        return rows

    def _publish_events(self, rows: list[tuple[str, int, bytes, int]]) -> None:
        """Publish committed events, unless a backlog is still being replayed (order)."""
        if not rows or not self._link.is_connected or self._outbox.depth() > SEND_WINDOW:
            return
        now_ms = self._clock.now().mono_ms
        for boot_id, seq, payload, _ in rows:
            self._link.publish("evt", payload)
            crash_point("evt.published")
            self._outbox.mark_sent(boot_id, seq, now_ms)

    def _publish_state(self) -> None:
        state = State(
            device_id=self.device_id,
            boot_id=self.boot_id,
            wall_ms=trusted_time(self._state, self._clock.now())[0],
            compartments={
                c.name: CompartmentState(
                    latch=c.latch,
                    door=c.door,
                    occupancy=c.occupancy,
                    needs_attention=c.needs_attention,
                    epoch=c.epoch,
                    lock=lock_word(c),
                    attention=c.attention,
                )
                for c in self._state.compartments.values()
            },
        )
        self._link.publish("state", encode(state))

    def _send_due(self, *, resend_before_mono_ms: int | None = None) -> None:
        """Publish pending events in ``(boot, seq)`` order, at most :data:`SEND_WINDOW` in flight;
        with ``resend_before_mono_ms``, also those sent before it and still unacknowledged."""
        if not self._link.is_connected:
            return
        room = SEND_WINDOW - self._outbox.in_flight()
        if resend_before_mono_ms is not None:
            room = SEND_WINDOW
        if room <= 0:
            return
        now = self._clock.now().mono_ms
        for boot_id, seq, payload in self._outbox.due(resend_before_mono_ms, limit=room):
            self._link.publish("evt", payload)
            crash_point("evt.published")
            self._outbox.mark_sent(boot_id, seq, now)

    def _grant_list_age_s(self) -> int | None:
        if not self._state.cfg_issued_at_ms:
            return None
        wall_ms, _ = trusted_time(self._state, self._clock.now())
        return max(0, (wall_ms - self._state.cfg_issued_at_ms) // 1000)

    def _reported_through_ms(self, wall_ms: int, trust: Trust) -> int | None:
        """The reporting horizon (``Telemetry.reported_through_ms``): every event recorded with a
        wall time before it is acknowledged by the cloud. Exact on the core thread, which
        commits every event to the outbox before anything else happens.

        None while the clock is untrusted, or while an event stamped with an untrusted (or
        unknown) wall time awaits its ack: its wall time could be anywhere, so no horizon can
        be vouched for until the cloud holds it.
        """
        if trust == "untrusted" or self._outbox.unacked_untrusted():
            return None
        oldest = self._outbox.oldest_unacked_wall_ms()
        return wall_ms if oldest is None else min(oldest, wall_ms)

    def _periodic(self) -> None:
        now = self._clock.now().mono_ms
        deadline = next_deadline(self._state)
        if deadline is not None and deadline <= now:  # a busy inbox must not delay a deadline
            self._handle(Ticked())
        if now - self._last_poll_ms >= BUS_POLL_MS:
            self._last_poll_ms = now
            self._handle(self._read_bus())
        if now - self._last_resend_ms >= RESEND_AFTER_MS:
            self._last_resend_ms = now
            self._send_due(resend_before_mono_ms=now - RESEND_AFTER_MS)
        if self._last_prune_ms is None or now - self._last_prune_ms >= PRUNE_EVERY_MS:
            self._last_prune_ms = now
            pruned = self._outbox.prune(trusted_time(self._state, self._clock.now())[0])
            if pruned:
                log.info("dropped %d archived events past the archive's bound", pruned)
        if now - self._last_tele_ms >= self._telemetry_every_ms and self._link.is_connected:
            self._last_tele_ms = now
            wall_ms, trust = trusted_time(self._state, self._clock.now())
            health = self._health.latest
            tele = Telemetry(
                device_id=self.device_id,
                boot_id=self.boot_id,
                uptime_s=(now - self._started_mono_ms) // 1000,
                outbox_depth=self._outbox.depth(),
                grant_list_age_s=self._grant_list_age_s(),
                cfg_version=self._state.cfg_version,
                refused_inputs=self._state.refused_inputs,
                clock_trust=trust,
                guarded=is_guarded(self._state, wall_ms),
                reported_through_ms=self._reported_through_ms(wall_ms, trust),
                cpu_temp_c=health.cpu_temp_c,
                throttled=health.throttled,
                disk_free_pct=health.disk_free_pct,
            )
            self._link.publish("tele", encode(tele))
