"""Cross-reference checks on a structurally valid site model.

Each check yields problems with the YAML path of the offending value, so the loader can attach the line.
All checks run; nothing stops at the first finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.errors import Problem
from hub.site._model import (
    DOOR_KINDS,
    POWER_SOURCE_KINDS,
    BacnetDevice,
    BacnetPoint,
    Capability,
    DeviceKind,
    ModbusDevice,
    ModbusPoint,
    MqttDevice,
    MqttPoint,
    NutDevice,
    NutPoint,
    PointKind,
    SiteModel,
)
from hub.yamlsrc import SourceMap

__all__ = ["check_site"]

Path = tuple[str | int, ...]


def check_site(model: SiteModel, smap: SourceMap) -> list[Problem]:
    """Every cross-reference problem and warning in ``model``."""
    found: list[Problem] = []
    for path, message, warning in _findings(model):
        found.append(smap.problem(path, message, warning=warning))
    return found


def _findings(m: SiteModel) -> Iterator[tuple[Path, str, bool]]:
    yield from _unique_ids(m)
    yield from _type_points(m)
    floors = {f.id for b in m.buildings for f in b.floors}
    zones = {z.id for z in m.zones}
    devices = {d.id: d for z in m.zones for d in z.devices}

    def kind_of(device_id: str) -> DeviceKind | None:
        dev = devices.get(device_id)
        t = m.device_types.get(dev.type) if dev else None
        return t.kind if t else None

    for zi, zone in enumerate(m.zones):
        zp: Path = ("zones", zi)
        if zone.floor not in floors:
            yield (*zp, "floor"), f"unknown floor {zone.floor!r}", False
        for ai, other in enumerate(zone.adjacent):
            if other == zone.id:
                yield (*zp, "adjacent", ai), "a zone cannot be adjacent to itself", False
            elif other not in zones:
                yield (*zp, "adjacent", ai), f"unknown zone {other!r}", False
        for ei, door in enumerate(zone.escape_route):
            kind = kind_of(door)
            if door not in devices:
                yield (*zp, "escape_route", ei), f"unknown device {door!r}", False
            elif kind is not None and kind not in DOOR_KINDS:
                yield (*zp, "escape_route", ei), f"{door!r} is a {kind.value}, not a door", False
        if zone.bookable and zone.capacity is None:
            yield (*zp, "capacity"), "a bookable zone needs a capacity", False
        if zone.bookable and not _has_occupancy_point(m, zone.devices):
            yield (*zp, "bookable"), "bookable zone has no occupancy sensor: live availability will be unknown", True
        for di, dev in enumerate(zone.devices):
            dp: Path = (*zp, "devices", di)
            dtype = m.device_types.get(dev.type)
            if dtype is None:
                yield (*dp, "type"), f"unknown device type {dev.type!r}", False
                continue
            if dtype.protocol != dev.protocol:
                yield (*dp, "protocol"), f"device type {dev.type!r} speaks {dtype.protocol}, not {dev.protocol}", False
            if (
                zone.security_level == 4
                and dtype.kind in (DeviceKind.DOOR_READER, DeviceKind.FLAPPER_GATE)
                and Capability.BIOMETRIC not in dtype.capabilities
            ):
                what = "reader" if dtype.kind == DeviceKind.DOOR_READER else "flapper gate"
                yield (
                    (*dp, "type"),
                    f"zone {zone.id!r} is security level 4 but {what} type {dev.type!r} cannot do biometrics",
                    False,
                )
            for pi, src in enumerate(dev.powered_by):
                if src not in devices:
                    yield (*dp, "powered_by", pi), f"unknown device {src!r}", False
                elif (k := kind_of(src)) is not None and k not in POWER_SOURCE_KINDS:
                    yield (*dp, "powered_by", pi), f"{src!r} is a {k.value}, not a power source", False
    yield from _power_cycles(m)
    yield from _device_addresses(m)


def _unique_ids(m: SiteModel) -> Iterator[tuple[Path, str, bool]]:
    def dupes(items: list[tuple[Path, str]], what: str) -> Iterator[tuple[Path, str, bool]]:
        first: dict[str, Path] = {}
        for path, ident in items:
            if ident in first:
                yield (*path, "id"), f"duplicate {what} id {ident!r} (first at {_fmt(first[ident])})", False
            else:
                first[ident] = path

    yield from dupes([(("buildings", i), b.id) for i, b in enumerate(m.buildings)], "building")
    yield from dupes(
        [(("buildings", i, "floors", j), f.id) for i, b in enumerate(m.buildings) for j, f in enumerate(b.floors)],
        "floor",
    )
    yield from dupes([(("zones", i), z.id) for i, z in enumerate(m.zones)], "zone")
    yield from dupes(
        [(("zones", i, "devices", j), d.id) for i, z in enumerate(m.zones) for j, d in enumerate(z.devices)],
        "device",
    )
    for name, t in m.device_types.items():
        yield from dupes([(("device_types", name, "points", i), p.id) for i, p in enumerate(t.points)], "point")


def _fmt(path: Path) -> str:
    from hub.yamlsrc import format_path

    return format_path(path)


def _has_occupancy_point(m: SiteModel, devices: list[Any]) -> bool:
    for dev in devices:
        t = m.device_types.get(dev.type)
        if t is not None and any(p.kind in (PointKind.OCCUPANCY, PointKind.PEOPLE_COUNT) for p in t.points):
            return True
    return False


def _type_points(m: SiteModel) -> Iterator[tuple[Path, str, bool]]:
    """Two points of one device type must not read the same protocol address."""
    for name, t in m.device_types.items():
        seen: dict[Any, int] = {}
        for i, p in enumerate(t.points):
            keys: list[Any]
            if isinstance(p, BacnetPoint):
                keys = [(p.object, p.property)]
            elif isinstance(p, ModbusPoint):
                keys = [(p.table, p.address + k) for k in range(p.width)]
            elif isinstance(p, MqttPoint):
                keys = [(p.topic, p.field)]
            elif isinstance(p, NutPoint):
                keys = [p.var]
            for key in keys:
                if key in seen:
                    other = t.points[seen[key]].id
                    yield ("device_types", name, "points", i), f"address collides with point {other!r}", False
                    break
                seen[key] = i


def _device_addresses(m: SiteModel) -> Iterator[tuple[Path, str, bool]]:
    """Two devices must not answer to the same protocol address."""
    seen: dict[Any, str] = {}
    for zi, zone in enumerate(m.zones):
        for di, dev in enumerate(zone.devices):
            key: Any
            if isinstance(dev, BacnetDevice):
                key, field, shown = ("bacnet", dev.instance), "instance", f"BACnet instance {dev.instance}"
            elif isinstance(dev, ModbusDevice):
                key = ("modbus", dev.host, dev.port, dev.unit_id)
                field, shown = "unit_id", f"Modbus {dev.host}:{dev.port} unit {dev.unit_id}"
            elif isinstance(dev, MqttDevice):
                key, field, shown = ("mqtt", dev.topic), "topic", f"MQTT topic {dev.topic!r}"
            elif isinstance(dev, NutDevice):
                key, field, shown = ("nut", dev.host, dev.port, dev.ups), "ups", f"NUT ups {dev.ups}@{dev.host}"
            if key in seen:
                yield ("zones", zi, "devices", di, field), f"{shown} already used by device {seen[key]!r}", False
            else:
                seen[key] = dev.id


def _power_cycles(m: SiteModel) -> Iterator[tuple[Path, str, bool]]:
    feeds = {d.id: d.powered_by for z in m.zones for d in z.devices}
    where = {d.id: ("zones", zi, "devices", di) for zi, z in enumerate(m.zones) for di, d in enumerate(z.devices)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, trail: list[str]) -> Iterator[tuple[Path, str, bool]]:
        state[node] = 1
        for src in feeds.get(node, []):
            if state.get(src) == 1:
                cycle = [*trail[trail.index(src) :], node, src] if src in trail else [node, src]
                yield (*where[node], "powered_by"), "power chain loops: " + " → ".join(cycle), False
            elif src in feeds and state.get(src) is None:
                yield from visit(src, [*trail, node])
        state[node] = 2

    for dev in feeds:
        if state.get(dev) is None:
            yield from visit(dev, [])
