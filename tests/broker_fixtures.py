"""Pytest fixtures for private MQTT brokers and message capture.

Loaded as a plugin from ``tests/conftest.py``::

    pytest_plugins = ["broker_fixtures"]

(``tests/`` has no ``__init__.py``, so pytest puts it on ``sys.path`` and the module's
name is ``broker_fixtures``.)

Fixtures:
    mosquitto_bin: The mosquitto executable; skips (or fails, with LINLI_REQUIRE_SYSTEM=1)
        when it is missing.
    mosquitto_broker: A running :class:`MosquittoBroker` (to stop or restart it).
    mosquitto: The :class:`BrokerInfo` of that broker.
    amqtt_installed: Skips when amqtt is not installed.
    amqtt_broker: The :class:`BrokerInfo` of a running amqtt broker.
    mqtt_capture: A factory, ``cap = mqtt_capture(info, "linli/v1/#")``, of started
        :class:`MqttCapture` objects, all stopped at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from station.broker import AmqttBroker, BrokerInfo, MosquittoBroker, mosquitto_binary
from station.capture import BrokerAddress, MqttCapture

MISSING_MOSQUITTO = "mosquitto binary not installed (apt-get install mosquitto)"

CaptureFactory = Callable[..., MqttCapture]
"""The type of the ``mqtt_capture`` fixture."""


@pytest.fixture
def mosquitto_bin() -> str:
    """The mosquitto executable.

    Skips the test when it is missing, or fails it when LINLI_REQUIRE_SYSTEM=1.
    """
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("LINLI_REQUIRE_SYSTEM") == "1":
            pytest.fail(f"{MISSING_MOSQUITTO}; LINLI_REQUIRE_SYSTEM=1 forbids skipping")
        pytest.skip(MISSING_MOSQUITTO)
    return binary


@pytest.fixture
def mosquitto_broker(mosquitto_bin: str, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A private Mosquitto on a free port, its files in ``tmp_path/mosquitto``."""
    with MosquittoBroker(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def mosquitto(mosquitto_broker: MosquittoBroker) -> BrokerInfo:
    """Where the private Mosquitto listens."""
    return mosquitto_broker.info


@pytest.fixture
def amqtt_installed() -> None:
    """Skip the test when amqtt (the ``demo`` extra) is not installed."""
    pytest.importorskip("amqtt", reason="amqtt not installed (pip install linli[demo])")


@pytest.fixture
def amqtt_broker(amqtt_installed: None, tmp_path: Path) -> Iterator[BrokerInfo]:
    """Where a private amqtt broker listens (in a thread of this process)."""
    with AmqttBroker(tmp_path / "amqtt") as broker:
        yield broker.info


@pytest.fixture
def mqtt_capture() -> Iterator[CaptureFactory]:
    """A factory of started :class:`MqttCapture` clients, disconnected at teardown.

    ``mqtt_capture(info, topic_filter="#", **kwargs)`` passes ``kwargs`` on to
    :class:`MqttCapture`.
    """
    captures: list[MqttCapture] = []

    def factory(broker: BrokerAddress, topic_filter: str = "#", **kwargs: Any) -> MqttCapture:
        capture = MqttCapture(broker, topic_filter, **kwargs)
        captures.append(capture)
        return capture.start()

    yield factory
    for capture in captures:
        capture.stop()
