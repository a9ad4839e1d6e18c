"""The simulated BACnet/IP devices, asked over UDP on loopback by a bacpypes3 client of the test's own: typed values
by ReadPropertyMultiple, priority writes and relinquish, COV notifications (and a device that refuses COV),
devices that stop and come back with their values, plausible and reproducible values, loopback-only listening.

Devices sit on 127.0.77.x with free UDP ports; the client binds 127.0.0.1 on another port (a bacpypes3 application
sends anything for a 127.x address on its own port to itself)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from bacpypes3.apdu import AbortPDU, ErrorPDU, RejectPDU
from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import Null, ObjectIdentifier

from adapters.bacnet._stack import bind_error
from adapters.sim import BacnetSimulator
from hub.errors import AdapterNotReady
from hub.graph import SiteGraph
from hub.site import BacnetPoint, PointKind, SiteModel, load_site
from hub.yamlsrc import load_yaml
from tests.adapters.test_bacnet_bridge import DEVICES, site
from tests.conftest import FIXTURES, SITE_MODEL, FakeClock
from tests.servers import free_udp_port

TOKYO = ZoneInfo("Asia/Tokyo")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=TOKYO)  # a business day, the halls open
# One device of each BACnet type of the real site model, and a data-centre FCU (which runs round the clock).
AHU, VAV, FCU = "ch-b1-plant-ahu-1", "ch-1f-entrance-hall-vav-1", "ch-b1-electrical-fcu-1"
LIGHT, ALERT, FIRE = "ch-b1-elevator-hall-light-1", "ch-1f-disaster-centre-alert-1", "wh-1f-electrical-fire-panel-1"
DC_FCU = "dc-1f-entrance-fcu-1"


@pytest.fixture(scope="module")
def graph() -> SiteGraph:
    return SiteGraph(load_site(SITE_MODEL))


def endpoints(devices: Collection[str]) -> dict[str, tuple[str, int]]:
    """A free port on 127.0.77.<n> for each device."""
    return {device: (f"127.0.77.{n}", free_udp_port(f"127.0.77.{n}")) for n, device in enumerate(devices, start=1)}


@contextlib.asynccontextmanager
async def serving(sim: BacnetSimulator) -> AsyncIterator[BacnetSimulator]:
    """``sim.run`` for the block: every device answering on entry, every application closed on exit."""
    ready = asyncio.Event()
    task = asyncio.create_task(sim.run(ready.set), name="bacnet-sim")
    waiter = asyncio.create_task(ready.wait(), name="bacnet-sim ready")
    try:
        await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # run() failed: raise its error
        assert ready.is_set(), "the simulator did not get ready"
        yield sim
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert sim.counts()["running"] == 0


@contextlib.asynccontextmanager
async def client(sim: BacnetSimulator, apdu_timeout: int = 3000) -> AsyncIterator[Application]:
    """The test's own BACnet/IP client on 127.0.0.1, on a port no device of ``sim`` uses (no retries: a silent
    device times out after one ``apdu_timeout``)."""
    taken = {int(sim.address(d).rpartition(":")[2]) for d in sim.devices}
    while (port_number := free_udp_port("127.0.0.1")) in taken:
        pass
    device = DeviceObject(objectIdentifier=("device", 4194000), objectName="bacnet-sim test client",
                          vendorIdentifier=999, apduTimeout=apdu_timeout, numberOfApduRetries=0)  # fmt: skip
    port = NetworkPortObject(f"127.0.0.1/32:{port_number}", objectIdentifier=("network-port", 1),
                             objectName="NetworkPort-1")  # fmt: skip
    app = Application.from_object_list([device, port])
    try:
        yield app
    finally:
        app.close()
        await asyncio.sleep(0.01)  # the transport closes on the next loop turn


async def read(app: Application, address: str, obj: str, prop: str) -> Any:
    return await app.read_property(Address(address), ObjectIdentifier(obj), prop)


async def notification(scm: Any) -> dict[str, Any]:
    """One COV notification: present-value and status-flags, by property name."""
    values = {}
    for _ in range(2):
        prop, value = await asyncio.wait_for(scm.get_value(), 5)
        values[str(prop)] = value
    return values


# ------------------------------------------------------------------------------------------------ real site model
async def test_an_ahu_answers_rpm_of_every_object_with_typed_values(graph: SiteGraph) -> None:
    sim = BacnetSimulator(graph, seed=3, start=TUESDAY_10, devices=[AHU], endpoints=endpoints([AHU]), update_every=3600)
    info = graph.devices[AHU]
    points = [p for p in info.type.points if isinstance(p, BacnetPoint)]
    async with serving(sim), client(sim) as app:
        address = Address(sim.address(AHU))
        assert sim.address(AHU).startswith("127.0.77.1:")
        request: list[Any] = []
        for p in points:
            request += [ObjectIdentifier(p.object), ["present-value", "status-flags", "object-name"]]
        result = await app.read_property_multiple(address, request)

        assert len(result) == 3 * len(points) == 72
        by_object: dict[str, dict[str, Any]] = {}
        for oid, prop, index, value in result:
            assert index is None
            by_object.setdefault(f"{oid[0]}:{oid[1]}", {})[str(prop)] = value
        for p in points:
            got = by_object[p.object]
            assert got["object-name"] == p.id
            assert list(got["status-flags"]) == [0, 0, 0, 0]
            pv = got["present-value"]
            if p.object.startswith("analog"):
                assert isinstance(pv, float)
                assert math.isfinite(pv)
            elif p.object.startswith("binary"):
                assert str(pv) in ("active", "inactive")
            else:
                assert isinstance(pv, int)
                assert 1 <= pv <= len(p.states or ())
        assert str(by_object["binary-input:3000115"]["present-value"]) == "inactive"  # low-temp alarm: off
        assert str(by_object["binary-input:3000126"]["present-value"]) == "active"  # supply fan: on while open
        assert by_object["multi-state-value:3000128"]["present-value"] == 7  # application mode: Auto

        # the device object says who it is; units and state texts come from the point list
        device = ObjectIdentifier(("device", 100701))
        assert await read(app, sim.address(AHU), "device:100701", "object-name") == AHU
        assert await read(app, sim.address(AHU), "device:100701", "vendor-identifier") == 999
        assert await read(app, sim.address(AHU), "device:100701", "model-name") == "ahu"
        assert await read(app, sim.address(AHU), "device:100701", "vendor-name") == "bmhub simulator"
        listed = await app.read_property(address, device, "object-list")
        assert {f"{o[0]}:{o[1]}" for o in listed} == {p.object for p in points} | {"device:100701", "network-port:1"}
        assert str(await read(app, sim.address(AHU), "analog-input:3000109", "units")) == "degrees-fahrenheit"
        assert str(await read(app, sim.address(AHU), "analog-input:3000108", "units")) == "inches-of-water"
        assert await read(app, sim.address(AHU), "analog-input:3000109", "cov-increment") == pytest.approx(0.2)
        texts = await read(app, sim.address(AHU), "multi-state-value:3000173", "state-text")
        assert list(texts) == ["Normal", "Low Flow", "Self Reset Fault", "Manual Reset Fault"]
        # a unicast Who-Is is answered (I-Am back to the asker: a /32 device has no broadcast socket)
        i_ams = await app.who_is(100701, 100701, address, timeout=2)
        assert [(i.iAmDeviceIdentifier[1], i.vendorID) for i in i_ams] == [(100701, 999)]


async def test_a_priority_write_lands_in_its_slot_and_null_relinquishes(graph: SiteGraph) -> None:
    sim = BacnetSimulator(graph, devices=[VAV, LIGHT], endpoints=endpoints([VAV, LIGHT]), update_every=3600)
    async with serving(sim), client(sim) as app:
        vav, setpoint = sim.address(VAV), "analog-value:1"
        assert await read(app, vav, setpoint, "present-value") == 22.0
        assert await read(app, vav, setpoint, "relinquish-default") == 22.0
        assert (await read(app, vav, setpoint, "current-command-priority")).null is not None

        await app.write_property(Address(vav), ObjectIdentifier(setpoint), "present-value", 24.5, priority=8)
        assert await read(app, vav, setpoint, "present-value") == 24.5
        slots = await read(app, vav, setpoint, "priority-array")
        assert [s._choice for s in slots] == ["null"] * 7 + ["real"] + ["null"] * 8
        assert slots[7].real == 24.5
        assert (await read(app, vav, setpoint, "current-command-priority")).unsigned == 8
        rpm = await app.read_property_multiple(Address(vav), [ObjectIdentifier(setpoint), [
            "present-value", "relinquish-default", "current-command-priority", "priority-array"]])  # fmt: skip
        got = {str(prop): value for _, prop, _, value in rpm}
        assert (got["present-value"], got["relinquish-default"]) == (24.5, 22.0)
        assert got["current-command-priority"].unsigned == 8
        assert got["priority-array"][7].real == 24.5
        assert sim.object(VAV, setpoint).presentValue == 24.5  # the object itself holds the command

        # a higher priority wins while it is there; relinquishing it falls back to priority 8, then the default
        await app.write_property(Address(vav), ObjectIdentifier(setpoint), "present-value", 19.0, priority=3)
        assert await read(app, vav, setpoint, "present-value") == 19.0
        await app.write_property(Address(vav), ObjectIdentifier(setpoint), "present-value", Null(()), priority=3)
        assert await read(app, vav, setpoint, "present-value") == 24.5
        await app.write_property(Address(vav), ObjectIdentifier(setpoint), "present-value", Null(()), priority=8)
        assert await read(app, vav, setpoint, "present-value") == 22.0
        assert (await read(app, vav, setpoint, "current-command-priority")).null is not None
        assert all(s._choice == "null" for s in await read(app, vav, setpoint, "priority-array"))

        # binary and multi-state outputs are commandable the same way
        light = sim.address(LIGHT)
        assert str(await read(app, light, "binary-output:1", "present-value")) == "active"
        await app.write_property(Address(light), ObjectIdentifier("binary-output:1"), "present-value", "inactive",
                                 priority=8)  # fmt: skip
        assert str(await read(app, light, "binary-output:1", "present-value")) == "inactive"
        assert (await read(app, light, "binary-output:1", "current-command-priority")).unsigned == 8
        assert str(await read(app, light, "binary-output:1", "relinquish-default")) == "active"
        await app.write_property(Address(vav), ObjectIdentifier("multi-state-value:1"), "present-value", 3, priority=8)
        assert await read(app, vav, "multi-state-value:1", "present-value") == 3  # standby
        assert await read(app, vav, "multi-state-value:1", "relinquish-default") == 1  # occupied
        assert sim.counts()["writes"] == 6


async def test_a_stopped_device_times_out_and_comes_back_with_its_values(graph: SiteGraph) -> None:
    sim = BacnetSimulator(graph, devices=[VAV, FCU], endpoints=endpoints([VAV, FCU]), update_every=3600)
    async with serving(sim), client(sim, apdu_timeout=300) as app:
        vav = sim.address(VAV)
        await app.write_property(Address(vav), ObjectIdentifier("analog-value:1"), "present-value", 25.5, priority=8)
        temp = await read(app, vav, "analog-input:1", "present-value")
        async with app.change_of_value(Address(vav), ObjectIdentifier("analog-input:1"), lifetime=300) as scm:
            await notification(scm)
            assert sim.counts()["cov_subscriptions"] == 1
        scm = app.change_of_value(Address(vav), ObjectIdentifier("analog-input:2"), lifetime=300)
        await scm.__aenter__()
        await notification(scm)
        sim.stop_device(VAV)  # a power cut: the subscription goes with the device
        with pytest.raises(AbortPDU):  # leaving the context unsubscribes, and a dead device does not answer
            await scm.__aexit__(None, None, None)
        assert sim.counts()["running"] == 1
        assert sim.counts()["cov_subscriptions"] == 0

        with pytest.raises(AbortPDU) as timed_out:
            await read(app, vav, "analog-value:1", "present-value")
        assert str(timed_out.value.reason) == "no-response"  # a timeout, not an answer
        other = await read(app, sim.address(FCU), "binary-input:2", "present-value")
        assert str(other) == "inactive"  # the other device carries on

        await sim.start_device(VAV)
        assert sim.counts()["running"] == 2
        assert await read(app, vav, "analog-value:1", "present-value") == 25.5
        assert (await read(app, vav, "analog-value:1", "priority-array"))[7].real == 25.5
        assert await read(app, vav, "analog-value:1", "relinquish-default") == 22.0
        assert await read(app, vav, "analog-input:1", "present-value") == temp
        async with app.change_of_value(Address(vav), ObjectIdentifier("analog-input:1"), lifetime=300) as scm:
            assert (await notification(scm))["present-value"] == temp
            sim.object(VAV, "analog-input:1").presentValue = 27.0
            assert (await notification(scm))["present-value"] == 27.0


PLAUSIBLE: dict[tuple[PointKind, str | None], tuple[float, float]] = {
    (PointKind.TEMPERATURE, "degF"): (55.0, 75.0), (PointKind.TEMPERATURE, "degC"): (20.0, 26.0),
    (PointKind.HUMIDITY, "%"): (35.0, 60.0), (PointKind.PRESSURE, "inH2O"): (0.5, 1.5),
    (PointKind.SETPOINT, "degF"): (55.0, 75.0), (PointKind.SETPOINT, "degC"): (18.0, 26.0),
    (PointKind.SETPOINT, "inH2O"): (0.5, 1.5), (PointKind.DAMPER, "%"): (0.0, 100.0),
    (PointKind.VALVE, "%"): (0.0, 100.0), (PointKind.FAN_SPEED, "%"): (0.0, 100.0),
    (PointKind.DIMMER, "%"): (0.0, 100.0), (PointKind.FLOW, "m3/h"): (50.0, 800.0),
    (PointKind.ILLUMINANCE, "lx"): (1.0, 600.0),
}  # fmt: skip
QUIET = (PointKind.ALARM, PointKind.FAULT, PointKind.CONTACT)
DAY = [(0.0, "open"), (3.5, "open"), (13.0, "night"), (21.5, "morning"), (23.0, "open")]  # hours after Tue 10:00


async def day_of(graph: SiteGraph, devices: list[str], seed: int) -> list[dict[str, Any]]:
    """Every object's present value at the instants of DAY, from a simulator with ``seed`` on a FakeClock."""
    clock = FakeClock()
    sim = BacnetSimulator(graph, seed=seed, start=TUESDAY_10, clock=clock, devices=devices,
                          endpoints=endpoints(devices), update_every=3600)  # fmt: skip
    snapshots = []
    async with serving(sim):
        elapsed = 0.0
        for hours, _ in DAY:
            clock.advance(hours * 3600 - elapsed)
            elapsed = hours * 3600
            sim.update()
            snapshot = {}
            for d in devices:
                for p in graph.devices[d].type.points:
                    assert isinstance(p, BacnetPoint)
                    pv = sim.object(d, p.object).presentValue
                    snapshot[(d, p.id)] = float(pv) if p.object.startswith("analog") else (
                        str(pv) == "active" if p.object.startswith("binary") else int(pv))  # fmt: skip
            snapshots.append(snapshot)
        assert sim.counts()["updates"] == len(DAY)
    return snapshots


