"""The simulated BACnet/IP field devices: every BACnet device of a site graph, one bacpypes3 application each.

:class:`BacnetSimulator` builds, for each BACnet device with an address, a bacpypes3 ``Application`` holding a
Device object (instance and name from the site model, vendor 999 "bmhub simulator", model name = the device
type), a Network Port object and one object per point of its type (identifier from the point's ``object``,
name = the point's id in its type, e.g. ``zone-temp``; units, description, state texts and COV increment from
the point). Each device listens on its own address (``host/32:port``: unicast only, no broadcast socket; the
site model gives every device a 127.0.1-3.x address on port 47808, and Linux routes all of 127/8 to ``lo``).
Addresses that are not loopback are not served (the simulator never listens on a real network); a device
without an address (found by Who-Is on a real site) is not served either. Tests move devices to free ports
with ``endpoints={device id: (host, port)}``.

A device answers ReadProperty, ReadPropertyMultiple, WriteProperty and SubscribeCOV (confirmed or
unconfirmed notifications on a change of present-value beyond the COV increment, or of status-flags).
Devices named in ``no_cov`` refuse SubscribeCOV with a Reject (unrecognized-service), as a controller without
COV does, and leave it out of their protocol-services-supported.

Writable points are commandable objects (16-slot priority array, relinquish-default = the initial value,
current-command-priority): a write of present-value at priority P lands in slot P, a write of Null
relinquishes it. Writes go to present-value of writable points only: anything else is refused with Error
property/write-access-denied, a value outside the point's min/max (or a state outside 1..number-of-states)
with Error property/value-out-of-range. The simulator never changes a commanded object: only clients do.

Values of inputs and read-only values evolve on simulated time, recomputed every ``update_every`` real
seconds and written only when they change at the point's resolution; a subscriber hears of a change of at
least the COV increment (0.2 °F/°C, 1 %, 0.02 inH2O, 20 lx, 20 m3/h; any change of a binary or multi-state).
Temperatures drift smoothly (an AHU's discharge air ~56 °F, mixed ~63 °F, return ~72 °F; rooms 20-25 °C),
humidity 37-58 %, duct static pressure ~1 inH2O while the fans run (0.5 after hours), illuminance follows the
business day (~450 lx while the halls are open, dim after hours, dark at night), VAV dampers and airflow are
higher while open, fans and run status are on while the halls are open (round the clock in the data centre),
alarms, faults and contacts are off (never a fire, never an earthquake), read-only setpoints are steady and
multi-state values sit at a plausible steady state (``Auto``, ``Normal`` ... or state 1). Drift is two sine
waves (periods of 2-8 h and 30-90 min: slow, as air in a building is, so COV traffic stays realistic even at
60x) with periods and phases of each point's own, seeded with crc32(seed, device, point), so a seed
reproduces a run; the value is a function of the simulated time only, whenever it is computed.

Simulated time is ``start + (clock.monotonic() now - at the first run) × speed`` (:class:`SimTime`). Objects are
built on the first :meth:`~BacnetSimulator.run` (bacpypes3 objects need a running event loop) and kept:
:meth:`~BacnetSimulator.stop_device` closes a device's socket (it no longer answers; its COV subscriptions are
dropped, as a power cycle does) and :meth:`~BacnetSimulator.start_device` serves the same objects again, with
the values and priority arrays they had.

bacpypes3 facts this module works around (0.0.110): local multi-state objects use the COV-increment criteria
and fail every SubscribeCOV (no cov-increment property), so they get the generic criteria here; its
``BinaryValueObjectCmd`` is not a local object (no COV); local objects compute status-flags from event state,
reliability and out-of-service and ignore writes to it, so the objects here store status-flags (a test sets
``statusFlags`` to see a COV notification); any property of a local object is writable over the wire, so
writes are checked here.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import ipaddress
import logging
import math
import os
import random
import signal
import sys
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bacpypes3.apdu import ConfirmedServiceChoice, ErrorRejectAbortNack, SubscribeCOVRequest
from bacpypes3.app import Application
from bacpypes3.basetypes import PriorityValue, PropertyIdentifier, StatusFlags
from bacpypes3.errors import PropertyError, UnrecognizedService
from bacpypes3.local.analog import AnalogInputObject, AnalogOutputObject, AnalogValueObject, AnalogValueObjectCmd
from bacpypes3.local.binary import BinaryInputObject, BinaryOutputObject, BinaryValueObject
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.cov import GenericCriteria
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateInputObject, MultiStateOutputObject, MultiStateValueObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.primitivedata import Null

from adapters.bacnet._codec import BACNET_UNITS
from adapters.bacnet._stack import bind_error, close_application
from adapters.sim._time import SimTime
from hub.clock import Clock
from hub.errors import AdapterNotReady, HubError
from hub.graph import DeviceInfo, SiteGraph
from hub.site import BacnetDevice, BacnetDeviceType, BacnetPoint, BuildingKind, PointKind, load_site

__all__ = ["BacnetSimulator"]

log = logging.getLogger(__name__)

_DEFAULT_PORT = 47808
_VENDOR_ID = 999  # bacpypes3's "local" vendor: clients decode these objects with the standard classes
_VENDOR_NAME = "bmhub simulator"
_BIND_TIMEOUT = 5.0  # seconds for a device's socket to be bound (bacpypes3 retries a failed bind forever)
_REBIND_TIMEOUT = 1.0  # seconds start_device waits for a just-closed socket of its own to go

_SimValue = float | bool | int  # analog, binary (active = True), multi-state (1-based state)


@dataclass(frozen=True, slots=True)
class _Env:
    """The building at one simulated instant, as the behaviours need it."""

    t: float  # simulated seconds since the start
    open: bool  # the halls are open (business calendar)
    daytime: bool  # a business day between 07:00 and 21:00: staff in, some lights on


_Behaviour = Callable[[_Env, bool], _SimValue]  # (building, device runs round the clock) → value


# ---------------------------------------------------------------------------------------------- object classes
class _Stored:
    """Status flags stored on the object (bacpypes3's local objects compute them and ignore a write), and no
    writes over the wire: read-only points, the device and network port objects refuse every WriteProperty."""

    _bmhub_flags: Any = None

    @property
    def statusFlags(self) -> Any:
        return self._bmhub_flags if self._bmhub_flags is not None else StatusFlags([0, 0, 0, 0])

    @statusFlags.setter
    def statusFlags(self, value: Any) -> None:
        self._bmhub_flags = value

    async def write_property(self, attr: Any, value: Any, index: Any = None, priority: Any = None) -> None:
        raise PropertyError("writeAccessDenied")


class _Commanded(_Stored):
    """A commandable point: present-value only, within the point's limits; counted by the simulator."""

    _bmhub_limits: tuple[float | None, float | None] = (None, None)
    _app: Any

    async def write_property(self, attr: Any, value: Any, index: Any = None, priority: Any = None) -> None:
        name = PropertyIdentifier(attr).attr if isinstance(attr, int | str) else attr
        if name != "presentValue" or index is not None:
            raise PropertyError("writeAccessDenied")
        lo, hi = self._bmhub_limits
        if not isinstance(value, Null) and (lo is not None or hi is not None):
            number = float(value)
            if (lo is not None and number < lo) or (hi is not None and number > hi):
                raise PropertyError("valueOutOfRange")
        # past _Stored (which refuses every write) to Commandable: the value goes into the priority array
        await super(_Stored, self).write_property(attr, value, index, priority)  # type: ignore[misc]
        app = self._app
        if isinstance(app, _SimApplication):
            app.sim.writes += 1


# bacpypes3 has no type information: its classes are Any to mypy, hence the ignores on subclassing them.
class _Device(_Stored, DeviceObject):  # type: ignore[misc]
    pass


class _NetworkPort(_Stored, NetworkPortObject):  # type: ignore[misc]
    pass


class _AnalogInput(_Stored, AnalogInputObject):  # type: ignore[misc]
    pass


class _AnalogOutput(_Commanded, AnalogOutputObject):  # type: ignore[misc]
    pass


class _AnalogValue(_Stored, AnalogValueObject):  # type: ignore[misc]
    pass


class _AnalogValueCmd(_Commanded, AnalogValueObjectCmd):  # type: ignore[misc]
    pass


class _BinaryInput(_Stored, BinaryInputObject):  # type: ignore[misc]
    pass


class _BinaryOutput(_Commanded, BinaryOutputObject):  # type: ignore[misc]
    pass


class _BinaryValue(_Stored, BinaryValueObject):  # type: ignore[misc]
    pass


class _BinaryValueCmd(_Commanded, Commandable, BinaryValueObject):  # type: ignore[misc]
    """bacpypes3's ``BinaryValueObjectCmd`` derives from the non-local class (no COV, no monitors)."""

    _required = ("priorityArray", "relinquishDefault", "currentCommandPriority")


class _MultiStateInput(_Stored, MultiStateInputObject):  # type: ignore[misc]
    _cov_criteria = GenericCriteria


class _MultiStateOutput(_Commanded, MultiStateOutputObject):  # type: ignore[misc]
    _cov_criteria = GenericCriteria


class _MultiStateValue(_Stored, MultiStateValueObject):  # type: ignore[misc]
    _cov_criteria = GenericCriteria


class _MultiStateValueCmd(_Commanded, Commandable, MultiStateValueObject):  # type: ignore[misc]
    _cov_criteria = GenericCriteria
    _required = ("priorityArray", "relinquishDefault", "currentCommandPriority")


_CLASSES: dict[tuple[str, bool], type] = {
    ("analog-input", False): _AnalogInput,
    ("analog-output", True): _AnalogOutput,
    ("analog-output", False): _AnalogOutput,  # outputs are commandable by nature, writable or not in the model
    ("analog-value", False): _AnalogValue,
    ("analog-value", True): _AnalogValueCmd,
    ("binary-input", False): _BinaryInput,
    ("binary-output", True): _BinaryOutput,
    ("binary-output", False): _BinaryOutput,
    ("binary-value", False): _BinaryValue,
    ("binary-value", True): _BinaryValueCmd,
    ("multi-state-input", False): _MultiStateInput,
    ("multi-state-output", True): _MultiStateOutput,
    ("multi-state-output", False): _MultiStateOutput,
    ("multi-state-value", False): _MultiStateValue,
    ("multi-state-value", True): _MultiStateValueCmd,
}
# A change of at least the COV increment is notified; values are kept at the resolution (written when it changes).
_COV_INCREMENT = {"degF": 0.2, "degC": 0.2, "%": 1.0, "inH2O": 0.02, "lx": 20.0, "m3/h": 20.0}
_RESOLUTION = {"degF": 0.1, "degC": 0.1, "%": 0.5, "inH2O": 0.01, "lx": 5.0, "m3/h": 5.0}
_STEADY_STATES = ("auto", "normal", "occupied", "med", "medium")  # preferred steady states, by state text
_AIR_TEMPERATURES = {"discharge": (56.0, 1.0), "supply": (56.0, 1.0), "mixed": (63.0, 3.0), "return": (72.0, 1.5)}
_ON_KINDS = frozenset({PointKind.FAN, PointKind.RUN, PointKind.LIGHT, PointKind.OCCUPANCY})


class _SimApplication(Application):  # type: ignore[misc]  # bacpypes3 is untyped
    """A simulated device's application: counts COV traffic and never lets a failed notification escape."""

    sim: BacnetSimulator

    def cov_notification(self, cov: Any, apdu: Any) -> None:
        self.sim.cov_notifications += 1
        super().cov_notification(cov, apdu)

    def cov_confirmation(self, cov: Any, future: Any) -> None:
        # bacpypes3 calls future.result() here, which raises the subscriber's Abort (no response) or Error
        if not future.cancelled() and future.exception() is not None:
            self.sim.cov_failed += 1


class _NoCovApplication(_SimApplication):
    """A device without COV: SubscribeCOV is an unrecognized service (Reject), as on a controller without it."""

    async def do_SubscribeCOVRequest(self, apdu: Any) -> None:
        self.sim.cov_refused += 1
        raise UnrecognizedService("SubscribeCOV is not supported by this device")

    def get_services_supported(self) -> Any:
        supported = super().get_services_supported()
        name = ConfirmedServiceChoice(SubscribeCOVRequest.service_choice).attr
        supported[getattr(supported, name)] = 0
        return supported


# ---------------------------------------------------------------------------------------------- behaviours
def _rng(seed: int, *names: str) -> random.Random:
    return random.Random(zlib.crc32(":".join((str(seed), "bacnet", *names)).encode()))  # noqa: S311 - a simulation


def _wave(rng: random.Random) -> Callable[[float], float]:
    """A smooth drift in [-1, 1]: a slow sine (2-8 h) and a faster one (30-90 min), with periods and phases of
    this point's own. Slower than the Modbus plant's: a building's air moves over tens of minutes, and every
    step of more than the COV increment is a notification to each subscriber."""
    slow, fast = rng.uniform(7200.0, 28800.0), rng.uniform(1800.0, 5400.0)
    p1, p2 = rng.uniform(0.0, math.tau), rng.uniform(0.0, math.tau)
    return lambda t: 0.8 * math.sin(math.tau * t / slow + p1) + 0.2 * math.sin(math.tau * t / fast + p2)


def _steady_state(p: BacnetPoint) -> int:
    states = [s.lower() for s in p.states or ()]
    for wanted in _STEADY_STATES:
        if wanted in states:
            return states.index(wanted) + 1
    return 1


def _setpoint(p: BacnetPoint) -> float:
    parts = p.id.split("-")
    if p.unit == "inH2O":
        value = 1.0
    elif p.unit == "degF":
        value = 74.0 if "cooling" in parts else 70.0 if "heating" in parts else 55.0 if "discharge" in parts else 72.0
    else:
        value = 24.0 if "cooling" in parts else 21.0 if "heating" in parts else 22.0
    return _clamp(p, value)


def _clamp(p: BacnetPoint, value: float) -> float:
    if p.min is not None:
        value = max(value, p.min)
    if p.max is not None:
        value = min(value, p.max)
    return value


def _initial(p: BacnetPoint) -> _SimValue:
    """A commanded point's relinquish default: where the controller sits when nobody commands it."""
    kind, parts = p.kind, p.id.split("-")
    otype = p.object.split(":")[0]
    if otype.startswith("binary"):
        return kind in (PointKind.FAN, PointKind.LIGHT, PointKind.RUN)
    if otype.startswith("multi-state"):
        return _steady_state(p)
    match kind:
        case PointKind.SETPOINT:
            value = _setpoint(p)
        case PointKind.VALVE:
            value = 0.0 if ("reheat" in parts or "heating" in parts) else 35.0
        case PointKind.DAMPER:
            value = 40.0
        case PointKind.FAN_SPEED:
            value = 70.0
        case PointKind.DIMMER:
            value = 80.0
        case _:
            value = 0.0 if p.min is None else (p.min if p.max is None else (p.min + p.max) / 2)
    return _clamp(p, value)


def _behaviour(seed: int, device: str, p: BacnetPoint) -> _Behaviour:
    """How a point that nobody commands moves with the building."""
    w = _wave(_rng(seed, device, p.id))
    kind, parts, unit = p.kind, p.id.split("-"), p.unit
    otype = p.object.split(":")[0]
    if otype.startswith("binary"):
        if kind in _ON_KINDS:
            return lambda env, always: always or env.open
        return lambda env, always: False  # alarms, faults, contacts, anything else: quiet
    if otype.startswith("multi-state"):
        state = _steady_state(p)
        return lambda env, always: state
    match kind:
        case PointKind.TEMPERATURE if unit == "degF":  # an AHU's air temperatures
            base, swing = _AIR_TEMPERATURES.get(next((a for a in parts if a in _AIR_TEMPERATURES), ""), (68.0, 3.0))
            return lambda env, always: base + swing * w(env.t)
        case PointKind.TEMPERATURE:
            return lambda env, always: (23.0 + 1.5 * w(env.t)) if always or env.open else (22.0 + 1.8 * w(env.t))
        case PointKind.HUMIDITY:
            return lambda env, always: 47.5 + 10.0 * w(env.t)
        case PointKind.PRESSURE:
            return lambda env, always: (1.0 + 0.25 * w(env.t)) if always or env.open else (0.55 + 0.05 * w(env.t))
        case PointKind.ILLUMINANCE:

            def lux(env: _Env, always: bool) -> float:
                if always or env.open:
                    return 450.0 + 60.0 * w(env.t)
                return (120.0 + 40.0 * w(env.t)) if env.daytime else (8.0 + 5.0 * w(env.t))

            return lux
        case PointKind.DAMPER:
            return lambda env, always: (50.0 + 20.0 * w(env.t)) if always or env.open else (15.0 + 5.0 * w(env.t))
        case PointKind.FLOW:
            return lambda env, always: (450.0 + 150.0 * w(env.t)) if always or env.open else (120.0 + 30.0 * w(env.t))
        case PointKind.VALVE:
            return lambda env, always: 40.0 + 20.0 * w(env.t)
        case PointKind.FAN_SPEED | PointKind.DIMMER:
            return lambda env, always: (70.0 + 8.0 * w(env.t)) if always or env.open else 0.0
        case PointKind.CO2:
            return lambda env, always: (650.0 + 150.0 * w(env.t)) if always or env.open else (420.0 + 10.0 * w(env.t))
        case PointKind.SETPOINT:
            value = _setpoint(p)
            return lambda env, always: value
    value = _initial(p)
    return lambda env, always: value


# ---------------------------------------------------------------------------------------------- devices
@dataclass(slots=True)
class _Evolving:
    obj: Any
    behaviour: _Behaviour
    binary: bool
    step: float  # resolution of an analog value
    last: _SimValue | None = None


class _SimDevice:
    """One simulated controller: its points, its objects once built, its application while it runs."""

    def __init__(self, sim: BacnetSimulator, info: DeviceInfo, host: str, port: int) -> None:
        assert isinstance(info.spec, BacnetDevice)
        assert isinstance(info.type, BacnetDeviceType)
        self.id = info.id
        self.sim = sim
        self.info = info
        self.spec: BacnetDevice = info.spec
        self.host, self.port = host, port
        self.cov = info.id not in sim.no_cov
        self.always = sim.graph.buildings[info.building].kind is BuildingKind.DATA_CENTRE
        self.points: list[BacnetPoint] = []
        seen: set[str] = set()
        for p in info.type.points:
            otype = p.object.split(":")[0]
            if (otype, p.writable) not in _CLASSES:
                log.warning("bacnet-sim: %s.%s: %s objects are not simulated", info.id, p.id, otype)
            elif p.object in seen or p.id == info.id:
                log.warning("bacnet-sim: %s.%s: duplicate object %s or name, not served", info.id, p.id, p.object)
            else:
                seen.add(p.object)
                self.points.append(p)
        self.objects: dict[str, Any] = {}  # "analog-input:1" → bacpypes3 local object, once built
        self.evolving: list[_Evolving] = []
        self.app: Any = None  # the running Application
        self.stopped = False  # stopped by stop_device: stays down until start_device

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def build(self) -> None:
        """The device's objects, once: a restart serves the same objects, with their values and priorities.
        bacpypes3 takes 1.5-4 ms of CPU per object, so this yields to the event loop after each one."""
        if self.objects:
            return
        t = self.info.type
        objects: dict[str, Any] = {}
        objects[f"device:{self.spec.instance}"] = _Device(
            objectIdentifier=("device", self.spec.instance),
            objectName=self.id,
            vendorIdentifier=_VENDOR_ID,
            vendorName=_VENDOR_NAME,
            modelName=self.spec.type,
            description=self.spec.name or t.description or self.id,
            location=self.info.zone,
            apduTimeout=3000,
            numberOfApduRetries=3,
        )
        await asyncio.sleep(0)
        objects["network-port:1"] = _NetworkPort(
            f"{self.host}/32:{self.port}", objectIdentifier=("network-port", 1), objectName="NetworkPort-1"
        )
        evolving: list[_Evolving] = []
        env, empty = self.sim.env(), PriorityValue(null=())
        for p in self.points:
            await asyncio.sleep(0)
            obj, behaviour, value, step = self._object(p, env, empty)
            objects[p.object] = obj
            if behaviour is not None:
                evolving.append(_Evolving(obj, behaviour, isinstance(value, bool), step, value))
        self.objects, self.evolving = objects, evolving

    def _object(self, p: BacnetPoint, env: _Env, empty: Any) -> tuple[Any, _Behaviour | None, _SimValue, float]:
        """A point's object, how it evolves (None: only clients change it), its first value and resolution."""
        otype, _, instance = p.object.partition(":")
        cls = _CLASSES[(otype, p.writable)]
        commanded = issubclass(cls, Commandable)
        behaviour = None if commanded else _behaviour(self.sim.seed, self.id, p)
        value = behaviour(env, self.always) if behaviour else _initial(p)
        kwargs: dict[str, Any] = {
            "objectIdentifier": (otype, int(instance)),
            "objectName": p.id,
            "statusFlags": [0, 0, 0, 0],
            "eventState": "normal",
            "outOfService": False,
        }
        if p.description:
            kwargs["description"] = p.description
        step = 0.0
        limits: tuple[float | None, float | None] = (None, None)
        if otype.startswith("analog"):
            step = _RESOLUTION.get(p.unit or "", 0.1)
            value = round(float(value) / step) * step
            kwargs |= {"presentValue": value, "units": BACNET_UNITS.get(p.unit or "", "no-units"),
                       "covIncrement": _COV_INCREMENT.get(p.unit or "", 2 * step)}  # fmt: skip
            limits = (p.min, p.max)
        elif otype.startswith("binary"):
            value = bool(value)
            kwargs["presentValue"] = "active" if value else "inactive"
            if otype != "binary-value":
                kwargs["polarity"] = "normal"
        else:
            value = int(value)
            states = list(p.states or ())
            kwargs |= {"presentValue": value, "numberOfStates": max(len(states), value, 1)}
            if states:
                kwargs["stateText"] = states
            limits = (1, kwargs["numberOfStates"])
        if commanded:
            kwargs["relinquishDefault"] = kwargs["presentValue"]
            # 16 copies of one empty slot: bacpypes3 would build each PriorityValue itself at ~0.25 ms apiece
            kwargs["priorityArray"] = [copy.copy(empty) for _ in range(16)]
        obj = cls(**kwargs)
        if commanded:
            obj._bmhub_limits = limits
        return obj, behaviour, value, step

    def open(self) -> None:
        """Serve the (built) device: a new application on its address, holding its objects."""
        cls = _SimApplication if self.cov else _NoCovApplication
        app = cls.from_object_list(list(self.objects.values()))
        app.sim = self.sim
        self.app = app

    def close(self) -> list[asyncio.Task[Any]]:
        """Stop answering: drop the COV subscriptions (as a power cycle does) and close the socket. Returns the
        bind tasks still running (bacpypes3 binds in a task of its own): the socket closes once they finish."""
        app, self.app = self.app, None
        if app is None:
            return []
        try:
            for detection in list(app._cov_detections.values()):
                for cov in list(detection.cov_subscriptions):
                    cov.cancel_subscription()
                detection.cov_subscriptions.clear()
                detection.unbind()
                if detection._execute_handle is not None:
                    detection._execute_handle.cancel()
            app._cov_detections.clear()
        except Exception:  # a bacpypes3 internal changed shape: the socket still closes
            log.exception("bacnet-sim: %s: dropping COV subscriptions", self.id)
        close_application(app)  # and its open transactions, whose timers would resend
        pending: list[asyncio.Task[Any]] = []
        for link in app.link_layers.values():
            server = getattr(link, "server", None)
            for task in getattr(server, "_transport_tasks", ()):
                if not task.done() and server is not None:
                    task.add_done_callback(lambda _, server=server: server.close())
                    pending.append(task)
        return pending

    async def bound(self) -> None:
        """Wait until the device's socket is bound (bacpypes3 binds in a task of its own, retrying forever)."""
        for link in self.app.link_layers.values():
            ready = getattr(getattr(link, "server", None), "_local_transport_ready", None)
            if ready is not None:
                await ready.wait()

    def cov_subscriptions(self) -> int:
        if self.app is None:
            return 0
        return sum(len(d.cov_subscriptions) for d in self.app._cov_detections.values())

    def update(self, env: _Env) -> int:
        """Move every evolving object to ``env``; the number of values that changed."""
        changed = 0
        for e in self.evolving:
            value = e.behaviour(env, self.always)
            if e.binary:
                value = bool(value)
            elif e.step:
                value = round(float(value) / e.step) * e.step
            if value == e.last:
                continue
            e.last = value
            e.obj.presentValue = ("active" if value else "inactive") if e.binary else value
            changed += 1
        return changed


# ---------------------------------------------------------------------------------------------- simulator
class BacnetSimulator:
    """Every BACnet device of ``graph`` (or those named in ``devices``) as its own bacpypes3 application on its
    own loopback address: a supervised service."""

    name = "bacnet-sim"

    def __init__(
        self,
        graph: SiteGraph,
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: datetime | None = None,
        clock: Clock | None = None,
        endpoints: Mapping[str, tuple[str, int]] | None = None,
        devices: Collection[str] | None = None,
        no_cov: Collection[str] = (),
        update_every: float = 2.0,
    ) -> None:
        """``endpoints`` maps a device id to the loopback (host, port) to listen on instead of its address;
        ``devices`` limits the simulation to those ids; devices in ``no_cov`` refuse SubscribeCOV; inputs and
        read-only values are recomputed every ``update_every`` real seconds."""
        if not update_every > 0:
            raise ValueError(f"update_every must be positive, got {update_every}")
        self.time = SimTime(graph, speed=speed, start=start, clock=clock)
        self.graph = graph
        self.seed = seed
        self.speed = speed
        self.update_every = update_every
        self.no_cov = frozenset(no_cov)
        self.writes = self.cov_refused = self.cov_notifications = self.cov_failed = self.updates = 0
        self.skipped = 0
        self._running = False
        bacnet = {d.id: d for d in graph.find_devices(protocol="bacnet")}
        wanted = list(bacnet) if devices is None else list(devices)
        unknown = sorted(set(wanted) - set(bacnet)) + sorted(set(endpoints or {}) - set(bacnet))
        if unknown:
            raise ValueError(f"not BACnet devices of the site model: {', '.join(unknown)}")
        overrides = endpoints or {}
        self.devices: dict[str, _SimDevice] = {}
        unaddressed: list[str] = []
        for device_id in wanted:
            info = bacnet[device_id]
            assert isinstance(info.spec, BacnetDevice)
            if device_id in overrides:
                host, port = overrides[device_id]
            elif info.spec.address is None:
                unaddressed.append(device_id)
                continue
            else:
                host, _, port_text = info.spec.address.partition(":")
                port = int(port_text) if port_text else _DEFAULT_PORT
            if not _is_loopback(host):
                log.warning("bacnet-sim: not serving %s on %s:%d: the simulator listens on loopback addresses only",
                            device_id, host, port)  # fmt: skip
                self.skipped += 1
                continue
            self.devices[device_id] = _SimDevice(self, info, host, port)
        if unaddressed:
            log.info("bacnet-sim: %d devices have no address (found by Who-Is on site) and are not simulated: %s",
                     len(unaddressed), ", ".join(unaddressed))  # fmt: skip
            self.skipped += len(unaddressed)

    # ------------------------------------------------------------------ time
    def env(self) -> _Env:
        """The building now, in simulated time."""
        t = self.time.now()
        local = self.time.local(t)
        calendar = self.time.calendar
        return _Env(t, calendar.is_open(local), calendar.is_business_day(local.date()) and 7 <= local.hour < 21)

    def update(self) -> int:
        """One round: every running device's inputs and read-only values moved to the simulated time now.
        Returns how many values changed. ``run`` calls it every ``update_every`` seconds; tests may call it."""
        env = self.env()
        changed = sum(d.update(env) for d in self.devices.values() if d.app is not None)
        self.updates += 1
        return changed

    # ------------------------------------------------------------------ service
    async def run(self, ready: Callable[[], None]) -> None:
        """Build every device's objects (first run only), bind every device, call ``ready()``, update values
        every ``update_every`` real seconds until cancelled; then close every device. A device address that is
        taken (by anything, even a socket that would share it with ``SO_REUSEPORT`` as bacpypes3 does) raises
        :class:`AdapterNotReady` (the supervisor retries)."""
        if self._running:
            raise RuntimeError("bacnet-sim is already running")
        self._running = True
        self.time.begin()
        self.env()  # loads the holiday tables now (~0.1 s), not while the first request waits
        try:
            for device in self.devices.values():
                await device.build()
            for device in self.devices.values():
                if device.stopped:
                    continue
                if bind_error(device.host, device.port) is not None:
                    raise AdapterNotReady(f"bacnet-sim: {device.id}: {device.address} is already in use")
                device.open()
                await asyncio.sleep(0)
            try:
                async with asyncio.timeout(_BIND_TIMEOUT):
                    await asyncio.gather(*(d.bound() for d in self.devices.values() if d.app is not None))
            except TimeoutError:
                raise AdapterNotReady("bacnet-sim: could not bind every device address") from None
            log.info("bacnet-sim: %d devices, %d objects, %gx time", len(self.devices),
                     sum(len(d.points) for d in self.devices.values()), self.speed)  # fmt: skip
            ready()
            while True:
                await asyncio.sleep(self.update_every)
                try:
                    self.update()
                except (Exception, ErrorRejectAbortNack):  # bacpypes3's errors are BaseExceptions
                    log.exception("bacnet-sim: update failed")
        finally:
            self._running = False
            await self._close_all()

    async def _close_all(self) -> None:
        pending: list[asyncio.Task[Any]] = []
        for device in self.devices.values():
            try:
                pending += device.close()
            except (Exception, ErrorRejectAbortNack):
                log.exception("bacnet-sim: %s: closing", device.id)
        if pending:  # binds still in flight: their sockets close as they complete
            _, stuck = await asyncio.wait(pending, timeout=_BIND_TIMEOUT)
            for task in stuck:  # bacpypes3 retries a failed bind forever
                task.cancel()

    def stop_device(self, device_id: str) -> None:
        """Close the device's application: its socket closes, it no longer answers, its COV subscriptions are
        gone. Its objects keep their values and priority arrays for :meth:`start_device`."""
        device = self.devices[device_id]
        device.stopped = True
        device.close()

    async def start_device(self, device_id: str) -> None:
        """Serve a stopped device again on the same address, with the same objects, values and priority
        arrays; returns once its socket is bound. Only while :meth:`run` runs."""
        device = self.devices[device_id]
        if not self._running or not device.objects:
            raise RuntimeError("bacnet-sim is not running")
        if device.app is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _REBIND_TIMEOUT
        # a socket closed by stop_device is released on the next loop turn
        while bind_error(device.host, device.port) is not None:
            if loop.time() > deadline:
                raise AdapterNotReady(f"bacnet-sim: {device_id}: {device.address} is already in use")
            await asyncio.sleep(0.01)
        device.stopped = False
        device.open()
        try:
            async with asyncio.timeout(_BIND_TIMEOUT):
                await device.bound()
        except TimeoutError:
            for task in device.close():
                task.cancel()
            raise AdapterNotReady(f"bacnet-sim: {device_id}: could not bind {device.address}") from None

    # ------------------------------------------------------------------ inspection
    def object(self, device_id: str, obj: str) -> Any:
        """The bacpypes3 local object ``obj`` ("analog-input:1", "device:100701", "network-port:1") of a device,
        once :meth:`run` has built it. Setting ``presentValue`` or ``statusFlags`` on it notifies COV
        subscribers (an evolving input is overwritten when its simulated value next changes)."""
        device = self.devices[device_id]
        if obj not in device.objects:
            raise KeyError(f"{device_id} has no object {obj!r}" + ("" if device.objects else " (not built yet)"))
        return device.objects[obj]

    def address(self, device_id: str) -> str:
        """``host:port`` the device answers on."""
        return self.devices[device_id].address

    def counts(self) -> dict[str, int]:
        """devices and objects (points) simulated, skipped devices, devices running, active COV subscriptions,
        COV subscriptions refused, notifications sent and failed, writes accepted, update rounds."""
        return {
            "devices": len(self.devices),
            "objects": sum(len(d.points) for d in self.devices.values()),
            "skipped": self.skipped,
            "running": sum(d.app is not None for d in self.devices.values()),
            "cov_subscriptions": sum(d.cov_subscriptions() for d in self.devices.values()),
            "cov_refused": self.cov_refused,
            "cov_notifications": self.cov_notifications,
            "cov_failed": self.cov_failed,
            "writes": self.writes,
            "updates": self.updates,
        }

    def details(self) -> dict[str, Any]:
        return {**self.counts(), "speed": self.speed}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adapters.sim bacnet SITE [--seed N] [--speed X] [--start ISO]``: the simulated BACnet devices
    of a site model in a process of their own, as ``bmhub demo`` runs them (building 1,568 bacpypes3 objects
    takes seconds of CPU, which the hub's event loop should not wait for). Prints ``ready`` on stdout once every
    device answers; SIGTERM or SIGINT stops it."""
    parser = argparse.ArgumentParser(prog="python -m adapters.sim bacnet", description=main.__doc__)
    parser.add_argument("site", help="site model file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--start", help="simulated start, ISO 8601 with offset (default: now)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--parent-pipe", action="store_true", help="stop when stdin closes (the parent died)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")  # fmt: skip
    try:
        graph = SiteGraph(load_site(Path(args.site)))
        start = datetime.fromisoformat(args.start) if args.start else None
        sim = BacnetSimulator(graph, seed=args.seed, speed=args.speed, start=start)
    except (HubError, ValueError) as exc:
        print(f"bacnet-sim: {exc}", file=sys.stderr)
        return 2

    async def serve() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        stop = task.cancel if task else (lambda: None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        if args.parent_pipe:  # the parent holds our stdin open: end of file means it is gone, however it died

            def parent_gone() -> None:
                if not os.read(0, 4096):
                    loop.remove_reader(0)
                    stop()

            loop.add_reader(0, parent_gone)
        try:
            await sim.run(lambda: print("ready", flush=True))
        except asyncio.CancelledError:
            log.info("bacnet-sim stopped: %s", sim.counts())
            return 0
        except AdapterNotReady as exc:
            print(exc, file=sys.stderr)
            return 3
        return 1

    return asyncio.run(serve())
