"""The InfluxDB history writer: events off the bus → batches → InfluxDB, or the spool while it is away.

Flow (docs/influxdb.md has the picture and the guarantees):

- The bus hands events in batches to :meth:`InfluxHistory.take`, which turns them into lines of line protocol
  (stamped once, here, with their final timestamps) and appends them to ``pending``. That is all the bus
  worker does; no I/O.
- The *flush* task cuts a batch when ``batch_size`` lines are pending or the oldest has waited
  ``flush_interval``, and writes it. While the database is down every batch goes to the spool instead.
- The *spill* task moves batches from memory to the spool whenever more than ``max_pending`` lines wait
  (a slow database holding a write), so memory stays bounded whatever the database does.
- The *replay* task drains the spool, oldest first, one batch at a time, beside the live writes: new data
  flows as soon as the database answers, old data follows. While the database is down it is also the probe,
  retrying the oldest batch with backoff (1 s doubling to ``retry_max``).

Every batch cut from memory stays registered (``_inflight``) until it is written or safely on disk, so a stop
in the middle of a write loses nothing: the final flush writes or spools it again. Writing a point twice is
harmless (same series and timestamp: InfluxDB keeps one), which is what makes this safe.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.bus import Bus, Unsubscribe
from hub.clock import Clock, SystemClock
from hub.events import Alarm, Event
from hub.graph import SiteGraph
from hub.history._common import SUBSCRIBER, drain_subscriber, wait_batch
from hub.history._influx import Backend, WriteError
from hub.history._lineprotocol import split_points
from hub.history._schema import EVENT_TYPES, LineSchema
from hub.history._settings import HistorySettings
from hub.history._spool import Dropped, Spool

__all__ = ["SPOOL_ALARM", "InfluxHistory"]

log = logging.getLogger(__name__)

SPOOL_ALARM = "history:spool-full"
"""Key of the alarm raised when the spool's budget forces dropping the oldest data (cleared once it drains)."""
_ALARM_REPEAT = 10.0  # seconds between updates of an active spool alarm
_SPOOL_INTERVAL = 5.0  # seconds a batch may gather points while the database is down


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _span(lines: Sequence[str]) -> tuple[int, int]:
    """First and last timestamp of a batch (every line ends in its timestamp)."""
    stamps = [int(line.rsplit(" ", 1)[1]) for line in (lines[0], lines[-1])]
    return min(stamps), max(stamps)


