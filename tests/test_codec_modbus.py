"""The Waveshare Modbus RTU relay codec: golden vectors, framing, resync, refusals, timing, fuzzing.

Pure code first (h11's order): whole frames, then the same bytes split at every boundary and one
byte at a time, then garbage before a frame, corrupted frames and oversize byte counts; then
Hypothesis over arbitrary chunks and over encoded replies and requests.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codecs import modbus
from firmware_bridge.codecs.base import Garbage
from firmware_bridge.codecs.modbus import (
    ALL_RELAYS,
    CHANNELS,
    FC_READ_COILS,
    FC_READ_INPUTS,
    FC_WRITE_COIL,
    FC_WRITE_COILS,
    FC_WRITE_REGISTERS,
    FLASH_OFF_BASE,
    FLASH_ON_BASE,
    FLASH_UNIT_MS,
    MAX_BUFFER,
    MAX_FRAME,
    BitsReply,
    CoilWritten,
    ExceptionReply,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    all_off,
    all_on,
    bits_response,
    coil_written_response,
    crc16,
    exception_response,
    flash_off,
    flash_on,
    read_inputs,
    read_relays,
    silence_s,
    wire_time_s,
    with_crc,
    write_relay,
)
from firmware_bridge.errors import CommandError, ProtocolError

GOLDEN_PATH = Path(__file__).parent / "data" / "golden" / "modbus.json"
GOLDEN: list[dict[str, Any]] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))["vectors"]
ENCODERS: dict[str, Callable[..., bytes]] = {
    "read_relays": read_relays,
    "read_inputs": read_inputs,
    "write_relay": write_relay,
    "flash_on": flash_on,
    "flash_off": flash_off,
    "all_off": all_off,
    "all_on": all_on,
    "bits_response": bits_response,
    "coil_written_response": coil_written_response,
    "exception_response": exception_response,
}
Item = Any  # an event or a Garbage


def _number(value: int | str) -> int:
    return int(value, 16) if isinstance(value, str) else value


def _raw(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["hex"])


def _vector_id(vector: dict[str, Any]) -> str:
    return str(vector["hex"])


def _expected_event(vector: dict[str, Any]) -> Request | Response:
    """The event the receiving side's decoder must produce for a golden vector."""
    raw = _raw(vector)
    fields = vector["expect"]["decoded"]
    if vector["kind"] == "request":
        return Request(
            fields["unit"],
            fields["function"],
            _number(fields["address"]),
            _number(fields["value"]),
            raw,
        )
    if fields["event"] == "BitsReply":
        bits = tuple(i in fields["on"] for i in range(fields["nbits"]))
        return BitsReply(fields["unit"], fields["function"], bits, raw)
    if fields["event"] == "CoilWritten":
        return CoilWritten(
            fields["unit"], _number(fields["address"]), _number(fields["value"]), raw
        )
    return ExceptionReply(fields["unit"], fields["function"], fields["code"], raw)


def _events(items: Sequence[Item]) -> list[Item]:
    return [item for item in items if not isinstance(item, Garbage)]


def _skipped(items: Sequence[Item]) -> bytes:
    return b"".join(item.data for item in items if isinstance(item, Garbage))


def _accounted(items: Sequence[Item]) -> bytes:
    """Every byte the decoder consumed, in order: Garbage data and event frames."""
    return b"".join(item.data if isinstance(item, Garbage) else item.raw for item in items)


def _feed_chunks(decoder: ResponseDecoder | RequestDecoder, chunks: Sequence[bytes]) -> list[Item]:
    out: list[Item] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        assert decoder.buffered <= decoder.max_buffer
        assert decoder.buffered < MAX_FRAME
    return out


# --- the frames the framing tests run over -----------------------------------------------------

