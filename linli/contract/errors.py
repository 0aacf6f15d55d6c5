"""Errors raised when a payload breaks the contract.

Every error carries a short machine ``reason`` (carried in ``res`` and ``cfg/reported`` messages and
in logs) and a human message. None of them ever includes a payload's contents, which may hold codes.
"""

from __future__ import annotations


class ContractError(ValueError):
    """A payload or topic does not satisfy the contract. Root of this package's errors."""

    reason = "malformed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UnknownTopic(ContractError):
    """The topic is not in the registry."""

    reason = "unknown_topic"


class PayloadTooLarge(ContractError):
    """The payload exceeds :data:`linli.contract.topics.MAX_PAYLOAD_BYTES`."""

    reason = "too_large"


class MalformedPayload(ContractError):
    """Not JSON, not an object, or a field is missing or of the wrong type."""

    reason = "malformed"


class UnsupportedVersion(ContractError):
    """The payload's ``v`` is not a contract version this side speaks."""

    reason = "unsupported_version"


class DeviceMismatch(ContractError):
    """The device id in the payload is not the one in the topic (a device speaking for another)."""

    reason = "wrong_device"


class BadSignature(ContractError):
    """The signature does not verify against the pinned cloud key, or the signed kind is wrong."""

    reason = "bad_signature"
