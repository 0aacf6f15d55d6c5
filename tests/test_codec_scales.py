"""Weighing-scale codecs: golden lines, splits, garbage, corruption, drift, round trips, fuzzing.

None of the three formats carries a checksum, so a corrupted digit inside a well-formed line
decodes as another plausible weight (:func:`test_a_corrupted_digit_still_parses_no_checksum`
pins that down); only structural damage is detected. The scale adapter therefore trusts a
weight only when the scale says it is stable and several consecutive readings agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codecs.base import Garbage
from firmware_bridge.codecs.scales import (
    FORMATS,
    MAX_BUFFER,
    MAX_LINE,
    AndDecoder,
    CommandAck,
    CommandLineDecoder,
    ContinuousDecoder,
    ScaleCommand,
    ScaleFault,
    ScaleReading,
    SicsDecoder,
    and_command,
    continuous_request,
    format_and,
    format_and_ack,
    format_and_error,
    format_continuous,
    format_sics,
    format_sics_ack,
    format_sics_error,
    sics_command,
)
from firmware_bridge.errors import CommandError, ProtocolError

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "golden" / "scales.json").read_text(encoding="utf-8")
)
VECTORS: list[dict[str, Any]] = GOLDEN["vectors"]
TO_HOST = [v for v in VECTORS if v.get("direction", "to_host") == "to_host"]
TO_DEVICE = [v for v in VECTORS if v.get("direction") == "to_device"]
ENCODERS: dict[str, Callable[[Any], bytes]] = {"and": and_command, "sics": sics_command}
STABILITIES = ("stable", "unstable", "overload", "underload")
EVENT_TYPES = (ScaleReading, ScaleFault, CommandAck, ScaleCommand, Garbage)


def _bytes(vector: dict[str, Any]) -> bytes:
    if "hex" in vector:
        return bytes.fromhex(vector["hex"])
    return str(vector["text"]).encode("latin-1")


def _id(vector: dict[str, Any]) -> str:
    return f"{vector['format']}:{_bytes(vector)!r}"


def _feed(decoder: Any, chunks: Sequence[bytes]) -> list[Any]:
    events: list[Any] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
        assert decoder.buffered <= decoder.max_buffer
    return events


def _check(event: Any, expect: dict[str, Any], line: bytes) -> None:
    kind = expect["type"]
    if kind == "garbage":
        assert isinstance(event, Garbage)
        assert event.fault == expect["fault"]
        assert event.data == line
        return
    if kind == "reading":
        assert isinstance(event, ScaleReading)
        assert (event.status, event.milligrams, event.is_net) == (
            expect["status"],
            expect["milligrams"],
            expect["is_net"],
        )
    elif kind == "fault":
        assert isinstance(event, ScaleFault)
        assert event.kind == expect["kind"]
    elif kind == "ack":
        assert isinstance(event, CommandAck)
        assert event.command == expect["command"]
        assert event.milligrams == expect.get("milligrams")
    else:  # pragma: no cover - a typo in the JSON
        pytest.fail(f"unknown expectation {kind!r}")
    assert event.raw == line


# --- golden vectors --------------------------------------------------------------------------


def test_golden_file_cites_two_independent_sources_per_format() -> None:
    for name in ("and", "continuous", "sics"):
        sources = {v["source"] for v in VECTORS if v["format"] == name}
        assert len(sources) >= 2, name
    for vector in VECTORS:
        assert vector["source"] and vector["where"] and vector["note"]
        assert ("hex" in vector) != ("text" in vector)


@pytest.mark.parametrize("vector", TO_HOST, ids=_id)
def test_golden_line_whole(vector: dict[str, Any]) -> None:
    data = _bytes(vector)
    events = FORMATS[vector["format"]]().feed(data)
    assert len(events) == 1
    _check(events[0], vector["expect"], data.rstrip(b"\r\n"))


@pytest.mark.parametrize("vector", TO_HOST, ids=_id)
def test_golden_line_split_at_every_boundary_and_byte_by_byte(vector: dict[str, Any]) -> None:
    data = _bytes(vector)
    line = data.rstrip(b"\r\n")
    for cut in range(len(data) + 1):
        events = _feed(FORMATS[vector["format"]](), [data[:cut], data[cut:]])
        assert len(events) == 1, cut
        _check(events[0], vector["expect"], line)
    events = _feed(FORMATS[vector["format"]](), [data[i : i + 1] for i in range(len(data))])
    assert len(events) == 1
    _check(events[0], vector["expect"], line)


NOISE = [b"\x00\xff\xfe", b"garbage", b"ST,+001", b"\xff\r\n\x00", b"S S  12", b"US,NT"]


@pytest.mark.parametrize("vector", TO_HOST, ids=_id)
@pytest.mark.parametrize("noise", NOISE)
def test_golden_line_after_garbage(vector: dict[str, Any], noise: bytes) -> None:
    data = _bytes(vector)
    decoder = FORMATS[vector["format"]]()
    events = decoder.feed(noise + b"\r\n" + data)
    assert events, noise
    assert all(isinstance(e, Garbage) for e in events[:-1])
    _check(events[-1], vector["expect"], data.rstrip(b"\r\n"))
    assert decoder.buffered == 0


@pytest.mark.parametrize("vector", TO_HOST, ids=_id)
def test_garbage_glued_to_a_line_spoils_only_that_line(vector: dict[str, Any]) -> None:
    data = _bytes(vector)
    events = FORMATS[vector["format"]]().feed(b"\xff" + data + data)
    assert len(events) == 2
    assert isinstance(events[0], Garbage)
    assert events[0].fault == "line"
    _check(events[1], vector["expect"], data.rstrip(b"\r\n"))


@pytest.mark.parametrize("vector", TO_DEVICE, ids=_id)
def test_golden_commands_encode_exactly_and_decode(vector: dict[str, Any]) -> None:
    data = _bytes(vector)
    name = vector["expect"]["name"]
    assert ENCODERS[vector["format"]](name) == data
    assert CommandLineDecoder().feed(data) == [ScaleCommand(name, data.rstrip(b"\r\n"))]


# --- structural corruption (each gives Garbage, the next good line still decodes) ------------

GOOD = {
    "and": b"ST,+00123.45  g\r\n",
    "continuous": b"ST,GS,+0001.234kg\r\n",
    "sics": b"S S      100.00 g\r\n",
}
GOOD_MG = {"and": 123450, "continuous": 1234000, "sics": 100000}
LOST_SEPARATOR = {
    "and": b"ST+00123.45  g\r\n",
    "continuous": b"STGS,+0001.234kg\r\n",
    "sics": b"SS      100.00 g\r\n",
}
TRUNCATED = {
    "and": [b"ST,+00123.4  g\r\n", b"ST,+00123.45\r\n", b"T,+00123.45  g\r\n"],
    "continuous": [b"ST,GS,+0001.2\r\n", b"ST,GS,+0001.234k\r\n", b"ST,G\r\n"],
    "sics": [b"S S      100.00\r\n", b"S S \r\n", b"S S      100.\r\n"],
}


def _corruptions(name: str) -> list[bytes]:
    good = GOOD[name]
    middle = len(good) // 2
    return [
        LOST_SEPARATOR[name],
        good.rstrip(b"\r\n") + good,  # a lost line end merges two lines
        good[:middle] + b"\x00" + good[middle:],
        good[:middle] + b"\xff" + good[middle:],
        *TRUNCATED[name],
    ]


@pytest.mark.parametrize("name", ["and", "continuous", "sics"])
def test_structural_corruptions_give_garbage_and_the_next_line_decodes(name: str) -> None:
    for corrupted in _corruptions(name):
        for chunks in ([corrupted + GOOD[name]], [bytes([b]) for b in corrupted + GOOD[name]]):
            events = _feed(FORMATS[name](), chunks)
            assert len(events) == 2, corrupted
            assert isinstance(events[0], Garbage), corrupted
            assert events[0].fault == "line", corrupted
            assert isinstance(events[1], ScaleReading)
            assert events[1].milligrams == GOOD_MG[name]


def test_and_width_catches_every_dropped_or_doubled_byte() -> None:
    """A&D's fixed 15-character width is its only integrity check; the decoder insists on it."""
    line = GOOD["and"].rstrip(b"\r\n")
    for i in range(len(line)):
        dropped = line[:i] + line[i + 1 :]
        doubled = line[: i + 1] + line[i:]
        for corrupted in (dropped, doubled):
            events = AndDecoder().feed(corrupted + b"\r\n" + GOOD["and"])
            assert isinstance(events[0], Garbage), corrupted
            assert events[1] == ScaleReading("stable", 123450, None, line)


