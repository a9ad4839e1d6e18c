"""The BACnet/IP bridge: one bacpypes3 application for the hub, every BACnet device of the site model.

Reading. Each device is polled every ``interval`` of its points (the smallest; ``default_interval`` when none
has one) with ReadPropertyMultiple: every point's property and its object's status flags, up to
``max_objects`` objects a request, so an AHU of 24 points is two requests. A device that rejects
ReadPropertyMultiple is read with ReadProperty, point by point, from then on (logged once).

Points with ``cov: true`` are also subscribed to (SubscribeCOV, confirmed unless ``cov_confirmed`` is off),
renewed at half their ``cov_lifetime``: a change reaches the bus as soon as the device reports it, and the
poll keeps them fresh and catches a device that restarted and forgot its subscriptions. Where a device
refuses (Reject or Error of class services) the point is ``polled``; the bridge asks again after ``cov_retry``.
:meth:`BacnetBridge.point_modes` says which points are ``cov`` and which ``polled``; ``bmhub status`` shows it.

Quality: status flags ``fault`` or ``out-of-service`` make a reading ``bad``; an object the device does not
have, a value the codec cannot map: ``bad``, logged once. No answer (after ``apdu_retries``): the device is
``unreachable``, its points ``offline``, one alarm ``bacnet:<device>:unreachable`` (see adapters/_devices.py);
when it answers again the alarm clears and its subscriptions are made again.

Writing. A ``Command`` writes the point's property at the command's priority (``default_priority`` when it names
none; 6 is reserved for minimum on/off and refused); ``value: None`` relinquishes that priority (writes Null).
After the write the bridge reads back the present value and the priority array: the ``CommandResult`` says
what the point holds now and, if a higher priority overrides the write, who holds it.
:meth:`BacnetBridge.priority_array` reads the whole array and names the hub's own commands in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bacpypes3.apdu import SubscribeCOVRequest
from bacpypes3.primitivedata import Null, ObjectIdentifier

from adapters._devices import DeviceHealth, DeviceState, Out, Tracked
from adapters.bacnet._codec import CodecError, decode, encode, quality, status_text
from adapters.bacnet._settings import BacnetSettings
from adapters.bacnet._stack import (
    ErrorRejectAbortNack,
    HubApplication,
    describe_error,
    is_no_response,
    is_unsupported_service,
    parse_address,
    property_type,
    to_address,
)
from hub.adapter import AdapterContext, PriorityArray, PrioritySlot
from hub.errors import AdapterNotReady, CommandRejected, DeviceError
from hub.events import Command, CommandResult, Quality, Value
from hub.graph import DeviceInfo
from hub.site import BacnetDevice, BacnetDeviceType, BacnetPoint

__all__ = ["BacnetBridge", "PointMode"]

log = logging.getLogger(__name__)

PointMode = Literal["cov", "polled", "pending"]
_RESERVED_PRIORITY = 6  # minimum on/off (ASHRAE 135 clause 19.2.3)
_LOG_BATCH = 0.5  # seconds: devices going or coming back within this are one log line
_ATTENTION_SHOWN = 50  # devices detailed in details(); the rest are counted
_COV_AGAIN = 10.0  # seconds before subscribing again after a device did not answer a SubscribeCOV


class _NoAnswer(AdapterNotReady):
    """The device did not answer."""


@dataclass(eq=False)
class _Point:
    id: str
    spec: BacnetPoint
    oid: ObjectIdentifier
    prop: str
    mode: PointMode = "pending"
    spid: int | None = None  # subscriber process identifier of its COV subscription
    cov_error: str | None = None
    flags: Any = None
    raw: Any = None
    queued: bool = False


@dataclass(eq=False, kw_only=True)
class _Device(Tracked):
    instance: int
    where: str  # "127.0.1.1:47808"; "" until Who-Is finds a device that has no address in the model
    points_of: list[_Point]
    interval: float
    address: Any = None  # bacpypes3 Address
    next_poll: float = 0.0
    rpm: bool = True
    polls: int = 0
    requests: int = 0
    notifications: int = 0
    last_poll_ms: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reachable: asyncio.Event = field(default_factory=asyncio.Event)  # it answered its last poll
    resubscribe: asyncio.Event = field(default_factory=asyncio.Event)  # it came back: subscribe now

    def details(self) -> dict[str, Any]:
        modes = {p.id: p.mode for p in self.points_of}
        return {
            "instance": self.instance, "address": self.where or None, "state": self.state.value,
            "interval": self.interval, "read": "rpm" if self.rpm else "read-property", "polls": self.polls,
            "requests": self.requests, "notifications": self.notifications, "errors": self.errors,
            "last_error": self.last_error, "last_poll_ms": self.last_poll_ms,
            "cov": sum(m == "cov" for m in modes.values()),
            "polled": sorted(p for p, m in modes.items() if m == "polled"),  # the exception: listed
        }  # fmt: skip


@dataclass(frozen=True)
class _Holder:
    value: Value
    origin: str
    reason: str
    command_id: str
    time: datetime


class _CovSink:
    """What bacpypes3 looks up in ``app._cov_contexts`` for a notification: the point it is about."""

    def __init__(self, bridge: BacnetBridge, dev: _Device, point: _Point) -> None:
        self.monitored_object_identifier = point.oid
        self._bridge, self._dev, self._point = bridge, dev, point

    async def put(self, property_value: Any) -> None:
        self._bridge._notified(self._dev, self._point, property_value)


class BacnetBridge:
    """Every BACnet device of the site model, through the hub's own BACnet/IP application."""

    name = "bacnet"

    def __init__(
        self,
        ctx: AdapterContext,
        devices: Sequence[DeviceInfo],
        settings: BacnetSettings | None = None,
        *,
        endpoints: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        """``endpoints`` maps a device id to the (host, port) to talk to instead of its model address (tests)."""
        self._ctx = ctx
        self._clock = ctx.clock
        self._settings = s = settings or BacnetSettings()
        parse_address(s.address)  # a malformed setting fails at start, not at the first retry
        self._health = DeviceHealth(ctx, "bacnet", "BACnet device", log)
        self._devices: list[_Device] = []
        self._points: dict[str, tuple[_Device, _Point]] = {}
        endpoints = endpoints or {}
        for info in devices:
            if not isinstance(info.spec, BacnetDevice) or not isinstance(info.type, BacnetDeviceType):
                raise TypeError(f"device {info.id} is not a BACnet device")
            where = ""
            if info.id in endpoints:
                where = "{}:{}".format(*endpoints[info.id])
            elif info.spec.address is not None:
                host, port, _ = parse_address(info.spec.address)
                where = f"{host}:{port}"
            points = [_Point(pid, spec, ObjectIdentifier(spec.object), spec.property)
                      for spec, pid in zip(info.type.points, info.points, strict=True)]  # fmt: skip
            intervals = [p.interval for p in info.type.points if p.interval is not None]
            label = f"device {info.spec.instance} at {where or 'an address Who-Is has to find'}"
            dev = _Device(id=info.id, label=label, points=info.points, instance=info.spec.instance, where=where,
                          points_of=points, interval=min(intervals, default=s.default_interval))  # fmt: skip
            self._devices.append(dev)
            self._points.update((p.id, (dev, p)) for p in points)
        self._stack: HubApplication | None = None
        self.bound: str | None = None
        self._gate = asyncio.Semaphore(s.concurrency)
        self._holders: dict[tuple[str, int], _Holder] = {}
        self._down: list[tuple[Tracked, str]] = []
        self._up: list[Tracked] = []
        self._flush: asyncio.TimerHandle | None = None
        self._next_spid = 1
        self._writes: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.notifications = 0
        self.commands = 0
        ctx.bus.subscribe(Command, self._on_command, name="bacnet:commands", maxsize=1000)

    # ------------------------------------------------------------------ service
    async def run(self, ready: Callable[[], None]) -> None:
        s = self._settings
        stack = HubApplication(s.address, instance=s.instance, apdu_timeout=s.apdu_timeout,
                               apdu_retries=s.apdu_retries)  # fmt: skip
        try:
            self.bound = await stack.started()
            self._stack = stack
            log.info("BACnet/IP on %s (device %d): %d device(s), %d point(s)", self.bound, s.instance,
                     len(self._devices), len(self._points))  # fmt: skip
            self._warn_unreachable_from_loopback()
            ready()
            async with asyncio.TaskGroup() as tg:
                for i, dev in enumerate(self._devices):
                    tg.create_task(self._poll_loop(dev), name=f"bacnet:{dev.id}:poll")
                    if any(p.spec.cov for p in dev.points_of):
                        delay = s.startup_spread * i / len(self._devices)
                        tg.create_task(self._cov_loop(dev, delay), name=f"bacnet:{dev.id}:cov")
                    else:
                        for p in dev.points_of:
                            p.mode = "polled"
        finally:
            self._stack = None
            for task in list(self._writes):
                task.cancel()
            if self._writes:
                await asyncio.wait(self._writes, timeout=1.0)
            await self._unsubscribe_all(stack)
            if self._flush is not None:
                self._flush.cancel()
                self._flush_logs()
            stack.close()

    def _warn_unreachable_from_loopback(self) -> None:
        """A hub on loopback (the default, for the simulators) cannot reach devices on the LAN: say so once."""
        if self.bound is None or not ipaddress.IPv4Address(self.bound.split(":")[0]).is_loopback:
            return
        away = [d for d in self._devices if d.where and not ipaddress.IPv4Address(d.where.split(":")[0]).is_loopback]
        if away:
            log.warning("BACnet/IP is on loopback (%s) but %d device(s) are not (e.g. %s at %s): they cannot answer; "
                        "set BMHUB_BACNET_ADDRESS to the BACnet interface, e.g. 192.0.2.10/24:47808", self.bound,
                        len(away), away[0].id, away[0].where)  # fmt: skip

    @property
    def _app(self) -> Any:
        if self._stack is None:
            raise _NoAnswer("the BACnet/IP application is not running")
        return self._stack.app

    async def _request(self, dev: _Device, call: Callable[[], Any]) -> Any:
        """One confirmed request to ``dev``: counted, limited to ``concurrency`` in flight. Raises ``_NoAnswer``
        for a timeout and returns the bacpypes3 error (Error/Reject/Abort) otherwise, for the caller to judge."""
        async with self._gate:
            self.requests += 1
            dev.requests += 1
            try:
                return await call()
            except ErrorRejectAbortNack as exc:
                if is_no_response(exc):
                    raise _NoAnswer(f"no answer from {dev.where} after {self._settings.apdu_retries + 1} "
                                    f"tries of {self._settings.apdu_timeout:g} s") from None  # fmt: skip
                return exc

    # ------------------------------------------------------------------ per device
    async def _poll_loop(self, dev: _Device) -> None:
        """Poll every ``interval`` on the hub's clock: the interval is what staleness is judged by."""
        clock = self._clock
        while True:
            await self._poll(dev)
            now = clock.monotonic()
            dev.next_poll += (math.floor((now - dev.next_poll) / dev.interval) + 1) * dev.interval
            await clock.sleep(max(0.0, dev.next_poll - clock.monotonic()))

    async def _cov_loop(self, dev: _Device, delay: float) -> None:
        """Subscribe while the device answers (first after ``delay``); renew at half the lifetime in real seconds,
        because that is the clock the device's subscription runs out on; subscribe again at once when it comes
        back."""
        await asyncio.sleep(delay)
        while True:
            await dev.reachable.wait()
            dev.resubscribe.clear()
            delay = await self._subscribe(dev)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await dev.resubscribe.wait()

    async def _locate(self, dev: _Device) -> None:
        """Find the address of a device the model gives none for, by a Who-Is on its instance."""
        if dev.address is not None:
            return
        if dev.where:
            host, port, _ = parse_address(dev.where)
            dev.address = to_address(host, port)
            return
        try:
            found = await self._app.who_is(dev.instance, dev.instance, timeout=self._settings.apdu_timeout)
        except ErrorRejectAbortNack as exc:
            raise _NoAnswer(f"Who-Is for device {dev.instance} failed: {describe_error(exc)}") from None
        if not found:
            raise _NoAnswer(f"no I-Am for device {dev.instance} (Who-Is from {self.bound})")
        dev.address = found[0].pduSource
        dev.where = str(dev.address)
        dev.label = f"device {dev.instance} at {dev.where}"
        log.info("BACnet device %s (instance %d) found at %s", dev.id, dev.instance, dev.where)

    async def _poll(self, dev: _Device) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        dev.polls += 1
        out: Out = []
        try:
            await self._locate(dev)
            if dev.rpm:
                await self._read_multiple(dev, dev.points_of, out)
            else:
                for point in dev.points_of:
                    await self._read_one(dev, point, out)
        except _NoAnswer as exc:
            dev.errors += 1
            dev.last_error = str(exc)
            if self._health.offline(dev, str(exc)):
                dev.reachable.clear()
                for p in dev.points_of:  # a restarted device has forgotten them: subscribe again when it is back
                    if p.mode == "cov":
                        p.mode = "pending"
                self._note(down=(dev, str(exc)))
            return
        finally:
            dev.last_poll_ms = round((loop.time() - started) * 1000, 2)
        self._health.publish(out)
        dev.reachable.set()
        if self._health.answered(dev, out):
            dev.resubscribe.set()
            self._note(up=dev)

    async def _read_multiple(self, dev: _Device, points: Sequence[_Point], out: Out) -> None:
        by_object: dict[ObjectIdentifier, list[_Point]] = {}
        for p in points:
            by_object.setdefault(p.oid, []).append(p)
        objects = list(by_object.items())
        step = self._settings.max_objects
        for i in range(0, len(objects), step):
            chunk = objects[i : i + step]
            request: list[Any] = []
            for oid, ps in chunk:
                request += [oid, sorted({p.prop for p in ps} | {"status-flags"})]
            answer = await self._request(dev, self._rpm_call(dev, request))
            if isinstance(answer, BaseException):
                if is_unsupported_service(answer):
                    dev.rpm = False
                    log.info("BACnet device %s does not support ReadPropertyMultiple (%s); reading its points one "
                             "by one from now on", dev.id, describe_error(answer))  # fmt: skip
                    for _, ps in objects[i:]:
                        for p in ps:
                            await self._read_one(dev, p, out)
                    return
                for _, ps in chunk:
                    for p in ps:
                        self._health.failed(dev, "read", f"BACnet device {dev.id}: ReadPropertyMultiple refused: "
                                                         f"{describe_error(answer)}")  # fmt: skip
                        out.append((p.id, None, Quality.BAD))
                continue
            self._health.cleared(dev, "read")
            got: dict[tuple[Any, str], Any] = {(oid, str(prop)): value for oid, prop, _, value in answer}
            for oid, ps in chunk:
                flags = got.get((oid, "status-flags"))
                for p in ps:
                    out.append(self._value(dev, p, got.get((oid, p.prop)), flags))

    def _rpm_call(self, dev: _Device, request: list[Any]) -> Callable[[], Any]:
        return lambda: self._app.read_property_multiple(dev.address, request)

    async def _read_one(self, dev: _Device, p: _Point, out: Out) -> None:
        value = await self._request(dev, lambda: self._app.read_property(dev.address, p.oid, p.prop))
        flags = await self._request(dev, lambda: self._app.read_property(dev.address, p.oid, "status-flags"))
        out.append(self._value(dev, p, value, None if isinstance(flags, BaseException) else flags))

    def _value(self, dev: _Device, p: _Point, raw: Any, flags: Any) -> tuple[str, Value, Quality]:
        """The reading of ``p`` from what the device answered (its property, its object's status flags)."""
        if raw is None or isinstance(raw, BaseException) or getattr(raw, "errorCode", None) is not None:
            why = describe_error(raw) if raw is not None else "no value in the answer"
            self._health.failed(dev, p.id, f"BACnet device {dev.id}: {p.spec.object} {p.prop} of point {p.id}: {why}")
            return p.id, None, Quality.BAD
        if getattr(flags, "errorCode", None) is not None or isinstance(flags, BaseException):
            flags = None  # an object without status flags: the value alone decides
        try:
            value = decode(p.spec, raw)
        except CodecError as exc:
            self._health.failed(dev, p.id, f"BACnet device {dev.id}: point {p.id}: {exc}")
            return p.id, None, Quality.BAD
        q = quality(flags)
        if q is Quality.BAD:
            self._health.failed(dev, p.id, f"BACnet device {dev.id}: point {p.id} reports {status_text(flags)}")
        else:
            self._health.cleared(dev, p.id)
        p.raw, p.flags = raw, flags
        return p.id, value, q

    # ------------------------------------------------------------------ COV
    async def _subscribe(self, dev: _Device) -> float:
        """Subscribe (or renew) every COV point of ``dev``; the real seconds until the next renewal or retry."""
        s = self._settings
        retry_refused = [p for p in dev.points_of if p.mode == "polled" and p.spec.cov]
        wanted = [p for p in dev.points_of if p.spec.cov and p.mode in ("cov", "pending")] + retry_refused
        refused: list[str] = []
        try:
            for p in wanted:
                error = await self._subscribe_one(dev, p)
                if error is None:
                    p.mode, p.cov_error = "cov", None
                else:
                    self._cov_sink(dev, p, remove=True)
                    if p.mode != "polled" or p.cov_error != error:
                        refused.append(p.id)
                    p.mode, p.cov_error = "polled", error
        except _NoAnswer:  # the polls find out whether the device is gone; if so, its return wakes the loop
            return min(s.cov_lifetime / 2, _COV_AGAIN)
        for p in dev.points_of:
            if not p.spec.cov:
                p.mode = "polled"
        if refused:
            errors = sorted({p.cov_error for p in dev.points_of if p.id in refused and p.cov_error})
            log.info("BACnet device %s refuses COV for %d point(s) (%s): polled every %g s, asking again in %g s",
                     dev.id, len(refused), "; ".join(errors), dev.interval, s.cov_retry)  # fmt: skip
        modes = {p.mode for p in wanted}
        return s.cov_lifetime / 2 if "cov" in modes else s.cov_retry

    async def _subscribe_one(self, dev: _Device, p: _Point) -> str | None:
        """SubscribeCOV for ``p`` (a renewal keeps its process identifier); None, or why the device refused."""
        s = self._settings
        if p.spid is None:
            p.spid = self._next_spid
            self._next_spid = self._next_spid % 4194303 + 1
        self._cov_sink(dev, p)
        request = SubscribeCOVRequest(
            subscriberProcessIdentifier=p.spid, monitoredObjectIdentifier=p.oid,
            issueConfirmedNotifications=s.cov_confirmed, lifetime=s.cov_lifetime, destination=dev.address,
        )  # fmt: skip
        answer = await self._request(dev, lambda: self._app.request(request))
        if isinstance(answer, BaseException):
            return describe_error(answer)
        return None

    def _cov_sink(self, dev: _Device, p: _Point, *, remove: bool = False) -> None:
        contexts: dict[Any, Any] = self._app._cov_contexts  # bacpypes3 routes notifications through this map
        key = (dev.address, p.spid)
        if remove:
            contexts.pop(key, None)
        else:
            contexts[key] = _CovSink(self, dev, p)

    def _notified(self, dev: _Device, p: _Point, property_value: Any) -> None:
        """One property of a COV notification; the notification's properties are published as one reading."""
        prop = str(property_value.propertyIdentifier)
        if prop not in (p.prop, "status-flags"):
            return
        kind = property_type(p.oid[0], property_value.propertyIdentifier)
        if kind is None:
            return
        try:
            value = property_value.value.cast_out(kind)
        except Exception as exc:  # a malformed notification must not take the application down
            self._health.failed(dev, p.id, f"BACnet device {dev.id}: COV notification for {p.id}: {exc}")
            return
        if prop == "status-flags":
            p.flags = value
        else:
            p.raw = value
        dev.notifications += 1
        self.notifications += 1
        if not p.queued:  # present value and status flags arrive one after the other: publish once for both
            p.queued = True
            asyncio.get_running_loop().call_soon(self._publish_cov, dev, p)

    def _publish_cov(self, dev: _Device, p: _Point) -> None:
        p.queued = False
        if dev.state is DeviceState.UNREACHABLE or p.raw is None:
            return
        self._health.publish([self._value(dev, p, p.raw, p.flags)])

    async def _unsubscribe_all(self, stack: HubApplication) -> None:
        """Cancel the subscriptions (a lifetime-less SubscribeCOV), so devices stop sending; best effort, 1 s."""
        app = stack.app
        calls = []
        for dev in self._devices:
            for p in dev.points_of:
                if p.mode == "cov" and p.spid is not None and dev.state is not DeviceState.UNREACHABLE:
                    app._cov_contexts.pop((dev.address, p.spid), None)
                    calls.append(app.request(SubscribeCOVRequest(subscriberProcessIdentifier=p.spid,
                                                                 monitoredObjectIdentifier=p.oid,
                                                                 destination=dev.address)))  # fmt: skip
                    p.mode = "pending"
        if calls:
            done, pending = await asyncio.wait([asyncio.ensure_future(c) for c in calls], timeout=1.0)
            for f in pending:
                f.cancel()
            for f in done:
                if not f.cancelled():
                    f.exception()  # retrieved: an error here only means the device already forgot it

    # ------------------------------------------------------------------ logs of many devices at once
    def _note(self, *, down: tuple[Tracked, str] | None = None, up: Tracked | None = None) -> None:
        if down is not None:
            self._down.append(down)
        if up is not None:
            self._up.append(up)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(_LOG_BATCH, self._flush_logs)

    def _flush_logs(self) -> None:
        self._flush = None
        down, up = self._down, self._up
        self._down, self._up = [], []
        self._health.log_changes(down, up, "BACnet/IP")

    # ------------------------------------------------------------------ commands
    def _on_command(self, cmd: Command) -> None:
        target = self._points.get(cmd.point)
        if target is None:
            return  # another protocol's point
        dev, p = target
        try:
            priority, value = self._check(p, cmd)
        except CommandRejected as exc:
            self._result(cmd, False, exc.reason)
            return
        if self._stack is None:
            self._result(cmd, False, "not sent: the BACnet/IP application is not running")
            return
        if dev.state is DeviceState.UNREACHABLE:
            self._result(cmd, False, f"not sent: BACnet device {dev.id} is not answering ({dev.last_error})")
            return
        task = asyncio.get_running_loop().create_task(self._write(cmd, dev, p, priority, value),
                                                      name=f"bacnet:write:{cmd.id}")  # fmt: skip
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _check(self, p: _Point, cmd: Command) -> tuple[int, Any]:
        spec = p.spec
        if not spec.writable:
            raise CommandRejected(p.id, f"point is read-only ({spec.object}; writable: false)")
        priority = self._settings.default_priority if cmd.priority is None else cmd.priority
        if not 1 <= priority <= 16:
            raise CommandRejected(p.id, f"BACnet priority must be 1-16, got {priority}")
        if priority == _RESERVED_PRIORITY:
            raise CommandRejected(p.id, "BACnet priority 6 is reserved for minimum on/off times")
        try:
            return priority, encode(spec, cmd.value)
        except CodecError as exc:
            raise CommandRejected(p.id, str(exc)) from None

    async def _write(self, cmd: Command, dev: _Device, p: _Point, priority: int, value: Any) -> None:
        """Write, then say what the point holds; every command gets a result, whatever happens."""
        self.commands += 1
        relinquish = isinstance(value, Null)
        what = f"{'relinquish' if relinquish else 'write'} {p.spec.object} at priority {priority}"
        try:
            await self._write_locked(cmd, dev, p, priority, value, what)
        except Exception as exc:  # a bug must not leave the command without an answer
            log.exception("command %s (%s = %r) failed", cmd.id, cmd.point, cmd.value)
            self._result(cmd, False, f"{what}: {type(exc).__name__}: {exc}")

    async def _write_locked(self, cmd: Command, dev: _Device, p: _Point, priority: int, value: Any, what: str) -> None:
        relinquish = isinstance(value, Null)
        async with dev.lock:  # one device's commands in the order they came
            try:
                await self._locate(dev)  # a command may come before the device's first poll
                answer = await self._request(dev, lambda: self._app.write_property(
                    dev.address, p.oid, p.prop, value, priority=priority))  # fmt: skip
            except _NoAnswer as exc:
                self._result(cmd, False, f"{what}: {exc}")
                return
            if isinstance(answer, BaseException):
                error = DeviceError(dev.id, f"{what} refused: {describe_error(answer)}")
                log.warning("command %s (%s = %r): %s", cmd.id, cmd.point, cmd.value, error)
                self._result(cmd, False, str(error))
                return
            key = (p.id, priority)
            if relinquish:
                self._holders.pop(key, None)
            else:
                origin = cmd.context.origin or "unknown"
                self._holders[key] = _Holder(cmd.value, origin, cmd.reason, cmd.id, self._clock.now())
            try:
                array = await self._priority_array(dev, p)
            except (_NoAnswer, DeviceError) as exc:
                self._result(cmd, True, f"{what} done; no read-back: {exc}")
                return
        self._health.publish([(p.id, array.present_value, Quality.GOOD)], cmd.context.child(self._health.origin))
        now = f"the point holds {array.present_value!r}"
        if array.active_priority is None:
            now += " (relinquish default)"
        elif array.active_priority < priority:
            holder = next(s for s in array.slots if s.priority == array.active_priority)
            now += f" from priority {array.active_priority} ({holder.holder or 'another BACnet client'}), " \
                   f"which overrides priority {priority}"  # fmt: skip
        else:
            now += f" at priority {array.active_priority}"
        self._result(cmd, True, f"{what} done; {now}")

    def _result(self, cmd: Command, ok: bool, detail: str) -> None:
        self._ctx.bus.publish(CommandResult(command_id=cmd.id, point=cmd.point, ok=ok, detail=detail,
                                            context=cmd.context.child(self._health.origin),
                                            time=self._clock.now()))  # fmt: skip

    # ------------------------------------------------------------------ priority array
    def owns(self, point: str) -> bool:
        """A writable BACnet point of this bridge (only those can have a priority array)."""
        target = self._points.get(point)
        return target is not None and target[1].spec.writable

    async def priority_array(self, point: str) -> PriorityArray:
        """The point's present value, relinquish default and all 16 priorities, with the hub's own commands named.

        Raises ``CommandRejected`` for a point that is not a commandable BACnet point here, ``AdapterNotReady``
        when the device does not answer and ``DeviceError`` when it refuses."""
        target = self._points.get(point)
        if target is None:
            raise CommandRejected(point, "not a BACnet point of this hub")
        dev, p = target
        if self._stack is None:
            raise AdapterNotReady("the BACnet/IP application is not running")
        await self._locate(dev)
        return await self._priority_array(dev, p)

    async def _priority_array(self, dev: _Device, p: _Point) -> PriorityArray:
        props = [p.prop, "priority-array", "relinquish-default", "status-flags"]
        answer = await self._request(dev, lambda: self._app.read_property_multiple(dev.address, [p.oid, props]))
        if isinstance(answer, BaseException):
            raise DeviceError(dev.id, f"reading the priority array of {p.spec.object}: {describe_error(answer)}")
        got = {str(prop): value for _, prop, _, value in answer}
        array = got.get("priority-array")
        if array is None or getattr(array, "errorCode", None) is not None:
            raise DeviceError(
                dev.id,
                f"{p.spec.object} has no priority array (not commandable): "
                f"{describe_error(array) if array is not None else 'not in the answer'}",
            )
        slots: list[PrioritySlot] = []
        for i, entry in enumerate(array, start=1):
            choice = entry._choice
            if choice == "null":
                if (p.id, i) in self._holders:  # relinquished by someone else
                    self._holders.pop((p.id, i), None)
                continue
            raw = getattr(entry, choice)
            try:
                value = decode(p.spec, raw)
            except CodecError:
                value = str(raw)
            held = self._holders.get((p.id, i))
            if held is not None and held.value != value:  # someone else wrote over it since
                held = None
            holder = f"{held.origin}" + (f" ({held.reason})" if held.reason else "") if held else None
            slots.append(PrioritySlot(priority=i, value=value, holder=holder,
                                      command_id=held.command_id if held else None,
                                      since=held.time if held else None))  # fmt: skip
        present, default = got.get(p.prop), got.get("relinquish-default")
        return PriorityArray(
            point=p.id,
            present_value=self._decoded(p, present),
            relinquish_default=self._decoded(p, default),
            active_priority=slots[0].priority if slots else None,
            slots=tuple(slots),
            status=status_text(got.get("status-flags")) or None,
        )

    @staticmethod
    def _decoded(p: _Point, raw: Any) -> Value:
        if raw is None or getattr(raw, "errorCode", None) is not None:
            return None
        try:
            return decode(p.spec, raw)
        except CodecError:
            return str(raw)

    # ------------------------------------------------------------------ status
    def point_modes(self) -> dict[str, PointMode]:
        """Each point's way in: ``cov`` (subscribed), ``polled`` (no COV: refused or ``cov: false``), ``pending``."""
        return {p.id: p.mode for dev in self._devices for p in dev.points_of}

    def device_details(self, device: str) -> dict[str, Any]:
        """Counters, state and the polled points of one device."""
        return next(d for d in self._devices if d.id == device).details()

    def details(self) -> dict[str, Any]:
        """Totals, and the details of the devices that need attention (unreachable, refusing reads or COV):
        ``bmhub status`` writes this every few seconds, so not every device's (:meth:`device_details`)."""
        modes = list(self.point_modes().values())
        states = [d.state.value for d in self._devices]
        attention = [d for d in self._devices
                     if d.state in (DeviceState.UNREACHABLE, DeviceState.ERROR) or not d.rpm
                     or any(p.mode == "polled" and p.spec.cov for p in d.points_of)]  # fmt: skip
        return {
            "address": self.bound,
            "instance": self._settings.instance,
            "requests": self.requests,
            "notifications": self.notifications,
            "commands": self.commands,
            "points_cov": modes.count("cov"),
            "points_polled": modes.count("polled"),
            "devices": {state: states.count(state) for state in sorted(set(states))},
            "attention": {d.id: d.details() for d in attention[:_ATTENTION_SHOWN]},
            "attention_total": len(attention),
        }
