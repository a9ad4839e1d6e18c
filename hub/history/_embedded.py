"""The embedded store: history in SQLite under the state directory, for the quick start and small sites.

No server to run: with no InfluxDB configured, the hub writes the same events here (one table per kind of
event, WAL mode, batched inserts in a thread) and can answer from it: a point's last 24 hours, occupancy per
room per hour (the booking utilisation). Rows older than ``retention_days`` are deleted every hour and the
freed pages returned to the file system, so the file stays bounded.

=================  =============================================================================================
table              columns
=================  =============================================================================================
``reading``        time_ns, point, value (number, 1/0 for booleans, text, or NULL), quality
``state_change``   time_ns, point, value, quality, previous_quality
``occupancy``      time_ns, zone, occupied (1/0/NULL), count, capacity, quality
``alarm``          time_ns, key, source, severity, active (1/0), message
``access``         time_ns, door, zone, card, granted (1/0), reason
``mode``           time_ns, mode, previous, reason
=================  =============================================================================================

Times are nanoseconds since the Unix epoch (UTC), as in InfluxDB. Every method here blocks: the service calls
them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.events import (
    AccessDecision,
    Alarm,
    Event,
    ModeChanged,
    OccupancyChanged,
    Reading,
    StateChanged,
    Value,
)
from hub.history._lineprotocol import time_ns

__all__ = ["EmbeddedStore", "OccupancyHour", "Rows", "Sample"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reading (time_ns INTEGER NOT NULL, point TEXT NOT NULL, value, quality TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reading_point_time ON reading (point, time_ns);
CREATE INDEX IF NOT EXISTS reading_time ON reading (time_ns);
CREATE TABLE IF NOT EXISTS state_change (time_ns INTEGER NOT NULL, point TEXT NOT NULL, value, quality TEXT NOT NULL,
    previous_quality TEXT);
CREATE INDEX IF NOT EXISTS state_change_point_time ON state_change (point, time_ns);
CREATE INDEX IF NOT EXISTS state_change_time ON state_change (time_ns);
CREATE TABLE IF NOT EXISTS occupancy (time_ns INTEGER NOT NULL, zone TEXT NOT NULL, occupied INTEGER, count INTEGER,
    capacity INTEGER, quality TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS occupancy_zone_time ON occupancy (zone, time_ns);
CREATE INDEX IF NOT EXISTS occupancy_time ON occupancy (time_ns);
CREATE TABLE IF NOT EXISTS alarm (time_ns INTEGER NOT NULL, key TEXT NOT NULL, source TEXT NOT NULL,
    severity TEXT NOT NULL, active INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarm_time ON alarm (time_ns);
CREATE TABLE IF NOT EXISTS access (time_ns INTEGER NOT NULL, door TEXT NOT NULL, zone TEXT NOT NULL, card TEXT NOT NULL,
    granted INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS access_time ON access (time_ns);
CREATE TABLE IF NOT EXISTS mode (time_ns INTEGER NOT NULL, mode TEXT NOT NULL, previous TEXT NOT NULL,
    reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS mode_time ON mode (time_ns);
"""

TABLES: Mapping[str, int] = {"reading": 4, "state_change": 5, "occupancy": 6, "alarm": 6, "access": 6, "mode": 4}
"""Tables and their number of columns."""

_INSERT = {t: f"INSERT INTO {t} VALUES ({', '.join('?' * n)})" for t, n in TABLES.items()}  # noqa: S608 - fixed names


def _stored(value: Value) -> Value:
    """A point value as a column holds it: NaN and ±infinity become NULL (SQLite would store NaN as NULL anyway)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value) if math.isfinite(float(value)) else None
    return value


@dataclass
class Rows:
    """Rows waiting for the next insert, per table; counts what was left out on the way."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {t: [] for t in TABLES})
    count: int = 0

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.tables[table].append(row)
        self.count += 1


