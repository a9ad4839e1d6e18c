"""History in the running hub: chosen by the environment, started in the history stage, in ``bmhub status``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from hub.events import OccupancyChanged, Quality, Reading
from hub.history import EMBEDDED_FILE, EmbeddedHistory, InfluxHistory
from hub.runtime import STATUS_FILE, Runtime
from hub.settings import Settings
from hub.site import load_site
from tests.conftest import ROOT
from tests.helpers import http_get, running, until
from tests.history.rig import MINIMAL, NUMERIC, T0, readings
from tests.servers import Influx, free_port


def runtime(tmp_path: Path) -> Runtime:
    return Runtime(load_site(MINIMAL), Settings(state_dir=tmp_path / "state", api=False, status_interval=0.05),
                   adapters=())  # fmt: skip


async def test_without_influxdb_history_goes_to_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BMHUB_INFLUX_URL", raising=False)
    monkeypatch.setenv("BMHUB_HISTORY_FLUSH_INTERVAL", "0.05")
    rt = runtime(tmp_path)
    assert isinstance(rt.history, EmbeddedHistory)
    async with running(rt):
        assert rt.health["history"].stage == "history"
        for r in readings(100):
            rt.bus.publish(r)
        await until(lambda: rt.status()["details"]["history"]["written"] >= 100, "readings stored")
        got = await rt.history.point_history(NUMERIC[0], start=r.time.replace(year=2000))
    assert len(got) == 100 // len(NUMERIC) + (1 if 100 % len(NUMERIC) else 0)
    assert (tmp_path / "state" / EMBEDDED_FILE).exists()
    status = json.loads((tmp_path / "state" / STATUS_FILE).read_text())
    assert status["details"]["history"]["backend"] == "embedded"


async def test_with_influxdb_the_hub_writes_there_and_reports_counters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, influxdb: Influx
) -> None:
    monkeypatch.setenv("BMHUB_INFLUX_URL", influxdb.url)
    monkeypatch.setenv("BMHUB_HISTORY_FLUSH_INTERVAL", "30")  # only the stop writes: the final flush is tested
    rt = runtime(tmp_path)
    assert isinstance(rt.history, InfluxHistory)
    async with running(rt):
        for r in readings(1000):
            rt.bus.publish(Reading(point=r.point, value=r.value, time=r.time))
        await until(lambda: rt.status()["details"]["history"]["pending"] >= 1000, "readings taken")
    status = json.loads((tmp_path / "state" / STATUS_FILE).read_text())
    details = status["details"]["history"]
    assert (details["backend"], details["spooled"], details["pending"]) == ("influxdb", 0, 0)
    readings_in = (await asyncio.to_thread(influxdb.rows, "SELECT count(value) FROM reading"))[0]["count"]
    changes_in = (await asyncio.to_thread(influxdb.rows, "SELECT count(quality) FROM state_change"))[0]["count"]
    assert (readings_in, changes_in) == (1000, 1000)  # every reading changed its point's value
    assert details["written"] >= 2000  # and the mode the calendar set at start, if it changed it
    assert details["endpoint"] == f"{influxdb.url} (v1, database bmhub)"


async def test_history_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMHUB_HISTORY_BACKEND", "off")
    rt = runtime(tmp_path)
    assert rt.history is None
    assert "history" not in {svc.name for _, svc in rt.services}


def test_exports_resolve_and_no_http_client_is_imported_until_configured() -> None:
    import hub.history

    assert [name for name in hub.history.__all__ if not hasattr(hub.history, name)] == []
    # `bmhub status` and `bmhub validate` import the runtime: they must not pay for aiohttp or influxdb-client.
    code = "import sys, hub.runtime; print(sorted(m for m in ('aiohttp', 'influxdb_client') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


async def test_the_api_serves_a_points_history_and_a_rooms_hours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The booking app's utilisation and a facility manager's trend, from the embedded store, over real HTTP."""
    monkeypatch.delenv("BMHUB_INFLUX_URL", raising=False)
    monkeypatch.setenv("BMHUB_HISTORY_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("BMHUB_API_PORT", str(free_port()))
    rt = Runtime(load_site(MINIMAL), Settings(state_dir=tmp_path / "state", status_interval=0.05), adapters=())
    async with running(rt):
        assert rt.api is not None
        point = NUMERIC[0]
        for i in range(3):
            rt.bus.publish(Reading(point=point, value=20.0 + i, time=T0 + timedelta(minutes=i), source="test"))
        for minutes, occupied, count in ((0, True, 3), (30, False, 0)):
            at = T0 + timedelta(minutes=minutes)
            rt.bus.publish(OccupancyChanged(zone="room-201", occupied=occupied, count=count, capacity=8, since=at,
                                            quality=Quality.GOOD, time=at))  # fmt: skip
        await until(lambda: rt.status()["details"]["history"]["written"] >= 5, "the events stored")
        window = urllib.parse.urlencode({"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()})

        status, body = await asyncio.to_thread(http_get, f"{rt.api.url}api/points/{point}/history?{window}")
        assert status == 200, body
        assert [s["value"] for s in body] == [20.0, 21.0, 22.0]
        status, body = await asyncio.to_thread(http_get, f"{rt.api.url}api/zones/room-201/occupancy/hourly?{window}")
        assert status == 200, body
        [hour] = body
        assert (hour["occupied"], hour["peak"]) == (pytest.approx(0.5), 3)

        for path, code, detail in [
            (f"api/points/nowhere.x/history?{window}", 404, "unknown point 'nowhere.x'"),
            (f"api/zones/lobby/occupancy/hourly?{window}", 404, "has no occupancy sensor"),
            (f"api/points/{point}/history?start=2026-11-24T10:00:00", 422, "start needs a UTC offset"),
        ]:
            status, body = await asyncio.to_thread(http_get, rt.api.url + path)
            assert (status, detail in str(body["detail"])) == (code, True), body


async def test_the_api_says_where_history_is_when_it_is_not_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BMHUB_HISTORY_BACKEND", "off")
    monkeypatch.setenv("BMHUB_API_PORT", str(free_port()))
    rt = Runtime(load_site(MINIMAL), Settings(state_dir=tmp_path / "state"), adapters=())
    async with running(rt):
        assert rt.api is not None
        status, body = await asyncio.to_thread(http_get, f"{rt.api.url}api/points/{NUMERIC[0]}/history")
    assert (status, body["detail"]) == (501, "history is off (BMHUB_HISTORY_BACKEND=off)")
