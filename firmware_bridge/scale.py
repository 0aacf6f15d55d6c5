"""The serial scale adapter: :class:`SerialScale` implements the terminal's scale port.

A scale on RS232 (through a USB adapter) speaks one of three line formats, decoded by
:mod:`firmware_bridge.codecs.scales`; this adapter turns lines into what the valuation terminal
asks for (:class:`valuation_terminal.scale.Scale`): one stable weight, tare, zero.

**When a weight counts.** The scale's own stability flag is not enough: a flag can flicker on
while a load is still creeping, and none of the formats carries a checksum, so one corrupted
digit reads as a plausible weight. A weight counts only when the scale flags it stable *and*
``agree`` consecutive stable readings lie within ``tolerance_mg`` of each other (largest minus
smallest). An unstable reading, a busy reply or a switch between gross and net starts the count
again; a stable reading that disagrees drops the older readings it disagrees with. The weight
reported is the **median** of the agreeing readings (the lower median for an even ``agree``), so
it is always a value the scale actually sent, and one outlier cannot move it.

**How each format is read.**

- MT-SICS (``sics``): one ``SI`` (weight immediately, stable or not) every ``poll_s``. ``S`` is not
  used: it blocks until the balance itself calls the weight stable, hiding the motion we want to
  see, and answers ``S I`` on its own timeout.
- A&D (``and``): one ``Q`` (weight now) every ``poll_s``.
- Continuous (``continuous``): many indicators stream without being asked. The first read of each
  :meth:`SerialScale.stable_weight` call is an exchange with an *empty* request, so the
  transport drops what was streamed while nobody listened (a stale, seconds-old weight) and
  resets the decoder; later reads just listen. When no line arrives within ``2 * poll_s``, ``R``
  is sent once (the indicators that send on request answer it with one line), and listening
  resumes. A host that fell behind reads several lines at once; every one of them is taken, in
  order (the transport hands out only the first reading of a read, so the others wait in
  :class:`_OneReadingPerRead`): dropping them could drop the unstable line that breaks a run.

**Tare and zero.** MT-SICS and A&D get ``T`` / ``Z`` and the adapter waits up to
``command_timeout_s`` for the acknowledgement (``T S <tare> g`` / ``Z A``; A&D's ACK byte — an
A&D balance set to acknowledge twice sends a second ACK once done, which the next read skips).
Neither format says gross or net in its weight lines, so the adapter remembers: net after an
acknowledged tare, gross after an acknowledged zero (zeroing clears the tare on these
balances). The continuous format has **no** tare or zero: there is no command common to these
indicators (Kern's KFB-TM takes ``T``/``Z`` and answers nothing; General Measure's M02 takes
``ZERO ON`` and answers ``YES``/``NO?``; most take none), and a command that is never
acknowledged cannot be trusted, so :meth:`SerialScale.tare` and :meth:`SerialScale.zero` raise
``ScaleFault("unsupported")``. Use the indicator's keys; its lines then say ``NT`` or ``GS``,
which the adapter reports as ``is_net``.

**Errors.** Overload raises :class:`~valuation_terminal.scale.ScaleOverload` at once, underload
``ScaleFault("underload")`` at once. An error the scale reports (MT-SICS ``ES``/``ET``/``EL``,
A&D ``EC,Exx``, a weight error, a unit with no gram value) raises
:class:`~valuation_terminal.scale.ScaleFault` with the codec's ``kind``; a busy reply (``S I``)
is polled through and becomes ``ScaleFault("busy")`` only if it lasts until the timeout. A poll
that gets no reply is retried until ``timeout_s``, then
:class:`~valuation_terminal.scale.ScaleUnstable`. A pulled adapter raises
:class:`~valuation_terminal.scale.ScaleUnavailable`; the transport reopens the port on a later
call once it is back.

Example:
    >>> scale = SerialScale.open("/dev/ttyUSB0", "sics")
    >>> scale.stable_weight(timeout_s=5.0)
    StableWeight(grams=1234.5, milligrams=1234500, is_net=False, readings=3)
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Literal, get_args

from firmware_bridge.codecs import scales as codec
from firmware_bridge.codecs.base import Decoder, Garbage
from firmware_bridge.errors import BoardTimeout, BridgeError, Unavailable
from firmware_bridge.transport import SerialTransport
from valuation_terminal.scale import (
    Scale,
    ScaleError,
    ScaleFault,
    ScaleOverload,
    ScaleUnavailable,
    ScaleUnstable,
    StableWeight,
)

__all__ = ["ScaleFormat", "SerialScale", "describe", "read_command"]

log = logging.getLogger(__name__)

ScaleFormat = Literal["and", "continuous", "sics"]
"""The line format a scale speaks (``linli scale read --format``)."""


def _is_reading(event: codec.ScaleEvent) -> bool:
    return isinstance(event, codec.ScaleReading | codec.ScaleFault)


def _is_acknowledgement(event: codec.ScaleEvent) -> bool:
    return isinstance(event, codec.CommandAck | codec.ScaleFault)


class SerialScale:
    """A weighing scale on a serial port, as the valuation terminal's :class:`Scale` port.

    Wiring: the scale's RS232 port (TxD, RxD, GND) to a USB serial adapter on the terminal;
    the scale set to the same baud rate (most ship at 9600 8N1) and, for MT-SICS and A&D, to
    answer commands; a continuous-format indicator to stream (or to answer ``R``).

    Args:
        transport: the serial port (not yet open is fine: the first read opens it).
        fmt: ``and`` (A&D standard format), ``continuous`` (``ST,GS,+0001.234kg`` indicators)
            or ``sics`` (Mettler Toledo MT-SICS).
        agree: how many consecutive stable readings must agree.
        tolerance_mg: how far apart (largest minus smallest) agreeing readings may be.
        poll_s: time between polls (``SI``/``Q``); the continuous format sends ``R`` after
            ``2 * poll_s`` of silence.
        reply_timeout_s: how long one poll waits for its reply.
        command_timeout_s: how long tare and zero wait for the acknowledgement (a balance
            waits for a stable load before it tares).

    Example:
        >>> scale = SerialScale(SerialTransport("/dev/ttyUSB0", baudrate=9600), "and")
        >>> scale.tare()
        >>> scale.stable_weight().is_net
        True
    """

    def __init__(
        self,
        transport: SerialTransport,
        fmt: ScaleFormat,
        *,
        agree: int = 3,
        tolerance_mg: int = 2000,
        poll_s: float = 0.1,
        reply_timeout_s: float = 0.5,
        command_timeout_s: float = 5.0,
    ) -> None:
        if fmt not in get_args(ScaleFormat):
            raise ValueError(f"scale format must be one of {get_args(ScaleFormat)}, got {fmt!r}")
        if agree < 1:
            raise ValueError(f"agree must be at least 1, got {agree}")
        if tolerance_mg < 0:
            raise ValueError(f"tolerance_mg must not be negative, got {tolerance_mg}")
        self.transport = transport
        self.fmt: ScaleFormat = fmt
        self.agree = agree
        self.tolerance_mg = tolerance_mg
        self.poll_s = poll_s
        self.reply_timeout_s = reply_timeout_s
        self.command_timeout_s = command_timeout_s
        decoder = codec.FORMATS[fmt]()
        self._stream = _OneReadingPerRead(decoder) if fmt == "continuous" else None
        self._decoder: Decoder[codec.ScaleEvent] = self._stream or decoder
        self._is_net = False  # what tare/zero left; for formats whose lines do not say

    @classmethod
    def open(
        cls,
        url: str,
        fmt: ScaleFormat,
        *,
        baudrate: int = 9600,
        agree: int = 3,
        tolerance_mg: int = 2000,
        poll_s: float = 0.1,
    ) -> SerialScale:
        """Open the port at ``url`` and return the scale on it (options as for the class).

        Raises:
            ScaleUnavailable: the port cannot be opened.

        Example:
            >>> scale = SerialScale.open("/dev/ttyUSB0", "continuous", poll_s=0.2)
        """
        transport = SerialTransport(url, baudrate=baudrate)
        try:
            transport.open()
        except Unavailable as exc:
            raise ScaleUnavailable(str(exc)) from exc
        return cls(transport, fmt, agree=agree, tolerance_mg=tolerance_mg, poll_s=poll_s)

    # --- the port ---------------------------------------------------------------------------

    def stable_weight(self, timeout_s: float = 10.0) -> StableWeight:
        """Poll (or listen) until ``agree`` consecutive stable readings agree; return their median.

        Raises:
            ScaleUnstable: no agreeing stable readings within ``timeout_s`` (or no reply at all).
            ScaleOverload: the scale reported an overload.
            ScaleFault: the scale reported an error or an underload, or stayed busy.
            ScaleUnavailable: the port is gone (unplugged adapter).
        """
        deadline = time.monotonic() + timeout_s
        window: list[tuple[int, bool]] = []  # (milligrams, is_net) of consecutive stable readings
        heard = 0
        busy: codec.ScaleFault | None = None
        last: codec.ScaleReading | None = None
        fresh = True
        while True:
            started = time.monotonic()
            remaining = deadline - started
            if remaining <= 0:
                raise self._timed_out(timeout_s, heard, busy, last)
            event = self._read(remaining, fresh)
            fresh = False
            if isinstance(event, codec.ScaleFault):
                heard += 1
                if event.kind != "busy":
                    log.warning(
                        "scale on %s reports %s: %s", self.transport.url, event.kind, event.detail
                    )
                    raise ScaleFault(event.kind, event.detail)
                busy = event
                window.clear()
            elif isinstance(event, codec.ScaleReading):
                heard += 1
                busy = None
                last = event
                weight = self._take(event, window)
                if weight is not None:
                    log.debug(
                        "scale on %s stable at %d mg (net %s) over %d readings",
                        self.transport.url,
                        weight.milligrams,
                        weight.is_net,
                        weight.readings,
                    )
                    return weight
            if self.fmt != "continuous":
                pause = min(started + self.poll_s, deadline) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    def tare(self) -> None:
        """Tare the load on the pan; later weights are net.

        Raises:
            ScaleFault: refused (``busy``/``unstable`` load, ``range``), not acknowledged in time
                (``timeout``), or ``unsupported`` (continuous format).
            ScaleUnavailable: the port is gone.
        """
        self._command("T")
        self._is_net = True

    def zero(self) -> None:
        """Zero the empty pan; later weights are gross (zeroing clears a tare).

        Raises:
            ScaleFault: as for :meth:`tare`.
            ScaleUnavailable: the port is gone.
        """
        self._command("Z")
        self._is_net = False

    def close(self) -> None:
        """Release the port."""
        self.transport.close()

    # --- the wire ---------------------------------------------------------------------------

    def _read(self, remaining: float, fresh: bool) -> codec.ScaleEvent | None:
        """One reading (or fault) from the scale, or ``None`` when the poll went unanswered."""
        try:
            if self.fmt == "sics":
                return self._exchange(codec.sics_command("SI"), remaining)
            if self.fmt == "and":
                return self._exchange(codec.and_command("Q"), remaining)
            silence = min(2 * self.poll_s, remaining)
            held = None if fresh or self._stream is None else self._stream.next_held()
            if held is not None:
                return held  # a line that came in the same read as the last one
            try:
                if fresh:  # an empty request: flush what was streamed while nobody listened
                    return self.transport.exchange(b"", self._decoder, _is_reading, silence)
                return self.transport.listen(self._decoder, _is_reading, silence)
            except BoardTimeout:
                log.debug("no line from %s within %.2f s: sending R", self.transport.url, silence)
            remaining -= silence
            if remaining <= 0:
                return None
            return self._exchange(codec.continuous_request(), remaining)
        except Unavailable as exc:
            raise ScaleUnavailable(str(exc)) from exc

    def _exchange(self, request: bytes, remaining: float) -> codec.ScaleEvent | None:
        timeout_s = min(self.reply_timeout_s, remaining)
        try:
            return self.transport.exchange(request, self._decoder, _is_reading, timeout_s)
        except BoardTimeout:
            log.debug(
                "no reply from %s to %r within %.2f s", self.transport.url, request, timeout_s
            )
            return None

    def _take(
        self, reading: codec.ScaleReading, window: list[tuple[int, bool]]
    ) -> StableWeight | None:
        """Add one reading to the agreeing window; the weight once ``agree`` readings agree."""
        if reading.status == "overload":
            log.info("scale on %s overloaded: %r", self.transport.url, reading.raw)
            raise ScaleOverload(f"the load is above the scale's capacity ({reading.raw!r})")
        if reading.status == "underload" or reading.milligrams is None:
            raise ScaleFault("underload", f"the scale reads below its range ({reading.raw!r})")
        if reading.status == "unstable":
            window.clear()
            return None
        is_net = self._is_net if reading.is_net is None else reading.is_net
        if window and window[-1][1] != is_net:
            window.clear()
        window.append((reading.milligrams, is_net))
        del window[: -self.agree]
        while _spread(window) > self.tolerance_mg:
            del window[0]
        if len(window) < self.agree:
            return None
        milligrams = statistics.median_low(mg for mg, _ in window)
        return StableWeight.from_milligrams(milligrams, is_net=is_net, readings=len(window))

    def _timed_out(
        self,
        timeout_s: float,
        heard: int,
        busy: codec.ScaleFault | None,
        last: codec.ScaleReading | None,
    ) -> ScaleError:
        if busy is not None:
            return ScaleFault("busy", f"still busy after {timeout_s:g} s ({busy.detail})")
        if heard == 0:
            return ScaleUnstable(
                f"no reply from the scale on {self.transport.url} within {timeout_s:g} s "
                f"(is it on, set to the {self.fmt} format at {self.transport.baudrate} baud?)"
            )
        shown = "" if last is None else f"; last reading {last.raw.decode('ascii', 'replace')!r}"
        return ScaleUnstable(
            f"no stable weight within {timeout_s:g} s: {self.agree} consecutive stable readings "
            f"within {self.tolerance_mg} mg never came ({heard} readings{shown})"
        )

    def _command(self, name: Literal["T", "Z"]) -> None:
        what = "tare" if name == "T" else "zero"
        if self.fmt == "continuous":
            raise ScaleFault(
                "unsupported",
                f"the continuous format has no {what} command: use the indicator's key",
            )
        request = codec.sics_command(name) if self.fmt == "sics" else codec.and_command(name)
        try:
            event = self.transport.exchange(
                request, self._decoder, _is_acknowledgement, self.command_timeout_s
            )
        except BoardTimeout as exc:
            raise ScaleFault(
                "timeout", f"{what} not acknowledged within {self.command_timeout_s:g} s"
            ) from exc
        except Unavailable as exc:
            raise ScaleUnavailable(str(exc)) from exc
        if isinstance(event, codec.ScaleFault):
            log.warning("scale on %s refused %s: %s", self.transport.url, what, event.detail)
            raise ScaleFault(event.kind, f"{what} refused: {event.detail}")
        log.info("scale on %s: %s done (%r)", self.transport.url, what, event.raw)


class _OneReadingPerRead:
    """A streaming scale's decoder that hands the transport one reading per read, holding the rest.

    The transport returns the first reading the bytes of one read complete and drops the others.
    A host that fell behind an indicator streaming ten lines a second reads several lines at
    once, and the dropped ones may hold the unstable line that must break a run of agreeing
    readings: ``ST 1235 g``, then ``ST 1236 g | US 1251 g | ST 1234 g`` in one read, then
    ``ST 1235 g`` made 1235 g a weight although the item was touched in between
    (``tests/data/scale_streams/line-noise.continuous``). Held events come out first on the
    next read (:meth:`next_held`); a reset (each new exchange) drops them with the stale input.
    """

    def __init__(self, decoder: Decoder[codec.ScaleEvent]) -> None:
        self._decoder = decoder
        self._held: deque[codec.ScaleEvent | Garbage] = deque()
        self.max_buffer = decoder.max_buffer

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete line (held events are whole lines already decoded)."""
        return self._decoder.buffered

    def reset(self) -> None:
        """Drop the partial line and every held event."""
        self._decoder.reset()
        self._held.clear()

    def feed(self, data: bytes) -> list[codec.ScaleEvent | Garbage]:
        """Events up to and including the first reading ``data`` completes (or held before)."""
        self._held.extend(self._decoder.feed(data))
        return self._release()

    def next_held(self) -> codec.ScaleEvent | None:
        """The next reading (or fault) that came with an earlier read, if any."""
        for event in self._release():
            if not isinstance(event, Garbage) and _is_reading(event):
                return event
        return None

    def _release(self) -> list[codec.ScaleEvent | Garbage]:
        out: list[codec.ScaleEvent | Garbage] = []
        while self._held:
            event = self._held.popleft()
            out.append(event)
            if not isinstance(event, Garbage) and _is_reading(event):
                break
        return out


