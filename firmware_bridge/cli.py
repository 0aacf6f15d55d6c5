"""Installer tools: ``linli bus scan``, ``linli bus selftest`` and ``linli scale read``.

``scan`` asks every address on the bus for its status and prints ``board N`` for each board that
answers. ``selftest`` pulses one latch once, watches its bit and tells the truth about the board:
which hook level means "caught" (the polarity public sources disagree on), what the board can
sense, the raw replies it sent (including the replies to ``31`` that no public source settles),
and the round-trip time. It writes the whole record as JSON next to printing a summary, so a
board's behaviour can be attached to a bank definition.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from firmware_bridge.codecs import kerong, modbus
from firmware_bridge.codecs.base import Garbage
from firmware_bridge.errors import BridgeError
from firmware_bridge.lockbus import (
    kerong_command,
    modbus_exchange,
    read_kerong_status,
    read_modbus_bits,
)
from firmware_bridge.transport import SerialTransport, retry_read
from hardware.serial_boards import BAUDRATES

SCAN_TIMEOUT_S = 0.15
WATCH_FOR_S = 3.0
WATCH_EVERY_S = 0.05
RTT_SAMPLES = 20


def main(args: argparse.Namespace, data_dir: Path) -> int:
    """Run a ``bus`` or ``scale`` sub-command."""
    if args.command == "scale":
        from firmware_bridge.scale import read_command

        return read_command(args)
    baudrate = args.baudrate or BAUDRATES[args.protocol]
    silence_s = modbus.silence_s(baudrate) if args.protocol == "modbus" else 0.0
    transport = SerialTransport(args.port, baudrate=baudrate, silence_s=silence_s)
    try:
        transport.open()
    except BridgeError as exc:
        hint = " (is the controller running? stop it first)" if "lock" in str(exc) else ""
        print(f"cannot use {args.port}: {exc}{hint}", file=sys.stderr)
        return 2
    try:
        if args.action == "scan":
            return scan(transport, args.protocol, _addresses(args))
        report = selftest(transport, args.protocol, args.board, args.channel)
    finally:
        transport.close()
    out = (
        Path(args.report)
        if args.report
        else data_dir / f"selftest-{args.protocol}-{int(time.time())}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for line in summary(report):
        print(line)
    print(f"record: {out}")
    return 0 if report["verdict"] == "ok" else 1


def _addresses(args: argparse.Namespace) -> range:
    if args.addresses:
        first, _, last = args.addresses.partition("-")
        return range(int(first), int(last or first) + 1)
    return range(0, 16) if args.protocol == "kerong" else range(1, 17)


# --- scan ------------------------------------------------------------------------------------


def scan(transport: SerialTransport, protocol: str, addresses: range) -> int:
    """Print ``board N`` for every address that answers a status read; 1 if none did."""
    found = 0
    for address in addresses:
        try:
            described = retry_read(partial(_probe, transport, protocol, address), attempts=2)
        except BridgeError:
            continue
        found += 1
        print(f"board {address}  {described}")
    if not found:
        print(f"no board answered on {transport.url} ({protocol}, {transport.baudrate} baud)")
    return 0 if found else 1


def _probe(transport: SerialTransport, protocol: str, address: int) -> str:
    if protocol == "kerong":
        status = read_kerong_status(transport, address, SCAN_TIMEOUT_S)
        return f"hooks {status.hooks:#06x} items {status.items:#06x}"
    relays = read_modbus_bits(transport, address, modbus.FC_READ_COILS, SCAN_TIMEOUT_S)
    inputs = read_modbus_bits(transport, address, modbus.FC_READ_INPUTS, SCAN_TIMEOUT_S)
    return f"relays {_bitstring(relays)} inputs {_bitstring(inputs)}"


def _bitstring(bits: tuple[bool, ...]) -> str:
    return "".join("1" if b else "0" for b in bits)


# --- selftest --------------------------------------------------------------------------------


class _Recorder:
    """Wraps a decoder so every frame the board sent (and every skipped byte) is recorded raw."""

    def __init__(self, decoder: Any, log: list[dict[str, str]]) -> None:
        self._decoder = decoder
        self._log = log
        self.max_buffer = decoder.max_buffer

    def feed(self, data: bytes) -> list[Any]:
        events: list[Any] = list(self._decoder.feed(data))
        for event in events:
            kind = "garbage" if isinstance(event, Garbage) else type(event).__name__
            raw = event.data if isinstance(event, Garbage) else event.raw
            self._log.append({"kind": kind, "hex": raw.hex(" ")})
        return events

    @property
    def buffered(self) -> int:
        return int(self._decoder.buffered)

    def reset(self) -> None:
        self._decoder.reset()


def _round_trips(read: Callable[[], object]) -> dict[str, float]:
    samples: list[float] = []
    for _ in range(RTT_SAMPLES):
        started = time.monotonic()
        read()
        samples.append((time.monotonic() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "max_ms": round(samples[-1], 3),
        "samples": len(samples),
    }


def selftest(transport: SerialTransport, protocol: str, board: int, channel: int) -> dict[str, Any]:
    """Pulse one latch once and report what the board showed (see the module docstring)."""
    raw: list[dict[str, str]] = []
    report: dict[str, Any] = {
        "protocol": protocol,
        "port": transport.url,
        "baudrate": transport.baudrate,
        "board": board,
        "channel": channel,
        "raw_replies": raw,
    }
    try:
        if protocol == "kerong":
            report.update(_kerong_selftest(transport, board, channel, raw))
        else:
            report.update(_modbus_selftest(transport, board, channel, raw))
    except BridgeError as exc:
        report["verdict"] = "failed"
        report["error"] = f"{type(exc).__name__}: {exc}"
    return report


def _kerong_selftest(
    transport: SerialTransport, board: int, lock: int, raw: list[dict[str, str]]
) -> dict[str, Any]:
    def status() -> kerong.StatusReply:
        return read_kerong_status(transport, board, 0.5, _Recorder(kerong.ReplyDecoder(), raw))

    rtt = _round_trips(lambda: retry_read(status))
    before = retry_read(status)
    bit_before = before.hook(lock)
    unlock_reply: str | None
    fired_at = time.monotonic()
    try:  # once, never retried
        reply = kerong_command(
            transport, kerong.unlock(board, lock), board, 1.0, _Recorder(kerong.ReplyDecoder(), raw)
        )
        unlock_reply = reply.raw.hex(" ")  # type: ignore[attr-defined]
    except BridgeError as exc:
        unlock_reply = None
        raw.append({"kind": "unlock_unanswered", "hex": "", "error": str(exc)})
    changed_after_ms: float | None = None
    while time.monotonic() - fired_at < WATCH_FOR_S:
        now = retry_read(status)
        if now.hook(lock) != bit_before:
            changed_after_ms = round((time.monotonic() - fired_at) * 1000, 1)
            break
        time.sleep(WATCH_EVERY_S)
    result: dict[str, Any] = {
        "round_trip": rtt,
        "unlock_reply": unlock_reply,
        "hook_bit_before": int(bit_before),
        "items_mask": f"{before.items:#06x}",
        "capabilities": {
            "has_door_sensor": True,
            "has_latch_feedback": False,
            "has_item_sensor": None,  # an empty bank reads all zeros either way: look inside
            "can_time_pulse": True,
        },
    }
    if changed_after_ms is None:
        result["verdict"] = "inconclusive"
        result["why"] = (
            "the hook bit did not change within "
            f"{WATCH_FOR_S:.0f} s: was the door shut before the test? is the lock wired?"
        )
        return result
    result["verdict"] = "ok"
    result["hook_changed_after_ms"] = changed_after_ms
    result["hook_caught_level"] = int(bit_before)
    return result


def _modbus_selftest(
    transport: SerialTransport, unit: int, channel: int, raw: list[dict[str, str]]
) -> dict[str, Any]:
    def bits(function: int) -> tuple[bool, ...]:
        return read_modbus_bits(
            transport, unit, function, 0.5, _Recorder(modbus.ResponseDecoder(), raw)
        )

    rtt = _round_trips(lambda: retry_read(lambda: bits(modbus.FC_READ_COILS)))
    inputs_before = retry_read(lambda: bits(modbus.FC_READ_INPUTS))
    pulse_ms = 500
    fired_at = time.monotonic()
    unlock_reply: str | None
    try:  # once, never retried
        reply = modbus_exchange(
            transport,
            modbus.flash_on(unit, channel, pulse_ms),
            unit,
            1.0,
            _Recorder(modbus.ResponseDecoder(), raw),
        )
        unlock_reply = reply.raw.hex(" ")  # type: ignore[attr-defined]
    except BridgeError as exc:
        unlock_reply = None
        raw.append({"kind": "unlock_unanswered", "hex": "", "error": str(exc)})
    relay_seen_on = False
    relay_off_after_ms: float | None = None
    inputs_after = inputs_before
    while time.monotonic() - fired_at < WATCH_FOR_S:
        relays = retry_read(lambda: bits(modbus.FC_READ_COILS))
        if relays[channel]:
            relay_seen_on = True
        elif relay_seen_on:
            relay_off_after_ms = round((time.monotonic() - fired_at) * 1000, 1)
            inputs_after = retry_read(lambda: bits(modbus.FC_READ_INPUTS))
            break
        time.sleep(WATCH_EVERY_S)
    changed = [i for i in range(modbus.CHANNELS) if inputs_before[i] != inputs_after[i]]
    result: dict[str, Any] = {
        "round_trip": rtt,
        "unlock_reply": unlock_reply,
        "pulse_ms": pulse_ms,
        "relay_seen_on": relay_seen_on,
        "relay_off_after_ms": relay_off_after_ms,
        "inputs_before": _bitstring(inputs_before),
        "inputs_after": _bitstring(inputs_after),
        "inputs_changed": changed,
        "capabilities": {
            "has_door_sensor": bool(changed) or None,
            "has_latch_feedback": False,
            "has_item_sensor": None,
            "can_time_pulse": relay_off_after_ms is not None,
        },
    }
    if relay_off_after_ms is None:
        result["verdict"] = "failed" if not relay_seen_on else "relay_stayed_on"
        if relay_seen_on:  # the board did not end its own pulse: switch it off now
            modbus_exchange(transport, modbus.write_relay(unit, channel, False), unit, 0.5)
        return result
    result["verdict"] = "ok"
    return result


def summary(report: dict[str, Any]) -> list[str]:
    """What an installer reads on the terminal."""
    lines = [
        f"selftest {report['protocol']} board {report['board']} channel {report['channel']} "
        f"on {report['port']}: {report['verdict']}"
    ]
    if "error" in report:
        lines.append(f"  error: {report['error']}")
    if "round_trip" in report:
        rtt = report["round_trip"]
        lines.append(f"  round trip: median {rtt['median_ms']} ms, max {rtt['max_ms']} ms")
    lines.append(f"  reply to the unlock: {report.get('unlock_reply') or 'none'}")
    if "hook_caught_level" in report:
        lines.append(
            f"  polarity: hook bit = {report['hook_caught_level']} while caught "
            f"(changed {report['hook_changed_after_ms']} ms after the unlock)"
        )
        lines.append("  shut the door again")
    if report.get("why"):
        lines.append(f"  {report['why']}")
    if "relay_off_after_ms" in report:
        lines.append(
            f"  relay on: {report['relay_seen_on']}, off again after "
            f"{report['relay_off_after_ms']} ms; inputs changed: {report['inputs_changed']}"
        )
    return lines
