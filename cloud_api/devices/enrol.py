"""Enrolment: register a device and its compartments, and produce its identity file.

The full enrolment flow (one-time tokens, per-device broker credentials, revocation) is issue #11;
this is the seam it extends.
"""

from __future__ import annotations

import hashlib
import secrets

from cloud_api.keys import CloudKeys
from cloud_api.store import Store, StorePort
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


def token_hash(token: str) -> str:
    """What the cloud keeps of a terminal's HTTP token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_terminal_token(store: StorePort, device_id: str) -> str:
    """A new HTTP token for an enrolled terminal (the previous one stops working)."""
    token = secrets.token_urlsafe(32)
    with store.write() as db:
        changed = db.execute(
            "UPDATE devices SET http_token_hash = ? WHERE id = ? AND role = 'terminal'",
            (token_hash(token), device_id),
        ).rowcount
    if changed != 1:
        raise ValueError(f"{device_id} is not an enrolled terminal")
    return token
