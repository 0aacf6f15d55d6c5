"""Crash rig: a real controller in a child process, killed with SIGKILL at a chosen instant, and
the invariants that must hold however it died (issue #4, "Done when": crash trials).

Used by ``tests/test_crash_points.py`` (every crash point once, a few random-time power cuts) and
``bench/crash_trials.py`` (hundreds of random trials).

Everything is real: a private Mosquitto; the cloud in its own process (``python -m linli.cli
cloud``: SQLite store, MQTT bridge), which the rig also uses as its back office on the same store
(enrolment, ``items.service.reserve``, ``DeviceService.publish_config``), as the HTTP app would;
the controller daemon (:class:`~locker_controller.daemon.LockerDaemon`, its TinyDB state document
and SQLite outbox) in a child process (``python tests/crash_rig.py child ...``) that takes codes
through its Unix-socket keypad (:class:`~locker_controller.keypad.LocalKeypad`); and ``SIGKILL``,
sent by :mod:`linli.crash` at a labelled instant (``LINLI_CRASH_AT=label@N``) or by the driver at
a random time. Nothing of ours is mocked. The lock bus is the one stand-in, and it is physics:

- :class:`Physics` keeps doors and items in ``physics.json`` and every latch energization in
  ``pulses.log``: a line appended and fsynced *before* the latch counts as energized. That line is
  the physical world: it survives kill -9, and a door can be pulled open only after a pulse since
  it last latched shut. The child's :class:`RecordingLockBus` senses doors and items from the file
  (edges within 10 ms, and ``read_all``), so a restarted controller sees the world as it is, and
  ends each pulse (``PulseEnded``) after its ``pulse_ms``.
- :class:`Resident` plays the people: she enters the code at the keypad socket (again if the
  keypad went dark before the latch released), pulls the door once the latch released, takes the
  item, shuts the door, then enters the same code once more (it must not open again). She does not
  know whether the controller is alive: after each step she waits until the controller registered
  it (an event in its outbox) or at most ``pause_s``, then goes on.

A trial (:func:`run_trial`): enrol a fresh locker, list and reserve an item in each of some of its
compartments (points held, pickup grant issued, the signed list published retained), start the
child (armed with ``label@N``; for the cloud's label the cloud process is armed instead), play
every pickup while a :class:`Supervisor` restarts whatever died, unarmed (the controller after
``restart_delay_s``, as systemd would), wait until the controller's outbox is empty and the cloud
holds every event, stop the controller cleanly, then check.

Invariants (:func:`check_invariants`), as issue #4 states them:

(a) events the cloud received = events generated: the ``(boot_id, seq, type)`` of every row of
    the outbox's ``events`` (acknowledged or pending: every event committed) equal the cloud's
    ``device_events`` of that device, none stored twice, none left pending;
(b) pulses ≤ accepted authorizations: per grant (one per compartment and trial), lines in
    ``pulses.log`` ≤ its ``code_accepted`` events, ≤ its ``latch_pulsed`` events, and ≤ 2;
(c) no code opens twice: no pulse of a compartment after the ``door_opened`` event that named (and
    consumed) its grant (``CLOCK_MONOTONIC``, shared by all processes, orders events and pulses);
(d) the cloud settles each pickup once, as far as the controller reported it: item ``picked_up``
    and exactly one posted hold once the item was reported gone (before that, no post), the grant
    ``consumed`` once a ``door_opened`` named it, no item transition twice.

The physical world can contradict what the controller reported (:func:`check_world`): ``c-world``,
the latch released again for a grant after its door had been pulled open (the code opened twice,
whether or not the controller saw the opening); ``d-world``, the resident took the item (or pulled
the door open) and the cloud did not settle the pickup (or consume the grant). Both come from
facts that happen while the controller is down, or before it persisted them;
``tests/test_crash_points.py`` requires neither for a pickup done while the controller is down.
:func:`observations` lists the rest worth knowing (a door found open at start-up, a code refused
as used with no ``door_opened`` for it, a cool-down forgotten across a restart).

Each check was seen to fail on purpose (evidence altered after a clean trial: a stored event
deleted, an event left pending, a pulse line added or moved after ``door_opened``, a settled item
or a consumed grant set back), never left in the code.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import fcntl
import itertools
import json
import logging
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hardware.capabilities import GPIO_CAPABILITIES, Capabilities
from linli.broker import BrokerAddress
from linli.crash import STATION_LABELS
from linli.identity import DeviceIdentity
from locker_controller.core.model import (
    COOLDOWN_MS,
    MAX_PULSE_MS,
    BusRead,
    CompartmentReading,
    DoorSensed,
    Input,
    OccupancySensed,
)
from locker_controller.lockbus import PulseTimers

log = logging.getLogger(__name__)

COMPARTMENTS: tuple[tuple[str, str], ...] = (("A1", "S"), ("A2", "M"), ("A3", "M"), ("A4", "L"))
"""The rig's bank: four compartments, as the demo's lockers."""
RESIDENT = "per_1"
"""Who reserves every item (the seeded Auntie Wang; the rig credits her the points first)."""
CLOUD_LABELS = frozenset(label for label in STATION_LABELS if label.startswith("cloud."))
"""Crash points in the cloud's process; every other label is the controller's."""
HUMAN_PAUSE_S = 2.0
"""The longest a resident waits between two steps for the controller to register the first."""
POLL_S = 0.01
SENSE_EVERY_S = 0.01
"""How often the child's sensors look at the physical world (a GPIO edge is about as quick)."""
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 60.0
CRASH_MESSAGE = "LINLI_CRASH_AT: crashing at "
NO_ANSWER = "(no answer"


# --- the physical world -------------------------------------------------------------------------


@dataclass(frozen=True)
class Door:
    """One compartment's door and content, as they physically are."""

    is_open: bool = False
    has_item: bool = False
    latched_at: int = 0
    """Pulses of this latch when the door last latched shut: it opens only after a later one."""
    first_opened_at: int | None = None
    """Pulses of this latch when the door was first pulled open (None: never)."""


@dataclass(frozen=True)
class Pulse:
    """One energization of a latch, as ``pulses.log`` recorded it before it happened."""

    compartment: str
    mono_ms: int
    wall_ms: int
    pid: int
    pulse_ms: int


