"""Waiting in tests: bounded polling for conditions no event signals, a hub running for a block, and its HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

from hub.runtime import Runtime

__all__ = ["http_get", "running", "until"]

WAIT = 10.0  # seconds: generous for CI; a bound on waiting, not a claim about speed


async def until(condition: Callable[[], Any], what: str) -> Any:
    """Wait until ``condition()`` is truthy and return it; fail naming ``what`` after ``WAIT`` seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while not (result := condition()):  # noqa: ASYNC110 - plain state, no event to wait on
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {WAIT:.0f}s waiting for {what}") from None
    return result


@contextlib.asynccontextmanager
async def running(rt: Runtime) -> AsyncIterator[Runtime]:
    """Run ``rt`` for the block: started (every stage settled) on entry, stopped in stages on exit."""
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set), name="hub")
    try:
        await until(ready.is_set, "the hub to start")
        yield rt
    finally:
        rt.request_stop()
        await asyncio.wait_for(task, 10)


def http_get(url: str) -> tuple[int, Any]:
    """GET a JSON resource of the test's own hub (blocking: call it with ``asyncio.to_thread`` from async code):
    the status and the decoded body, for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
