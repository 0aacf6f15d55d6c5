"""The cloud's settings, validated once at start-up (environment ``LINLI_*`` or arguments)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud_api.items.service import Policy


class CloudSettings(BaseSettings):
    """Settings of ``linli cloud``.

    Attributes:
        data_dir: where the store (``cloud.sqlite3``) and ``secrets/`` live.
        host, port: the HTTP listener.
        broker_url: ``mqtt://host:port`` of the broker.
        broker_username, broker_password: the cloud's own broker credential.
        config_refresh_s: how often devices get their configuration re-signed with fresh time.
        pickup_valid_s, dropoff_valid_s, return_valid_s: how long each kind of code is valid.
        jobs_every_s: how often the scheduler looks for due jobs.
    """

    model_config = SettingsConfigDict(env_prefix="LINLI_", extra="ignore")

    data_dir: Path = Path("./linli-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    broker_url: str = "mqtt://127.0.0.1:1883"
    broker_username: str | None = None
    broker_password: str | None = Field(default=None, repr=False)
    config_refresh_s: float = Field(default=600.0, gt=0)
    pickup_valid_s: int = Field(default=48 * 3600, ge=1, le=30 * 86400)
    dropoff_valid_s: int = Field(default=30 * 60, ge=1, le=86400)
    return_valid_s: int = Field(default=48 * 3600, ge=1, le=30 * 86400)
    staleness_s: int = Field(default=86400, ge=1, le=30 * 86400)
    """How long the cloud waits for a silent device's reports before settling an expired or
    cancelled grant without them (docs/decisions/0016-domain-and-settlement.md)."""
    jobs_every_s: float = Field(default=1.0, gt=0, le=3600)

    def policy(self) -> Policy:
        """The item lifecycle's time limits."""
        return Policy(
            pickup_valid_ms=self.pickup_valid_s * 1000,
            dropoff_valid_ms=self.dropoff_valid_s * 1000,
            return_valid_ms=self.return_valid_s * 1000,
            staleness_ms=self.staleness_s * 1000,
        )
