"""``bmhub bacnet discover``: find BACnet/IP devices and their objects, and write them as a site-model snippet.

Who-Is goes to each target (an address, ``host:port``, or a range ``192.0.2.0/28`` with at most 1024
addresses: directed, so no broadcast is needed), or, with ``bbmd``, as a broadcast through that BBMD after
registering as a foreign device (the way to reach devices on another subnet). Each device that answers I-Am is
asked for its name, vendor, model and object list, then each object for its name, description, units, state
texts and whether it has a priority array (commandable: ``writable: true`` in the snippet).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from adapters.bacnet._codec import UNITS
from adapters.bacnet._stack import ErrorRejectAbortNack, HubApplication, describe_error, parse_address, to_address
from hub.errors import ConfigError, Problem

__all__ = ["FoundDevice", "FoundObject", "discover", "snippet"]

_MAX_TARGETS = 1024
_SKIP = frozenset({"device", "network-port"})
_OBJECT_PROPS = ["object-name", "description", "units", "state-text", "priority-array"]

_KIND_BY_UNIT = {"degC": "temperature", "degF": "temperature", "inH2O": "pressure", "Pa": "pressure",
                 "kPa": "pressure", "lx": "illuminance", "m3/h": "flow", "m3/s": "flow", "l/s": "flow",
                 "kW": "power", "W": "power", "kWh": "energy", "V": "voltage", "A": "current",
                 "Hz": "frequency"}  # fmt: skip


@dataclass
class FoundObject:
    object: str  # "analog-input:1"
    name: str | None = None
    description: str | None = None
    unit: str | None = None  # the site model's unit text; None if BACnet's has no equivalent here
    bacnet_units: str | None = None
    states: list[str] | None = None
    commandable: bool = False


@dataclass
class FoundDevice:
    instance: int
    address: str
    name: str | None = None
    vendor: str | None = None
    model: str | None = None
    objects: list[FoundObject] = field(default_factory=list)
    error: str | None = None  # why the objects could not be read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def targets_of(texts: Sequence[str]) -> list[tuple[str, int]]:
    """Addresses to send a directed Who-Is to: ``host``, ``host:port`` or ``net/prefix[:port]``."""
    out: list[tuple[str, int]] = []
    for text in texts:
        host, port, prefix = parse_address(text, source=("command line", "target"))
        net = ipaddress.IPv4Network(f"{host}/{32 if prefix is None else prefix}", strict=False)
        out += [(str(h), port) for h in (net.hosts() if prefix is not None else [net.network_address])]
    if len(out) > _MAX_TARGETS:
        raise ConfigError([Problem("command line", None, "target",
                                   f"{len(out)} addresses; at most {_MAX_TARGETS} per run")])  # fmt: skip
    return out


async def discover(
    targets: Sequence[str],
    *,
    bind: str = "127.0.0.1:0",
    bbmd: str | None = None,
    low: int | None = None,
    high: int | None = None,
    wait: float = 2.0,
    objects: bool = True,
    instance: int = 4194301,
) -> list[FoundDevice]:
    """Devices answering Who-Is (by instance), each with its objects when ``objects``; ``wait``: seconds for answers."""
    addresses = targets_of(targets)
    if not addresses and bbmd is None:
        raise ConfigError([Problem("command line", None, "target", "give addresses to ask, or --bbmd")])
    if bbmd is not None:
        parse_address(bbmd, source=("command line", "--bbmd"))
    stack = HubApplication(bind, instance=instance, name="bmhub-discover", apdu_timeout=wait, apdu_retries=0,
                           bbmd=bbmd)  # fmt: skip
    try:
        await stack.started()
        app = stack.app
        limits = (low, high) if low is not None and high is not None else (None, None)
        asks = [app.who_is(*limits, address=to_address(h, p), timeout=wait) for h, p in addresses]
        if bbmd is not None:
            if not await stack.registered(wait):
                raise ConfigError([Problem("command line", None, "--bbmd", f"BBMD {bbmd} did not accept the "
                                                                           "foreign-device registration")])  # fmt: skip
            asks.append(app.who_is(*limits, timeout=wait))
        answers = await asyncio.gather(*asks, return_exceptions=True)
        seen: dict[int, FoundDevice] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                continue
            for iam in answer:
                inst = int(iam.iAmDeviceIdentifier[1])
                if inst not in seen and (low is None or high is None or low <= inst <= high):
                    seen[inst] = FoundDevice(inst, str(iam.pduSource))
        found = sorted(seen.values(), key=lambda d: d.instance)
        await asyncio.gather(*(_describe(app, d, objects) for d in found))
        return found
    finally:
        stack.close()


async def _read(app: Any, address: Any, request: list[Any]) -> dict[tuple[str, str], Any]:
    answer = await app.read_property_multiple(address, request)
    return {(f"{oid[0]}:{oid[1]}", str(prop)): value for oid, prop, _, value in answer
            if getattr(value, "errorCode", None) is None}  # fmt: skip


async def _describe(app: Any, dev: FoundDevice, objects: bool) -> None:
    host, port, _ = parse_address(dev.address)
    address = to_address(host, port)
    me = f"device:{dev.instance}"
    try:
        got = await _read(app, address, [me, ["object-name", "vendor-name", "model-name"]])
        dev.name, dev.vendor, dev.model = (_text(got.get((me, p))) for p in ("object-name", "vendor-name",
                                                                              "model-name"))  # fmt: skip
        if not objects:
            return
        object_list = await app.read_property(address, me, "object-list")
        ids = [f"{o[0]}:{o[1]}" for o in object_list if str(o[0]) not in _SKIP]
        for i in range(0, len(ids), 8):
            chunk = ids[i : i + 8]
            request: list[Any] = []
            for oid in chunk:
                request += [oid, _OBJECT_PROPS]
            props = await _read(app, address, request)
            for oid in chunk:
                units = props.get((oid, "units"))
                states = props.get((oid, "state-text"))
                dev.objects.append(FoundObject(
                    object=oid, name=_text(props.get((oid, "object-name"))),
                    description=_text(props.get((oid, "description"))) or None,
                    unit=UNITS.get(str(units)) if units is not None else None,
                    bacnet_units=str(units) if units is not None else None,
                    states=[str(s) for s in states] if states else None,
                    commandable=(oid, "priority-array") in props,
                ))  # fmt: skip
    except ErrorRejectAbortNack as exc:
        dev.error = describe_error(exc)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _slug(text: str | None, fallback: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (text or "").lower()).strip("-")
    return slug or fallback


def _kind(obj: FoundObject) -> str:
    """A first guess at the point kind, from object type and units; the snippet asks to check it."""
    family = obj.object.split(":")[0]
    if family.startswith("binary-"):
        return "contact" if family == "binary-input" else "run"
    if family.startswith("multi-state-"):
        return "mode"
    if obj.bacnet_units == "percent-relative-humidity":
        return "humidity"
    if obj.unit in _KIND_BY_UNIT:
        return _KIND_BY_UNIT[obj.unit]
    return {"analog-output": "valve", "analog-value": "setpoint"}.get(family, "load")


def snippet(devices: Sequence[FoundDevice]) -> str:
    """A site-model fragment: one device type per model (its points from the objects) and one device each.

    Kinds are guessed from object type and units (check them); ``interval`` is left out (set it for points
    without COV); the devices go into a zone of your choosing."""
    types: dict[str, dict[str, Any]] = {}
    devices_out: list[dict[str, Any]] = []
    for dev in devices:
        type_id = _slug(dev.model, f"bacnet-{dev.instance}")
        if type_id not in types:
            points = []
            used: set[str] = set()
            for obj in dev.objects:
                pid = _slug(obj.name, obj.object.replace(":", "-"))
                while pid in used:
                    pid += "-x"
                used.add(pid)
                point: dict[str, Any] = {"id": pid, "kind": _kind(obj), "object": obj.object}
                if obj.unit:
                    point["unit"] = obj.unit
                if obj.commandable:
                    point["writable"] = True
                if obj.states:
                    point["states"] = obj.states
                if obj.description:
                    point["description"] = obj.description
                points.append(point)
            if points:
                types[type_id] = {"protocol": "bacnet", "kind": "ahu",
                                  "description": " ".join(filter(None, [dev.vendor, dev.model])) or None,
                                  "points": points}  # fmt: skip
        devices_out.append({"id": _slug(dev.name, f"device-{dev.instance}"), "type": type_id,
                            "protocol": "bacnet", "instance": dev.instance, "address": dev.address})  # fmt: skip
    head = (
        "# From bmhub bacnet discover. Check each type's kind (ahu, vav, fcu, lighting ...) and each point's\n"
        "# kind; add interval to points whose device refuses COV; move the devices into their zones.\n"
    )
    body = yaml.safe_dump({"device_types": types, "devices": devices_out}, allow_unicode=True, sort_keys=False,
                          width=120)  # fmt: skip
    return head + body
