"""Throttling of code guesses: gentle back-off per input channel and per bank, and a guess budget.

The policy, and the arithmetic behind it, are in docs/security.md. In short:

- **Back-off** (pacing): after :data:`CHANNEL_FREE` failures in a row on one input channel, or
  :data:`BANK_FREE` on the whole bank, the next entry waits 5 s, then 10, 20, 40, and at most
  :data:`BACKOFF_CAP_MS` (60 s) after the latest failure. A quiet hour forgets the count; a
  success forgets its channel's. The two waits overlap (the longer one counts), so nobody at a
  keypad ever waits more than 60 s because of someone else's guesses.
- **Guess budget** (security): every failed 8-digit guess is recorded with the number of live codes
  it could have hit. A code alone is checked only while the guesses of the last 24 h, plus this
  one, stay within :data:`GUESS_BUDGET` live-code chances (a total chance of success of 2 in a
  million a day); past that the bank is *guarded*: a code alone
  is no longer checked; the resident enters the code followed by the last four digits of the phone
  the code was sent to (:func:`linli.codes.guard_hash`), which makes each guess 10 000 times less
  likely to succeed. Guarded mode ends when the oldest guesses leave the 24-hour window.

Timestamps are the core's trusted wall time, so the state survives a reboot (persisted with the
rest of the durable state). A clock that steps back is clamped: a failure "in the future" counts
as just now, which can lengthen one wait to at most 60 s, never more.

Example:
    >>> t = Throttle().failed("keypad", 1_000, live_codes=10)
    >>> t.wait_ms("keypad", 1_000)
    0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

CHANNEL_FREE = 3
"""Failures in a row on one channel before it backs off (a resident's typos)."""
BANK_FREE = 10
"""Failures in a row on the whole bank before every channel backs off."""
BACKOFF_BASE_MS = 5_000
BACKOFF_CAP_MS = 60_000
"""The longest wait an entry is ever made to observe."""
QUIET_RESET_MS = 60 * 60 * 1000
"""A back-off count is forgotten after this long without a failure."""
GUESS_WINDOW_MS = 24 * 60 * 60 * 1000
GUESS_BUDGET = 200
"""Live-code chances per 24 h that 8-digit guesses may spend: each checked guess spends as many as
there were live codes, so the chance that any of a day's code-only guesses succeeded is at most
``GUESS_BUDGET / 10^8``."""
MAX_CHANNELS = 16
"""Channels remembered at once (adapters name them; the quietest is forgotten first)."""


@dataclass(frozen=True)
class Backoff:
    """Failures in a row, and when the latest happened (trusted wall ms)."""

    failures: int = 0
    last_failure_ms: int = 0

    def count(self, now_ms: int) -> int:
        """Failures that still count at ``now_ms`` (a quiet hour forgets them)."""
        return 0 if now_ms - self.last_failure_ms >= QUIET_RESET_MS else self.failures

    def wait_ms(self, now_ms: int, free: int) -> int:
        """How long an entry at ``now_ms`` must still wait."""
        failures = self.count(now_ms)
        if failures < free:
            return 0
        delay: int = min(BACKOFF_CAP_MS, BACKOFF_BASE_MS << min(failures - free, 16))
        elapsed = max(0, now_ms - self.last_failure_ms)  # a clock that stepped back: just now
        return max(0, delay - elapsed)

    def failed(self, now_ms: int) -> Backoff:
        """The back-off after one more failure at ``now_ms``."""
        return Backoff(failures=self.count(now_ms) + 1, last_failure_ms=now_ms)


@dataclass(frozen=True)
class Throttle:
    """Back-off per channel and for the bank, and the guesses of the last 24 hours."""

    bank: Backoff = Backoff()
    channels: Mapping[str, Backoff] = field(default_factory=dict)
    guesses: tuple[tuple[int, int], ...] = ()
    """(trusted wall ms, live codes at the time) of each failed 8-digit guess that could have hit
    something, oldest first."""

    def wait_ms(self, channel: str, now_ms: int) -> int:
        """How long an entry on ``channel`` must still wait (0: it is checked now)."""
        own = self.channels.get(channel, Backoff())
        return max(own.wait_ms(now_ms, CHANNEL_FREE), self.bank.wait_ms(now_ms, BANK_FREE))

    def spent(self, now_ms: int) -> int:
        """Live-code chances spent by failed guesses in the 24 hours before ``now_ms``."""
        return sum(n for at, n in self.guesses if now_ms - at < GUESS_WINDOW_MS)

    def is_guarded(self, now_ms: int, live_codes: int) -> bool:
        """Whether codes alone are no longer checked: one more guess against ``live_codes`` live
        codes would take the last 24 hours past the budget."""
        return self.spent(now_ms) + live_codes > GUESS_BUDGET

    def is_backing_off(self, now_ms: int) -> bool:
        """Whether the whole bank is backing off (someone is guessing)."""
        return self.bank.count(now_ms) >= BANK_FREE

    def failed(self, channel: str, now_ms: int, *, live_codes: int = 0) -> Throttle:
        """The throttle after a failure on ``channel``; ``live_codes`` > 0 for an 8-digit guess
        that was checked against that many live codes (it spends the guess budget)."""
        channels = dict(self.channels)
        channels[channel] = channels.get(channel, Backoff()).failed(now_ms)
        if len(channels) > MAX_CHANNELS:
            quietest = min(channels, key=lambda c: channels[c].last_failure_ms)
            del channels[quietest]
        guesses = tuple(g for g in self.guesses if now_ms - g[0] < GUESS_WINDOW_MS)
        if live_codes > 0:
            guesses = (*guesses, (now_ms, live_codes))
        return Throttle(bank=self.bank.failed(now_ms), channels=channels, guesses=guesses)

    def succeeded(self, channel: str) -> Throttle:
        """A code was accepted on ``channel``: that channel starts afresh (the bank does not)."""
        if channel not in self.channels:
            return self
        channels = {c: b for c, b in self.channels.items() if c != channel}
        return replace(self, channels=channels)

    def expire(self, now_ms: int) -> Throttle:
        """Forget guesses older than the window and quiet channels (on a tick)."""
        guesses = tuple(g for g in self.guesses if now_ms - g[0] < GUESS_WINDOW_MS)
        channels = {c: b for c, b in self.channels.items() if b.count(now_ms)}
        if guesses == self.guesses and len(channels) == len(self.channels):
            return self
        return replace(self, guesses=guesses, channels=channels)
