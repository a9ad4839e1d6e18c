"""Home Assistant MQTT discovery for bmhub's zones and points (optional: ``BMHUB_MQTT_HA_DISCOVERY=true``).

One retained device-discovery message per bmhub device and per zone with occupancy sensors, on
``<ha prefix>/device/bmhub_<site>_<id>/config``, whose components read the outward topics of docs/mqtt.md.
Entities are read-only: letting Home Assistant command doors or HVAC is a decision for the site, not a
default. Entity ids come from ``default_entity_id`` (``object_id`` is deprecated since Home Assistant 2025.10).
The messages are re-published when Home Assistant announces itself on ``<ha prefix>/status`` (birth
``online``), after a random delay so a fleet of publishers does not answer at once.
"""

from __future__ import annotations

import json
from typing import Any

from hub.graph import SiteGraph
from hub.site import DeviceKind, PointKind, value_type

__all__ = ["discovery_messages"]

_DEVICE_CLASS = {
    PointKind.TEMPERATURE: "temperature", PointKind.HUMIDITY: "humidity", PointKind.CO2: "carbon_dioxide",
    PointKind.PRESSURE: "pressure", PointKind.ILLUMINANCE: "illuminance", PointKind.POWER: "power",
    PointKind.ENERGY: "energy", PointKind.VOLTAGE: "voltage", PointKind.CURRENT: "current",
    PointKind.FREQUENCY: "frequency", PointKind.POWER_FACTOR: "power_factor",
    PointKind.BATTERY_CHARGE: "battery", PointKind.OCCUPANCY: "occupancy", PointKind.DOOR: "door",
    PointKind.LOCK: "lock", PointKind.FORCED: "tamper", PointKind.ALARM: "problem", PointKind.RUN: "running",
}  # fmt: skip
_UNITS = {"degC": "°C", "degF": "°F", "m3/h": "m³/h"}


def _entity(text: str) -> str:
    return text.replace("-", "_").replace(".", "_")


def discovery_messages(graph: SiteGraph, root: str, ha_prefix: str, version: str) -> list[tuple[str, bytes]]:
    """(topic, retained payload) for every device and occupancy zone of ``graph``."""
    site = graph.site_id
    origin = {"name": "bmhub", "sw": version}
    availability = [{"topic": f"{root}/status", "payload_available": "online", "payload_not_available": "offline"}]
    messages: list[tuple[str, bytes]] = []

    def emit(node: str, device: dict[str, Any], components: dict[str, dict[str, Any]]) -> None:
        payload = {"dev": device, "o": origin, "cmps": components, "availability": availability, "qos": 1}
        topic = f"{ha_prefix}/device/bmhub_{_entity(site)}_{_entity(node)}/config"
        messages.append((topic, json.dumps(payload, ensure_ascii=False).encode()))

    for dev in graph.devices.values():
        components: dict[str, dict[str, Any]] = {}
        for pid in dev.points:
            p = graph.points[pid]
            mapped = getattr(p.spec, "values", None)  # MQTT points may map payload text to booleans
            binary = value_type(p.kind) == "bool" or bool(mapped and all(isinstance(v, bool) for v in mapped.values()))
            platform = "binary_sensor" if binary else "sensor"
            uid = f"bmhub_{_entity(site)}_{_entity(pid)}"
            cmp: dict[str, Any] = {
                "p": platform,
                "name": p.spec.id.replace("-", " "),
                "unique_id": uid,
                "default_entity_id": f"{platform}.{uid}",
                "state_topic": f"{root}/point/{p.device}/{p.spec.id}",
                "value_template": "{{ 'ON' if value_json.value else 'OFF' }}" if binary
                else "{{ value_json.value }}",
            }  # fmt: skip
            if (dc := _DEVICE_CLASS.get(p.kind)) is not None and (binary or dc not in ("occupancy", "door", "lock")):
                cmp["device_class"] = dc
            if not binary and value_type(p.kind) == "number":
                cmp["state_class"] = "total_increasing" if p.kind is PointKind.ENERGY else "measurement"
                if p.unit:
                    cmp["unit_of_measurement"] = _UNITS.get(p.unit, p.unit)
            components[_entity(p.spec.id)] = cmp
        zone = graph.zones[dev.zone]
        ha_device = {
            "ids": [f"bmhub_{_entity(site)}_{_entity(dev.id)}"],
            "name": dev.spec.name or dev.id,
            "mdl": dev.spec.type,
            "mf": dev.type.vendor or "bmhub",
            "sa": zone.spec.name,
        }
        emit(dev.id, ha_device, components)

    for zone in graph.zones.values():
        if not any(d.kind is DeviceKind.OCCUPANCY_SENSOR for d in graph.devices_in(zone.id)):
            continue
        uid = f"bmhub_{_entity(site)}_zone_{_entity(zone.id)}"
        state = f"{root}/zone/{zone.id}/occupancy"
        ha_zone = {"ids": [uid], "name": zone.spec.name, "mdl": f"zone ({zone.spec.use.value})", "mf": "bmhub",
                   "sa": zone.spec.name}  # fmt: skip
        occupied = {
            "p": "binary_sensor",
            "name": "occupied",
            "unique_id": f"{uid}_occupied",
            "default_entity_id": f"binary_sensor.{uid}_occupied",
            "device_class": "occupancy",
            "state_topic": state,
            "value_template": "{{ 'ON' if value_json.occupied else 'OFF' }}",
        }
        people = {
            "p": "sensor",
            "name": "people",
            "unique_id": f"{uid}_people",
            "default_entity_id": f"sensor.{uid}_people",
            "state_class": "measurement",
            "unit_of_measurement": "people",
            "state_topic": state,
            "value_template": "{{ value_json.count if value_json.count is not none else 'unknown' }}",
        }
        emit(f"zone_{zone.id}", ha_zone, {"occupied": occupied, "people": people})
    return messages
