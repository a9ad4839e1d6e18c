"""The simulated Modbus plant: every Modbus device of a site graph, served by pymodbus TCP servers.

:class:`ModbusSimulator` runs one ``ModbusTcpServer`` per (host, port) endpoint of the site model, bound to that
host only (the model's gateways are 127.0.4.x; Linux routes all of 127/8 to ``lo``), with one pymodbus
``SimDevice`` per unit id. Endpoints whose address is not a loopback address are not served: the simulator
never listens on a real network. Tests move endpoints to free ports with ``endpoints={(host, port): (bind host,
bind port)}``.

Registers are written with :func:`adapters.modbus._codec.encode` at the moment they are read (pymodbus calls the
device's ``action`` on every access), so a read always sees the plant at the simulated time of the request, in
the type, word order, byte order and scale its point declares: the simulator and the adapter agree by
construction. A device answers reads anywhere between the lowest and highest address its points use in a table
(unused registers read 0) and refuses anything outside with exception 2 (illegal data address).

Writes go to writable points only (coils, holding registers) and the device keeps them; a write touching any
other address is refused with exception 2, a value outside the point's min/max with exception 3 (illegal data
value). A CRAH's supply-air temperature follows its written setpoint.

Values, per point kind, drift smoothly (two sine waves with periods and phases of their own per point, seeded
with crc32(seed, device, point), so a seed reproduces a run): power follows the business calendar (offices full
while open, a base load at night; data-centre equipment runs round the clock), currents follow power on a
415/240 V 50 Hz supply, energy counters grow with the mean load, the standby generator is idle (not running,
no output) with its fuel and starter battery steady, alarms and faults are off.

Simulated time is ``start + (clock.monotonic() at the request - at the first run) × speed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.modbus import endpoints_of
from adapters.modbus._codec import CodecError, decode, encode, encode_bit
from adapters.sim._time import SimTime
from hub.clock import Clock
from hub.errors import AdapterNotReady
from hub.events import Value
from hub.graph import DeviceInfo, SiteGraph
from hub.site import BuildingKind, DeviceKind, ModbusDevice, ModbusDeviceType, ModbusPoint, PointKind

__all__ = ["ModbusSimulator"]

log = logging.getLogger(__name__)

_Behaviour = Callable[[float, float], Value]  # (simulated seconds, load 0-1) → value
_TABLE_OF_FUNCTION = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding", 16: "holding",
                      22: "holding", 23: "holding", 4: "input"}  # fmt: skip
_WRITES = frozenset({5, 6, 15, 16, 22, 23})
_V_LL, _V_LN, _PF = 415.0, 240.0, 0.95
_ROUND_THE_CLOCK = frozenset({DeviceKind.PDU, DeviceKind.COOLING, DeviceKind.ENV_SENSOR})


def _rng(seed: int, *names: str) -> random.Random:
    return random.Random(zlib.crc32(":".join((str(seed), "modbus", *names)).encode()))  # noqa: S311 - a simulation


def _wave(rng: random.Random) -> Callable[[float], float]:
    """A smooth drift in [-1, 1]: a slow and a faster sine, with periods and phases of this point's own."""
    slow, fast = rng.uniform(900.0, 3600.0), rng.uniform(60.0, 300.0)
    p1, p2 = rng.uniform(0.0, math.tau), rng.uniform(0.0, math.tau)
    return lambda t: 0.65 * math.sin(math.tau * t / slow + p1) + 0.35 * math.sin(math.tau * t / fast + p2)


