"""MQTT payload decoding and encoding: the contract between field devices and the hub (docs/mqtt.md)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.mqtt._codec import PayloadError, decode, encode_command, encode_state
from hub.events import Value
from hub.site import MqttPoint


def pt(**kw: Any) -> MqttPoint:
    return MqttPoint.model_validate({"id": "p", "topic": "", **kw})


OCCUPIED = pt(kind="occupancy", field="occupied")
PEOPLE = pt(kind="people-count", field="people")
TEMP_TENTHS = pt(kind="temperature", field="t", scale=0.1)
DOOR = pt(kind="door", topic="door", values={"open": True, "closed": False})
WIFI = pt(kind="wifi-mode", topic="mode", states=["secured", "open"], writable=True, command_topic="mode/set")
CARD = pt(kind="card", topic="card", field="card_id")
NESTED = pt(kind="co2", field="air.co2")
CAPTION = pt(kind="caption", topic="caption", writable=True, command_topic="caption/set")
ACCESS = pt(kind="access", topic="access", writable=True, command_topic="access/set", states=["grant", "deny"])
DOOR_MODE = pt(kind="mode", topic="mode", writable=True, command_topic="mode/set", states=["normal", "released"])


@pytest.mark.parametrize(
    ("point", "payload", "value"),
    [
        (OCCUPIED, b'{"occupied": true, "people": 3}', True),
        (OCCUPIED, b'{"occupied": "off"}', False),
        (PEOPLE, b'{"occupied": true, "people": 3}', 3),
        (PEOPLE, b'{"people": "12"}', 12),
        (TEMP_TENTHS, b'{"t": 215}', 21.5),
        (DOOR, b"open", True),
        (DOOR, b" closed\n", False),
        (WIFI, b"open", "open"),
        (CARD, '{"card_id": "04:A2:9F:1B", "name": "山田"}'.encode(), "04:A2:9F:1B"),
        (CARD, b'{"card_id": 123456}', "123456"),
        (NESTED, b'{"air": {"co2": 612}}', 612),
        (CAPTION, "本会議を再開します".encode(), "本会議を再開します"),
    ],
)
def test_decode(point: MqttPoint, payload: bytes, value: Value) -> None:
    got = decode(point, payload)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("point", "payload", "reason"),
    [
        (OCCUPIED, b'{"occupied": tru', "not JSON: Expecting value at character 13"),
        (OCCUPIED, b"[1, 2]", "expected a JSON object with field 'occupied', got [1, 2]"),
        (OCCUPIED, b'{"people": 3}', "field 'occupied' missing"),
        (OCCUPIED, b'{"occupied": "maybe"}', "expected true or false, got 'maybe'"),
        (PEOPLE, b'{"people": "many"}', "expected a number, got 'many'"),
        (PEOPLE, b'{"people": true}', "expected a number, got true"),
        (PEOPLE, b'{"people": NaN}', "expected a finite number, got NaN"),
        (PEOPLE, b'{"people": [1]}', "expected a number, got [1]"),
        (DOOR, b"ajar", "unexpected value 'ajar' (expected one of open, closed)"),
        (DOOR, b"", "empty payload"),
        (DOOR, b"\xff\xfe", "not UTF-8 text (byte 0)"),
        (WIFI, b"guest", "unexpected state 'guest' (expected one of secured, open)"),
        (NESTED, b'{"air": 5}', "field 'air.co2' missing"),
        (CARD, b'{"card_id": {"id": 1}}', 'expected text, got {"id": 1}'),
    ],
)
def test_decode_refuses_with_a_reason(point: MqttPoint, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode(point, payload)
    assert str(info.value) == reason


@pytest.mark.parametrize(
    ("point", "value", "payload"),
    [
        (DOOR, True, b"open"),
        (WIFI, "open", b"open"),
        (CAPTION, "session resumes", b"session resumes"),
        (pt(kind="setpoint", topic="sp", scale=0.1, writable=True, command_topic="sp/set"), 21.5, b"215.0"),
        (pt(kind="lock", topic="lock", writable=True, command_topic="lock/set"), False, b"false"),
        (ACCESS, "grant", b"grant"),
        (ACCESS, "deny", b"deny"),
        (DOOR_MODE, "released", b"released"),  # fail-safe release in an emergency
        (DOOR_MODE, "normal", b"normal"),  # restore
    ],
)
def test_encode_command(point: MqttPoint, value: Value, payload: bytes) -> None:
    assert encode_command(point, value) == payload


def test_encode_command_refuses_values_the_device_cannot_take() -> None:
    with pytest.raises(PayloadError, match="'guest' is not one of secured, open"):
        encode_command(WIFI, "guest")
    with pytest.raises(PayloadError, match="'ajar' is not one of True, False"):
        encode_command(DOOR, "ajar")


def test_state_encoding_round_trips_through_decoding() -> None:
    payload = encode_state([(OCCUPIED, True), (PEOPLE, 4)])
    assert decode(OCCUPIED, payload) is True
    assert decode(PEOPLE, payload) == 4
    assert decode(TEMP_TENTHS, encode_state([(TEMP_TENTHS, 21.5)])) == pytest.approx(21.5)
    assert decode(DOOR, encode_state([(DOOR, False)])) is False
    assert decode(NESTED, encode_state([(NESTED, 700)])) == 700


def test_numbers_outside_the_points_range_are_refused() -> None:
    people = pt(kind="people-count", field="people", min=0)
    assert decode(people, b'{"people": 0}') == 0
    with pytest.raises(PayloadError, match=r"^-2 is outside 0\.\.$"):
        decode(people, b'{"people": -2}')
    dimmer = pt(kind="dimmer", topic="", min=0, max=100, scale=0.1)
    with pytest.raises(PayloadError, match=r"^150 is outside 0\.\.100$"):
        decode(dimmer, b"1500")
