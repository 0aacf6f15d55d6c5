"""GPIO locker banks as plain data: which BCM pin drives which latch and reads which sensor.

Like gpiozero's board tables (``pins/data.py``), these are data, validated once at start-up so a
bad pin map stops the daemon before any relay moves.

Boot hazard (hardware.md): before any daemon runs, BCM GPIO 0–8 are pulled up and 9–27 pulled
down. A relay whose *active* level equals its pin's boot pull would energize at boot, so
:func:`validate` rejects it: active-high relays on 9–27, active-low relays on 0–8 only (and even
then an external pull resistor and ``gpio=`` lines in ``config.txt`` are required, deploy/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from hardware.capabilities import GPIO_CAPABILITIES, Capabilities
from linli.contract.models import Size

__all__ = [
    "BOARDS",
    "BoardDefinitionError",
    "Capabilities",
    "GpioBoard",
    "GpioCompartment",
    "board_by_name",
    "validate",
]

BOOT_PULL_UP_PINS = frozenset(range(0, 9))
VALID_BCM_PINS = frozenset(range(2, 28))  # 0 and 1 are the HAT EEPROM's I2C pins


class BoardDefinitionError(ValueError):
    """A pin map that must not drive real relays."""


@dataclass(frozen=True)
class GpioCompartment:
    """One compartment wired pin by pin.

    Attributes:
        name: compartment name, e.g. ``A1``.
        size: S, M or L.
        relay_pin: BCM pin driving the latch relay.
        relay_active_high: True if driving the pin high energizes the relay.
        door_pin: BCM pin of the door reed switch (closed door connects it to ground: pull-up,
            reads active when closed).
        presence_pin: BCM pin of an item-present sensor reading high when an item is inside,
            or None when the compartment has none (occupancy then comes from the kiosk).
    """

    name: str
    size: Size
    relay_pin: int
    relay_active_high: bool
    door_pin: int
    presence_pin: int | None = None


@dataclass(frozen=True)
class GpioBoard:
    """A locker bank wired directly to the Pi's GPIO header."""

    name: str
    compartments: tuple[GpioCompartment, ...]
    capabilities: Capabilities

    def compartment_names(self) -> list[str]:
        """Names in wiring order."""
        return [c.name for c in self.compartments]


def validate(board: GpioBoard) -> None:
    """Refuse a pin map that could energize a relay at boot, reuse a pin, or use a bad pin.

    Raises:
        BoardDefinitionError: with a message naming the compartment and pin.
    """
    used: dict[int, str] = {}
    for c in board.compartments:
        pins = [("relay", c.relay_pin), ("door", c.door_pin)]
        if c.presence_pin is not None:
            pins.append(("presence", c.presence_pin))
        for role, pin in pins:
            if pin not in VALID_BCM_PINS:
                raise BoardDefinitionError(f"{c.name}: {role} pin GPIO{pin} is not usable")
            if pin in used:
                raise BoardDefinitionError(
                    f"{c.name}: {role} pin GPIO{pin} already used by {used[pin]}"
                )
            used[pin] = f"{c.name} {role}"
        pulled_up = c.relay_pin in BOOT_PULL_UP_PINS
        if pulled_up == c.relay_active_high:
            raise BoardDefinitionError(
                f"{c.name}: relay on GPIO{c.relay_pin} is active-"
                f"{'high' if c.relay_active_high else 'low'} but the pin is pulled "
                f"{'up' if pulled_up else 'down'} at boot: it would energize before the daemon runs"
            )


BOARDS: dict[str, GpioBoard] = {
    # Four compartments on one relay HAT (active-high relays on pins pulled down at boot),
    # reed switches and IR presence sensors. Used by the demo and tests.
    "gpio-4": GpioBoard(
        name="gpio-4",
        capabilities=GPIO_CAPABILITIES,
        compartments=(
            GpioCompartment("A1", "S", relay_pin=17, relay_active_high=True, door_pin=5, presence_pin=12),
            GpioCompartment("A2", "M", relay_pin=27, relay_active_high=True, door_pin=6, presence_pin=13),
            GpioCompartment("A3", "M", relay_pin=22, relay_active_high=True, door_pin=7, presence_pin=16),
            GpioCompartment("A4", "L", relay_pin=23, relay_active_high=True, door_pin=8, presence_pin=19),
        ),
    ),
}  # fmt: skip


def board_by_name(name: str) -> GpioBoard:
    """Look up a board definition; a clear error names the known boards."""
    try:
        board = BOARDS[name]
    except KeyError:
        raise BoardDefinitionError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None
    validate(board)
    return board
