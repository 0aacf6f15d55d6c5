"""Kerong KR-CU16 codec: golden vectors, then every frame whole, split, byte by byte, after
noise and corrupted (h11's order), the quirks with the bytes that showed them, and fuzzing.

Golden vectors and their sources: tests/data/golden/kerong.json.
"""

from __future__ import annotations

import ast
import itertools
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codecs import kerong
from firmware_bridge.codecs.base import Garbage
from firmware_bridge.codecs.kerong import (
    EnergizeTimeReply,
    OtherFrame,
    ReplyDecoder,
    Request,
    RequestDecoder,
    StatusReply,
    UnlockReply,
)
from firmware_bridge.errors import CommandError

GOLDEN_PATH = Path(__file__).parent / "data" / "golden" / "kerong.json"
GOLDEN: list[dict[str, Any]] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))["vectors"]

Event = StatusReply | UnlockReply | EnergizeTimeReply | OtherFrame | Request
AnyDecoder = ReplyDecoder | RequestDecoder

ENCODERS: dict[str, Callable[..., bytes]] = {
    "status": kerong.status,
    "status_all": kerong.status_all,
    "unlock": kerong.unlock,
    "unlock_all": kerong.unlock_all,
    "set_energize_time": kerong.set_energize_time,
    "query_energize_time": kerong.query_energize_time,
    "delayed_unlock": kerong.delayed_unlock,
    "status_reply": kerong.status_reply,
    "unlock_reply": kerong.unlock_reply,
    "energize_time_reply": kerong.energize_time_reply,
}


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _num(text: str | int) -> int:
    return text if isinstance(text, int) else int(text, 0)


def _vector_id(vector: dict[str, Any]) -> str:
    return f"{vector['hex']} [{vector['source'].split(' ')[0]}]"


def _expected(vector: dict[str, Any]) -> Event:
    """The event a vector decodes to, built from its JSON fields (not from the codec)."""
    raw, e = _hex(vector["hex"]), vector["expect"]
    if vector["kind"] == "request":
        return Request(e["board"], e["lock"], _num(e["command"]), _hex(e["data"]), raw)
    match e["event"]:
        case "StatusReply":
            return StatusReply(e["board"], _num(e["hooks"]), _num(e["items"]), raw)
        case "UnlockReply":
            return UnlockReply(e["board"], e["lock"], _num(e["command"]), _hex(e["data"]), raw)
        case "EnergizeTimeReply":
            return EnergizeTimeReply(e["board"], e["ms"], raw)
        case "OtherFrame":
            return OtherFrame(_num(e["addr"]), _num(e["command"]), _hex(e["data"]), raw)
    raise AssertionError(f"unknown event in golden file: {e}")


def _encoder_args(vector: dict[str, Any]) -> dict[str, Any]:
    e = vector["expect"]
    if "args" in e:
        return dict(e["args"])
    # status_reply vectors carry their arguments as the expected fields
    return {"board": e["board"], "hooks": _num(e["hooks"]), "items": _num(e["items"])}


GOOD_REQUESTS = [v for v in GOLDEN if v["kind"] == "request" and not v["expect"].get("garbage")]
BAD_REQUESTS = [v for v in GOLDEN if v["kind"] == "request" and v["expect"].get("garbage")]
REPLIES = [v for v in GOLDEN if v["kind"] == "reply"]
ENCODED = [v for v in GOLDEN if v["expect"].get("encoder")]

