"""hub.history against a real influxd (Debian's influxdb 1.x, v1 write API): nothing lost, nothing twice.

Each test runs the history service on a bus of its own and reads the result back through InfluxDB's /query
API. Outages are real: influxd killed (SIGKILL), paused (SIGSTOP: connections accepted, no answer) and
started again on the same data directory.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from hub.bus import Bus
from hub.events import (
    AccessDecision,
    Alarm,
    Mode,
    ModeChanged,
    OccupancyChanged,
    PointState,
    Quality,
    Reading,
    StateChanged,
)
from hub.history import SPOOL_ALARM, InfluxHistory, LineSchema, Spool
from hub.supervisor import Health, ServiceHealth, supervise
from tests.helpers import until
from tests.history.rig import GRAPH, NUMERIC, T0, fast, influx_service, readings, running, v1
from tests.history.test_lineprotocol import HOSTILE_STRINGS
from tests.servers import Influx, free_port


async def q(influx: Influx, query: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(influx.rows, query)


async def count(influx: Influx, what: str = "value", measurement: str = "reading") -> int:
    rows = await q(influx, f'SELECT count("{what}") FROM "{measurement}"')  # noqa: S608 - InfluxQL of our own
    return int(rows[0]["count"]) if rows else 0


def settled(svc: InfluxHistory) -> bool:
    """Nothing pending in memory, nothing in the spool, and the database up."""
    return not svc.details()["pending"] and not len(svc.spool) and not svc.down


async def values_per_point(influx: Influx) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {}
    for row in await q(influx, "SELECT value FROM reading GROUP BY point ORDER BY time"):
        got.setdefault(row["point"], []).append(row["value"])
    return got


def sent_per_point(n: int) -> dict[str, list[float]]:
    want: dict[str, list[float]] = {}
    for r in readings(n):
        assert isinstance(r.value, float)
        want.setdefault(r.point, []).append(r.value)
    return want


async def test_n_readings_in_n_points_out(influxdb: Influx, tmp_path: Path) -> None:
    n = 5000
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        rig.publish(readings(n))
        await until(lambda: rig.service.written == n, f"{n} points written")
    assert await count(influxdb) == n
    assert await values_per_point(influxdb) == sent_per_point(n)
    tags = (await q(influxdb, "SELECT * FROM reading WHERE point = 'room-201-vav.zone_temp' LIMIT 1"))[0]
    assert {k: tags[k] for k in ("site", "building", "floor", "zone", "device", "point", "kind", "unit")} == {
        "site": "test-site", "building": "hall", "floor": "hall-2f", "zone": "room-201", "device": "room-201-vav",
        "point": "room-201-vav.zone_temp", "kind": "temperature", "unit": "degC",
    }  # fmt: skip
    assert tags["quality"] == "good"
    d = rig.service.details()
    assert (d["written"], d["spooled"], d["replayed"], d["dropped_budget"], d["rejected"]) == (n, 0, 0, 0, 0)


async def test_readings_in_the_same_microsecond_are_all_kept(influxdb: Influx, tmp_path: Path) -> None:
    """InfluxDB keeps one point per series and timestamp: a burst stamped with one microsecond must not merge."""
    point = NUMERIC[0]
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        rig.publish(Reading(point=point, value=float(i), time=T0) for i in range(300))
        await until(lambda: rig.service.written == 300, "300 points written")
    rows = await q(influxdb, f"SELECT value FROM reading WHERE point = '{point}'")  # noqa: S608
    assert [r["value"] for r in rows] == [float(i) for i in range(300)]
    assert rows[0]["time"] == int(T0.timestamp()) * 10**9
    assert rows[-1]["time"] - rows[0]["time"] == 299  # nanoseconds: still inside the same microsecond


async def test_influxd_killed_mid_stream_then_back_every_point_once_in_order(influxdb: Influx, tmp_path: Path) -> None:
    rounds, per_round = 30, 100
    n = rounds * per_round
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        svc = rig.service
        assert isinstance(svc, InfluxHistory)
        for r in range(rounds):
            rig.publish(readings(per_round, start=r * per_round))
            await asyncio.sleep(0.02)  # the hub keeps receiving while the database comes and goes
            if r == 8:
                await until(lambda: svc.written > 0, "some points written before the outage")
                await asyncio.to_thread(influxdb.kill)
            if r == 20:
                await until(lambda: svc.down, "the writer to notice the outage")
                await until(lambda: len(svc.spool) > 0, "batches in the spool")
                await asyncio.to_thread(influxdb.start)
        await until(lambda: settled(svc), "the spool to replay and memory to drain")
        d = svc.details()
    assert d["spooled"] > 0
    assert d["replayed"] > 0
    assert d["written"] + d["replayed"] == n
    assert d["dropped_budget"] == d["rejected"] == 0
    assert await count(influxdb) == n
    assert await values_per_point(influxdb) == sent_per_point(n)


async def test_a_hung_influxd_times_out_into_the_spool_and_answers_lost_add_no_duplicate(
    influxdb: Influx, tmp_path: Path
) -> None:
    """SIGSTOP: influxd accepts connections but answers nothing. Writes time out (1 s) and go to the spool, yet
    the requests sit in its socket and land once it resumes: the replay writes those points a second time,
    and InfluxDB keeps them once (same series, same timestamp)."""
    n = 2000
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        svc = rig.service
        assert isinstance(svc, InfluxHistory)
        rig.publish(readings(500))
        await until(lambda: svc.written == 500, "500 points written")
        await asyncio.to_thread(influxdb.pause)
        try:
            rig.publish(readings(n - 500, start=500))
            await until(lambda: svc.down, "the write to time out")
            await until(lambda: svc.spool.points + svc.replayed >= 200, "the timed-out batch in the spool")
        finally:
            await asyncio.to_thread(influxdb.resume)
        await until(lambda: settled(svc), "the spool to replay")
        assert "no answer within 1s" in str(svc.last_error)
    assert await count(influxdb) == n
    assert await values_per_point(influxdb) == sent_per_point(n)


async def test_a_restart_with_a_spool_replays_it(tmp_path: Path) -> None:
    influx = Influx(tmp_path / "influxdb")  # not started yet: the first hub finds nothing listening
    spool = tmp_path / "spool"
    n = 1234
    try:
        async with running(influx_service(influx.url, spool)) as rig:
            rig.publish(readings(n))
            await until(lambda: rig.service.down, "the writer to find the database down")
        # The stop put everything in hand into the spool.
        on_disk = Spool(spool, 2**30)
        assert (on_disk.points, on_disk.batches > 0) == (n, True)
        assert await asyncio.to_thread(lambda: not influx.proc)
        await asyncio.to_thread(influx.start)
        async with running(influx_service(influx.url, spool)) as rig:
            await until(lambda: settled(rig.service), "the spool to replay after the restart")
            assert rig.service.details()["replayed"] == n
        assert await count(influx) == n
        assert await values_per_point(influx) == sent_per_point(n)
        assert list(spool.iterdir()) == []
    finally:
        await asyncio.to_thread(influx.stop)


async def test_replaying_what_was_already_written_adds_nothing(influxdb: Influx, tmp_path: Path) -> None:
    """The lost answer: a batch landed but the hub never heard so, spooled it, and replays it after a restart."""
    n = 800
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        rig.publish(readings(n))
        await until(lambda: rig.service.written == n, f"{n} points written")
    # The same events give the same lines (timestamps are fixed when the event is turned into a line).
    lines = LineSchema(GRAPH).lines(list(readings(n)))
    Spool(tmp_path / "spool", 2**30).add(("\n".join(lines) + "\n").encode(), n, 0, 0)
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        await until(lambda: settled(rig.service), "the spool to replay")
        assert rig.service.details()["replayed"] == n
    assert await count(influxdb) == n
    assert await values_per_point(influxdb) == sent_per_point(n)


async def test_a_full_spool_drops_the_oldest_counts_and_alarms(tmp_path: Path) -> None:
    influx = Influx(tmp_path / "influxdb")
    batch = 100
    line = len(LineSchema(GRAPH).lines([next(readings(1))])[0]) + 8  # + margin: longer values later
    settings = fast(batch_size=batch, spool_budget=3 * batch * line)  # room for about 3 batches
    n = 20 * batch
    try:
        async with running(influx_service(influx.url, tmp_path / "spool", settings), record=(Alarm,)) as rig:
            svc = rig.service
            assert isinstance(svc, InfluxHistory)
            for r in range(20):
                rig.publish(readings(batch, start=r * batch))
                await until(lambda r=r: svc.spooled >= (r + 1) * batch, f"batch {r} spooled")
            assert svc.written == 0
            await until(lambda: svc.dropped_budget + svc.spool.points == n, "every batch spooled or dropped")
            await until(lambda: rig.events, "the spool alarm")
            alarm = rig.events[0]
            assert isinstance(alarm, Alarm)
            assert (alarm.key, alarm.active, alarm.severity) == (SPOOL_ALARM, True, "critical")
            assert "dropped the oldest" in alarm.message
            dropped = svc.dropped_budget
            assert dropped + svc.spool.points == n
            assert dropped >= 15 * batch
            assert svc.spool.bytes <= settings.spool_budget
            assert svc.spool.gap is not None
            assert (svc.spool.gap.points, svc.spool.gap.first_ns) == (dropped, int(T0.timestamp()) * 10**9)
            await asyncio.to_thread(influx.start)
            await until(lambda: settled(svc), "the rest of the spool to replay")
            await until(lambda: any(isinstance(e, Alarm) and not e.active for e in rig.events), "the alarm cleared")
        got = await values_per_point(influx)
        kept = sorted(v for vs in got.values() for v in vs)
        assert kept == [float(i) for i in range(n - len(kept), n)]  # the newest, every one of them
        assert len(kept) >= n - dropped  # (the dropped points include the alarm's own line)
        [gap] = await q(influx, "SELECT * FROM history_gap")
        assert (gap["points"], gap["reason"], gap["site"]) == (dropped, "spool-full", "test-site")
        assert gap["time"] == int(T0.timestamp()) * 10**9  # the gap starts with the first reading lost
        assert gap["end"] >= gap["time"] + (n - len(kept) - 1) * 10**6
        alarms = await q(influx, "SELECT active, message FROM alarm WHERE \"key\" = 'history:spool-full'")
        assert alarms[-1]["active"] is False  # (the raising one may have gone with the data it warned about)
        assert list((tmp_path / "spool").iterdir()) == []
    finally:
        await asyncio.to_thread(influx.stop)


async def test_non_finite_values_are_counted_and_never_fail_a_batch(influxdb: Influx, tmp_path: Path) -> None:
    point = NUMERIC[0]
    values = [1.0, math.nan, 2.0, math.inf, -math.inf, 3.0, 10**400]
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        rig.publish(Reading(point=point, value=v, time=T0 + i * (T0 - T0.replace(hour=0)) / 1000)
                    for i, v in enumerate(values))  # fmt: skip
        await until(lambda: rig.service.written == len(values), "every reading written")
        assert rig.service.details()["dropped_nonfinite"] == 4
    rows = await q(influxdb, f"SELECT value, quality FROM reading WHERE point = '{point}'")  # noqa: S608
    assert [r["value"] for r in rows] == [1.0, None, 2.0, None, None, 3.0, None]
    assert [r["quality"] for r in rows] == ["good"] * len(values)  # the reading is there; its value had no spelling


async def test_a_refused_point_is_counted_and_the_rest_of_its_batch_lands(influxdb: Influx, tmp_path: Path) -> None:
    """A field type conflict (someone wrote the alarm measurement's ``active`` as a string; InfluxDB 1.x fixes a
    field's type per measurement and shard): the alarm is refused with a partial write, counted, not retried
    forever, and the readings in the same batch land."""
    await asyncio.to_thread(influxdb.write, f'alarm,site=elsewhere active="yes" {int(T0.timestamp()) * 10**9}\n')
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        n = rig.publish(readings(150))
        rig.publish([Alarm(key="k", source="mr-ups", severity="info", message="m", time=T0)])
        n += rig.publish(readings(49, start=150))
        await until(lambda: rig.service.written + rig.service.rejected == n + 1, "the batch answered")
        d = rig.service.details()
    assert d["rejected"] == 1
    assert "HTTP 400: partial write: field type conflict" in d["last_error"]
    assert await count(influxdb) == n
    assert d["spool_points"] == 0


async def test_every_event_type_with_hostile_text_round_trips(influxdb: Influx, tmp_path: Path) -> None:
    text_point = "lobby-sign.content"
    events: list[Any] = []
    for i, s in enumerate(HOSTILE_STRINGS):
        t = T0.replace(microsecond=i)
        events += [
            Reading(point=text_point, value=s, time=t),
            Alarm(key=f"test:{i}", source="mr-ups", severity="warning", message=s, time=t),
            AccessDecision(card=s, door="room-201-reader", zone="room-201", granted=i % 2 == 0, reason=s, time=t),
            ModeChanged(old=Mode.NORMAL, new=Mode.DRILL, reason=s, time=t),
        ]
    old = PointState(point=NUMERIC[0], value=1.5, quality=Quality.GOOD, time=T0)
    new = PointState(point=NUMERIC[0], value=None, quality=Quality.OFFLINE, time=T0)
    events.append(StateChanged(point=NUMERIC[0], old=old, new=new, time=T0))
    events.append(OccupancyChanged(zone="room-201", occupied=True, count=3, capacity=12, since=T0,
                                   quality=Quality.GOOD, time=T0))  # fmt: skip
    async with running(influx_service(influxdb.url, tmp_path / "spool")) as rig:
        rig.publish(events)
        await until(lambda: rig.service.written == len(events), "every event written")
    m = len(HOSTILE_STRINGS)
    assert [r["text"] for r in await q(influxdb, "SELECT text FROM reading")] == HOSTILE_STRINGS
    alarms = await q(influxdb, 'SELECT message, active, "key", device, zone, severity FROM alarm')
    assert [a["message"] for a in alarms] == HOSTILE_STRINGS
    assert {(a["device"], a["zone"], a["severity"], a["active"]) for a in alarms} == {
        ("mr-ups", "machine-room", "warning", True)
    }
    access = await q(influxdb, "SELECT card, reason, granted, device, zone FROM access")
    assert [(a["card"], a["reason"]) for a in access] == list(zip(HOSTILE_STRINGS, HOSTILE_STRINGS, strict=True))
    assert [a["granted"] for a in access] == [i % 2 == 0 for i in range(m)]
    modes = await q(influxdb, "SELECT mode, previous, reason FROM mode")
    assert [(r["mode"], r["previous"], r["reason"]) for r in modes] == [("drill", "normal", s) for s in HOSTILE_STRINGS]
    [change] = await q(influxdb, "SELECT * FROM state_change")
    assert (change["quality"], change["previous_quality"], change.get("value")) == ("offline", "good", None)
    [occ] = await q(influxdb, "SELECT * FROM occupancy")
    assert (occ["occupied"], occ["count"], occ["capacity"], occ["zone"], occ["building"]) == (1, 3, 12, "room-201",
                                                                                              "hall")  # fmt: skip


async def test_a_batch_too_large_for_the_server_is_halved_until_it_fits(tmp_path: Path) -> None:
    influx = Influx(tmp_path / "influxdb", max_body_size=8000)  # 413 for anything over 8 kB
    await asyncio.to_thread(influx.start)
    texts = [f'line {i}\nwith a newline, a "quote" and a \\ backslash' for i in range(200)]
    try:
        async with running(influx_service(influx.url, tmp_path / "spool")) as rig:
            rig.publish(Reading(point="lobby-sign.content", value=t, time=T0.replace(microsecond=i))
                        for i, t in enumerate(texts))  # fmt: skip
            await until(lambda: rig.service.written == len(texts), "every reading written")
            assert rig.service.rejected == 0
            assert rig.service.writes > 2  # halved: one 413, then the halves (and their halves)
        assert [r["text"] for r in await q(influx, "SELECT text FROM reading")] == texts
    finally:
        await asyncio.to_thread(influx.stop)


async def test_stop_flushes_what_is_in_memory(influxdb: Influx, tmp_path: Path) -> None:
    settings = fast(flush_interval=30.0, batch_size=100_000)  # nothing would leave before the stop
    async with running(influx_service(influxdb.url, tmp_path / "spool", settings)) as rig:
        n = rig.publish(readings(777))
        await until(lambda: rig.service.details()["pending"] == n, "every reading taken")
        assert rig.service.written == 0
    assert rig.service.written == n
    assert await count(influxdb) == n


async def test_unreachable_database_at_start_does_not_hold_up_the_service(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with running(influx_service(url, tmp_path / "spool")) as rig:
        assert rig.health.state.value == "running"
        rig.publish(readings(10))
        await until(lambda: rig.service.down, "the write to fail")
        assert f"InfluxDB {url} (v1, database bmhub): batch of 10 point(s): Cannot connect" in str(
            rig.service.last_error
        )


async def test_a_missing_database_spools_and_says_so(influxdb: Influx, tmp_path: Path) -> None:
    async with running(influx_service(influxdb.url, tmp_path / "spool", database="nope")) as rig:
        rig.publish(readings(10))
        await until(lambda: rig.service.down, "the write to be refused")
        assert "HTTP 404: database not found" in str(rig.service.last_error)
        await until(lambda: rig.service.spool.points == 10, "the batch spooled")


async def test_a_bad_ca_file_fails_the_service_naming_the_setting(tmp_path: Path) -> None:
    async with Bus() as bus:
        svc = InfluxHistory(bus, GRAPH, v1("https://127.0.0.1:1", ca_file=tmp_path / "missing.pem"), fast(),
                            tmp_path / "spool")  # fmt: skip
        health = ServiceHealth("history", "history")
        await asyncio.wait_for(supervise(svc, health), 10)  # returns: failed for good, not retried
    assert health.state is Health.FAILED
    assert "BMHUB_INFLUX_CA_FILE" in str(health.last_error)
    assert "missing.pem" in str(health.last_error)
    assert [s.name for s in bus.stats()] == []  # it never subscribed, so nothing piles up in memory
