"""The embedded store (SQLite under the state directory): history with no server, queried back."""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.events import AccessDecision, Alarm, Mode, ModeChanged, OccupancyChanged, Quality, Reading
from hub.history import EmbeddedHistory, EmbeddedStore, HistorySettings
from tests.conftest import FakeClock
from tests.helpers import until
from tests.history.rig import GRAPH, running

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=TOKYO)  # the site's noon


def service(path: Path, clock: FakeClock, **kw: Any) -> Any:
    settings = HistorySettings(**{"batch_size": 100, "flush_interval": 0.05, **kw})
    return lambda bus: EmbeddedHistory(bus, GRAPH, EmbeddedStore(path, "Asia/Tokyo"), settings, clock=clock)


def at(hhmm: str, day: int = 24) -> datetime:
    h, m = hhmm.split(":")
    return datetime(2026, 11, day, int(h), int(m), tzinfo=TOKYO)


async def test_a_points_last_24_hours(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    point = "room-201-vav.zone_temp"
    values: list[Any] = [21, 21.5, True, "text ü", None, math.nan, 2**70]
    async with running(service(tmp_path / "h.sqlite3", clock)) as rig:
        svc = rig.service
        assert isinstance(svc, EmbeddedHistory)
        rig.publish([Reading(point=point, value=1.0, time=NOW - timedelta(hours=30)),
                     Reading(point="room-201-vav.setpoint", value=22.0, time=NOW - timedelta(hours=1))])  # fmt: skip
        rig.publish(
            Reading(
                point=point,
                value=v,
                time=NOW - timedelta(minutes=60 - i),
                quality=Quality.BAD if v is None else Quality.GOOD,
            )
            for i, v in enumerate(values)
        )
        rig.publish([Reading(point="no-such.point", value=1.0, time=NOW)])
        await until(lambda: svc.written == 2 + len(values), "every reading stored")
        got = await svc.point_history(point)
        assert svc.details()["dropped_nonfinite"] == 1
        assert svc.details()["unknown"] == 1
    assert [s.value for s in got] == [21, 21.5, 1, "text ü", None, None, float(2**70)]
    assert type(got[0].value) is int
    assert [s.quality for s in got] == ["good", "good", "good", "good", "bad", "good", "good"]
    assert [s.time for s in got] == [NOW - timedelta(minutes=60 - i) for i in range(len(values))]


async def test_occupancy_per_room_per_hour(tmp_path: Path) -> None:
    clock = FakeClock(NOW)

    def occ(when: datetime, occupied: bool | None, count: int | None, zone: str = "room-201") -> OccupancyChanged:
        return OccupancyChanged(zone=zone, occupied=occupied, count=count, capacity=12, since=when,
                                quality=Quality.GOOD, time=when)  # fmt: skip

    async with running(service(tmp_path / "h.sqlite3", clock)) as rig:
        svc = rig.service
        assert isinstance(svc, EmbeddedHistory)
        rig.publish([
            occ(at("08:40"), None, None),  # a sensor up but not reporting yet
            occ(at("09:15"), True, 2),
            occ(at("09:45"), False, 0),
            occ(at("10:30"), True, 3),
            occ(at("11:00"), True, 5),
            occ(at("11:30"), True, 4),
            occ(at("10:00"), False, 0, zone="lobby"),
        ])  # fmt: skip
        await until(lambda: svc.written == 7, "every change stored")
        hours = await svc.occupancy_per_hour(at("09:00"), at("12:00"))
    room = [(h.hour, round(h.occupied, 3) if h.occupied is not None else None, h.peak, h.known_seconds)
            for h in hours["room-201"]]  # fmt: skip
    assert room == [
        (at("09:00"), round(1800 / 2700, 3), 2, 2700.0),  # occupied 09:15-09:45 of the 45 min it was known
        (at("10:00"), 0.5, 3, 3600.0),
        (at("11:00"), 1.0, 5, 3600.0),
    ]
    assert [(h.occupied, h.known_seconds) for h in hours["lobby"]] == [(None, 0.0), (0.0, 3600.0), (0.0, 3600.0)]


async def test_everything_else_is_stored_and_kept_across_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    path = tmp_path / "state" / "history.sqlite3"
    async with running(service(path, clock)) as rig:
        rig.publish([
            Alarm(key="ups:mr-ups:on-battery", source="mr-ups", severity="critical", message="on battery", time=NOW),
            AccessDecision(card="0042", door="room-201-reader", zone="room-201", granted=False, reason="expired",
                           time=NOW),
            ModeChanged(old=Mode.NORMAL, new=Mode.EMERGENCY, reason="earthquake", time=NOW),
        ])  # fmt: skip
        await until(lambda: rig.service.written == 3, "three events stored")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT key, source, severity, active, message FROM alarm").fetchall() == [
            ("ups:mr-ups:on-battery", "mr-ups", "critical", 1, "on battery")
        ]
        assert db.execute("SELECT door, zone, card, granted, reason FROM access").fetchall() == [
            ("room-201-reader", "room-201", "0042", 0, "expired")
        ]
        modes = db.execute("SELECT mode, previous, reason FROM mode").fetchall()
        assert modes == [("emergency", "normal", "earthquake")]
    db.close()
    async with running(service(path, clock)) as rig:
        assert isinstance(rig.service, EmbeddedHistory)
        assert rig.service.store.count("mode") == 1


async def test_retention_removes_what_is_older(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    path = tmp_path / "h.sqlite3"
    point = "room-201-vav.zone_temp"
    async with running(service(path, clock, retention_days=30)) as rig:
        rig.publish(Reading(point=point, value=float(d), time=NOW - timedelta(days=d)) for d in range(10))
        await until(lambda: rig.service.written == 10, "ten days of readings stored")
    async with running(service(path, clock, retention_days=3.5)) as rig:  # the first pass runs at start
        svc = rig.service
        assert isinstance(svc, EmbeddedHistory)
        await until(lambda: svc.pruned == 6, "six old readings pruned")
        got = await svc.point_history(point, start=NOW - timedelta(days=30), end=NOW + timedelta(seconds=1))
    assert [s.value for s in got] == [3.0, 2.0, 1.0, 0.0]


async def test_stop_stores_what_is_in_memory(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    async with running(service(tmp_path / "h.sqlite3", clock, flush_interval=30.0, batch_size=100_000)) as rig:
        n = rig.publish(Reading(point="room-201-vav.zone_temp", value=float(i), time=NOW) for i in range(500))
        await until(lambda: rig.service.details()["pending"] == n, "every reading taken")
        assert rig.service.written == 0
    assert rig.service.written == n
    assert EmbeddedStore(tmp_path / "h.sqlite3").count("reading") == n


def test_hours_follow_the_site_time_zone_not_utc(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "h.sqlite3", "Asia/Kolkata")  # UTC+5:30: hours start at :30 UTC
    try:
        start = datetime(2026, 11, 24, 3, 45, tzinfo=UTC)
        [hours] = store.occupancy_per_hour(start, start + timedelta(hours=2), ["room-201"]).values()
    finally:
        store.close()
    assert [h.hour.astimezone(UTC).strftime("%H:%M") for h in hours] == ["03:30", "04:30", "05:30"]


async def test_a_store_that_cannot_be_opened_is_retried_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the store's directory should be")
    async with running(service(tmp_path / "not-a-dir" / "h.sqlite3", FakeClock(NOW))) as rig:
        await until(lambda: rig.health.state.value == "retrying", "the service to retry")
        assert "embedded history store" in str(rig.health.last_error)
        assert "not-a-dir" in str(rig.health.last_error)
