"""The v2 write API (``/api/v2/write`` with org, bucket and token, through influxdb-client's async client)
against a real VictoriaMetrics (Debian's victoria-metrics), which takes that API and stores each numeric field
as a series ``<measurement>_<field>``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hub.bus import Bus
from hub.errors import ConfigError
from hub.history import HistorySettings, InfluxHistory, InfluxSettings, create_history
from tests.helpers import WAIT, until
from tests.history.rig import GRAPH, fast, readings, running, v2
from tests.servers import VictoriaMetrics

TOKEN = "s3cret-t0ken-never-logged"  # noqa: S105 - a test token, checked never to reach the log


def service(url: str, spool: Path) -> Any:
    return lambda bus: InfluxHistory(bus, GRAPH, v2(url, org="city", bucket="bmhub", token=SecretStr(TOKEN)), fast(),
                                     spool)  # fmt: skip


async def exported(vm: VictoriaMetrics, match: str, n: int) -> list[dict[str, Any]]:
    """Poll the export until it holds ``n`` samples (VictoriaMetrics makes new data searchable within seconds)."""
    series: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        while sum(len(s["values"]) for s in series) < n:
            series = await asyncio.to_thread(vm.export, match)
            await asyncio.sleep(0.1)
    return series


def by_point(series: list[dict[str, Any]]) -> dict[str, list[float]]:
    return {s["metric"]["point"]: s["values"] for s in series}


def sent(n: int) -> dict[str, list[float]]:
    want: dict[str, list[float]] = {}
    for r in readings(n):
        assert isinstance(r.value, float)
        want.setdefault(r.point, []).append(r.value)
    return want


async def test_v2_api_n_readings_in_n_samples_out(
    victoria: VictoriaMetrics, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    n = 3000
    async with running(service(victoria.url, tmp_path / "spool")) as rig:
        rig.publish(readings(n))
        await until(lambda: rig.service.written == n, f"{n} points written")
        assert rig.service.details()["endpoint"] == f"{victoria.url} (v2, org city, bucket bmhub)"
    series = await exported(victoria, '{__name__="reading_value"}', n)
    assert sum(len(s["values"]) for s in series) == n
    assert by_point(series) == sent(n)
    labels = next(s["metric"] for s in series if s["metric"]["point"] == "room-201-vav.zone_temp")
    assert labels == {"__name__": "reading_value", "site": "test-site", "building": "hall", "floor": "hall-2f",
                      "zone": "room-201", "device": "room-201-vav", "point": "room-201-vav.zone_temp",
                      "kind": "temperature", "unit": "degC"}  # fmt: skip
    assert TOKEN not in caplog.text


async def test_v2_api_outage_spools_then_replays(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vm = VictoriaMetrics(tmp_path / "vm")  # not started: nothing listens on its port yet
    n = 1000
    try:
        async with running(service(vm.url, tmp_path / "spool")) as rig:
            rig.publish(readings(n))
            await until(lambda: rig.service.down, "the write to fail")
            assert "batch of 200 point(s): Cannot connect to host" in str(rig.service.last_error)
            await asyncio.to_thread(vm.start)
            await until(lambda: rig.service.replayed == n, "the spool to replay")
        series = await exported(vm, '{__name__="reading_value"}', n)
        assert by_point(series) == sent(n)
    finally:
        await asyncio.to_thread(vm.stop)
    assert TOKEN not in caplog.text


async def test_v2_needs_org_bucket_and_token(tmp_path: Path) -> None:
    async with Bus() as bus:
        with pytest.raises(ConfigError) as err:
            create_history(bus, GRAPH, tmp_path, settings=HistorySettings(),
                           influx=InfluxSettings(url="http://127.0.0.1:1", api="v2", org="city"))  # fmt: skip
    assert "BMHUB_INFLUX_BUCKET: required with api v2" in str(err.value)
    assert "BMHUB_INFLUX_TOKEN: required with api v2" in str(err.value)
