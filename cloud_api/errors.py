"""Domain errors of the cloud; one table (:data:`HTTP_STATUS`) maps them to HTTP status codes."""

from __future__ import annotations


class CloudError(Exception):
    """Root of the cloud's domain errors. ``code`` is a stable machine string for clients.

    Every 4xx answer has one body, ``{"code", "message", "field"}`` (:func:`error_body`):
    ``field`` names the request field at fault, or is null.
    """

    code = "error"

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class NotFound(CloudError, LookupError):
    """No such thing (or not visible to the caller)."""

    code = "not_found"


class NotAuthenticated(CloudError, PermissionError):
    """No valid session, or wrong credentials."""

    code = "not_authenticated"


class Forbidden(CloudError, PermissionError):
    """Authenticated, but role, community or ownership does not allow it."""

    code = "forbidden"


class Conflict(CloudError):
    """The request contradicts the current state (an invalid transition, a reused key)."""

    code = "conflict"


class Throttled(CloudError):
    """Too many attempts; try again later."""

    code = "throttled"


class Invalid(CloudError, ValueError):
    """The request is well-formed but its values cannot be accepted (422)."""

    code = "invalid"


class DeviceUnavailable(CloudError):
    """The device is not connected; a command cannot be delivered now."""

    code = "device_unavailable"


HTTP_STATUS: dict[type[CloudError], int] = {
    NotFound: 404,
    NotAuthenticated: 401,
    Forbidden: 403,
    Conflict: 409,
    Throttled: 429,
    Invalid: 422,
    DeviceUnavailable: 503,
}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, str | None]:
    """The one body of every error answer."""
    return {"code": code, "message": message, "field": field}