@pytest.mark.parametrize("name", ["and", "continuous", "sics"])
def test_a_corrupted_digit_still_parses_no_checksum(name: str) -> None:
    """No checksum: a changed digit is a different, plausible weight (why readings must agree)."""
    corrupted = GOOD[name].replace(b"1", b"7", 1)
    (event,) = FORMATS[name]().feed(corrupted)
    assert isinstance(event, ScaleReading)
    assert event.milligrams not in (None, GOOD_MG[name])


RESYNC_LINE = {**{FORMATS[name]: GOOD[name] for name in GOOD}, CommandLineDecoder: b"Q\r\n"}


@pytest.mark.parametrize("cls", list(RESYNC_LINE), ids=lambda c: c.__name__)
def test_overlong_line_is_garbage_and_decoding_resyncs(cls: Any) -> None:
    good = RESYNC_LINE[cls]
    junk = b"S" * 150
    for chunks in ([junk + b"\r\n" + good], [bytes([b]) for b in junk + b"\r\n" + good]):
        decoder = cls()
        events = _feed(decoder, chunks)
        assert isinstance(events[0], Garbage)
        assert "overlong" in events[0].reason
        assert all(isinstance(e, Garbage) for e in events[:-1])
        assert b"".join(e.data for e in events[:-1]) == junk
        assert not isinstance(events[-1], Garbage)
        assert decoder.buffered == 0


