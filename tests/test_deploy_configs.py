"""Tests of the deployment files in deploy/.

The ACL tests run the real Mosquitto broker with the production ACL file
(deploy/mosquitto/linli.acl) and the production configuration minus TLS, paths and
persistence, and check with paho-mqtt clients what a device can and cannot do.
Negative cases avoid sleeping: after the forbidden message, a permitted sentinel is
sent on the same connection; once the sentinel arrives, the forbidden message would
already have arrived had the broker let it through.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import pwd
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from linli.cli import build_parser

paho_client = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
CONF = DEPLOY / "mosquitto" / "linli.conf"
ACL = DEPLOY / "mosquitto" / "linli.acl"
UNITS = {
    "cloud": DEPLOY / "systemd" / "linli-cloud.service",
    "locker": DEPLOY / "systemd" / "linli-locker.service",
    "terminal": DEPLOY / "systemd" / "linli-terminal.service",
}
USERS = ("cloud", "locker-a", "locker-b")
TIMEOUT_S = 5.0

# Options of linli.conf that the test broker replaces: TLS, fixed paths, persistence.
REPLACED_OPTIONS = frozenset(
    {
        "listener",
        "protocol",
        "cafile",
        "certfile",
        "keyfile",
        "tls_version",
        "require_certificate",
        "password_file",
        "acl_file",
        "persistence",
        "persistence_location",
        "persistence_file",
        "autosave_interval",
        "log_dest",
        "log_type",
        "log_timestamp_format",
        "user",
    }
)


def _required() -> bool:
    return os.environ.get("LINLI_REQUIRE_SYSTEM") == "1"


def _missing(what: str) -> None:
    reason = f"{what} not installed (apt install mosquitto)"
    if _required():
        pytest.fail(f"LINLI_REQUIRE_SYSTEM=1 but {reason}")
    pytest.skip(reason)


def _which(name: str) -> str | None:
    """Find a system binary on PATH or in the sbin directories PATH often lacks."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/sbin")


def _conf_options(path: Path) -> list[tuple[str, str]]:
    """Return (option, value) pairs of a Mosquitto config, comments dropped."""
    pairs = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        pairs.append((key, value.strip()))
    return pairs


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mosquitto exited with {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    pytest.fail(f"mosquitto did not listen on {port}: {log.read_text()}")


@dataclass(frozen=True)
class Broker:
    port: int
    pid: int
    log: Path


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    binary = _which("mosquitto")
    if binary is None:
        _missing("mosquitto")
    passwd_tool = _which("mosquitto_passwd")
    if passwd_tool is None:
        _missing("mosquitto_passwd")
    assert binary is not None and passwd_tool is not None

    workdir = tmp_path_factory.mktemp("mosquitto")
    password_file = workdir / "linli.passwd"
    password_file.touch()
    for user in USERS:
        subprocess.run(
            [passwd_tool, "-b", str(password_file), user, f"pw-{user}"],
            check=True,
            capture_output=True,
            timeout=TIMEOUT_S,
        )
    acl_file = workdir / "linli.acl"
    shutil.copyfile(ACL, acl_file)
    log = workdir / "mosquitto.log"
    port = _free_port()
    # Run as whoever runs the tests: as root, Mosquitto would otherwise drop to the
    # `mosquitto` user, which cannot read pytest's private tmp directory.
    current_user = pwd.getpwuid(os.getuid()).pw_name
    kept = [f"{k} {v}" for k, v in _conf_options(CONF) if k not in REPLACED_OPTIONS]
    config = workdir / "test.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                *kept,
                f"password_file {password_file}",
                f"acl_file {acl_file}",
                "persistence false",
                f"user {current_user}",
                f"log_dest file {log}",
                "log_type all",
                "",
            ]
        ),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [binary, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc, log)
        yield Broker(port=port, pid=proc.pid, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=TIMEOUT_S)


