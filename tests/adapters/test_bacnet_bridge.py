"""The BACnet bridge against real BACnet/IP devices (bacpypes3 applications of adapters.sim.bacnet) over UDP on
loopback, no mocks: batched reads, COV and the fallback to polling, priority writes and relinquish, the priority
array, status flags, devices that stop answering and come back.

Devices sit on 127.0.77.x with free UDP ports; the hub binds 127.0.0.1 on a port of its own (a bacpypes3
application sharing a device's port would talk to itself)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import pytest
import yaml
from bacpypes3.primitivedata import Null, Real

from adapters.bacnet import BacnetBridge
from adapters.sim.bacnet import BacnetSimulator
from hub.events import Alarm, Command, CommandResult, Context, Quality
from hub.runtime import Runtime
from hub.settings import Settings
from hub.site import SiteModel, load_site
from hub.yamlsrc import load_yaml
from tests.conftest import FIXTURES
from tests.helpers import http_get, running, until
from tests.servers import free_port, free_udp_port

MINIMAL = FIXTURES / "site" / "minimal.yaml"
FAST = 0.3  # seconds between polls of the "fast" type
FAST_ENV = {"APDU_TIMEOUT": "0.2", "APDU_RETRIES": "0", "MAX_OBJECTS": "4", "COV_RETRY": "3600", "STARTUP_SPREAD": "0"}


def _points(interval: float) -> list[dict[str, Any]]:
    return [
        {"id": "temp", "kind": "temperature", "unit": "degC", "object": "analog-input:1", "interval": interval},
        {"id": "fan-status", "kind": "fan", "object": "binary-input:1", "interval": interval},
        {"id": "state", "kind": "status", "object": "multi-state-input:1", "interval": interval,
         "states": ["idle", "heating", "cooling"]},
        {"id": "valve", "kind": "valve", "unit": "%", "object": "analog-output:1", "writable": True, "min": 0,
         "max": 100, "interval": interval},
        {"id": "fan", "kind": "fan", "object": "binary-output:1", "writable": True, "interval": interval},
        {"id": "mode", "kind": "mode", "object": "multi-state-value:1", "writable": True, "interval": interval,
         "states": ["occupied", "unoccupied", "standby"]},
        {"id": "setpoint", "kind": "setpoint", "unit": "degC", "object": "analog-value:1", "interval": interval},
    ]  # fmt: skip


TYPES = {
    "fast": {"kind": "ahu", "protocol": "bacnet", "points": _points(FAST)},
    "slow": {"kind": "ahu", "protocol": "bacnet", "points": _points(60)},  # a change can only come by COV
}
DEVICES = {"ahu-fast": ("fast", 7701), "ahu-slow": ("slow", 7702), "ahu-nocov": ("fast", 7703)}


def site(tmp_path: Path, ports: dict[str, int]) -> SiteModel:
    """minimal.yaml with its VAV dropped and the test's devices in the machine room, on 127.0.77.x."""
    data, _ = load_yaml(MINIMAL)
    data["device_types"].update(TYPES)
    for zone in data["zones"]:
        zone["devices"] = [d for d in zone.get("devices", []) if d["protocol"] != "bacnet"]
    room = next(z for z in data["zones"] if z["id"] == "machine-room")
    for i, (dev, (type_, instance)) in enumerate(DEVICES.items(), start=1):
        room["devices"].append({"id": dev, "type": type_, "protocol": "bacnet", "instance": instance,
                                "address": f"127.0.77.{i}:{ports[dev]}"})  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_site(path)


class Hub:
    def __init__(self, rt: Runtime, sim: BacnetSimulator) -> None:
        self.rt, self.sim = rt, sim
        self.bridge = next(s for _, s in rt.services if isinstance(s, BacnetBridge))
        self.results: list[CommandResult] = []
        self.alarms: list[Alarm] = []
        rt.bus.subscribe(CommandResult, self.results.append, name="test:results")
        rt.bus.subscribe(Alarm, self.alarms.append, name="test:alarms")

    def value(self, point: str) -> Any:
        st = self.rt.state.get(point)
        return None if st is None else st.value

    def quality(self, point: str) -> Quality | None:
        st = self.rt.state.get(point)
        return None if st is None else st.quality

    def device(self, dev: str) -> dict[str, Any]:
        return self.bridge.device_details(dev)

    async def command(self, point: str, value: Any, priority: int | None = None, origin: str = "user:test",
                      reason: str = "") -> CommandResult:  # fmt: skip
        cmd = Command(point=point, value=value, priority=priority, reason=reason, context=Context(origin=origin))
        self.rt.bus.publish(cmd)
        result: CommandResult = await until(
            lambda: next((r for r in self.results if r.command_id == cmd.id), None), f"the result of {cmd}"
        )
        return result


