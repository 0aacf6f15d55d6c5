"""Physics of a simulated GPIO locker bank on gpiozero's MockFactory.

Models what a resident and a locker do, not what our code calls: a door can be pulled open only
after its latch was energized (a spring pops the door when the solenoid releases), closing the door
re-latches it, an item is put in or taken out only through an open door. It drives the same mock
pins the controller's :class:`~locker_controller.gpio.GpioLockBus` reads, and counts pulses from
the relay pin's own recorded edges.

Example:
    >>> factory = MockFactory(pin_class=ObservablePin)
    >>> sim = LockerSimulator(board, factory, items={"A2"})
    >>> bus = GpioLockBus(board, factory, on_input=inbox.put)
    >>> sim.attach()
    >>> sim.open_door("A1")   # False: the latch holds
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from hardware.gpio import GpioBoard


class ObservablePin(MockPin):  # type: ignore[misc]
    """A mock pin that also tells observers when its level changes."""

    def __init__(self, factory: Any, info: Any) -> None:
        self.observers: list[Callable[[bool], None]] = []
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            for observer in list(self.observers):
                observer(bool(value))
        return changed


def simulation_factory() -> MockFactory:
    """A MockFactory whose pins the simulator can observe."""
    return MockFactory(pin_class=ObservablePin)


class LockerSimulator:
    """Doors, latches and items of one simulated bank."""

    def __init__(
        self, board: GpioBoard, factory: MockFactory, *, items: set[str] | None = None
    ) -> None:
        self._board = board
        self._factory = factory
        self._lock = threading.Lock()
        self._popped: dict[str, bool] = {c.name: False for c in board.compartments}
        self._open: dict[str, bool] = {c.name: False for c in board.compartments}
        self._pulses: dict[str, int] = {c.name: 0 for c in board.compartments}
        self._by_name = {c.name: c for c in board.compartments}
        self._items: dict[str, bool] = {
            c.name: c.name in (items or set()) for c in board.compartments
        }
        for c in board.compartments:
            relay: ObservablePin = factory.pin(c.relay_pin)
            relay.observers.append(self._relay_observer(c.name, c.relay_active_high))

    def attach(self) -> None:
        """Drive every sensor pin from the physical state.

        Call after the controller built its input devices: gpiozero resets a mock input to its
        pull level when the device is created, as a real pin floats to its pull.
        """
        for c in self._board.compartments:
            door = self._factory.pin(c.door_pin)
            if self._open[c.name]:
                door.drive_high()
            else:
                door.drive_low()  # a closed door's reed switch pulls the pin to ground
            if c.presence_pin is not None:
                presence = self._factory.pin(c.presence_pin)
                if self._items[c.name]:
                    presence.drive_high()
                else:
                    presence.drive_low()

    def _relay_observer(self, name: str, active_high: bool) -> Callable[[bool], None]:
        def observe(level: bool) -> None:
            if level == active_high:
                with self._lock:
                    self._pulses[name] += 1
                    self._popped[name] = True

        return observe

    def pulses(self, compartment: str) -> int:
        """How many times the latch of ``compartment`` was energized."""
        with self._lock:
            return self._pulses[compartment]

    def is_energized(self, compartment: str) -> bool:
        """Whether the latch relay of ``compartment`` is energized now."""
        c = self._by_name[compartment]
        return bool(self._factory.pin(c.relay_pin).state) == c.relay_active_high

    def open_door(self, compartment: str) -> bool:
        """Pull the door; it opens only if its latch released since it was last closed."""
        with self._lock:
            if not self._popped[compartment] or self._open[compartment]:
                return False
            self._open[compartment] = True
        self._factory.pin(self._by_name[compartment].door_pin).drive_high()
        return True

    def close_door(self, compartment: str) -> None:
        """Push the door shut; the latch catches it again."""
        with self._lock:
            self._open[compartment] = False
            self._popped[compartment] = False
        self._factory.pin(self._by_name[compartment].door_pin).drive_low()

    def take_item(self, compartment: str) -> bool:
        """Take the item out; possible only through an open door."""
        return self._set_item(compartment, present=False)

    def put_item(self, compartment: str) -> bool:
        """Put an item in; possible only through an open door."""
        return self._set_item(compartment, present=True)

    def _set_item(self, compartment: str, *, present: bool) -> bool:
        c = self._by_name[compartment]
        with self._lock:
            if not self._open[compartment] or c.presence_pin is None:
                return False
            self._items[compartment] = present
        pin = self._factory.pin(c.presence_pin)
        if present:
            pin.drive_high()
        else:
            pin.drive_low()
        return True
