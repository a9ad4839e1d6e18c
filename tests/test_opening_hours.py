"""The opening-hours automation drives normal / after-hours and never overrides an emergency."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from automations import OpeningHours
from hub.bus import Bus
from hub.calendar import Calendar
from hub.events import Mode
from hub.site import load_site
from hub.state import StateStore
from tests.conftest import SITE_MODEL, FakeClock

TOKYO = ZoneInfo("Asia/Tokyo")


def setup(tmp_path: Path, start: datetime, **kw: int) -> tuple[OpeningHours, StateStore, FakeClock]:
    model = load_site(SITE_MODEL)
    clock = FakeClock(start, **kw)
    state = StateStore(Bus(), {}, tmp_path, clock=clock)
    return OpeningHours(state, Calendar(model.calendar, model.site.timezone), clock), state, clock


def test_apply_follows_the_calendar(tmp_path: Path) -> None:
    auto, state, _ = setup(tmp_path, datetime(2026, 11, 24, 7, 0, tzinfo=TOKYO))
    assert auto.apply(datetime(2026, 11, 24, 7, 0, tzinfo=TOKYO)) is Mode.AFTER_HOURS
    assert state.mode_record.reason == "business calendar: outside opening hours"
    assert auto.apply(datetime(2026, 11, 24, 9, 0, tzinfo=TOKYO)) is Mode.NORMAL
    assert auto.apply(datetime(2026, 11, 24, 9, 5, tzinfo=TOKYO)) is None  # no change, nothing written
    assert auto.apply(datetime(2027, 1, 1, 10, 0, tzinfo=TOKYO)) is Mode.AFTER_HOURS
    assert state.mode_record.reason == "business calendar: closed (元日)"


def test_never_overrides_emergency_or_drill(tmp_path: Path) -> None:
    auto, state, _ = setup(tmp_path, datetime(2026, 11, 24, 7, 0, tzinfo=TOKYO))
    for mode in (Mode.EMERGENCY, Mode.DRILL):
        state.set_mode(mode, "test")
        assert auto.apply(datetime(2026, 11, 24, 20, 0, tzinfo=TOKYO)) is None
        assert state.mode is mode


async def test_run_switches_at_the_boundaries(tmp_path: Path) -> None:
    auto, state, clock = setup(tmp_path, datetime(2026, 11, 24, 8, 0, tzinfo=TOKYO), max_sleeps=2000)
    seen: list[tuple[str, Mode]] = []
    ready = asyncio.Event()
    original = state.set_mode

    def spy(mode: Mode, reason: str, **kw: object) -> bool:
        changed = original(mode, reason, **kw)  # type: ignore[arg-type]
        if changed:
            seen.append((clock.now().astimezone(TOKYO).strftime("%a %H:%M"), mode))
        return changed

    state.set_mode = spy  # type: ignore[method-assign]
    task = asyncio.create_task(auto.run(ready.set))
    await clock.parked.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert ready.is_set()
    assert seen[:5] == [
        ("Tue 08:00", Mode.AFTER_HOURS),
        ("Tue 08:30", Mode.NORMAL),
        ("Tue 17:15", Mode.AFTER_HOURS),
        ("Wed 08:30", Mode.NORMAL),
        ("Wed 17:15", Mode.AFTER_HOURS),
    ]
    assert max(clock.sleeps) <= 60.0  # it re-checks at least every minute
