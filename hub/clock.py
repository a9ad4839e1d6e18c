"""Time as the hub sees it. Components take a :class:`Clock` so tests can run schedules, backoff and
staleness on a clock they control instead of sleeping for real (BACpypes3 ``tests/clocked_test.py``)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScaledClock:
    """Time that starts at ``start`` and runs ``speed`` times faster than real time (the demo's clock).

    Everything sharing it (the simulated building, the calendar automation, staleness, backoff) agrees on
    what time it is, so a demo started at 10:00 on a business day shows a working morning in minutes.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def monotonic(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.speed)
