"""BACnet values ↔ hub values, and status flags → quality (pure functions; the wire is in test_bacnet_bridge)."""

from __future__ import annotations

from typing import Any

import pytest
from bacpypes3.basetypes import BinaryPV, StatusFlags
from bacpypes3.primitivedata import CharacterString, Null, Real, Unsigned

from adapters.bacnet._codec import BACNET_UNITS, UNITS, CodecError, decode, encode, quality, status_text
from hub.events import Quality
from hub.site import BacnetPoint


def _id(value: Any) -> str:
    return value.object if isinstance(value, BacnetPoint) else f"{type(value).__name__}({value!s})"


def point(obj: str, **kw: Any) -> BacnetPoint:
    return BacnetPoint.model_validate({"id": "p", "kind": kw.pop("kind", "status"), "object": obj, **kw})


MODE = point("multi-state-value:1", writable=True, states=["occupied", "unoccupied", "standby"], kind="mode")


@pytest.mark.parametrize(
    ("p", "raw", "value"),
    [
        (point("analog-input:1"), Real(21.5), 21.5),
        (point("analog-input:1"), Real(float("nan")), None),
        (point("binary-input:1"), BinaryPV("active"), True),
        (point("binary-input:1"), BinaryPV("inactive"), False),
        (MODE, Unsigned(2), "unoccupied"),
        (point("multi-state-input:1"), Unsigned(4), 4),
        (point("integer-value:1"), 7, 7),
        (point("characterstring-value:1"), CharacterString("ok"), "ok"),
        (point("analog-value:1"), Null(()), None),
    ],
    ids=_id,
)
def test_decode(p: BacnetPoint, raw: Any, value: Any) -> None:
    got = decode(p, raw)
    assert got == value or (got is None and value is None)
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("p", "raw", "error"),
    [
        (MODE, Unsigned(4), "state 4 is not one of the 3 states of p"),
        (point("analog-input:1"), CharacterString("x"), "expected a number"),
        (point("binary-input:1"), CharacterString("on"), "expected active/inactive"),
    ],
    ids=_id,
)
def test_decode_refuses(p: BacnetPoint, raw: Any, error: str) -> None:
    with pytest.raises(CodecError, match=error):
        decode(p, raw)


def test_encode_round_trips_and_checks() -> None:
    valve = point("analog-output:1", writable=True, min=0, max=100, kind="valve")
    assert encode(valve, 40) == Real(40.0)
    assert isinstance(encode(valve, 40), Real)
    assert isinstance(encode(valve, None), Null)
    assert encode(point("binary-output:1", writable=True), True) == BinaryPV("active")
    assert encode(MODE, "standby") == Unsigned(3)
    assert encode(MODE, 1) == Unsigned(1)
    for value, error in [(101, "outside 0.0-100.0"), (True, "takes a number"), (float("inf"), "takes a number")]:
        with pytest.raises(CodecError, match=error):
            encode(valve, value)
    with pytest.raises(CodecError, match="state 4 is outside 1-3"):
        encode(MODE, 4)
    with pytest.raises(CodecError, match="takes true/false"):
        encode(point("binary-output:1", writable=True), "open")


def test_status_flags() -> None:
    assert quality(StatusFlags([0, 0, 0, 0])) is Quality.GOOD
    assert quality(StatusFlags([1, 0, 1, 0])) is Quality.GOOD  # in alarm, overridden: a real value
    assert quality(StatusFlags([0, 1, 0, 0])) is Quality.BAD
    assert quality(StatusFlags([0, 0, 0, 1])) is Quality.BAD
    assert quality(None) is Quality.GOOD
    assert status_text(StatusFlags([0, 1, 0, 1])) == "fault, out-of-service"
    assert status_text(StatusFlags([0, 0, 0, 0])) == ""


def test_units_map_both_ways() -> None:
    """Discovery reads BACnet units as site-model units; the simulator writes them back the other way."""
    assert all(UNITS[BACNET_UNITS[unit]] == unit for unit in BACNET_UNITS)
    assert set(BACNET_UNITS) == set(UNITS.values())
    assert BACNET_UNITS["%"] == "percent"  # not percent-relative-humidity: the first listed wins
    assert BACNET_UNITS["degF"] == "degrees-fahrenheit"
