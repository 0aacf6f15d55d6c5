"""Locker banks on RS485 lock-control boards, as plain data: which board and channel opens which
compartment, which input reads its door or item, and what each board can sense.

Two board families (hardware.md):

- **Kerong KR-CU16 / CU12**: up to 16 locks per board, boards 0–15 on one bus (DIP switch). The
  status reply carries one *hook* bit per lock and one optional infrared *item* bit. The hook bit
  is the lock's catch: it is released from the moment the latch fires (the door's spring pushes
  it off the hook) until the door is shut again, so Linli reads it as the **door sensor**
  (``has_door_sensor``; no separate latch feedback). Which level means "caught" differs between
  boards (``hook_caught_level``): ``linli bus selftest`` measures it. The board times the pulse
  (energize time, command ``37``).
- **Waveshare Modbus RTU relay**: 8 relays and 8 digital inputs per board (unit 1–247). A
  compartment's latch is a relay channel pulsed with the board's own timer ("flash on"); its door
  switch and an optional presence sensor are inputs.

The serial port itself is deployment configuration (``linli locker run --port``), not board data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hardware.capabilities import Capabilities
from linli.contract.models import Size

Protocol = Literal["kerong", "modbus"]

KERONG_LOCKS = 16
MODBUS_CHANNELS = 8
BAUDRATES: dict[Protocol, int] = {"kerong": 19200, "modbus": 9600}
"""Factory defaults (hardware.md)."""


class BankDefinitionError(ValueError):
    """A bank map that would open the wrong door or read the wrong sensor."""


@dataclass(frozen=True)
class SerialBoard:
    """One lock-control board on the bus.

    Attributes:
        address: Kerong board number (DIP switch, 0–15) or Modbus unit (1–247).
        hook_caught_level: Kerong only: the hook bit's value while the door is caught (1 on some
            boards, 0 on others; ``linli bus selftest`` reports which).
        has_item_sensor: Kerong only: the infrared item sensors are fitted.
    """

    address: int
    hook_caught_level: Literal[0, 1] = 1
    has_item_sensor: bool = True


@dataclass(frozen=True)
class SerialCompartment:
    """One compartment of a serial bank.

    Attributes:
        name: compartment name, e.g. ``A1``.
        size: S, M or L.
        board: the board's address.
        channel: Kerong lock number 1–16, or Modbus relay channel 0–7.
        door_input: Modbus only: the input channel (0–7) of the door switch (closed door = 1).
        item_input: Modbus only: the input channel of a presence sensor (item inside = 1).
    """

    name: str
    size: Size
    board: int
    channel: int
    door_input: int | None = None
    item_input: int | None = None


@dataclass(frozen=True)
class SerialBank:
    """A locker bank on one RS485 bus."""

    name: str
    protocol: Protocol
    boards: tuple[SerialBoard, ...]
    compartments: tuple[SerialCompartment, ...]
    baudrate: int = 0
    """0: the protocol's factory default."""

    @property
    def line_baudrate(self) -> int:
        """The baud rate to open the port at."""
        return self.baudrate or BAUDRATES[self.protocol]

    def compartment_names(self) -> list[str]:
        """Names in wiring order."""
        return [c.name for c in self.compartments]

    def board(self, address: int) -> SerialBoard:
        """The board with this address."""
        return next(b for b in self.boards if b.address == address)

    @property
    def capabilities(self) -> Capabilities:
        """What the bank senses, from its boards and wiring (alarms follow it)."""
        if self.protocol == "kerong":
            return Capabilities(
                has_door_sensor=True,
                has_latch_feedback=False,
                has_item_sensor=all(b.has_item_sensor for b in self.boards),
                can_time_pulse=True,
            )
        return Capabilities(
            has_door_sensor=all(c.door_input is not None for c in self.compartments),
            has_latch_feedback=False,
            has_item_sensor=all(c.item_input is not None for c in self.compartments),
            can_time_pulse=True,
        )


def validate(bank: SerialBank) -> None:
    """Refuse a bank map with an unknown board, a channel out of range or used twice.

    Raises:
        BankDefinitionError: naming the compartment and what is wrong.
    """
    addresses = [b.address for b in bank.boards]
    if len(set(addresses)) != len(addresses):
        raise BankDefinitionError(f"{bank.name}: a board address is used twice: {addresses}")
    low, high = (0, 15) if bank.protocol == "kerong" else (1, 247)
    for address in addresses:
        if not low <= address <= high:
            raise BankDefinitionError(f"{bank.name}: board address {address} outside {low}–{high}")
    names = bank.compartment_names()
    if len(set(names)) != len(names):
        raise BankDefinitionError(f"{bank.name}: a compartment name is used twice")
    used: dict[tuple[int, str, int], str] = {}
    for c in bank.compartments:
        if c.board not in addresses:
            raise BankDefinitionError(f"{c.name}: board {c.board} is not on the bus")
        if bank.protocol == "kerong":
            wires = [("lock", c.channel, 1, KERONG_LOCKS)]
            if c.door_input is not None or c.item_input is not None:
                raise BankDefinitionError(f"{c.name}: a Kerong lock reports its own hook and item")
        else:
            wires = [("relay", c.channel, 0, MODBUS_CHANNELS - 1)]
            wires += [
                (role, number, 0, MODBUS_CHANNELS - 1)
                for role, number in (("input", c.door_input), ("input", c.item_input))
                if number is not None
            ]
        for role, number, first, last in wires:
            if not first <= number <= last:
                raise BankDefinitionError(f"{c.name}: {role} {number} outside {first}–{last}")
            key = (c.board, role, number)
            if key in used:
                raise BankDefinitionError(
                    f"{c.name}: board {c.board} {role} {number} already used by {used[key]}"
                )
            used[key] = c.name


BANKS: dict[str, SerialBank] = {
    # One KR-CU16 (board 0) with IR item sensors: four compartments on locks 1-4.
    "kerong-4": SerialBank(
        name="kerong-4",
        protocol="kerong",
        boards=(SerialBoard(0, hook_caught_level=1, has_item_sensor=True),),
        compartments=(
            SerialCompartment("A1", "S", board=0, channel=1),
            SerialCompartment("A2", "M", board=0, channel=2),
            SerialCompartment("A3", "M", board=0, channel=3),
            SerialCompartment("A4", "L", board=0, channel=4),
        ),
    ),
    # One Waveshare 8-channel relay board (unit 1): relays 0-3 drive the latches, inputs 0-3
    # read the door switches, inputs 4-7 the presence sensors.
    "modbus-4": SerialBank(
        name="modbus-4",
        protocol="modbus",
        boards=(SerialBoard(1),),
        compartments=(
            SerialCompartment("A1", "S", board=1, channel=0, door_input=0, item_input=4),
            SerialCompartment("A2", "M", board=1, channel=1, door_input=1, item_input=5),
            SerialCompartment("A3", "M", board=1, channel=2, door_input=2, item_input=6),
            SerialCompartment("A4", "L", board=1, channel=3, door_input=3, item_input=7),
        ),
    ),
}


def bank_by_name(name: str) -> SerialBank:
    """Look up a bank definition (validated); a clear error names the known ones."""
    try:
        bank = BANKS[name]
    except KeyError:
        raise BankDefinitionError(f"unknown bank {name!r}; known: {', '.join(BANKS)}") from None
    validate(bank)
    return bank
