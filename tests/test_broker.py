"""Tests of station.broker (private brokers) and station.capture (message capture)."""

from __future__ import annotations

import gc
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from station import broker as broker_module
from station.broker import (
    MOSQUITTO_KEEPALIVE_CHECK_S,
    AmqttBroker,
    BrokerError,
    BrokerInfo,
    MosquittoBroker,
    free_port,
    start_embedded_broker,
)
from station.capture import MqttCapture

# Harmless when conftest.py loads the same plugin: pytest registers a name once.
pytest_plugins = ["broker_fixtures"]

CaptureFactory = Callable[..., MqttCapture]

ONE_MB = bytes(range(256)) * 4096


@contextmanager
def publisher(info: BrokerInfo) -> Iterator[mqtt.Client]:
    """A connected paho client with its network thread running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(info.host, info.port, keepalive=30)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish(info: BrokerInfo, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    with publisher(info) as client:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=5)


def can_connect(info: BrokerInfo) -> bool:
    try:
        with socket.create_connection((info.host, info.port), timeout=0.5):
            return True
    except OSError:
        return False


def mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_with_will(info: BrokerInfo, keepalive_s: int, will_topic: str) -> socket.socket:
    """Open a raw MQTT 3.1.1 connection with a QoS 1 last will of b"offline"."""
    flags = 0x02 | 0x04 | 0x08  # clean session, will, will QoS 1
    body = (
        mqtt_string("MQTT")
        + bytes([4, flags])
        + keepalive_s.to_bytes(2, "big")
        + mqtt_string("linli-test-will")
        + mqtt_string(will_topic)
        + mqtt_string("offline")
    )
    sock = socket.create_connection((info.host, info.port), timeout=5)
    sock.sendall(bytes([0x10, len(body)]) + body)
    connack = b""
    while len(connack) < 4:
        chunk = sock.recv(4 - len(connack))
        assert chunk, "broker closed the connection instead of sending CONNACK"
        connack += chunk
    assert connack == b"\x20\x02\x00\x00", f"CONNACK refused: {connack!r}"
    return sock


# -- Mosquitto --------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_mosquitto_round_trip_qos1_with_1mb_payload(
    mosquitto: BrokerInfo, mqtt_capture: CaptureFactory
) -> None:
    assert mosquitto.kind == "mosquitto"
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    cap = mqtt_capture(mosquitto, "linli/v1/#")

    publish(mosquitto, "linli/v1/station/s1/blob", ONE_MB)
    publish(mosquitto, "other/topic", b"not captured")

    msg = cap.wait_for("linli/v1/station/+/blob", timeout_s=5)
    assert msg.payload == ONE_MB
    assert msg.qos == 1
    assert not msg.retain
    assert cap.messages("other/#") == []


@pytest.mark.mosquitto
def test_mosquitto_retained_message_seen_by_later_subscriber(
    mosquitto: BrokerInfo, mqtt_capture: CaptureFactory
) -> None:
    publish(mosquitto, "linli/v1/locker/l1/state", b'{"door":"closed"}', retain=True)
    publish(mosquitto, "linli/v1/locker/l2/state", b"gone", retain=True)
    publish(mosquitto, "linli/v1/locker/l2/state", b"", retain=True)  # clears it
    publish(mosquitto, "linli/v1/locker/l1/event", b"not retained")

    later = mqtt_capture(mosquitto, "linli/v1/#")
    msg = later.wait_for("linli/v1/locker/l1/state", timeout_s=5)
    assert msg.retain
    assert later.retained_snapshot(settle_s=0.3) == {
        "linli/v1/locker/l1/state": b'{"door":"closed"}'
    }


@pytest.mark.mosquitto
@pytest.mark.parametrize("death", ["silent", "reset"])
def test_mosquitto_last_will_fires_when_tcp_dies_without_disconnect(
    mosquitto: BrokerInfo, mqtt_capture: CaptureFactory, death: str
) -> None:
    """A client that goes silent (power loss) or whose socket is reset gets its will sent.

    The bound is 1.5 x keepalive + 2 s plus Mosquitto 2.0's keepalive check period.
    """
    keepalive_s = 1
    topic = "linli/v1/locker/l1/online"
    cap = mqtt_capture(mosquitto, "linli/v1/#")

    with connect_with_will(mosquitto, keepalive_s, topic) as sock:
        started = time.monotonic()
        if death == "reset":  # close with RST, no DISCONNECT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        will = cap.wait_for(topic, timeout_s=1.5 * keepalive_s + 2 + MOSQUITTO_KEEPALIVE_CHECK_S)

    assert will.payload == b"offline"
    if death == "silent":  # the broker waited for the keepalive to run out
        assert will.received_at - started >= keepalive_s


@pytest.mark.mosquitto
def test_mosquitto_persistence_keeps_retained_across_restart(
    mosquitto_bin: str, tmp_path: Path, mqtt_capture: CaptureFactory
) -> None:
    broker = MosquittoBroker(tmp_path, persistence=True)
    with broker:
        info = broker.info
        publish(info, "linli/v1/station/s1/config", b"v1", retain=True)
    assert broker.pid is None
    assert (tmp_path / "mosquitto.db").is_file()

    with broker:
        assert broker.info == info  # same port after a restart
        cap = mqtt_capture(info, "linli/v1/#")
        assert cap.retained_snapshot(settle_s=0.3) == {"linli/v1/station/s1/config": b"v1"}
        cap.stop()  # before the broker goes, or paho retries until teardown


@pytest.mark.mosquitto
def test_mosquitto_bad_config_raises_with_log_tail(mosquitto_bin: str, tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, extra_config="no_such_option 1")
    with pytest.raises(BrokerError, match="mosquitto exited with code") as err:
        broker.start(timeout_s=5)
    assert "no_such_option" in err.value.log_tail
    assert broker.pid is None
    broker.stop()  # idempotent


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_port_already_taken_raises_broker_error(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    request.getfixturevalue("mosquitto_bin" if kind == "mosquitto" else "amqtt_installed")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = MosquittoBroker(tmp_path, port) if kind == "mosquitto" else AmqttBroker(port=port)
        with pytest.raises(BrokerError) as err:
            broker.start(timeout_s=5)
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text
    assert "address already in use" in text.lower()
    assert broker.pid is None
    with pytest.raises(BrokerError, match="not running"):
        _ = broker.info


# -- amqtt ------------------------------------------------------------------------------


def test_amqtt_round_trip(amqtt_broker: BrokerInfo, mqtt_capture: CaptureFactory) -> None:
    assert amqtt_broker.kind == "amqtt"
    cap = mqtt_capture(amqtt_broker, "linli/v1/#")

    publish(amqtt_broker, "linli/v1/station/s1/blob", ONE_MB)

    msg = cap.wait_for("linli/v1/station/s1/blob", timeout_s=5)
    assert msg.payload == ONE_MB
    assert msg.qos == 1


@pytest.mark.usefixtures("amqtt_installed")
def test_amqtt_stop_leaves_no_thread_and_frees_the_port() -> None:
    broker = AmqttBroker()
    with broker:
        info = broker.info
        assert can_connect(info)  # a bare TCP probe: the connection must still get closed
        publish(info, "linli/v1/x", b"1")
    broker.stop()  # idempotent
    gc.collect()  # a leaked transport would raise its ResourceWarning here (-W error)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("amqtt-broker")]
    assert not can_connect(info)


# -- choosing a broker ------------------------------------------------------------------


@pytest.mark.mosquitto
def test_start_embedded_broker_auto_picks_mosquitto(mosquitto_bin: str, tmp_path: Path) -> None:
    broker = start_embedded_broker(tmp_path, "auto")
    with broker:
        assert isinstance(broker, MosquittoBroker)
        assert broker.info.kind == "mosquitto"
    assert broker.pid is None


@pytest.mark.usefixtures("amqtt_installed")
def test_start_embedded_broker_falls_back_to_amqtt_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: None)
    with caplog.at_level(logging.WARNING, logger="station.broker"):
        broker = start_embedded_broker(tmp_path, port=free_port())
    with broker:
        assert broker.info.kind == "amqtt"
    assert "mosquitto not installed" in caplog.text
    assert "last will never fires" in caplog.text


def test_start_embedded_broker_rejects_unknown_choice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prefer"):
        start_embedded_broker(tmp_path, "rabbitmq")


# -- capture ----------------------------------------------------------------------------


@pytest.mark.mosquitto
def test_capture_wait_for_timeout_describes_what_arrived(
    mosquitto: BrokerInfo, mqtt_capture: CaptureFactory
) -> None:
    cap = mqtt_capture(mosquitto, "linli/v1/#")
    publish(mosquitto, "linli/v1/station/s1/hello", b"hi")
    cap.wait_for("linli/v1/station/s1/hello", timeout_s=5)

    with pytest.raises(AssertionError) as err:
        cap.wait_for(lambda m: m.payload == b"never", timeout_s=0.2, description="payload never")
    text = str(err.value)
    assert "no message matching payload never within 0.2 s" in text
    assert "linli/v1/station/s1/hello" in text