def test_line_of_exactly_max_line_is_not_overlong() -> None:
    longest = b"S" * (MAX_LINE - 2)
    (event,) = AndDecoder().feed(longest + b"\r\n")
    assert isinstance(event, Garbage)
    assert "overlong" not in event.reason
    (event,) = AndDecoder().feed(longest + b"S\r\n")
    assert isinstance(event, Garbage)
    assert "overlong" in event.reason
    assert MAX_BUFFER == 2 * MAX_LINE


@pytest.mark.parametrize("cls", [*FORMATS.values(), CommandLineDecoder])
def test_blank_lines_are_ignored(cls: Any) -> None:
    decoder = cls()
    assert decoder.feed(b"\r\n\r\n   \r\n\n\r\t\r\n") == []
    assert decoder.buffered == 0


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r", b"\n\r"])
def test_bare_cr_or_lf_line_ends(ending: bytes) -> None:
    events = AndDecoder().feed((b"ST,+00081.72  g" + ending) * 3)
    assert [e.milligrams for e in events] == [81720] * 3


def test_reset_drops_a_partial_line() -> None:
    decoder = SicsDecoder()
    assert decoder.feed(b"S S      12") == []
    assert decoder.buffered == 11
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(b"0.00 g\r\nS S      100.00 g\r\n")[-1].milligrams == 100000


