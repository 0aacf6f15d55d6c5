"""The topic registry: every topic of the contract, its direction, QoS, retention and model.

Topics are ``linli/v1/{device_id}/{name}``. One event topic and one command topic per device keep
order (MQTT orders only within a topic). Tests are generated from :data:`TOPICS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from linli.contract.errors import (
    DeviceMismatch,
    MalformedPayload,
    PayloadTooLarge,
    UnknownTopic,
    UnsupportedVersion,
)
from linli.contract.models import (
    CONTRACT_VERSION,
    Ack,
    CommandResult,
    ConfigReport,
    Event,
    SignedEnvelope,
    State,
    Status,
    Telemetry,
)
from linli.ids import is_device_id

PREFIX = "linli/v1"
M = TypeVar("M", bound=BaseModel)
MAX_PAYLOAD_BYTES = 512 * 1024
"""Largest payload either side parses: a config with the maximum 1000 grants is about 240 KB."""

Direction = Literal["device_to_cloud", "cloud_to_device"]


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the contract."""

    name: str
    direction: Direction
    qos: int
    retained: bool
    model: type[BaseModel]
    signed: bool = False
    description: str = ""


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("status", "device_to_cloud", 1, True, Status, description="birth / clean stop / last will"),
    TopicSpec("state", "device_to_cloud", 1, True, State, description="per compartment: latch, door, occupancy"),
    TopicSpec("evt", "device_to_cloud", 1, False, Event, description="ordered events, (boot_id, seq)"),
    TopicSpec("ack", "cloud_to_device", 1, False, Ack, description="cumulative ack per boot id"),
    TopicSpec("tele", "device_to_cloud", 0, False, Telemetry, description="health metrics"),
    TopicSpec("cmd", "cloud_to_device", 1, False, SignedEnvelope, signed=True, description="signed command"),
    TopicSpec("res", "device_to_cloud", 1, False, CommandResult, description="result of a command"),
    TopicSpec("cfg/desired", "cloud_to_device", 1, True, SignedEnvelope, signed=True, description="signed configuration"),
    TopicSpec("cfg/reported", "device_to_cloud", 1, True, ConfigReport, description="applied configuration"),
)  # fmt: skip
BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def topic(device_id: str, name: str) -> str:
    """Build the topic ``linli/v1/{device_id}/{name}``."""
    if name not in BY_NAME:
        raise UnknownTopic(f"no topic named {name!r}")
    if not is_device_id(device_id):
        raise UnknownTopic("not a valid device id")
    return f"{PREFIX}/{device_id}/{name}"


def subscription(name: str, device_id: str = "+") -> str:
    """A subscription filter for one topic name, for one device or (``+``) all."""
    return f"{PREFIX}/{device_id}/{name}"


def parse_topic(value: str) -> tuple[str, TopicSpec]:
    """Split a topic into (device id, spec).

    Raises:
        UnknownTopic: not a topic of this contract.
    """
    prefix = PREFIX + "/"
    if not value.startswith(prefix):
        raise UnknownTopic("not a linli/v1 topic")
    device_id, _, name = value[len(prefix) :].partition("/")
    spec = BY_NAME.get(name)
    if spec is None or not is_device_id(device_id):
        raise UnknownTopic("not a topic of the contract")
    return device_id, spec


def decode_json(payload: bytes) -> dict[str, object]:
    """Parse a payload into a JSON object, checking size and contract version.

    Raises:
        PayloadTooLarge, MalformedPayload, UnsupportedVersion.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if not payload:
        raise MalformedPayload("empty payload")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedPayload("payload is not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedPayload("payload is not a JSON object")
    version = data.get("v")
    # type() check: JSON true and 1.0 compare equal to 1 in Python but are not the version.
    if type(version) is not int or version != CONTRACT_VERSION:
        raise UnsupportedVersion(f"contract version {version!r} is not {CONTRACT_VERSION}")
    return data


def decode(model: type[M], payload: bytes, topic_device_id: str | None = None) -> M:
    """Parse and validate a payload as ``model``; check its device id against the topic's.

    Raises:
        PayloadTooLarge, MalformedPayload, UnsupportedVersion, DeviceMismatch.
    """
    data = decode_json(payload)
    try:
        message = model.model_validate(data)
    except ValidationError as exc:
        fields = ",".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}))
        raise MalformedPayload(f"invalid {model.__name__}: fields {fields or '?'}") from exc
    device_id = getattr(message, "device_id", None)
    if topic_device_id is not None and device_id is not None and device_id != topic_device_id:
        raise DeviceMismatch("payload's device id differs from the topic's")
    return message


def encode(message: BaseModel) -> bytes:
    """Serialize a message as compact JSON."""
    return message.model_dump_json(exclude_none=False).encode()