class InfluxHistory:
    """``hub.history`` for InfluxDB (v1 or v2 API), with the on-disk spool. A supervised service."""

    name = "history"

    def __init__(
        self,
        bus: Bus,
        graph: SiteGraph,
        backend: Backend,
        settings: HistorySettings,
        spool_dir: Path,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.bus = bus
        self.backend = backend
        self.settings = settings
        self.clock = clock or SystemClock()
        self.schema = LineSchema(graph)
        self.spool = Spool(spool_dir, int(settings.spool_budget))
        self._pending: list[str] = []
        self._first_at: float | None = None
        self._inflight: dict[int, list[str]] = {}  # batches cut from pending, not yet written nor on disk
        self._ids = itertools.count()
        self._io: set[asyncio.Future[Dropped | None]] = set()  # spool writes running in threads
        self._wake = asyncio.Event()
        self._spill = asyncio.Event()
        self._replay = asyncio.Event()
        self._unsubscribe: Unsubscribe | None = None
        self.down = False
        self.last_error: str | None = None
        self._alarm_active = False
        self._alarm_sent = 0.0
        self._last_rejection_log = 0.0
        # counters (points)
        self.written = 0
        self.spooled = 0
        self.replayed = 0
        self.rejected = 0
        self.dropped_budget = 0
        self.dropped_error = 0
        self.writes = 0
        self.write_errors = 0

    # ------------------------------------------------------------------ intake (bus worker; no I/O)
    def take(self, events: Sequence[Event]) -> None:
        """Turn events into lines and queue them for the next batch."""
        lines = self.schema.lines(events)
        if lines:
            self._queue(lines)

    def _queue(self, lines: list[str]) -> None:
        if not self._pending:
            self._first_at = time.monotonic()
            self._wake.set()  # the flush task starts the batch's timer
        self._pending.extend(lines)
        n = len(self._pending)
        if n >= self.settings.batch_size:
            self._wake.set()
        if n >= self.settings.max_pending:
            self._spill.set()

    def _cut(self) -> tuple[int, list[str]]:
        size = self.settings.batch_size
        batch, self._pending = self._pending[:size], self._pending[size:]
        self._first_at = time.monotonic() if self._pending else None
        key = next(self._ids)
        self._inflight[key] = batch
        return key, batch

    # ------------------------------------------------------------------ service
    async def run(self, ready: Callable[[], None]) -> None:
        await self.backend.open()  # a ConfigError here (a bad CA file) fails the service before it takes anything
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe_batch(EVENT_TYPES, self.take, name=SUBSCRIBER,
                                                         maxsize=self.settings.queue)  # fmt: skip
        stopping = False
        try:
            if len(self.spool):
                log.info("history: %d spooled batch(es), %d point(s), to replay to %s", self.spool.batches,
                         self.spool.points, self.backend.endpoint)  # fmt: skip
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._flush_loop(), name="history:flush")
                tg.create_task(self._spill_loop(), name="history:spill")
                tg.create_task(self._replay_loop(), name="history:replay")
                tg.create_task(self._stats_loop(), name="history:stats")
                ready()
        except asyncio.CancelledError:
            stopping = True
            raise
        finally:
            await self._finish(stopping)

    async def _finish(self, stopping: bool) -> None:
        """Write or spool everything in hand; on a stop, first take what the bus still holds for us."""
        try:
            if stopping:
                left = await drain_subscriber(self.bus, SUBSCRIBER, 0.5)
                if left:
                    log.warning("history: %d event(s) still queued on the bus at stop are not recorded", left)
                if self._unsubscribe is not None:
                    self._unsubscribe()
                    self._unsubscribe = None
            if self._io:  # spool writes already running in threads: let them land (they hold their batches)
                await asyncio.wait(self._io, timeout=10)
            lines = [line for batch in self._inflight.values() for line in batch] + self._pending
            self._inflight.clear()
            self._pending = []
            self._first_at = None
            if lines:
                await self._final_flush(lines)
        finally:
            await self.backend.close()

    async def _final_flush(self, lines: list[str]) -> None:
        size = self.settings.batch_size
        batches = [lines[i : i + size] for i in range(0, len(lines), size)]
        written = 0
        if not self.down:
            try:
                async with asyncio.timeout(self.settings.stop_flush):
                    for batch in batches:
                        await self._write(batch)
                        self.written += len(batch)
                        written += 1
            except (WriteError, TimeoutError) as exc:
                log.warning("history: at stop, %s; spooling the rest", exc if str(exc) else "no answer in time")
        rest = batches[written:]
        for batch in rest:
            try:
                dropped = await asyncio.to_thread(self.spool.add, *self._encode(batch))
            except OSError as exc:
                self.dropped_error += len(batch)
                log.error("history: at stop, could not spool %d point(s) to %s: %s", len(batch),
                          self.spool.directory, exc)  # fmt: skip
                continue
            self.spooled += len(batch)
            if dropped is not None:
                self.dropped_budget += dropped.points
                log.error("history: at stop, the spool budget dropped %d point(s) from %s to %s",
                          dropped.points, _iso(dropped.first_ns), _iso(dropped.last_ns))  # fmt: skip
        if rest:
            log.info("history: %d point(s) spooled at stop to %s", sum(map(len, rest)), self.spool.directory)

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _encode(batch: Sequence[str]) -> tuple[bytes, int, int, int]:
        first, last = _span(batch)
        return ("\n".join(batch) + "\n").encode(), len(batch), first, last

    async def _write(self, batch: Sequence[str]) -> None:
        await self._write_body(("\n".join(batch) + "\n").encode())

    async def _write_body(self, body: bytes) -> None:
        """Write one batch; a batch too large for the server (413) is halved until it fits."""
        self.writes += 1
        try:
            await self.backend.write(body)
        except WriteError as exc:
            if exc.status == 413:
                points = split_points(body)
                if len(points) > 1:
                    half = len(points) // 2
                    await self._write_body(b"".join(points[:half]))
                    await self._write_body(b"".join(points[half:]))
                    return
            self.write_errors += 1
            raise

    async def _flush_loop(self) -> None:
        s = self.settings
        while True:
            # While the database is down, batches wait longer and go to disk bigger: fewer, fuller spool files.
            interval = max(s.flush_interval, _SPOOL_INTERVAL) if self.down else s.flush_interval
            due = await wait_batch(self._wake, len(self._pending), s.batch_size, self._first_at, interval)
            if not due or not self._pending:
                continue
            key, batch = self._cut()
            if self.down:
                await self._to_spool(key, batch)
                continue
            try:
                await self._write(batch)
            except WriteError as exc:
                if exc.retry:
                    self._went_down(exc)
                    await self._to_spool(key, batch)
                else:
                    self.written += len(batch) - self._refused(exc, len(batch))  # a partial write lands the rest
                    del self._inflight[key]
                continue
            del self._inflight[key]
            self.written += len(batch)

    async def _spill_loop(self) -> None:
        while True:
            await self._spill.wait()
            self._spill.clear()
            while len(self._pending) >= self.settings.max_pending:
                key, batch = self._cut()
                await self._to_spool(key, batch)

    async def _to_spool(self, key: int, batch: list[str]) -> None:
        """Put one batch on disk (in a thread). It stays in ``_inflight`` until the file is there."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self.spool.add, *self._encode(batch))
        self._io.add(future)

        def landed(f: asyncio.Future[Dropped | None]) -> None:
            # All the accounting here, at once: counters never disagree, whoever awaits or not.
            self._io.discard(f)
            if not f.cancelled() and f.exception() is None:
                self._inflight.pop(key, None)
                self.spooled += len(batch)
                dropped = f.result()
                if dropped is not None:
                    self._budget_dropped(dropped)

        future.add_done_callback(landed)
        try:
            await asyncio.shield(future)
        except OSError as exc:
            self._inflight.pop(key, None)
            self.dropped_error += len(batch)
            first, last = _span(batch)
            log.error("history: could not spool a batch of %d point(s) to %s: %s", len(batch),
                      self.spool.directory, exc)  # fmt: skip
            self._alarm(f"history could not spool {len(batch)} point(s) to {self.spool.directory}: {exc}")
            self._queue([self.schema.gap(len(batch), first, last, "spool-error")])
            return
        self._replay.set()

    def _budget_dropped(self, dropped: Dropped) -> None:
        self.dropped_budget += dropped.points
        budget = self.spool.budget
        message = (f"history spool {self.spool.directory} is full ({budget / 2**20:.0f} MiB): dropped the oldest "
                   f"{dropped.points} point(s), {_iso(dropped.first_ns)} to {_iso(dropped.last_ns)}; "
                   f"{self.dropped_budget} dropped since start. Bring InfluxDB back or raise "
                   f"BMHUB_HISTORY_SPOOL_BUDGET")  # fmt: skip
        if not self._alarm_active:
            log.error("%s", message)
        self._alarm(message)

    def _alarm(self, message: str) -> None:
        now = time.monotonic()
        if self._alarm_active and now - self._alarm_sent < _ALARM_REPEAT:
            return
        self._alarm_active = True
        self._alarm_sent = now
        self.bus.publish(Alarm(key=SPOOL_ALARM, source=SUBSCRIBER, severity="critical", message=message,
                               time=self.clock.now()))  # fmt: skip

    def _clear_alarm(self) -> None:
        if self._alarm_active:
            self._alarm_active = False
            message = f"history spool drained; {self.dropped_budget + self.dropped_error} point(s) lost since start"
            log.info("%s", message)
            self.bus.publish(Alarm(key=SPOOL_ALARM, source=SUBSCRIBER, severity="critical", message=message,
                                   active=False, time=self.clock.now()))  # fmt: skip

    def _went_down(self, exc: WriteError) -> None:
        self.last_error = str(exc)
        if not self.down:
            self.down = True
            level = logging.ERROR if exc.status in (401, 403, 404) else logging.WARNING
            log.log(level, "history: %s; spooling to %s until it answers", exc, self.spool.directory)

    def _came_back(self) -> None:
        if self.down:
            self.down = False
            self._wake.set()  # batches gather for the spool more slowly: back to the live interval
            log.info("history: InfluxDB %s answers again; replaying %d spooled batch(es), %d point(s)",
                     self.backend.endpoint, self.spool.batches, self.spool.points)  # fmt: skip

    def _refused(self, exc: WriteError, points: int) -> int:
        """Count the points the database refused for good; returns how many."""
        n = min(exc.dropped, points) if exc.dropped is not None else points
        self.rejected += n
        self.last_error = str(exc)
        now = time.monotonic()
        if now - self._last_rejection_log >= 10.0:
            self._last_rejection_log = now
            log.error("history: %s; %d point(s) refused for good (%d since start)", exc, n, self.rejected)
        return n

    async def _replay_loop(self) -> None:
        delay = 0.0
        while True:
            if self.down and (len(self.spool) or self.spool.gap is not None):
                # Probe with /ping, holding no batch: the oldest stays droppable should the budget need room.
                delay = min(max(1.0, delay * 2), self.settings.retry_max)
                await asyncio.sleep(delay)
                try:
                    await self.backend.ping()
                except WriteError as exc:
                    self.last_error = str(exc)
                    continue
            entry = self.spool.oldest()
            gap = self.spool.gap if entry is None else None  # recorded once the data before it is in
            if entry is None and gap is None:
                if not self._inflight:  # nothing spooled, nothing on its way: the next live write is the probe
                    self.down = False
                self._clear_alarm()
                await self._replay.wait()
                self._replay.clear()
                continue
            try:
                if entry is not None:
                    body, points = await asyncio.to_thread(self.spool.read, entry), entry.points
                else:
                    assert gap is not None
                    line = self.schema.gap(gap.points, gap.first_ns, gap.last_ns, "spool-full")
                    body, points = (line + "\n").encode(), 0
                try:
                    await self._write_body(body)
                except WriteError as exc:
                    if exc.retry:
                        self._went_down(exc)
                        continue
                    self.replayed += points - min(points, self._refused(exc, points or 1))
                else:
                    self.replayed += points
                    delay = 0.0
                    self._came_back()
            finally:
                if entry is not None:
                    self.spool.release(entry)
            if entry is not None:
                await asyncio.to_thread(self.spool.remove, entry)
            elif gap is not None:
                await asyncio.to_thread(self.spool.close_gap, gap)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)
            line = self.schema.stats(self.counters(), self.clock.now())
            if line is not None:
                self._queue([line])

    # ------------------------------------------------------------------ status
    def counters(self) -> dict[str, int]:
        return {
            "written": self.written, "spooled": self.spooled, "replayed": self.replayed,
            "rejected": self.rejected, "dropped_budget": self.dropped_budget, "dropped_error": self.dropped_error,
            "dropped_nonfinite": self.schema.nonfinite, "unknown": self.schema.unknown,
            "unencodable_tags": self.schema.unencodable,
            "spool_points": self.spool.points, "spool_bytes": self.spool.bytes,
        }  # fmt: skip

    def details(self) -> dict[str, Any]:
        """Counters for ``bmhub status`` (points unless named otherwise)."""
        state = "spooling" if self.down else ("replaying" if len(self.spool) else "writing")
        return {
            "backend": "influxdb",
            "endpoint": self.backend.endpoint,
            "state": state,
            **self.counters(),
            "pending": len(self._pending) + sum(map(len, self._inflight.values())),
            "writes": self.writes,
            "write_errors": self.write_errors,
            "spool": {
                "dir": str(self.spool.directory),
                "batches": self.spool.batches,
                "budget_bytes": self.spool.budget,
            },
            "last_error": self.last_error,
        }
