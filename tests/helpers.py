"""Waiting in tests: bounded polling for conditions no event signals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["until"]

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
