"""Identifiers: device ids, boot ids, grant and command ids.

Ids are opaque strings. Device ids appear in MQTT topics and file names, so they are restricted to
lower-case letters, digits and dashes (3 to 63 characters), checked by :data:`DEVICE_ID_PATTERN`.
"""

from __future__ import annotations

import re
import secrets

DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)

COMPARTMENT_PATTERN = r"^[A-Z0-9]{1,8}$"
_COMPARTMENT_RE = re.compile(COMPARTMENT_PATTERN)


def is_device_id(value: str) -> bool:
    """Tell whether ``value`` is a well-formed device id (safe in a topic and a file name)."""
    return bool(_DEVICE_ID_RE.match(value))


def is_compartment_name(value: str) -> bool:
    """Tell whether ``value`` is a well-formed compartment name such as ``A1``."""
    return bool(_COMPARTMENT_RE.match(value))


def new_id(prefix: str) -> str:
    """Return a random, URL-safe id such as ``grt_3k9V...`` (128 bits of randomness)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def new_boot_id() -> str:
    """Return a fresh boot id: 12 hex characters, new at every start of a device daemon."""
    return secrets.token_hex(6)
