"""The business calendar: when the halls are open to the public.

Open on the configured weekdays between ``open`` and ``close`` local time, except on Japanese national
holidays (from the maintained ``holidays`` package: substitute holidays and 国民の休日 included), on yearly
closures such as the year-end holidays (29 Dec – 3 Jan), and on ``extra_closed`` dates; ``extra_open`` dates
open even if they would otherwise be closed (an election Sunday).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from hub.site import BusinessCalendar

__all__ = ["Calendar"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Calendar:
    def __init__(self, spec: BusinessCalendar, timezone: str) -> None:
        self.spec = spec
        self.tz = ZoneInfo(timezone)
        self._days = {_WEEKDAYS.index(d.value) for d in spec.days}
        self._extra_open = set(spec.extra_open)
        self._extra_closed = set(spec.extra_closed)

    @cached_property
    def _holidays(self) -> Any:
        if self.spec.public_holidays is None:
            return {}
        # Years expand lazily on lookup, so one object serves any date.
        return holidays.country_holidays(self.spec.public_holidays, language="ja")

    def closed_reason(self, day: date) -> str | None:
        """Why the halls are closed on ``day`` (a holiday's name, a closure), or None if it is a business day."""
        if day in self._extra_open:
            return None
        if day in self._extra_closed:
            return "closed (extra_closed)"
        name = self._holidays.get(day)
        if name:
            return str(name)
        md = f"{day.month:02d}-{day.day:02d}"
        for c in self.spec.closures:
            inside = c.start <= md <= c.end if c.start <= c.end else (md >= c.start or md <= c.end)
            if inside:
                return c.name
        if day.weekday() not in self._days:
            return "weekend" if day.weekday() >= 5 else "not a business weekday"
        return None

    def is_business_day(self, day: date) -> bool:
        return self.closed_reason(day) is None

    def is_open(self, at: datetime) -> bool:
        """Whether the halls are open at ``at`` (any timezone-aware time)."""
        local = at.astimezone(self.tz)
        return self.is_business_day(local.date()) and self.spec.open <= local.time() < self.spec.close

    def next_change(self, at: datetime) -> datetime:
        """The first moment after ``at`` where :meth:`is_open` changes (searches up to a year ahead)."""
        local = at.astimezone(self.tz)
        day = local.date()
        for _ in range(370):
            if self.is_business_day(day):
                for t in (self.spec.open, self.spec.close):
                    moment = _at(day, t, self.tz)
                    if moment > local:
                        return moment
            day += timedelta(days=1)
        raise ValueError("the calendar never opens or closes within a year")


def _at(day: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz)
