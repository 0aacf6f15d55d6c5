"""The cloud's secrets: the Ed25519 signing key and the code secret, kept outside the store.

Both live in ``<data dir>/secrets/`` with mode 0600, created on first start. The store (SQLite)
never holds them, so a copy of the database cannot sign commands or derive codes
(docs/decisions/0005-key-model.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from linli.codes import derive_device_code_key
from linli.contract import public_key_bytes


@dataclass(frozen=True)
class CloudKeys:
    """The signing key (with its id) and the code secret."""

    signing_key: Ed25519PrivateKey = field(repr=False)
    code_secret: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        """A short id derived from the public key, carried in every envelope."""
        return "cloud-" + hashlib.sha256(self.public_key).hexdigest()[:12]

    @property
    def public_key(self) -> bytes:
        """The raw public key devices pin."""
        return public_key_bytes(self.signing_key)

    @property
    def ledger_salt_secret(self) -> bytes:
        """The secret the ledger's leaf salts are derived from (HMAC of the code secret with
        its own label): a resident is handed the salts of their own entries only."""
        return hmac.new(self.code_secret, b"linli ledger leaf salts v1", "sha256").digest()

    @property
    def totp_seal_key(self) -> bytes:
        """The AES-256-GCM key staff TOTP secrets are sealed with in the store (HMAC of the code
        secret with its own label): a copy of the database alone cannot produce codes."""
        return hmac.new(self.code_secret, b"linli totp seal v1", "sha256").digest()

    @property
    def page_secret(self) -> bytes:
        """The secret the resident pages derive their CSRF tokens from (HMAC of the code secret
        with its own label)."""
        return hmac.new(self.code_secret, b"linli pages csrf v1", "sha256").digest()

    def device_code_key(self, device_id: str) -> bytes:
        """The key a device hashes entered codes with."""
        return derive_device_code_key(self.code_secret, device_id)


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def load_or_create_keys(secrets_dir: Path) -> CloudKeys:
    """Load the cloud's keys, creating them (mode 0600) on first start."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    key_path = secrets_dir / "signing-key.pem"
    code_path = secrets_dir / "code-secret.bin"
    if not key_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        _write_secret(key_path, pem)
    if not code_path.exists():
        _write_secret(code_path, secrets.token_bytes(32))
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{key_path} is not an Ed25519 key")
    code_secret = code_path.read_bytes()
    if len(code_secret) < 32:
        raise SystemExit(f"{code_path} is shorter than 32 bytes")
    return CloudKeys(signing_key=key, code_secret=code_secret)
