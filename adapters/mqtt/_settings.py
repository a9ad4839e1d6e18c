"""MQTT settings from the environment (``BMHUB_MQTT_*``): broker, credentials, TLS. Never in the repo."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MqttSettings"]


class MqttSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMHUB_MQTT_", extra="ignore", frozen=True)

    host: str | None = Field(default=None, description="Broker host; unset: run the embedded broker.")
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = Field(default=False, description="Connect with TLS (port 8883 by convention).")
    ca_file: Path | None = Field(default=None, description="CA bundle for the broker's certificate.")
    cert_file: Path | None = Field(default=None, description="Client certificate, for brokers that ask for one.")
    key_file: Path | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str | None = Field(default=None, description="Default bmhub-<site id>; stable for a persistent session.")
    prefix: str = Field(default="bmhub", description="Topic root of the outward contract: <prefix>/<site>/...")
    keepalive: int = Field(default=30, ge=5, le=3600)
    max_payload: int = Field(default=65536, ge=256, description="Bytes; larger messages are rejected.")
    command_ttl: float = Field(default=300.0, gt=0, description="Seconds a queued command may wait for a broker.")
    outbox_size: int = Field(default=10000, ge=1, description="Commands queued while the broker is away.")
    ha_discovery: bool = Field(default=False, description="Publish Home Assistant MQTT discovery messages.")
    ha_prefix: str = Field(default="homeassistant", description="Home Assistant's discovery prefix.")
    broker_port: int = Field(default=1883, ge=0, le=65535, description="Embedded broker port; taken or 0: any free.")
