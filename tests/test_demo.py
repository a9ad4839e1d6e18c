"""``bmhub demo`` as a newcomer runs it: embedded broker, simulated building (MQTT, BACnet, Modbus, NUT), hub,
status page; Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hub.demo import real_time_polling
from hub.site import load_site
from tests.conftest import FIXTURES
from tests.servers import Mosquitto
from tests.test_cli import finish, read_until


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_demo_shows_occupancy_changing_and_stops_on_sigint(tmp_path: Path) -> None:
    env = {**os.environ, "BMHUB_STATE_DIR": str(tmp_path), "BMHUB_API_PORT": "0", "BMHUB_MQTT_BROKER_PORT": "0",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("BMHUB_MQTT_HOST", None)
    # A Tuesday just before 10:00, when meetings start: rooms fill while the test watches.
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--seed", "7", "--start", "2026-11-24T09:50:00"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        banner = read_until(proc, "Ctrl-C stops everything.", timeout=60)
        assert "a simulated building at 60x from Tue 2026-11-24 09:50 (Asia/Tokyo)" in banner
        url = banner.split("status page", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")

        # Occupancy of bookable rooms, as the booking app reads it, changes while we watch.
        seen: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rooms = get_json(url + "api/zones/occupancy?bookable=true")
            assert isinstance(rooms, list)
            seen.append({r["zone"]: (r["occupied"], r["count"]) for r in rooms})
            if len({json.dumps(s, sort_keys=True) for s in seen}) >= 3 and any(
                occ
                for r in seen[-1].values()
                for occ in [r[0]]  # type: ignore[index]
            ):
                break
            time.sleep(0.5)
        snapshots = {json.dumps(s, sort_keys=True) for s in seen}
        assert len(snapshots) >= 3, f"occupancy did not change: {seen[-1]}"
        assert any(occupied for occupied, _ in seen[-1].values())  # type: ignore[misc]
        status = get_json(url + "api/status")
        assert isinstance(status, dict)
        states = {s["name"]: s["state"] for s in status["services"]}
        assert states["mqtt-sim"] == states["mqtt"] == states["mqtt-broker"] == "running"
        # Every protocol of the quick start is live: Modbus gateways and the UPS server, simulated, and bridged.
        assert states["modbus-sim"] == states["nut-sim"] == "running"
        assert states["nut:127.0.0.1:3493"] == "running"
        modbus = [name for name in states if name.startswith("modbus:")]
        assert len(modbus) == 5
        assert all(states[name] == "running" for name in modbus)
        assert status["points"]["good"] > 0
        # BACnet: the simulated devices (a process of their own) answer, and their points come by COV.
        assert states["bacnet-sim"] == states["bacnet"] == "running"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            bacnet = get_json(url + "api/status")["details"]["bacnet"]  # type: ignore[index]
            if bacnet["devices"] == {"ok": 317} and bacnet["points_cov"] == 1568:
                break
            time.sleep(1)
        assert (bacnet["devices"], bacnet["points_cov"], bacnet["points_polled"]) == ({"ok": 317}, 1568, 0), bacnet
        assert bacnet["notifications"] > 0

        console = read_until(proc, "bookable rooms occupied", timeout=30)
        assert "mode normal" in console
        proc.send_signal(signal.SIGINT)
        out = console + finish(proc, 30)
    finally:
        if proc.poll() is None:
            finish(proc, 0)
    assert proc.returncode == 0, out
    assert "SIGINT received: stopping" in out
    assert out.rstrip().endswith("bmhub stopped")
    assert "Traceback" not in out


def test_demo_refuses_a_speed_the_embedded_broker_cannot_carry(tmp_path: Path) -> None:
    env = {**os.environ, "BMHUB_STATE_DIR": str(tmp_path)}
    env.pop("BMHUB_MQTT_HOST", None)
    result = subprocess.run([sys.executable, "-m", "hub", "demo", "--speed", "600"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "--speed must be above 0 and at most 200 with the embedded broker" in result.stderr


async def test_simulate_publishes_the_sites_devices_to_a_named_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    import asyncio

    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="observer") as observer:
        await observer.subscribe("field/#", qos=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub", "simulate", str(FIXTURES / "site" / "minimal.yaml"), "--port",
            str(mosquitto.port), "--start", "2026-11-24T10:00:00", "--speed", "60",
            env={**os.environ, "BMHUB_STATE_DIR": str(tmp_path)}, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            topics: set[str] = set()
            async with asyncio.timeout(20):
                async for m in observer.messages:
                    topics.add(m.topic.value)
                    if {"field/room-201-occ/state", "field/lobby-exit/door"} <= topics:
                        break
            proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "simulator stopped" in err.decode()


def test_real_time_polling_scales_the_polled_protocols_only() -> None:
    """At 60x, polled devices are asked as often in real time as on site; MQTT devices report on their own."""
    model = load_site(FIXTURES / "site" / "minimal.yaml")
    scaled = real_time_polling(model, 60)
    for type_id, dtype in model.device_types.items():
        before = [p.interval for p in dtype.points]
        after = [p.interval for p in scaled.device_types[type_id].points]
        if dtype.protocol in ("bacnet", "modbus", "nut"):
            assert after == [None if i is None else i * 60 for i in before], type_id
        else:
            assert after == before, type_id
    assert any(p.interval for t in model.device_types.values() if t.protocol == "bacnet" for p in t.points)
    assert scaled.zones == model.zones
