"""Business calendar against the published list of Japanese national holidays."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from hub.calendar import Calendar
from hub.site import load_site
from tests.conftest import SHARED, SITE_MODEL

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture(scope="module")
def cal() -> Calendar:
    model = load_site(SITE_MODEL)
    return Calendar(model.calendar, model.site.timezone)


def holidays_from_sample() -> list[date]:
    path = SHARED / "samples" / "holidays" / "jp_national_holidays_2026_2027.csv"
    with path.open(encoding="utf-8") as f:
        return [date.fromisoformat(row["date"]) for row in csv.DictReader(f)]


def test_every_national_holiday_2026_2027_is_closed(cal: Calendar) -> None:
    days = holidays_from_sample()
    assert len(days) == 35
    for d in days:
        assert not cal.is_business_day(d), d
    # and a sample of ordinary weekdays in the same years is open
    workdays = [date(2026, 1, 5) + timedelta(days=i) for i in range(0, 700, 7)]
    for d in workdays:
        if d not in days and not (d.month == 12 and d.day >= 29) and not (d.month == 1 and d.day <= 3):
            assert cal.is_business_day(d), d


def test_year_end_closure_wraps_the_new_year(cal: Calendar) -> None:
    for d in (date(2026, 12, 28), date(2027, 1, 4)):
        assert cal.is_business_day(d)
    for d in (date(2026, 12, 29), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 3)):
        assert not cal.is_business_day(d)
    assert cal.closed_reason(date(2026, 12, 30)) == "year-end closure"
    assert cal.closed_reason(date(2026, 9, 22)) == "国民の休日"  # citizens' holiday between two holidays


def test_opening_hours_edges(cal: Calendar) -> None:
    def at(h: int, m: int) -> datetime:
        return datetime(2026, 11, 24, h, m, tzinfo=TOKYO)  # a Tuesday

    assert not cal.is_open(at(8, 29))
    assert cal.is_open(at(8, 30))
    assert cal.is_open(at(17, 14))
    assert not cal.is_open(at(17, 15))
    assert not cal.is_open(datetime(2026, 11, 28, 10, 0, tzinfo=TOKYO))  # Saturday


def test_next_change_skips_closed_days(cal: Calendar) -> None:
    friday_evening = datetime(2026, 12, 25, 18, 0, tzinfo=TOKYO)
    # 26-27 weekend, 28 Monday open; then 29 Dec - 3 Jan closed
    assert cal.next_change(friday_evening) == datetime(2026, 12, 28, 8, 30, tzinfo=TOKYO)
    assert cal.next_change(datetime(2026, 12, 28, 9, 0, tzinfo=TOKYO)) == datetime(2026, 12, 28, 17, 15, tzinfo=TOKYO)
    assert cal.next_change(datetime(2026, 12, 28, 17, 15, tzinfo=TOKYO)) == datetime(2027, 1, 4, 8, 30, tzinfo=TOKYO)


def test_extra_open_and_closed_dates() -> None:
    model = load_site(SITE_MODEL)
    spec = model.calendar.model_copy(update={"extra_open": [date(2026, 11, 29)],
                                             "extra_closed": [date(2026, 11, 30)]})  # fmt: skip
    cal = Calendar(spec, "Asia/Tokyo")
    assert cal.is_business_day(date(2026, 11, 29))  # a Sunday opened for an election
    assert not cal.is_business_day(date(2026, 11, 30))