RESPONSES: list[tuple[bytes, Response]] = [
    (_raw(v), _expected_event(v))  # type: ignore[misc]
    for v in GOLDEN
    if v["kind"] == "response"
]
RESPONSES += [  # FC05 requests come back as their echo
    (
        _raw(v),
        CoilWritten(
            v["expect"]["decoded"]["unit"],
            _number(v["expect"]["decoded"]["address"]),
            _number(v["expect"]["decoded"]["value"]),
            _raw(v),
        ),
    )
    for v in GOLDEN
    if v["kind"] == "request" and v["expect"]["decoded"]["function"] == FC_WRITE_COIL
]
_GENERATED: list[tuple[bytes, Response]] = [
    (
        bits_response(1, FC_READ_INPUTS, [False] * 8),
        BitsReply(1, FC_READ_INPUTS, (False,) * 8, b""),
    ),
    (bits_response(247, FC_READ_COILS, [True] * 16), BitsReply(247, 1, (True,) * 16, b"")),
    (exception_response(1, FC_WRITE_COIL, 2), ExceptionReply(1, FC_WRITE_COIL, 2, b"")),
    (exception_response(3, FC_READ_INPUTS, 6), ExceptionReply(3, FC_READ_INPUTS, 6, b"")),
    (
        coil_written_response(2, FLASH_OFF_BASE + 7, 0xFFFF),
        CoilWritten(2, FLASH_OFF_BASE + 7, 0xFFFF, b""),
    ),
]
RESPONSES += [(frame, dataclasses.replace(event, raw=frame)) for frame, event in _GENERATED]

REQUESTS: list[tuple[bytes, Request]] = [
    (_raw(v), _expected_event(v))  # type: ignore[misc]
    for v in GOLDEN
    if v["kind"] == "request"
]
_FC10 = with_crc(bytes.fromhex("01 10 00 00 00 02 04 00 01 00 02"))
REQUESTS += [
    (read_inputs(247, 3, 5), Request(247, FC_READ_INPUTS, 3, 5, read_inputs(247, 3, 5))),
    (all_on(0), Request(0, FC_WRITE_COIL, ALL_RELAYS, 0xFF00, all_on(0))),
    (_FC10, Request(1, FC_WRITE_REGISTERS, 0, 2, _FC10)),
]

GOOD_RESPONSE = exception_response(9, FC_WRITE_COIL, 4)
GOOD_RESPONSE_EVENT = ExceptionReply(9, FC_WRITE_COIL, 4, GOOD_RESPONSE)
GOOD_REQUEST = read_inputs(9)
GOOD_REQUEST_EVENT = Request(9, FC_READ_INPUTS, 0, 8, GOOD_REQUEST)
NOISES = [
    b"\x00",
    b"\xff",
    b"\xff\x01",
    b"\x01\x01\x01",
    b"\x01\x05\x02",
    b"\x00" * 7,
    bytes(range(0x20, 0x30)),
    b"\x01\x0f\x00\x00\x00\x08",
]
CASES = [(ResponseDecoder, frame, event) for frame, event in RESPONSES] + [
    (RequestDecoder, frame, event) for frame, event in REQUESTS
]
CASE_IDS = [f"{decoder.__name__}-{frame.hex(' ')}" for decoder, frame, _ in CASES]


# --- golden vectors -----------------------------------------------------------------------------


def test_the_golden_file_cites_at_least_two_independent_sources() -> None:
    sources = {vector["source"] for vector in GOLDEN}
    assert len(sources) >= 2
    for vector in GOLDEN:
        assert {"source", "where", "note", "hex", "kind", "expect"} <= vector.keys()
        assert vector["kind"] in {"request", "response"}
        assert vector["source"] and vector["where"]


@pytest.mark.parametrize("vector", GOLDEN, ids=_vector_id)
def test_golden_crc(vector: dict[str, Any]) -> None:
    raw = _raw(vector)
    assert crc16(raw[:-2]).to_bytes(2, "little") == raw[-2:]
    assert with_crc(raw[:-2]) == raw
    assert crc16(raw) == 0  # the CRC over a frame with its CRC appended is zero


