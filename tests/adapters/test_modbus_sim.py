"""The simulated Modbus plant on the real site model: every gateway served on a free loopback port, read by the
bridge with plausible values, writes kept, read-only registers refused, loopback-only listening."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus import ModbusBridge, create, endpoints_of
from adapters.modbus._codec import decode
from adapters.modbus._plan import Slot, plan
from adapters.sim.modbus import ModbusSimulator
from hub.adapter import AdapterContext
from hub.errors import AdapterNotReady
from hub.events import Command, CommandResult, Quality
from hub.graph import SiteGraph
from hub.runtime import Runtime
from hub.settings import Settings
from hub.site import ModbusDevice, ModbusDeviceType, ModbusPoint, PointKind, SiteModel, load_site
from tests.conftest import SITE_MODEL, FakeClock
from tests.helpers import running, until
from tests.servers import free_port

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # a business day, open
Endpoints = dict[tuple[str, int], tuple[str, int]]


@pytest.fixture(scope="module")
def model() -> SiteModel:
    return load_site(SITE_MODEL)


def free_endpoints(graph: SiteGraph) -> Endpoints:
    return {ep: ("127.0.0.1", free_port()) for ep in endpoints_of(graph.find_devices(protocol="modbus"))}


@contextlib.asynccontextmanager
async def plant(model: SiteModel, tmp_path: Path, **sim: Any) -> AsyncIterator[tuple[Runtime, ModbusSimulator]]:
    """The hub with only the Modbus bridges, and the simulator in its core stage (up before the bridges)."""
    rt = Runtime(model, Settings(state_dir=tmp_path / "state", api=False), adapters=())
    endpoints = free_endpoints(rt.graph)
    simulator = ModbusSimulator(rt.graph, endpoints=endpoints, **sim)
    rt.add_service("core", simulator)
    ctx = AdapterContext(rt.bus, rt.graph, rt.state, rt.occupancy, rt.settings, rt.clock)
    for stage, service in create(ctx, endpoints=endpoints):
        rt.add_service(stage, service)
    async with running(rt):
        yield rt, simulator


@contextlib.asynccontextmanager
async def client_of(sim: ModbusSimulator, host: str, port: int = 5020) -> AsyncIterator[AsyncModbusTcpClient]:
    bind_host, bind_port = sim.servers[(host, port)][0]
    client = AsyncModbusTcpClient(bind_host, port=bind_port, reconnect_delay=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()


def modbus_point(graph: SiteGraph, pid: str) -> tuple[ModbusDevice, ModbusPoint]:
    info = graph.devices[graph.points[pid].device]
    spec = graph.points[pid].spec
    assert isinstance(info.spec, ModbusDevice)
    assert isinstance(spec, ModbusPoint)
    return info.spec, spec


PLAUSIBLE: dict[PointKind, tuple[float, float]] = {
    PointKind.VOLTAGE: (20.0, 440.0), PointKind.CURRENT: (0.5, 1500.0), PointKind.POWER: (0.5, 600.0),
    PointKind.ENERGY: (0.0, 1e8), PointKind.FREQUENCY: (49.5, 50.5), PointKind.FUEL_LEVEL: (10.0, 100.0),
    PointKind.TEMPERATURE: (15.0, 45.0), PointKind.HUMIDITY: (20.0, 80.0), PointKind.FAN_SPEED: (20.0, 100.0),
    PointKind.VALVE: (0.0, 100.0), PointKind.DIMMER: (0.0, 100.0), PointKind.SETPOINT: (16.0, 27.0),
}  # fmt: skip


async def test_the_bridge_reads_plausible_values_from_every_simulated_device(model: SiteModel, tmp_path: Path) -> None:
    async with plant(model, tmp_path, seed=7, start=TUESDAY_10) as (rt, sim):
        devices = rt.graph.find_devices(protocol="modbus")
        points = [p for d in devices for p in d.points]
        await until(lambda: all(rt.state.get(p) for p in points), "a reading of every Modbus point")
        bridges = [s for _, s in rt.services if isinstance(s, ModbusBridge)]
        details = {b.name: b.details() for b in bridges}
        requests = sum(d["requests"] for d in details.values())
        await until(lambda: sim.requests == requests, "the simulator to have answered every request")

    assert len(devices) == 106
    assert len(bridges) == 5  # one connection per gateway, whatever the number of units behind it
    implausible = []
    for pid in points:
        st = rt.state.get(pid)
        assert st is not None
        assert (st.quality, st.source) == (Quality.GOOD, "modbus"), pid
        info = rt.graph.points[pid]
        generator = rt.graph.devices[info.device].kind == "generator"
        if isinstance(st.value, bool):
            continue
        assert isinstance(st.value, int | float)
        assert math.isfinite(st.value)
        lo, hi = PLAUSIBLE.get(info.kind, (-math.inf, math.inf))
        idle = generator and info.kind in (PointKind.VOLTAGE, PointKind.FREQUENCY, PointKind.POWER)
        if not (idle and st.value == 0) and not lo <= st.value <= hi:
            implausible.append((pid, st.value))
    assert implausible == []
    assert all(rt.state.get(f"{d.id}.running").value is False for d in devices if d.kind == "generator")  # type: ignore[union-attr]
    assert all(rt.state.get(f"{d.id}.running").value is True for d in devices if d.kind == "cooling")  # type: ignore[union-attr]
    # The bridges read each device with the fewest requests: the plan of its type, once per round.
    for b in bridges:
        expected = 0
        for dev in devices:
            assert isinstance(dev.spec, ModbusDevice)
            assert isinstance(dev.type, ModbusDeviceType)
            if (dev.spec.host, dev.spec.port) == (b.host, b.port):
                expected += len(plan(Slot(p.id, p) for p in dev.type.points))
        assert details[b.name]["reads_per_round"] == expected
        assert all(d["last_poll_ms"] is not None for d in details[b.name]["devices"].values())


async def test_writes_are_kept_and_read_back_through_the_hub(model: SiteModel, tmp_path: Path) -> None:
    async with plant(model, tmp_path, seed=1, start=TUESDAY_10) as (rt, sim):
        results: dict[str, CommandResult] = {}
        rt.bus.subscribe(CommandResult, lambda r: results.__setitem__(r.command_id, r), name="test:results")
        crah, light = "dc-2f-hall-1-crah-1", "wh-1f-lobby-light-1"
        await until(lambda: rt.state.get(f"{crah}.supply-air-setpoint") and rt.state.get(f"{light}.group-1"),
                    "the first poll")  # fmt: skip

        async def command(point: str, value: Any) -> CommandResult:
            cmd = Command(point=point, value=value)
            rt.bus.publish(cmd)
            return await until(lambda: results.get(cmd.id), f"the result of {point}")  # type: ignore[no-any-return]

        res = await command(f"{crah}.supply-air-setpoint", 20.5)
        assert (res.ok, res.detail) == (True, "write holding 0 of unit 1 done; read back 20.5")
        assert rt.state.get(f"{crah}.supply-air-setpoint").value == 20.5  # type: ignore[union-attr]
        res = await command(f"{light}.group-1", False)
        assert res.ok, res.detail
        assert rt.state.get(f"{light}.group-1").value is False  # type: ignore[union-attr]
        res = await command(f"{light}.group-2-level", 35)
        assert res.ok, res.detail
        assert sim.details()["writes"] == 3

        # The plant follows: the CRAH's supply air now tracks 20.5 °C. It refuses a setpoint above its max.
        device, supply = modbus_point(rt.graph, f"{crah}.supply-air-temp")
        _, setpoint = modbus_point(rt.graph, f"{crah}.supply-air-setpoint")
        async with client_of(sim, device.host, device.port) as client:
            answer = await client.read_input_registers(supply.address, count=1, device_id=device.unit_id)
            assert abs(decode(supply, answer.registers) - 20.5) <= 0.35
            too_hot = await client.write_register(setpoint.address, 300, device_id=device.unit_id)  # 30.0 > 27
            assert (too_hot.isError(), too_hot.exception_code) == (True, 3)

        # A meter refuses writes to its (read-only) registers, and reads outside its map.
        meter, power = modbus_point(rt.graph, "dc-1f-electrical-meter-1.power")
        async with client_of(sim, meter.host, meter.port) as client:
            refused = await client.write_registers(power.address, [0, 0], device_id=meter.unit_id)
            assert (refused.isError(), refused.exception_code) == (True, 2)
            outside = await client.read_holding_registers(9000, count=1, device_id=meter.unit_id)
            assert (outside.isError(), outside.exception_code) == (True, 2)
        assert sim.details()["refused"] == 2
        assert rt.state.get(f"{crah}.supply-air-setpoint").value == 20.5  # type: ignore[union-attr]


async def test_same_seed_same_plant_and_values_drift(model: SiteModel) -> None:
    graph = SiteGraph(model)
    clock = FakeClock(start=TUESDAY_10)
    sims = [ModbusSimulator(graph, seed=s, start=TUESDAY_10, clock=clock, endpoints=free_endpoints(graph))
            for s in (3, 3, 4)]  # fmt: skip
    meter, power = modbus_point(graph, "ch-b1-electrical-meter-1.power")
    crah, ret = modbus_point(graph, "dc-2f-hall-1-crah-1.return-air-temp")

    async def read(sim: ModbusSimulator) -> tuple[float, float]:
        async with client_of(sim, meter.host, meter.port) as client:
            p = await client.read_holding_registers(power.address, count=1, device_id=meter.unit_id)
        async with client_of(sim, crah.host, crah.port) as client:
            t = await client.read_input_registers(ret.address, count=1, device_id=crah.unit_id)
        return decode(power, p.registers), decode(ret, t.registers)

    tasks = []
    try:
        for i, sim in enumerate(sims):
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(sim.run(ready.set), name=f"sim-{i}"))
            await asyncio.wait_for(ready.wait(), 10)
        first = [await read(sim) for sim in sims]
        clock.advance(900)
        later = [await read(sim) for sim in sims]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert first[0] == first[1] != first[2]
    assert later[0] == later[1]
    assert later[0] != first[0]  # drifting
    assert 20.0 <= later[0][1] <= 35.0


async def test_listens_on_loopback_only(model: SiteModel, caplog: pytest.LogCaptureFixture) -> None:
    graph = SiteGraph(model)
    endpoints = free_endpoints(graph)
    exposed = ("127.0.4.5", 5020)
    endpoints[exposed] = ("0.0.0.0", free_port())  # every address: refused
    with caplog.at_level(logging.WARNING, logger="adapters.sim.modbus"):
        sim = ModbusSimulator(graph, endpoints=endpoints)
    assert exposed not in sim.servers
    assert "listens on loopback addresses only" in caplog.text
    assert len(sim.servers) == 4

    ready = asyncio.Event()
    task = asyncio.create_task(sim.run(ready.set), name="sim")
    try:
        await asyncio.wait_for(ready.wait(), 10)
        port = endpoints[("127.0.4.1", 5020)][1]
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        with pytest.raises(ConnectionRefusedError):  # bound to 127.0.0.1 itself, not to every address
            socket.create_connection(("127.0.0.2", port), timeout=1).close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_taken_port_is_not_ready(model: SiteModel) -> None:
    graph = SiteGraph(model)
    endpoints = free_endpoints(graph)
    with socket.socket() as taken:
        taken.bind(endpoints[("127.0.4.3", 5020)])
        taken.listen()
        sim = ModbusSimulator(graph, endpoints=endpoints)
        with pytest.raises(AdapterNotReady, match=r"modbus-sim: cannot listen on 127\.0\.0\.1"):
            await sim.run(lambda: None)