async def test_values_are_plausible_through_a_day_and_a_seed_repeats_them(graph: SiteGraph) -> None:
    devices = [AHU, VAV, FCU, LIGHT, ALERT, FIRE, DC_FCU]
    day = await day_of(graph, devices, seed=7)
    implausible = []
    for snapshot, (hours, phase) in zip(day, DAY, strict=True):
        for (d, pid), value in snapshot.items():
            p = graph.points[f"{d}.{pid}"]
            if p.kind in QUIET:  # never a fire, never an earthquake
                assert value is False if isinstance(value, bool) else value == 1, (d, pid, hours)
            lo, hi = PLAUSIBLE.get((p.kind, p.unit), (-math.inf, math.inf))
            if isinstance(value, float) and not lo <= value <= hi:
                implausible.append((d, pid, hours, value))
        ahu = {pid: value for (d, pid), value in snapshot.items() if d == AHU}
        lit = snapshot[(LIGHT, "illuminance")]
        if phase == "open":
            assert ahu["supply-fan-status"]
            assert ahu["return-fan-status"]
            assert snapshot[(FCU, "run-status")]
            assert 380 <= lit <= 520
            assert 0.75 <= ahu["discharge-air-static-pressure"] <= 1.25
        else:
            assert not ahu["supply-fan-status"]
            assert not snapshot[(FCU, "run-status")]
            assert 0.5 <= ahu["discharge-air-static-pressure"] <= 0.6
            assert lit <= 15 if phase == "night" else 70 <= lit <= 170
        assert snapshot[(DC_FCU, "run-status")]  # the data centre runs round the clock
        assert (ahu["application-mode"], ahu["smoke-sequence-state"], ahu["no-flow-state"]) == (7, 1, 1)
        assert 54.5 <= ahu["discharge-air-temp"] <= 57.5
        assert 70.0 <= ahu["return-air-temp"] <= 74.0
    assert implausible == []
    # inputs move with time; commanded points stay where nobody commanded them
    assert day[0][(VAV, "zone-temp")] != day[1][(VAV, "zone-temp")]
    assert {s[(VAV, "zone-setpoint")] for s in day} == {22.0}
    assert {s[(AHU, "cooling-valve-command")] for s in day} == {35.0}

    assert await day_of(graph, devices, seed=7) == day
    other = await day_of(graph, devices, seed=8)
    moved = [k for k, value in day[0].items() if isinstance(value, float) and other[0][k] != value]
    assert len(moved) >= 10  # another seed, other drifts (steady setpoints and commands aside)
    assert [s[(AHU, "supply-fan-status")] for s in other] == [s[(AHU, "supply-fan-status")] for s in day]


