"""The event bus: fairness, bounded queues with visible overflow, order, error isolation, context chains."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hub.bus import Bus, Overflow
from hub.events import Command, Context, Event, Reading, StateChanged
from tests.helpers import until


def reading(point: str, value: float) -> Reading:
    return Reading(point=point, value=value, source="test")


async def test_slow_subscriber_does_not_delay_others() -> None:
    release = asyncio.Event()
    slow_got: list[Reading] = []
    fast_got: list[Reading] = []

    async def slow(ev: Reading) -> None:
        await release.wait()  # stuck until the test says so
        slow_got.append(ev)

    async with Bus() as bus:
        bus.subscribe(Reading, slow, name="slow", maxsize=10)
        bus.subscribe(Reading, fast_got.append, name="fast")
        bus.publish(reading("ahu-1.supply_temp", 0))
        await until(lambda: len(fast_got) == 1, "the first event")  # the slow one is now stuck holding event 0
        for i in range(1, 1000):
            bus.publish(reading("ahu-1.supply_temp", i))
        await until(lambda: len(fast_got) == 1000, "delivery")
        # The fast subscriber got everything while the slow one has not finished even its first event.
        assert slow_got == []
        assert [r.value for r in fast_got] == list(range(1000))
        stats = {s.name: s for s in bus.stats()}
        assert stats["fast"].dropped == 0
        # The slow one holds one event in its handler and 10 queued; the rest were dropped, oldest first.
        assert stats["slow"].dropped == 999 - 10
        assert stats["slow"].high_water == 10
        release.set()
        await until(lambda: len(slow_got) == 11, "delivery")
        assert [r.value for r in slow_got] == [0, *range(990, 1000)]  # drop-oldest keeps the latest


async def test_drop_newest_keeps_what_was_queued() -> None:
    got: list[float] = []
    release = asyncio.Event()

    async def handler(ev: Reading) -> None:
        await release.wait()
        got.append(ev.value)  # type: ignore[arg-type]

    async with Bus() as bus:
        bus.subscribe(Reading, handler, name="keep-old", maxsize=3, overflow=Overflow.DROP_NEWEST)
        bus.publish(reading("p.x", 0))
        await asyncio.sleep(0)  # the worker takes event 0 into its handler
        for i in range(1, 10):
            bus.publish(reading("p.x", i))
        release.set()
        await until(lambda: len(got) == 4, "delivery")
        assert got == [0, 1, 2, 3]
        assert bus.stats()[0].dropped == 6


async def test_order_per_point_is_preserved_across_interleaved_points() -> None:
    seen: dict[str, list[int]] = {}

    async def handler(ev: Reading) -> None:
        seen.setdefault(ev.point, []).append(ev.value)  # type: ignore[arg-type]
        if ev.value % 7 == 0:  # type: ignore[operator]
            await asyncio.sleep(0)  # yield mid-stream: order must still hold

    async with Bus() as bus:
        bus.subscribe(Reading, handler, name="ordered")
        for i in range(300):
            bus.publish(reading(f"dev-{i % 3}.p", i))
        await bus.drain()
    assert seen == {f"dev-{k}.p": list(range(k, 300, 3)) for k in range(3)}


async def test_subscription_is_by_type_including_subclasses() -> None:
    everything: list[Event] = []
    commands: list[Command] = []
    async with Bus() as bus:
        bus.subscribe(Event, everything.append, name="all")
        bus.subscribe(Command, commands.append, name="commands")
        bus.publish(reading("a.b", 1))
        bus.publish(Command(point="a.b", value=2))
        await bus.drain()
    assert [type(e) for e in everything] == [Reading, Command]
    assert [c.value for c in commands] == [2]


async def test_failing_handler_is_logged_counted_and_the_subscriber_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[float] = []

    def handler(ev: Reading) -> None:
        if ev.value == 1:
            raise ValueError("boom")
        got.append(ev.value)  # type: ignore[arg-type]

    async with Bus() as bus:
        bus.subscribe(Reading, handler, name="flaky")
        for i in range(3):
            bus.publish(reading("a.b", i))
        await bus.drain()
        assert bus.stats()[0].failed == 1
        assert bus.stats()[0].delivered == 2
    assert got == [0, 2]
    record = next(r for r in caplog.records if "flaky failed" in r.getMessage())
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


async def test_batch_subscriber_gets_events_in_order_in_batches() -> None:
    batches: list[list[int]] = []
    async with Bus() as bus:
        bus.subscribe_batch(Reading, lambda evs: batches.append([e.value for e in evs]), name="history")  # type: ignore[misc]
        for i in range(1500):
            bus.publish(reading("m.p", i))
        await bus.drain()
    assert [v for b in batches for v in b] == list(range(1500))
    assert len(batches) < 1500
    assert max(len(b) for b in batches) <= 512


async def test_unsubscribe_stops_delivery_and_subscribe_after_start_works() -> None:
    got: list[float] = []
    async with Bus() as bus:
        unsubscribe = bus.subscribe(Reading, got.append, name="late")  # type: ignore[arg-type]
        bus.publish(reading("a.b", 1))
        await bus.drain()
        unsubscribe()
        bus.publish(reading("a.b", 2))
        await asyncio.sleep(0.01)
    assert [r.value for r in got] == [1]  # type: ignore[attr-defined]


async def test_events_queued_before_start_are_delivered_on_start() -> None:
    bus = Bus()
    got: list[Reading] = []
    bus.subscribe(Reading, got.append, name="early")
    bus.publish(reading("a.b", 5))
    async with bus:
        await bus.drain()
    assert [r.value for r in got] == [5]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize must be >= 1, got 0"):
        Bus().subscribe(Reading, lambda e: None, name="x", maxsize=0)


def test_context_chain_links_cause_and_effect() -> None:
    cause = Reading(point="room-201-occ.occupied", value=False, context=Context(origin="adapter:mqtt"))
    effect = Command(point="room-201-vav.setpoint", value=28.0, context=cause.context.child("automation:energy"))
    assert effect.context.parent_id == cause.context.id
    assert effect.context.origin == "automation:energy"
    assert effect.context.id != cause.context.id
    assert StateChanged.__dataclass_params__.frozen  # type: ignore[attr-defined]
