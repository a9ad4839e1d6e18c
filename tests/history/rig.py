"""Running a history service against a bus for a block, and the readings the tests feed it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.bus import Bus
from hub.events import Event, Reading
from hub.graph import SiteGraph
from hub.history import EmbeddedHistory, HistorySettings, InfluxHistory, InfluxSettings, InfluxV1, InfluxV2
from hub.site import load_site
from hub.supervisor import ServiceHealth, supervise
from tests.conftest import FIXTURES
from tests.helpers import until

MINIMAL = FIXTURES / "site" / "minimal.yaml"
GRAPH = SiteGraph(load_site(MINIMAL))
NUMERIC = sorted(
    p.id for p in GRAPH.points.values() if p.kind.value in ("temperature", "setpoint", "power", "energy", "current")
)
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def fast(**kw: Any) -> HistorySettings:
    """Settings for tests: small batches, quick flushes, quick retries (a bound on waiting, not a claim)."""
    return HistorySettings(**{"batch_size": 200, "flush_interval": 0.05, "retry_max": 0.3, "stop_flush": 2.0,
                              "stats_interval": 3600.0, **kw})  # fmt: skip


def v1(url: str, **kw: Any) -> InfluxV1:
    return InfluxV1(InfluxSettings(url=url, **{"timeout": 1.0, **kw}))


def v2(url: str, **kw: Any) -> InfluxV2:
    return InfluxV2(InfluxSettings(url=url, api="v2", **{"timeout": 2.0, **kw}))


def readings(n: int, start: int = 0, t0: datetime = T0, step: timedelta = timedelta(milliseconds=1)
             ) -> Iterator[Reading]:  # fmt: skip
    """Reading number i: point NUMERIC[i % len], value i, at t0 + i * step (so each point's values rise in order)."""
    for i in range(start, start + n):
        yield Reading(point=NUMERIC[i % len(NUMERIC)], value=float(i), time=t0 + i * step, source="test")


class Rig:
    def __init__(self, bus: Bus, service: InfluxHistory | EmbeddedHistory, health: ServiceHealth) -> None:
        self.bus = bus
        self.service = service
        self.health = health
        self.events: list[Event] = []

    def publish(self, events: Iterator[Event] | list[Event]) -> int:
        n = 0
        for ev in events:
            self.bus.publish(ev)
            n += 1
        return n


@contextlib.asynccontextmanager
async def running(service_of: Any, *, record: tuple[type[Event], ...] = ()) -> AsyncIterator[Rig]:
    """A bus and the service ``service_of(bus)`` makes, supervised, for the block; stopped (cancelled) on exit,
    which is a hub's stop: the service takes what the bus holds for it, then writes or spools it."""
    async with Bus() as bus:
        service = service_of(bus)
        health = ServiceHealth(service.name, "history")
        rig = Rig(bus, service, health)
        if record:
            bus.subscribe(record, rig.events.append, name="recorder")
        task = asyncio.create_task(supervise(service, health), name="history-under-test")
        try:
            await until(health.ready.is_set, "the history service to start")
            yield rig
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 15)


def influx_service(url: str, spool: Path, settings: HistorySettings | None = None, **kw: Any) -> Any:
    return lambda bus: InfluxHistory(bus, GRAPH, v1(url, **kw), settings or fast(), spool)
