"""Current state of every point, and the site's mode.

The store takes readings off the bus, keeps the latest value per point with its quality, source and receive
time, and publishes :class:`~hub.events.StateChanged` only when value or quality changed (history takes the
readings; automations take the changes). A point that reports on a schedule and falls silent for twice its
expected interval turns ``stale``; a point whose device is unreachable turns ``offline`` (adapters report it)
and keeps its last value for display.

The site mode is written to disk atomically on every change and restored at start, so a hub restarted in an
emergency comes back in emergency mode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.bus import Bus, Overflow, Unsubscribe
from hub.clock import Clock, SystemClock
from hub.events import Context, Mode, ModeChanged, PointState, Quality, Reading, StateChanged
from hub.fileio import write_atomic

__all__ = ["STALE_FACTOR", "ModeRecord", "StateStore"]

log = logging.getLogger(__name__)

STALE_FACTOR = 2.0
"""A point is stale after this many of its expected intervals without a reading."""


class ModeRecord:
    """The persisted mode: what, since when, and why."""

    __slots__ = ("mode", "reason", "since")

    def __init__(self, mode: Mode, since: datetime, reason: str) -> None:
        self.mode = mode
        self.since = since
        self.reason = reason

    def to_json(self) -> dict[str, str]:
        return {"mode": self.mode.value, "since": self.since.isoformat(), "reason": self.reason}


class StateStore:
    """Latest state per point and the site mode. ``intervals`` maps point id → expected seconds (or None)."""

    def __init__(
        self,
        bus: Bus,
        intervals: Mapping[str, float | None],
        state_dir: Path,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._bus = bus
        self._clock = clock or SystemClock()
        self._intervals = {p: i for p, i in intervals.items() if i is not None}
        self._known = set(intervals)
        self._points: dict[str, PointState] = {}
        self._started = self._clock.now()
        self.unknown_points = 0
        self._mode_file = state_dir / "mode.json"
        self._mode = self._load_mode()
        self._unsubscribe: Unsubscribe | None = None

    # ------------------------------------------------------------------ points
    def attach(self) -> None:
        """Start taking readings off the bus."""
        if self._unsubscribe is None:
            self._unsubscribe = self._bus.subscribe(
                Reading, self.apply, name="state", maxsize=200_000, overflow=Overflow.DROP_OLDEST
            )

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def apply(self, reading: Reading) -> None:
        """Record one reading; publish StateChanged if value or quality changed."""
        if reading.point not in self._known:
            self.unknown_points += 1
            log.debug("reading for unknown point %s from %s ignored", reading.point, reading.source)
            return
        old = self._points.get(reading.point)
        value = reading.value
        if value is None and reading.quality is not Quality.GOOD and old is not None:
            value = old.value  # offline/bad without a value: keep showing the last one, flagged
        # The receive time on the store's own clock: staleness is judged against that clock, whatever clock the
        # adapter stamped the reading with (the demo's runs ahead of the wall clock).
        new = PointState(
            point=reading.point, value=value, quality=reading.quality, time=self._clock.now(), source=reading.source
        )
        self._points[reading.point] = new
        if (
            old is None
            or old.value != new.value
            or old.quality is not new.quality
            or type(old.value) is not type(new.value)
        ):
            self._bus.publish(StateChanged(point=reading.point, old=old, new=new, context=reading.context.child()))

    def get(self, point: str) -> PointState | None:
        return self._points.get(point)

    def __iter__(self) -> Iterator[PointState]:
        return iter(list(self._points.values()))

    def __len__(self) -> int:
        return len(self._points)

    def check_staleness(self, now: datetime | None = None) -> int:
        """Mark points silent for more than ``STALE_FACTOR`` × their interval as stale. Returns how many turned.

        A point that never reported turns stale once the store has been running that long, so a device that
        never spoke is visible rather than merely absent.
        """
        now = now or self._clock.now()
        turned = 0
        ctx = Context(origin="state:staleness")
        for pid, interval in self._intervals.items():
            limit = timedelta(seconds=interval * STALE_FACTOR)
            old = self._points.get(pid)
            if old is None:
                if now - self._started <= limit:
                    continue
                new = PointState(point=pid, value=None, quality=Quality.STALE, time=self._started, source="")
            elif old.quality is Quality.GOOD and now - old.time > limit:
                new = PointState(point=pid, value=old.value, quality=Quality.STALE, time=old.time, source=old.source)
            else:
                continue
            self._points[pid] = new
            self._bus.publish(StateChanged(point=pid, old=old, new=new, context=ctx))
            turned += 1
        return turned

    def counts(self) -> dict[str, int]:
        out = {q.value: 0 for q in Quality}
        for st in self._points.values():
            out[st.quality.value] += 1
        out["unknown"] = len(self._known) - len(self._points)
        return out

    # ------------------------------------------------------------------ mode
    @property
    def mode(self) -> Mode:
        return self._mode.mode

    @property
    def mode_record(self) -> ModeRecord:
        return self._mode

    def set_mode(self, mode: Mode, reason: str, *, context: Context | None = None) -> bool:
        """Switch the site mode, persist it, publish ModeChanged. False (and nothing done) if already in it."""
        old = self._mode
        if old.mode is mode:
            return False
        record = ModeRecord(mode, self._clock.now(), reason)
        self._write_mode(record)  # on disk before anyone hears of it: a crash now still resumes correctly
        self._mode = record
        log.warning("site mode %s → %s: %s", old.mode.value, mode.value, reason)
        self._bus.publish(ModeChanged(old=old.mode, new=mode, reason=reason, context=context or Context()))
        return True

    def _load_mode(self) -> ModeRecord:
        default = ModeRecord(Mode.NORMAL, self._clock.now(), "no saved mode")
        try:
            raw: Any = json.loads(self._mode_file.read_text(encoding="utf-8"))
            record = ModeRecord(Mode(raw["mode"]), datetime.fromisoformat(raw["since"]), str(raw["reason"]))
        except FileNotFoundError:
            return default
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error(
                "saved mode in %s is unreadable (%s); starting in normal mode, the file is kept for inspection",
                self._mode_file, exc,
            )  # fmt: skip
            return default
        log.info("restored site mode %s (since %s: %s)", record.mode.value, record.since.isoformat(), record.reason)
        return record

    def _write_mode(self, record: ModeRecord) -> None:
        write_atomic(self._mode_file, json.dumps(record.to_json(), ensure_ascii=False).encode())