def test_crc16_check_value() -> None:
    """CRC-16/MODBUS of ASCII "123456789" is 0x4B37 (the catalogue's check value)."""
    assert crc16(b"123456789") == 0x4B37
    assert crc16(b"") == 0xFFFF


@pytest.mark.parametrize("vector", [v for v in GOLDEN if "encoder" in v["expect"]], ids=_vector_id)
def test_golden_encoders_produce_the_bytes(vector: dict[str, Any]) -> None:
    encoder = ENCODERS[vector["expect"]["encoder"]]
    assert encoder(**vector["expect"]["args"]).hex(" ") == _raw(vector).hex(" ")


@pytest.mark.parametrize(
    "vector", [v for v in GOLDEN if "refused_by" in v["expect"]], ids=_vector_id
)
def test_golden_frames_outside_our_range_are_refused_by_the_encoders(
    vector: dict[str, Any],
) -> None:
    for refusal in vector["expect"]["refused_by"]:
        with pytest.raises(CommandError) as caught:
            ENCODERS[refusal["encoder"]](**refusal["args"])
        assert caught.value.fault == "caller"


@pytest.mark.parametrize("vector", GOLDEN, ids=_vector_id)
def test_golden_frames_decode(vector: dict[str, Any]) -> None:
    raw = _raw(vector)
    expected = _expected_event(vector)
    decoder = RequestDecoder() if vector["kind"] == "request" else ResponseDecoder()
    assert decoder.feed(raw) == [expected]
    assert decoder.buffered == 0
    if isinstance(expected, ExceptionReply):
        assert expected.meaning == vector["expect"]["decoded"]["meaning"]
    if isinstance(expected, Request) and expected.function == FC_WRITE_COIL:
        echo = CoilWritten(expected.unit, expected.address, expected.value, raw)
        assert ResponseDecoder().feed(raw) == [echo]


# --- framing: split, one byte at a time, garbage, corruption ----------------------------------


@pytest.mark.parametrize(("decoder_type", "frame", "event"), CASES, ids=CASE_IDS)
def test_split_at_every_boundary(decoder_type: type, frame: bytes, event: Any) -> None:
    for cut in range(len(frame) + 1):
        decoder = decoder_type()
        assert decoder.feed(frame[:cut]) + decoder.feed(frame[cut:]) == [event]
        assert decoder.buffered == 0


@pytest.mark.parametrize(("decoder_type", "frame", "event"), CASES, ids=CASE_IDS)
def test_one_byte_at_a_time(decoder_type: type, frame: bytes, event: Any) -> None:
    decoder = decoder_type()
    items = _feed_chunks(decoder, [frame[i : i + 1] for i in range(len(frame))])
    assert items == [event]
    assert decoder.buffered == 0


@pytest.mark.parametrize(("decoder_type", "frame", "event"), CASES, ids=CASE_IDS)
def test_garbage_before_a_frame_is_skipped(decoder_type: type, frame: bytes, event: Any) -> None:
    for noise in NOISES:
        whole = decoder_type()
        items = whole.feed(noise + frame)
        assert _events(items) == [event], noise
        assert _skipped(items) == noise
        assert all(g.fault == "line" for g in items if isinstance(g, Garbage))
        bytewise = decoder_type()
        stream = noise + frame
        items = _feed_chunks(bytewise, [stream[i : i + 1] for i in range(len(stream))])
        assert _events(items) == [event], noise
        assert _skipped(items) == noise
        assert whole.buffered == bytewise.buffered == 0


@pytest.mark.parametrize(("decoder_type", "frame", "event"), CASES, ids=CASE_IDS)
def test_every_single_byte_change_is_refused_and_the_next_frame_still_decodes(
    decoder_type: type, frame: bytes, event: Any
) -> None:
    good, good_event = (
        (GOOD_RESPONSE, GOOD_RESPONSE_EVENT)
        if decoder_type is ResponseDecoder
        else (GOOD_REQUEST, GOOD_REQUEST_EVENT)
    )
    for position in range(len(frame)):
        for value in range(256):
            if value == frame[position]:
                continue
            corrupted = frame[:position] + bytes((value,)) + frame[position + 1 :]
            decoder = decoder_type()
            items = decoder.feed(corrupted + good)
            assert event not in items
            assert _events(items) == [good_event], (position, value)
            assert _accounted(items) == corrupted + good
            assert decoder.buffered == 0


