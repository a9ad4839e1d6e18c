"""The simulated upsd (adapters/sim/nut.py) and the NUT bridge against it: values, injected states, alarms,
refused credentials, an unreachable upsd, and the hub's runtime loading the adapter. The real NUT client
``upsc`` reads the simulator too. The bridge against a real upsd: test_nut_upsd.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.nut import NutBridge, NutClient, NutResponseError, NutSettings, create
from adapters.sim.nut import NutSimulator
from hub.adapter import AdapterContext
from hub.bus import Bus
from hub.clock import Clock, ScaledClock
from hub.events import Alarm, PointState, Quality, Reading
from hub.graph import SiteGraph
from hub.occupancy import OccupancyTracker
from hub.runtime import Runtime
from hub.settings import Settings
from hub.site import load_site
from hub.state import StateStore
from hub.supervisor import Backoff, Health, ServiceHealth, supervise
from tests.conftest import SITE_MODEL, FakeClock
from tests.helpers import until
from tests.servers import find_binary, free_port

MR = "ch-4f-machine-room-ups-1"  # ups ch-mr-ups
WH = "wh-1f-electrical-ups-1"  # ups wh-ups
DC_A = "dc-1f-ups-room-ups-a"  # ups dc-ups-a
DC_B = "dc-1f-ups-room-ups-b"  # ups dc-ups-b
POINTS = ("status", "battery-charge", "battery-runtime", "input-voltage", "input-frequency", "output-voltage", "load")
SPEED = 300.0  # the bridge's clock: its 30 s poll interval takes 0.1 s


@pytest.fixture(scope="module")
def graph() -> SiteGraph:
    return SiteGraph(load_site(SITE_MODEL))


def nut_settings(**kw: Any) -> NutSettings:
    """Settings that ignore the developer's BMHUB_NUT_* environment."""
    return NutSettings(**{"username": None, "password": None, "poll_interval": None, "timeout": 5.0, **kw})


# ------------------------------------------------------------------------------------------------ the rig
@dataclass
class Rig:
    """A NUT bridge under the real supervisor, on a bus of its own, with what it published."""

    bridge: NutBridge
    health: ServiceHealth
    state: StateStore
    readings: list[Reading]
    alarms: list[Alarm]

    def point(self, device: str, point: str) -> PointState | None:
        return self.state.get(f"{device}.{point}")

    def value(self, device: str, point: str) -> Any:
        st = self.point(device, point)
        return st.value if st is not None and st.quality is Quality.GOOD else None

    def quality(self, device: str, point: str) -> Quality | None:
        st = self.point(device, point)
        return st.quality if st is not None else None

    def active(self) -> set[str]:
        """Alarm keys raised and not cleared."""
        on: set[str] = set()
        for a in self.alarms:
            (on.add if a.active else on.discard)(a.key)
        return on

    def events(self, device: str, condition: str) -> list[tuple[bool, str]]:
        return [(a.active, a.severity) for a in self.alarms if a.key == f"nut:{device}:{condition}"]

    async def polls(self, n: int) -> None:
        """Wait for ``n`` more complete polls."""
        target = self.bridge.polls + n
        await until(lambda: self.bridge.polls > target, f"{n} more polls")


@contextlib.asynccontextmanager
async def bridged(
    graph: SiteGraph, port: int, tmp_path: Path, *, settings: NutSettings | None = None, clock: Clock | None = None
) -> AsyncIterator[Rig]:
    """The bridge for every NUT device of ``graph``, pointed at 127.0.0.1:``port``, supervised until the end."""
    clock = clock or ScaledClock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC), SPEED)
    bus = Bus()
    state = StateStore(bus, {p.id: p.interval for p in graph.points.values()}, tmp_path / "state", clock=clock)
    ctx = AdapterContext(bus, graph, state, OccupancyTracker(bus, graph), Settings(state_dir=tmp_path / "state"), clock)
    bridge = NutBridge(ctx, "127.0.0.1", port, graph.find_devices(protocol="nut"), settings or nut_settings())
    readings: list[Reading] = []
    alarms: list[Alarm] = []
    health = ServiceHealth(bridge.name, "adapters")
    async with bus:
        state.attach()
        bus.subscribe(Reading, readings.append, name="test:readings", maxsize=1_000_000)
        bus.subscribe(Alarm, alarms.append, name="test:alarms")
        backoff = Backoff(initial=15.0, maximum=30.0, jitter=0.0)  # 50-100 ms of real time at SPEED
        task = asyncio.create_task(supervise(bridge, health, backoff=backoff, clock=clock), name="test:nut")
        try:
            yield Rig(bridge, health, state, readings, alarms)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state.detach()