class Client:
    """A paho client (MQTT 3.1.1, callback API v2) that queues what it receives."""

    def __init__(self, port: int, username: str, password: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connected = threading.Event()
        self._connect_rc: object = None
        self._subacks: dict[int, list[int]] = {}
        self._subscribed = threading.Condition()
        self.mqtt = paho_client.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{username}-test",
            protocol=paho_client.MQTTv311,
        )
        self.mqtt.username_pw_set(username, f"pw-{username}" if password is None else password)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.connect("127.0.0.1", port, keepalive=10)
        self.mqtt.loop_start()

    def _on_connect(self, _c, _u, _flags, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        self._connect_rc = reason_code
        self._connected.set()

    def _on_message(self, _c, _u, msg) -> None:  # type: ignore[no-untyped-def]
        self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, _c, _u, mid, reason_codes, _props) -> None:  # type: ignore[no-untyped-def]
        with self._subscribed:
            self._subacks[mid] = [int(getattr(rc, "value", rc)) for rc in reason_codes]
            self._subscribed.notify_all()

    def connack(self) -> object:
        assert self._connected.wait(TIMEOUT_S), "no CONNACK"
        return self._connect_rc

    def wait_connected(self) -> Client:
        rc = self.connack()
        assert not rc.is_failure, f"connection refused: {rc}"  # type: ignore[attr-defined]
        return self

    def subscribe(self, *topics: str) -> list[int]:
        """Subscribe at QoS 1 and return the SUBACK's granted QoS / failure codes."""
        result, mid = self.mqtt.subscribe([(t, 1) for t in topics])
        assert result == paho_client.MQTT_ERR_SUCCESS
        with self._subscribed:
            assert self._subscribed.wait_for(lambda: mid in self._subacks, TIMEOUT_S)
            return self._subacks[mid]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK (which is not delivery)."""
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()

    def receive_until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including (topic, payload)."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self.messages.get(timeout=remaining)
            except queue.Empty:
                break
            seen.append(item)
            if item == (topic, payload):
                return seen
        pytest.fail(f"{topic!r} {payload!r} never arrived; got {seen}")

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients(broker: Broker) -> Iterator[dict[str, Client]]:
    made = {user: Client(broker.port, user) for user in USERS}
    try:
        for client in made.values():
            client.wait_connected()
        yield made
    finally:
        for client in made.values():
            client.close()


# --- The broker under test ----------------------------------------------------------


@pytest.mark.mosquitto
def test_broker_runs_as_the_current_user_and_loaded_the_acl(broker: Broker) -> None:
    status = Path(f"/proc/{broker.pid}/status")
    if status.exists():
        uid_line = next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:"))
        assert int(uid_line.split()[1]) == os.getuid()
    assert "Error" not in broker.log.read_text()


@pytest.mark.mosquitto
def test_wrong_password_is_refused(broker: Broker) -> None:
    intruder = Client(broker.port, "locker-a", password="guess")
    try:
        assert intruder.connack().is_failure  # type: ignore[attr-defined]
    finally:
        intruder.close()


@pytest.mark.mosquitto
def test_unknown_user_is_refused(broker: Broker) -> None:
    stranger = Client(broker.port, "locker-z")
    try:
        assert stranger.connack().is_failure  # type: ignore[attr-defined]
    finally:
        stranger.close()


# --- What a device may do -------------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.parametrize("leaf", ["status", "state", "evt", "tele", "res", "cfg/reported"])
def test_device_publishes_on_its_own_topics_and_the_cloud_receives(
    clients: dict[str, Client], leaf: str
) -> None:
    cloud, locker_a = clients["cloud"], clients["locker-a"]
    cloud.subscribe("linli/v1/#")
    topic = f"linli/v1/locker-a/{leaf}"
    locker_a.publish(topic, b"from-a")
    assert cloud.receive_until(topic, b"from-a") == [(topic, b"from-a")]


@pytest.mark.mosquitto
@pytest.mark.parametrize("leaf", ["cmd", "ack", "cfg/desired"])
def test_device_receives_its_own_commands_acks_and_configuration(
    clients: dict[str, Client], leaf: str
) -> None:
    cloud, locker_a = clients["cloud"], clients["locker-a"]
    topic = f"linli/v1/locker-a/{leaf}"
    locker_a.subscribe(topic)
    cloud.publish(topic, b"to-a")
    assert locker_a.receive_until(topic, b"to-a") == [(topic, b"to-a")]


@pytest.mark.mosquitto
def test_broker_carries_the_largest_payload_the_contract_allows(clients: dict[str, Client]) -> None:
    from linli.contract.topics import MAX_PAYLOAD_BYTES

    cloud, locker_a = clients["cloud"], clients["locker-a"]
    topic = "linli/v1/locker-a/cfg/desired"
    locker_a.subscribe(topic)
    largest = b"x" * MAX_PAYLOAD_BYTES
    cloud.publish(topic, b"y" * (MAX_PAYLOAD_BYTES + 1))  # dropped by message_size_limit
    cloud.publish(topic, largest)
    assert locker_a.receive_until(topic, largest) == [(topic, largest)]


# --- What a device must not do ------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.parametrize("leaf", ["evt", "status", "state", "res", "cfg/reported"])
def test_device_cannot_speak_for_another_device(clients: dict[str, Client], leaf: str) -> None:
    cloud, locker_a = clients["cloud"], clients["locker-a"]
    cloud.subscribe("linli/v1/#")
    # Under MQTT 3.1.1 the broker PUBACKs the denied publish with success, then drops it.
    locker_a.publish(f"linli/v1/locker-b/{leaf}", b"spoofed")
    locker_a.publish("linli/v1/locker-a/evt", b"sentinel")
    got = cloud.receive_until("linli/v1/locker-a/evt", b"sentinel")
    assert got == [("linli/v1/locker-a/evt", b"sentinel")]


@pytest.mark.mosquitto
@pytest.mark.parametrize("leaf", ["cmd", "ack", "cfg/desired"])
def test_device_cannot_write_the_clouds_topics_even_its_own(
    clients: dict[str, Client], leaf: str
) -> None:
    cloud, locker_a = clients["cloud"], clients["locker-a"]
    cloud.subscribe("linli/v1/#")
    locker_a.publish(f"linli/v1/locker-a/{leaf}", b"forged")
    locker_a.publish("linli/v1/locker-a/evt", b"sentinel")
    got = cloud.receive_until("linli/v1/locker-a/evt", b"sentinel")
    assert got == [("linli/v1/locker-a/evt", b"sentinel")]


@pytest.mark.mosquitto
@pytest.mark.parametrize("leaf", ["cmd", "ack", "cfg/desired"])
def test_device_cannot_receive_another_devices_messages(
    clients: dict[str, Client], leaf: str
) -> None:
    cloud, locker_a, locker_b = clients["cloud"], clients["locker-a"], clients["locker-b"]
    foreign = f"linli/v1/locker-b/{leaf}"
    # Mosquitto 2.0 grants the SUBACK and filters on delivery instead.
    locker_a.subscribe(foreign, "linli/v1/+/" + leaf, "linli/v1/#")
    locker_b.subscribe(foreign)
    cloud.publish(foreign, b"for-b")
    cloud.publish("linli/v1/locker-a/cmd", b"sentinel")
    assert locker_b.receive_until(foreign, b"for-b") == [(foreign, b"for-b")]
    got = locker_a.receive_until("linli/v1/locker-a/cmd", b"sentinel")
    assert [topic for topic, _ in got if topic.startswith("linli/v1/locker-b/")] == []


@pytest.mark.mosquitto
def test_device_cannot_read_other_devices_events_or_retained_state(
    clients: dict[str, Client],
) -> None:
    cloud, locker_a, locker_b = clients["cloud"], clients["locker-a"], clients["locker-b"]
    locker_b.publish("linli/v1/locker-b/state", b"b-state", retain=True)
    try:
        locker_a.subscribe(
            "linli/v1/locker-b/#", "linli/v1/+/state", "linli/v1/+/evt", "linli/v1/locker-a/cmd"
        )
        locker_b.publish("linli/v1/locker-b/evt", b"b-event")
        cloud.publish("linli/v1/locker-a/cmd", b"sentinel")
        got = locker_a.receive_until("linli/v1/locker-a/cmd", b"sentinel")
        assert got == [("linli/v1/locker-a/cmd", b"sentinel")]
    finally:
        # Clear the retained message so later tests start clean.
        locker_b.publish("linli/v1/locker-b/state", b"", retain=True)


# --- Static checks of the production files ------------------------------------------


def test_production_broker_config_is_locked_down() -> None:
    options = _conf_options(CONF)
    keys = dict(options)
    assert keys["listener"] == "8883"
    assert keys["allow_anonymous"] == "false"
    assert keys["password_file"] == "/etc/mosquitto/linli.passwd"
    assert keys["acl_file"] == "/etc/mosquitto/linli.acl"
    assert keys["tls_version"] == "tlsv1.2"
    for option in ("cafile", "certfile", "keyfile"):
        assert keys[option].startswith("/etc/mosquitto/certs/")
    assert keys["persistence"] == "true"
    assert keys["persistence_location"]
    assert int(keys["max_queued_messages"]) > 0
    assert int(keys["max_inflight_messages"]) > 0


def test_acl_has_no_rule_for_anonymous_clients() -> None:
    first_user_seen = False
    for key, _value in _conf_options(ACL):
        if key == "user":
            first_user_seen = True
        if key == "topic":
            assert first_user_seen, "a topic line before any `user` applies to anonymous clients"
        assert key in {"user", "topic", "pattern"}


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    with path.open(encoding="utf-8") as fh:
        parser.read_file(fh)
    return parser


@pytest.mark.parametrize("role", sorted(UNITS))
def test_systemd_unit_parses_and_starts_linli(role: str) -> None:
    unit = _unit(UNITS[role])
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    argv = service["ExecStart"].split()
    assert Path(argv[0]).name == "linli"
    assert argv[1] == role
    args = build_parser().parse_args(argv[1:])  # a command linli runs, not its usage line
    if role == "locker":
        assert args.action == "run"
    assert service["User"] == "linli"
    assert service["Restart"] == "always"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "linli"
    assert "LINLI_DATA_DIR=/var/lib/linli" in service["Environment"]
    assert "/var/lib/linli" in service["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_locker_unit_can_reach_gpio_and_serial_and_stops_gracefully() -> None:
    service = _unit(UNITS["locker"])["Service"]
    groups = service["SupplementaryGroups"].split()
    assert {"gpio", "dialout"} <= set(groups)
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"].rstrip("s")) > 0
    # lgpio creates its notification pipes in the working directory.
    assert service["WorkingDirectory"] == "/var/lib/linli"