# Every frame each decoder is tried on: the golden ones and a few more that stress framing.
REPLY_CASES: list[tuple[bytes, Event]] = [(_hex(v["hex"]), _expected(v)) for v in REPLIES] + [
    (kerong.unlock_reply(15, 16, False, command=0x39), UnlockReply(15, 16, 0x39, b"\x01", b"")),
    (kerong.unlock_reply(12, 14), UnlockReply(12, 14, 0x31, b"\x00", b"")),  # SUM is 03
    (kerong.unlock_reply(0, 3), UnlockReply(0, 3, 0x31, b"\x00", b"")),  # ADDR is 02
    (kerong.energize_time_reply(3, 7700), EnergizeTimeReply(3, 7700, b"")),  # data 03 02
    (kerong.status_reply(15, 0xFFFF, 0x0303), StatusReply(15, 0xFFFF, 0x0303, b"")),
]
REQUEST_CASES: list[tuple[bytes, Event]] = [
    (_hex(v["hex"]), _expected(v)) for v in GOOD_REQUESTS
] + [
    (kerong.delayed_unlock(3, 4, 3), Request(3, 4, 0x39, b"\x03", b"")),  # data is ETX
    (kerong.unlock_all(2), Request(2, 1, 0x33, b"", b"")),
    (kerong.set_energize_time(1, 7700), Request(1, 1, 0x37, b"\x03\x02", b"")),  # 03 02
    (kerong.status(15), Request(15, 1, 0x30, b"", b"")),
]


def _with_raw(event: Event, raw: bytes) -> Event:
    return type(event)(**{**event.__dict__, "raw": raw})


CASES = [(ReplyDecoder, frame, _with_raw(ev, frame)) for frame, ev in REPLY_CASES] + [
    (RequestDecoder, frame, _with_raw(ev, frame)) for frame, ev in REQUEST_CASES
]
CASE_IDS = [f"{d.__name__[:-7]}:{frame.hex(' ')}" for d, frame, _ in CASES]
GOOD_AFTER = {
    ReplyDecoder: kerong.status_reply(1, 0x1234, 0x0002),
    RequestDecoder: kerong.unlock(2, 5),
}


def _pieces(events: Sequence[object]) -> bytes:
    """Every byte the decoder gave back, in order: Garbage data and event raw alike."""
    return b"".join(e.data if isinstance(e, Garbage) else e.raw for e in events)  # type: ignore[attr-defined]


# --- golden vectors --------------------------------------------------------------------------


def test_golden_file_cites_two_independent_sources_for_the_basic_frames() -> None:
    for frame in ("02 00 30 03 35", "02 00 31 03 36"):
        sources = {v["source"] for v in GOLDEN if v["hex"] == frame}
        repositories = {s for s in sources if "hardware.md" not in s}
        assert len(repositories) >= 2, (frame, sources)
    for vector in GOLDEN:
        assert vector["where"] and vector["note"], vector


@pytest.mark.parametrize("vector", ENCODED, ids=_vector_id)
def test_golden_frames_are_encoded_byte_exact(vector: dict[str, Any]) -> None:
    encoder = ENCODERS[vector["expect"]["encoder"]]
    assert encoder(**_encoder_args(vector)).hex(" ") == _hex(vector["hex"]).hex(" ")


