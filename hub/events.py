"""The events that cross the bus: one frozen dataclass per type.

Every event carries a :class:`Context`. An automation or adapter acting on an event passes
``parent=event.context`` so the audit log and the API can say *why* a damper moved: the command's context
points to the reading that triggered it, and so on up to an operator or an alert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "AccessDecision",
    "Alarm",
    "Alert",
    "Command",
    "CommandResult",
    "Context",
    "Event",
    "Mode",
    "ModeChanged",
    "OccupancyChanged",
    "PointState",
    "Quality",
    "Reading",
    "StateChanged",
    "Value",
    "utcnow",
]

Value = bool | int | float | str | None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Context:
    """Who or what caused an event. ``parent_id`` links to the context of the event that led to it."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    origin: str | None = None  # "adapter:mqtt", "automation:energy", "user:alice", "alert:jma"

    def child(self, origin: str | None = None) -> Context:
        """A new context caused by this one."""
        return Context(parent_id=self.id, origin=origin)


class Quality(StrEnum):
    """How far a point's value can be trusted."""

    GOOD = "good"
    STALE = "stale"  # no reading within twice the point's expected interval
    OFFLINE = "offline"  # its device is unreachable
    BAD = "bad"  # the device or payload reported something unusable


class Mode(StrEnum):
    """The site's operating mode."""

    NORMAL = "normal"
    AFTER_HOURS = "after-hours"
    EMERGENCY = "emergency"
    DRILL = "drill"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    context: Context = field(default_factory=Context)
    time: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading(Event):
    """A value reported by a device for one point (``device.point``), whether or not it changed."""

    point: str
    value: Value
    quality: Quality = Quality.GOOD
    source: str = ""  # adapter that produced it


@dataclass(frozen=True, slots=True, kw_only=True)
class PointState:
    """The latest known state of one point."""

    point: str
    value: Value
    quality: Quality
    time: datetime  # when the hub received it, on the hub's clock (staleness is measured from here)
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    """A point's value or quality changed (a reading that repeats the same value is not a change)."""

    point: str
    old: PointState | None
    new: PointState


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Event):
    """A request to write ``value`` to a point. ``priority`` is the BACnet priority (1-16) where it applies."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    point: str
    value: Value
    priority: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult(Event):
    command_id: str
    point: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Alarm(Event):
    """A condition someone must know about, raised (``active``) and later cleared by the same ``key``."""

    key: str  # stable identity, e.g. "ups:dc-ups-a:on-battery"
    source: str  # device, point or zone id
    severity: Literal["info", "warning", "critical"]
    message: str
    active: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(Event):
    """An external warning (JMA XML, CAP, a J-ALERT contact) already parsed and filtered for this site."""

    feed: str  # "jma", "cap", "contact"
    kind: str  # "eew", "earthquake", "tsunami", "weather" ...
    status: Literal["actual", "drill", "test"]
    info_type: Literal["issued", "corrected", "cancelled"]
    event_id: str
    serial: str = ""
    headline: str = ""
    severity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessDecision(Event):
    card: str
    door: str  # device id
    zone: str
    granted: bool
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeChanged(Event):
    old: Mode
    new: Mode
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupancyChanged(Event):
    """A zone's occupancy as the booking app sees it, from the zone's occupancy sensors."""

    zone: str
    occupied: bool | None  # None: no sensor has reported yet
    count: int | None  # people counted by the sensors, if they count
    capacity: int | None
    since: datetime  # when ``occupied`` last flipped
    quality: Quality  # the worst quality among the zone's occupancy points
