"""Where an MQTT broker is, as every daemon is told by its settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class BrokerAddress:
    """A broker's host and port, and this client's own credentials (never logged).

    Example:
        >>> BrokerAddress.from_url("mqtt://127.0.0.1:1884").port
        1884
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(
        cls, url: str, username: str | None = None, password: str | None = None
    ) -> BrokerAddress:
        """Parse ``mqtt://host:port`` (credentials come separately, never in the URL)."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError(f"broker URL must look like mqtt://host:port, not {url!r}")
        if parts.username or parts.password:
            raise ValueError("put broker credentials in settings, not in the URL")
        return cls(parts.hostname, parts.port or 1883, username, password)

    @property
    def url(self) -> str:
        """The URL without credentials."""
        return f"mqtt://{self.host}:{self.port}"
