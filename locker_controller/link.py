"""A device's MQTT session (paho-mqtt 2.x): birth, last will, subscriptions, publishing.

Shared by the locker controller and the valuation terminal. paho calls back on its own network
thread while holding its locks (paho #346/#354), so callbacks here only hand messages to the
daemon's queue; all decisions happen on the daemon's thread.

Example:
    >>> link = DeviceLink(DeviceSession("locker-a", "locker", boot_id, "0.1.0"), broker, inbox.put)
    >>> link.start()
    >>> link.publish("state", payload, retain=True)
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from linli.broker import BrokerAddress
from linli.contract import BY_NAME, Status, encode, topic

log = logging.getLogger(__name__)


def _no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """Disable Nagle's algorithm: a PUBACK followed by a small publish on the same socket
    otherwise waits for a delayed TCP ACK (~40 ms per hop; bench/pickup_path.py)."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0


def jittered_delays(rng: random.Random | None = None) -> tuple[float, float]:
    """Reconnect delays for one outage: paho waits ``min``, doubling up to ``max``, forever.

    Both are drawn afresh at every outage (×0.5–1.5 and ×0.75–1.25), so 200 banks that lost the
    same broker do not all come back in the same second, nor in lockstep after that.
    """
    r = rng or random
    return RECONNECT_MIN_S * r.uniform(0.5, 1.5), RECONNECT_MAX_S * r.uniform(0.75, 1.25)


SUBSCRIBED_BY_ROLE = {
    "locker": ("cmd", "ack", "cfg/desired"),
    "terminal": ("cmd", "ack", "cfg/desired"),
}


@dataclass(frozen=True)
class DeviceSession:
    """Who is connecting: device id, role, this boot's id and the software version."""

    device_id: str
    role: str
    boot_id: str
    version: str
    keepalive_s: int = 10

    def status(self, state: str) -> bytes:
        """The retained ``status`` payload for ``state`` (online, offline or lost)."""
        return encode(
            Status(
                device_id=self.device_id,
                state=state,  # type: ignore[arg-type]
                role=self.role,  # type: ignore[arg-type]
                boot_id=self.boot_id,
                version=self.version,
                keepalive_s=self.keepalive_s,
            )
        )


@dataclass(frozen=True)
class LinkMessage:
    """A message that arrived for this device: the topic's short name and the raw payload."""

    name: str
    payload: bytes


@dataclass(frozen=True)
class LinkConnected:
    """The session is (re)connected and subscribed: re-publish state, re-send the outbox."""


class DeviceLink:
    """One MQTT connection for one device."""

    def __init__(
        self,
        session: DeviceSession,
        broker: BrokerAddress,
        deliver: Callable[[LinkMessage | LinkConnected], None],
        *,
        keepalive_s: int = 10,
    ) -> None:
        self._session = session
        self._broker = broker
        self._deliver = deliver
        self._keepalive_s = keepalive_s
        self._connected = threading.Event()
        self._was_connected = False
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{session.device_id}-{session.boot_id}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        self._client.will_set(
            topic(session.device_id, "status"), session.status("lost"), qos=1, retain=True
        )
        self._client.reconnect_delay_set(*jittered_delays())  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = _no_delay

    @property
    def is_connected(self) -> bool:
        """Whether the session is up right now."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho reconnects on its own after an outage."""
        self._client.connect_async(self._broker.host, self._broker.port, self._keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed (for start-up and tests)."""
        return self._connected.wait(timeout_s)

    def publish(self, name: str, payload: bytes, *, retain: bool | None = None) -> None:
        """Publish on one of this device's topics with the contract's QoS and retention."""
        spec = BY_NAME[name]
        self._client.publish(
            topic(self._session.device_id, name),
            payload,
            qos=spec.qos,
            retain=spec.retained if retain is None else retain,
        )

    def stop(self, timeout_s: float = 3.0) -> None:
        """Say ``offline`` (retained), then disconnect cleanly (no last will)."""
        self._stopping = True
        if self._connected.is_set():
            info = self._client.publish(
                topic(self._session.device_id, "status"),
                self._session.status("offline"),
                qos=1,
                retain=True,
            )
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                log.warning("could not confirm the offline status before disconnecting")
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho callbacks (network thread): hand over, never decide --------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the connection: %s", reason)
            return
        names = SUBSCRIBED_BY_ROLE[self._session.role]
        _, self._subscribe_mid = client.subscribe(
            [(topic(self._session.device_id, name), BY_NAME[name].qos) for name in names]
        )
        # The broker handles one connection's packets in order: by the time anyone sees this
        # birth, the subscriptions above are in force.
        client.publish(
            topic(self._session.device_id, "status"),
            self._session.status("online"),
            qos=1,
            retain=True,
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: object,
        properties: object,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        if self._was_connected:
            log.info("broker connection restored")
        else:
            log.info("connected to broker %s:%d", self._broker.host, self._broker.port)
        self._was_connected = True
        self._connected.set()  # connected *and* subscribed: commands can reach us now
        self._deliver(LinkConnected())

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("broker connection lost (%s); events stay in the outbox", reason)
            client.reconnect_delay_set(*jittered_delays())  # type: ignore[arg-type]
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        prefix = f"linli/v1/{self._session.device_id}/"
        if message.topic.startswith(prefix):
            self._deliver(LinkMessage(message.topic[len(prefix) :], bytes(message.payload)))
