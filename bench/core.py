"""Core benchmark: site-model load, bus throughput, and start/stop of a real `bmhub run`.

Run on demand:  .venv/bin/python bench/core.py   (results go to stdout; record them in docs/performance.md)
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hub.bus import Bus
from hub.events import Reading
from hub.graph import SiteGraph
from hub.site import read_site

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site_model.yaml"


def median_of(runs: int, fn: object) -> float:
    return statistics.median(fn() for _ in range(runs))  # type: ignore[operator]


def bench_load() -> None:
    def load() -> float:
        t = time.perf_counter()
        model, _ = read_site(SITE)
        SiteGraph(model)
        return time.perf_counter() - t

    model, _ = read_site(SITE)
    c = SiteGraph(model).counts()
    print(f"site model load + check + graph ({c['zones']} zones, {c['devices']} devices, {c['points']} points): "
          f"{median_of(5, load) * 1000:.0f} ms (median of 5)")  # fmt: skip


async def bus_rate(n: int, subscribers: int, slow: bool) -> tuple[float, int]:
    got = [0] * subscribers
    stop = asyncio.Event()
    async with Bus() as bus:
        for i in range(subscribers):

            def handler(ev: Reading, i: int = i) -> None:
                got[i] += 1

            bus.subscribe(Reading, handler, name=f"s{i}", maxsize=n)
        if slow:

            async def stuck(ev: Reading) -> None:
                await stop.wait()

            bus.subscribe(Reading, stuck, name="slow", maxsize=1000)
        events = [Reading(point=f"dev-{k % 500}.p", value=float(k)) for k in range(n)]
        t = time.perf_counter()
        for ev in events:
            bus.publish(ev)
        while min(got) < n:  # noqa: ASYNC110 - busy-wait on purpose: we time delivery, not wake-ups
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - t
        dropped = sum(s.dropped for s in bus.stats())
        stop.set()
    return n / elapsed, dropped


def bench_bus() -> None:
    n = 200_000
    for subs, slow in ((1, False), (3, False), (3, True)):
        rates = [asyncio.run(bus_rate(n, subs, slow)) for _ in range(3)]
        rate = statistics.median(r for r, _ in rates)
        extra = f" + 1 stuck subscriber (dropped {rates[0][1]:,}, others unaffected)" if slow else ""
        print(f"bus: {n:,} readings to {subs} subscriber(s){extra}: {rate:,.0f} readings/s delivered to each")


def bench_start_stop() -> None:
    starts, stops = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as state:
            env = {**os.environ, "BMHUB_STATE_DIR": state, "PYTHONUNBUFFERED": "1"}
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "hub", "run", str(SITE)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
            assert proc.stdout is not None
            out = b""
            deadline = time.monotonic() + 30
            while b"bmhub running" not in out and time.monotonic() < deadline:
                if select.select([proc.stdout], [], [], 0.05)[0]:
                    out += os.read(proc.stdout.fileno(), 65536)
            starts.append(time.perf_counter() - t)
            t = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
            stops.append(time.perf_counter() - t)
            assert proc.returncode == 0
    print(f"bmhub run on the real site: ready in {statistics.median(starts) * 1000:.0f} ms (process start included), "
          f"SIGTERM to exit {statistics.median(stops) * 1000:.0f} ms (median of 3)")  # fmt: skip


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    bench_load()
    bench_bus()
    bench_start_stop()
