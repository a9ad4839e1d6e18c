"""Shared fixtures: paths, a controllable clock, and leak checks that fail a test leaving tasks or threads
behind (pymodbus ``test/conftest.py`` system_health_check, HA ``verify_cleanup``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"
SITE_MODEL = ROOT / "site_model.yaml"


class FakeClock:
    """Virtual time: ``sleep`` advances the clock instead of waiting, and records the delay.

    After ``max_sleeps`` sleeps, further sleeps block until cancelled, so a service loop under test stops at
    a known point without real waiting.
    """

    def __init__(self, start: datetime | None = None, *, max_sleeps: int | None = None) -> None:
        self._now = start or datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
        self._mono = 1000.0
        self.sleeps: list[float] = []
        self.max_sleeps = max_sleeps
        self.parked = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        if self.max_sleeps is not None and len(self.sleeps) >= self.max_sleeps:
            self.parked.set()
            await asyncio.Event().wait()
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in left:
        t.join(timeout=2)
    left = [t.name for t in left if t.is_alive()]
    if left:
        pytest.fail(f"test left threads running: {left}")


def _children() -> dict[int, str]:
    """Live child processes of this test process (Linux /proc), pid → command line."""
    me = str(os.getpid())
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[1] == me and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """Servers a test starts, it stops: a child process still alive afterwards fails the test (and is killed)."""
    before = set(_children())
    yield
    left = {pid: cmd for pid, cmd in _children().items() if pid not in before}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail(f"test left processes running: {sorted(left.values())}")


@pytest.fixture
async def _no_leaked_tasks() -> AsyncIterator[None]:
    yield
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for t in left:
        t.cancel()
    if left:
        pytest.fail(f"test left tasks running: {sorted(t.get_name() for t in left)}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("asyncio") is not None and isinstance(item, pytest.Function):
            item.fixturenames.append("_no_leaked_tasks")


pytest_plugins = ["tests.servers"]