@contextlib.asynccontextmanager
async def hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, no_cov: Collection[str] = ("ahu-nocov",),
    serve: Collection[str] = tuple(DEVICES), api: bool = False,
) -> AsyncIterator[Hub]:  # fmt: skip
    for key, value in FAST_ENV.items():
        monkeypatch.setenv(f"BMHUB_BACNET_{key}", value)
    ports = {dev: free_udp_port(f"127.0.77.{i}") for i, dev in enumerate(DEVICES, start=1)}
    model = site(tmp_path, ports)
    rt = Runtime(model, Settings(state_dir=tmp_path / "state", api=api, status_interval=0.1), adapters=("bacnet",))
    sim = BacnetSimulator(rt.graph, seed=1, devices=serve, no_cov=no_cov, update_every=3600)
    rt.add_service("core", sim)  # devices up before the hub's adapters start
    async with running(rt):
        yield Hub(rt, sim)


async def test_reads_every_point_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        points = h.rt.graph.devices["ahu-nocov"].points
        await until(lambda: all(h.value(p) is not None for p in points), "every point of ahu-nocov")
        sim = h.sim.object
        assert h.value("ahu-nocov.temp") == pytest.approx(float(sim("ahu-nocov", "analog-input:1").presentValue))
        assert isinstance(h.value("ahu-nocov.temp"), float)
        assert isinstance(h.value("ahu-nocov.fan-status"), bool)
        assert h.value("ahu-nocov.state") in ("idle", "heating", "cooling")
        assert h.value("ahu-nocov.mode") in ("occupied", "unoccupied", "standby")
        assert all(h.quality(p) is Quality.GOOD for p in points)
        # 7 objects at 4 a request: 2 ReadPropertyMultiple per poll (ReadProperty would need 14). This device
        # refuses COV, so polls are all it is asked (its refusal costs 7 requests, once).
        await until(lambda: h.device("ahu-nocov")["polls"] >= 4, "four polls")
        d = h.device("ahu-nocov")
        assert d["read"] == "rpm"
        polls, reads = d["polls"], d["requests"] - 7
        assert 2 * (polls - 1) <= reads <= 2 * polls


async def test_cov_update_arrives_between_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        await until(lambda: h.device("ahu-slow")["cov"] == 7, "COV subscriptions on ahu-slow")
        assert h.device("ahu-slow")["polled"] == []
        polls = h.device("ahu-slow")["polls"]
        h.sim.object("ahu-slow", "analog-input:1").presentValue = 31.5
        await until(lambda: h.value("ahu-slow.temp") == 31.5, "the COV notification")
        h.sim.object("ahu-slow", "binary-input:1").presentValue = "active"
        await until(lambda: h.value("ahu-slow.fan-status") is True, "the binary COV notification")
        assert h.device("ahu-slow")["polls"] == polls  # the 60 s poll did not bring them
        assert h.bridge.point_modes()["ahu-slow.temp"] == "cov"


async def test_device_refusing_cov_is_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="adapters.bacnet")
    async with hub(tmp_path, monkeypatch) as h:
        await until(lambda: len(h.device("ahu-nocov")["polled"]) == 7, "ahu-nocov's points marked polled")
        assert h.device("ahu-nocov")["cov"] == 0
        assert h.bridge.details()["points_polled"] == 7
        # bmhub status details the devices that need attention, this one among them, and not the others
        attention = h.bridge.details()["attention"]
        assert len(attention["ahu-nocov"]["polled"]) == 7
        assert "ahu-fast" not in attention
        assert "BACnet device ahu-nocov refuses COV for 7 point(s)" in caplog.text
        h.sim.object("ahu-nocov", "analog-input:1").presentValue = 12.25
        await until(lambda: h.value("ahu-nocov.temp") == 12.25, "the polled value")


