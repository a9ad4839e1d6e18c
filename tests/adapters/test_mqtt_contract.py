"""The outward MQTT contract (docs/mqtt.md, "Outward contract") against a real Mosquitto.

Everything the hub publishes under ``bmhub/<site>/`` while real device messages, a mode change and an alarm
go through it must validate against the JSON Schemas in docs/schemas/; so must every JSON example in that
section of docs/mqtt.md, so that neither the code nor the doc can drift from the schemas unnoticed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from hub.events import Alarm, Mode
from tests.adapters.test_mqtt_bridge import ROOT as SITE_TOPIC
from tests.adapters.test_mqtt_bridge import device, running_hub
from tests.conftest import ROOT
from tests.helpers import until
from tests.servers import Mosquitto

DOC = ROOT / "docs" / "mqtt.md"
SCHEMAS = ROOT / "docs" / "schemas"
CONTRACT_SECTION = "## Outward contract"

# Topic family → (topic pattern under bmhub/test-site/, schema file).
FAMILIES: dict[str, tuple[re.Pattern[str], str]] = {
    "mode": (re.compile(rf"^{SITE_TOPIC}/mode$"), "mode.schema.json"),
    "zone": (re.compile(rf"^{SITE_TOPIC}/zone/(?P<zone>[^/]+)/occupancy$"), "zone-occupancy.schema.json"),
    "point": (re.compile(rf"^{SITE_TOPIC}/point/(?P<device>[^/]+)/(?P<point>[^/]+)$"), "point-state.schema.json"),
    "alarm": (re.compile(rf"^{SITE_TOPIC}/alarm/(?P<key>[^/]+)$"), "alarm.schema.json"),
}
STATUS = f"{SITE_TOPIC}/status"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def format_checker() -> jsonschema.FormatChecker:
    """``jsonschema.FormatChecker()``, made to check ``date-time`` even without rfc3339-validator.

    jsonschema checks ``date-time`` only when the optional rfc3339-validator package is installed; without it
    the format is silently accepted. This adds an equivalent RFC 3339 check when it is missing.
    """
    checker = jsonschema.FormatChecker()
    if "date-time" not in checker.checkers:

        @checker.checks("date-time")
        def _date_time(value: object) -> bool:
            if not isinstance(value, str):
                return True  # formats apply to strings only; "type" says the rest
            if not _RFC3339.match(value):
                return False
            try:
                datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            except ValueError:
                return False
            return True

    return checker


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return schema


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(name), format_checker=format_checker())


def errors(name: str, document: Any) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in
                  validator(name).iter_errors(document))  # fmt: skip


# ---------------------------------------------------------------------------------------------- schemas


SCHEMA_FILES = sorted(p.name for p in SCHEMAS.glob("*.json"))


def test_the_four_schemas_exist() -> None:
    assert sorted(f for _, f in FAMILIES.values()) == SCHEMA_FILES


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_is_a_valid_strict_draft_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"]), "the hub always sends every field"
    for example in schema.get("examples", []):
        assert errors(name, example) == []


def test_date_time_format_is_really_checked() -> None:
    schema = {"type": "string", "format": "date-time"}
    check = jsonschema.Draft202012Validator(schema, format_checker=format_checker())
    assert check.is_valid("2026-11-24T01:05:00.123456+00:00")
    assert check.is_valid("2026-11-24T01:05:00Z")
    for bad in ("yesterday", "2026-11-24T01:05:00", "2026-11-24 01:05:00+00:00", "2026-13-24T01:05:00+00:00"):
        assert not check.is_valid(bad), bad


STRICTNESS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("mode.schema.json", lambda d: d.update(mode="holiday")),
    ("mode.schema.json", lambda d: d.update(since="2026-11-24")),
    ("zone-occupancy.schema.json", lambda d: d.update(quality="unknown")),
    ("zone-occupancy.schema.json", lambda d: d.update(count=-1)),
    ("zone-occupancy.schema.json", lambda d: d.update(occupied="yes")),
    ("point-state.schema.json", lambda d: d.update(value={"nested": 1})),
    ("point-state.schema.json", lambda d: d.update(point="no-dot")),
    ("point-state.schema.json", lambda d: d.update(time="now")),
    ("alarm.schema.json", lambda d: d.update(severity="fatal")),
    ("alarm.schema.json", lambda d: d.update(active=False)),
    ("alarm.schema.json", lambda d: d.update(key="door/+")),
]


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_refuses_unknown_and_missing_fields(name: str) -> None:
    [example] = load_schema(name)["examples"]
    assert errors(name, {**example, "extra": 1}) != []
    for key in example:
        assert errors(name, {k: v for k, v in example.items() if k != key}) != [], f"{key} may be left out"


@pytest.mark.parametrize(("name", "spoil"), STRICTNESS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(STRICTNESS)])
def test_schema_refuses_wrong_values(name: str, spoil: Callable[[dict[str, Any]], None]) -> None:
    [example] = load_schema(name)["examples"]
    document = dict(example)
    spoil(document)
    assert errors(name, document) != []


# ---------------------------------------------------------------------------------------------- the doc


def contract_examples() -> list[tuple[str, str, str]]:
    """(where, schema file, JSON text) of every ``json`` block in the doc's outward-contract section.

    A block's schema is the last ``schemas/<name>.schema.json`` link before it in its ``###`` subsection.
    """
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n{CONTRACT_SECTION}") + 1
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end + 1
    found: list[tuple[str, str, str]] = []
    for block in re.finditer(r"^```json\n(.*?)^```$", text[start:end], flags=re.MULTILINE | re.DOTALL):
        at = start + block.start()
        sub = max(text.rfind("\n### ", start, at), start)
        links = re.findall(r"\(schemas/([\w.-]+\.schema\.json)\)", text[sub:at])
        where = f"docs/mqtt.md:{text.count(chr(10), 0, at) + 1}"
        found.append((where, links[-1] if links else "", block.group(1)))
    return found


EXAMPLES = contract_examples()


@pytest.mark.parametrize(("where", "schema", "example"), EXAMPLES, ids=[w for w, _, _ in EXAMPLES])
def test_doc_example_matches_its_schema(where: str, schema: str, example: str) -> None:
    assert schema, f"{where}: no schemas/<name>.schema.json link before this example in its subsection"
    assert (SCHEMAS / schema).is_file(), f"{where}: links to missing docs/schemas/{schema}"
    assert errors(schema, json.loads(example)) == [], where


def test_doc_has_an_example_for_every_schema_and_links_only_existing_ones() -> None:
    assert {s for _, s, _ in EXAMPLES} == set(SCHEMA_FILES)
    linked = set(re.findall(r"\(schemas/([\w.-]+\.json)\)", DOC.read_text(encoding="utf-8")))
    assert linked == set(SCHEMA_FILES)


# ---------------------------------------------------------------------------------------------- live


def _body(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes | bytearray), message.payload
    return bytes(message.payload)


def _json(got: list[aiomqtt.Message], topic: str) -> list[Any]:
    """The JSON payloads received on ``topic``, in order (empty payloads left out)."""
    return [json.loads(_body(m)) for m in got if m.topic.value == topic and _body(m)]


def check_message(message: aiomqtt.Message) -> str:
    """Assert one message from the hub keeps the contract; return its family ("status", "mode", ...)."""
    topic, body = message.topic.value, _body(message)
    where = f"{topic} {body[:300]!r}"
    assert message.qos == 1, where
    assert message.retain, f"not retained: {where}"
    if topic == STATUS:
        assert body == b"online", where
        return "status"
    for family, (pattern, schema) in FAMILIES.items():
        if (m := pattern.match(topic)) is None:
            continue
        if family == "alarm" and body == b"":
            return "alarm-clear"
        document = json.loads(body)
        assert errors(schema, document) == [], where
        if family == "zone":
            assert document["zone"] == m["zone"], where
        elif family == "point":
            assert document["point"] == f"{m['device']}.{m['point']}", where
        elif family == "alarm":
            assert document["key"].replace("/", "_") == m["key"], where
        return family
    raise AssertionError(f"a topic outside the documented contract: {where}")


async def _collect(client: aiomqtt.Client, into: list[aiomqtt.Message]) -> None:
    async for message in client.messages:
        into.append(message)


def _app(broker: Mosquitto, name: str) -> aiomqtt.Client:
    """An app on MQTT 5, so that it sees the retain flag as the hub published it (retain-as-published)."""
    return device(broker, name, protocol=aiomqtt.ProtocolVersion.V5)


ALL = SubscribeOptions(qos=1, retainAsPublished=True)


async def test_everything_the_hub_publishes_matches_the_schemas(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got: list[aiomqtt.Message] = []
    zone = f"{SITE_TOPIC}/zone/room-201/occupancy"
    alarm_topic = f"{SITE_TOPIC}/alarm/contract_lobby-exit:held-open"
    async with (
        asyncio.timeout(50),
        running_hub(mosquitto, tmp_path, monkeypatch) as rt,
        _app(mosquitto, "contract-app") as app,
        device(mosquitto, "contract-devices") as dev,
    ):
        await app.subscribe(f"{SITE_TOPIC}/#", options=ALL)
        reader = asyncio.create_task(_collect(app, got), name="contract-app")
        try:
            await until(lambda: _json(got, f"{SITE_TOPIC}/mode"), "the retained mode")

            # An occupancy sensor whose first payload is broken: both points bad with no value, the zone unknown.
            await dev.publish("field/room-201-occ/state", b'{"occupied": tru', qos=1)
            await until(lambda: [d for d in _json(got, zone) if d["quality"] == "bad"], "the zone's bad occupancy")
            # Then a good document, and a partial one (the count only).
            await dev.publish("field/room-201-occ/state", b'{"occupied": true, "count": 3}', qos=1)
            await until(lambda: [d for d in _json(got, zone) if d["count"] == 3], "the zone counting 3")
            await dev.publish("field/room-201-occ/state", b'{"count": 0}', qos=1)
            await until(lambda: [d for d in _json(got, zone) if d["count"] == 0], "the zone counting 0")

            # Doors: plain-text payloads, one of them unusable before any good value.
            await dev.publish("field/lobby-exit/door", b"true", qos=1)
            await dev.publish("field/room-201-reader/door", b"false", qos=1)
            await dev.publish("field/mr-reader/door", b"ajar", qos=1)
            for point, want in (("lobby-exit/door", True), ("room-201-reader/door", False), ("mr-reader/door", None)):
                topic = f"{SITE_TOPIC}/point/{point}"
                await until(lambda t=topic, w=want: [d for d in _json(got, t) if d["value"] is w], f"{topic}={want}")

            assert rt.state.set_mode(Mode.DRILL, "contract test: evacuation drill")
            await until(lambda: [d for d in _json(got, f"{SITE_TOPIC}/mode") if d["mode"] == "drill"], "drill mode")

            raised = Alarm(key="contract/lobby-exit:held-open", source="lobby-exit", severity="warning",
                           message="非常口が開いたままです (lobby exit held open)")  # fmt: skip
            rt.bus.publish(raised)
            await until(lambda: _json(got, alarm_topic), "the alarm")
            rt.bus.publish(Alarm(key=raised.key, source=raised.source, severity=raised.severity,
                                 message=raised.message, active=False))  # fmt: skip
            await until(lambda: [m for m in got if m.topic.value == alarm_topic and not _body(m)], "the alarm clear")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

        families = [check_message(m) for m in got]
        assert {"status", "mode", "zone", "point", "alarm", "alarm-clear"} <= set(families), families

        # Spot checks of what the schemas cannot say.
        null_zone = next(d for d in _json(got, zone) if d["quality"] == "bad")
        assert (null_zone["occupied"], null_zone["count"], null_zone["capacity"]) == (None, None, 12)
        last = _json(got, zone)[-1]
        assert {k: v for k, v in last.items() if k not in ("since", "time")} == {
            "zone": "room-201", "occupied": True, "count": 0, "capacity": 12, "quality": "good",
        }  # fmt: skip
        [alarm] = _json(got, alarm_topic)
        assert alarm["message"] == raised.message
        [raised_body, cleared_body] = [_body(m) for m in got if m.topic.value == alarm_topic]
        assert (json.loads(raised_body), cleared_body) == (alarm, b"")  # raised once, then an empty retained payload
        assert _json(got, f"{SITE_TOPIC}/point/mr-reader/door")[-1]["quality"] == "bad"
        assert _json(got, f"{SITE_TOPIC}/point/room-201-occ/count")[-1]["unit"] == "people"

        # An app connecting now gets the retained picture, without the cleared alarm: Mosquitto answers the
        # two subscriptions in order, so a retained alarm would arrive before the status.
        async with device(mosquitto, "late-app") as late:
            await late.subscribe(f"{SITE_TOPIC}/alarm/+", qos=1)
            await late.subscribe(STATUS, qos=1)
            retained: list[aiomqtt.Message] = []
            async with asyncio.timeout(10):
                async for message in late.messages:
                    retained.append(message)
                    if message.topic.value == STATUS:
                        break
        assert [(m.topic.value, _body(m), m.retain) for m in retained] == [(STATUS, b"online", True)]


async def test_a_broker_that_lost_its_retained_messages_is_refilled(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = {
        STATUS,
        f"{SITE_TOPIC}/mode",
        f"{SITE_TOPIC}/zone/room-201/occupancy",
        f"{SITE_TOPIC}/point/room-201-occ/occupied",
        f"{SITE_TOPIC}/point/room-201-occ/count",
        f"{SITE_TOPIC}/alarm/contract:refill",
    }
    async with asyncio.timeout(50), running_hub(mosquitto, tmp_path, monkeypatch) as rt:
        async with device(mosquitto, "refill-device") as dev:
            await dev.publish("field/room-201-occ/state", b'{"occupied": true, "count": 2}', qos=1)
        await until(lambda: rt.occupancy.get("room-201"), "the zone's occupancy")
        rt.bus.publish(Alarm(key="contract:refill", source="room-201", severity="info", message="still active"))

        async with _app(mosquitto, "refill-app-before") as app:
            await app.subscribe(f"{SITE_TOPIC}/#", options=ALL)
            before: list[aiomqtt.Message] = []
            reader = asyncio.create_task(_collect(app, before), name="refill-app-before")
            try:
                await until(lambda: wanted <= {m.topic.value for m in before}, "the full picture before the restart")
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

        # The broker comes back with nothing: no retained messages, no sessions.
        mosquitto.stop()
        (mosquitto.workdir / "mosquitto.db").unlink(missing_ok=True)
        mosquitto.start()

        async with _app(mosquitto, "refill-app-after") as app:
            await app.subscribe(f"{SITE_TOPIC}/#", options=ALL)
            after: list[aiomqtt.Message] = []
            reader = asyncio.create_task(_collect(app, after), name="refill-app-after")
            try:
                await until(lambda: wanted <= {m.topic.value for m in after}, "the hub to refill the broker")
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        for message in after:
            check_message(message)
        assert rt.status()["details"]["mqtt"]["connects"] >= 2
