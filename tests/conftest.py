"""Shared fixtures: brokers and capture (broker_fixtures), a fake clock, cloud keys, a cloud on a
temporary data directory, simulated controllers, and a running station.

Everything here is real: a private Mosquitto (or amqtt), the real HTTP app under uvicorn on a
free port, real SQLite and TinyDB files, gpiozero's MockFactory with the physics simulator.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloud_api.keys import CloudKeys, load_or_create_keys
from cloud_api.seed import DemoSeed, seed_demo
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from linli.broker import BrokerAddress
from linli.clock import FakeClock, SystemClock
from linli.identity import DeviceIdentity
from station.broker import BrokerInfo, MosquittoBroker, free_port, mosquitto_binary
from station.cloud_server import CloudServer
from station.locker import SimulatedLocker, start_simulated_locker

pytest_plugins = ["broker_fixtures", "browser_fixtures", "canary_plugin"]


def require_system(what: str) -> None:
    """Skip for a missing system binary, or fail when LINLI_REQUIRE_SYSTEM=1 (CI)."""
    if os.environ.get("LINLI_REQUIRE_SYSTEM") == "1":
        pytest.fail(f"{what}; LINLI_REQUIRE_SYSTEM=1 forbids skipping")
    pytest.skip(what)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when told to."""
    return FakeClock(wall_ms=1_800_000_000_000, mono_ms=1_000)


@pytest.fixture
def cloud_keys(tmp_path: Path) -> CloudKeys:
    """Fresh cloud keys in a temporary secrets directory."""
    return load_or_create_keys(tmp_path / "secrets")


class CloudUnderTest:
    """A seeded cloud serving HTTP on a free port, connected to a broker."""

    def __init__(self, data_dir: Path, broker: BrokerInfo, **overrides: object) -> None:
        self.data_dir = data_dir
        self.broker = BrokerAddress(broker.host, broker.port)
        store = Store(data_dir / "cloud.sqlite3")
        store.migrate()
        self.keys = load_or_create_keys(data_dir / "secrets")
        self.seed: DemoSeed = seed_demo(store, self.keys, SystemClock().now().wall_ms)
        store.close()
        # No quiet hours: a notification is delivered at once, whatever the hour the suite runs,
        # so no test sees it delivered later in the middle of a "nothing changed" check.
        overrides = {"quiet_start": "00:00", "quiet_end": "00:00", **overrides}
        settings = CloudSettings(
            data_dir=data_dir,
            host="127.0.0.1",
            port=free_port(),
            broker_url=self.broker.url,
            **overrides,  # type: ignore[arg-type]
        )
        self.server = CloudServer(settings).start()
        self.url = self.server.url
        self.wait_for_notifications()

    def wait_for_notifications(self, timeout_s: float = 15.0) -> None:
        """Until the notification thread has handled every message due (the seed queues one),
        and recorded its run: the store is then quiet until the next request."""
        deadline = time.monotonic() + timeout_s

        def busy() -> bool:
            due = self.store.read_one(
                "SELECT 1 FROM notifications WHERE status = 'queued' AND next_attempt_ms <= ?",
                (SystemClock().now().wall_ms,),
            )
            handled = self.store.read_one(
                "SELECT COUNT(*) FROM notifications WHERE status != 'queued'"
            )
            recorded = self.store.read_one("SELECT 1 FROM job_runs WHERE name = 'notify_deliver'")
            return due is not None or (handled[0] > 0 and recorded is None)  # type: ignore[index]

        while busy():
            assert time.monotonic() < deadline, "the notification thread did not deliver"
            time.sleep(0.02)

    @property
    def store(self) -> Store:
        """The running app's store."""
        store: Store = self.server.app.state.services.store
        return store

    def identity(self, device_id: str) -> DeviceIdentity:
        """The identity enrolment gave a device."""
        return self.seed.identities[device_id]

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()


@contextmanager
def module_cloud(
    tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: object
) -> Iterator[CloudUnderTest]:
    """A seeded cloud on its own Mosquitto, for a module's tests to share (``overrides`` are
    settings); skips without Mosquitto, or fails with LINLI_REQUIRE_SYSTEM=1."""
    if mosquitto_binary() is None:
        require_system("mosquitto binary not installed (apt-get install mosquitto)")
    root = tmp_path_factory.mktemp(name)
    with MosquittoBroker(root / "mosquitto") as broker:
        running = CloudUnderTest(root / "cloud", broker.info, **overrides)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def cloud(tmp_path: Path, mosquitto: BrokerInfo) -> Iterator[CloudUnderTest]:
    """A seeded cloud on a temporary data dir, on a private Mosquitto."""
    running = CloudUnderTest(tmp_path / "cloud", mosquitto)
    yield running
    running.stop()


@pytest.fixture
def make_cloud(tmp_path: Path, mosquitto: BrokerInfo) -> Iterator[Callable[..., CloudUnderTest]]:
    """A factory of seeded clouds with settings overrides (``make_cloud(staleness_s=5)``), one
    at a time per broker: two clouds on one broker take each other's MQTT session."""
    started: list[CloudUnderTest] = []

    def make(**overrides: object) -> CloudUnderTest:
        running = CloudUnderTest(tmp_path / f"cloud-{len(started)}", mosquitto, **overrides)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


class RecordingPublisher:
    """The cloud's publisher port (DeviceService's ``Publisher``), recording instead of sending."""

    is_connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []

    def publish(self, device_id: str, name: str, payload: bytes) -> None:
        self.sent.append((device_id, name, payload))


LockerFactory = Callable[..., SimulatedLocker]


@pytest.fixture
def simulated_locker(tmp_path: Path) -> Iterator[LockerFactory]:
    """A factory of simulated controllers: ``simulated_locker(identity, broker_address, ...)``."""
    started: list[SimulatedLocker] = []

    def make(identity: DeviceIdentity, broker: BrokerAddress, **kwargs: object) -> SimulatedLocker:
        data_dir = kwargs.pop("data_dir", None) or tmp_path / f"{identity.device_id}-{len(started)}"
        locker = start_simulated_locker(identity, data_dir, broker, **kwargs)  # type: ignore[arg-type]
        started.append(locker)
        return locker

    yield make
    for locker in started:
        locker.stop()
