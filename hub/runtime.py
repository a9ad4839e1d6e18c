"""The composition root: builds bus, graph, state and services, runs them under one TaskGroup.

Start order, each stage awaited until its services report ready (or ``start_timeout``):
core → history → adapters → automations → api. Stop is the reverse, stage by stage, within
``stop_timeout`` in total; tasks still running when a stage's share runs out are logged by name.
Nothing takes "the hub" as a god object: each part gets exactly what it uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from automations import OpeningHours
from hub.adapter import ADAPTER_PROTOCOLS, AdapterContext, PriorityArray, PriorityReader, Stage, load_adapters
from hub.api import ApiServer
from hub.bus import Bus
from hub.calendar import Calendar
from hub.clock import Clock, SystemClock
from hub.events import OccupancyChanged
from hub.fileio import write_atomic
from hub.graph import SiteGraph
from hub.history import EmbeddedHistory, InfluxHistory, OccupancyHour, Sample, create_history
from hub.occupancy import OccupancyTracker
from hub.settings import Settings
from hub.site import SiteModel
from hub.state import StateStore
from hub.supervisor import Service, ServiceHealth, supervise

__all__ = ["STAGES", "STATUS_FILE", "Runtime", "StalenessWatch", "StatusWriter"]

STATUS_FILE = "status.json"
"""Snapshot of health, mode, point quality and bus counters in the state directory (``bmhub status``)."""

log = logging.getLogger(__name__)

STAGES: tuple[Stage, ...] = ("core", "history", "adapters", "automations", "api")


@dataclass
class StalenessWatch:
    """Marks points stale on a fixed period (see :meth:`hub.state.StateStore.check_staleness`)."""

    state: StateStore
    period: float
    clock: Clock
    name: str = "staleness"

    async def run(self, ready: Callable[[], None]) -> None:
        ready()
        while True:
            await self.clock.sleep(self.period)
            self.state.check_staleness(self.clock.now())


@dataclass
class StatusWriter:
    """Writes :meth:`Runtime.status` to ``status.json`` every ``period`` seconds, for ``bmhub status``.

    Real seconds, whatever the hub's clock: it is for the person or the monitoring reading the file (on the
    demo's 60x clock a simulated period would write it a dozen times a second)."""

    snapshot: Callable[[], dict[str, Any]]
    path: Path
    period: float
    name: str = "status"

    async def run(self, ready: Callable[[], None]) -> None:
        while True:
            self.write()
            ready()
            await asyncio.sleep(self.period)

    def write(self) -> None:
        write_atomic(self.path, json.dumps(self.snapshot(), ensure_ascii=False, indent=1).encode())


