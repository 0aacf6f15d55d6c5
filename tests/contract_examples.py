"""One valid example per topic of the contract: the single source for the generated tests
(tests/test_contract.py, test_mqtt_contract.py, test_fuzz.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from cloud_api.keys import CloudKeys
from linli.contract import (
    Ack,
    CommandBody,
    CommandResult,
    CompartmentPolicy,
    CompartmentState,
    ConfigBody,
    ConfigReport,
    Event,
    Grant,
    State,
    Status,
    Telemetry,
    encode,
    sign_body,
)

BOOT = "0123456789ab"


def command_body(device_id: str, now_ms: int, **changes: Any) -> CommandBody:
    """A valid ``open`` command body, unexpired at ``now_ms``."""
    fields: dict[str, Any] = {
        "device_id": device_id,
        "id": "cmd_1",
        "seq": 1,
        "name": "open",
        "compartment": "A2",
        "grant_id": "grt_1",
        "issued_at_ms": now_ms,
        "expires_at_ms": now_ms + 60_000,
    }
    return CommandBody(**(fields | changes))


def config_body(device_id: str, now_ms: int) -> ConfigBody:
    """A valid configuration body with one grant and one revocation."""
    return ConfigBody(
        device_id=device_id,
        version=3,
        issued_at_ms=now_ms,
        compartments={"A1": CompartmentPolicy(size="S"), "A2": CompartmentPolicy(size="M")},
        grants=[
            Grant(
                grant_id="grt_1",
                compartment="A2",
                purpose="pickup",
                valid_from_ms=now_ms,
                valid_until_ms=now_ms + 3_600_000,
                code_hash="ab" * 32,
                epoch=4,
            )
        ],
        revoked=["grt_0"],
    )


def _message(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(model(**fields)))
    return data


Builder = Callable[[str, Ed25519PrivateKey, str, int], dict[str, Any]]

EXAMPLES: dict[str, Builder] = {
    "status": lambda d, k, kid, now: _message(
        Status, device_id=d, state="online", role="locker", boot_id=BOOT, version="0.1.0",
        keepalive_s=10,
    ),
    "state": lambda d, k, kid, now: _message(
        State,
        device_id=d,
        boot_id=BOOT,
        wall_ms=now,
        compartments={
            "A1": CompartmentState(latch="locked", door="closed", occupancy="absent"),
            "A2": CompartmentState(
                latch="unlocked", door="open", occupancy="present", needs_attention=True, epoch=2
            ),
        },
    ),
    "evt": lambda d, k, kid, now: _message(
        Event, device_id=d, boot_id=BOOT, seq=7, type="door_opened", mono_ms=12_345, wall_ms=now,
        trust="holdover", compartment="A2", grant_id="grt_1",
        data={"epoch": 4, "by": "code", "forced": False, "note": None},
    ),
    "ack": lambda d, k, kid, now: _message(Ack, device_id=d, boot_id=BOOT, seq=7),
    "tele": lambda d, k, kid, now: _message(
        Telemetry, device_id=d, boot_id=BOOT, uptime_s=100, outbox_depth=3, grant_list_age_s=60,
        cpu_temp_c=48.5, throttled=0, disk_free_pct=41.5,
    ),
    "cmd": lambda d, k, kid, now: json.loads(sign_body(k, kid, command_body(d, now))),
    "res": lambda d, k, kid, now: _message(CommandResult, device_id=d, cmd_id="cmd_1", ok=False, reason="jammed"),
    "cfg/desired": lambda d, k, kid, now: json.loads(sign_body(k, kid, config_body(d, now))),
    "cfg/reported": lambda d, k, kid, now: _message(
        ConfigReport, device_id=d, status="refused", applied_version=2, refused_version=3,
        reason="stale_time", grants=1,
    ),
}  # fmt: skip


def example(
    name: str, device_id: str, key: Ed25519PrivateKey, key_id: str, now_ms: int
) -> dict[str, Any]:
    """The example payload of topic ``name`` as a JSON object (signed topics signed with ``key``)."""
    return EXAMPLES[name](device_id, key, key_id, now_ms)


def valid_payload(name: str, device_id: str, keys: CloudKeys, now_ms: int) -> bytes:
    """The example as bytes, signed with the cloud's keys: what the receiver would accept."""
    return json.dumps(example(name, device_id, keys.signing_key, keys.key_id, now_ms)).encode()
