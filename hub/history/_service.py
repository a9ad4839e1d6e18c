"""The embedded history service, and :func:`create_history`, which picks InfluxDB or the embedded store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.bus import Bus, Unsubscribe
from hub.clock import Clock, SystemClock
from hub.errors import AdapterNotReady, ConfigError, Problem
from hub.events import Event
from hub.graph import SiteGraph
from hub.history._common import SUBSCRIBER, drain_subscriber, wait_batch
from hub.history._embedded import EmbeddedStore, OccupancyHour, Rows, Sample, to_rows
from hub.history._influx import make_backend
from hub.history._schema import EVENT_TYPES
from hub.history._settings import HistorySettings, InfluxSettings
from hub.history._writer import InfluxHistory

__all__ = ["EMBEDDED_FILE", "SPOOL_DIR", "EmbeddedHistory", "create_history"]

log = logging.getLogger(__name__)

EMBEDDED_FILE = "history.sqlite3"
SPOOL_DIR = "history-spool"
_PRUNE_EVERY = 3600.0  # seconds between retention passes


class EmbeddedHistory:
    """``hub.history`` into the embedded SQLite store, and the queries the hub answers from it."""

    name = "history"

    def __init__(
        self,
        bus: Bus,
        graph: SiteGraph,
        store: EmbeddedStore,
        settings: HistorySettings,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.bus = bus
        self.graph = graph
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self._rows = Rows()
        self._first_at: float | None = None
        self._wake = asyncio.Event()
        self._unsubscribe: Unsubscribe | None = None
        self.written = 0
        self.nonfinite = 0
        self.unknown = 0
        self.dropped = 0
        self.pruned = 0
        self.last_error: str | None = None

    def take(self, events: Sequence[Event]) -> None:
        if not self._rows.count:
            self._first_at = time.monotonic()
            self._wake.set()  # the flush task starts the batch's timer
        nonfinite, unknown = to_rows(events, self._rows, self.graph.points)
        self.nonfinite += nonfinite
        self.unknown += unknown
        if self._rows.count >= self.settings.batch_size:
            self._wake.set()

    async def run(self, ready: Callable[[], None]) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe_batch(EVENT_TYPES, self.take, name=SUBSCRIBER,
                                                         maxsize=self.settings.queue)  # fmt: skip
        stopping = False
        try:
            try:
                await asyncio.to_thread(self.store.open)
            except (sqlite3.Error, OSError) as exc:
                self.last_error = f"{self.store.path}: {exc}"
                raise AdapterNotReady(f"embedded history store {self.store.path}: {exc}") from exc
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._flush_loop(), name="history:flush")
                tg.create_task(self._prune_loop(), name="history:retention")
                ready()
        except asyncio.CancelledError:
            stopping = True
            raise
        finally:
            try:
                if stopping:
                    await drain_subscriber(self.bus, SUBSCRIBER, 0.5)
                    if self._unsubscribe is not None:
                        self._unsubscribe()
                        self._unsubscribe = None
                if self._rows.count:
                    try:
                        await self._insert()
                    except (sqlite3.Error, OSError):
                        if stopping:  # a stop must not turn into a crash: say what is lost, and go
                            self.dropped += self._rows.count
                            log.error("history: %d row(s) not stored at stop: %s", self._rows.count, self.last_error)
                            self._rows = Rows()
            finally:
                if stopping:
                    await asyncio.to_thread(self.store.close)

    async def _insert(self) -> None:
        rows, self._rows = self._rows, Rows()
        self._first_at = None
        try:
            self.written += await asyncio.to_thread(self.store.insert, rows)
            self.last_error = None
        except (sqlite3.Error, OSError) as exc:
            self.last_error = f"{self.store.path}: {exc}"
            # Keep them for the next try, newest dropped beyond the memory bound (the file is the problem).
            if rows.count + self._rows.count > self.settings.max_pending:
                self.dropped += rows.count
                log.error("history: embedded store %s: %s; dropped %d row(s)", self.store.path, exc, rows.count)
            else:
                log.warning("history: embedded store %s: %s (retrying)", self.store.path, exc)
                for table, batch in self._rows.tables.items():
                    rows.tables[table].extend(batch)
                rows.count += self._rows.count
                self._rows = rows
                self._first_at = time.monotonic()
            raise

    async def _flush_loop(self) -> None:
        s = self.settings
        delay = 0.0
        while True:
            due = await wait_batch(self._wake, self._rows.count, s.batch_size, self._first_at, s.flush_interval)
            if not due or not self._rows.count:
                continue
            try:
                await self._insert()
                delay = 0.0
            except (sqlite3.Error, OSError):
                delay = min(max(1.0, delay * 2), s.retry_max)
                await asyncio.sleep(delay)

    async def _prune_loop(self) -> None:
        while True:
            before = self.clock.now() - timedelta(days=self.settings.retention_days)
            try:
                deleted = await asyncio.to_thread(self.store.prune, before)
            except sqlite3.Error as exc:
                log.warning("history: retention pass on %s failed: %s", self.store.path, exc)
            else:
                self.pruned += deleted
                if deleted:
                    log.info("history: retention removed %d row(s) older than %s", deleted, before.isoformat())
            await asyncio.sleep(_PRUNE_EVERY)

    # ------------------------------------------------------------------ queries
    async def point_history(
        self, point: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[Sample]:
        """Readings of ``point`` between ``start`` (default: 24 h before ``end``) and ``end`` (default: now)."""
        end = end or self.clock.now()
        start = start or end - timedelta(hours=24)
        return await asyncio.to_thread(self.store.point_history, point, start, end)

    async def occupancy_per_hour(
        self, start: datetime | None = None, end: datetime | None = None, zones: Sequence[str] | None = None
    ) -> dict[str, list[OccupancyHour]]:
        """Occupancy per zone per hour (default: the last 24 h; every zone that reported)."""
        end = end or self.clock.now()
        start = start or end - timedelta(hours=24)
        return await asyncio.to_thread(self.store.occupancy_per_hour, start, end, zones)

    def details(self) -> dict[str, Any]:
        try:
            size = sum(p.stat().st_size for p in self.store.path.parent.glob(self.store.path.name + "*"))
        except OSError:
            size = 0
        return {
            "backend": "embedded", "path": str(self.store.path), "written": self.written,
            "pending": self._rows.count, "dropped_nonfinite": self.nonfinite, "unknown": self.unknown,
            "dropped_error": self.dropped, "pruned": self.pruned, "bytes": size,
            "retention_days": self.settings.retention_days, "last_error": self.last_error,
        }  # fmt: skip


def create_history(
    bus: Bus,
    graph: SiteGraph,
    state_dir: Path,
    *,
    clock: Clock | None = None,
    settings: HistorySettings | None = None,
    influx: InfluxSettings | None = None,
) -> InfluxHistory | EmbeddedHistory | None:
    """The history service the settings ask for (environment ``BMHUB_HISTORY_*``, ``BMHUB_INFLUX_*`` by
    default): InfluxDB if a URL is set (or ``backend=influxdb``), else the embedded store; None if ``off``."""
    settings = settings or HistorySettings()
    influx = influx or InfluxSettings()
    backend = settings.backend
    if backend == "off":
        return None
    if backend == "influxdb" or (backend == "auto" and influx.url):
        if not influx.url:
            raise ConfigError([Problem("environment", None, "BMHUB_INFLUX_URL", "required with backend influxdb")])
        spool = settings.spool_dir or state_dir / SPOOL_DIR
        return InfluxHistory(bus, graph, make_backend(influx), settings, spool, clock=clock)
    store = EmbeddedStore(settings.embedded_path or state_dir / EMBEDDED_FILE, graph.model.site.timezone)
    return EmbeddedHistory(bus, graph, store, settings, clock=clock)
