"""The cloud's settings, validated once at start-up (environment ``LINLI_*`` or arguments)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CloudSettings(BaseSettings):
    """Settings of ``linli cloud``.

    Attributes:
        data_dir: where the store (``cloud.sqlite3``) and ``secrets/`` live.
        host, port: the HTTP listener.
        broker_url: ``mqtt://host:port`` of the broker.
        broker_username, broker_password: the cloud's own broker credential.
        config_refresh_s: how often devices get their configuration re-signed with fresh time.
    """

    model_config = SettingsConfigDict(env_prefix="LINLI_", extra="ignore")

    data_dir: Path = Path("./linli-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    broker_url: str = "mqtt://127.0.0.1:1883"
    broker_username: str | None = None
    broker_password: str | None = Field(default=None, repr=False)
    config_refresh_s: float = Field(default=600.0, gt=0)
