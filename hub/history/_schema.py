"""What the hub writes to InfluxDB: events → line-protocol points (docs/influxdb.md is the reference).

Tags come from the site graph and are bounded by it: site, building, floor, zone, device, point, kind, unit,
and for alarms their key, source and severity. Values, command ids, card numbers and free text are fields,
never tags, so the number of series stays that of the site model (one per point and measurement).

A point's identity in InfluxDB is measurement + tag set + timestamp: writing it again overwrites it with the
same fields. The spool's replay relies on that (docs/influxdb.md, "Nothing lost, nothing twice"). So two events
of one series must never share a timestamp: the hub's clock has microsecond resolution, and a burst can
stamp two readings of a point with the same microsecond; the later one is then moved on by a nanosecond
(never into the next microsecond a real stamp could hold, short of a thousand events in one microsecond).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from hub.events import (
    AccessDecision,
    Alarm,
    Event,
    ModeChanged,
    OccupancyChanged,
    Quality,
    Reading,
    StateChanged,
    Value,
)
from hub.graph import SiteGraph
from hub.history._lineprotocol import FieldValue, Unencodable, encode_fields, escape_tag, series_key, time_ns

__all__ = ["EVENT_TYPES", "LineSchema", "numeric", "reading_fields"]

log = logging.getLogger(__name__)

EVENT_TYPES: tuple[type[Event], ...] = (
    Reading,
    StateChanged,
    Alarm,
    AccessDecision,
    ModeChanged,
    OccupancyChanged,
)
"""The events history takes off the bus."""

_QUALITY = {q: f'"{q.value}"' for q in Quality}


def numeric(value: Value) -> float | str | None:
    """A point value as history stores it: numbers (and booleans, as 1/0) as float, text as text, None as None.

    One type per field whatever the device sent (an int one time, a float the next), so InfluxDB never
    refuses a batch for a field type conflict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except OverflowError:  # an int beyond float range: not finite for our purpose
        return float("inf")


def reading_fields(value: Value, quality: Quality) -> dict[str, FieldValue | None]:
    v = numeric(value)
    return {"value": v if isinstance(v, float) else None, "text": v if isinstance(v, str) else None,
            "quality": quality.value}  # fmt: skip