# ------------------------------------------------------------------------------------------------ a small site
def _p(pid: str, kind: str, obj: str, **more: Any) -> dict[str, Any]:
    return {"id": pid, "kind": kind, "object": obj, **more}


IO_POINTS = [
    _p("temp", "temperature", "analog-input:1", unit="degC"),
    _p("valve", "valve", "analog-output:1", unit="%", writable=True, min=0, max=100),
    _p("setpoint", "setpoint", "analog-value:1", unit="degC", writable=True, min=18, max=26),
    _p("run", "run", "binary-input:1"),
    _p("fan", "fan", "binary-output:1", writable=True),
    _p("night-light", "light", "binary-value:1", writable=True),
    _p("filter-alarm", "alarm", "binary-value:2"),
    _p("state", "status", "multi-state-input:1", states=["idle", "heating", "cooling"]),
    _p("speed", "fan-speed", "multi-state-output:1", writable=True, states=["off", "low", "high"]),
    _p("mode", "mode", "multi-state-value:1", writable=True, states=["auto", "cool", "heat"]),
    _p("smoke", "mode", "multi-state-value:2", states=["Normal", "Purge"]),
]  # fmt: skip


def small_site(tmp_path: Path, devices: dict[str, str | None]) -> SiteModel:
    """minimal.yaml with its VAV replaced by I/O modules (every object type) at the given addresses."""
    data, _ = load_yaml(FIXTURES / "site" / "minimal.yaml")
    data["device_types"]["io"] = {"kind": "ahu", "protocol": "bacnet", "points": IO_POINTS}
    room = next(z for z in data["zones"] if z["id"] == "room-201")
    room["devices"] = [d for d in room["devices"] if d["protocol"] != "bacnet"]
    for n, (device, address) in enumerate(devices.items(), start=1):
        room["devices"].append({"id": device, "type": "io", "protocol": "bacnet", "instance": 7700 + n,
                                **({"address": address} if address else {})})  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


