"""``linli demo``: the whole station on one machine, with simulated hardware said out loud.

Starts a broker (a private Mosquitto child process when the binary is installed, else the embedded
amqtt on 127.0.0.1 with its limits stated), the cloud on a local port with seeded demo data, and
two locker controllers: locker-a on gpiozero's MockFactory, locker-b on the real RS485 adapter
talking to a Kerong board simulated byte for byte on a pseudo-terminal; both banks' doors and items
come from the same physics simulator; and the valuation terminal (terminal-1) with a simulated
scale on a pseudo-terminal and a simulated camera taking real photographs, its kiosk on 127.0.0.1.
With ``--scenario pickup`` it runs one pickup unattended, with ``--scenario valuation`` one item
given at the kiosk, dropped into a locker and approved; each exits 0 only if independent checks
confirm it (station/scenarios.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import valuation_terminal
from cloud_api.keys import load_or_create_keys
from cloud_api.seed import DemoSeed, seed_demo
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from linli.broker import BrokerAddress
from linli.clock import SystemClock
from station.broker import AmqttBroker, MosquittoBroker, free_port, start_embedded_broker
from station.capture import MqttCapture
from station.cloud_server import CloudServer
from station.locker import SimulatedLocker, start_simulated_locker
from valuation_terminal.daemon import TerminalConfig, TerminalDaemon

log = logging.getLogger(__name__)

SCENARIOS = ("pickup", "valuation")
"""What ``linli demo --scenario`` runs (station/scenarios.py); ``linli/cli.py`` lists the same."""

DEMO_BOARDS = {"locker-a": "gpio-4", "locker-b": "kerong-4"}
"""Which simulated hardware each demo bank runs on (station/locker.py)."""


@dataclass
class Station:
    """Everything the demo started, in start order (stopped in reverse)."""

    data_dir: Path
    broker: MosquittoBroker | AmqttBroker
    broker_address: BrokerAddress
    cloud: CloudServer
    seed: DemoSeed
    lockers: dict[str, SimulatedLocker] = field(default_factory=dict)
    capture: MqttCapture | None = None
    terminal: TerminalDaemon | None = None

    def stop(self) -> None:
        """Stop terminal, lockers, cloud, capture and broker."""
        if self.terminal is not None:
            self.terminal.stop()
        for locker in self.lockers.values():
            locker.stop()
        self.cloud.stop()
        if self.capture is not None:
            self.capture.stop()
        self.broker.stop()


def start_station(
    data_dir: Path,
    *,
    broker_kind: str = "auto",
    http_port: int = 0,
    keepalive_s: int = 10,
    capture: bool = False,
    boards: Mapping[str, str] = DEMO_BOARDS,
    terminal: bool = True,
) -> Station:
    """Start broker, cloud and simulated lockers; return once the lockers are online.

    ``boards`` says which simulated hardware each locker runs on (station/locker.py).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    broker = start_embedded_broker(data_dir / "broker", prefer=broker_kind)
    info = broker.info
    address = BrokerAddress(info.host, info.port)
    recorder = MqttCapture(info, "linli/v1/#").start() if capture else None

    cloud_dir = data_dir / "cloud"
    store = Store(cloud_dir / "cloud.sqlite3")
    store.migrate()
    seed = seed_demo(store, load_or_create_keys(cloud_dir / "secrets"), SystemClock().now().wall_ms)
    store.close()

    settings = CloudSettings(
        data_dir=cloud_dir,
        host="127.0.0.1",
        port=http_port or free_port(),
        broker_url=address.url,
        metrics_token=_metrics_token(cloud_dir / "secrets" / "metrics_token"),
        # The demo shows its notifications (log channel) at once, whatever the hour.
        quiet_start="00:00",
        quiet_end="00:00",
    )
    cloud = CloudServer(settings).start()
    station = Station(data_dir, broker, address, cloud, seed, capture=recorder)
    try:
        for device_id, identity in seed.identities.items():
            station.lockers[device_id] = start_simulated_locker(
                identity,
                data_dir / device_id,
                address,
                board_name=boards.get(device_id, "gpio-4"),
                items=seed.items_in_lockers.get(device_id, set()),
                keepalive_s=keepalive_s,
            )
        for locker in station.lockers.values():
            if not locker.daemon.link.wait_connected(15):
                raise RuntimeError(f"{locker.daemon.device_id} could not reach the broker")
        if terminal:
            station.terminal = start_terminal(station, data_dir / seed.terminal_id)
    except BaseException:
        station.stop()
        raise
    return station


