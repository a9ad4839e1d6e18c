"""The simulated building against a real Mosquitto: payloads the codec reads, a day that follows the business
calendar, reproducible runs, signage commands, and the errors the supervisor acts on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from adapters.mqtt._codec import PayloadError, decode, encode_command
from adapters.sim import MqttSimulator
from hub.errors import AdapterAuthError, AdapterNotReady
from hub.events import Value
from hub.graph import SiteGraph
from hub.site import MqttDevice, MqttDeviceType, MqttPoint, PointKind, ZoneUse, load_site
from tests.conftest import FIXTURES, SITE_MODEL
from tests.servers import Mosquitto, free_port

MINIMAL = FIXTURES / "site" / "minimal.yaml"
TOKYO = ZoneInfo("Asia/Tokyo")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=TOKYO)  # a business day
SUNDAY_03 = datetime(2026, 11, 22, 3, 0, tzinfo=TOKYO)
WAIT = 15.0  # seconds: a bound on collecting, not a claim about speed

Messages = list[tuple[str, bytes]]


def graph_of(path: Path) -> SiteGraph:
    return SiteGraph(load_site(path))


def state_topics(graph: SiteGraph) -> dict[str, list[MqttPoint]]:
    """Every MQTT state topic of the site and the points published on it, from the model alone."""
    topics: dict[str, list[MqttPoint]] = {}
    for device in graph.find_devices(protocol="mqtt"):
        assert isinstance(device.spec, MqttDevice)
        assert isinstance(device.type, MqttDeviceType)
        for p in device.type.points:
            topics.setdefault(f"{device.spec.topic}/{p.topic}" if p.topic else device.spec.topic, []).append(p)
    return topics


def command(graph: SiteGraph, device: str, point: str, value: Value) -> tuple[str, bytes]:
    """Topic and payload commanding ``device.point`` to ``value``, as the hub sends it."""
    info = graph.devices[device]
    assert isinstance(info.spec, MqttDevice)
    assert isinstance(info.type, MqttDeviceType)
    p = next(p for p in info.type.points if p.id == point)
    return f"{info.spec.topic}/{p.command_topic}", encode_command(p, value)


@contextlib.asynccontextmanager
async def listening(broker: Mosquitto) -> AsyncIterator[aiomqtt.Client]:
    """A client of the test's own, subscribed to every field topic before the simulator starts."""
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V311) as client:
        await client.subscribe("field/#", qos=1)
        yield client