# --- A&D specifics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"QT,+00000012 PC", ScaleFault),  # counting mode: pieces, not a weight
        (b"ST,+0012.345 mg", ScaleReading),
        (b"ST,+012.3456 kg", ScaleReading),
        (b"ST,+00012.34 ct", ScaleFault),
        (b"ST,+00012.34 oz", ScaleFault),
        (b"ST,+00012.34 GN", ScaleFault),  # grains (OpenTrickler's A&D FX120)
        (b"ST,+00012.34 xy", Garbage),  # not a unit at all
        (b"ST,+0012.34 ct", Garbage),  # 14 characters
        (b"WT,+0012.34  g", Garbage),
        (b"SN,6A7609446 ", Garbage),
        (b"EC,E99", ScaleFault),
        (b"EC,X", Garbage),
        (b"OL,99999999E+19", Garbage),
    ],
)
def test_and_headers_units_and_errors(line: bytes, expected: type) -> None:
    (event,) = AndDecoder().feed(line + b"\r\n")
    assert type(event) is expected


def test_and_units_convert_exactly_and_faults_name_their_kind() -> None:
    events = AndDecoder().feed(
        b"ST,+0012.345 mg\r\nST,+012.3456 kg\r\nQT,+00000012 PC\r\nWT,+0012.34  g\r\n"
    )
    assert [getattr(e, "milligrams", None) for e in events[:2]] == [12, 12345600]
    assert isinstance(events[2], ScaleFault)
    assert events[2].kind == "mode"
    assert isinstance(events[3], Garbage)
    assert events[3].fault == "device"


def test_and_ack_and_error_lines() -> None:
    events = AndDecoder().feed(format_and_ack() + format_and_error("E04") + b"EC,E07\r\n")
    assert events[0] == CommandAck("AK", b"\x06")
    assert [e.kind for e in events[1:]] == ["syntax", "logical"]


# --- continuous-format vendor drift ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status", "milligrams", "is_net"),
    [
        (b"ST,GS,+0001.234kg", "stable", 1234000, False),
        (b"ST,GS,   245.6 g", "stable", 245600, False),
        (b"ST,GS    20.7g  ", "stable", 20700, False),
        (b"US,NT,-0000.50kg", "unstable", -500000, True),
        (b"ST,GS,+ 1.234 kg", "stable", 1234000, False),
        (b"US,NT,- 0.500kg", "unstable", -500000, True),
        (b"ST,GS, 00254.80 kg", "stable", 254800000, False),
        (b"ST,GS,    450.5,kg", "stable", 450500000, False),
        (b"ST,GS,+000000.kg", "stable", 0, False),
        (b"ST , GS , +1.5 KG", "stable", 1500000, False),
        (b"  ST,NT,   0.123kg  ", "stable", 123000, True),
        (b"US,GS+12.5g", "unstable", 12500, False),
        (b"OL,GS,+999999kg", "overload", None, False),
        (b"OL,NT,-  OL  kg", "underload", None, True),
    ],
)
def test_continuous_vendor_drift(
    line: bytes, status: str, milligrams: int | None, is_net: bool
) -> None:
    (event,) = ContinuousDecoder().feed(line + b"\r\n")
    assert event == ScaleReading(status, milligrams, is_net, line)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "expected", "fault"),
    [
        (b"ST,TR,+0001.234kg", Garbage, "device"),  # a tare line, not a load
        (b"QT,GS,+0001.234kg", Garbage, "device"),
        (b"ST,GS,+0001.234lb", ScaleFault, None),
        (b"ST,GS,+0001.234t", ScaleFault, None),  # tonne or tola: ambiguous, refused
        (b"ST,GS,+0001.234", Garbage, "line"),
        (b"ST,GS,+00a1.234kg", Garbage, "line"),
        (b"ST,GS,++0001.234kg", Garbage, "line"),
    ],
)
def test_continuous_refusals(line: bytes, expected: type, fault: str | None) -> None:
    (event,) = ContinuousDecoder().feed(line + b"\r\n")
    assert type(event) is expected
    if fault is not None:
        assert event.fault == fault
    else:
        assert event.kind == "unit"


