"""One valid example payload per topic of the contract (used by generated tests)."""

from __future__ import annotations

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
    State,
    Status,
    Telemetry,
    encode,
    sign_body,
)

BOOT = "0123456789ab"


def valid_payload(name: str, device_id: str, keys: CloudKeys, now_ms: int) -> bytes:
    """A payload that the receiving side of topic ``name`` would accept from ``device_id``."""
    if name == "status":
        return encode(
            Status(
                device_id=device_id,
                state="online",
                role="locker",
                boot_id=BOOT,
                version="0.1.0",
                keepalive_s=10,
            )
        )
    if name == "state":
        compartment = CompartmentState(latch="locked", door="closed", occupancy="present")
        return encode(
            State(
                device_id=device_id, boot_id=BOOT, compartments={"A1": compartment}, wall_ms=now_ms
            )
        )
    if name == "evt":
        return encode(
            Event(
                device_id=device_id,
                boot_id=BOOT,
                seq=1,
                type="booted",
                mono_ms=1,
                wall_ms=now_ms,
                trust="synced",
            )
        )
    if name == "ack":
        return encode(Ack(device_id=device_id, boot_id=BOOT, seq=0))
    if name == "tele":
        return encode(Telemetry(device_id=device_id, boot_id=BOOT, uptime_s=1, outbox_depth=0))
    if name == "res":
        return encode(CommandResult(device_id=device_id, cmd_id="cmd_x", ok=True))
    if name == "cfg/reported":
        return encode(ConfigReport(device_id=device_id, status="applied", applied_version=1))
    if name == "cmd":
        body = CommandBody(
            device_id=device_id,
            id="cmd_example",
            seq=1,
            name="open",
            compartment="A1",
            issued_at_ms=now_ms,
            expires_at_ms=now_ms + 60_000,
        )
        return sign_body(keys.signing_key, keys.key_id, body)
    if name == "cfg/desired":
        body = ConfigBody(
            device_id=device_id,
            version=10_000,
            issued_at_ms=now_ms,
            compartments={"A1": CompartmentPolicy(size="S")},
            grants=[],
        )
        return sign_body(keys.signing_key, keys.key_id, body)
    raise KeyError(f"no example for topic {name!r}")
