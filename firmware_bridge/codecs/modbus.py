"""Waveshare "Modbus RTU Relay" boards: a sans-I/O Modbus RTU codec (8 relays, 8 inputs).

The board hangs on an RS485 bus (default 9600 8N1, unit address 1). Relay channel ``n``
(0..7, printed CH1..CH8) is coil ``n``; digital input ``n`` (DI1..DI8, the door switches) is
discrete input ``n``. What the codec speaks:

- FC01 read relays (coils ``0x0000..0x0007``), FC02 read inputs (``0x0000..0x0007``);
- FC05 write one relay (value ``FF00`` on, ``0000`` off); address ``0x00FF`` = all relays;
- FC05 at ``0x0200 + channel`` = hardware-timed pulse ("flash on"), value in 100 ms units;
  ``0x0400 + channel`` = "flash off" (the inverse pulse).

Frames are ``unit, function, data..., crc_lo, crc_hi`` (CRC-16/MODBUS: poly 0xA001 reflected,
init 0xFFFF, low byte first). On the wire only silence (3.5 character times) separates frames;
the transport keeps that silence, and the decoders here frame by function code instead:
FC01/FC02 reply = ``unit fc byte_count data... crc`` (5 + byte_count), FC05 reply = the 8-byte
echo, exception = ``unit fc|0x80 code crc`` (5). A frame whose CRC fails loses one byte as
:class:`Garbage` and decoding restarts at the next offset.

Example:
    >>> flash_on(1, 0, 200).hex(" ")
    '01 05 02 00 00 02 4d b3'
    >>> ResponseDecoder().feed(bytes.fromhex("ff 01 01 01 41 91 b8"))[-1].bits[:8]
    (True, False, False, False, False, False, True, False)

Quirks (each with the bytes that show it, and a test in ``tests/test_codec_modbus.py``):

- **Local echo looks like a reply.** An FC05 request and the board's reply are byte-identical
  (``01 05 02 00 00 02 4D B3`` both ways), so a USB-RS485 adapter that echoes what it sends makes
  the host "see" a reply from a dead board. Disable local echo; the codec cannot tell them apart.
  An echoed FC01/FC02 *request* (``01 01 00 00 00 08 3D CC``) never decodes as a reply: its
  byte count ``00`` is impossible, so it comes out as Garbage.
- **Noise before a reply.** One stray byte at bus turnaround (``FF``) before
  ``01 05 02 00 00 02 4D B3`` makes ``FF 01 05 ...`` look like the start of an FC01 reply of
  10 bytes; the transport would wait for a byte that never comes. While the head frame is
  incomplete the decoder therefore also looks for complete, CRC-valid frames running back to back
  up to the last byte received; if there are any, the bytes before them are Garbage. (A CRC-valid
  coincidence inside a longer, still incomplete frame has odds near 2**-16; replies of this board
  family are at most 8 bytes long.) A transport that observes the silence may also call
  :meth:`ResponseDecoder.flush`, which treats an incomplete head frame as truncated.
- **Addresses above 247.** Look-alike boards answer at unit 255 by default
  (``FF 02 01 01 51 A0``): the decoders accept any unit byte; the encoders refuse units outside
  the specification's 1..247 (0 = broadcast, only for writes).
- **Published CRCs are not always right.** Public copies of the examples carry CRCs pasted from a
  neighbouring line, e.g. ``01 05 02 00 00 05 8D B0`` (the CRC of the 700 ms frame; the 500 ms
  frame is ``01 05 02 00 00 05 0C 71``), and a vendor table prints the count of
  ``0B 01 00 00 00 0A BC A7`` as ``0x10``. The CRC is the arbiter; golden vectors are checked by it.
- **Silence is counted in 11-bit characters.** The specification counts an RTU character as 11
  bits even on 8N1 lines (10 bits), so :func:`silence_s` gives 4.01 ms at 9600 baud where a 10-bit
  count gives 3.65 ms; Open-Locker measured that a second board on the bus timed out on every read
  without a pause, and worked with 5 ms. Transports add their own margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeAlias, TypeVar

from firmware_bridge.codecs.base import Decoder, Garbage
from firmware_bridge.errors import CommandError

__all__ = [
    "ALL_RELAYS",
    "CHANNELS",
    "COIL_OFF",
    "COIL_ON",
    "FC_READ_COILS",
    "FC_READ_INPUTS",
    "FC_WRITE_COIL",
    "FC_WRITE_COILS",
    "FC_WRITE_REGISTERS",
    "FLASH_OFF_BASE",
    "FLASH_ON_BASE",
    "FLASH_UNIT_MS",
    "MAX_BUFFER",
    "MAX_FRAME",
    "BitsReply",
    "CoilWritten",
    "ExceptionReply",
    "Request",
    "RequestDecoder",
    "Response",
    "ResponseDecoder",
    "all_off",
    "all_on",
    "bits_response",
    "coil_written_response",
    "crc16",
    "exception_response",
    "flash_off",
    "flash_on",
    "read_inputs",
    "read_relays",
    "silence_s",
    "wire_time_s",
    "with_crc",
    "write_relay",
]

FC_READ_COILS: Final = 0x01
FC_READ_INPUTS: Final = 0x02
FC_WRITE_COIL: Final = 0x05
FC_WRITE_COILS: Final = 0x0F
"""Write multiple coils: framed by :class:`RequestDecoder` so a simulator can refuse it."""
FC_WRITE_REGISTERS: Final = 0x10
"""Write multiple registers: framed by :class:`RequestDecoder` so a simulator can refuse it."""

ALL_RELAYS: Final = 0x00FF
FLASH_ON_BASE: Final = 0x0200
FLASH_OFF_BASE: Final = 0x0400
CHANNELS: Final = 8
FLASH_UNIT_MS: Final = 100
COIL_ON: Final = 0xFF00
COIL_OFF: Final = 0x0000

MAX_FRAME: Final = 256
"""The largest RTU frame (Modbus over Serial Line V1.02, 2.5.1): no decoder frames a longer one."""
MAX_BUFFER: Final = 2 * MAX_FRAME
MAX_READ_BITS: Final = 2000
"""The most bits FC01/FC02 may ask for (Modbus Application Protocol V1.1b3, 6.1/6.2)."""
MAX_BYTE_COUNT: Final = MAX_READ_BITS // 8
"""The largest byte count of an FC01/FC02 reply (250)."""
MAX_UNIT: Final = 247
BROADCAST: Final = 0
EXCEPTION_FLAG: Final = 0x80
MAX_FLASH_UNITS: Final = 0xFFFF

_EXCEPTION_FUNCTIONS: Final = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F, 0x10})
"""Functions whose exception reply the host decoder frames (0x83 etc.); others are noise."""
_MIN_FRAME: Final = 5
_SILENCE_FLOOR_S: Final = 0.00175
_SILENCE_FLOOR_ABOVE_BAUD: Final = 19200
_BITS_PER_CHARACTER: Final = 11
_BITS_PER_BYTE_8N1: Final = 10

_EXCEPTION_MEANINGS: Final = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes | bytearray) -> int:
    """CRC-16/MODBUS of ``data`` (poly 0xA001 reflected, init 0xFFFF, no final XOR).

    Example:
        >>> hex(crc16(bytes.fromhex("01 05 02 00 00 02")))
        '0xb34d'
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first, as it goes on the wire.

    Example:
        >>> with_crc(bytes.fromhex("01 05 02 00 00 02")).hex(" ")
        '01 05 02 00 00 02 4d b3'
    """
    return bytes(body) + crc16(body).to_bytes(2, "little")


def _crc_ok(frame: bytes | bytearray) -> bool:
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _checked(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def _frame(unit: int, function: int, address: int, value: int) -> bytes:
    return with_crc(bytes((unit, function)) + address.to_bytes(2, "big") + value.to_bytes(2, "big"))


# --- host side: requests -------------------------------------------------------------------


def _read(unit: int, function: int, start: int, count: int) -> bytes:
    _checked("unit", unit, 1, MAX_UNIT)  # a read needs an answer: never broadcast
    _checked("start", start, 0, CHANNELS - 1)
    _checked("count", count, 1, CHANNELS - start)
    return _frame(unit, function, start, count)


def read_relays(unit: int, start: int = 0, count: int = CHANNELS) -> bytes:
    """FC01: read ``count`` relay states from channel ``start`` (answered by a :class:`BitsReply`).

    Args:
        unit: board address 1..247 (a read is never broadcast).
        start: first channel 0..7.
        count: channels to read, 1..8, not past channel 7.

    Raises:
        CommandError: an argument out of range (``fault == "caller"``).

    Example:
        >>> read_relays(1).hex(" ")
        '01 01 00 00 00 08 3d cc'
    """
    return _read(unit, FC_READ_COILS, start, count)


def read_inputs(unit: int, start: int = 0, count: int = CHANNELS) -> bytes:
    """FC02: read ``count`` digital inputs (door switches) from input ``start``.

    Args:
        unit: board address 1..247 (a read is never broadcast).
        start: first input 0..7.
        count: inputs to read, 1..8, not past input 7.

    Raises:
        CommandError: an argument out of range (``fault == "caller"``).

    Example:
        >>> read_inputs(1).hex(" ")
        '01 02 00 00 00 08 79 cc'
    """
    return _read(unit, FC_READ_INPUTS, start, count)


def _write(unit: int, address: int, value: int) -> bytes:
    _checked("unit", unit, BROADCAST, MAX_UNIT)
    return _frame(unit, FC_WRITE_COIL, address, value)


def write_relay(unit: int, channel: int, on: bool) -> bytes:
    """FC05: switch one relay on (``FF00``) or off (``0000``); the board echoes the frame.

    Args:
        unit: board address 1..247, or 0 to broadcast (no board answers a broadcast).
        channel: relay 0..7.
        on: energise the relay.

    Raises:
        CommandError: an argument out of range (``fault == "caller"``).

    Example:
        >>> write_relay(1, 0, True).hex(" ")
        '01 05 00 00 ff 00 8c 3a'
    """
    _checked("channel", channel, 0, CHANNELS - 1)
    return _write(unit, channel, COIL_ON if on else COIL_OFF)


def _flash_units(ms: int) -> int:
    _checked("ms", ms, 1, MAX_FLASH_UNITS * FLASH_UNIT_MS)
    return -(-ms // FLASH_UNIT_MS)


def flash_on(unit: int, channel: int, ms: int) -> bytes:
    """FC05 at ``0x0200 + channel``: the board energises the relay for ``ms`` and drops it itself.

    The pulse is timed by the board, so a crash of the host cannot leave a latch energised.
    The value is ``ceil(ms / 100)`` (100 ms units, at least 1, at most 0xFFFF): 150 ms gives 200 ms.

    Args:
        unit: board address 1..247, or 0 to broadcast.
        channel: relay 0..7.
        ms: pulse length in milliseconds, 1..6 553 500.

    Raises:
        CommandError: an argument out of range (``fault == "caller"``).

    Example:
        >>> flash_on(1, 0, 200).hex(" ")
        '01 05 02 00 00 02 4d b3'
    """
    _checked("channel", channel, 0, CHANNELS - 1)
    return _write(unit, FLASH_ON_BASE + channel, _flash_units(ms))


def flash_off(unit: int, channel: int, ms: int = FLASH_UNIT_MS) -> bytes:
    """FC05 at ``0x0400 + channel``: the inverse pulse, relay *off* for ``ms``, then on again.

    As the Waveshare protocol describes it ("flash off"); a relay left energised afterwards is
    rarely what a latch wants, so the locker uses :func:`flash_on`. This exists for the simulator,
    the CLI and bench tests. ``ms`` is rounded up to 100 ms units like :func:`flash_on`; the
    default is one unit. Verify the behaviour on the bench before relying on it.

    Args:
        unit: board address 1..247, or 0 to broadcast.
        channel: relay 0..7.
        ms: off time in milliseconds, 1..6 553 500 (default 100).

    Raises:
        CommandError: an argument out of range (``fault == "caller"``).

    Example:
        >>> flash_off(1, 0).hex(" ")
        '01 05 04 00 00 01 0d 3a'
    """
    _checked("channel", channel, 0, CHANNELS - 1)
    return _write(unit, FLASH_OFF_BASE + channel, _flash_units(ms))


def all_off(unit: int) -> bytes:
    """FC05 at ``0x00FF`` with ``0000``: every relay off (Open-Locker sends it at start-up).

    Example:
        >>> all_off(1).hex(" ")
        '01 05 00 ff 00 00 fd fa'
    """
    return _write(unit, ALL_RELAYS, COIL_OFF)


def all_on(unit: int) -> bytes:
    """FC05 at ``0x00FF`` with ``FF00``: every relay on (bench use only: it opens every door).

    Example:
        >>> all_on(1).hex(" ")
        '01 05 00 ff ff 00 bc 0a'
    """
    return _write(unit, ALL_RELAYS, COIL_ON)


# --- host side: replies --------------------------------------------------------------------


@dataclass(frozen=True)
class BitsReply:
    """An FC01 (relays) or FC02 (inputs) reply.

    ``bits`` holds every bit sent (``byte_count * 8``): bit 0 (LSB of the first data byte) is
    the first address asked for. The caller trims it to the count it asked for.
    """

    unit: int
    function: int
    bits: tuple[bool, ...]
    raw: bytes


@dataclass(frozen=True)
class CoilWritten:
    """An FC05 reply: the echo of the write (``address``/``value`` as written, flash units too)."""

    unit: int
    address: int
    value: int
    raw: bytes


@dataclass(frozen=True)
class ExceptionReply:
    """The board refused a request; ``function`` is the refused function (0x80 bit cleared)."""

    unit: int
    function: int
    code: int
    raw: bytes

    @property
    def meaning(self) -> str:
        """The exception code in words (Modbus Application Protocol V1.1b3, section 7)."""
        return _EXCEPTION_MEANINGS.get(self.code, f"unknown exception code 0x{self.code:02X}")


Response: TypeAlias = BitsReply | CoilWritten | ExceptionReply
E = TypeVar("E")


class _Framer(Generic[E]):
    """Cuts frames out of a byte stream; subclasses say how long a frame is and what it means."""

    max_buffer: int = MAX_BUFFER
    _fixed_lengths: tuple[tuple[int, frozenset[int]], ...] = ()
    """(frame length, function codes) of the frames whose length the function code fixes."""
    _counted: tuple[frozenset[int], int, int] = (frozenset(), 0, 0)
    """(function codes, offset of the byte count, bytes besides the counted ones)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (always fewer than :data:`MAX_FRAME`)."""
        return len(self._buffer)

    def reset(self) -> None:
        """Drop whatever is buffered (before a new command)."""
        self._buffer.clear()

    def feed(self, data: bytes) -> list[E | Garbage]:
        """Take ``data``; return every frame it completes and every byte skipped, in order."""
        out: list[E | Garbage] = []
        start = 0
        while True:
            room = self.max_buffer - len(self._buffer)
            chunk = data[start : start + room]
            self._buffer += chunk
            start += len(chunk)
            self._drain(out, at_silence=False)
            if start >= len(data):
                return out

    def flush(self) -> list[E | Garbage]:
        """The line has been silent for 3.5 character times: nothing more belongs to a frame.

        A transport that watches the silence calls this; an incomplete head frame is then
        truncated, so it is dropped a byte at a time (as Garbage) until a frame decodes or the
        buffer is empty. Afterwards :attr:`buffered` is 0.
        """
        out: list[E | Garbage] = []
        self._drain(out, at_silence=True)
        return out

    def _length_at(self, buffer: bytearray, pos: int) -> int | str | None:
        """Length of the frame at ``pos``: None while unknown, a str saying why it is no frame."""
        raise NotImplementedError

    def _decode(self, frame: bytes) -> E:
        raise NotImplementedError

    def _resync(self, first: int) -> int | None:
        """Offset >= ``first`` where complete, CRC-valid frames run back to back to the end.

        Used while the head frame is incomplete: bytes that arrived after the real frames are
        what a reply looks like when noise came first (the board then falls silent).
        """
        start = self._frame_ending_at(first, len(self._buffer))
        while start is not None:
            earlier = self._frame_ending_at(first, start)
            if earlier is None:
                return start
            start = earlier
        return None

    def _frame_ending_at(self, first: int, end: int) -> int | None:
        """The smallest offset >= ``first`` of a CRC-valid frame ending exactly at ``end``.

        Only offsets whose function code (and byte count) give exactly that length are
        candidates; ``bytearray.find`` jumps to them, so noise costs little.
        """
        buffer = self._buffer
        candidates = [
            end - length
            for length, functions in self._fixed_lengths
            if end - length >= first and buffer[end - length + 1] in functions
        ]
        functions, count_at, overhead = self._counted
        for function in functions:
            found = buffer.find(function, first + 1, end - _MIN_FRAME + 2)
            while found >= 0:
                pos = found - 1
                if pos + count_at < end and pos + overhead + buffer[pos + count_at] == end:
                    candidates.append(pos)
                found = buffer.find(function, found + 1, end - _MIN_FRAME + 2)
        for pos in sorted(candidates):
            if self._length_at(buffer, pos) == end - pos and _crc_ok(buffer[pos:end]):
                return pos
        return None

    def _drain(self, out: list[E | Garbage], *, at_silence: bool) -> None:
        buffer = self._buffer
        skipped = _Skipped(buffer, out)
        pos = 0
        while pos < len(buffer):
            length = self._length_at(buffer, pos)
            if isinstance(length, str):
                skipped.add(pos, pos + 1, length)
                pos += 1
                continue
            if length is None or pos + length > len(buffer):
                resync = self._resync(pos + 1)
                if resync is not None:
                    skipped.add(pos, resync, "noise before a complete frame")
                    pos = resync
                elif at_silence:
                    skipped.add(pos, pos + 1, "frame truncated by silence")
                    pos += 1
                else:
                    break
                continue
            frame = bytes(buffer[pos : pos + length])
            if not _crc_ok(frame):
                skipped.add(pos, pos + 1, "CRC mismatch")
                pos += 1
                continue
            skipped.emit()
            out.append(self._decode(frame))
            pos += length
        skipped.emit()
        del buffer[:pos]


class _Skipped:
    """Collects skipped bytes; adjacent skips for the same reason become one Garbage."""

    def __init__(self, buffer: bytearray, out: list[Any]) -> None:
        self._buffer = buffer
        self._out = out
        self._start = self._end = 0
        self._reason = ""

    def add(self, start: int, end: int, reason: str) -> None:
        if self._end > self._start and (start, reason) != (self._end, self._reason):
            self.emit()
        if self._end == self._start:
            self._start, self._reason = start, reason
        self._end = end

    def emit(self) -> None:
        if self._end == self._start:
            return
        data = bytes(self._buffer[self._start : self._end])
        last = self._out[-1] if self._out else None
        if isinstance(last, Garbage) and last.reason == self._reason:
            self._out[-1] = Garbage(last.data + data, self._reason)
        else:
            self._out.append(Garbage(data, self._reason))
        self._start = self._end


class ResponseDecoder(_Framer[Response]):
    """Host side: the board's replies (FC01/FC02 bits, FC05 echo, exceptions) out of a byte stream.

    Never raises on any input; holds fewer than :data:`MAX_FRAME` bytes between calls.

    Example:
        >>> decoder = ResponseDecoder()
        >>> decoder.feed(bytes.fromhex("01 05 02 00"))
        []
        >>> decoder.feed(bytes.fromhex("00 02 4d b3"))[0].address == FLASH_ON_BASE
        True
    """

    _fixed_lengths = (
        (8, frozenset({FC_WRITE_COIL})),
        (5, frozenset(f | EXCEPTION_FLAG for f in _EXCEPTION_FUNCTIONS)),
    )
    _counted = (frozenset({FC_READ_COILS, FC_READ_INPUTS}), 2, 5)

    def _length_at(self, buffer: bytearray, pos: int) -> int | str | None:
        if len(buffer) - pos < 2:
            return None
        function = buffer[pos + 1]
        if function in (FC_READ_COILS, FC_READ_INPUTS):
            if len(buffer) - pos < 3:
                return None
            byte_count = buffer[pos + 2]
            if not 1 <= byte_count <= MAX_BYTE_COUNT:
                return "byte count out of range"
            return 5 + byte_count
        if function == FC_WRITE_COIL:
            return 8
        if function & EXCEPTION_FLAG and function & ~EXCEPTION_FLAG in _EXCEPTION_FUNCTIONS:
            return 5
        return "unknown function code"

    def _decode(self, frame: bytes) -> Response:
        unit, function = frame[0], frame[1]
        if function & EXCEPTION_FLAG:
            return ExceptionReply(unit, function & ~EXCEPTION_FLAG, frame[2], frame)
        if function == FC_WRITE_COIL:
            address = int.from_bytes(frame[2:4], "big")
            return CoilWritten(unit, address, int.from_bytes(frame[4:6], "big"), frame)
        data = frame[3:-2]
        bits = tuple(bool(byte >> i & 1) for byte in data for i in range(8))
        return BitsReply(unit, function, bits, frame)


# --- device side (the relay-board simulator) -----------------------------------------------


@dataclass(frozen=True)
class Request:
    """A request as a board sees it.

    ``value`` is the count for FC01/FC02 (and the quantity for FC0F/FC10), the coil value for
    FC05 (``FF00``/``0000``, or 100 ms units at the flash addresses). ``unit`` 0 is a broadcast,
    which a board obeys without answering.
    """

    unit: int
    function: int
    address: int
    value: int
    raw: bytes

    @property
    def is_broadcast(self) -> bool:
        """True for unit 0: obey, never answer."""
        return self.unit == BROADCAST


class RequestDecoder(_Framer[Request]):
    """Device side: requests out of a byte stream (for the relay-board simulator).

    FC01, FC02 and FC05 are 8-byte requests. FC0F and FC10 are framed by their byte count so a
    simulator can answer them with an exception; any other function code is Garbage, byte-wise.

    Example:
        >>> RequestDecoder().feed(flash_on(1, 0, 200))[0].value
        2
    """

    _fixed_lengths = ((8, frozenset({FC_READ_COILS, FC_READ_INPUTS, FC_WRITE_COIL})),)
    _counted = (frozenset({FC_WRITE_COILS, FC_WRITE_REGISTERS}), 6, 9)

    def _length_at(self, buffer: bytearray, pos: int) -> int | str | None:
        if len(buffer) - pos < 2:
            return None
        function = buffer[pos + 1]
        if function in (FC_READ_COILS, FC_READ_INPUTS, FC_WRITE_COIL):
            return 8
        if function in (FC_WRITE_COILS, FC_WRITE_REGISTERS):
            if len(buffer) - pos < 7:
                return None
            byte_count = buffer[pos + 6]
            if not 1 <= byte_count <= MAX_FRAME - 9:
                return "byte count out of range"
            return 9 + byte_count
        return "unknown function code"

    def _decode(self, frame: bytes) -> Request:
        address = int.from_bytes(frame[2:4], "big")
        return Request(frame[0], frame[1], address, int.from_bytes(frame[4:6], "big"), frame)


def bits_response(unit: int, function: int, bits: Sequence[bool]) -> bytes:
    """An FC01/FC02 reply carrying ``bits`` (bit 0 = LSB of the first byte, padded with 0).

    Args:
        unit: the answering board's address 1..247.
        function: ``FC_READ_COILS`` or ``FC_READ_INPUTS``.
        bits: 1..2000 states, first address first.

    Raises:
        CommandError: an argument out of range (``fault == "caller"``).

    Example:
        >>> relays_0_and_6_on = [True, False, False, False, False, False, True]
        >>> bits_response(1, FC_READ_COILS, relays_0_and_6_on).hex(" ")
        '01 01 01 41 91 b8'
    """
    _checked("unit", unit, 1, MAX_UNIT)
    if function not in (FC_READ_COILS, FC_READ_INPUTS):
        raise CommandError(f"function must be FC01 or FC02, not {function!r}")
    if not 1 <= len(bits) <= MAX_READ_BITS:
        raise CommandError(f"1..{MAX_READ_BITS} bits fit a reply, not {len(bits)}")
    data = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            data[i // 8] |= 1 << (i % 8)
    return with_crc(bytes((unit, function, len(data))) + data)


def coil_written_response(unit: int, address: int, value: int) -> bytes:
    """The FC05 reply: an echo of the request's address and value.

    Example:
        >>> coil_written_response(1, FLASH_ON_BASE, 2) == flash_on(1, 0, 200)
        True
    """
    _checked("unit", unit, 1, MAX_UNIT)
    _checked("address", address, 0, 0xFFFF)
    _checked("value", value, 0, 0xFFFF)
    return _frame(unit, FC_WRITE_COIL, address, value)


def exception_response(unit: int, function: int, code: int) -> bytes:
    """An exception reply to ``function`` (sent as ``function | 0x80``) with ``code``.

    Example:
        >>> exception_response(1, 0x03, 0x02).hex(" ")
        '01 83 02 c0 f1'
    """
    _checked("unit", unit, 1, MAX_UNIT)
    _checked("function", function, 1, 0x7F)
    _checked("code", code, 1, 0xFF)
    return with_crc(bytes((unit, function | EXCEPTION_FLAG, code)))


# --- timing ---------------------------------------------------------------------------------


def silence_s(baudrate: int) -> float:
    """The inter-frame silence: 3.5 characters of 11 bits, at least 1.75 ms above 19200 baud.

    The Modbus serial-line specification (V1.02, 2.5.1.1) counts an RTU character as 11 bits
    (start, 8 data, parity or a second stop bit, stop) even when the line runs 8N1, and fixes the
    silence at 1.75 ms for baud rates above 19200.

    Example:
        >>> round(silence_s(9600) * 1000, 2)
        4.01
    """
    _checked("baudrate", baudrate, 1, 10_000_000)
    if baudrate > _SILENCE_FLOOR_ABOVE_BAUD:
        return _SILENCE_FLOOR_S
    return 3.5 * _BITS_PER_CHARACTER / baudrate


def wire_time_s(nbytes: int, baudrate: int) -> float:
    """How long ``nbytes`` take on an 8N1 line (10 bits a byte).

    Example:
        >>> round(wire_time_s(8, 9600) * 1000, 2)
        8.33
    """
    _checked("nbytes", nbytes, 0, 1 << 32)
    _checked("baudrate", baudrate, 1, 10_000_000)
    return nbytes * _BITS_PER_BYTE_8N1 / baudrate


if TYPE_CHECKING:  # both decoders satisfy the shared protocol
    _responses: Decoder[Response] = ResponseDecoder()
    _requests: Decoder[Request] = RequestDecoder()