@pytest.mark.parametrize("vector", GOOD_REQUESTS, ids=_vector_id)
def test_golden_requests_decode(vector: dict[str, Any]) -> None:
    decoder = RequestDecoder()
    assert decoder.feed(_hex(vector["hex"])) == [_expected(vector)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("vector", REPLIES, ids=_vector_id)
def test_golden_replies_decode(vector: dict[str, Any]) -> None:
    decoder = ReplyDecoder()
    assert decoder.feed(_hex(vector["hex"])) == [_expected(vector)]
    assert decoder.buffered == 0


@pytest.mark.parametrize("vector", BAD_REQUESTS, ids=_vector_id)
def test_golden_wrong_frames_from_public_code_are_garbage(vector: dict[str, Any]) -> None:
    """02 10 30 03 3E and 02 0F 31 03 49 (xaleel/locker): the checksum catches both."""
    bad, good = _hex(vector["hex"]), kerong.unlock(2, 5)
    first, *rest = RequestDecoder().feed(bad + good)
    assert isinstance(first, Garbage) and first.data == bad
    assert "checksum" in first.reason
    assert rest == [Request(2, 5, 0x31, b"", good)]
    correct = _hex(vector["expect"]["correct_hex"])
    assert correct != bad and kerong.checksum(correct[:-1]) == correct[-1]
    assert isinstance(RequestDecoder().feed(correct)[0], Request)


# --- every frame: whole, split, byte by byte, after noise, corrupted -------------------------


@pytest.mark.parametrize(("decoder_type", "frame", "expected"), CASES, ids=CASE_IDS)
def test_whole_frame(decoder_type: type[AnyDecoder], frame: bytes, expected: Event) -> None:
    decoder = decoder_type()
    assert decoder.feed(frame) == [expected]
    assert decoder.buffered == 0


@pytest.mark.parametrize(("decoder_type", "frame", "expected"), CASES, ids=CASE_IDS)
def test_split_at_every_boundary(
    decoder_type: type[AnyDecoder], frame: bytes, expected: Event
) -> None:
    for cut in range(1, len(frame)):
        decoder = decoder_type()
        assert decoder.feed(frame[:cut]) == [], cut
        assert decoder.buffered == cut
        assert decoder.feed(frame[cut:]) == [expected], cut
        assert decoder.buffered == 0


@pytest.mark.parametrize(("decoder_type", "frame", "expected"), CASES, ids=CASE_IDS)
def test_one_byte_at_a_time(decoder_type: type[AnyDecoder], frame: bytes, expected: Event) -> None:
    decoder = decoder_type()
    events = [decoder.feed(frame[i : i + 1]) for i in range(len(frame))]
    assert events == [[]] * (len(frame) - 1) + [[expected]]


@pytest.mark.parametrize(("decoder_type", "frame", "expected"), CASES, ids=CASE_IDS)
def test_after_noise_without_stx(
    decoder_type: type[AnyDecoder], frame: bytes, expected: Event
) -> None:
    rng = random.Random(frame)
    noises = [b"\x03", b"\xff\x00\x35\x03\x13", bytes(rng.choice(range(3, 256)) for _ in range(40))]
    for noise in noises:
        decoder = decoder_type()
        events = decoder.feed(noise + frame)
        assert events == [Garbage(noise, "noise before start of frame"), expected]


@pytest.mark.parametrize(("decoder_type", "frame", "expected"), CASES, ids=CASE_IDS)
def test_after_noise_with_stx(
    decoder_type: type[AnyDecoder], frame: bytes, expected: Event
) -> None:
    """Stray STX, truncated frames: skipped as Garbage, the frame behind them still decodes."""
    truncated = [kerong.status_reply(0, 1, 0)[:4], kerong.unlock(0, 1)[:3], kerong.status(3)[:4]]
    for noise in [b"\x02", b"\x02\x02", b"\xff\x02\x13\x03", b"\x02\x00\x35", *truncated]:
        events = decoder_type().feed(noise + frame)
        assert events[-1] == expected, noise
        assert all(isinstance(e, Garbage) for e in events[:-1]), noise
        assert _pieces(events[:-1]) == noise


def _kind(event: object) -> tuple[str, int]:
    return type(event).__name__, event.raw[2]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("decoder_type", "frame", "expected"), CASES, ids=CASE_IDS)
def test_every_single_byte_change_is_caught(
    decoder_type: type[AnyDecoder], frame: bytes, expected: Event
) -> None:
    """No changed byte yields the frame's event with other data; the next good frame decodes.

    (A change may leave a *shorter* valid frame, e.g. a 37 set read as a 37 query: see the
    module docstring. It never leaves a frame of the original kind and length.)
    """
    good = GOOD_AFTER[decoder_type]
    [good_event] = decoder_type().feed(good)
    for i in range(len(frame)):
        for value in range(256):
            if value == frame[i]:
                continue
            corrupted = frame[:i] + bytes((value,)) + frame[i + 1 :]
            events = decoder_type().feed(corrupted + good)
            where = f"byte {i} = {value:02x}: {events}"
            assert any(isinstance(e, Garbage) for e in events), where
            assert events[-1] == good_event, where
            for event in events[:-1]:
                if not isinstance(event, Garbage):
                    assert _kind(event) != _kind(expected) or len(event.raw) < len(frame), where
            assert _pieces(events) == corrupted + good


# --- quirks ----------------------------------------------------------------------------------


