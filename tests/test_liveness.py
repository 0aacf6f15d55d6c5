"""The cloud's liveness watchdog: silence marks a device lost, its next word brings it back, and
heartbeats of a healthy device never write to the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RecordingPublisher

from cloud_api.devices.service import DeviceService
from cloud_api.keys import load_or_create_keys
from cloud_api.seed import seed_demo
from cloud_api.store import Store
from linli.clock import FakeClock
from linli.contract import Status, Telemetry, encode

BOOT = "0123456789ab"


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[DeviceService, Store, FakeClock]]:
    store = Store(tmp_path / "cloud.sqlite3")
    store.migrate()
    keys = load_or_create_keys(tmp_path / "secrets")
    clock = FakeClock()
    seed_demo(store, keys, clock.now().wall_ms)
    service = DeviceService(store, keys, RecordingPublisher(), clock)
    yield service, store, clock
    store.close()


def _status(store: Store, device_id: str = "locker-a") -> str:
    row = store.read_one("SELECT status FROM devices WHERE id = ?", (device_id,))
    assert row is not None
    return str(row["status"])


def _birth(service: DeviceService, keepalive_s: int = 2) -> None:
    status = Status(
        device_id="locker-a",
        state="online",
        role="locker",
        boot_id=BOOT,
        version="0.1.0",
        keepalive_s=keepalive_s,
    )
    service.handle("linli/v1/locker-a/status", encode(status))


def _heartbeat(service: DeviceService) -> None:
    tele = Telemetry(device_id="locker-a", boot_id=BOOT, uptime_s=1, outbox_depth=0)
    service.handle("linli/v1/locker-a/tele", encode(tele))


def test_silence_marks_lost_and_the_next_heartbeat_restores_online(
    watched: tuple[DeviceService, Store, FakeClock],
) -> None:
    service, store, clock = watched
    _birth(service, keepalive_s=2)
    assert _status(store) == "online"
    clock.advance(2_900)
    assert service.check_liveness() == []
    _heartbeat(service)
    clock.advance(2_900)
    assert service.check_liveness() == []  # the heartbeat reset the silence
    clock.advance(200)
    assert service.check_liveness() == ["locker-a"]
    assert _status(store) == "lost"
    assert service.check_liveness() == []  # reported once
    _heartbeat(service)  # it was only slow: heard again without a new birth
    assert _status(store) == "online"
    clock.advance(3_100)
    assert service.check_liveness() == ["locker-a"]  # and it is watched again


def test_heartbeats_of_a_healthy_device_do_not_write_to_the_store(
    watched: tuple[DeviceService, Store, FakeClock],
) -> None:
    service, store, clock = watched
    _birth(service)
    writes_before = store._db.total_changes
    for _ in range(20):
        clock.advance(500)
        _heartbeat(service)
        assert service.check_liveness() == []
    assert store._db.total_changes == writes_before
    assert service.telemetry["locker-a"]["uptime_s"] == 1


def test_a_clean_offline_is_not_watched(watched: tuple[DeviceService, Store, FakeClock]) -> None:
    service, store, clock = watched
    _birth(service)
    offline = Status(
        device_id="locker-a",
        state="offline",
        role="locker",
        boot_id=BOOT,
        version="0.1.0",
        keepalive_s=2,
    )
    service.handle("linli/v1/locker-a/status", encode(offline))
    clock.advance(60_000)
    assert service.check_liveness() == []
    assert _status(store) == "offline"
