"""The Modbus bridge against real pymodbus TCP servers on 127.0.0.1 (no mocks): decoding, request counts,
writes with read-back, exception responses, and devices or gateways that stop answering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.modbus import ModbusBridge, ModbusSettings, create
from hub.adapter import AdapterContext
from hub.bus import Bus
from hub.errors import AdapterNotReady
from hub.events import Alarm, Command, CommandResult, Quality, Reading
from hub.graph import SiteGraph
from hub.occupancy import OccupancyTracker
from hub.runtime import Runtime
from hub.settings import Settings
from hub.site import SiteModel, load_site
from hub.state import StateStore
from hub.supervisor import Health
from hub.yamlsrc import load_yaml
from tests.conftest import FIXTURES, FakeClock
from tests.helpers import running, until
from tests.servers import free_port

MINIMAL = FIXTURES / "site" / "minimal.yaml"
INTERVAL = 0.2  # seconds between polls of the test device types
DT = AsyncModbusTcpClient.DATATYPE
FAST = {"TIMEOUT": "0.3", "RETRIES": "0", "RECONNECT_DELAY": "0.05", "RECONNECT_DELAY_MAX": "0.2"}


def _p(id_: str, kind: str, table: str, address: int, type_: str = "uint16", **kw: Any) -> dict[str, Any]:
    return {"id": id_, "kind": kind, "table": table, "address": address, "type": type_, "interval": INTERVAL, **kw}


TYPES: dict[str, Any] = {
    "decoder": {"kind": "power-meter", "protocol": "modbus", "points": [
        _p("power", "power", "holding", 0, "float32", unit="kW"),
        _p("power-mixed", "power", "holding", 2, "float32", word_order="little", unit="kW"),
        _p("energy", "energy", "holding", 4, "int32-m10k", unit="kWh"),
        _p("energy-u", "energy", "holding", 6, "uint32-m10k", unit="kWh"),
        _p("setpoint", "setpoint", "holding", 10, "int16", scale=0.1, writable=True, min=16, max=27),
        _p("limit", "setpoint", "holding", 12, "float32", word_order="little", writable=True),
        _p("locked", "setpoint", "holding", 14, writable=True),  # the device refuses writes (read-only register)
        _p("ghost", "power", "holding", 16),  # the device has no register 16: exception 2
        _p("temperature", "temperature", "input", 0, "int16", scale=0.1, unit="degC"),
        _p("swapped", "energy", "input", 1, "uint32", byte_order="little"),
        _p("running", "run", "discrete", 0, "bool"),
        _p("enable", "status", "coil", 0, "bool", writable=True),
    ]},
    "block": {"kind": "pdu", "protocol": "modbus", "points": [
        *(_p(f"r{a}", "current", "holding", a) for a in range(20)),
        *(_p(f"c{a}", "alarm", "coil", a, "bool") for a in range(3)),
    ]},
    "sparse": {"kind": "pdu", "protocol": "modbus", "points": [
        _p("near", "current", "holding", 0), _p("far", "power", "holding", 201, "float32"),
    ]},
}  # fmt: skip


def site(tmp_path: Path, gateway: int, second: int) -> SiteModel:
    """minimal.yaml with every Modbus device moved to ``gateway`` on 127.0.0.1, plus the test's device types:
    a decoder (unit 10) on the same gateway, a block (20) and a sparse device (21) on the ``second``."""
    data, _ = load_yaml(MINIMAL)  # the hub's YAML reading (17:15 is a time, not sexagesimal 1035)
    data["device_types"].update(TYPES)
    for zone in data["zones"]:
        for dev in zone["devices"]:
            if dev["protocol"] == "modbus":
                dev.update(host="127.0.0.1", port=gateway)
    room = next(z for z in data["zones"] if z["id"] == "machine-room")
    room["devices"] += [
        {"id": "mr-decoder", "type": "decoder", "protocol": "modbus", "host": "127.0.0.1", "port": gateway,
         "unit_id": 10},
        {"id": "mr-block", "type": "block", "protocol": "modbus", "host": "127.0.0.1", "port": second, "unit_id": 20},
        {"id": "mr-sparse", "type": "sparse", "protocol": "modbus", "host": "127.0.0.1", "port": second,
         "unit_id": 21},
    ]  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


# ------------------------------------------------------------------------------------------------ devices
def regs(address: int, words: Sequence[int], *, readonly: bool = False) -> SimData:
    return SimData(address, values=list(words), datatype=DataType.REGISTERS, readonly=readonly)


def bits(address: int, values: Sequence[bool]) -> SimData:
    return SimData(address, values=list(values), datatype=DataType.BITS)


NO_BITS = [bits(0, [False] * 16)]
NO_REGS = [SimData(0, datatype=DataType.INVALID)]


class Switch:
    """Makes a unit misbehave on demand: answer through the gateway with exception 11, or not at all."""

    def __init__(self) -> None:
        self.muted: set[int] = set()
        self.hung: set[int] = set()
        self.release = asyncio.Event()

    def action(self, unit: int) -> Callable[..., Any]:
        async def action(*_: Any) -> ExcCodes | None:
            if unit in self.hung:
                await self.release.wait()
            return ExcCodes.GATEWAY_NO_RESPONSE if unit in self.muted else None

        return action


def gateway_devices(switch: Switch) -> list[SimDevice]:
    """minimal.yaml's meters (units 1, 4) and PDUs (2, 3), and the decoder (10), with known registers."""
    meter = [regs(0, [*AsyncModbusTcpClient.convert_to_registers(42.5, DT.FLOAT32), 0, 1234])]
    pdu = [regs(10, [123])]
    decoder_holding = [
        regs(0, [
            *AsyncModbusTcpClient.convert_to_registers(230.1, DT.FLOAT32),  # pymodbus encodes: not our codec
            *AsyncModbusTcpClient.convert_to_registers(-12.25, DT.FLOAT32, word_order="little"),
            12345, 6789,  # int32-m10k 123 456 789
            60000, 9999,  # uint32-m10k 600 009 999
            0, 0,
            215,  # setpoint 21.5
            0,
            *AsyncModbusTcpClient.convert_to_registers(55.5, DT.FLOAT32, word_order="little"),
        ]),
        regs(14, [7], readonly=True),
    ]  # fmt: skip
    decoder_input = [regs(0, [0x10000 - 123, 0x3412, 0x7856])]  # -12.3 degC; 0x12345678 with bytes swapped
    return [
        SimDevice(1, simdata=(NO_BITS, NO_BITS, meter, NO_REGS), action=switch.action(1)),
        SimDevice(2, simdata=(NO_BITS, NO_BITS, NO_REGS, pdu), action=switch.action(2)),
        SimDevice(3, simdata=(NO_BITS, NO_BITS, NO_REGS, pdu), action=switch.action(3)),
        SimDevice(4, simdata=(NO_BITS, NO_BITS, meter, NO_REGS), action=switch.action(4)),
        SimDevice(10, simdata=([bits(0, [False])], [bits(0, [True])], decoder_holding, decoder_input),
                  action=switch.action(10)),
    ]  # fmt: skip


