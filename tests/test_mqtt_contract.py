"""The contract over a real broker: bad input changes nothing, commands pulse exactly once,
refusals come back on ``res`` with a reason, and a frozen controller shows ``lost``.

These run on a private Mosquitto with the real cloud (uvicorn, SQLite) and real controller
daemons on gpiozero's MockFactory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from contract_examples import valid_payload
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from linli.contract import TOPICS, CommandBody, sign_body
from station.broker import MOSQUITTO_KEEPALIVE_CHECK_S, BrokerInfo
from station.capture import retained_snapshot


class Publisher:
    """A privileged test client (as an attacker who got past the ACL would be)."""

    def __init__(self, info: BrokerInfo) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-attacker")
        self.client.connect(info.host, info.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos, retain=False).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _bad_payloads(name: str, cloud, now_ms: int) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The registry's bad-input cases for one topic of locker-a."""
    good = json.loads(valid_payload(name, "locker-a", cloud.keys, now_ms))
    wrong_version = dict(good, v=2)
    missing = dict(good)
    missing.pop(next(k for k in good if k not in ("v",)))
    other_device = valid_payload(name, "locker-b", cloud.keys, now_ms)
    return {
        "empty": b"",
        "non_json": b"\xff not json {",
        "wrong_version": json.dumps(wrong_version).encode(),
        "missing_field": json.dumps(missing).encode(),
        "one_megabyte": b'{"v":1,"pad":"' + b"x" * (1024 * 1024) + b'"}',
        "other_device": other_device,
    }


def _settled_locker(cloud, simulated_locker, mqtt_capture, mosquitto):  # type: ignore[no-untyped-def]
    locker = simulated_locker(cloud.identity("locker-a"), cloud.broker, items={"A2", "A3"})
    capture = mqtt_capture(mosquitto, "linli/v1/#")
    capture.wait_for(
        lambda m: (
            m.topic == "linli/v1/locker-a/cfg/reported"
            and json.loads(m.payload)["status"] == "applied"
        ),
        timeout_s=15,
        description="locker-a applying its configuration",
    )
    capture.wait_quiet(quiet_s=1.0, timeout_s=15)
    return locker, capture


def test_every_topic_refuses_bad_input_and_nothing_changes(
    cloud, simulated_locker, mqtt_capture, mosquitto: BrokerInfo
) -> None:  # type: ignore[no-untyped-def]
    locker, capture = _settled_locker(cloud, simulated_locker, mqtt_capture, mosquitto)
    store_before = cloud.store.dump()
    retained_before = retained_snapshot(mosquitto, "linli/v1/#")
    refused_before = sum(cloud.server.app.state.services.devices.refused.values())
    controller_before = locker.daemon.state
    attacker = Publisher(mosquitto)
    sent: set[bytes] = set()
    try:
        now_ms = int(time.time() * 1000)
        for spec in TOPICS:
            for _case, payload in _bad_payloads(spec.name, cloud, now_ms).items():
                attacker.send(f"linli/v1/locker-a/{spec.name}", payload)
                sent.add(spec.name.encode() + b"|" + payload)
        capture.wait_quiet(quiet_s=1.0, timeout_s=20)
    finally:
        attacker.close()
    assert len(sent) == 6 * len(TOPICS)
    assert cloud.store.dump() == store_before
    assert retained_snapshot(mosquitto, "linli/v1/#") == retained_before
    # Refused, not silently swallowed: the cloud counted every device->cloud payload...
    device_to_cloud = sum(1 for s in TOPICS if s.direction == "device_to_cloud")
    refused = sum(cloud.server.app.state.services.devices.refused.values()) - refused_before
    results = [
        json.loads(m.payload)
        for m in capture.messages("linli/v1/locker-a/res")
        if b"res|" + m.payload not in sent  # the controller's replies, not the attacker's payloads
    ]
    # An empty status clears retained state and is ignored; the controller's own replies to the
    # refused commands name commands the cloud never issued, and are refused in turn.
    assert refused == 6 * device_to_cloud - 1 + len(results)
    # ...and the controller counted every cloud->device one and moved no latch.
    assert locker.sim.pulses("A2") == 0 and locker.sim.pulses("A3") == 0
    after = locker.daemon.state
    assert after.refused_inputs - controller_before.refused_inputs >= 5 * 2  # cmd and cfg cases
    assert after.cfg_version == controller_before.cfg_version
    assert after.window == controller_before.window
    # Every refused command was answered on res with a reason.
    assert len(results) == 6 and all(r["ok"] is False and r["reason"] for r in results)


def _command(
    cloud, seq: int, *, device_id: str = "locker-a", expires_in_ms: int = 60_000, key=None
):  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    body = CommandBody(
        device_id=device_id,
        id=f"cmd_test_{seq}_{device_id}_{expires_in_ms}",
        seq=seq,
        name="open",
        compartment="A1",
        issued_at_ms=now,
        expires_at_ms=now + expires_in_ms,
    )
    signing = key or cloud.keys.signing_key
    return body.id, sign_body(signing, cloud.keys.key_id, body)