def test_etx_inside_data_is_framed_by_known_length() -> None:
    frame = _hex("02 00 35 03 03 00 00 03 40")
    assert ReplyDecoder().feed(frame) == [StatusReply(0, 0x0303, 0x0000, frame)]
    for hooks, items in [(0x0303, 0x0303), (0x0203, 0x0302), (0x0302, 0x0003)]:
        reply = kerong.status_reply(4, hooks, items)
        assert ReplyDecoder().feed(reply) == [StatusReply(4, hooks, items, reply)]
    request = kerong.delayed_unlock(0, 1, 3)
    assert request.hex(" ") == "02 00 39 03 03 41"
    assert RequestDecoder().feed(request) == [Request(0, 1, 0x39, b"\x03", request)]
    reply = kerong.energize_time_reply(0, 0x0303 * 10)
    assert ReplyDecoder().feed(reply) == [EnergizeTimeReply(0, 0x0303 * 10, reply)]


def test_set_energize_time_never_sends_a_frame_that_reads_as_a_query() -> None:
    """02 00 37 03 3C 03 7F (8280 ms) starts with the query 02 00 37 03 3C: one unit more."""
    assert kerong.query_energize_time(0).hex(" ") == "02 00 37 03 3c"
    frame = kerong.set_energize_time(0, 8280)
    assert frame.hex(" ") == "02 00 37 03 3d 03 7c"
    assert kerong.energize_ms(frame[3:5]) == 8290
    for board in range(16):
        for ms in range(7680, 10240, 10):
            sent = kerong.set_energize_time(board, ms)
            assert RequestDecoder().feed(sent) == [Request(board, 1, 0x37, sent[3:5], sent)]
            assert ms <= kerong.energize_ms(sent[3:5]) <= ms + 10


def test_energize_time_rounds_up_to_10_ms_units_and_fits_two_bytes() -> None:
    assert kerong.set_energize_time(0, 1)[3:5] == b"\x00\x01"
    assert kerong.set_energize_time(0, 15)[3:5] == b"\x00\x02"
    assert kerong.set_energize_time(0, 500)[3:5] == b"\x00\x32"
    assert kerong.set_energize_time(0, 655_350)[3:5] == b"\xff\xff"
    assert kerong.energize_time_reply(0, 0)[3:5] == b"\x00\x00"


def test_byte_order_of_energize_time_is_configurable() -> None:
    """Not established publicly: big-endian by default, little-endian on request."""
    little = kerong.set_energize_time(0, 2560, byteorder="little")
    assert little[3:5] == b"\x00\x01"
    assert kerong.set_energize_time(0, 2560)[3:5] == b"\x01\x00"
    reply = kerong.energize_time_reply(1, 2560, byteorder="little")
    assert ReplyDecoder(byteorder="little").feed(reply) == [EnergizeTimeReply(1, 2560, reply)]
    assert ReplyDecoder().feed(reply) == [EnergizeTimeReply(1, 10, reply)]


def test_echo_of_own_unlock_reads_as_an_unlock_reply_without_data() -> None:
    sent = kerong.unlock(0, 1)
    [echo] = ReplyDecoder().feed(sent)
    assert echo == UnlockReply(0, 1, 0x31, b"", sent)
    assert echo.is_ok is None
    assert ReplyDecoder().feed(kerong.unlock_reply(0, 1))[0].is_ok is True  # type: ignore[union-attr]
    assert ReplyDecoder().feed(kerong.unlock_reply(0, 1, ok=False))[0].is_ok is False  # type: ignore[union-attr]


def test_unlock_reply_answers_unlock_all_and_delayed_unlock() -> None:
    for command in (0x33, 0x39):
        reply = kerong.unlock_reply(3, 1, command=command)
        assert ReplyDecoder().feed(reply) == [UnlockReply(3, 1, command, b"\x00", reply)]


