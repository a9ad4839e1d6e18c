"""The simulated UPSes: a tiny upsd (RFC 9271) answering for every NUT device of a site graph.

:class:`NutSimulator` listens on one loopback address and answers ``VER``, ``NETVER``, ``HELP``,
``USERNAME``, ``PASSWORD``, ``LOGOUT``, ``LIST UPS``, ``LIST VAR``, ``GET VAR`` and ``GET UPSDESC`` for every
UPS name the site's NUT devices use (the bundled model puts them all on 127.0.0.1:3493). Protocol words are
quoted with :mod:`adapters.nut._protocol`, so the simulated server and the hub's client agree by construction;
the client is also tested against a real upsd.

Values drift plausibly for a double-conversion UPS in the Tokyo area (100 V, 50 Hz): load 20-40 % (higher
while the halls are open), battery charge ~100 %, runtime ~1800 s at that load, input ~100 V 50 Hz with a
little noise, output steady at 100 V. Simulated time is ``start + clock seconds since the first run × speed``
(as in :mod:`adapters.sim.mqtt`); noise is a function of seed, UPS, variable and simulated time, and each UPS
draws its constants from its own generator, so a given seed gives the same UPSes every run.

Injected states, for the demo and tests: :meth:`NutSimulator.set_status` (``"OB DISCHRG"``: mains lost, the
battery drains at the present load; input reads 0 V; ``None`` returns to the automatic ``OL``/``OL CHRG``),
:meth:`~NutSimulator.set_var` (any variable, verbatim) and :meth:`~NutSimulator.set_driver` (``"lost"`` →
``ERR DRIVER-NOT-CONNECTED``, ``"stale"`` → ``ERR DATA-STALE``).

With ``users``, reading asks for a matching ``USERNAME`` and ``PASSWORD`` first (``ERR ACCESS-DENIED``
otherwise). A stock upsd 2.8 lets anyone read; this mode exists to exercise a hub whose credentials are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
import socket
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from adapters.nut._protocol import join, split
from adapters.nut._status import parse_status
from adapters.sim._time import SimTime
from hub.clock import Clock
from hub.errors import AdapterNotReady
from hub.graph import SiteGraph
from hub.site import NutDevice

__all__ = ["DriverState", "NutSimulator"]

log = logging.getLogger(__name__)

DriverState = Literal["connected", "lost", "stale"]

_VERSION = "Network UPS Tools upsd 2.8.0 - bmhub simulator"
_NETVER = "1.3"
_MAX_LINE = 1024  # bytes per request line; upsd's own limit is about this
_STEP = 10.0  # simulated seconds per battery integration step (and per noise sample)
_MAX_CATCH_UP = 86400.0  # simulated seconds integrated at most at once; the battery is settled by then
_RECHARGE = 3 * 3600.0  # simulated seconds from empty to full on mains
_NOMINAL_LOAD = 30.0  # % at which ``runtime_full`` holds


def _rng(seed: int, *names: str) -> random.Random:
    return random.Random(zlib.crc32(":".join((str(seed), *names)).encode()))  # noqa: S311 - a simulation


class _SimUps:
    """One UPS: constants drawn once, the battery integrated lazily up to the moment it is asked about."""

    def __init__(self, name: str, device: str, description: str, seed: int) -> None:
        self.name = name
        self.device = device
        self.description = description
        self.seed = seed
        rng = _rng(seed, "nut", name)
        self.runtime_full = rng.uniform(1650.0, 2000.0)  # seconds on a full battery at the nominal load
        self.base_load = rng.uniform(22.0, 30.0)
        self.base_voltage = rng.uniform(99.0, 101.5)
        self.phase = rng.uniform(0.0, 2 * math.pi)
        self.charge = 100.0
        self.t = 0.0  # simulated seconds the battery is integrated up to
        self.status: str | None = None  # injected; None: automatic
        self.overrides: dict[str, str] = {}
        self.driver: DriverState = "connected"

    def noise(self, var: str, t: float, spread: float) -> float:
        return _rng(self.seed, "nut", self.name, var, str(int(t // _STEP))).uniform(-spread, spread)

    def load(self, t: float, busy: bool) -> float:
        wave = 3.0 * math.sin(2 * math.pi * t / 5400.0 + self.phase)
        return min(40.0, max(20.0, self.base_load + (6.0 if busy else 0.0) + wave + self.noise("load", t, 1.0)))

    def effective_status(self) -> str:
        if self.status is not None:
            return self.status
        return "OL" if self.charge >= 99.5 else "OL CHRG"

    def advance(self, t: float, load: float) -> None:
        """Integrate the battery from ``self.t`` to ``t`` at ``load``."""
        start = max(self.t, t - _MAX_CATCH_UP)
        on_battery = "OB" in parse_status(self.effective_status())
        drain = 100.0 / (self.runtime_full * _NOMINAL_LOAD / load)  # % per second
        while start < t:
            dt = min(_STEP, t - start)
            if on_battery:
                self.charge = max(0.0, self.charge - drain * dt)
            else:
                self.charge = min(100.0, self.charge + 100.0 / _RECHARGE * dt)
            start += dt
        self.t = max(self.t, t)

    def values(self, t: float, busy: bool) -> dict[str, str]:
        load = self.load(t, busy)
        self.advance(t, load)
        status = self.effective_status()
        mains = "OB" not in parse_status(status)
        runtime = self.runtime_full * _NOMINAL_LOAD / load * self.charge / 100.0
        volts = self.base_voltage + 1.2 * math.sin(2 * math.pi * t / 7200.0 + self.phase)
        values = {
            "battery.charge": f"{round(self.charge)}",
            "battery.charge.low": "20",
            "battery.runtime": f"{round(runtime)}",
            "battery.runtime.low": "300",
            "device.mfr": "bmhub",
            "device.model": "Simulated double-conversion UPS",
            "device.type": "ups",
            "driver.name": "bmhub-sim",
            "driver.version": "0.1",
            "input.frequency": f"{50.0 + self.noise('input.frequency', t, 0.03):.2f}" if mains else "0.00",
            "input.frequency.nominal": "50",
            "input.voltage": f"{volts + self.noise('input.voltage', t, 0.3):.1f}" if mains else "0.0",
            "input.voltage.nominal": "100",
            "output.voltage": f"{100.0 + self.noise('output.voltage', t, 0.4):.1f}",
            "output.voltage.nominal": "100",
            "ups.load": f"{round(load)}",
            "ups.mfr": "bmhub",
            "ups.model": "Simulated double-conversion UPS",
            "ups.status": status,
        }
        for var, value in self.overrides.items():
            if value == "":
                values.pop(var, None)  # an empty override removes the variable, as in a dummy-ups file
            else:
                values[var] = value
        return dict(sorted(values.items()))


@dataclass
class _Session:
    username: str | None = None
    password: str | None = None


class NutSimulator:
    """Every UPS of ``graph`` behind one simulated upsd on ``bind`` (loopback only): a supervised service."""

    name = "nut-sim"

    def __init__(
        self,
        graph: SiteGraph,
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: datetime | None = None,
        clock: Clock | None = None,
        bind: tuple[str, int] = ("127.0.0.1", 3493),
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.time = SimTime(graph, speed=speed, start=start, clock=clock)
        host, port = bind
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the NUT simulator binds to loopback only, got {host!r}")
        self.graph = graph
        self.seed = seed
        self.speed = speed
        self.host, self.port = host, port
        self._users = dict(users) if users is not None else None
        self.ups: dict[str, _SimUps] = {}
        for dev in graph.find_devices(protocol="nut"):
            assert isinstance(dev.spec, NutDevice)  # protocol "nut" devices are NutDevices
            name = dev.spec.ups
            if name in self.ups:
                log.warning("UPS name %s used by %s and %s: simulated once", name, self.ups[name].device, dev.id)
                continue
            self.ups[name] = _SimUps(name, dev.id, dev.spec.name or dev.id, seed)
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.connections = 0
        self.requests = 0

    # -------------------------------------------------------------------------------------------- model
    def now(self) -> float:
        """Simulated seconds since the first run (0 before it)."""
        return self.time.now()

    def local(self, t: float) -> datetime:
        return self.time.local(t)

    def values(self, ups: str) -> dict[str, str]:
        """What ``LIST VAR`` answers for ``ups`` (a UPS name or device id) now, driver state aside."""
        u = self._find(ups)
        t = self.now()
        return u.values(t, self.time.calendar.is_open(self.local(t)))

    def set_status(self, ups: str, status: str | None) -> None:
        """Report ``status`` verbatim (``"OB DISCHRG"``, ``"OL OB"``, ``""``); None: automatic again.

        The battery follows: with OB it drains at the present load, otherwise it recharges.
        """
        u = self._find(ups)
        t = self.now()
        u.advance(t, u.load(t, self.time.calendar.is_open(self.local(t))))  # what happened so far, in the old state
        u.status = status

    def set_var(self, ups: str, var: str, value: str | None) -> None:
        """Report ``var`` as ``value`` verbatim (``""`` removes it from the answer); None: simulated again."""
        if var == "ups.status":
            self.set_status(ups, value)
            return
        u = self._find(ups)
        if value is None:
            u.overrides.pop(var, None)
        else:
            u.overrides[var] = value

    def set_driver(self, ups: str, state: DriverState) -> None:
        """``lost``: upsd answers ERR DRIVER-NOT-CONNECTED; ``stale``: ERR DATA-STALE; ``connected``: data."""
        self._find(ups).driver = state

    def _find(self, ups: str) -> _SimUps:
        found = self.ups.get(ups) or next((u for u in self.ups.values() if u.device == ups), None)
        if found is None:
            raise KeyError(f"no simulated UPS {ups!r}; UPS names: {', '.join(self.ups) or 'none'}")
        return found

    # -------------------------------------------------------------------------------------------- server
    async def run(self, ready: Callable[[], None]) -> None:
        try:
            server = await asyncio.start_server(self._serve, self.host, self.port, limit=_MAX_LINE)
        except OSError as exc:
            raise AdapterNotReady(f"NUT simulator cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = int(server.sockets[0].getsockname()[1])
        self.time.begin()
        log.info("simulated upsd on %s:%d for %d UPS: %s", self.host, self.port, len(self.ups), ", ".join(self.ups))
        ready()
        try:
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()  # each handler then reads EOF and ends by itself
            handlers = [t for t in self._handlers if not t.done()]
            if handlers:
                _, pending = await asyncio.wait(handlers, timeout=1.0)
                # Cancelling a handler is the last resort: Python 3.11's start_server then logs the
                # CancelledError as an error (fixed in 3.12).
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = _Session()
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    break  # the client left, or sent a line no upsd would read
                self.requests += 1
                lines, done = self.answer(session, raw.decode("utf-8", "replace"))
                writer.writelines(lines)
                await writer.drain()
                if done:
                    break
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.transport.abort()

    def answer(self, session: _Session, line: str) -> tuple[list[bytes], bool]:
        """The answer lines to one request line, and whether the connection ends after them."""
        words = split(line)
        if not words:
            return [], False
        cmd, args = words[0].upper(), words[1:]
        if cmd == "VER":
            return [f"{_VERSION}\n".encode()], False
        if cmd == "NETVER":
            return [f"{_NETVER}\n".encode()], False
        if cmd == "HELP":
            return [b"Commands: HELP VER NETVER GET LIST USERNAME PASSWORD LOGOUT\n"], False
        if cmd == "LOGOUT":
            return [b"OK Goodbye\n"], True
        if cmd in ("USERNAME", "PASSWORD"):
            if len(args) != 1:
                return [b"ERR INVALID-ARGUMENT\n"], False
            if (session.username if cmd == "USERNAME" else session.password) is not None:
                return [f"ERR ALREADY-SET-{cmd}\n".encode()], False
            if cmd == "USERNAME":
                session.username = args[0]
            else:
                session.password = args[0]
            return [b"OK\n"], False
        if cmd not in ("LIST", "GET"):
            return [b"ERR UNKNOWN-COMMAND\n"], False
        if self._users is not None and (
            session.username is None or self._users.get(session.username) != session.password
        ):
            return [b"ERR ACCESS-DENIED\n"], False
        return (self._list(args) if cmd == "LIST" else self._get(args)), False

    def _list(self, args: list[str]) -> list[bytes]:
        if args == ["UPS"]:
            rows = [join("UPS", u.name, u.description, quote_last=True) for u in self.ups.values()]
            return [b"BEGIN LIST UPS\n", *rows, b"END LIST UPS\n"]
        if len(args) != 2 or args[0].upper() != "VAR":
            return [b"ERR INVALID-ARGUMENT\n"]
        name = args[1]
        refused = self._refusal(name)
        if refused is not None:
            return [refused]
        rows = [join("VAR", name, var, value, quote_last=True) for var, value in self.values(name).items()]
        return [join("BEGIN", "LIST", "VAR", name), *rows, join("END", "LIST", "VAR", name)]

    def _get(self, args: list[str]) -> list[bytes]:
        if len(args) == 2 and args[0].upper() == "UPSDESC":
            if args[1] not in self.ups:
                return [b"ERR UNKNOWN-UPS\n"]
            return [join("UPSDESC", args[1], self.ups[args[1]].description, quote_last=True)]
        if len(args) != 3 or args[0].upper() != "VAR":
            return [b"ERR INVALID-ARGUMENT\n"]
        name, var = args[1], args[2]
        refused = self._refusal(name)
        if refused is not None:
            return [refused]
        value = self.values(name).get(var)
        if value is None:
            return [b"ERR VAR-NOT-SUPPORTED\n"]
        return [join("VAR", name, var, value, quote_last=True)]

    def _refusal(self, name: str) -> bytes | None:
        u = self.ups.get(name)
        if u is None:
            return b"ERR UNKNOWN-UPS\n"
        if u.driver == "lost":
            return b"ERR DRIVER-NOT-CONNECTED\n"
        if u.driver == "stale":
            return b"ERR DATA-STALE\n"
        return None

    def details(self) -> dict[str, Any]:
        return {
            "bind": f"{self.host}:{self.port}",
            "connections": self.connections,
            "clients": len(self._writers),
            "requests": self.requests,
            "ups": {
                u.name: {"status": u.effective_status(), "charge": round(u.charge, 1), "driver": u.driver}
                for u in self.ups.values()
            },
        }
