"""Serial weighing scales: sans-I/O codecs for three line protocols (bytes in, events out).

Three formats, all ASCII lines ending in CR LF (a bare CR or a bare LF is accepted too, so a
scale set to "CR only" or a reader that ate the CR still works):

- **A&D standard format** (:class:`AndDecoder`): ``ST,+00123.45  g`` -- header ``ST`` stable,
  ``US`` unstable, ``OL`` overload; characters 3..11 are the signed value, 12..14 the unit.
  Host commands ``Q`` (weight now), ``S`` (next stable weight), ``SIR`` (stream), ``Z``, ``T``.
- **Continuous output of common (Chinese) indicators** (:class:`ContinuousDecoder`):
  ``ST,GS,+0001.234kg`` -- status ``ST``/``US``/``OL``, ``GS`` gross or ``NT`` net, sign, value,
  unit, with separators, widths and the sign drifting between vendors. Many answer ``R`` with one
  line (:func:`continuous_request`).
- **Mettler Toledo MT-SICS** (:class:`SicsDecoder`): host sends ``S``/``SI``/``SIR``/``Z``/``T``,
  the balance answers ``S S      100.00 g`` (status ``S`` stable, ``D`` dynamic), ``S I`` (busy),
  ``S +``/``S -`` (over-/underload), ``Z A`` (zeroed), ``T S  2.486 g`` (tared) or ``ES``/``ET``/
  ``EL`` (syntax, transmission, logical error).

Events: :class:`ScaleReading` (a weight in whole milligrams, converted from the unit with
:class:`~decimal.Decimal`, never through a float), :class:`ScaleFault` (the scale reports an error
or busy state, or a reading in a unit or mode that has no exact gram value), :class:`CommandAck`
(zero/tare acknowledged) and :class:`~firmware_bridge.codecs.base.Garbage`.

**No checksum.** None of these formats carries a checksum or parity the host can see. A flipped
digit inside a well-formed line (``ST,+00123.45  g`` -> ``ST,+00128.45  g``) decodes as a
different, plausible weight; only structural damage (a lost separator, a lost line end merging two
lines, a NUL or 0xFF byte, a truncated line, a wrong A&D width) is detected. That is why the scale
adapter counts a weight only when the scale says it is stable *and* several consecutive readings
agree.

**Whose fault is a bad line** (``Garbage.fault``):

- ``line``: the bytes cannot be a well-formed line of the format -- a non-printable byte, a wrong
  length or shape, a missing separator, a value that is not a number, an unknown unit text, or a
  line longer than :data:`MAX_LINE` (reason says "overlong"; the decoder resynchronises at the
  next line end). Retrying the read is sensible.
- ``device``: the line has the format's shape but is not something this codec turns into a
  weight: another command's reply (A&D ``PT,+000.0000  g``, MT-SICS ``I4 A "B207696838"``), an
  unknown header (A&D ``WT``, continuous ``TR`` tare lines). Retrying will not help.

A reading in a unit that has no exact milligram value (``lb``, ``oz``, ``ct``, ``t``, pieces...)
is not guessed at: it comes out as ``ScaleFault(kind="unit")``; set the scale to g or kg.

Example:
    >>> decoder = AndDecoder()
    >>> decoder.feed(b"\\xffST,+0013.538  g\\r\\nST,+00081.72  g\\r")
    [Garbage(data=b'\\xffST,+0013.538  g', reason='non-printable byte 0xff at 0', fault='line'), \
ScaleReading(status='stable', milligrams=81720, is_net=None, raw=b'ST,+00081.72  g')]
    >>> SicsDecoder().feed(b"S S      100.00 g\\r\\n")[0].grams
    100.0
    >>> and_command("Q")
    b'Q\\r\\n'

Quirks (each with the bytes that show it and a test in ``tests/test_codec_scales.py``; sources
in ``tests/data/golden/scales.json``):

- **A&D overload carries no number.** ``OL,+9999999E+19`` (positive overload) and
  ``OL,-9999999E+19`` (negative, the display's ``-E``): the data field is a marker, not a weight.
  Decoded as ``overload`` / ``underload`` with ``milligrams=None``.
- **A&D acknowledges with a bare ACK byte.** ``06 0D 0A`` after ``Z``/``T`` (and again when the
  command has been executed): :class:`CommandAck` with ``command="AK"``; A&D does not say which
  command it acknowledges. Errors come as ``EC,E11`` (unstable, zero/tare not done) etc.
- **A&D width is the only integrity check.** Header, comma, 9-character value, 3-character unit:
  15 characters. A dropped or doubled byte changes the length, so the decoder insists on exactly
  15 (``ST,+00123.4  g`` is Garbage, not 123.4 g).
- **A&D ID and GLP lines.** With ID output on, an FX-300i sends ``0000000`` before each reading:
  Garbage (``line``), and the reading after it decodes. Replies to ``?PT``/``?SN``
  (``PT,+000.0000  g``, ``SN,6A7609446 ``) are ``device`` Garbage.
- **A&D pound scales.** An HV-60KC sends ``ST,+00000.00 lb``: ``ScaleFault(kind="unit")``.
- **Continuous-format drift.** ``ST,GS    20.7g  `` (T&T NHB: no comma after ``GS``, unit glued
  to the number, two trailing spaces), ``ST,GS,   245.6 g`` (QHW: spaces for the sign, space
  before the unit), ``ST,GS,+  4.876kg`` (sign, then padding), ``ST,GS,    450.5,kg`` (a comma
  before the unit), ``US,NT,-113.0254kg`` (four decimals of kg): all parsed. The first comma is
  never missing in the wild, so a line without it is Garbage.
- **Sub-milligram digits.** MT-SICS bridges report 0.01 mg (``S S     12.34567 g``); such digits
  are rounded half-to-even to whole milligrams (12.34567 g -> 12346 mg, 0.0125 g -> 12 mg).
- **MT-SICS tare acknowledgement.** Mettler's manuals answer ``T`` with ``T S WeightValue Unit``;
  InstrumentKit's mock answers ``T A 2.486 g``. Both are a :class:`CommandAck` carrying the tare
  in ``milligrams``; a tare value is never reported as a reading.
- **MT-SICS weight error.** A hardware fault replaces the value: ``S S    Error 23`` is
  ``ScaleFault(kind="weight-error")``, not Garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeAlias, TypeVar

from firmware_bridge.codecs.base import Decoder, Garbage
from firmware_bridge.errors import CommandError

__all__ = [
    "FORMATS",
    "MAX_BUFFER",
    "MAX_LINE",
    "AndCommandName",
    "AndDecoder",
    "CommandAck",
    "CommandLineDecoder",
    "ContinuousDecoder",
    "ScaleCommand",
    "ScaleEvent",
    "ScaleFault",
    "ScaleReading",
    "SicsCommandName",
    "SicsDecoder",
    "Stability",
    "and_command",
    "continuous_request",
    "format_and",
    "format_and_ack",
    "format_and_error",
    "format_continuous",
    "format_sics",
    "format_sics_ack",
    "format_sics_error",
    "sics_command",
]

Stability = Literal["stable", "unstable", "overload", "underload"]
"""What the scale says about the weight: settled, moving, above or below its range."""

AndCommandName = Literal["Q", "S", "SIR", "Z", "T"]
SicsCommandName = Literal["S", "SI", "SIR", "Z", "T"]

MAX_LINE: Final = 64
"""The longest line any decoder accepts, line end (CR LF) included."""

MAX_BUFFER: Final = 2 * MAX_LINE
"""The most bytes a decoder holds between calls (it actually holds at most :data:`MAX_LINE`)."""

_MAX_CONTENT: Final = MAX_LINE - 2
_CRLF: Final = b"\r\n"


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleReading:
    """One weight line: status, weight in whole milligrams, gross/net, and the line itself.

    Attributes:
        status: ``stable``, ``unstable``, ``overload`` or ``underload``.
        milligrams: The weight, exact (Decimal conversion from the unit, sub-milligram digits
            rounded half-to-even); ``None`` for over-/underload, which carry no number.
        is_net: ``True`` net (tare subtracted), ``False`` gross, ``None`` when the format does
            not say (A&D, MT-SICS).
        raw: The line as received, without its line end.

    Example:
        >>> ScaleReading("stable", 1234000, False, b"ST,GS,+0001.234kg").grams
        1234.0
    """

    status: Stability
    milligrams: int | None
    is_net: bool | None
    raw: bytes

    @property
    def grams(self) -> float | None:
        """The weight in grams as a float (for display; compare ``milligrams`` instead)."""
        return None if self.milligrams is None else self.milligrams / 1000


@dataclass(frozen=True)
class ScaleFault:
    """The scale reported an error, is busy, or sent a weight the codec will not convert.

    ``kind`` is one of: ``syntax`` (command not understood), ``transmission`` (parity, framing),
    ``logical`` (command not allowed now / bad parameter), ``busy`` (understood, not executable
    now, e.g. not stable within the timeout), ``unstable`` (A&D: zero/tare refused while
    unstable), ``range`` (zero/tare range exceeded), ``timeout``, ``calibration``,
    ``weight-error`` (MT-SICS: hardware fault instead of a value), ``unit`` (a unit with no exact
    gram value), ``mode`` (A&D counting mode), ``device`` (an error code not listed here).

    Example:
        >>> SicsDecoder().feed(b"ES\\r\\n")[0].kind
        'syntax'
    """

    kind: str
    detail: str
    raw: bytes


@dataclass(frozen=True)
class CommandAck:
    """A zero or tare command was acknowledged.

    Attributes:
        command: ``Z``, ``ZI``, ``T``, ``TI`` (MT-SICS); ``AK`` for A&D's bare ACK byte, which
            does not name the command.
        raw: The line as received, without its line end.
        milligrams: The tare weight, where the acknowledgement reports one (MT-SICS ``T S``).

    Example:
        >>> SicsDecoder().feed(b"T S      2.486 g\\r\\n")[0]
        CommandAck(command='T', raw=b'T S      2.486 g', milligrams=2486)
    """

    command: str
    raw: bytes
    milligrams: int | None = None


@dataclass(frozen=True)
class ScaleCommand:
    """A command line the host sent (device side, for the scale simulator).

    Attributes:
        name: The command word (``Q``, ``S``, ``SIR``, ``R``, ``?PT``...), without parameters.
        raw: The line as received, without its line end.

    Example:
        >>> CommandLineDecoder().feed(b"SIR\\r\\n")
        [ScaleCommand(name='SIR', raw=b'SIR')]
    """

    name: str
    raw: bytes


ScaleEvent: TypeAlias = ScaleReading | ScaleFault | CommandAck
"""What the scale-side decoders produce (besides Garbage)."""


# --- numbers and units ---------------------------------------------------------------------

_CTX: Final = Context(prec=60, rounding=ROUND_HALF_EVEN)
_NUMBER: Final = r"(?:\d{1,12}(?:\.\d{0,9})?|\.\d{1,9})"
_MG_PER_UNIT: Final = {"mg": Decimal(1), "g": Decimal(1000), "kg": Decimal(1_000_000)}
_DECIMALS: Final = {"mg": 0, "g": 3, "kg": 6}
# Real weighing units with no exact (or no unambiguous) milligram value: refused, not guessed.
_REFUSED_UNITS: Final = frozenset(
    {"lb", "lbs", "oz", "ozt", "dwt", "ct", "gn", "tl", "mom", "to", "t", "jin", "pc", "pcs", "%"}
)


def _milligrams(sign: str, number: str, unit: str) -> int:
    """``sign number unit`` in whole milligrams (exact, sub-mg digits rounded half-to-even)."""
    value = _CTX.multiply(Decimal(number), _MG_PER_UNIT[unit])
    magnitude = int(value.to_integral_value(rounding=ROUND_HALF_EVEN, context=_CTX))
    return -magnitude if sign == "-" else magnitude


def _weight(
    status: Literal["stable", "unstable"],
    sign: str,
    number: str,
    unit_text: str,
    is_net: bool | None,
    raw: bytes,
) -> ScaleReading | ScaleFault | Garbage:
    unit = unit_text.lower()
    if unit in _MG_PER_UNIT:
        try:
            milligrams = _milligrams(sign, number, unit)
        except InvalidOperation:  # pragma: no cover - _NUMBER admits only plain decimals
            return Garbage(raw, f"value {number!r} is not a number")
        return ScaleReading(status, milligrams, is_net, raw)
    if unit in _REFUSED_UNITS:
        return ScaleFault(
            "unit", f"unit {unit_text!r} has no exact gram value; set the scale to g or kg", raw
        )
    return Garbage(raw, f"unknown unit {unit_text!r}")


def _format_value(milligrams: int, unit: str) -> tuple[str, str]:
    """``(sign, digits)`` of ``milligrams`` in ``unit`` with the unit's fixed decimals."""
    if isinstance(milligrams, bool) or not isinstance(milligrams, int):
        raise CommandError(f"milligrams must be an int, got {milligrams!r}")
    if unit not in _DECIMALS:
        raise CommandError(f"unit {unit!r} is not one of {sorted(_DECIMALS)}")
    decimals = _DECIMALS[unit]
    magnitude = Decimal(abs(milligrams)).scaleb(-decimals, context=_CTX)
    digits = f"{magnitude:.{decimals}f}"
    if len(digits.split(".")[0]) > 12:  # the decoders read at most 12 integer digits
        raise CommandError(f"{milligrams} mg has more than 12 integer digits in {unit}")
    return ("-" if milligrams < 0 else "+"), digits