class LineSchema:
    """Turns events into lines of line protocol, with the site graph's tags. Counters say what was left out."""

    def __init__(self, graph: SiteGraph) -> None:
        self.graph = graph
        self.site = graph.site_id
        self._reading_series: dict[str, str] = {}
        self._series: dict[tuple[str, ...], str] = {}
        self._last_ns: dict[str, int] = {}
        self.nonfinite = 0  # field values left out: NaN or ±infinity
        self.unknown = 0  # events about points or zones the site model does not have
        self.unencodable = 0  # tag values line protocol cannot carry (left out of the tag set)
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ tags
    def point_tags(self, point: str) -> dict[str, str | None] | None:
        info = self.graph.points.get(point)
        if info is None:
            return None
        dev = self.graph.devices[info.device]
        return {"site": self.site, "building": dev.building, "floor": dev.floor, "zone": info.zone,
                "device": info.device, "point": point, "kind": info.kind.value, "unit": info.unit}  # fmt: skip

    def device_tags(self, device: str) -> dict[str, str | None] | None:
        dev = self.graph.devices.get(device)
        if dev is None:
            return None
        return {"site": self.site, "building": dev.building, "floor": dev.floor, "zone": dev.zone, "device": device}

    def zone_tags(self, zone: str) -> dict[str, str | None] | None:
        z = self.graph.zones.get(zone)
        if z is None:
            return None
        return {"site": self.site, "building": z.building, "floor": z.floor, "zone": zone}

    def _series_of(self, measurement: str, tags: Mapping[str, str | None]) -> str:
        """The series key, leaving out (and counting, and logging once) any tag value with no spelling."""
        try:
            return series_key(measurement, tags)
        except Unencodable:
            pass
        kept: dict[str, str | None] = {}
        for key, value in tags.items():
            try:
                if value:
                    escape_tag(value, f"tag {key}")
                kept[key] = value
            except Unencodable as exc:
                self.unencodable += 1
                if str(exc) not in self._warned:
                    self._warned.add(str(exc))
                    log.warning("history: %s; the %s tag is left out of %s points", exc, key, measurement)
        return series_key(measurement, kept)

    def series(self, measurement: str, tags: Mapping[str, str | None]) -> str:
        cache_key = (measurement, *(f"{k}={v}" for k, v in tags.items()))
        found = self._series.get(cache_key)
        if found is None:
            found = self._series[cache_key] = self._series_of(measurement, tags)
        return found

    # ------------------------------------------------------------------ events
    def _stamp(self, series: str, when: datetime) -> int:
        ns = time_ns(when)
        last = self._last_ns.get(series)
        if last is not None and last - 1000 < ns <= last:
            ns = last + 1
        self._last_ns[series] = ns
        return ns

    def _line(self, series: str, fields: Mapping[str, FieldValue | None], when: datetime) -> str | None:
        field_set, dropped = encode_fields(fields)
        self.nonfinite += dropped
        if not field_set:
            return None
        return f"{series} {field_set} {self._stamp(series, when)}"

    def _unknown(self, what: str) -> None:
        self.unknown += 1
        if what not in self._warned:
            self._warned.add(what)
            log.warning("history: %s is not in the site model; its events are not recorded", what)

    def _point_series(self, measurement: str, point: str) -> str | None:
        tags = self.point_tags(point)
        if tags is None:
            self._unknown(f"point {point}")
            return None
        return self.series(measurement, tags)

    def reading(self, ev: Reading) -> str | None:
        series = self._reading_series.get(ev.point)
        if series is None:
            found = self._point_series("reading", ev.point)
            if found is None:
                return None
            series = self._reading_series[ev.point] = found
        value = ev.value
        # The hot path: one reading per line, by far the most frequent event.
        if type(value) is float or type(value) is int:
            try:
                v = float(value)
            except OverflowError:
                v = float("nan")
            if v - v == 0.0:  # finite
                return f"{series} value={v!r},quality={_QUALITY[ev.quality]} {self._stamp(series, ev.time)}"
        return self._line(series, reading_fields(value, ev.quality), ev.time)

    def state_changed(self, ev: StateChanged) -> str | None:
        series = self._point_series("state_change", ev.point)
        if series is None:
            return None
        fields = reading_fields(ev.new.value, ev.new.quality)
        fields["previous_quality"] = ev.old.quality.value if ev.old is not None else None
        return self._line(series, fields, ev.time)

    def alarm(self, ev: Alarm) -> str | None:
        src = ev.source
        tags = self.point_tags(src) or self.device_tags(src) or self.zone_tags(src) or {"site": self.site}
        tags.pop("kind", None)
        tags.pop("unit", None)
        tags.update(key=ev.key, source=ev.source, severity=ev.severity)
        return self._line(self.series("alarm", tags), {"active": ev.active, "message": ev.message}, ev.time)

    def access(self, ev: AccessDecision) -> str | None:
        tags = self.zone_tags(ev.zone)
        if tags is None:
            tags = self.device_tags(ev.door)
        if tags is None:
            self._unknown(f"door {ev.door} / zone {ev.zone}")
            return None
        tags["device"] = ev.door
        fields: dict[str, FieldValue | None] = {"granted": ev.granted, "card": ev.card, "reason": ev.reason}
        return self._line(self.series("access", tags), fields, ev.time)

    def mode(self, ev: ModeChanged) -> str | None:
        fields: dict[str, FieldValue | None] = {"mode": ev.new.value, "previous": ev.old.value, "reason": ev.reason}
        return self._line(self.series("mode", {"site": self.site}), fields, ev.time)

    def occupancy(self, ev: OccupancyChanged) -> str | None:
        tags = self.zone_tags(ev.zone)
        if tags is None:
            self._unknown(f"zone {ev.zone}")
            return None
        fields: dict[str, FieldValue | None] = {
            "occupied": None if ev.occupied is None else int(ev.occupied),
            "count": ev.count, "capacity": ev.capacity, "quality": ev.quality.value,
        }  # fmt: skip
        return self._line(self.series("occupancy", tags), fields, ev.time)

    def line(self, ev: Event) -> str | None:
        """The line for one event, or None if it is not recorded (unknown point, nothing finite to write)."""
        if type(ev) is Reading:
            return self.reading(ev)
        if isinstance(ev, StateChanged):
            return self.state_changed(ev)
        if isinstance(ev, OccupancyChanged):
            return self.occupancy(ev)
        if isinstance(ev, Alarm):
            return self.alarm(ev)
        if isinstance(ev, AccessDecision):
            return self.access(ev)
        if isinstance(ev, ModeChanged):
            return self.mode(ev)
        if isinstance(ev, Reading):
            return self.reading(ev)
        return None

    def lines(self, events: Iterable[Event]) -> list[str]:
        out = []
        for ev in events:
            line = self.line(ev)
            if line is not None:
                out.append(line)
        return out

    def gap(self, points: int, first_ns: int, last_ns: int, reason: str) -> str:
        """A ``history_gap`` point: data from ``first_ns`` to ``last_ns`` that will never reach the database.

        Stamped with the gap's start, so a gap that grew is written again over its earlier version."""
        series = self.series("history_gap", {"site": self.site, "reason": reason})
        fields, _ = encode_fields({"points": points, "end": last_ns, "seconds": (last_ns - first_ns) / 1e9})
        return f"{series} {fields} {first_ns}"

    def stats(self, counters: Mapping[str, int], when: datetime) -> str | None:
        """A ``history_stats`` point with the writer's counters (Grafana's view of history itself)."""
        return self._line(self.series("history_stats", {"site": self.site}), dict(counters), when)