def test_an_echoed_read_request_is_never_a_reply() -> None:
    """Quirk: an adapter's local echo of ``01 01 00 00 00 08 3D CC`` (byte count 00) is Garbage."""
    decoder = ResponseDecoder()
    items = decoder.feed(read_relays(1) + read_inputs(1))
    items += decoder.flush()  # the last byte waits for a function code until the silence
    assert _events(items) == []
    assert _skipped(items) == read_relays(1) + read_inputs(1)


def test_an_echoed_write_request_looks_exactly_like_the_reply() -> None:
    """Quirk: an FC05 request and its reply are the same bytes; the codec cannot tell them apart."""
    request = flash_on(1, 0, 200)
    assert ResponseDecoder().feed(request) == [CoilWritten(1, FLASH_ON_BASE, 2, request)]
    assert RequestDecoder().feed(request) == [Request(1, FC_WRITE_COIL, FLASH_ON_BASE, 2, request)]


def test_a_stray_byte_before_a_reply_does_not_stall_the_decoder() -> None:
    """Quirk: ``FF`` + the 8-byte FC05 echo looks like a 10-byte FC01 reply until resync."""
    reply = bytes.fromhex("01 05 02 00 00 02 4D B3")
    decoder = ResponseDecoder()
    items = decoder.feed(b"\xff" + reply)
    assert items == [
        Garbage(b"\xff", "noise before a complete frame"),
        CoilWritten(1, FLASH_ON_BASE, 2, reply),
    ]


def test_frames_behind_a_stalled_head_are_all_kept() -> None:
    """Noise announcing a 255-byte reply must not swallow the whole replies that follow it."""
    noise = b"\x00\x01\xfa"
    first, second = flash_on(1, 0, 200), bits_response(1, FC_READ_INPUTS, [True])
    decoder = ResponseDecoder()
    items = decoder.feed(noise + first + second)
    assert _events(items) == [
        CoilWritten(1, FLASH_ON_BASE, 2, first),
        BitsReply(1, FC_READ_INPUTS, (True,) + (False,) * 7, second),
    ]
    assert _skipped(items) == noise
    assert decoder.buffered == 0


def test_a_published_wrong_crc_is_refused() -> None:
    """Quirk: a public copy shows ``01 05 02 00 00 05 8D B0`` (the 700 ms CRC); 500 ms is 0C 71."""
    wrong = bytes.fromhex("01 05 02 00 00 05 8D B0")
    assert _events(RequestDecoder().feed(wrong)) == []
    assert _events(ResponseDecoder().feed(wrong)) == []
    assert flash_on(1, 0, 500) == bytes.fromhex("01 05 02 00 00 05 0C 71")


def test_unknown_function_codes_are_garbage_a_byte_at_a_time() -> None:
    fc03_reply = with_crc(bytes.fromhex("01 03 02 00 01"))
    decoder = ResponseDecoder()
    items = decoder.feed(fc03_reply)
    assert items[:2] == [
        Garbage(b"\x01", "unknown function code"),
        Garbage(b"\x03", "byte count out of range"),  # 03 02 00 would be an empty FC02 reply
    ]
    items += decoder.flush()  # 00 01 79 84 could start a 126-byte FC01 reply until the silence
    assert _events(items) == []
    assert _skipped(items) == fc03_reply
    fc06_request = with_crc(bytes.fromhex("01 06 40 00 00 02"))
    device = RequestDecoder()
    refused = device.feed(fc06_request) + device.flush()
    assert _events(refused) == []
    assert refused[0] == Garbage(b"\x01\x06\x40\x00", "unknown function code")  # skips merge
    assert _skipped(refused) == fc06_request


