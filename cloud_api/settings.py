"""The cloud's settings, validated once at start-up (environment ``LINLI_*`` or arguments)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloud_api.core.notify import KINDS
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

    model_config = SettingsConfigDict(
        env_prefix="LINLI_", extra="ignore", hide_input_in_errors=True
    )
    """``hide_input_in_errors``: a start-up error must not print the tokens and secrets it was given."""

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
    alert_offline_grace_s: int = Field(default=300, ge=0, le=86400)
    """How long a device may be offline or lost before an ``offline`` alert opens (a restart
    must not page anyone; docs/decisions/0022-alerts.md)."""

    # Valuation (issue #9): auto-approval is off unless a threshold is set; the learned
    # per-category correction is on, within ± correction_bound.
    auto_approve_below: int = Field(default=0, ge=0, le=1000)
    auto_approve_per_day: int = Field(default=3, ge=0, le=100)
    auto_approve_confidence: float = Field(default=0.8, ge=0, le=1)
    corrections_enabled: bool = True
    correction_bound: float = Field(default=0.2, gt=0, lt=1)
    photos_min: int = Field(default=1, ge=1, le=10)

    # --- metrics (issue #10; docs/decisions/0023-metrics.md) -----------------------------------
    metrics_token: str = Field(default="", repr=False)
    """The bearer token Prometheus must send to ``GET /metrics`` (``LINLI_METRICS_TOKEN``).
    Empty (the default): no metrics, the route answers 404. Otherwise at least 32 printable
    characters without spaces, e.g. ``openssl rand -hex 32``."""

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_is_strong(cls, value: str) -> str:
        """A short, spaced or placeholder token stops start-up (never a guessable one)."""
        if value and (len(value) < 32 or not all("!" <= ch <= "~" for ch in value)):
            raise ValueError(
                "LINLI_METRICS_TOKEN must be empty (metrics off) or at least 32 printable"
                " characters without spaces (openssl rand -hex 32)"
            )
        return value

    def policy(self) -> Policy:
        """The item lifecycle's time limits."""
        return Policy(
            pickup_valid_ms=self.pickup_valid_s * 1000,
            dropoff_valid_ms=self.dropoff_valid_s * 1000,
            return_valid_ms=self.return_valid_s * 1000,
            staleness_ms=self.staleness_s * 1000,
        )

    # --- notifications (issue #8; docs/decisions/0017-notifications.md) --------------------------
    notify_channel: Literal["log", "sms", "wechat"] = "log"
    """How residents are reached: ``log`` (the demo: ``<data_dir>/notifications.log.jsonl`` and
    the log, for everyone), ``sms`` (everyone by SMS), ``wechat`` (residents who chose WeChat and
    have an openid by template message, everyone else by SMS: needs the SMS settings too)."""
    sms_url: str | None = None
    """The SMS gateway's endpoint, POSTed ``{to, text, client_ref}`` as JSON (https, or http to
    this machine)."""
    sms_token: str | None = Field(default=None, repr=False)
    """The gateway's bearer token."""
    wechat_appid: str | None = None
    wechat_secret: str | None = Field(default=None, repr=False)
    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_templates: dict[str, str] = Field(default_factory=dict)
    """Template id by notification kind (every kind), e.g. ``{"new_code": "..."}``."""
    quiet_start: str = Field(default="21:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_end: str = Field(default="07:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    """Quiet hours, local time (UTC+8): messages that are not urgent wait until they end."""

    @model_validator(mode="after")
    def _notify_channel_is_configured(self) -> CloudSettings:
        """A configured channel missing its settings stops start-up (never a silent fallback)."""
        problems: list[str] = []
        if self.notify_channel in ("sms", "wechat"):
            problems += _missing(self, "sms_url", "sms_token")
            if self.sms_url:
                problems += _insecure_url("LINLI_SMS_URL", self.sms_url)
        if self.notify_channel == "wechat":
            problems += _missing(self, "wechat_appid", "wechat_secret")
            problems += _insecure_url("LINLI_WECHAT_BASE_URL", self.wechat_base_url)
            absent = [kind for kind in KINDS if not self.wechat_templates.get(kind)]
            if absent:
                problems.append(
                    f"LINLI_WECHAT_TEMPLATES lacks a template id for {', '.join(absent)}"
                )
        unknown = sorted(set(self.wechat_templates) - set(KINDS))
        if unknown:
            problems.append(f"LINLI_WECHAT_TEMPLATES names unknown kinds {', '.join(unknown)}")
        if problems:
            raise ValueError(
                f"LINLI_NOTIFY_CHANNEL={self.notify_channel} is not configured: "
                + "; ".join(problems)
            )
        return self


PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "token", "xxx", "todo", "test"})


def _missing(settings: CloudSettings, *names: str) -> list[str]:
    problems = []
    for name in names:
        value = getattr(settings, name)
        if not value:
            problems.append(f"LINLI_{name.upper()} is not set")
        elif value.strip().lower() in PLACEHOLDER_SECRETS:
            problems.append(f"LINLI_{name.upper()} is a placeholder")
    return problems


def _insecure_url(name: str, url: str) -> list[str]:
    """Phones and codes travel in these requests: https, or plain http to this machine only."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return []
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return []
    return [f"{name} must be an https URL (http only to this machine)"]
