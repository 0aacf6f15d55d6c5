"""Benchmark: a command's round trip through the serial transport against its wire time (issue #5).

What is timed: ``SerialTransport.exchange`` — flush, inter-frame silence, write, read, decode,
accept — of one command to a board simulated on a pseudo-terminal and its reply, from the call
until the accepted reply is returned. The simulators pace the line (``PtyDevice(pace=True)``):
the board sees a request only after its wire time at the bank's baud rate, and its reply takes
its own wire time, so a perfect transport would take exactly the *floor*:

    floor = (request bytes + reply bytes) × 10 bits / baud   (8N1: start + 8 data + stop)

Modbus adds the 3.5-character silence the transport keeps before each request (it is part of the
protocol, so it is shown separately and not counted in the floor; commands are back to back,
so it is paid in full each time).

Cases: Kerong status (``30`` → 9-byte ``35`` reply) at 19200 baud; Kerong unlock (``31``) with
the energize time already set; Modbus read relays (FC01) and flash on (FC05) at 9600 baud.
Baseline from the same run: the floor itself (computed), and a raw round trip of the same bytes
through the same paced pty without pyserial or codecs (``os.write`` on the host end, the device
answering a fixed reply), which shows what the pty and the pacing cost by themselves.

Target (issue #5): median round trip ≤ 2× the floor.

Run from the repository root: ``.venv/bin/python bench/serial_roundtrip.py [--samples 300]``.
Prints median, p99, ratios and PASS/MISS; record results in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import statistics
import tempfile
import time
import tty
from collections.abc import Callable
from pathlib import Path

from firmware_bridge.codecs import kerong, modbus
from firmware_bridge.lockbus import modbus_exchange, read_kerong_status
from firmware_bridge.sim.boards import KerongBoardSim, ModbusBoardSim
from firmware_bridge.sim.pty import PtyDevice
from firmware_bridge.transport import SerialTransport
from hardware.serial_boards import bank_by_name

TARGET_RATIO = 2.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call: Callable[[], object], samples: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        call()
    out: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def raw_pty_round_trip(request: bytes, reply: bytes, baudrate: int, samples: int) -> list[float]:
    """The same bytes through a paced pty, answered by a fixed reply: no pyserial, no codec."""
    with tempfile.TemporaryDirectory() as tmp:
        holder: list[PtyDevice] = []

        def answer(data: bytes) -> None:
            holder[0].write(reply)

        device = PtyDevice(Path(tmp) / "raw", answer, baudrate=baudrate, pace=True)
        holder.append(device)
        device.start()
        fd = os.open(device.path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        try:

            def once() -> None:
                os.write(fd, request)
                got = b""
                while len(got) < len(reply):
                    select.select([fd], [], [], 1.0)
                    got += os.read(fd, 64)

            return timed(once, samples)
        finally:
            os.close(fd)
            device.stop()


def line(name: str, values: list[float]) -> tuple[float, float]:
    median, p99 = statistics.median(values), percentile(values, 0.99)
    print(f"  {name:<44} n={len(values):>4}  median {median:7.3f} ms  p99 {p99:7.3f} ms")
    return median, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    verdicts: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        kbank = bank_by_name("kerong-4")
        ksim = KerongBoardSim(kbank, Path(tmp) / "kerong", pace=True).start()
        kport = SerialTransport(str(ksim.path), baudrate=kbank.line_baudrate)
        mbank = bank_by_name("modbus-4")
        msim = ModbusBoardSim(mbank, Path(tmp) / "modbus", pace=True).start()
        silence = modbus.silence_s(mbank.line_baudrate)
        mport = SerialTransport(str(msim.path), baudrate=mbank.line_baudrate, silence_s=silence)
        try:
            kport.exchange(
                kerong.set_energize_time(0, 100), kerong.ReplyDecoder(), lambda e: True, 1
            )
            cases: list[tuple[str, int, bytes, bytes, Callable[[], object]]] = [
                (
                    "Kerong status (30 -> 35)",
                    kbank.line_baudrate,
                    kerong.status(0),
                    kerong.status_reply(0, 0, 0),
                    lambda: read_kerong_status(kport, 0, 1.0),
                ),
                (
                    "Kerong unlock (31), lock 16 unmapped",
                    kbank.line_baudrate,
                    kerong.unlock(0, 16),
                    kerong.unlock_reply(0, 16),
                    lambda: kport.exchange(
                        kerong.unlock(0, 16), kerong.ReplyDecoder(), lambda e: True, 1.0
                    ),
                ),
                (
                    "Modbus read relays (FC01)",
                    mbank.line_baudrate,
                    modbus.read_relays(1, 0, 8),
                    modbus.bits_response(1, modbus.FC_READ_COILS, [False] * 8),
                    lambda: modbus_exchange(mport, modbus.read_relays(1, 0, 8), 1, 1.0),
                ),
                (
                    "Modbus flash on (FC05), channel 7 unmapped",
                    mbank.line_baudrate,
                    modbus.flash_on(1, 7, 100),
                    modbus.coil_written_response(1, modbus.FLASH_ON_BASE + 7, 1),
                    lambda: modbus_exchange(mport, modbus.flash_on(1, 7, 100), 1, 1.0),
                ),
            ]
            for name, baud, request, reply, call in cases:
                floor_ms = (len(request) + len(reply)) * 10 / baud * 1000
                print(
                    f"\n{name}: {len(request)} + {len(reply)} bytes at {baud} baud, "
                    f"floor {floor_ms:.3f} ms"
                )
                raw = raw_pty_round_trip(request, reply, baud, args.samples)
                raw_median, _ = line("baseline: raw paced pty, fixed reply", raw)
                values = timed(call, args.samples)
                median, p99 = line("SerialTransport.exchange + codec + simulator", values)
                extra = ""
                if baud == mbank.line_baudrate and "Modbus" in name:
                    extra = f" (includes the {silence * 1000:.2f} ms inter-frame silence)"
                print(
                    f"  ratio median / floor: {median / floor_ms:5.2f}x{extra}; "
                    f"median / raw pty: {median / raw_median:5.2f}x; p99 / floor "
                    f"{p99 / floor_ms:5.2f}x"
                )
                verdicts.append((name, median / floor_ms))
            print(
                f"\nModbus silence violations seen by the simulated board: "
                f"{msim.silence_violations}"
            )
        finally:
            kport.close()
            mport.close()
            ksim.stop()
            msim.stop()
    print("\nTarget: median round trip <= 2x the wire-time floor")
    for name, ratio in verdicts:
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        print(f"  {verdict} {name}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
