"""The lock-bus port: what the controller needs of latches and sensors, defined by its consumer.

The GPIO adapter (:mod:`locker_controller.gpio`) implements it today; the RS485 lock-control
boards of ``firmware_bridge`` plug into the same port. Adapters convert their readings to the core's
own types (:class:`~locker_controller.core.model.BusRead`), and only enqueue inputs from their
threads; the daemon calls the port from its one core thread.

Rules every adapter keeps:
- ``unlock`` sends one unlock and is **never retried**: if the board does not confirm it, the
  adapter enqueues :class:`~locker_controller.core.model.UnlockUnanswered` and the core asks for a
  reading. When the output is off again (the adapter's timer, or the board's own energize time
  elapsed), it enqueues :class:`~locker_controller.core.model.PulseEnded`.
- ``read_all`` may be retried by the adapter (a read changes nothing); a failure raises
  :class:`LockBusError`, which the daemon turns into
  :class:`~locker_controller.core.model.BusReadFailed`.
- ``all_off`` switches every output off at once and cancels pending pulse timers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from hardware.capabilities import Capabilities
from locker_controller.core.model import MAX_PULSE_MS, BusRead, Input, PulseEnded


class LockBusError(Exception):
    """The lock bus could not be read or commanded (timeout, unplugged adapter, bad frames)."""


class LockBus(Protocol):
    """Latches and sensors of one locker bank.

    Example:
        >>> bus = GpioLockBus(board_by_name("gpio-4"), MockFactory(), on_input=inbox.put)
        >>> bus.unlock("A1", 500)
        >>> bus.read_all().compartments["A1"].is_energized
        True
    """

    @property
    def capabilities(self) -> Capabilities:
        """What the board can sense and do (alarms are defined per capability)."""
        ...

    def unlock(self, compartment: str, pulse_ms: int) -> None:
        """Energize one latch for ``pulse_ms`` (bounded), timed by the board where it can."""
        ...

    def read_all(self) -> BusRead:
        """Every compartment's door, latch, item and output, as far as the board senses them."""
        ...

    def all_off(self) -> None:
        """Switch every latch output off now."""
        ...

    def close(self) -> None:
        """Outputs off, release the hardware."""
        ...


class PulseTimers:
    """Software timing of latch pulses, for buses without a board timer (GPIO, simulations).

    One timer per compartment, bounded by ``MAX_PULSE_MS``: ``start`` switches the output on
    (``switch_on``) and arms the timer; when it fires, ``switch_off`` runs and
    :class:`~locker_controller.core.model.PulseEnded` is delivered. A new pulse of the same
    compartment cancels the previous timer; ``cancel_all`` cancels every one (the caller switches
    its outputs off).

    Example:
        >>> timers = PulseTimers(relays.off, inbox.put)
        >>> timers.start("A1", 500, lambda: relays.on("A1"))
        500
    """

    def __init__(self, switch_off: Callable[[str], None], deliver: Callable[[Input], None]) -> None:
        self._switch_off = switch_off
        self._deliver = deliver
        self._lock = threading.Lock()
        self._timers: dict[str, threading.Timer] = {}

    def start(
        self, compartment: str, pulse_ms: int, switch_on: Callable[[], None] | None = None
    ) -> int:
        """Switch on and time one pulse; return its bounded duration in ms."""
        duration_ms = max(0, min(pulse_ms, MAX_PULSE_MS))
        with self._lock:
            previous = self._timers.pop(compartment, None)
            if previous is not None:
                previous.cancel()
            if switch_on is not None:
                switch_on()
            timer = threading.Timer(duration_ms / 1000, self._end, args=(compartment,))
            timer.daemon = True
            self._timers[compartment] = timer
            timer.start()
        return duration_ms

    def _end(self, compartment: str) -> None:
        with self._lock:
            self._switch_off(compartment)
            self._timers.pop(compartment, None)
        self._deliver(PulseEnded(compartment))

    def running(self) -> set[str]:
        """Compartments whose pulse is being timed right now."""
        with self._lock:
            return set(self._timers)

    def cancel_all(self, then: Callable[[], None] | None = None) -> None:
        """Cancel every pending timer (and run ``then``, e.g. outputs off, under the same lock)."""
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            if then is not None:
                then()
