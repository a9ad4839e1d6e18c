"""The hub's HTTP API (FastAPI): live zone occupancy for the booking app, health, and a status page.

Read-only so far and bound to 127.0.0.1 by default; OpenAPI is served at ``/openapi.json`` and ``/docs``.
The app gets what it serves through its lifespan state (no module globals, starlette ``docs/lifespan.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol, TypedDict

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from hub.adapter import PriorityArray
from hub.errors import AdapterNotReady, DeviceError
from hub.events import OccupancyChanged, Value
from hub.graph import SiteGraph
from hub.history import OccupancyHour, Sample
from hub.netutil import bind_tcp

__all__ = ["ApiServer", "HubView", "PointPriorities", "ZoneOccupancy", "create_app"]

log = logging.getLogger(__name__)


class HubView(Protocol):
    """What the API reads from the running hub."""

    graph: SiteGraph

    def status(self) -> dict[str, Any]: ...

    def zone_occupancy(self, zone: str) -> OccupancyChanged | None: ...

    async def priority_array(self, point: str) -> PriorityArray: ...

    async def point_history(self, point: str, start: datetime | None, end: datetime | None) -> list[Sample]: ...

    async def occupancy_per_hour(
        self, zone: str, start: datetime | None, end: datetime | None
    ) -> list[OccupancyHour]: ...


class ZoneOccupancy(BaseModel):
    zone: str
    name: str
    building: str
    floor: str
    bookable: bool
    capacity: int | None
    occupied: bool | None
    count: int | None
    since: datetime | None
    quality: str


class PrioritySlotOut(BaseModel):
    priority: int
    value: Value
    holder: str | None  # the hub's command that wrote it ("automation:energy (lunch break)"); null: another client
    command_id: str | None
    since: datetime | None


class PointPriorities(BaseModel):
    point: str
    present_value: Value
    relinquish_default: Value
    active_priority: int | None  # null: no priority is set, the point is at its relinquish default
    slots: list[PrioritySlotOut]  # the non-empty priorities, highest (1) first
    status: str | None


class SampleOut(BaseModel):
    time: datetime
    value: Value
    quality: str


class OccupancyHourOut(BaseModel):
    hour: datetime  # start of the hour, in the site's time zone
    occupied: float | None  # share of the hour the zone was occupied (of the time it was known); null: unknown
    peak: int | None  # most people counted
    known_seconds: float


class _State(TypedDict):
    hub: HubView


def create_app(hub: HubView) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[_State]:
        yield {"hub": hub}

    app = FastAPI(title="bmhub", version="0.1.0", lifespan=lifespan,
                  description="Live state of the building for apps: zone occupancy and its history, "
                              "who holds a point, health.")  # fmt: skip

    def view(request: Request) -> HubView:
        v: HubView = request.state.hub
        return v

    def occupancy(h: HubView, zone: str) -> ZoneOccupancy:
        z = h.graph.zones[zone]
        occ = h.zone_occupancy(zone)
        return ZoneOccupancy(
            zone=zone, name=z.spec.name, building=z.building, floor=z.floor, bookable=z.bookable,
            capacity=z.spec.capacity, occupied=occ.occupied if occ else None, count=occ.count if occ else None,
            since=occ.since if occ else None, quality=occ.quality.value if occ else "unknown",
        )  # fmt: skip

    @app.get("/api/zones/occupancy", response_model=list[ZoneOccupancy], tags=["occupancy"])
    def zones_occupancy(request: Request, bookable: bool | None = None) -> list[ZoneOccupancy]:
        """Occupancy of every zone with occupancy sensors (``bookable=true``: rooms the booking app offers)."""
        h = view(request)
        zones = [z for z in h.graph.zones.values() if bookable is None or z.bookable == bookable]
        return [occupancy(h, z.id) for z in zones if _has_sensor(h.graph, z.id)]

    @app.get("/api/zones/{zone}/occupancy", response_model=ZoneOccupancy, tags=["occupancy"])
    def zone_occupancy(request: Request, zone: str) -> ZoneOccupancy:
        h = view(request)
        if zone not in h.graph.zones:
            raise HTTPException(404, f"unknown zone {zone!r}")
        if not _has_sensor(h.graph, zone):
            raise HTTPException(404, f"zone {zone!r} has no occupancy sensor")
        return occupancy(h, zone)

    @app.get("/api/points/{point}/priority", response_model=PointPriorities, tags=["points"],
             responses={404: {"description": "unknown point, or one without a priority array"},
                        502: {"description": "the device refused the read"},
                        503: {"description": "the device does not answer"}})  # fmt: skip
    async def point_priority(request: Request, point: str) -> PointPriorities:
        """Who holds a commandable (BACnet) point: its 16 priorities, read from the device now, with the hub's own
        commands named; the highest non-empty priority drives the point."""
        h = view(request)
        if point not in h.graph.points:
            raise HTTPException(404, f"unknown point {point!r}")
        try:
            array = await h.priority_array(point)
        except LookupError:
            raise HTTPException(404, f"point {point!r} has no priority array (not a BACnet point)") from None
        except DeviceError as exc:
            raise HTTPException(502, str(exc)) from None
        except AdapterNotReady as exc:
            raise HTTPException(503, str(exc)) from None
        data = asdict(array)
        return PointPriorities(**data)

    def _window(start: datetime | None, end: datetime | None) -> None:
        for name, t in (("start", start), ("end", end)):
            if t is not None and t.tzinfo is None:
                raise HTTPException(422, f"{name} needs a UTC offset, e.g. 2026-11-25T09:00:00+09:00")
        if start is not None and end is not None and start >= end:
            raise HTTPException(422, "start must be before end")

    @app.get("/api/points/{point}/history", response_model=list[SampleOut], tags=["history"],
             responses={404: {"description": "unknown point"},
                        501: {"description": "history is not in the embedded store (InfluxDB, or off)"}})  # fmt: skip
    async def point_history(
        request: Request, point: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[SampleOut]:
        """A point's readings from the embedded history store, oldest first (default: the last 24 h)."""
        h = view(request)
        if point not in h.graph.points:
            raise HTTPException(404, f"unknown point {point!r}")
        _window(start, end)
        try:
            samples = await h.point_history(point, start, end)
        except LookupError as exc:
            raise HTTPException(501, str(exc)) from None
        return [SampleOut(time=x.time, value=x.value, quality=x.quality) for x in samples]

    @app.get("/api/zones/{zone}/occupancy/hourly", response_model=list[OccupancyHourOut], tags=["occupancy"],
             responses={404: {"description": "unknown zone, or one without an occupancy sensor"},
                        501: {"description": "history is not in the embedded store (InfluxDB, or off)"}})  # fmt: skip
    async def zone_occupancy_hourly(
        request: Request, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[OccupancyHourOut]:
        """How a room was used, hour by hour (default: the last 24 h): for booking utilisation reports."""
        h = view(request)
        if zone not in h.graph.zones:
            raise HTTPException(404, f"unknown zone {zone!r}")
        if not _has_sensor(h.graph, zone):
            raise HTTPException(404, f"zone {zone!r} has no occupancy sensor")
        _window(start, end)
        try:
            hours = await h.occupancy_per_hour(zone, start, end)
        except LookupError as exc:
            raise HTTPException(501, str(exc)) from None
        return [OccupancyHourOut(hour=x.hour, occupied=x.occupied, peak=x.peak, known_seconds=x.known_seconds)
                for x in hours]  # fmt: skip

    @app.get("/api/status", tags=["health"])
    def status(request: Request) -> dict[str, Any]:
        """Health of every service, the site mode, point quality counts, bus and adapter counters."""
        return view(request).status()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _PAGE

    return app


def _has_sensor(graph: SiteGraph, zone: str) -> bool:
    return any(d.kind.value == "occupancy-sensor" for d in graph.devices_in(zone))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the hub owns SIGINT/SIGTERM and stops the API in its own stage


class ApiServer:
    name = "api"

    def __init__(self, hub: HubView, host: str = "127.0.0.1", port: int = 8080) -> None:
        self._app = create_app(hub)
        self.host = host
        self.wanted = port
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def run(self, ready: Callable[[], None]) -> None:
        sock = bind_tcp(self.host, self.wanted, "the HTTP API")
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", lifespan="on", access_log=False)
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="api:uvicorn")
        try:
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag, no event
                await asyncio.sleep(0.01)
            if task.done():
                await task
            log.info("HTTP API on %s (OpenAPI at %sdocs)", self.url, self.url)
            ready()
            await asyncio.shield(task)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await task
            if not task.done():
                task.cancel()
            sock.close()


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bmhub</title>
<style>
 body{font:14px system-ui,sans-serif;margin:1.5rem;color:#222} h1{font-size:1.3rem;margin:0 0 .3rem}
 table{border-collapse:collapse;margin:.6rem 0} td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}
 .occ{color:#b45309;font-weight:600} .free{color:#15803d} .bad{color:#b91c1c} .dim{color:#777}
 .cols{display:flex;gap:2.5rem;flex-wrap:wrap}
</style></head><body>
<h1>bmhub <span id="site" class="dim"></span></h1>
<div id="mode"></div>
<div class="cols">
<div><h2>Bookable rooms</h2><table id="rooms"><thead><tr><th>room</th><th>floor</th><th>now</th>
<th>people</th><th>capacity</th><th>since</th></tr></thead><tbody></tbody></table></div>
<div><h2>Services</h2><table id="services"><thead><tr><th>service</th><th>state</th><th>restarts</th>
<th>last error</th></tr></thead><tbody></tbody></table><div id="points" class="dim"></div></div>
</div>
<p class="dim">Refreshes every 2 s. JSON: <a href="/api/zones/occupancy?bookable=true">/api/zones/occupancy</a>,
<a href="/api/status">/api/status</a>, <a href="/docs">OpenAPI</a>.</p>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const t = s => s ? new Date(s).toLocaleTimeString() : "";
async function refresh() {
  try {
    const [rooms, st] = await Promise.all([
      fetch("/api/zones/occupancy?bookable=true").then(r => r.json()), fetch("/api/status").then(r => r.json())]);
    document.getElementById("site").textContent = st.site;
    document.getElementById("mode").innerHTML = "mode <b>" + esc(st.mode.mode) + "</b> <span class=dim>" +
      esc(st.mode.reason) + "</span>";
    document.querySelector("#rooms tbody").innerHTML = rooms.map(r => {
      const now = r.quality !== "good" ? `<span class=bad>${esc(r.quality)}</span>` :
        r.occupied ? "<span class=occ>occupied</span>" : "<span class=free>free</span>";
      return `<tr><td>${esc(r.name)}</td><td>${esc(r.floor)}</td><td>${now}</td><td>${esc(r.count)}</td>` +
        `<td>${esc(r.capacity)}</td><td class=dim>${t(r.since)}</td></tr>`}).join("");
    document.querySelector("#services tbody").innerHTML = st.services.map(s =>
      `<tr><td>${esc(s.name)}</td><td class=${s.state === "running" ? "free" : "bad"}>${esc(s.state)}</td>` +
      `<td>${s.restarts}</td><td class=dim>${esc(s.last_error)}</td></tr>`).join("");
    document.getElementById("points").textContent = "points: " +
      Object.entries(st.points).map(([k, v]) => k + " " + v).join(", ");
  } catch (e) { document.getElementById("mode").innerHTML = "<span class=bad>hub not reachable</span>"; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