def test_exceptions_to_functions_the_host_never_sends_are_noise() -> None:
    frame = exception_response(1, 0x2B, 1)
    assert _events(ResponseDecoder().feed(frame)) == []


@pytest.mark.parametrize("byte_count", [0, 251, 255])
def test_a_byte_count_out_of_range_is_garbage(byte_count: int) -> None:
    bogus = with_crc(bytes((1, FC_READ_COILS, byte_count)) + bytes(byte_count))
    decoder = ResponseDecoder()
    items = decoder.feed(bogus + GOOD_RESPONSE)
    assert items[0] == Garbage(b"\x01", "byte count out of range")
    assert _events(items)[-1] == GOOD_RESPONSE_EVENT
    assert decoder.buffered == 0


def test_the_largest_reply_decodes_and_the_buffer_stays_bounded() -> None:
    bits = [i % 3 == 0 for i in range(2000)]
    frame = bits_response(1, FC_READ_COILS, bits)
    assert len(frame) == 255 <= MAX_FRAME
    decoder = ResponseDecoder()
    items = _feed_chunks(decoder, [frame[i : i + 7] for i in range(0, len(frame), 7)])
    assert items == [BitsReply(1, FC_READ_COILS, tuple(bits), frame)]


def test_an_oversize_request_is_garbage() -> None:
    body = bytes.fromhex("01 0f 00 00 07 d0") + bytes((248,)) + bytes(248)
    items = RequestDecoder().feed(with_crc(body) + GOOD_REQUEST)
    assert items[0] == Garbage(b"\x01", "byte count out of range")
    assert _events(items) == [GOOD_REQUEST_EVENT]


def test_a_huge_noise_burst_never_grows_the_buffer() -> None:
    for decoder in (ResponseDecoder(), RequestDecoder()):
        burst = b"\x01\x01\xfa\x10\x0f" * 4000
        items = decoder.feed(burst)
        assert decoder.buffered < MAX_FRAME
        assert _accounted(items) + bytes(decoder._buffer) == burst
        assert decoder.max_buffer == MAX_BUFFER == 2 * MAX_FRAME


def test_flush_ends_a_truncated_frame_at_the_silence() -> None:
    frame = read_relays(1)
    decoder = RequestDecoder()
    assert decoder.feed(frame[:-1]) == []
    assert decoder.buffered == len(frame) - 1
    items = decoder.flush()
    assert items[0] == Garbage(b"\x01", "frame truncated by silence")
    assert _events(items) == []
    assert _skipped(items) == frame[:-1]
    assert decoder.buffered == 0
    assert decoder.feed(frame) == [Request(1, FC_READ_COILS, 0, 8, frame)]


def test_flush_keeps_a_frame_behind_a_truncated_one() -> None:
    """A whole frame after a truncated head decodes at the silence (here: a 4-byte tail)."""
    decoder = ResponseDecoder()
    stream = b"\x07\x01\x09" + GOOD_RESPONSE + b"\x01\x05\x00\x00"
    items = decoder.feed(stream)
    items += decoder.flush()
    assert _events(items) == [GOOD_RESPONSE_EVENT]
    assert _accounted(items) == stream
    assert decoder.buffered == 0


def test_reset_drops_a_partial_frame() -> None:
    decoder = ResponseDecoder()
    decoder.feed(GOOD_RESPONSE[:3])
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(GOOD_RESPONSE) == [GOOD_RESPONSE_EVENT]


# --- events, encoders and refusals --------------------------------------------------------------


