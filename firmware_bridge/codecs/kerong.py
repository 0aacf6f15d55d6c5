"""Kerong KR-CU16 / CU12 (v1) lock-control board: a sans-I/O codec for both ends of the bus.

Frame: ``STX(02) ADDR CMD [DATA...] ETX(03) SUM``; ``SUM`` is the low byte of the sum of every
earlier byte, STX included. ``ADDR``'s high nibble is the board (DIP switch, 0..15), its low
nibble the lock index 0..15; our API numbers locks 1..16 (lock 1 = nibble 0 = bit 0 of a mask).
Factory default 19200 8N1 (hardware.md, "Kerong KR-CU16"). Golden vectors and where each comes
from: ``tests/data/golden/kerong.json``.

Host side: the encoders (:func:`status`, :func:`unlock`, ...) build requests and
:class:`ReplyDecoder` turns what boards send into events. Device side (the board simulator):
:class:`RequestDecoder` and the reply encoders (:func:`status_reply`, ...).

Framing. ETX is not escaped and may appear inside data (a hook mask of ``0x0303`` is sent as
``03 03``), so a frame cannot be cut at the first ETX. A command whose length is known is cut
at that length (``35`` status reply: 9 bytes). A command whose frame is not established is cut
at the shortest candidate that ends in ETX + a valid SUM, at most :data:`MAX_FRAME` bytes long.
A complete valid frame that starts at a later STX wins over an incomplete frame, and over a
candidate of unknown length that it overlaps: a corrupted frame must not hold back or swallow
the good frame behind it. A bad frame is reported as :class:`Garbage` and decoding resumes at
the next STX after its start.

Quirks, each with the bytes that showed it (and a test in ``tests/test_codec_kerong.py``):

* ETX inside data: ``02 00 35 03 03 00 00 03 40`` is one 9-byte status reply (hooks
  ``0x0303``), not a 4-byte frame; cut by the known length.
* ``37`` is sent with two data bytes (set) or none (query), and a set whose data begins
  ``03`` and whose second byte equals the query's SUM is also a valid query:
  ``02 00 37 03 3C 03 7F`` (8280 ms on board 0) starts with ``02 00 37 03 3C``. A board cannot
  tell them apart, so :func:`set_energize_time` adds one 10 ms unit in that case (8290 ms).
* Order of ``37``'s two bytes: not established publicly. Default big-endian (one public
  implementation sends "high byte, low byte"); every encoder and decoder takes ``byteorder``.
  Verify on the bench.
* Reply to ``31`` (unlock), ``33``, ``39``: not established (one public client expects none,
  another a 9-byte frame). :class:`ReplyDecoder` accepts any well-formed frame with those
  commands as :class:`UnlockReply` and keeps its data. :func:`unlock_reply`'s
  ``02 ADDR 31 STATUS 03 SUM`` is the simulator's choice. Verify on the bench.
* Reply to ``32`` (all boards): one public implementation shows one 9-byte ``36`` frame per
  board, ``02 00 36 00 00 00 00 03 3B`` and ``02 10 36 00 00 00 00 03 4B``; decoded as
  :class:`OtherFrame` (command ``0x36``). Another implementation sends ``32`` to ADDR ``00``
  (``02 00 32 03 37``) instead of ``F0`` and reads a status-shaped reply. Verify on the bench.
* An RS-485 adapter that echoes what it sends makes our own ``02 00 31 03 36`` come back: it
  decodes as an :class:`UnlockReply` with empty data. Compare ``raw`` with what was sent.
* Public code carries wrong frames: ``02 10 30 03 3E`` (SUM should be ``45``) and
  ``02 0F 31 03 49`` (SUM fits ADDR ``13``); both decode as :class:`Garbage`.
* The 8-bit SUM catches any single changed byte of a frame, but not a change that leaves a
  shorter valid frame: ``02 00 37 03 3D 03 7C`` (a set) with its ADDR hit to ``01`` begins
  with ``02 01 37 03 3D``, a valid query of board 0; a 6-byte unlock reply whose SUM is ``03``
  (``02 CD 31 00 03 03``) with its data hit to ``03`` begins with the valid ``02 CD 31 03 03``.
* HOOK polarity (1 = locked in some implementations, 0 = locked in others) is not decided
  here: :meth:`StatusReply.hook` returns the bit as sent.

Example:
    >>> status(0).hex(" ")
    '02 00 30 03 35'
    >>> ReplyDecoder().feed(bytes.fromhex("ff 02 00 35 01 00 00 00 03 3b"))[1].hook(1)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from firmware_bridge.codecs.base import Garbage
from firmware_bridge.errors import CommandError

if TYPE_CHECKING:
    from firmware_bridge.codecs.base import Decoder

__all__ = [
    "ALL_BOARDS_ADDR",
    "CMD_DELAYED_UNLOCK",
    "CMD_RETURN_TIME",
    "CMD_SET_TIME",
    "CMD_STATUS",
    "CMD_STATUS_ALL",
    "CMD_UNLOCK",
    "CMD_UNLOCK_ALL",
    "ETX",
    "LOCKS_PER_BOARD",
    "MAX_BOARD",
    "MAX_BUFFER",
    "MAX_FRAME",
    "MIN_FRAME",
    "REPLY_STATUS",
    "REPLY_STATUS_ALL",
    "STX",
    "UNLOCK_FAILED",
    "UNLOCK_OK",
    "ByteOrder",
    "EnergizeTimeReply",
    "OtherFrame",
    "ReplyDecoder",
    "ReplyEvent",
    "Request",
    "RequestDecoder",
    "StatusReply",
    "UnlockReply",
    "checksum",
    "delayed_unlock",
    "energize_ms",
    "energize_time_reply",
    "query_energize_time",
    "set_energize_time",
    "status",
    "status_all",
    "status_reply",
    "unlock",
    "unlock_all",
    "unlock_reply",
    "wire_time_s",
]

ByteOrder = Literal["big", "little"]

STX: Final = 0x02
ETX: Final = 0x03

CMD_STATUS: Final = 0x30
CMD_UNLOCK: Final = 0x31
CMD_STATUS_ALL: Final = 0x32
CMD_UNLOCK_ALL: Final = 0x33
CMD_SET_TIME: Final = 0x37
CMD_RETURN_TIME: Final = 0x38
CMD_DELAYED_UNLOCK: Final = 0x39
REPLY_STATUS: Final = 0x35
REPLY_STATUS_ALL: Final = 0x36
"""Seen in public code as the per-board reply to ``32``; decoded as :class:`OtherFrame`."""

LOCKS_PER_BOARD: Final = 16
MAX_BOARD: Final = 15
"""DIP switches give 0..15; hardware.md reports up to 10 boards on one bus."""

MIN_FRAME: Final = 5
"""``STX ADDR CMD ETX SUM``."""
MAX_FRAME: Final = 16
"""The longest frame accepted. Known frames are at most 9 bytes; the rest is headroom for
replies not established publicly, bounded so that a corrupted frame is given up quickly."""
MAX_BUFFER: Final = 2 * MAX_FRAME

ALL_BOARDS_ADDR: Final = 0xF0
UNLOCK_OK: Final = 0x00
"""STATUS byte of :func:`unlock_reply` for an unlock carried out (the simulator's choice)."""
UNLOCK_FAILED: Final = 0x01
"""STATUS byte of :func:`unlock_reply` for an unlock refused (the simulator's choice)."""

_ENERGIZE_UNIT_MS: Final = 10
_MAX_UNITS: Final = 0xFFFF
_NOISE: Final = "noise before start of frame"
_SKIPPED: Final = "a complete frame starts at a later STX: skipped to it"

# Frame lengths by command where they are known; any other command is cut at the shortest
# candidate of MIN_FRAME..MAX_FRAME bytes. Host side: what boards send.
_REPLY_LENGTHS: Final[Mapping[int, tuple[int, ...]]] = {
    REPLY_STATUS: (9,),
    REPLY_STATUS_ALL: (9,),  # the one public example: 02 00 36 00 00 00 00 03 3B
    CMD_SET_TIME: (5, 7),  # an echo of our own query or set
    CMD_RETURN_TIME: (7,),  # an echo of a 5-byte 38 request is reported as Garbage
}
# Device side: what the host sends, and the replies of other boards on a shared bus.
_REQUEST_LENGTHS: Final[Mapping[int, tuple[int, ...]]] = {
    CMD_STATUS: (5,),
    CMD_UNLOCK: (5,),
    CMD_STATUS_ALL: (5,),
    CMD_UNLOCK_ALL: (5,),
    CMD_SET_TIME: (5, 7),
    CMD_RETURN_TIME: (5,),
    CMD_DELAYED_UNLOCK: (6,),
    REPLY_STATUS: (9,),
    REPLY_STATUS_ALL: (9,),
}
_ANY_LENGTH: Final = tuple(range(MIN_FRAME, MAX_FRAME + 1))


def checksum(data: bytes | bytearray) -> int:
    """The frame's SUM: the low byte of the sum of ``data`` (every byte before SUM).

    Example:
        >>> hex(checksum(bytes.fromhex("02 00 30 03")))
        '0x35'
    """
    return sum(data) & 0xFF


def wire_time_s(nbytes: int, baudrate: int) -> float:
    """Seconds that ``nbytes`` take on the wire at 8N1 (10 bits per byte).

    Raises:
        CommandError: ``nbytes`` is negative or ``baudrate`` not positive.

    Example:
        >>> round(wire_time_s(9, 19200) * 1000, 2)
        4.69
    """
    if nbytes < 0 or baudrate <= 0:
        raise CommandError(f"need nbytes >= 0 and baudrate > 0, got {nbytes}, {baudrate}")
    return nbytes * 10 / baudrate


# --- encoders ---------------------------------------------------------------------------------


def _int_in(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


def _board_addr(board: int) -> int:
    return _int_in("board", board, 0, MAX_BOARD) << 4


def _lock_addr(board: int, lock: int) -> int:
    return _board_addr(board) | (_int_in("lock", lock, 1, LOCKS_PER_BOARD) - 1)


def _frame(addr: int, command: int, data: bytes = b"") -> bytes:
    body = bytes((STX, addr, command)) + data + bytes((ETX,))
    return body + bytes((checksum(body),))


def _is_valid(buf: bytes | bytearray, start: int, length: int) -> bool:
    end = start + length
    return buf[end - 2] == ETX and buf[end - 1] == checksum(buf[start : end - 1])


def _energize_units(ms: int, minimum_ms: int) -> int:
    ms = _int_in("ms", ms, minimum_ms, _MAX_UNITS * _ENERGIZE_UNIT_MS)
    return -(-ms // _ENERGIZE_UNIT_MS)  # round up: the coil is driven at least ``ms``


def status(board: int) -> bytes:
    """Ask one board for its hook and item bits (answered by a :class:`StatusReply`).

    Raises:
        CommandError: ``board`` is not 0..15.

    Example:
        >>> status(1).hex(" ")
        '02 10 30 03 45'
    """
    return _frame(_board_addr(board), CMD_STATUS)


def status_all() -> bytes:
    """Ask every board on the bus (ADDR ``F0``, also board 15's own address); the reply is not
    established (one source shows a ``36`` frame per board). Verify on the bench.

    Example:
        >>> status_all().hex(" ")
        '02 f0 32 03 27'
    """
    return _frame(ALL_BOARDS_ADDR, CMD_STATUS_ALL)


def unlock(board: int, lock: int) -> bytes:
    """Pulse one lock (1..16) for the board's energize time.

    Raises:
        CommandError: ``board`` is not 0..15 or ``lock`` not 1..16.

    Example:
        >>> unlock(0, 1).hex(" ")
        '02 00 31 03 36'
    """
    return _frame(_lock_addr(board, lock), CMD_UNLOCK)


def unlock_all(board: int) -> bytes:
    """Pulse every lock of one board; the board fires them one after another.

    Raises:
        CommandError: ``board`` is not 0..15.

    Example:
        >>> unlock_all(0).hex(" ")
        '02 00 33 03 38'
    """
    return _frame(_board_addr(board), CMD_UNLOCK_ALL)


def set_energize_time(board: int, ms: int, *, byteorder: ByteOrder = "big") -> bytes:
    """Set how long the board drives a lock's coil, in 10 ms units rounded up.

    Quirk: when the two data bytes would make the frame's first five bytes a valid query
    (``02 00 37 03 3C 03 7F`` for 8280 ms on board 0 starts with the query ``02 00 37 03 3C``),
    one unit is added (8290 ms): the coil is still driven at least ``ms``.

    Args:
        board: 0..15.
        ms: 1..655350; rounded up to a multiple of 10.
        byteorder: order of the two data bytes; big-endian until a bench test says otherwise.

    Raises:
        CommandError: an argument out of range.

    Example:
        >>> set_energize_time(0, 500).hex(" ")
        '02 00 37 00 32 03 6e'
    """
    units = _energize_units(ms, 1)
    frame = _frame(_board_addr(board), CMD_SET_TIME, units.to_bytes(2, byteorder))
    if _is_valid(frame, 0, MIN_FRAME) and units < _MAX_UNITS:
        units += 1
        frame = _frame(_board_addr(board), CMD_SET_TIME, units.to_bytes(2, byteorder))
    return frame


def query_energize_time(board: int) -> bytes:
    """Ask a board for its energize time (``37`` without data).

    Raises:
        CommandError: ``board`` is not 0..15.

    Example:
        >>> query_energize_time(0).hex(" ")
        '02 00 37 03 3c'
    """
    return _frame(_board_addr(board), CMD_SET_TIME)


def delayed_unlock(board: int, lock: int, seconds: int) -> bytes:
    """Pulse one lock after ``seconds`` (0..255, one data byte).

    Public code disagrees on whether ``39`` names one lock or sets a board-wide delay (one
    implementation calls it "set delay or baud"): verify on the bench before relying on it.

    Raises:
        CommandError: an argument out of range.

    Example:
        >>> delayed_unlock(0, 2, 5).hex(" ")
        '02 01 39 05 03 44'
    """
    return _frame(
        _lock_addr(board, lock), CMD_DELAYED_UNLOCK, bytes((_int_in("seconds", seconds, 0, 0xFF),))
    )


def energize_ms(data: bytes, *, byteorder: ByteOrder = "big") -> int:
    """Milliseconds carried by the two data bytes of a ``37`` / ``38`` frame.

    Raises:
        CommandError: ``data`` is not two bytes.

    Example:
        >>> energize_ms(bytes.fromhex("00 32"))
        500
    """
    if len(data) != 2:
        raise CommandError(f"an energize time is two bytes, got {data.hex(' ')!r}")
    return int.from_bytes(data, byteorder) * _ENERGIZE_UNIT_MS


# --- reply encoders (device side: the simulator) ---------------------------------------------


def status_reply(board: int, hooks: int, items: int) -> bytes:
    """``02 ADDR 35 HOOK1-8 HOOK9-16 IR1-8 IR9-16 03 SUM``; masks are 16 bits, bit 0 = lock 1.

    Raises:
        CommandError: ``board`` not 0..15 or a mask not 0..0xFFFF.

    Example:
        >>> status_reply(0, 0x0001, 0x0000).hex(" ")
        '02 00 35 01 00 00 00 03 3b'
    """
    hooks = _int_in("hooks", hooks, 0, 0xFFFF)
    items = _int_in("items", items, 0, 0xFFFF)
    data = hooks.to_bytes(2, "little") + items.to_bytes(2, "little")
    return _frame(_board_addr(board), REPLY_STATUS, data)


def unlock_reply(board: int, lock: int, ok: bool = True, *, command: int = CMD_UNLOCK) -> bytes:
    """The simulator's answer to an unlock: ``02 ADDR CMD STATUS 03 SUM``.

    The real board's reply is not established publicly; this echo with one STATUS byte
    (:data:`UNLOCK_OK` / :data:`UNLOCK_FAILED`) is our choice. Verify on the bench.

    Args:
        board: 0..15.
        lock: 1..16.
        ok: whether the lock was pulsed.
        command: the command answered: ``31``, ``33`` or ``39``.

    Raises:
        CommandError: an argument out of range.

    Example:
        >>> unlock_reply(0, 1).hex(" ")
        '02 00 31 00 03 36'
    """
    if command not in (CMD_UNLOCK, CMD_UNLOCK_ALL, CMD_DELAYED_UNLOCK):
        raise CommandError(f"command must be 0x31, 0x33 or 0x39, got {command!r}")
    return _frame(_lock_addr(board, lock), command, bytes((UNLOCK_OK if ok else UNLOCK_FAILED,)))


def energize_time_reply(board: int, ms: int, *, byteorder: ByteOrder = "big") -> bytes:
    """The simulator's report of its energize time: ``02 ADDR 38 T1 T2 03 SUM`` (10 ms units).

    ``38`` ("return unlock time") carrying two bytes is our reading of the public command
    tables; verify on the bench.

    Raises:
        CommandError: ``board`` not 0..15 or ``ms`` not 0..655350.

    Example:
        >>> energize_time_reply(0, 500).hex(" ")
        '02 00 38 00 32 03 6f'
    """
    units = _energize_units(ms, 0)
    return _frame(_board_addr(board), CMD_RETURN_TIME, units.to_bytes(2, byteorder))


# --- events ----------------------------------------------------------------------------------


def _lock_bit(mask: int, lock: int) -> bool:
    return bool(mask >> (_int_in("lock", lock, 1, LOCKS_PER_BOARD) - 1) & 1)


@dataclass(frozen=True)
class StatusReply:
    """A board's hook and item-sensor bits (``35``).

    ``hooks`` and ``items`` are 16-bit masks, bit 0 = lock 1 (bytes 3 and 5 of the frame hold
    locks 1-8). What a hook bit means (caught or released) differs between boards: see
    hardware.md.

    Example:
        >>> reply = StatusReply(board=0, hooks=0x8001, items=0, raw=b"")
        >>> reply.hook(1), reply.hook(2), reply.hook(16)
        (True, False, True)
    """

    board: int
    hooks: int
    items: int
    raw: bytes

    def hook(self, lock: int) -> bool:
        """The hook bit of lock 1..16, as sent.

        Raises:
            CommandError: ``lock`` not 1..16.
        """
        return _lock_bit(self.hooks, lock)

    def item(self, lock: int) -> bool:
        """The item-sensor (infrared) bit of lock 1..16, as sent.

        Raises:
            CommandError: ``lock`` not 1..16.
        """
        return _lock_bit(self.items, lock)


@dataclass(frozen=True)
class UnlockReply:
    """Any well-formed frame with command ``31``, ``33`` or ``39`` from a board.

    The reply's layout is not established, so ``data`` is kept as sent. An adapter that echoes
    its own transmission produces one with empty ``data`` (``02 00 31 03 36``).

    Example:
        >>> UnlockReply(board=0, lock=1, command=0x31, data=b"\\x00", raw=b"").is_ok
        True
    """

    board: int
    lock: int
    command: int
    data: bytes
    raw: bytes

    @property
    def is_ok(self) -> bool | None:
        """:func:`unlock_reply`'s STATUS byte read back; ``None`` for any other layout."""
        if self.data == bytes((UNLOCK_OK,)):
            return True
        if self.data == bytes((UNLOCK_FAILED,)):
            return False
        return None


@dataclass(frozen=True)
class EnergizeTimeReply:
    """A board's energize time: a ``38`` frame, or a ``37`` frame, with two data bytes.

    Example:
        >>> ReplyDecoder().feed(energize_time_reply(0, 500))[0].ms
        500
    """

    board: int
    ms: int
    raw: bytes


@dataclass(frozen=True)
class OtherFrame:
    """A well-formed frame of any other command (the ``36`` frames answering ``32``, echoes).

    Example:
        >>> ReplyDecoder().feed(bytes.fromhex("02 00 36 00 00 00 00 03 3b"))[0].command
        54
    """

    addr: int
    command: int
    data: bytes
    raw: bytes


@dataclass(frozen=True)
class Request:
    """A frame sent to a board, as the board sees it.

    ``lock`` is ADDR's low nibble + 1; for a whole-board command (``30``, ``33``, ``37``,
    ``38``) it is 1 and means nothing. ``32`` to ADDR ``F0`` reads as board 15.

    Example:
        >>> RequestDecoder().feed(unlock(1, 3))[0]
        Request(board=1, lock=3, command=49, data=b'', raw=b'\\x02\\x121\\x03H')
    """

    board: int
    lock: int
    command: int
    data: bytes
    raw: bytes


ReplyEvent = StatusReply | UnlockReply | EnergizeTimeReply | OtherFrame


# --- framing ---------------------------------------------------------------------------------


class _Framer:
    """Cuts a byte stream into whole frames and :class:`Garbage`; never raises.

    Between calls it holds at most one incomplete frame that starts with STX (fewer than
    :data:`MAX_FRAME` bytes), so its buffer stays within :data:`MAX_BUFFER`.
    """

    def __init__(self, lengths: Mapping[int, tuple[int, ...]]) -> None:
        self._lengths = lengths
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[bytes | Garbage]:
        buf = self._buf
        buf += data
        out: list[bytes | Garbage] = []
        pos = 0
        while pos < len(buf):
            if buf[pos] != STX:
                end = self._next_stx(buf, pos)
                out.append(Garbage(bytes(buf[pos:end]), _NOISE))
                pos = end
                continue
            verdict = self._frame_at(buf, pos)
            if verdict is None:
                break  # an incomplete frame: wait for more bytes
            if isinstance(verdict, int):
                out.append(bytes(buf[pos:verdict]))
                pos = verdict
                continue
            end = self._next_stx(buf, pos + 1)  # resynchronise at the next STX
            out.append(Garbage(bytes(buf[pos:end]), verdict))
            pos = end
        del buf[:pos]
        if len(buf) > MAX_BUFFER:  # defensive: unreachable while _frame_at waits < MAX_FRAME
            drop = len(buf) - MAX_BUFFER
            out.append(Garbage(bytes(buf[:drop]), "buffer overflow: oldest bytes dropped"))
            del buf[:drop]
        return out

    @staticmethod
    def _next_stx(buf: bytearray, start: int) -> int:
        found = buf.find(STX, start)
        return len(buf) if found < 0 else found

    def _frame_at(self, buf: bytearray, pos: int) -> int | str | None:
        """End of the frame at ``pos``, a reason it is garbage, or ``None`` to wait."""
        if len(buf) - pos < 3:
            return None
        command = buf[pos + 2]
        lengths = self._lengths.get(command)
        is_known = lengths is not None
        candidates = lengths if lengths is not None else _ANY_LENGTH
        for length in candidates:
            if pos + length > len(buf):
                # Incomplete. A complete frame at a later STX means this start was noise or
                # the rest of a corrupted frame: 02 00 02 03 35 | 02 25 31 03 5B would
                # otherwise wait for a 9-byte "02 03 35" frame and hold the good one back.
                if self._later_frame(buf, pos, len(buf)):
                    return _SKIPPED
                return None
            if _is_valid(buf, pos, length):
                # A frame cut at the shortest candidate gives way to a complete frame that
                # starts inside it, even one that ends after it: corrupted 02 C9 31 00 03 03
                # followed by 02 10 35 ... is a valid 7-byte frame ending in that 02.
                if not is_known and self._later_frame(buf, pos, pos + length):
                    return _SKIPPED
                return pos + length
        if len(candidates) == 1:
            end = pos + candidates[0]
            if buf[end - 2] != ETX:
                return f"no ETX at byte {end - pos - 2} of a 0x{command:02X} frame (bad checksum?)"
            got, want = buf[end - 1], checksum(buf[pos : end - 1])
            return f"bad checksum in 0x{command:02X} frame: got 0x{got:02X}, want 0x{want:02X}"
        return (
            f"no ETX with a valid checksum within {candidates[-1]} bytes of a 0x{command:02X} frame"
        )

    def _later_frame(self, buf: bytearray, pos: int, before: int) -> bool:
        """Whether a complete valid frame starts at an STX in ``(pos, before)``."""
        inner = buf.find(STX, pos + 1, before)
        while 0 <= inner <= len(buf) - MIN_FRAME:
            lengths = self._lengths.get(buf[inner + 2], _ANY_LENGTH)
            for length in lengths:
                if inner + length > len(buf):
                    break
                if _is_valid(buf, inner, length):
                    return True
            inner = buf.find(STX, inner + 1, before)
        return False


class ReplyDecoder:
    """Host side: decodes what boards send into :data:`ReplyEvent` and :class:`Garbage`.

    Implements :class:`~firmware_bridge.codecs.base.Decoder`: never raises on any bytes, skips
    noise before STX, resynchronises at the next STX after a bad frame's start, holds at most
    :data:`MAX_BUFFER` bytes.

    Args:
        byteorder: order of the two bytes of an energize time (big-endian until benched).

    Example:
        >>> decoder = ReplyDecoder()
        >>> decoder.feed(bytes.fromhex("02 00 35 01"))
        []
        >>> decoder.feed(bytes.fromhex("00 00 00 03 3b"))[0].hooks
        1
    """

    def __init__(self, *, byteorder: ByteOrder = "big") -> None:
        self.max_buffer = MAX_BUFFER
        self._byteorder: ByteOrder = byteorder
        self._framer = _Framer(_REPLY_LENGTHS)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return self._framer.buffered

    def reset(self) -> None:
        """Drop whatever is buffered (before a new command)."""
        self._framer.reset()

    def feed(self, data: bytes) -> list[ReplyEvent | Garbage]:
        """Take ``data``; return every event completed by it, in order."""
        return [
            piece if isinstance(piece, Garbage) else self._event(piece)
            for piece in self._framer.feed(data)
        ]

    def _event(self, raw: bytes) -> ReplyEvent:
        addr, command, data = raw[1], raw[2], raw[3:-2]
        board, lock = addr >> 4, (addr & 0x0F) + 1
        if command == REPLY_STATUS:  # always 9 bytes: cut by known length
            hooks = int.from_bytes(data[0:2], "little")
            items = int.from_bytes(data[2:4], "little")
            return StatusReply(board, hooks, items, raw)
        if command in (CMD_UNLOCK, CMD_UNLOCK_ALL, CMD_DELAYED_UNLOCK):
            return UnlockReply(board, lock, command, data, raw)
        if command in (CMD_SET_TIME, CMD_RETURN_TIME) and len(data) == 2:
            return EnergizeTimeReply(board, energize_ms(data, byteorder=self._byteorder), raw)
        return OtherFrame(addr, command, data, raw)


class RequestDecoder:
    """Device side (the board simulator): decodes what the host sends into :class:`Request`.

    ``30``-``33`` and ``38`` carry no data, ``37`` two bytes or none (a query), ``39`` one
    byte; any other well-formed frame (another board's ``35`` reply on a shared bus, an
    unknown command) is a :class:`Request` as well. Same guarantees as :class:`ReplyDecoder`.

    Example:
        >>> RequestDecoder().feed(set_energize_time(2, 500))[0].data.hex(" ")
        '00 32'
    """

    def __init__(self) -> None:
        self.max_buffer = MAX_BUFFER
        self._framer = _Framer(_REQUEST_LENGTHS)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return self._framer.buffered

    def reset(self) -> None:
        """Drop whatever is buffered."""
        self._framer.reset()

    def feed(self, data: bytes) -> list[Request | Garbage]:
        """Take ``data``; return every request completed by it, in order."""
        out: list[Request | Garbage] = []
        for piece in self._framer.feed(data):
            if isinstance(piece, Garbage):
                out.append(piece)
            else:
                addr = piece[1]
                out.append(Request(addr >> 4, (addr & 0x0F) + 1, piece[2], piece[3:-2], piece))
        return out


if TYPE_CHECKING:
    _reply_decoder_conforms: Decoder[ReplyEvent] = ReplyDecoder()
    _request_decoder_conforms: Decoder[Request] = RequestDecoder()
