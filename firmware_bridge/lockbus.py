"""RS485 lock-control boards behind the controller's lock-bus port (Kerong, Waveshare Modbus).

Wiring and what each board senses are data (:mod:`hardware.serial_boards`); the bytes are the
codecs' (:mod:`firmware_bridge.codecs`); the port is a :class:`~firmware_bridge.transport.
SerialTransport`. What the adapters add, and the rules they keep (locker_controller/lockbus.py):

- **An unlock is sent once.** If its reply is lost or the board refuses, the adapter enqueues
  :class:`~locker_controller.core.model.UnlockUnanswered` and the core reads the board to see
  what happened; the adapter never sends the unlock again.
- **The board times the pulse** (Kerong energize time, Modbus "flash on"), so a dead process
  cannot leave a latch energized. The adapter enqueues
  :class:`~locker_controller.core.model.PulseEnded` once the board's timer has surely run out;
  a Modbus adapter also switches the relay off then and reads it back, in case the board did not.
- **Reads are retried** with back-off (a read changes nothing); a read that still fails raises
  :class:`~locker_controller.lockbus.LockBusError`.
- **Edges from a poller**: a serial board reports nothing by itself, so a poller thread reads
  the boards every ``poll_ms`` and enqueues a ``DoorSensed`` / ``OccupancySensed`` for every
  change — what a GPIO pin's edge callback does. It never enqueues a reading of the outputs: the
  core reads those itself (``read_all`` on its own thread), so a stale "still energized" can never
  arrive after the pulse's end.

Example:
    >>> port = SerialTransport("/dev/ttyUSB0", baudrate=19200)
    >>> bus = KerongLockBus(bank_by_name("kerong-4"), port, on_input=inbox.put)
    >>> bus.unlock("A1", 500)
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import ClassVar

from firmware_bridge.codecs import kerong, modbus
from firmware_bridge.codecs.base import Decoder
from firmware_bridge.errors import BridgeError, ProtocolError
from firmware_bridge.transport import SerialTransport, retry_read
from hardware.capabilities import Capabilities
from hardware.serial_boards import SerialBank, SerialCompartment, validate
from locker_controller.core.model import (
    MAX_PULSE_MS,
    BusRead,
    CompartmentReading,
    DoorSensed,
    Input,
    OccupancySensed,
    UnlockUnanswered,
)
from locker_controller.lockbus import LockBusError, PulseTimers

log = logging.getLogger(__name__)

POLL_MS = 100
"""How often the poller reads the boards for door and item changes."""
FAILING_POLL_MS = 1_000
"""While reads fail, how often the poller tries (the core's own reads still come every second)."""
PULSE_END_MARGIN_MS = 50
"""After the board's own timer, how long to wait before reporting the pulse over."""


class SerialLockBus:
    """What every serial lock bus shares: poller, pulse timing, retries, error translation.

    Subclasses say how to read every board (``_read_boards``), fire one latch once
    (``_fire``), end a pulse (``_end_pulse``) and switch everything off (``_switch_all_off``).
    """

    protocol: ClassVar[str]
    read_timeout_s = 0.3
    unlock_timeout_s = 0.5
    pulse_unit_ms = 10

    def __init__(
        self,
        bank: SerialBank,
        transport: SerialTransport,
        on_input: Callable[[Input], None],
        *,
        poll_ms: int = POLL_MS,
    ) -> None:
        validate(bank)
        if bank.protocol != self.protocol:
            raise ValueError(f"{bank.name} is a {bank.protocol} bank, not {self.protocol}")
        self.bank = bank
        self.transport = transport
        self._on_input = on_input
        self._by_name = {c.name: c for c in bank.compartments}
        self._timers = PulseTimers(self._end_pulse, on_input)
        self._seen: dict[str, CompartmentReading] = {}
        self._seen_lock = threading.Lock()
        self._energize_ms: dict[int, int] = {}
        """Per board, the energize time last set (boards that take one: Kerong)."""
        self._stop = threading.Event()
        self._poll_s = poll_ms / 1000
        self._poller = threading.Thread(target=self._poll, name=f"poll:{bank.name}", daemon=True)
        self._poller.start()

    @property
    def capabilities(self) -> Capabilities:
        """What the bank senses (from :mod:`hardware.serial_boards`); the board times pulses."""
        return self.bank.capabilities

    # --- reading ------------------------------------------------------------------------------

    def read_all(self) -> BusRead:
        """Every compartment as the boards report it now (retried; a read changes nothing).

        Raises:
            LockBusError: a board did not answer after the retries, or the port is gone.
        """
        try:
            readings = retry_read(self._read_boards)
        except BridgeError as exc:
            raise LockBusError(f"{type(exc).__name__}: {exc}") from exc
        self._note(readings, deliver=False)
        return BusRead(readings)

    def _poll(self) -> None:
        wait_s = self._poll_s
        while not self._stop.wait(wait_s):
            try:
                readings = self._read_boards()
            except BridgeError:
                # The core's own reads report the outage (BusReadFailed). Meanwhile poll
                # slowly, so a silent bus's timeouts do not keep the core waiting for the port.
                wait_s = max(self._poll_s, FAILING_POLL_MS / 1000)
                continue
            wait_s = self._poll_s
            self._note(readings, deliver=True)

    def _note(self, readings: Mapping[str, CompartmentReading], *, deliver: bool) -> None:
        """Remember the readings; enqueue the door and item changes since the last ones."""
        changes: list[Input] = []
        with self._seen_lock:
            for name, now in readings.items():
                before = self._seen.get(name)
                self._seen[name] = now
                if not deliver or before is None:
                    continue  # a first reading is a baseline, not an edge
                if now.door_open is not None and before.door_open != now.door_open:
                    changes.append(DoorSensed(name, is_open=now.door_open))
                if now.item_present is not None and before.item_present != now.item_present:
                    changes.append(OccupancySensed(name, is_present=now.item_present))
        for change in changes:
            self._on_input(change)

    def _read_boards(self) -> dict[str, CompartmentReading]:
        raise NotImplementedError

    # --- latches ------------------------------------------------------------------------------

    def unlock(self, compartment: str, pulse_ms: int) -> None:
        """Fire one latch once, timed by its board; never repeated if the reply is lost."""
        c = self._by_name[compartment]
        units = max(
            1, math.ceil(min(pulse_ms, MAX_PULSE_MS - PULSE_END_MARGIN_MS) / self.pulse_unit_ms)
        )
        duration_ms = units * self.pulse_unit_ms
        # The pulse is timed whatever the reply: an unanswered unlock may well have fired, and
        # its board ends it by itself.
        self._timers.start(compartment, duration_ms + PULSE_END_MARGIN_MS)
        try:
            self._fire(c, duration_ms)
        except BridgeError as exc:
            log.warning(
                "unlock of %s unanswered (%s: %s): not repeated; reading the board",
                compartment,
                type(exc).__name__,
                exc,
            )
            self._on_input(UnlockUnanswered(compartment))
            return
        log.info("latch %s fired for %d ms (timed by the board)", compartment, duration_ms)

    def _fire(self, c: SerialCompartment, duration_ms: int) -> None:
        raise NotImplementedError

    def _end_pulse(self, compartment: str) -> None:
        """Called when a pulse's time is up, before ``PulseEnded`` is enqueued."""

    def all_off(self) -> None:
        """Switch every latch output off now (where the board can) and forget pending pulses."""
        self._timers.cancel_all(then=self._switch_all_off_logged)

    def _switch_all_off_logged(self) -> None:
        try:
            self._switch_all_off()
        except BridgeError as exc:
            log.error("could not switch the outputs off (%s); each board still ends its pulse", exc)

    def _switch_all_off(self) -> None:
        """Nothing to do where the board alone times every pulse."""

    def close(self) -> None:
        """Stop polling, switch off, release the port."""
        self._stop.set()
        self._poller.join(timeout=2)
        self.all_off()
        self.transport.close()


class KerongLockBus(SerialLockBus):
    """Kerong KR-CU16 / CU12 boards: the hook bit is the door sensor, IR bits the item sensor.

    Per board: one status read (``30``) per poll. An unlock is ``31`` to the board and lock; the
    energize time (``37``) is set first whenever the pulse length changes.
    """

    protocol = "kerong"
    pulse_unit_ms = 10

    def _read_boards(self) -> dict[str, CompartmentReading]:
        readings: dict[str, CompartmentReading] = {}
        for board in self.bank.boards:
            status = read_kerong_status(self.transport, board.address, self.read_timeout_s)
            for c in self.bank.compartments:
                if c.board != board.address:
                    continue
                caught = int(status.hook(c.channel)) == board.hook_caught_level
                readings[c.name] = CompartmentReading(
                    door_open=not caught,
                    item_present=status.item(c.channel) if board.has_item_sensor else None,
                )
        return readings

    def _fire(self, c: SerialCompartment, duration_ms: int) -> None:
        with self.transport.exclusive():
            if self._energize_ms.get(c.board) != duration_ms:
                self._set_energize_time(c.board, duration_ms)
            kerong_command(
                self.transport, kerong.unlock(c.board, c.channel), c.board, self.unlock_timeout_s
            )

    def _set_energize_time(self, board: int, duration_ms: int) -> None:
        """Set the board's energize time; a board that does not confirm keeps its own (bounded)."""
        try:
            retry_read(
                lambda: kerong_command(
                    self.transport,
                    kerong.set_energize_time(board, duration_ms),
                    board,
                    self.read_timeout_s,
                ),
                attempts=2,
            )
        except ProtocolError as exc:
            log.warning("board %d refused energize time %d ms: %s", board, duration_ms, exc)
        except BridgeError as exc:
            log.info("board %d did not confirm energize time %d ms (%s)", board, duration_ms, exc)
        self._energize_ms[board] = duration_ms


def kerong_command(
    transport: SerialTransport,
    request: bytes,
    board: int,
    timeout_s: float,
    decoder: Decoder[object] | None = None,
) -> object:
    """Send one Kerong command; any well-formed frame from ``board`` answers it (the replies to
    ``31`` and ``37`` are not settled by public sources, hardware.md) — except an echo of the
    request itself, which a half-duplex RS485 adapter may return."""

    def answers(event: object) -> bool:
        if getattr(event, "raw", None) == request:
            return False
        if isinstance(event, kerong.StatusReply | kerong.UnlockReply | kerong.EnergizeTimeReply):
            return event.board == board
        if isinstance(event, kerong.OtherFrame):
            return event.addr >> 4 == board
        return False

    return transport.exchange(request, decoder or kerong.ReplyDecoder(), answers, timeout_s)


class ModbusLockBus(SerialLockBus):
    """Waveshare Modbus RTU relay boards: relays pulse latches, inputs read doors and items.

    Per board: coils (FC01) and inputs (FC02) per poll. An unlock is FC05 "flash on" at
    ``0x0200 + channel`` in 100 ms units; at its end the relay is written off and read back.
    """

    protocol = "modbus"
    pulse_unit_ms = modbus.FLASH_UNIT_MS
    unlock_timeout_s = 0.3

    def _read_boards(self) -> dict[str, CompartmentReading]:
        readings: dict[str, CompartmentReading] = {}
        for board in self.bank.boards:
            with self.transport.exclusive():
                relays = read_modbus_bits(
                    self.transport, board.address, modbus.FC_READ_COILS, self.read_timeout_s
                )
                inputs = read_modbus_bits(
                    self.transport, board.address, modbus.FC_READ_INPUTS, self.read_timeout_s
                )
            for c in self.bank.compartments:
                if c.board != board.address:
                    continue
                readings[c.name] = CompartmentReading(
                    door_open=None if c.door_input is None else not inputs[c.door_input],
                    item_present=None if c.item_input is None else inputs[c.item_input],
                    is_energized=relays[c.channel],
                )
        return readings

    def _fire(self, c: SerialCompartment, duration_ms: int) -> None:
        modbus_exchange(
            self.transport,
            modbus.flash_on(c.board, c.channel, duration_ms),
            c.board,
            self.unlock_timeout_s,
        )

    def _end_pulse(self, compartment: str) -> None:
        """The board's flash has run out: write the relay off anyway (idempotent, safe)."""
        c = self._by_name[compartment]
        try:
            retry_read(
                lambda: modbus_exchange(
                    self.transport,
                    modbus.write_relay(c.board, c.channel, False),
                    c.board,
                    self.read_timeout_s,
                )
            )
        except BridgeError as exc:
            log.error("could not confirm relay %s off (%s)", compartment, exc)

    def _switch_all_off(self) -> None:
        # Switching off is safe to repeat (unlike an unlock): retried like a read.
        for board in self.bank.boards:
            retry_read(
                partial(
                    modbus_exchange,
                    self.transport,
                    modbus.all_off(board.address),
                    board.address,
                    self.read_timeout_s,
                )
            )


def read_kerong_status(
    transport: SerialTransport,
    board: int,
    timeout_s: float,
    decoder: Decoder[object] | None = None,
) -> kerong.StatusReply:
    """One status read (``30``) of one Kerong board; not retried here."""
    reply = transport.exchange(
        kerong.status(board),
        decoder or kerong.ReplyDecoder(),
        lambda e: isinstance(e, kerong.StatusReply) and e.board == board,
        timeout_s,
    )
    assert isinstance(reply, kerong.StatusReply)
    return reply


def modbus_exchange(
    transport: SerialTransport,
    request: bytes,
    unit: int,
    timeout_s: float,
    decoder: Decoder[object] | None = None,
) -> object:
    """Send one Modbus request; return the matching reply, or raise on an exception reply.

    Raises:
        ProtocolError: the board answered with a Modbus exception (``fault == "device"``).
    """
    function = request[1]

    def answers(e: object) -> bool:
        if isinstance(e, modbus.ExceptionReply):
            return e.unit == unit and e.function & 0x7F == function
        return isinstance(e, modbus.BitsReply | modbus.CoilWritten) and (
            e.unit == unit and e.function == function
            if isinstance(e, modbus.BitsReply)
            else e.unit == unit
        )

    reply = transport.exchange(request, decoder or modbus.ResponseDecoder(), answers, timeout_s)
    if isinstance(reply, modbus.ExceptionReply):
        raise ProtocolError(
            f"unit {unit} refused function {function:#04x}: {reply.meaning}", fault="device"
        )
    return reply


def read_modbus_bits(
    transport: SerialTransport,
    unit: int,
    function: int,
    timeout_s: float,
    decoder: Decoder[object] | None = None,
) -> tuple[bool, ...]:
    """The 8 relays (FC01) or the 8 inputs (FC02) of one board; not retried here."""
    encode = modbus.read_relays if function == modbus.FC_READ_COILS else modbus.read_inputs
    reply = modbus_exchange(transport, encode(unit, 0, modbus.CHANNELS), unit, timeout_s, decoder)
    assert isinstance(reply, modbus.BitsReply)
    return reply.bits[: modbus.CHANNELS]


def open_lock_bus(
    bank: SerialBank, port_url: str, on_input: Callable[[Input], None], *, poll_ms: int = POLL_MS
) -> SerialLockBus:
    """The lock bus of ``bank`` on the serial port at ``port_url`` (opened lazily, reconnecting)."""
    silence_s = modbus.silence_s(bank.line_baudrate) if bank.protocol == "modbus" else 0.0
    transport = SerialTransport(port_url, baudrate=bank.line_baudrate, silence_s=silence_s)
    kind = KerongLockBus if bank.protocol == "kerong" else ModbusLockBus
    return kind(bank, transport, on_input, poll_ms=poll_ms)