async def test_priority_write_relinquish_and_who_holds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        point = "ahu-fast.valve"
        await until(lambda: h.value(point) is not None, "the valve")
        default = (await h.bridge.priority_array(point)).relinquish_default
        assert isinstance(default, float)

        r = await h.command(point, 40.0, origin="automation:energy", reason="lunch break")
        assert r.ok, r.detail
        assert "priority 8" in r.detail
        assert "holds 40.0 at priority 8" in r.detail
        r = await h.command(point, 70.0, priority=2, origin="automation:emergency", reason="smoke control")
        assert r.ok
        assert "holds 70.0 at priority 2" in r.detail
        # another BACnet client (the device's own operator panel here) writes at 5
        await h.sim.object("ahu-fast", "analog-output:1").write_property("presentValue", Real(55.0), priority=5)

        array = await h.bridge.priority_array(point)
        assert array.present_value == 70.0
        assert array.active_priority == 2
        held = {s.priority: (s.value, s.holder) for s in array.slots}
        assert held == {
            2: (70.0, "automation:emergency (smoke control)"),
            5: (55.0, None),
            8: (40.0, "automation:energy (lunch break)"),
        }
        # a write below the active priority says who overrides it
        r = await h.command(point, 45.0, priority=8, origin="automation:energy")
        assert r.ok
        assert "from priority 2 (automation:emergency (smoke control)), which overrides priority 8" in r.detail

        for priority in (2, 8):
            r = await h.command(point, None, priority=priority, origin="automation:emergency")
            assert r.ok
            assert f"relinquish analog-output:1 at priority {priority} done" in r.detail
        await h.sim.object("ahu-fast", "analog-output:1").write_property("presentValue", Null(()), priority=5)
        array = await h.bridge.priority_array(point)
        assert array.slots == ()
        assert array.active_priority is None
        assert array.present_value == default
        await until(lambda: h.value(point) == default, "the relinquish default in the hub's state")


async def test_writes_binary_and_multistate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        await until(lambda: h.value("ahu-fast.mode") is not None, "the mode")
        r = await h.command("ahu-fast.mode", "standby")
        assert r.ok, r.detail
        assert int(h.sim.object("ahu-fast", "multi-state-value:1").presentValue) == 3
        assert h.value("ahu-fast.mode") == "standby"
        r = await h.command("ahu-fast.fan", True, priority=10)
        assert r.ok, r.detail
        assert str(h.sim.object("ahu-fast", "binary-output:1").presentValue) == "active"
        assert h.value("ahu-fast.fan") is True


@pytest.mark.parametrize(
    ("point", "value", "priority", "why"),
    [
        ("ahu-fast.valve", 50.0, 6, "priority 6 is reserved for minimum on/off"),
        ("ahu-fast.valve", 50.0, 17, "priority must be 1-16, got 17"),
        ("ahu-fast.valve", 150.0, None, "150.0 is outside 0.0-100.0"),
        ("ahu-fast.valve", "open", None, "takes a number, got 'open'"),
        ("ahu-fast.mode", "party", None, "'party' is not a state of mode (occupied, unoccupied, standby)"),
        ("ahu-fast.temp", 20.0, None, "point is read-only (analog-input:1; writable: false)"),
    ],
)
async def test_refused_commands_say_why_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, value: Any, priority: int | None, why: str
) -> None:
    async with hub(tmp_path, monkeypatch, serve=("ahu-fast",)) as h:
        await until(lambda: h.value("ahu-fast.valve") is not None, "the valve")
        before = h.bridge.commands
        r = await h.command(point, value, priority)
        assert not r.ok
        assert why in r.detail
        assert h.bridge.commands == before


async def test_status_flags_set_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch, serve=("ahu-fast",)) as h:
        await until(lambda: h.quality("ahu-fast.temp") is Quality.GOOD, "a good reading")
        obj = h.sim.object("ahu-fast", "analog-input:1")
        obj.statusFlags = [0, 1, 0, 0]  # fault
        await until(lambda: h.quality("ahu-fast.temp") is Quality.BAD, "bad on fault")
        obj.statusFlags = [1, 0, 1, 0]  # in alarm, overridden: the value is real
        await until(lambda: h.quality("ahu-fast.temp") is Quality.GOOD, "good again")
        obj.statusFlags = [0, 0, 0, 1]  # out of service
        await until(lambda: h.quality("ahu-fast.temp") is Quality.BAD, "bad when out of service")


