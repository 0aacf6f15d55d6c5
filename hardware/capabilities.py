"""What a lock board can sense and do, as data (hardware.md, "Board capabilities").

The controller's core defines its alarms per capability: a board without a door sensor cannot
report a forced or ajar door, one without latch feedback cannot tell a jammed latch from a resident
who did not pull in time, one without an item sensor leaves occupancy to the resident's answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """What one board can sense and do.

    Attributes:
        has_door_sensor: a door switch (reed) per compartment.
        has_latch_feedback: a switch reporting the latch's hook position.
        has_item_sensor: an item-present sensor (Kerong IR bits, a GPIO presence sensor).
        can_time_pulse: the board ends a pulse itself (Kerong energize time, Modbus flash-on), so
            a dead process cannot leave the latch energized.
    """

    has_door_sensor: bool
    has_latch_feedback: bool
    has_item_sensor: bool
    can_time_pulse: bool


GPIO_CAPABILITIES = Capabilities(
    has_door_sensor=True, has_latch_feedback=False, has_item_sensor=True, can_time_pulse=False
)