def second_devices(switch: Switch) -> list[SimDevice]:
    block = (
        [bits(0, [True, False, True])],
        NO_BITS,
        [regs(0, list(range(100, 120)))],
        NO_REGS,
    )
    sparse = (NO_BITS, NO_BITS, [regs(0, [7]), regs(201, AsyncModbusTcpClient.convert_to_registers(1.5, DT.FLOAT32))],
              NO_REGS)  # fmt: skip
    return [SimDevice(20, simdata=block, action=switch.action(20)),
            SimDevice(21, simdata=sparse, action=switch.action(21))]  # fmt: skip


class Server:
    """A pymodbus TCP server of the test's own on 127.0.0.1, counting the requests it receives."""

    def __init__(self, devices: Callable[[], list[SimDevice]], port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[ModbusPDU] = []
        self._devices = devices
        self._server: ModbusTcpServer | None = None

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append(pdu)
        return pdu

    async def start(self) -> None:
        self._server = ModbusTcpServer(self._devices(), address=("127.0.0.1", self.port), trace_pdu=self._trace)
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def read_holding(self, unit: int, address: int, count: int) -> list[int]:
        """The registers as any other client sees them."""
        client = AsyncModbusTcpClient("127.0.0.1", port=self.port, reconnect_delay=0)
        try:
            assert await client.connect()
            response = await client.read_holding_registers(address, count=count, device_id=unit)
            assert not response.isError(), response
            return list(response.registers)
        finally:
            client.close()


@contextlib.asynccontextmanager
async def servers(switch: Switch) -> AsyncIterator[tuple[Server, Server]]:
    first, second = Server(lambda: gateway_devices(switch)), Server(lambda: second_devices(switch))
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        switch.release.set()
        await first.stop()
        await second.stop()


@contextlib.asynccontextmanager
async def running_hub(model: SiteModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    for key, value in FAST.items():
        monkeypatch.setenv(f"BMHUB_MODBUS_{key}", value)
    rt = Runtime(model, Settings(state_dir=tmp_path / "state", api=False, status_interval=0.1), adapters=("modbus",))
    async with running(rt):
        yield rt


def bridge(rt: Runtime, port: int) -> ModbusBridge:
    return next(s for _, s in rt.services if isinstance(s, ModbusBridge) and s.target == ("127.0.0.1", port))


def value(rt: Runtime, point: str) -> Any:
    st = rt.state.get(point)
    return None if st is None else st.value


def quality(rt: Runtime, point: str) -> Quality | None:
    st = rt.state.get(point)
    return None if st is None else st.quality


def points_of(rt: Runtime, device: str) -> tuple[str, ...]:
    return rt.graph.devices[device].points


# ------------------------------------------------------------------------------------------------ tests
async def test_decodes_word_orders_m10k_scale_and_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = Switch()
    async with servers(switch) as (gw, second):
        model = site(tmp_path, gw.port, second.port)
        async with running_hub(model, tmp_path, monkeypatch) as rt:
            await until(lambda: all(rt.state.get(p) for p in points_of(rt, "mr-decoder")), "the decoder's points")
            got = {p.split(".")[1]: value(rt, p) for p in points_of(rt, "mr-decoder")}
            assert got == {
                "power": 230.1, "power-mixed": -12.25, "energy": 123456789, "energy-u": 600009999,
                "setpoint": 21.5, "limit": 55.5, "locked": 7, "ghost": None, "temperature": -12.3,
                "swapped": 0x12345678, "running": True, "enable": False,
            }  # fmt: skip
            assert isinstance(got["energy"], int)
            st = rt.state.get("mr-decoder.power")
            assert st is not None
            assert (st.quality, st.source) == (Quality.GOOD, "modbus")
            await until(lambda: rt.state.get("mr-meter.energy"), "minimal.yaml's meter")
            assert (value(rt, "lobby-meter.power"), value(rt, "mr-meter.energy")) == (42.5, 1234)
            assert value(rt, "mr-pdu-a.current") == 12.3


async def test_exception_response_turns_only_that_point_bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ghost register merges into the decoder's holding read; the device refuses the whole read (exception
    2), the bridge splits it, keeps the split, and only the ghost is bad. The hub runs on."""
    switch = Switch()
    async with servers(switch) as (gw, second):
        model = site(tmp_path, gw.port, second.port)
        async with running_hub(model, tmp_path, monkeypatch) as rt:
            await until(lambda: quality(rt, "mr-decoder.ghost") is Quality.BAD, "the unmapped point to turn bad")
            assert all(quality(rt, p) is Quality.GOOD for p in points_of(rt, "mr-decoder") if not p.endswith("ghost"))
            dev = bridge(rt, gw.port).details()["devices"]["mr-decoder"]
            assert dev["state"] == "error"
            assert "Modbus exception 2 (ILLEGAL DATA ADDRESS)" in dev["last_error"]
            assert dev["reads_per_poll"] == 7  # holding 0-16 split into 0-7, 10, 12-14, 16; input; discrete; coil
            polls = dev["polls"]
            await until(lambda: bridge(rt, gw.port).details()["devices"]["mr-decoder"]["polls"] >= polls + 2,
                        "two more polls")  # fmt: skip
            assert rt.health[bridge(rt, gw.port).name].state is Health.RUNNING
            assert quality(rt, "mr-decoder.ghost") is Quality.BAD
            assert quality(rt, "mr-decoder.power") is Quality.GOOD


async def test_requests_per_poll_are_the_fewest_reads(tmp_path: Path) -> None:
    """20 contiguous holding registers and 3 coils of one unit: 2 requests a poll. Two registers 200 apart: 2.

    Driven on a virtual clock that stops after three sleeps, so the count of polls is exact."""
    switch = Switch()
    async with servers(switch) as (gw, second):
        graph = SiteGraph(site(tmp_path, gw.port, second.port))
        clock = FakeClock(max_sleeps=3)
        async with Bus() as bus:
            state = StateStore(bus, {p.id: p.interval for p in graph.points.values()}, tmp_path, clock=clock)
            ctx = AdapterContext(bus, graph, state, OccupancyTracker(bus, graph), Settings(state_dir=tmp_path), clock)
            [svc] = [s for _, s in create(ctx) if isinstance(s, ModbusBridge) and s.target[1] == second.port]
            task = asyncio.create_task(svc.run(lambda: None), name="bridge")
            try:
                await asyncio.wait_for(clock.parked.wait(), 10)
                details = svc.details()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    block, sparse = details["devices"]["mr-block"], details["devices"]["mr-sparse"]
    assert block["polls"] >= 3
    assert block["requests"] == 2 * block["polls"]
    assert sparse["requests"] == 2 * sparse["polls"]
    assert (block["reads_per_poll"], sparse["reads_per_poll"]) == (2, 2)
    assert details["requests"] == block["requests"] + sparse["requests"] == len(second.requests)
    functions = sorted({(r.dev_id, r.function_code, r.address, r.count) for r in second.requests})
    assert functions == [(20, 1, 0, 3), (20, 3, 0, 20), (21, 3, 0, 1), (21, 3, 201, 2)]
    assert clock.sleeps == [pytest.approx(INTERVAL)] * 3  # polled on the hub's clock


async def test_write_holding_register_and_coil_with_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = Switch()
    async with servers(switch) as (gw, second):
        model = site(tmp_path, gw.port, second.port)
        async with running_hub(model, tmp_path, monkeypatch) as rt:
            results: dict[str, CommandResult] = {}
            readings: list[Reading] = []
            rt.bus.subscribe(CommandResult, lambda r: results.__setitem__(r.command_id, r), name="test:results")
            rt.bus.subscribe(Reading, readings.append, name="test:readings")
            await until(lambda: rt.state.get("mr-decoder.setpoint"), "the first poll")

            async def command(point: str, val: Any) -> CommandResult:
                cmd = Command(point=point, value=val, reason="test")
                rt.bus.publish(cmd)
                return await until(lambda: results.get(cmd.id), f"the result of {point} = {val!r}")  # type: ignore[no-any-return]

            sent = len(gw.requests)
            res = await command("mr-decoder.setpoint", 22.3)
            assert res.ok, res.detail
            assert "read back 22.3" in res.detail
            assert await gw.read_holding(10, 10, 1) == [223]
            assert value(rt, "mr-decoder.setpoint") == 22.3
            back = next(r for r in readings if r.point == "mr-decoder.setpoint" and r.value == 22.3)
            assert back.context.parent_id is not None  # the read-back names the command's context as its cause
            writes = [r for r in gw.requests[sent:] if r.function_code == 6]
            assert [(r.dev_id, r.address, r.registers) for r in writes] == [(10, 10, [223])]

            res = await command("mr-decoder.limit", 61.25)  # float32, low word first: function 16
            assert res.ok, res.detail
            regs_ = AsyncModbusTcpClient.convert_to_registers(61.25, DT.FLOAT32, word_order="little")
            assert await gw.read_holding(10, 12, 2) == regs_

            res = await command("mr-decoder.enable", True)
            assert res.ok, res.detail
            assert "read back True" in res.detail
            assert value(rt, "mr-decoder.enable") is True

            before = len(gw.requests)
            res = await command("mr-decoder.setpoint", 30)
            assert not res.ok
            assert "outside 16.0-27.0" in res.detail
            res = await command("mr-decoder.power", 1.0)
            assert (res.ok, res.detail) == (False, "point is read-only (holding 0; writable: false)")
            assert not [r for r in gw.requests[before:] if r.function_code in (5, 6, 15, 16)]


async def test_write_refused_by_the_device_names_the_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = Switch()
    async with servers(switch) as (gw, second):
        model = site(tmp_path, gw.port, second.port)
        async with running_hub(model, tmp_path, monkeypatch) as rt:
            results: list[CommandResult] = []
            rt.bus.subscribe(CommandResult, results.append, name="test:results")
            await until(lambda: rt.state.get("mr-decoder.locked"), "the first poll")
            rt.bus.publish(Command(point="mr-decoder.locked", value=9))
            [res] = await until(lambda: results, "the command result")
            assert not res.ok
            assert "Modbus exception 2 (ILLEGAL DATA ADDRESS) to write holding 14 of unit 10" in res.detail
            svc = bridge(rt, gw.port)
            assert rt.health[svc.name].state is Health.RUNNING
            polls = svc.details()["polls"]
            await until(lambda: svc.details()["polls"] > polls + 2, "polls to go on")
            assert value(rt, "mr-decoder.locked") == 7
            assert quality(rt, "mr-decoder.locked") is Quality.GOOD


async def test_killed_gateway_goes_offline_with_one_alarm_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch = Switch()
    async with servers(switch) as (gw, second):
        model = site(tmp_path, gw.port, second.port)
        async with running_hub(model, tmp_path, monkeypatch) as rt:
            alarms: list[Alarm] = []
            rt.bus.subscribe(Alarm, alarms.append, name="test:alarms")
            decoder = [p for p in points_of(rt, "mr-decoder") if not p.endswith("ghost")]
            await until(lambda: all(quality(rt, p) is Quality.GOOD for p in decoder), "the decoder's points")
            loop = asyncio.get_running_loop()
            await gw.stop()
            killed = loop.time()
            await until(lambda: all(quality(rt, p) is Quality.OFFLINE for p in decoder), "points to turn offline")
            assert loop.time() - killed <= 2 * INTERVAL
            assert value(rt, "mr-decoder.power") == 230.1  # the last value stays, flagged offline
            await asyncio.sleep(3 * INTERVAL)  # more polls while it is down: still one alarm per device
            raised = [a for a in alarms if a.active]
            assert sorted(a.key for a in raised) == sorted(
                f"modbus:{d}:unreachable" for d in ("lobby-meter", "mr-pdu-a", "mr-pdu-b", "mr-meter", "mr-decoder")
            )
            [decoder_alarm] = [a for a in raised if a.source == "mr-decoder"]
            assert decoder_alarm.severity == "warning"
            assert quality(rt, "mr-block.r0") is Quality.GOOD  # the other gateway is not affected
            assert rt.health[bridge(rt, gw.port).name].state is Health.RUNNING

            await gw.start()  # same port: pymodbus reconnects by itself
            await until(lambda: all(quality(rt, p) is Quality.GOOD for p in decoder), "points to recover")
            await until(lambda: len(alarms) == 10, "every alarm to clear")
            cleared = [a for a in alarms if not a.active]
            assert sorted(a.key for a in cleared) == sorted(a.key for a in raised)
            await asyncio.sleep(3 * INTERVAL)
            assert len(alarms) == 10
            assert bridge(rt, gw.port).details()["connects"] == 2


async def test_unit_that_stops_answering_behind_a_live_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gateway exception 11 (target device failed to respond), then plain silence: that device's points turn
    offline with one alarm each time; its neighbour behind the same gateway stays good."""
    switch = Switch()
    async with servers(switch) as (gw, second):
        model = site(tmp_path, gw.port, second.port)
        async with running_hub(model, tmp_path, monkeypatch) as rt:
            alarms: list[Alarm] = []
            rt.bus.subscribe(Alarm, alarms.append, name="test:alarms")
            await until(lambda: quality(rt, "mr-block.r0") is Quality.GOOD, "the block device")
            await until(lambda: quality(rt, "mr-sparse.far") is Quality.GOOD, "the sparse device")
            assert value(rt, "mr-sparse.far") == 1.5

            switch.muted.add(20)
            await until(lambda: quality(rt, "mr-block.r5") is Quality.OFFLINE, "the muted unit to go offline")
            assert [(a.key, a.active) for a in alarms] == [("modbus:mr-block:unreachable", True)]
            assert "exception 11 (GATEWAY TARGET DEVICE FAILED TO RESPOND)" in alarms[0].message
            switch.muted.clear()
            await until(lambda: quality(rt, "mr-block.r5") is Quality.GOOD, "the unit to answer again")
            assert [(a.key, a.active) for a in alarms][1:] == [("modbus:mr-block:unreachable", False)]

            switch.hung.add(20)  # no answer at all: the request times out
            await until(lambda: quality(rt, "mr-block.c1") is Quality.OFFLINE, "the silent unit to go offline")
            await asyncio.sleep(4 * INTERVAL)
            assert [(a.key, a.active) for a in alarms][2:] == [("modbus:mr-block:unreachable", True)]
            assert "did not answer" in alarms[2].message
            assert quality(rt, "mr-sparse.near") is Quality.GOOD
            details = bridge(rt, second.port).details()
            assert details["devices"]["mr-block"]["state"] == "unreachable"
            assert details["devices"]["mr-sparse"]["state"] == "ok"


async def test_gateway_unreachable_at_start_raises_not_ready_then_recovers(tmp_path: Path) -> None:
    """Nothing listening: AdapterNotReady (the supervisor retries), the devices offline with their alarms."""
    switch = Switch()
    gw, second = Server(lambda: gateway_devices(switch)), Server(lambda: second_devices(switch))
    graph = SiteGraph(site(tmp_path, gw.port, second.port))
    clock = FakeClock()
    events: list[Reading | Alarm] = []
    async with Bus() as bus:
        bus.subscribe((Reading, Alarm), events.append, name="test:events")  # type: ignore[arg-type]
        state = StateStore(bus, {p.id: p.interval for p in graph.points.values()}, tmp_path, clock=clock)
        ctx = AdapterContext(bus, graph, state, OccupancyTracker(bus, graph), Settings(state_dir=tmp_path), clock)
        [svc] = [s for _, s in create(ctx, ModbusSettings(timeout=0.3)) if s.target[1] == second.port]  # type: ignore[attr-defined]
        assert isinstance(svc, ModbusBridge)
        with pytest.raises(AdapterNotReady, match=rf"cannot connect to the Modbus gateway at 127.0.0.1:{second.port}"):
            await svc.run(lambda: None)
        await bus.drain()
        assert sorted(e.key for e in events if isinstance(e, Alarm)) == [
            "modbus:mr-block:unreachable", "modbus:mr-sparse:unreachable"]  # fmt: skip
        offline = {e.point for e in events if isinstance(e, Reading) and e.quality is Quality.OFFLINE}
        assert offline == set(graph.devices["mr-block"].points) | set(graph.devices["mr-sparse"].points)

        with pytest.raises(AdapterNotReady):  # a second failure raises no second alarm
            await svc.run(lambda: None)
        await bus.drain()
        assert len([e for e in events if isinstance(e, Alarm)]) == 2

        await second.start()
        ready = asyncio.Event()
        task = asyncio.create_task(svc.run(ready.set), name="bridge")
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await until(lambda: len([e for e in events if isinstance(e, Alarm)]) == 4, "the alarms to clear")
            assert svc.details()["devices"]["mr-block"]["state"] == "ok"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await second.stop()