@contextlib.asynccontextmanager
async def simulating(sim: MqttSimulator) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``sim`` until it is ready; cancel and await it on the way out."""
    up = asyncio.Event()
    task = asyncio.create_task(sim.run(up.set), name="simulator")
    try:
        async with asyncio.timeout(WAIT):
            await up.wait()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def collect(client: aiomqtt.Client, done: Callable[[str, bytes], bool], seconds: float = WAIT) -> Messages:
    """Live (not retained) messages until ``done(topic, payload)`` is true of the latest or ``seconds`` pass.

    ``done`` sees each message once, so it must keep its own tally: rescanning all messages so far would fall
    behind a fast simulation."""
    got: Messages = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                if not message.retain:
                    got.append((message.topic.value, message.payload))
                    if done(message.topic.value, message.payload):
                        break
    return got


def shown(got: Messages, topics: dict[str, list[MqttPoint]], topic: str, value: Value) -> bool:
    return any(t == topic and decode(topics[t][0], b) == value for t, b in got)


# ------------------------------------------------------------------------------------------------ payloads


@pytest.mark.parametrize(("path", "speed"), [(MINIMAL, 1.0), (SITE_MODEL, 120.0)], ids=["minimal", "site"])
async def test_every_point_publishes_payloads_the_codec_reads(mosquitto: Mosquitto, path: Path, speed: float) -> None:
    graph = graph_of(path)
    topics = state_topics(graph)
    only_on_command = {PointKind.QUEUE_NUMBER, PointKind.CAPTION, PointKind.ACK, PointKind.ACCESS}
    kinds_of = {t: {p.kind for p in points} for t, points in topics.items()}
    # Every state topic shows up after connecting, a topic with an interval repeats, and cards are presented.
    missing = {t for t, k in kinds_of.items() if not k & {PointKind.CARD, PointKind.ACK} and not k <= only_on_command}
    repeats = {t: 3 for t, points in topics.items() if any(p.interval for p in points)}
    cards = {t for t, k in kinds_of.items() if PointKind.CARD in k}
    state = len(missing)

    def done(topic: str, _: bytes) -> bool:
        missing.discard(topic)
        if repeats.get(topic, 0) > 1:
            repeats[topic] -= 1
        else:
            repeats.pop(topic, None)
        if topic in cards:
            cards.clear()
        return not (missing or repeats or cards)

    # 120x: the 60 s repeats every 0.5 s, and on a Tuesday morning someone presents a card within a second.
    sim = MqttSimulator(graph, "127.0.0.1", mosquitto.port, seed=7, speed=speed, start=TUESDAY_10)
    async with listening(mosquitto) as client, simulating(sim):
        got = await collect(client, done)

    assert (sorted(missing), sorted(repeats), sorted(cards)) == ([], [], [])
    failures, kinds = [], set()
    for topic, payload in got:
        assert topic in topics, f"published on {topic}, which no point of the site model names"
        for p in topics[topic]:
            try:
                decode(p, payload)
            except PayloadError as exc:
                failures.append(f"{topic} {p.id}: {exc} in {payload!r}")
            else:
                kinds.add(p.kind)
    assert failures == []
    assert kinds == {p.kind for points in topics.values() for p in points} - only_on_command
    assert sim.counts()["published"] >= state  # ready() comes after the whole state was acknowledged


# ------------------------------------------------------------------------------------------------ the day


async def test_meeting_room_fills_on_a_business_morning(mosquitto: Mosquitto) -> None:
    graph = graph_of(MINIMAL)
    topic = "field/room-201-occ/state"
    (people,) = (p for p in state_topics(graph)[topic] if p.kind is PointKind.PEOPLE_COUNT)

    def someone(t: str, payload: bytes) -> bool:
        return t == topic and decode(people, payload) != 0

    sim = MqttSimulator(graph, "127.0.0.1", mosquitto.port, seed=3, speed=3600.0, start=TUESDAY_10)
    async with listening(mosquitto) as client, simulating(sim):
        got = await collect(client, someone)
    assert any(someone(*m) for m in got), "room-201 stayed empty through a Tuesday"


@pytest.mark.parametrize(("start", "busy"), [(TUESDAY_10, True), (SUNDAY_03, False)], ids=["tuesday-10", "sunday-03"])
async def test_offices_follow_the_calendar(mosquitto: Mosquitto, start: datetime, busy: bool) -> None:
    graph = graph_of(SITE_MODEL)
    uses = {ZoneUse.OFFICE} if busy else {ZoneUse.OFFICE, ZoneUse.MEETING, ZoneUse.CONSULTATION, ZoneUse.COMMITTEE}
    sensors: dict[str, MqttPoint] = {}
    for d in graph.find_devices(kind="occupancy-sensor"):
        if graph.zones[d.zone].spec.use in uses:
            assert isinstance(d.spec, MqttDevice)
            assert isinstance(d.type, MqttDeviceType)
            sensors[d.spec.topic] = next(p for p in d.type.points if p.kind is PointKind.PEOPLE_COUNT)
    assert len(sensors) > 10
    wanted = dict.fromkeys(sensors, 2)  # the state after connecting and a repeat 60 simulated seconds on
    last: dict[str, Value] = {}

    def done(topic: str, payload: bytes) -> bool:
        if topic in sensors:
            last[topic] = decode(sensors[topic], payload)
            wanted[topic] -= 1
            if not wanted[topic]:
                del wanted[topic]
        return not wanted

    sim = MqttSimulator(graph, "127.0.0.1", mosquitto.port, seed=11, speed=120.0, start=start)
    async with listening(mosquitto) as client, simulating(sim):
        await collect(client, done)
    assert sorted(wanted) == []
    if busy:
        assert [t for t, n in last.items() if n == 0] == [], "offices empty at 10:00 on a Tuesday"
    else:
        assert {t: n for t, n in last.items() if n != 0} == {}, "people in offices or meeting rooms at 3 am Sunday"


# ------------------------------------------------------------------------------------------------ reproducibility


async def people_counts(broker: Mosquitto, seed: int, n: int = 6) -> list[Value]:
    """The first ``n`` people counts room-201's sensor reports (repeats of the same value left out)."""
    graph = graph_of(MINIMAL)
    topic = "field/room-201-occ/state"
    (people,) = (p for p in state_topics(graph)[topic] if p.kind is PointKind.PEOPLE_COUNT)
    counts: list[Value] = []

    def done(t: str, payload: bytes) -> bool:
        if t == topic and (value := decode(people, payload)) not in counts[-1:]:
            counts.append(value)
        return len(counts) >= n

    sim = MqttSimulator(graph, "127.0.0.1", broker.port, seed=seed, speed=3600.0, start=TUESDAY_10)
    async with listening(broker) as client, simulating(sim):
        await collect(client, done)
    assert len(counts) == n, f"only {counts} in {WAIT:.0f}s"
    return counts


