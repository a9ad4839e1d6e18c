"""Live zone occupancy from the zones' occupancy sensors.

A zone is occupied when any of its occupancy sensors says so or counts someone; its count is the sum of the
sensors' people counts; its quality is the worst of those points' qualities (one offline sensor makes the
zone's occupancy ``offline``: the booking app must not offer a room on a guess). ``since`` is when occupied
last flipped. Only devices of kind occupancy-sensor count: a flapper gate's passages are not occupancy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from hub.bus import Bus, Unsubscribe
from hub.events import OccupancyChanged, Quality, StateChanged
from hub.graph import SiteGraph
from hub.site import DeviceKind, PointKind

__all__ = ["OccupancyTracker"]

_ORDER = {Quality.GOOD: 0, Quality.STALE: 1, Quality.BAD: 2, Quality.OFFLINE: 3}


class OccupancyTracker:
    def __init__(self, bus: Bus, graph: SiteGraph) -> None:
        self._bus = bus
        self._graph = graph
        self._zone_of: dict[str, str] = {}
        self._points_of: dict[str, list[str]] = {}
        for p in graph.find_points(kind=(PointKind.OCCUPANCY, PointKind.PEOPLE_COUNT)):
            if graph.devices[p.device].kind is DeviceKind.OCCUPANCY_SENSOR:
                self._zone_of[p.id] = p.zone
                self._points_of.setdefault(p.zone, []).append(p.id)
        self._states: dict[str, tuple[PointKind, object, Quality]] = {}
        self._zones: dict[str, OccupancyChanged] = {}
        self._unsubscribe: Unsubscribe | None = None

    @property
    def zones(self) -> list[str]:
        """Zones that have occupancy sensors."""
        return list(self._points_of)

    def attach(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self._bus.subscribe(StateChanged, self.apply, name="occupancy", maxsize=50_000)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def apply(self, event: StateChanged) -> None:
        zone = self._zone_of.get(event.point)
        if zone is None:
            return
        self._states[event.point] = (self._graph.points[event.point].kind, event.new.value, event.new.quality)
        occupied, count, quality = self._aggregate(zone)
        old = self._zones.get(zone)
        if old is not None and (old.occupied, old.count, old.quality) == (occupied, count, quality):
            return
        since: datetime = event.new.time if old is None or old.occupied != occupied else old.since
        new = OccupancyChanged(
            zone=zone, occupied=occupied, count=count, capacity=self._graph.zones[zone].spec.capacity,
            since=since, quality=quality, context=event.context.child("occupancy"),
        )  # fmt: skip
        self._zones[zone] = new
        self._bus.publish(new)

    def _aggregate(self, zone: str) -> tuple[bool | None, int | None, Quality]:
        occupied: bool | None = None
        count: int | None = None
        quality = Quality.GOOD
        for pid in self._points_of[zone]:
            seen = self._states.get(pid)
            if seen is None:
                continue
            kind, value, q = seen
            quality = max(quality, q, key=_ORDER.__getitem__)
            if kind is PointKind.PEOPLE_COUNT and isinstance(value, int | float) and not isinstance(value, bool):
                count = (count or 0) + int(value)
            elif kind is PointKind.OCCUPANCY and isinstance(value, bool):
                occupied = (occupied or False) or value
        if count is not None:
            occupied = (occupied or False) or count > 0
        return occupied, count, quality

    def get(self, zone: str) -> OccupancyChanged | None:
        return self._zones.get(zone)

    def __iter__(self) -> Iterator[OccupancyChanged]:
        return iter(list(self._zones.values()))
