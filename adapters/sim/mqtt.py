"""The simulated building: every MQTT device of a site graph, played over one MQTT client.

:class:`MqttSimulator` connects once (identifier ``bmhub-sim-<site id>``, MQTT 3.1.1 so an amqtt broker serves
as well as Mosquitto) and publishes for all MQTT devices. Every state payload is built with
:func:`adapters.mqtt._codec.encode_state` and every command read with :func:`~adapters.mqtt._codec.decode`, so
the simulated devices and the hub agree by construction.

Time and reproducibility. Simulated time is ``start + real seconds since the first run × speed``, read in the
site's timezone against its business calendar. The model advances in fixed simulated steps (60 s, or 50 ms of
real time if that is longer) and every zone and device draws from its own generator, seeded with
crc32(seed, id). So for a given seed, start and speed a run publishes the same values in the same order
however the machine's timing goes (a slow loop publishes late, never differently), and adding a device leaves
the others' behaviour alone. After a reconnect the model catches up silently (what happened while the broker
was away is not replayed as if it were happening now) and the whole state goes out again.

What goes out:

================================  ===  ======  ==============================================================
message                           QoS  retain  when
================================  ===  ======  ==============================================================
state topic, repeat               0    yes     every ``interval`` of its points (real period interval / speed,
                                               at least 50 ms); frequent, and the next one supersedes it
state topic, change               1    yes     a value changed (people count, door, flaps, lock, mode, signage
                                               ...); every state topic after each (re)connect
card topic (card id, biometric)   1    no      a card is presented: an event; replayed, it would be a new swipe
signage ``ack``                   1    no      a signage command was applied
================================  ===  ======  ==============================================================

Messages falling due within 20 ms of each other leave together (at most 20 ms late; one loop wake-up, not one
per message), with at most 10 in flight at once: enough to hide the PUBACK round trip, few enough not to flood
a slow broker (the embedded amqtt carries about 850 QoS-1 messages/s).

Behaviour, by device kind:

- every zone has a people count moving each step toward a target for its use and the moment: offices fill on
  business days from 07:30, are full 08:45-17:15 but for a lunch dip, and empty out by 21:30; counters,
  waiting areas, lobbies, childcare and health rooms peak late morning and early afternoon while the halls are
  open; meeting, consultation, committee and collaboration rooms hold booked-looking blocks of 1-2 h (the
  collaboration centre also some evenings, any day, for residents); the council chamber sits only on session
  days (March, June, September, December); plant and machine rooms get short visits; the data centre's
  operations room is staffed round the clock.
- occupancy sensors report the zone's count (split between the zone's sensors) and occupied = count > 0.
- env sensors: temperature, humidity and CO2 drift toward values that rise with the zone's occupancy.
- card readers and flapper gates: people entering a zone and a traffic of one swipe per person-hour present
  cards (ids "04:xx:xx:xx" from a fixed pool per site and seed; level-4 rooms see only a few named staff);
  the door or flaps open a second or two later and close a few simulated seconds after. The door does not
  wait for the hub to unlock it. Gates count passages since local midnight; in free mode the flaps stay open.
- exit doors stay closed and locked.
- any writable point takes its command (the value is published on its state topic); signage also publishes
  ``ack`` = ``<point id>=<value>`` (``<point id>#<n>`` for long values).
- wifi controllers: clients follow the building's occupancy; no access point offline.
- a command payload the point cannot take is logged at warning, counted, and ignored.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import NamedTuple

import aiomqtt
from aiomqtt.exceptions import MqttConnectError  # not re-exported by aiomqtt; CONNACK refusals

from adapters.mqtt._codec import PayloadError, decode, encode_command, encode_state
from adapters.sim._time import SimTime
from hub.clock import Clock
from hub.errors import AdapterAuthError, AdapterNotReady
from hub.events import Value
from hub.graph import DeviceInfo, SiteGraph, ZoneInfo
from hub.site import DeviceKind, MqttDevice, MqttDeviceType, MqttPoint, PointKind, ZoneUse

__all__ = ["MqttSimulator"]

log = logging.getLogger(__name__)

_STEP = 60.0  # simulated seconds between occupancy steps
_MIN_PERIOD = 0.05  # real seconds: the shortest repeat or step period however fast time runs
_IN_FLIGHT = 10  # QoS-1 publishes in flight at once (see the module docstring)
_BURST = 0.02  # real seconds: the scheduler sleeps at least this long, so what falls due meanwhile goes together
_CARDS = 400  # cards in the site's pool
_NAMED_STAFF = 4  # the first cards of the pool: the staff who enter level-4 rooms
_SWIPES_PER_PERSON_HOUR = 1.0  # coming and going of people already in a zone
_BIOMETRIC_MISMATCH = 0.02
_LONG_ACK = 32  # values longer than this are acknowledged by a counter
_AUTH_REFUSED = frozenset({4, 5, 134, 135})  # CONNACK: bad user name or password, not authorised (3.1.1, 5)

# ------------------------------------------------------------------------------------------------ day profiles
# (hour of day, share of capacity) knots, linear in between, nothing outside.
_Knots = tuple[tuple[float, float], ...]
_OFFICE_DAY: _Knots = (
    (7.5, 0.0), (8.75, 0.85), (11.9, 0.85), (12.1, 0.45), (12.9, 0.45), (13.1, 0.85), (17.25, 0.8),
    (18.5, 0.25), (20.5, 0.05), (21.5, 0.0),
)  # fmt: skip
_PUBLIC_DAY: _Knots = (
    (8.5, 0.2), (10.25, 0.7), (11.5, 0.85), (12.25, 0.45), (13.25, 0.75), (14.5, 0.7), (16.0, 0.35), (17.25, 0.15),
)  # fmt: skip
_PUBLIC = frozenset({ZoneUse.LOBBY, ZoneUse.COUNTER, ZoneUse.WAITING, ZoneUse.CHILDCARE, ZoneUse.HEALTH})
_CIRCULATION = frozenset({ZoneUse.CORRIDOR, ZoneUse.STAIR, ZoneUse.ELEVATOR_HALL, ZoneUse.OUTDOOR, ZoneUse.PARKING})
_SERVICE = frozenset({ZoneUse.MACHINE_ROOM, ZoneUse.ELECTRICAL, ZoneUse.PLANT, ZoneUse.STORAGE, ZoneUse.DATA_HALL})
# Zones the site model gives no capacity (circulation, plant) still see a few people.
_DEFAULT_CAPACITY = {
    ZoneUse.CORRIDOR: 10, ZoneUse.STAIR: 5, ZoneUse.ELEVATOR_HALL: 10, ZoneUse.OUTDOOR: 30, ZoneUse.PARKING: 20,
}  # fmt: skip
_BASE_TEMPERATURE = {
    ZoneUse.MACHINE_ROOM: 24.0, ZoneUse.DATA_HALL: 24.0, ZoneUse.ELECTRICAL: 27.0, ZoneUse.PLANT: 28.0,
    ZoneUse.STORAGE: 21.0,
}  # fmt: skip

# Start values by point kind; a str may name the payload text of a mapped value (status "online" -> true).
# Kinds absent here (cards, captions, queue numbers, acks, access answers) have nothing to say until something
# happens; a point with ``states`` and no start value here starts in its first state (door-mode: normal).
_START: dict[PointKind, Value] = {
    PointKind.OCCUPANCY: False, PointKind.PEOPLE_COUNT: 0, PointKind.DOOR: False, PointKind.LOCK: True,
    PointKind.FORCED: False, PointKind.HELD_OPEN: False, PointKind.CONTENT: "floor-map", PointKind.EMERGENCY: False,
    PointKind.STATUS: "online", PointKind.WIFI_MODE: "secured", PointKind.CLIENTS: 0, PointKind.FAULT: 0,
}  # fmt: skip
_EVENT_KINDS = frozenset({PointKind.CARD, PointKind.ACK})  # their topics carry events, not state


def _rng(seed: int, *names: str) -> random.Random:
    """A generator of its own per zone or device: adding one leaves the others' draws unchanged."""
    return random.Random(zlib.crc32(":".join((str(seed), *names)).encode()))  # noqa: S311 - a simulation