async def test_same_seed_same_counts_other_seed_other_counts(mosquitto: Mosquitto) -> None:
    first = await people_counts(mosquitto, seed=1)
    assert await people_counts(mosquitto, seed=1) == first
    assert await people_counts(mosquitto, seed=2) != first


# ------------------------------------------------------------------------------------------------ commands


async def test_signage_shows_and_acknowledges_commands_and_survives_bad_ones(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    graph = graph_of(SITE_MODEL)
    topics = state_topics(graph)
    sign = "ch-1f-entrance-hall-signage-1"
    base = f"field/{sign}"

    def acked(value: str) -> Callable[[str, bytes], bool]:
        return lambda t, b: t == f"{base}/ack" and decode(topics[t][0], b) == value

    sim = MqttSimulator(graph, "127.0.0.1", mosquitto.port, seed=5, start=TUESDAY_10)
    async with listening(mosquitto) as client, simulating(sim) as task:
        await client.publish(*command(graph, sign, "content", "evacuation-route"), qos=1)
        got = await collect(client, acked("content=evacuation-route"))
        assert shown(got, topics, f"{base}/content", "evacuation-route")
        assert shown(got, topics, f"{base}/ack", "content=evacuation-route")

        with caplog.at_level(logging.WARNING, logger="adapters.sim.mqtt"):
            await client.publish(f"{base}/content/set", b"\xff\xfe", qos=1)  # not UTF-8
            await client.publish(f"{base}/emergency/set", b"maybe", qos=1)  # not a boolean
            await client.publish(*command(graph, sign, "language", "en"), qos=1)
            caption = "ただいまから本会議を再開します。傍聴席の皆様はご静粛にお願いいたします。"
            await client.publish(*command(graph, sign, "caption", caption), qos=1)
            got = await collect(client, acked("caption#3"))
        assert shown(got, topics, f"{base}/language", "en")
        assert shown(got, topics, f"{base}/caption", caption)
        assert shown(got, topics, f"{base}/ack", "caption#3")  # long values are acknowledged by the command's number
        assert not shown(got, topics, f"{base}/emergency", True)
        assert not task.done()
    assert sim.counts()["commands"] == 3
    assert sim.counts()["rejected"] == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert all(sign in w for w in warned)


# ------------------------------------------------------------------------------------------------ connection


async def test_unreachable_broker_is_not_ready() -> None:
    sim = MqttSimulator(graph_of(MINIMAL), "127.0.0.1", free_port())
    with pytest.raises(AdapterNotReady, match=r"MQTT broker 127\.0\.0\.1"):
        await sim.run(lambda: None)


async def test_refused_credentials_are_an_auth_error(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "auth", users={"hub": "secret"})
    broker.start()
    try:
        sim = MqttSimulator(graph_of(MINIMAL), "127.0.0.1", broker.port, username="hub", password="wrong")
        with pytest.raises(AdapterAuthError, match="refused the credentials"):
            await sim.run(lambda: None)
    finally:
        broker.stop()


async def test_state_is_published_again_after_a_reconnect(mosquitto: Mosquitto) -> None:
    graph = graph_of(MINIMAL)
    sim = MqttSimulator(graph, "127.0.0.1", mosquitto.port, start=TUESDAY_10)
    up = asyncio.Event()
    first = asyncio.create_task(sim.run(up.set))
    async with asyncio.timeout(WAIT):
        await up.wait()
    mosquitto.stop()
    with pytest.raises(AdapterNotReady):
        async with asyncio.timeout(WAIT):
            await first

    mosquitto.start()
    async with listening(mosquitto) as client, simulating(sim):
        got = await collect(client, lambda topic, _: topic == "field/lobby-sign/content")
    assert ("field/lobby-sign/content", b"floor-map") in got  # live, not the retained copy the broker kept
