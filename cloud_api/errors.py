"""Domain errors of the cloud; one table (:data:`HTTP_STATUS`) maps them to HTTP status codes."""

from __future__ import annotations


class CloudError(Exception):
    """Root of the cloud's domain errors. ``code`` is a stable machine string for clients."""

    code = "error"


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


class DeviceUnavailable(CloudError):
    """The device is not connected; a command cannot be delivered now."""

    code = "device_unavailable"


HTTP_STATUS: dict[type[CloudError], int] = {
    NotFound: 404,
    NotAuthenticated: 401,
    Forbidden: 403,
    Conflict: 409,
    Throttled: 429,
    DeviceUnavailable: 503,
}
