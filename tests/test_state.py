"""Point state, quality, staleness and the persisted site mode."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from hub.bus import Bus
from hub.events import Context, Mode, ModeChanged, Quality, Reading, StateChanged
from hub.state import StateStore
from tests.conftest import FakeClock

INTERVALS = {"ahu-1.supply_temp": 60.0, "door-1.card": None}


def store(tmp_path: Path, clock: FakeClock, bus: Bus | None = None) -> tuple[StateStore, list[object]]:
    bus = bus or Bus()
    events: list[object] = []
    bus.subscribe(StateChanged, events.append, name="changes")
    bus.subscribe(ModeChanged, events.append, name="modes")
    return StateStore(bus, INTERVALS, tmp_path, clock=clock), events


async def test_changes_are_published_only_when_value_or_quality_change(tmp_path: Path, clock: FakeClock) -> None:
    bus = Bus()
    st, events = store(tmp_path, clock, bus)
    async with bus:
        first = Reading(point="ahu-1.supply_temp", value=18.5, source="bacnet", context=Context(origin="adapter"))
        st.apply(first)
        st.apply(Reading(point="ahu-1.supply_temp", value=18.5, source="bacnet"))  # reported, not changed
        st.apply(Reading(point="ahu-1.supply_temp", value=19.0, source="bacnet"))
        st.apply(Reading(point="ahu-1.supply_temp", value=None, quality=Quality.OFFLINE, source="bacnet"))
        await bus.drain()
    changes = [e for e in events if isinstance(e, StateChanged)]
    assert [(c.new.value, c.new.quality) for c in changes] == [
        (18.5, Quality.GOOD), (19.0, Quality.GOOD), (19.0, Quality.OFFLINE),  # offline keeps the last value
    ]  # fmt: skip
    assert changes[0].old is None
    assert changes[1].old is not None
    assert changes[1].old.value == 18.5
    assert changes[0].context.parent_id == first.context.id  # traceable to the reading that caused it
    state = st.get("ahu-1.supply_temp")
    assert state is not None
    assert state.source == "bacnet"
    assert state.quality is Quality.OFFLINE


def test_readings_for_unknown_points_are_counted_not_stored(tmp_path: Path, clock: FakeClock) -> None:
    st, _ = store(tmp_path, clock)
    st.apply(Reading(point="nope.nothing", value=1))
    assert st.get("nope.nothing") is None
    assert st.unknown_points == 1


def test_staleness_after_twice_the_interval(tmp_path: Path, clock: FakeClock) -> None:
    st, _ = store(tmp_path, clock)
    st.apply(Reading(point="ahu-1.supply_temp", value=20.0, time=clock.now()))
    st.apply(Reading(point="door-1.card", value="0451", time=clock.now()))
    assert st.check_staleness(clock.now() + timedelta(seconds=119)) == 0
    assert st.check_staleness(clock.now() + timedelta(seconds=121)) == 1
    state = st.get("ahu-1.supply_temp")
    assert state is not None
    assert state.quality is Quality.STALE
    assert state.value == 20.0
    door = st.get("door-1.card")
    assert door is not None
    assert door.quality is Quality.GOOD
    assert st.check_staleness(clock.now() + timedelta(seconds=500)) == 0  # already stale: no repeat
    st.apply(Reading(point="ahu-1.supply_temp", value=20.5))
    assert st.get("ahu-1.supply_temp").quality is Quality.GOOD  # type: ignore[union-attr]


def test_a_point_that_never_reported_turns_stale(tmp_path: Path, clock: FakeClock) -> None:
    st, _ = store(tmp_path, clock)
    assert st.check_staleness(clock.now() + timedelta(seconds=60)) == 0
    assert st.counts()["unknown"] == 2
    assert st.check_staleness(clock.now() + timedelta(seconds=121)) == 1
    state = st.get("ahu-1.supply_temp")
    assert state is not None
    assert state.value is None
    assert state.quality is Quality.STALE


async def test_mode_persists_across_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    bus = Bus()
    st, events = store(tmp_path, clock, bus)
    assert st.mode is Mode.NORMAL
    async with bus:
        assert st.set_mode(Mode.EMERGENCY, "EEW 東京都多摩東部") is True
        assert st.set_mode(Mode.EMERGENCY, "again") is False
        await bus.drain()
    assert [(e.old, e.new) for e in events if isinstance(e, ModeChanged)] == [(Mode.NORMAL, Mode.EMERGENCY)]
    saved = json.loads((tmp_path / "mode.json").read_text(encoding="utf-8"))
    assert saved["mode"] == "emergency"
    assert saved["reason"] == "EEW 東京都多摩東部"
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind

    restarted = StateStore(Bus(), INTERVALS, tmp_path, clock=clock)
    assert restarted.mode is Mode.EMERGENCY
    assert restarted.mode_record.reason == "EEW 東京都多摩東部"
    assert restarted.mode_record.since == clock.now()


@pytest.mark.parametrize("content", ["{not json", '{"mode": "party", "since": "2026-01-01T00:00:00", "reason": ""}'])
def test_unreadable_saved_mode_falls_back_to_normal_and_keeps_the_file(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    (tmp_path / "mode.json").write_text(content)
    st = StateStore(Bus(), INTERVALS, tmp_path, clock=clock)
    assert st.mode is Mode.NORMAL
    assert (tmp_path / "mode.json").read_text() == content
    assert "is unreadable" in caplog.text


def test_staleness_runs_on_the_stores_clock_not_the_readings(tmp_path: Path, clock: FakeClock) -> None:
    """An adapter stamping readings with another clock (the wall clock, while the demo's runs ahead) must not
    make fresh points look stale: the store keeps its own receive time."""
    st, _ = store(tmp_path, clock)
    wall_clock_stamp = clock.now() - timedelta(days=1)
    st.apply(Reading(point="ahu-1.supply_temp", value=20.0, time=wall_clock_stamp))
    state = st.get("ahu-1.supply_temp")
    assert state is not None
    assert state.time == clock.now()
    assert st.check_staleness(clock.now() + timedelta(seconds=60)) == 0