def io_site(tmp_path: Path, *devices: str) -> tuple[SiteGraph, dict[str, tuple[str, int]]]:
    where = endpoints(devices)
    return SiteGraph(small_site(tmp_path, {d: f"{h}:{p}" for d, (h, p) in where.items()})), where


CHANGES = {  # object → a value the test sets in the simulator, different from where it starts
    "analog-input:1": 30.0, "analog-output:1": 55.0, "analog-value:1": 25.0, "binary-input:1": "inactive",
    "binary-output:1": "inactive", "binary-value:1": "inactive", "binary-value:2": "active",
    "multi-state-input:1": 3, "multi-state-output:1": 3, "multi-state-value:1": 2, "multi-state-value:2": 2,
}  # fmt: skip


async def test_every_object_type_notifies_cov_subscribers(tmp_path: Path) -> None:
    graph, _ = io_site(tmp_path, "io-1")
    sim = BacnetSimulator(graph, start=TUESDAY_10, update_every=3600)
    async with serving(sim), client(sim) as app:
        address = Address(sim.address("io-1"))
        for obj, value in CHANGES.items():
            async with app.change_of_value(address, ObjectIdentifier(obj), lifetime=300) as scm:
                first = await notification(scm)  # the current value, right after subscribing
                assert list(first["status-flags"]) == [0, 0, 0, 0]
                assert str(first["present-value"]) != str(value), obj
                assert sim.counts()["cov_subscriptions"] == 1
                sim.object("io-1", obj).presentValue = value
                assert str((await notification(scm))["present-value"]) == str(value), obj
                sim.object("io-1", obj).statusFlags = [0, 1, 0, 0]  # fault
                assert list((await notification(scm))["status-flags"]) == [0, 1, 0, 0], obj
            assert list(await read(app, sim.address("io-1"), obj, "status-flags")) == [0, 1, 0, 0]
        assert sim.counts()["cov_subscriptions"] == 0  # each context cancelled its subscription
        assert sim.counts()["cov_notifications"] == 3 * len(CHANGES)


