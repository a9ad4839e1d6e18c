"""NUT (Network UPS Tools): UPS state from upsd over its TCP protocol (RFC 9271), no library needed."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.nut._bridge import NutBridge
from adapters.nut._client import NutClient, NutConnectionError, NutError, NutResponseError
from adapters.nut._settings import NutSettings
from adapters.nut._status import STATUS_FLAGS, describe_status, parse_status
from hub.adapter import AdapterContext, Stage
from hub.graph import DeviceInfo
from hub.site import NutDevice
from hub.supervisor import Service

__all__ = [
    "STATUS_FLAGS",
    "NutBridge",
    "NutClient",
    "NutConnectionError",
    "NutError",
    "NutResponseError",
    "NutSettings",
    "create",
    "describe_status",
    "parse_status",
]


def create(ctx: AdapterContext, settings: NutSettings | None = None) -> Sequence[tuple[Stage, Service]]:
    """One bridge per upsd (host, port) that the site's NUT devices name, in site-model order."""
    settings = settings or NutSettings()
    servers: dict[tuple[str, int], list[DeviceInfo]] = {}
    for dev in ctx.graph.find_devices(protocol="nut"):
        assert isinstance(dev.spec, NutDevice)  # protocol "nut" devices are NutDevices
        servers.setdefault((dev.spec.host, dev.spec.port), []).append(dev)
    return [("adapters", NutBridge(ctx, host, port, devices, settings)) for (host, port), devices in servers.items()]
