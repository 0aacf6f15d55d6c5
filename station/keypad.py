"""Keypad sockets for every simulated locker of the demo."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from locker_controller.keypad import LocalKeypad
from station.locker import SimulatedLocker


@contextmanager
def serve_keypads(lockers: Iterable[SimulatedLocker]) -> Iterator[list[LocalKeypad]]:
    """Serve ``keypad.sock`` in each locker's data directory while the block runs."""
    keypads = [LocalKeypad(lk.daemon, lk.data_dir / "keypad.sock").start() for lk in lockers]
    try:
        yield keypads
    finally:
        for keypad in keypads:
            keypad.stop()
