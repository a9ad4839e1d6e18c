"""The NUT bridge: polls the UPSes behind one upsd, publishes their points, and raises and clears alarms.

One connection per upsd; each poll is one ``LIST VAR <ups>`` per UPS, every ``interval`` seconds (the smallest
interval of the UPS points, unless ``BMHUB_NUT_POLL_INTERVAL`` says otherwise). Numbers arrive as int or float,
``ups.status`` as the raw text, all stamped with the hub's clock. Reconnecting is the supervisor's job: a
lost or refused connection raises ``AdapterNotReady`` (the UPS points turn offline, logged once), refused
credentials ``AdapterAuthError``.

Alarms follow ``ups.status`` (see :mod:`adapters.nut._status`), each raised once when its flag appears and
cleared once when it goes (``nut:<device>:<condition>``):

===================  ========  ==================================================================
condition            severity  raised while
===================  ========  ==================================================================
``on-battery``       critical  OB, also with a contradictory OL (the safe reading); cleared only by a
                               status with OL and without OB: "back on line", power is back
``low-battery``      critical  LB
``replace-battery``  warning   RB
``overload``         warning   OVER
``driver-lost``      critical  upsd answers ERR DRIVER-NOT-CONNECTED or DATA-STALE; the points are
                               offline meanwhile, and the other alarms stay as they were
===================  ========  ==================================================================

A status that says nothing (empty, or only ``WAIT`` while a driver starts) changes no alarm.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from adapters.nut._client import NutClient, NutConnectionError, NutResponseError
from adapters.nut._settings import NutSettings
from adapters.nut._status import describe_status, parse_status
from hub.adapter import AdapterContext
from hub.errors import AdapterAuthError, AdapterNotReady, ConfigError, Problem
from hub.events import Alarm, Context, Quality, Reading, Value
from hub.graph import DeviceInfo
from hub.site import NutDevice, NutPoint, ValueType, value_type

__all__ = ["NutBridge"]

log = logging.getLogger(__name__)

_DEFAULT_INTERVAL = 30.0  # seconds, when no point of the UPSes states an interval
_DRIVER_LOST = {
    "DRIVER-NOT-CONNECTED": "upsd has lost its driver for this UPS",
    "DATA-STALE": "the driver's data is stale (the UPS stopped answering it)",
}
_AUTH_CODES = frozenset({"ACCESS-DENIED", "USERNAME-REQUIRED", "PASSWORD-REQUIRED", "INVALID-USERNAME",
                         "INVALID-PASSWORD"})  # fmt: skip
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"1", "yes", "on", "true", "enabled"})
_FALSE = frozenset({"0", "no", "off", "false", "disabled"})

Severity = Literal["info", "warning", "critical"]


def _number(text: str) -> int | float | None:
    """``"100"`` → 100, ``"230.5"`` → 230.5; None for anything else (including nan and inf)."""
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class _Condition:
    flag: str
    key: str
    severity: Severity
    raised: str
    cleared: str
    shown: tuple[str, ...] = ()  # variables quoted in the raising message


_BATTERY = ("battery.charge", "battery.runtime")
_CONDITIONS = (
    _Condition("OB", "on-battery", "critical", "is on battery: mains power lost", "is back on line: power is back",
               _BATTERY),
    _Condition("LB", "low-battery", "critical", "reports a low battery: it may shut down soon",
               "no longer reports a low battery", _BATTERY),
    _Condition("RB", "replace-battery", "warning", "asks for its battery to be replaced",
               "no longer asks for a battery replacement"),
    _Condition("OVER", "overload", "warning", "is overloaded", "is no longer overloaded", ("ups.load",)),
)  # fmt: skip


@dataclass(slots=True)
class _Point:
    id: str
    var: str
    type: ValueType


@dataclass(eq=False)
class _Ups:
    device: str
    name: str  # the UPS name on upsd
    label: str  # for people: "Machine-room UPS (ch-4f-machine-room-ups-1)"
    points: list[_Point]
    status: str | None = None
    flags: frozenset[str] = frozenset()
    alarms: set[str] = field(default_factory=set)  # condition keys currently raised
    refused: str | None = None  # the ERR code while upsd refuses to list it
    offline: bool = False  # its points were last published offline
    contradictory: bool = False
    on_battery_since: float | None = None  # clock.monotonic()
    polls: int = 0
    errors: int = 0
    last_error: str | None = None
    unreadable: set[str] = field(default_factory=set)  # points whose var was missing or unreadable (logged once)


class NutBridge:
    """Every UPS of the site behind the upsd at ``host:port``: a supervised service."""

    def __init__(
        self, ctx: AdapterContext, host: str, port: int, devices: Sequence[DeviceInfo], settings: NutSettings
    ) -> None:
        self.name = f"nut:{host}:{port}"
        self.host, self.port = host, port
        self._ctx = ctx
        self._settings = settings
        self._ups: list[_Ups] = []
        intervals: list[float] = []
        for dev in devices:
            if not isinstance(dev.spec, NutDevice):
                raise TypeError(f"device {dev.id} is a {dev.protocol} device, not a NUT one")
            points = []
            for spec, pid in zip(dev.type.points, dev.points, strict=True):
                assert isinstance(spec, NutPoint)  # a NUT device type has NUT points only
                points.append(_Point(pid, spec.var, value_type(spec.kind)))
                if spec.interval is not None:
                    intervals.append(spec.interval)
            label = f"{dev.spec.name} ({dev.id})" if dev.spec.name else dev.id
            self._ups.append(_Ups(dev.id, dev.spec.ups, label, points))
        self.interval: float = settings.poll_interval or min(intervals, default=_DEFAULT_INTERVAL)
        self.connected = False
        self.connects = 0
        self.polls = 0
        self.errors = 0
        self.last_error: str | None = None
        self._down_since: float | None = None  # clock.monotonic() since upsd became unreachable

    @property
    def where(self) -> str:
        return f"upsd {self.host}:{self.port}"

    # ------------------------------------------------------------------ service
    async def run(self, ready: Callable[[], None]) -> None:
        s = self._settings
        if (s.username is None) != (s.password is None):
            raise ConfigError([Problem("environment", None, "BMHUB_NUT_USERNAME, BMHUB_NUT_PASSWORD",
                                       "set both or neither")])  # fmt: skip
        clock = self._ctx.clock
        try:
            async with NutClient(self.host, self.port, timeout=s.timeout) as client:
                if s.username is not None and s.password is not None:
                    await self._authenticate(client, s.username, s.password.get_secret_value())
                self.connects += 1
                self.connected = True
                self._reachable()
                started = clock.monotonic()
                await self._poll_all(client)
                ready()  # after the first full poll: the points have values (or say why not)
                while True:
                    await clock.sleep(max(0.0, self.interval - (clock.monotonic() - started)))
                    started = clock.monotonic()
                    await self._poll_all(client)
        except NutConnectionError as exc:
            self._unreachable(str(exc))
            raise AdapterNotReady(str(exc)) from exc
        except AdapterAuthError as exc:
            self.last_error = str(exc)
            for ups in self._ups:
                self._offline(ups, Context(origin="adapter:nut"))
            raise
        finally:
            self.connected = False

    async def _authenticate(self, client: NutClient, username: str, password: str) -> None:
        try:
            await client.authenticate(username, password)
        except NutResponseError as exc:
            if exc.code in _AUTH_CODES:
                raise AdapterAuthError(f"{self.where} refused user {username!r}: ERR {exc.code}") from exc
            raise AdapterNotReady(f"{self.where}: {exc}") from exc

    def _reachable(self) -> None:
        if self._down_since is not None:
            away = self._ctx.clock.monotonic() - self._down_since
            log.info("%s reachable again after %.0fs", self.where, away)
            self._down_since = None

    def _unreachable(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason
        if self._down_since is None:
            self._down_since = self._ctx.clock.monotonic()
            log.warning("upsd unreachable, %d UPS offline (%s): %s", len(self._ups),
                        ", ".join(u.name for u in self._ups), reason)  # fmt: skip
        ctx = Context(origin="adapter:nut")
        for ups in self._ups:
            self._offline(ups, ctx)

    # ------------------------------------------------------------------ polling
    async def _poll_all(self, client: NutClient) -> None:
        self.polls += 1
        for ups in self._ups:
            ups.polls += 1
            try:
                values = await client.list_var(ups.name)
            except NutResponseError as exc:
                if exc.code in _AUTH_CODES:
                    user = self._settings.username
                    hint = f" (as user {user!r})" if user else " (set BMHUB_NUT_USERNAME and BMHUB_NUT_PASSWORD)"
                    raise AdapterAuthError(f"{self.where} refused LIST VAR {ups.name}: ERR {exc.code}{hint}") from exc
                self._refused(ups, exc.code)
            else:
                self._apply(ups, values)

    def _apply(self, ups: _Ups, values: Mapping[str, str]) -> None:
        """Publish the readings of one UPS's ``LIST VAR`` answer and act on its status."""
        ctx = Context(origin="adapter:nut")
        if ups.refused is not None:
            log.info("%s: %s lists %s again", ups.label, self.where, ups.name)
            if "driver-lost" in ups.alarms:
                self._alarm(ups, "driver-lost", "info", f"{ups.label}: upsd has its driver's data again", False, ctx)
            ups.refused = None
        ups.offline = False
        publish = self._ctx.bus.publish
        now = self._ctx.clock.now()  # the hub's clock, as staleness reads it (a demo runs it faster)
        for p in ups.points:
            value, quality = self._convert(ups, p, values.get(p.var))
            publish(Reading(point=p.id, value=value, quality=quality, source="nut", context=ctx, time=now))
        self._on_status(ups, values, ctx)

    def _convert(self, ups: _Ups, p: _Point, raw: str | None) -> tuple[Value, Quality]:
        if raw is None:
            problem = f"upsd does not list {p.var}"
        elif p.type == "text":
            ups.unreadable.discard(p.id)
            return raw, Quality.GOOD
        elif p.type == "number":
            number = _number(raw)
            if number is not None:
                ups.unreadable.discard(p.id)
                return number, Quality.GOOD
            problem = f"{p.var} = {raw!r} is not a number"
        else:
            word = raw.strip().lower()
            if word in _TRUE or word in _FALSE:
                ups.unreadable.discard(p.id)
                return word in _TRUE, Quality.GOOD
            problem = f"{p.var} = {raw!r} is not a yes/no value"
        if p.id not in ups.unreadable:
            ups.unreadable.add(p.id)
            log.warning("%s: point %s is bad: %s", ups.label, p.id, problem)
        return None, Quality.BAD

    def _refused(self, ups: _Ups, code: str) -> None:
        ups.errors += 1
        self.errors += 1
        ups.last_error = self.last_error = f"LIST VAR {ups.name}: ERR {code}"
        ctx = Context(origin="adapter:nut")
        if ups.refused != code:
            meaning = _DRIVER_LOST.get(code, f"upsd answers ERR {code} for {ups.name}")
            log.warning("%s: %s (%s); its points are offline", ups.label, meaning, self.where)
            if code in _DRIVER_LOST and "driver-lost" not in ups.alarms:
                message = f"{ups.label}: {meaning} (ERR {code}); its state is unknown"
                self._alarm(ups, "driver-lost", "critical", message, True, ctx)
        ups.refused = code
        self._offline(ups, ctx)

    def _offline(self, ups: _Ups, ctx: Context) -> None:
        if ups.offline:
            return
        ups.offline = True
        publish, now = self._ctx.bus.publish, self._ctx.clock.now()
        for p in ups.points:
            publish(Reading(point=p.id, value=None, quality=Quality.OFFLINE, source="nut", context=ctx, time=now))

    # ------------------------------------------------------------------ status and alarms
    def _on_status(self, ups: _Ups, values: Mapping[str, str], ctx: Context) -> None:
        text = values.get("ups.status")
        flags = parse_status(text)
        ups.status, ups.flags = text, flags
        if not flags - {"WAIT"}:
            return  # says nothing: keep the alarms as they are
        contradictory = {"OL", "OB"} <= flags
        if contradictory and not ups.contradictory:
            log.warning("%s reports both on line and on battery (ups.status %r): taken as on battery", ups.label, text)
        ups.contradictory = contradictory
        for c in _CONDITIONS:
            if c.flag in flags and c.key not in ups.alarms:
                shown = "".join(f", {var} {values[var]}" for var in c.shown if var in values)
                message = f"{ups.label} {c.raised} (ups.status {text!r}{shown})"
                if c.key == "on-battery":
                    ups.on_battery_since = self._ctx.clock.monotonic()
                self._alarm(ups, c.key, c.severity, message, True, ctx)
            elif c.flag not in flags and c.key in ups.alarms:
                if c.key == "on-battery" and "OL" not in flags:
                    continue  # not on battery, but not on line either (OFF, a bare CHRG ...): not yet power back
                message = f"{ups.label} {c.cleared} (ups.status {text!r}{self._since(ups, c)})"
                self._alarm(ups, c.key, "info", message, False, ctx)

    def _since(self, ups: _Ups, c: _Condition) -> str:
        if c.key != "on-battery" or ups.on_battery_since is None:
            return ""
        seconds = self._ctx.clock.monotonic() - ups.on_battery_since
        ups.on_battery_since = None
        return f", after {seconds:.0f}s on battery"

    def _alarm(self, ups: _Ups, key: str, severity: Severity, message: str, active: bool, ctx: Context) -> None:
        if active:
            ups.alarms.add(key)
            log.warning("%s", message)
        else:
            ups.alarms.discard(key)
            log.info("%s", message)
        self._ctx.bus.publish(Alarm(key=f"nut:{ups.device}:{key}", source=ups.device, severity=severity,
                                    message=message, active=active, context=ctx.child("adapter:nut"),
                                    time=self._ctx.clock.now()))  # fmt: skip

    # ------------------------------------------------------------------ status for people
    def details(self) -> dict[str, Any]:
        return {
            "upsd": f"{self.host}:{self.port}",
            "user": self._settings.username,
            "connected": self.connected,
            "connects": self.connects,
            "interval": self.interval,
            "polls": self.polls,
            "errors": self.errors,
            "last_error": self.last_error,
            "ups": {
                u.device: {
                    "ups": u.name,
                    "status": u.status,
                    "flags": sorted(u.flags),
                    "meaning": describe_status(u.flags),
                    "alarms": sorted(u.alarms),
                    "offline": u.offline,
                    "refused": u.refused,
                    "polls": u.polls,
                    "errors": u.errors,
                    "last_error": u.last_error,
                }
                for u in self._ups
            },
        }
