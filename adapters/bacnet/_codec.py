"""BACnet values ↔ the hub's values, status flags → quality.

========================================  ==============================================================
object type                               hub value
========================================  ==============================================================
analog-*, large-analog-value, loop         float
binary-*                                  bool (``active`` is true)
multi-state-*                             the state text (``states`` of the point, from 1); without
                                          ``states`` the state number
integer-value, positive-integer-value,    int
accumulator
characterstring-value                     str
========================================  ==============================================================

Status flags (in-alarm, fault, overridden, out-of-service): ``fault`` and ``out-of-service`` make a reading
``bad`` (the value does not come from working equipment), ``in-alarm`` and ``overridden`` leave it ``good``: the
value is real, and an alarm is the business of the point's own kind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bacpypes3.basetypes import BinaryPV
from bacpypes3.primitivedata import CharacterString, Integer, Null, Real, Unsigned

from hub.errors import HubError
from hub.events import Quality, Value
from hub.site import BacnetPoint

__all__ = ["BACNET_UNITS", "UNITS", "CodecError", "decode", "encode", "object_id", "quality", "status_text"]

_ANALOG = ("analog-", "large-analog-value", "loop")
_INTEGER = ("integer-value", "positive-integer-value", "accumulator")
_FLAG_NAMES = ("in-alarm", "fault", "overridden", "out-of-service")
_BAD_FLAGS = frozenset({1, 3})  # fault, out-of-service


# BACnet engineering units → the unit texts the site model uses (discovery; the simulator uses it backwards).
UNITS: dict[str, str] = {
    "degrees-celsius": "degC", "degrees-fahrenheit": "degF", "percent": "%", "percent-relative-humidity": "%",
    "inches-of-water": "inH2O", "pascals": "Pa", "kilopascals": "kPa", "luxes": "lx",
    "cubic-meters-per-hour": "m3/h", "cubic-meters-per-second": "m3/s", "liters-per-second": "l/s",
    "kilowatts": "kW", "watts": "W", "kilowatt-hours": "kWh", "volts": "V", "amperes": "A", "hertz": "Hz",
    "parts-per-million": "ppm", "seconds": "s", "minutes": "min", "hours": "h",
}  # fmt: skip

# Site-model unit → BACnet engineering units: the first BACnet unit listed above where several map to one.
BACNET_UNITS: dict[str, str] = {hub: bacnet for bacnet, hub in reversed(UNITS.items())}


class CodecError(HubError):
    """A value that does not fit the point (wrong type, unknown state, outside min/max)."""


def object_id(point: BacnetPoint) -> tuple[str, int]:
    """``("analog-input", 3)`` from the point's ``object`` ("analog-input:3")."""
    kind, _, instance = point.object.partition(":")
    return kind, int(instance)


def _family(point: BacnetPoint) -> str:
    kind = object_id(point)[0]
    if kind.startswith(_ANALOG):
        return "analog"
    if kind.startswith("binary-"):
        return "binary"
    if kind.startswith("multi-state-"):
        return "multi-state"
    if kind in _INTEGER:
        return "integer"
    if kind == "characterstring-value":
        return "text"
    return "other"


def decode(point: BacnetPoint, raw: Any) -> Value:
    """The hub's value for what the device reported as the point's property."""
    family = _family(point)
    if isinstance(raw, Null) or raw is None:
        return None
    if family == "binary":
        if isinstance(raw, int):
            return int(raw) == 1
        raise CodecError(f"{point.object}: expected active/inactive, got {raw!r}")
    if family == "multi-state":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise CodecError(f"{point.object}: expected a state number, got {raw!r}")
        n = int(raw)
        if point.states is None:
            return n
        if not 1 <= n <= len(point.states):
            raise CodecError(f"{point.object}: state {n} is not one of the {len(point.states)} states of {point.id}")
        return point.states[n - 1]
    if family == "analog":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
            return value if math.isfinite(value) else None
        raise CodecError(f"{point.object}: expected a number, got {raw!r}")
    if family == "integer":
        if isinstance(raw, int):
            return int(raw)
        raise CodecError(f"{point.object}: expected an integer, got {raw!r}")
    if isinstance(raw, str):
        return str(raw)
    if isinstance(raw, bool | int | float):
        return raw
    raise CodecError(f"{point.object}: cannot map {type(raw).__name__} {raw!r} to a value")


def encode(point: BacnetPoint, value: Value) -> Any:
    """The BACnet primitive to write as the point's present value. ``None`` relinquishes (Null)."""
    if value is None:
        return Null(())
    family = _family(point)
    if family == "binary":
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return BinaryPV("active" if value else "inactive")
        if isinstance(value, str) and value in ("active", "inactive"):
            return BinaryPV(value)
        raise CodecError(f"{point.id} takes true/false (or active/inactive), got {value!r}")
    if family == "multi-state":
        if isinstance(value, str) and point.states is not None:
            if value not in point.states:
                raise CodecError(f"{value!r} is not a state of {point.id} ({', '.join(point.states)})")
            return Unsigned(point.states.index(value) + 1)
        if isinstance(value, int) and not isinstance(value, bool):
            count = len(point.states) if point.states is not None else None
            if value < 1 or (count is not None and value > count):
                raise CodecError(f"state {value} is outside 1-{count or 'n'} for {point.id}")
            return Unsigned(value)
        wanted = f"one of {', '.join(point.states)}" if point.states else "a state number"
        raise CodecError(f"{point.id} takes {wanted}, got {value!r}")
    if family in ("analog", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise CodecError(f"{point.id} takes a number, got {value!r}")
        if (point.min is not None and value < point.min) or (point.max is not None and value > point.max):
            raise CodecError(f"{value} is outside {point.min}-{point.max} (min/max of point {point.id})")
        if family == "integer":
            if value != int(value):
                raise CodecError(f"{point.id} takes an integer, got {value!r}")
            kind = object_id(point)[0]
            return Integer(int(value)) if kind == "integer-value" else Unsigned(int(value))
        return Real(float(value))
    if family == "text" and isinstance(value, str):
        return CharacterString(value)
    raise CodecError(f"{point.id} ({point.object}) cannot be written with {value!r}")


def quality(flags: Sequence[int] | None) -> Quality:
    """``bad`` if the status flags say fault or out-of-service, else ``good``."""
    if flags is not None and any(i < len(flags) and flags[i] for i in _BAD_FLAGS):
        return Quality.BAD
    return Quality.GOOD


def status_text(flags: Sequence[int] | None) -> str:
    """ "fault, out-of-service" for the flags that are set ("" when none)."""
    if flags is None:
        return ""
    return ", ".join(name for i, name in enumerate(_FLAG_NAMES) if i < len(flags) and flags[i])
