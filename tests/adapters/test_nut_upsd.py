"""The NUT bridge against a real upsd with dummy-ups drivers (Debian's nut-server; tests/servers.py ``Nut``).

Each UPS of the bundled site model gets a dummy-ups driver reading a ``.dev`` file; changing the file changes
what upsd reports about a second later. Stopping a driver makes upsd answer ERR DRIVER-NOT-CONNECTED; pausing
it (SIGSTOP) makes the data stale after upsd's MAXAGE (3 s here): ERR DATA-STALE.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.nut import NutClient, NutResponseError
from hub.events import Quality
from hub.graph import SiteGraph
from hub.site import load_site
from hub.supervisor import Health
from tests.adapters.test_nut_sim import DC_A, DC_B, MR, POINTS, WH, bridged, nut_settings
from tests.conftest import SITE_MODEL
from tests.helpers import until
from tests.servers import Nut

VALUES = {
    "ups.status": "OL",
    "battery.charge": "100",
    "battery.runtime": "1800",
    "input.voltage": "100.2",
    "input.frequency": "50.0",
    "output.voltage": "100.0",
    "ups.load": "25",
    "ups.mfr": "bmhub test",
}


def dev_files(graph: SiteGraph) -> dict[str, dict[str, str]]:
    """One .dev per UPS name of the model; the welfare hall's UPS does not report input.frequency."""
    files = {}
    for device in graph.find_devices(protocol="nut"):
        values = dict(VALUES)
        if device.id == WH:
            del values["input.frequency"]
        files[device.spec.ups] = values  # type: ignore[union-attr]  # NUT devices have a ups name
    return files


@pytest.fixture(scope="module")
def graph() -> SiteGraph:
    return SiteGraph(load_site(SITE_MODEL))


@pytest.fixture
def nut(tmp_path: Path, graph: SiteGraph) -> Iterator[Nut]:
    server = Nut(tmp_path / "nut", dev_files(graph))
    server.start()
    yield server
    server.stop()


async def test_readings_then_on_battery_and_back_on_line(nut: Nut, graph: SiteGraph, tmp_path: Path) -> None:
    async with bridged(graph, nut.port, tmp_path) as rig:
        await until(lambda: rig.health.state is Health.RUNNING, "the bridge to poll upsd")
        assert rig.value(MR, "status") == "OL"
        assert rig.value(MR, "battery-charge") == 100
        assert type(rig.value(MR, "battery-charge")) is int
        assert rig.value(MR, "battery-runtime") == 1800
        assert rig.value(MR, "input-voltage") == 100.2
        assert rig.value(MR, "input-frequency") == 50.0
        assert rig.value(MR, "output-voltage") == 100.0
        assert rig.value(MR, "load") == 25
        assert rig.quality(WH, "input-frequency") is Quality.BAD  # not reported by that UPS
        assert rig.quality(WH, "input-voltage") is Quality.GOOD
        assert rig.alarms == []

        nut.write("ch-mr-ups", **{"ups.status": "OB DISCHRG LB", "battery.charge": "18", "battery.runtime": "240",
                                  "input.voltage": "0.0"})  # fmt: skip
        on_battery, low = f"nut:{MR}:on-battery", f"nut:{MR}:low-battery"
        await until(lambda: {on_battery, low} <= rig.active(), "on-battery and low-battery alarms")
        await rig.polls(5)
        assert rig.events(MR, "on-battery") == [(True, "critical")]
        assert rig.events(MR, "low-battery") == [(True, "critical")]
        assert rig.active() == {on_battery, low}
        raised = next(a for a in rig.alarms if a.key == on_battery)
        assert raised.source == MR
        assert "Machine-room UPS (ch-4f-machine-room-ups-1) is on battery" in raised.message
        assert "'OB DISCHRG LB'" in raised.message
        assert "battery.charge 18" in raised.message
        assert rig.value(MR, "status") == "OB DISCHRG LB"
        assert rig.value(MR, "battery-runtime") == 240
        ups = rig.bridge.details()["ups"][MR]
        assert (ups["status"], ups["flags"]) == ("OB DISCHRG LB", ["DISCHRG", "LB", "OB"])
        assert ups["alarms"] == ["low-battery", "on-battery"]

        nut.write("ch-mr-ups", **{"ups.status": "OL", "battery.charge": "19", "input.voltage": "100.1"})
        await until(lambda: rig.active() == set(), "the alarms to clear")
        await rig.polls(5)
        assert rig.events(MR, "on-battery") == [(True, "critical"), (False, "info")]
        assert rig.events(MR, "low-battery") == [(True, "critical"), (False, "info")]
        back = rig.alarms[-2:]
        cleared = next(a for a in back if a.key == on_battery)
        assert "back on line: power is back" in cleared.message
        assert rig.value(MR, "status") == "OL"
        assert all(a.source == MR for a in rig.alarms)  # no other UPS said anything


