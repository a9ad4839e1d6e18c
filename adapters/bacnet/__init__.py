"""BACnet/IP: AHUs, VAVs, FCUs, lighting controllers, the J-ALERT contact module and the fire panels.

One bacpypes3 application for the hub reads every BACnet device of the site model (ReadPropertyMultiple),
subscribes to COV where devices allow it, writes commands at BACnet priorities and reads priority arrays.
``adapters.bacnet.discover`` finds devices and their objects for ``bmhub bacnet discover``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from adapters.bacnet._bridge import BacnetBridge, PointMode
from adapters.bacnet._discover import FoundDevice, FoundObject, discover, snippet
from adapters.bacnet._settings import BacnetSettings
from hub.adapter import AdapterContext, Stage
from hub.supervisor import Service

__all__ = [
    "BacnetBridge",
    "BacnetSettings",
    "FoundDevice",
    "FoundObject",
    "PointMode",
    "create",
    "discover",
    "snippet",
]


def create(
    ctx: AdapterContext,
    settings: BacnetSettings | None = None,
    *,
    endpoints: Mapping[str, tuple[str, int]] | None = None,
) -> Sequence[tuple[Stage, Service]]:
    """One bridge for every BACnet device: they share the hub's BACnet/IP address.

    ``endpoints`` maps a device id to the (host, port) to talk to instead of its model address (tests).
    """
    devices = ctx.graph.find_devices(protocol="bacnet")
    if not devices:
        return []
    return [("adapters", BacnetBridge(ctx, devices, settings, endpoints=endpoints))]
