"""The MQTT bridge against a real Mosquitto (tests/servers.py): devices in, commands out, contract for apps."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hub.clock import Clock, ScaledClock
from hub.events import Command, CommandResult, Quality
from hub.runtime import Runtime
from hub.settings import Settings
from hub.site import load_site
from hub.supervisor import Health
from tests.conftest import FIXTURES
from tests.helpers import running, until
from tests.servers import Mosquitto, make_test_ca

MINIMAL = FIXTURES / "site" / "minimal.yaml"
ROOT = "bmhub/test-site"


@asynccontextmanager
async def running_hub(
    broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    start_timeout: float = 10.0,
    clock: Clock | None = None,
    **env: str,
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("BMHUB_MQTT_HOST", "127.0.0.1")
    monkeypatch.setenv("BMHUB_MQTT_PORT", str(broker.port))
    for k, v in env.items():
        monkeypatch.setenv(f"BMHUB_MQTT_{k.upper()}", v)
    settings = Settings(state_dir=tmp_path / "state", api=False, status_interval=0.05, start_timeout=start_timeout)
    rt = Runtime(load_site(MINIMAL), settings, adapters=("mqtt",), clock=clock)
    async with running(rt):
        yield rt


def device(broker: Mosquitto, name: str, **kw: Any) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=name, **kw)


async def collect(client: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(10):
        async for m in client.messages:
            got.append(m)
            if len(got) == count:
                break
    return got


async def test_device_reading_becomes_state_and_retained_occupancy(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        running_hub(mosquitto, tmp_path, monkeypatch) as rt,
        device(mosquitto, "occ-sensor") as dev,
        device(mosquitto, "watcher") as watcher,
    ):
        assert rt.health["mqtt"].state is Health.RUNNING
        await watcher.subscribe(f"{ROOT}/zone/room-201/occupancy", qos=1)
        await dev.publish("field/room-201-occ/state", b'{"occupied": true, "count": 3}', qos=1)
        st = await until(lambda: rt.state.get("room-201-occ.count"), "the reading to reach the state")
        assert (st.value, st.quality, st.source) == (3, Quality.GOOD, "mqtt")
        assert rt.state.get("room-201-occ.occupied").value is True  # type: ignore[union-attr]
        await until(lambda: rt.occupancy.get("room-201"), "zone occupancy")
        live = await collect(watcher, 1)  # the bridge has published it
        assert json.loads(live[0].payload)["count"] == 3  # type: ignore[arg-type]

        # A booking app that connects later sees the zone's occupancy at once (retained).
        async with device(mosquitto, "booking-app") as app:
            await app.subscribe(f"{ROOT}/zone/+/occupancy", qos=1)
            [msg] = await collect(app, 1)
        assert msg.retain
        assert msg.topic.value == f"{ROOT}/zone/room-201/occupancy"
        body = json.loads(msg.payload)  # type: ignore[arg-type]
        assert {k: body[k] for k in ("zone", "occupied", "count", "capacity", "quality")} == {
            "zone": "room-201", "occupied": True, "count": 3, "capacity": 12, "quality": "good",
        }  # fmt: skip


async def test_command_reaches_the_device_topic_at_qos1(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results: list[CommandResult] = []
    async with running_hub(mosquitto, tmp_path, monkeypatch) as rt, device(mosquitto, "sign") as sign:
        rt.bus.subscribe(CommandResult, results.append, name="test:results")
        await sign.subscribe("field/lobby-sign/content/set", qos=1)
        cmd = Command(point="lobby-sign.content", value="evacuation-map", reason="test")
        rt.bus.publish(cmd)
        [msg] = await collect(sign, 1)
        assert (msg.topic.value, msg.payload, msg.qos) == ("field/lobby-sign/content/set", b"evacuation-map", 1)
        await until(lambda: results, "the command result")
        assert results[0].command_id == cmd.id
        assert results[0].ok
        assert results[0].context.parent_id == cmd.context.id


async def test_broker_restart_loses_no_command_and_restores_subscriptions(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    door_cmds: list[bytes] = []

    async def door_device(connected: asyncio.Event) -> None:
        """An exit door that reconnects on its own, with a persistent session (like real firmware)."""
        while True:
            try:
                async with device(mosquitto, "door-reader", clean_session=False) as dev:
                    await dev.subscribe("field/room-201-reader/lock/set", qos=1)
                    connected.set()
                    async for m in dev.messages:
                        door_cmds.append(m.payload)  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                connected.clear()
                await asyncio.sleep(0.1)

    async with running_hub(mosquitto, tmp_path, monkeypatch, keepalive="5") as rt:
        connected = asyncio.Event()
        door = asyncio.create_task(door_device(connected), name="door")
        try:
            await until(connected.is_set, "the door to connect")
            rt.bus.publish(Command(point="room-201-reader.lock", value=True))
            await until(lambda: len(door_cmds) == 1, "the first command")

            mosquitto.stop()
            await until(lambda: rt.health["mqtt"].state is Health.RETRYING, "the hub to notice the broker is gone")
            for value in (False, True, False):  # issued while the broker is down
                rt.bus.publish(Command(point="room-201-reader.lock", value=value))
            await asyncio.sleep(0.2)
            mosquitto.start()

            await until(lambda: len(door_cmds) == 4, "the commands queued during the outage")
            assert door_cmds == [b"true", b"false", b"true", b"false"]
            assert rt.health["mqtt"].state is Health.RUNNING

            # Subscriptions restored: a device reading after the restart reaches the state.
            async with device(mosquitto, "occ-after") as occ:
                await occ.publish("field/room-201-occ/state", b'{"occupied": false, "count": 0}', qos=1)
            await until(lambda: (s := rt.state.get("room-201-occ.count")) and s.value == 0, "a reading after restart")
        finally:
            door.cancel()
            await asyncio.gather(door, return_exceptions=True)


BAD = [
    ("field/room-201-occ/state", b'{"occupied": tru', "not JSON: Expecting value at character 13"),
    (
        "field/room-201-occ/state",
        b'{"occupied": "maybe", "count": 2}',
        "point occupied: expected true or false, got 'maybe'",
    ),
    ("field/room-201-occ/state", b'{"temperature": 21}', "none of the fields occupied, count present"),
    ("field/room-201-occ/state", b"x" * 70_000, "payload of 70000 bytes exceeds 65536"),
    ("field/lobby-exit/door", b"ajar", "point door: expected true or false, got 'ajar'"),
    ("field/lobby-exit/firmware", b"2.1", "unknown topic: no point of this device listens here"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), BAD, ids=[r for _, _, r in BAD])
async def test_malformed_messages_are_rejected_counted_and_do_not_stop_anything(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topic: str, payload: bytes, reason: str
) -> None:
    async with running_hub(mosquitto, tmp_path, monkeypatch) as rt, device(mosquitto, "bad-device") as dev:
        bridge = rt.status()["details"]
        assert bridge["mqtt"]["rejects"] == {"devices": {}, "recent": []}
        await dev.publish(topic, payload, qos=1)
        details = await until(lambda: rt.status()["details"]["mqtt"]["rejects"]["recent"], "the reject")
        assert details[0]["topic"] == topic
        assert details[0]["reason"] == reason
        device_id = topic.split("/")[1]
        assert rt.status()["details"]["mqtt"]["rejects"]["devices"][device_id]["rejected"] == 1
        # The hub goes on: a good message on the same device still lands.
        good = ("field/room-201-occ/state", b'{"occupied": true, "count": 1}')
        if device_id == "lobby-exit":
            good = ("field/lobby-exit/door", b"false")
        await dev.publish(*good, qos=1)
        point = "room-201-occ.count" if device_id == "room-201-occ" else "lobby-exit.door"
        await until(lambda: (s := rt.state.get(point)) and s.quality is Quality.GOOD, "a good reading afterwards")
        assert rt.health["mqtt"].state is Health.RUNNING


async def test_a_malformed_value_marks_the_point_bad(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_hub(mosquitto, tmp_path, monkeypatch) as rt, device(mosquitto, "door") as dev:
        await dev.publish("field/lobby-exit/door", b"true", qos=1)
        await until(lambda: (s := rt.state.get("lobby-exit.door")) and s.value is True, "the door open")
        await dev.publish("field/lobby-exit/door", b"ajar", qos=1)
        st = await until(lambda: (s := rt.state.get("lobby-exit.door")) and s.quality is Quality.BAD and s, "bad")
        assert st.value is True  # the last good value is kept, flagged bad


async def test_wrong_password_fails_clearly_and_stops_retrying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Mosquitto(tmp_path / "auth-broker", users={"bmhub": "correct horse"})
    broker.start()
    try:
        async with running_hub(broker, tmp_path, monkeypatch, username="bmhub", password="wrong") as rt:
            health = rt.health["mqtt"]
            assert health.state is Health.FAILED
            assert "refused the credentials" in (health.last_error or "")
            assert health.restarts == 0
            await asyncio.sleep(0.3)
            assert health.state is Health.FAILED  # no retry loop
        async with running_hub(broker, tmp_path, monkeypatch, username="bmhub", password="correct horse") as rt:
            assert rt.health["mqtt"].state is Health.RUNNING
    finally:
        broker.stop()


async def test_mqtt5_session(mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_hub(mosquitto, tmp_path, monkeypatch, protocol="5") as rt, device(mosquitto, "occ5") as dev:
        await dev.publish("field/room-201-occ/state", b'{"occupied": true, "count": 7}', qos=1)
        st = await until(lambda: rt.state.get("room-201-occ.count"), "a reading over an MQTT 5 session")
        assert st.value == 7


async def test_birth_and_offline_on_a_clean_stop(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with device(mosquitto, "watcher") as watcher:
        await watcher.subscribe(f"{ROOT}/status", qos=1)
        async with running_hub(mosquitto, tmp_path, monkeypatch):
            [online] = await collect(watcher, 1)
            assert online.payload == b"online"
        # The broker sends the last will only for a lost connection; a clean stop says "offline" itself.
        [offline] = await collect(watcher, 1)
        assert offline.payload == b"offline"
    async with device(mosquitto, "late-watcher") as late:
        await late.subscribe(f"{ROOT}/status", qos=1)
        [msg] = await collect(late, 1)
        assert (msg.retain, msg.payload) == (True, b"offline")


async def test_last_will_when_the_hub_vanishes(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A hub process killed outright: the broker publishes its will."""
    env = {**os.environ, "BMHUB_STATE_DIR": str(tmp_path / "state"), "BMHUB_MQTT_HOST": "127.0.0.1",
           "BMHUB_MQTT_PORT": str(mosquitto.port), "BMHUB_MQTT_KEEPALIVE": "5", "BMHUB_API": "false"}  # fmt: skip
    async with device(mosquitto, "watcher") as watcher:
        await watcher.subscribe(f"{ROOT}/status", qos=1)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hub", "run", str(MINIMAL), env=env,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)  # fmt: skip
        try:
            [online] = await collect(watcher, 1)
            assert online.payload == b"online"
            proc.kill()
            [will] = await collect(watcher, 1)  # sent by the broker within 1.5 x keepalive
            assert will.payload == b"offline"
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_alarms_left_by_an_earlier_run_are_cleared_and_keys_are_topic_safe(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.events import Alarm

    async with device(mosquitto, "old-hub") as old:
        await old.publish(f"{ROOT}/alarm/ups:gone", b'{"key": "ups:gone"}', qos=1, retain=True)
    async with running_hub(mosquitto, tmp_path, monkeypatch) as rt, device(mosquitto, "app") as app:
        rt.bus.publish(Alarm(key="door/room-201+held#1", source="room-201-reader", severity="warning",
                             message="held open"))  # fmt: skip
        await app.subscribe(f"{ROOT}/alarm/+", qos=1)
        [live] = await collect(app, 1)
        assert live.topic.value == f"{ROOT}/alarm/door_room-201_held_1"  # '/', '+', '#' made topic-safe
        assert json.loads(live.payload)["key"] == "door/room-201+held#1"  # type: ignore[arg-type]
        # By now the hub has cleared the stale retained alarm: an app subscribing now sees only the live one.
        async with device(mosquitto, "late-app") as late:
            await late.subscribe(f"{ROOT}/alarm/+", qos=1)
            retained = [m.topic.value for m in await collect(late, 1)]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    async for m in late.messages:
                        retained.append(m.topic.value)
        assert retained == [f"{ROOT}/alarm/door_room-201_held_1"]
        assert rt.health["mqtt"].state is Health.RUNNING


async def test_expired_commands_are_failed_not_sent_late(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results: list[CommandResult] = []
    async with running_hub(mosquitto, tmp_path, monkeypatch, command_ttl="0.3") as rt:
        rt.bus.subscribe(CommandResult, results.append, name="test:results")
        mosquitto.stop()
        await until(lambda: rt.health["mqtt"].state is Health.RETRYING, "the hub to notice the broker is gone")
        rt.bus.publish(Command(point="room-201-reader.lock", value=False, reason="unlock for a visitor"))
        await asyncio.sleep(0.5)
        mosquitto.start()
        await until(lambda: results, "the command's result")
        assert not results[0].ok
        assert results[0].detail.startswith("expired after")


async def test_rejects_are_listed_by_bmhub_status(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main

    async with running_hub(mosquitto, tmp_path, monkeypatch) as rt, device(mosquitto, "bad-door") as dev:
        await dev.publish("field/lobby-exit/door", b"ajar", qos=1)
        await until(lambda: rt.status()["details"]["mqtt"]["rejects"]["recent"], "the reject")
        await asyncio.sleep(0.2)  # a status snapshot or two
        monkeypatch.setenv("BMHUB_STATE_DIR", str(tmp_path / "state"))
        assert main(["status", "--rejects"]) == 0
    out = capsys.readouterr().out
    assert "1 message(s) rejected from 1 device(s)" in out
    assert "field/lobby-exit/door" in out
    assert "point door: expected true or false, got 'ajar'" in out


# paho-mqtt 2.2 leaves the socket of a failed TLS handshake unclosed (client.py _ssl_wrap_socket); the garbage
# collector closes it later with a ResourceWarning. This test provokes exactly that, so it collects it here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_tls_with_the_sites_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Mosquitto(tmp_path / "tls-broker", tls=True)
    broker.start()
    try:
        async with running_hub(broker, tmp_path, monkeypatch, tls="true", ca_file=str(broker.ca_file)) as rt:
            assert rt.health["mqtt"].state is Health.RUNNING
            tls = ssl.create_default_context(cafile=str(broker.ca_file))
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="tls-dev", tls_context=tls) as dev:
                await dev.publish("field/room-201-occ/state", b'{"occupied": true, "count": 2}', qos=1)
            st = await until(lambda: rt.state.get("room-201-occ.count"), "a reading over TLS")
            assert st.value == 2
        # A broker whose certificate the configured CA did not sign is not trusted.
        (tmp_path / "other-ca").mkdir()
        other_ca = make_test_ca(tmp_path / "other-ca")
        async with running_hub(
            broker, tmp_path, monkeypatch, start_timeout=0.5, tls="true", ca_file=str(other_ca)
        ) as rt:
            health = rt.health["mqtt"]
            await until(lambda: health.last_error, "the TLS failure")
            assert health.state in (Health.RETRYING, Health.STARTING)
            assert "certificate verify failed" in (health.last_error or "")
    finally:
        broker.stop()
        gc.collect()  # the socket paho left behind (see above), while this test's warning filter applies


async def test_home_assistant_discovery_and_rediscovery_on_ha_birth(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        running_hub(mosquitto, tmp_path, monkeypatch, ha_discovery="true") as rt,
        device(mosquitto, "home-assistant") as ha,
    ):
        await ha.subscribe("homeassistant/device/+/config", qos=1)
        expected = len(rt.graph.devices) + 1  # every device, and the one zone with an occupancy sensor
        configs = {m.topic.value: json.loads(m.payload) for m in await collect(ha, expected)}  # type: ignore[arg-type]
        assert len(configs) == expected
        zone = configs["homeassistant/device/bmhub_test_site_zone_room_201/config"]
        assert zone["o"]["name"] == "bmhub"
        assert zone["availability"][0]["topic"] == f"{ROOT}/status"
        occupied = zone["cmps"]["occupied"]
        assert occupied["state_topic"] == f"{ROOT}/zone/room-201/occupancy"
        assert occupied["default_entity_id"] == "binary_sensor.bmhub_test_site_zone_room_201_occupied"
        components = [c for cfg in configs.values() for c in cfg["cmps"].values()]
        assert all("object_id" not in c for c in components)  # deprecated by Home Assistant
        assert all(c["default_entity_id"] == f"{c['p']}.{c['unique_id']}" for c in components)
        temp = configs["homeassistant/device/bmhub_test_site_room_201_vav/config"]["cmps"]["zone_temp"]
        assert (temp["p"], temp["device_class"], temp["unit_of_measurement"]) == ("sensor", "temperature", "°C")
        assert temp["state_topic"] == f"{ROOT}/point/room-201-vav/zone_temp"

        # Home Assistant restarts and announces itself: the hub publishes its discovery again (after a jitter).
        await ha.publish("homeassistant/status", b"online", qos=1)
        again = await collect(ha, expected)
        assert {m.topic.value for m in again} == set(configs)


async def test_a_non_finite_value_is_published_as_null(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another adapter (BACnet, say) may report NaN; the outward JSON must stay valid JSON."""
    from hub.events import PointState, StateChanged, utcnow

    async with running_hub(mosquitto, tmp_path, monkeypatch) as rt, device(mosquitto, "app") as app:
        await app.subscribe(f"{ROOT}/point/room-201-vav/zone_temp", qos=1)
        new = PointState(point="room-201-vav.zone_temp", value=float("nan"), quality=Quality.BAD, time=utcnow())
        rt.bus.publish(StateChanged(point=new.point, old=None, new=new))
        [msg] = await collect(app, 1)
    body = json.loads(msg.payload)  # type: ignore[arg-type]  # strict JSON: json.loads would accept NaN, so check
    assert body["value"] is None
    assert b"NaN" not in msg.payload  # type: ignore[operator]
    assert body["quality"] == "bad"


async def test_readings_are_stamped_with_the_hubs_clock(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staleness compares against the hub's clock; the demo's runs ahead of the wall clock. Stamping with wall
    time made every MQTT point look stale there."""
    from datetime import UTC, datetime

    ahead = ScaledClock(datetime(2030, 6, 4, 10, 0, tzinfo=UTC), speed=1.0)
    async with running_hub(mosquitto, tmp_path, monkeypatch, clock=ahead) as rt, device(mosquitto, "occ") as dev:
        await dev.publish("field/room-201-occ/state", b'{"occupied": true, "count": 1}', qos=1)
        st = await until(lambda: rt.state.get("room-201-occ.count"), "the reading")
        assert st.time.year == 2030
        rt.state.check_staleness()
        fresh = rt.state.get("room-201-occ.count")
        assert fresh is not None
        assert fresh.quality is Quality.GOOD