async def test_driver_lost_and_stale_data(nut: Nut, graph: SiteGraph, tmp_path: Path) -> None:
    async with bridged(graph, nut.port, tmp_path) as rig:
        await until(lambda: rig.health.state is Health.RUNNING, "the bridge to poll upsd")
        lost_a, lost_b = f"nut:{DC_A}:driver-lost", f"nut:{DC_B}:driver-lost"

        nut.stop_driver("dc-ups-a")
        await until(lambda: lost_a in rig.active(), "driver-lost for dc-ups-a")
        assert all(rig.quality(DC_A, p) is Quality.OFFLINE for p in POINTS)
        assert rig.point(DC_A, "status").value == "OL"  # type: ignore[union-attr]  # the last value, flagged
        message = next(a.message for a in rig.alarms if a.key == lost_a)
        assert "DRIVER-NOT-CONNECTED" in message

        nut.pause_driver("dc-ups-b")  # alive but silent: upsd calls its data stale after MAXAGE
        await until(lambda: lost_b in rig.active(), "driver-lost for dc-ups-b")
        message = next(a.message for a in rig.alarms if a.key == lost_b)
        assert "DATA-STALE" in message
        assert all(rig.quality(DC_B, p) is Quality.OFFLINE for p in POINTS)
        await rig.polls(5)
        assert rig.events(DC_A, "driver-lost") == [(True, "critical")]
        assert rig.events(DC_B, "driver-lost") == [(True, "critical")]
        assert rig.quality(MR, "status") is Quality.GOOD  # the others carry on
        assert rig.quality(WH, "load") is Quality.GOOD

        nut.resume_driver("dc-ups-b")
        nut.start_driver("dc-ups-a")
        await until(lambda: rig.active() == set(), "both drivers back")
        await until(lambda: rig.value(DC_A, "status") == "OL", "dc-ups-a readings")
        assert rig.quality(DC_B, "battery-charge") is Quality.GOOD
        assert rig.events(DC_A, "driver-lost") == [(True, "critical"), (False, "info")]
        assert rig.events(DC_B, "driver-lost") == [(True, "critical"), (False, "info")]
        assert not [a for a in rig.alarms if not a.key.endswith(":driver-lost")]


async def test_upsd_restart(nut: Nut, graph: SiteGraph, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.nut")
    async with bridged(graph, nut.port, tmp_path) as rig:
        await until(lambda: rig.health.state is Health.RUNNING, "the bridge to poll upsd")
        nut.stop_upsd()
        await until(lambda: rig.health.restarts >= 3, "a few retries")
        assert rig.health.state is not Health.FAILED
        assert all(rig.quality(d, "status") is Quality.OFFLINE for d in (MR, WH, DC_A, DC_B))
        assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1

        nut.start_upsd()
        await until(lambda: rig.health.state is Health.RUNNING, "the bridge to reconnect")
        await until(lambda: all(rig.value(d, "status") == "OL" for d in (MR, WH, DC_A, DC_B)), "readings again")
        assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 1
        assert rig.alarms == []  # an unreachable upsd is the supervisor's business, not a UPS alarm


async def test_reading_needs_no_login_and_unknown_ups_is_offline(
    tmp_path: Path, graph: SiteGraph, caplog: pytest.LogCaptureFixture
) -> None:
    """upsd 2.8 lets anyone LIST VAR and accepts any USERNAME/PASSWORD, checking them only for LOGIN, SET and
    INSTCMD; so against a real upsd wrong credentials do not fail the bridge (refused credentials are tested
    against the simulator, which can refuse reads). Two of the model's four UPS names are not on this upsd."""
    caplog.set_level(logging.INFO, logger="adapters.nut")
    files = dev_files(graph)
    server = Nut(tmp_path / "nut", {ups: files[ups] for ups in ("ch-mr-ups", "wh-ups")}, users={"monitor": "right"})
    server.start()
    try:
        async with NutClient("127.0.0.1", server.port) as client:
            assert (await client.ver()).startswith("Network UPS Tools upsd 2.")
            await client.authenticate("monitor", "wrong")  # upsd says OK: nothing is checked yet
            assert (await client.list_var("ch-mr-ups"))["ups.status"] == "OL"
            assert await client.get_var("ch-mr-ups", "ups.mfr") == "bmhub test"
            for call, code in ((client.list_var("dc-ups-a"), "UNKNOWN-UPS"),
                               (client.get_var("ch-mr-ups", "no.such.var"), "VAR-NOT-SUPPORTED")):  # fmt: skip
                with pytest.raises(NutResponseError) as err:
                    await call
                assert err.value.code == code

        settings = nut_settings(username="monitor", password="wrong")
        async with bridged(graph, server.port, tmp_path, settings=settings) as rig:
            await until(lambda: rig.health.state is Health.RUNNING, "the bridge to poll upsd")
            await rig.polls(3)
            assert rig.value(MR, "status") == "OL"
            assert rig.value(WH, "load") == 25
            for device in (DC_A, DC_B):
                assert all(rig.quality(device, p) is Quality.OFFLINE for p in POINTS)
                assert rig.bridge.details()["ups"][device]["refused"] == "UNKNOWN-UPS"
            unknown = [r for r in caplog.records if "ERR UNKNOWN-UPS" in r.getMessage()]
            assert len(unknown) == 2  # once per UPS, not once per poll
            assert rig.alarms == []
            assert rig.bridge.details()["user"] == "monitor"
    finally:
        server.stop()
