"""Eight-digit locker codes: derived, shown again, and hashed for devices.

A code is ``HMAC-SHA256(code_secret, grant_id [":" n])`` reduced to 8 decimal digits, so the cloud can
show the owner the same code again without storing it (docs/decisions/0006-codes.md). ``n`` is a
small counter the cloud bumps when a derived code collides with another live code of the same bank.
Devices never see codes: they receive ``code_hash`` = ``HMAC-SHA256(device_code_key, code)``, with a
key given to each device at enrolment, and compare hashes in constant time.

While a bank is guarded against guessing (docs/security.md) a resident enters the code followed
by the last four digits of the phone the code was sent to; devices then compare ``guard_hash`` =
``HMAC-SHA256(device_code_key, "guard:" code ":" digits)``.
"""

from __future__ import annotations

import hashlib
import hmac

CODE_LENGTH = 8
GUARD_DIGITS = 4
_CODE_SPACE = 10**CODE_LENGTH


def derive_code(code_secret: bytes, grant_id: str, counter: int = 0) -> str:
    """Derive the 8-digit code of a grant.

    Args:
        code_secret: the cloud's code secret (at least 32 bytes, kept outside the store).
        grant_id: the grant the code opens.
        counter: collision counter; 0 unless an earlier value collided with a live code.

    Returns:
        Eight decimal digits, leading zeros kept.
    """
    if len(code_secret) < 32:
        raise ValueError("code secret must be at least 32 bytes")
    message = grant_id if counter == 0 else f"{grant_id}:{counter}"
    digest = hmac.new(code_secret, message.encode(), hashlib.sha256).digest()
    # 64 bits reduced mod 10^8: bias below 10^8 / 2^64, i.e. negligible.
    return f"{int.from_bytes(digest[:8], 'big') % _CODE_SPACE:0{CODE_LENGTH}d}"


def derive_device_code_key(code_secret: bytes, device_id: str) -> bytes:
    """Derive the key a device uses to hash entered codes (given to it at enrolment)."""
    return hmac.new(code_secret, f"device-code-key:{device_id}".encode(), hashlib.sha256).digest()


def hash_code(device_code_key: bytes, code: str) -> str:
    """Hash a code with a device's key, as carried in grant lists (hex)."""
    return hmac.new(device_code_key, code.encode(), hashlib.sha256).hexdigest()


def normalize_code(entered: str) -> str | None:
    """Return the 8 digits of an entered code, or None if it is not 8 digits.

    Spaces and dashes are ignored (a resident may copy ``1234 5678``); anything else is refused.
    """
    split = split_entry(entered)
    return split[0] if split is not None and split[1] is None else None


def guard_hash(device_code_key: bytes, code: str, phone_digits: str) -> str:
    """Hash a code and the last four digits of its holder's phone, for guarded banks (hex)."""
    message = f"guard:{code}:{phone_digits}"
    return hmac.new(device_code_key, message.encode(), hashlib.sha256).hexdigest()


def phone_digits(phone: str) -> str | None:
    """The last four digits of a phone number, or None if it has fewer than four digits."""
    digits = "".join(ch for ch in phone if ch.isascii() and ch.isdigit())
    return digits[-GUARD_DIGITS:] if len(digits) >= GUARD_DIGITS else None


def split_entry(entered: str) -> tuple[str, str | None] | None:
    """Split a keypad entry into the code and, for a guarded entry, the phone's last four digits.

    Eight digits are a code; twelve are a code followed by the phone digits. Spaces and dashes
    are ignored; anything else is None (malformed).

    Example:
        >>> split_entry("1234 5678"), split_entry("12345678-0042"), split_entry("123")
        (('12345678', None), ('12345678', '0042'), None)
    """
    digits = entered.replace(" ", "").replace("-", "")
    if not digits.isascii() or not digits.isdigit():
        return None
    if len(digits) == CODE_LENGTH:
        return digits, None
    if len(digits) == CODE_LENGTH + GUARD_DIGITS:
        return digits[:CODE_LENGTH], digits[CODE_LENGTH:]
    return None