def _along(knots: _Knots, hour: float) -> float:
    i = bisect_right(knots, (hour, math.inf))
    if i == 0 or i == len(knots):
        return 0.0
    (h0, v0), (h1, v1) = knots[i - 1], knots[i]
    return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)


def _split(total: int, index: int, parts: int) -> int:
    """Share ``index`` of ``total`` split as evenly as possible into ``parts``."""
    return total // parts + (1 if index < total % parts else 0)


def _join(base: str, relative: str) -> str:
    return f"{base}/{relative}" if relative else base


_Block = tuple[float, float, float]  # start hour, end hour, share of capacity


def _blocks(
    rng: random.Random, first: float, last: float, lengths: tuple[float, ...], gaps: tuple[float, ...],
    fill: tuple[float, float],
) -> list[_Block]:  # fmt: skip
    """Back-to-back bookings between ``first`` and ``last`` o'clock, with gaps drawn from ``gaps``."""
    blocks: list[_Block] = []
    t = first + rng.choice(gaps)
    while t + (length := rng.choice(lengths)) <= last:
        blocks.append((t, t + length, rng.uniform(*fill)))
        t += length + rng.choice(gaps)
    return blocks


def _plan(use: ZoneUse, rng: random.Random, day: date, business: bool) -> list[_Block]:
    """The day's occupied blocks of a zone whose use is booked, sits in session or is visited."""
    if use is ZoneUse.COUNCIL_CHAMBER:
        # Regular sessions (定例会) sit in March, June, September and December.
        session = business and day.month % 3 == 0 and day.day <= 20 and rng.random() < 0.5
        return [(10.0, 12.0, 0.8), (13.0, 16.5, 0.8)] if session else []
    if use in _SERVICE:
        return _blocks(rng, 9.0, 17.0, (0.25, 0.5, 1.0), (1.0, 2.0, 3.0, 4.0), (0.5, 1.0)) if business else []
    blocks: list[_Block] = []
    if business:
        fill = (0.5, 1.0) if use is ZoneUse.CONSULTATION else (0.3, 0.9)
        blocks += _blocks(rng, 9.0, 17.5, (1.0, 1.0, 1.5, 2.0), (0.0, 0.5, 0.5, 1.0, 1.5, 2.0), fill)
    if use is ZoneUse.COLLABORATION and rng.random() < 0.5:
        blocks.append((18.0, 18.0 + rng.choice((1.5, 2.0, 3.0)), rng.uniform(0.2, 0.6)))  # residents' evening
    return blocks


