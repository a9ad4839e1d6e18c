"""``bmhub bacnet discover`` against real simulated BACnet/IP devices on loopback: directed Who-Is to addresses
and ranges, Who-Is through a real bacpypes3 BBMD as a foreign device, objects, and a snippet the site model
accepts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bacpypes3.app import Application
from bacpypes3.basetypes import BDTEntry, IPMode
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

from adapters.bacnet import discover, snippet
from adapters.sim.bacnet import BacnetSimulator
from hub.errors import ConfigError
from hub.graph import SiteGraph
from hub.site import load_site
from hub.yamlsrc import load_yaml
from tests.adapters.test_bacnet_bridge import MINIMAL, site
from tests.servers import free_udp_port

DEVICES = ("ahu-fast", "ahu-slow")


@contextlib.asynccontextmanager
async def simulated(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """ahu-fast and ahu-slow of the bridge tests' site, served; their addresses by id."""
    ports = {dev: free_udp_port(f"127.0.77.{i}") for i, dev in enumerate(("ahu-fast", "ahu-slow", "ahu-nocov"), 1)}
    sim = BacnetSimulator(SiteGraph(site(tmp_path, ports)), devices=DEVICES, update_every=3600)
    ready = asyncio.Event()
    task = asyncio.create_task(sim.run(ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield {dev: sim.address(dev) for dev in DEVICES}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def bbmd(peers: list[str]) -> AsyncIterator[str]:
    """A bacpypes3 BBMD on 127.0.78.1 whose broadcast distribution table holds ``peers``; its address.

    On a /24, not /32: a BBMD also re-broadcasts on its own subnet, and bacpypes3 fails the whole distribution
    (peers included) on an address without a broadcast address."""
    port = free_udp_port("127.0.78.1")
    np = NetworkPortObject(f"127.0.78.1/24:{port}", objectIdentifier=("network-port", 1), objectName="NetworkPort-1")
    np.bacnetIPMode = IPMode.bbmd
    np.bbmdAcceptFDRegistrations = True
    np.bbmdForeignDeviceTable = []
    np.bbmdBroadcastDistributionTable = [BDTEntry(a) for a in [f"127.0.78.1/24:{port}", *peers]]
    device = DeviceObject(objectIdentifier=("device", 7799), objectName="bbmd", vendorIdentifier=999)
    app = Application.from_object_list([device, np])
    try:
        yield f"127.0.78.1:{port}"
    finally:
        app.close()


async def test_directed_who_is_lists_devices_and_objects(tmp_path: Path) -> None:
    async with simulated(tmp_path) as addresses:
        _fast_host, fast_port = addresses["ahu-fast"].split(":")
        found = await discover([addresses["ahu-fast"], addresses["ahu-slow"]], wait=1.0)
        assert [(d.instance, d.address, d.name) for d in found] == [
            (7701, addresses["ahu-fast"], "ahu-fast"),
            (7702, addresses["ahu-slow"], "ahu-slow"),
        ]
        objects = {o.object: o for o in found[0].objects}
        assert set(objects) == {"analog-input:1", "binary-input:1", "multi-state-input:1", "analog-output:1",
                                "binary-output:1", "multi-state-value:1", "analog-value:1"}  # fmt: skip
        assert (objects["analog-input:1"].name, objects["analog-input:1"].unit) == ("temp", "degC")
        assert objects["analog-output:1"].commandable
        assert not objects["analog-input:1"].commandable
        assert objects["multi-state-value:1"].states == ["occupied", "unoccupied", "standby"]
        # a range: only the addresses that answer, on the port given
        ranged = await discover([f"127.0.77.0/30:{fast_port}"], wait=0.5, objects=False)
        assert [d.instance for d in ranged] == [7701]
        assert ranged[0].objects == []
        only = await discover([addresses["ahu-fast"], addresses["ahu-slow"]], low=7702, high=7702, wait=0.5)
        assert [d.instance for d in only] == [7702]


async def test_who_is_through_a_bbmd(tmp_path: Path) -> None:
    """Registered as a foreign device, the Who-Is is broadcast by the BBMD to its peers; they answer directly."""
    async with simulated(tmp_path) as addresses, bbmd(list(addresses.values())) as bbmd_address:
        found = await discover([], bbmd=bbmd_address, wait=1.0, objects=False)
        assert [(d.instance, d.address) for d in found if d.instance != 7799] == [
            (7701, addresses["ahu-fast"]),
            (7702, addresses["ahu-slow"]),
        ]
        assert any(d.instance == 7799 for d in found)  # the BBMD is a device too


async def test_snippet_is_a_valid_site_model_fragment(tmp_path: Path) -> None:
    async with simulated(tmp_path) as addresses:
        found = await discover([addresses["ahu-fast"]], wait=1.0)
    text = snippet(found)
    assert text.startswith("# From bmhub bacnet discover.")
    fragment = yaml.safe_load(text)
    [type_id] = fragment["device_types"]
    points = {p["object"]: p for p in fragment["device_types"][type_id]["points"]}
    assert points["analog-output:1"]["writable"] is True
    assert "writable" not in points["analog-input:1"]
    assert points["analog-input:1"]["kind"] == "temperature"
    data, _ = load_yaml(MINIMAL)  # paste it into a site model: it loads
    data["device_types"].update(fragment["device_types"])
    for zone in data["zones"]:
        zone["devices"] = [d for d in zone.get("devices", []) if d["protocol"] != "bacnet"]
    data["zones"][0]["devices"] += fragment["devices"]
    path = tmp_path / "pasted.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    graph = SiteGraph(load_site(path))
    assert graph.devices["ahu-fast"].spec.model_dump()["instance"] == 7701


async def test_cli_prints_devices_json(tmp_path: Path) -> None:
    async with simulated(tmp_path) as addresses:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "bacnet", "discover", addresses["ahu-slow"], "--json", "--timeout", "1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    data: list[dict[str, Any]] = json.loads(out)
    assert [(d["instance"], d["name"]) for d in data] == [(7702, "ahu-slow")]
    assert len(data[0]["objects"]) == 7


@pytest.mark.parametrize(
    ("targets", "error"),
    [
        (["not-an-address"], "target: must be IPv4[/prefix][:port], e.g. 192.0.2.10/24:47808; got 'not-an-address'"),
        (["192.0.2.1:99999"], "target: must be IPv4[/prefix][:port]"),
        ([], "give addresses to ask, or --bbmd"),
        (["10.0.0.0/20"], "4094 addresses; at most 1024 per run"),
    ],
)
async def test_bad_targets_are_clear_errors(targets: list[str], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        await discover(targets)


async def test_a_bbmd_that_does_not_answer_is_a_clear_error() -> None:
    port = free_udp_port("127.0.78.2")  # nothing listens there
    with pytest.raises(ConfigError, match=f"BBMD 127.0.78.2:{port} did not accept the foreign-device registration"):
        await discover([], bbmd=f"127.0.78.2:{port}", wait=0.5)