# --- MT-SICS statuses and errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"S S      100.00 g", ScaleReading("stable", 100000, None, b"S S      100.00 g")),
        (b"S D     -0.012 kg", ScaleReading("unstable", -12000, None, b"S D     -0.012 kg")),
        (b"S S     12.34567 g", ScaleReading("stable", 12346, None, b"S S     12.34567 g")),
        (b"S S      0.01250 g", ScaleReading("stable", 12, None, b"S S      0.01250 g")),
        (b"S S      0.01350 g", ScaleReading("stable", 14, None, b"S S      0.01350 g")),
        (b"S S        250 mg", ScaleReading("stable", 250, None, b"S S        250 mg")),
        (b"S +", ScaleReading("overload", None, None, b"S +")),
        (b"S -", ScaleReading("underload", None, None, b"S -")),
        (b"S I", ScaleFault("busy", "MT-SICS S I: not executable now", b"S I")),
        (b"ES", ScaleFault("syntax", "MT-SICS ES: command not understood", b"ES")),
        (b"Z A", CommandAck("Z", b"Z A")),
        (b"ZI A", CommandAck("ZI", b"ZI A")),
        (b"T S      2.486 g", CommandAck("T", b"T S      2.486 g", 2486)),
        (b"TI D      1.234 g", CommandAck("TI", b"TI D      1.234 g", 1234)),
        (b"T S      2.486 oz", CommandAck("T", b"T S      2.486 oz", None)),
    ],
)
def test_sics_replies(line: bytes, expected: Any) -> None:
    assert SicsDecoder().feed(line + b"\r\n") == [expected]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"Z I", "busy"),
        (b"Z +", "range"),
        (b"Z -", "range"),
        (b"T I", "busy"),
        (b"T +", "range"),
        (b"TI -", "range"),
        (b"S L", "logical"),
        (b"EL", "logical"),
        (b"ET  ", "transmission"),
        (b"S S    Error 23", "weight-error"),
        (b"S S     12.34 lb", "unit"),
    ],
)
def test_sics_faults(line: bytes, kind: str) -> None:
    (event,) = SicsDecoder().feed(line + b"\r\n")
    assert isinstance(event, ScaleFault)
    assert event.kind == kind


@pytest.mark.parametrize(
    ("line", "fault"),
    [
        (b"TAC A", "device"),
        (b"@ A", "device"),
        (b"SIS A 0 12.3 0 5 1 0 0", "device"),
        (b"S A 1.234 g", "line"),
        (b"S I 12", "line"),
        (b"Z A 12", "line"),
        (b"Z S", "line"),
        (b"T S", "line"),
        (b"T S abc g", "line"),
        (b"S S", "line"),
        (b"S X", "line"),
        (b"s s 1.0 g", "line"),
        (b"S S      1.0 q", "line"),
    ],
)
def test_sics_garbage(line: bytes, fault: str) -> None:
    (event,) = SicsDecoder().feed(line + b"\r\n")
    assert isinstance(event, Garbage)
    assert event.fault == fault


# --- conversions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "milligrams"),
    [
        (b"ST,GS,+0.000001kg", 1),
        (b"ST,GS,+0.0000005kg", 0),  # half to even
        (b"ST,GS,+0.0000015kg", 2),
        (b"ST,GS,+123456789.123456kg", 123456789123456),  # beyond float's exact digits
        (b"ST,GS,+999999999999.999999kg", 999999999999999999),
        (b"ST,GS,-0.000kg", 0),
        (b"ST,GS,+.5kg", 500000),
        (b"ST,GS,+0.1g", 100),
        (b"ST,GS,+7mg", 7),
    ],
)
def test_conversions_are_exact(line: bytes, milligrams: int) -> None:
    (event,) = ContinuousDecoder().feed(line + b"\r\n")
    assert isinstance(event, ScaleReading)
    assert event.milligrams == milligrams
    assert type(event.milligrams) is int


def test_grams_property() -> None:
    assert ScaleReading("stable", 1234, None, b"").grams == 1.234
    assert ScaleReading("overload", None, None, b"").grams is None


# --- encoders --------------------------------------------------------------------------------


