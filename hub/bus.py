"""A typed in-process event bus with one bounded queue per subscriber.

``publish`` never blocks and never awaits: it appends the event to the queue of every subscriber of its type
and returns. Each subscriber drains its own queue in its own task, in order, so a slow subscriber delays
only itself, and every subscriber sees the events of any one point in the order they were published.

When a subscriber's queue is full, its *overflow policy* decides (anyio ``docs/streams.rst``):

- ``drop-oldest`` (default): the oldest queued event is discarded. Right for consumers that want the latest
  picture (a WebSocket client, a display), never stalls the publisher.
- ``drop-newest``: the new event is discarded. Right where what was already queued must not be reordered
  or lost to newer data.

Either way the drop is counted in :class:`SubscriberStats`, logged (rate-limited) and visible in health.
Consumers that must lose nothing (history) size their queue for bursts and hand events off in batches.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from hub.events import Event

__all__ = ["BatchHandler", "Bus", "Handler", "Overflow", "SubscriberStats", "Unsubscribe"]

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=Event)
Handler = Callable[[_E], Awaitable[None] | None]
BatchHandler = Callable[[Sequence[_E]], Awaitable[None] | None]
Unsubscribe = Callable[[], None]

_MAX_BATCH = 512
_DROP_LOG_INTERVAL = 10.0


class Overflow(StrEnum):
    DROP_OLDEST = "drop-oldest"
    DROP_NEWEST = "drop-newest"


@dataclass
class SubscriberStats:
    """Counters of one subscriber, as shown by health and metrics."""

    name: str
    event_types: tuple[str, ...]
    maxsize: int
    overflow: Overflow
    queued: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    high_water: int = 0


@dataclass(eq=False)
class _Subscriber:
    stats: SubscriberStats
    types: tuple[type[Event], ...]
    handler: Callable[[Any], Awaitable[None] | None]
    is_async: bool
    batch: bool
    queue: deque[Event] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_drop_log: float = 0.0
    drops_since_log: int = 0


class Bus:
    """The hub's event bus. Use as ``async with Bus() as bus:``; subscriber tasks live inside that block."""

    def __init__(self) -> None:
        self._subs: list[_Subscriber] = []
        self._routes: dict[type[Event], tuple[_Subscriber, ...]] = {}
        self._tg: asyncio.TaskGroup | None = None
        self.published = 0

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for sub in self._subs:
            self._start(sub)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        for sub in self._subs:
            if sub.task is not None:
                sub.task.cancel()
        if tg is not None:
            await tg.__aexit__(et, exc, tb)
        for sub in self._subs:
            sub.task = None

    def _start(self, sub: _Subscriber) -> None:
        assert self._tg is not None
        sub.task = self._tg.create_task(self._worker(sub), name=f"bus:{sub.stats.name}")

    # ------------------------------------------------------------------ subscribe / publish
    def subscribe(
        self,
        event_type: type[_E] | tuple[type[_E], ...],
        handler: Handler[_E],
        *,
        name: str,
        maxsize: int = 10_000,
        overflow: Overflow = Overflow.DROP_OLDEST,
    ) -> Unsubscribe:
        """Call ``handler`` for every event of ``event_type`` (subclasses included), one at a time, in order.

        ``handler`` may be a plain function (cheapest) or a coroutine function. It must not block the loop.
        An exception in it is logged with its traceback and counted; the subscriber goes on.
        """
        return self._add(event_type, handler, name=name, maxsize=maxsize, overflow=overflow, batch=False)

    def subscribe_batch(
        self,
        event_type: type[_E] | tuple[type[_E], ...],
        handler: BatchHandler[_E],
        *,
        name: str,
        maxsize: int = 100_000,
        overflow: Overflow = Overflow.DROP_NEWEST,
    ) -> Unsubscribe:
        """Like :meth:`subscribe`, but ``handler`` gets every queued event at once (up to 512), in order.

        For consumers that do better with batches (history writers, MQTT state publishers).
        """
        return self._add(event_type, handler, name=name, maxsize=maxsize, overflow=overflow, batch=True)

    def _add(
        self,
        event_type: type[_E] | tuple[type[_E], ...],
        handler: Callable[[Any], Awaitable[None] | None],
        *,
        name: str,
        maxsize: int,
        overflow: Overflow,
        batch: bool,
    ) -> Unsubscribe:
        if maxsize < 1:
            raise ValueError(f"subscriber {name}: maxsize must be >= 1, got {maxsize}")
        types = event_type if isinstance(event_type, tuple) else (event_type,)
        sub = _Subscriber(
            stats=SubscriberStats(name, tuple(t.__name__ for t in types), maxsize, Overflow(overflow)),
            types=types,
            handler=handler,
            is_async=inspect.iscoroutinefunction(handler),
            batch=batch,
        )
        sub.idle.set()
        self._subs.append(sub)
        self._routes.clear()
        if self._tg is not None:
            self._start(sub)

        def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)
                self._routes.clear()
                if sub.task is not None:
                    sub.task.cancel()

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Queue ``event`` for its subscribers. Never blocks."""
        self.published += 1
        subs = self._routes.get(type(event))
        if subs is None:
            subs = self._routes[type(event)] = tuple(s for s in self._subs if isinstance(event, s.types))
        for sub in subs:
            q = sub.queue
            st = sub.stats
            if len(q) >= st.maxsize:
                st.dropped += 1
                self._note_drop(sub)
                if st.overflow is Overflow.DROP_NEWEST:
                    continue
                q.popleft()
            q.append(event)
            if len(q) > st.high_water:
                st.high_water = len(q)
            sub.idle.clear()
            sub.wakeup.set()

    def _note_drop(self, sub: _Subscriber) -> None:
        sub.drops_since_log += 1
        now = time.monotonic()
        if now - sub.last_drop_log >= _DROP_LOG_INTERVAL:
            log.warning(
                "bus subscriber %s is too slow: dropped %d event(s) (%s, queue %d); %d dropped in total",
                sub.stats.name, sub.drops_since_log, sub.stats.overflow.value, sub.stats.maxsize,
                sub.stats.dropped,
            )  # fmt: skip
            sub.last_drop_log = now
            sub.drops_since_log = 0

    # ------------------------------------------------------------------ delivery
    async def _worker(self, sub: _Subscriber) -> None:
        q = sub.queue
        while True:
            if not q:
                sub.idle.set()
                sub.wakeup.clear()
                await sub.wakeup.wait()
                continue
            if sub.batch:
                n = min(len(q), _MAX_BATCH)
                await self._call(sub, [q.popleft() for _ in range(n)], n)
            else:
                # One at a time: what waits stays in the queue, under its bound and overflow policy.
                await self._call(sub, q.popleft(), 1)

    async def _call(self, sub: _Subscriber, arg: Any, count: int) -> None:
        try:
            if sub.is_async:
                await cast(Awaitable[None], sub.handler(arg))
            else:
                sub.handler(arg)
            sub.stats.delivered += count
        except asyncio.CancelledError:
            raise
        except Exception:
            sub.stats.failed += count
            log.exception("bus subscriber %s failed on %s", sub.stats.name, _describe(arg))

    # ------------------------------------------------------------------ introspection
    def stats(self) -> list[SubscriberStats]:
        for sub in self._subs:
            sub.stats.queued = len(sub.queue)
        return [sub.stats for sub in self._subs]

    async def drain(self) -> None:
        """Wait until every running subscriber's queue is empty and its handler idle.

        Bound it with ``asyncio.timeout``: a stuck handler never drains."""
        while not all(sub.idle.is_set() for sub in self._subs if sub.task is not None):
            for sub in list(self._subs):
                if sub.task is not None:
                    await sub.idle.wait()


def _describe(arg: Any) -> str:
    if isinstance(arg, list):
        return f"a batch of {len(arg)} event(s) starting with {type(arg[0]).__name__}" if arg else "an empty batch"
    return type(arg).__name__