def _metrics_token(path: Path) -> str:
    """The demo's ``/metrics`` token: made once, kept in a file only its owner can read (the
    demo prints where it is, never the token)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


SIM_PHOTOS = Path(valuation_terminal.__file__).resolve().parent / "sim_photos"
"""Real photographs (package data) the simulated camera takes, in turn."""


def start_terminal(station: Station, terminal_dir: Path) -> TerminalDaemon:
    """The valuation terminal with a simulated scale and camera, enrolled by the seed."""
    identity = station.seed.terminal_identity
    assert identity is not None
    terminal_dir.mkdir(parents=True, exist_ok=True)
    identity.save(terminal_dir / "identity.json")
    token_file = terminal_dir / "secrets" / "terminal_token"
    token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file.unlink(missing_ok=True)  # a new token at every seeding
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(station.seed.terminal_token)
    config = TerminalConfig(
        data_dir=terminal_dir,
        cloud_url=station.cloud.url,
        scale="sim",
        camera="sim",
        token_file=token_file,
        camera_options={"sources": str(SIM_PHOTOS)},
        kiosk_port=free_port(),
        broker_url=station.broker_address.url,
    )
    return TerminalDaemon(config, identity).start()


def describe(station: Station) -> str:
    """What the demo prints: where everything is, what is simulated, how to sign in."""
    kind = station.broker.info.kind
    broker_note = (
        "private Mosquitto child process"
        if kind == "mosquitto"
        else "embedded amqtt on 127.0.0.1 (Mosquitto not installed: retained messages may leak "
        "across clients, last will never fires on a dead connection)"
    )
    lines = [
        "Linli demo (邻里演示系统) is running.",
        f"  HTTP (cloud API):  {station.cloud.url}   (API docs: {station.cloud.url}/docs)",
        f"  Resident pages:    {station.cloud.url}/signin   (phone + PIN below; 中文 / English)",
        f"  Staff consoles:    {station.cloud.url}/staff/signin   (password + TOTP: a social"
        " worker lands on the approval queue, a maintainer on the devices and alerts)",
        f"  Metrics:           {station.cloud.url}/metrics   (Authorization: Bearer <the token in"
        f" {station.data_dir / 'cloud' / 'secrets' / 'metrics_token'}>)",
        *(
            [f"  Valuation kiosk:   {station.terminal.kiosk.url}   (a resident gives an item)"]
            if station.terminal is not None
            else []
        ),
        f"  MQTT broker:       {station.broker_address.url}   ({broker_note})",
        f"  Data directory:    {station.data_dir}",
        "  Simulated:         locker-a on GPIO (gpiozero MockFactory), locker-b on a Kerong KR-CU16",
        f"                     board on a pseudo-terminal ({station.data_dir / 'locker-b' / 'ttyRS485'});",
        "                     doors and items by the physics simulator;",
        "                     the valuation terminal's scale (pseudo-terminal) and camera (files)",
        "  Real:              broker, cloud HTTP app, SQLite store, TinyDB state, SQLite outboxes",
        "  Demo logins (POST /api/v1/session with login + secret; staff also totp, the 6-digit",
        "  code of an authenticator app holding the TOTP secret shown):",
    ]
    for login in station.seed.logins:
        lines.append(
            f"    {login.role:<14} {login.name:<34} login {login.login:<12} secret {login.secret}"
        )
        if login.totp_secret:
            lines.append(f"{'':<54} TOTP secret {login.totp_secret} (demo only)")
    lines += [
        "  Enter a code at a locker's keypad (local only):",
        f"    linli locker code --data-dir {station.data_dir / 'locker-a'}",
        "  Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


def run(data_dir: Path, scenario: str | None, broker_kind: str, http_port: int) -> int:
    """Entry point of ``linli demo``."""
    started = time.monotonic()
    if scenario is not None:
        # A scenario consumes its reservation: each run gets a fresh station of its own.
        data_dir = data_dir / "scenarios" / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}"
    station = start_station(
        data_dir, broker_kind=broker_kind, http_port=http_port, capture=scenario is not None
    )
    try:
        print(describe(station))
        print(f"  (started in {time.monotonic() - started:.1f} s)", flush=True)
        if scenario == "pickup":
            from station.scenarios import run_pickup

            return run_pickup(station)
        if scenario == "valuation":
            from station.scenarios import run_valuation

            return run_valuation(station)
        if scenario is not None:
            print(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
            return 2
        from station.keypad import serve_keypads

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with serve_keypads(station.lockers.values()):
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        station.stop()