def test_encoders() -> None:
    assert [and_command(n) for n in ("Q", "S", "SIR", "Z", "T")] == [
        b"Q\r\n",
        b"S\r\n",
        b"SIR\r\n",
        b"Z\r\n",
        b"T\r\n",
    ]
    assert [sics_command(n) for n in ("S", "SI", "SIR", "Z", "T")] == [
        b"S\r\n",
        b"SI\r\n",
        b"SIR\r\n",
        b"Z\r\n",
        b"T\r\n",
    ]
    assert continuous_request() == b"R\r\n"


@pytest.mark.parametrize("encoder", [and_command, sics_command])
@pytest.mark.parametrize("name", ["q", "R", "ZI", "", "Q\r\n", "S ", 5, None, ["S"], b"S"])
def test_encoders_refuse_unknown_commands(encoder: Callable[[Any], bytes], name: Any) -> None:
    with pytest.raises(CommandError) as caught:
        encoder(name)
    assert caught.value.fault == "caller"


def test_and_refuses_si_but_sics_accepts_it() -> None:
    with pytest.raises(CommandError):
        and_command("SI")  # type: ignore[arg-type]
    assert sics_command("SI") == b"SI\r\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda: format_and("stable", 10_000_000),
        lambda: format_and("stable", 10_000_000, "kg"),
        lambda: format_and("stable", 1, "lb"),
        lambda: format_and("stale", 1),
        lambda: format_and("stable", 1.5),
        lambda: format_and("stable", True),
        lambda: format_and_error("11"),
        lambda: format_continuous("stable", 10**18),
        lambda: format_continuous("stable", 1, unit="t"),
        lambda: format_sics("stable", 1, "lb"),
        lambda: format_sics("stable", 10**12, "mg"),
        lambda: format_sics_ack("T", 10**15),
        lambda: format_sics("moving", 1),
        lambda: format_sics_ack("C"),
        lambda: format_sics_error("parity"),
        lambda: format_sics_error("busy", "Q"),
    ],
)
def test_formatters_refuse_what_they_cannot_express(call: Callable[[], bytes]) -> None:
    with pytest.raises(CommandError) as caught:
        call()
    assert caught.value.fault == "caller"


def test_sics_error_and_ack_formatters_round_trip() -> None:
    for kind in ("syntax", "transmission", "logical"):
        (event,) = SicsDecoder().feed(format_sics_error(kind))  # type: ignore[arg-type]
        assert isinstance(event, ScaleFault)
        assert event.kind == kind
    for command in ("S", "Z", "T"):
        (event,) = SicsDecoder().feed(format_sics_error("busy", command))  # type: ignore[arg-type]
        assert isinstance(event, ScaleFault)
        assert event.kind == "busy"
    assert SicsDecoder().feed(format_sics_ack("Z")) == [CommandAck("Z", b"Z A")]
    assert SicsDecoder().feed(format_sics_ack("T", -2486, "kg")) == [
        CommandAck("T", b"T S  -0.002486 kg", -2486)
    ]


# --- round trips (formatter output decodes back exactly) -------------------------------------

STATUS = st.sampled_from(STABILITIES)


def _split(data: bytes, cut: int) -> list[bytes]:
    cut %= len(data) + 1
    return [data[:cut], data[cut:]]


def _assert_round_trip(event: Any, status: str, milligrams: int, is_net: bool | None) -> None:
    assert isinstance(event, ScaleReading)
    assert event.status == status
    assert event.is_net is is_net
    expected = None if status in ("overload", "underload") else milligrams
    assert event.milligrams == expected


@settings(max_examples=1000, deadline=None)
@given(
    status=STATUS,
    milligrams=st.integers(-9_999_999, 9_999_999),
    unit=st.sampled_from(["g", "kg"]),
    cut=st.integers(0, 20),
)
def test_round_trip_and(status: Any, milligrams: int, unit: Any, cut: int) -> None:
    data = format_and(status, milligrams, unit)
    assert len(data) == 17
    (event,) = _feed(AndDecoder(), _split(data, cut))
    _assert_round_trip(event, status, milligrams, None)