def test_status_reply_bits_map_to_lock_numbers() -> None:
    for lock in range(1, 17):
        frame = kerong.status_reply(0, 1 << (lock - 1), 0xFFFF ^ (1 << (lock - 1)))
        [reply] = ReplyDecoder().feed(frame)
        assert isinstance(reply, StatusReply)
        assert [reply.hook(n) for n in range(1, 17)] == [n == lock for n in range(1, 17)]
        assert [reply.item(n) for n in range(1, 17)] == [n != lock for n in range(1, 17)]
    assert kerong.status_reply(0, 0x0001, 0)[3:7] == b"\x01\x00\x00\x00"  # byte 3 = locks 1-8
    assert kerong.status_reply(0, 0x8000, 0)[3:7] == b"\x00\x80\x00\x00"


def test_a_lone_bad_frame_of_unknown_length_is_given_up_within_max_frame() -> None:
    decoder = ReplyDecoder()
    bad = _hex("02 00 31 00 03 37")  # SUM should be 36
    assert decoder.feed(bad) == []
    assert decoder.buffered == len(bad)
    filler = b"\xff" * kerong.MAX_FRAME
    events = decoder.feed(filler)
    assert isinstance(events[0], Garbage) and "checksum" in events[0].reason
    assert _pieces(events) == bad + filler
    assert decoder.buffered == 0


def test_bad_checksum_of_known_length_is_reported_at_once() -> None:
    events = ReplyDecoder().feed(_hex("02 00 35 00 00 00 00 03 3B"))
    assert events == [
        Garbage(
            _hex("02 00 35 00 00 00 00 03 3B"), "bad checksum in 0x35 frame: got 0x3B, want 0x3A"
        )
    ]


def test_reset_drops_a_partial_frame() -> None:
    decoder = ReplyDecoder()
    assert decoder.feed(kerong.status_reply(0, 0, 0)[:6]) == []
    assert decoder.buffered == 6
    decoder.reset()
    assert decoder.buffered == 0
    frame = kerong.status_reply(2, 5, 6)
    assert decoder.feed(frame) == [StatusReply(2, 5, 6, frame)]


def test_a_long_burst_of_noise_and_fragments_stays_bounded() -> None:
    rng = random.Random(7)
    stream = bytes(
        rng.choice([0x02, 0x03, 0x35, 0x31, 0x00, rng.randrange(256)]) for _ in range(20_000)
    )
    for decoder in (ReplyDecoder(), RequestDecoder()):
        events = decoder.feed(stream)
        assert decoder.buffered <= decoder.max_buffer == kerong.MAX_BUFFER
        assert _pieces(events) == stream[: len(stream) - decoder.buffered]


# --- encoders refuse what the protocol cannot express ----------------------------------------

BAD_CALLS: list[tuple[str, Callable[[], object]]] = [
    ("board -1", lambda: kerong.status(-1)),
    ("board 16", lambda: kerong.status(16)),
    ("board True", lambda: kerong.status(True)),
    ("board 1.0", lambda: kerong.status(1.0)),  # type: ignore[arg-type]
    ("lock 0", lambda: kerong.unlock(0, 0)),
    ("lock 17", lambda: kerong.unlock(0, 17)),
    ("unlock board 16", lambda: kerong.unlock(16, 1)),
    ("unlock_all board 16", lambda: kerong.unlock_all(16)),
    ("ms 0", lambda: kerong.set_energize_time(0, 0)),
    ("ms -10", lambda: kerong.set_energize_time(0, -10)),
    ("ms too big", lambda: kerong.set_energize_time(0, 655_351)),
    ("query board 16", lambda: kerong.query_energize_time(16)),
    ("delay 256 s", lambda: kerong.delayed_unlock(0, 1, 256)),
    ("delay -1 s", lambda: kerong.delayed_unlock(0, 1, -1)),
    ("delay lock 17", lambda: kerong.delayed_unlock(0, 17, 5)),
    ("hooks 17 bits", lambda: kerong.status_reply(0, 0x10000, 0)),
    ("items negative", lambda: kerong.status_reply(0, 0, -1)),
    ("reply to 0x30", lambda: kerong.unlock_reply(0, 1, command=0x30)),
    ("reply lock 0", lambda: kerong.unlock_reply(0, 0)),
    ("reply ms -1", lambda: kerong.energize_time_reply(0, -1)),
    ("hook(0)", lambda: StatusReply(0, 0, 0, b"").hook(0)),
    ("item(17)", lambda: StatusReply(0, 0, 0, b"").item(17)),
    ("energize_ms of 1 byte", lambda: kerong.energize_ms(b"\x00")),
    ("baudrate 0", lambda: kerong.wire_time_s(9, 0)),
    ("nbytes -1", lambda: kerong.wire_time_s(-1, 19200)),
]