def test_bits_come_as_sent_and_the_caller_trims() -> None:
    frame = bits_response(1, FC_READ_INPUTS, [True, False, True])
    (reply,) = ResponseDecoder().feed(frame)
    assert isinstance(reply, BitsReply)
    assert reply.bits == (True, False, True, False, False, False, False, False)
    assert reply.bits[:3] == (True, False, True)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (1, "illegal function"),
        (2, "illegal data address"),
        (3, "illegal data value"),
        (4, "server device failure"),
        (6, "server device busy"),
        (0x42, "unknown exception code 0x42"),
    ],
)
def test_exception_meaning(code: int, meaning: str) -> None:
    (reply,) = ResponseDecoder().feed(exception_response(1, FC_WRITE_COIL, code))
    assert isinstance(reply, ExceptionReply)
    assert reply == ExceptionReply(1, FC_WRITE_COIL, code, reply.raw)
    assert reply.meaning == meaning
    assert reply.raw[1] == 0x85


def test_events_are_frozen() -> None:
    (reply,) = ResponseDecoder().feed(GOOD_RESPONSE)
    assert isinstance(reply, ExceptionReply)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.code = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("ms", "units"), [(1, 1), (99, 1), (100, 1), (101, 2), (150, 2), (200, 2), (6_553_500, 0xFFFF)]
)
def test_flash_time_is_rounded_up_to_100_ms_units(ms: int, units: int) -> None:
    assert FLASH_UNIT_MS == 100
    assert flash_on(1, 7, ms)[2:6] == (FLASH_ON_BASE + 7).to_bytes(2, "big") + units.to_bytes(
        2, "big"
    )
    assert flash_off(1, 7, ms)[2:6] == (FLASH_OFF_BASE + 7).to_bytes(2, "big") + units.to_bytes(
        2, "big"
    )


def test_writes_may_be_broadcast_and_the_board_knows_not_to_answer() -> None:
    for frame in (write_relay(0, 1, True), flash_on(0, 2, 300), all_off(0), all_on(0)):
        (request,) = RequestDecoder().feed(frame)
        assert isinstance(request, Request)
        assert request.unit == 0
        assert request.is_broadcast


def test_the_constants_the_adapter_and_simulator_use() -> None:
    assert (FC_READ_COILS, FC_READ_INPUTS, FC_WRITE_COIL) == (0x01, 0x02, 0x05)
    assert (FC_WRITE_COILS, FC_WRITE_REGISTERS) == (0x0F, 0x10)
    assert (ALL_RELAYS, FLASH_ON_BASE, FLASH_OFF_BASE, CHANNELS) == (0x00FF, 0x0200, 0x0400, 8)
    assert MAX_BUFFER == 2 * MAX_FRAME
    assert ResponseDecoder().max_buffer == RequestDecoder().max_buffer == MAX_BUFFER
    assert flash_off(1, 0) == flash_off(1, 0, 100)


REFUSED: list[tuple[str, Callable[[], object]]] = [
    ("read is never broadcast", lambda: read_relays(0)),
    ("inputs read is never broadcast", lambda: read_inputs(0)),
    ("unit above 247", lambda: read_relays(248)),
    ("start past the board", lambda: read_relays(1, 8)),
    ("count zero", lambda: read_relays(1, 0, 0)),
    ("count past the board", lambda: read_inputs(1, 0, 9)),
    ("start + count past the board", lambda: read_inputs(1, 4, 5)),
    ("negative start", lambda: read_relays(1, -1)),
    ("write to unit 248", lambda: write_relay(248, 0, True)),
    ("channel 8", lambda: write_relay(1, 8, True)),
    ("channel -1", lambda: write_relay(1, -1, False)),
    ("unit given as a bool", lambda: write_relay(True, 0, True)),
    ("flash 0 ms", lambda: flash_on(1, 0, 0)),
    ("flash negative", lambda: flash_on(1, 0, -5)),
    ("flash beyond 16 bits of units", lambda: flash_on(1, 0, 6_553_501)),
    ("flash on channel 8", lambda: flash_on(1, 8, 100)),
    ("flash given a float", lambda: flash_on(1, 0, 150.0)),  # type: ignore[arg-type]
    ("flash off 0 ms", lambda: flash_off(1, 0, 0)),
    ("all off at a negative unit", lambda: all_off(-1)),
    ("all on at unit 248", lambda: all_on(248)),
    ("reply from unit 0", lambda: bits_response(0, FC_READ_COILS, [True])),
    ("bits reply to FC05", lambda: bits_response(1, FC_WRITE_COIL, [True])),
    ("empty bits reply", lambda: bits_response(1, FC_READ_COILS, [])),
    ("2001 bits", lambda: bits_response(1, FC_READ_COILS, [True] * 2001)),
    ("address beyond 16 bits", lambda: coil_written_response(1, 0x10000, 0)),
    ("value beyond 16 bits", lambda: coil_written_response(1, 0, 0x10000)),
    ("exception to a function with the 0x80 bit", lambda: exception_response(1, 0x85, 1)),
    ("exception code 0", lambda: exception_response(1, FC_WRITE_COIL, 0)),
    ("baud rate 0", lambda: silence_s(0)),
    ("negative byte count", lambda: wire_time_s(-1, 9600)),
]


