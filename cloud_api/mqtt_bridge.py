"""The cloud's MQTT adapter (paho-mqtt 2.x): subscribes to every device's reports, publishes
acknowledgements, configurations and commands.

paho's callbacks only enqueue (they run on paho's thread holding its locks, paho #346/#354); one
worker thread hands each message to :class:`~cloud_api.devices.service.DeviceService` in arrival
order, and runs the periodic configuration refresh (fresh signed cloud time for the devices).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from linli.broker import BrokerAddress
from linli.contract import BY_NAME, TOPICS, subscription, topic

log = logging.getLogger(__name__)


def _no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """Disable Nagle's algorithm: a PUBACK followed by a small publish on the same socket
    otherwise waits for a delayed TCP ACK (~40 ms per hop; bench/pickup_path.py)."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CloudBridge:
    """One MQTT session for the cloud."""

    def __init__(self, broker: BrokerAddress, client_id: str = "linli-cloud") -> None:
        self._broker = broker
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._connected = threading.Event()
        self._handler: Callable[[str, bytes], None] | None = None
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._periodic: list[tuple[float, Callable[[], None]]] = []
        self._worker = threading.Thread(target=self._work, name="cloud-mqtt-worker", daemon=True)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_socket_open = _no_delay

    @property
    def is_connected(self) -> bool:
        """Whether the broker session is up."""
        return self._connected.is_set()

    def start(self, handler: Callable[[str, bytes], None], *, wait_s: float = 10.0) -> None:
        """Connect, subscribe, and start handing messages to ``handler``."""
        self._handler = handler
        self._worker.start()
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(wait_s):
            log.warning(
                "broker %s:%d not reachable yet; retrying", self._broker.host, self._broker.port
            )

    def every(self, period_s: float, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread every ``period_s`` seconds."""
        self._periodic.append((period_s, job))

    def publish(self, device_id: str, name: str, payload: bytes) -> None:
        """Publish on a device's topic with the contract's QoS and retention."""
        spec = BY_NAME[name]
        self._client.publish(topic(device_id, name), payload, qos=spec.qos, retain=spec.retained)

    def stop(self) -> None:
        """Drain, disconnect and stop the worker."""
        self._stopping = True
        self._queue.put(None)
        self._worker.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("broker refused the cloud's connection: %s", reason)
            return
        _, self._subscribe_mid = client.subscribe(
            [(subscription(s.name), 1) for s in TOPICS if s.direction == "device_to_cloud"]
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: object,
        properties: object,
    ) -> None:
        if mid == self._subscribe_mid:
            log.info("cloud connected to broker %s:%d", self._broker.host, self._broker.port)
            self._connected.set()  # connected and subscribed

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("cloud lost the broker (%s)", reason)
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self._queue.put((message.topic, bytes(message.payload)))

    def _work(self) -> None:
        next_run = {i: time.monotonic() + period for i, (period, _) in enumerate(self._periodic)}
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                item = ("", b"")
            if item is None:
                return
            topic_name, payload = item
            if topic_name and self._handler is not None:
                try:
                    self._handler(topic_name, payload)
                except Exception:
                    log.exception("failed to handle a message on %s", topic_name)
            now = time.monotonic()
            for i, (period, job) in enumerate(self._periodic):
                if now >= next_run.get(i, now):
                    next_run[i] = now + period
                    try:
                        job()
                    except Exception:
                        log.exception("periodic job failed")
