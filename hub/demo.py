"""``bmhub demo``: the embedded broker, a simulated building and the hub, on one accelerated clock.

The demo starts its simulated day at 10:00 on the current (or next) business day, so a newcomer at any hour
sees a working morning: rooms filling and emptying within seconds. The hub, the calendar automation and
the simulated devices share one :class:`~hub.clock.ScaledClock`, so they agree on what time it is.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO

from hub.bus import Overflow
from hub.calendar import Calendar
from hub.clock import Clock, SystemClock
from hub.errors import AdapterNotReady
from hub.events import OccupancyChanged
from hub.runtime import Runtime
from hub.site import SiteModel

__all__ = ["ConsoleReport", "SimulatedDevices", "demo_start", "real_time_polling"]

REAL_TIME_PROTOCOLS = ("bacnet", "modbus", "nut")
OWN_PROCESS = ("bacnet",)  # simulators too heavy to share the hub's event loop


def demo_start(calendar: Calendar, now: datetime) -> datetime:
    """10:00 local on today's date if today is a business day and it is not yet 10:00, else on the next one."""
    local = now.astimezone(calendar.tz)
    day = local.date() if local.time() < time(10) else local.date() + timedelta(days=1)
    for _ in range(370):
        if calendar.is_business_day(day):
            return datetime.combine(day, time(10), tzinfo=calendar.tz)
        day += timedelta(days=1)
    raise ValueError("the business calendar never opens")


def real_time_polling(model: SiteModel, speed: float, protocols: Sequence[str] = REAL_TIME_PROTOCOLS) -> SiteModel:
    """``model`` with the intervals of ``protocols``' points multiplied by ``speed``: those devices are then
    polled as often in real time as on site, not ``speed`` times as often.

    On the demo's 60x clock a 60 s interval is one real second: the 317 BACnet devices of the site would take
    317 ReadPropertyMultiple a second and the Modbus gateways (10 s intervals) some 1,500 requests a second,
    more than one core serves with the building simulated in the same process. BACnet changes still arrive at
    once, by COV; MQTT devices report on simulated time as before."""
    types = {}
    for type_id, dtype in model.device_types.items():
        if dtype.protocol in protocols:
            points = [p.model_copy(update={"interval": p.interval * speed}) if p.interval else p for p in dtype.points]
            dtype = dtype.model_copy(update={"points": points})
        types[type_id] = dtype
    return model.model_copy(update={"device_types": types})


class SimulatedDevices:
    """One protocol's simulated devices (``adapters.sim.<protocol>``) as a supervised service.

    The simulators scale time themselves from a real clock: they get the demo's speed, and as their start the
    hub's simulated time at the moment they start, so hub and devices agree on what time it is.
    """

    def __init__(
        self, runtime: Runtime, protocol: str, *, seed: int, speed: float, clock: Clock, site: Path | None = None
    ) -> None:
        """``site``: the site model file, for simulators that run in a process of their own (BACnet)."""
        self.name = f"{protocol}-sim"
        self._site = site
        self.process: asyncio.subprocess.Process | None = None
        self._runtime = runtime
        self._protocol = protocol
        self._seed = seed
        self._speed = speed
        self._clock = clock
        self.simulator: Any = None

    async def run(self, ready: Callable[[], None]) -> None:
        if self._protocol in OWN_PROCESS:
            await self._run_process(ready)
            return
        sim = importlib.import_module(f"adapters.sim.{self._protocol}")  # lazily: hub imports no protocol library
        options: dict[str, Any] = {"seed": self._seed, "speed": self._speed, "start": self._clock.now(),
                                   "clock": SystemClock()}  # fmt: skip
        graph = self._runtime.graph
        if self._protocol == "mqtt":
            # Wherever the hub's broker turned out to be (the embedded one may have moved off a taken port).
            mqtt = importlib.import_module("adapters.mqtt")
            bridge = next(s for _, s in self._runtime.services if isinstance(s, mqtt.MqttBridge))
            self.simulator = sim.MqttSimulator(graph, *bridge.endpoint(), **options)
        elif self._protocol == "modbus":
            self.simulator = sim.ModbusSimulator(graph, **options)
        else:
            self.simulator = sim.NutSimulator(graph, **options)
        await self.simulator.run(ready)

    async def _run_process(self, ready: Callable[[], None]) -> None:
        """``python -m adapters.sim <protocol>``: ready when it prints ``ready``; stopped with SIGTERM."""
        if self._site is None:
            raise ValueError(f"{self.name} runs in a process of its own and needs the site model's path")
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.process = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adapters.sim", self._protocol, str(self._site), "--seed", str(self._seed),
            "--speed", str(self._speed), "--start", self._clock.now().isoformat(), "--log-level", level,
            # Its own session: Ctrl-C is for the demo, which stops it; stdin is how it notices a killed demo.
            "--parent-pipe", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if line.strip() != b"ready":
                raise AdapterNotReady(f"{self.name} exited with {await proc.wait()} before it was ready")
            ready()
            raise AdapterNotReady(f"{self.name} exited with {await proc.wait()}")
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(5):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    def details(self) -> dict[str, Any]:
        if self.process is not None:
            return {"pid": self.process.pid, "returncode": self.process.returncode}
        counts = getattr(self.simulator, "counts", None)
        return dict(counts()) if callable(counts) else {}


class ConsoleReport:
    """Prints, every few seconds, the simulated time, the mode and which bookable rooms changed."""

    name = "console"

    def __init__(self, runtime: Runtime, clock: Clock, *, every: float = 5.0, out: TextIO = sys.stdout) -> None:
        self._rt = runtime
        self._clock = clock
        self._every = every
        self._out = out
        self._changed: dict[str, OccupancyChanged] = {}
        self._shown: dict[str, bool | None] = {}
        self._bookable = {z.id for z in runtime.graph.find_zones(bookable=True)}
        runtime.bus.subscribe(OccupancyChanged, self._on_change, name="console", maxsize=10_000,
                              overflow=Overflow.DROP_OLDEST)  # fmt: skip

    def _on_change(self, ev: OccupancyChanged) -> None:
        if ev.zone in self._bookable:
            self._changed[ev.zone] = ev

    async def run(self, ready: Callable[[], None]) -> None:
        ready()
        tz = self._rt.calendar.tz
        while True:
            await asyncio.sleep(self._every)  # real seconds: this is for the person watching
            rooms = [o for z in self._bookable if (o := self._rt.occupancy.get(z)) is not None]
            occupied = sum(1 for o in rooms if o.occupied)
            people = sum(o.count or 0 for o in rooms)
            flipped = []  # only rooms that became free or occupied, not every change of head count
            for z, ev in sorted(self._changed.items()):
                if self._shown.get(z) is not None and self._shown[z] != ev.occupied:
                    flipped.append(f"{z} {'occupied (' + str(ev.count) + ')' if ev.occupied else 'free'}")
                self._shown[z] = ev.occupied
            changes = ", ".join(flipped)
            self._changed.clear()
            now = self._clock.now().astimezone(tz)
            self._out.write(f"[{now:%a %H:%M}] mode {self._rt.state.mode.value}; {occupied} of "
                            f"{len(self._bookable)} bookable rooms occupied, {people} people in them"
                            + (f"; now {changes}" if changes else "") + "\n")  # fmt: skip
            self._out.flush()
