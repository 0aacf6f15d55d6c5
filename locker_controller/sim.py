"""Physics of a simulated GPIO locker bank on gpiozero's MockFactory.

Models what a resident and a locker do, not what our code calls: a door can be pulled open only
after its latch was energized (a spring pops the door when the solenoid releases), closing the door
re-latches it, an item is put in or taken out only through an open door. It drives the same mock
pins the controller's :class:`~locker_controller.gpio.GpioLockBus` reads, and counts pulses from
the relay pin's own recorded edges.

It also models what goes wrong, again as physics: a latch that no longer releases
(:meth:`~LockerSimulator.jam`), a door pried open against its latch
(:meth:`~LockerSimulator.force_door`), a relay output driven on behind the controller's back
(:meth:`~LockerSimulator.stick_output_on`), and sensor lines that stop answering
(:meth:`~LockerSimulator.disconnect`).

Example:
    >>> factory = MockFactory(pin_class=ObservablePin)
    >>> sim = LockerSimulator(board, factory, items={"A2"})
    >>> bus = GpioLockBus(board, factory, on_input=inbox.put)
    >>> sim.attach()
    >>> sim.open_door("A1")   # False: the latch holds
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any, Protocol

from gpiozero.pins.mock import MockFactory, MockPin

from hardware.gpio import GpioBoard


class ObservablePin(MockPin):  # type: ignore[misc]
    """A mock pin that also tells observers when its level changes, and can lose its wiring.

    While ``is_disconnected`` is set, reading the pin as an input raises :class:`OSError`
    (``ENODEV``), as the kernel's GPIO character device does once the chip or its wiring is gone,
    and level changes reach no edge callback (a cut wire carries no edges). The level itself still
    follows the physics, so a reading after reconnecting shows the world as it now is.
    """

    def __init__(self, factory: Any, info: Any) -> None:
        self.observers: list[Callable[[bool], None]] = []
        self.is_disconnected = False
        super().__init__(factory, info)

    def _get_state(self) -> bool:
        if self.is_disconnected and self._function == "input":
            raise OSError(errno.ENODEV, f"{self.info.name}: no such device")
        return bool(super()._get_state())

    def _call_when_changed(self) -> None:
        if not self.is_disconnected:
            super()._call_when_changed()

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            for observer in list(self.observers):
                observer(bool(value))
        return changed


def simulation_factory() -> MockFactory:
    """A MockFactory whose pins the simulator can observe."""
    return MockFactory(pin_class=ObservablePin)


class BankPhysics:
    """Doors, latches and items of one bank, whatever wires them to the controller.

    A door can be pulled open only after its latch was energized (a spring pops the door when the
    solenoid releases) and it has not been shut since; shutting the door re-latches it; an item is
    put in or taken out only through an open door. A jammed latch counts its pulses but no longer
    releases; a pried door opens against its latch. Front ends — the GPIO pins of
    :class:`LockerSimulator`, the serial boards of :mod:`firmware_bridge.sim` — report this state
    in their own wiring and are told of every change through ``observers``.
    """

    def __init__(self, names: list[str], *, items: set[str] | None = None) -> None:
        self.names = list(names)
        self._lock = threading.Lock()
        self._released = dict.fromkeys(names, False)
        self._open = dict.fromkeys(names, False)
        self._pulses = dict.fromkeys(names, 0)
        self._jammed = dict.fromkeys(names, False)
        self._items = {name: name in (items or set()) for name in names}
        self.observers: list[Callable[[str], None]] = []

    def _changed(self, name: str) -> None:
        for observer in list(self.observers):
            observer(name)

    def energize(self, name: str) -> None:
        """The latch coil of ``name`` was energized: count it, and release unless jammed."""
        with self._lock:
            self._pulses[name] += 1
            if not self._jammed[name]:
                self._released[name] = True
        self._changed(name)

    def pulses(self, name: str) -> int:
        """How many times the latch of ``name`` was energized."""
        with self._lock:
            return self._pulses[name]

    def is_open(self, name: str) -> bool:
        """Whether the door stands open."""
        return self._open[name]

    def is_released(self, name: str) -> bool:
        """Whether the latch is off its catch (released and not yet shut, or the door is open)."""
        return self._released[name] or self._open[name]

    def has_item(self, name: str) -> bool:
        """Whether an item lies in the compartment."""
        return self._items[name]

    def open_door(self, name: str) -> bool:
        """Pull the door; it opens only if its latch released since it was last closed."""
        with self._lock:
            if not self._released[name] or self._open[name]:
                return False
            self._open[name] = True
        self._changed(name)
        return True

    def close_door(self, name: str) -> None:
        """Push the door shut; the latch catches it again."""
        with self._lock:
            self._open[name] = False
            self._released[name] = False
        self._changed(name)

    def force_door(self, name: str) -> bool:
        """Pry the door open although its latch holds; False if it was already open."""
        with self._lock:
            if self._open[name]:
                return False
            self._open[name] = True
        self._changed(name)
        return True

    def set_item(self, name: str, *, present: bool) -> bool:
        """Put an item in or take it out; possible only through an open door."""
        with self._lock:
            if not self._open[name]:
                return False
            self._items[name] = present
        self._changed(name)
        return True

    def jam(self, name: str) -> None:
        """Energizing the latch no longer releases the door (a bent bolt, a burnt coil)."""
        with self._lock:
            self._jammed[name] = True


class SimulatedBank(Protocol):
    """What a test or the demo does to a simulated bank, whatever its wiring."""

    physics: BankPhysics

    def pulses(self, compartment: str) -> int: ...
    def is_energized(self, compartment: str) -> bool: ...
    def open_door(self, compartment: str) -> bool: ...
    def close_door(self, compartment: str) -> None: ...
    def take_item(self, compartment: str) -> bool: ...
    def put_item(self, compartment: str) -> bool: ...
    def jam(self, compartment: str) -> None: ...
    def force_door(self, compartment: str) -> bool: ...
    def stick_output_on(self, compartment: str) -> None: ...
    def disconnect(self) -> None: ...
    def reconnect(self) -> None: ...


class LockerSimulator:
    """Doors, latches and items of one simulated GPIO bank, on gpiozero's mock pins."""

    def __init__(
        self, board: GpioBoard, factory: MockFactory, *, items: set[str] | None = None
    ) -> None:
        self._board = board
        self._factory = factory
        self._by_name = {c.name: c for c in board.compartments}
        self.physics = BankPhysics(board.compartment_names(), items=items)
        for c in board.compartments:
            relay: ObservablePin = factory.pin(c.relay_pin)
            relay.observers.append(self._relay_observer(c.name, c.relay_active_high))

    def attach(self) -> None:
        """Drive every sensor pin from the physical state, and keep driving it.

        Call after the controller built its input devices: gpiozero resets a mock input to its
        pull level when the device is created, as a real pin floats to its pull.
        """
        for c in self._board.compartments:
            self._drive(c.name)
        self.physics.observers.append(self._drive)

    def _drive(self, name: str) -> None:
        c = self._by_name[name]
        door = self._factory.pin(c.door_pin)
        if self.physics.is_open(name):
            door.drive_high()
        else:
            door.drive_low()  # a closed door's reed switch pulls the pin to ground
        if c.presence_pin is not None:
            presence = self._factory.pin(c.presence_pin)
            if self.physics.has_item(name):
                presence.drive_high()
            else:
                presence.drive_low()

    def _relay_observer(self, name: str, active_high: bool) -> Callable[[bool], None]:
        def observe(level: bool) -> None:
            if level == active_high:
                self.physics.energize(name)

        return observe

    def pulses(self, compartment: str) -> int:
        """How many times the latch of ``compartment`` was energized."""
        return self.physics.pulses(compartment)

    def is_energized(self, compartment: str) -> bool:
        """Whether the latch relay of ``compartment`` is energized now."""
        c = self._by_name[compartment]
        return bool(self._factory.pin(c.relay_pin).state) == c.relay_active_high

    def open_door(self, compartment: str) -> bool:
        """Pull the door; it opens only if its latch released since it was last closed."""
        return self.physics.open_door(compartment)

    def close_door(self, compartment: str) -> None:
        """Push the door shut; the latch catches it again."""
        self.physics.close_door(compartment)

    def take_item(self, compartment: str) -> bool:
        """Take the item out; possible only through an open door (and with a presence sensor)."""
        return self._set_item(compartment, present=False)

    def put_item(self, compartment: str) -> bool:
        """Put an item in; possible only through an open door (and with a presence sensor)."""
        return self._set_item(compartment, present=True)

    def _set_item(self, compartment: str, *, present: bool) -> bool:
        if self._by_name[compartment].presence_pin is None:
            return False
        return self.physics.set_item(compartment, present=present)

    # --- what goes wrong ------------------------------------------------------------------

    def jam(self, compartment: str) -> None:
        """Jam the latch: energizing it no longer releases the door (a bent bolt, a burnt coil).

        The relay still switches and its pulses are still counted; the door simply stays held,
        so :meth:`open_door` fails after every later pulse.
        """
        self.physics.jam(compartment)

    def force_door(self, compartment: str) -> bool:
        """Pry the door open although its latch holds; the item can then be taken or put in.

        Returns False if the door was already open.
        """
        return self.physics.force_door(compartment)

    def stick_output_on(self, compartment: str) -> None:
        """Drive the relay output to its active level without the controller asking.

        Something other than the controller writes the pin (a second process poking the GPIO
        registers, ``pinctrl set 17 dh``, or a glitch): the pin's level changes exactly as a write
        by the controller would change it, so the bus reads the output as energized, and the latch
        releases as it does for any energizing. The controller's next write wins again.

        Raises:
            gpiozero.exc.PinSetInput: no controller has configured the pin as an output.
        """
        c = self._by_name[compartment]
        self._factory.pin(c.relay_pin).state = c.relay_active_high

    def disconnect(self) -> None:
        """The sensor lines stop answering: every read of a door or presence pin raises."""
        self._set_disconnected(True)

    def reconnect(self) -> None:
        """The sensor lines answer again, showing the doors and items as they are now."""
        self._set_disconnected(False)

    def _set_disconnected(self, is_disconnected: bool) -> None:
        for c in self._board.compartments:
            for number in (c.door_pin, c.presence_pin):
                if number is not None:
                    pin: ObservablePin = self._factory.pin(number)
                    pin.is_disconnected = is_disconnected
