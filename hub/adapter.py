"""What the runtime hands to protocol adapters, and how it finds them without importing protocol libraries.

Each package ``adapters/<protocol>`` exposes ``create(ctx) -> list[tuple[stage, service]]``. The runtime
imports it only when asked to run that protocol, so a site without BACnet never imports bacpypes3, and
``hub`` itself imports no protocol library.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from hub.bus import Bus
from hub.clock import Clock
from hub.events import Value
from hub.graph import SiteGraph
from hub.occupancy import OccupancyTracker
from hub.settings import Settings
from hub.state import StateStore
from hub.supervisor import Service

__all__ = [
    "ADAPTER_PROTOCOLS",
    "AdapterContext",
    "PriorityArray",
    "PriorityReader",
    "PrioritySlot",
    "Stage",
    "load_adapters",
]

log = logging.getLogger(__name__)

Stage = Literal["core", "history", "adapters", "automations", "api"]

ADAPTER_PROTOCOLS: tuple[str, ...] = ("mqtt", "bacnet", "modbus", "nut")
"""Protocols bmhub bridges; MQTT always runs, because apps read the hub's state over it."""


@dataclass(frozen=True)
class AdapterContext:
    bus: Bus
    graph: SiteGraph
    state: StateStore
    occupancy: OccupancyTracker
    settings: Settings
    clock: Clock


class Detailed(Protocol):
    def details(self) -> dict[str, Any]:
        """Adapter-specific counters for ``bmhub status`` (JSON-ready)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PrioritySlot:
    """One non-empty priority of a commandable point. ``holder`` names the hub's own command that wrote it
    ("automation:energy (lunch break)"); None means another client of the device wrote it."""

    priority: int
    value: Value
    holder: str | None = None
    command_id: str | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityArray:
    """Who holds a commandable point: the highest non-empty priority wins; with none, the relinquish default."""

    point: str
    present_value: Value
    relinquish_default: Value
    active_priority: int | None
    slots: tuple[PrioritySlot, ...]
    status: str | None = None  # status flags that are set ("fault, out-of-service"), if any


@runtime_checkable
class PriorityReader(Protocol):
    """An adapter whose points have priority arrays (BACnet). The API asks it who holds a point."""

    def owns(self, point: str) -> bool: ...

    async def priority_array(self, point: str) -> PriorityArray: ...


AdapterFactory = Callable[[AdapterContext], Sequence[tuple[Stage, Service]]]


def load_adapters(ctx: AdapterContext, protocols: Sequence[str]) -> list[tuple[Stage, Service]]:
    """Import ``adapters.<protocol>`` for each protocol the site uses (MQTT always) and build its services."""
    used = {d.protocol for d in ctx.graph.devices.values()} | {"mqtt"}
    services: list[tuple[Stage, Service]] = []
    for protocol in protocols:
        if protocol not in used:
            continue
        try:
            module = importlib.import_module(f"adapters.{protocol}")
        except ModuleNotFoundError as exc:
            if exc.name != f"adapters.{protocol}":
                raise
            n = sum(1 for d in ctx.graph.devices.values() if d.protocol == protocol)
            log.warning("no %s adapter in this version: its %d device(s) stay unknown", protocol, n)
            continue
        factory: AdapterFactory = module.create
        services.extend(factory(ctx))
    return services