async def test_a_device_without_cov_rejects_subscribe_cov_at_once(tmp_path: Path) -> None:
    graph, _ = io_site(tmp_path, "io-1", "io-2")
    sim = BacnetSimulator(graph, no_cov=["io-2"], update_every=3600)
    async with serving(sim), client(sim, apdu_timeout=3000) as app:
        with pytest.raises(RejectPDU) as refused:  # an answer (a Reject), not a timeout (an Abort no-response)
            async with app.change_of_value(Address(sim.address("io-2")), ObjectIdentifier("analog-input:1")):
                pytest.fail("subscribed to a device without COV")
        assert str(refused.value.reason) == "unrecognized-service"
        assert sim.counts()["cov_refused"] == 1
        assert sim.counts()["cov_subscriptions"] == 0
        # it says so, and still answers everything else; the other device has COV
        nocov = await read(app, sim.address("io-2"), "device:7702", "protocol-services-supported")
        assert not nocov[nocov.subscribeCOV]
        assert nocov[nocov.readPropertyMultiple]
        assert await read(app, sim.address("io-2"), "analog-value:1", "present-value") == 22.0
        cov = await read(app, sim.address("io-1"), "device:7701", "protocol-services-supported")
        assert cov[cov.subscribeCOV]
        async with app.change_of_value(Address(sim.address("io-1")), ObjectIdentifier("analog-input:1")) as scm:
            await notification(scm)


