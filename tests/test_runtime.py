"""The runtime: ordered start, staged stop, health, and the mode it resumes in."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.clock import ScaledClock
from hub.events import Mode
from hub.runtime import STATUS_FILE, Runtime
from hub.settings import Settings
from hub.site import load_site
from hub.state import StateStore
from hub.supervisor import Health
from tests.conftest import FIXTURES

MINIMAL = FIXTURES / "site" / "minimal.yaml"


class Recorder:
    def __init__(self, name: str, log: list[str], *, stubborn: float = 0.0) -> None:
        self.name = name
        self.log = log
        self.stubborn = stubborn

    async def run(self, ready: Callable[[], None]) -> None:
        self.log.append(f"start {self.name}")
        ready()
        try:
            await asyncio.Event().wait()
        finally:
            if self.stubborn:
                # Cleanup that takes a while (a final flush); bounded, as every awaiting cleanup must be.
                await asyncio.shield(asyncio.sleep(self.stubborn))
            self.log.append(f"stop {self.name}")


def settings(tmp_path: Path, **kw: float) -> Settings:
    return Settings(state_dir=tmp_path, api=False, **kw)  # type: ignore[arg-type]


async def test_starts_in_stage_order_and_stops_in_reverse(tmp_path: Path) -> None:
    log: list[str] = []
    rt = Runtime(
        load_site(MINIMAL),
        settings(tmp_path),
        adapters=(),
        services=[
            ("api", Recorder("api", log)),
            ("adapters", Recorder("mqtt", log)),
            ("history", Recorder("influx", log)),
            ("automations", Recorder("energy", log)),
        ],
    )
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 5)
    except TimeoutError:
        task.cancel()
        raise
    assert log == ["start influx", "start mqtt", "start energy", "start api"]
    assert {h.name: h.state for h in rt.health.values()} == {
        "staleness": Health.RUNNING,
        "status": Health.RUNNING, "history": Health.RUNNING, "opening-hours": Health.RUNNING, "influx": Health.RUNNING,
        "mqtt": Health.RUNNING, "energy": Health.RUNNING, "api": Health.RUNNING,
    }  # fmt: skip
    assert rt.state.mode in (Mode.NORMAL, Mode.AFTER_HOURS)  # the calendar has decided
    rt.request_stop()
    await asyncio.wait_for(task, 5)
    assert log[4:] == ["stop api", "stop energy", "stop mqtt", "stop influx"]
    assert all(h.state is Health.STOPPED for h in rt.health.values())


async def test_a_slow_stage_is_named_and_the_stop_stays_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    rt = Runtime(adapters=(), model=load_site(MINIMAL), settings=settings(tmp_path, stop_timeout=0.5),
                 services=[("adapters", Recorder("bacnet", log, stubborn=0.6))])  # fmt: skip
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    rt.request_stop()
    await asyncio.wait_for(task, 5)
    assert "stage adapters: still running" in caplog.text
    assert "adapters:bacnet" in caplog.text
    assert log[-1] == "stop bacnet"  # its cleanup still completed before run() returned


async def test_resumes_in_the_saved_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    from hub.bus import Bus

    StateStore(Bus(), {}, tmp_path).set_mode(Mode.EMERGENCY, "EEW drill follow-up")
    rt = Runtime(adapters=(), model=load_site(MINIMAL), settings=settings(tmp_path))
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    assert rt.state.mode is Mode.EMERGENCY  # the calendar automation does not override it
    rt.request_stop()
    await asyncio.wait_for(task, 5)
    assert "restored site mode emergency" in caplog.text


async def test_stop_requested_before_start_returns_promptly(tmp_path: Path) -> None:
    rt = Runtime(adapters=(), model=load_site(MINIMAL), settings=settings(tmp_path))
    rt.request_stop()
    await asyncio.wait_for(rt.run(), 5)
    assert all(h.state is Health.STOPPED for h in rt.health.values())


async def test_status_snapshot_shows_health_mode_points_and_bus(tmp_path: Path) -> None:
    rt = Runtime(
        adapters=(),
        model=load_site(MINIMAL),
        settings=settings(tmp_path),
        services=[("adapters", Recorder("mqtt", []))],
    )
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    live = json.loads((tmp_path / STATUS_FILE).read_text(encoding="utf-8"))
    rt.request_stop()
    await asyncio.wait_for(task, 5)
    final = json.loads((tmp_path / STATUS_FILE).read_text(encoding="utf-8"))

    assert live["running"] is True
    assert live["site"] == "test-site"
    assert {s["name"]: s["state"] for s in live["services"]}["mqtt"] == "running"
    assert live["points"]["unknown"] == 16  # nothing has reported yet
    assert {b["name"] for b in live["bus"]} == {"state", "occupancy", "history"}
    assert live["mode"]["mode"] in ("normal", "after-hours")
    assert final["running"] is False
    assert {s["state"] for s in final["services"]} == {"stopped"}


async def test_status_is_written_on_real_time_even_on_a_fast_clock(tmp_path: Path) -> None:
    """The demo's clock runs 60x; status.json is for people and monitoring, so its period is real seconds. On a
    1000x clock a period counted in hub time would mean some 2,000 writes a second."""
    clock = ScaledClock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC), 1000)
    rt = Runtime(adapters=(), model=load_site(MINIMAL), settings=settings(tmp_path, status_interval=0.5), clock=clock)
    writes = 0
    snapshot = rt._status.snapshot

    def counting() -> dict[str, object]:
        nonlocal writes
        writes += 1
        return snapshot()

    rt._status.snapshot = counting
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    await asyncio.sleep(1.0)  # 1,000 s of hub time
    rt.request_stop()
    await asyncio.wait_for(task, 5)
    assert 2 <= writes <= 6  # at start, every 0.5 real s, and once after the stop