class Runtime:
    def __init__(
        self,
        model: SiteModel,
        settings: Settings,
        *,
        clock: Clock | None = None,
        services: Iterable[tuple[Stage, Service]] = (),
        adapters: Sequence[str] = ADAPTER_PROTOCOLS,
    ) -> None:
        """``adapters``: protocols to bridge (each loaded only if the site uses it; MQTT always).
        ``services``: extra supervised services, e.g. the simulated building of ``bmhub demo``."""
        self.settings = settings
        self.clock = clock or SystemClock()
        self.bus = Bus()
        self.graph = SiteGraph(model)
        self.calendar = Calendar(model.calendar, model.site.timezone)
        self.state = StateStore(
            self.bus, {p.id: p.interval for p in self.graph.points.values()}, settings.state_dir, clock=self.clock
        )
        self.occupancy = OccupancyTracker(self.bus, self.graph)
        self.health: dict[str, ServiceHealth] = {}
        self._running = False
        ctx = AdapterContext(self.bus, self.graph, self.state, self.occupancy, settings, self.clock)
        self._status = StatusWriter(self.status, settings.state_dir / STATUS_FILE, settings.status_interval)
        # History: InfluxDB or the embedded store, as BMHUB_HISTORY_* / BMHUB_INFLUX_* say (docs/influxdb.md).
        self.history: InfluxHistory | EmbeddedHistory | None = create_history(
            self.bus, self.graph, settings.state_dir, clock=self.clock
        )
        history: list[tuple[Stage, Service]] = [("history", self.history)] if self.history is not None else []
        self._services: list[tuple[Stage, Service]] = [
            ("core", StalenessWatch(self.state, settings.staleness_check, self.clock)),
            ("core", self._status),
            *history,
            *load_adapters(ctx, adapters),
            ("automations", OpeningHours(self.state, self.calendar, self.clock)),
            *services,
        ]
        self.api: ApiServer | None = None
        if settings.api:
            self.api = ApiServer(self, settings.api_host, settings.api_port)
            self._services.append(("api", self.api))
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    def request_stop(self) -> None:
        """Begin the staged shutdown (safe to call from a signal handler, more than once)."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        """Run until :meth:`request_stop`; returns after the staged shutdown."""
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        tasks: dict[Stage, list[asyncio.Task[None]]] = {s: [] for s in STAGES}
        async with self.bus:
            self.state.attach()
            self.occupancy.attach()
            async with asyncio.TaskGroup() as tg:
                for stage in STAGES:
                    for svc_stage, svc in self._services:
                        if svc_stage != stage:
                            continue
                        h = self.health[svc.name] = ServiceHealth(svc.name, stage)
                        tasks[stage].append(
                            tg.create_task(supervise(svc, h, clock=self.clock), name=f"{stage}:{svc.name}")
                        )
                    await self._await_ready(stage)
                    if self._stop.is_set():
                        break
                if not self._stop.is_set():
                    self._running = True
                    self._status.write()
                    log.info("bmhub running: %s", self.describe())
                    if on_ready is not None:
                        on_ready()
                await self._stop.wait()
                await self._shutdown(tasks)
                self._running = False
            self.state.detach()
            self.occupancy.detach()
            try:
                async with asyncio.timeout(0.5):
                    await self.bus.drain()
            except TimeoutError:
                busy = [f"{s.name} ({s.queued} queued)" for s in self.bus.stats() if s.queued]
                log.warning("bus subscribers still busy at shutdown: %s", ", ".join(busy) or "handlers running")
        self._status.write()
        log.info("bmhub stopped")

    def add_service(self, stage: Stage, service: Service) -> None:
        """Run one more supervised service (before :meth:`run`), e.g. the demo's simulated building."""
        self._services.append((stage, service))

    @property
    def services(self) -> list[tuple[Stage, Service]]:
        """Every supervised service, with its stage, in start order within a stage."""
        return list(self._services)

    def zone_occupancy(self, zone: str) -> OccupancyChanged | None:
        return self.occupancy.get(zone)

    async def point_history(self, point: str, start: datetime | None, end: datetime | None) -> list[Sample]:
        """A point's readings from the embedded history store (default: the last 24 h). ``LookupError`` when
        history goes elsewhere (InfluxDB: query it there) or is off."""
        if not isinstance(self.history, EmbeddedHistory):
            raise LookupError(self._history_where())
        return await self.history.point_history(point, start, end)

    async def occupancy_per_hour(self, zone: str, start: datetime | None, end: datetime | None) -> list[OccupancyHour]:
        """A zone's occupancy per hour from the embedded history store (default: the last 24 h)."""
        if not isinstance(self.history, EmbeddedHistory):
            raise LookupError(self._history_where())
        return (await self.history.occupancy_per_hour(start, end, [zone])).get(zone, [])

    def _history_where(self) -> str:
        if self.history is None:
            return "history is off (BMHUB_HISTORY_BACKEND=off)"
        return "history goes to InfluxDB; query it there (Grafana, or its query API)"

    async def priority_array(self, point: str) -> PriorityArray:
        """Who holds a commandable point, from the adapter that owns it (BACnet). ``LookupError`` if none does."""
        for _, service in self._services:
            if isinstance(service, PriorityReader) and service.owns(point):
                return await service.priority_array(point)
        raise LookupError(point)

    def status(self) -> dict[str, Any]:
        """Health of every service, the mode, point quality counts and bus counters (JSON-ready)."""
        mode = self.state.mode_record
        return {
            "site": self.graph.site_id,
            "pid": os.getpid(),
            "running": self._running,
            "written": self.clock.now().isoformat(),
            "interval": self.settings.status_interval,
            "mode": mode.to_json(),
            "services": [h.to_json() for h in self.health.values()],
            "points": self.state.counts(),
            "bus": [{**asdict(s), "overflow": s.overflow.value} for s in self.bus.stats()],
            "counts": dict(self.graph.counts()),
            "details": {
                svc.name: details() for _, svc in self._services if callable(details := getattr(svc, "details", None))
            },
        }

    def describe(self) -> str:
        c = self.graph.counts()
        return (
            f"site {self.graph.site_id}: {c['buildings']} buildings, {c['zones']} zones, {c['devices']} devices, "
            f"{c['points']} points; mode {self.state.mode.value}"
        )

    async def _await_ready(self, stage: Stage) -> None:
        assert self._stop is not None
        pending = [h for h in self.health.values() if h.stage == stage and not h.ready.is_set()]
        if not pending:
            return
        stop = self._stop

        async def all_ready() -> None:
            for h in pending:
                await h.ready.wait()

        async def stopped() -> None:
            await stop.wait()

        waiters = [
            asyncio.ensure_future(all_ready()),
            asyncio.ensure_future(stopped()),
        ]
        try:
            await asyncio.wait(waiters, timeout=self.settings.start_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        late = [h.name for h in pending if not h.ready.is_set()]
        if late and not self._stop.is_set():
            log.warning("stage %s: still starting after %.0fs: %s (carrying on)", stage,
                        self.settings.start_timeout, ", ".join(late))  # fmt: skip

    async def _shutdown(self, tasks: dict[Stage, list[asyncio.Task[None]]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.stop_timeout
        order = [s for s in reversed(STAGES) if tasks[s]]
        for i, stage in enumerate(order):
            running = [t for t in tasks[stage] if not t.done()]
            if not running:
                continue
            for t in running:
                t.cancel()
            share = max(0.05, (deadline - loop.time()) / (len(order) - i))
            _, pending = await asyncio.wait(running, timeout=share)
            if pending:
                log.error("stage %s: still running %.1fs after stop: %s", stage, share,
                          ", ".join(sorted(t.get_name() for t in pending)))  # fmt: skip
