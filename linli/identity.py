"""A device's identity file: what enrolment gives it (``identity.json``, mode 0600).

It holds the device id, the cloud public keys the device pins (by key id), and the key the device
hashes entered codes with. The cloud writes it at enrolment; the device only reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from linli.ids import is_device_id


class IdentityError(ValueError):
    """The identity file is missing or invalid."""


@dataclass(frozen=True)
class DeviceIdentity:
    """Who a device is and whom it trusts."""

    device_id: str
    cloud_keys: Mapping[str, bytes]
    code_hash_key: bytes = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> DeviceIdentity:
        """Read an identity file.

        Raises:
            IdentityError: missing, unreadable or malformed (the message never shows the keys).
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            identity = cls(
                device_id=str(raw["device_id"]),
                cloud_keys={str(k): bytes.fromhex(v) for k, v in raw["cloud_keys"].items()},
                code_hash_key=bytes.fromhex(raw["code_hash_key"]),
            )
        except FileNotFoundError:
            raise IdentityError(f"no identity at {path}: enrol this device first") from None
        except OSError as exc:  # a directory, no permission, an I/O error
            raise IdentityError(
                f"identity file {path} is unreadable ({type(exc).__name__})"
            ) from None
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise IdentityError(f"identity file {path} is invalid ({type(exc).__name__})") from None
        if not is_device_id(identity.device_id) or not identity.cloud_keys:
            raise IdentityError(f"identity file {path} is invalid (device id or keys)")
        if (
            any(len(k) != 32 for k in identity.cloud_keys.values())
            or len(identity.code_hash_key) < 32
        ):
            raise IdentityError(f"identity file {path} is invalid (key length)")
        return identity

    def save(self, path: Path) -> None:
        """Write the file atomically, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "device_id": self.device_id,
            "cloud_keys": {k: v.hex() for k, v in self.cloud_keys.items()},
            "code_hash_key": self.code_hash_key.hex(),
        }
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
