"""The MQTT bridge: field devices in, commands out, and the hub's live state for apps (docs/mqtt.md).

One connection carries all three. It has a stable client id and a persistent session (MQTT 3.1.1
``clean_session=false``; MQTT 5 ``clean_start=false`` with a session expiry), subscribes again after every
(re)connect, announces itself with a retained birth message on ``<prefix>/<site>/status`` and leaves a
retained last will there.

Reconnecting is the supervisor's job (aiomqtt 2 does not reconnect): a lost connection raises
``AdapterNotReady`` and the supervisor retries with jittered backoff. Commands wait in an outbox while the
broker is away and leave it only once the broker has acknowledged them (QoS 1), so none is lost across a
broker restart; one that waited longer than ``command_ttl`` is failed instead of being sent late (an unlock
hours after it was asked for is worse than none).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import itertools
import json
import logging
import math
import random
import re
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from adapters.mqtt._codec import MissingField, PayloadError, decode, encode_command, parse_json
from adapters.mqtt._discovery import discovery_messages
from adapters.mqtt._settings import MqttSettings
from hub.adapter import AdapterContext
from hub.errors import AdapterAuthError, AdapterNotReady
from hub.events import (
    Alarm,
    Command,
    CommandResult,
    Context,
    ModeChanged,
    OccupancyChanged,
    PointState,
    Quality,
    Reading,
    StateChanged,
)
from hub.site import MqttDevice, MqttPoint

__all__ = ["MqttBridge", "Rejects"]

log = logging.getLogger(__name__)

_AUTH_CODES = {4, 5, 134, 135}  # 3.1.1: bad user name or password, not authorised; 5: the same
# QoS-1 publishes in flight at once: enough to hide the round trip, few enough that a slow broker (the
# embedded amqtt manages ~850 QoS-1 messages/s) is not flooded; aiomqtt warns above 10 pending calls.
_IN_FLIGHT = 10


@dataclass(slots=True)
class _Route:
    point: str
    device: str
    spec: MqttPoint


@dataclass
class _DeviceCounts:
    received: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def _version() -> str:
    try:
        return importlib.metadata.version("bmhub")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cause(reason: str) -> str:
    """The kind of a refusal, for counters: ``point door: expected true or false, got 'ajar'`` → ``expected true
    or false``; ``payload of 70000 bytes exceeds 65536`` → ``payload of N bytes exceeds N``."""
    reason = re.sub(r"^point [\w-]+: ", "", reason)
    reason = reason.split(", got ")[0].split(" (")[0].split(": ")[0]
    return re.sub(r"\d+", "N", reason)[:80]


def _topic_level(text: str) -> str:
    """Text made safe as one topic level: no '/', '+', '#' or NUL (paho refuses them in a topic name)."""
    return re.sub(r"[/+#\x00]", "_", text)


class Rejects:
    """Counts refused messages per device, keeps the latest ones, and logs without flooding.

    The first refusal from a device is logged at once; later ones at most once per ``log_every`` seconds per
    device, as one line with how many there were.
    """

    def __init__(self, *, sample: int = 50, log_every: float = 60.0) -> None:
        self.devices: dict[str, _DeviceCounts] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=sample)
        self._log_every = log_every
        self._last_log: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def received(self, device: str) -> None:
        self.devices.setdefault(device, _DeviceCounts()).received += 1

    def reject(self, device: str, topic: str, reason: str, payload: bytes) -> None:
        counts = self.devices.setdefault(device, _DeviceCounts())
        counts.rejected += 1
        counts.reasons[_cause(reason)] += 1
        excerpt = payload[:120].decode("utf-8", "replace")
        self.recent.append({"time": time.time(), "device": device, "topic": topic, "reason": reason,
                            "payload": excerpt, "size": len(payload)})  # fmt: skip
        now = time.monotonic()
        if now - self._last_log.get(device, -1e9) >= self._log_every:
            more = self._unlogged.pop(device, 0)
            tail = f" (+{more} more since the last report)" if more else ""
            log.warning("rejected MQTT message on %s from device %s: %s%s", topic, device, reason, tail)
            self._last_log[device] = now
        else:
            self._unlogged[device] += 1

    def details(self) -> dict[str, Any]:
        return {
            "devices": {
                d: {"received": c.received, "rejected": c.rejected, "reasons": dict(c.reasons)}
                for d, c in self.devices.items()
                if c.rejected
            },
            "recent": list(self.recent),
        }


class MqttBridge:
    name = "mqtt"

    def __init__(self, ctx: AdapterContext, settings: MqttSettings, endpoint: Callable[[], tuple[str, int]]) -> None:
        self._ctx = ctx
        self._settings = settings
        self.endpoint = endpoint
        site = ctx.graph.site_id
        self.root = f"{settings.prefix}/{site}"
        self._alarm_root = f"{self.root}/alarm/"
        self.client_id = settings.client_id or f"bmhub-{site}"
        self._routes: dict[str, list[_Route]] = {}
        self._commands: dict[str, tuple[str, MqttPoint]] = {}
        self._device_topics: dict[str, str] = {}
        for dev in ctx.graph.find_devices(protocol="mqtt"):
            assert isinstance(dev.spec, MqttDevice)
            base = dev.spec.topic
            self._device_topics[base] = dev.id
            for spec, pid in zip(dev.type.points, dev.points, strict=True):
                assert isinstance(spec, MqttPoint)
                topic = f"{base}/{spec.topic}" if spec.topic else base
                self._routes.setdefault(topic, []).append(_Route(pid, dev.id, spec))
                if spec.command_topic is not None:
                    self._commands[pid] = (f"{base}/{spec.command_topic}", spec)
        self._command_topics = {t for t, _ in self._commands.values()}
        self._ha_status = f"{settings.ha_prefix}/status" if settings.ha_discovery else None
        self._discovery = (
            discovery_messages(ctx.graph, self.root, settings.ha_prefix, _version()) if settings.ha_discovery else []
        )
        self._rediscover: asyncio.TimerHandle | None = None
        self.rejects = Rejects()
        self._outbox: deque[Command] = deque()
        self._retained: dict[str, bytes] = {}  # topic → latest payload not yet published (coalesced)
        self._alarms: dict[str, Alarm] = {}
        self._wake = asyncio.Event()
        self.sent_commands = 0
        self.expired_commands = 0
        self.connects = 0
        self.foreign = 0
        self._units = {p.id: p.unit for p in ctx.graph.points.values()}
        bus = ctx.bus
        bus.subscribe(Command, self._on_command, name="mqtt:commands", maxsize=self._settings.outbox_size)
        bus.subscribe(StateChanged, self._on_state, name="mqtt:state", maxsize=200_000)
        bus.subscribe(OccupancyChanged, self._on_occupancy, name="mqtt:occupancy", maxsize=50_000)
        bus.subscribe(ModeChanged, self._on_mode, name="mqtt:mode", maxsize=1000)
        bus.subscribe(Alarm, self._on_alarm, name="mqtt:alarms", maxsize=50_000)

    # ------------------------------------------------------------------ outward contract (topics)
    def _retain(self, topic: str, payload: dict[str, Any] | None) -> None:
        self._retained[topic] = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        self._wake.set()

    def _on_state(self, ev: StateChanged) -> None:
        self._retain_point(ev.new)

    def _retain_point(self, st: PointState) -> None:
        device, _, point = st.point.partition(".")
        value = st.value
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN or infinity; apps see null with the point's quality
        self._retain(f"{self.root}/point/{device}/{point}", {
            "point": st.point, "value": value, "quality": st.quality.value, "time": st.time.isoformat(),
            "unit": self._units.get(st.point),
        })  # fmt: skip

    def _on_occupancy(self, ev: OccupancyChanged) -> None:
        self._retain(f"{self.root}/zone/{ev.zone}/occupancy", {
            "zone": ev.zone, "occupied": ev.occupied, "count": ev.count, "capacity": ev.capacity,
            "since": ev.since.isoformat(), "quality": ev.quality.value, "time": ev.time.isoformat(),
        })  # fmt: skip

    def _on_mode(self, ev: ModeChanged | None = None) -> None:
        rec = self._ctx.state.mode_record
        self._retain(
            f"{self.root}/mode", {"mode": rec.mode.value, "since": rec.since.isoformat(), "reason": rec.reason}
        )

    def _on_alarm(self, ev: Alarm) -> None:
        topic = f"{self.root}/alarm/{_topic_level(ev.key)}"
        if ev.active:
            self._alarms[ev.key] = ev
            self._retain(topic, {"key": ev.key, "source": ev.source, "severity": ev.severity, "message": ev.message,
                                 "active": True, "time": ev.time.isoformat()})  # fmt: skip
        else:
            self._alarms.pop(ev.key, None)
            self._retain(topic, None)  # an empty retained message removes the alarm for every subscriber

    def _queue_discovery(self) -> None:
        self._rediscover = None
        for topic, payload in self._discovery:
            self._retained[topic] = payload
        self._wake.set()

    def _snapshot(self) -> None:
        """Queue the whole current picture, for a broker that may have lost its retained messages."""
        self._queue_discovery()
        self._on_mode()
        for st in self._ctx.state:
            self._retain_point(st)
        for occ in self._ctx.occupancy:
            self._on_occupancy(occ)
        for alarm in self._alarms.values():
            self._on_alarm(alarm)

    # ------------------------------------------------------------------ commands
    def _on_command(self, cmd: Command) -> None:
        target = self._commands.get(cmd.point)
        if target is None:
            point = self._ctx.graph.points.get(cmd.point)
            if point is not None and isinstance(point.spec, MqttPoint):
                self._result(cmd, False, "point is not writable over MQTT (no command_topic)")
            return  # another adapter's point
        if len(self._outbox) >= self._settings.outbox_size:
            dropped = self._outbox.popleft()
            self._result(dropped, False, f"dropped: {self._settings.outbox_size} commands already waiting")
        self._outbox.append(cmd)
        self._wake.set()

    def _result(self, cmd: Command, ok: bool, detail: str) -> None:
        self._ctx.bus.publish(CommandResult(command_id=cmd.id, point=cmd.point, ok=ok, detail=detail,
                                            context=cmd.context.child(f"adapter:{self.name}")))  # fmt: skip

    # ------------------------------------------------------------------ device messages
    def handle(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """Turn one message from a field device into readings (or rejects). Never raises."""
        routes = self._routes.get(topic)
        if routes is None:
            if topic == self._ha_status:
                if payload == b"online" and self._rediscover is None:
                    # Home Assistant (re)started: answer after a random delay, as its documentation asks.
                    delay = random.uniform(0.0, 5.0)  # noqa: S311 - jitter, not crypto
                    self._rediscover = asyncio.get_running_loop().call_later(delay, self._queue_discovery)
                return
            if topic.startswith(self._alarm_root):
                key = topic[len(self._alarm_root) :]
                if retained and payload and key not in {_topic_level(k) for k in self._alarms}:
                    self._retain(topic, None)  # left over from an earlier run: no longer active
                return
            if topic in self._command_topics or topic.startswith(self.root + "/"):
                return  # our own commands and state coming back
            device = self._device_of(topic)
            if device is None:
                self.foreign += 1  # under a subscribed root but no device's topic: not ours to judge
                return
            self.rejects.reject(device, topic, "unknown topic: no point of this device listens here", payload)
            return
        device = routes[0].device
        self.rejects.received(device)
        if len(payload) > self._settings.max_payload:
            self._bad(routes, topic, f"payload of {len(payload)} bytes exceeds {self._settings.max_payload}", payload)
            return
        document: Any = None
        if any(r.spec.field is not None for r in routes):
            try:
                document = parse_json(payload)
            except PayloadError as exc:
                self._bad(routes, topic, str(exc), payload)
                return
        publish = self._ctx.bus.publish
        missing: list[str] = []
        ctx = Context(origin="adapter:mqtt")
        now = self._ctx.clock.now()  # the hub's clock: staleness is judged against it (accelerated in the demo)
        for r in routes:
            try:
                value = decode(r.spec, payload, document)
            except MissingField:
                missing.append(r.spec.field or "")
                continue
            except PayloadError as exc:
                self._bad([r], topic, f"point {r.spec.id}: {exc}", payload)
                continue
            publish(Reading(point=r.point, value=value, source="mqtt", context=ctx, time=now))
        if missing and len(missing) == len(routes):
            self.rejects.reject(device, topic, f"none of the fields {', '.join(missing)} present", payload)

    def _bad(self, routes: Iterable[_Route], topic: str, reason: str, payload: bytes) -> None:
        routes = list(routes)
        self.rejects.reject(routes[0].device, topic, reason, payload)
        ctx = Context(origin="adapter:mqtt")
        now = self._ctx.clock.now()
        for r in routes:
            self._ctx.bus.publish(
                Reading(point=r.point, value=None, quality=Quality.BAD, source="mqtt", context=ctx, time=now)
            )

    def _device_of(self, topic: str) -> str:
        best = ""
        for base, _device in self._device_topics.items():
            if (topic == base or topic.startswith(base + "/")) and len(base) > len(best):
                best = base
        return self._device_topics.get(best, "(unknown device)")

    # ------------------------------------------------------------------ connection
    def _client(self) -> aiomqtt.Client:
        s = self._settings
        host, port = self.endpoint()
        will = aiomqtt.Will(f"{self.root}/status", b"offline", qos=1, retain=True)
        tls: ssl.SSLContext | None = None
        if s.tls:
            tls = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if s.cert_file:
                tls.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
        common: dict[str, Any] = {
            "identifier": self.client_id, "will": will, "keepalive": s.keepalive, "tls_context": tls,
            "username": s.username, "password": s.password.get_secret_value() if s.password else None,
            "timeout": 10,
        }  # fmt: skip
        if s.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho ships no hints here
            props.SessionExpiryInterval = 86400
            return aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                                  properties=props, **common)  # fmt: skip
        return aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V311, clean_session=False, **common)

    async def run(self, ready: Callable[[], None]) -> None:
        host, port = self.endpoint()
        where = f"MQTT broker {host}:{port} as {self.client_id!r}"
        try:
            async with self._client() as client:
                self.connects += 1
                await self._subscribe(client)
                await client.publish(f"{self.root}/status", b"online", qos=1, retain=True)
                self._snapshot()
                log.info("connected to %s; %d device topics under %s", where, len(self._routes), self.subscriptions())
                ready()
                try:
                    try:
                        async with asyncio.TaskGroup() as tg:
                            tg.create_task(self._receive(client), name="mqtt:receive")
                            tg.create_task(self._send(client), name="mqtt:send")
                    except* aiomqtt.MqttError as group:
                        raise AdapterNotReady(f"lost {where}: {group.exceptions[0]}") from None
                except asyncio.CancelledError:
                    if self._rediscover is not None:
                        self._rediscover.cancel()
                        self._rediscover = None
                    # A clean stop: say so, because the broker sends the last will only for a lost connection.
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(1):
                            await client.publish(f"{self.root}/status", b"offline", qos=1, retain=True)
                    raise
        except aiomqtt.MqttCodeError as exc:
            code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
            if code in _AUTH_CODES:
                raise AdapterAuthError(f"{where} refused the credentials: {exc}") from exc
            raise AdapterNotReady(f"{where}: {exc}") from exc
        except aiomqtt.MqttError as exc:
            raise AdapterNotReady(f"cannot reach {where}: {exc}") from exc

    def subscriptions(self) -> list[str]:
        """One ``<first level>/#`` filter per distinct root of the device topics (one for the bundled model).

        Few wide filters instead of one per topic: a broker matches each new filter against every retained
        message, and hundreds of filters cost the embedded amqtt seconds per (re)connect.
        """
        roots = {t.split("/", 1)[0] for t in (*self._routes, *self._device_topics)}
        return sorted(f"{r}/#" for r in roots)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(f, 1) for f in self.subscriptions()])
        # Alarms retained by an earlier run that are no longer active get cleared (see handle()).
        await client.subscribe(f"{self._alarm_root}+", qos=1)
        if self._ha_status is not None:
            await client.subscribe(self._ha_status, qos=1)

    async def _receive(self, client: aiomqtt.Client) -> None:
        handle = self.handle
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            handle(message.topic.value, data, message.retain)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._send_commands(client)
            while self._retained:
                topics = list(itertools.islice(self._retained, _IN_FLIGHT))  # oldest first
                batch = [(t, self._retained.pop(t)) for t in topics]
                try:
                    await asyncio.gather(*(client.publish(t, p, qos=1, retain=True) for t, p in batch))
                except BaseException:
                    for t, p in batch:  # not known to be delivered: keep for the next connection
                        self._retained.setdefault(t, p)
                    raise
                if self._outbox:
                    await self._send_commands(client)  # commands never wait behind a state snapshot

    async def _send_commands(self, client: aiomqtt.Client) -> None:
        ttl = self._settings.command_ttl
        while self._outbox:
            cmd = self._outbox[0]
            age = (self._ctx.clock.now() - cmd.time).total_seconds()
            if age > ttl:
                self._outbox.popleft()
                self.expired_commands += 1
                log.warning("command %s → %s=%r expired after %.0fs without a broker; not sent", cmd.id, cmd.point,
                            cmd.value, age)  # fmt: skip
                self._result(cmd, False, f"expired after {age:.0f}s waiting for the MQTT broker")
                continue
            topic, spec = self._commands[cmd.point]
            try:
                payload = encode_command(spec, cmd.value)
            except PayloadError as exc:
                self._outbox.popleft()
                self._result(cmd, False, str(exc))
                continue
            await client.publish(topic, payload, qos=1)  # returns once the broker acknowledged it
            self._outbox.popleft()
            self.sent_commands += 1
            self._result(cmd, True, f"published to {topic}")

    def details(self) -> dict[str, Any]:
        return {
            "broker": "{}:{}".format(*self.endpoint()),
            "client_id": self.client_id,
            "connects": self.connects,
            "outbox": len(self._outbox),
            "commands_sent": self.sent_commands,
            "commands_expired": self.expired_commands,
            "foreign_messages": self.foreign,
            "rejects": self.rejects.details(),
        }