def to_rows(events: Iterable[Event], rows: Rows, known_points: Mapping[str, object]) -> tuple[int, int]:
    """Append the rows of ``events``; returns (values left out as not finite, events about unknown points)."""
    nonfinite = unknown = 0
    for ev in events:
        if isinstance(ev, Reading):
            if ev.point not in known_points:
                unknown += 1
                continue
            value = _stored(ev.value)
            nonfinite += value is None and ev.value is not None
            rows.add("reading", (time_ns(ev.time), ev.point, value, ev.quality.value))
        elif isinstance(ev, StateChanged):
            if ev.point not in known_points:
                unknown += 1
                continue
            value = _stored(ev.new.value)
            nonfinite += value is None and ev.new.value is not None
            old = ev.old.quality.value if ev.old is not None else None
            rows.add("state_change", (time_ns(ev.time), ev.point, value, ev.new.quality.value, old))
        elif isinstance(ev, OccupancyChanged):
            occupied = None if ev.occupied is None else int(ev.occupied)
            rows.add("occupancy", (time_ns(ev.time), ev.zone, occupied, ev.count, ev.capacity, ev.quality.value))
        elif isinstance(ev, Alarm):
            rows.add("alarm", (time_ns(ev.time), ev.key, ev.source, ev.severity, int(ev.active), ev.message))
        elif isinstance(ev, AccessDecision):
            rows.add("access", (time_ns(ev.time), ev.door, ev.zone, ev.card, int(ev.granted), ev.reason))
        elif isinstance(ev, ModeChanged):
            rows.add("mode", (time_ns(ev.time), ev.new.value, ev.old.value, ev.reason))
    return nonfinite, unknown


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a point as stored."""

    time: datetime
    value: Value
    quality: str


@dataclass(frozen=True, slots=True)
class OccupancyHour:
    """A zone during one hour: the share of the hour it was occupied (of the time its occupancy was known),
    the most people counted, and how long its occupancy was known at all."""

    zone: str
    hour: datetime  # start of the hour, in the site's time zone
    occupied: float | None  # 0.0-1.0; None: occupancy unknown the whole hour
    peak: int | None
    known_seconds: float


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


class EmbeddedStore:
    """The SQLite file and its queries. Thread-safe: one writer connection, one reader connection (WAL lets a
    query run while a batch is inserted)."""

    def __init__(self, path: Path, timezone: str = "UTC") -> None:
        self.path = path
        self.tz = ZoneInfo(timezone)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def open(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                return
            conn = self._connect()
            # auto_vacuum must be chosen before the first table exists; incremental lets retention give pages back.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                conn.close()
                raise sqlite3.OperationalError(f"{self.path}: could not switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            conn.executescript(_SCHEMA)
            self._writer = conn

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            self.open()
            self._reader = self._connect()
            self._reader.execute("PRAGMA query_only = ON")
        return self._reader

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ------------------------------------------------------------------ writing
    def insert(self, rows: Rows) -> int:
        """Insert every row in one transaction; returns how many."""
        self.open()
        with self._write_lock:
            conn = self._writer
            assert conn is not None
            conn.execute("BEGIN")
            try:
                for table, batch in rows.tables.items():
                    if batch:
                        conn.executemany(_INSERT[table], batch)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return rows.count

    def prune(self, before: datetime) -> int:
        """Delete rows older than ``before`` and give the freed pages back; returns how many rows went."""
        self.open()
        cutoff = time_ns(before)
        deleted = 0
        with self._write_lock:
            conn = self._writer
            assert conn is not None
            for table in TABLES:
                deleted += conn.execute(f"DELETE FROM {table} WHERE time_ns < ?", (cutoff,)).rowcount  # noqa: S608
            if deleted:
                conn.execute("PRAGMA incremental_vacuum")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    # ------------------------------------------------------------------ queries
    def point_history(self, point: str, start: datetime, end: datetime) -> list[Sample]:
        """Readings of ``point`` with ``start <= time < end``, oldest first."""
        with self._read_lock:
            rows = (
                self._read()
                .execute(
                    "SELECT time_ns, value, quality FROM reading WHERE point = ? AND time_ns >= ? AND time_ns < ? "
                    "ORDER BY time_ns, rowid",
                    (point, time_ns(start), time_ns(end)),
                )
                .fetchall()
            )
        return [Sample(_dt(t), v, q) for t, v, q in rows]

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"no table {table!r}; tables: {', '.join(TABLES)}")
        with self._read_lock:
            return int(self._read().execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    def occupancy_per_hour(
        self, start: datetime, end: datetime, zones: Sequence[str] | None = None
    ) -> dict[str, list[OccupancyHour]]:
        """Per zone, one entry per hour (site time) from the hour holding ``start`` to the one holding ``end``.

        Time-weighted: a zone occupied from 10:20 to 10:50 was occupied 0.5 of the 10:00 hour. The state in
        force at ``start`` is the last record before it, so an hour with no change still counts."""
        lo, hi = time_ns(start), time_ns(end)
        with self._read_lock:
            conn = self._read()
            if zones is None:
                zones = [z for (z,) in conn.execute("SELECT DISTINCT zone FROM occupancy ORDER BY zone")]
            series = {}
            for zone in zones:
                before = conn.execute(
                    "SELECT time_ns, occupied, count FROM occupancy WHERE zone = ? AND time_ns < ? "
                    "ORDER BY time_ns DESC, rowid DESC LIMIT 1",
                    (zone, lo),
                ).fetchall()
                within = conn.execute(
                    "SELECT time_ns, occupied, count FROM occupancy WHERE zone = ? AND time_ns >= ? AND time_ns < ? "
                    "ORDER BY time_ns, rowid",
                    (zone, lo, hi),
                ).fetchall()
                series[zone] = before + within
        return {zone: self._hours(zone, rows, start, end) for zone, rows in series.items()}

    def _hours(self, zone: str, rows: list[tuple[int, int | None, int | None]], start: datetime,
               end: datetime) -> list[OccupancyHour]:  # fmt: skip
        hour = start.astimezone(self.tz).replace(minute=0, second=0, microsecond=0)
        buckets: list[tuple[datetime, datetime]] = []
        while hour < end:
            nxt = (hour.astimezone(UTC) + timedelta(hours=1)).astimezone(self.tz)
            buckets.append((hour, nxt))
            hour = nxt
        # Segments of constant state: (from, to, occupied, count), clipped to [start, end).
        segments: list[tuple[datetime, datetime, int | None, int | None]] = []
        for i, (t, occupied, count) in enumerate(rows):
            seg_start = max(_dt(t), start)
            seg_end = _dt(rows[i + 1][0]) if i + 1 < len(rows) else end
            if seg_end > seg_start:
                segments.append((seg_start, min(seg_end, end), occupied, count))
        out = []
        for lo, hi in buckets:
            known = busy = 0.0
            peak: int | None = None
            for s0, s1, occupied, count in segments:
                a, b = max(s0, lo), min(s1, hi)
                if b <= a:
                    continue
                if count is not None:
                    peak = count if peak is None else max(peak, count)
                if occupied is None:
                    continue
                seconds = (b - a).total_seconds()
                known += seconds
                busy += seconds if occupied else 0.0
            out.append(OccupancyHour(zone, lo, busy / known if known else None, peak, known))
        return out
