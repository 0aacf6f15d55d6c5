"""The GPIO lock bus: latch relays, door reed switches and presence sensors through gpiozero.

Wiring (per compartment, from :mod:`hardware.gpio`): one relay output driving the latch, one reed
switch input (a closed door pulls the pin to ground), one optional presence sensor input. Relays are
built with ``initial_value=False``, so the output is off from the first instant; every output is
switched off at start-up and at close. A pulse is bounded by ``MAX_PULSE_MS`` and ended by a timer;
because a software timer dies with the process, GPIO builds also need a hardware pulse limiter
(deploy/README.md).

The pin factory is passed in explicitly (``pin_factory=``): the daemon asks for ``lgpio`` on a Pi
or gpiozero's ``MockFactory`` when simulation is configured, and never falls back silently.

Example:
    >>> factory = MockFactory()
    >>> bus = GpioLockBus(board_by_name("gpio-4"), factory, on_input=inbox.put)
    >>> bus.unlock("A1", 500)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import PinError
from gpiozero.pins import Factory

from hardware.capabilities import Capabilities
from hardware.gpio import GpioBoard
from locker_controller.core.model import (
    BusRead,
    CompartmentReading,
    DoorSensed,
    Input,
    OccupancySensed,
)
from locker_controller.lockbus import LockBusError, PulseTimers

log = logging.getLogger(__name__)


def _pin_read_errors() -> tuple[type[Exception], ...]:
    """What a failed pin read raises: gpiozero's own pin errors, the kernel's ``OSError``, and
    lgpio's ``lgpio.error`` (lgpio reports a failed ``gpio_read``, e.g. a bad or vanished chip
    handle, with its own exception class, which gpiozero passes through untranslated)."""
    errors: list[type[Exception]] = [PinError, OSError]
    try:
        import lgpio  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:  # not a Pi (or not the lgpio backend): its errors cannot occur
        pass
    else:
        errors.append(lgpio.error)
    return tuple(errors)


PIN_READ_ERRORS = _pin_read_errors()


class GpioLockBus:
    """Latches and sensors of one GPIO-wired locker bank."""

    def __init__(
        self, board: GpioBoard, pin_factory: Factory, on_input: Callable[[Input], None]
    ) -> None:
        self._board = board
        self._on_input = on_input
        self._timers = PulseTimers(lambda name: self._relays[name].off(), on_input)
        self._relays: dict[str, DigitalOutputDevice] = {}
        self._doors: dict[str, DigitalInputDevice] = {}
        self._presence: dict[str, DigitalInputDevice] = {}
        try:
            for c in board.compartments:
                self._relays[c.name] = DigitalOutputDevice(
                    c.relay_pin,
                    active_high=c.relay_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                )
            for c in board.compartments:
                # Not a Button: its close() waits out a hold time while pressed (a closed
                # door), 1 s per door at shutdown. Debounce is the core's (gpiozero's mock
                # ignores bounce_time).
                door = DigitalInputDevice(c.door_pin, pull_up=True, pin_factory=pin_factory)
                door.when_activated = self._door_handler(c.name, is_open=False)
                door.when_deactivated = self._door_handler(c.name, is_open=True)
                self._doors[c.name] = door
                if c.presence_pin is not None:
                    sensor = DigitalInputDevice(
                        c.presence_pin, pull_up=False, pin_factory=pin_factory
                    )
                    sensor.when_activated = self._presence_handler(c.name, is_present=True)
                    sensor.when_deactivated = self._presence_handler(c.name, is_present=False)
                    self._presence[c.name] = sensor
        except Exception:
            self.close()
            raise

    # gpiozero calls these on its own threads: they only enqueue.
    def _door_handler(self, name: str, *, is_open: bool) -> Callable[[], None]:
        return lambda: self._on_input(DoorSensed(name, is_open=is_open))

    def _presence_handler(self, name: str, *, is_present: bool) -> Callable[[], None]:
        return lambda: self._on_input(OccupancySensed(name, is_present=is_present))

    @property
    def capabilities(self) -> Capabilities:
        """Door reed switch and presence sensor, no latch feedback, software-timed pulses."""
        return self._board.capabilities

    def read_all(self) -> BusRead:
        """Every door, presence sensor and relay output as it is now.

        Raises:
            LockBusError: a pin could not be read (the GPIO chip or the sensor wiring failed);
                the daemon turns it into ``BusReadFailed``.
        """
        readings: dict[str, CompartmentReading] = {}
        for name, door in self._doors.items():
            sensor = self._presence.get(name)
            try:
                readings[name] = CompartmentReading(
                    door_open=not door.is_active,
                    item_present=bool(sensor.is_active) if sensor is not None else None,
                    is_energized=bool(self._relays[name].value),
                )
            except PIN_READ_ERRORS as exc:
                raise LockBusError(f"reading {name} failed: {exc}") from exc
        return BusRead(readings)

    def unlock(self, compartment: str, pulse_ms: int) -> None:
        """Energize one latch for at most ``MAX_PULSE_MS``; a timer switches it off."""
        relay = self._relays[compartment]
        duration_ms = self._timers.start(compartment, pulse_ms, relay.on)
        log.info("latch %s energized for %d ms", compartment, duration_ms)

    def energized(self) -> list[str]:
        """Compartments whose latch output is on right now."""
        return [name for name, relay in self._relays.items() if relay.value]

    def all_off(self) -> None:
        """Switch every latch output off now."""
        self._timers.cancel_all(then=self._relays_off)

    def _relays_off(self) -> None:
        for relay in self._relays.values():
            relay.off()

    def close(self) -> None:
        """Switch every output off and release every pin."""
        self.all_off()
        for device in [*self._relays.values(), *self._doors.values(), *self._presence.values()]:
            device.close()