class Physics:
    """Doors, items and latch pulses of the rig's bank, in files that outlive the controller.

    ``physics.json`` (replaced atomically, under ``flock``) holds the doors and items;
    ``pulses.log`` gets one fsynced JSON line per energization, written by the controller's lock
    bus before the latch moves.

    Example:
        >>> world = Physics.create(rig_dir, items={"A1"})
        >>> world.open_door("A1")   # False: no pulse yet, the latch holds
        False
    """

    def __init__(self, rig_dir: Path) -> None:
        self.rig_dir = rig_dir
        self.doors_path = rig_dir / "physics.json"
        self.pulses_path = rig_dir / "pulses.log"
        self._lock_path = rig_dir / "physics.lock"
        self._thread_lock = threading.Lock()

    @classmethod
    def create(cls, rig_dir: Path, items: set[str]) -> Physics:
        """A bank with every door shut, ``items`` inside, no pulse yet."""
        rig_dir.mkdir(parents=True, exist_ok=True)
        world = cls(rig_dir)
        world._write({name: Door(has_item=name in items) for name, _ in COMPARTMENTS})
        world.pulses_path.touch()
        _fsync_dir(rig_dir)
        return world

    def doors(self) -> dict[str, Door]:
        """Every door and content now."""
        raw = json.loads(self.doors_path.read_text(encoding="utf-8"))
        return {name: Door(**fields) for name, fields in raw.items()}

    def pulses(self) -> list[Pulse]:
        """Every energization so far, in order."""
        text = self.pulses_path.read_text(encoding="utf-8")
        return [Pulse(**json.loads(line)) for line in text.splitlines() if line.strip()]

    def pulse_count(self, compartment: str) -> int:
        """How many times this latch was energized."""
        return sum(1 for p in self.pulses() if p.compartment == compartment)

    def record_pulse(self, compartment: str, pulse_ms: int) -> None:
        """Append and fsync the line of one energization (the lock bus, before the latch moves)."""
        line = json.dumps(
            {
                "compartment": compartment,
                "mono_ms": int(time.monotonic() * 1000),
                "wall_ms": int(time.time() * 1000),
                "pid": os.getpid(),
                "pulse_ms": pulse_ms,
            }
        )
        fd = os.open(self.pulses_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def can_open(self, compartment: str) -> bool:
        """Whether the door would open if pulled: shut, and its latch energized since it latched."""
        door = self.doors()[compartment]
        return not door.is_open and self.pulse_count(compartment) > door.latched_at

    def open_door(self, compartment: str) -> bool:
        """Pull the door; it opens only if its latch released since it last latched shut."""
        with self._locked() as doors:
            door = doors[compartment]
            pulses = self.pulse_count(compartment)
            if door.is_open or pulses <= door.latched_at:
                return False
            first = door.first_opened_at if door.first_opened_at is not None else pulses
            doors[compartment] = replace(door, is_open=True, first_opened_at=first)
        return True

    def take_item(self, compartment: str) -> bool:
        """Take the item out; only through an open door."""
        with self._locked() as doors:
            door = doors[compartment]
            if not door.is_open or not door.has_item:
                return False
            doors[compartment] = replace(door, has_item=False)
        return True

    def close_door(self, compartment: str) -> bool:
        """Push the door shut; the latch catches it. Returns False if it was shut already."""
        with self._locked() as doors:
            door = doors[compartment]
            doors[compartment] = replace(
                door, is_open=False, latched_at=self.pulse_count(compartment)
            )
        return door.is_open

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Door]]:
        with self._thread_lock, self._lock_path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            doors = self.doors()
            yield doors
            self._write(doors)

    def _write(self, doors: dict[str, Door]) -> None:
        tmp = self.doors_path.with_name(self.doors_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump({name: asdict(door) for name, door in doors.items()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.doors_path)
        _fsync_dir(self.rig_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordingLockBus:
    """The child's lock bus (:class:`~locker_controller.lockbus.LockBus`) on :class:`Physics`.

    ``unlock`` writes the pulse's line (fsynced) and only then counts the latch as energized; a
    timer ends the pulse after ``pulse_ms`` (bounded by ``MAX_PULSE_MS``) and delivers
    ``PulseEnded``. A sensor thread delivers ``DoorSensed`` / ``OccupancySensed`` on every change
    of the file, as GPIO edges would; ``read_all`` reads it as it is.
    """

    def __init__(self, physics: Physics, deliver: Callable[[Input], None]) -> None:
        self._physics = physics
        self._deliver = deliver
        self._timers = PulseTimers(lambda name: None, deliver)
        self._closed = threading.Event()
        self._seen = physics.doors()
        self._sensor = threading.Thread(target=self._sense, name="rig-sensors", daemon=True)
        self._sensor.start()

    @property
    def capabilities(self) -> Capabilities:
        """Door and item sensors, no latch feedback, software-timed pulses (a GPIO bank)."""
        return GPIO_CAPABILITIES

    def unlock(self, compartment: str, pulse_ms: int) -> None:
        """Record the energization, then hold it for ``pulse_ms`` (at most ``MAX_PULSE_MS``)."""
        duration_ms = max(0, min(pulse_ms, MAX_PULSE_MS))
        self._timers.start(
            compartment, pulse_ms, lambda: self._physics.record_pulse(compartment, duration_ms)
        )

    def read_all(self) -> BusRead:
        """Every door and item as the physical world has them, and which outputs are on."""
        doors = self._physics.doors()
        energized = self._timers.running()
        return BusRead(
            {
                name: CompartmentReading(
                    door_open=door.is_open,
                    item_present=door.has_item,
                    is_energized=name in energized,
                )
                for name, door in doors.items()
            }
        )

    def all_off(self) -> None:
        """Every output off now (pending pulse timers cancelled)."""
        self._timers.cancel_all()

    def close(self) -> None:
        """Outputs off, sensors stopped."""
        self.all_off()
        self._closed.set()

    def _sense(self) -> None:
        while not self._closed.wait(SENSE_EVERY_S):
            try:
                doors = self._physics.doors()
            except (OSError, ValueError):  # a read between two writes never happens (rename)
                continue
            for name, door in doors.items():
                before = self._seen.get(name, door)
                if door.is_open != before.is_open:
                    self._deliver(DoorSensed(name, is_open=door.is_open))
                if door.has_item != before.has_item:
                    self._deliver(OccupancySensed(name, is_present=door.has_item))
            self._seen = doors


# --- the child controller -----------------------------------------------------------------------


def run_child(rig_dir: Path, broker: BrokerAddress, keypad_path: Path) -> int:
    """Run the controller of the rig's bank until SIGTERM (or until ``LINLI_CRASH_AT`` kills it).

    Writes ``child.json`` (pid, boot id, applied configuration version, broker connection) once its
    keypad listens, and again whenever one of them changes.
    """
    from locker_controller.daemon import LockerDaemon
    from locker_controller.keypad import LocalKeypad

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data_dir = rig_dir / "data"
    identity = DeviceIdentity.load(data_dir / "identity.json")
    physics = Physics(rig_dir)
    daemon = LockerDaemon(
        identity,
        [name for name, _ in COMPARTMENTS],
        lambda deliver: RecordingLockBus(physics, deliver),
        data_dir,
        broker,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a stop that hangs shows where
    daemon.start()
    keypad = LocalKeypad(daemon, keypad_path, language="en").start()
    status_path = rig_dir / "child.json"
    written: dict[str, Any] = {}
    while not stop.wait(0.02):
        status = {
            "pid": os.getpid(),
            "boot_id": daemon.boot_id,
            "cfg_version": daemon.state.cfg_version,
            "connected": daemon.link.is_connected,
        }
        if status != written:
            tmp = status_path.with_name(f"child.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(status), encoding="utf-8")
            tmp.replace(status_path)
            written = status
    keypad.stop()
    daemon.stop()
    return 0


class ControllerProcess:
    """The driver's handle on the child controller: start (armed or not), kill, stop."""

    def __init__(self, rig_dir: Path, broker: BrokerAddress, keypad_path: Path) -> None:
        self.rig_dir = rig_dir
        self.broker = broker
        self.keypad_path = keypad_path
        self.generation = 0
        self.stop_timed_out = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def log_path(self) -> Path:
        """The current boot's stdout and stderr."""
        return self.rig_dir / f"boot-{self.generation}.log"

    @property
    def pid(self) -> int | None:
        """The current child's process id."""
        return self._proc.pid if self._proc is not None else None

    def start(self, crash_at: str | None = None) -> None:
        """Start a child controller, armed with ``LINLI_CRASH_AT=crash_at`` if given."""
        env = {k: v for k, v in os.environ.items() if k != "LINLI_CRASH_AT"}
        if crash_at:
            env["LINLI_CRASH_AT"] = crash_at
        with self._lock:
            self.generation += 1
            with self.log_path.open("wb") as out:
                self._proc = subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "child",
                        "--rig",
                        str(self.rig_dir),
                        "--broker",
                        f"{self.broker.host}:{self.broker.port}",
                        "--keypad",
                        str(self.keypad_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )

    def exit_code(self) -> int | None:
        """The child's exit code, or None while it runs."""
        proc = self._proc
        return proc.poll() if proc is not None else None

    def is_alive(self) -> bool:
        """Whether the current child runs."""
        return self._proc is not None and self._proc.poll() is None

    def status(self) -> dict[str, Any] | None:
        """The current child's ``child.json`` once its keypad listens (None before)."""
        try:
            status: dict[str, Any] = json.loads(
                (self.rig_dir / "child.json").read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            return None
        if status.get("pid") != self.pid or not self.is_alive():
            return None
        return status

    def crash_label(self) -> str | None:
        """The crash point the current boot died at, from its log (None: not a crash point)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return _crash_label(text)

    def kill(self) -> None:
        """SIGKILL the current child (a power cut); return once it is gone."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait (the daemon switches outputs off, says offline); SIGKILL past the
        timeout (``stop_timed_out`` then says so). Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.stop_timed_out = True
                proc.send_signal(signal.SIGUSR1)  # every thread's stack into the boot log
                time.sleep(0.5)
                proc.kill()
                proc.wait()
        return proc.returncode


def _crash_label(log_text: str) -> str | None:
    for line in log_text.splitlines():
        if line.startswith(CRASH_MESSAGE):
            return line[len(CRASH_MESSAGE) :].strip()
    return None


# --- the cloud ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pickup:
    """One reserved item: its compartment, grant and code (never printed)."""

    compartment: str
    grant_id: str
    item_id: str
    person_id: str
    code: str = field(repr=False)


class MqttPublisher:
    """The cloud's publisher port for the rig's own configuration pushes (paho, QoS and retention
    of the contract), so a reservation's signed list is on the broker before the controller
    starts."""

    def __init__(self, broker: BrokerAddress) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"crash-rig-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        self._client.on_connect = lambda *args: self._connected.set()
        self._client.on_disconnect = lambda *args: self._connected.clear()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("the rig could not connect to its broker")

    @property
    def is_connected(self) -> bool:
        """Whether the session is up."""
        return self._connected.is_set()

    def publish(self, device_id: str, name: str, payload: bytes) -> None:
        """Publish on a device's topic; return once the broker has it."""
        from linli.contract import BY_NAME, topic

        spec = BY_NAME[name]
        info = self._client.publish(
            topic(device_id, name), payload, qos=spec.qos, retain=spec.retained
        )
        info.wait_for_publish(10)

    def clear_retained(self, device_id: str) -> None:
        """Remove a retired device's retained messages (a restarted cloud need not replay them)."""
        for name in ("status", "state", "cfg/reported", "cfg/desired"):
            from linli.contract import topic

            self._client.publish(topic(device_id, name), b"", qos=1, retain=True).wait_for_publish(
                10
            )

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


class RigCloud:
    """A private Mosquitto and the cloud in its own process (``linli cloud``) on a seeded store.

    The rig itself acts as the cloud's back office on the same store (enrolment, reservations
    through :func:`cloud_api.items.service.reserve`, signed lists through
    :meth:`cloud_api.devices.service.DeviceService.publish_config`), as the HTTP app would.

    Example:
        >>> cloud = RigCloud(tmp_path).start()
        >>> pickups = cloud.reserve_pickups("rig-0001", ["A1", "A3"])
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "cloud"
        self.generation = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._broker: Any = None
        self._publisher: MqttPublisher | None = None
        self._store: Any = None
        self._keys: Any = None
        self._devices: Any = None
        self._lock = threading.Lock()

    # --- life ---

    def start(self) -> RigCloud:
        """Start the broker, seed the store, start the cloud process and wait until it serves."""
        from cloud_api.devices.service import DeviceService
        from cloud_api.keys import load_or_create_keys
        from cloud_api.seed import seed_demo
        from cloud_api.store import Store
        from linli.clock import SystemClock
        from station.broker import MosquittoBroker, free_port

        self._broker = MosquittoBroker(self.base_dir / "mosquitto")
        self._broker.start()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.data_dir / "cloud.sqlite3")
        self._store.migrate()
        self._keys = load_or_create_keys(self.data_dir / "secrets")
        seed_demo(self._store, self._keys, int(time.time() * 1000))
        self._port = free_port()
        self._publisher = MqttPublisher(self.broker)
        self._devices = DeviceService(self._store, self._keys, self._publisher, SystemClock())
        self.spawn()
        return self

    @property
    def broker(self) -> BrokerAddress:
        """Where the broker listens."""
        info = self._broker.info
        return BrokerAddress(info.host, info.port)

    @property
    def log_path(self) -> Path:
        """The current cloud process's log."""
        return self.base_dir / f"cloud-{self.generation}.log"

    def spawn(self, crash_at: str | None = None, timeout_s: float = READY_TIMEOUT_S) -> None:
        """(Re)start the cloud process, armed with ``LINLI_CRASH_AT=crash_at`` if given; stop a
        running one cleanly first. Returns once it serves and its bridge is connected."""
        self.stop_process()
        env = {k: v for k, v in os.environ.items() if k != "LINLI_CRASH_AT"}
        if crash_at:
            env["LINLI_CRASH_AT"] = crash_at
        with self._lock:
            self.generation += 1
            with self.log_path.open("wb") as out:
                self._proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "linli.cli",
                        "--log-level",
                        "WARNING",
                        "cloud",
                        "--data-dir",
                        str(self.data_dir),
                        "--port",
                        str(self._port),
                        "--broker-url",
                        self.broker.url,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the cloud answers ``/healthz`` with its broker connected."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.is_alive():
                raise RuntimeError(f"the cloud process exited; see {self.log_path}")
            try:
                url = f"http://127.0.0.1:{self._port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if json.loads(response.read()).get("broker_connected"):
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cloud did not become ready; see {self.log_path}")
            time.sleep(0.05)

    def is_alive(self) -> bool:
        """Whether the cloud process runs."""
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        """The cloud process's exit code, or None while it runs."""
        return self._proc.poll() if self._proc is not None else None

    def crash_label(self) -> str | None:
        """The crash point the current cloud process died at (None: not a crash point)."""
        try:
            return _crash_label(self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return None

    def stop_process(self) -> None:
        """Stop the cloud process (SIGTERM, then SIGKILL past 15 s)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """Stop everything the rig started."""
        self.stop_process()
        if self._publisher is not None:
            self._publisher.close()
        if self._store is not None:
            self._store.close()
        if self._broker is not None:
            self._broker.stop()

    # --- the back office ---

    def enrol(self, device_id: str) -> DeviceIdentity:
        """Register a locker with the rig's compartments; return its identity."""
        from cloud_api.devices.enrol import enrol_device
        from cloud_api.seed import COMMUNITY

        return enrol_device(
            self._store,
            self._keys,
            community_id=COMMUNITY,
            device_id=device_id,
            role="locker",
            name=f"crash rig {device_id}",
            compartments=list(COMPARTMENTS),
        )

    def reserve_pickups(
        self, device_id: str, compartments: list[str], rng: random.Random | None = None
    ) -> tuple[list[Pickup], int]:
        """List an item in each compartment and reserve it for :data:`RESIDENT` (her points
        topped up first); publish the signed list. Returns the pickups and the list's version."""
        from cloud_api import ledger
        from cloud_api.grants.service import code_of
        from cloud_api.items.service import reserve
        from cloud_api.seed import COMMUNITY
        from linli.ids import new_id

        rng = rng or random.Random()
        now_ms = int(time.time() * 1000)
        pickups = []
        with self._store.write() as db:
            for compartment in compartments:
                item_id = new_id("itm")
                points = rng.randint(1, 9)
                db.execute(
                    "INSERT INTO items (id, community_id, donor_id, title, category, points,"
                    " status, device_id, compartment, updated_ms)"
                    " VALUES (?,?,?,?,?,?, 'listed', ?,?,?)",
                    (
                        item_id,
                        COMMUNITY,
                        "per_2",
                        f"rig item {item_id}",
                        "other",
                        points,
                        device_id,
                        compartment,
                        now_ms,
                    ),
                )
                ledger.transfer(
                    db,
                    key=f"rig-credit:{item_id}",
                    debit=ledger.ISSUANCE,
                    credit=f"mem:{RESIDENT}",
                    amount=points,
                    kind="valuation_credit",
                    actor="crash-rig",
                    now_ms=now_ms,
                )
                grant_id = reserve(db, self._keys, item_id, RESIDENT, now_ms)
                (counter,) = db.execute(
                    "SELECT code_counter FROM grants WHERE id = ?", (grant_id,)
                ).fetchone()
                code = code_of(self._keys, grant_id, int(counter))
                pickups.append(Pickup(compartment, grant_id, item_id, RESIDENT, code))
        version: int = self._devices.publish_config(device_id)
        return pickups, version

    def clear_retained(self, device_id: str) -> None:
        """Retire a device's retained messages."""
        if self._publisher is not None:
            self._publisher.clear_retained(device_id)

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a query on the cloud's store."""
        rows: list[Any] = self._store.read(sql, params)
        return rows


# --- reading the controller's outbox ------------------------------------------------------------


@dataclass(frozen=True)
class DeviceEvent:
    """One event of the controller's outbox (pending or archived)."""

    boot_id: str
    seq: int
    type: str
    compartment: str | None
    grant_id: str | None
    reason: str | None
    mono_ms: int
    data: dict[str, Any]
    is_acked: bool


def outbox_events(rig_dir: Path) -> list[DeviceEvent]:
    """Every event the controller committed, in (boot, seq) order."""
    path = rig_dir / "data" / "outbox.sqlite3"
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=10)) as db:
        try:
            rows = db.execute(
                "SELECT boot_id, seq, payload, acked FROM events ORDER BY boot_no, seq"
            ).fetchall()
        except sqlite3.OperationalError:  # no tables yet: see outbox_progress
            return []
    events = []
    for boot_id, seq, payload, acked in rows:
        body = json.loads(payload)
        events.append(
            DeviceEvent(
                boot_id=str(boot_id),
                seq=int(seq),
                type=body["type"],
                compartment=body.get("compartment"),
                grant_id=body.get("grant_id"),
                reason=body.get("reason"),
                mono_ms=int(body["mono_ms"]),
                data=body.get("data") or {},
                is_acked=bool(acked),
            )
        )
    return events


@dataclass(frozen=True)
class OutboxProgress:
    """How far the controller's outbox is."""

    pending: int
    boots: int
    """Boots registered (a boot registers before it records its ``booted`` event)."""
    is_latest_boot_acked: bool
    """The latest boot has an event the cloud acknowledged (its ``booted``, at least)."""

    def is_recovered_since(self, boots: int) -> bool:
        """A boot after ``boots`` got its events acknowledged, and nothing is pending."""
        return self.pending == 0 and self.boots > boots and self.is_latest_boot_acked


def outbox_progress(rig_dir: Path) -> OutboxProgress:
    """Pending events and boots of the controller's outbox."""
    path = rig_dir / "data" / "outbox.sqlite3"
    if not path.exists():
        return OutboxProgress(0, 0, is_latest_boot_acked=False)
    with closing(sqlite3.connect(path, timeout=10)) as db:
        try:
            pending, boots, acked = db.execute(
                "SELECT (SELECT COUNT(*) FROM events WHERE acked = 0),"
                " (SELECT COUNT(*) FROM boots),"
                " EXISTS (SELECT 1 FROM events WHERE acked = 1"
                " AND boot_no = (SELECT MAX(boot_no) FROM boots))"
            ).fetchone()
        except sqlite3.OperationalError:
            # A controller killed while creating its outbox leaves the file without tables
            # until the next boot creates them (one transaction): nothing there yet.
            return OutboxProgress(0, 0, is_latest_boot_acked=False)
    return OutboxProgress(int(pending), int(boots), bool(acked))


# --- a trial ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialSpec:
    """What to do to one trial's controller (or cloud)."""

    name: str
    crash_at: str | None = None
    """``label@N``: armed on the first start of the controller, or of the cloud for a cloud label."""
    kill_after_s: float | None = None
    """SIGKILL the controller this long after its first start (a random-time power cut)."""
    compartments: tuple[str, ...] = ("A1",)
    seed: int = 0
    restart_delay_s: float = 0.0
    """How long a dead controller stays down (systemd's ``RestartSec`` is 2 s in deploy/)."""
    pause_s: float = HUMAN_PAUSE_S
    """The resident's longest pause between two steps (see :class:`Resident`)."""

    @property
    def label(self) -> str | None:
        """The crash point armed, if any."""
        return self.crash_at.partition("@")[0] if self.crash_at else None


@dataclass
class Death:
    """A process of the trial that died, and what the rig was doing then."""

    who: str
    exit_code: int | None
    label: str | None
    phase: str
    at_s: float
    generation: int
    """Which start of that process it was (1: the first)."""


@dataclass
class PickupRecord:
    """What the resident did and was told for one pickup."""

    pickup: Pickup
    replies: list[str] = field(default_factory=list)
    opened: bool = False
    took: bool = False
    probe: str | None = None


@dataclass
class TrialResult:
    """The outcome of one trial."""

    spec: TrialSpec
    rig_dir: Path
    deaths: list[Death] = field(default_factory=list)
    recovery_ms: list[float] = field(default_factory=list)
    records: list[PickupRecord] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    """Invariants (a)–(d) that failed, one line each (also: a process that died of anything but
    the crash asked for, a controller that did not stop cleanly, a wait that timed out)."""
    world: list[str] = field(default_factory=list)
    """What the physical world contradicts (``c-world``, ``d-world``), one line each."""
    observations: list[str] = field(default_factory=list)
    events: int = 0
    pulses: int = 0
    duration_s: float = 0.0

    @property
    def crashed_at_label(self) -> bool:
        """Whether the armed crash point was reached (the process died there)."""
        return any(d.label == self.spec.label for d in self.deaths if d.label)

    @property
    def crash_phase(self) -> str | None:
        """What the rig was doing at the first death."""
        return self.deaths[0].phase if self.deaths else None

    def summary(self) -> str:
        """One line for logs."""
        deaths = ", ".join(
            f"{d.who} {d.label or f'exit {d.exit_code}'} during {d.phase!r} at {d.at_s:.2f}s"
            for d in self.deaths
        )
        return (
            f"{self.spec.name}: {self.events} events, {self.pulses} pulses,"
            f" deaths [{deaths}], recovery {[round(r) for r in self.recovery_ms]} ms,"
            f" violations {self.violations}, world {self.world},"
            f" observations {self.observations}"
        )


class Supervisor:
    """Restarts, unarmed, whatever process of the trial died: the controller after
    ``restart_delay_s`` (as systemd's ``Restart=always``), the cloud at once (its operator).
    Measures each recovery: restart → the controller's outbox empty (of its new boot, for a
    controller)."""

    def __init__(
        self,
        cloud: RigCloud,
        controller: ControllerProcess,
        phase: Callable[[], str],
        restart_delay_s: float = 0.0,
    ) -> None:
        self.cloud = cloud
        self.controller = controller
        self.restart_delay_s = restart_delay_s
        self.deaths: list[Death] = []
        self.recovery_ms: list[float] = []
        self.errors: list[str] = []
        self._phase = phase
        self._t0 = time.monotonic()
        self._recovering: list[tuple[float, int]] = []  # (restarted at, boots it must exceed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rig-supervisor", daemon=True)

    def start(self) -> Supervisor:
        """Watch from now on."""
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    @property
    def is_recovering(self) -> bool:
        """A restarted process whose recovery has not completed."""
        return bool(self._recovering)

    def stop(self) -> None:
        """Stop watching (before the driver stops the controller itself)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        rig = self.controller.rig_dir
        while not self._stop.wait(POLL_S):
            try:
                code = self.controller.exit_code()
                if code is not None:
                    self._died("controller", code, self.controller.crash_label())
                    if self._stop.wait(self.restart_delay_s):
                        return
                    boots = outbox_progress(rig).boots
                    self._recovering.append((time.monotonic(), boots))
                    self.controller.start()
                code = self.cloud.exit_code()
                if code is not None:
                    self._died("cloud", code, self.cloud.crash_label())
                    self._recovering.append((time.monotonic(), 0))
                    self.cloud.spawn()
                if self._recovering:
                    progress = outbox_progress(rig)
                    now = time.monotonic()
                    done = [r for r in self._recovering if progress.is_recovered_since(r[1])]
                    for restarted, boots_before in done:
                        self.recovery_ms.append((now - restarted) * 1000)
                        self._recovering.remove((restarted, boots_before))
            except Exception as exc:  # reported with the trial; the watch goes on
                self.errors.append(f"(rig) supervisor: {type(exc).__name__}: {exc}")
                log.exception("crash rig supervisor failed")

    def _died(self, who: str, code: int, label: str | None) -> None:
        generation = self.controller.generation if who == "controller" else self.cloud.generation
        if any(d.who == who and d.generation == generation for d in self.deaths):
            return  # seen already
        self.deaths.append(
            Death(who, code, label, self._phase(), time.monotonic() - self._t0, generation)
        )

    def note_death(self, code: int) -> None:
        """Record the controller's death at the end of a trial, unless already recorded."""
        self._died("controller", code, self.controller.crash_label())


class Resident:
    """A resident at the rig's bank: keypad socket, door, item (see the module docstring)."""

    def __init__(
        self,
        physics: Physics,
        controller: ControllerProcess,
        rig_dir: Path,
        pause_s: float = HUMAN_PAUSE_S,
    ) -> None:
        self.physics = physics
        self.controller = controller
        self.rig_dir = rig_dir
        self.pause_s = pause_s
        self.phase = "starting"

    def enter(self, code: str) -> str:
        """Enter a code once the keypad listens; return the message key shown, or
        ``(no answer: <why>)`` if the keypad went dark while she typed."""
        from locker_controller.keypad import enter_code

        _wait_for("the keypad", lambda: self.controller.status() is not None, READY_TIMEOUT_S, self)
        try:
            return enter_code(self.controller.keypad_path, code, timeout_s=15.0)["key"]
        except (OSError, ValueError, KeyError) as exc:  # the controller died while she typed
            return f"{NO_ANSWER}: {type(exc).__name__})"

    def pick_up(self, pickup: Pickup) -> PickupRecord:
        """Collect one item: code, door, item, door shut, then the same code once more."""
        record = PickupRecord(pickup)
        c = pickup.compartment
        for _ in range(4):
            self.phase = f"code {c}"
            generation = self.controller.generation
            reply = self.enter(pickup.code)
            record.replies.append(reply)
            if reply == "code.accepted" or self.physics.can_open(c):
                break
            if reply == "code.refused.cooling_down":
                time.sleep(COOLDOWN_MS / 1000 + 0.05)
            elif reply.startswith(NO_ANSWER):  # the keypad went dark: she waits, then retries
                deadline = time.monotonic() + self.pause_s
                while self.controller.generation == generation and time.monotonic() < deadline:
                    time.sleep(POLL_S)
            else:
                return record  # refused for good: she asks the social worker
        else:
            return record
        self.phase = f"open {c}"
        record.opened = self._step(c, "door_opened", lambda: self.physics.open_door(c))
        self.phase = f"take {c}"
        record.took = self._step(c, "occupancy_changed", lambda: self.physics.take_item(c))
        self.phase = f"close {c}"
        self._step(c, "door_closed", lambda: self.physics.close_door(c))
        self.phase = f"again {c}"
        record.probe = self.enter(pickup.code)
        self.phase = "done"
        return record

    def _step(self, compartment: str, event_type: str, act: Callable[[], bool]) -> bool:
        """Act, then pause until the controller registered it (an event of that type for the
        compartment in its outbox) or at most ``pause_s``."""
        before = self._count(compartment, event_type)
        done = act()
        deadline = time.monotonic() + self.pause_s
        while time.monotonic() < deadline and self._count(compartment, event_type) <= before:
            time.sleep(POLL_S)
        return done

    def _count(self, compartment: str, event_type: str) -> int:
        return sum(
            1
            for e in outbox_events(self.rig_dir)
            if e.type == event_type and e.compartment == compartment
        )


def _wait_for(what: str, probe: Callable[[], bool], timeout_s: float, who: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            phase = f" (during {who.phase!r})" if who is not None else ""
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}{phase}")
        time.sleep(POLL_S)


def _keypad_path(rig_dir: Path) -> Path:
    """A Unix socket path short enough for ``AF_UNIX`` (108 bytes)."""
    path = rig_dir / "keypad.sock"
    if len(str(path)) < 100:
        return path
    import tempfile

    return Path(tempfile.mkdtemp(prefix="rig-")) / "keypad.sock"


def device_id_for(name: str) -> str:
    """A valid device id (3–63 of ``a-z 0-9 -``) from a trial name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return f"rig-{slug}"[:63].rstrip("-")


def run_trial(cloud: RigCloud, spec: TrialSpec, rig_dir: Path) -> TrialResult:
    """Run one trial on a fresh device (see the module docstring) and check it."""
    started = time.monotonic()
    rng = random.Random(spec.seed)
    result = TrialResult(spec, rig_dir)
    device_id = device_id_for(spec.name)
    identity = cloud.enrol(device_id)
    identity.save(rig_dir / "data" / "identity.json")
    pickups, version = cloud.reserve_pickups(device_id, list(spec.compartments), rng)
    physics = Physics.create(rig_dir, items=set(spec.compartments))
    controller = ControllerProcess(rig_dir, cloud.broker, _keypad_path(rig_dir))
    resident = Resident(physics, controller, rig_dir, spec.pause_s)
    is_cloud_crash = spec.label in CLOUD_LABELS
    if is_cloud_crash:
        cloud.spawn(crash_at=spec.crash_at)
    armed_cloud = cloud.generation
    supervisor = Supervisor(cloud, controller, lambda: resident.phase, spec.restart_delay_s)
    killer: threading.Timer | None = None
    try:
        controller.start(None if is_cloud_crash else spec.crash_at)
        supervisor.start()
        if spec.kill_after_s is not None:
            first = controller.pid

            def power_cut() -> None:
                if controller.pid == first:
                    controller.kill()

            killer = threading.Timer(spec.kill_after_s, power_cut)
            killer.start()
        resident.phase = "booting"

        def ready() -> bool:
            status = controller.status()
            return status is not None and status["cfg_version"] >= version

        _wait_for("the controller to apply its grant list", ready, READY_TIMEOUT_S, resident)
        for pickup in pickups:
            result.records.append(resident.pick_up(pickup))
        resident.phase = "draining"
        if killer is not None:
            killer.join()
        _drain(cloud, device_id, controller, supervisor)
        supervisor.stop()
        resident.phase = "stopping"
        _stop_drained(cloud, device_id, controller, supervisor)
    except TimeoutError as exc:  # the bank never came back, or its events never drained
        result.violations.append(f"(liveness) {exc}")
    finally:
        if killer is not None:
            killer.cancel()
        supervisor.stop()
        controller.stop()
        if is_cloud_crash and cloud.generation == armed_cloud:
            cloud.spawn()  # the armed cloud never reached its crash point: disarm it
    if controller.stop_timed_out:
        result.violations.append("(liveness) the controller did not stop within 15 s of SIGTERM")
    result.deaths = supervisor.deaths
    result.recovery_ms = supervisor.recovery_ms
    result.violations.extend(supervisor.errors)
    killed = -signal.SIGKILL if spec.kill_after_s is not None else None
    result.violations.extend(
        f"{d.who} exited on its own with code {d.exit_code} during {d.phase!r}"
        for d in result.deaths
        if d.label is None and not (d.who == "controller" and d.exit_code == killed)
    )
    events = outbox_events(rig_dir)
    pulses = physics.pulses()
    result.events, result.pulses = len(events), len(pulses)
    result.violations.extend(check_invariants(cloud, device_id, rig_dir, pickups))
    result.world = check_world(cloud, result.records, physics)
    result.observations = observations(result.records, events, physics)
    cloud.clear_retained(device_id)
    result.duration_s = time.monotonic() - started
    return result


def _stop_drained(
    cloud: RigCloud, device_id: str, controller: ControllerProcess, supervisor: Supervisor
) -> None:
    """Stop the controller cleanly with its outbox empty. One that died at its crash point just
    as the trial ended (after the drain looked complete) is recorded like any death, restarted and
    drained again."""
    for _ in range(3):
        if controller.is_alive():
            _wait_for(
                "the controller to listen",
                lambda: controller.status() is not None or not controller.is_alive(),
                READY_TIMEOUT_S,
            )
        code = controller.stop()
        if code:
            supervisor.note_death(code)
        progress = outbox_progress(controller.rig_dir)
        if code == 0 and progress.pending == 0:
            return
        controller.start()
        _drain(cloud, device_id, controller, boots_above=progress.boots)
    raise TimeoutError("the controller never stopped cleanly with an empty outbox")


def _drain(
    cloud: RigCloud,
    device_id: str,
    controller: ControllerProcess,
    supervisor: Supervisor | None = None,
    boots_above: int = 0,
) -> None:
    """Wait until the controller runs (a boot after ``boots_above``), its outbox is empty, the
    cloud holds every event, and no recovery is open."""
    rig_dir = controller.rig_dir

    def drained() -> bool:
        if supervisor is not None and supervisor.is_recovering:
            return False
        if controller.status() is None:  # not running, or not yet listening
            return False
        if not outbox_progress(rig_dir).is_recovered_since(boots_above):
            return False
        held = {(r["boot_id"], r["seq"]) for r in _cloud_events(cloud, device_id)}
        return held >= {(e.boot_id, e.seq) for e in outbox_events(rig_dir)}

    _wait_for("the outbox to drain and the cloud to hold every event", drained, DRAIN_TIMEOUT_S)


def _cloud_events(cloud: RigCloud, device_id: str) -> list[Any]:
    return cloud.read(
        "SELECT boot_id, seq, type FROM device_events WHERE device_id = ? ORDER BY boot_id, seq",
        (device_id,),
    )


# --- the invariants -----------------------------------------------------------------------------


def check_invariants(
    cloud: RigCloud, device_id: str, rig_dir: Path, pickups: list[Pickup]
) -> list[str]:
    """Check (a)–(d) of the module docstring; return one line per violation (empty: all hold)."""
    violations: list[str] = []
    events = outbox_events(rig_dir)
    pulses = Physics(rig_dir).pulses()

    # (a) events the cloud received = events generated; none twice; nothing left pending.
    generated = {(e.boot_id, e.seq, e.type) for e in events}
    received = Counter((r["boot_id"], r["seq"], r["type"]) for r in _cloud_events(cloud, device_id))
    if generated != set(received):
        missing = sorted(generated - set(received))
        extra = sorted(set(received) - generated)
        violations.append(f"(a) the cloud lacks {missing[:5]} and holds extra {extra[:5]}")
    twice = sorted(k for k, n in received.items() if n > 1)
    if twice:
        violations.append(f"(a) the cloud stored more than once: {twice[:5]}")
    pending = [(e.boot_id, e.seq, e.type) for e in events if not e.is_acked]
    if pending:
        violations.append(f"(a) still pending in the outbox: {pending[:5]}")

    for p in pickups:
        of_grant = [e for e in events if e.grant_id == p.grant_id]
        latch = [x for x in pulses if x.compartment == p.compartment]
        accepted = sum(1 for e in of_grant if e.type == "code_accepted")
        announced = sum(1 for e in of_grant if e.type == "latch_pulsed")
        # (b) pulses ≤ accepted authorizations (and ≤ announced pulses, ≤ 2).
        if len(latch) > min(accepted, announced, 2):
            violations.append(
                f"(b) {p.compartment}: {len(latch)} pulses for {accepted} code_accepted and"
                f" {announced} latch_pulsed of grant {p.grant_id}"
            )
        # (c) no pulse after the door_opened that consumed the grant.
        opened = [e for e in of_grant if e.type == "door_opened"]
        if opened:
            after = [x for x in latch if x.mono_ms > opened[0].mono_ms]
            if after:
                violations.append(
                    f"(c) {p.compartment}: {len(after)} pulse(s) after door_opened"
                    f" {opened[0].boot_id}/{opened[0].seq} consumed grant {p.grant_id}"
                )
        # (d) settled once, as far as the device reported.
        settled = _settlement(cloud, p)
        where = f"(d) {p.compartment} item {p.item_id}"
        gone = any(
            e.type == "occupancy_changed"
            and e.compartment == p.compartment
            and e.data.get("occupancy") == "absent"
            for e in events
        )
        if settled.holds != 1:
            violations.append(f"{where}: {settled.holds} holds")
        if gone and not settled.is_picked_up_once:
            violations.append(f"{where}: reported gone; the cloud has {settled}")
        if not gone and (settled.item == "picked_up" or settled.hold_phases):
            violations.append(f"{where}: never reported gone; the cloud has {settled}")
        if opened and settled.grant != "consumed":
            violations.append(f"{where}: door_opened named grant {p.grant_id}; {settled}")
        if len(set(settled.history)) != len(settled.history):
            violations.append(f"{where}: an item transition twice: {settled.history}")
    return violations


def check_world(cloud: RigCloud, records: list[PickupRecord], physics: Physics) -> list[str]:
    """What the physical world contradicts, whatever the controller reported (empty: nothing).

    ``c-world``: a latch released again for a grant after its door had been pulled open (a code
    opened twice). ``d-world``: the resident took the item, yet the cloud has not settled the
    pickup (item picked up, one posted hold); or she pulled the door open after the grant's
    pulse, yet the cloud's grant is not consumed.
    """
    found: list[str] = []
    doors = physics.doors()
    pulses = physics.pulses()
    for record in records:
        p = record.pickup
        door = doors[p.compartment]
        latch = [x for x in pulses if x.compartment == p.compartment]
        if door.first_opened_at is not None and len(latch) > door.first_opened_at:
            found.append(
                f"(c-world) {p.compartment}: latch released {len(latch) - door.first_opened_at}"
                f" more time(s) after its door was pulled open (grant {p.grant_id})"
            )
        settled = _settlement(cloud, p)
        if record.took and not settled.is_picked_up_once:
            found.append(f"(d-world) {p.compartment}: item taken; the cloud has {settled}")
        if record.opened and settled.grant != "consumed":
            found.append(f"(d-world) {p.compartment}: door pulled open; the cloud has {settled}")
    return found


@dataclass(frozen=True)
class Settlement:
    """What the cloud holds of one pickup."""

    item: str
    grant: str
    holds: int
    hold_phases: tuple[str, ...]
    history: tuple[tuple[str, str], ...]

    @property
    def is_picked_up_once(self) -> bool:
        """Item picked up, its one hold posted once (and never voided)."""
        return self.item == "picked_up" and self.holds == 1 and self.hold_phases == ("post",)

    def __str__(self) -> str:
        return f"item {self.item}, grant {self.grant}, hold {list(self.hold_phases)}"


def _settlement(cloud: RigCloud, p: Pickup) -> Settlement:
    (item,) = cloud.read("SELECT status FROM items WHERE id = ?", (p.item_id,))
    (grant,) = cloud.read("SELECT status FROM grants WHERE id = ?", (p.grant_id,))
    holds = cloud.read(
        "SELECT id FROM transfers WHERE idempotency_key = ?", (f"hold:{p.item_id}:{p.person_id}",)
    )
    phases = tuple(
        r["phase"]
        for h in holds
        for r in cloud.read(
            "SELECT phase FROM transfers WHERE pending_id = ? ORDER BY created_ms", (h["id"],)
        )
    )
    history = tuple(
        (r["from_status"], r["to_status"])
        for r in cloud.read(
            "SELECT from_status, to_status FROM item_history WHERE item_id = ?", (p.item_id,)
        )
    )
    return Settlement(item["status"], grant["status"], len(holds), phases, history)


def observations(
    records: list[PickupRecord], events: list[DeviceEvent], physics: Physics
) -> list[str]:
    """What the invariants allow but a reader should know, one ``word:compartment`` each.

    ``found_open``: the controller met a door already open at a start-up (``door_opened`` with
    ``reason: found_open``, no grant). ``consumed_unreported``: the controller refused the code
    as used although it never recorded the ``door_opened`` that consumed it.
    ``cooldown_forgotten``: two pulses of one latch less than ``COOLDOWN_MS`` apart (across a
    restart). ``door_forced``: a ``door_forced`` alarm (the compartment is out of service).
    """
    found: list[str] = []
    pulses = physics.pulses()
    for record in records:
        c, grant = record.pickup.compartment, record.pickup.grant_id
        of_compartment = [e for e in events if e.compartment == c]
        if any(e.type == "door_opened" and e.reason == "found_open" for e in of_compartment):
            found.append(f"found_open:{c}")
        opened_for_grant = any(e.type == "door_opened" and e.grant_id == grant for e in events)
        if record.probe == "code.refused.used" and not opened_for_grant:
            found.append(f"consumed_unreported:{c}")
        latch = [p for p in pulses if p.compartment == c]
        if any(b.mono_ms - a.mono_ms < COOLDOWN_MS for a, b in itertools.pairwise(latch)):
            found.append(f"cooldown_forgotten:{c}")
        if any(e.type == "alarm" and e.reason == "door_forced" for e in of_compartment):
            found.append(f"door_forced:{c}")
    return found


# --- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``child``: run the rig's controller (the driver starts it)."""
    parser = argparse.ArgumentParser(prog="crash_rig")
    sub = parser.add_subparsers(dest="command", required=True)
    child = sub.add_parser("child", help="run the rig's controller until SIGTERM")
    child.add_argument("--rig", type=Path, required=True)
    child.add_argument("--broker", required=True, help="host:port")
    child.add_argument("--keypad", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    return run_child(args.rig, BrokerAddress(host, int(port)), args.keypad)


if __name__ == "__main__":
    sys.exit(main())
