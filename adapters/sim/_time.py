"""Simulated time, shared by the simulators: it starts at ``start`` on the first run and runs ``speed`` times
faster than ``clock`` (the real clock; a ScaledClock here would apply the speed twice)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hub.calendar import Calendar
from hub.clock import Clock, SystemClock
from hub.graph import SiteGraph

__all__ = ["SimTime"]


class SimTime:
    def __init__(self, graph: SiteGraph, *, speed: float, start: datetime | None, clock: Clock | None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.speed = speed
        self.clock = clock or SystemClock()
        self.start = start or self.clock.now()
        self.calendar = Calendar(graph.model.calendar, graph.model.site.timezone)
        self._t0: float | None = None  # clock.monotonic() at the first run: simulated time 0

    def begin(self) -> None:
        """Start the simulated clock (once: a reconnect continues where it was)."""
        if self._t0 is None:
            self._t0 = self.clock.monotonic()

    def now(self) -> float:
        """Simulated seconds since the first run (0 before it)."""
        return 0.0 if self._t0 is None else (self.clock.monotonic() - self._t0) * self.speed

    def local(self, t: float) -> datetime:
        """Simulated time ``t`` (seconds since the start) in the site's timezone."""
        return (self.start + timedelta(seconds=t)).astimezone(self.calendar.tz)