@pytest.mark.parametrize("call", [c for _, c in REFUSED], ids=[n for n, _ in REFUSED])
def test_refused_arguments_are_the_callers_fault(call: Callable[[], object]) -> None:
    with pytest.raises(CommandError) as caught:
        call()
    assert caught.value.fault == "caller"
    assert isinstance(caught.value, ValueError)


# --- timing ------------------------------------------------------------------------------------


def test_silence_is_three_and_a_half_11_bit_characters() -> None:
    assert silence_s(9600) == pytest.approx(0.004010, abs=1e-6)
    assert silence_s(4800) == pytest.approx(0.008021, abs=1e-6)
    assert silence_s(19200) == pytest.approx(0.002005, abs=1e-6)  # not yet floored


@pytest.mark.parametrize("baudrate", [19201, 38400, 57600, 115200])
def test_silence_is_floored_above_19200(baudrate: int) -> None:
    assert silence_s(baudrate) == 0.00175


def test_wire_time_counts_10_bits_a_byte() -> None:
    assert wire_time_s(8, 9600) == pytest.approx(8 / 960)
    assert wire_time_s(0, 9600) == 0.0


def test_the_codec_imports_no_port_thread_or_clock() -> None:
    tree = ast.parse(Path(modbus.__file__).read_text(encoding="utf-8"))
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    forbidden = {"time", "datetime", "serial", "threading", "asyncio", "socket", "select"}
    assert {name.split(".")[0] for name in names} & forbidden == set()


# --- property-based ----------------------------------------------------------------------------

_UNITS = st.integers(1, 247)
_BITS = st.lists(st.booleans(), min_size=1, max_size=64)
_RESPONSE_FRAMES = [frame for frame, _ in RESPONSES]
_REQUEST_FRAMES = [frame for frame, _ in REQUESTS]


_ESCAPE = 0xF0


def _stream(blob: bytes, frames: list[bytes]) -> list[bytes]:
    """Noise from ``blob`` with known frames spliced in, cut into chunks of 1..12 bytes.

    ``F0 i`` in the blob stands for ``frames[i % len(frames)]``; every other byte is itself. One
    plain binary draw keeps Hypothesis fast enough for 10 000 examples; chunk sizes follow the
    bytes themselves, so shrinking changes both.
    """
    stream = bytearray()
    i = 0
    while i < len(blob):
        if blob[i] == _ESCAPE and i + 1 < len(blob):
            stream += frames[blob[i + 1] % len(frames)]
            i += 2
        else:
            stream.append(blob[i])
            i += 1
    chunks, pos = [], 0
    while pos < len(stream):
        size = stream[pos] % 12 + 1
        chunks.append(bytes(stream[pos : pos + size]))
        pos += size
    return chunks


