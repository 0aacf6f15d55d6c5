"""Enrolment: register a device and its compartments, and produce its identity file.

The full enrolment flow (one-time tokens, per-device broker credentials, revocation) is issue #11;
this is the seam it extends.
"""

from __future__ import annotations

from cloud_api.keys import CloudKeys
from cloud_api.store import Store
from linli.identity import DeviceIdentity
from linli.ids import is_compartment_name, is_device_id


def enrol_device(
    store: Store,
    keys: CloudKeys,
    *,
    community_id: str,
    device_id: str,
    role: str,
    name: str,
    location: str = "",
    compartments: list[tuple[str, str]] | None = None,
) -> DeviceIdentity:
    """Register a device (idempotent) and return the identity to install on it."""
    if not is_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    for compartment, size in compartments or []:
        if not is_compartment_name(compartment) or size not in ("S", "M", "L"):
            raise ValueError(f"invalid compartment {compartment!r} of size {size!r}")
    with store.write() as db:
        db.execute(
            "INSERT INTO devices (id, community_id, role, name, location) VALUES (?,?,?,?,?)"
            " ON CONFLICT (id) DO NOTHING",
            (device_id, community_id, role, name, location),
        )
        for compartment, size in compartments or []:
            db.execute(
                "INSERT INTO compartments (device_id, name, size) VALUES (?,?,?)"
                " ON CONFLICT DO NOTHING",
                (device_id, compartment, size),
            )
    return DeviceIdentity(
        device_id=device_id,
        cloud_keys={keys.key_id: keys.public_key},
        code_hash_key=keys.device_code_key(device_id),
    )
