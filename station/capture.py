"""Record what goes over an MQTT broker: for tests and for the demo's independent checker.

:class:`MqttCapture` runs a paho-mqtt client in a background thread, subscribed at QoS 1,
and keeps every message it receives. :func:`retained_snapshot` asks a broker which retained
messages it holds right now.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

Predicate = Callable[["CapturedMessage"], bool]


class BrokerAddress(Protocol):
    """Anything with a host and a port, such as :class:`station.broker.BrokerInfo`."""

    @property
    def host(self) -> str:
        """The broker's address."""
        ...

    @property
    def port(self) -> int:
        """The broker's TCP port."""
        ...


@dataclass(frozen=True)
class CapturedMessage:
    """One message as the capture client received it.

    Attributes:
        topic: The topic it was published on.
        payload: The payload bytes.
        retain: True when the broker sent it from its retained store (on subscription).
        qos: The QoS it was delivered with.
        received_at: ``time.monotonic()`` when the client received it.
    """

    topic: str
    payload: bytes
    retain: bool
    qos: int
    received_at: float

    def __str__(self) -> str:
        preview = self.payload[:60].decode("utf-8", errors="replace")
        more = "…" if len(self.payload) > 60 else ""
        flags = f"qos{self.qos}{' retained' if self.retain else ''}"
        return f"{self.topic} [{flags}, {len(self.payload)} B] {preview!r}{more}"


