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

from typing import Protocol

from hardware.capabilities import Capabilities
from locker_controller.core.model import BusRead


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