# --- line framing --------------------------------------------------------------------------

_EOL: Final = re.compile(rb"[\r\n]")
_NON_PRINTABLE: Final = re.compile(rb"[^\x20-\x7e]")

E = TypeVar("E")


class _LineDecoder(Generic[E]):
    """Splits bytes into lines (CR, LF or CR LF), drops blank lines, bounds the buffer."""

    max_buffer: int = MAX_BUFFER

    def __init__(self) -> None:
        self._line = bytearray()
        self._skipped = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line (at most :data:`MAX_LINE`)."""
        return len(self._line) + len(self._skipped)

    def reset(self) -> None:
        """Drop whatever is buffered (before a new command)."""
        self._line.clear()
        self._skipped.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list[E | Garbage]:
        """Take ``data``; return every event completed by it, in order. Never raises."""
        out: list[E | Garbage] = []
        start = 0
        for match in _EOL.finditer(data):
            self._take(data[start : match.start()], out)
            self._end_line(out)
            start = match.end()
        self._take(data[start:], out)
        return out

    def _take(self, piece: bytes, out: list[E | Garbage]) -> None:
        if not piece:
            return
        if self._skipping:
            self._skipped += piece
            if len(self._skipped) >= MAX_LINE:
                out.append(Garbage(bytes(self._skipped), "rest of an overlong line"))
                self._skipped.clear()
            return
        self._line += piece
        if len(self._line) > _MAX_CONTENT:
            out.append(
                Garbage(bytes(self._line), f"overlong line: no line end within {MAX_LINE} bytes")
            )
            self._line.clear()
            self._skipping = True

    def _end_line(self, out: list[E | Garbage]) -> None:
        if self._skipping:
            self._skipping = False
            if self._skipped:
                out.append(Garbage(bytes(self._skipped), "rest of an overlong line"))
                self._skipped.clear()
            return
        line = bytes(self._line)
        self._line.clear()
        if not line.strip(b" \t"):
            return  # blank lines (and the LF of a CR LF) carry nothing
        out.append(self._decode_line(line))

    def _decode_line(self, line: bytes) -> E | Garbage:
        raise NotImplementedError  # pragma: no cover


def _non_printable(line: bytes) -> Garbage | None:
    bad = _NON_PRINTABLE.search(line)
    if bad is None:
        return None
    return Garbage(line, f"non-printable byte 0x{line[bad.start()]:02x} at {bad.start()}")


# --- A&D standard format -------------------------------------------------------------------

_AND_HEADER: Final = re.compile(r"([A-Z]{2}),")
_AND_ERROR: Final = re.compile(r"EC,E(\d\d)")
_AND_VALUE: Final = re.compile(rf"([+-]) *({_NUMBER})")
_AND_UNIT: Final = re.compile(r" *([A-Za-z%]{1,3})")
_AND_WEIGHT_HEADERS: Final = {"ST": "stable", "US": "unstable"}
_AND_ERRORS: Final = {
    "00": ("transmission", "communications error"),
    "01": ("syntax", "undefined command"),
    "02": ("busy", "not executable now (not ready)"),
    "03": ("timeout", "timeout"),
    "04": ("syntax", "too many characters in the command"),
    "05": ("logical", "no such ID"),
    "06": ("syntax", "format error in the command"),
    "07": ("logical", "parameter out of range"),
    "11": ("unstable", "weight unstable: zero/tare not performed"),
    "17": ("range", "out of range"),
    "20": ("calibration", "calibration weight error (too heavy)"),
    "21": ("calibration", "calibration weight error (too light)"),
}


class AndDecoder(_LineDecoder[ScaleEvent]):
    """Decoder for the A&D standard format (balances EK-i/EW-i, FX-i/FZ-i, GX/GF, GH, HV...).

    The balance's RS-232C port (2400 baud 7E1 by factory default, often set to 9600/19200 8N1)
    goes through a USB serial adapter; the host polls with :func:`and_command` or sets the
    balance to stream (``SIR``).

    Example:
        >>> decoder = AndDecoder()
        >>> decoder.feed(b"ST,+00081.72  g\\r\\nOL,+9999999E+19\\r\\n\\x06\\r\\n")
        [ScaleReading(status='stable', milligrams=81720, is_net=None, raw=b'ST,+00081.72  g'), \
ScaleReading(status='overload', milligrams=None, is_net=None, raw=b'OL,+9999999E+19'), \
CommandAck(command='AK', raw=b'\\x06', milligrams=None)]
    """

    def _decode_line(self, line: bytes) -> ScaleEvent | Garbage:
        if line == b"\x06":
            return CommandAck("AK", line)
        bad = _non_printable(line)
        if bad is not None:
            return bad
        text = line.decode("ascii")
        head = _AND_HEADER.match(text)
        if head is None:
            return Garbage(line, "not an A&D line: no 'XX,' header")
        header = head.group(1)
        if header == "EC":
            error = _AND_ERROR.fullmatch(text)
            if error is None:
                return Garbage(line, "malformed A&D error line")
            kind, detail = _AND_ERRORS.get(error.group(1), ("device", "unlisted error code"))
            return ScaleFault(kind, f"A&D {text}: {detail}", line)
        if header not in ("ST", "US", "OL", "QT"):
            return Garbage(line, f"A&D header {header!r} is not a weight line", "device")
        if len(text) != 15:
            return Garbage(line, f"A&D weight line must be 15 characters, got {len(text)}")
        value_field, unit_field = text[3:12], text[12:15]
        if header == "OL":
            if value_field[0] not in "+-":
                return Garbage(line, "A&D overload line without a sign")
            return ScaleReading(
                "underload" if value_field[0] == "-" else "overload", None, None, line
            )
        value = _AND_VALUE.fullmatch(value_field)
        unit = _AND_UNIT.fullmatch(unit_field)
        if value is None or unit is None:
            return Garbage(line, "A&D value or unit field malformed")
        if header == "QT":
            return ScaleFault("mode", "A&D counting mode (QT): pieces, not a weight", line)
        status: Literal["stable", "unstable"] = "stable" if header == "ST" else "unstable"
        return _weight(status, value.group(1), value.group(2), unit.group(1), None, line)


# --- continuous output of common indicators ------------------------------------------------

_CONT_HEAD: Final = re.compile(r"([A-Z]{2}) *, *([A-Z]{2})")
_CONT_VALUE: Final = re.compile(rf" *,? *([+-]?) *({_NUMBER}) *,? *([A-Za-z%]{{1,3}})")
_CONT_OVERLOAD: Final = re.compile(r" *,? *([+-]?).*")


class ContinuousDecoder(_LineDecoder[ScaleEvent]):
    """Decoder for the ``ST,GS,+0001.234kg`` continuous output of common weighing indicators.

    Indicators (XK3190-style, CAS, T&T and many unbranded ones) stream this line several times
    a second over RS-232 or answer one line to :func:`continuous_request`. Vendors drift in
    separators, widths and the sign, so the parse is tolerant: ``ST|US|OL``, comma, ``GS|NT``,
    then an optional comma, an optional sign (``+``, ``-`` or spaces), the number, an optional
    comma and the unit, with spaces anywhere in between and around the line.

    Example:
        >>> ContinuousDecoder().feed(b"ST,GS    20.7g  \\r\\nUS,NT,-0000.50kg\\r\\n")
        [ScaleReading(status='stable', milligrams=20700, is_net=False, raw=b'ST,GS    20.7g  '), \
ScaleReading(status='unstable', milligrams=-500000, is_net=True, raw=b'US,NT,-0000.50kg')]
    """

    def _decode_line(self, line: bytes) -> ScaleEvent | Garbage:
        bad = _non_printable(line)
        if bad is not None:
            return bad
        text = line.decode("ascii").strip(" ")
        head = _CONT_HEAD.match(text)
        if head is None:
            return Garbage(line, "not a continuous-format line: no 'ST,GS' header")
        code, kind = head.groups()
        if code not in ("ST", "US", "OL") or kind not in ("GS", "NT"):
            return Garbage(line, f"header {code},{kind} is not a load reading", "device")
        rest = text[head.end() :]
        is_net = kind == "NT"
        if code == "OL":
            sign = _CONT_OVERLOAD.fullmatch(rest)
            status: Stability = "underload" if sign and sign.group(1) == "-" else "overload"
            return ScaleReading(status, None, is_net, line)
        value = _CONT_VALUE.fullmatch(rest)
        if value is None:
            return Garbage(line, "continuous-format value or unit malformed")
        sign_, number, unit = value.groups()
        return _weight("stable" if code == "ST" else "unstable", sign_, number, unit, is_net, line)


# --- Mettler Toledo MT-SICS ----------------------------------------------------------------

_SICS_REPLY: Final = re.compile(r"([A-Z@][A-Z0-9]*) ([ABSDIL+-])( .*)?")
_SICS_ERRORS: Final = {
    "ES": ("syntax", "MT-SICS ES: command not understood"),
    "ET": ("transmission", "MT-SICS ET: transmission error (parity or break)"),
    "EL": ("logical", "MT-SICS EL: command understood, cannot be executed"),
}
_SICS_VALUE: Final = re.compile(rf" +([+-]?)({_NUMBER}) +([A-Za-z%]{{1,3}})")
_SICS_WEIGHT_ERROR: Final = re.compile(r" +Error\b.*")


def _sics_refusal(command: str, status: str, line: bytes) -> ScaleFault | Garbage:
    """The replies every weighing/zero/tare command shares: I, L, + and -."""
    if status == "I":
        return ScaleFault("busy", f"MT-SICS {command} I: not executable now", line)
    if status == "L":
        return ScaleFault("logical", f"MT-SICS {command} L: parameter not allowed", line)
    if status in "+-" and command != "S":
        limit = "upper" if status == "+" else "lower"
        return ScaleFault("range", f"MT-SICS {command} {status}: {limit} limit exceeded", line)
    return Garbage(line, f"MT-SICS {command} reply with status {status!r} malformed")


class SicsDecoder(_LineDecoder[ScaleEvent]):
    """Decoder for Mettler Toledo MT-SICS replies (balances, bridges, terminals, 9600 8N1).

    Weight replies ``S S|D value unit`` to ``S``/``SI``/``SIR``, ``S I``/``S +``/``S -``; zero
    ``Z A``/``ZI A``; tare ``T S value unit`` (also ``A``; ``TI`` alike); general errors
    ``ES``/``ET``/``EL``. Replies to other commands (``I4 A "..."``, ``TAC A``) are ``device``
    Garbage: ``<command> <status>[ data]`` is the shape of every MT-SICS reply, anything else is
    ``line`` Garbage.

    Example:
        >>> SicsDecoder().feed(b"S D      1.234 g\\r\\nS +\\r\\nZ A\\r\\n")
        [ScaleReading(status='unstable', milligrams=1234, is_net=None, raw=b'S D      1.234 g'), \
ScaleReading(status='overload', milligrams=None, is_net=None, raw=b'S +'), \
CommandAck(command='Z', raw=b'Z A', milligrams=None)]
    """

    def _decode_line(self, line: bytes) -> ScaleEvent | Garbage:
        bad = _non_printable(line)
        if bad is not None:
            return bad
        text = line.decode("ascii").rstrip(" ")
        if text in _SICS_ERRORS:
            kind, detail = _SICS_ERRORS[text]
            return ScaleFault(kind, detail, line)
        reply = _SICS_REPLY.fullmatch(text)
        if reply is None:
            return Garbage(line, "not an MT-SICS reply ('<command> <status>[ data]')")
        command, status, rest = reply.group(1), reply.group(2), reply.group(3)
        if command in ("S", "SI", "SIR"):
            return self._weight_reply(status, rest, line)
        if command in ("Z", "ZI"):
            if rest is not None:
                return Garbage(line, f"MT-SICS {command} {status} carries unexpected data")
            if status == "A":
                return CommandAck(command, line)
            return _sics_refusal(command, status, line)
        if command in ("T", "TI"):
            return self._tare_reply(command, status, rest, line)
        return Garbage(line, f"MT-SICS reply to {command!r}: not a weight, zero or tare", "device")

    @staticmethod
    def _weight_reply(status: str, rest: str | None, line: bytes) -> ScaleEvent | Garbage:
        if status in "SD" and rest is not None:
            value = _SICS_VALUE.fullmatch(rest)
            if value is not None:
                sign, number, unit = value.groups()
                stability: Literal["stable", "unstable"] = "stable" if status == "S" else "unstable"
                return _weight(stability, sign, number, unit, None, line)
            if _SICS_WEIGHT_ERROR.fullmatch(rest):
                return ScaleFault("weight-error", f"MT-SICS weight error:{rest}", line)
            return Garbage(line, "MT-SICS weight value or unit malformed")
        if rest is not None:
            return Garbage(line, f"MT-SICS S {status} carries unexpected data")
        if status == "+":
            return ScaleReading("overload", None, None, line)
        if status == "-":
            return ScaleReading("underload", None, None, line)
        return _sics_refusal("S", status, line)

    @staticmethod
    def _tare_reply(
        command: str, status: str, rest: str | None, line: bytes
    ) -> ScaleEvent | Garbage:
        if status in "SDA" and rest is not None:
            value = _SICS_VALUE.fullmatch(rest)
            if value is None:
                return Garbage(line, f"MT-SICS {command} tare value malformed")
            sign, number, unit = value.groups()
            tare = _milligrams(sign, number, unit.lower()) if unit.lower() in _MG_PER_UNIT else None
            return CommandAck(command, line, tare)
        if rest is not None:
            return Garbage(line, f"MT-SICS {command} {status} carries unexpected data")
        return _sics_refusal(command, status, line)


# --- device side: the host's command lines -------------------------------------------------

_COMMAND_LINE: Final = re.compile(r"([A-Z@?][A-Z0-9?]*)(?:[ :].*)?")


class CommandLineDecoder(_LineDecoder[ScaleCommand]):
    """Decoder for the command lines a host sends to a scale (for the scale simulator).

    Any line whose first word looks like a command (``Q``, ``SIR``, ``R``, ``?PT``, ``@``,
    ``PT:12.3 g``) becomes a :class:`ScaleCommand`; the simulator decides whether it knows it
    (and answers ``EC,E01`` or ``ES`` if not).

    Example:
        >>> CommandLineDecoder().feed(b"Q\\r\\nZ\\r\\n")
        [ScaleCommand(name='Q', raw=b'Q'), ScaleCommand(name='Z', raw=b'Z')]
    """

    def _decode_line(self, line: bytes) -> ScaleCommand | Garbage:
        bad = _non_printable(line)
        if bad is not None:
            return bad
        command = _COMMAND_LINE.fullmatch(line.decode("ascii").strip(" "))
        if command is None:
            return Garbage(line, "not a command line")
        return ScaleCommand(command.group(1), line)


FORMATS: Final[dict[str, type[Decoder[ScaleEvent]]]] = {
    "and": AndDecoder,
    "continuous": ContinuousDecoder,
    "sics": SicsDecoder,
}
"""Decoder class by format name (the scale adapter's configuration value)."""


# --- host side: commands -------------------------------------------------------------------

_AND_COMMANDS: Final = ("Q", "S", "SIR", "Z", "T")
_SICS_COMMANDS: Final = ("S", "SI", "SIR", "Z", "T")


def and_command(name: AndCommandName) -> bytes:
    """The bytes of an A&D command: ``Q`` weight now, ``S`` next stable, ``SIR`` stream, ``Z``, ``T``.

    Raises:
        CommandError: ``name`` is not one of these (fault ``caller``).

    Example:
        >>> and_command("SIR")
        b'SIR\\r\\n'
    """
    if not isinstance(name, str) or name not in _AND_COMMANDS:
        raise CommandError(f"A&D command must be one of {_AND_COMMANDS}, got {name!r}")
    return name.encode("ascii") + _CRLF


def sics_command(name: SicsCommandName) -> bytes:
    """The bytes of an MT-SICS command: ``S`` stable, ``SI`` now, ``SIR`` repeat, ``Z``, ``T``.

    Raises:
        CommandError: ``name`` is not one of these (fault ``caller``).

    Example:
        >>> sics_command("SI")
        b'SI\\r\\n'
    """
    if not isinstance(name, str) or name not in _SICS_COMMANDS:
        raise CommandError(f"MT-SICS command must be one of {_SICS_COMMANDS}, got {name!r}")
    return name.encode("ascii") + _CRLF


def continuous_request() -> bytes:
    """The ``R`` poll that makes many continuous-format indicators send one line.

    Example:
        >>> continuous_request()
        b'R\\r\\n'
    """
    return b"R" + _CRLF


# --- device side: what a scale sends (for the simulator) -----------------------------------


def _weight_status(status: Stability, codes: dict[str, str]) -> str:
    if status not in codes:
        raise CommandError(f"status must be one of {sorted(codes)}, got {status!r}")
    return codes[status]


def format_and(status: Stability, milligrams: int, unit: Literal["g", "kg"] = "g") -> bytes:
    """One A&D standard-format line (15 characters + CR LF), as the balance sends it.

    Grams carry 3 decimals (range +-9999.999 g), kilograms 6 (+-9.999999 kg), so every
    milligram value in range decodes back exactly. Over-/underload ignore ``milligrams``.

    Raises:
        CommandError: unknown status or unit, or the weight does not fit the 9-character field.

    Example:
        >>> format_and("stable", 13538)
        b'ST,+0013.538  g\\r\\n'
        >>> format_and("underload", 0)
        b'OL,-9999999E+19\\r\\n'
    """
    if status in ("overload", "underload"):
        return b"OL,%s9999999E+19\r\n" % (b"+" if status == "overload" else b"-")
    header = _weight_status(status, {"stable": "ST", "unstable": "US"})
    if unit not in ("g", "kg"):
        raise CommandError(f"A&D unit must be 'g' or 'kg', got {unit!r}")
    sign, digits = _format_value(milligrams, unit)
    if len(digits) > 8:
        raise CommandError(f"{milligrams} mg does not fit the A&D value field in {unit}")
    return f"{header},{sign}{digits.zfill(8)}{unit:>3}".encode("ascii") + _CRLF


def format_and_ack() -> bytes:
    """A&D's acknowledgement of ``Z``/``T``: ACK (0x06) CR LF.

    Example:
        >>> format_and_ack()
        b'\\x06\\r\\n'
    """
    return b"\x06" + _CRLF


def format_and_error(code: str) -> bytes:
    """An A&D error line, ``code`` like ``E01`` (undefined command) or ``E11`` (unstable).

    Raises:
        CommandError: ``code`` is not ``E`` and two digits.

    Example:
        >>> format_and_error("E01")
        b'EC,E01\\r\\n'
    """
    if not isinstance(code, str) or re.fullmatch(r"E\d\d", code) is None:
        raise CommandError(f"A&D error code must look like 'E01', got {code!r}")
    return f"EC,{code}".encode("ascii") + _CRLF


def format_continuous(
    status: Stability,
    milligrams: int,
    is_net: bool = False,
    unit: Literal["g", "kg"] = "kg",
) -> bytes:
    """One continuous-format line ``ST,GS,+0001.234000kg`` + CR LF.

    Kilograms carry 6 decimals and grams 3, so every milligram value decodes back exactly;
    the integer part is zero-padded to at least 4 digits (at most 12).

    Raises:
        CommandError: unknown status or unit, or more than 12 integer digits.

    Example:
        >>> format_continuous("stable", 1234000)
        b'ST,GS,+0001.234000kg\\r\\n'
        >>> format_continuous("overload", 0, is_net=True)
        b'OL,NT,+99999999kg\\r\\n'
    """
    kind = "NT" if is_net else "GS"
    if unit not in ("g", "kg"):
        raise CommandError(f"continuous-format unit must be 'g' or 'kg', got {unit!r}")
    if status in ("overload", "underload"):
        sign = "+" if status == "overload" else "-"
        return f"OL,{kind},{sign}99999999{unit}".encode("ascii") + _CRLF
    code = _weight_status(status, {"stable": "ST", "unstable": "US"})
    sign, digits = _format_value(milligrams, unit)
    width = _DECIMALS[unit] + 5
    return f"{code},{kind},{sign}{digits.zfill(width)}{unit}".encode("ascii") + _CRLF


def format_sics(status: Stability, milligrams: int, unit: Literal["g", "kg", "mg"] = "g") -> bytes:
    """One MT-SICS weight reply: ``S S    100.000 g``, ``S D ...``, ``S +`` or ``S -``.

    The value is right-aligned in 10 characters with the unit's fixed decimals (g 3, kg 6,
    mg 0), so every milligram value decodes back exactly.

    Raises:
        CommandError: unknown status or unit, or more than 12 integer digits.

    Example:
        >>> format_sics("stable", 100000)
        b'S S    100.000 g\\r\\n'
        >>> format_sics("overload", 0)
        b'S +\\r\\n'
    """
    if status in ("overload", "underload"):
        return b"S +\r\n" if status == "overload" else b"S -\r\n"
    code = _weight_status(status, {"stable": "S", "unstable": "D"})
    sign, digits = _format_value(milligrams, unit)
    value = digits if sign == "+" else sign + digits
    return f"S {code} {value:>10} {unit}".encode("ascii") + _CRLF


def format_sics_ack(
    command: Literal["Z", "T"], milligrams: int = 0, unit: Literal["g", "kg", "mg"] = "g"
) -> bytes:
    """MT-SICS acknowledgement: ``Z A`` (zeroed) or ``T S <tare> <unit>`` (tared).

    Raises:
        CommandError: ``command`` is neither ``Z`` nor ``T``, or the unit is unknown.

    Example:
        >>> format_sics_ack("Z")
        b'Z A\\r\\n'
        >>> format_sics_ack("T", 2486)
        b'T S      2.486 g\\r\\n'
    """
    if command == "Z":
        return b"Z A" + _CRLF
    if command != "T":
        raise CommandError(f"MT-SICS acknowledgement is for 'Z' or 'T', got {command!r}")
    sign, digits = _format_value(milligrams, unit)
    value = digits if sign == "+" else sign + digits
    return f"T S {value:>10} {unit}".encode("ascii") + _CRLF


def format_sics_error(
    kind: Literal["syntax", "transmission", "logical", "busy"],
    command: Literal["S", "Z", "T"] = "S",
) -> bytes:
    """An MT-SICS error reply: ``ES``/``ET``/``EL``, or ``<command> I`` for ``busy``.

    The decoder turns each back into a :class:`ScaleFault` of the same ``kind``.

    Raises:
        CommandError: unknown kind or command.

    Example:
        >>> format_sics_error("syntax")
        b'ES\\r\\n'
        >>> format_sics_error("busy", "Z")
        b'Z I\\r\\n'
    """
    wire = {"syntax": "ES", "transmission": "ET", "logical": "EL"}
    if kind == "busy":
        if command not in ("S", "Z", "T"):
            raise CommandError(f"busy reply is for 'S', 'Z' or 'T', got {command!r}")
        return f"{command} I".encode("ascii") + _CRLF
    if kind not in wire:
        raise CommandError(f"MT-SICS error kind must be one of {[*wire, 'busy']}, got {kind!r}")
    return wire[kind].encode("ascii") + _CRLF


if TYPE_CHECKING:
    # Static proof that every decoder is a Decoder (mypy checks these assignments).
    _and: Decoder[ScaleEvent] = AndDecoder()
    _continuous: Decoder[ScaleEvent] = ContinuousDecoder()
    _sics: Decoder[ScaleEvent] = SicsDecoder()
    _commands: Decoder[ScaleCommand] = CommandLineDecoder()
