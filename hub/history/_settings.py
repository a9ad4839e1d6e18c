"""History settings from the environment: ``BMHUB_HISTORY_*`` (batching, spool, embedded store) and
``BMHUB_INFLUX_*`` (where InfluxDB is and how to authenticate). Never in the repo: tokens are secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HistorySettings", "InfluxSettings"]


class HistorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMHUB_HISTORY_", extra="ignore", frozen=True)

    backend: Literal["auto", "influxdb", "embedded", "off"] = Field(
        default="auto", description="auto: InfluxDB if BMHUB_INFLUX_URL is set, else the embedded store."
    )
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="Points per write.")
    flush_interval: float = Field(default=1.0, gt=0, le=60, description="Seconds a point may wait for its batch.")
    queue: int = Field(default=200_000, ge=1000, description="Events the bus holds for history before dropping.")
    max_pending: int = Field(
        default=50_000, ge=1, description="Points held in memory while a write is slow; beyond, they go to the spool."
    )
    spool_dir: Path | None = Field(default=None, description="Default: <state dir>/history-spool.")
    spool_budget: ByteSize = Field(
        default=ByteSize(512 * 2**20), description="Disk the spool may use (512MiB, 2GB ...); beyond, oldest dropped."
    )
    retry_max: float = Field(default=30.0, gt=0, le=600, description="Longest wait between tries of a down database.")
    stop_flush: float = Field(default=1.5, gt=0, le=30, description="Seconds a stop tries to write before spooling.")
    stats_interval: float = Field(default=60.0, gt=0, description="Seconds between history_stats points.")
    embedded_path: Path | None = Field(default=None, description="Default: <state dir>/history.sqlite3.")
    retention_days: float = Field(default=7.0, gt=0, description="Days the embedded store keeps.")


class InfluxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMHUB_INFLUX_", extra="ignore", frozen=True)

    url: str | None = Field(default=None, description="http(s)://host:8086; unset: no InfluxDB.")
    api: Literal["v1", "v2"] = Field(default="v1", description="v1: POST /write?db=; v2: /api/v2/write (org, bucket).")
    database: str = Field(default="bmhub", min_length=1, description="v1 database.")
    retention_policy: str | None = Field(default=None, description="v1 retention policy; unset: the default one.")
    username: str | None = Field(default=None, description="v1 user (HTTP basic auth).")
    password: SecretStr | None = None
    token: SecretStr | None = Field(default=None, description="v2 token (v1: sent as 'Token' auth if set).")
    org: str | None = Field(default=None, description="v2 organisation.")
    bucket: str | None = Field(default=None, description="v2 bucket.")
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds for one write, answer included.")
    ca_file: Path | None = Field(default=None, description="CA bundle for an https URL.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use BMHUB_INFLUX_USERNAME/PASSWORD or TOKEN")
        return value.rstrip("/")

    def endpoint(self) -> str:
        """The server and target as logs and status name them (never a credential)."""
        if self.api == "v2":
            return f"{self.url} (v2, org {self.org}, bucket {self.bucket})"
        rp = f", retention policy {self.retention_policy}" if self.retention_policy else ""
        return f"{self.url} (v1, database {self.database}{rp})"
