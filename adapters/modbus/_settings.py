"""Modbus settings from the environment (``BMHUB_MODBUS_*``): timing of requests, reconnects and polls."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ModbusSettings"]


class ModbusSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMHUB_MODBUS_", extra="ignore", frozen=True)

    timeout: float = Field(default=1.0, gt=0, le=60, description="Seconds to wait for one answer (and to connect).")
    retries: int = Field(default=1, ge=0, le=5, description="Resends of an unanswered request before giving up.")
    reconnect_delay: float = Field(
        default=0.5, gt=0, le=60, description="First delay of pymodbus's own reconnect; doubles per failed attempt."
    )
    reconnect_delay_max: float = Field(default=30.0, gt=0, le=600, description="Longest delay between reconnects.")
    default_interval: float = Field(
        default=10.0, gt=0, le=86400, description="Poll period of a device none of whose points has an interval."
    )
    max_gap: int = Field(default=8, ge=0, le=100, description="Unused registers a read may span to save a request.")
    max_bit_gap: int = Field(default=64, ge=0, le=1000, description="Unused coils/inputs a read may span.")
    command_queue: int = Field(default=100, ge=1, description="Commands waiting per gateway; beyond, the oldest fail.")