class _Zone:
    """The people in one zone: a count that moves each step toward the target for the zone's use and time."""

    def __init__(self, info: ZoneInfo, seed: int) -> None:
        self.id = info.id
        self.use = info.spec.use
        self.level = info.security_level
        self.capacity = info.spec.capacity or _DEFAULT_CAPACITY.get(self.use, 2)
        self.count = 0
        self.arrived = 0  # people who came in during the last step
        self._seed = seed
        self._rng = _rng(seed, "zone", info.id)
        self._plan: tuple[date, list[_Block]] | None = None

    def target(self, local: datetime, business: bool, is_open: bool) -> float:
        hour = local.hour + local.minute / 60 + local.second / 3600
        if self.use is ZoneUse.OFFICE:
            share = _along(_OFFICE_DAY, hour) if business else 0.0
        elif self.use in _PUBLIC:
            share = _along(_PUBLIC_DAY, hour) if is_open else 0.0
        elif self.use in _CIRCULATION:
            share = 0.15 * _along(_OFFICE_DAY, hour) if business else 0.0
        elif self.use is ZoneUse.OPERATIONS:
            share = 0.3 + (0.4 * _along(_OFFICE_DAY, hour) if business else 0.0)
        else:
            day = local.date()
            if self._plan is None or self._plan[0] != day:
                self._plan = (day, _plan(self.use, _rng(self._seed, "plan", self.id, day.isoformat()), day, business))
            share = next((s for start, end, s in self._plan[1] if start <= hour < end), 0.0)
        return share * self.capacity

    def settle(self, target: float) -> None:
        """Start at the target, as if the simulation had been running."""
        self.count = min(self.capacity, round(target))

    def step(self, target: float) -> None:
        diff = target - self.count
        move = diff * 0.35 + (self._rng.gauss(0.0, 0.15 * math.sqrt(target)) if target > 0 else 0.0)
        delta = round(move)
        if delta == 0 and abs(diff) >= 1 and self._rng.random() < 0.5:
            delta = 1 if diff > 0 else -1
        count = min(self.capacity, max(0, self.count + delta))
        self.arrived = max(0, count - self.count)
        self.count = count


