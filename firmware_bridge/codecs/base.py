"""What every codec shares: whose fault an error is, noise as an event, the decoder's shape.

A decoder never raises for what arrives on the wire: noise, a corrupted frame or a frame of the
wrong shape comes out as :class:`Garbage` (the line's or the device's fault) and the decoder
resynchronises on the next plausible start of frame. Its buffer never holds more than
``max_buffer`` bytes (stated per codec as at most twice its largest frame). Encoders raise
:class:`CommandError` (the caller's fault) for a command the protocol cannot express.

Example:
    >>> decoder = SomeDecoder()
    >>> decoder.feed(b"\\xff\\x02\\x00\\x35...")
    [Garbage(data=b'\\xff', reason='noise before start of frame'), StatusReply(...)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from firmware_bridge.errors import CommandError, Fault, ProtocolError

__all__ = ["CommandError", "Decoder", "Fault", "Garbage", "ProtocolError"]


@dataclass(frozen=True)
class Garbage:
    """Bytes the decoder skipped, and why (``fault`` is ``line`` or ``device``)."""

    data: bytes
    reason: str
    fault: Fault = "line"


E_co = TypeVar("E_co", covariant=True)


class Decoder(Protocol[E_co]):
    """An incremental decoder: feed it bytes as they arrive, get whole events out."""

    max_buffer: int
    """The most bytes it ever holds between calls (at most twice its largest frame)."""

    def feed(self, data: bytes) -> Sequence[E_co | Garbage]:
        """Take ``data``; return every event completed by it, in order."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        ...

    def reset(self) -> None:
        """Drop whatever is buffered (before a new command)."""
        ...