@pytest.mark.parametrize(("what", "call"), BAD_CALLS, ids=[w for w, _ in BAD_CALLS])
def test_encoders_refuse_bad_arguments(what: str, call: Callable[[], object]) -> None:
    with pytest.raises(CommandError) as caught:
        call()
    assert caught.value.fault == "caller", what


def test_encoders_accept_the_edges() -> None:
    assert kerong.unlock(15, 16).hex(" ") == "02 ff 31 03 35"
    assert kerong.delayed_unlock(15, 16, 255)[3] == 0xFF
    assert kerong.status_reply(15, 0xFFFF, 0xFFFF)[3:7] == b"\xff" * 4


def test_checksum_and_wire_time() -> None:
    assert kerong.checksum(b"") == 0
    assert kerong.checksum(bytes([0xFF, 0x02])) == 0x01
    assert kerong.wire_time_s(9, 19200) == pytest.approx(9 * 10 / 19200)
    assert kerong.wire_time_s(0, 9600) == 0.0


def test_codec_imports_no_port_thread_sleep_or_clock() -> None:
    source = Path(kerong.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "the walk found no import at all"
    assert not imported & {"time", "datetime", "serial", "threading", "asyncio", "socket", "os"}


# --- fuzzing ---------------------------------------------------------------------------------
# Each example is one random byte string read as a small program (frames, noise, chunk cuts):
# a single draw keeps Hypothesis' per-example cost low enough for 10 000 examples per decoder,
# and it still shrinks a failure to a short program.

Item = tuple[bytes, Event | None]


def _reply_from(n: int) -> Item:
    board, kind = (n >> 2) & 0x0F, n % 3
    if kind == 0:
        hooks, items = (n >> 6) & 0xFFFF, (n >> 22) & 0xFFFF
        frame = kerong.status_reply(board, hooks, items)
        return frame, StatusReply(board, hooks, items, frame)
    if kind == 1:
        lock, ok = ((n >> 6) & 0x0F) + 1, bool(n >> 10 & 1)
        command = (0x31, 0x33, 0x39)[(n >> 11) % 3]
        frame = kerong.unlock_reply(board, lock, ok, command=command)
        return frame, UnlockReply(board, lock, command, b"\x00" if ok else b"\x01", frame)
    ms = (n >> 6) % 655_351
    frame = kerong.energize_time_reply(board, ms)
    return frame, EnergizeTimeReply(board, -(-ms // 10) * 10, frame)


def _request_from(n: int) -> Item:
    board, lock, kind = (n >> 3) & 0x0F, ((n >> 7) & 0x0F) + 1, n % 7
    if kind == 0:
        frame = kerong.status(board)
        return frame, Request(board, 1, 0x30, b"", frame)
    if kind == 1:
        frame = kerong.status_all()
        return frame, Request(15, 1, 0x32, b"", frame)
    if kind == 2:
        frame = kerong.unlock(board, lock)
        return frame, Request(board, lock, 0x31, b"", frame)
    if kind == 3:
        frame = kerong.unlock_all(board)
        return frame, Request(board, 1, 0x33, b"", frame)
    if kind == 4:
        ms = (n >> 11) % 655_350 + 1
        frame = kerong.set_energize_time(board, ms)
        assert ms <= kerong.energize_ms(frame[3:5]) <= ms + 19
        return frame, Request(board, 1, 0x37, frame[3:5], frame)
    if kind == 5:
        frame = kerong.query_energize_time(board)
        return frame, Request(board, 1, 0x37, b"", frame)
    seconds = (n >> 11) & 0xFF
    frame = kerong.delayed_unlock(board, lock, seconds)
    return frame, Request(board, lock, 0x39, bytes((seconds,)), frame)


def _program(data: bytes, frame_from: Callable[[int], Item]) -> tuple[list[Item], bool, list[int]]:
    """``data`` as: flags (clean noise?), three chunk cuts, then items. An item byte below 0x80
    is a frame built from the next five bytes; from 0x80 on, noise of its low nibble's length,
    after an STX if bit 0x40 is set (a stray or truncated frame start)."""
    clean, cuts, rest = bool(data[:1] and data[0] & 1), list(data[1:4]), data[4:]
    items: list[Item] = []
    i = 0
    while i < len(rest):
        op, i = rest[i], i + 1
        if op < 0x80:
            items.append(frame_from(int.from_bytes(rest[i : i + 5].ljust(5, b"\0"), "big")))
            i += 5
        else:
            stray = b"\x02" if op & 0x40 else b""
            items.append((stray + rest[i : i + (op & 0x0F)], None))
            i += op & 0x0F
    return items, clean, cuts


def _fuzz(decoder: AnyDecoder, items: list[Item], clean: bool, cuts: list[int]) -> None:
    """Feed frames and noise in arbitrary chunks; check the decoder's promises after each feed.

    Always: nothing raises, ``buffered <= max_buffer``, every byte comes back (as Garbage or an
    event's raw) in order. With ``clean`` noise (no STX in it): exactly the frames' events.
    """
    if clean:
        items = [(b.replace(b"\x02", b""), e) if e is None else (b, e) for b, e in items]
    stream = b"".join(b for b, _ in items)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    events: list[object] = []
    for start, end in itertools.pairwise(bounds):
        events += decoder.feed(stream[start:end])
        assert 0 <= decoder.buffered <= decoder.max_buffer
    assert _pieces(events) == stream[: len(stream) - decoder.buffered]
    if clean:
        assert [e for e in events if not isinstance(e, Garbage)] == [e for _, e in items if e]
        assert decoder.buffered == 0


@settings(max_examples=10_000, deadline=None)
@given(data=st.binary(min_size=16, max_size=120))
def test_fuzz_reply_decoder(data: bytes) -> None:
    _fuzz(ReplyDecoder(), *_program(data, _reply_from))


@settings(max_examples=10_000, deadline=None)
@given(data=st.binary(min_size=16, max_size=120))
def test_fuzz_request_decoder(data: bytes) -> None:
    _fuzz(RequestDecoder(), *_program(data, _request_from))


@settings(max_examples=1_000, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=10))
def test_fuzz_arbitrary_chunks(chunks: list[bytes]) -> None:
    for decoder in (ReplyDecoder(), RequestDecoder()):
        events: list[object] = []
        for chunk in chunks:
            events += decoder.feed(chunk)
            assert 0 <= decoder.buffered <= decoder.max_buffer
        stream = b"".join(chunks)
        assert _pieces(events) == stream[: len(stream) - decoder.buffered]


def test_fuzz_program_reaches_every_kind_and_both_noise_modes() -> None:
    """The program reader can produce every frame kind, clean and dirty noise (else the fuzz
    tests above would test less than they claim)."""
    replies = {type(_reply_from(n)[1]).__name__ for n in range(3)}
    assert replies == {"StatusReply", "UnlockReply", "EnergizeTimeReply"}
    assert {_request_from(n)[1].command for n in range(7)} == {0x30, 0x31, 0x32, 0x33, 0x37, 0x39}  # type: ignore[union-attr]
    items, clean, cuts = _program(
        bytes([1, 5, 9, 200, 0x00, 1, 2, 3, 4, 5, 0x83, 2, 2, 2]), _reply_from
    )
    assert clean and cuts == [5, 9, 200]
    assert [e is None for _, e in items] == [False, True] and items[1][0] == b"\x02\x02\x02"
