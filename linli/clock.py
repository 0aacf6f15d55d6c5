"""Clocks: a port, the system clock and a fake clock for tests.

Time is passed around as integer milliseconds: ``wall_ms`` (Unix epoch, may be wrong on a Pi that
restored a stale time) and ``mono_ms`` (monotonic within one boot, never jumps). Integer
milliseconds also keep signed payloads canonical (no float formatting in signatures).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Now:
    """One reading of both clocks, taken together."""

    wall_ms: int
    mono_ms: int


class Clock(Protocol):
    """Where a component reads the time; injected, as gpiozero's pin factory provides ticks()."""

    def now(self) -> Now:
        """Read both clocks."""
        ...


class SystemClock:
    """The machine's clocks."""

    def now(self) -> Now:
        """Read ``time.time()`` and ``time.monotonic()`` in milliseconds."""
        return Now(wall_ms=int(time.time() * 1000), mono_ms=int(time.monotonic() * 1000))


class FakeClock:
    """A clock that moves only when told to.

    Example:
        >>> clock = FakeClock(wall_ms=1_700_000_000_000)
        >>> clock.advance(1500)
        >>> clock.now().mono_ms
        1500
    """

    def __init__(self, wall_ms: int = 1_800_000_000_000, mono_ms: int = 0) -> None:
        self._wall_ms = wall_ms
        self._mono_ms = mono_ms

    def now(self) -> Now:
        """Return the current fake reading."""
        return Now(wall_ms=self._wall_ms, mono_ms=self._mono_ms)

    def advance(self, ms: int) -> None:
        """Move both clocks forward by ``ms`` milliseconds."""
        if ms < 0:
            raise ValueError("a clock does not go backwards; use set_wall() to model a bad RTC")
        self._wall_ms += ms
        self._mono_ms += ms

    def set_wall(self, wall_ms: int) -> None:
        """Set the wall clock alone (a Pi restoring a stale time after a power cut)."""
        self._wall_ms = wall_ms
