"""The controller's reporting horizon (``Telemetry.reported_through_ms``): every event it recorded
with a trusted wall time before the horizon is acknowledged by the cloud.

The cloud voids an expired pickup hold only once it knows the locker cannot still report a pickup
from before the expiry (decisions 0007, 0011); the horizon is what tells it. Checked on the
contract model, on the real SQLite outbox (including files written by older versions), and on
the real controller daemon over a private Mosquitto, with a fake clock so every expected time is
exact and the test plays the cloud: it signs the configuration (cloud time) and sends the acks.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from broker_fixtures import CaptureFactory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from hardware.gpio import board_by_name
from linli.broker import BrokerAddress
from linli.clock import FakeClock
from linli.contract import (
    Ack,
    CompartmentPolicy,
    ConfigBody,
    ContractError,
    Event,
    Telemetry,
    decode,
    encode,
    public_key_bytes,
    sign_body,
)
from linli.contract.models import Trust
from linli.identity import DeviceIdentity
from locker_controller.outbox import Outbox, PreviousBoot
from station.broker import BrokerInfo
from station.capture import MqttCapture
from station.locker import SimulatedLocker

DEVICE = "locker-horizon"
BOOT_A = "aaaaaaaaaaaa"
BOOT_B = "bbbbbbbbbbbb"
WALL = 1_800_000_000_000
KEY_ID = "cloud-test"
CLOUD_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CODE_KEY = b"device-code-key-for-the-tests-32"
TELE_EVERY_MS = 1_000
CLOUD_AHEAD_MS = 60_000
"""The cloud's signed time runs this far ahead of the device's raw wall clock, so a horizon taken
from the raw clock instead of the trusted time would show."""


def event_payload(seq: int, wall_ms: int, trust: Trust, boot_id: str = BOOT_A) -> bytes:
    return encode(
        Event(
            device_id=DEVICE,
            boot_id=boot_id,
            seq=seq,
            type="door_closed",
            mono_ms=seq,
            wall_ms=wall_ms,
            trust=trust,
            compartment="A1",
        )
    )


# --- the contract -------------------------------------------------------------------------------


def _tele(**fields: object) -> bytes:
    base: dict[str, object] = {
        "v": 1,
        "device_id": DEVICE,
        "boot_id": BOOT_A,
        "uptime_s": 5,
        "outbox_depth": 0,
    }
    return json.dumps(base | fields).encode()


def test_the_horizon_is_optional_and_round_trips() -> None:
    assert decode(Telemetry, _tele(), DEVICE).reported_through_ms is None  # an older device
    assert decode(Telemetry, _tele(reported_through_ms=None), DEVICE).reported_through_ms is None
    tele = decode(Telemetry, _tele(reported_through_ms=WALL), DEVICE)
    assert tele.reported_through_ms == WALL
    assert decode(Telemetry, encode(tele), DEVICE) == tele


@pytest.mark.parametrize("bad", [-1, 10**14 + 1, "1800000000000", 1.8e12, True])
def test_a_horizon_that_is_not_a_time_in_milliseconds_is_refused(bad: object) -> None:
    with pytest.raises(ContractError):
        decode(Telemetry, _tele(reported_through_ms=bad), DEVICE)


# --- the outbox ---------------------------------------------------------------------------------


def test_the_outbox_knows_its_oldest_unacknowledged_wall_time(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.begin_boot(BOOT_A)
    assert box.oldest_unacked_wall_ms() is None
    stamps: list[tuple[int, Trust]] = [(1, "synced"), (2, "holdover"), (3, "synced")]
    for seq, trust in stamps:
        box.append(BOOT_A, seq, event_payload(seq, WALL + seq, trust), WALL + seq, trust)
    assert box.oldest_unacked_wall_ms() == WALL + 1
    assert box.unacked_untrusted() == 0
    box.acknowledge(BOOT_A, 2)
    assert box.oldest_unacked_wall_ms() == WALL + 3
    box.acknowledge(BOOT_A, 3)
    assert box.oldest_unacked_wall_ms() is None
    box.acknowledge(BOOT_A, 1)  # the cloud lost 2 and 3 (a restore): pending again
    assert box.oldest_unacked_wall_ms() == WALL + 2
    box.close()


def test_events_stamped_untrusted_or_without_a_trust_are_counted_until_acknowledged(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.begin_boot(BOOT_A)
    box.append_all([(BOOT_A, 1, b"x", WALL), (BOOT_A, 2, b"y", WALL)], trust="untrusted")
    box.append(BOOT_A, 3, b"z", WALL + 3)  # no trust given: unknown
    box.append(BOOT_A, 4, b"w", WALL + 4, trust="synced")
    assert box.unacked_untrusted() == 3
    box.acknowledge(BOOT_A, 2)
    assert box.unacked_untrusted() == 1
    box.acknowledge(BOOT_A, 3)
    assert box.unacked_untrusted() == 0
    assert box.oldest_unacked_wall_ms() == WALL + 4
    box.close()


VERSION_2_SCHEMA = """
CREATE TABLE boots (boot_no INTEGER PRIMARY KEY AUTOINCREMENT, boot_id TEXT NOT NULL UNIQUE);
CREATE TABLE events (
    boot_id TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL, sent_mono_ms INTEGER,
    boot_no INTEGER NOT NULL DEFAULT 0, stored_wall_ms INTEGER NOT NULL DEFAULT 0,
    acked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (boot_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_pending ON events (acked, boot_no, seq);
PRAGMA user_version = 2;
"""


def test_an_outbox_of_version_2_opens_and_learns_its_pending_events_trust(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(VERSION_2_SCHEMA)
    db.execute("INSERT INTO boots (boot_id) VALUES (?)", (BOOT_B,))
    db.executemany(
        "INSERT INTO events (boot_id, seq, payload, boot_no, stored_wall_ms, acked)"
        " VALUES (?, ?, ?, 1, ?, ?)",
        [
            (BOOT_B, 1, event_payload(1, WALL + 1, "untrusted", BOOT_B), WALL + 1, 1),
            (BOOT_B, 2, event_payload(2, WALL + 2, "synced", BOOT_B), WALL + 2, 0),
            (BOOT_B, 3, event_payload(3, WALL + 3, "holdover", BOOT_B), WALL + 3, 0),
        ],
    )
    db.commit()
    db.close()

    box = Outbox(path)
    assert box.begin_boot(BOOT_A) == PreviousBoot(BOOT_B, 3)
    assert box.depth() == 2 and box.archived() == 1
    assert box.oldest_unacked_wall_ms() == WALL + 2
    assert box.unacked_untrusted() == 0  # read from the stored events themselves
    box.append(BOOT_A, 1, event_payload(1, WALL + 9, "untrusted"), WALL + 9, "untrusted")
    assert box.unacked_untrusted() == 1
    box.close()
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == 3


def test_an_outbox_of_version_1_opens_and_learns_wall_times_from_its_events(
    tmp_path: Path,
) -> None:
    """Version 1 stored no wall time: the pending events' own ``wall_ms`` is read back, and an
    event whose payload cannot be read keeps an unknown trust (no horizon until it is acked)."""
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE events (boot_id TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,"
        " sent_mono_ms INTEGER, PRIMARY KEY (boot_id, seq)) WITHOUT ROWID"
    )
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?)",
        [
            (BOOT_B, 1, b"not an event", None),
            (BOOT_B, 2, event_payload(2, WALL + 5, "synced", BOOT_B), None),
            (BOOT_B, 3, event_payload(3, WALL + 7, "holdover", BOOT_B), 7),
        ],
    )
    db.commit()
    db.close()

    box = Outbox(path)
    assert box.begin_boot(BOOT_A) == PreviousBoot(BOOT_B, 3)
    assert box.depth() == 3
    assert box.unacked_untrusted() == 1  # the unreadable one: its trust is unknown
    box.acknowledge(BOOT_B, 1)
    assert box.unacked_untrusted() == 0
    assert box.oldest_unacked_wall_ms() == WALL + 5  # read from event 2 at the upgrade
    box.acknowledge(BOOT_B, 3)
    box.append(BOOT_A, 1, b"new", WALL + 20, "synced")
    assert box.oldest_unacked_wall_ms() == WALL + 20
    box.acknowledge(BOOT_B, 2)  # a restored cloud: 3 is pending again
    assert box.oldest_unacked_wall_ms() == WALL + 7
    assert box.unacked_untrusted() == 0
    box.close()


# --- the real daemon ----------------------------------------------------------------------------


class Cloud:
    """The test as the cloud: signs configuration with its time, acknowledges events."""

    def __init__(self, broker: BrokerInfo) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-cloud")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, name: str, payload: bytes) -> None:
        self.client.publish(f"linli/v1/{DEVICE}/{name}", payload, qos=1).wait_for_publish(5)

    def configure(self, issued_at_ms: int) -> None:
        names = board_by_name("gpio-4").compartment_names()
        body = ConfigBody(
            device_id=DEVICE,
            version=1,
            issued_at_ms=issued_at_ms,
            compartments={n: CompartmentPolicy(size="M", pulse_ms=100) for n in names},
            grants=[],
        )
        self.send("cfg/desired", sign_body(CLOUD_KEY, KEY_ID, body))

    def ack(self, boot_id: str, seq: int) -> None:
        self.send("ack", encode(Ack(device_id=DEVICE, boot_id=boot_id, seq=seq)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.01)


def next_telemetry(capture: MqttCapture, clock: FakeClock) -> Telemetry:
    """Let one telemetry period pass on the daemon's clock; return what it sends."""
    capture.clear()
    clock.advance(TELE_EVERY_MS)
    message = capture.wait_for(f"linli/v1/{DEVICE}/tele", description="telemetry")
    return decode(Telemetry, message.payload, DEVICE)


def recorded_event(capture: MqttCapture, type_: str) -> Event:
    message = capture.wait_for(
        lambda m: m.topic.endswith("/evt") and json.loads(m.payload)["type"] == type_,
        description=f"a {type_} event",
    )
    return decode(Event, message.payload, DEVICE)


def test_the_daemon_reports_how_far_the_cloud_holds_its_events(
    mosquitto: BrokerInfo,
    mqtt_capture: CaptureFactory,
    simulated_locker: Callable[..., SimulatedLocker],
    fake_clock: FakeClock,
) -> None:
    capture = mqtt_capture(mosquitto, f"linli/v1/{DEVICE}/#")
    cloud = Cloud(mosquitto)
    identity = DeviceIdentity(DEVICE, {KEY_ID: public_key_bytes(CLOUD_KEY)}, CODE_KEY)
    locker = simulated_locker(
        identity,
        BrokerAddress(mosquitto.host, mosquitto.port),
        clock=fake_clock,
        telemetry_every_ms=TELE_EVERY_MS,
    )
    daemon = locker.daemon
    try:
        booted = recorded_event(capture, "booted")
        assert booted.trust == "untrusted"  # no signed time yet this boot

        # An untrusted clock vouches for nothing.
        tele = next_telemetry(capture, fake_clock)
        assert (tele.clock_trust, tele.outbox_depth, tele.reported_through_ms) == (
            "untrusted",
            1,
            None,
        )

        # Signed cloud time makes the clock trusted, but the booted event, stamped while it was
        # not, still awaits its ack: its wall time could be anywhere.
        learned_at_mono = fake_clock.now().mono_ms
        cloud_ms = fake_clock.now().wall_ms + CLOUD_AHEAD_MS
        cloud.configure(issued_at_ms=cloud_ms)
        wait(lambda: daemon.state.cfg_version == 1, "the signed configuration applied")

        def trusted_now() -> int:
            return cloud_ms + fake_clock.now().mono_ms - learned_at_mono

        tele = next_telemetry(capture, fake_clock)
        assert (tele.clock_trust, tele.outbox_depth, tele.reported_through_ms) == (
            "synced",
            1,
            None,
        )

        # Acknowledged: nothing is waiting, the horizon is the trusted time now.
        cloud.ack(booted.boot_id, booted.seq)
        wait(lambda: daemon.outbox_depth() == 0, "the booted event acknowledged")
        tele = next_telemetry(capture, fake_clock)
        assert tele.outbox_depth == 0
        assert tele.reported_through_ms == trusted_now()
        assert tele.reported_through_ms != fake_clock.now().wall_ms  # trusted, not raw

        # An event the cloud has not acknowledged holds the horizon at its wall time...
        capture.clear()
        assert daemon.submit_code("12345678", channel="keypad") is not None
        refused = recorded_event(capture, "code_refused")
        assert (refused.wall_ms, refused.trust) == (trusted_now(), "synced")
        for _ in range(2):  # ...however long the cloud takes
            tele = next_telemetry(capture, fake_clock)
            assert tele.outbox_depth == 1
            assert tele.reported_through_ms == refused.wall_ms < trusted_now()

        # ...until it is acknowledged.
        cloud.ack(refused.boot_id, refused.seq)
        wait(lambda: daemon.outbox_depth() == 0, "the refused code acknowledged")
        tele = next_telemetry(capture, fake_clock)
        assert tele.reported_through_ms == trusted_now()
    finally:
        cloud.close()