async def test_killed_device_goes_offline_and_comes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        points = h.rt.graph.devices["ahu-fast"].points
        await until(lambda: h.device("ahu-fast")["cov"] == 7, "ahu-fast subscribed")
        await until(lambda: all(h.quality(p) is Quality.GOOD for p in points), "ahu-fast good")
        h.sim.stop_device("ahu-fast")
        polls = h.device("ahu-fast")["polls"]
        await until(lambda: all(h.quality(p) is Quality.OFFLINE for p in points), "ahu-fast offline")
        assert h.device("ahu-fast")["polls"] - polls <= 2  # within two poll periods
        raised = [a for a in h.alarms if a.key == "bacnet:ahu-fast:unreachable"]
        assert [a.active for a in raised] == [True]
        assert h.quality("ahu-slow.temp") is Quality.GOOD  # the others carry on

        await h.sim.start_device("ahu-fast")
        await until(lambda: all(h.quality(p) is Quality.GOOD for p in points), "ahu-fast good again")
        raised = [a for a in h.alarms if a.key == "bacnet:ahu-fast:unreachable"]
        assert [a.active for a in raised] == [True, False]
        # the restarted device forgot its subscriptions: the bridge subscribes again
        await until(lambda: h.device("ahu-fast")["cov"] == 7, "ahu-fast subscribed again")
        h.sim.object("ahu-fast", "analog-input:1").presentValue = 18.75
        await until(lambda: h.value("ahu-fast.temp") == 18.75, "a value after the restart")


async def test_device_missing_at_start_is_offline_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with hub(tmp_path, monkeypatch, serve=("ahu-fast", "ahu-slow")) as h:
        points = h.rt.graph.devices["ahu-nocov"].points
        await until(lambda: all(h.quality(p) is Quality.OFFLINE for p in points), "ahu-nocov offline")
        assert any(a.key == "bacnet:ahu-nocov:unreachable" and a.active for a in h.alarms)
        await until(lambda: h.quality("ahu-fast.temp") is Quality.GOOD, "ahu-fast good")
        r = await h.command("ahu-nocov.valve", 10.0)
        assert not r.ok
        assert "not answering" in r.detail


async def test_api_says_who_holds_a_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /api/points/{point}/priority on the hub's real HTTP server, the device read as the request comes."""
    monkeypatch.setenv("BMHUB_API_PORT", str(free_port()))
    async with hub(tmp_path, monkeypatch, serve=("ahu-fast", "ahu-slow"), api=True) as h:
        assert h.rt.api is not None
        await until(lambda: h.value("ahu-fast.valve") is not None, "the valve")
        r = await h.command("ahu-fast.valve", 33.0, priority=12, origin="automation:energy", reason="night setback")
        assert r.ok, r.detail
        status, body = await asyncio.to_thread(http_get, f"{h.rt.api.url}api/points/ahu-fast.valve/priority")
        assert status == 200, body
        assert body["present_value"] == 33.0
        assert body["active_priority"] == 12
        assert [(s["priority"], s["value"], s["holder"]) for s in body["slots"]] == [
            (12, 33.0, "automation:energy (night setback)")
        ]
        for point, code, detail in [
            ("ahu-fast.nothing", 404, "unknown point 'ahu-fast.nothing'"),
            ("ahu-fast.temp", 404, "has no priority array"),
            ("ahu-nocov.valve", 503, "no answer from 127.0.77.3"),
        ]:
            status, body = await asyncio.to_thread(http_get, f"{h.rt.api.url}api/points/{point}/priority")
            assert (status, detail in body["detail"]) == (code, True), body


def test_a_hub_on_loopback_warns_that_lan_devices_cannot_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default address suits the simulators only; on a site the operator must name the BACnet interface.
    (Checked without running: a test sends nothing beyond loopback.)"""
    data, _ = load_yaml(MINIMAL)
    vav = next(d for z in data["zones"] for d in z.get("devices", []) if d["protocol"] == "bacnet")
    vav["address"] = "192.0.2.10:47808"
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    rt = Runtime(load_site(tmp_path / "site.yaml"), Settings(state_dir=tmp_path, api=False), adapters=("bacnet",))
    bridge = next(s for _, s in rt.services if isinstance(s, BacnetBridge))
    bridge.bound = "127.0.0.1:40000"
    bridge._warn_unreachable_from_loopback()
    assert "BACnet/IP is on loopback (127.0.0.1:40000) but 1 device(s) are not (e.g. room-201-vav at " \
           "192.0.2.10:47808)" in caplog.text  # fmt: skip
    assert "set BMHUB_BACNET_ADDRESS" in caplog.text
    caplog.clear()
    bridge.bound = "192.0.2.5:47808"
    bridge._warn_unreachable_from_loopback()
    assert caplog.text == ""
