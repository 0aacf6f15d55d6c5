"""The firmware bridge's errors: one root, leaves that also inherit the matching builtin.

Whose fault an error is travels with it (``fault``): ``line`` (noise, a corrupted or truncated
frame, a silent board), ``device`` (a well-formed frame the device should not have sent, an
error it reports, a busy board), ``caller`` (a command the protocol cannot express). Retryable
errors — only ever retried for reads, never for an unlock — are :class:`BoardTimeout` and
:class:`ProtocolError` with ``fault == "line"``.
"""

from __future__ import annotations

from typing import Literal

Fault = Literal["line", "device", "caller"]


class BridgeError(Exception):
    """Root of every firmware-bridge error."""

    fault: Fault = "line"

    def __init__(self, message: str, *, fault: Fault | None = None) -> None:
        super().__init__(message)
        if fault is not None:
            self.fault = fault


class ProtocolError(BridgeError):
    """A protocol rule was broken; ``fault`` says by whom."""


class CommandError(ProtocolError, ValueError):
    """The caller asked for a command the protocol cannot express (a lock number out of range)."""

    fault: Fault = "caller"


class BoardTimeout(BridgeError, TimeoutError):
    """No (acceptable) reply within the timeout: the board is silent, busy or the line is noisy."""


class Unavailable(BridgeError, ConnectionError):
    """The port cannot be used: unplugged adapter, missing device, owned by another process."""
