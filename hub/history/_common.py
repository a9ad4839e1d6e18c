"""What both history services share: the events they take, draining the bus at a stop, a batch timer."""

from __future__ import annotations

import asyncio
import time

from hub.bus import Bus

__all__ = ["SUBSCRIBER", "drain_subscriber", "wait_batch"]

SUBSCRIBER = "history"
"""The bus subscriber's name (``bmhub status`` shows its queue and drops under it)."""


async def drain_subscriber(bus: Bus, name: str, within: float) -> int:
    """Let the bus deliver what it still holds for ``name`` (its handler is synchronous: once the queue is empty,
    everything is in hand). Returns what is still queued after ``within`` seconds (normally 0)."""
    deadline = time.monotonic() + within
    while True:
        queued = sum(s.queued for s in bus.stats() if s.name == name)
        if queued == 0 or time.monotonic() >= deadline:
            return queued
        await asyncio.sleep(0.001)


async def wait_batch(wake: asyncio.Event, pending: int, size: int, first_at: float | None, interval: float) -> bool:
    """Wait until a batch is due: ``size`` items pending, or the oldest has waited ``interval`` seconds.

    Returns True when a batch is due now; False when woken early (more data came: look again)."""
    if pending >= size:
        return True
    if first_at is None:
        await wake.wait()
        wake.clear()
        return False
    delay = first_at + interval - time.monotonic()
    if delay <= 0:
        return True
    try:
        async with asyncio.timeout(delay):
            await wake.wait()
    except TimeoutError:
        return True
    wake.clear()
    return False
