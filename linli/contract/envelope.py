"""Ed25519-signed envelopes for commands and configuration.

The cloud signs the *canonical JSON* of a body (keys sorted, no spaces, UTF-8) with its Ed25519
key; devices pin the cloud's public key and verify before they parse. The body names its
``kind`` (``cmd`` or ``cfg``) and target ``device_id``, so a signature made for one purpose or one
device cannot be replayed as another. Everything lives in the payload: MQTT 3.1.1 suffices.

Example:
    >>> key = Ed25519PrivateKey.generate()
    >>> payload = sign_body(key, "cloud-1", {"kind": "cmd", "device_id": "locker-a"})
    >>> verify_envelope(payload, {"cloud-1": public_key_bytes(key)}, kind="cmd")["device_id"]
    'locker-a'
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ValidationError

from linli.contract.errors import BadSignature, MalformedPayload
from linli.contract.models import SignedEnvelope
from linli.contract.topics import decode_json


def canonical_json(obj: object) -> bytes:
    """Serialize ``obj`` the one way both sides sign and verify."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of a private key's public half (what devices pin)."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_body(key: Ed25519PrivateKey, key_id: str, body: Mapping[str, object] | BaseModel) -> bytes:
    """Sign a body and return the envelope's JSON payload."""
    raw = body.model_dump(mode="json") if isinstance(body, BaseModel) else dict(body)
    sig = key.sign(canonical_json(raw))
    return canonical_json({"v": 1, "key_id": key_id, "body": raw, "sig": _b64(sig)})


def verify_envelope(
    payload: bytes, trusted_keys: Mapping[str, bytes], *, kind: str
) -> dict[str, object]:
    """Verify an envelope and return its body, still unparsed.

    Args:
        payload: the raw MQTT payload.
        trusted_keys: pinned public keys (32 raw bytes) by key id.
        kind: the kind the body must declare (``cmd`` or ``cfg``).

    Raises:
        MalformedPayload: not an envelope at all.
        BadSignature: unknown key id, a signature that does not verify, or the wrong kind.
    """
    data = decode_json(payload)
    try:
        envelope = SignedEnvelope.model_validate(data)
    except ValidationError as exc:
        raise MalformedPayload(f"not a signed envelope ({exc.error_count()} errors)") from exc
    public = trusted_keys.get(envelope.key_id)
    if public is None:
        raise BadSignature("signed with a key this device does not trust")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            _unb64(envelope.sig), canonical_json(envelope.body)
        )
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature("signature does not verify") from exc
    if envelope.body.get("kind") != kind:
        raise BadSignature(f"signed body is not a {kind}")
    return dict(envelope.body)