def _spread(window: list[tuple[int, bool]]) -> int:
    values = [mg for mg, _ in window]
    return max(values) - min(values) if values else 0


# --- installer tool --------------------------------------------------------------------------


def describe(weight: StableWeight) -> str:
    """One line for an installer: ``1234.5 g (gross, stable over 3 readings)``.

    Example:
        >>> describe(StableWeight.from_milligrams(1234500, is_net=False, readings=3))
        '1234.5 g (gross, stable over 3 readings)'
    """
    grams = f"{weight.milligrams / 1000:.3f}".rstrip("0").rstrip(".")
    mode = "net" if weight.is_net else "gross"
    return f"{grams} g ({mode}, stable over {weight.readings} readings)"


def read_command(args: argparse.Namespace) -> int:
    """``linli scale read``: print ``--count`` stable weights, one line each.

    Returns 0 when every weight was read, 1 when the scale failed (one line on stderr),
    2 when the port cannot be opened.
    """
    transport = SerialTransport(args.port, baudrate=args.baudrate)
    try:
        transport.open()
    except BridgeError as exc:
        print(f"cannot use {args.port}: {exc}", file=sys.stderr)
        return 2
    scale = SerialScale(transport, args.format)
    try:
        for _ in range(args.count):
            print(describe(scale.stable_weight()), flush=True)
    except ScaleError as exc:
        print(f"scale on {args.port}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        scale.close()
    return 0


if TYPE_CHECKING:

    def _is_a_scale(scale: SerialScale) -> Scale:
        return scale  # mypy proves SerialScale implements the port