async def test_writes_only_reach_present_value_of_writable_points_within_limits(tmp_path: Path) -> None:
    graph, _ = io_site(tmp_path, "io-1")
    sim = BacnetSimulator(graph, update_every=3600)
    async with serving(sim), client(sim) as app:
        address = Address(sim.address("io-1"))

        async def refused(obj: str, prop: str, value: Any) -> tuple[str, str]:
            with pytest.raises(ErrorPDU) as error:
                await app.write_property(address, ObjectIdentifier(obj), prop, value, priority=8)
            return str(error.value.errorClass), str(error.value.errorCode)

        assert await refused("analog-value:1", "present-value", 30.0) == ("property", "value-out-of-range")
        assert await refused("analog-output:1", "present-value", -1.0) == ("property", "value-out-of-range")
        assert await refused("multi-state-value:1", "present-value", 4) == ("property", "value-out-of-range")
        assert await refused("analog-input:1", "present-value", 21.0) == ("property", "write-access-denied")
        assert await refused("binary-value:2", "present-value", "active") == ("property", "write-access-denied")
        assert await refused("multi-state-value:2", "present-value", 2) == ("property", "write-access-denied")
        assert await refused("analog-value:1", "description", "mine") == ("property", "write-access-denied")
        assert await refused("device:7701", "object-name", "mine") == ("property", "write-access-denied")
        assert sim.counts()["writes"] == 0
        assert await read(app, sim.address("io-1"), "analog-value:1", "present-value") == 22.0
        # within limits, every commandable type takes it
        for obj, value in [("analog-value:1", 26.0), ("analog-output:1", 0.0), ("binary-value:1", "inactive"),
                           ("multi-state-output:1", 3), ("multi-state-value:1", 3)]:  # fmt: skip
            await app.write_property(address, ObjectIdentifier(obj), "present-value", value, priority=9)
            assert str(await read(app, sim.address("io-1"), obj, "present-value")) == str(value)
            assert (await read(app, sim.address("io-1"), obj, "current-command-priority")).unsigned == 9
        assert sim.counts()["writes"] == 5


