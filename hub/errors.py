"""The hub's exceptions: one root, and the type chooses what a supervisor does.

    HubError
    ├── ConfigError            a site model or setting is wrong; carries every problem found (no retry)
    ├── AdapterError
    │   ├── AdapterNotReady    peer unreachable or busy: retry with backoff
    │   ├── AdapterAuthError   credentials refused: stop retrying, say why
    │   └── DeviceError        one device answered with an error (Modbus exception, BACnet reject ...)
    ├── AutomationError
    └── CommandRejected        a command failed validation or policy before reaching any device

Library exceptions are converted at the adapter boundary with ``raise ... from exc`` so the rest of the hub
sees one error channel. Messages name the object, the value and the rule; data stays on attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AdapterAuthError",
    "AdapterError",
    "AdapterNotReady",
    "AutomationError",
    "CommandRejected",
    "ConfigError",
    "DeviceError",
    "HubError",
    "Problem",
]


class HubError(Exception):
    """Root of every error the hub raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding in a configuration file: where, what field, and which rule it breaks."""

    file: str
    line: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.path}:" if self.path else ""
        tag = " warning:" if self.severity == "warning" else ""
        return f"{where}:{tag}{field} {self.message}"


class ConfigError(HubError):
    """A configuration is invalid. ``problems`` holds every error found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        head = f"{len(errors)} error(s) in configuration"
        super().__init__("\n".join([head, *(str(p) for p in errors)]))


class AdapterError(HubError):
    """An adapter could not do its job."""


class AdapterNotReady(AdapterError):
    """The peer is unreachable, busy or not yet up; the supervisor retries with backoff."""


class AdapterAuthError(AdapterError):
    """The peer refused our credentials; retrying will not help until someone changes the settings."""


class DeviceError(AdapterError):
    """A device answered a request with an error (a Modbus exception response, a BACnet error or reject)."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"device {device}: {message}")


class AutomationError(HubError):
    """An automation failed in a way it could not handle itself."""


class CommandRejected(HubError):
    """A command was refused before it reached a device (unknown point, not writable, out of range, policy)."""

    def __init__(self, point: str, reason: str) -> None:
        self.point = point
        self.reason = reason
        super().__init__(f"command to {point} rejected: {reason}")