class _Unit:
    """One simulated device (a unit id behind a gateway): its points' behaviour, held values and registers."""

    def __init__(self, sim: ModbusSimulator, info: DeviceInfo, unit: int, points: list[ModbusPoint]) -> None:
        self.id = info.id
        self.unit = unit
        self.kind = info.kind
        self._sim = sim
        self.points = points
        self.by_table: dict[str, list[ModbusPoint]] = {}
        for p in points:
            self.by_table.setdefault(p.table, []).append(p)
        self.spans = {t: (min(p.address for p in ps), max(p.address + p.width for p in ps))
                      for t, ps in self.by_table.items()}  # fmt: skip
        rng = _rng(sim.seed, info.id)
        data_centre = sim.graph.buildings[info.building].kind is BuildingKind.DATA_CENTRE
        self.round_the_clock = data_centre or info.kind in _ROUND_THE_CLOCK
        if info.kind is DeviceKind.PDU:
            self.rated_kw = rng.uniform(2.5, 7.0)
        elif info.kind is DeviceKind.GENERATOR:
            self.rated_kw = 0.0  # standby: idle
        elif any(p.type == "float32" for p in points):
            self.rated_kw = rng.uniform(250.0, 450.0)  # the float meters are the data centre's incomers
        else:
            self.rated_kw = rng.uniform(30.0, 150.0)
        self.energy0 = rng.uniform(2e4, 8e4) if info.kind is DeviceKind.PDU else rng.uniform(1e5, 2e6)
        self.held: dict[str, Value] = {}
        self.behaviour: dict[str, _Behaviour] = {p.id: self._behaviour(p) for p in points}
        for p in points:
            if p.writable:
                self.held[p.id] = self._clamp(p, self.behaviour[p.id](0.0, 1.0))

    # ------------------------------------------------------------------ values
    @staticmethod
    def _clamp(p: ModbusPoint, value: Value) -> Value:
        if isinstance(value, float):
            if p.min is not None:
                value = max(value, p.min)
            if p.max is not None:
                value = min(value, p.max)
        return value

    def _behaviour(self, p: ModbusPoint) -> _Behaviour:
        w = _wave(_rng(self._sim.seed, self.id, p.id))
        pid, kind, rated = p.id, p.kind, self.rated_kw
        idle = self.kind is DeviceKind.GENERATOR

        def power(t: float, load: float) -> float:
            return rated * load * (1 + 0.05 * w(t))

        match kind:
            case PointKind.POWER:
                if "peak" in pid:
                    return lambda t, load: rated * 1.1
                return power
            case PointKind.CURRENT:
                phase_volts = _V_LN * 3 if self.kind is DeviceKind.PDU else math.sqrt(3) * _V_LL
                return lambda t, load: power(t, load) * 1000 / (phase_volts * _PF) * (1 + 0.03 * w(t))
            case PointKind.VOLTAGE:
                if "battery" in pid:
                    return lambda t, load: 27.3 + 0.1 * w(t)
                if idle:
                    return lambda t, load: 0.0
                nominal = _V_LL if ("ll" in pid.split("-") or "ab" in pid.split("-")) else _V_LN
                return lambda t, load: nominal * (1 + 0.01 * w(t))
            case PointKind.FREQUENCY:
                return (lambda t, load: 0.0) if idle else (lambda t, load: 50.0 + 0.03 * w(t))
            case PointKind.ENERGY:
                if "received" in pid:
                    return lambda t, load: round(self.energy0 * 1e-4)
                mean = 0.85 if self.round_the_clock else 0.6
                return lambda t, load: self.energy0 + rated * mean * t / 3600.0
            case PointKind.FUEL_LEVEL:
                level = _rng(self._sim.seed, self.id, "fuel").uniform(70.0, 95.0)
                return lambda t, load: level
            case PointKind.TEMPERATURE | PointKind.SETPOINT:
                return self._temperature(p, w)
            case PointKind.HUMIDITY:
                return lambda t, load: 45.0 + 5.0 * w(t)
            case PointKind.FAN_SPEED:
                return lambda t, load: 70.0 + 8.0 * w(t)
            case PointKind.VALVE:
                return lambda t, load: 45.0 + 15.0 * w(t)
            case PointKind.DIMMER:
                return lambda t, load: 80.0
            case PointKind.RUN:
                return lambda t, load: not idle
            case PointKind.STATUS | PointKind.LIGHT | PointKind.FAN:
                return lambda t, load: True
        return lambda t, load: False if p.type == "bool" else 0.0  # alarms, faults, anything unknown: quiet

    def _temperature(self, p: ModbusPoint, w: Callable[[float], float]) -> _Behaviour:
        parts = p.id.split("-")
        if p.kind is PointKind.SETPOINT:
            return lambda t, load: 18.0 if "supply" in parts else 22.0
        setpoint = next((q.id for q in self.points if q.kind is PointKind.SETPOINT), None)

        def supply() -> float:
            held = self.held.get(setpoint, 18.0) if setpoint else 18.0
            return float(held) if isinstance(held, int | float) else 18.0

        if "supply" in parts:
            return lambda t, load: supply() + 0.3 * w(t)
        if "return" in parts:
            return lambda t, load: supply() + 10.0 + 1.0 * w(t)
        if "inlet" in parts:
            return lambda t, load: 23.0 + 0.8 * w(t)
        if "outlet" in parts:
            return lambda t, load: 34.0 + 1.5 * w(t)
        return lambda t, load: 22.0 + 1.0 * w(t)

    def value(self, p: ModbusPoint, t: float, load: float) -> Value:
        if p.id in self.held:
            return self.held[p.id]
        return self._clamp(p, self.behaviour[p.id](t, load))

    # ------------------------------------------------------------------ pymodbus
    def simdevice(self) -> SimDevice:
        def table(name: str, bits: bool) -> list[SimData]:
            span = self.spans.get(name)
            if span is None:  # pymodbus wants every table; ``action`` refuses access to this one
                return [SimData(0, values=[False] * 16, datatype=DataType.BITS) if bits
                        else SimData(0, datatype=DataType.INVALID)]  # fmt: skip
            start, end = span
            if bits:
                return [SimData(start, values=[False] * (end - start), datatype=DataType.BITS)]
            return [SimData(start, values=[0] * (end - start), datatype=DataType.REGISTERS)]

        return SimDevice(
            id=self.unit,
            simdata=(table("coil", True), table("discrete", True), table("holding", False), table("input", False)),
            action=self.action,
        )

    async def action(
        self, function_code: int, start: int, address: int, count: int, registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:  # fmt: skip
        """pymodbus calls this on every access, before it reads or writes ``registers`` (the table's block, which
        starts at register ``start``; for coils and inputs 16 bits a register and ``count`` in registers)."""
        table = _TABLE_OF_FUNCTION.get(function_code)
        span = self.spans.get(table or "")
        if table is None or span is None:
            return ExcCodes.ILLEGAL_ADDRESS
        bits = table in ("coil", "discrete")
        n = len(set_values) if set_values is not None else (1 if bits else count)
        if address < span[0] or address + n > span[1]:
            return ExcCodes.ILLEGAL_ADDRESS
        t, load = self._sim.now()
        self._refresh(table, start, registers, t, load)
        if set_values is not None and function_code in _WRITES:
            return self._write(table, start, address, set_values, registers)
        return None

    def _refresh(self, table: str, start: int, registers: list[int], t: float, load: float) -> None:
        """Write every point of ``table`` into its registers as it is at simulated time ``t``."""
        for p in self.by_table.get(table, ()):
            value = self.value(p, t, load)
            try:
                if p.type == "bool":
                    reg, bit = divmod(p.address, 16)
                    mask = 1 << bit
                    i = reg - start
                    registers[i] = registers[i] | mask if encode_bit(p, value) else registers[i] & ~mask
                else:
                    i = p.address - start
                    registers[i : i + p.width] = encode(p, value)
            except CodecError as exc:
                self._sim.note_unencodable(self.id, p.id, exc)

    def _write(
        self, table: str, start: int, address: int, values: list[int] | list[bool], registers: list[int]
    ) -> ExcCodes | None:
        owner: dict[int, ModbusPoint] = {}
        for p in self.by_table.get(table, ()):
            owner.update((a, p) for a in range(p.address, p.address + p.width))
        touched = range(address, address + len(values))
        if any(a not in owner or not owner[a].writable for a in touched):
            self._sim.refused += 1
            return ExcCodes.ILLEGAL_ADDRESS
        updates: dict[str, Value] = {}
        for p in {owner[a].id: owner[a] for a in touched}.values():
            if p.type == "bool":
                updates[p.id] = bool(values[p.address - address])
                continue
            words = list(registers[p.address - start : p.address - start + p.width])
            for a in range(p.address, p.address + p.width):
                if a in touched:
                    words[a - p.address] = int(values[a - address])
            try:
                value = decode(p, words)
            except CodecError:
                self._sim.refused += 1
                return ExcCodes.ILLEGAL_VALUE
            if (p.min is not None and value < p.min) or (p.max is not None and value > p.max):
                self._sim.refused += 1
                return ExcCodes.ILLEGAL_VALUE
            updates[p.id] = value
        self.held.update(updates)
        self._sim.writes += 1
        return None


class ModbusSimulator:
    """Every Modbus device of ``graph`` on pymodbus TCP servers, one per endpoint: a supervised service."""

    name = "modbus-sim"

    def __init__(
        self,
        graph: SiteGraph,
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: datetime | None = None,
        clock: Clock | None = None,
        endpoints: Mapping[tuple[str, int], tuple[str, int]] | None = None,
    ) -> None:
        """``endpoints`` maps a site-model ``(host, port)`` to the loopback address to listen on instead."""
        self.time = SimTime(graph, speed=speed, start=start, clock=clock)
        self.graph = graph
        self.seed = seed
        self.speed = speed
        self.writes = self.refused = self.requests = 0
        self._unencodable: set[tuple[str, str]] = set()
        self.servers: dict[tuple[str, int], tuple[tuple[str, int], list[_Unit]]] = {}
        overrides = endpoints or {}
        for (host, port), infos in endpoints_of(graph.find_devices(protocol="modbus")).items():
            bind = overrides.get((host, port), (host, port))
            if not _is_loopback(bind[0]):
                log.warning("modbus-sim: not serving %s:%d (%d devices): the simulator listens on loopback "
                            "addresses only", bind[0], bind[1], len(infos))  # fmt: skip
                continue
            units = []
            for info in infos:
                if not isinstance(info.spec, ModbusDevice) or not isinstance(info.type, ModbusDeviceType):
                    continue  # endpoints_of gives only these; the check tells the type checker
                units.append(_Unit(self, info, info.spec.unit_id, list(info.type.points)))
            self.servers[(host, port)] = (bind, units)

    def now(self) -> tuple[float, float]:
        """Simulated seconds since the start, and the building's load factor then (0-1)."""
        t = self.time.now()
        local = self.time.local(t)
        if self.time.calendar.is_open(local):
            load = 1.0
        elif self.time.calendar.is_business_day(local.date()) and 7 <= local.hour < 21:
            load = 0.6
        else:
            load = 0.35
        return t, load

    def note_unencodable(self, device: str, point: str, exc: CodecError) -> None:
        if (device, point) not in self._unencodable:
            self._unencodable.add((device, point))
            log.warning("modbus-sim: %s.%s cannot show its simulated value: %s", device, point, exc)

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests += 1
        return pdu

    async def run(self, ready: Callable[[], None]) -> None:
        """Listen on every endpoint, call ``ready()``, serve until cancelled. An address that cannot be bound
        raises :class:`AdapterNotReady` (the supervisor retries)."""
        self.time.begin()
        self.now()  # loads the holiday tables now (~0.1 s), not while the first request waits
        servers: list[ModbusTcpServer] = []
        try:
            for bind, units in self.servers.values():
                server = ModbusTcpServer([u.simdevice() for u in units], address=bind, trace_pdu=self._trace)
                try:
                    await server.serve_forever(background=True)
                except RuntimeError as exc:
                    raise AdapterNotReady(f"modbus-sim: cannot listen on {bind[0]}:{bind[1]}: {exc}") from exc
                servers.append(server)
            log.info("modbus-sim: %d devices on %d endpoints, %gx time",
                     sum(len(u) for _, u in self.servers.values()), len(servers), self.speed)  # fmt: skip
            ready()
            await asyncio.Event().wait()
        finally:
            for server in servers:
                with contextlib.suppress(Exception):
                    await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated

    def details(self) -> dict[str, Any]:
        return {
            "endpoints": {f"{h}:{p}": f"{b[0]}:{b[1]}" for (h, p), (b, _) in self.servers.items()},
            "devices": sum(len(u) for _, u in self.servers.values()),
            "requests": self.requests,
            "writes": self.writes,
            "refused": self.refused,
        }


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