class _Msg(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


class _Device:
    """One simulated device: its points' values, grouped by the state topic they are published on together."""

    def __init__(self, sim: MqttSimulator, info: DeviceInfo, points: list[MqttPoint], base: str, zone: _Zone) -> None:
        self.sim = sim
        self.id = info.id
        self.info = info
        self.zone = zone
        self.rng = _rng(sim.seed, "device", info.id)
        self.index, self.peers = 0, 1  # place among the zone's devices splitting its people (see _SHARES)
        self.groups: dict[str, list[MqttPoint]] = {}
        self.topic_of: dict[str, str] = {}
        self.of_kind: dict[PointKind, MqttPoint] = {}
        self.commands: dict[str, MqttPoint] = {}
        self.values: dict[str, Value] = {}
        for p in points:
            topic = _join(base, p.topic)
            self.groups.setdefault(topic, []).append(p)
            self.topic_of[p.id] = topic
            self.of_kind.setdefault(p.kind, p)
            if p.command_topic is not None:
                self.commands[_join(base, p.command_topic)] = p
        self.events = {t for t, group in self.groups.items() if any(p.kind in _EVENT_KINDS for p in group)}
        for p in points:
            if self.topic_of[p.id] not in self.events and (start := _start(p, sim.languages[0])) is not None:
                self.values[p.id] = start

    def setup(self) -> None:
        """Take start values from the settled zones; called once ``index`` and ``peers`` are known."""

    def state(self, topic: str, *, qos: int) -> None:
        """Queue the payload of ``topic`` from the values its points have so far."""
        pairs = [(p, self.values[p.id]) for p in self.groups[topic] if p.id in self.values]
        if pairs:
            self.sim.emit(_Msg(topic, encode_state(pairs), qos, topic not in self.events))

    def put(self, kind: PointKind, value: Value) -> str | None:
        """Set the point of ``kind`` without publishing; its topic if the value changed."""
        point = self.of_kind.get(kind)
        if point is None or (point.id in self.values and self.values[point.id] == value):
            return None
        self.values[point.id] = value
        return self.topic_of[point.id]

    def set(self, *changes: tuple[PointKind, Value], force: bool = False) -> None:
        """Set points by kind and publish (QoS 1) each topic that changed, or every one touched if ``force``."""
        topics: dict[str, None] = {}
        for kind, value in changes:
            if (topic := self.put(kind, value)) is not None:
                topics[topic] = None
            elif force and kind in self.of_kind:
                self.values[self.of_kind[kind].id] = value
                topics[self.topic_of[self.of_kind[kind].id]] = None
        for topic in topics:
            self.state(topic, qos=1)

    def value(self, kind: PointKind) -> Value:
        point = self.of_kind.get(kind)
        return None if point is None else self.values.get(point.id)

    def refresh(self, t: float) -> None:
        """Bring periodic values up to simulated time ``t`` before they are repeated."""

    def on_step(self, t: float, dt: float) -> None:
        """React to the zones' occupancy step at ``t``; the next one is ``dt`` later."""

    def on_command(self, point: MqttPoint, value: Value, t: float) -> None:
        self.values[point.id] = value
        self.state(self.topic_of[point.id], qos=1)


def _start(point: MqttPoint, language: str) -> Value:
    value = language if point.kind is PointKind.LANGUAGE else _START.get(point.kind)
    if value is None and point.states and point.kind is not PointKind.ACCESS:
        value = point.states[0]
    if value is None:
        return None
    if point.values is not None:
        if isinstance(value, str) and value in point.values:
            return point.values[value]
        if value not in point.values.values():
            return next(iter(point.values.values()))
    if point.states is not None and value not in point.states:
        return point.states[0]
    return value


class _OccupancySensor(_Device):
    def setup(self) -> None:
        count = _split(self.zone.count, self.index, self.peers)
        self.put(PointKind.PEOPLE_COUNT, count)
        self.put(PointKind.OCCUPANCY, count > 0)

    def on_step(self, t: float, dt: float) -> None:
        count = _split(self.zone.count, self.index, self.peers)
        self.set((PointKind.PEOPLE_COUNT, count), (PointKind.OCCUPANCY, count > 0))


class _EnvSensor(_Device):
    """Temperature, humidity and CO2 relaxing toward occupancy-driven values with a 15-minute time constant."""

    def setup(self) -> None:
        self._air = list(self._targets())
        self._last = 0.0
        self._store()

    def _targets(self) -> tuple[float, float, float]:
        share = self.zone.count / self.zone.capacity
        return _BASE_TEMPERATURE.get(self.zone.use, 22.5) + 2.0 * share, 42.0 + 12.0 * share, 420.0 + 900.0 * share

    def refresh(self, t: float) -> None:
        alpha = 1.0 - math.exp(-(t - self._last) / 900.0)
        self._last = t
        for i, (target, noise) in enumerate(zip(self._targets(), (0.05, 0.3, 8.0), strict=True)):
            self._air[i] += (target - self._air[i]) * alpha + self.rng.gauss(0.0, noise)
        self._store()

    def _store(self) -> None:
        temperature, humidity, co2 = self._air
        self.put(PointKind.TEMPERATURE, round(temperature, 1))
        self.put(PointKind.HUMIDITY, round(humidity))
        self.put(PointKind.CO2, round(co2))


class _Door(_Device):
    """A card reader, flapper gate or exit door. Readers and gates see cards; the door (flaps) follows."""

    def setup(self) -> None:
        self.swipes = _SHARES.get(self.info.kind) == "swipe"
        self.gate = self.info.kind is DeviceKind.FLAPPER_GATE
        self._cards = self.sim.cards[:_NAMED_STAFF] if self.zone.level >= 4 else self.sim.cards
        self._open_until = -math.inf
        self._day = self.sim.local(0.0).date()
        self._passages = 0

    def _free(self) -> bool:
        """A gate in free mode: flaps held open (evacuation), nobody needs a card."""
        return self.gate and self.value(PointKind.LOCK) is False

    def on_step(self, t: float, dt: float) -> None:
        if not self.swipes:
            return
        # Everyone who came in during the step presents a card, plus the coming and going of those inside.
        times = [t + self.rng.uniform(0.0, dt) for _ in range(_split(self.zone.arrived, self.index, self.peers))]
        rate = _SWIPES_PER_PERSON_HOUR / 3600.0 * self.zone.count / self.peers
        if rate > 0:
            at = t + self.rng.expovariate(rate)
            while at < t + dt:
                times.append(at)
                at += self.rng.expovariate(rate)
        for at in times:
            self.sim.at(at, self._swipe)

    def _swipe(self, t: float) -> None:
        if self.gate:
            self._roll(t)
            self._passages += 1
            self.put(PointKind.PEOPLE_COUNT, self._passages)  # goes out with the next stats repeat
        if self._free():
            return
        card = self.rng.choice(self._cards)
        self.set((PointKind.CARD, card), (PointKind.STATUS, self.rng.random() >= _BIOMETRIC_MISMATCH), force=True)
        self.sim.at(t + (self.rng.uniform(0.5, 1.5) if self.gate else self.rng.uniform(1.0, 3.0)), self._open)

    def _open(self, t: float) -> None:
        was_closed = self._open_until < t
        self._open_until = max(
            self._open_until, t + (self.rng.uniform(2.0, 3.0) if self.gate else self.rng.uniform(3.0, 8.0))
        )
        if was_closed:
            self.set((PointKind.DOOR, True))
            self.sim.at(self._open_until, self._close)

    def _close(self, t: float) -> None:
        if t < self._open_until:  # someone else came through meanwhile
            self.sim.at(self._open_until, self._close)
        elif not self._free():
            self.set((PointKind.DOOR, False))

    def _roll(self, t: float) -> None:
        """Passages count since local midnight."""
        day = self.sim.local(t).date()
        if day != self._day:
            self._day = day
            self._passages = 0
            self.put(PointKind.PEOPLE_COUNT, 0)

    def refresh(self, t: float) -> None:
        if self.gate:
            self._roll(t)

    def on_command(self, point: MqttPoint, value: Value, t: float) -> None:
        super().on_command(point, value, t)
        if self.gate and point.kind is PointKind.LOCK:
            self.set((PointKind.DOOR, value is False or self._open_until > t))


class _Signage(_Device):
    def setup(self) -> None:
        self._acks = 0

    def on_command(self, point: MqttPoint, value: Value, t: float) -> None:
        super().on_command(point, value, t)
        self._acks += 1
        shown = encode_command(point, value).decode()
        ack = f"{point.id}={shown}" if len(shown) <= _LONG_ACK else f"{point.id}#{self._acks}"
        self.set((PointKind.ACK, ack), force=True)


class _WifiController(_Device):
    def setup(self) -> None:
        self._zones = [self.sim.zones[z.id] for z in self.sim.graph.zones_in(self.info.building)]
        self.refresh(0.0)

    def refresh(self, t: float) -> None:
        people = sum(z.count for z in self._zones)
        self.put(PointKind.CLIENTS, round(people * self.rng.uniform(0.5, 0.7)))


# Devices of a zone that split its people between them: sensors each count a part of the room, and each door
# into it takes a part of the traffic.
_SHARES = {DeviceKind.OCCUPANCY_SENSOR: "count", DeviceKind.DOOR_READER: "swipe", DeviceKind.FLAPPER_GATE: "swipe"}
_ROLES: dict[DeviceKind, type[_Device]] = {
    DeviceKind.OCCUPANCY_SENSOR: _OccupancySensor,
    DeviceKind.ENV_SENSOR: _EnvSensor,
    DeviceKind.DOOR_READER: _Door,
    DeviceKind.FLAPPER_GATE: _Door,
    DeviceKind.DOOR: _Door,
    DeviceKind.SIGNAGE: _Signage,
    DeviceKind.WIFI_CONTROLLER: _WifiController,
}


class MqttSimulator:
    """Every MQTT device of ``graph`` on the broker at ``host:port``: a supervised service (``run``)."""

    name = "simulator"

    def __init__(
        self,
        graph: SiteGraph,
        host: str,
        port: int,
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: datetime | None = None,
        username: str | None = None,
        password: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.time = SimTime(graph, speed=speed, start=start, clock=clock)
        self.graph = graph
        self.seed = seed
        self.speed = speed
        self.languages = graph.model.site.languages
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._step_length = max(_STEP, _MIN_PERIOD * speed)
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._outbox: list[_Msg] = []
        self._published = self._handled = self._rejected = 0

        pool = _rng(seed, "cards", graph.site_id).sample(range(1 << 24), _CARDS)
        self.cards = [f"04:{n >> 16:02X}:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}" for n in pool]
        self.zones = {z.id: _Zone(z, seed) for z in graph.zones.values()}
        local = self.local(0.0)
        business, is_open = self.time.calendar.is_business_day(local.date()), self.time.calendar.is_open(local)
        for zone in self.zones.values():
            zone.settle(zone.target(local, business, is_open))

        self.devices: list[_Device] = []
        self._commands: dict[str, tuple[_Device, MqttPoint]] = {}
        infos = graph.find_devices(protocol="mqtt")
        peers = Counter((i.zone, _SHARES[i.kind]) for i in infos if i.kind in _SHARES)
        placed: Counter[tuple[str, str]] = Counter()
        for info in infos:
            if not isinstance(info.type, MqttDeviceType) or not isinstance(info.spec, MqttDevice):
                continue  # find_devices(protocol="mqtt") gives only these; the check tells the type checker
            role = _ROLES.get(info.kind, _Device)
            device = role(self, info, info.type.points, info.spec.topic, self.zones[info.zone])
            if info.kind in _SHARES:
                share = (info.zone, _SHARES[info.kind])
                device.index, device.peers = placed[share], peers[share]
                placed[share] += 1
            device.setup()
            self.devices.append(device)
            self._commands.update((topic, (device, p)) for topic, p in device.commands.items())
            for topic, points in device.groups.items():
                intervals = [p.interval for p in points if p.interval is not None]
                if intervals:
                    period = max(min(intervals), _MIN_PERIOD * speed)
                    self.at(device.rng.uniform(0.0, period), self._repeat(device, topic, period))
        self.at(self._step_length, self._step)

    # -------------------------------------------------------------------------------------------- model
    def local(self, t: float) -> datetime:
        """Simulated time ``t`` (seconds since start) in the site's timezone."""
        return self.time.local(t)

    def at(self, t: float, action: Callable[[float], None]) -> None:
        """Run ``action(t)`` at simulated time ``t``."""
        heapq.heappush(self._heap, (t, next(self._seq), action))

    def emit(self, message: _Msg) -> None:
        """Queue ``message`` for the next burst."""
        self._outbox.append(message)

    def _step(self, t: float) -> None:
        local = self.local(t)
        business, is_open = self.time.calendar.is_business_day(local.date()), self.time.calendar.is_open(local)
        for zone in self.zones.values():
            zone.step(zone.target(local, business, is_open))
        for device in self.devices:
            device.on_step(t, self._step_length)
        self.at(t + self._step_length, self._step)

    def _repeat(self, device: _Device, topic: str, period: float) -> Callable[[float], None]:
        def repeat(t: float) -> None:
            device.refresh(t)
            device.state(topic, qos=0)
            self.at(t + period, repeat)

        return repeat

    def _now(self) -> float:
        return self.time.now()

    def _advance(self, now: float) -> None:
        """Run everything due by simulated time ``now``, in order."""
        while self._heap[0][0] <= now:
            t, _, action = heapq.heappop(self._heap)
            action(t)

    def counts(self) -> dict[str, int]:
        """Messages published, commands applied and commands rejected (bad payload) since construction."""
        return {"published": self._published, "commands": self._handled, "rejected": self._rejected}

    # -------------------------------------------------------------------------------------------- service
    async def run(self, ready: Callable[[], None]) -> None:
        """Connect, subscribe to the command topics, publish the whole state, call ``ready()``, then serve the
        schedule and the commands until cancelled. A broker that cannot be reached or drops the connection raises
        :class:`AdapterNotReady` (the supervisor retries); refused credentials raise :class:`AdapterAuthError`."""
        where = f"MQTT broker {self._host}:{self._port}"
        try:
            async with aiomqtt.Client(
                self._host,
                self._port,
                identifier=f"bmhub-sim-{self.graph.site_id}",
                protocol=aiomqtt.ProtocolVersion.V311,
                username=self._username,
                password=self._password,
            ) as client:
                if self._commands:
                    await client.subscribe([(topic, 1) for topic in self._commands])
                self.time.begin()
                self._advance(self._now())
                self._outbox = []
                for device in self.devices:
                    for topic in device.groups:
                        if topic not in device.events:
                            device.state(topic, qos=1)
                await self._flush(client)
                log.info("simulator: %d MQTT devices on %s, %gx time", len(self.devices), where, self.speed)
                ready()
                await self._serve(client)
        except MqttConnectError as exc:
            if any(exc.rc == code for code in _AUTH_REFUSED):
                raise AdapterAuthError(f"simulator: {where} refused the credentials: {exc}") from exc
            raise AdapterNotReady(f"simulator: {where}: {exc}") from exc
        except aiomqtt.MqttError as exc:
            raise AdapterNotReady(f"simulator: {where}: {exc}") from exc

    async def _serve(self, client: aiomqtt.Client) -> None:
        tasks = [
            asyncio.create_task(self._serve_commands(client), name="simulator-commands"),
            asyncio.create_task(self._serve_schedule(client), name="simulator-schedule"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
        raise AdapterNotReady("simulator: the MQTT client stopped delivering messages")

    async def _serve_schedule(self, client: aiomqtt.Client) -> None:
        while True:
            self._advance(self._now())
            await self._flush(client)
            await self.time.clock.sleep(max(_BURST, (self._heap[0][0] - self._now()) / self.speed))

    async def _serve_commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            target = self._commands.get(message.topic.value)
            if target is None:
                continue
            device, point = target
            payload = message.payload
            try:
                value = decode(point, payload)
                decode(point, encode_state([(point, value)]))  # a value the device could not show back
            except PayloadError as exc:
                self._rejected += 1
                log.warning("simulator: %s ignored %r on %s: %s", device.id, payload[:60], message.topic.value, exc)
                continue
            self._handled += 1
            device.on_command(point, value, self._now())
            await self._flush(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        """Publish everything queued, in order, as one burst."""
        burst, self._outbox = self._outbox, []
        if not burst:
            return
        for i in range(0, len(burst), _IN_FLIGHT):
            window = burst[i : i + _IN_FLIGHT]
            results = await asyncio.gather(
                *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in window),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            self._published += len(results) - len(failed)
            if failed:
                raise failed[0]