def _check_fuzz(decoder: ResponseDecoder | RequestDecoder, chunks: list[bytes]) -> None:
    items: list[Item] = []
    try:
        items = _feed_chunks(decoder, chunks)
        items += decoder.flush()
    except ProtocolError:
        return  # allowed to escape (the decoders here never raise one)
    assert decoder.buffered == 0
    assert _accounted(items) == b"".join(chunks)
    for item in items:
        if not isinstance(item, Garbage):
            assert crc16(item.raw) == 0


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_response_decoder(blob: bytes) -> None:
    _check_fuzz(ResponseDecoder(), _stream(blob, _RESPONSE_FRAMES))


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_request_decoder(blob: bytes) -> None:
    _check_fuzz(RequestDecoder(), _stream(blob, _REQUEST_FRAMES))


@st.composite
def _responses(draw: st.DrawFn) -> tuple[bytes, Response]:
    kind = draw(st.sampled_from(["bits", "coil", "exception"]))
    unit = draw(_UNITS)
    if kind == "bits":
        function = draw(st.sampled_from([FC_READ_COILS, FC_READ_INPUTS]))
        bits = draw(_BITS)
        frame = bits_response(unit, function, bits)
        padded = tuple(bits) + (False,) * (-len(bits) % 8)
        return frame, BitsReply(unit, function, padded, frame)
    if kind == "coil":
        address, value = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))
        frame = coil_written_response(unit, address, value)
        return frame, CoilWritten(unit, address, value, frame)
    function = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 0x0F, 0x10]))
    code = draw(st.integers(1, 255))
    frame = exception_response(unit, function, code)
    return frame, ExceptionReply(unit, function, code, frame)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[bytes, Request]:
    kind = draw(st.sampled_from(["read", "write", "flash", "multiple"]))
    unit = draw(st.integers(0, 247))
    if kind == "read":
        function = draw(st.sampled_from([FC_READ_COILS, FC_READ_INPUTS]))
        start = draw(st.integers(0, CHANNELS - 1))
        count = draw(st.integers(1, CHANNELS - start))
        unit = max(unit, 1)
        encode = read_relays if function == FC_READ_COILS else read_inputs
        frame = encode(unit, start, count)
        return frame, Request(unit, function, start, count, frame)
    if kind == "write":
        channel, on = draw(st.integers(0, CHANNELS - 1)), draw(st.booleans())
        frame = write_relay(unit, channel, on)
        return frame, Request(unit, FC_WRITE_COIL, channel, 0xFF00 if on else 0, frame)
    if kind == "flash":
        channel, units = draw(st.integers(0, CHANNELS - 1)), draw(st.integers(1, 0xFFFF))
        frame = flash_on(unit, channel, units * FLASH_UNIT_MS)
        return frame, Request(unit, FC_WRITE_COIL, FLASH_ON_BASE + channel, units, frame)
    function = draw(st.sampled_from([FC_WRITE_COILS, FC_WRITE_REGISTERS]))
    payload = draw(st.binary(min_size=1, max_size=32))
    quantity = draw(st.integers(1, 0xFFFF))
    body = bytes((unit, function)) + bytes(2) + quantity.to_bytes(2, "big")
    frame = with_crc(body + bytes((len(payload),)) + payload)
    return frame, Request(unit, function, 0, quantity, frame)


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=500, deadline=None)
@given(st.lists(_responses(), max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_encoded_replies_decode_back_exactly(
    replies: list[tuple[bytes, Response]], cuts: list[int]
) -> None:
    stream = b"".join(frame for frame, _ in replies)
    decoder = ResponseDecoder()
    assert _feed_chunks(decoder, _cut(stream, cuts)) == [event for _, event in replies]
    assert decoder.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(_requests(), max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_encoded_requests_decode_back_exactly(
    requests: list[tuple[bytes, Request]], cuts: list[int]
) -> None:
    stream = b"".join(frame for frame, _ in requests)
    decoder = RequestDecoder()
    assert _feed_chunks(decoder, _cut(stream, cuts)) == [event for _, event in requests]
    assert decoder.buffered == 0
