"""What every polling adapter (Modbus, BACnet) does the same way when a field device stops or starts answering.

A device that does not answer turns ``unreachable``: all its points are published ``offline`` and one alarm
``<protocol>:<device>:unreachable`` is raised; when it answers again the alarm clears. Each transition is logged
once, and a round in which many devices go (a gateway or a switch) is one log line, not one per device. An
error that repeats (a refused read, a value the codec cannot hold) is logged when it starts and when it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from hub.adapter import AdapterContext
from hub.events import Alarm, Context, Quality, Reading, Value

__all__ = ["DeviceHealth", "DeviceState", "Out", "Tracked"]

_NAMES_SHOWN = 5  # devices named in one log line; the rest are counted

Out = list[tuple[str, Value, Quality]]
"""Point values to publish: (point id, value, quality)."""


class DeviceState(StrEnum):
    UNKNOWN = "unknown"  # not polled yet
    OK = "ok"
    ERROR = "error"  # answers, but refused some reads or held unusable values
    UNREACHABLE = "unreachable"


@dataclass(eq=False)
class Tracked:
    """The reachability bookkeeping of one device; adapters subclass it with their own fields."""

    id: str
    label: str  # "unit 3 at 127.0.4.1:5020", "device 100101 at 127.0.1.1:47808": says where it is
    points: tuple[str, ...]
    state: DeviceState = DeviceState.UNKNOWN
    errors: int = 0
    last_error: str | None = None
    failing: dict[str, str] = field(default_factory=dict)  # read or point → error being reported (logged once)


def _names(devices: Sequence[Tracked]) -> str:
    shown = ", ".join(d.id for d in devices[:_NAMES_SHOWN])
    return shown + (f" and {len(devices) - _NAMES_SHOWN} more" if len(devices) > _NAMES_SHOWN else "")


class DeviceHealth:
    """Publishes readings, unreachable/back alarms and the log lines for one adapter's devices."""

    def __init__(self, ctx: AdapterContext, protocol: str, title: str, log: logging.Logger) -> None:
        """``protocol`` names sources and alarm keys ("modbus"); ``title`` starts messages ("Modbus device")."""
        self._ctx = ctx
        self.protocol = protocol
        self.origin = f"adapter:{protocol}"
        self._title = title
        self._log = log

    def alarm_key(self, dev: Tracked) -> str:
        return f"{self.protocol}:{dev.id}:unreachable"

    def publish(self, out: Out, ctx: Context | None = None) -> None:
        publish = self._ctx.bus.publish
        ctx = ctx or Context(origin=self.origin)
        now = self._ctx.clock.now()
        for point, value, quality in out:
            publish(Reading(point=point, value=value, quality=quality, source=self.protocol, context=ctx, time=now))

    def offline(self, dev: Tracked, reason: str) -> bool:
        """Mark ``dev`` unreachable: points offline, alarm raised. False if it already was."""
        if dev.state is DeviceState.UNREACHABLE:
            return False
        dev.state = DeviceState.UNREACHABLE
        dev.failing.clear()
        ctx = Context(origin=self.origin)
        self.publish([(p, None, Quality.OFFLINE) for p in dev.points], ctx)
        self._alarm(dev, True, f"{self._title} {dev.id} ({dev.label}) is not answering: {reason}", ctx)
        return True

    def answered(self, dev: Tracked, out: Out) -> bool:
        """``dev`` answered a poll: set its state from ``out``; clear its alarm if it was unreachable (True)."""
        back = dev.state is DeviceState.UNREACHABLE
        if back:
            self._alarm(dev, False, f"{self._title} {dev.id} ({dev.label}) answers again", Context(origin=self.origin))
        dev.state = DeviceState.ERROR if any(q is Quality.BAD for _, _, q in out) else DeviceState.OK
        return back

    def _alarm(self, dev: Tracked, active: bool, message: str, ctx: Context) -> None:
        self._ctx.bus.publish(Alarm(key=self.alarm_key(dev), source=dev.id, severity="warning", active=active,
                                    message=message, context=ctx, time=self._ctx.clock.now()))  # fmt: skip

    def failed(self, dev: Tracked, key: str, error: str) -> None:
        dev.errors += 1
        dev.last_error = error
        if dev.failing.get(key) != error:
            dev.failing[key] = error
            self._log.warning("%s; its point(s) are bad until it reads again", error)

    def cleared(self, dev: Tracked, key: str) -> None:
        if dev.failing.pop(key, None) is not None:
            self._log.info("%s %s: %s works again", self._title, dev.id, key)

    def log_changes(self, down: Sequence[tuple[Tracked, str]], up: Sequence[Tracked], group: str) -> None:
        """One log line for the devices that went and one for those back; ``group`` says where ("gateway X")."""
        if len(down) == 1:
            dev, reason = down[0]
            self._log.warning("%s %s (%s) is not answering: %s; its points are offline", self._title, dev.id,
                              dev.label, reason)  # fmt: skip
        elif down:
            reasons = sorted({r for _, r in down})
            self._log.warning("%s: %d devices not answering (%s); their points are offline: %s", group, len(down),
                              "; ".join(reasons[:3]), _names([d for d, _ in down]))  # fmt: skip
        if len(up) == 1:
            self._log.info("%s %s (%s) answers again", self._title, up[0].id, up[0].label)
        elif up:
            self._log.info("%s: %d devices answer again: %s", group, len(up), _names(up))