@contextlib.asynccontextmanager
async def simulating(sim: NutSimulator) -> AsyncIterator[NutSimulator]:
    up = asyncio.Event()
    task = asyncio.create_task(sim.run(up.set), name="test:nut-sim")
    try:
        async with asyncio.timeout(10):
            await up.wait()
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def simulator(graph: SiteGraph, port: int = 0, **kw: Any) -> NutSimulator:
    return NutSimulator(graph, bind=("127.0.0.1", port), **kw)


async def talk(port: int, *lines: str) -> list[str]:
    """Send ``lines`` on one raw connection and return every answer line until upsd closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write("".join(f"{line}\n" for line in lines).encode())
        await writer.drain()
        answer: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while raw := await reader.readline():
                    answer.append(raw.decode().rstrip("\n"))
        return answer
    finally:
        writer.close()
        await writer.wait_closed()


# ------------------------------------------------------------------------------------------------ simulator
async def test_simulator_speaks_the_protocol(graph: SiteGraph) -> None:
    async with simulating(simulator(graph)) as sim:
        answer = await talk(sim.port, "VER", "NETVER", "LIST UPS", "GET UPSDESC dc-ups-a",
                            "GET VAR dc-ups-a ups.status", "GET VAR dc-ups-a no.such", "LIST VAR nope", "FROB",
                            "USERNAME a", "USERNAME b", "LOGOUT", "VER")  # fmt: skip
    assert answer == [
        "Network UPS Tools upsd 2.8.0 - bmhub simulator",
        "1.3",
        "BEGIN LIST UPS",
        'UPS ch-mr-ups "Machine-room UPS"',
        'UPS wh-ups "Welfare hall UPS"',
        'UPS dc-ups-a "UPS-A (feed A)"',
        'UPS dc-ups-b "UPS-B (feed B)"',
        "END LIST UPS",
        'UPSDESC dc-ups-a "UPS-A (feed A)"',
        'VAR dc-ups-a ups.status "OL"',
        "ERR VAR-NOT-SUPPORTED",
        "ERR UNKNOWN-UPS",
        "ERR UNKNOWN-COMMAND",
        "OK",
        "ERR ALREADY-SET-USERNAME",
        "OK Goodbye",  # and the connection ends: the last VER gets no answer
    ]


async def test_simulated_values_are_plausible_for_tokyo(graph: SiteGraph) -> None:
    clock = FakeClock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))  # 10:00 in Tokyo, a Tuesday
    async with simulating(simulator(graph, clock=clock, seed=7)) as sim, NutClient("127.0.0.1", sim.port) as client:
        seen: dict[str, list[float]] = {}
        for _ in range(100):
            for ups in sim.ups:
                values = await client.list_var(ups)
                assert values["ups.status"] == "OL"
                for var in ("battery.charge", "battery.runtime", "input.voltage", "input.frequency", "output.voltage",
                            "ups.load"):  # fmt: skip
                    seen.setdefault(var, []).append(float(values[var]))
            clock.advance(60)
    assert set(seen["battery.charge"]) == {100.0}
    ranges = {
        "battery.runtime": (1200, 3000),
        "input.voltage": (97, 103),  # Japan: 100 V
        "input.frequency": (49.9, 50.1),  # eastern Japan: 50 Hz
        "output.voltage": (99, 101),
        "ups.load": (20, 40),
    }
    for var, (lo, hi) in ranges.items():
        assert lo <= min(seen[var]) <= max(seen[var]) <= hi, (var, min(seen[var]), max(seen[var]))
    assert len(set(seen["input.voltage"])) > 10, "values should drift"


async def test_on_battery_drains_and_mains_recharges(graph: SiteGraph) -> None:
    clock = FakeClock()
    async with simulating(simulator(graph, clock=clock)) as sim:
        before = sim.values("dc-ups-a")
        sim.set_status("dc-ups-a", "OB DISCHRG")
        clock.advance(600)
        on_battery = sim.values("dc-ups-a")
        assert on_battery["ups.status"] == "OB DISCHRG"
        assert (on_battery["input.voltage"], on_battery["input.frequency"]) == ("0.0", "0.00")
        assert 50 < int(on_battery["battery.charge"]) < 90
        assert int(on_battery["battery.runtime"]) < int(before["battery.runtime"]) * 0.95
        clock.advance(600)
        assert int(sim.values("dc-1f-ups-room-ups-a")["battery.charge"]) < int(on_battery["battery.charge"])
        sim.set_status("dc-ups-a", None)  # mains back: automatic status again
        assert sim.values("dc-ups-a")["ups.status"] == "OL CHRG"
        clock.advance(4 * 3600)
        assert sim.values("dc-ups-a")["ups.status"] == "OL"
        assert sim.values("dc-ups-a")["battery.charge"] == "100"
        assert sim.values("dc-ups-b")["ups.status"] == "OL"  # the other UPS never noticed


async def test_injected_vars_and_driver_states(graph: SiteGraph) -> None:
    async with simulating(simulator(graph)) as sim, NutClient("127.0.0.1", sim.port) as client:
        sim.set_var("wh-ups", "ups.model", 'Smart-UPS "SRT" 3000 \\ 100V')
        sim.set_var("wh-ups", "input.frequency", "")  # removed, as an empty value in a dummy-ups file does
        assert await client.get_var("wh-ups", "ups.model") == 'Smart-UPS "SRT" 3000 \\ 100V'
        assert "input.frequency" not in await client.list_var("wh-ups")
        sim.set_var("wh-ups", "input.frequency", None)
        assert "input.frequency" in await client.list_var("wh-ups")
        sim.set_status("wh-ups", "")
        assert await client.get_var("wh-ups", "ups.status") == ""
        for state, code in (("lost", "DRIVER-NOT-CONNECTED"), ("stale", "DATA-STALE")):
            sim.set_driver("wh-ups", state)  # type: ignore[arg-type]  # the literal comes from the tuple
            with pytest.raises(NutResponseError) as err:
                await client.list_var("wh-ups")
            assert err.value.code == code
        sim.set_driver("wh-ups", "connected")
        assert await client.list_var("wh-ups")
        with pytest.raises(KeyError, match="no simulated UPS 'nope'"):
            sim.set_status("nope", "OL")


async def test_same_seed_same_ups(graph: SiteGraph) -> None:
    clocks = [FakeClock(), FakeClock(), FakeClock()]
    sims = [simulator(graph, clock=clocks[0], seed=1), simulator(graph, clock=clocks[1], seed=1),
            simulator(graph, clock=clocks[2], seed=2)]  # fmt: skip
    async with simulating(sims[0]), simulating(sims[1]), simulating(sims[2]):
        for c in clocks:
            c.advance(3600)
        a, b, c2 = (s.values("dc-ups-b") for s in sims)
    assert a == b
    assert a != c2


def test_simulator_binds_to_loopback_only(graph: SiteGraph) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "example.org"):
        with pytest.raises(ValueError, match="loopback only"):
            NutSimulator(graph, bind=(host, 3493))
    NutSimulator(graph, bind=("::1", 3493))


async def test_upsc_reads_the_simulator(graph: SiteGraph) -> None:
    """Debian's own NUT client against the simulator: same variables, same values, quoting included."""
    upsc = find_binary("upsc", "nut-client")
    async with simulating(simulator(graph, clock=FakeClock())) as sim:
        sim.set_var("dc-ups-b", "ups.model", 'Smart-UPS "SRT" 3000')
        proc = await asyncio.create_subprocess_exec(
            upsc, f"dc-ups-b@127.0.0.1:{sim.port}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        listed = dict(line.split(": ", 1) for line in out.decode().splitlines())
        assert listed == sim.values("dc-ups-b")
        assert listed["ups.model"] == 'Smart-UPS "SRT" 3000'


# ------------------------------------------------------------------------------------------------ bridge vs simulator
async def test_bridge_reads_every_ups_and_publishes_typed_values(graph: SiteGraph, tmp_path: Path) -> None:
    async with simulating(simulator(graph)) as sim, bridged(graph, sim.port, tmp_path) as rig:
        await until(lambda: rig.health.state is Health.RUNNING, "the bridge to start")
        await until(lambda: all(rig.value(d, "load") is not None for d in (MR, WH, DC_A, DC_B)), "readings")
        for device in (MR, WH, DC_A, DC_B):
            assert rig.value(device, "status") == "OL"
            assert type(rig.value(device, "battery-charge")) is int
            assert type(rig.value(device, "battery-runtime")) is int
            assert type(rig.value(device, "input-voltage")) is float
            assert all(rig.quality(device, p) is Quality.GOOD for p in POINTS)
        assert {r.source for r in rig.readings} == {"nut"}
        assert rig.alarms == []
        assert rig.bridge.interval == 30.0  # the smallest interval of the model's UPS points
        details = rig.bridge.details()
        assert details["ups"][MR]["status"] == "OL"
        assert details["ups"][MR]["meaning"] == "on line (mains power)"
        assert details["connected"] is True
        # one LIST VAR per UPS per poll, on one connection
        polls, requests = rig.bridge.polls, sim.requests
        assert sim.connections == 1
        assert 4 * (polls - 1) <= requests <= 4 * polls


async def test_alarms_follow_status_once_per_transition(
    graph: SiteGraph, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.nut")
    async with simulating(simulator(graph)) as sim, bridged(graph, sim.port, tmp_path) as rig:
        await until(lambda: rig.value(MR, "status") == "OL", "the first poll")

        sim.set_status("ch-mr-ups", "OL OB")  # contradictory: the safe reading is on battery
        await until(lambda: f"nut:{MR}:on-battery" in rig.active(), "on-battery")
        await rig.polls(3)
        assert rig.events(MR, "on-battery") == [(True, "critical")]
        contradiction = [r for r in caplog.records if "both on line and on battery" in r.getMessage()]
        assert len(contradiction) == 1

        sim.set_status("ch-mr-ups", "")  # says nothing: no alarm changes
        await rig.polls(3)
        sim.set_status("ch-mr-ups", "WAIT")
        await rig.polls(3)
        assert rig.events(MR, "on-battery") == [(True, "critical")]
        assert rig.value(MR, "status") == "WAIT"

        sim.set_status("ch-mr-ups", "OFF")  # not on battery, but not on line either: power not yet back
        await rig.polls(3)
        assert f"nut:{MR}:on-battery" in rig.active()

        sim.set_status("ch-mr-ups", "OL RB OVER")
        await until(lambda: rig.active() == {f"nut:{MR}:replace-battery", f"nut:{MR}:overload"}, "RB and OVER")
        await rig.polls(3)
        assert rig.events(MR, "on-battery") == [(True, "critical"), (False, "info")]
        assert rig.events(MR, "replace-battery") == [(True, "warning")]
        assert rig.events(MR, "overload") == [(True, "warning")]
        back = next(a for a in rig.alarms if a.key == f"nut:{MR}:on-battery" and not a.active)
        assert "back on line: power is back" in back.message
        assert back.source == MR
        overload = next(a for a in rig.alarms if a.key == f"nut:{MR}:overload")
        assert "ups.load" in overload.message

        sim.set_status("ch-mr-ups", None)
        await until(lambda: rig.active() == set(), "RB and OVER to clear")
        assert {a.key.split(":")[1] for a in rig.alarms} == {MR}  # no other UPS raised anything
        back_logs = [r for r in caplog.records if "back on line" in r.getMessage()]
        assert len(back_logs) == 1


async def test_driver_lost_and_stale_turn_points_offline(graph: SiteGraph, tmp_path: Path) -> None:
    async with simulating(simulator(graph)) as sim, bridged(graph, sim.port, tmp_path) as rig:
        await until(lambda: rig.value(DC_A, "status") == "OL", "the first poll")
        sim.set_status("dc-ups-a", "OB DISCHRG")
        await until(lambda: f"nut:{DC_A}:on-battery" in rig.active(), "on-battery")
        sim.set_driver("dc-ups-a", "lost")
        sim.set_driver("dc-ups-b", "stale")
        await until(lambda: {f"nut:{DC_A}:driver-lost", f"nut:{DC_B}:driver-lost"} <= rig.active(), "driver-lost")
        await rig.polls(3)
        for device in (DC_A, DC_B):
            assert rig.events(device, "driver-lost") == [(True, "critical")]
            assert all(rig.quality(device, p) is Quality.OFFLINE for p in POINTS)
            assert rig.point(device, "status").value is not None  # type: ignore[union-attr]  # last value kept
        messages = {a.source: a.message for a in rig.alarms if a.key.endswith(":driver-lost")}
        assert "DRIVER-NOT-CONNECTED" in messages[DC_A]
        assert "DATA-STALE" in messages[DC_B]
        assert f"nut:{DC_A}:on-battery" in rig.active()  # unknown meanwhile: not cleared
        assert rig.quality(MR, "status") is Quality.GOOD
        assert rig.bridge.details()["ups"][DC_B]["refused"] == "DATA-STALE"

        sim.set_driver("dc-ups-a", "connected")
        sim.set_driver("dc-ups-b", "connected")
        await until(lambda: not {a for a in rig.active() if a.endswith("driver-lost")}, "the drivers back")
        await until(lambda: rig.quality(DC_B, "load") is Quality.GOOD, "points good again")
        assert rig.events(DC_A, "driver-lost") == [(True, "critical"), (False, "info")]
        assert f"nut:{DC_A}:on-battery" in rig.active()  # still on battery, still raised once
        assert rig.events(DC_A, "on-battery") == [(True, "critical")]


@pytest.mark.parametrize(
    ("credentials", "why"),
    [
        ({"username": "hub", "password": "wrong"}, "ACCESS-DENIED"),
        ({}, "set BMHUB_NUT_USERNAME and BMHUB_NUT_PASSWORD"),
    ],
)
async def test_refused_credentials_fail_without_retry(
    graph: SiteGraph, tmp_path: Path, credentials: dict[str, str], why: str
) -> None:
    async with (
        simulating(simulator(graph, users={"hub": "right"})) as sim,
        bridged(graph, sim.port, tmp_path, settings=nut_settings(**credentials)) as rig,
    ):
        await until(lambda: rig.health.state is Health.FAILED, "the bridge to give up")
        assert why in (rig.health.last_error or "")
        assert "wrong" not in (rig.health.last_error or "")  # never the password
        await asyncio.sleep(0.3)
        assert rig.health.restarts == 0
        assert sim.connections == 1
        assert all(rig.quality(MR, p) is Quality.OFFLINE for p in POINTS)


async def test_right_credentials_are_accepted(graph: SiteGraph, tmp_path: Path) -> None:
    settings = nut_settings(username="hub", password="right pass")
    async with (
        simulating(simulator(graph, users={"hub": "right pass"})) as sim,
        bridged(graph, sim.port, tmp_path, settings=settings) as rig,
    ):
        await until(lambda: rig.health.state is Health.RUNNING, "the bridge to run")
        assert rig.value(MR, "status") == "OL"


async def test_username_without_password_is_a_config_error(graph: SiteGraph, tmp_path: Path) -> None:
    async with bridged(graph, free_port(), tmp_path, settings=nut_settings(username="hub")) as rig:
        await until(lambda: rig.health.state is Health.FAILED, "the bridge to give up")
        assert "set both or neither" in (rig.health.last_error or "")


async def test_unreachable_upsd_retries_then_recovers(
    graph: SiteGraph, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.nut")
    port = free_port()
    async with bridged(graph, port, tmp_path) as rig:
        await until(lambda: rig.health.restarts >= 3, "a few retries")
        assert rig.health.state in (Health.RETRYING, Health.STARTING)
        assert "cannot connect to upsd 127.0.0.1" in (rig.health.last_error or "")
        assert all(rig.quality(d, p) is Quality.OFFLINE for d in (MR, WH, DC_A, DC_B) for p in POINTS)
        offline = [r for r in rig.readings if r.quality is Quality.OFFLINE]
        assert len(offline) == 4 * len(POINTS)  # once, not once per retry
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 1
        assert "4 UPS offline" in unreachable[0].getMessage()

        async with simulating(simulator(graph, port)):
            await until(lambda: rig.health.state is Health.RUNNING, "the bridge to connect")
            await until(lambda: rig.quality(MR, "status") is Quality.GOOD, "readings")
        assert len([r for r in caplog.records if "reachable again" in r.getMessage()]) == 1

        # The simulator went away (and closed our connection): offline again, retrying.
        await until(lambda: rig.health.state is not Health.RUNNING, "the bridge to notice")
        await until(lambda: rig.quality(MR, "status") is Quality.OFFLINE, "points offline")


# ------------------------------------------------------------------------------------------------ the hub's runtime
def site_with_upsd_ports(tmp_path: Path, ports: Callable[[str], int]) -> Path:
    """The bundled site model with each UPS's upsd port replaced by ``ports(ups name)``."""
    lines = []
    for line in SITE_MODEL.read_text(encoding="utf-8").splitlines():
        if "protocol: nut" in line and "port: 3493" in line:
            ups = line.split("ups: ")[1].split("}")[0].strip()
            line = line.replace("port: 3493", f"port: {ports(ups)}")
        lines.append(line)
    path = tmp_path / "site_model.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_create_makes_one_bridge_per_upsd(graph: SiteGraph, tmp_path: Path) -> None:
    bus = Bus()
    clock = FakeClock()

    def ctx_of(g: SiteGraph) -> AdapterContext:
        state = StateStore(bus, {}, tmp_path, clock=clock)
        return AdapterContext(bus, g, state, OccupancyTracker(bus, g), Settings(state_dir=tmp_path), clock)

    [(stage, bridge)] = create(ctx_of(graph), nut_settings())
    assert (stage, bridge.name) == ("adapters", "nut:127.0.0.1:3493")
    assert isinstance(bridge, NutBridge)
    assert set(bridge.details()["ups"]) == {MR, WH, DC_A, DC_B}

    split = SiteGraph(load_site(site_with_upsd_ports(tmp_path, lambda ups: 3494 if ups == "dc-ups-b" else 3493)))
    services = create(ctx_of(split), nut_settings(poll_interval=5))
    assert [s.name for _, s in services] == ["nut:127.0.0.1:3493", "nut:127.0.0.1:3494"]
    assert [set(s.details()["ups"]) for _, s in services] == [{MR, WH, DC_A}, {DC_B}]  # type: ignore[attr-defined]
    assert {s.details()["interval"] for _, s in services} == {5}  # type: ignore[attr-defined]


async def test_runtime_runs_the_nut_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("USERNAME", "PASSWORD", "POLL_INTERVAL", "TIMEOUT"):
        monkeypatch.delenv(f"BMHUB_NUT_{var}", raising=False)
    port = free_port()
    model = load_site(site_with_upsd_ports(tmp_path, lambda ups: port))
    clock = ScaledClock(datetime(2026, 11, 24, 1, 0, tzinfo=UTC), SPEED)
    settings = Settings(state_dir=tmp_path / "state", api=False, status_interval=15.0)  # 50 ms at SPEED
    rt = Runtime(model, settings, clock=clock, adapters=("nut",))
    sim = NutSimulator(rt.graph, bind=("127.0.0.1", port), clock=clock)
    rt.add_service("core", sim)
    ready = asyncio.Event()
    task = asyncio.create_task(rt.run(on_ready=ready.set), name="hub")
    try:
        await until(ready.is_set, "the hub to start")
        name = f"nut:127.0.0.1:{port}"
        assert rt.health[name].state is Health.RUNNING
        await until(lambda: rt.state.get(f"{DC_B}.status"), "UPS state")
        sim.set_status("dc-ups-b", "OB DISCHRG")
        await until(lambda: rt.state.get(f"{DC_B}.status").value == "OB DISCHRG", "on battery")  # type: ignore[union-attr]
        details = rt.status()["details"][name]
        await until(lambda: rt.status()["details"][name]["ups"][DC_B]["alarms"] == ["on-battery"], "the alarm")
        assert details["upsd"] == f"127.0.0.1:{port}"
        assert rt.status()["details"]["nut-sim"]["ups"]["dc-ups-b"]["status"] == "OB DISCHRG"
    finally:
        rt.request_stop()
        await asyncio.wait_for(task, 10)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMHUB_NUT_USERNAME", "monitor")
    monkeypatch.setenv("BMHUB_NUT_PASSWORD", "s3cret")
    monkeypatch.setenv("BMHUB_NUT_POLL_INTERVAL", "5")
    monkeypatch.delenv("BMHUB_NUT_TIMEOUT", raising=False)
    settings = NutSettings()
    assert (settings.username, settings.poll_interval, settings.timeout) == ("monitor", 5.0, 5.0)
    assert settings.password is not None
    assert settings.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("BMHUB_NUT_PASSWORD", "two\nlines")
    with pytest.raises(ValueError, match="on one line") as err:
        NutSettings()
    assert "two" not in str(err.value)