def test_commands_pulse_once_and_refusals_come_back_on_res(
    cloud, simulated_locker, mqtt_capture, mosquitto: BrokerInfo, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    locker, capture = _settled_locker(cloud, simulated_locker, mqtt_capture, mosquitto)
    attacker = Publisher(mosquitto)

    def result(cmd_id: str) -> dict[str, object]:
        message = capture.wait_for(
            lambda m: (
                m.topic == "linli/v1/locker-a/res" and json.loads(m.payload)["cmd_id"] == cmd_id
            ),
            timeout_s=10,
            description=f"the result of {cmd_id}",
        )
        return json.loads(message.payload)

    try:
        forged_id, forged = _command(cloud, 1, key=Ed25519PrivateKey.generate())
        expired_id, expired = _command(cloud, 2, expires_in_ms=-1_000)
        other_id, other = _command(cloud, 3, device_id="locker-b")
        valid_id, valid = _command(cloud, 4)
        for payload in (forged, expired, other, valid, valid, valid):
            attacker.send("linli/v1/locker-a/cmd", payload)
        assert result(forged_id) == {
            "v": 1,
            "device_id": "locker-a",
            "cmd_id": forged_id,
            "ok": False,
            "reason": "bad_signature",
        }
        assert result(expired_id)["reason"] == "expired"
        assert result(other_id)["reason"] == "wrong_device"
        assert result(valid_id)["ok"] is True
        capture.wait_quiet(quiet_s=0.8, timeout_s=10)
        replies = [json.loads(m.payload) for m in capture.messages("linli/v1/locker-a/res")]
        assert [r["reason"] for r in replies if r["cmd_id"] == valid_id] == [
            None,
            "duplicate",
            "duplicate",
        ]
        assert locker.sim.pulses("A1") == 1

        # Across a restart: the window is persisted, so the replay still does not pulse.
        locker.stop()
        restarted = simulated_locker(
            cloud.identity("locker-a"), cloud.broker, data_dir=locker.data_dir, items={"A2", "A3"}
        )
        assert restarted.daemon.link.wait_connected(10)
        capture.clear()
        attacker.send("linli/v1/locker-a/cmd", valid)
        assert result(valid_id)["reason"] == "duplicate"
        assert restarted.sim.pulses("A1") == 0
    finally:
        attacker.close()


def _status(info: BrokerInfo, device_id: str) -> dict[str, object] | None:
    snapshot = retained_snapshot(info, f"linli/v1/{device_id}/status", settle_s=0.3)
    raw = snapshot.get(f"linli/v1/{device_id}/status")
    return json.loads(raw) if raw else None


def test_frozen_controller_shows_lost(
    cloud, mqtt_capture, mosquitto: BrokerInfo, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP a real ``linli locker run`` process: the cloud says lost within 1.5 × keepalive + 2 s
    (its silence watchdog); Mosquitto's last will follows within its ~6 s check granularity."""
    keepalive_s = 2
    data_dir = tmp_path / "locker-a"
    cloud.identity("locker-a").save(data_dir / "identity.json")
    capture = mqtt_capture(mosquitto, "linli/v1/locker-a/status")
    env = dict(
        os.environ,
        LINLI_KEEPALIVE_S=str(keepalive_s),
        LINLI_BROKER_URL=f"mqtt://{mosquitto.host}:{mosquitto.port}",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "linli.cli",
            "--log-level",
            "WARNING",
            "locker",
            "run",
            "--gpio",
            "simulated",
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    http = httpx.Client(base_url=cloud.url, timeout=5)
    try:
        capture.wait_for(
            lambda m: json.loads(m.payload)["state"] == "online", timeout_s=20, description="online"
        )
        maintainer = next(x for x in cloud.seed.logins if x.role == "maintainer")
        signed_in = http.post("/api/v1/session", json=maintainer.body(int(time.time() * 1000)))
        token = signed_in.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}

        def cloud_status() -> str:
            devices = http.get("/api/v1/devices", headers=headers).json()
            return str(next(d for d in devices if d["id"] == "locker-a")["status"])

        deadline = time.monotonic() + 10
        while cloud_status() != "online":
            assert time.monotonic() < deadline, "the cloud never saw locker-a online"
            time.sleep(0.1)
        time.sleep(1.0)  # a few heartbeats: the watchdog must not fire on a live device
        assert cloud_status() == "online"

        os.kill(process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        bound_s = 1.5 * keepalive_s + 2
        while cloud_status() != "lost":
            assert time.monotonic() - frozen_at < bound_s, (
                f"cloud did not show lost within {bound_s} s"
            )
            time.sleep(0.05)
        cloud_lost_s = time.monotonic() - frozen_at
        lost = capture.wait_for(
            lambda m: json.loads(m.payload)["state"] == "lost",
            timeout_s=bound_s + MOSQUITTO_KEEPALIVE_CHECK_S,
            description="the broker's last will",
        )
        will_s = lost.received_at - frozen_at
        assert cloud_lost_s <= bound_s
        assert will_s <= bound_s + MOSQUITTO_KEEPALIVE_CHECK_S
        status = _status(mosquitto, "locker-a")
        assert status is not None and status["state"] == "lost"
        print(f"cloud showed lost after {cloud_lost_s:.2f} s, last will after {will_s:.2f} s")
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"linli locker run ignored SIGTERM; stderr:\n{stderr.decode()[-2000:]}")
        finally:
            http.close()
    assert process.returncode == 0, stderr.decode()[-2000:]
