"""Lock-control boards simulated with their real bytes on a pseudo-terminal.

A :class:`KerongBoardSim` or :class:`ModbusBoardSim` is the far end of an RS485 bus: the
controller's adapter opens :attr:`BoardSim.path` with pyserial exactly as it would open a USB
adapter, and every command it sends is decoded by the codec's device side and answered the way the
board would. The doors, latches and items behind the boards are a
:class:`~locker_controller.sim.BankPhysics` — the same physics the GPIO simulation uses — so one
test can drive any bus: a door opens only after its latch was energized, a resident shuts it,
an item is taken through an open door.

What goes wrong on real buses (hardware.md) is a knob: a lost reply (:meth:`BoardSim.lose_replies`,
the unlock fires but no ACK arrives), stray bytes before a frame (:meth:`BoardSim.send_stray`), a
board stuck busy (:meth:`BoardSim.busy_for`), a cut bus (:meth:`BoardSim.disconnect`), a pulled
USB adapter (:meth:`BoardSim.unplug`).

Example:
    >>> sim = KerongBoardSim(bank_by_name("kerong-4"), tmp_path / "ttyRS485", items={"A2"}).start()
    >>> bus = open_lock_bus(bank, str(sim.path), inbox.put)
    >>> sim.open_door("A1")   # False: the latch holds
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from firmware_bridge.codecs import kerong, modbus
from firmware_bridge.sim.pty import PtyDevice
from hardware.serial_boards import SerialBank, SerialCompartment, validate
from locker_controller.sim import BankPhysics


class BoardSim:
    """The bus, the fault knobs and the physics every simulated board family shares."""

    def __init__(
        self,
        bank: SerialBank,
        path: Path,
        *,
        items: set[str] | None = None,
        physics: BankPhysics | None = None,
        pace: bool = False,
    ) -> None:
        validate(bank)
        self.bank = bank
        self.physics = physics or BankPhysics(bank.compartment_names(), items=items)
        self.device = PtyDevice(path, self._receive, baudrate=bank.line_baudrate, pace=pace)
        self.commands: Counter[int] = Counter()
        """Commands (function codes) received, by code."""
        self._lock = threading.Lock()
        self._by_wire = {(c.board, c.channel): c for c in bank.compartments}
        self._by_name = {c.name: c for c in bank.compartments}
        self._lose = 0
        self._lose_to: int | None = None
        self._stray = b""
        self._busy_until = 0.0
        self._silent = False
        self._echo = False
        self._prepare()

    def _prepare(self) -> None:
        """Family-specific state, set up once the shared parts exist."""

    @property
    def path(self) -> Path:
        """Where the host opens the port."""
        return self.device.path

    def start(self) -> BoardSim:
        """Plug the bus in and start answering."""
        self.device.start()
        return self

    def stop(self) -> None:
        """Stop answering and remove the port."""
        self.device.stop()

    # --- the world -----------------------------------------------------------------------------

    def pulses(self, compartment: str) -> int:
        """How many times the latch of ``compartment`` was energized."""
        return self.physics.pulses(compartment)

    def open_door(self, compartment: str) -> bool:
        """Pull the door; it opens only if its latch released since it was last closed."""
        return self.physics.open_door(compartment)

    def close_door(self, compartment: str) -> None:
        """Push the door shut; the latch catches it again."""
        self.physics.close_door(compartment)

    def force_door(self, compartment: str) -> bool:
        """Pry the door open although its latch holds."""
        return self.physics.force_door(compartment)

    def take_item(self, compartment: str) -> bool:
        """Take the item out through the open door."""
        return self.physics.set_item(compartment, present=False)

    def put_item(self, compartment: str) -> bool:
        """Put an item in through the open door."""
        return self.physics.set_item(compartment, present=True)

    def jam(self, compartment: str) -> None:
        """Energizing the latch no longer releases the door."""
        self.physics.jam(compartment)

    # --- what goes wrong ----------------------------------------------------------------------

    def lose_replies(self, count: int = 1, *, to: int | None = None) -> None:
        """The next ``count`` replies (to command or function code ``to``, or to anything) never
        arrive; the commands themselves are carried out."""
        with self._lock:
            self._lose += count
            self._lose_to = to

    def send_stray(self, noise: bytes) -> None:
        """Noise on the line just before the next reply."""
        with self._lock:
            self._stray += noise

    def busy_for(self, seconds: float) -> None:
        """The board is stuck busy: it carries out nothing for ``seconds``."""
        self._busy_until = time.monotonic() + seconds

    def disconnect(self) -> None:
        """The bus wire is cut (or the board lost power): nothing answers."""
        self._silent = True

    def reconnect(self) -> None:
        """The bus works again; the board reports the world as it is now."""
        self._silent = False

    def unplug(self) -> None:
        """Pull the USB adapter: the host's port fails and the path disappears."""
        self.device.unplug()

    def replug(self) -> None:
        """The USB adapter is back, at the same path."""
        self.device.replug()

    # --- the wire -----------------------------------------------------------------------------

    def _answering(self) -> bool:
        return not self._silent

    def _is_busy(self) -> bool:
        return time.monotonic() < self._busy_until

    def _reply(self, frame: bytes, command: int) -> None:
        with self._lock:
            if self._lose and self._lose_to in (None, command):
                self._lose -= 1
                return
            noise, self._stray = self._stray, b""
        self.device.write(noise + frame)

    def echo(self, *, on: bool = True) -> None:
        """A half-duplex RS485 adapter that hears its own transmission: every request comes
        straight back to the host before any reply."""
        self._echo = on

    def _receive(self, data: bytes) -> None:
        if self._echo:
            self.device.write(data)
        self._on_request_bytes(data)

    def _on_request_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _compartment(self, board: int, channel: int) -> SerialCompartment | None:
        return self._by_wire.get((board, channel))