class MqttCapture:
    """A background MQTT client that records every message matching a topic filter.

    Example:
        >>> with MqttCapture(info, "linli/v1/#") as cap:  # doctest: +SKIP
        ...     do_something()
        ...     msg = cap.wait_for(lambda m: m.topic.endswith("/state"))
    """

    def __init__(
        self,
        broker: BrokerAddress,
        topic_filter: str = "#",
        *,
        qos: int = 1,
        client_id: str | None = None,
        keepalive_s: int = 30,
    ) -> None:
        """Describe the capture; nothing connects until :meth:`start`.

        Args:
            broker: Where to connect.
            topic_filter: The MQTT subscription (wildcards allowed).
            qos: The subscription QoS.
            client_id: The MQTT client id; a unique one when None.
            keepalive_s: The MQTT keepalive.
        """
        self.broker = broker
        self.topic_filter = topic_filter
        self.qos = qos
        self.keepalive_s = keepalive_s
        self.client_id = client_id or f"linli-capture-{uuid.uuid4().hex[:12]}"
        self._messages: list[CapturedMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._failure: str | None = None
        self._client: mqtt.Client | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> Self:
        """Connect, subscribe, and wait for the broker's SUBACK.

        Args:
            timeout_s: How long to wait for the subscription.

        Returns:
            This capture, so ``cap = MqttCapture(...).start()`` works.

        Raises:
            ConnectionError: The broker refused the connection or the subscription, or
                did not answer in time.
            OSError: The TCP connection failed.
        """
        if self._client is not None:
            return self
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=self.keepalive_s)
            client.loop_start()
            if not self._subscribed.wait(timeout_s) or self._failure:
                reason = self._failure or f"no SUBACK within {timeout_s} s"
                raise ConnectionError(
                    f"capture of {self.topic_filter!r} on {self._where}: {reason}"
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread. Safe to call twice."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        self._subscribed.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def _where(self) -> str:
        return f"{self.broker.host}:{self.broker.port}"

    # -- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._failure = f"connection refused: {reason_code}"
            self._subscribed.set()
            return
        # Subscribing here also restores the subscription after an automatic reconnect.
        client.subscribe(self.topic_filter, qos=self.qos)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            self._failure = f"subscription refused: {reason_codes}"
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        message = CapturedMessage(
            topic=msg.topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            qos=msg.qos,
            received_at=time.monotonic(),
        )
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    # -- queries -------------------------------------------------------------------------

    def messages(self, topic_filter: str | None = None) -> list[CapturedMessage]:
        """Return the messages received so far, oldest first.

        Args:
            topic_filter: Keep only topics matching this MQTT filter (wildcards allowed).
        """
        with self._cond:
            found = list(self._messages)
        if topic_filter is None:
            return found
        return [m for m in found if mqtt.topic_matches_sub(topic_filter, m.topic)]

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._cond:
            self._messages.clear()

    def wait_for(
        self,
        predicate: Predicate | str,
        timeout_s: float = 10.0,
        *,
        since: float | None = None,
        description: str | None = None,
    ) -> CapturedMessage:
        """Return the first message, already received or still to come, that matches.

        Args:
            predicate: A function of a :class:`CapturedMessage`, or an MQTT topic filter.
            timeout_s: How long to wait.
            since: Ignore messages received before this ``time.monotonic()`` value.
            description: How to name what was awaited in the timeout message.

        Returns:
            The first matching message.

        Raises:
            AssertionError: Nothing matched in time; the message lists what did arrive.
        """
        matches: Predicate
        if isinstance(predicate, str):
            topic_filter = predicate
            what = description or f"topic {topic_filter!r}"

            def matches(m: CapturedMessage) -> bool:
                return mqtt.topic_matches_sub(topic_filter, m.topic)
        else:
            matches = predicate
            what = description or str(getattr(predicate, "__name__", predicate))
        deadline = time.monotonic() + timeout_s
        checked = 0
        with self._cond:
            while True:
                for message in self._messages[checked:]:
                    if (since is None or message.received_at >= since) and matches(message):
                        return message
                checked = len(self._messages)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._describe_timeout(what, timeout_s))
                self._cond.wait(remaining)

    def _describe_timeout(self, description: str, timeout_s: float, shown: int = 10) -> str:
        received = self._messages
        lines = [
            f"no message matching {description} within {timeout_s} s "
            f"(capture of {self.topic_filter!r} on {self._where}); "
            f"{len(received)} message(s) received"
            + (f", the last {min(shown, len(received))}:" if received else "")
        ]
        lines += [f"  {m}" for m in received[-shown:]]
        return "\n".join(lines)

    def wait_quiet(self, quiet_s: float = 0.5, timeout_s: float = 10.0) -> None:
        """Wait until no message has arrived for ``quiet_s`` (at most ``timeout_s``)."""
        start = time.monotonic()
        deadline = start + timeout_s
        with self._cond:
            while True:
                last = max(start, self._messages[-1].received_at) if self._messages else start
                now = time.monotonic()
                if now - last >= quiet_s or now >= deadline:
                    return
                self._cond.wait(min(last + quiet_s, deadline) - now)

    def retained_snapshot(
        self,
        broker: BrokerAddress | None = None,
        topic_filter: str | None = None,
        settle_s: float = 0.5,
    ) -> dict[str, bytes]:
        """Return the retained messages a broker holds now, via a fresh client.

        Args:
            broker: The broker to ask; this capture's broker when None.
            topic_filter: The filter to ask about; this capture's filter when None.
            settle_s: How long the broker must stay quiet before the snapshot is taken.
        """
        return retained_snapshot(
            broker or self.broker, topic_filter or self.topic_filter, settle_s=settle_s
        )


def retained_snapshot(
    broker: BrokerAddress, topic_filter: str = "#", settle_s: float = 0.5, timeout_s: float = 10.0
) -> dict[str, bytes]:
    """Return the retained messages a broker holds now for ``topic_filter``.

    A fresh clean-session client subscribes and keeps the messages flagged as retained,
    that is the ones the broker sent from its retained store, until the broker has been
    quiet for ``settle_s``. Live messages published meanwhile are left out.

    Args:
        broker: Where to connect.
        topic_filter: The MQTT filter (wildcards allowed).
        settle_s: The quiet period that ends the snapshot.
        timeout_s: The longest the snapshot may take.

    Returns:
        The retained payload of each topic.
    """
    with MqttCapture(broker, topic_filter) as cap:
        cap.wait_quiet(settle_s, timeout_s)
        return {m.topic: m.payload for m in cap.messages() if m.retain}
