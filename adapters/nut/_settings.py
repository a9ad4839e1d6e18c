"""NUT settings from the environment (``BMHUB_NUT_*``): credentials and timing. Never in the repo."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["NutSettings"]


class NutSettings(BaseSettings):
    # hide_input_in_errors: a rejected password must not be echoed into a log.
    model_config = SettingsConfigDict(env_prefix="BMHUB_NUT_", extra="ignore", frozen=True, hide_input_in_errors=True)

    username: str | None = Field(default=None, description="Sent as USERNAME to every upsd; unset: anonymous.")
    password: SecretStr | None = Field(default=None, description="Sent as PASSWORD; required with a username.")
    timeout: float = Field(default=5.0, gt=0, le=300, description="Seconds to connect, and for each answer.")
    poll_interval: float | None = Field(
        default=None, gt=0, le=3600, description="Seconds between polls; unset: the smallest interval of the points."
    )

    @field_validator("username", "password")
    @classmethod
    def _one_line(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and (not text or any(c in text for c in "\r\n\0")):
            raise ValueError("must be non-empty, on one line, without NUL")
        return value
