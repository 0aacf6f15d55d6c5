"""Serial transport on pyserial: one owner per port, request/response with timeouts, reconnect.

A port is chosen by URL, as :func:`serial.serial_for_url` allows: a device (``/dev/ttyUSB0``, a
``/dev/serial/by-id/...`` link, a pseudo-terminal), ``loop://`` or ``socket://host:port``. The
transport adds what RS485 lock boards and scales need around the codecs:

- **One owner**: a device is opened with an exclusive ``flock`` (pyserial's ``exclusive``), so a
  second process — or a second transport in this one — gets :class:`Unavailable`, never a share of
  the replies.
- **One exchange at a time**: a lock serializes the adapter's poller and the controller's
  commands; :meth:`SerialTransport.exclusive` holds it across a multi-step sequence.
- **Before a command**: stale input is flushed and the decoder reset, then the line is kept quiet
  for the protocol's inter-frame silence (Modbus RTU: 3.5 character times) since the last byte
  seen or sent.
- **Reconnect**: an unplugged USB adapter raises :class:`Unavailable` (logged once when the
  outage starts and once when it ends); the port is reopened, at most every ``reopen_every_s``,
  on the next exchange after it returns.
- **Retries are for reads only** (:func:`retry_read`): an unlock is sent once; if its reply is
  lost, the caller reads the board's status instead of sending it again.

Example:
    >>> port = SerialTransport("/dev/ttyUSB0", baudrate=19200)
    >>> reply = port.exchange(kerong.status(0), kerong.ReplyDecoder(), is_status, timeout_s=0.3)
"""

from __future__ import annotations

import logging
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import serial

from firmware_bridge.codecs.base import Decoder, Garbage
from firmware_bridge.errors import BoardTimeout, BridgeError, ProtocolError, Unavailable

log = logging.getLogger(__name__)

E = TypeVar("E")
T = TypeVar("T")

PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
"""What a vanished port raises: pyserial's own error, the kernel's ``OSError`` (``EIO`` once a
USB adapter or a pty is gone), and ``termios.error``, which pyserial lets through from
``tcdrain`` in ``flush()`` (not an ``OSError``: seen when the adapter vanished mid-write)."""

OPEN_ERRORS: tuple[type[BaseException], ...] = (*PORT_ERRORS, ValueError)
"""What opening a port raises: the above, and ``ValueError`` for a malformed URL."""

READ_CHUNK_S = 0.05
"""Longest single blocking read: bounds how late a closed transport notices it was closed."""


@dataclass
class TransportStats:
    """Counters a selftest or a health report reads."""

    exchanges: int = 0
    timeouts: int = 0
    garbage_bytes: int = 0
    reconnects: int = 0
    last_round_trip_s: float | None = None


