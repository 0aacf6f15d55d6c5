"""Benchmark of the maintainer's live view (issue #10: "updated within 2 s").

What is measured, for each door change of a simulated bank (the real controller daemon on
gpiozero's MockFactory, a private Mosquitto, the real cloud over HTTP):

- **door → SSE event** (the figure the issue asks for): a door of locker-b is pulled open (forced,
  so no latch pulse and its 2 s cool-down paces the run) or pushed shut in the simulation, until an
  HTTP client reading ``GET /maint/devices/locker-b/live`` (a maintainer's session) receives the
  ``change`` event saying so;
- its parts: door → the device's ``state`` message on the broker (a second subscriber; includes the
  controller's 50 ms debounce), **baseline: ``state`` message → the compartment row updated in the
  store** (the cloud's own ingest, timed by a device listener the app calls after the write), and
  store → SSE event (the hub's wake-up, the stream's read of the store, HTTP).

Run: ``.venv/bin/python bench/live_view.py [--changes 100]``. Prints median and p99 of each;
record results in docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.seed import LOGINS
from linli.contract import State
from station.demo import start_station

BANK = "locker-b"
DOOR = "A1"
TARGET_P99_MS = 2000.0
Timeline = list[tuple[float, str]]
"""(time.monotonic(), the door's state) as each observer saw it, in order."""


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _report(name: str, values_ms: list[float]) -> tuple[float, float]:
    median, p99 = statistics.median(values_ms), _p(values_ms, 0.99)
    print(f"  {name:<46} n={len(values_ms):>4}  median {median:8.2f} ms  p99 {p99:8.2f} ms")
    return median, p99


class Observed:
    """A timeline filled by another thread, and a way to wait on it."""

    def __init__(self) -> None:
        self.timeline: Timeline = []
        self._cond = threading.Condition()

    def add(self, door: str) -> None:
        with self._cond:
            self.timeline.append((time.monotonic(), door))
            self._cond.notify_all()

    def first(self, door: str, after: float, timeout_s: float = 5.0) -> float:
        """When ``door`` was first seen after ``after`` (monotonic); fail after the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for at, seen in self.timeline:
                    if at >= after and seen == door:
                        return at
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{door} not seen within {timeout_s} s")
                self._cond.wait(remaining)


def _read_stream(url: str, token: str, seen: Observed, ready: threading.Event) -> None:
    headers = {"cookie": f"linli_session={token}"}
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=None)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                view: dict[str, Any] = json.loads(line[5:])
                door = view.get("compartments", {}).get(DOOR, {}).get("door")
                if door is not None:
                    seen.add(door)
                if event == "snapshot":
                    ready.set()


def run(changes: int, pause_s: float) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "door -> SSE event received": [],
        "door -> state message on the broker": [],
        "baseline: state message -> row in the store": [],
        "row in the store -> SSE event received": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        station = start_station(Path(tmp), broker_kind="mosquitto", terminal=False)
        try:
            locker = station.lockers[BANK]
            services = station.cloud.app.state.services
            stored, on_wire, streamed = Observed(), Observed(), Observed()

            def listener(device_id: str, what: str, message: object) -> None:
                if device_id == BANK and what == "state" and isinstance(message, State):
                    stored.add(message.compartments[DOOR].door)

            services.devices.listen(listener)

            info = station.broker.info
            sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-live-sub")
            sub.on_message = lambda c, u, m: on_wire.add(
                json.loads(m.payload)["compartments"][DOOR]["door"]
            )
            sub.connect(info.host, info.port)
            sub.subscribe(f"linli/v1/{BANK}/state", qos=1)
            sub.loop_start()

            liu = next(login for login in LOGINS if login.role == "maintainer")
            signed = httpx.post(
                f"{station.cloud.url}/api/v1/session", json=liu.body(int(time.time() * 1000))
            )
            signed.raise_for_status()
            ready = threading.Event()
            reader = threading.Thread(
                target=_read_stream,
                args=(
                    f"{station.cloud.url}/maint/devices/{BANK}/live",
                    signed.json()["token"],
                    streamed,
                    ready,
                ),
                daemon=True,
            )
            reader.start()
            if not ready.wait(10):
                raise RuntimeError("the live view's stream sent no snapshot")
            while locker.daemon.state.compartments[DOOR].door != "closed":
                time.sleep(0.01)
            time.sleep(0.5)

            for i in range(changes):
                door = "open" if i % 2 == 0 else "closed"
                start = time.monotonic()
                if door == "open":
                    assert locker.sim.force_door(DOOR), "the door was already open"
                else:
                    locker.sim.close_door(DOOR)
                wire = on_wire.first(door, start)
                row = stored.first(door, start)
                event = streamed.first(door, start)
                results["door -> SSE event received"].append((event - start) * 1000)
                results["door -> state message on the broker"].append((wire - start) * 1000)
                results["baseline: state message -> row in the store"].append((row - wire) * 1000)
                results["row in the store -> SSE event received"].append((event - row) * 1000)
                time.sleep(pause_s)
            sub.loop_stop()
            sub.disconnect()
        finally:
            station.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.15, help="seconds between changes")
    args = parser.parse_args()
    print(
        f"linli bench live_view — {time.strftime('%Y-%m-%d')} on {platform.machine()} "
        f"{platform.system()} Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    results = run(max(args.changes, 50), args.pause)
    print("Results:")
    medians = {name: _report(name, values) for name, values in results.items()}
    _, p99 = medians["door -> SSE event received"]
    base, _ = medians["baseline: state message -> row in the store"]
    tail, _ = medians["row in the store -> SSE event received"]
    print(f"  store -> SSE / baseline (medians): {tail / base:.1f}x")
    verdict = "met" if p99 <= TARGET_P99_MS else "MISSED"
    print(f"  target p99 <= {TARGET_P99_MS:.0f} ms: {verdict} ({p99:.1f} ms)")


if __name__ == "__main__":
    main()
