"""Switch the site between ``normal`` and ``after-hours`` by the business calendar.

Never overrides ``emergency`` or ``drill``: those end only when whoever started them says so, and the
emergency automation then hands back to the calendar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from hub.calendar import Calendar
from hub.clock import Clock
from hub.events import Context, Mode
from hub.state import StateStore

__all__ = ["OpeningHours"]

log = logging.getLogger(__name__)

_RECHECK = 60.0  # wake at least this often, so a wall-clock jump (NTP, DST-free but still) is caught


class OpeningHours:
    name = "opening-hours"

    def __init__(self, state: StateStore, calendar: Calendar, clock: Clock) -> None:
        self._state = state
        self._calendar = calendar
        self._clock = clock

    def apply(self, now: datetime) -> Mode | None:
        """Set the mode the calendar wants at ``now``; returns the mode set, or None if nothing changed."""
        if self._state.mode in (Mode.EMERGENCY, Mode.DRILL):
            return None
        local = now.astimezone(self._calendar.tz)
        if self._calendar.is_open(now):
            want, reason = Mode.NORMAL, f"open {self._calendar.spec.open:%H:%M}-{self._calendar.spec.close:%H:%M}"
        else:
            closed = self._calendar.closed_reason(local.date())
            want, reason = Mode.AFTER_HOURS, f"closed ({closed})" if closed else "outside opening hours"
        changed = self._state.set_mode(
            want, f"business calendar: {reason}", context=Context(origin=f"automation:{self.name}")
        )
        return want if changed else None

    async def run(self, ready: Callable[[], None]) -> None:
        self.apply(self._clock.now())
        ready()
        while True:
            now = self._clock.now()
            wait = (self._calendar.next_change(now) - now).total_seconds()
            await self._clock.sleep(min(max(wait, 0.0) + 0.001, _RECHECK))
            self.apply(self._clock.now())
