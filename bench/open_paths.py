"""Benchmark of the two ways a latch is opened (issue #4), each against a baseline from the same run.

A. Code at the keypad → latch energized (local check): ``LockerDaemon.submit_code`` (the path the
   keypad socket takes) on the real daemon, until its relay pin goes high. In between: the core's
   check of the code against the signed grant list, the state document persisted (TinyDB:
   temp file, fsync, rename, fsync dir), ``code_accepted`` and ``latch_pulsed`` committed to the
   SQLite outbox and published, then the GPIO output switched on. Baseline: the pure core's
   ``decide()`` of the same code on the same state, timed just before the sample.
B. Remote open → signed command through Mosquitto → latch energized: the real cloud's
   ``DeviceService.send_command(device, "open", requested_by=<maintainer>, compartment=...)`` (a
   maintainer's service open, no grant named: the command row committed to the cloud's SQLite
   store, the body signed, published by the cloud's MQTT bridge), through a private Mosquitto,
   to the controller (signature and replay window checked, state persisted, ``latch_pulsed``
   committed) until the relay pin goes high. Baseline (C): a raw paho-mqtt QoS 1 publish →
   subscriber ``on_message`` round trip on the same broker, one hop, with a payload the size of a
   signed open command, both sockets with TCP_NODELAY as the cloud's and controller's are.

For reading A's and B's tails, a last line (no target) times the disk: a 4 kB file overwritten
and fsync'd in the controller's data directory, after each A sample; both paths make several
fsync'd writes (state document, outbox) before the latch moves.

The end of A and B is the relay pin's own level change: an observer on the gpiozero
``MockFactory`` pin (``locker_controller/sim.ObservablePin``) takes ``time.perf_counter()`` when
the pin goes high, on the controller's core thread, inside ``GpioLockBus.unlock``.

Set-up, all in this one process except Mosquitto (as bench/pickup_path.py; the cloud and the
controller therefore share one interpreter and its GIL, which production does not): a private
Mosquitto; the cloud (HTTP app under uvicorn, SQLite store, MQTT bridge) seeded with the demo
community and one more locker enrolled with 8 compartments; one ``LockerDaemon`` with a fresh
data directory (in the system's temporary directory; the header names its file system) on a
simulated GPIO bank of 8 compartments (the most the Pi header wires with a relay, a reed switch
and a presence sensor each; validated by ``hardware.gpio.validate``), driven by the door
simulator, connected with keepalive 10 s. Its grants come in signed lists (``cfg/desired``) of
``--grants`` live pickup grants (default 100) with 100 ms pulses; once a list's grants are used
a new list (a higher version) replaces it, between samples. At most 200 live codes: past the
throttle's guess budget (locker_controller/core/throttle.py, docs/security.md) the bank is
*guarded* and a code alone is no longer checked.

The list's size matters: before every pulse the controller rewrites its whole state document,
live grants and used ones alike (used grants stay until they expire), with an fsync. The header
gives the document's size at the first timed sample and at the end.

The core refuses a second pulse of a compartment within 2 s (``COOLDOWN_MS``) and caps a latch's
energized time at 6 s a minute; a grant is consumed by the door opening it caused. So samples
rotate over the 8 compartments, A and B interleaved (each compartment serves both), one grant per
A sample; after every pulse the simulator opens the door and shuts it again, as a resident
would. Before each sample the bench waits until the compartment's cool-down has passed, its
door reads closed, and the outbox is empty (the cloud acknowledged everything): samples are
taken on a quiet system, one at a time. One C sample is taken right before each B sample. Eight
untimed samples (four of each path) warm up first.

Targets (issue #4): A p99 ≤ 20 ms, B p99 ≤ 100 ms on the 2-core machine.

Run from the repository root: ``.venv/bin/python bench/open_paths.py [--samples 200]
[--grants 100]`` (``--samples`` per path; about 0.26 s per A or B sample, so the default run
takes under 2 min). Needs the ``mosquitto`` binary. Prints median, p99, ratios and PASS/MISS; record
results in docs/performance.md with the date and machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.devices.enrol import enrol_device
from cloud_api.devices.service import DeviceService
from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.seed import COMMUNITY, seed_demo
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from hardware.capabilities import GPIO_CAPABILITIES
from hardware.gpio import GpioBoard, GpioCompartment, validate
from linli.broker import BrokerAddress
from linli.clock import SystemClock
from linli.codes import derive_code, hash_code
from linli.contract import CommandBody, CompartmentPolicy, ConfigBody, Grant, sign_body
from linli.identity import DeviceIdentity
from linli.ids import new_id
from locker_controller.core.decide import decide
from locker_controller.core.model import COOLDOWN_MS, CodeEntered, PulseLatch, ShowMessage
from locker_controller.daemon import LockerDaemon
from locker_controller.gpio import GpioLockBus
from locker_controller.sim import LockerSimulator, ObservablePin, simulation_factory
from station.broker import MosquittoBroker, free_port, mosquitto_binary
from station.cloud_server import CloudServer
from station.scenarios import wait_for

DEVICE_ID = "bench-locker"
CHANNEL = "keypad"
PULSE_MS = 100
CONFIG_VERSION = 1_000_000  # above anything the cloud itself publishes for this device
HOUR_MS = 60 * 60 * 1000
OPEN_REASON = "bench: service open"
RTT_TOPIC = "bench/rtt"
WAIT_S = 5.0
COOLDOWN_MARGIN_S = 0.05
WARMUP_PAIRS = 4
LIVE_DEFAULT = 100
LIVE_MAX = 200
"""Live (unused, unexpired) codes a list may hold: beyond the throttle's guess budget of 200
live-code chances a day (locker_controller/core/throttle.py, docs/security.md), a code alone is
no longer checked (the bank is *guarded*: code plus the phone's last four digits)."""
TARGET_A_P99_MS = 20.0
TARGET_B_P99_MS = 100.0

# Eight compartments: active-high relays on pins pulled down at boot (9-27), reed switches and
# presence sensors on the rest of BCM 2-27.
_RELAYS = (17, 27, 22, 23, 24, 25, 26, 21)
_DOORS = (2, 3, 4, 5, 6, 7, 8, 9)
_PRESENCE = (10, 11, 12, 13, 14, 15, 16, 18)
BOARD = GpioBoard(
    name="bench-gpio-8",
    capabilities=GPIO_CAPABILITIES,
    compartments=tuple(
        GpioCompartment(f"A{i + 1}", "M", relay_pin=r, relay_active_high=True, door_pin=d,
                        presence_pin=p)
        for i, (r, d, p) in enumerate(zip(_RELAYS, _DOORS, _PRESENCE, strict=True))
    ),
)  # fmt: skip


# --- figures ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (as bench/pickup_path.py computes it)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values_ms: Sequence[float]) -> tuple[float, float]:
    """Print one line ``name n median p99``; return (median, p99)."""
    median, p99 = statistics.median(values_ms), percentile(values_ms, 0.99)
    print(f"  {name:<58} n={len(values_ms):>4}  median {median:8.3f} ms  p99 {p99:8.3f} ms")
    return median, p99


def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    wait_for(what, condition, timeout_s, every_s=0.002)  # 2 ms: the next sample starts sooner


def door_is(daemon: LockerDaemon, name: str, door: str) -> Callable[[], bool]:
    """Whether the controller reads ``name``'s door as ``door`` and its latch is at rest."""

    def check() -> bool:
        c = daemon.state.compartments[name]
        return c.door == door and (door == "open" or c.energized_since_mono_ms is None)

    return check


def _no_delay(client: mqtt.Client, userdata: object, sock: Any) -> None:
    """TCP_NODELAY, as the cloud's and the controller's paho sessions set it."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- instruments --------------------------------------------------------------------------------


class LatchWatch:
    """Observes every relay pin of the bank and times the one rising edge a sample waits for."""

    def __init__(self, board: GpioBoard, factory: Any) -> None:
        self._lock = threading.Lock()
        self._armed: str | None = None
        self._at: float | None = None
        self._edge = threading.Event()
        self.stray = 0
        """Latches energized while no sample expected them (must stay 0)."""
        for c in board.compartments:
            pin: ObservablePin = factory.pin(c.relay_pin)
            pin.observers.append(self._observer(c.name, c.relay_active_high))

    def _observer(self, name: str, active_high: bool) -> Callable[[bool], None]:
        def observe(level: bool) -> None:
            at = time.perf_counter()  # first: the pin has just changed, on the core thread
            if level != active_high:
                return
            with self._lock:
                if self._armed == name and self._at is None:
                    self._at = at
                    self._edge.set()
                else:
                    self.stray += 1

        return observe

    def arm(self, compartment: str) -> None:
        """Expect ``compartment``'s latch next."""
        with self._lock:
            self._armed, self._at = compartment, None
            self._edge.clear()

    def wait(self, timeout_s: float = WAIT_S) -> float | None:
        """The ``perf_counter`` of the armed latch's rising edge, or None if it did not come."""
        self._edge.wait(timeout_s)
        with self._lock:
            at, self._armed = self._at, None
        return at


class RoundTrip:
    """The floor: a raw paho QoS 1 publish on one client until ``on_message`` on another."""

    def __init__(self, host: str, port: int, payload_size: int) -> None:
        self._payload = b"x" * payload_size
        self._received = threading.Event()
        self._at = 0.0
        subscribed = threading.Event()
        self._sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rtt-sub")
        self._sub.on_socket_open = _no_delay
        self._sub.on_message = self._on_message
        self._sub.on_subscribe = lambda *_: subscribed.set()
        self._sub.connect(host, port)
        self._sub.loop_start()
        self._sub.subscribe(RTT_TOPIC, qos=1)
        self._pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rtt-pub")
        self._pub.on_socket_open = _no_delay
        self._pub.connect(host, port)
        self._pub.loop_start()
        if not subscribed.wait(WAIT_S):
            raise RuntimeError("bench scenario broken: round-trip subscriber not subscribed")

    def _on_message(self, client: mqtt.Client, userdata: object, message: Any) -> None:
        self._at = time.perf_counter()
        self._received.set()

    def sample(self) -> float:
        """One round trip, in milliseconds."""
        self._received.clear()
        start = time.perf_counter()
        self._pub.publish(RTT_TOPIC, self._payload, qos=1)
        if not self._received.wait(WAIT_S):
            raise RuntimeError("bench scenario broken: raw MQTT round trip lost")
        return (self._at - start) * 1000

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Publish (QoS 1) on the publisher's session and wait until the broker has it."""
        self._pub.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def stop(self) -> None:
        """Disconnect both clients."""
        for client in (self._pub, self._sub):
            client.disconnect()
            client.loop_stop()


def fsync_probe(directory: Path) -> float:
    """Milliseconds to overwrite a 4 kB file in ``directory`` and fsync it: the disk's floor
    under every durable write on the controller's paths."""
    data = os.urandom(4096)
    start = time.perf_counter()
    with (directory / "bench-fsync.probe").open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return (time.perf_counter() - start) * 1000


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One sample: which path, on which compartment, and whether it is timed (not warm-up)."""

    path: str  # "A" or "B"
    compartment: str
    timed: bool


def make_plan(names: Sequence[str], samples: int) -> list[Slot]:
    """Pairs of one A and one B sample; compartments in rotation (each rests a full round, at
    least ``COOLDOWN_MS``), and the order within a pair flips every round so both paths use every
    compartment."""
    slots: list[Slot] = []
    n = len(names)
    for pair in range(WARMUP_PAIRS + samples):
        first, second = names[(2 * pair) % n], names[(2 * pair + 1) % n]
        paths = ("A", "B") if (2 * pair // n) % 2 == 0 else ("B", "A")
        timed = pair >= WARMUP_PAIRS
        slots.append(Slot(paths[0], first, timed))
        slots.append(Slot(paths[1], second, timed))
    return slots


def make_grants(
    keys: CloudKeys, compartments: Sequence[str], wall_ms: int
) -> tuple[list[Grant], list[str]]:
    """One pickup grant per entry of ``compartments``, valid for the next day, and its code
    (derived as the cloud derives codes; a collision takes the next counter)."""
    code_key = keys.device_code_key(DEVICE_ID)
    grants: list[Grant] = []
    codes: list[str] = []
    seen: set[str] = set()
    for i, compartment in enumerate(compartments):
        grant_id = f"grt_bench_{i:04d}"
        counter = 0
        code = derive_code(keys.code_secret, grant_id)
        while code in seen:
            counter += 1
            code = derive_code(keys.code_secret, grant_id, counter)
        seen.add(code)
        codes.append(code)
        grants.append(
            Grant(
                grant_id=grant_id,
                compartment=compartment,
                purpose="pickup",
                valid_from_ms=wall_ms - HOUR_MS,
                valid_until_ms=wall_ms + 24 * HOUR_MS,
                code_hash=hash_code(code_key, code),
                epoch=0,
            )
        )
    return grants, codes


def command_size(keys: CloudKeys) -> int:
    """Bytes of a signed service open as the cloud sends it (same fields, same id shapes)."""
    now = SystemClock().now().wall_ms
    body = CommandBody(
        device_id=DEVICE_ID,
        id=new_id("cmd"),
        seq=1000,
        name="open",
        compartment="A1",
        reason=OPEN_REASON,
        issued_at_ms=now,
        expires_at_ms=now + 60_000,
    )
    return len(sign_body(keys.signing_key, keys.key_id, body))


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Results:
    """Samples in milliseconds, and what the run checked on the way."""

    pure: list[float]
    code: list[float]
    remote: list[float]
    raw: list[float]
    disk: list[float]
    live: int
    lists: int
    document_kb: tuple[float, float]
    payload_bytes: int
    commands_ok: int
    commands_sent: int
    stray: int
    waited_outbox: int
    elapsed_s: float


def start_cloud(data_dir: Path, broker: BrokerAddress) -> tuple[CloudServer, str, DeviceIdentity]:
    """Seed the demo community, enrol the bench locker with 8 compartments, serve the cloud.

    Returns the server, the maintainer's person id and the locker's identity.
    """
    store = Store(data_dir / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(data_dir / "secrets")
    seed_demo(store, keys, SystemClock().now().wall_ms)
    identity = enrol_device(
        store,
        keys,
        community_id=COMMUNITY,
        device_id=DEVICE_ID,
        role="locker",
        name="Bench locker",
        compartments=[(c.name, c.size) for c in BOARD.compartments],
    )
    row = store.read_one("SELECT id FROM people WHERE role = 'maintainer'")
    store.close()
    if row is None:
        raise RuntimeError("bench scenario broken: the demo seed has no maintainer")
    settings = CloudSettings(
        data_dir=data_dir, host="127.0.0.1", port=free_port(), broker_url=broker.url
    )
    return CloudServer(settings).start(), str(row["id"]), identity


def run(samples: int, live: int, tmp: Path) -> Results:
    """Start everything, warm up, take the samples, stop everything."""
    validate(BOARD)
    names = BOARD.compartment_names()
    plan = make_plan(names, samples)
    a_slots = [s for s in plan if s.path == "A"]

    broker = MosquittoBroker(tmp / "broker")
    info = broker.start()
    address = BrokerAddress(info.host, info.port)
    cloud: CloudServer | None = None
    daemon: LockerDaemon | None = None
    rtt: RoundTrip | None = None
    try:
        cloud, maintainer, identity = start_cloud(tmp / "cloud", address)
        services = cloud.app.state.services
        devices: DeviceService = services.devices
        keys: CloudKeys = services.keys
        _wait_until(lambda: devices.broker_connected, 15, "cloud not connected to the broker")

        # The controller, as station/locker.start_simulated_locker builds one, on this board.
        factory = simulation_factory()
        sim = LockerSimulator(BOARD, factory)
        locker_dir = tmp / DEVICE_ID
        locker_dir.mkdir()
        identity.save(locker_dir / "identity.json")
        daemon = LockerDaemon(
            identity,
            names,
            lambda deliver: GpioLockBus(BOARD, factory, deliver),
            locker_dir,
            address,
            keepalive_s=10,
        )
        sim.attach()
        watch = LatchWatch(BOARD, factory)
        daemon.start()
        if not daemon.link.wait_connected(15):
            raise RuntimeError("bench scenario broken: the controller did not reach the broker")

        payload_bytes = command_size(keys)
        rtt = feed = RoundTrip(info.host, info.port, payload_bytes)

        # The signed lists: one grant per A sample, `live` at a time (see LIVE_MAX); a list is
        # replaced by the next (a higher version) once its grants are used, between samples.
        d = daemon
        wall_ms = SystemClock().now().wall_ms
        lists = -(-len(a_slots) // live)  # ceil
        extra = [names[i % len(names)] for i in range(lists * live - len(a_slots))]
        grants, codes = make_grants(keys, [s.compartment for s in a_slots] + extra, wall_ms)

        def push_list(index: int) -> None:
            version = CONFIG_VERSION + index
            batch = grants[index * live : (index + 1) * live]
            body = ConfigBody(
                device_id=DEVICE_ID,
                version=version,
                issued_at_ms=SystemClock().now().wall_ms,
                compartments={n: CompartmentPolicy(size="M", pulse_ms=PULSE_MS) for n in names},
                grants=batch,
            )
            feed.publish(
                f"linli/v1/{DEVICE_ID}/cfg/desired",
                sign_body(keys.signing_key, keys.key_id, body),
                retain=True,
            )
            _wait_until(
                lambda: d.state.cfg_version == version and len(d.state.grants) == len(batch),
                15,
                f"the controller did not apply the bench's grant list {version}",
            )
            time.sleep(0.2)  # let the core thread finish persisting it before the next sample

        push_list(0)
        _wait_until(
            lambda: all(c.door == "closed" for c in d.state.compartments.values()),
            15,
            "doors not read closed",
        )
        document_kb: list[float] = []  # at the first timed sample, and at the end

        pure: list[float] = []
        code: list[float] = []
        remote: list[float] = []
        raw: list[float] = []
        disk: list[float] = []
        not_before: dict[str, float] = {}
        waited_outbox = 0
        clock = SystemClock()
        used = 0  # codes entered so far
        started = time.monotonic()
        for slot in plan:
            name = slot.compartment
            delay = not_before.get(name, 0.0) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            _wait_until(door_is(d, name, "closed"), WAIT_S, f"{name} not closed and at rest")
            if d.outbox_depth():
                waited_outbox += 1
                _wait_until(lambda: d.outbox_depth() == 0, WAIT_S, "outbox not drained")
            if slot.timed and not document_kb:
                document_kb.append((locker_dir / "state.json").stat().st_size / 1000)

            if slot.path == "A":
                if used and used % live == 0:
                    push_list(used // live)
                entered = codes[used]
                used += 1
                snapshot, event = d.state, CodeEntered(CHANNEL, entered)
                t0 = time.perf_counter()
                _, outputs = decide(snapshot, event, clock.now())
                t1 = time.perf_counter()
                if not any(isinstance(o, PulseLatch) for o in outputs):
                    shown_pure = [o for o in outputs if isinstance(o, ShowMessage)]
                    raise RuntimeError(f"bench scenario broken: {name}'s code gave {shown_pure}")
                watch.arm(name)
                start = time.perf_counter()
                shown = d.submit_code(entered, CHANNEL)
                at = watch.wait()
                if at is None or shown is None or shown.key != "code.accepted":
                    raise RuntimeError(f"bench scenario broken: code for {name} gave {shown}")
                if slot.timed:
                    pure.append((t1 - t0) * 1000)
                    code.append((at - start) * 1000)
            else:
                floor = rtt.sample()
                watch.arm(name)
                start = time.perf_counter()
                devices.send_command(
                    DEVICE_ID, "open", requested_by=maintainer, compartment=name, reason=OPEN_REASON
                )
                at = watch.wait()
                if at is None:
                    raise RuntimeError(f"bench scenario broken: remote open of {name} no pulse")
                if slot.timed:
                    raw.append(floor)
                    remote.append((at - start) * 1000)
            not_before[name] = at + COOLDOWN_MS / 1000 + COOLDOWN_MARGIN_S

            # The resident (or maintainer) opens the door and shuts it again.
            if not sim.open_door(name):
                raise RuntimeError(f"bench scenario broken: {name} did not open after its pulse")
            _wait_until(door_is(d, name, "open"), WAIT_S, f"{name} not read open")
            sim.close_door(name)
            _wait_until(door_is(d, name, "closed"), WAIT_S, f"{name} not read closed")
            if slot.path == "A" and slot.timed:
                disk.append(fsync_probe(locker_dir))
        elapsed_s = time.monotonic() - started

        _wait_until(lambda: d.outbox_depth() == 0, WAIT_S, "outbox not drained at the end")
        sent = len([s for s in plan if s.path == "B"])

        def answered() -> int:
            row = services.store.read_one(
                "SELECT COUNT(*) AS n FROM commands WHERE device_id = ? AND result_ok = 1",
                (DEVICE_ID,),
            )
            return int(row["n"]) if row is not None else 0

        _wait_until(lambda: answered() >= sent, WAIT_S, "not every command answered ok")
        document_kb.append((locker_dir / "state.json").stat().st_size / 1000)
        return Results(
            pure=pure,
            code=code,
            remote=remote,
            raw=raw,
            disk=disk,
            live=live,
            lists=lists,
            document_kb=(document_kb[0], document_kb[-1]),
            payload_bytes=payload_bytes,
            commands_ok=answered(),
            commands_sent=sent,
            stray=watch.stray,
            waited_outbox=waited_outbox,
            elapsed_s=elapsed_s,
        )
    finally:
        if rtt is not None:
            rtt.stop()
        if daemon is not None:
            daemon.stop()
        if cloud is not None:
            cloud.stop()
        broker.stop()


def mosquitto_version() -> str:
    """``mosquitto -h``'s first line names the version."""
    binary = mosquitto_binary()
    if binary is None:
        return "mosquitto missing"
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "mosquitto (version unknown)"


def file_system(path: Path) -> str:
    """The file system holding ``path`` (type and device, from /proc/mounts)."""
    target = str(path.resolve()).rstrip("/") + "/"
    best: tuple[str, str, str] = ("", "unknown file system", "")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best[1]
    for line in mounts:
        device, mount_point, fs_type = line.split()[:3]
        if target.startswith(mount_point.rstrip("/") + "/") and len(mount_point) >= len(best[0]):
            best = (mount_point, fs_type, device)
    return f"{best[1]} on {best[2]}" if best[2] else best[1]


def load() -> str:
    """The 1-minute load average (other work on the machine shows here)."""
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--samples", type=int, default=200, help="timed samples per path (A and B; C as B)"
    )
    parser.add_argument(
        "--grants",
        type=int,
        default=LIVE_DEFAULT,
        help=f"live grants in each signed list (1..{LIVE_MAX}; a new list follows when used up)",
    )
    args = parser.parse_args()
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if not 1 <= args.grants <= LIVE_MAX:
        parser.error(f"--grants must be 1..{LIVE_MAX}: more live codes make the bank guarded")
    if mosquitto_binary() is None:
        raise SystemExit("mosquitto not found (apt-get install mosquitto)")
    print(
        f"linli bench open_paths — {time.strftime('%Y-%m-%d %H:%M')} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {mosquitto_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="linli-bench-") as tmp:
        load_before = load()
        r = run(args.samples, args.grants, Path(tmp))
        where = file_system(Path(tmp))
    print(
        f"Set-up: LockerDaemon on a simulated GPIO bank of {len(BOARD.compartments)} compartments"
        f" (MockFactory), data on {where}; {r.lists} signed list(s) of {r.live} live grants in turn"
        f" (state document {r.document_kb[0]:.1f} kB at the first timed sample, {r.document_kb[1]:.1f} kB at the"
        f" end: used grants stay until they expire), {PULSE_MS} ms pulses; cloud, controller and"
        f" bench in one process; private Mosquitto. {2 * (args.samples + WARMUP_PAIRS)} pulses"
        f" ({2 * WARMUP_PAIRS} warm-up) in {r.elapsed_s:.0f} s; load average {load_before} before,"
        f" {load()} after."
    )
    print("Results:")
    pure_median, _ = report("baseline: pure decide() of the same code, same state", r.pure)
    a_median, a_p99 = report("A. keypad code -> latch energized (local check)", r.code)
    raw_median, _ = report(
        f"C. baseline: raw MQTT QoS1 publish -> receive ({r.payload_bytes} B)", r.raw
    )
    b_median, b_p99 = report("B. cloud open -> signed cmd via Mosquitto -> latch", r.remote)
    report("disk: 4 kB write + fsync in the data directory", r.disk)
    print("Ratios (medians):")
    print(f"  A / pure decide():         {a_median / pure_median:8.1f}x")
    print(f"  B / raw MQTT round trip C: {b_median / raw_median:8.1f}x")
    print(
        f"Checks: {r.commands_ok}/{r.commands_sent} commands answered ok; {r.stray} latches"
        f" energized unexpected; {r.waited_outbox} samples waited for the outbox to drain first."
    )
    for label, p99, target in (
        ("A", a_p99, TARGET_A_P99_MS),
        ("B", b_p99, TARGET_B_P99_MS),
    ):
        verdict = "PASS" if p99 <= target else "MISS"
        print(f"  {verdict} {label}: p99 {p99:.3f} ms, target <= {target:.0f} ms")


if __name__ == "__main__":
    main()