async def test_only_loopback_addresses_are_served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ((host, port),) = endpoints(["io-1"]).values()
    model = small_site(tmp_path, {"io-1": f"{host}:{port}", "io-lan": "192.0.2.10:47808", "io-whois": None,
                                  "io-moved": f"{host}:47808"})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="adapters.sim.bacnet"):
        sim = BacnetSimulator(SiteGraph(model), endpoints={"io-moved": ("192.0.2.20", 47999)}, update_every=3600)
    assert list(sim.devices) == ["io-1"]
    assert sim.counts()["skipped"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("loopback addresses only" in w for w in warnings)
    assert any("io-lan on 192.0.2.10:47808" in w for w in warnings)
    assert any("io-moved on 192.0.2.20:47999" in w for w in warnings)
    assert any("io-whois" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    with pytest.raises(KeyError):
        sim.address("io-lan")
    async with serving(sim), client(sim) as app:
        assert sim.counts()["running"] == 1
        assert await read(app, f"{host}:{port}", "device:7701", "object-name") == "io-1"
    with pytest.raises(ValueError, match="not BACnet devices"):
        BacnetSimulator(SiteGraph(model), devices=["lobby-meter"])


async def test_a_taken_address_is_not_shared(tmp_path: Path) -> None:
    graph, where = io_site(tmp_path, "io-1", "io-2")
    sim = BacnetSimulator(graph, update_every=3600)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as bacpypes3 binds: it would share
        squatter.bind(where["io-2"])
        with pytest.raises(AdapterNotReady, match=r"io-2: 127\.0\.77\.2:\d+ is already in use"):
            async with serving(sim):
                pytest.fail("served on a taken address")
    assert sim.counts()["running"] == 0
    async with serving(sim), client(sim) as app:  # the supervisor's retry, once the address is free
        assert await read(app, sim.address("io-2"), "device:7702", "object-name") == "io-2"


async def test_the_simulated_clock_follows_start_and_speed(tmp_path: Path) -> None:
    graph, _ = io_site(tmp_path, "io-1")
    clock = FakeClock()
    sim = BacnetSimulator(graph, speed=60, start=TUESDAY_10, clock=clock, update_every=3600)
    async with serving(sim):
        assert sim.time.local(sim.time.now()) == TUESDAY_10
        clock.advance(60)  # a real minute is a simulated hour
        assert sim.time.local(sim.time.now()) == TUESDAY_10 + timedelta(hours=1)
        clock.advance(9 * 60)  # 20:00: closed, the run status goes off
        sim.update()
        assert str(sim.object("io-1", "binary-input:1").presentValue) == "inactive"


def test_as_a_process_it_says_ready_and_stops_when_its_parent_goes(tmp_path: Path) -> None:
    """``python -m adapters.sim bacnet`` as the demo runs it: ``ready`` once the devices answer; the end of its
    stdin (the demo killed, however) stops it, so no simulator outlives the demo holding the site's addresses."""
    ports = {dev: free_udp_port(f"127.0.77.{i}") for i, dev in enumerate(DEVICES, start=1)}
    site(tmp_path, ports)  # writes tmp_path/site.yaml
    with subprocess.Popen(
        [sys.executable, "-m", "adapters.sim", "bacnet", str(tmp_path / "site.yaml"), "--parent-pipe"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline().strip() == b"ready"
            assert bind_error("127.0.77.1", ports["ahu-fast"]) is not None  # it holds the device's address
            proc.stdin.close()  # what a killed parent leaves behind
            assert proc.stderr is not None
            assert proc.wait(timeout=30) == 0
            err = proc.stderr.read()  # a few log lines: the pipe could not have filled
            assert bind_error("127.0.77.1", ports["ahu-fast"]) is None
            assert b"bacnet-sim stopped" in err
        finally:
            if proc.poll() is None:
                proc.kill()
