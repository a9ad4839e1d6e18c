"""BACnet/IP settings from the environment (``BMHUB_BACNET_*``): the hub's own BACnet address and timing."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BacnetSettings"]


class BacnetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMHUB_BACNET_", extra="ignore", frozen=True)

    address: str = Field(
        default="127.0.0.1:0",
        description="The hub's BACnet/IP address as IPv4[/prefix][:port]. The default, an ephemeral port on "
        "loopback, reaches the simulators; on a site use the BACnet interface with its prefix, e.g. "
        "192.0.2.10/24:47808, so Who-Is broadcasts work.",
    )
    instance: int = Field(default=4194300, ge=0, le=4194302, description="The hub's own BACnet device instance.")
    apdu_timeout: float = Field(default=1.0, gt=0, le=60, description="Seconds to wait for one answer.")
    apdu_retries: int = Field(default=1, ge=0, le=5, description="Resends of an unanswered request.")
    default_interval: float = Field(
        default=60.0, gt=0, le=86400, description="Poll period of a device none of whose points has an interval."
    )
    cov_lifetime: int = Field(
        default=300, ge=10, le=86400, description="Seconds a COV subscription lasts; renewed at half of it."
    )
    cov_confirmed: bool = Field(default=True, description="Ask devices for confirmed COV notifications.")
    cov_retry: float = Field(
        default=900.0, gt=0, le=86400, description="Seconds before asking a device that refused COV again."
    )
    max_objects: int = Field(default=16, ge=1, le=200, description="Objects per ReadPropertyMultiple request.")
    default_priority: int = Field(
        default=8, ge=1, le=16, description="Priority of a command that names none (8: manual operator)."
    )
    startup_spread: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="Seconds over which the devices' first COV subscriptions are spread, so a start does not "
        "send every SubscribeCOV of the site at once.",
    )
    concurrency: int = Field(default=16, ge=1, le=256, description="Requests in flight at once across devices.")
