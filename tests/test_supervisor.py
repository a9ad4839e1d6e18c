"""Supervised services: backoff, give-up on errors retrying cannot fix, recovery, cancellation."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import pytest

from hub.errors import AdapterAuthError, AdapterNotReady, ConfigError, Problem
from hub.supervisor import Backoff, Health, ServiceHealth, supervise
from tests.conftest import FakeClock
from tests.helpers import until


class Scripted:
    """A service that plays a script: each entry is an exception to raise, or a number of seconds of
    healthy running (on the fake clock) before it fails with AdapterNotReady, or "serve" to run forever."""

    name = "scripted"

    def __init__(self, clock: FakeClock, script: list[BaseException | float | str]) -> None:
        self.clock = clock
        self.script = list(script)
        self.runs = 0
        self.serving = asyncio.Event()

    async def run(self, ready: Callable[[], None]) -> None:
        self.runs += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        ready()
        if step == "serve":
            self.serving.set()
            await asyncio.Event().wait()
        assert isinstance(step, float)
        self.clock.advance(step)
        raise AdapterNotReady("connection lost")


async def run_until_parked(service: Scripted, clock: FakeClock, backoff: Backoff | None = None) -> ServiceHealth:
    health = ServiceHealth(service.name, "adapters")
    task = asyncio.create_task(supervise(service, health, backoff=backoff, clock=clock, rng=random.Random(1)))
    parked = asyncio.create_task(clock.parked.wait())
    serving = asyncio.create_task(service.serving.wait())
    await asyncio.wait([task, parked, serving], return_when=asyncio.FIRST_COMPLETED, timeout=5)
    if not task.done():
        task.cancel()
    parked.cancel()
    serving.cancel()
    await asyncio.gather(task, parked, serving, return_exceptions=True)
    return health


async def test_not_ready_retries_with_growing_jittered_backoff(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(max_sleeps=6)
    svc = Scripted(clock, [AdapterNotReady("refused")] * 6 + ["serve"])
    backoff = Backoff(initial=1, maximum=8, factor=2, jitter=0.2)
    await run_until_parked(svc, clock, backoff)
    assert len(clock.sleeps) == 6
    for delay, base in zip(clock.sleeps, [1, 2, 4, 8, 8, 8], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert len(set(clock.sleeps)) == 6  # jittered: no two retries in lockstep
    warnings = [r for r in caplog.records if "is not reachable" in r.getMessage()]
    assert len(warnings) == 1  # logged once when it starts failing, not on every retry


async def test_recovers_and_logs_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    svc = Scripted(clock, [AdapterNotReady("refused"), AdapterNotReady("refused"), "serve"])
    health = ServiceHealth(svc.name, "adapters")
    task = asyncio.create_task(supervise(svc, health, clock=clock))
    await until(lambda: health.state is Health.RUNNING, "the service to recover")
    assert health.restarts == 2
    assert health.last_error == "refused"
    assert [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()] == [
        "scripted recovered after 2 restart(s)"
    ]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert health.state is Health.STOPPED


@pytest.mark.parametrize(
    "error",
    [
        AdapterAuthError("broker refused user 'bmhub': not authorised"),
        ConfigError([Problem("site_model.yaml", 3, "zones[0]", "bad")]),
    ],
)
async def test_auth_and_config_errors_stop_retrying_and_say_why(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    svc = Scripted(clock, [error, "serve"])
    health = ServiceHealth(svc.name, "adapters")
    await asyncio.wait_for(supervise(svc, health, clock=clock), 5)  # returns: gave up
    assert svc.runs == 1
    assert clock.sleeps == []
    assert health.state is Health.FAILED
    assert health.last_error == str(error)
    assert health.ready.is_set()  # the runtime does not wait for it forever
    assert f"scripted stopped and will not retry: {error}" in caplog.text


async def test_a_bug_is_logged_with_traceback_and_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(max_sleeps=3)
    svc = Scripted(clock, [KeyError("oops")] * 3 + ["serve"])
    health = await run_until_parked(svc, clock, Backoff(initial=2, jitter=0))
    assert clock.sleeps == [2, 4, 8]  # never a hot loop
    assert health.last_error == "KeyError: 'oops'"
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 3
    assert all(r.exc_info for r in crashes)


async def test_backoff_resets_after_a_long_healthy_run() -> None:
    clock = FakeClock(max_sleeps=4)
    # fails, fails, then runs 100 s (> reset_after 30) and fails, then fails again
    svc = Scripted(clock, [AdapterNotReady("x"), AdapterNotReady("x"), 100.0, AdapterNotReady("x"), "serve"])
    await run_until_parked(svc, clock, Backoff(initial=1, factor=2, jitter=0, reset_after=30))
    assert clock.sleeps == [1, 2, 1, 2]


async def test_a_service_that_returns_is_stopped_not_restarted() -> None:
    class Once:
        name = "once"

        async def run(self, ready: Callable[[], None]) -> None:
            ready()

    health = ServiceHealth("once", "core")
    await asyncio.wait_for(supervise(Once(), health, clock=FakeClock()), 5)
    assert health.state is Health.STOPPED
    assert health.restarts == 0


def test_backoff_delay_is_capped() -> None:
    b = Backoff(initial=1, maximum=60, factor=2, jitter=0)
    assert [b.delay(n) for n in (0, 1, 5, 6, 50)] == [1, 2, 32, 60, 60]


async def test_a_first_failure_settles_the_start_so_the_hub_is_not_held_up() -> None:
    clock = FakeClock(max_sleeps=0)  # the first backoff sleep parks: the service stays retrying
    svc = Scripted(clock, [AdapterNotReady("upsd refused the connection"), "serve"])
    health = ServiceHealth(svc.name, "adapters")
    task = asyncio.create_task(supervise(svc, health, clock=clock))
    try:
        await asyncio.wait_for(health.ready.wait(), 5)
        assert health.state is Health.RETRYING  # settled, not running: the runtime may start the next stage
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