@settings(max_examples=1000, deadline=None)
@given(
    status=STATUS,
    milligrams=st.integers(-(10**15) + 1, 10**15 - 1),
    is_net=st.booleans(),
    unit=st.sampled_from(["g", "kg"]),
    cut=st.integers(0, 40),
)
def test_round_trip_continuous(
    status: Any, milligrams: int, is_net: bool, unit: Any, cut: int
) -> None:
    data = format_continuous(status, milligrams, is_net, unit)
    (event,) = _feed(ContinuousDecoder(), _split(data, cut))
    _assert_round_trip(event, status, milligrams, is_net)


@settings(max_examples=1000, deadline=None)
@given(
    status=STATUS,
    milligrams=st.integers(-(10**12) + 1, 10**12 - 1),
    unit=st.sampled_from(["g", "kg", "mg"]),
    cut=st.integers(0, 40),
)
def test_round_trip_sics(status: Any, milligrams: int, unit: Any, cut: int) -> None:
    data = format_sics(status, milligrams, unit)
    (event,) = _feed(SicsDecoder(), _split(data, cut))
    _assert_round_trip(event, status, milligrams, None)


@pytest.mark.parametrize("encoder", [and_command, sics_command])
def test_round_trip_commands(encoder: Callable[[Any], bytes]) -> None:
    names = ("Q", "S", "SIR", "Z", "T") if encoder is and_command else ("S", "SI", "SIR", "Z", "T")
    data = b"".join(encoder(n) for n in names) + continuous_request()
    events = _feed(CommandLineDecoder(), [data[i : i + 3] for i in range(0, len(data), 3)])
    assert [e.name for e in events] == [*names, "R"]


def test_command_line_decoder_shapes() -> None:
    events = CommandLineDecoder().feed(b'?PT\r\nPT:12.3 g\r\n@\r\nhello\r\n\x00Q\r\nD "x"\r\n')
    assert [getattr(e, "name", None) for e in events] == ["?PT", "PT", "@", None, None, "D"]
    assert [e.fault for e in events if isinstance(e, Garbage)] == ["line", "line"]


# --- fuzzing: arbitrary bytes never break a decoder ------------------------------------------

# Half the examples are remapped onto the formats' own characters so that they reach deep into
# the parsers; ``mode`` picks that, a good line around the noise, and two cut points.
_ALPHABET = sorted(set(b"STUSOLGNQRECAIDZ,+-. 0123456789gkmlbE\r\n\x00\x06\xff\t"))
_TO_ALPHABET = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))
_AROUND = [b"", GOOD["and"], GOOD["continuous"], GOOD["sics"], b"S" * 70, b"\x06\r\n"]
FUZZED = (AndDecoder, ContinuousDecoder, SicsDecoder, CommandLineDecoder)


@settings(max_examples=10_000, deadline=None)
@given(data=st.binary(max_size=160), mode=st.integers(0, 2**32 - 1))
def test_fuzz_decoders_never_break(data: bytes, mode: int) -> None:
    """Every example is fed to all four decoders, so each gets the full 10 000 examples."""
    if mode & 1:
        data = data.translate(_TO_ALPHABET)
    around = _AROUND[(mode >> 1) % len(_AROUND)]
    data = around + data + around
    a, b = sorted(((mode >> 4) % (len(data) + 1), (mode >> 14) % (len(data) + 1)))
    chunks = [data[:a], data[a:b], data[b:]]
    for cls in FUZZED:
        decoder = cls()
        out: list[Any] = []
        for chunk in chunks:
            try:
                out += decoder.feed(chunk)
            except ProtocolError:  # allowed by the Decoder contract; these decoders never raise
                continue
            assert decoder.buffered <= decoder.max_buffer
            assert decoder.buffered <= MAX_LINE
        for event in out:
            assert isinstance(event, EVENT_TYPES)
            if isinstance(event, Garbage):
                assert event.fault in ("line", "device")
        # Every byte reported is a byte received (line ends are never reported).
        reported = sum(len(e.data if isinstance(e, Garbage) else e.raw) for e in out)
        assert reported + decoder.buffered <= len(data)
