"""The building graph: containment, devices, points, adjacency, escape routes and the power chain.

Built once from a validated :class:`~hub.site.SiteModel`. Every query is answered from indexes made here,
so automations can ask "all signage of building B" or "what loses power if UPS U fails" on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from hub.site import (
    DOOR_KINDS,
    Building,
    Capability,
    Device,
    DeviceKind,
    DeviceType,
    Floor,
    Point,
    PointKind,
    SiteModel,
    Zone,
)

__all__ = ["DeviceInfo", "PointInfo", "SiteGraph", "ZoneInfo", "point_id"]


def point_id(device: str, point: str) -> str:
    """The site-wide id of a point: ``<device id>.<point id>`` (ids never contain a dot)."""
    return f"{device}.{point}"


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    id: str
    building: str
    floor: str
    spec: Zone

    @property
    def security_level(self) -> int:
        return self.spec.security_level

    @property
    def bookable(self) -> bool:
        return self.spec.bookable


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: str
    kind: DeviceKind
    protocol: str
    building: str
    floor: str
    zone: str
    spec: Device
    type: DeviceType
    points: tuple[str, ...]

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset(self.type.capabilities)


@dataclass(frozen=True, slots=True)
class PointInfo:
    id: str
    device: str
    zone: str
    kind: PointKind
    unit: str | None
    writable: bool
    interval: float | None
    spec: Point


class SiteGraph:
    """Indexes over one site model. Read-only after construction."""

    def __init__(self, model: SiteModel) -> None:
        self.model = model
        self.site_id = model.site.id
        self.buildings: dict[str, Building] = {b.id: b for b in model.buildings}
        self.floors: dict[str, Floor] = {}
        self._building_of_floor: dict[str, str] = {}
        for b in model.buildings:
            for f in b.floors:
                self.floors[f.id] = f
                self._building_of_floor[f.id] = b.id
        self.zones: dict[str, ZoneInfo] = {}
        self.devices: dict[str, DeviceInfo] = {}
        self.points: dict[str, PointInfo] = {}
        self._zones_by_floor: dict[str, list[str]] = defaultdict(list)
        self._adjacent: dict[str, set[str]] = defaultdict(set)
        self._by_kind: dict[DeviceKind, list[str]] = defaultdict(list)
        self._by_zone: dict[str, list[str]] = defaultdict(list)
        self._points_by_kind: dict[PointKind, list[str]] = defaultdict(list)
        self._consumers: dict[str, list[str]] = defaultdict(list)

        for z in model.zones:
            info = ZoneInfo(z.id, self._building_of_floor[z.floor], z.floor, z)
            self.zones[z.id] = info
            self._zones_by_floor[z.floor].append(z.id)
            for other in z.adjacent:
                self._adjacent[z.id].add(other)
                self._adjacent[other].add(z.id)
            for d in z.devices:
                dtype = model.device_types[d.type]
                pids = tuple(point_id(d.id, p.id) for p in dtype.points)
                dev = DeviceInfo(d.id, dtype.kind, d.protocol, info.building, z.floor, z.id, d, dtype, pids)
                self.devices[d.id] = dev
                self._by_kind[dtype.kind].append(d.id)
                self._by_zone[z.id].append(d.id)
                for src in d.powered_by:
                    self._consumers[src].append(d.id)
                for p, pid in zip(dtype.points, pids, strict=True):
                    spec = cast(Point, p)  # the union of point lists iterates as their common base
                    self.points[pid] = PointInfo(pid, d.id, z.id, p.kind, p.unit, p.writable, p.interval, spec)
                    self._points_by_kind[p.kind].append(pid)

    # ------------------------------------------------------------------ containment
    def building_floors(self, building: str) -> list[Floor]:
        return list(self.buildings[building].floors)

    def zones_on(self, floor: str) -> list[ZoneInfo]:
        return [self.zones[z] for z in self._zones_by_floor.get(floor, ())]

    def zones_in(self, building: str) -> list[ZoneInfo]:
        return [z for f in self.buildings[building].floors for z in self.zones_on(f.id)]

    def devices_in(self, zone: str) -> list[DeviceInfo]:
        return [self.devices[d] for d in self._by_zone.get(zone, ())]

    # ------------------------------------------------------------------ queries
    def find_zones(
        self,
        *,
        building: str | None = None,
        floor: str | None = None,
        level: int | None = None,
        bookable: bool | None = None,
    ) -> list[ZoneInfo]:
        """Zones matching every given filter, in site-model order."""
        return [
            z
            for z in self.zones.values()
            if (building is None or z.building == building)
            and (floor is None or z.floor == floor)
            and (level is None or z.security_level == level)
            and (bookable is None or z.bookable == bookable)
        ]

    def find_devices(
        self,
        *,
        kind: DeviceKind | str | Iterable[DeviceKind | str] | None = None,
        building: str | None = None,
        floor: str | None = None,
        zone: str | None = None,
        protocol: str | None = None,
    ) -> list[DeviceInfo]:
        """Devices matching every given filter, e.g. ``find_devices(kind=DeviceKind.SIGNAGE, building=B)``."""
        if kind is None:
            ids: Iterable[str] = self._by_zone[zone] if zone is not None else self.devices
        else:
            kinds = [DeviceKind(kind)] if isinstance(kind, str) else [DeviceKind(k) for k in kind]
            ids = [d for k in kinds for d in self._by_kind.get(k, ())]
        found = (self.devices[d] for d in ids)
        return [
            d
            for d in found
            if (building is None or d.building == building)
            and (floor is None or d.floor == floor)
            and (zone is None or d.zone == zone)
            and (protocol is None or d.protocol == protocol)
        ]

    def find_points(
        self,
        *,
        kind: PointKind | str | Iterable[PointKind | str] | None = None,
        bookable: bool | None = None,
        building: str | None = None,
        writable: bool | None = None,
    ) -> list[PointInfo]:
        """Points matching every filter, e.g. the occupancy points of bookable rooms."""
        if kind is None:
            ids: Iterable[str] = self.points
        else:
            kinds = [PointKind(kind)] if isinstance(kind, str) else [PointKind(k) for k in kind]
            ids = [p for k in kinds for p in self._points_by_kind.get(k, ())]
        found = (self.points[p] for p in ids)
        return [
            p
            for p in found
            if (bookable is None or self.zones[p.zone].bookable == bookable)
            and (building is None or self.zones[p.zone].building == building)
            and (writable is None or p.writable == writable)
        ]

    def adjacent(self, zone: str) -> set[str]:
        """Zones next to ``zone`` (adjacency is symmetric whichever side declared it)."""
        return set(self._adjacent.get(zone, ()))

    def escape_doors(self, zone: str) -> list[DeviceInfo]:
        """The doors on the escape route of ``zone``."""
        return [self.devices[d] for d in self.zones[zone].spec.escape_route]

    def escape_route_doors(self) -> list[DeviceInfo]:
        """Every door that is on some zone's escape route (the doors to release in an emergency)."""
        seen: dict[str, DeviceInfo] = {}
        for z in self.zones.values():
            for d in z.spec.escape_route:
                seen.setdefault(d, self.devices[d])
        return list(seen.values())

    def doors(self) -> list[DeviceInfo]:
        return self.find_devices(kind=DOOR_KINDS)

    # ------------------------------------------------------------------ power chain
    def fed_by(self, device: str) -> list[str]:
        return list(self.devices[device].spec.powered_by)

    def feeds(self, source: str) -> list[str]:
        """Devices directly powered by ``source``."""
        return list(self._consumers.get(source, ()))

    def power_loss(self, failed: str | Iterable[str]) -> list[DeviceInfo]:
        """Devices that lose power if ``failed`` source(s) fail.

        A device with several feeds (A/B) loses power only when *all* of its feeds do; the loss propagates
        down the chain (UPS → PDU → rack equipment). The failed sources themselves are not listed.
        """
        down = {failed} if isinstance(failed, str) else set(failed)
        start = set(down)
        frontier = list(down)
        while frontier:
            src = frontier.pop()
            for consumer in self._consumers.get(src, ()):
                if consumer in down:
                    continue
                if all(f in down for f in self.devices[consumer].spec.powered_by):
                    down.add(consumer)
                    frontier.append(consumer)
        return [self.devices[d] for d in self.devices if d in down and d not in start]

    # ------------------------------------------------------------------ sizes
    def counts(self) -> Mapping[str, int]:
        return {
            "buildings": len(self.buildings),
            "floors": len(self.floors),
            "zones": len(self.zones),
            "devices": len(self.devices),
            "points": len(self.points),
        }
