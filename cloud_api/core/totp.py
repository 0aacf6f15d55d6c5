"""Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA1, 30 s steps, T0 = 0.

Pure: no clock, no randomness, no I/O. The caller passes the time and the last step it accepted,
and generates secrets itself (the accounts service, with :mod:`secrets`).

A code is accepted once: :func:`verify` returns the step it matched only if that step is later
than ``last_step``, and the caller stores it, so a code seen over a shoulder or replayed from a
log cannot be used again, even within its 30 seconds.

Example:
    >>> secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # b"12345678901234567890", RFC 6238
    >>> totp_at(secret, step_of(59_000), digits=8)
    '94287082'
    >>> verify(secret, totp_at(secret, 1), now_ms=59_000, last_step=0)
    1
    >>> verify(secret, totp_at(secret, 1), now_ms=59_000, last_step=1) is None
    True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

STEP_S = 30
DIGITS = 6
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class SecretError(ValueError):
    """The secret is not valid base32."""


def decode_secret(secret_b32: str) -> bytes:
    """The key bytes of a base32 secret (case, spaces and missing padding tolerated).

    Raises:
        SecretError: not base32, or empty.
    """
    cleaned = secret_b32.replace(" ", "").replace("-", "").upper().rstrip("=")
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        key = base64.b32decode(padded, casefold=False)
    except (binascii.Error, ValueError) as exc:
        raise SecretError("the TOTP secret is not base32") from exc
    if not key:
        raise SecretError("the TOTP secret is empty")
    return key


def step_of(unix_ms: int) -> int:
    """The RFC 6238 time step (``T``) that ``unix_ms`` falls in."""
    return unix_ms // 1000 // STEP_S


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 HOTP of ``counter`` under ``key``, zero-padded to ``digits``."""
    if not 6 <= digits <= 10:
        raise ValueError("digits must be between 6 and 10")
    if counter < 0:
        raise ValueError("the counter cannot be negative")
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def totp_at(secret_b32: str, step: int, digits: int = DIGITS) -> str:
    """The code of ``step`` for a base32 secret."""
    return hotp(decode_secret(secret_b32), step, digits)


def verify(
    secret_b32: str,
    code: str,
    now_ms: int,
    last_step: int,
    window: int = 1,
    digits: int = DIGITS,
) -> int | None:
    """The step ``code`` belongs to, within ``window`` steps of ``now_ms`` and later than
    ``last_step``; None otherwise.

    Every candidate step is compared (in constant time), so the time taken does not depend on
    which step matched, or whether one did.
    """
    key = decode_secret(secret_b32)
    candidate = code.strip().encode()
    if len(candidate) != digits or not candidate.isdigit():
        candidate = b"\x00" * digits  # never equal to a code; still compared below
    now = step_of(now_ms)
    matched: int | None = None
    for step in range(now - window, now + window + 1):
        if step < 0:
            continue
        expected = hotp(key, step, digits).encode()
        if hmac.compare_digest(expected, candidate) and step > last_step:
            matched = step
    return matched


def provisioning_uri(secret: str, account: str, issuer: str = "Linli") -> str:
    """The ``otpauth://`` URI an authenticator app scans (Key Uri Format)."""
    label = _quote(f"{issuer}:{account}")
    return (
        f"otpauth://totp/{label}?secret={_quote(secret.replace(' ', '').upper().rstrip('='))}"
        f"&issuer={_quote(issuer)}&algorithm=SHA1&digits={DIGITS}&period={STEP_S}"
    )


def _quote(text: str) -> str:
    """Percent-encode everything but RFC 3986's unreserved characters."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())