class KerongBoardSim(BoardSim):
    """Kerong KR-CU16 boards: hook bits from the latches and doors, IR bits from the items.

    A lock's hook is caught while its door is shut and its latch has not fired since; it is
    released from the moment the latch fires (the spring pushes the door off the hook) until the
    door is shut again. ``hook_caught_level`` overrides the bank's per-board polarity, to test a
    self-test against a board wired the other way.
    """

    def __init__(
        self,
        bank: SerialBank,
        path: Path,
        *,
        items: set[str] | None = None,
        physics: BankPhysics | None = None,
        pace: bool = False,
        hook_caught_level: dict[int, int] | None = None,
    ) -> None:
        super().__init__(bank, path, items=items, physics=physics, pace=pace)
        self._decoder = kerong.RequestDecoder()
        self._levels: dict[int, int] = {b.address: b.hook_caught_level for b in bank.boards}
        self._levels.update(hook_caught_level or {})
        self._energize_ms = dict.fromkeys(self._levels, 500)
        self._energized_until: dict[tuple[int, int], float] = {}
        self.unlocks = 0
        """Unlock commands carried out (mapped to a compartment or not)."""

    def is_energized(self, compartment: str) -> bool:
        """Whether the latch coil is driven now (the board's energize time not yet over)."""
        c = self._by_name[compartment]
        return time.monotonic() < self._energized_until.get((c.board, c.channel), 0.0)

    def stick_output_on(self, compartment: str) -> None:
        """Another master on the bus fires the latch (a Kerong board never reports outputs)."""
        c = self._by_name[compartment]
        self._energize(c.board, c.channel)

    def energize_ms(self, board: int) -> int:
        """The board's energize time as last set."""
        return self._energize_ms[board]

    def _energize(self, board: int, lock: int) -> None:
        self.unlocks += 1
        self._energized_until[(board, lock)] = time.monotonic() + self._energize_ms[board] / 1000
        c = self._compartment(board, lock)
        if c is not None:
            self.physics.energize(c.name)

    def status(self, board: int) -> tuple[int, int]:
        """(hooks, items) bit masks as the board reports them now."""
        hooks = items = 0
        level = self._levels[board]
        has_items = self.bank.board(board).has_item_sensor
        for lock in range(1, kerong.LOCKS_PER_BOARD + 1):
            c = self._compartment(board, lock)
            released = c is not None and self.physics.is_released(c.name)
            bit = level if not released else 1 - level
            hooks |= bit << (lock - 1)
            if c is not None and has_items and self.physics.has_item(c.name):
                items |= 1 << (lock - 1)
        return hooks, items

    def _on_request_bytes(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if isinstance(event, kerong.Request) and self._answering():
                self._answer(event)

    def _answer(self, request: kerong.Request) -> None:
        board = request.board
        if board not in self._levels or self._is_busy():
            return  # nobody at that address, or stuck busy: silence on the bus
        self.commands[request.command] += 1
        if request.command == kerong.CMD_STATUS:
            self._reply(kerong.status_reply(board, *self.status(board)), request.command)
        elif request.command == kerong.CMD_UNLOCK:
            self._energize(board, request.lock)
            self._reply(kerong.unlock_reply(board, request.lock), request.command)
        elif request.command == kerong.CMD_UNLOCK_ALL:
            for lock in range(1, kerong.LOCKS_PER_BOARD + 1):
                self._energize(board, lock)
            self._reply(kerong.unlock_reply(board, 1), request.command)
        elif request.command == kerong.CMD_SET_TIME:
            if len(request.data) == 2:
                self._energize_ms[board] = int.from_bytes(request.data, "big") * 10
            self._reply(
                kerong.energize_time_reply(board, self._energize_ms[board]), request.command
            )
        elif request.command == kerong.CMD_RETURN_TIME:
            self._reply(
                kerong.energize_time_reply(board, self._energize_ms[board]), request.command
            )
        elif request.command == kerong.CMD_DELAYED_UNLOCK and request.data:
            timer = threading.Timer(request.data[0], self._energize, (board, request.lock))
            timer.daemon = True
            timer.start()
            self._reply(kerong.unlock_reply(board, request.lock), request.command)


class ModbusBoardSim(BoardSim):
    """Waveshare Modbus RTU relay boards: 8 relays with "flash on" timers, 8 inputs.

    A door input reads 1 while its door is shut; a presence input reads 1 while an item is
    inside. It also checks the bus's inter-frame silence: a request that starts less than 3.5
    character times after the board's last reply is counted in :attr:`silence_violations` (a
    real second board on the bus would have missed it).
    """

    def _prepare(self) -> None:
        self._decoder = modbus.RequestDecoder()
        self._units = {b.address for b in self.bank.boards}
        self._relays = {(u, ch): False for u in self._units for ch in range(modbus.CHANNELS)}
        self._flash_until: dict[tuple[int, int], float] = {}
        self._silence_s = modbus.silence_s(self.bank.line_baudrate)
        self.silence_violations = 0

    def relay(self, unit: int, channel: int) -> bool:
        """Whether a relay is on now (a "flash on" ends by the board's own timer)."""
        with self._lock:
            until = self._flash_until.get((unit, channel))
            if until is not None and time.monotonic() >= until:
                self._relays[(unit, channel)] = False
                del self._flash_until[(unit, channel)]
            return self._relays[(unit, channel)]

    def is_energized(self, compartment: str) -> bool:
        """Whether the compartment's latch relay is on now."""
        c = self._by_name[compartment]
        return self.relay(c.board, c.channel)

    def stick_output_on(self, compartment: str) -> None:
        """Another master switches the relay on and leaves it on (no timer)."""
        c = self._by_name[compartment]
        self._switch(c.board, c.channel, on=True)

    def _switch(self, unit: int, channel: int, *, on: bool, flash_ms: int | None = None) -> None:
        was_on = self.relay(unit, channel)
        with self._lock:
            self._relays[(unit, channel)] = on
            if flash_ms is not None:
                self._flash_until[(unit, channel)] = time.monotonic() + flash_ms / 1000
            else:
                self._flash_until.pop((unit, channel), None)
        c = self._compartment(unit, channel)
        if on and not was_on and c is not None:
            self.physics.energize(c.name)

    def inputs(self, unit: int) -> list[bool]:
        """The 8 digital inputs as the board reads them now."""
        levels = [False] * modbus.CHANNELS
        for c in self.bank.compartments:
            if c.board != unit:
                continue
            if c.door_input is not None:
                levels[c.door_input] = not self.physics.is_open(c.name)
            if c.item_input is not None:
                levels[c.item_input] = self.physics.has_item(c.name)
        return levels

    def _on_request_bytes(self, data: bytes) -> None:
        if time.monotonic() - self.device.last_tx_mono < self._silence_s:
            self.silence_violations += 1
        for event in self._decoder.feed(data):
            if isinstance(event, modbus.Request) and self._answering():
                self._answer(event)

    def _answer(self, request: modbus.Request) -> None:
        unit = request.unit
        if unit not in self._units:
            return
        self.commands[request.function] += 1
        if self._is_busy():
            self._reply(modbus.exception_response(unit, request.function, 6), request.function)
            return
        if request.function in (modbus.FC_READ_COILS, modbus.FC_READ_INPUTS):
            if request.address + request.value > modbus.CHANNELS or request.value == 0:
                self._reply(modbus.exception_response(unit, request.function, 2), request.function)
                return
            bits = (
                [self.relay(unit, ch) for ch in range(modbus.CHANNELS)]
                if request.function == modbus.FC_READ_COILS
                else self.inputs(unit)
            )
            window = bits[request.address : request.address + request.value]
            self._reply(modbus.bits_response(unit, request.function, window), request.function)
        elif request.function == modbus.FC_WRITE_COIL and self._write(unit, request):
            self._reply(
                modbus.coil_written_response(unit, request.address, request.value), request.function
            )
        else:
            self._reply(modbus.exception_response(unit, request.function, 1), request.function)

    def _write(self, unit: int, request: modbus.Request) -> bool:
        address, value = request.address, request.value
        if address == modbus.ALL_RELAYS and value in (0x0000, 0xFF00):
            for ch in range(modbus.CHANNELS):
                self._switch(unit, ch, on=value == 0xFF00)
        elif address < modbus.CHANNELS and value in (0x0000, 0xFF00):
            self._switch(unit, address, on=value == 0xFF00)
        elif modbus.FLASH_ON_BASE <= address < modbus.FLASH_ON_BASE + modbus.CHANNELS:
            self._switch(
                unit, address - modbus.FLASH_ON_BASE, on=True, flash_ms=value * modbus.FLASH_UNIT_MS
            )
        elif modbus.FLASH_OFF_BASE <= address < modbus.FLASH_OFF_BASE + modbus.CHANNELS:
            self._switch(unit, address - modbus.FLASH_OFF_BASE, on=False)
        else:
            self._reply(modbus.exception_response(unit, request.function, 2), request.function)
            return False
        return True