class SerialTransport:
    """One serial port (device path or pyserial URL), owned by this transport alone.

    Args:
        url: a device path or a pyserial URL.
        baudrate: line speed (Kerong 19200, Waveshare Modbus and most scales 9600), 8N1.
        silence_s: quiet time required between frames (Modbus RTU 3.5 character times).
        reopen_every_s: after an outage, how often an exchange may try to reopen the port.
        serial_for_url: the pyserial factory (tests pass a wrapper to count opens).
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int,
        silence_s: float = 0.0,
        reopen_every_s: float = 0.5,
        serial_for_url: Callable[..., Any] = serial.serial_for_url,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.silence_s = silence_s
        self.reopen_every_s = reopen_every_s
        self.stats = TransportStats()
        self._serial_for_url = serial_for_url
        self._lock = threading.RLock()
        self._port: Any = None
        self._last_traffic = 0.0
        self._next_open = 0.0
        self._outage: str | None = None
        self._ever_opened = False
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the port now (start-up checks); raises :class:`Unavailable` if it cannot."""
        with self._lock:
            self._next_open = 0.0
            self._ensure_open()

    def close(self) -> None:
        """Release the port; later exchanges raise :class:`Unavailable`."""
        with self._lock:
            self._closed = True
            self._drop()

    @property
    def is_open(self) -> bool:
        """Whether the port is open right now."""
        return self._port is not None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the port across several exchanges (no poll slips in between)."""
        with self._lock:
            yield

    def _ensure_open(self) -> Any:
        if self._closed:
            raise Unavailable(f"{self.url}: transport closed")
        if self._port is not None:
            return self._port
        now = time.monotonic()
        if now < self._next_open:
            raise Unavailable(f"{self.url}: unavailable ({self._outage or 'not open'})")
        self._next_open = now + self.reopen_every_s
        try:
            port = self._serial_for_url(
                self.url,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=READ_CHUNK_S,
                write_timeout=1.0,
                exclusive=True,
            )
        except OPEN_ERRORS as exc:
            self._note_outage(f"cannot open: {_reason(exc)}")
            raise Unavailable(f"{self.url}: cannot open ({_reason(exc)})") from exc
        self._port = port
        self._last_traffic = time.monotonic()
        if self._ever_opened:
            self.stats.reconnects += 1
        self._ever_opened = True
        if self._outage is not None:
            log.warning("serial port %s is back (after: %s)", self.url, self._outage)
            self._outage = None
        return port

    def _note_outage(self, reason: str) -> None:
        if self._outage is None:
            log.warning("serial port %s unavailable: %s", self.url, reason)
        self._outage = reason

    def _drop(self, reason: str | None = None) -> None:
        port, self._port = self._port, None
        if reason is not None:
            self._note_outage(reason)
        if port is not None:
            with suppress(*PORT_ERRORS):
                port.close()

    # --- exchanges ------------------------------------------------------------------------------

    def exchange(
        self,
        request: bytes,
        decoder: Decoder[E],
        accept: Callable[[E], bool],
        timeout_s: float,
    ) -> E:
        """Send ``request`` and return the first decoded event ``accept`` takes.

        Stale input is flushed first and the decoder reset; the inter-frame silence is kept
        before writing. Events ``accept`` refuses (a reply to someone else, a late reply to an
        earlier request) are skipped.

        Raises:
            BoardTimeout: no accepted event within ``timeout_s``.
            Unavailable: the port is missing, unplugged or owned by another process.
        """
        with self._lock:
            port = self._ensure_open()
            try:
                self._keep_silence()
                port.reset_input_buffer()
                decoder.reset()
                port.write(request)
                port.flush()
                self._last_traffic = time.monotonic()
                started = self._last_traffic
                event = self._read_until(port, decoder, accept, started + timeout_s)
            except BridgeError:
                raise  # a timeout is an OSError too: it says nothing about the port
            except PORT_ERRORS as exc:
                self._drop(_reason(exc))
                raise Unavailable(f"{self.url}: {_reason(exc)}") from exc
            self.stats.exchanges += 1
            self.stats.last_round_trip_s = time.monotonic() - started
            return event

    def send(self, request: bytes) -> None:
        """Write a frame that has no reply (a broadcast), keeping the silence around it."""
        with self._lock:
            port = self._ensure_open()
            try:
                self._keep_silence()
                port.write(request)
                port.flush()
                self._last_traffic = time.monotonic()
            except BridgeError:
                raise  # a timeout is an OSError too: it says nothing about the port
            except PORT_ERRORS as exc:
                self._drop(_reason(exc))
                raise Unavailable(f"{self.url}: {_reason(exc)}") from exc

    def listen(self, decoder: Decoder[E], accept: Callable[[E], bool], timeout_s: float) -> E:
        """Wait for an event without sending anything (a scale in continuous output)."""
        with self._lock:
            port = self._ensure_open()
            try:
                return self._read_until(port, decoder, accept, time.monotonic() + timeout_s)
            except BridgeError:
                raise  # a timeout is an OSError too: it says nothing about the port
            except PORT_ERRORS as exc:
                self._drop(_reason(exc))
                raise Unavailable(f"{self.url}: {_reason(exc)}") from exc

    def _keep_silence(self) -> None:
        if self.silence_s <= 0:
            return
        wait = self._last_traffic + self.silence_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _read_until(
        self, port: Any, decoder: Decoder[E], accept: Callable[[E], bool], deadline: float
    ) -> E:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stats.timeouts += 1
                raise BoardTimeout(f"{self.url}: no reply within the timeout")
            port.timeout = min(remaining, READ_CHUNK_S)
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue
            self._last_traffic = time.monotonic()
            for event in decoder.feed(chunk):
                if isinstance(event, Garbage):
                    self.stats.garbage_bytes += len(event.data)
                    continue
                if accept(event):
                    return event


def retry_read(
    read: Callable[[], T],
    *,
    attempts: int = 3,
    first_delay_s: float = 0.05,
    factor: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a **read** up to ``attempts`` times, waiting longer after each timeout or bad frame.

    Only for what changes nothing on the board (a status read, a query). Never wrap an unlock:
    an unlock whose reply was lost may well have fired, and a second one would pulse twice.
    :class:`Unavailable` is not retried here (the transport reopens the port on its own cadence).
    """
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return read()
        except (BoardTimeout, ProtocolError) as exc:
            if attempt == attempts or (isinstance(exc, ProtocolError) and exc.fault == "caller"):
                raise
            sleep(delay)
            delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]


__all__ = [
    "BoardTimeout",
    "BridgeError",
    "SerialTransport",
    "TransportStats",
    "Unavailable",
    "retry_read",
]
