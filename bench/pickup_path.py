"""Benchmark of the foundation's two critical paths, each against a baseline from the same run.

A. Code → pulse: a resident enters a valid code until the latch is energized and the keypad
   answers (state persisted atomically, two events committed to the SQLite outbox, MQTT publish,
   GPIO pulse started). Baseline: the pure core's decision for the same input (``decide``).
B. Event → cloud acknowledgement: an event committed on the controller until the cloud has stored
   it and the controller forgot it (outbox back to empty), through Mosquitto and the real cloud.
   Baseline: a raw QoS 1 publish → subscriber round trip on the same broker.

Run: ``.venv/bin/python bench/pickup_path.py [--codes 40] [--events 300]``. Prints median, p99 and
ratios; record results in docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from linli.clock import FakeClock
from linli.codes import derive_code, hash_code
from linli.contract import CompartmentPolicy, ConfigBody, Grant, sign_body
from locker_controller.core.decide import decide
from locker_controller.core.model import (
    COOLDOWN_MS,
    CodeEntered,
    Compartment,
    ControllerState,
    Identity,
)
from station.demo import start_station


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(name: str, values_ms: list[float]) -> tuple[float, float]:
    median, p99 = statistics.median(values_ms), _p(values_ms, 0.99)
    print(f"  {name:<44} n={len(values_ms):>4}  median {median:8.3f} ms  p99 {p99:8.3f} ms")
    return median, p99


def _grants(
    device_id: str, code_key: bytes, secret: bytes, n: int, now_ms: int
) -> tuple[list[Grant], list[str]]:
    grants, codes = [], []
    compartments = ["A1", "A2", "A3", "A4"]
    for i in range(n):
        grant_id = f"grt_bench_{i}"
        code = derive_code(secret, grant_id)
        codes.append(code)
        grants.append(
            Grant(
                grant_id=grant_id,
                compartment=compartments[i % 4],
                purpose="maintenance",
                valid_from_ms=now_ms - 1000,
                valid_until_ms=now_ms + 86_400_000,
                code_hash=hash_code(code_key, code),
                epoch=0,
            )
        )
    return grants, codes


def bench_pure(n: int) -> list[float]:
    secret = b"s" * 32
    key = b"k" * 32
    clock = FakeClock()
    grants, codes = _grants("bench-a", key, secret, n, clock.now().wall_ms)
    state = ControllerState(
        identity=Identity(device_id="bench-a", cloud_keys={}, code_hash_key=key),
        compartments={
            c: Compartment(name=c, door="closed", occupancy="present")
            for c in ("A1", "A2", "A3", "A4")
        },
        grants={g.code_hash: g for g in grants},
    )
    times = []
    for code in codes:
        clock.advance(COOLDOWN_MS)
        start = time.perf_counter()
        state, outputs = decide(state, CodeEntered("bench", code), clock.now())
        times.append((time.perf_counter() - start) * 1000)
        assert any(type(o).__name__ == "PulseLatch" for o in outputs)
    return times


def bench_station(codes_n: int, events_n: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        station = start_station(Path(tmp), broker_kind="mosquitto")
        try:
            info = station.broker.info
            locker = station.lockers["locker-b"]
            keys = station.cloud.app.state.services.keys
            now_ms = int(time.time() * 1000)
            grants, codes = _grants(
                "locker-b", keys.device_code_key("locker-b"), keys.code_secret, codes_n, now_ms
            )
            body = ConfigBody(
                device_id="locker-b",
                version=1_000_000,
                issued_at_ms=now_ms,
                compartments={
                    c: CompartmentPolicy(size="M", pulse_ms=100) for c in ("A1", "A2", "A3", "A4")
                },
                grants=grants,
            )
            publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
            publisher.connect(info.host, info.port)
            publisher.loop_start()
            publisher.publish(
                "linli/v1/locker-b/cfg/desired",
                sign_body(keys.signing_key, keys.key_id, body),
                qos=1,
            ).wait_for_publish(5)
            deadline = time.monotonic() + 10
            while locker.daemon.state.cfg_version != 1_000_000:
                assert time.monotonic() < deadline, "locker-b did not apply the bench configuration"
                time.sleep(0.01)

            # A. code -> pulse (each compartment rests COOLDOWN_MS between pulses)
            times = []
            for i, code in enumerate(codes):
                if i and i % 4 == 0:
                    time.sleep(COOLDOWN_MS / 1000 + 0.05)
                start = time.perf_counter()
                shown = locker.daemon.submit_code(code, "bench")
                times.append((time.perf_counter() - start) * 1000)
                assert shown is not None and shown.key == "code.accepted", shown
            results["code -> pulse (daemon, real stores)"] = times

            # B. event -> cloud ack: an unknown code records one code_refused event
            while locker.daemon.outbox_depth():
                time.sleep(0.01)
            times = []
            for _ in range(events_n):
                start = time.perf_counter()
                locker.daemon.submit_code("00000000", "bench")
                while locker.daemon.outbox_depth():
                    time.sleep(0.0002)
                times.append((time.perf_counter() - start) * 1000)
            results["event -> cloud ack (Mosquitto + cloud)"] = times

            # Baseline for B: raw QoS1 round trip on the same broker
            received = threading.Event()
            sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
            sub.on_message = lambda c, u, m: received.set()
            sub.connect(info.host, info.port)
            sub.subscribe("bench/rtt", qos=1)
            sub.loop_start()
            time.sleep(0.3)
            times = []
            for _ in range(events_n):
                received.clear()
                start = time.perf_counter()
                publisher.publish("bench/rtt", b"x" * 300, qos=1)
                received.wait(5)
                times.append((time.perf_counter() - start) * 1000)
            results["baseline: raw MQTT QoS1 publish -> receive"] = times
            sub.loop_stop()
            publisher.loop_stop()
        finally:
            station.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--codes", type=int, default=40)
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    print(
        f"linli bench pickup_path — {time.strftime('%Y-%m-%d')} on {platform.machine()} "
        f"{platform.system()} Python {platform.python_version()}, {__import__('os').cpu_count()} cores"
    )
    pure = bench_pure(2000)
    station = bench_station(args.codes, args.events)
    print("Results:")
    pure_median, _ = _report("baseline: pure decide() of an accepted code", pure)
    a_median, _ = _report(
        "code -> pulse (daemon, real stores)", station["code -> pulse (daemon, real stores)"]
    )
    b_median, _ = _report(
        "event -> cloud ack (Mosquitto + cloud)", station["event -> cloud ack (Mosquitto + cloud)"]
    )
    raw_median, _ = _report(
        "baseline: raw MQTT QoS1 publish -> receive",
        station["baseline: raw MQTT QoS1 publish -> receive"],
    )
    print(f"  ratio code->pulse / pure decide:        {a_median / pure_median:8.1f}x")
    print(f"  ratio event->ack / raw MQTT round trip: {b_median / raw_median:8.1f}x")


if __name__ == "__main__":
    main()
