"""Environment settings (``BMHUB_*``): where things are and how long to wait. Never in site_model.yaml:
these differ per machine, and secrets (broker passwords, database tokens) must stay out of the repo."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "default_state_dir"]


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/bmhub`` or ``~/.local/state/bmhub``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bmhub"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMHUB_", extra="ignore", frozen=True)

    site_model: Path | None = Field(default=None, description="Site model file; default: see `bmhub --help`.")
    state_dir: Path = Field(default_factory=default_state_dir, description="Persisted mode, spools, caches.")
    log_level: str = "INFO"
    start_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a stage to be ready.")
    stop_timeout: float = Field(default=5.0, gt=0, description="Seconds for the whole staged shutdown.")
    staleness_check: float = Field(default=5.0, gt=0, description="Seconds between staleness scans.")
    status_interval: float = Field(default=5.0, gt=0, description="Seconds between status.json snapshots.")
    api: bool = Field(default=True, description="Serve the HTTP API and status page.")
    api_host: str = Field(default="127.0.0.1", description="Address of the HTTP API; loopback unless you mean it.")
    api_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP API; taken or 0: any free.")
